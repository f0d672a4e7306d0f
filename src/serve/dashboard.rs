//! `GET /`: the dashboard, one server-rendered HTML page (no script): per
//! dataset the run in progress and how far it got, slot counts by state, the
//! coverage heatmap of the last 14 days (the SVG of `report heatmap`), the
//! open gap periods and the recent runs with their outcome. It refreshes
//! itself every 30 seconds. It shows no secret: run records hold command
//! lines with secrets already removed, and webhook URLs and tokens are never
//! rendered.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::catalog::Catalog;
use crate::config::Dataset;
use crate::error::Result;
use crate::report::gaps::{Period, PeriodBuilder};
use crate::slot::Window;
use crate::state::State as SlotState;

use super::{ActiveRun, AppState};
use crate::catalog::RunRecord;

/// Days the heatmap shows.
pub const HEATMAP_DAYS: u64 = 14;
/// Gap periods and runs listed at most.
const LISTED: usize = 20;
const RUNS_LISTED: usize = 10;

/// What one dataset's section shows.
struct Section {
    name: String,
    catalogued: bool,
    counts: Vec<(SlotState, u64)>,
    total: u64,
    heatmap: String,
    periods: Vec<Period>,
    period_count: usize,
    gap_slots: u64,
    runs: Vec<RunRecord>,
    active: Option<(ActiveRun, u64)>,
    watch: Option<String>,
}

pub async fn dashboard(State(state): State<Arc<AppState>>) -> Response {
    let datasets: Vec<Dataset> = state.settings.datasets.clone();
    let active: Vec<Option<ActiveRun>> = datasets.iter().map(|d| state.active(&d.name)).collect();
    let now = crate::clock::now();
    let sections = state
        .read(move |c| {
            datasets
                .iter()
                .zip(active)
                .map(|(ds, active)| section(c, ds, active, now))
                .collect::<Result<Vec<_>>>()
        })
        .await;
    let mut sections = match sections {
        Ok(sections) => sections,
        Err(e) => {
            let page = page(&format!(
                "<p class=\"error\">The catalog cannot be read: {}</p>",
                escape(&crate::redact::one_line(&e.to_string()))
            ));
            return (StatusCode::SERVICE_UNAVAILABLE, Html(page)).into_response();
        }
    };
    for section in &mut sections {
        let Some(handle) = state.dataset(&section.name) else {
            continue;
        };
        if let Some((_, f)) = state
            .settings
            .watches
            .iter()
            .find(|(n, _)| *n == section.name)
        {
            let c = &handle.counters;
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            section.watch = Some(format!(
                "Freshness watch: every {}, grace {}, alert after {}, fill {}; {} checks, {} overdue at the last one.",
                crate::config::format_duration(f.check_every),
                crate::config::format_duration(f.grace),
                crate::config::format_duration(f.alert_after),
                if f.fill { "on" } else { "off" },
                load(&c.watch_checks),
                load(&c.overdue)
            ));
        }
    }
    let mut body = String::new();
    let _ = write!(
        body,
        "<p class=\"meta\">As of {} · refreshes every 30 s · <a href=\"/metrics\">metrics</a></p>",
        escape(&crate::clock::timestamp_text(now))
    );
    if sections.is_empty() {
        body.push_str("<p>No dataset is configured.</p>");
    }
    for section in &sections {
        render(&mut body, section);
    }
    Html(page(&body)).into_response()
}

