//! `slotfill verify`: rescan every location (incrementally) and report what is still not ok.

use std::collections::BTreeMap;

use crate::catalog::{RunSummary, SlotRow};
use crate::error::{EXIT_GAPS_REMAIN, Result};
use crate::report::format::plural;
use crate::scan::ScanOptions;
use crate::slot::Window;
use crate::state::State;

use super::scan::run_scan;
use super::{Global, Outcome, Selection, Session, require_window, resolve};

/// How many not-ok slots verify lists by name.
pub const LISTED: usize = 20;

#[derive(Debug, Clone, Default)]
pub struct VerifyCommand {
    pub selection: Selection,
    pub concurrency: usize,
    pub progress: bool,
    pub notify_webhook: Option<String>,
}

/// The verdict of a verification.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub slots: u64,
    pub ok_by_role: BTreeMap<String, u64>,
    pub not_ok: u64,
    pub first: Vec<SlotRow>,
}

pub async fn verify(global: &Global, cmd: &VerifyCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    let session = Session::open(resolved).await?;
    let run = session.start_run(global, "verify").await?;
    let result = verify_window(&session, window, cmd.concurrency, cmd.progress).await;
    let summary = match &result {
        Ok(v) => RunSummary {
            outcome: if v.not_ok > 0 { "gaps_remain" } else { "ok" }.to_string(),
            slots: Some(v.slots),
            still_missing: Some(v.not_ok),
            requests: Some(session.requests()),
            ..Default::default()
        },
        Err(_) => RunSummary::default(),
    };
    session.finish_run(run, &result, summary.clone()).await?;
    let verdict = result?;
    print!("{}", describe(&session, window, &verdict));
    session
        .notify(cmd.notify_webhook.as_deref(), window, "verify", &summary)
        .await;
    Ok(Outcome {
        exit_code: if verdict.not_ok > 0 {
            EXIT_GAPS_REMAIN
        } else {
            0
        },
    })
}

/// Rescans and collects the verdict for a window.
pub async fn verify_window(
    session: &Session,
    window: Window,
    concurrency: usize,
    progress: bool,
) -> Result<Verdict> {
    let options = ScanOptions {
        window,
        concurrency,
        progress,
    };
    let report = run_scan(session, &options).await?;
    let id = session.row.id;
    let range = (window.first, window.last);
    let (ok_by_role, first) = session
        .db
        .call(move |c| {
            let roles = c.ok_by_role(id, range)?;
            let mut first = Vec::new();
            c.visit_slots(id, range, true, |row| {
                if first.len() < LISTED {
                    first.push(row);
                }
                Ok(())
            })?;
            Ok::<_, crate::catalog::CatalogError>((roles, first))
        })
        .await?;
    Ok(Verdict {
        slots: report.slots.total(),
        ok_by_role,
        not_ok: report.slots.not_ok(),
        first,
    })
}

pub fn describe(session: &Session, window: Window, v: &Verdict) -> String {
    let ds = &session.resolved.ds;
    let roles = v
        .ok_by_role
        .iter()
        .map(|(role, n)| format!("{role} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "verify {} from {} to {}: {}, {} ok ({roles}), {} still not ok\n",
        ds.name,
        ds.spec.local_iso(window.first),
        ds.spec.local_iso(window.last),
        plural(v.slots, "slot"),
        v.slots - v.not_ok,
        v.not_ok
    );
    let mut by_reason: BTreeMap<State, Vec<&str>> = BTreeMap::new();
    for row in &v.first {
        by_reason
            .entry(row.state)
            .or_default()
            .push(&row.start_local);
    }
    for (state, slots) in by_reason {
        out.push_str(&format!("  {state}: {}\n", slots.join(", ")));
    }
    if v.not_ok as usize > v.first.len() {
        out.push_str(&format!(
            "  … {} more; `slotfill gaps --dataset {}` lists them all\n",
            v.not_ok as usize - v.first.len(),
            ds.name
        ));
    }
    out
}
