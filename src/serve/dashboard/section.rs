//! One dataset's section of the dashboard: read from the catalog in one go
//! ([`read`]), then rendered ([`render`]).

use std::collections::VecDeque;
use std::fmt::Write as _;

use chrono::{Days, NaiveDate};

use crate::catalog::{Catalog, IncidentRecord, RunRecord, WatchCheck};
use crate::config::Dataset;
use crate::report::gaps::{Period, PeriodBuilder};
use crate::slot::{SlotSpec, Window};
use crate::state::State as SlotState;
use crate::text::plural;

use super::super::error::ServeError;
use super::super::state::ActiveRun;
use super::html::{dataset_link, escape, run_link, slots_link};
use crate::config::serve::Freshness;

/// Days the heatmap shows.
pub const HEATMAP_DAYS: u64 = 14;
/// Gap periods, runs and incidents listed at most.
const PERIODS_LISTED: usize = 20;
const RUNS_LISTED: usize = 10;
const INCIDENTS_LISTED: usize = 10;

/// The watch as configured, and the checks this process made.
pub struct WatchView {
    pub freshness: Freshness,
    pub checks_here: u64,
}

/// The fortnight shown, and where the links lead.
struct Shown {
    window: Window,
    first_day: NaiveDate,
    end_day: NaiveDate,
    previous: Option<NaiveDate>,
    next: Option<NaiveDate>,
    newest: NaiveDate,
}

/// What one dataset's section shows.
pub struct Section {
    ds: Dataset,
    catalogued: bool,
    counts: Vec<(SlotState, u64)>,
    total: u64,
    shown: Option<Shown>,
    heatmap: String,
    /// The newest periods, oldest first.
    periods: VecDeque<Period>,
    period_count: usize,
    gap_slots: u64,
    runs: Vec<RunRecord>,
    active: Option<(ActiveRun, u64)>,
    watch: Option<(WatchView, Option<WatchCheck>)>,
    incidents: Vec<IncidentRecord>,
}

