//! `slotfill serve`: the always-on mode, one more front end over the library.
//!
//! One process, one tokio runtime, one catalog (WAL: the dashboard reads while
//! a fill writes). Everything here calls the pieces the CLI calls:
//!
//! - [`api`]: the HTTP listener: `/healthz`, the dashboard, `/metrics`, and
//!   `/api/…` (bearer token, bodies up to 1 MiB);
//! - [`runs`]: triggered and scheduled runs, each `slotfill run`'s pipeline
//!   inside the one run lifecycle (`Session::record`): a run record, the
//!   notification, one run per dataset at a time;
//! - [`events`]: S3 event notifications keep the catalog current without a scan;
//! - [`watch`]: the freshness watch lists the newest day prefixes, alerts once
//!   per incident and fills overdue slots;
//! - [`schedule`]: the built-in cron;
//! - [`dashboard`] and [`metrics`]: read-only views of the catalog;
//! - [`settings`]: the `[serve]` and `freshness` configuration.
//!
//! On SIGINT or SIGTERM the listener stops accepting, runs in flight are
//! abandoned the way an interrupted `slotfill run` is (recorded as
//! `interrupted`; what was committed stays), and the process exits 0.

pub mod api;
pub mod dashboard;
pub mod events;
pub mod metrics;
pub mod runs;
pub mod schedule;
pub mod settings;
pub mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::catalog::Catalog;
use crate::commands::{Global, Outcome, Resolved, Session};
use crate::config::{Config, Dataset};
use crate::error::{Error, Result};
use runs::RunProgress;

pub use settings::Settings;

/// `slotfill serve` as the command line gives it.
#[derive(Debug, Clone, Default)]
pub struct ServeCommand {
    pub listen: Option<String>,
}

/// How long runs in flight get to record that they were interrupted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Tells every task of the server to stop.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Shutdown {
    fn new() -> Self {
        Shutdown {
            tx: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once the server is stopping.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// A run (or watch fill) in progress on a dataset.
#[derive(Clone)]
pub struct ActiveRun {
    pub run_id: i64,
    pub kind: &'static str,
    pub progress: Arc<RunProgress>,
}

/// Counters kept by this process (they start at 0 with it, as Prometheus expects).
#[derive(Debug, Default)]
pub struct DatasetCounters {
    pub origin_calls: AtomicU64,
    pub rate_limited: AtomicU64,
    pub watch_checks: AtomicU64,
    pub overdue: AtomicU64,
    pub alerts: AtomicU64,
}

/// One configured dataset, opened for events and the watch.
pub struct DatasetHandle {
    pub ds: Dataset,
    /// Catalog connection and stores, shared by events and the watch.
    pub session: Session,
    pub counters: DatasetCounters,
}

/// What every handler and task shares.
pub struct AppState {
    pub config: Config,
    pub global: Global,
    pub settings: Settings,
    pub datasets: HashMap<String, Arc<DatasetHandle>>,
    /// At most one run per dataset; the catalog lease guards against other processes.
    active: Mutex<HashMap<String, ActiveRun>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub shutdown: Shutdown,
    pub events: events::EventCounters,
}

impl AppState {
    pub fn dataset(&self, name: &str) -> Option<Arc<DatasetHandle>> {
        self.datasets.get(name).cloned()
    }

    /// Dataset names in config order (sorted).
    pub fn dataset_names(&self) -> Vec<String> {
        self.settings
            .datasets
            .iter()
            .map(|d| d.name.clone())
            .collect()
    }

    pub fn active(&self, dataset: &str) -> Option<ActiveRun> {
        self.lock_active().get(dataset).cloned()
    }

    pub fn active_runs(&self) -> Vec<(String, ActiveRun)> {
        let mut runs: Vec<_> = self
            .lock_active()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        runs.sort_by(|a, b| a.0.cmp(&b.0));
        runs
    }

    pub fn active_run(&self, run_id: i64) -> Option<ActiveRun> {
        self.lock_active()
            .values()
            .find(|r| r.run_id == run_id)
            .cloned()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActiveRun>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a task so that shutdown can wait for it.
    pub fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The dataset's configuration and a window, as a command resolves them.
    pub fn resolved(&self, ds: &Dataset, window: crate::slot::Window) -> Resolved {
        Resolved {
            config: self.config.clone(),
            ds: ds.clone(),
            window: Some(window),
        }
    }

    /// A read-only catalog call on the blocking pool (the dashboard, metrics, the API).
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Catalog) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let path = self.config.catalog.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let catalog = Catalog::open_read_only(&path)?;
            f(&catalog)
        })
        .await
        .map_err(|e| Error::Runtime(format!("catalog task failed: {e}")))?
    }
}

