//! Fill attempts: which slots to fill, and what each attempt did.

use super::{AttemptId, CalibrationId, DatasetId, LocationId};
use std::str::FromStr;

use rusqlite::{OptionalExtension, params};

use super::objects::upsert_object;
use super::{Catalog, ObjectRecord, Result, RunId, parse_column};
use crate::slot::SlotStart;
use crate::state::State;

/// A slot that a fill may work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillCandidate {
    pub slot_start: SlotStart,
    pub start_local: String,
    pub state: State,
    /// An earlier attempt started and never finished (the process was killed):
    /// its object may already be in the complement location.
    pub unfinished_attempt: bool,
    /// For a confirmed-empty slot: the ETag of its zero-line complement object,
    /// which a re-check that finds notes may replace (and nothing else).
    pub empty_object_etag: Option<String>,
}

/// Which slots a fill plans to work on.
#[derive(Debug, Clone)]
pub struct CandidateQuery {
    pub range: (SlotStart, SlotStart),
    pub newest_first: bool,
    pub limit: Option<u64>,
    /// Re-check confirmed-empty slots whatever their re-check time.
    pub retry_empty: bool,
    /// Later slots are pending: never fetched.
    pub last_settled: SlotStart,
    /// Confirmed-empty slots whose re-check time is unknown (a rebuilt catalog)
    /// are due when their object was counted before this time.
    pub empty_counted_before: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Complete fetch, object written.
    Filled,
    /// The fetch did not reach the slot's start; nothing written.
    Partial,
    /// Complete fetch with no notes; a zero-line object records it, re-checked after a while.
    Empty,
    /// The origin or the store failed; nothing written.
    Failed,
    /// The complement object already existed (written by an earlier, interrupted run).
    Exists,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Filled => "filled",
            AttemptOutcome::Partial => "partial",
            AttemptOutcome::Empty => "empty",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Exists => "exists",
        }
    }
}

/// Everything recorded when an attempt ends.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    pub dataset_id: DatasetId,
    pub attempt_id: AttemptId,
    pub slot_start: SlotStart,
    pub outcome: AttemptOutcome,
    pub notes: u64,
    pub origin_calls: u64,
    pub retries: u64,
    pub coverage_seconds: Option<f64>,
    pub error_code: Option<String>,
    /// The complement object written, with its location id.
    pub object: Option<(LocationId, ObjectRecord)>,
    /// For empty slots: not before this time again (unless forced).
    pub retry_after: Option<String>,
    /// Notes the visibility policy kept out of the slot (None: nothing fetched).
    pub left_out: Option<u64>,
    /// In-range notes outside the dataset's scope (host, text filter).
    pub out_of_scope: Option<u64>,
    /// The calibration that vouched for the origin's answers.
    pub calibration_id: Option<CalibrationId>,
    /// What ended the slot's ranges (`RangeEnds::describe`), when any did.
    pub range_end: Option<String>,
    /// How the notes were obtained, as JSON.
    pub provenance: Option<String>,
}

impl FromStr for AttemptOutcome {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        [
            AttemptOutcome::Filled,
            AttemptOutcome::Partial,
            AttemptOutcome::Empty,
            AttemptOutcome::Failed,
            AttemptOutcome::Exists,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| format!("unknown attempt outcome {s:?}"))
    }
}

