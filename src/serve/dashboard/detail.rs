//! The detail pages: a period's slots with every fill attempt (outcome, notes,
//! calls, last error, what ended its ranges, the calibration that vouched for
//! it, the run that made it), and a run's record with its calibrations and
//! provenance ([`super::proof`]) and the slots it attempted.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;

use crate::catalog::{
    AttemptRow, CalibrationRecord, Catalog, ProvenanceSummary, RunId, RunRecord, SlotRow,
};
use crate::slot::{SlotSpec, Window};

use super::super::error::{ApiError, ServeError};
use super::super::params::{known_params, optional_window, parse_run_id};
use super::super::state::AppState;
use super::html::{escape, page, run_link, slot_param, slots_link};
use super::proof;

/// Slots one page lists at most (then a link to the next ones).
const SLOTS_PER_PAGE: i64 = 288;
/// Attempts one page lists at most.
const ATTEMPTS_LISTED: usize = 2000;

/// `GET /datasets/{dataset}/slots?start=…&end=…`
pub async fn slots_page(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, ApiError> {
    known_params(&query, &["start", "end"])?;
    let handle = state
        .dataset(&name)
        .ok_or_else(|| ApiError::unknown_dataset(&name))?;
    let spec = handle.ds.spec.clone();
    let asked = optional_window(&spec, &query)?.ok_or_else(|| {
        ApiError::BadRequest(
            "give start and end (e.g. ?start=2025-08-14T00:20&end=2025-08-14T01:00)".to_string(),
        )
    })?;
    // A long period is shown a page at a time.
    let shown = Window {
        first: asked.first,
        last: asked
            .last
            .min(asked.first + (SLOTS_PER_PAGE - 1) * spec.width_secs()),
    };
    let ds = handle.ds.clone();
    let (slots, attempts) = state
        .read(move |c| read_slots(c, &ds, shown))
        .await
        .map_err(unavailable)?;
    let mut body = format!(
        "<h2>{} — slots {} to {}</h2>",
        escape(&name),
        escape(&spec.local_iso(shown.first)),
        escape(&spec.local_iso(shown.last))
    );
    if shown.last < asked.last {
        let _ = write!(
            body,
            "<p>The first {SLOTS_PER_PAGE} slots of the period; <a rel=\"next\" href=\"{}\">the next ones</a>.</p>",
            slots_link(&name, &spec, shown.last + spec.width_secs(), asked.last)
        );
    }
    render_slots(&mut body, &spec, &slots, &attempts);
    Ok(Html(page(&format!("slotfill: {name} slots"), &body, false)))
}

type SlotsAndAttempts = (Vec<SlotRow>, BTreeMap<i64, Vec<AttemptRow>>);

fn read_slots(
    c: &Catalog,
    ds: &crate::config::Dataset,
    window: Window,
) -> Result<SlotsAndAttempts, ServeError> {
    let Some(id) = c.dataset_id(&ds.name)? else {
        return Ok((Vec::new(), BTreeMap::new()));
    };
    let mut slots = Vec::new();
    c.visit_slots(id, (window.first, window.last), None, |row| {
        slots.push(row);
        Ok(())
    })?;
    let mut attempts: BTreeMap<i64, Vec<AttemptRow>> = BTreeMap::new();
    for a in c.slot_attempts(id, (window.first, window.last), ATTEMPTS_LISTED)? {
        attempts.entry(a.slot_start).or_default().push(a);
    }
    Ok((slots, attempts))
}

fn render_slots(
    body: &mut String,
    spec: &SlotSpec,
    slots: &[SlotRow],
    attempts: &BTreeMap<i64, Vec<AttemptRow>>,
) {
    if slots.is_empty() {
        body.push_str("<p>No slot of this period is catalogued.</p>");
        return;
    }
    body.push_str("<table class=\"slots\"><tr><th>slot</th><th>state</th><th>decided by</th><th>attempts</th><th>last outcome</th><th>last error</th></tr>");
    for slot in slots {
        let tried = attempts
            .get(&slot.slot_start)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let last = tried.last();
        let decided = match (&slot.location, &slot.key) {
            (Some(location), Some(key)) => format!(
                "{}/{} ({} bytes{})",
                escape(location),
                escape(key),
                slot.size.unwrap_or_default(),
                slot.lines
                    .map(|l| format!(", {l} lines"))
                    .unwrap_or_default()
            ),
            _ => "no object".to_string(),
        };
        let class = if slot.state.is_gap() { "gap" } else { "fine" };
        let _ = write!(
            body,
            "<tr class=\"{class}\" id=\"slot-{}\"><td>{}</td><td>{}</td><td>{decided}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            slot_param(spec, slot.slot_start),
            escape(&slot.start_local),
            slot.state.as_str(),
            tried.len(),
            last.map(outcome_cell).unwrap_or_default(),
            escape(
                tried
                    .iter()
                    .rev()
                    .find_map(|a| a.error_code.as_deref())
                    .unwrap_or("")
            ),
        );
    }
    body.push_str("</table>");
    render_attempts(body, spec, attempts.values().flatten(), None);
}

fn outcome_cell(a: &AttemptRow) -> String {
    let outcome = a.outcome.as_deref().unwrap_or("unfinished");
    format!("<span class=\"outcome-{0}\">{0}</span>", escape(outcome))
}

/// Every attempt: when, by which run, how it ended, what it cost. With
/// `link_to`, each slot links to its detail in that dataset.
fn render_attempts<'a>(
    body: &mut String,
    spec: &SlotSpec,
    attempts: impl Iterator<Item = &'a AttemptRow>,
    link_to: Option<&str>,
) {
    let mut rows = String::new();
    for a in attempts {
        let local = escape(&spec.local_iso(a.slot_start));
        let slot = match link_to {
            Some(dataset) => format!(
                "<a href=\"{}\">{local}</a>",
                slots_link(dataset, spec, a.slot_start, a.slot_start)
            ),
            None => local,
        };
        let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        // A fill calibrates once per run and day: the calibration is on the run's page.
        let calibration = match (&a.calibration, a.run_id) {
            (Some((id, verdict)), Some(run)) => format!(
                "<a href=\"/runs/{run}#calibration-{id}\">{}</a>",
                escape(verdict)
            ),
            (Some((_, verdict)), None) => escape(verdict),
            (None, _) => String::new(),
        };
        let _ = write!(
            rows,
            "<tr><td>{slot}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{calibration}</td><td>{}</td></tr>",
            a.run_id.map(run_link).unwrap_or_default(),
            escape(&a.started_at),
            escape(a.finished_at.as_deref().unwrap_or("")),
            outcome_cell(a),
            n(a.notes),
            a.origin_calls,
            a.retries,
            n(a.left_out),
            escape(a.range_end.as_deref().unwrap_or("")),
            escape(a.error_code.as_deref().unwrap_or("")),
        );
    }
    if rows.is_empty() {
        body.push_str("<p>No fill attempt.</p>");
        return;
    }
    body.push_str("<h3>Fill attempts</h3><table class=\"attempts\"><tr><th>slot</th><th>run</th><th>started</th><th>finished</th><th>outcome</th><th>notes</th><th>origin calls</th><th>retries</th><th>left out</th><th>ranges ended by</th><th>calibration</th><th>error</th></tr>");
    body.push_str(&rows);
    body.push_str("</table>");
}

