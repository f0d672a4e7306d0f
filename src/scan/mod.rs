//! Scan: list every day prefix of every location once, count what is new or
//! changed, and derive every slot's state in the catalog.
//!
//! An object whose size and ETag match the catalog is never downloaded again;
//! an object whose listed size already makes it too small is never downloaded
//! at all; an object listed with its day prefix but outside the window is
//! recorded as `unchecked` (listed, not counted) until a scan covers it. Day prefixes are scanned concurrently (`--concurrency`), and the
//! same limit bounds the downloads in flight, so memory stays flat however
//! long the window and however large the objects.

pub mod count;
mod judge;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::catalog::{
    CatalogError, DatasetRow, DayStates, KnownObject, ListedDay, LocationRow, ObjectRecord,
    SharedCatalog,
};
use crate::config::{Dataset, Role};
use crate::progress::Progress;
use crate::slot::Window;
use crate::state::State;
use crate::store::{ListedObject, ObjectStore, StoreError, StoreStats};
pub use count::{LineCount, count_lines};
pub use judge::{ComplementMeta, coverage_seconds, judge};

/// Downloads in flight at most, whatever `--concurrency` says: each open
/// connection holds about 0.5 MB of HTTP client buffers, and past this the
/// benchmark shows no throughput gain (docs/BENCHMARKS.md).
pub const MAX_DOWNLOADS: usize = 32;

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
    bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Context<'a> {
    ds: &'a Dataset,
    window: Window,
    db: &'a SharedCatalog,
    downloads: Semaphore,
    concurrency: usize,
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
        downloads: Semaphore::new(concurrency.min(MAX_DOWNLOADS)),
        concurrency,
        counters: Counters::default(),
        progress: Progress::new(
            options.progress,
            (days.len() * targets.len()) as u64,
            "listing",
        ),
    };
    // By index, not by reference: a closure taking a borrowed target would keep
    // the scan's future from being `Send` (a long-running server spawns it).
    let jobs: Vec<(usize, NaiveDate)> = (0..targets.len())
        .flat_map(|target| days.iter().map(move |day| (target, *day)))
        .collect();
    futures::stream::iter(jobs)
        .map(|(target, day)| scan_day(&ctx, &targets[target], day))
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
        bytes_read: load(&c.bytes),
        requests: targets.iter().map(|t| t.store.stats().requests()).sum(),
    })
}

/// Lists one day prefix of one location, counts what needs counting, and
/// records the result in one transaction.
async fn scan_day(ctx: &Context<'_>, target: &ScanTarget, day: NaiveDate) -> Result<(), ScanError> {
    let prefix = ctx.ds.spec.day_prefix(day);
    let location_id = target.row.id;
    let known_prefix = prefix.clone();
    // What the catalog knows is read before listing: an object a concurrent fill
    // writes and records meanwhile is then either listed (and counted) or left as
    // the fill recorded it, never taken for gone because the listing predates it.
    let mut known = ctx
        .db
        .call(move |c| c.known_objects(location_id, &known_prefix))
        .await?;
    let listing = target.store.list(&prefix).await?;
    add(&ctx.counters.days, 1);
    add(&ctx.counters.listed, listing.objects.len() as u64);

    let role = target.row.role;
    let mut upserts = Vec::new();
    let mut to_count = Vec::new();
    for object in &listing.objects {
        let Some(slot_start) = ctx.ds.spec.parse_key(&object.key) else {
            add(&ctx.counters.foreign, 1);
            continue;
        };
        let previous = known.remove(&object.key);
        let mut decision = decide(role, object, previous.as_ref(), ctx.ds);
        if !ctx.window.contains(slot_start) {
            add(&ctx.counters.outside, 1);
            if matches!(decision, Decision::Count) {
                decision = unchecked(object, previous.as_ref());
            }
        }
        match decision {
            Decision::Unchanged => add(&ctx.counters.unchanged, 1),
            Decision::Rejudged(record) | Decision::TooSmall(record) => {
                if record.lines.is_none() && record.status == Some(State::TooSmall) {
                    add(&ctx.counters.too_small, 1);
                }
                upserts.push(ObjectRecord {
                    slot_start,
                    ..record
                });
            }
            Decision::Count => to_count.push((object.clone(), slot_start)),
        }
    }
    let counted: Vec<ObjectRecord> = futures::stream::iter(to_count)
        .map(|(object, slot)| count_object(ctx, target, object, slot))
        .buffer_unordered(ctx.concurrency)
        .try_collect()
        .await?;
    upserts.extend(counted);

    let record = ListedDay {
        location_id,
        day: day.to_string(),
        prefix,
        pages: listing.pages,
        listed_objects: listing.objects.len(),
        upserts,
        gone: known.values().map(|k| k.id).collect(),
    };
    add(&ctx.counters.gone, record.gone.len() as u64);
    ctx.db.call(move |c| c.record_listing(&record)).await?;
    ctx.progress.inc(1);
    Ok(())
}

