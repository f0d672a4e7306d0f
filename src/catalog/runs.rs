//! Runs: one row per command, with its outcome and counts.

use std::str::FromStr;

use rusqlite::params;

use super::{Catalog, Result, RunId};

/// How a command ended, as `runs.outcome` records it. The exit status each
/// stands for is decided in one place, [`crate::error::exit_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunOutcome {
    #[default]
    Ok,
    /// verify/run: gaps remain.
    GapsRemain,
    /// A dry run: nothing fetched or written.
    DryRun,
    /// A fill stopped early (failed slots in a row, or its lease was lost), or
    /// a promote (its lease was lost).
    Stopped,
    Failed,
    Interrupted,
}

impl RunOutcome {
    pub const ALL: [RunOutcome; 6] = [
        RunOutcome::Ok,
        RunOutcome::GapsRemain,
        RunOutcome::DryRun,
        RunOutcome::Stopped,
        RunOutcome::Failed,
        RunOutcome::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Ok => "ok",
            RunOutcome::GapsRemain => "gaps_remain",
            RunOutcome::DryRun => "dry_run",
            RunOutcome::Stopped => "stopped",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }

    /// The run did not do its work (the command fails with exit 1 or 130).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            RunOutcome::Stopped | RunOutcome::Failed | RunOutcome::Interrupted
        )
    }
}

impl FromStr for RunOutcome {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        RunOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown run outcome {s:?}"))
    }
}

impl serde::Serialize for RunOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a command did, written when it ends.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub outcome: RunOutcome,
    pub slots: Option<u64>,
    pub missing_before: Option<u64>,
    pub filled: Option<u64>,
    pub still_missing: Option<u64>,
    pub requests: Option<u64>,
    pub downloads: Option<u64>,
    pub bytes_read: Option<u64>,
    pub origin_calls: Option<u64>,
    pub error: Option<String>,
}

impl Catalog {
    /// Records the start of a command. `args` must already have its secrets removed.
    pub fn start_run(
        &mut self,
        dataset_id: Option<super::DatasetId>,
        command: &str,
        args: &str,
        window: Option<(&str, &str)>,
    ) -> Result<RunId> {
        self.conn.execute(
            "INSERT INTO runs (dataset_id, command, args, window_start, window_end, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                dataset_id,
                command,
                args,
                window.map(|w| w.0),
                window.map(|w| w.1),
                crate::clock::now_text()
            ],
        )?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    pub fn finish_run(&mut self, run: RunId, s: &RunSummary) -> Result<()> {
        let n = |v: Option<u64>| v.map(|v| v as i64);
        self.conn.execute(
            "UPDATE runs SET finished_at = ?2, outcome = ?3, slots = ?4, missing_before = ?5, filled = ?6,
                 still_missing = ?7, requests = ?8, downloads = ?9, bytes_read = ?10, origin_calls = ?11, error = ?12
             WHERE id = ?1",
            params![
                run.0,
                crate::clock::now_text(),
                s.outcome,
                n(s.slots),
                n(s.missing_before),
                n(s.filled),
                n(s.still_missing),
                n(s.requests),
                n(s.downloads),
                n(s.bytes_read),
                n(s.origin_calls),
                s.error
            ],
        )?;
        Ok(())
    }
}
