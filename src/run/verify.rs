//! Verification: rescan a window (incrementally) and say what is still a gap.
//!
//! Confirmed-empty slots are resolved (listed apart) unless the dataset counts
//! them as gaps (`empty_is_gap`); pending slots are never gaps.

use std::collections::BTreeMap;

use crate::catalog::{RunOutcome, SlotRow};
use crate::error::Result;
use crate::scan::ScanOptions;
use crate::slot::Window;
use crate::state::State;

use super::{Session, run_scan};

/// How many slots verify lists by name.
pub const LISTED: usize = 20;

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
    let gap_states = session.resolved.ds.gap_states();
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
