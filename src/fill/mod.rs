//! Fill: complement the catalog's non-ok slots from the origin.
//!
//! Each slot is one *attempt*, recorded before the first origin call and
//! finished in the same transaction that records the written object and
//! marks the slot ok. What can go wrong, and what happens:
//!
//! - the fetch does not complete (retries or page budget exhausted): nothing
//!   is written, the attempt says `partial` or `failed`, the slot stays
//!   missing and is tried again next run;
//! - the fetch completes with no notes: nothing is written, the attempt says
//!   `empty`, and the slot waits a week before it is tried again (or
//!   `--retry-empty`);
//! - the process dies between the PUT and the commit: the attempt stays
//!   unfinished, and the next run looks at the complement object first
//!   (HEAD + count) instead of fetching the slot again;
//! - the complement object already exists: it is never overwritten unless
//!   `--overwrite`; it is counted and recorded as found.
//!
//! One lease per dataset keeps two processes from filling it at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use thiserror::Error;
use tracing::Instrument;

use crate::catalog::{
    AttemptOutcome, CatalogError, DatasetRow, FillCandidate, FinishedAttempt, Lease, ObjectRecord,
    RunId, SharedCatalog,
};
use crate::config::Dataset;
use crate::progress::Progress;
use crate::report::format::plural;
use crate::scan::{ScanError, ScanTarget, inspect};
use crate::slot::Window;
use crate::source::{Fetch, NoteFilter, NoteSink, NoteSource, SlotFile, SourceError};
use crate::state::State;
use crate::store::{ListedObject, PutOutcome, PutRequest, StoreError};

const LEASE_TTL_SECS: i64 = 120;
const LEASE_RENEW: Duration = Duration::from_secs(30);

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
}

#[derive(Debug, Clone)]
pub struct FillOptions {
    pub window: Window,
    pub max_slots: Option<u64>,
    pub newest_first: bool,
    pub concurrency: usize,
    pub overwrite: bool,
    pub retry_empty: bool,
    pub dry_run: bool,
    /// Fetch each slot in windows of this many seconds.
    pub sub_slot_seconds: Option<u32>,
    pub filter: NoteFilter,
    /// Stop the run after this many failed slots in a row.
    pub max_consecutive_failures: u32,
    /// An empty slot is not retried before this much time has passed.
    pub empty_retry_after: chrono::Duration,
    pub progress: bool,
    /// Filled slots whose earliest note is further than this from the slot start are reported as thin.
    pub thin_coverage_seconds: Option<f64>,
}

impl FillOptions {
    pub fn new(window: Window) -> Self {
        FillOptions {
            window,
            max_slots: None,
            newest_first: false,
            concurrency: 4,
            overwrite: false,
            retry_empty: false,
            dry_run: false,
            sub_slot_seconds: None,
            filter: NoteFilter::All,
            max_consecutive_failures: 5,
            empty_retry_after: chrono::Duration::days(7),
            progress: false,
            thin_coverage_seconds: None,
        }
    }
}

/// What a fill did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct FillReport {
    pub candidates: Vec<FillCandidate>,
    pub filled: u64,
    pub exists: u64,
    pub partial: u64,
    pub empty: u64,
    pub failed: u64,
    pub notes: u64,
    pub origin_calls: u64,
    pub retries: u64,
    /// Earliest note minus slot start, summed over filled slots (for the average).
    pub coverage_seconds_total: f64,
    /// Filled slots with coverage beyond `thin_coverage_seconds`.
    pub thin: u64,
    pub estimated_calls: u64,
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
}

struct Context<'a> {
    ds: &'a Dataset,
    dataset: &'a DatasetRow,
    db: &'a SharedCatalog,
    complement: &'a ScanTarget,
    source: Arc<dyn NoteSource>,
    run: Option<RunId>,
    options: &'a FillOptions,
    stop: AtomicBool,
    consecutive_failures: AtomicU32,
}

/// One finished slot, for the report.
struct SlotResult {
    outcome: AttemptOutcome,
    fetch: Fetch,
    notes: u64,
    coverage: Option<f64>,
}

