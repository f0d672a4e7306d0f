//! What every handler and background task of the server shares: the checked
//! settings, each dataset opened once (catalog connection and stores), the
//! runs in progress (one per dataset, each claimed), the counters this
//! process keeps, and the shutdown signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::catalog::Catalog;
use crate::catalog::RunId;
use crate::config::{Config, Dataset};
use crate::run::{Global, Resolved, Session};

use super::counters::{DatasetCounters, EventCounters};
use super::error::ServeError;
use super::progress::RunProgress;
use crate::config::serve::Settings;

/// Tells every task of the server to stop.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}

impl Shutdown {
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

/// What holds a dataset: a run started over HTTP or by a schedule, or a watch fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Run,
    WatchFill,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Run => "run",
            RunKind::WatchFill => "watch fill",
        }
    }
}

/// A run (or watch fill) in progress on a dataset.
#[derive(Clone)]
pub struct ActiveRun {
    /// None until its run record exists.
    pub run_id: Option<RunId>,
    pub kind: RunKind,
    pub progress: Arc<RunProgress>,
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
    pub events: EventCounters,
}

impl AppState {
    /// Opens every configured dataset (catalog registered, stores connected).
    pub async fn open(
        config: Config,
        global: Global,
        settings: Settings,
    ) -> Result<Arc<AppState>, ServeError> {
        let mut datasets = HashMap::new();
        for ds in &settings.datasets {
            let resolved = Resolved {
                config: config.clone(),
                ds: ds.clone(),
                window: None,
            };
            let session = Session::open(resolved).await?;
            let handle = DatasetHandle {
                ds: ds.clone(),
                session,
                counters: DatasetCounters::default(),
            };
            datasets.insert(ds.name.clone(), Arc::new(handle));
        }
        Ok(Arc::new(AppState {
            config,
            global,
            settings,
            datasets,
            active: Mutex::default(),
            tasks: Mutex::default(),
            shutdown: Shutdown::default(),
            events: EventCounters::default(),
        }))
    }

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

    pub fn active_run(&self, run_id: RunId) -> Option<ActiveRun> {
        self.lock_active()
            .values()
            .find(|r| r.run_id == Some(run_id))
            .cloned()
    }

    fn lock_active(&self) -> MutexGuard<'_, HashMap<String, ActiveRun>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a task so that shutdown can wait for it.
    pub fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The tracked tasks, for shutdown to wait on.
    pub fn take_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.drain(..).collect()
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
    pub async fn read<R, F>(&self, f: F) -> Result<R, ServeError>
    where
        F: FnOnce(&Catalog) -> Result<R, ServeError> + Send + 'static,
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
        .map_err(|e| ServeError::Task(format!("catalog read: {e}")))?
    }
}

/// Claims a dataset for one run; released on drop.
pub struct Claim {
    state: Arc<AppState>,
    dataset: String,
}

impl Claim {
    /// Claims `dataset` unless a run of this process holds it.
    pub fn take(state: &Arc<AppState>, dataset: &str, kind: RunKind) -> Option<Claim> {
        let mut active = state.lock_active();
        if active.contains_key(dataset) {
            return None;
        }
        let run = ActiveRun {
            run_id: None,
            kind,
            progress: Arc::default(),
        };
        active.insert(dataset.to_string(), run);
        Some(Claim {
            state: state.clone(),
            dataset: dataset.to_string(),
        })
    }

    /// Names the run that holds the claim, for the dashboard and `/api/runs/{id}`.
    pub fn set_run(&self, run_id: RunId, progress: Arc<RunProgress>) {
        if let Some(run) = self.state.lock_active().get_mut(&self.dataset) {
            run.run_id = Some(run_id);
            run.progress = progress;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.state.lock_active().remove(&self.dataset);
    }
}
