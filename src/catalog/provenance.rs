//! What serve shows of proof (issue "Complete means proven"): the
//! calibrations a run recorded, each dataset's latest conclusive calibration
//! (for `/metrics`), and a summary of how a run's attempts obtained their
//! notes (`fill_attempts.provenance` and `range_end`, migration V5).

use std::collections::BTreeMap;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{CalibrationId, Catalog, Result, RunId};
use crate::slot::SlotStart;

/// One row of `calibrations`, as the run page and `/api/runs/{id}` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationRecord {
    pub id: CalibrationId,
    /// `ok`, `partial`, `low_recall`, `blind`, `inconclusive` or `skipped`.
    pub verdict: String,
    /// With `blind`: `all`, `remote` or `local` notes.
    pub blind_to: Option<String>,
    /// found / expected; None when nothing could be compared.
    pub recall: Option<f64>,
    pub expected: Option<i64>,
    pub found: Option<i64>,
    /// The archived slot compared, in the dataset's offset (None: none found).
    pub reference_slot: Option<String>,
    pub reference_key: Option<String>,
    /// The first and last gap slot it vouches for, in the dataset's offset.
    pub first_gap: Option<String>,
    pub last_gap: Option<String>,
    /// The endpoint asked.
    pub source: String,
    pub origin_calls: i64,
    pub message: Option<String>,
    pub calibrated_at: String,
    /// The same slots as slot starts, for links.
    #[serde(skip)]
    pub scope: (SlotStart, SlotStart),
    #[serde(skip)]
    pub reference_start: Option<SlotStart>,
}

/// A dataset's latest calibration that reached a verdict on the origin.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestCalibration {
    pub dataset: String,
    pub verdict: String,
    pub recall: Option<f64>,
    pub calibrated_at: String,
}

/// How attempts obtained their notes, as `fill_attempts.provenance` records
/// it. Only these keys are read back, so nothing else stored there could
/// reach a page.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct AttemptProvenance {
    /// `misskey`, `mastodon` or `archive`.
    pub origin: String,
    pub mode: String,
    pub endpoint: String,
    /// `sql`, `millisecond`, `timeline`, the server software, …
    pub engine: String,
    /// `anonymous` or `user`: the class, never the token.
    pub token: String,
    pub visibility: Vec<String>,
    /// Only notes of this host (None: any host).
    pub host: Option<String>,
    /// `none` or `japanese`.
    pub filter: String,
}

/// The attempts of a run that obtained their notes one way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvenanceSummary {
    #[serde(flatten)]
    pub how: AttemptProvenance,
    pub attempts: u64,
    /// What ended their ranges, with a count each (`empty-page`, `older-note`, …).
    pub range_ends: BTreeMap<String, u64>,
    /// The calibrations that vouched for them.
    pub calibration_ids: Vec<CalibrationId>,
}

/// Verdicts that say something about the origin (not `inconclusive` or `skipped`).
const CONCLUSIVE: &str = "('ok', 'partial', 'low_recall', 'blind')";

fn calibration_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CalibrationRecord> {
    Ok(CalibrationRecord {
        id: r.get(0)?,
        verdict: r.get(1)?,
        blind_to: r.get(2)?,
        recall: r.get(3)?,
        expected: r.get(4)?,
        found: r.get(5)?,
        reference_slot: r.get(6)?,
        reference_key: r.get(7)?,
        first_gap: r.get(8)?,
        last_gap: r.get(9)?,
        source: crate::redact::url_without_credentials(&r.get::<_, String>(10)?),
        origin_calls: r.get(11)?,
        message: r.get(12)?,
        calibrated_at: r.get(13)?,
        scope: (r.get(14)?, r.get(15)?),
        reference_start: r.get(16)?,
    })
}

/// Adds one `range_end` text (`empty-page`, or `empty-page:5,no-new-note:1`) to `tally`.
fn count_range_ends(tally: &mut BTreeMap<String, u64>, text: &str) {
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (name, n) = match part.split_once(':') {
            Some((name, n)) => (name, n.parse().unwrap_or(1)),
            None => (part, 1),
        };
        *tally.entry(name.to_string()).or_default() += n;
    }
}

