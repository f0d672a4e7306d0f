//! Fill: complement the catalog's gap slots from the origin.
//!
//! Each slot is one *attempt*, recorded before the first origin call and
//! finished in the same transaction that records the written object and
//! the slot's new state. What can go wrong, and what happens:
//!
//! - the fetch does not complete (retries or page budget exhausted): nothing
//!   is written, the attempt says `partial` or `failed`, the slot stays a gap
//!   and is tried again next run;
//! - the fetch completes with no notes: a zero-line object with the usual
//!   metadata records that the origin confirmed the slot empty; the slot is
//!   `empty` (resolved) and re-checked after `empty_recheck_after`. A re-check
//!   that finds notes replaces that object only if it is still the one
//!   slotfill wrote (`If-Match`);
//! - the process dies between the PUT and the commit: the attempt stays
//!   unfinished, and the next run looks at the complement object first
//!   (HEAD + count) instead of fetching the slot again;
//! - the complement object already exists: it is never overwritten unless
//!   `--overwrite`; it is counted and recorded as found.
//!
//! Before the first slot the complement location (exists, accepts a write)
//! and the origin (answers, accepts the settings) are probed once, so a run
//! that cannot succeed stops with the real cause instead of failing every slot.
//! Then the origin's answers are checked against the archive, once per day of
//! gaps ([`calibrate`]): a day whose answers cannot see what the archive holds
//! is not filled, and the run fails naming the likely cause. Slots that have
//! not ended plus the settle delay are never fetched.
//!
//! Files: [`plan`] (candidates, estimates), [`calibrate`] (the origin against
//! the archive), [`attempt`] (one slot), [`object`] (the complement object and
//! its provenance), [`lease`] (one filler per dataset).

mod attempt;
pub mod calibrate;
pub(crate) mod lease;
mod object;
pub mod plan;

use crate::catalog::DatasetId;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use futures::StreamExt;
use thiserror::Error;

use crate::catalog::{
    AttemptOutcome, CatalogError, DatasetRow, FillCandidate, Lease, RunId, SharedCatalog,
};
use crate::config::Dataset;
use crate::location::OpenLocation;
use crate::progress::Progress;
use crate::slot::{SlotStart, Window};
use crate::source::{Fetch, NoteFilter, NoteSource, SourceError};
use crate::store::StoreError;
use crate::text::plural;

pub use calibrate::{Calibration, Calibrations, Verdict};
pub use plan::Estimate;

/// How many slots a report names (empty slots, for example).
pub const NAMED: usize = 20;

#[derive(Debug, Error)]
pub enum FillError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A configuration error of the complement location (credentials, bucket).
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("dataset {0} has no complement location to fill into")]
    NoComplement(String),
    #[error(
        "no slot of {dataset} from {start} to {end} was ever scanned, so slotfill cannot tell what is missing; run `slotfill scan --dataset {dataset} --start {start} --end {end}` first (or `slotfill run`, which scans)"
    )]
    NeverScanned {
        dataset: String,
        start: String,
        end: String,
    },
}

/// How a fill is carried out: what the command line (or serve) chose, built
/// once by the front end; the defaults are [`crate::defaults`]'.
#[derive(Debug, Clone)]
pub struct FillSettings {
    pub max_slots: Option<u64>,
    pub newest_first: bool,
    pub concurrency: usize,
    pub overwrite: bool,
    /// Re-check confirmed-empty slots now, whatever their re-check time.
    pub retry_empty: bool,
    pub dry_run: bool,
    /// Fetch each slot in windows of this many seconds.
    pub sub_slot_seconds: Option<u32>,
    /// Stop the run after this many failed slots in a row.
    pub max_consecutive_failures: u32,
    pub progress: bool,
    /// Filled slots whose earliest note is further than this from the slot start are reported as thin.
    pub thin_coverage_seconds: Option<f64>,
}

impl Default for FillSettings {
    fn default() -> Self {
        FillSettings {
            max_slots: None,
            newest_first: false,
            concurrency: crate::defaults::FILL_CONCURRENCY,
            overwrite: false,
            retry_empty: false,
            dry_run: false,
            sub_slot_seconds: None,
            max_consecutive_failures: crate::defaults::MAX_CONSECUTIVE_FAILURES,
            progress: false,
            thin_coverage_seconds: None,
        }
    }
}