impl Catalog {
    /// The slots of a range a fill should work on, in fill order: gaps that
    /// have settled, and confirmed-empty slots whose re-check is due.
    pub fn fill_candidates(
        &self,
        dataset_id: DatasetId,
        q: &CandidateQuery,
    ) -> Result<Vec<FillCandidate>> {
        let sql = format!(
            "SELECT s.slot_start, s.start_local, s.state,
                    EXISTS (SELECT 1 FROM fill_attempts a
                            WHERE a.dataset_id = s.dataset_id AND a.slot_start = s.slot_start AND a.finished_at IS NULL),
                    CASE WHEN s.state = 'empty' THEN o.etag END
             FROM slots s
             LEFT JOIN objects o ON o.id = s.object_id
             WHERE s.dataset_id = ?1 AND s.slot_start BETWEEN ?2 AND MIN(?3, ?7) AND s.state <> 'ok'
               AND (s.state <> 'empty' OR ?4 OR COALESCE(s.retry_after <= ?5, o.counted_at <= ?8, 1))
             ORDER BY s.slot_start {}
             LIMIT ?6",
            if q.newest_first { "DESC" } else { "ASC" }
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let limit = q.limit.map(|l| l as i64).unwrap_or(-1);
        let rows = stmt.query_map(
            params![
                dataset_id,
                q.range.0,
                q.range.1,
                q.retry_empty,
                crate::clock::now_text(),
                limit,
                q.last_settled,
                q.empty_counted_before,
            ],
            |r| {
                Ok(FillCandidate {
                    slot_start: r.get(0)?,
                    start_local: r.get(1)?,
                    state: parse_column(r, 2, "slots.state")?,
                    unfinished_attempt: r.get(3)?,
                    empty_object_etag: r.get(4)?,
                })
            },
        )?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(Into::into)
    }

    /// Records that an attempt started, before any origin call is made.
    pub fn start_attempt(
        &mut self,
        dataset_id: DatasetId,
        slot: SlotStart,
        run: Option<RunId>,
    ) -> Result<AttemptId> {
        self.conn.execute(
            "INSERT INTO fill_attempts (dataset_id, slot_start, run_id, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![dataset_id, slot, run.map(|r| r.0), crate::clock::now_text()],
        )?;
        Ok(AttemptId(self.conn.last_insert_rowid()))
    }

    /// Records the end of an attempt, its object and the slot's new state in one transaction.
    pub fn finish_attempt(&mut self, done: &FinishedAttempt) -> Result<()> {
        let now = crate::clock::now_text();
        let tx = self.conn.transaction()?;
        let object_id: Option<i64> = match &done.object {
            Some((location_id, record)) => {
                upsert_object(&tx, *location_id, record, &now)?;
                Some(tx.query_row(
                    "SELECT id FROM objects WHERE location_id = ?1 AND key = ?2",
                    params![location_id, record.key],
                    |r| r.get(0),
                )?)
            }
            None => None,
        };
        tx.execute(
            "UPDATE fill_attempts SET finished_at = ?2, outcome = ?3, notes = ?4, origin_calls = ?5, retries = ?6,
                 coverage_seconds = ?7, error_code = ?8, object_id = ?9, left_out = ?10,
                 out_of_scope = ?11, calibration_id = ?12, range_end = ?13, provenance = ?14
             WHERE id = ?1",
            params![
                done.attempt_id,
                now,
                done.outcome,
                done.notes as i64,
                done.origin_calls as i64,
                done.retries as i64,
                done.coverage_seconds,
                done.error_code,
                object_id,
                done.left_out.map(|n| n as i64),
                done.out_of_scope.map(|n| n as i64),
                done.calibration_id,
                done.range_end,
                done.provenance,
            ],
        )?;
        // Older attempts of this slot that never finished were interrupted runs.
        tx.execute(
            "UPDATE fill_attempts SET finished_at = ?3, outcome = 'failed', error_code = 'interrupted'
             WHERE dataset_id = ?1 AND slot_start = ?2 AND finished_at IS NULL",
            params![done.dataset_id, done.slot_start, now],
        )?;
        let decided = done
            .object
            .as_ref()
            .and_then(|(_, record)| record.status)
            .filter(|status| matches!(status, State::Ok | State::Empty));
        if let Some(state) = decided {
            let (ok_role, retry_after) = match state {
                State::Ok => (Some("complement"), None),
                _ => (None, done.retry_after.as_deref()),
            };
            tx.execute(
                "UPDATE slots SET state = ?3, ok_role = ?4, object_id = ?5, updated_at = ?6, retry_after = ?7
                 WHERE dataset_id = ?1 AND slot_start = ?2",
                params![
                    done.dataset_id,
                    done.slot_start,
                    state.as_str(),
                    ok_role,
                    object_id,
                    now,
                    retry_after
                ],
            )?;
        } else {
            tx.execute(
                "UPDATE slots SET retry_after = ?3 WHERE dataset_id = ?1 AND slot_start = ?2",
                params![done.dataset_id, done.slot_start, done.retry_after],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Closes attempts left unfinished by a killed process whose slot has
    /// since become ok (a scan found the object they wrote, or another
    /// location has it). Call only while holding the dataset's lease.
    pub fn settle_interrupted_attempts(&mut self, dataset_id: DatasetId) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE fill_attempts
             SET finished_at = ?2, error_code = 'interrupted',
                 outcome = CASE WHEN (SELECT s.ok_role = 'complement' OR s.state = 'empty' FROM slots s
                                      WHERE s.dataset_id = fill_attempts.dataset_id
                                        AND s.slot_start = fill_attempts.slot_start)
                                THEN 'exists' ELSE 'failed' END
             WHERE dataset_id = ?1 AND finished_at IS NULL
               AND EXISTS (SELECT 1 FROM slots s
                           WHERE s.dataset_id = fill_attempts.dataset_id
                             AND s.slot_start = fill_attempts.slot_start AND s.state IN ('ok', 'empty'))",
            params![dataset_id, crate::clock::now_text()],
        )?)
    }

    /// The line count of the nearest valid slot on each side of `slot`, at most
    /// `max_distance` seconds away, averaged: what a fill of `slot` likely holds.
    pub fn neighbour_lines(
        &self,
        dataset_id: DatasetId,
        slot: SlotStart,
        max_distance: i64,
    ) -> Result<Option<f64>> {
        let nearest = |order: &str, cmp: &str, bound: i64| -> Result<Option<i64>> {
            let sql = format!(
                "SELECT o.lines FROM slots s JOIN objects o ON o.id = s.object_id
                 WHERE s.dataset_id = ?1 AND s.slot_start {cmp} ?2 AND s.slot_start BETWEEN MIN(?2, ?3) AND MAX(?2, ?3)
                   AND s.state = 'ok' AND o.lines IS NOT NULL
                 ORDER BY s.slot_start {order} LIMIT 1"
            );
            Ok(self
                .conn
                .prepare_cached(&sql)?
                .query_row(params![dataset_id, slot, bound], |r| r.get(0))
                .optional()?)
        };
        let before = nearest("DESC", "<", slot - max_distance)?;
        let after = nearest("ASC", ">", slot + max_distance)?;
        let known: Vec<i64> = before.into_iter().chain(after).collect();
        Ok((!known.is_empty()).then(|| known.iter().sum::<i64>() as f64 / known.len() as f64))
    }

    /// The most lines any object of the slot was counted to hold (an invalid
    /// object's count is a lower bound on the slot's notes; counting stops at
    /// `max_lines`).
    pub fn slot_lines(&self, dataset_id: DatasetId, slot: SlotStart) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT MAX(o.lines) FROM objects o JOIN locations l ON l.id = o.location_id
                 WHERE l.dataset_id = ?1 AND o.slot_start = ?2 AND o.gone_at IS NULL",
            )?
            .query_row(params![dataset_id, slot], |r| r.get(0))?)
    }

    /// The average line count of the dataset's valid objects (for estimates).
    pub fn average_ok_lines(&self, dataset_id: DatasetId) -> Result<Option<f64>> {
        Ok(self.conn.query_row(
            "SELECT AVG(o.lines) FROM objects o JOIN locations l ON l.id = o.location_id
             WHERE l.dataset_id = ?1 AND o.status = 'ok' AND o.gone_at IS NULL",
            [dataset_id],
            |r| r.get(0),
        )?)
    }
}
