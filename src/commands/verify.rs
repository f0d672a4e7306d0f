//! `slotfill verify`: rescan every location (incrementally) and report what is
//! still a gap (the verdict itself is [`crate::run::verify_window`]'s).

use std::collections::BTreeMap;

use crate::catalog::RunSummary;
use crate::error::Result;
use crate::run::{
    Global, Notify, Outcome, Selection, Session, Verdict, require_window, resolve, verify_window,
};
use crate::slot::Window;
use crate::state::State;
use crate::text::{name_some, plural};

#[derive(Debug, Clone, Default)]
pub struct VerifyCommand {
    pub selection: Selection,
    pub concurrency: usize,
    pub progress: bool,
    pub notify_webhook: Option<String>,
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