/// A fill to carry out: its window, the origin's note filter and the settings.
#[derive(Debug, Clone)]
pub struct FillOptions {
    pub window: Window,
    pub filter: NoteFilter,
    pub settings: FillSettings,
}

impl FillOptions {
    pub fn new(window: Window) -> Self {
        FillOptions {
            window,
            filter: NoteFilter::default(),
            settings: FillSettings::default(),
        }
    }
}

/// What a fill did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct FillReport {
    pub candidates: Vec<FillCandidate>,
    /// Slots of the window the catalog has never seen (not scanned).
    pub unscanned: u64,
    pub filled: u64,
    pub exists: u64,
    pub partial: u64,
    pub empty: u64,
    pub failed: u64,
    pub notes: u64,
    /// Notes the visibility policy kept out of the slots' objects.
    pub left_out: u64,
    /// In-range notes outside the dataset's scope (host, text filter).
    pub out_of_scope: u64,
    /// The calibrations against the archive, in the order of their days.
    pub calibrations: Vec<Arc<Calibration>>,
    /// Candidates not fetched because their day's calibration showed the
    /// origin blind (or below `min_recall`) there.
    pub blocked: u64,
    /// Why, for the error line.
    pub blocked_reason: Option<String>,
    pub origin_calls: u64,
    /// Of `origin_calls`, those made once before the first slot (the probes).
    pub probe_calls: u64,
    pub retries: u64,
    /// Earliest note minus slot start, summed over filled slots (for the average).
    pub coverage_seconds_total: f64,
    /// Filled slots with coverage beyond `thin_coverage_seconds`.
    pub thin: u64,
    /// The first slots the origin confirmed empty, in the order they finished.
    pub empty_slots: Vec<SlotStart>,
    /// Set when most slots came back empty while their neighbours hold data:
    /// the neighbours' average notes per slot.
    pub suspicious_empty: Option<f64>,
    /// Why the last failed slot failed, for the error line.
    pub last_failure: Option<String>,
    /// Dry run only.
    pub estimate: Estimate,
    pub stopped: Option<String>,
}

impl FillReport {
    pub fn attempted(&self) -> u64 {
        self.filled + self.exists + self.partial + self.empty + self.failed
    }

    /// Slots that became ok.
    pub fn completed(&self) -> u64 {
        self.filled + self.exists
    }

    /// Why the fill as a whole failed, if it did: it stopped early, or some slot
    /// failed and no slot was resolved (filled, found or confirmed empty).
    pub fn failure(&self) -> Option<String> {
        let cause = self
            .last_failure
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        if let Some(stopped) = &self.stopped {
            return Some(format!("{stopped}{cause}"));
        }
        if let Some(reason) = &self.blocked_reason {
            return Some(format!(
                "{} not filled: {reason}",
                plural(self.blocked, "slot")
            ));
        }
        let failed = self.failed + self.partial;
        (failed > 0 && self.completed() + self.empty == 0).then(|| {
            format!(
                "{} failed and none was filled{cause}",
                plural(failed, "slot")
            )
        })
    }

    fn absorb(&mut self, slot: &attempt::SlotResult, thin_after: Option<f64>) {
        match slot.outcome {
            AttemptOutcome::Filled => self.filled += 1,
            AttemptOutcome::Exists => self.exists += 1,
            AttemptOutcome::Partial => self.partial += 1,
            AttemptOutcome::Empty => self.empty += 1,
            AttemptOutcome::Failed => self.failed += 1,
        }
        if slot.confirmed_empty && self.empty_slots.len() < NAMED {
            self.empty_slots.push(slot.slot);
        }
        if let Some(message) = &slot.failure {
            self.last_failure = Some(message.clone());
        }
        self.notes += slot.notes;
        self.left_out += slot.left_out.unwrap_or(0);
        self.out_of_scope += slot.out_of_scope.unwrap_or(0);
        self.origin_calls += slot.fetch.calls;
        self.retries += slot.fetch.retries;
        self.coverage_seconds_total += slot.coverage.unwrap_or(0.0);
        let thin = thin_after
            .zip(slot.coverage)
            .is_some_and(|(limit, c)| c > limit);
        self.thin += u64::from(thin);
    }
}

