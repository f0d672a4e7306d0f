//! `slotfill promote`: copy the complement's objects into the mirror (the
//! primary, or another collector location), never clobbering what is there.
//!
//! This is the only command that writes to a primary or backup location, and
//! it writes there only conditionally (see [`crate::promote`]).

use crate::catalog::{RunOutcome, RunSummary};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::location::OpenLocation;
use crate::promote::{PromoteError, PromoteOptions, PromoteReport};
use crate::text::plural;

use crate::run::{
    Global, Notify, Outcome, Selection, Session, failure_of, require_complement, require_window,
    resolve,
};

/// How many skipped or failed slots are named.
const NAMED: usize = 20;

#[derive(Debug, Clone, Default)]
pub struct PromoteCommand {
    pub selection: Selection,
    /// `primary` (the default), `backup` (the only backup), or a configured location's URL.
    pub into: Option<String>,
    pub replace_invalid: bool,
    pub concurrency: usize,
    pub dry_run: bool,
    pub progress: bool,
}

pub async fn promote(global: &Global, cmd: &PromoteCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    require_complement(&resolved.ds)?;
    let target_url = target_location(&resolved.ds, cmd.into.as_deref())?;
    let session = Session::open(resolved).await?;
    let (complement, target) = targets(&session, &target_url)?;
    let range = (window.first, window.last);
    let id = session.row.id;
    let catalogued = session
        .db
        .call(move |c| c.slot_states(id, range))
        .await?
        .total();
    if catalogued == 0 {
        let spec = &session.resolved.ds.spec;
        let (start, end) = (spec.local_iso(window.first), spec.local_iso(window.last));
        return Err(Error::Usage(format!(
            "no slot of {name} from {start} to {end} was ever scanned, so slotfill cannot tell what to promote; run `slotfill verify --dataset {name} --start {start} --end {end}` first",
            name = session.resolved.ds.name
        )));
    }
    let options = PromoteOptions {
        window,
        replace_invalid: cmd.replace_invalid,
        concurrency: cmd.concurrency.max(1),
        dry_run: cmd.dry_run,
        progress: cmd.progress,
    };
    let (session, complement, target, options) = (&session, &complement, &target, &options);
    let (report, summary) = session
        .record(global, "promote", Notify::Never, |run| async move {
            let report = crate::promote::promote(
                &session.db,
                &session.resolved.ds,
                &session.row,
                complement,
                target,
                Some(run),
                options,
            )
            .await
            .map_err(into_error)?;
            let summary = RunSummary {
                outcome: if cmd.dry_run {
                    RunOutcome::DryRun
                } else if report.stopped.is_some() {
                    RunOutcome::Stopped
                } else if report.failed.is_empty() {
                    RunOutcome::Ok
                } else {
                    RunOutcome::Failed
                },
                slots: Some(report.candidates.len() as u64),
                filled: Some(report.promoted()),
                requests: Some(session.requests()),
                error: failure(&report),
                ..Default::default()
            };
            Ok((report, summary))
        })
        .await?;
    print!("{}", describe(session, target, options, &report));
    match failure_of(&summary) {
        Some(e) => Err(e),
        None => Ok(Outcome::OK),
    }
}

fn into_error(e: PromoteError) -> Error {
    match e {
        PromoteError::Catalog(e) => Error::Catalog(e),
        PromoteError::Store(e) => Error::Store(e),
    }
}

/// A promote that lost its lease, and copies that failed (after the store's
/// own retries), fail the run; skipped slots (someone wrote meanwhile, an
/// invalid object kept) do not.
fn failure(report: &PromoteReport) -> Option<String> {
    if let Some(stopped) = &report.stopped {
        return Some(format!(
            "{stopped} ({} not promoted; promote again once the other process is done)",
            plural(report.unfinished(), "slot")
        ));
    }
    let (_, cause) = report.failed.last()?;
    Some(format!(
        "{} could not be promoted: {cause}",
        plural(report.failed.len() as u64, "slot")
    ))
}

