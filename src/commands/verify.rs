//! `slotfill verify`: rescan every location (incrementally) and report what is still a gap.
//!
//! Confirmed-empty slots are resolved (listed apart) unless the dataset counts
//! them as gaps (`--empty-is-gap`); pending slots are never gaps.

use std::collections::BTreeMap;

use crate::catalog::{RunOutcome, RunSummary, SlotRow};
use crate::error::Result;
use crate::report::format::{name_some, plural};
use crate::scan::ScanOptions;
use crate::slot::Window;
use crate::state::State;

use super::scan::run_scan;
use super::{Global, Notify, Outcome, Selection, Session, require_window, resolve};

/// How many slots verify lists by name.
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
    /// Gap slots (with confirmed-empty ones when they count as gaps).
    pub gaps: u64,
    pub empty: u64,
    pub pending: u64,
    pub empty_is_gap: bool,
    /// The first gap slots.
    pub first: Vec<SlotRow>,
    /// The first confirmed-empty slots (when they are not gaps).
    pub first_empty: Vec<SlotRow>,
}

impl Verdict {
    pub fn outcome(&self) -> RunOutcome {
        if self.gaps > 0 {
            RunOutcome::GapsRemain
        } else {
            RunOutcome::Ok
        }
    }
}

pub async fn verify(global: &Global, cmd: &VerifyCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    let session = Session::open(resolved).await?;
    let notify = Notify::Webhook(cmd.notify_webhook.clone());
    let (verdict, summary) = session
        .record(global, "verify", notify, |_| async {
            let verdict = verify_window(&session, window, cmd.concurrency, cmd.progress).await?;
            let summary = RunSummary {
                outcome: verdict.outcome(),
                slots: Some(verdict.slots),
                still_missing: Some(verdict.gaps),
                requests: Some(session.requests()),
                ..Default::default()
            };
            Ok((verdict, summary))
        })
        .await?;
    print!("{}", describe(&session, window, &verdict));
    Ok(summary.outcome.into())
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
    let gap_states = super::gaps::included_states(&session.resolved.ds);
    let empty_is_gap = session.resolved.ds.empty_is_gap;
    let (ok_by_role, first, first_empty) = session
        .db
        .call(move |c| {
            let roles = c.ok_by_role(id, range)?;
            let first_of = |states: &[State]| {
                let mut rows = Vec::new();
                c.visit_slots(id, range, Some(states), |row| {
                    if rows.len() < LISTED {
                        rows.push(row);
                    }
                    Ok(())
                })
                .map(|()| rows)
            };
            let first = first_of(&gap_states)?;
            let first_empty = if empty_is_gap {
                Vec::new()
            } else {
                first_of(&[State::Empty])?
            };
            Ok::<_, crate::catalog::CatalogError>((roles, first, first_empty))
        })
        .await?;
    let empty = report.slots.get(State::Empty);
    Ok(Verdict {
        slots: report.slots.total(),
        ok_by_role,
        gaps: report.slots.gaps() + if empty_is_gap { empty } else { 0 },
        empty,
        pending: report.slots.get(State::Pending),
        empty_is_gap,
        first,
        first_empty,
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
    let ok: u64 = v.ok_by_role.values().sum();
    let mut out = format!(
        "verify {} from {} to {}: {}, {ok} ok ({roles}), {} still not ok\n",
        ds.name,
        ds.spec.local_iso(window.first),
        ds.spec.local_iso(window.last),
        plural(v.slots, "slot"),
        v.gaps
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
    if v.gaps as usize > v.first.len() {
        out.push_str(&format!(
            "  … {} more; `slotfill gaps --dataset {}` lists them all\n",
            v.gaps as usize - v.first.len(),
            ds.name
        ));
    }
    if v.empty > 0 && !v.empty_is_gap {
        let named: Vec<&str> = v
            .first_empty
            .iter()
            .map(|r| r.start_local.as_str())
            .collect();
        out.push_str(&format!(
            "{} confirmed empty at the origin (resolved; --empty-is-gap counts them as gaps): {}\n",
            plural(v.empty, "slot"),
            name_some(&named, v.empty)
        ));
    }
    if v.pending > 0 {
        out.push_str(&format!(
            "{} pending: not ended plus the settle delay ({}), not checked yet\n",
            plural(v.pending, "slot"),
            ds.settle_delay_text()
        ));
    }
    out
}
