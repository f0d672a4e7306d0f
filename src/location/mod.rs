//! A location opened for work — its catalog row and its store — and what one
//! of its objects holds, decided the same way wherever the object is met: a
//! scan's listing, a fill that finds an object already written, `promote`'s
//! copy, a storage event.
//!
//! [`inspect`] downloads, counts and judges one object; [`judge`] holds the
//! validity rules and the metadata slotfill writes on complement objects.

mod judge;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::catalog::{LocationRow, ObjectRecord};
use crate::store::{LineCount, ListedObject, ObjectStore, StoreStats};

pub use judge::{ComplementMeta, coverage_seconds, judge};

/// Tries of one object's read before it counts as failed.
const READ_ATTEMPTS: u32 = 3;

/// A location of a dataset, opened: its catalog row and its store.
#[derive(Clone)]
pub struct OpenLocation {
    pub row: LocationRow,
    pub store: Arc<dyn ObjectStore>,
}

/// An object could not be read, even after retries.
#[derive(Debug, Error)]
#[error("{location}: reading {key} failed after {}: {message}", crate::text::plural(*attempts, "attempt"))]
pub struct ReadError {
    pub location: String,
    pub key: String,
    pub attempts: u32,
    pub message: String,
}

/// Downloads, counts and judges one object of a location; also returns the bytes read.
pub async fn inspect(
    target: &OpenLocation,
    rules: &crate::config::Rules,
    object: ListedObject,
    slot_start: i64,
) -> Result<(ObjectRecord, u64), ReadError> {
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
        complete: meta.complete,
        note_count: meta.note_count,
        earliest: meta.earliest,
        latest: meta.latest,
        ..ObjectRecord::listed(&object, slot_start)
            .with_count(&count)
            .with_status(status)
    };
    Ok((record, count.bytes))
}

/// Reads and counts one object, retrying broken streams.
async fn read_counted(
    target: &OpenLocation,
    key: &str,
    cap: Option<u64>,
) -> Result<(LineCount, HashMap<String, String>), ReadError> {
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
                return Err(ReadError {
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
