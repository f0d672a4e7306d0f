//! The settings of a fill, built once by each front end, and the one way to
//! open a recorded fill: check the dataset and the origin's scope before the
//! catalog is touched, open the session, build the origin's client.

use std::sync::Arc;

use crate::catalog::{RunId, RunOutcome, RunSummary};
use crate::config::Dataset;
use crate::error::{Error, Result};
use crate::fill::{FillOptions, FillReport};
use crate::slot::Window;
use crate::source::NoteSource;
use crate::source::open::{self as source, SourceFlags};

use super::{Resolved, Session};

/// How a fill is carried out: what the command line (or serve) chose, with
/// the defaults of [`crate::defaults`] for the rest.
#[derive(Debug, Clone)]
pub struct FillSettings {
    pub max_slots: Option<u64>,
    pub newest_first: bool,
    pub concurrency: usize,
    pub overwrite: bool,
    pub retry_empty: bool,
    pub dry_run: bool,
    pub sub_slot_seconds: Option<u32>,
    pub early_coverage_seconds: Option<f64>,
    pub max_consecutive_failures: u32,
    pub progress: bool,
    /// Overrides of the origin's settings.
    pub source: SourceFlags,
}

impl Default for FillSettings {
    fn default() -> Self {
        FillSettings {
            max_slots: None,
            newest_first: false,
            concurrency: crate::defaults::FILL_CONCURRENCY,
            overwrite: false,
            retry_empty: false,
            dry_run: false,
            sub_slot_seconds: None,
            early_coverage_seconds: None,
            max_consecutive_failures: crate::defaults::MAX_CONSECUTIVE_FAILURES,
            progress: false,
            source: SourceFlags::default(),
        }
    }
}

/// A fill ready to run: its session, its origin and its options.
pub struct OpenedFill {
    pub session: Session,
    pub source: Arc<dyn NoteSource>,
    pub options: FillOptions,
}

impl OpenedFill {
    /// Opens a fill of `resolved`'s window. A dataset without a complement or a
    /// scope the origin cannot honour is refused before the catalog is opened,
    /// so nothing is recorded.
    pub async fn open(resolved: Resolved, window: Window, settings: &FillSettings) -> Result<Self> {
        require_complement(&resolved.ds)?;
        let plan = source::plan(&resolved.ds.name, &resolved.ds.source, &settings.source)?;
        let session = Session::open(resolved).await?;
        let source = source::build(&plan, &session.resolved.config.s3).await?;
        let options = FillOptions {
            window,
            max_slots: settings.max_slots,
            newest_first: settings.newest_first,
            concurrency: settings.concurrency.max(1),
            overwrite: settings.overwrite,
            retry_empty: settings.retry_empty,
            dry_run: settings.dry_run,
            sub_slot_seconds: settings.sub_slot_seconds,
            filter: plan.filter.clone(),
            max_consecutive_failures: settings.max_consecutive_failures.max(1),
            progress: settings.progress,
            thin_coverage_seconds: settings.early_coverage_seconds,
        };
        Ok(OpenedFill {
            session,
            source,
            options,
        })
    }

    /// Fills the missing slots of the window, as run `run` if recorded.
    pub async fn fill(&self, run: Option<RunId>) -> Result<FillReport> {
        run_fill(&self.session, self.source.clone(), run, &self.options).await
    }
}

/// Refuses a dataset without a complement location before anything is opened or recorded.
pub fn require_complement(ds: &Dataset) -> Result<()> {
    match ds.complement() {
        Some(_) => Ok(()),
        None => Err(Error::Usage(
            crate::fill::FillError::NoComplement(ds.name.clone()).to_string(),
        )),
    }
}

/// Fills the session's missing slots from `source`.
pub async fn run_fill(
    session: &Session,
    source: Arc<dyn NoteSource>,
    run: Option<RunId>,
    options: &FillOptions,
) -> Result<FillReport> {
    crate::fill::fill(
        &session.db,
        &session.resolved.ds,
        &session.row,
        &session.targets,
        source,
        run,
        options,
    )
    .await
    .map_err(Error::from)
}

/// How a fill ended, for the runs table: a fill that stopped, or whose every
/// attempted slot failed, failed.
pub fn fill_summary(report: &FillReport, options: &FillOptions) -> RunSummary {
    let outcome = if options.dry_run {
        RunOutcome::DryRun
    } else if report.stopped.is_some() {
        RunOutcome::Stopped
    } else if report.failure().is_some() {
        RunOutcome::Failed
    } else {
        RunOutcome::Ok
    };
    RunSummary {
        outcome,
        missing_before: Some(report.candidates.len() as u64),
        filled: Some(report.completed()),
        origin_calls: Some(report.origin_calls),
        error: report.failure(),
        ..Default::default()
    }
}
