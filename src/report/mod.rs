//! Reports: the gaps listing, canned SQL queries, the coverage heatmap and output formats.

pub mod format;
pub mod gaps;
pub mod heatmap;
pub mod query;

pub use format::Format;

use thiserror::Error;

use crate::catalog::{CatalogError, QueryError};

/// What can go wrong while writing a report.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A statement given to `slotfill sql` that the catalog refused (the caller's mistake).
    #[error(transparent)]
    Query(QueryError),
    /// The output (a pipe, a file) could not be written.
    #[error("cannot write {what}: {source}")]
    Output {
        what: &'static str,
        source: std::io::Error,
    },
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;
