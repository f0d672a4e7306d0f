//! Scan: list every day prefix of every location once, count what is new or
//! changed and can still decide a slot, and derive every slot's state in the
//! catalog.
//!
//! An object whose size and ETag match the catalog is never downloaded again;
//! an object whose listed size already makes it too small is never downloaded
//! at all; an object of a later location is downloaded only when no earlier
//! location holds a valid object for its slot (see `day`); an object listed
//! with its day prefix but outside the window is recorded as `unchecked`
//! (listed, not counted) until a scan covers it. Days are scanned
//! concurrently (`--concurrency` of them), the S3 requests in flight, listings
//! and downloads together, are capped at `--concurrency` and at most
//! [`MAX_CONNECTIONS`] (the S3 client's pool is sized to match), and counting
//! streams, so memory stays flat however long the window, however large the
//! objects and whatever `--concurrency` says.

pub mod count;
mod day;
mod judge;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::catalog::{
    CatalogError, DatasetRow, DayStates, LocationRow, ObjectRecord, SharedCatalog,
};
use crate::config::Dataset;
use crate::progress::Progress;
use crate::slot::Window;
use crate::store::{ListedObject, ObjectStore, StoreError, StoreStats};
pub use count::{LineCount, count_lines};
pub use judge::{ComplementMeta, coverage_seconds, judge};

pub use crate::store::MAX_CONNECTIONS;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{location}: reading {key} failed after {}: {message}", crate::report::format::plural(*attempts, "attempt"))]
    Read {
        location: String,
        key: String,
        attempts: u32,
        message: String,
    },
}

/// A location opened for scanning.
#[derive(Clone)]
pub struct ScanTarget {
    pub row: LocationRow,
    pub store: Arc<dyn ObjectStore>,
}

#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub window: Window,
    pub concurrency: usize,
    pub progress: bool,
}

/// What a scan did.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub slots: DayStates,
    pub day_prefixes_listed: u64,
    pub objects_listed: u64,
    pub objects_counted: u64,
    pub too_small_from_listing: u64,
    pub unchanged: u64,
    pub gone: u64,
    pub foreign_keys: u64,
    /// Listed with their day prefix but outside the window: recorded, not counted.
    pub outside_window: u64,
    /// New or changed, but an earlier location holds a valid object for their
    /// slot: recorded `unchecked`, not downloaded.
    pub not_needed: u64,
    pub bytes_read: u64,
    pub requests: u64,
}

#[derive(Default)]
struct Counters {
    days: AtomicU64,
    listed: AtomicU64,
    counted: AtomicU64,
    too_small: AtomicU64,
    unchanged: AtomicU64,
    gone: AtomicU64,
    foreign: AtomicU64,
    outside: AtomicU64,
    not_needed: AtomicU64,
    bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Context<'a> {
    ds: &'a Dataset,
    window: Window,
    db: &'a SharedCatalog,
    /// S3 requests in flight, listings and downloads: `--concurrency`, at most
    /// [`MAX_CONNECTIONS`], so that the connections open never exceed the pool.
    requests: Semaphore,
    concurrency: usize,
    all_locations: bool,
    counters: Counters,
    progress: Progress,
}

/// Scans every location of a dataset over a window and derives its slots.
pub async fn scan(
    db: &SharedCatalog,
    ds: &Dataset,
    dataset: &DatasetRow,
    targets: &[ScanTarget],
    options: &ScanOptions,
) -> Result<ScanReport, ScanError> {
    let days = options.window.days(&ds.spec);
    let concurrency = options.concurrency.max(1);
    let ctx = Context {
        ds,
        window: options.window,
        db,
        requests: Semaphore::new(concurrency.min(MAX_CONNECTIONS)),
        concurrency,
        // `--all-locations` or the dataset key: every object counted.
        all_locations: ds.all_locations,
        counters: Counters::default(),
        progress: Progress::new(
            options.progress,
            (days.len() * targets.len()) as u64,
            "listing",
        ),
    };
    // Locations in order: an earlier one decides a slot before a later one is read.
    let mut ordered: Vec<&ScanTarget> = targets.iter().collect();
    ordered.sort_by_key(|t| t.row.position);
    futures::stream::iter(days.iter().copied())
        .map(|day| day::scan_day(&ctx, &ordered, day))
        .buffer_unordered(concurrency)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    ctx.progress.finish();

    let mut slots = DayStates::default();
    for day in &days {
        let (first, last) = ds.spec.day_bounds(*day);
        let (first, last) = (
            first.max(options.window.first),
            last.min(options.window.last),
        );
        let (dataset, spec) = (dataset.clone(), ds.spec.clone());
        let last_settled = ds.last_settled_slot(crate::clock::now());
        let states = db
            .call(move |c| c.derive_slots(&dataset, &spec, (first, last), last_settled))
            .await?;
        slots.add(&states);
    }
    let c = &ctx.counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    Ok(ScanReport {
        slots,
        day_prefixes_listed: load(&c.days),
        objects_listed: load(&c.listed),
        objects_counted: load(&c.counted),
        too_small_from_listing: load(&c.too_small),
        unchanged: load(&c.unchanged),
        gone: load(&c.gone),
        foreign_keys: load(&c.foreign),
        outside_window: load(&c.outside),
        not_needed: load(&c.not_needed),
        bytes_read: load(&c.bytes),
        requests: targets.iter().map(|t| t.store.stats().requests()).sum(),
    })
}

