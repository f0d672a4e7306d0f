//! A scan of the session's locations, and how it is recorded.

use crate::catalog::{RunOutcome, RunSummary};
use crate::error::Result;
use crate::scan::{ScanOptions, ScanReport};

use super::Session;

/// Scans the session's locations over `options.window`.
pub async fn run_scan(session: &Session, options: &ScanOptions) -> Result<ScanReport> {
    Ok(crate::scan::scan(
        &session.db,
        &session.resolved.ds,
        &session.row,
        &session.targets,
        options,
    )
    .await?)
}

/// A scan's counts for the runs table.
pub fn scan_summary(report: &ScanReport, outcome: RunOutcome) -> RunSummary {
    RunSummary {
        outcome,
        slots: Some(report.slots.total()),
        missing_before: Some(report.slots.gaps()),
        still_missing: Some(report.slots.gaps()),
        requests: Some(report.requests),
        downloads: Some(report.objects_counted),
        bytes_read: Some(report.bytes_read),
        ..Default::default()
    }
}
