//! `slotfill run`: scan → fill → verify, the nightly job ([`crate::run::pipeline`]).

use crate::error::Result;
use crate::run::{
    FillSettings, Global, Notify, OpenedFill, Outcome, Selection, StageReport, Stages, failure_of,
    pipeline, require_window, resolve,
};
use crate::source::open::SourceFlags;

#[derive(Debug, Clone, Default)]
pub struct RunCommand {
    pub selection: Selection,
    pub fill: FillSettings,
    /// Overrides of the origin's settings.
    pub origin: SourceFlags,
    pub scan_concurrency: usize,
    pub notify_webhook: Option<String>,
}

pub async fn run(global: &Global, cmd: &RunCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    let opened = OpenedFill::open(resolved, window, &cmd.fill, &cmd.origin).await?;
    let OpenedFill {
        session,
        source,
        options,
    } = &opened;
    let stages = Stages {
        scan_concurrency: cmd.scan_concurrency,
        progress: cmd.fill.progress,
    };
    let notify = Notify::Webhook(cmd.notify_webhook.clone());
    let (_, summary) = session
        .record(global, "run", notify, |run| async move {
            let summary = pipeline(session, source.clone(), run, options, &stages, |stage| {
                print!("{}", describe(session, options, stage))
            })
            .await?;
            Ok(((), summary))
        })
        .await?;
    match failure_of(&summary) {
        Some(e) => Err(e),
        None => Ok(summary.outcome.into()),
    }
}

/// A finished stage, for people: each command's own description of it.
fn describe(
    session: &crate::run::Session,
    options: &crate::fill::FillOptions,
    stage: StageReport<'_>,
) -> String {
    match stage {
        StageReport::Scanned(report) => super::scan::describe(session, report),
        StageReport::Filled(report) => super::fill::describe(session, options, report),
        StageReport::Verified(verdict) => super::verify::describe(session, options.window, verdict),
    }
}
