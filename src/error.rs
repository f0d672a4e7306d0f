//! The one error type commands return, and the exit codes it maps to.
//!
//! Exit codes are a contract (scripts and cron alerting depend on them):
//! 0 success, 1 runtime failure, 2 usage or configuration error,
//! 3 gaps remain (verify and run).

use thiserror::Error;

use crate::catalog::{CatalogError, RunOutcome};
use crate::config::ConfigError;
use crate::scan::ScanError;
use crate::slot::SlotError;
use crate::source::SourceError;
use crate::store::StoreError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_GAPS_REMAIN: i32 = 3;
/// Stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
    #[error("interrupted; everything finished so far is recorded, rerun to continue")]
    Interrupted,
}

impl From<crate::fill::FillError> for Error {
    fn from(e: crate::fill::FillError) -> Self {
        use crate::fill::FillError;
        match e {
            FillError::Catalog(e) => Error::Catalog(e),
            FillError::Source(e) => Error::Source(e),
            FillError::Store(e) => Error::Store(e),
            e @ (FillError::NoComplement(_) | FillError::NeverScanned { .. }) => {
                Error::Usage(e.to_string())
            }
        }
    }
}

impl From<crate::report::ReportError> for Error {
    fn from(e: crate::report::ReportError) -> Self {
        use crate::report::ReportError;
        match e {
            ReportError::Catalog(e) => Error::Catalog(e),
            ReportError::Query(e) => Error::Usage(e.to_string()),
            e @ ReportError::Output { .. } => Error::Runtime(e.to_string()),
        }
    }
}

impl From<ScanError> for Error {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Store(e) => Error::Store(e),
            ScanError::Catalog(e) => Error::Catalog(e),
            other => Error::Runtime(other.to_string()),
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Slot(_) | Error::Usage(_) => EXIT_USAGE,
            Error::Catalog(e) => match e {
                CatalogError::Sql(_) | CatalogError::Lease(_) => EXIT_FAILURE,
                _ => EXIT_USAGE,
            },
            Error::Store(e) if e.is_configuration() => EXIT_USAGE,
            Error::Source(e) if e.is_configuration() => EXIT_USAGE,
            Error::Store(_) | Error::Source(_) | Error::Runtime(_) => EXIT_FAILURE,
            Error::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

/// The exit status of a command that ran to its end with this outcome.
pub fn exit_code(outcome: RunOutcome) -> i32 {
    match outcome {
        RunOutcome::Ok | RunOutcome::DryRun => EXIT_OK,
        RunOutcome::GapsRemain => EXIT_GAPS_REMAIN,
        RunOutcome::Stopped | RunOutcome::Failed => EXIT_FAILURE,
        RunOutcome::Interrupted => EXIT_INTERRUPTED,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