pub async fn fill(
    db: &SharedCatalog,
    ds: &Dataset,
    dataset: &DatasetRow,
    complement: Option<&ScanTarget>,
    source: Arc<dyn NoteSource>,
    run: Option<RunId>,
    options: &FillOptions,
) -> Result<FillReport, FillError> {
    let complement = complement.ok_or_else(|| FillError::NoComplement(ds.name.clone()))?;
    let (id, range, newest, limit, retry_empty) = (
        dataset.id,
        (options.window.first, options.window.last),
        options.newest_first,
        options.max_slots,
        options.retry_empty,
    );
    let find_candidates = move |c: &mut crate::catalog::Catalog| {
        c.fill_candidates(id, range, newest, limit, retry_empty)
    };
    if options.dry_run {
        let candidates = db.call(find_candidates).await?;
        let average = db.call(move |c| c.average_ok_lines(id)).await?;
        let estimated_calls =
            candidates.len() as u64 * source.estimated_calls(average.unwrap_or(0.0) as u64);
        return Ok(FillReport {
            candidates,
            estimated_calls,
            ..Default::default()
        });
    }
    // The lease first, then the plan: a plan made before it could be stale.
    let lease = acquire_lease(db, dataset).await?;
    let planned = db
        .call(move |c| {
            // Attempts a killed process left behind whose slot has since become ok are settled.
            c.settle_interrupted_attempts(id)?;
            c.fill_candidates(id, range, newest, limit, retry_empty)
        })
        .await;
    let candidates = match planned {
        Ok(candidates) if !candidates.is_empty() => candidates,
        other => {
            let _ = db.call(move |c| c.release_lease(&lease)).await;
            return Ok(FillReport {
                candidates: other?,
                ..Default::default()
            });
        }
    };
    let mut report = FillReport {
        candidates: candidates.clone(),
        ..Default::default()
    };
    let heartbeat = spawn_heartbeat(db.clone(), lease.clone());
    let ctx = Context {
        ds,
        dataset,
        db,
        complement,
        source,
        run,
        options,
        stop: AtomicBool::new(false),
        consecutive_failures: AtomicU32::new(0),
    };
    let progress = Progress::new(options.progress, candidates.len() as u64, "filling");
    let mut results = futures::stream::iter(candidates)
        .map(|candidate| fill_one(&ctx, candidate))
        .buffer_unordered(options.concurrency.max(1));
    let mut fatal = None;
    while let Some(result) = results.next().await {
        progress.inc(1);
        match result {
            Ok(Some(slot)) => {
                let thin = options
                    .thin_coverage_seconds
                    .zip(slot.coverage)
                    .is_some_and(|(limit, c)| c > limit);
                report.thin += u64::from(thin);
                report.absorb(&slot);
            }
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
    drop(results);
    progress.finish();
    heartbeat.abort();
    let lease_lost = heartbeat.await.ok().and_then(|lost| lost);
    let _ = db.call(move |c| c.release_lease(&lease)).await;
    if let Some(e) = fatal {
        return Err(e);
    }
    if let Some(lost) = lease_lost {
        report.stopped = Some(lost);
    } else if ctx.stop.load(Ordering::SeqCst) {
        report.stopped = Some(format!(
            "stopped after {} in a row; the rest stay missing and are tried next run",
            plural(options.max_consecutive_failures, "failed slot")
        ));
    }
    Ok(report)
}

impl FillReport {
    fn absorb(&mut self, slot: &SlotResult) {
        match slot.outcome {
            AttemptOutcome::Filled => self.filled += 1,
            AttemptOutcome::Exists => self.exists += 1,
            AttemptOutcome::Partial => self.partial += 1,
            AttemptOutcome::Empty => self.empty += 1,
            AttemptOutcome::Failed => self.failed += 1,
        }
        self.notes += slot.notes;
        self.origin_calls += slot.fetch.calls;
        self.retries += slot.fetch.retries;
        self.coverage_seconds_total += slot.coverage.unwrap_or(0.0);
    }
}

async fn acquire_lease(db: &SharedCatalog, dataset: &DatasetRow) -> Result<Lease, FillError> {
    let (id, name) = (dataset.id, dataset.name.clone());
    Ok(db
        .call(move |c| c.acquire_lease(id, &name, chrono::Duration::seconds(LEASE_TTL_SECS)))
        .await?)
}

/// Renews the lease until aborted; ends early with a message if it was lost.
fn spawn_heartbeat(db: SharedCatalog, lease: Lease) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            let lease = lease.clone();
            let renewed = db
                .call(move |c| c.renew_lease(&lease, chrono::Duration::seconds(LEASE_TTL_SECS)))
                .await;
            if let Err(e) = renewed {
                tracing::error!(error = %e, "lost the fill lease");
                return Some(e.to_string());
            }
        }
    })
}

/// Fills one slot; `Ok(None)` when skipped because the run is stopping.
async fn fill_one(
    ctx: &Context<'_>,
    candidate: FillCandidate,
) -> Result<Option<SlotResult>, FillError> {
    if ctx.stop.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let span = tracing::info_span!("slot", slot = %candidate.start_local);
    fill_slot(ctx, candidate).instrument(span).await
}

