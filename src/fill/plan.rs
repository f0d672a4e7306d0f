//! Planning a fill: which slots, in which order, and what a dry run expects.
//!
//! A slot is a candidate when it is a gap that has ended plus the settle delay,
//! or a confirmed-empty slot whose re-check is due. A window the catalog has
//! never seen is refused: "0 slots to fill" would be a lie.

use std::time::Duration;

use crate::catalog::{CandidateQuery, DatasetId, FillCandidate, SharedCatalog};
use crate::config::Dataset;
use crate::source::NoteSource;

use super::{FillError, FillOptions};

/// What one origin call is assumed to take when estimating a run's duration.
const NOMINAL_CALL: Duration = Duration::from_millis(250);

/// How far to look for a valid neighbour when estimating a slot's notes.
pub(super) const NEIGHBOUR_DISTANCE_SECS: i64 = 86_400;

/// The catalog's query for this fill's candidates.
pub fn candidate_query(ds: &Dataset, options: &FillOptions) -> CandidateQuery {
    let now = crate::clock::now();
    CandidateQuery {
        range: (options.window.first, options.window.last),
        newest_first: options.settings.newest_first,
        limit: options.settings.max_slots,
        retry_empty: options.settings.retry_empty,
        last_settled: ds.last_settled_slot(now),
        empty_counted_before: crate::clock::timestamp_text(now - ds.empty_recheck_after),
    }
}

pub async fn candidates(
    db: &SharedCatalog,
    dataset_id: DatasetId,
    query: CandidateQuery,
) -> Result<Vec<FillCandidate>, FillError> {
    Ok(db
        .call(move |c| c.fill_candidates(dataset_id, &query))
        .await?)
}

/// How many slots of the window the catalog has never seen; an error when it
/// has seen none of them.
pub async fn unscanned_slots(
    db: &SharedCatalog,
    ds: &Dataset,
    dataset_id: DatasetId,
    options: &FillOptions,
) -> Result<u64, FillError> {
    let window = options.window;
    let range = (window.first, window.last);
    let known = db
        .call(move |c| c.slot_states(dataset_id, range))
        .await?
        .total();
    let expected = window.slot_count(&ds.spec) as u64;
    if known == 0 {
        return Err(FillError::NeverScanned {
            dataset: ds.name.clone(),
            start: ds.spec.local_iso(window.first),
            end: ds.spec.local_iso(window.last),
        });
    }
    Ok(expected.saturating_sub(known))
}

/// What a dry run expects the fill to cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    pub notes: u64,
    pub calls: u64,
    pub duration: Duration,
    /// The pause between calls it assumes (`--sleep`).
    pub interval: Duration,
}

/// Estimates each candidate's notes from its nearest valid neighbours (the
/// dataset's average when it has none within a day), or from its own invalid
/// object where that was counted to hold more (a heavy slot cannot be seen
/// from its neighbours), and the calls and time that takes at the source's
/// pace and the fill's concurrency. Every figure is a lower bound: an invalid
/// object's count stops at `max_lines`, and thinned pages cost more calls.
pub async fn estimate(
    db: &SharedCatalog,
    dataset_id: DatasetId,
    candidates: &[FillCandidate],
    source: &dyn NoteSource,
    concurrency: usize,
) -> Result<Estimate, FillError> {
    let slots: Vec<i64> = candidates.iter().map(|c| c.slot_start).collect();
    let per_slot = db
        .call(move |c| {
            let average = c.average_ok_lines(dataset_id)?.unwrap_or(0.0);
            slots
                .iter()
                .map(|slot| {
                    let own = c.slot_lines(dataset_id, *slot)?.unwrap_or(0).max(0) as u64;
                    let near = c.neighbour_lines(dataset_id, *slot, NEIGHBOUR_DISTANCE_SECS)?;
                    Ok(own.max(near.unwrap_or(average).round() as u64))
                })
                .collect::<Result<Vec<u64>, crate::catalog::CatalogError>>()
        })
        .await?;
    let notes = per_slot.iter().sum();
    let calls: u64 = per_slot.iter().map(|n| source.estimated_calls(*n)).sum();
    let interval = source.call_interval();
    let per_call = interval.max(NOMINAL_CALL / concurrency.max(1) as u32);
    Ok(Estimate {
        notes,
        calls,
        interval,
        duration: per_call.saturating_mul(calls.min(u32::MAX as u64) as u32),
    })
}

/// "about 3 min", for people.
pub fn describe_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=89 => format!("about {secs} s"),
        90..=5399 => format!("about {} min", (secs + 30) / 60),
        _ => format!("about {:.1} h", secs as f64 / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(describe_duration(Duration::from_secs(12)), "about 12 s");
        assert_eq!(describe_duration(Duration::from_secs(200)), "about 3 min");
        assert_eq!(describe_duration(Duration::from_secs(7200)), "about 2.0 h");
    }
}
