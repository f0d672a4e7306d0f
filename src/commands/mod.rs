//! The commands: each a plain async function over its options, called by the CLI.
//!
//! This layer opens what a command needs (config, catalog, stores), records a
//! run in the catalog, calls the pipeline stages, and prints for people.

pub mod demo;
mod fill;
mod gaps;
mod promote;
mod report;
mod run;
mod scan;
mod session;
mod verify;

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
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        _ = terminate => Err(Error::Interrupted),
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