async fn fill_slot(
    ctx: &Context<'_>,
    candidate: FillCandidate,
) -> Result<Option<SlotResult>, FillError> {
    let slot = candidate.slot_start;
    let (id, run) = (ctx.dataset.id, ctx.run);
    let attempt_id = ctx.db.call(move |c| c.start_attempt(id, slot, run)).await?;
    let (ending, stop_run) = attempt(ctx, &candidate).await;
    let result = finish(ctx, attempt_id, slot, ending).await?;
    match stop_run {
        Some(e) => Err(e),
        None => Ok(Some(result)),
    }
}

/// How an attempt ended, as it is recorded.
struct Ending {
    outcome: AttemptOutcome,
    fetch: Fetch,
    object: Option<ObjectRecord>,
    retry_after: Option<String>,
}

impl Ending {
    fn new(outcome: AttemptOutcome, fetch: Fetch) -> Self {
        Ending {
            outcome,
            fetch,
            object: None,
            retry_after: None,
        }
    }

    fn failed(fetch: Fetch, code: &str) -> Self {
        let fetch = Fetch {
            error_code: Some(code.to_string()),
            ..fetch
        };
        Ending::new(AttemptOutcome::Failed, fetch)
    }
}

/// The work of one attempt. Also returns the error that must stop the whole
/// run, for failures that would doom every other slot alike.
async fn attempt(ctx: &Context<'_>, candidate: &FillCandidate) -> (Ending, Option<FillError>) {
    let slot = candidate.slot_start;
    let key = ctx.ds.spec.key(slot);
    if candidate.unfinished_attempt && !ctx.options.overwrite {
        // An earlier run may have written the object and died before recording it.
        if let Some(found) = existing_object(ctx, &key, slot).await {
            tracing::info!("found the object of an interrupted attempt; not fetching again");
            let ending = Ending {
                object: Some(found),
                ..Ending::new(AttemptOutcome::Exists, Fetch::default())
            };
            return (ending, None);
        }
    }
    let (start_ms, end_ms) = (slot * 1000, (slot + ctx.ds.spec.width_secs()) * 1000);
    let mut sink = match NoteSink::new(start_ms, end_ms, ctx.options.filter) {
        Ok(sink) => sink,
        Err(e) => {
            tracing::error!(error = %e, "cannot create a spool file");
            return (Ending::failed(Fetch::default(), "spool"), None);
        }
    };
    let fetch = match fetch_slot(ctx, start_ms, end_ms, &mut sink).await {
        Ok(fetch) => fetch,
        Err(e) => return (Ending::failed(Fetch::default(), "config"), Some(e.into())),
    };
    if !fetch.complete {
        let outcome = if fetch.error_code.as_deref() == Some("page_budget") {
            AttemptOutcome::Partial
        } else {
            AttemptOutcome::Failed
        };
        return (Ending::new(outcome, fetch), None);
    }
    if sink.is_empty() {
        let retry_after = crate::clock::now() + ctx.options.empty_retry_after;
        let ending = Ending {
            retry_after: Some(crate::clock::timestamp_text(retry_after)),
            ..Ending::new(AttemptOutcome::Empty, fetch)
        };
        return (ending, None);
    }
    let file = match sink.finish() {
        Ok(file) => file,
        Err(e) => {
            tracing::error!(error = %e, "cannot write the slot file");
            return (Ending::failed(fetch, "spool"), None);
        }
    };
    match write_object(ctx, &key, slot, &file).await {
        Ok((outcome, object)) => {
            let ending = Ending {
                object,
                ..Ending::new(outcome, fetch)
            };
            (ending, None)
        }
        // Wrong credentials or a missing bucket fail every slot alike: stop at once
        // instead of fetching more slots from the origin for nothing.
        Err(e) if e.is_configuration() => {
            (Ending::failed(fetch, "store"), Some(FillError::Store(e)))
        }
        Err(e) => {
            tracing::error!(error = %e, "writing the complement object failed");
            (Ending::failed(fetch, "store"), None)
        }
    }
}

/// Fetches a slot, in sub-slot windows if asked; stops at the first incomplete window.
async fn fetch_slot(
    ctx: &Context<'_>,
    start_ms: i64,
    end_ms: i64,
    sink: &mut NoteSink,
) -> Result<Fetch, SourceError> {
    let step = ctx
        .options
        .sub_slot_seconds
        .map(|s| i64::from(s.max(1)) * 1000)
        .unwrap_or(end_ms - start_ms);
    let mut total = Fetch {
        complete: true,
        ..Default::default()
    };
    let mut window_end = end_ms;
    // Newest window first, like the pages inside each window.
    while window_end > start_ms {
        let window_start = (window_end - step).max(start_ms);
        let fetch = ctx.source.fetch(window_start, window_end, sink).await?;
        total.absorb(&fetch);
        if !fetch.complete {
            total.complete = false;
            total.error_code = fetch.error_code;
            break;
        }
        window_end = window_start;
    }
    Ok(total)
}

