//! S3 event notifications: the catalog follows writes and deletes without a scan.
//!
//! [`shapes`] decodes the bodies (AWS, MinIO, SNS, EventBridge). For each
//! record whose bucket and key belong to a configured S3 location of any
//! dataset: *created* → the object is examined as a scan would examine it
//! (same judge; only that object is read: a HEAD, and a GET unless its size
//! already decides); *removed* → after a HEAD confirms it is gone, it is
//! marked gone. The slot's state is derived again at once. A record the
//! catalog already reflects (same ETag, counted) reads nothing, so a
//! replayed event is harmless; records of other buckets, keys or event kinds
//! are ignored.
//!
//! What is in the bucket decides, whatever order events arrive in: records
//! of one object are applied one at a time ([`super::locks`]), so of two deliveries
//! racing, the one that read the bucket last also writes last. A listing
//! records a later location's copy `unchecked` (not read) while an earlier
//! location holds a valid object for the slot; when an event leaves such a
//! copy first in line, [`copies`] counts it at once, as the next scan would.

mod copies;
mod object;
pub mod shapes;

use serde::Serialize;

use crate::catalog::KnownObject;
use crate::location::OpenLocation;

use super::counters::add;
use super::error::ServeError;
use super::state::{AppState, DatasetHandle};
use object::{derive_after, known, look};
pub use shapes::{Action, Record, parse};

/// The answer to a POST: records applied (including those that changed
/// nothing, counted again in `unchanged`) and records ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub applied: u64,
    pub ignored: u64,
    pub unchanged: u64,
}

fn same_etag(a: Option<&str>, b: Option<&str>) -> bool {
    let bare = |e: &str| e.trim().trim_matches('"').to_ascii_lowercase();
    matches!((a, b), (Some(a), Some(b)) if bare(a) == bare(b))
}

/// Where a record belongs: a dataset, one of its S3 locations, the key
/// relative to it and the slot the key names.
fn locate<'a>(
    state: &'a AppState,
    record: &Record,
) -> Option<(&'a DatasetHandle, &'a OpenLocation, String, i64)> {
    for handle in state.datasets.values() {
        for target in &handle.session.targets {
            let Some(rest) = target.row.url.strip_prefix("s3://") else {
                continue;
            };
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket != record.bucket {
                continue;
            }
            let relative = if prefix.is_empty() {
                Some(record.key.as_str())
            } else {
                record
                    .key
                    .strip_prefix(prefix)
                    .and_then(|k| k.strip_prefix('/'))
            };
            let Some(relative) = relative else { continue };
            if let Some(slot) = handle.ds.spec.parse_key(relative) {
                return Some((handle, target, relative.to_string(), slot));
            }
        }
    }
    None
}

/// Applies the records; the first error (after trying every record) fails the
/// request, so that the sender retries (replays are harmless).
pub async fn apply(state: &AppState, records: &[Record]) -> Result<Applied, ServeError> {
    let mut applied = Applied::default();
    let mut first_error = None;
    for record in records {
        let located = record.action.and_then(|action| {
            locate(state, record)
                .map(|(handle, target, key, slot)| (action, handle, target, key, slot))
        });
        let Some((action, handle, target, key, slot)) = located else {
            tracing::debug!(bucket = %record.bucket, key = %record.key, event = %record.event_name, "event ignored");
            applied.ignored += 1;
            continue;
        };
        let guard = state.events.locks.lock(target.row.id, &key).await;
        let outcome = apply_one(handle, target, (&key, slot), action, record).await;
        drop(guard);
        // Whatever the record did, a copy it left first in line is counted.
        let outcome = match outcome {
            Ok(changed) => copies::count_first_in_line(&state.events.locks, handle, slot)
                .await
                .map(|()| changed),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(changed) => {
                applied.applied += 1;
                applied.unchanged += u64::from(!changed);
                tracing::info!(dataset = %handle.ds.name, location = %target.row.url, %key, event = %record.event_name, changed, "event applied");
            }
            Err(e) => {
                tracing::warn!(dataset = %handle.ds.name, %key, error = %e, "event could not be applied");
                add(&state.events.failed, 1);
                first_error.get_or_insert(e);
            }
        }
    }
    add(&state.events.applied, applied.applied);
    add(&state.events.ignored, applied.ignored);
    add(&state.events.unchanged, applied.unchanged);
    match first_error {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

/// Applies one record; returns whether the catalog changed.
async fn apply_one(
    handle: &DatasetHandle,
    target: &OpenLocation,
    (key, slot): (&str, i64),
    action: Action,
    record: &Record,
) -> Result<bool, ServeError> {
    let location = target.row.id;
    let known = known(handle, location, key).await?;
    if already_reflected(action, known.as_ref(), record) {
        return Ok(false);
    }
    // What is there now decides, whatever order the events arrived in.
    match look(handle, target, key, slot, known).await? {
        Some(change) => {
            derive_after(handle, location, slot, change).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A creation the catalog already holds (same ETag and size, counted), or a
/// removal of what the catalog does not hold: nothing to read.
fn already_reflected(action: Action, known: Option<&KnownObject>, record: &Record) -> bool {
    match (action, known) {
        (Action::Created, Some(k)) => {
            k.status != crate::state::State::Unchecked
                && same_etag(k.etag.as_deref(), record.etag.as_deref())
                && record.size.is_none_or(|s| s as i64 == k.size)
        }
        (Action::Removed, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_without_quotes_or_case() {
        assert!(same_etag(Some("\"ABC\""), Some("abc")));
        assert!(!same_etag(None, Some("abc")));
        assert!(!same_etag(Some("abc"), None));
    }
}