enum Decision {
    Unchanged,
    /// Same object, but the rules now judge it differently.
    Rejudged(ObjectRecord),
    TooSmall(ObjectRecord),
    Count,
}

fn decide(
    role: Role,
    object: &ListedObject,
    previous: Option<&KnownObject>,
    ds: &Dataset,
) -> Decision {
    let too_small = role.is_collector() && object.size <= ds.rules.min_bytes;
    let base = ObjectRecord {
        key: object.key.clone(),
        size: object.size as i64,
        etag: object.etag.clone(),
        last_modified: object.last_modified.clone(),
        ..Default::default()
    };
    let Some(known) = previous.filter(|k| k.size == object.size as i64 && k.etag == object.etag)
    else {
        return if too_small {
            Decision::TooSmall(ObjectRecord {
                status: Some(State::TooSmall),
                ..base
            })
        } else {
            Decision::Count
        };
    };
    if known.lines.is_none() && !too_small {
        // Rules changed since: an object once too small to count now needs counting.
        return Decision::Count;
    }
    let meta = ComplementMeta {
        complete: known.complete,
        note_count: known.note_count,
        // A collector object has `complete` only when it is a promoted copy.
        promoted: role.is_collector() && known.complete.is_some(),
        ..Default::default()
    };
    let facts = known.lines.map(|lines| LineCount {
        lines: lines as u64,
        bytes: object.size,
        capped: false,
        utf8_valid: known.utf8_valid.unwrap_or(true),
        unterminated: known.unterminated.unwrap_or(false),
    });
    let status = judge(role, object.size, facts.as_ref(), &meta, &ds.rules);
    if status == known.status {
        return Decision::Unchanged;
    }
    Decision::Rejudged(ObjectRecord {
        lines: known.lines,
        utf8_valid: known.utf8_valid,
        unterminated: known.unterminated,
        complete: known.complete,
        note_count: known.note_count,
        status: Some(status),
        ..base
    })
}

/// An object outside the window that would need counting: recorded as listed
/// but not counted (`unchecked`), for a scan whose window covers it. Only new,
/// changed or never-counted objects get here: a counted object that is
/// unchanged keeps its facts.
fn unchecked(object: &ListedObject, previous: Option<&KnownObject>) -> Decision {
    let same = previous.is_some_and(|k| {
        k.status == State::Unchecked && k.size == object.size as i64 && k.etag == object.etag
    });
    if same {
        return Decision::Unchanged;
    }
    Decision::Rejudged(ObjectRecord {
        key: object.key.clone(),
        size: object.size as i64,
        etag: object.etag.clone(),
        last_modified: object.last_modified.clone(),
        status: Some(State::Unchecked),
        ..Default::default()
    })
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
    previous: Option<&KnownObject>,
) -> Result<Option<(ObjectRecord, u64)>, ScanError> {
    Ok(match decide(target.row.role, &object, previous, ds) {
        Decision::Unchanged => None,
        Decision::Rejudged(record) | Decision::TooSmall(record) => Some((
            ObjectRecord {
                slot_start,
                ..record
            },
            0,
        )),
        Decision::Count => Some(inspect(target, &ds.rules, object, slot_start).await?),
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
    let _permit = ctx.downloads.acquire().await.expect("semaphore open");
    let (record, bytes_read) = inspect(target, &ctx.ds.rules, object, slot_start).await?;
    add(&ctx.counters.counted, 1);
    add(&ctx.counters.bytes, bytes_read);
    Ok(record)
}

/// Downloads, counts and judges one object of a location; also returns the bytes read.
pub async fn inspect(
    target: &ScanTarget,
    rules: &crate::config::Rules,
    object: ListedObject,
    slot_start: i64,
) -> Result<(ObjectRecord, u64), ScanError> {
    let role = target.row.role;
    let mut attempt = 0;
    let (count, metadata) = loop {
        attempt += 1;
        let result = async {
            let mut read = target.store.read(&object.key).await?;
            // Complement objects (and promoted copies of them) are counted whole:
            // their line count is checked against their metadata.
            let whole = ComplementMeta::for_role(role, &read.metadata)
                .complete
                .is_some();
            let cap = (role.is_collector() && !whole).then_some(rules.max_lines);
            let count = count_lines(&mut read.body, cap)
                .await
                .map_err(|e| StoreError::Io {
                    location: target.store.location().to_string(),
                    key: object.key.clone(),
                    message: e.to_string(),
                })?;
            Ok::<_, StoreError>((count, read.metadata))
        }
        .await;
        match result {
            Ok(done) => break done,
            Err(e) if e.is_configuration() || attempt >= READ_ATTEMPTS => {
                return Err(ScanError::Read {
                    location: target.store.location().to_string(),
                    key: object.key.clone(),
                    attempts: attempt,
                    message: e.to_string(),
                });
            }
            Err(e) => {
                tracing::warn!(key = %object.key, error = %e, attempt, "read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        }
    };
    StoreStats::bump(&target.store.stats().bytes_read, count.bytes);
    let meta = ComplementMeta::for_role(role, &metadata);
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
