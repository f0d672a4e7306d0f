//! What serve reads of single slots: the fill attempts behind the dashboard's
//! detail pages (every attempt of a range of slots: what was tried, by which
//! run, how it ended, the last error, what ended its ranges and which
//! calibration vouched for it; every attempt of one run), and the
//! copies of a slot a listing recorded without counting them, which a storage
//! event may have to count.

use rusqlite::params;

use super::{CalibrationId, Catalog, DatasetId, Result, RunId};
use crate::slot::SlotStart;

/// One row of `fill_attempts`, as a detail page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub slot_start: SlotStart,
    pub run_id: Option<RunId>,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// NULL while the attempt runs (or when its process died).
    pub outcome: Option<String>,
    pub notes: Option<i64>,
    pub origin_calls: i64,
    pub retries: i64,
    pub error_code: Option<String>,
    pub left_out: Option<i64>,
    /// What ended the slot's ranges (`empty-page`, `empty-page:5,no-new-note:1`).
    pub range_end: Option<String>,
    /// The calibration that vouched for the answers, and its verdict.
    pub calibration: Option<(CalibrationId, String)>,
}

const ATTEMPT_COLUMNS: &str =
    "a.slot_start, a.run_id, a.started_at, a.finished_at, a.outcome, a.notes, a.origin_calls,
     a.retries, a.error_code, a.left_out, a.range_end, c.id, c.verdict";
/// Attempts with the verdict of the calibration that vouched for them.
const ATTEMPTS_FROM: &str = "fill_attempts a LEFT JOIN calibrations c ON c.id = a.calibration_id";

fn attempt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptRow> {
    Ok(AttemptRow {
        slot_start: r.get(0)?,
        run_id: r.get(1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        outcome: r.get(4)?,
        notes: r.get(5)?,
        origin_calls: r.get(6)?,
        retries: r.get(7)?,
        error_code: r.get(8)?,
        left_out: r.get(9)?,
        range_end: r.get(10)?,
        calibration: match (r.get(11)?, r.get(12)?) {
            (Some(id), Some(verdict)) => Some((id, verdict)),
            _ => None,
        },
    })
}

impl Catalog {
    /// The live objects of a slot recorded `unchecked` (listed, never counted)
    /// at a location before the one whose object makes the slot ok or empty
    /// (any location, when none does), in location order: (location, key).
    /// These are the copies a scan would count now.
    pub fn uncounted_copies(
        &self,
        dataset_id: DatasetId,
        slot: SlotStart,
    ) -> Result<Vec<(super::LocationId, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.location_id, o.key FROM objects o JOIN locations l ON l.id = o.location_id
             WHERE l.dataset_id = ?1 AND l.active = 1 AND o.slot_start = ?2
               AND o.gone_at IS NULL AND o.status = 'unchecked'
               AND l.position < COALESCE((
                   SELECT dl.position FROM slots s JOIN objects d ON d.id = s.object_id
                   JOIN locations dl ON dl.id = d.location_id
                   WHERE s.dataset_id = ?1 AND s.slot_start = ?2 AND s.state IN ('ok', 'empty')
               ), 1000000)
             ORDER BY l.position",
        )?;
        let rows = stmt.query_map(params![dataset_id, slot], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The attempts of the slots in `range`, by slot then oldest first; at most `limit`.
    pub fn slot_attempts(
        &self,
        dataset_id: DatasetId,
        range: (SlotStart, SlotStart),
        limit: usize,
    ) -> Result<Vec<AttemptRow>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM {ATTEMPTS_FROM}
             WHERE a.dataset_id = ?1 AND a.slot_start BETWEEN ?2 AND ?3
             ORDER BY a.slot_start, a.id LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![dataset_id, range.0, range.1, limit as i64],
            attempt_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The attempts a run made, in the order it made them; at most `limit`.
    pub fn run_attempts(&self, run_id: RunId, limit: usize) -> Result<Vec<AttemptRow>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM {ATTEMPTS_FROM} WHERE a.run_id = ?1 ORDER BY a.id LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![run_id, limit as i64], attempt_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
