//! Calibrations: the archived slots a fill compared the origin's answers with,
//! and what the comparison found (`calibrations`, migration V5).

use rusqlite::{OptionalExtension, params};

use super::{CalibrationId, Catalog, DatasetId, LocationId, Result, RunId};
use crate::slot::SlotStart;

/// A slot the collector archived validly: ground truth to check the origin against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceSlot {
    pub slot_start: SlotStart,
    pub location_id: LocationId,
    pub key: String,
}

/// One calibration, as recorded.
#[derive(Debug, Clone, Default)]
pub struct NewCalibration {
    pub dataset_id: DatasetId,
    pub run_id: Option<RunId>,
    /// The gap slots it vouches for, first and last.
    pub scope: (SlotStart, SlotStart),
    pub reference: Option<ReferenceSlot>,
    pub source: String,
    pub expected: Option<u64>,
    pub found: Option<u64>,
    pub recall: Option<f64>,
    /// `ok`, `partial`, `low_recall`, `blind`, `inconclusive` or `skipped`.
    pub verdict: &'static str,
    pub blind_to: Option<&'static str>,
    pub origin_calls: u64,
    pub message: String,
}

impl Catalog {
    /// The valid collector-written slot nearest to `near` (the earlier one on a
    /// tie). Objects `promote` copied into a collector location are slotfill's
    /// own fills, not ground truth, and are passed over.
    pub fn reference_slot(
        &self,
        dataset_id: DatasetId,
        near: SlotStart,
    ) -> Result<Option<ReferenceSlot>> {
        let nearest = |cmp: &str, order: &str| -> Result<Option<ReferenceSlot>> {
            let sql = format!(
                "SELECT s.slot_start, o.location_id, o.key FROM slots s JOIN objects o ON o.id = s.object_id
                 WHERE s.dataset_id = ?1 AND s.slot_start {cmp} ?2 AND s.state = 'ok'
                   AND s.ok_role IN ('primary', 'backup') AND o.complete IS NULL AND o.gone_at IS NULL
                 ORDER BY s.slot_start {order} LIMIT 1"
            );
            Ok(self
                .conn
                .prepare_cached(&sql)?
                .query_row(params![dataset_id, near], |r| {
                    Ok(ReferenceSlot {
                        slot_start: r.get(0)?,
                        location_id: r.get(1)?,
                        key: r.get(2)?,
                    })
                })
                .optional()?)
        };
        let before = nearest("<=", "DESC")?;
        let after = nearest(">", "ASC")?;
        Ok(match (before, after) {
            (Some(b), Some(a)) if a.slot_start - near < near - b.slot_start => Some(a),
            (Some(b), _) => Some(b),
            (None, a) => a,
        })
    }

    pub fn record_calibration(&self, c: &NewCalibration) -> Result<CalibrationId> {
        let reference = c.reference.as_ref();
        self.conn
            .prepare_cached(
                "INSERT INTO calibrations (dataset_id, run_id, scope_first, scope_last, reference_slot,
                     reference_location_id, reference_key, source, expected, found, recall, verdict,
                     blind_to, origin_calls, message, calibrated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?
            .execute(params![
                c.dataset_id,
                c.run_id.map(|r| r.0),
                c.scope.0,
                c.scope.1,
                reference.map(|r| r.slot_start),
                reference.map(|r| r.location_id),
                reference.map(|r| r.key.as_str()),
                c.source,
                c.expected.map(|n| n as i64),
                c.found.map(|n| n as i64),
                c.recall,
                c.verdict,
                c.blind_to,
                c.origin_calls as i64,
                c.message,
                crate::clock::now_text(),
            ])?;
        Ok(CalibrationId(self.conn.last_insert_rowid()))
    }
}
