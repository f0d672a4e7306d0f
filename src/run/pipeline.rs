//! scan → fill → verify over a window: the body of `slotfill run` and of every
//! run serve starts. Each stage's report is handed to the caller as it
//! finishes (the CLI prints it, serve moves its progress on).

use std::sync::Arc;

use crate::catalog::{RunId, RunOutcome, RunSummary};
use crate::error::Result;
use crate::fill::{FillOptions, FillReport};
use crate::scan::{ScanOptions, ScanReport};
use crate::source::NoteSource;

use super::fill::fill_summary;
use super::{Session, Verdict, run_fill, run_scan, verify_window};

/// How the stages of a run are carried out besides the fill's own options.
#[derive(Debug, Clone)]
pub struct Stages {
    pub scan_concurrency: usize,
    pub progress: bool,
}

impl Default for Stages {
    fn default() -> Self {
        Stages {
            scan_concurrency: crate::defaults::SCAN_CONCURRENCY,
            progress: false,
        }
    }
}

/// A stage that has just finished, with its report.
pub enum StageReport<'a> {
    Scanned(&'a ScanReport),
    Filled(&'a FillReport),
    /// Not reached on a dry run.
    Verified(&'a Verdict),
}

/// Runs the three stages as run `run` of the session; returns the run's summary.
pub async fn pipeline(
    session: &Session,
    source: Arc<dyn NoteSource>,
    run: RunId,
    options: &FillOptions,
    stages: &Stages,
    mut finished: impl FnMut(StageReport<'_>),
) -> Result<RunSummary> {
    let window = options.window;
    let scan_options = ScanOptions {
        window,
        concurrency: stages.scan_concurrency,
        progress: stages.progress,
    };
    let scanned = run_scan(session, &scan_options).await?;
    finished(StageReport::Scanned(&scanned));
    let filled = run_fill(session, source, Some(run), options).await?;
    finished(StageReport::Filled(&filled));
    let mut summary = RunSummary {
        slots: Some(scanned.slots.total()),
        missing_before: Some(scanned.slots.gaps()),
        requests: Some(session.requests()),
        ..fill_summary(&filled, options)
    };
    if options.settings.dry_run {
        summary.still_missing = summary.missing_before;
        return Ok(summary);
    }
    let verdict = verify_window(session, window, stages.scan_concurrency, stages.progress).await?;
    finished(StageReport::Verified(&verdict));
    summary.still_missing = Some(verdict.gaps);
    summary.requests = Some(session.requests());
    // A fill that failed as a whole is the run's failure, whatever verify found.
    if summary.outcome == RunOutcome::Ok {
        summary.outcome = verdict.outcome();
    }
    Ok(summary)
}
