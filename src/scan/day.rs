//! One local day of every location: list each location's day prefix, judge each
//! slot's objects in location order, download only what can still decide the
//! slot, and record each listing in one transaction.
//!
//! # What is read
//!
//! A slot is ok as soon as one location holds a valid object, and locations are
//! judged in order: primary, backups in config order, complement. So for each
//! slot of the window the objects are taken in that order and:
//!
//! - what the listing and the catalog already decide costs nothing: an object
//!   too small by its listed size, an unchanged object whose facts are known;
//! - an object that needs counting (new, changed, never counted) is downloaded
//!   only while no earlier location holds a valid object for the slot;
//! - once one does, later objects that would need counting are recorded
//!   `unchecked` (listed, not counted) and decide nothing. When the earlier
//!   object later turns invalid or disappears, the next scan reaches them and
//!   counts them.
//!
//! `all_locations` (`--all-locations`, or the dataset key) counts every object,
//! for users who want to know the state of every copy.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};

use super::{Context, OpenLocation, ScanError, add, count_object};
use crate::catalog::{KnownObject, ListedDay, ObjectRecord};
use crate::config::{Dataset, Role};
use crate::location::{ComplementMeta, judge};
use crate::state::State;
use crate::store::LineCount;
use crate::store::{ListedObject, Listing};

/// What the listing and the catalog say about one listed object.
pub(super) enum Decision {
    /// Known and judged the same: nothing to write.
    Unchanged(State),
    /// Same object, but the rules now judge it differently.
    Rejudged(ObjectRecord),
    TooSmall(ObjectRecord),
    Count,
}

impl Decision {
    /// The object's status when it is decided without a download.
    fn status(&self) -> Option<State> {
        match self {
            Decision::Unchanged(status) => Some(*status),
            Decision::Rejudged(record) | Decision::TooSmall(record) => record.status,
            Decision::Count => None,
        }
    }
}

/// One location's listing of the day, with what the catalog knew before it.
struct Listed {
    known: HashMap<String, KnownObject>,
    listing: Listing,
}

/// An object of the window, waiting for its slot to be judged.
struct Candidate {
    /// Index into the day's targets (location order).
    target: usize,
    object: ListedObject,
    previous: Option<KnownObject>,
    decision: Decision,
}

/// Lists one day prefix of every location, counts what can still decide a
/// slot, and records each location's listing in one transaction.
pub(super) async fn scan_day(
    ctx: &Context<'_>,
    targets: &[&OpenLocation],
    day: NaiveDate,
) -> Result<(), ScanError> {
    let prefix = ctx.ds.spec.day_prefix(day);
    let listed: Vec<Listed> = futures::future::try_join_all(
        targets
            .iter()
            .map(|target| list_location(ctx, target, &prefix)),
    )
    .await?;

    let mut upserts: Vec<Vec<ObjectRecord>> = vec![Vec::new(); targets.len()];
    let mut gone: Vec<Vec<crate::catalog::ObjectId>> = Vec::with_capacity(targets.len());
    // Each listing's size and pages, for the listings table.
    let mut shapes: Vec<(usize, u32)> = Vec::with_capacity(targets.len());
    // Slots of the window, each with its objects in location order.
    let mut slots: BTreeMap<i64, Vec<Candidate>> = BTreeMap::new();
    for (i, Listed { mut known, listing }) in listed.into_iter().enumerate() {
        let role = targets[i].row.role;
        shapes.push((listing.objects.len(), listing.pages));
        for object in listing.objects {
            let Some(slot_start) = ctx.ds.spec.parse_key(&object.key) else {
                add(&ctx.counters.foreign, 1);
                continue;
            };
            let previous = known.remove(&object.key);
            let decision = decide(role, &object, previous.as_ref(), ctx.ds);
            if ctx.window.contains(slot_start) {
                slots.entry(slot_start).or_default().push(Candidate {
                    target: i,
                    object,
                    previous,
                    decision,
                });
                continue;
            }
            add(&ctx.counters.outside, 1);
            let decision = match decision {
                Decision::Count => unchecked(&object, previous.as_ref()),
                other => other,
            };
            if let Some(record) = settled(&ctx.counters, decision, slot_start) {
                upserts[i].push(record);
            }
        }
        gone.push(known.values().map(|k| k.id).collect());
    }

    let judged: Vec<Vec<(usize, ObjectRecord)>> = futures::stream::iter(slots)
        .map(|(slot_start, candidates)| judge_slot(ctx, targets, slot_start, candidates))
        .buffer_unordered(ctx.concurrency)
        .try_collect()
        .await?;
    for (i, record) in judged.into_iter().flatten() {
        upserts[i].push(record);
    }

    for (((target, upserts), gone), (listed_objects, pages)) in
        targets.iter().zip(upserts).zip(gone).zip(shapes)
    {
        add(&ctx.counters.gone, gone.len() as u64);
        let record = ListedDay {
            location_id: target.row.id,
            day: day.to_string(),
            prefix: prefix.clone(),
            pages,
            listed_objects,
            upserts,
            gone,
        };
        ctx.db.call(move |c| c.record_listing(&record)).await?;
    }
    Ok(())
}