/// `GET /runs/{id}`
pub async fn run_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let id = parse_run_id(&id)?;
    let (record, attempts, (calibrations, provenance)) = state
        .read(move |c| {
            Ok((
                c.run_record(id)?,
                c.run_attempts(id, ATTEMPTS_LISTED)?,
                run_proof(c, id)?,
            ))
        })
        .await
        .map_err(unavailable)?;
    let record = record.ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    let active = state.active_run(id).is_some();
    let handle = record.dataset.as_deref().and_then(|d| state.dataset(d));
    let mut body = String::new();
    render_record(&mut body, &record, active);
    let linked = handle.as_ref().map(|h| proof::Linked {
        dataset: &h.ds.name,
        spec: &h.ds.spec,
    });
    body.push_str(&proof::section(&calibrations, &provenance, linked.as_ref()));
    match handle {
        Some(handle) => {
            let ds = &handle.ds;
            render_attempts(&mut body, &ds.spec, attempts.iter(), Some(&ds.name));
        }
        None if attempts.is_empty() => body.push_str("<p>No fill attempt.</p>"),
        None => {
            let _ = write!(
                body,
                "<p>{} attempts (the dataset is no longer configured).</p>",
                attempts.len()
            );
        }
    }
    Ok(Html(page(&format!("slotfill: run {id}"), &body, active)))
}

fn render_record(body: &mut String, r: &RunRecord, active: bool) {
    let state = match (&r.finished_at, active) {
        (Some(_), _) => "finished",
        (None, true) => "running",
        (None, false) => "abandoned (its process died)",
    };
    let outcome = r.outcome.map(|o| o.as_str()).unwrap_or("");
    let _ = write!(
        body,
        "<h2>Run {} — {} {}</h2><table class=\"run\">",
        r.run_id,
        escape(&r.command),
        escape(r.dataset.as_deref().unwrap_or(""))
    );
    let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let window = match (&r.window_start, &r.window_end) {
        (Some(a), Some(b)) => format!("{} … {}", escape(a), escape(b)),
        _ => String::new(),
    };
    let rows: [(&str, String); 15] = [
        ("state", state.to_string()),
        (
            "outcome",
            format!("<span class=\"outcome-{outcome}\">{outcome}</span>"),
        ),
        (
            "exit status",
            r.outcome
                .map(crate::error::exit_code)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        ),
        ("started", escape(&r.started_at)),
        ("finished", escape(r.finished_at.as_deref().unwrap_or(""))),
        ("window", window),
        ("args", escape(&r.args)),
        ("slots", n(r.slots)),
        ("missing before", n(r.missing_before)),
        ("filled", n(r.filled)),
        ("still missing", n(r.still_missing)),
        ("requests", n(r.requests)),
        ("origin calls", n(r.origin_calls)),
        ("bytes read", n(r.bytes_read)),
        ("error", escape(r.error.as_deref().unwrap_or(""))),
    ];
    for (label, value) in rows {
        let _ = write!(body, "<tr><th>{label}</th><td>{value}</td></tr>");
    }
    body.push_str("</table>");
}

/// A run's calibrations and how its attempts obtained their notes.
fn run_proof(
    c: &Catalog,
    run_id: RunId,
) -> Result<(Vec<CalibrationRecord>, Vec<ProvenanceSummary>), ServeError> {
    Ok((c.run_calibrations(run_id)?, c.run_provenance(run_id)?))
}

fn unavailable(e: ServeError) -> ApiError {
    ApiError::Unavailable(format!("the catalog cannot be read: {e}"))
}