impl Catalog {
    /// The calibrations a run recorded, in the order it made them.
    pub fn run_calibrations(&self, run_id: RunId) -> Result<Vec<CalibrationRecord>> {
        let local = |column: &str| {
            format!(
                "(SELECT start_local FROM slots WHERE dataset_id = c.dataset_id AND slot_start = c.{column})"
            )
        };
        let sql = format!(
            "SELECT c.id, c.verdict, c.blind_to, c.recall, c.expected, c.found, {}, c.reference_key,
                    {}, {}, c.source, c.origin_calls, c.message, c.calibrated_at,
                    c.scope_first, c.scope_last, c.reference_slot
             FROM calibrations c WHERE c.run_id = ?1 ORDER BY c.id",
            local("reference_slot"),
            local("scope_first"),
            local("scope_last"),
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([run_id], calibration_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Each dataset's latest calibration with a verdict on the origin.
    pub fn latest_calibrations(&self) -> Result<Vec<LatestCalibration>> {
        let sql = format!(
            "SELECT d.name, c.verdict, c.recall, c.calibrated_at
             FROM (SELECT MAX(id) AS id FROM calibrations WHERE verdict IN {CONCLUSIVE}
                   GROUP BY dataset_id) latest
             JOIN calibrations c ON c.id = latest.id
             JOIN datasets d ON d.id = c.dataset_id
             ORDER BY d.name"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], |r| {
            Ok(LatestCalibration {
                dataset: r.get(0)?,
                verdict: r.get(1)?,
                recall: r.get(2)?,
                calibrated_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// How a run's attempts obtained their notes: one summary per way, the
    /// most attempts first. Attempts that fetched nothing record none.
    pub fn run_provenance(&self, run_id: RunId) -> Result<Vec<ProvenanceSummary>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT provenance, range_end, calibration_id, COUNT(*) FROM fill_attempts
             WHERE run_id = ?1 AND provenance IS NOT NULL
             GROUP BY provenance, range_end, calibration_id",
        )?;
        let rows = stmt.query_map(params![run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<CalibrationId>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut by_way: BTreeMap<AttemptProvenance, ProvenanceSummary> = BTreeMap::new();
        for row in rows {
            let (json, range_end, calibration, n) = row?;
            // Written by slotfill itself; a row it cannot read is shown as unknown
            // rather than hiding the rest of the run.
            let mut how: AttemptProvenance = serde_json::from_str(&json).unwrap_or_default();
            how.endpoint = crate::redact::url_without_credentials(&how.endpoint);
            let summary = by_way
                .entry(how.clone())
                .or_insert_with(|| ProvenanceSummary {
                    how,
                    attempts: 0,
                    range_ends: BTreeMap::new(),
                    calibration_ids: Vec::new(),
                });
            summary.attempts += n as u64;
            if let Some(text) = range_end {
                count_range_ends(&mut summary.range_ends, &text);
            }
            if let Some(id) = calibration.filter(|id| !summary.calibration_ids.contains(id)) {
                summary.calibration_ids.push(id);
            }
        }
        let mut out: Vec<ProvenanceSummary> = by_way.into_values().collect();
        for s in &mut out {
            s.calibration_ids.sort_unstable();
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.attempts));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends_are_counted_from_single_and_tallied_texts() {
        let mut tally = BTreeMap::new();
        count_range_ends(&mut tally, "empty-page");
        count_range_ends(&mut tally, "empty-page:5,no-new-note:1");
        count_range_ends(&mut tally, "");
        assert_eq!(
            tally,
            BTreeMap::from([("empty-page".into(), 6), ("no-new-note".into(), 1)])
        );
    }

    #[test]
    fn provenance_keys_other_than_the_known_ones_are_dropped() {
        let how: AttemptProvenance = serde_json::from_str(
            r#"{"mode":"search","engine":"sql","token":"user","secret":"abc","visibility":["public"],"host":"."}"#,
        )
        .unwrap();
        let shown = serde_json::to_string(&how).unwrap();
        assert!(!shown.contains("abc"), "{shown}");
        assert_eq!(how.mode, "search");
        assert_eq!(how.host.as_deref(), Some("."));
    }
}
