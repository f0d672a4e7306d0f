//! `slotfill run`: scan → fill → verify, the nightly job.

use std::sync::Arc;

use crate::catalog::{RunId, RunOutcome, RunSummary};
use crate::error::Result;
use crate::fill::FillOptions;
use crate::scan::ScanOptions;
use crate::source::NoteSource;

use super::fill::{FillFlags, fill_options, fill_summary, require_complement, run_fill};
use super::scan::run_scan;
use super::session::failure_of;
use super::verify::verify_window;
use super::{Global, Notify, Outcome, Selection, Session, require_window, resolve};
use crate::source::open as source;

#[derive(Debug, Clone, Default)]
pub struct RunCommand {
    pub selection: Selection,
    pub fill: FillFlags,
    pub scan_concurrency: usize,
    pub notify_webhook: Option<String>,
}

pub async fn run(global: &Global, cmd: &RunCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    require_complement(&resolved.ds)?;
    // Before the catalog is opened: a scope that cannot be honoured records nothing.
    let plan = source::plan(&resolved.ds.name, &resolved.ds.source, &cmd.fill.source)?;
    let session = Session::open(resolved).await?;
    let source = source::build(&plan, &session.resolved.config.s3).await?;
    let options = fill_options(window, &cmd.fill, &plan);
    let stages = Stages {
        scan_concurrency: cmd.scan_concurrency,
        progress: cmd.fill.progress,
        early_coverage_seconds: cmd.fill.early_coverage_seconds,
    };
    let notify = Notify::Webhook(cmd.notify_webhook.clone());
    let (_, summary) = session
        .record(global, "run", notify, |run| {
            pipeline(&session, source, run, &options, &stages, |text| {
                print!("{text}")
            })
        })
        .await?;
    match failure_of(&summary) {
        Some(e) => Err(e),
        None => Ok(summary.outcome.into()),
    }
}

/// How the stages of a run are carried out besides the fill's own options.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    pub scan_concurrency: usize,
    pub progress: bool,
    pub early_coverage_seconds: Option<f64>,
}

/// scan → fill → verify over the session's window: the body of `slotfill run`
/// and of every run another front end (serve) starts. `say` receives each
/// stage's report for people as it finishes.
pub async fn pipeline(
    session: &Session,
    source: Arc<dyn NoteSource>,
    run: RunId,
    options: &FillOptions,
    stages: &Stages,
    mut say: impl FnMut(String),
) -> Result<((), RunSummary)> {
    let window = options.window;
    let scan_options = ScanOptions {
        window,
        concurrency: stages.scan_concurrency,
        progress: stages.progress,
    };
    let scanned = run_scan(session, &scan_options).await?;
    say(super::scan::describe(session, &scanned));
    let filled = run_fill(session, source, Some(run), options).await?;
    say(super::fill::describe(
        session,
        options,
        &filled,
        stages.early_coverage_seconds,
    ));
    let mut summary = RunSummary {
        slots: Some(scanned.slots.total()),
        missing_before: Some(scanned.slots.gaps()),
        requests: Some(session.requests()),
        ..fill_summary(&filled, options)
    };
    if options.dry_run {
        summary.still_missing = summary.missing_before;
        return Ok(((), summary));
    }
    let verdict = verify_window(session, window, stages.scan_concurrency, stages.progress).await?;
    say(super::verify::describe(session, window, &verdict));
    summary.still_missing = Some(verdict.gaps);
    summary.requests = Some(session.requests());
    // A fill that failed as a whole is the run's failure, whatever verify found.
    if summary.outcome == RunOutcome::Ok {
        summary.outcome = verdict.outcome();
    }
    Ok(((), summary))
}
