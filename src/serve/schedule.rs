//! The built-in cron: each `[[serve.schedule]]` entry starts a run at its due
//! times, evaluated in the dataset's UTC offset, with its window relative to
//! the due time (so `start = "-3d"` means three days before 03:15, however
//! late the run starts). A due time whose dataset already has a run in
//! progress is skipped (that run is already re-checking); one that finds the
//! freshness watch filling a few overdue slots waits for it (up to an hour).
//! After a pause longer than one period (a suspended machine) only the latest
//! due time runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::slot::Window;

use super::runs::{RunRequest, StartError};
use super::settings::Schedule;
use super::state::{AppState, RunKind};

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
        if !sleep_until(&state, due).await {
            return;
        }
        fire(&state, &entry, due).await;
        after = due;
    }
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
        origin: format!(
            "slotfill serve: schedule {} ({:?}) due {}",
            entry.index,
            entry.cron_text,
            due.to_rfc3339()
        ),
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
