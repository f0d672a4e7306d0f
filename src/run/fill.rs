//! The one way to open a recorded fill from the settings a front end built once: check the dataset and the origin's scope before the
//! catalog is touched, open the session, build the origin's client.

use std::sync::Arc;

use crate::catalog::{RunId, RunOutcome, RunSummary};
use crate::config::Dataset;
use crate::error::{Error, Result};
use crate::fill::{FillOptions, FillReport, FillSettings};
use crate::slot::Window;
use crate::source::NoteSource;
use crate::source::open::{self as source, SourceFlags};

use super::{Global, Notify, Resolved, Session};

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
    pub async fn open(
        resolved: Resolved,
        window: Window,
        settings: &FillSettings,
        origin: &SourceFlags,
    ) -> Result<Self> {
        require_complement(&resolved.ds)?;
        let plan = source::plan(&resolved.ds.name, &resolved.ds.source, origin)?;
        let session = Session::open(resolved).await?;
        let source = source::build(&plan, &session.resolved.config.s3).await?;
        let options = FillOptions {
            window,
            filter: plan.filter.clone(),
            settings: FillSettings {
                concurrency: settings.concurrency.max(1),
                max_consecutive_failures: settings.max_consecutive_failures.max(1),
                ..settings.clone()
            },
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

    /// Fills as a recorded `fill` run (the run lifecycle of
    /// [`Session::record`]); `started` learns the run's id first.
    pub async fn record(
        &self,
        global: &Global,
        notify: Notify,
        started: impl FnOnce(RunId),
    ) -> Result<(FillReport, RunSummary)> {
        self.session
            .record(global, "fill", notify, |run| {
                started(run);
                async move {
                    let report = self.fill(Some(run)).await?;
                    let summary = RunSummary {
                        requests: Some(self.session.requests()),
                        ..fill_summary(&report, &self.options)
                    };
                    Ok((report, summary))
                }
            })
            .await
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
    let outcome = if options.settings.dry_run {
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
