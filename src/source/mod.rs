//! Origin sources: where missing notes are fetched from.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Origin(String),
}

impl SourceError {
    pub fn is_configuration(&self) -> bool {
        matches!(self, SourceError::Config(_))
    }
}