const READ_ATTEMPTS: u32 = 3;

/// Downloads and counts one object, retrying broken streams, under the download limit.
async fn count_object(
    ctx: &Context<'_>,
    target: &ScanTarget,
    object: ListedObject,
    slot_start: i64,
) -> Result<ObjectRecord, ScanError> {
    let _permit = ctx.requests.acquire().await.expect("semaphore open");
    let (record, bytes_read) = inspect(target, &ctx.ds.rules, object, slot_start).await?;
    add(&ctx.counters.counted, 1);
    add(&ctx.counters.bytes, bytes_read);
    Ok(record)
}

/// Examines one object the way a listing of its day would, for a caller that
/// learned of it otherwise (a storage event): nothing when the catalog already
/// knows it as it is (same size and ETag, same verdict), no download when its
/// size already makes it too small, otherwise a download, a count and the
/// judge's verdict. Returns the record to store and the bytes read.
pub async fn examine(
    target: &ScanTarget,
    ds: &Dataset,
    object: ListedObject,
    slot_start: i64,
    previous: Option<&crate::catalog::KnownObject>,
) -> Result<Option<(ObjectRecord, u64)>, ScanError> {
    Ok(match day::decide(target.row.role, &object, previous, ds) {
        day::Decision::Unchanged(_) => None,
        day::Decision::Rejudged(record) | day::Decision::TooSmall(record) => Some((
            ObjectRecord {
                slot_start,
                ..record
            },
            0,
        )),
        day::Decision::Count => Some(inspect(target, &ds.rules, object, slot_start).await?),
    })
}

/// Downloads, counts and judges one object of a location; also returns the bytes read.
pub async fn inspect(
    target: &ScanTarget,
    rules: &crate::config::Rules,
    object: ListedObject,
    slot_start: i64,
) -> Result<(ObjectRecord, u64), ScanError> {
    let role = target.row.role;
    // Complement objects are counted whole: their line count is checked against
    // their metadata. Collector objects stop at the line cap.
    let cap = role.is_collector().then_some(rules.max_lines);
    let (mut count, metadata) = read_counted(target, &object.key, cap).await?;
    let meta = ComplementMeta::for_role(role, &metadata);
    if meta.promoted && count.capped {
        // A promoted copy is judged by its metadata like its original: count it whole.
        (count, _) = read_counted(target, &object.key, None).await?;
    }
    StoreStats::bump(&target.store.stats().bytes_read, count.bytes);
    let status = judge(role, object.size, Some(&count), &meta, rules);
    let record = ObjectRecord {
        key: object.key,
        slot_start,
        size: object.size as i64,
        etag: object.etag,
        last_modified: object.last_modified,
        lines: Some(count.lines as i64),
        utf8_valid: Some(count.utf8_valid),
        unterminated: Some(count.unterminated),
        complete: meta.complete,
        note_count: meta.note_count,
        earliest: meta.earliest,
        latest: meta.latest,
        status: Some(status),
        counted: true,
    };
    Ok((record, count.bytes))
}

/// Reads and counts one object, retrying broken streams.
async fn read_counted(
    target: &ScanTarget,
    key: &str,
    cap: Option<u64>,
) -> Result<(LineCount, std::collections::HashMap<String, String>), ScanError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = target
            .store
            .count(key, cap)
            .await
            .map(|read| (read.count, read.metadata));
        match result {
            Ok(done) => return Ok(done),
            Err(e) if e.is_configuration() || attempt >= READ_ATTEMPTS => {
                return Err(ScanError::Read {
                    location: target.store.location().to_string(),
                    key: key.to_string(),
                    attempts: attempt,
                    message: e.to_string(),
                });
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, attempt, "read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        }
    }
}