/// The complement object of a slot, counted, if it exists.
async fn existing_object(ctx: &Context<'_>, key: &str, slot: i64) -> Option<ObjectRecord> {
    let head = match ctx.complement.store.head(key).await {
        Ok(head) => head?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the complement object");
            return None;
        }
    };
    let listed = ListedObject {
        key: key.to_string(),
        size: head.size,
        etag: head.etag,
        last_modified: head.last_modified,
    };
    match inspect(ctx.complement, &ctx.ds.rules, listed, slot).await {
        Ok((record, _)) => Some(record),
        Err(ScanError::Read { message, .. }) => {
            tracing::warn!(%message, "cannot read the complement object");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the complement object");
            None
        }
    }
}

/// Writes the slot file to the complement location.
async fn write_object(
    ctx: &Context<'_>,
    key: &str,
    slot: i64,
    file: &SlotFile,
) -> Result<(AttemptOutcome, Option<ObjectRecord>), StoreError> {
    let spec = &ctx.ds.spec;
    let coverage = coverage_seconds(slot, file);
    let metadata = vec![
        ("slot".to_string(), spec.local_iso(slot)),
        ("note-count".to_string(), file.notes.to_string()),
        (
            "earliest".to_string(),
            file.earliest.clone().unwrap_or_default(),
        ),
        (
            "latest".to_string(),
            file.latest.clone().unwrap_or_default(),
        ),
        ("complete".to_string(), "true".to_string()),
        ("source".to_string(), ctx.source.describe()),
        (
            "coverage-seconds".to_string(),
            format!("{:.3}", coverage.unwrap_or(0.0)),
        ),
        (
            "slotfill-version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ];
    let request = PutRequest {
        content_type: "application/x-ndjson".to_string(),
        metadata,
        overwrite: ctx.options.overwrite,
    };
    match ctx
        .complement
        .store
        .put_file(key, file.file.path(), &request)
        .await?
    {
        PutOutcome::Created { etag } => Ok((
            AttemptOutcome::Filled,
            Some(ObjectRecord {
                key: key.to_string(),
                slot_start: slot,
                size: file.bytes as i64,
                etag,
                last_modified: Some(crate::clock::now_text()),
                lines: Some(file.notes as i64),
                utf8_valid: Some(true),
                unterminated: Some(false),
                complete: Some(true),
                note_count: Some(file.notes as i64),
                earliest: file.earliest.clone(),
                latest: file.latest.clone(),
                status: Some(State::Ok),
                counted: true,
            }),
        )),
        PutOutcome::AlreadyExists => {
            tracing::info!(
                "the complement object already exists; keeping it (use --overwrite to replace)"
            );
            Ok((
                AttemptOutcome::Exists,
                existing_object(ctx, key, slot).await,
            ))
        }
    }
}

fn coverage_seconds(slot: i64, file: &SlotFile) -> Option<f64> {
    file.earliest_ms
        .map(|ms| (ms - slot * 1000) as f64 / 1000.0)
}

async fn finish(
    ctx: &Context<'_>,
    attempt_id: i64,
    slot: i64,
    ending: Ending,
) -> Result<SlotResult, FillError> {
    let Ending {
        outcome,
        fetch,
        object,
        retry_after,
    } = ending;
    let notes = object
        .as_ref()
        .and_then(|o| o.note_count.or(o.lines))
        .unwrap_or(0) as u64;
    let coverage = object
        .as_ref()
        .and_then(|o| o.earliest.as_deref())
        .and_then(crate::source::sink::parse_created_at)
        .map(|ms| (ms - slot * 1000) as f64 / 1000.0);
    match outcome {
        AttemptOutcome::Failed | AttemptOutcome::Partial => {
            let failures = ctx.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
            if failures >= ctx.options.max_consecutive_failures {
                ctx.stop.store(true, Ordering::SeqCst);
            }
        }
        _ => ctx.consecutive_failures.store(0, Ordering::SeqCst),
    }
    let done = FinishedAttempt {
        dataset_id: ctx.dataset.id,
        attempt_id,
        slot_start: slot,
        outcome,
        notes,
        origin_calls: fetch.calls,
        retries: fetch.retries,
        coverage_seconds: coverage,
        error_code: fetch.error_code.clone(),
        object: object.map(|o| (ctx.complement.row.id, o)),
        retry_after,
    };
    ctx.db.call(move |c| c.finish_attempt(&done)).await?;
    tracing::info!(
        outcome = outcome.as_str(),
        notes,
        calls = fetch.calls,
        "slot done"
    );
    Ok(SlotResult {
        outcome,
        fetch,
        notes,
        coverage,
    })
}