fn section(
    c: &Catalog,
    ds: &Dataset,
    active: Option<ActiveRun>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Section> {
    let mut out = Section {
        name: ds.name.clone(),
        catalogued: false,
        counts: Vec::new(),
        total: 0,
        heatmap: String::new(),
        periods: Vec::new(),
        period_count: 0,
        gap_slots: 0,
        runs: Vec::new(),
        active: None,
        watch: None,
    };
    if let Some(run) = active {
        let attempted = if run.run_id > 0 {
            c.finished_attempts(run.run_id)?
        } else {
            0
        };
        out.active = Some((run, attempted));
    }
    let Some(id) = c.dataset_id(&ds.name)? else {
        return Ok(out);
    };
    out.catalogued = true;
    out.runs = c.recent_runs(id, RUNS_LISTED)?;
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
    let spec = &ds.spec;
    let last = spec.align_down(now.timestamp());
    let first_day = spec.day_of(last) - chrono::Days::new(HEATMAP_DAYS - 1);
    let window = Window {
        first: spec.day_bounds(first_day).0,
        last,
    };
    let mut svg = Vec::new();
    crate::report::heatmap::write_heatmap(&mut svg, c, &ds.name, id, spec, window)?;
    out.heatmap = String::from_utf8_lossy(&svg).into_owned();
    let mut builder = PeriodBuilder::new(spec);
    let mut periods = Vec::new();
    let included = crate::commands::gaps::included_states(ds);
    c.visit_slots(id, extent, Some(&included), |row| {
        out.gap_slots += 1;
        if let Some(closed) = builder.push(&row) {
            periods.push(closed);
        }
        Ok(())
    })?;
    periods.extend(builder.finish());
    out.period_count = periods.len();
    out.periods = periods.into_iter().rev().take(LISTED).collect();
    Ok(out)
}

fn render(body: &mut String, s: &Section) {
    let name = escape(&s.name);
    let _ = write!(body, "<section id=\"dataset-{name}\"><h2>{name}</h2>");
    match &s.active {
        Some((run, attempted)) => {
            let _ = write!(
                body,
                "<p class=\"running\">In progress: {} {} — {}; {} attempted so far.</p>",
                escape(run.kind),
                if run.run_id > 0 {
                    format!("#{}", run.run_id)
                } else {
                    String::new()
                },
                run.progress.phase(),
                crate::report::format::plural(*attempted, "slot"),
            );
        }
        None => body.push_str("<p class=\"idle\">No run in progress.</p>"),
    }
    if let Some(watch) = &s.watch {
        let _ = write!(body, "<p class=\"watch\">{}</p>", escape(watch));
    }
    if !s.catalogued || s.total == 0 {
        body.push_str("<p>Not scanned yet.</p></section>");
        return;
    }
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
    let _ = write!(
        body,
        "<h3>Coverage, last {HEATMAP_DAYS} days</h3><div class=\"heatmap\">{}</div>",
        s.heatmap
    );
    let _ = write!(
        body,
        "<h3>Open gaps</h3><p class=\"gap-summary\">{} not ok in {}.</p>",
        crate::report::format::plural(s.gap_slots, "slot"),
        crate::report::format::plural(s.period_count as u64, "period")
    );
    if !s.periods.is_empty() {
        body.push_str("<table class=\"gaps\"><tr><th>first slot</th><th>last slot</th><th>slots</th><th>reasons</th></tr>");
        for p in &s.periods {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
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
    body.push_str("<h3>Recent runs</h3>");
    if s.runs.is_empty() {
        body.push_str("<p>No run yet.</p>");
    } else {
        body.push_str("<table class=\"runs\"><tr><th>run</th><th>command</th><th>window</th><th>started</th><th>finished</th><th>outcome</th><th>filled</th><th>still missing</th><th>note</th></tr>");
        for r in &s.runs {
            let outcome = r.outcome.as_deref().unwrap_or(match &s.active {
                Some((run, _)) if run.run_id == r.run_id => "running",
                _ => "unfinished",
            });
            let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
            let _ = write!(
                body,
                "<tr class=\"outcome-{}\"><td>{}</td><td>{}</td><td>{} … {}</td><td>{}</td><td>{}</td><td class=\"outcome\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(outcome),
                r.run_id,
                escape(&r.command),
                escape(r.window_start.as_deref().unwrap_or("")),
                escape(r.window_end.as_deref().unwrap_or("")),
                escape(&r.started_at),
                escape(r.finished_at.as_deref().unwrap_or("")),
                escape(outcome),
                n(r.filled),
                n(r.still_missing),
                escape(r.error.as_deref().unwrap_or(&r.args))
            );
        }
        body.push_str("</table>");
    }
    body.push_str("</section>");
}

fn page(body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>slotfill</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #212121; }}
h1 {{ margin: 0 0 .3rem 0; }} h2 {{ border-bottom: 2px solid #1e88e5; padding-bottom: .2rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; margin: .5rem 0; }} td, th {{ border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; font-size: .9rem; }}
td.n, th.n {{ text-align: right; }} tr.gap td {{ color: #c62828; }} .meta {{ color: #757575; }}
.running {{ background: #fff8e1; padding: .4rem; }} .idle {{ color: #757575; }}
tr.outcome-ok td.outcome {{ color: #2e7d32; }} tr.outcome-gaps_remain td.outcome, tr.outcome-failed td.outcome, tr.outcome-interrupted td.outcome {{ color: #c62828; }}
.heatmap {{ overflow-x: auto; }} .error {{ color: #c62828; }}
</style></head>
<body><h1>slotfill</h1>
{body}
</body></html>
"#
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
