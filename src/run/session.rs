//! A dataset opened for work, and the one lifecycle every recorded run
//! follows: start a run record, do the work until it ends or the process is
//! asked to stop, record how it ended, notify. Also what selects the work:
//! the config file and catalog ([`Global`]), the dataset and window
//! ([`Selection`] → [`Resolved`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::{Catalog, DatasetRow, RunId, RunOutcome, RunSummary, SharedCatalog};
use crate::config::{Config, Dataset, Overrides};
use crate::error::{Error, Result};
use crate::location::OpenLocation;
use crate::slot::Window;
use crate::store;

/// Whether a run's end is posted to a webhook.
#[derive(Debug, Clone, Default)]
pub enum Notify {
    #[default]
    Never,
    /// To this URL (the command line's), else the dataset's `notify_webhook`.
    Webhook(Option<String>),
}

/// A dataset opened for work: catalog registered, stores connected.
pub struct Session {
    pub resolved: Resolved,
    pub db: SharedCatalog,
    pub row: DatasetRow,
    pub targets: Vec<OpenLocation>,
}

impl Session {
    pub async fn open(resolved: Resolved) -> Result<Session> {
        let mut catalog = Catalog::open(&resolved.config.catalog)?;
        let row = catalog.ensure_dataset(&resolved.ds)?;
        let mut targets = Vec::new();
        for location in &row.locations {
            let store = store::open(&location.url, &resolved.config.s3).await?;
            targets.push(OpenLocation {
                row: location.clone(),
                store,
            });
        }
        Ok(Session {
            resolved,
            db: SharedCatalog::new(catalog),
            row,
            targets,
        })
    }

    pub fn complement(&self) -> Option<&OpenLocation> {
        self.targets
            .iter()
            .find(|t| t.row.role == crate::config::Role::Complement)
    }

    pub fn requests(&self) -> u64 {
        self.targets
            .iter()
            .map(|t| t.store.stats().requests())
            .sum()
    }

    pub fn store_of(&self, url: &str) -> Option<Arc<dyn store::ObjectStore>> {
        self.targets
            .iter()
            .find(|t| t.row.url == url)
            .map(|t| t.store.clone())
    }

    /// Records the start of a run of `command`.
    async fn start_run(&self, global: &Global, command: &str) -> Result<RunId> {
        let window = self.resolved.window.map(|w| {
            let spec = &self.resolved.ds.spec;
            (spec.local_iso(w.first), spec.local_iso(w.last))
        });
        let (id, command, args) = (self.row.id, command.to_string(), global.args.clone());
        Ok(self
            .db
            .call(move |c| {
                c.start_run(
                    Some(id),
                    &command,
                    &args,
                    window.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                )
            })
            .await?)
    }

    /// Runs `work` as a recorded run of `command`: the run record is started
    /// first (its id is handed to the work), the work runs until it ends or
    /// SIGINT/SIGTERM arrives, and how it ended is recorded and, if asked,
    /// posted. An error is recorded as `failed` (or `interrupted`) with its
    /// message. The value and the summary are returned for the command to
    /// print; a summary with a failing outcome (a fill that stopped) then ends
    /// the command through [`failure_of`].
    pub async fn record<T, F, W>(
        &self,
        global: &Global,
        command: &str,
        notify: Notify,
        work: W,
    ) -> Result<(T, RunSummary)>
    where
        W: FnOnce(RunId) -> F,
        F: Future<Output = Result<(T, RunSummary)>>,
    {
        let run = self.start_run(global, command).await?;
        let result = until_interrupted(work(run)).await;
        let summary = match &result {
            Ok((_, summary)) => summary.clone(),
            Err(e) => RunSummary {
                outcome: match e {
                    Error::Interrupted => RunOutcome::Interrupted,
                    _ => RunOutcome::Failed,
                },
                error: Some(crate::redact::one_line(&e.to_string())),
                ..RunSummary::default()
            },
        };
        let recorded = summary.clone();
        self.db.call(move |c| c.finish_run(run, &recorded)).await?;
        if let (Notify::Webhook(flag), Some(window)) = (&notify, self.resolved.window)
            && summary.outcome != RunOutcome::DryRun
        {
            self.notify(flag.as_deref(), window, command, &summary)
                .await;
        }
        let (value, summary) = result?;
        Ok((value, summary))
    }