pub fn read(
    c: &Catalog,
    ds: &Dataset,
    active: Option<ActiveRun>,
    watch: Option<WatchView>,
    end: Option<NaiveDate>,
) -> Result<Section, ServeError> {
    let mut out = Section {
        ds: ds.clone(),
        catalogued: false,
        counts: Vec::new(),
        total: 0,
        shown: None,
        heatmap: String::new(),
        periods: VecDeque::new(),
        period_count: 0,
        gap_slots: 0,
        runs: Vec::new(),
        active: None,
        watch: None,
        incidents: Vec::new(),
    };
    if let Some(run) = active {
        let attempted = match run.run_id {
            Some(id) => c.finished_attempts(id)?,
            None => 0,
        };
        out.active = Some((run, attempted));
    }
    let Some(id) = c.dataset_id(&ds.name)? else {
        out.watch = watch.map(|w| (w, None));
        return Ok(out);
    };
    out.catalogued = true;
    out.runs = c.recent_runs(id, RUNS_LISTED)?;
    out.incidents = c.recent_incidents(id, INCIDENTS_LISTED)?;
    out.watch = match watch {
        Some(w) => Some((w, c.watch_check(id)?)),
        None => None,
    };
    let Some(extent) = c.slot_extent(id)? else {
        return Ok(out);
    };
    let states = c.slot_states(id, extent)?;
    out.total = states.total();
    out.counts = SlotState::ALL
        .into_iter()
        .map(|s| (s, states.get(s)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let shown = shown(&ds.spec, extent, end);
    let (svg, _) = super::heatmap::draw(c, &ds.name, id, &ds.spec, shown.window)?;
    out.heatmap = svg;
    out.shown = Some(shown);
    let mut builder = PeriodBuilder::new(&ds.spec);
    let included = ds.gap_states();
    let keep = |out: &mut Section, period: Period| {
        out.period_count += 1;
        if out.periods.len() == PERIODS_LISTED {
            out.periods.pop_front();
        }
        out.periods.push_back(period);
    };
    c.visit_slots(id, extent, Some(&included), |row| {
        out.gap_slots += 1;
        if let Some(closed) = builder.push(&row) {
            keep(&mut out, closed);
        }
        Ok(())
    })?;
    if let Some(last) = builder.finish() {
        keep(&mut out, last);
    }
    Ok(out)
}

/// The fortnight ending with `end` (default: the newest catalogued slot's
/// day), kept within the catalogued days.
fn shown(spec: &SlotSpec, extent: (i64, i64), end: Option<NaiveDate>) -> Shown {
    let (oldest, newest) = (spec.day_of(extent.0), spec.day_of(extent.1));
    let end_day = end.unwrap_or(newest).clamp(oldest, newest);
    let span = Days::new(HEATMAP_DAYS - 1);
    let first_day = end_day.checked_sub_days(span).unwrap_or(end_day);
    let previous = (first_day > oldest).then(|| first_day.pred_opt().unwrap_or(first_day));
    let next = (end_day < newest).then(|| {
        end_day
            .checked_add_days(Days::new(HEATMAP_DAYS))
            .unwrap_or(newest)
            .min(newest)
    });
    Shown {
        window: Window {
            first: spec.day_bounds(first_day).0,
            last: spec.day_bounds(end_day).1,
        },
        first_day,
        end_day,
        previous,
        next,
        newest,
    }
}

pub fn render(body: &mut String, s: &Section) {
    let name = escape(&s.ds.name);
    let _ = write!(
        body,
        "<section id=\"dataset-{name}\"><h2><a href=\"{}\">{name}</a></h2>",
        dataset_link(&s.ds.name, None)
    );
    render_activity(body, s);
    if !s.catalogued || s.total == 0 {
        body.push_str("<p>Not scanned yet.</p></section>");
        return;
    }
    render_counts(body, s);
    if let Some(shown) = &s.shown {
        render_window(body, s, shown);
    }
    render_periods(body, s);
    render_incidents(body, s);
    render_runs(body, s);
    body.push_str("</section>");
}

fn render_activity(body: &mut String, s: &Section) {
    match &s.active {
        Some((run, attempted)) => {
            let id = run.run_id.map(|id| format!("#{id}")).unwrap_or_default();
            let _ = write!(
                body,
                "<p class=\"running\">In progress: {} {id} — {}; {} attempted so far.</p>",
                escape(run.kind.as_str()),
                run.progress.phase(),
                plural(*attempted, "slot"),
            );
        }
        None => body.push_str("<p class=\"idle\">No run in progress.</p>"),
    }
    if let Some((view, last)) = &s.watch {
        let f = &view.freshness;
        let d = crate::config::format_duration;
        let last = match last {
            Some(w) => format!(
                "last check {} ({} overdue; {} in all, {} by this process)",
                escape(&w.checked_at),
                w.overdue,
                plural(w.checks as u64, "check"),
                view.checks_here
            ),
            None => "not checked yet".to_string(),
        };
        let _ = write!(
            body,
            "<p class=\"watch\">Freshness watch: every {}, grace {}, alert after {}, fill {}; {last}.</p>",
            d(f.check_every),
            d(f.grace),
            d(f.alert_after),
            if f.fill { "on" } else { "off" },
        );
    }
}

fn render_counts(body: &mut String, s: &Section) {
    body.push_str(
        "<h3>Slots by state</h3><table class=\"counts\"><tr><th>state</th><th>slots</th></tr>",
    );
    for (state, n) in &s.counts {
        let class = if state.is_gap() { "gap" } else { "fine" };
        let _ = write!(
            body,
            "<tr class=\"{class}\"><td>{}</td><td class=\"n\">{n}</td></tr>",
            state.as_str()
        );
    }
    let _ = write!(
        body,
        "<tr><th>total</th><th class=\"n\">{}</th></tr></table>",
        s.total
    );
}

fn render_window(body: &mut String, s: &Section, shown: &Shown) {
    let _ = write!(
        body,
        "<h3>Coverage, {} to {}</h3><nav class=\"window\">",
        shown.first_day, shown.end_day
    );
    let name = &s.ds.name;
    if let Some(previous) = shown.previous {
        let _ = write!(
            body,
            "<a rel=\"prev\" href=\"{}\">← previous {HEATMAP_DAYS} days</a>",
            dataset_link(name, Some(previous))
        );
    }
    if let Some(next) = shown.next {
        let _ = write!(
            body,
            "<a rel=\"next\" href=\"{}\">next {HEATMAP_DAYS} days →</a><a href=\"{}\">newest ({})</a>",
            dataset_link(name, Some(next)),
            dataset_link(name, None),
            shown.newest
        );
    }
    let _ = write!(body, "</nav><div class=\"heatmap\">{}</div>", s.heatmap);
}

fn render_periods(body: &mut String, s: &Section) {
    let _ = write!(
        body,
        "<h3>Open gaps</h3><p class=\"gap-summary\">{} not ok in {}.</p>",
        plural(s.gap_slots, "slot"),
        plural(s.period_count as u64, "period")
    );
    if s.periods.is_empty() {
        return;
    }
    body.push_str("<table class=\"gaps\"><tr><th>first slot</th><th>last slot</th><th>slots</th><th>reasons</th></tr>");
    for p in s.periods.iter().rev() {
        let _ = write!(
            body,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            slots_link(&s.ds.name, &s.ds.spec, p.first, p.last),
            escape(&p.first_local),
            escape(&p.last_local),
            p.slots(),
            escape(&p.describe_reasons())
        );
    }
    if s.period_count > s.periods.len() {
        let _ = write!(
            body,
            "<tr><td colspan=\"4\">… {} older periods</td></tr>",
            s.period_count - s.periods.len()
        );
    }
    body.push_str("</table>");
}

fn render_incidents(body: &mut String, s: &Section) {
    if s.incidents.is_empty() {
        return;
    }
    body.push_str("<h3>Incidents</h3><table class=\"incidents\"><tr><th>incident</th><th>why</th><th>opened</th><th>closed</th><th>overdue slots</th><th>alerts</th></tr>");
    for i in &s.incidents {
        let overdue = match (i.first_overdue, i.last_overdue) {
            (Some(first), Some(last)) => format!(
                "<a href=\"{}\">{} … {}</a>",
                slots_link(&s.ds.name, &s.ds.spec, first, last),
                escape(&s.ds.spec.local_iso(first)),
                escape(&s.ds.spec.local_iso(last))
            ),
            _ => String::new(),
        };
        let alerts: Vec<String> = i
            .alerts
            .iter()
            .map(|(status, delivery, _)| format!("{status} ({})", delivery.as_str()))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{overdue}</td><td>{}</td></tr>",
            i.id,
            i.kind,
            escape(&i.opened_at),
            escape(i.closed_at.as_deref().unwrap_or("open")),
            escape(&alerts.join(", "))
        );
    }
    body.push_str("</table>");
}

fn render_runs(body: &mut String, s: &Section) {
    body.push_str("<h3>Recent runs</h3>");
    if s.runs.is_empty() {
        body.push_str("<p>No run yet.</p>");
        return;
    }
    body.push_str("<table class=\"runs\"><tr><th>run</th><th>command</th><th>window</th><th>started</th><th>finished</th><th>outcome</th><th>filled</th><th>still missing</th><th>note</th></tr>");
    for r in &s.runs {
        let outcome = match (r.outcome, &s.active) {
            (Some(outcome), _) => outcome.as_str(),
            (None, Some((run, _))) if run.run_id == Some(r.run_id) => "running",
            (None, _) => "unfinished",
        };
        let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{} … {}</td><td>{}</td><td>{}</td><td class=\"outcome-{outcome}\">{outcome}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            run_link(r.run_id),
            escape(&r.command),
            escape(r.window_start.as_deref().unwrap_or("")),
            escape(r.window_end.as_deref().unwrap_or("")),
            escape(&r.started_at),
            escape(r.finished_at.as_deref().unwrap_or("")),
            n(r.filled),
            n(r.still_missing),
            escape(r.error.as_deref().unwrap_or(&r.args))
        );
    }
    body.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_newest_day_and_its_links_stay_within_the_data() {
        let spec = SlotSpec::new(10, "+09:00", crate::config::DEFAULT_KEY_TEMPLATE).unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2025, 8, d).unwrap();
        let extent = (spec.day_bounds(day(1)).0, spec.day_bounds(day(31)).0 + 600);
        let newest = shown(&spec, extent, None);
        assert_eq!((newest.first_day, newest.end_day), (day(18), day(31)));
        assert_eq!((newest.previous, newest.next), (Some(day(17)), None));
        let earlier = shown(&spec, extent, newest.previous);
        assert_eq!((earlier.first_day, earlier.end_day), (day(4), day(17)));
        assert_eq!(earlier.next, Some(day(31)));
        let first = shown(&spec, extent, earlier.previous);
        assert_eq!(first.end_day, day(3));
        assert_eq!(first.previous, None, "nothing catalogued before 08-01");
        // A date outside the data is brought back to it.
        let late = shown(&spec, extent, Some(day(31) + Days::new(400)));
        assert_eq!(late.end_day, day(31));
    }
}