/// The location `--into` names: the primary by default, or a configured
/// collector location. Anything else is refused before the catalog is opened:
/// promote writes only where the dataset says its mirror is.
fn target_location(ds: &crate::config::Dataset, into: Option<&str>) -> Result<String> {
    let collectors: Vec<&(Role, String)> = ds
        .locations
        .iter()
        .filter(|(role, _)| role.is_collector())
        .collect();
    let of_role = |want: Role| collectors.iter().filter(move |(role, _)| *role == want);
    let named = match into.unwrap_or("primary") {
        "primary" => of_role(Role::Primary).next().map(|(_, url)| url.clone()),
        "backup" => {
            let backups: Vec<_> = of_role(Role::Backup).collect();
            match backups.as_slice() {
                [(_, url)] => Some(url.clone()),
                [] => None,
                _ => {
                    return Err(Error::Usage(format!(
                        "dataset {} has {} backups; name one with --into URL",
                        ds.name,
                        backups.len()
                    )));
                }
            }
        }
        url => {
            let url = crate::config::normalize_location(url).map_err(Error::Usage)?;
            collectors
                .iter()
                .find(|(_, configured)| *configured == url)
                .map(|(_, configured)| configured.clone())
        }
    };
    named.ok_or_else(|| {
        let known: Vec<String> = collectors
            .iter()
            .map(|(role, url)| format!("{} {url}", role.as_str()))
            .collect();
        Error::Usage(format!(
            "--into {:?} is not a primary or backup location of dataset {} ({}); promote writes only into the dataset's configured mirror",
            into.unwrap_or("primary"),
            ds.name,
            known.join(", ")
        ))
    })
}

fn targets(session: &Session, target_url: &str) -> Result<(OpenLocation, OpenLocation)> {
    let complement = session
        .complement()
        .cloned()
        .ok_or_else(|| Error::Usage("the dataset has no complement location".to_string()))?;
    let target = session
        .targets
        .iter()
        .find(|t| t.row.url == target_url)
        .cloned()
        .ok_or_else(|| Error::Usage(format!("location {target_url} is not catalogued")))?;
    Ok((complement, target))
}

/// What the promote did, for people.
fn describe(
    session: &Session,
    target: &OpenLocation,
    options: &PromoteOptions,
    r: &PromoteReport,
) -> String {
    let ds = &session.resolved.ds;
    let spec = &ds.spec;
    let mut out = format!(
        "promote {} into {} ({}) from {} to {}: {} ok only through the complement\n",
        ds.name,
        target.row.url,
        target.row.role.as_str(),
        spec.local_iso(options.window.first),
        spec.local_iso(options.window.last),
        plural(r.candidates.len() as u64, "slot"),
    );
    if options.dry_run {
        for (slot, action) in r.planned.iter().take(NAMED) {
            out.push_str(&format!("  {} {action}\n", spec.local_iso(*slot)));
        }
        if r.planned.len() > NAMED {
            out.push_str(&format!("  … and {} more\n", r.planned.len() - NAMED));
        }
        out.push_str(&format!(
            "dry run: nothing copied; {} would be promoted, {} skipped\n",
            plural(r.planned.len() as u64, "slot"),
            r.skipped.len()
        ));
    } else {
        out.push_str(&format!(
            "promoted {} ({} copied server-side, {} streamed, {} found already copied by an interrupted promote; {} replaced an invalid object), {}\n",
            plural(r.promoted(), "slot"),
            r.copied,
            r.streamed,
            r.found,
            r.replaced,
            plural(r.bytes, "byte"),
        ));
    }
    if !r.skipped.is_empty() {
        out.push_str(&format!("skipped {}:\n", r.skipped.len()));
        for (slot, why) in r.skipped.iter().take(NAMED) {
            out.push_str(&format!("  {}: {why}\n", spec.local_iso(*slot)));
        }
        if r.skipped.len() > NAMED {
            out.push_str(&format!("  … and {} more\n", r.skipped.len() - NAMED));
        }
    }
    if !r.failed.is_empty() {
        out.push_str(&format!("failed {}:\n", r.failed.len()));
        for (slot, why) in r.failed.iter().take(NAMED) {
            out.push_str(&format!("  {}: {why}\n", spec.local_iso(*slot)));
        }
    }
    if let Some(stopped) = &r.stopped {
        out.push_str(&format!(
            "stopped early: {stopped}; {} not promoted\n",
            plural(r.unfinished(), "slot")
        ));
    }
    out
}
