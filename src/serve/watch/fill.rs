//! The watch's fill of overdue slots: `slotfill fill` over them with its
//! default politeness, recorded as a `fill` run, in the background under the
//! dataset's one-run-at-a-time claim, so that checks (and alerts) go on while
//! an origin that is down or rate-limited keeps the fill waiting.

use std::sync::Arc;

use crate::catalog::RunSummary;
use crate::commands::fill::{fill_options, fill_summary, run_fill};
use crate::commands::{Global, Notify, Session};
use crate::error::Error;
use crate::slot::{SlotStart, Window};
use crate::source::NoteSource;

use super::super::error::ServeError;
use super::super::progress::RunProgress;
use super::super::runs::{Counted, fill_flags};
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
    let flags = fill_flags(&handle.ds, None, false);
    let plan = crate::source::open::plan(&handle.ds.name, &handle.ds.source, &flags.source)
        .map_err(Error::from)?;
    // A session of its own, over the overdue slots: the run record names them.
    let session = Session::open(state.resolved(&handle.ds, window)).await?;
    let source = crate::source::open::build(&plan, &session.resolved.config.s3)
        .await
        .map_err(Error::from)?;
    let source: Arc<dyn NoteSource> = Arc::new(Counted {
        inner: source,
        handle: handle.clone(),
    });
    let options = fill_options(window, &flags, &plan);
    let global = Global {
        args: "slotfill serve: freshness watch fill of overdue slots".to_string(),
        ..state.global.clone()
    };
    let progress = Arc::new(RunProgress::default());
    progress.enter("filling");
    let (report, summary) = session
        .record(&global, "fill", Notify::Never, |run| {
            claim.set_run(run.0, progress.clone());
            let (session, options) = (&session, &options);
            async move {
                let report = run_fill(session, source, Some(run), options).await?;
                let summary = RunSummary {
                    requests: Some(session.requests()),
                    ..fill_summary(&report, options)
                };
                Ok((report, summary))
            }
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
