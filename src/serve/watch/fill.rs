//! The watch's fill of overdue slots: `slotfill fill` over them with its
//! default politeness, recorded as a `fill` run, in the background under the
//! dataset's one-run-at-a-time claim, so that checks (and alerts) go on while
//! an origin that is down or rate-limited keeps the fill waiting.

use std::sync::Arc;

use crate::run::{Global, Notify};
use crate::slot::{SlotStart, Window};

use super::super::error::ServeError;
use super::super::progress::RunProgress;
use super::super::runs::open_fill;
use super::super::state::{AppState, Claim, DatasetHandle, RunKind};

/// Starts filling the overdue slots unless a run holds the dataset (the next
/// check tries again).
pub fn fill_overdue(state: &Arc<AppState>, handle: &Arc<DatasetHandle>, overdue: &[SlotStart]) {
    let ds = &handle.ds;
    if ds.complement().is_none() {
        tracing::warn!(dataset = %ds.name, "freshness fill = true, but the dataset has no complement location");
        return;
    }
    let (Some(first), Some(last)) = (overdue.first(), overdue.last()) else {
        return;
    };
    let Some(claim) = Claim::take(state, &ds.name, RunKind::WatchFill) else {
        tracing::info!(dataset = %ds.name, "a run is in progress; the watch fills nothing now");
        return;
    };
    let window = Window {
        first: *first,
        last: *last,
    };
    let (state_for_task, handle) = (state.clone(), handle.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = fill_window(&state_for_task, &handle, &claim, window).await {
            tracing::warn!(dataset = %handle.ds.name, error = %e, "watch fill failed");
        }
        drop(claim);
    });
    state.track(task);
}

async fn fill_window(
    state: &Arc<AppState>,
    handle: &Arc<DatasetHandle>,
    claim: &Claim,
    window: Window,
) -> Result<(), ServeError> {
    // A session of its own, over the overdue slots: the run record names them.
    let opened = open_fill(state, handle, window, None, false).await?;
    let global = Global {
        args: "slotfill serve: freshness watch fill of overdue slots".to_string(),
        ..state.global.clone()
    };
    let progress = Arc::new(RunProgress::default());
    progress.enter("filling");
    let (report, summary) = opened
        .record(&global, Notify::Never, |run| {
            claim.set_run(run, progress.clone())
        })
        .await?;
    tracing::info!(
        dataset = %handle.ds.name,
        filled = report.completed(),
        empty = report.empty,
        failed = report.failed + report.partial,
        outcome = %summary.outcome,
        "watch filled overdue slots"
    );
    Ok(())
}