/// Claims a dataset for one run; released on drop.
pub struct Claim {
    state: Arc<AppState>,
    dataset: String,
}

impl Claim {
    /// Claims `dataset` unless a run of this process holds it.
    pub fn take(state: &Arc<AppState>, dataset: &str, kind: &'static str) -> Option<Claim> {
        let mut active = state.lock_active();
        if active.contains_key(dataset) {
            return None;
        }
        active.insert(
            dataset.to_string(),
            ActiveRun {
                run_id: 0,
                kind,
                progress: Arc::default(),
            },
        );
        Some(Claim {
            state: state.clone(),
            dataset: dataset.to_string(),
        })
    }

    /// Names the run that holds the claim, for the dashboard and `/api/runs/{id}`.
    pub fn set_run(&self, run_id: i64, progress: Arc<RunProgress>) {
        if let Some(run) = self.state.lock_active().get_mut(&self.dataset) {
            run.run_id = run_id;
            run.progress = progress;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.state.lock_active().remove(&self.dataset);
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(global: &Global, cmd: &ServeCommand) -> Result<Outcome> {
    let mut config = Config::load(&global.config)?;
    if let Some(catalog) = &global.catalog {
        config.catalog = catalog.clone();
    }
    let settings = Settings::check(&config, cmd.listen.as_deref())?;
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(settings.listen.as_str())
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "serve: cannot use listen address {:?}: {e}",
                settings.listen
            ))
        })?
        .collect();
    settings.check_exposure(&addrs)?;
    let mut datasets = HashMap::new();
    for ds in &settings.datasets {
        let resolved = Resolved {
            config: config.clone(),
            ds: ds.clone(),
            window: None,
        };
        let session = Session::open(resolved).await?;
        datasets.insert(
            ds.name.clone(),
            Arc::new(DatasetHandle {
                ds: ds.clone(),
                session,
                counters: DatasetCounters::default(),
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(|e| Error::Runtime(format!("serve: cannot listen on {}: {e}", settings.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("serve: {e}")))?;
    let state = Arc::new(AppState {
        config,
        global: global.clone(),
        settings,
        datasets,
        active: Mutex::default(),
        tasks: Mutex::default(),
        shutdown: Shutdown::new(),
        events: events::EventCounters::default(),
    });
    let mut background = Vec::new();
    for (name, freshness) in &state.settings.watches {
        background.push(tokio::spawn(watch::watch(
            state.clone(),
            name.clone(),
            freshness.clone(),
        )));
    }
    for entry in &state.settings.schedules {
        background.push(tokio::spawn(schedule::schedule(
            state.clone(),
            entry.clone(),
        )));
    }
    // Installed before the line below: a signal sent as soon as it is read is handled.
    let signal = crate::commands::stop_signal();
    // People and tests read this line to find the port (`--listen 127.0.0.1:0`).
    println!(
        "slotfill serve: listening on http://{local} ({} datasets, {} schedules, {} watches, API token {})",
        state.datasets.len(),
        state.settings.schedules.len(),
        state.settings.watches.len(),
        if state.settings.token.is_some() {
            "required"
        } else {
            "not configured"
        }
    );
    let stopper = state.shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        println!(
            "slotfill serve: stopping; work in flight is abandoned and recorded as interrupted"
        );
        stopper.trigger();
    });
    let app = api::router(state.clone());
    let graceful = state.shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { graceful.wait().await })
        .await;
    state.shutdown.trigger();
    let tasks: Vec<_> = {
        let mut tasks = state.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.drain(..).collect()
    };
    let wait_all = async {
        for task in tasks.into_iter().chain(background) {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, wait_all)
        .await
        .is_err()
    {
        tracing::warn!("some work did not stop in time; a rerun resumes it");
    }
    served.map_err(|e| Error::Runtime(format!("serve: {e}")))?;
    println!("slotfill serve: stopped");
    Ok(Outcome::OK)
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
