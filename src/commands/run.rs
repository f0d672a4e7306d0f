//! `slotfill run`: scan → fill → verify, the nightly job.
//!
//! [`RunJob`] is the run's lifecycle as a library: `open` checks the settings,
//! opens the catalog and stores and records the run's start; `execute` scans,
//! fills, verifies, records how it ended and notifies. The CLI and
//! `slotfill serve` (triggered and scheduled runs) both go through it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::catalog::{RunId, RunSummary};
use crate::error::{Error, Result};
use crate::fill::FillOptions;
use crate::scan::ScanOptions;
use crate::slot::Window;
use crate::source::NoteSource;

use super::fill::{FillFlags, fill_options, require_complement, run_fill};
use super::scan::run_scan;
use super::source;
use super::verify::verify_window;
use super::{
    Global, Outcome, Resolved, Selection, Session, require_window, resolve, until_stopped,
};

#[derive(Debug, Clone, Default)]
pub struct RunCommand {
    pub selection: Selection,
    pub fill: FillFlags,
    pub scan_concurrency: usize,
    pub notify_webhook: Option<String>,
}

pub async fn run(global: &Global, cmd: &RunCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    RunJob::open(global, resolved, cmd)
        .await?
        .execute(super::stop_signal())
        .await
}

/// How far a run has got, for whoever watches it while it works.
#[derive(Debug, Default)]
pub struct RunProgress {
    phase: AtomicU8,
    /// Gap slots the scan found (the fill's upper bound), once known.
    gaps: AtomicU64,
    origin_calls: AtomicU64,
    rate_limited: AtomicU64,
}

impl RunProgress {
    const PHASES: [&'static str; 5] = ["starting", "scanning", "filling", "verifying", "done"];

    fn enter(&self, phase: usize) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Marks a phase by name (for work that is not a [`RunJob`], such as a lone fill).
    pub fn enter_phase(&self, name: &str) {
        if let Some(i) = Self::PHASES.iter().position(|p| *p == name) {
            self.enter(i);
        }
    }

    /// `starting`, `scanning`, `filling`, `verifying` or `done`.
    pub fn phase(&self) -> &'static str {
        Self::PHASES[usize::from(self.phase.load(Ordering::Relaxed)).min(4)]
    }

    /// Gap slots the scan found in the window (0 until it has).
    pub fn gaps(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// Origin calls of the fill, once it has finished.
    pub fn origin_calls(&self) -> u64 {
        self.origin_calls.load(Ordering::Relaxed)
    }

    /// Rate-limit answers the fill waited out, once it has finished.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
}

/// A `run` opened for work, its start recorded.
pub struct RunJob {
    session: Session,
    source: Arc<dyn NoteSource>,
    options: FillOptions,
    window: Window,
    run: RunId,
    scan_concurrency: usize,
    early_coverage_seconds: Option<f64>,
    notify_webhook: Option<String>,
    /// Print the summaries on stdout (the CLI) or log them (a server).
    print: bool,
    progress: Arc<RunProgress>,
}

impl RunJob {
    /// Checks the window, the complement and the source settings (before the
    /// catalog is opened: a scope that cannot be honoured records nothing),
    /// then opens the catalog and stores and records the run's start.
    pub async fn open(global: &Global, resolved: Resolved, cmd: &RunCommand) -> Result<RunJob> {
        let window = require_window(&resolved)?;
        require_complement(&resolved.ds)?;
        let plan = source::plan(&resolved.ds, &cmd.fill.source)?;
        let session = Session::open(resolved).await?;
        let source = source::build(&plan, &session).await?;
        let run = session.start_run(global, "run").await?;
        Ok(RunJob {
            options: fill_options(window, &cmd.fill, &plan),
            session,
            source,
            window,
            run,
            scan_concurrency: cmd.scan_concurrency,
            early_coverage_seconds: cmd.fill.early_coverage_seconds,
            notify_webhook: cmd.notify_webhook.clone(),
            print: true,
            progress: Arc::default(),
        })
    }

    pub fn id(&self) -> RunId {
        self.run
    }

    pub fn progress(&self) -> Arc<RunProgress> {
        self.progress.clone()
    }

    /// Log the summaries instead of printing them (nobody reads a server's stdout).
    pub fn log_output(mut self) -> Self {
        self.print = false;
        self
    }

    fn say(&self, text: String) {
        if self.print {
            print!("{text}");
        } else {
            for line in text.lines() {
                tracing::info!(run = self.run.0, "{line}");
            }
        }
    }

    /// Scans, fills and verifies the window until done or `stop` completes
    /// (then the work in flight is dropped and the run recorded as
    /// interrupted); records how it ended and notifies.
    pub async fn execute(self, stop: impl Future<Output = ()>) -> Result<Outcome> {
        let (session, window, options) = (&self.session, self.window, &self.options);
        let progress = &self.progress;
        let progress_bars = options.progress;
        let mut summary = RunSummary::default();
        let result = until_stopped(
            async {
                progress.enter(1);
                let scan_options = ScanOptions {
                    window,
                    concurrency: self.scan_concurrency,
                    progress: progress_bars,
                };
                let scanned = run_scan(session, &scan_options).await?;
                self.say(super::scan::describe(session, &scanned));
                summary.slots = Some(scanned.slots.total());
                summary.missing_before = Some(scanned.slots.gaps());
                progress.gaps.store(scanned.slots.gaps(), Ordering::Relaxed);
                progress.enter(2);
                let filled =
                    run_fill(session, self.source.clone(), Some(self.run), options).await?;
                progress
                    .origin_calls
                    .store(filled.origin_calls, Ordering::Relaxed);
                progress
                    .rate_limited
                    .store(filled.rate_limited, Ordering::Relaxed);
                self.say(super::fill::describe(
                    session,
                    options,
                    &filled,
                    self.early_coverage_seconds,
                ));
                summary.filled = Some(filled.completed());
                summary.origin_calls = Some(filled.origin_calls);
                if options.dry_run {
                    summary.outcome = "dry_run".into();
                    summary.still_missing = summary.missing_before;
                    return Ok(Outcome::OK);
                }
                progress.enter(3);
                let verdict =
                    verify_window(session, window, self.scan_concurrency, progress_bars).await?;
                self.say(super::verify::describe(session, window, &verdict));
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
            },
            stop,
        )
        .await;
        summary.requests = Some(session.requests());
        session
            .finish_run(self.run, &result, summary.clone())
            .await?;
        progress.enter(4);
        if !options.dry_run {
            let mut note_summary = summary.clone();
            if let Err(e) = &result {
                note_summary.outcome = "failed".into();
                note_summary.error = Some(e.to_string());
            }
            session
                .notify(self.notify_webhook.as_deref(), window, "run", &note_summary)
                .await;
        }
        result
    }
}
