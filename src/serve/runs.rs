//! Triggered and scheduled runs: each is the body of `slotfill run`
//! ([`pipeline`]) inside the one run lifecycle ([`Session::record`]): a run
//! record, notification, `interrupted` on SIGINT/SIGTERM. One per dataset at
//! a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;

use crate::commands::fill::{FillFlags, fill_options, require_complement};
use crate::commands::run::{Stages, pipeline};
use crate::commands::{Global, Notify, Session};
use crate::error::Error;
use crate::slot::Window;
use crate::source::{Fetch, NoteSink, NoteSource, SourceError};

use super::{AppState, Claim, DatasetCounters, DatasetHandle};

/// What a run asks for besides its window.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub window: Option<Window>,
    pub max_slots: Option<u64>,
    pub dry_run: bool,
    /// Who asked, for the run record's `args` (never a secret).
    pub origin: String,
}

/// Why a run did not start.
#[derive(Debug)]
pub enum StartError {
    UnknownDataset(String),
    /// A run of this dataset is in progress (here, or in another process).
    Busy(String),
    /// Bad input or configuration: the one-line reason.
    Invalid(String),
    Failed(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::UnknownDataset(name) => write!(f, "unknown dataset {name:?}"),
            StartError::Busy(m) | StartError::Invalid(m) | StartError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        let message = crate::redact::one_line(&e.to_string());
        match e {
            Error::Catalog(crate::catalog::CatalogError::Lease(_)) => StartError::Busy(message),
            e if e.exit_code() == crate::error::EXIT_USAGE => StartError::Invalid(message),
            _ => StartError::Failed(message),
        }
    }
}

/// How far a run in progress has got, for the dashboard and `/api/runs/{id}`.
#[derive(Debug, Default)]
pub struct RunProgress {
    phase: AtomicU8,
}

impl RunProgress {
    const PHASES: [&'static str; 5] = ["starting", "scanning", "filling", "verifying", "done"];

    /// `starting`, `scanning`, `filling`, `verifying` or `done`.
    pub fn phase(&self) -> &'static str {
        Self::PHASES[usize::from(self.phase.load(Ordering::Relaxed)).min(4)]
    }

    pub fn enter(&self, name: &str) {
        if let Some(i) = Self::PHASES.iter().position(|p| *p == name) {
            self.phase.store(i as u8, Ordering::Relaxed);
        }
    }

    /// The pipeline reports each stage as it finishes: scan, fill, verify.
    fn stage_done(&self) {
        let next = (self.phase.load(Ordering::Relaxed) + 1).min(4);
        self.phase.store(next, Ordering::Relaxed);
    }
}

/// Opens and records a run of `dataset`, then carries it out in the background.
pub async fn start(
    state: &Arc<AppState>,
    dataset: &str,
    request: RunRequest,
) -> Result<i64, StartError> {
    let handle = state
        .dataset(dataset)
        .ok_or_else(|| StartError::UnknownDataset(dataset.to_string()))?;
    let window = request
        .window
        .ok_or_else(|| StartError::Invalid("a run needs a window".to_string()))?;
    if state.shutdown.is_triggered() {
        return Err(StartError::Failed("the server is stopping".to_string()));
    }
    let claim = Claim::take(state, dataset, "run").ok_or_else(|| busy(state, dataset))?;
    if let Some(holder) = lease_holder(state, dataset).await {
        return Err(StartError::Busy(format!(
            "dataset {dataset} is being filled by another slotfill ({holder})"
        )));
    }
    let flags = FillFlags {
        max_slots: request.max_slots,
        dry_run: request.dry_run,
        concurrency: 4,
        ..Default::default()
    };
    // As `slotfill run` does, before the catalog is opened.
    require_complement(&handle.ds)?;
    let plan = crate::source::open::plan(&handle.ds.name, &handle.ds.source, &flags.source)
        .map_err(Error::from)?;
    let session = Session::open(state.resolved(&handle.ds, window)).await?;
    let source = crate::source::open::build(&plan, &session.resolved.config.s3)
        .await
        .map_err(Error::from)?;
    let source: Arc<dyn NoteSource> = Arc::new(Counted {
        inner: source,
        handle: handle.clone(),
    });
    let options = fill_options(window, &flags, &plan);
    let stages = Stages {
        scan_concurrency: 8,
        progress: false,
        early_coverage_seconds: None,
    };
    let global = Global {
        args: request.origin.clone(),
        ..state.global.clone()
    };
    let progress = Arc::new(RunProgress::default());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let task_progress = progress.clone();
    let task = tokio::spawn(async move {
        let claim = claim;
        let mut started = Some(started_tx);
        let recorded = session
            .record(&global, "run", Notify::Webhook(None), |run| {
                claim.set_run(run.0, task_progress.clone());
                task_progress.enter("scanning");
                if let Some(tx) = started.take() {
                    let _ = tx.send(run.0);
                }
                let say_progress = task_progress.clone();
                pipeline(&session, source, run, &options, &stages, move |text| {
                    say_progress.stage_done();
                    for line in text.lines() {
                        tracing::info!(run = run.0, "{line}");
                    }
                })
            })
            .await;
        task_progress.enter("done");
        match recorded {
            Ok((_, summary)) => tracing::info!(outcome = %summary.outcome, "run finished"),
            Err(e) => tracing::warn!(error = %e, "run ended with an error"),
        }
        drop(claim);
    });
    state.track(task);
    let run_id = started_rx
        .await
        .map_err(|_| StartError::Failed("the run could not be recorded".to_string()))?;
    tracing::info!(run_id, dataset, origin = %request.origin, "run started");
    Ok(run_id)
}

