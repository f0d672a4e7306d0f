//! `slotfill fill`: complement the catalog's missing slots from the origin.

use crate::error::Result;
use crate::fill::{FillOptions, FillReport};
use crate::run::{
    FillSettings, Global, Notify, OpenedFill, Outcome, Selection, Session, failure_of,
    require_window, resolve,
};
use crate::source::open::SourceFlags;
use crate::text::{name_some, plural};

#[derive(Debug, Clone, Default)]
pub struct FillCommand {
    pub selection: Selection,
    pub settings: FillSettings,
    /// Overrides of the origin's settings.
    pub origin: SourceFlags,
}

pub async fn fill(global: &Global, cmd: &FillCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    let opened = OpenedFill::open(resolved, window, &cmd.settings, &cmd.origin).await?;
    let (report, summary) = opened.record(global, Notify::Never, |_| {}).await?;
    print!("{}", describe(&opened.session, &opened.options, &report));
    match failure_of(&summary) {
        Some(e) => Err(e),
        None => Ok(summary.outcome.into()),
    }
}

/// What the fill did, for people.
pub fn describe(session: &Session, options: &FillOptions, r: &FillReport) -> String {
    let ds = &session.resolved.ds;
    let spec = &ds.spec;
    let mut out = String::new();
    let order = if options.settings.newest_first {
        "newest first"
    } else {
        "oldest first"
    };
    let limit = options
        .settings
        .max_slots
        .map(|n| format!(", at most {n}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "fill {}: {} to fill from {} to {} ({order}{limit})\n",
        ds.name,
        plural(r.candidates.len() as u64, "slot"),
        spec.local_iso(options.window.first),
        spec.local_iso(options.window.last),
    ));
    if r.unscanned > 0 {
        out.push_str(&format!(
            "note: {} of the window never scanned, so not considered; `slotfill scan --dataset {} --start … --end …` catalogues them\n",
            plural(r.unscanned, "slot"),
            ds.name
        ));
    }
    if options.settings.dry_run {
        for c in r.candidates.iter().take(20) {
            out.push_str(&format!("  {} {}\n", c.start_local, c.state));
        }
        if r.candidates.len() > 20 {
            out.push_str(&format!("  … and {} more\n", r.candidates.len() - 20));
        }
        out.push_str(&format!(
            "dry run: nothing fetched; expected at least {} notes in at least {} origin calls, {} at --sleep {} s and --concurrency {} (a lower bound: estimated from the neighbouring valid slots and each slot's own invalid object)\n",
            r.estimate.notes,
            r.estimate.calls,
            crate::fill::plan::describe_duration(r.estimate.duration),
            r.estimate.interval.as_secs_f64(),
            options.settings.concurrency
        ));
        return out;
    }
    out.push_str(&format!(
        "filled {} ({}), found {} already written, {} partial, {} confirmed empty, {} failed\n",
        r.filled,
        plural(r.notes, "note"),
        r.exists,
        r.partial,
        r.empty,
        r.failed
    ));
    let per_slot = (r.origin_calls - r.probe_calls) as f64 / r.attempted().max(1) as f64;
    let before = if r.probe_calls > 0 {
        format!("{} before the first slot, ", r.probe_calls)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "origin calls: {} ({before}{per_slot:.1} per slot), retries: {}\n",
        r.origin_calls, r.retries
    ));
    for c in &r.calibrations {
        out.push_str(&format!("calibration: {}\n", describe_calibration(c)));
    }
    if r.blocked > 0 {
        out.push_str(&format!(
            "not filled: {} whose day's calibration found the origin blind there; nothing was sealed on its answers\n",
            plural(r.blocked, "slot")
        ));
    }
    if r.left_out > 0 {
        out.push_str(&format!(
            "{} left out by the visibility policy\n",
            plural(r.left_out, "note")
        ));
    }
    if r.out_of_scope > 0 {
        out.push_str(&format!(
            "{} left out by the host or text filter\n",
            plural(r.out_of_scope, "note")
        ));
    }
    if r.filled > 0 {
        out.push_str(&format!(
            "coverage: earliest note on average {:.1} s after the slot start\n",
            r.coverage_seconds_total / r.filled as f64
        ));
    }
    if let Some(limit) = options.settings.thin_coverage_seconds {
        out.push_str(&format!(
            "thin coverage: {} {} more than {limit} s after the slot start\n",
            plural(r.thin, "filled slot"),
            if r.thin == 1 { "starts" } else { "start" }
        ));
    }
    if r.empty > 0 {
        let named: Vec<String> = r.empty_slots.iter().map(|s| spec.local_iso(*s)).collect();
        out.push_str(&format!(
            "{} confirmed empty at the origin (recorded as zero-line objects, re-checked after {}): {}\n",
            plural(r.empty, "slot"),
            crate::config::format_duration(ds.empty_recheck_after),
            name_some(&named, r.empty)
        ));
    }
    if let Some(neighbours) = r.suspicious_empty {
        out.push_str(&format!(
            "warning: {} of {} slots came back empty while their neighbours hold about {neighbours:.0} notes each; check the source's settings (mode or timeline, host, token)\n",
            r.empty,
            r.attempted()
        ));
    }
    if let Some(stopped) = &r.stopped {
        out.push_str(&format!("stopped early: {stopped}\n"));
    }
    out
}

/// One calibration, for people.
fn describe_calibration(c: &crate::fill::Calibration) -> String {
    let reference = c
        .reference
        .as_deref()
        .map(|r| {
            format!(
                " (archived slot {r}, {})",
                plural(c.origin_calls, "origin call")
            )
        })
        .unwrap_or_default();
    format!("{}: {}{reference}", c.verdict.as_str(), c.message)
}
