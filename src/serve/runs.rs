//! Triggered and scheduled runs: each is the body of `slotfill run`
//! ([`pipeline`]) inside the one run lifecycle ([`crate::run::Session::record`]): a run
//! record, notification, `interrupted` on SIGINT/SIGTERM. One per dataset at
//! a time.

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::catalog::CatalogError;
use crate::config::Dataset;
use crate::defaults;
use crate::error::Error;
use crate::run::{FillSettings, Global, Notify, OpenedFill, StageReport, Stages, pipeline};
use crate::slot::Window;
use crate::source::open::SourceFlags;
use crate::source::{Fetch, NoteSink, NoteSource, SourceError};

use super::counters::add;
use super::error::{ApiError, ServeError};
use super::progress::RunProgress;
use super::state::{ActiveRun, AppState, Claim, DatasetHandle, RunKind};

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
#[derive(Debug, Error)]
pub enum StartError {
    #[error("unknown dataset {0:?}")]
    UnknownDataset(String),
    /// A run of this dataset is in progress (here, or in another process).
    #[error("{0}")]
    Busy(String),
    #[error("the server is stopping")]
    Stopping,
    #[error(transparent)]
    Failed(#[from] ServeError),
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        match e {
            Error::Catalog(CatalogError::Lease(lease)) => StartError::Busy(lease.to_string()),
            e => StartError::Failed(ServeError::Work(e)),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::UnknownDataset(name) => ApiError::unknown_dataset(&name),
            StartError::Busy(message) => ApiError::Conflict(message),
            StartError::Stopping => ApiError::Unavailable(e.to_string()),
            StartError::Failed(e) => ApiError::from(e),
        }
    }
}

/// The politeness of serve's fills (`slotfill fill`'s defaults), with its
/// waits read in clock time: on a running test clock the retry wait and the
/// rate-limit cap shrink with every other timer of serve. (At the normal
/// speed these are exactly the defaults and the dataset's own cap.)
pub fn fill_settings(
    ds: &Dataset,
    max_slots: Option<u64>,
    dry_run: bool,
) -> (FillSettings, SourceFlags) {
    let in_clock_time =
        |secs: f64| crate::clock::real_std(std::time::Duration::from_secs_f64(secs)).as_secs_f64();
    let cap = ds
        .source
        .origin
        .rate_limit_wait_cap()
        .unwrap_or(defaults::RATE_LIMIT_WAIT_CAP);
    let settings = FillSettings {
        max_slots,
        dry_run,
        ..FillSettings::default()
    };
    let origin = SourceFlags {
        retry_wait: Some(in_clock_time(defaults::RETRY_WAIT)),
        rate_limit_wait_cap: Some(in_clock_time(cap)),
        ..SourceFlags::default()
    };
    (settings, origin)
}

/// Opens a fill of `window` with serve's settings, its origin's calls
/// counted for `/metrics`.
pub async fn open_fill(
    state: &AppState,
    handle: &Arc<DatasetHandle>,
    window: Window,
    max_slots: Option<u64>,
    dry_run: bool,
) -> Result<OpenedFill, Error> {
    let (settings, origin) = fill_settings(&handle.ds, max_slots, dry_run);
    let resolved = state.resolved(&handle.ds, window);
    let mut opened = OpenedFill::open(resolved, window, &settings, &origin).await?;
    opened.source = Arc::new(Counted {
        inner: opened.source.clone(),
        handle: handle.clone(),
    });
    Ok(opened)
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
        .ok_or_else(|| ServeError::Usage("a run needs a window".to_string()))?;
    if state.shutdown.is_triggered() {
        return Err(StartError::Stopping);
    }
    let claim = Claim::take(state, dataset, RunKind::Run).ok_or_else(|| busy(state, dataset))?;
    if let Some(holder) = lease_holder(state, dataset).await {
        return Err(StartError::Busy(format!(
            "dataset {dataset} is being filled by another slotfill ({holder})"
        )));
    }
    // As `slotfill run` does: a dataset or scope that cannot be filled records nothing.
    let opened = open_fill(state, &handle, window, request.max_slots, request.dry_run).await?;
    let stages = Stages::default();
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
        let OpenedFill {
            session,
            source,
            options,
        } = &opened;
        let recorded = session
            .record(&global, "run", Notify::Webhook(None), |run| {
                claim.set_run(run, task_progress.clone());
                task_progress.enter("scanning");
                if let Some(tx) = started.take() {
                    let _ = tx.send(run.0);
                }
                let say_progress = task_progress.clone();
                async move {
                    let summary =
                        pipeline(session, source.clone(), run, options, &stages, |stage| {
                            say_progress.stage_done();
                            log_stage(run.0, &stage);
                        })
                        .await?;
                    Ok(((), summary))
                }
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
        .map_err(|_| ServeError::Task("the run could not be recorded".to_string()))?;
    tracing::info!(run_id, dataset, origin = %request.origin, "run started");
    Ok(run_id)
}

/// A finished stage of a run, in the log.
fn log_stage(run: i64, stage: &StageReport<'_>) {
    match stage {
        StageReport::Scanned(r) => {
            tracing::info!(
                run,
                slots = r.slots.total(),
                gaps = r.slots.gaps(),
                "scanned"
            )
        }
        StageReport::Filled(r) => tracing::info!(
            run,
            filled = r.filled,
            notes = r.notes,
            empty = r.empty,
            failed = r.failed,
            origin_calls = r.origin_calls,
            "filled"
        ),
        StageReport::Verified(v) => tracing::info!(run, slots = v.slots, gaps = v.gaps, "verified"),
    }
}

fn busy(state: &AppState, dataset: &str) -> StartError {
    let what = match state.active(dataset) {
        Some(ActiveRun {
            kind,
            run_id: Some(id),
            ..
        }) => format!(" ({} {id})", kind.as_str()),
        Some(run) => format!(" ({})", run.kind.as_str()),
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
        let c = &self.handle.counters;
        add(&c.origin_calls, fetch.calls);
        add(&c.rate_limited, fetch.rate_limited);
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
