//! Triggered and scheduled runs: each is a [`RunJob`], the code path of
//! `slotfill run`, with its run record; one per dataset at a time.

use std::sync::Arc;

use crate::commands::{FillFlags, Global, RunCommand, RunJob};
use crate::error::Error;
use crate::slot::Window;

use super::{AppState, Claim};

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
    let lease = lease_holder(state, dataset).await;
    if let Some(holder) = lease {
        return Err(StartError::Busy(format!(
            "dataset {dataset} is being filled by another slotfill ({holder})"
        )));
    }
    let cmd = RunCommand {
        fill: FillFlags {
            max_slots: request.max_slots,
            dry_run: request.dry_run,
            concurrency: 4,
            ..Default::default()
        },
        scan_concurrency: 8,
        ..Default::default()
    };
    let global = Global {
        args: request.origin.clone(),
        ..state.global.clone()
    };
    let resolved = state.resolved(&handle.ds, window);
    let job = RunJob::open(&global, resolved, &cmd).await?.log_output();
    let run_id = job.id().0;
    let progress = job.progress();
    claim.set_run(run_id, progress.clone());
    tracing::info!(run_id, dataset, origin = %request.origin, "run started");
    let task_state = state.clone();
    let stop = state.shutdown.clone();
    let task = tokio::spawn(async move {
        let _claim = claim;
        let result = job.execute(async move { stop.wait().await }).await;
        super::add(&handle.counters.origin_calls, progress.origin_calls());
        super::add(&handle.counters.rate_limited, progress.rate_limited());
        match result {
            Ok(outcome) => tracing::info!(run_id, exit = outcome.exit_code, "run finished"),
            Err(e) => tracing::warn!(run_id, error = %e, "run ended with an error"),
        }
        drop(task_state);
    });
    state.track(task);
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
            let held = c
                .connection()
                .query_row(
                    "SELECT l.pid, l.host FROM leases l JOIN datasets d ON d.id = l.dataset_id
                     WHERE d.name = ?1 AND l.expires_at > ?2",
                    rusqlite::params![name, now],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .ok();
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