/// What every slot's attempt shares.
struct Context<'a> {
    ds: &'a Dataset,
    dataset: &'a DatasetRow,
    db: &'a SharedCatalog,
    complement: &'a OpenLocation,
    source: Arc<dyn NoteSource>,
    run: Option<RunId>,
    options: &'a FillOptions,
    calibrations: Calibrations,
    /// The dataset's lease, renewed before each slot.
    lease: Lease,
    /// Why the lease could not be renewed: the run stops.
    lease_lost: std::sync::Mutex<Option<String>>,
    stop: AtomicBool,
    consecutive_failures: AtomicU32,
}

/// Fills the catalog's gap slots of `options.window` from `source` into the
/// complement location among `targets` (every location of the dataset: the
/// collector's are read to calibrate the origin).
pub async fn fill(
    db: &SharedCatalog,
    ds: &Dataset,
    dataset: &DatasetRow,
    targets: &[OpenLocation],
    source: Arc<dyn NoteSource>,
    run: Option<RunId>,
    options: &FillOptions,
) -> Result<FillReport, FillError> {
    let complement = targets
        .iter()
        .find(|t| t.row.role == crate::config::Role::Complement)
        .ok_or_else(|| FillError::NoComplement(ds.name.clone()))?;
    let unscanned = plan::unscanned_slots(db, ds, dataset.id, options).await?;
    let query = plan::candidate_query(ds, options);
    if options.settings.dry_run {
        let candidates = plan::candidates(db, dataset.id, query).await?;
        let estimate = plan::estimate(
            db,
            dataset.id,
            &candidates,
            source.as_ref(),
            options.settings.concurrency,
        )
        .await?;
        return Ok(FillReport {
            candidates,
            unscanned,
            estimate,
            ..Default::default()
        });
    }
    // The lease first, then the plan: a plan made before it could be stale.
    let lease = lease::acquire(db, dataset).await?;
    let id = dataset.id;
    let planned = db
        .call(move |c| {
            // Attempts a killed process left behind whose slot has since been resolved are settled.
            c.settle_interrupted_attempts(id)?;
            c.fill_candidates(id, &query)
        })
        .await
        .map_err(FillError::from);
    let mut report = FillReport {
        unscanned,
        ..Default::default()
    };
    let probed = match planned {
        Ok(candidates) if !candidates.is_empty() => {
            report.candidates = candidates;
            probe(complement, source.as_ref(), &mut report).await
        }
        other => other.map(|_| ()),
    };
    if report.candidates.is_empty() || probed.is_err() {
        lease::release(db, lease).await;
        return probed.map(|()| report);
    }
    let heartbeat = lease::spawn_heartbeat(db.clone(), lease.clone());
    let calibrator = calibrate::Calibrator {
        ds,
        db,
        dataset_id: dataset.id,
        targets,
        source: &source,
        filter: &options.filter,
        run,
    };
    let calibrated = calibrator.calibrate(&report.candidates).await;
    let fatal = match calibrated {
        Ok(calibrations) => {
            let ctx = Context {
                ds,
                dataset,
                db,
                complement,
                source: source.clone(),
                run,
                options,
                calibrations,
                lease: lease.clone(),
                lease_lost: std::sync::Mutex::new(None),
                stop: AtomicBool::new(false),
                consecutive_failures: AtomicU32::new(0),
            };
            report.calibrations = ctx.calibrations.distinct();
            let calibration_calls: u64 = report.calibrations.iter().map(|c| c.origin_calls).sum();
            report.origin_calls += calibration_calls;
            report.probe_calls += calibration_calls;
            let fatal = fill_candidates(&ctx, &mut report).await;
            report.stopped = ctx.lease_lost.lock().expect("not poisoned").take();
            if ctx.stop.load(Ordering::SeqCst) && report.stopped.is_none() && fatal.is_none() {
                report.stopped = Some(format!(
                    "stopped after {} in a row; the rest stay missing and are tried next run",
                    plural(options.settings.max_consecutive_failures, "failed slot")
                ));
            }
            fatal
        }
        Err(e) => Some(e),
    };
    heartbeat.abort();
    let lease_lost = heartbeat.await.ok().and_then(|lost| lost);
    lease::release(db, lease).await;
    if let Some(e) = fatal {
        return Err(e);
    }
    if let Some(lost) = lease_lost.filter(|_| report.stopped.is_none()) {
        report.stopped = Some(lost);
    }
    report.suspicious_empty = suspicious_empty(db, dataset.id, &report).await?;
    Ok(report)
}

