//! `slotfill scan`

use crate::catalog::RunOutcome;
use crate::error::Result;
use crate::run::{
    Global, Notify, Outcome, Selection, Session, require_window, resolve, run_scan, scan_summary,
};
use crate::scan::{ScanOptions, ScanReport};
use crate::state::State;
use crate::text::plural;

#[derive(Debug, Clone, Default)]
pub struct ScanCommand {
    pub selection: Selection,
    pub concurrency: usize,
    pub progress: bool,
}

pub async fn scan(global: &Global, cmd: &ScanCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    let session = Session::open(resolved).await?;
    let options = ScanOptions {
        window,
        concurrency: cmd.concurrency,
        progress: cmd.progress,
    };
    let (report, summary) = session
        .record(global, "scan", Notify::Never, |_| async {
            let report = run_scan(&session, &options).await?;
            let summary = scan_summary(&report, RunOutcome::Ok);
            Ok((report, summary))
        })
        .await?;
    print!("{}", describe(&session, &report));
    Ok(summary.outcome.into())
}

/// The one-screen summary printed after a scan.
pub fn describe(session: &Session, r: &ScanReport) -> String {
    let ds = &session.resolved.ds;
    let mut out = String::new();
    let window = session.resolved.window.expect("scan has a window");
    out.push_str(&format!(
        "scanned {} from {} to {} ({}, {} listed)\n",
        ds.name,
        ds.spec.local_iso(window.first),
        ds.spec.local_iso(window.last),
        plural(session.targets.len() as u64, "location"),
        plural(r.day_prefixes_listed, "day prefix")
    ));
    out.push_str(&format!(
        "slots: {} total, {} ok, {} not ok\n",
        r.slots.total(),
        r.slots.get(State::Ok),
        r.slots.gaps()
    ));
    for state in State::ALL.into_iter().filter(|s| *s != State::Ok) {
        let n = r.slots.get(state);
        if n > 0 {
            out.push_str(&format!("  {state:<15} {n}\n"));
        }
    }
    out.push_str(&format!(
        "objects: {} listed, {} counted ({}), {} unchanged, {} too small by size, {} gone, {} foreign keys\n",
        r.objects_listed,
        r.objects_counted,
        human_bytes(r.bytes_read),
        r.unchanged,
        r.too_small_from_listing,
        r.gone,
        r.foreign_keys
    ));
    if r.not_needed > 0 {
        out.push_str(&format!(
            "not checked: {} whose slot an earlier location already makes ok (--all-locations counts them)\n",
            plural(r.not_needed, "object")
        ));
    }
    if r.outside_window > 0 {
        out.push_str(&format!(
            "outside the window: {} listed with a day prefix, recorded but not counted\n",
            plural(r.outside_window, "object")
        ));
    }
    out.push_str(&format!("requests: {}\n", r.requests));
    out
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
