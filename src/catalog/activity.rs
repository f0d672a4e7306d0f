//! Activity: what `slotfill serve` shows of the catalog (its dashboard, its
//! metrics, `/api/runs/{id}`): run records, recent runs, attempts, the newest
//! valid slot, live leases.

use super::DatasetId;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Catalog, Result, RunId, RunOutcome, parse_optional_column};

/// One row of `runs`, as `/api/runs/{id}` and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub dataset: Option<String>,
    pub command: String,
    pub args: String,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<RunOutcome>,
    pub slots: Option<i64>,
    pub missing_before: Option<i64>,
    pub filled: Option<i64>,
    pub still_missing: Option<i64>,
    pub requests: Option<i64>,
    pub downloads: Option<i64>,
    pub bytes_read: Option<i64>,
    pub origin_calls: Option<i64>,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str = "r.id, d.name, r.command, r.args, r.window_start, r.window_end, r.started_at, r.finished_at,
     r.outcome, r.slots, r.missing_before, r.filled, r.still_missing, r.requests, r.downloads, r.bytes_read,
     r.origin_calls, r.error";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        run_id: r.get(0)?,
        dataset: r.get(1)?,
        command: r.get(2)?,
        args: r.get(3)?,
        window_start: r.get(4)?,
        window_end: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        outcome: parse_optional_column(r, 8, "runs.outcome")?,
        slots: r.get(9)?,
        missing_before: r.get(10)?,
        filled: r.get(11)?,
        still_missing: r.get(12)?,
        requests: r.get(13)?,
        downloads: r.get(14)?,
        bytes_read: r.get(15)?,
        origin_calls: r.get(16)?,
        error: r.get(17)?,
    })
}

impl Catalog {
    pub fn run_record(&self, id: RunId) -> Result<Option<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN datasets d ON d.id = r.dataset_id WHERE r.id = ?1"
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], run_row)
            .optional()?)
    }

    /// The latest runs of a dataset, newest first.
    pub fn recent_runs(&self, dataset_id: DatasetId, limit: usize) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r LEFT JOIN datasets d ON d.id = r.dataset_id
             WHERE r.dataset_id = ?1 ORDER BY r.id DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![dataset_id, limit as i64], run_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The `args` of the latest run that ran to its end (not interrupted, not
    /// abandoned by a killed process) whose `args` start with `prefix` (the
    /// runs of one of serve's schedule entries).
    pub fn latest_done_run_args(&self, prefix: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT args FROM runs WHERE substr(args, 1, length(?1)) = ?1
                 AND outcome IS NOT NULL AND outcome <> 'interrupted' ORDER BY id DESC LIMIT 1",
            )?
            .query_row([prefix], |r| r.get(0))
            .optional()?)
    }

    /// Slot attempts of a run that have finished.
    pub fn finished_attempts(&self, run_id: RunId) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM fill_attempts WHERE run_id = ?1 AND finished_at IS NOT NULL",
            [run_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The dataset's id, if it is catalogued.
    pub fn dataset_id(&self, name: &str) -> Result<Option<DatasetId>> {
        Ok(self
            .conn
            .query_row("SELECT id FROM datasets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The newest slot that is ok, by any location, or only by a collector's
    /// (primary or backup).
    pub fn newest_ok_slot(
        &self,
        dataset_id: DatasetId,
        collector_only: bool,
    ) -> Result<Option<i64>> {
        let sql = if collector_only {
            "SELECT MAX(slot_start) FROM slots WHERE dataset_id = ?1 AND state = 'ok' AND ok_role IN ('primary', 'backup')"
        } else {
            "SELECT MAX(slot_start) FROM slots WHERE dataset_id = ?1 AND state = 'ok'"
        };
        Ok(self.conn.query_row(sql, [dataset_id], |r| r.get(0))?)
    }

    /// The last finished run per (dataset, command, outcome): Unix seconds.
    pub fn last_runs(&self) -> Result<Vec<(String, String, String, f64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.name, r.command, r.outcome, MAX(r.finished_at) FROM runs r JOIN datasets d ON d.id = r.dataset_id
             WHERE r.finished_at IS NOT NULL AND r.outcome IS NOT NULL GROUP BY d.name, r.command, r.outcome",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (dataset, command, outcome, at) = row?;
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&at) {
                out.push((
                    dataset,
                    command,
                    outcome,
                    t.timestamp_millis() as f64 / 1000.0,
                ));
            }
        }
        Ok(out)
    }

    /// Finished slot attempts per (dataset, outcome).
    pub fn fill_attempt_counts(&self) -> Result<Vec<(String, String, u64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.name, f.outcome, COUNT(*) FROM fill_attempts f JOIN datasets d ON d.id = f.dataset_id
             WHERE f.outcome IS NOT NULL GROUP BY d.name, f.outcome",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Who holds a live fill lease on the dataset (pid, host), if anyone does.
    pub fn live_lease(&self, dataset: &str, now: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT l.pid, l.host FROM leases l JOIN datasets d ON d.id = l.dataset_id
                 WHERE d.name = ?1 AND l.expires_at > ?2",
                params![dataset, now],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}
