//! Promotions: complement objects copied into a collector location.

use super::{DatasetId, LocationId};
use rusqlite::params;

use super::objects::upsert_object;
use super::{Catalog, ObjectRecord, Result, RunId, parse_column};
use crate::config::Role;
use crate::slot::SlotStart;
use crate::state::State;

/// A slot that is ok only through the complement, with what the target holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionCandidate {
    pub slot_start: SlotStart,
    pub start_local: String,
    /// The complement object that makes the slot ok, as catalogued.
    pub source: ObjectRecord,
    /// The target location's live object for the slot, if the catalog knows one.
    pub target: Option<TargetObject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetObject {
    pub key: String,
    pub etag: Option<String>,
    pub status: State,
}

/// A copy made (or found made), to record.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub dataset_id: DatasetId,
    pub run: Option<RunId>,
    pub slot_start: SlotStart,
    pub source_location_id: LocationId,
    pub source_key: String,
    pub source_etag: Option<String>,
    pub target_location_id: LocationId,
    pub target_role: Role,
    /// The object now at the target.
    pub object: ObjectRecord,
    pub replaced_etag: Option<String>,
    /// `copy`, `stream` or `found`.
    pub method: &'static str,
}

impl Catalog {
    /// Slots of `range` that are ok only through the complement location, oldest first.
    pub fn promotion_candidates(
        &self,
        dataset_id: DatasetId,
        complement_location_id: LocationId,
        target_location_id: LocationId,
        range: (SlotStart, SlotStart),
    ) -> Result<Vec<PromotionCandidate>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.slot_start, s.start_local, o.key, o.etag, o.size, o.last_modified, o.lines,
                    o.complete, o.note_count, o.earliest, o.latest, o.status,
                    t.key, t.etag, t.status
             FROM slots s
             JOIN objects o ON o.id = s.object_id AND o.location_id = ?2
             LEFT JOIN objects t ON t.location_id = ?3 AND t.slot_start = s.slot_start AND t.gone_at IS NULL
             WHERE s.dataset_id = ?1 AND s.slot_start BETWEEN ?4 AND ?5
               AND s.state = 'ok' AND s.ok_role = 'complement'
             ORDER BY s.slot_start",
        )?;
        let rows = stmt.query_map(
            params![
                dataset_id,
                complement_location_id,
                target_location_id,
                range.0,
                range.1
            ],
            |r| {
                let slot_start: i64 = r.get(0)?;
                let target = match r.get::<_, Option<String>>(12)? {
                    Some(key) => Some(TargetObject {
                        key,
                        etag: r.get(13)?,
                        status: parse_column(r, 14, "objects.status")?,
                    }),
                    None => None,
                };
                Ok(PromotionCandidate {
                    slot_start,
                    start_local: r.get(1)?,
                    source: ObjectRecord {
                        key: r.get(2)?,
                        slot_start,
                        etag: r.get(3)?,
                        size: r.get(4)?,
                        last_modified: r.get(5)?,
                        lines: r.get(6)?,
                        utf8_valid: Some(true),
                        unterminated: Some(false),
                        complete: r.get(7)?,
                        note_count: r.get(8)?,
                        earliest: r.get(9)?,
                        latest: r.get(10)?,
                        status: Some(parse_column(r, 11, "objects.status")?),
                        counted: false,
                    },
                    target,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Records a promotion in one transaction: the object now at the target,
    /// the promotion, and the slot, which that object now makes ok.
    pub fn record_promotion(&mut self, p: &Promotion) -> Result<()> {
        let now = crate::clock::now_text();
        let tx = self.conn.transaction()?;
        upsert_object(&tx, p.target_location_id, &p.object, &now)?;
        let object_id: i64 = tx
            .prepare_cached("SELECT id FROM objects WHERE location_id = ?1 AND key = ?2")?
            .query_row(params![p.target_location_id, p.object.key], |r| r.get(0))?;
        tx.prepare_cached(
            "INSERT INTO promotions (dataset_id, run_id, slot_start, source_location_id, source_key,
                 source_etag, target_location_id, target_key, etag, size, replaced_etag, method,
                 promoted_at, object_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            p.dataset_id,
            p.run.map(|r| r.0),
            p.slot_start,
            p.source_location_id,
            p.source_key,
            p.source_etag,
            p.target_location_id,
            p.object.key,
            p.object.etag,
            p.object.size,
            p.replaced_etag,
            p.method,
            now,
            object_id
        ])?;
        // A valid object of an earlier location than the complement now decides the slot.
        tx.prepare_cached(
            "UPDATE slots SET state = 'ok', ok_role = ?3, object_id = ?4, updated_at = ?5
             WHERE dataset_id = ?1 AND slot_start = ?2",
        )?
        .execute(params![
            p.dataset_id,
            p.slot_start,
            p.target_role.as_str(),
            object_id,
            now
        ])?;
        tx.commit()?;
        Ok(())
    }
}
