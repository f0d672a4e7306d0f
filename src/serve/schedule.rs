//! The built-in cron: each `[[serve.schedule]]` entry starts a run at its due
//! times, evaluated in the dataset's UTC offset, with its window relative to
//! the due time (so `start = "-3d"` means three days before 03:15, however
//! late the run starts). A due time whose dataset already has a run in
//! progress is skipped (that run is already re-checking); one that finds the
//! freshness watch filling a few overdue slots waits for it (up to an hour).
//! After a pause longer than one period (a suspended machine) only the latest
//! due time runs. A server that starts after a due time of the last day
//! whose run never ran to its end (the server was down, or was stopped or
//! killed in the middle of it) runs it at once, when the catalog shows the
//! entry ran before.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::slot::Window;

use super::runs::{RunRequest, StartError};
use super::state::{AppState, RunKind};
use crate::config::serve::Schedule;

/// Sleeps are cut into pieces this long (real time), so a wall clock that
/// jumps is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Runs one schedule entry until the server stops.
pub async fn schedule(state: Arc<AppState>, entry: Schedule) {
    let Some(handle) = state.dataset(&entry.dataset) else {
        return;
    };
    let offset: FixedOffset = handle.ds.spec.offset;
    let mut after = crate::clock::now().with_timezone(&offset);
    if let Some(missed) = missed_while_down(&state, &entry, after).await {
        tracing::warn!(schedule = entry.index, due = %missed.to_rfc3339(), "due time missed while serve was down; it runs now");
        fire(&state, &entry, missed).await;
    }
    loop {
        let Some(mut due) = next(&entry, &after) else {
            tracing::warn!(schedule = entry.index, cron = %entry.cron_text, "the schedule has no further due time");
            return;
        };
        // Only the latest of several due times already past runs.
        let now = crate::clock::now();
        while let Some(later) = next(&entry, &due).filter(|t| t.to_utc() <= now) {
            tracing::warn!(schedule = entry.index, due = %due.to_rfc3339(), "due time missed; a later one runs instead");
            due = later;
        }
        tracing::info!(schedule = entry.index, due = %due.to_rfc3339(), "next due time");
        if !sleep_until(&state, due).await {
            return;
        }
        fire(&state, &entry, due).await;
        after = due;
    }
}

/// How far back a starting server looks for a due time it missed while down.
const CATCH_UP: chrono::Duration = chrono::Duration::hours(24);

/// What the run record of a due time says in `args` (never a secret).
fn origin(entry: &Schedule, due: DateTime<FixedOffset>) -> String {
    format!("{}{}", origin_prefix(entry), due.to_rfc3339())
}

fn origin_prefix(entry: &Schedule) -> String {
    format!(
        "slotfill serve: schedule {} ({:?}) due ",
        entry.index, entry.cron_text
    )
}

/// The latest due time of the last day whose run did not run to its end (it
/// never started, or a stop or a kill cut it short), when the catalog shows
/// the entry ran before it (a server that was down then, not one started
/// for the first time).
async fn missed_while_down(
    state: &AppState,
    entry: &Schedule,
    now: DateTime<FixedOffset>,
) -> Option<DateTime<FixedOffset>> {
    let due = entry.cron.find_previous_occurrence(&now, true).ok()?;
    if now - due > CATCH_UP {
        return None;
    }
    let prefix = origin_prefix(entry);
    let last = state
        .read(move |c| Ok(c.latest_done_run_args(&prefix)?))
        .await
        .ok()??;
    let last_due = DateTime::parse_from_rfc3339(last.strip_prefix(&origin_prefix(entry))?).ok()?;
    (last_due < due).then_some(due)
}

fn next(entry: &Schedule, after: &DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
    entry.cron.find_next_occurrence(after, false).ok()
}

/// Sleeps until the clock reads `due`; false when the server stops first.
async fn sleep_until(state: &AppState, due: DateTime<FixedOffset>) -> bool {
    loop {
        let wait = match crate::clock::real_wait(due.to_utc()) {
            Some(wait) if wait.is_zero() => return true,
            Some(wait) => wait.min(MAX_SLEEP),
            // A pinned clock never reaches a future due time.
            None => {
                state.shutdown.wait().await;
                return false;
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.shutdown.wait() => return false,
        }
    }
}

async fn fire(state: &Arc<AppState>, entry: &Schedule, due: DateTime<FixedOffset>) {
    let Some(handle) = state.dataset(&entry.dataset) else {
        return;
    };
    let window = match Window::parse(&handle.ds.spec, &entry.start, &entry.end, due.to_utc()) {
        Ok(window) => window,
        Err(e) => {
            tracing::warn!(schedule = entry.index, error = %e, "schedule window");
            return;
        }
    };
    let request = RunRequest {
        window: Some(window),
        max_slots: entry.max_slots,
        dry_run: false,
        origin: origin(entry, due),
    };
    // A watch fill of a few overdue slots is no reason to skip the night's run.
    let mut waited = chrono::Duration::zero();
    loop {
        match super::runs::start(state, &entry.dataset, request.clone()).await {
            Ok(run_id) => {
                tracing::info!(schedule = entry.index, run_id, due = %due.to_rfc3339(), "scheduled run started");
            }
            Err(StartError::Busy(_))
                if watch_filling(state, &entry.dataset) && waited < WATCH_FILL_WAIT =>
            {
                if !pause(state, RETRY_EVERY).await {
                    return;
                }
                waited += RETRY_EVERY;
                continue;
            }
            Err(StartError::Busy(why)) => {
                tracing::warn!(schedule = entry.index, due = %due.to_rfc3339(), "scheduled run skipped: {why}");
            }
            Err(e) => {
                tracing::warn!(schedule = entry.index, due = %due.to_rfc3339(), error = %e, "scheduled run could not start");
            }
        }
        return;
    }
}

/// How long a due time waits for a watch fill to end, and how often it looks.
const WATCH_FILL_WAIT: chrono::Duration = chrono::Duration::hours(1);
const RETRY_EVERY: chrono::Duration = chrono::Duration::minutes(1);

fn watch_filling(state: &AppState, dataset: &str) -> bool {
    state
        .active(dataset)
        .is_some_and(|run| run.kind == RunKind::WatchFill)
}

/// Waits `d` of clock time; false when the server stops first.
async fn pause(state: &AppState, d: chrono::Duration) -> bool {
    tokio::select! {
        () = crate::clock::sleep(d) => true,
        () = state.shutdown.wait() => false,
    }
}