fn busy(state: &AppState, dataset: &str) -> StartError {
    let what = match state.active(dataset) {
        Some(run) if run.run_id > 0 => format!(" ({} {})", run.kind, run.run_id),
        Some(run) => format!(" ({})", run.kind),
        None => String::new(),
    };
    StartError::Busy(format!(
        "dataset {dataset} already has a run in progress{what}"
    ))
}

/// The holder of a live fill lease on the dataset by another process, if any.
async fn lease_holder(state: &AppState, dataset: &str) -> Option<String> {
    let name = dataset.to_string();
    let pid = i64::from(std::process::id());
    let now = crate::clock::now_text();
    state
        .read(move |c| {
            let held = c.live_lease(&name, &now)?;
            Ok(held
                .filter(|(held_pid, host)| {
                    // A holder on this host whose process is gone does not count.
                    *held_pid != pid
                        && (host != &crate::catalog::this_host()
                            || std::path::Path::new(&format!("/proc/{held_pid}")).exists())
                })
                .map(|(pid, host)| format!("pid {pid} on {host}")))
        })
        .await
        .ok()
        .flatten()
}

/// The dataset's origin, counting its calls and rate limits as they happen
/// (for `/metrics`); everything else is the origin's own.
pub struct Counted {
    pub inner: Arc<dyn NoteSource>,
    pub handle: Arc<DatasetHandle>,
}

impl Counted {
    fn count(&self, fetch: &Fetch) {
        let c: &DatasetCounters = &self.handle.counters;
        super::add(&c.origin_calls, fetch.calls);
        super::add(&c.rate_limited, fetch.rate_limited);
    }
}

#[async_trait]
impl NoteSource for Counted {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn fetch(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        let fetch = self.inner.fetch(start_ms, end_ms, sink).await?;
        self.count(&fetch);
        Ok(fetch)
    }

    fn estimated_calls(&self, notes: u64) -> u64 {
        self.inner.estimated_calls(notes)
    }

    fn shape(&self) -> crate::source::RecordShape {
        self.inner.shape()
    }

    fn call_interval(&self) -> std::time::Duration {
        self.inner.call_interval()
    }

    async fn probe(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        let mut own = Fetch::default();
        let probed = self.inner.probe(&mut own).await;
        self.count(&own);
        stats.absorb(&own);
        probed
    }

    fn provenance(&self) -> crate::source::Provenance {
        self.inner.provenance()
    }

    fn calibrates(&self) -> bool {
        self.inner.calibrates()
    }

    fn returnable(&self, record: &str) -> bool {
        self.inner.returnable(record)
    }

    async fn sample(
        &self,
        window: Option<(i64, i64)>,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, SourceError> {
        let mut own = Fetch::default();
        let sampled = self.inner.sample(window, &mut own).await;
        self.count(&own);
        stats.absorb(&own);
        sampled
    }

    fn learn_ids(&self, ids: &[String]) {
        self.inner.learn_ids(ids)
    }

    fn blind_advice(&self, to: crate::source::BlindTo, answers_recent: Option<bool>) -> String {
        self.inner.blind_advice(to, answers_recent)
    }
}