/// Reads what the catalog knows of a location's day prefix, then lists it.
async fn list_location(
    ctx: &Context<'_>,
    target: &OpenLocation,
    prefix: &str,
) -> Result<Listed, ScanError> {
    let location_id = target.row.id;
    let known_prefix = prefix.to_string();
    // What the catalog knows is read before listing: an object a concurrent fill
    // writes and records meanwhile is then either listed (and counted) or left as
    // the fill recorded it, never taken for gone because the listing predates it.
    let known = ctx
        .db
        .call(move |c| c.known_objects(location_id, &known_prefix))
        .await?;
    let listing = {
        let _permit = ctx.requests.acquire().await.expect("semaphore open");
        target.store.list(prefix).await?
    };
    add(&ctx.counters.days, 1);
    add(&ctx.counters.listed, listing.objects.len() as u64);
    ctx.progress.inc(1);
    Ok(Listed { known, listing })
}

/// Judges one slot's objects in location order, downloading an object only
/// while no earlier location holds a valid one (or every object, with
/// `all_locations`). Returns what to record, by target index.
async fn judge_slot(
    ctx: &Context<'_>,
    targets: &[&OpenLocation],
    slot_start: i64,
    candidates: Vec<Candidate>,
) -> Result<Vec<(usize, ObjectRecord)>, ScanError> {
    let mut records = Vec::new();
    let mut decided = false;
    for Candidate {
        target,
        object,
        previous,
        decision,
    } in candidates
    {
        let record = match decision {
            Decision::Count if decided && !ctx.all_locations => {
                add(&ctx.counters.not_needed, 1);
                settled(
                    &ctx.counters,
                    unchecked(&object, previous.as_ref()),
                    slot_start,
                )
            }
            Decision::Count => Some(count_object(ctx, targets[target], object, slot_start).await?),
            other => {
                decided |= other.status() == Some(State::Ok);
                settled(&ctx.counters, other, slot_start)
            }
        };
        if let Some(record) = record {
            decided |= record.counted && record.status == Some(State::Ok);
            records.push((target, record));
        }
    }
    Ok(records)
}

/// The record to write for an object decided without a download, if any.
fn settled(
    counters: &super::Counters,
    decision: Decision,
    slot_start: i64,
) -> Option<ObjectRecord> {
    match decision {
        Decision::Unchanged(_) => {
            add(&counters.unchanged, 1);
            None
        }
        Decision::Rejudged(record) | Decision::TooSmall(record) => {
            if record.lines.is_none() && record.status == Some(State::TooSmall) {
                add(&counters.too_small, 1);
            }
            Some(ObjectRecord {
                slot_start,
                ..record
            })
        }
        Decision::Count => unreachable!("objects to count are counted or recorded unchecked"),
    }
}

pub(super) fn decide(
    role: Role,
    object: &ListedObject,
    previous: Option<&KnownObject>,
    ds: &Dataset,
) -> Decision {
    let too_small = role.is_collector() && object.size <= ds.rules.min_bytes;
    // The slot is set when the decision is settled.
    let base = ObjectRecord::listed(object, 0);
    let Some(known) = previous.filter(|k| k.size == object.size as i64 && k.etag == object.etag)
    else {
        return if too_small {
            Decision::TooSmall(base.with_status(State::TooSmall))
        } else {
            Decision::Count
        };
    };
    if known.lines.is_none() && !too_small {
        // Never counted (unchecked), or rules changed since it was too small to count.
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
        return Decision::Unchanged(status);
    }
    Decision::Rejudged(base.with_known(known).with_status(status))
}

/// An object that would need counting but is not counted now (outside the
/// window, or its slot already decided by an earlier location): recorded as
/// listed but not counted (`unchecked`). Only new, changed or never-counted
/// objects get here: a counted object that is unchanged keeps its facts.
fn unchecked(object: &ListedObject, previous: Option<&KnownObject>) -> Decision {
    let same = previous.is_some_and(|k| {
        k.status == State::Unchecked && k.size == object.size as i64 && k.etag == object.etag
    });
    if same {
        return Decision::Unchanged(State::Unchecked);
    }
    Decision::Rejudged(ObjectRecord::listed(object, 0).with_status(State::Unchecked))
}
