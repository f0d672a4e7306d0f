//! The commands: each a plain async function over its options, called by the CLI.
//!
//! This layer opens what a command needs (config, catalog, stores), records a
//! run in the catalog, calls the pipeline stages, and prints for people.

pub mod fill;
pub mod gaps;
mod report;
mod run;
pub mod scan;
pub mod source;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::{Catalog, DatasetRow, RunId, RunSummary, SharedCatalog};
use crate::config::{Config, Dataset, Overrides};
use crate::error::{Error, Result};
use crate::scan::ScanTarget;
use crate::slot::Window;
use crate::store;

pub use fill::{FillCommand, FillFlags, fill, fill_options, run_fill};
pub use gaps::{GapsOptions, gaps, status};
pub use report::{ReportCommand, report, sql};
pub use run::{RunCommand, RunJob, RunProgress, run};
pub use scan::{ScanCommand, run_scan, scan};
pub use source::SourceFlags;
pub use verify::{VerifyCommand, verify};

/// Runs a future until it ends or the process is asked to stop (SIGINT, SIGTERM).
/// Work in flight is dropped; what was committed stays, and a rerun resumes.
pub async fn until_interrupted<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    until_stopped(work, stop_signal()).await
}

/// Runs a future until it ends or `stop` completes; then the work in flight is
/// dropped and the result is [`Error::Interrupted`].
pub async fn until_stopped<T>(
    work: impl std::future::Future<Output = Result<T>>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<T> {
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

/// What a command finished with; `exit_code` is 0 or 3 (gaps remain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
}

impl Outcome {
    pub const OK: Outcome = Outcome { exit_code: 0 };
}

/// The configured dataset and its resolved window.
pub struct Resolved {
    pub config: Config,
    pub ds: Dataset,
    pub window: Option<Window>,
}

pub fn resolve(global: &Global, sel: &Selection) -> Result<Resolved> {
    let mut config = Config::load(&global.config)?;
    if let Some(catalog) = &global.catalog {
        config.catalog = catalog.clone();
    }
    let ds = config.dataset(&sel.dataset, &sel.overrides)?;
    if let Some(webhook) = &ds.notify_webhook {
        crate::redact::register_secret(webhook);
    }
    let window = match (&sel.start, &sel.end) {
        (Some(start), Some(end)) => Some(Window::parse(&ds.spec, start, end, crate::clock::now())?),
        (None, None) => None,
        _ => {
            return Err(Error::Usage(
                "give both --start and --end, or neither".to_string(),
            ));
        }
    };
    Ok(Resolved { config, ds, window })
}

pub fn require_window(resolved: &Resolved) -> Result<Window> {
    resolved.window.ok_or_else(|| {
        Error::Usage(
            "this command needs --start and --end (e.g. --start -3d --end -2d)".to_string(),
        )
    })
}

/// A dataset opened for work: catalog registered, stores connected.
pub struct Session {
    pub resolved: Resolved,
    pub db: SharedCatalog,
    pub row: DatasetRow,
    pub targets: Vec<ScanTarget>,
}

impl Session {
    pub async fn open(resolved: Resolved) -> Result<Session> {
        let mut catalog = Catalog::open(&resolved.config.catalog)?;
        let row = catalog.ensure_dataset(&resolved.ds)?;
        let mut targets = Vec::new();
        for location in &row.locations {
            let store = store::open(&location.url, &resolved.config.s3).await?;
            targets.push(ScanTarget {
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

    pub fn complement(&self) -> Option<&ScanTarget> {
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

    /// Records the start of a run of `command` over the session's window.
    pub async fn start_run(&self, global: &Global, command: &str) -> Result<RunId> {
        self.start_run_over(global, command, self.resolved.window)
            .await
    }

    /// Records the start of a run of `command` over `window`.
    pub async fn start_run_over(
        &self,
        global: &Global,
        command: &str,
        window: Option<Window>,
    ) -> Result<RunId> {
        let window = window.map(|w| {
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

    /// Posts a run's summary to the webhook given on the command line or in
    /// the config, if any; a failing webhook is only a warning.
    pub async fn notify(
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

    /// Records how a run ended; a failure is recorded with its message.
    pub async fn finish_run<T>(
        &self,
        run: RunId,
        result: &Result<T>,
        mut summary: RunSummary,
    ) -> Result<()> {
        if let Err(e) = result {
            // A fill that stopped keeps saying so; anything else that erred failed.
            if summary.outcome != "stopped" {
                summary.outcome = match e {
                    Error::Interrupted => "interrupted",
                    _ => "failed",
                }
                .to_string();
            }
            summary.error = Some(crate::redact::one_line(&e.to_string()));
        }
        Ok(self.db.call(move |c| c.finish_run(run, &summary)).await?)
    }
}
