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

mod day;

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt};
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::catalog::{CatalogError, DatasetRow, DayStates, ObjectRecord, SharedCatalog};
use crate::config::Dataset;
use crate::location::{ReadError, inspect};
use crate::progress::Progress;
use crate::slot::Window;
use crate::store::{ListedObject, StoreError};

use crate::location::OpenLocation;

pub use crate::store::MAX_CONNECTIONS;

#[derive(Debug, Error)]
pub enum ScanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Read(#[from] ReadError),
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
    targets: &[OpenLocation],
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
    let mut ordered: Vec<&OpenLocation> = targets.iter().collect();
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

/// Downloads and counts one object, retrying broken streams, under the download limit.
async fn count_object(
    ctx: &Context<'_>,
    target: &OpenLocation,
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
    target: &OpenLocation,
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
