//! `slotfill run`: scan → fill → verify, the nightly job.

use crate::catalog::RunSummary;
use crate::error::{Error, Result};
use crate::scan::ScanOptions;

use super::fill::{FillFlags, fill_options, require_complement, run_fill};
use super::scan::run_scan;
use super::source;
use super::verify::verify_window;
use super::{Global, Outcome, Selection, Session, require_window, resolve, until_interrupted};

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
    let plan = source::plan(&resolved.ds, &cmd.fill.source)?;
    let session = Session::open(resolved).await?;
    let source = source::build(&plan, &session).await?;
    let run = session.start_run(global, "run").await?;
    let options = fill_options(window, &cmd.fill, &plan);
    let mut summary = RunSummary::default();
    let result = until_interrupted(async {
        let scan_options = ScanOptions {
            window,
            concurrency: cmd.scan_concurrency,
            progress: cmd.fill.progress,
        };
        let scanned = run_scan(&session, &scan_options).await?;
        print!("{}", super::scan::describe(&session, &scanned));
        summary.slots = Some(scanned.slots.total());
        summary.missing_before = Some(scanned.slots.gaps());
        let filled = run_fill(&session, source, Some(run), &options).await?;
        print!(
            "{}",
            super::fill::describe(&session, &options, &filled, cmd.fill.early_coverage_seconds)
        );
        summary.filled = Some(filled.completed());
        summary.origin_calls = Some(filled.origin_calls);
        if options.dry_run {
            summary.outcome = "dry_run".into();
            summary.still_missing = summary.missing_before;
            return Ok(Outcome::OK);
        }
        let verdict =
            verify_window(&session, window, cmd.scan_concurrency, cmd.fill.progress).await?;
        print!("{}", super::verify::describe(&session, window, &verdict));
        summary.still_missing = Some(verdict.gaps);
        // A fill that failed as a whole is the run's failure, whatever verify found.
        if let Some(cause) = filled.failure() {
            summary.outcome = if filled.stopped.is_some() {
                "stopped"
            } else {
                "failed"
            }
            .into();
            summary.error = Some(cause.clone());
            return Err(Error::Runtime(cause));
        }
        summary.outcome = verdict.outcome().into();
        Ok(Outcome {
            exit_code: verdict.exit_code(),
        })
    })
    .await;
    summary.requests = Some(session.requests());
    session.finish_run(run, &result, summary.clone()).await?;
    if !options.dry_run {
        let mut note_summary = summary.clone();
        if let Err(e) = &result {
            note_summary.outcome = "failed".into();
            note_summary.error = Some(e.to_string());
        }
        session
            .notify(cmd.notify_webhook.as_deref(), window, "run", &note_summary)
            .await;
    }
    result
}