    /// Posts a run's summary to the webhook given on the command line or in
    /// the config, if any; a failing webhook is only a warning.
    async fn notify(
        &self,
        flag: Option<&str>,
        window: Window,
        command: &str,
        summary: &RunSummary,
    ) {
        let ds = &self.resolved.ds;
        if let Some(url) = flag.or(ds.notify_webhook.as_deref()) {
            let note = crate::notify::Summary::new(ds, window, command, summary);
            crate::notify::send(url, &note).await;
        }
    }
}

/// The error a run with a failing outcome ends the command with.
pub fn failure_of(summary: &RunSummary) -> Option<Error> {
    summary.outcome.is_failure().then(|| {
        Error::Runtime(
            summary
                .error
                .clone()
                .unwrap_or_else(|| format!("the run ended {}", summary.outcome)),
        )
    })
}

/// Runs a future until it ends or the process is asked to stop (SIGINT, SIGTERM).
/// Work in flight is dropped; what was committed stays, and a rerun resumes.
pub async fn until_interrupted<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let stop = stop_signal();
    tokio::select! {
        result = work => result,
        () = stop => Err(Error::Interrupted),
    }
}

/// Completes when the process receives SIGINT or SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled, so a
/// signal that arrives in between is not lost (nor does it kill the process).
pub fn stop_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async fn received(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async move {
            tokio::select! {
                () = received(terminate) => {}
                () = received(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Options every command shares.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub config: PathBuf,
    /// The command line with secrets removed, for the runs table.
    pub args: String,
    /// Overrides the config file's catalog path.
    pub catalog: Option<PathBuf>,
}

/// Which dataset and window a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub dataset: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub overrides: Overrides,
}

/// The configured dataset and its resolved window.
pub struct Resolved {
    pub config: Config,
    pub ds: Dataset,
    pub window: Option<Window>,
}

impl Global {
    /// The config file, with `--catalog` applied.
    pub fn load_config(&self) -> Result<Config> {
        let mut config = Config::load(&self.config)?;
        if let Some(catalog) = &self.catalog {
            config.catalog = catalog.clone();
        }
        Ok(config)
    }

    /// The catalog: `--catalog`, else the config file's (read only when needed).
    pub fn catalog_path(&self) -> Result<PathBuf> {
        match &self.catalog {
            Some(path) => Ok(path.clone()),
            None => Ok(Config::load(&self.config)?.catalog),
        }
    }
}

pub fn resolve(global: &Global, sel: &Selection) -> Result<Resolved> {
    let config = global.load_config()?;
    let ds = config.dataset(&sel.dataset, &sel.overrides)?;
    if let Some(webhook) = &ds.notify_webhook {
        crate::redact::register_secret(webhook);
    }
    let window = parse_window(&ds, sel.start.as_deref(), sel.end.as_deref())?;
    Ok(Resolved { config, ds, window })
}

/// `--start` and `--end` in a dataset's slots and offset: both, or neither.
pub fn parse_window(
    ds: &Dataset,
    start: Option<&str>,
    end: Option<&str>,
) -> Result<Option<Window>> {
    match (start, end) {
        (Some(start), Some(end)) => Ok(Some(Window::parse(
            &ds.spec,
            start,
            end,
            crate::clock::now(),
        )?)),
        (None, None) => Ok(None),
        _ => Err(Error::Usage(
            "give both --start and --end, or neither".to_string(),
        )),
    }
}

pub fn require_window(resolved: &Resolved) -> Result<Window> {
    resolved.window.ok_or_else(|| {
        Error::Usage(
            "this command needs --start and --end (e.g. --start -3d --end -2d)".to_string(),
        )
    })
}