impl Context<'_> {
    /// Renews the lease before a slot is fetched; false (and the run stops)
    /// when another process took it over, so no slot is fetched or written
    /// after the lease is gone.
    async fn hold_lease(&self) -> bool {
        match lease::renew(self.db, &self.lease).await {
            Ok(()) => true,
            Err(lost) => {
                tracing::error!(error = %lost, "lost the fill lease; filling no further slot");
                self.stop.store(true, Ordering::SeqCst);
                let mut first = self.lease_lost.lock().expect("not poisoned");
                first.get_or_insert(lost);
                false
            }
        }
    }
}

/// Fills every planned slot whose day's calibration does not block it,
/// `concurrency` at once; returns the error that stopped the run, if one did.
async fn fill_candidates(ctx: &Context<'_>, report: &mut FillReport) -> Option<FillError> {
    let (candidates, blocked): (Vec<_>, Vec<_>) =
        report.candidates.iter().cloned().partition(|c| {
            let calibration = ctx.calibrations.of(ctx.ds, c.slot_start);
            !calibration.is_some_and(|c| c.verdict.blocks())
        });
    if let Some(first) = blocked.first() {
        report.blocked = blocked.len() as u64;
        let calibration = ctx.calibrations.of(ctx.ds, first.slot_start);
        report.blocked_reason = calibration.map(|c| c.message.clone());
    }
    let progress = Progress::new(
        ctx.options.settings.progress,
        candidates.len() as u64,
        "filling",
    );
    let mut results = futures::stream::iter(candidates)
        .map(|candidate| attempt::fill_one(ctx, candidate))
        .buffer_unordered(ctx.options.settings.concurrency.max(1));
    let mut fatal = None;
    while let Some(result) = results.next().await {
        progress.inc(1);
        match result {
            Ok(Some(slot)) => report.absorb(&slot, ctx.options.settings.thin_coverage_seconds),
            Ok(None) => {}
            Err(e) => {
                ctx.stop.store(true, Ordering::SeqCst);
                fatal.get_or_insert(e);
            }
        }
        progress.message(format!(
            "{} filled, {}",
            report.filled,
            plural(report.notes, "note")
        ));
    }
    progress.finish();
    fatal
}

/// Proves, before the first slot, that the complement location accepts a
/// write and that the origin answers and accepts the settings: a run that
/// cannot succeed stops here with the real cause, having spent no origin call
/// on a slot it could not write.
async fn probe(
    complement: &OpenLocation,
    source: &dyn NoteSource,
    report: &mut FillReport,
) -> Result<(), FillError> {
    complement.store.check_writable().await?;
    let mut stats = Fetch::default();
    let probed = source.probe(&mut stats).await;
    report.origin_calls += stats.calls;
    report.probe_calls += stats.calls;
    report.retries += stats.retries;
    Ok(probed?)
}

/// When most slots of the run came back empty while their neighbours hold
/// data, the origin is probably misconfigured (mode, host, token).
async fn suspicious_empty(
    db: &SharedCatalog,
    dataset_id: DatasetId,
    report: &FillReport,
) -> Result<Option<f64>, FillError> {
    if report.empty < 3 || report.empty * 2 <= report.empty + report.filled {
        return Ok(None);
    }
    let slots = report.empty_slots.clone();
    let neighbours = db
        .call(move |c| {
            slots
                .iter()
                .map(|slot| c.neighbour_lines(dataset_id, *slot, plan::NEIGHBOUR_DISTANCE_SECS))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let with_data: Vec<f64> = neighbours
        .into_iter()
        .flatten()
        .filter(|n| *n > 0.0)
        .collect();
    Ok((with_data.len() * 2 > report.empty_slots.len())
        .then(|| with_data.iter().sum::<f64>() / with_data.len() as f64))
}

#[cfg(test)]
mod tests;
