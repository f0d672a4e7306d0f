//! The commands: each a plain async function over its options, called by the CLI.
//!
//! This layer opens what a command needs (config, catalog, stores), records a
//! run in the catalog, calls the pipeline stages, and prints for people.

pub mod demo;
pub mod fill;
pub mod gaps;
mod promote;
mod report;
pub mod run;
pub mod scan;
mod session;
pub mod verify;

use std::path::PathBuf;

use crate::config::{Config, Dataset, Overrides};
use crate::error::{Error, Result};
use crate::slot::Window;

pub use crate::source::open::SourceFlags;
pub use fill::{FillCommand, FillFlags, fill};
pub use gaps::{GapsOptions, gaps, status};
pub use promote::{PromoteCommand, promote};
pub use report::{ReportCommand, report, sql};
pub use run::{RunCommand, run};
pub use scan::{ScanCommand, scan};
pub use session::{Notify, Session};
pub use verify::{VerifyCommand, verify};

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

/// What a command finished with; `exit_code` is 0 or 3 (gaps remain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
}

impl Outcome {
    pub const OK: Outcome = Outcome { exit_code: 0 };
}

impl From<crate::catalog::RunOutcome> for Outcome {
    fn from(outcome: crate::catalog::RunOutcome) -> Self {
        Outcome {
            exit_code: crate::error::exit_code(outcome),
        }
    }
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
