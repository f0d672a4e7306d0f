//! S3 event notifications: the catalog follows writes and deletes without a scan.
//!
//! Accepted bodies: the S3 notification format (`{"Records": [...]}`, from AWS
//! S3 and from MinIO's webhook target, which adds `EventName`/`Key` at the top
//! level), the same wrapped in an SNS HTTPS notification (`"Type":
//! "Notification"`, the event in `Message`), and EventBridge's `Object
//! Created` / `Object Deleted` events. Keys arrive URL-encoded.
//!
//! For each record whose bucket and key belong to a configured S3 location
//! of any dataset: *created* → the object is examined as a scan would examine
//! it (same judge; only that object is read: a HEAD, and a GET unless its
//! size already decides); *removed* → after a HEAD confirms it is gone, it is
//! marked gone. The slot's state is derived again at once. A record the
//! catalog already reflects (same ETag) changes nothing, so a replayed event
//! is harmless; records of other buckets, keys or event kinds are ignored.

use crate::catalog::LocationId;
use std::sync::atomic::AtomicU64;

use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::scan::ScanTarget;
use crate::store::ListedObject;

use super::{AppState, DatasetHandle};

/// What a record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Removed,
}

/// One event record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub action: Option<Action>,
    pub event_name: String,
    pub bucket: String,
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
}

/// The answer to a POST: records applied (including those that changed
/// nothing, counted again in `unchanged`) and records ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub applied: u64,
    pub ignored: u64,
    pub unchanged: u64,
}

/// Records seen since the process started, by what became of them.
#[derive(Debug, Default)]
pub struct EventCounters {
    pub applied: AtomicU64,
    pub ignored: AtomicU64,
    pub unchanged: AtomicU64,
}

/// Decodes a notification body into its records.
pub fn parse(body: &[u8]) -> std::result::Result<Vec<Record>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not JSON: {}",
            crate::redact::one_line(&e.to_string())
        )
    })?;
    parse_value(&value, 0)
}

fn parse_value(value: &Value, depth: u8) -> std::result::Result<Vec<Record>, String> {
    let not_event = || {
        "the body is not an S3 event notification (expected \"Records\", an SNS notification or an EventBridge S3 event)"
            .to_string()
    };
    let object = value.as_object().ok_or_else(not_event)?;
    // SNS → HTTPS: the S3 event is the string `Message`.
    match object.get("Type").and_then(Value::as_str) {
        Some("Notification") if depth == 0 => {
            let message = object
                .get("Message")
                .and_then(Value::as_str)
                .ok_or_else(not_event)?;
            let inner: Value = serde_json::from_str(message)
                .map_err(|_| "the SNS message is not JSON".to_string())?;
            return parse_value(&inner, depth + 1);
        }
        Some("SubscriptionConfirmation") => {
            if let Some(url) = object.get("SubscribeURL").and_then(Value::as_str) {
                tracing::warn!(
                    subscribe_url = url,
                    "SNS asks to confirm the subscription: open this URL once (or confirm it in the SNS console)"
                );
            }
            return Ok(Vec::new());
        }
        _ => {}
    }
    if let Some(records) = object.get("Records") {
        let records = records.as_array().ok_or_else(not_event)?;
        return Ok(records.iter().map(record_of).collect());
    }
    // An S3 test event (AWS sends one when notifications are set up).
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if let (Some(kind), Some(detail)) = (
        object.get("detail-type").and_then(Value::as_str),
        object.get("detail"),
    ) {
        let action = match kind {
            "Object Created" => Some(Action::Created),
            "Object Deleted" => Some(Action::Removed),
            _ => None,
        };
        return Ok(vec![Record {
            action,
            event_name: kind.to_string(),
            bucket: text(detail, &["bucket", "name"]).unwrap_or_default(),
            key: decode_key(&text(detail, &["object", "key"]).unwrap_or_default()),
            size: detail.pointer("/object/size").and_then(Value::as_u64),
            etag: text(detail, &["object", "etag"]),
        }]);
    }
    // MinIO's top-level form alone: `Key` is "bucket/key".
    if let (Some(name), Some(key)) = (
        object.get("EventName").and_then(Value::as_str),
        object.get("Key").and_then(Value::as_str),
    ) {
        let key = decode_key(key);
        let (bucket, key) = key.split_once('/').unwrap_or((key.as_str(), ""));
        return Ok(vec![Record {
            action: action_of(name),
            event_name: name.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: None,
            etag: None,
        }]);
    }
    Err(not_event())
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    let mut v = value;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().map(str::to_string)
}

fn record_of(r: &Value) -> Record {
    let name = text(r, &["eventName"])
        .or_else(|| text(r, &["EventName"]))
        .unwrap_or_default();
    let object = r.pointer("/s3/object");
    Record {
        action: action_of(&name),
        bucket: text(r, &["s3", "bucket", "name"]).unwrap_or_default(),
        key: decode_key(&object.and_then(|o| text(o, &["key"])).unwrap_or_default()),
        size: object.and_then(|o| o.get("size")).and_then(Value::as_u64),
        etag: object
            .and_then(|o| text(o, &["eTag"]).or_else(|| text(o, &["etag"])))
            .filter(|e| !e.is_empty()),
        event_name: name,
    }
}

/// `s3:ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`,
/// `s3:ObjectRemoved:Delete`, `LifecycleExpiration:Delete`, …
fn action_of(name: &str) -> Option<Action> {
    let name = name.strip_prefix("s3:").unwrap_or(name);
    if name.starts_with("ObjectCreated") {
        Some(Action::Created)
    } else if name.starts_with("ObjectRemoved") || name == "LifecycleExpiration:Delete" {
        Some(Action::Removed)
    } else {
        None
    }
}

/// Event keys are URL-encoded, with `+` for a space.
fn decode_key(key: &str) -> String {
    percent_decode_str(&key.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
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
) -> Option<(&'a DatasetHandle, &'a ScanTarget, String, i64)> {
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
pub async fn apply(state: &AppState, records: &[Record]) -> Result<Applied> {
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
        match apply_one(handle, target, &key, slot, action, record).await {
            Ok(changed) => {
                applied.applied += 1;
                applied.unchanged += u64::from(!changed);
                tracing::info!(dataset = %handle.ds.name, location = %target.row.url, %key, event = %record.event_name, changed, "event applied");
            }
            Err(e) => {
                tracing::warn!(dataset = %handle.ds.name, %key, error = %e, "event could not be applied");
                first_error.get_or_insert(e);
            }
        }
    }
    super::add(&state.events.applied, applied.applied);
    super::add(&state.events.ignored, applied.ignored);
    super::add(&state.events.unchanged, applied.unchanged);
    match first_error {
        Some(e) => Err(e),
        None => Ok(applied),
    }
}

/// Applies one record; returns whether the catalog changed.
async fn apply_one(
    handle: &DatasetHandle,
    target: &ScanTarget,
    key: &str,
    slot: i64,
    action: Action,
    record: &Record,
) -> Result<bool> {
    let db = &handle.session.db;
    let location_id = target.row.id;
    let lookup = key.to_string();
    let known = db
        .call(move |c| c.live_object(location_id, &lookup))
        .await?;
    if action == Action::Created
        && let Some(k) = &known
        && same_etag(k.etag.as_deref(), record.etag.as_deref())
        && record.size.is_none_or(|s| s as i64 == k.size)
    {
        return Ok(false);
    }
    if action == Action::Removed && known.is_none() {
        return Ok(false);
    }
    // What is there now decides, whatever order the events arrived in.
    let head = target.store.head(key).await?;
    let change = match head {
        None => match known {
            Some(k) => Change::Gone(k.id),
            None => return Ok(false),
        },
        Some(head) => {
            let object = ListedObject {
                key: key.to_string(),
                size: head.size,
                etag: head.etag,
                last_modified: head.last_modified,
            };
            let examined =
                crate::scan::examine(target, &handle.ds, object, slot, known.as_ref()).await?;
            match examined {
                Some((record, _bytes)) => Change::Record(Box::new(record)),
                None => return Ok(false),
            }
        }
    };
    derive_after(handle, location_id, slot, change).await?;
    Ok(true)
}

enum Change {
    Record(Box<crate::catalog::ObjectRecord>),
    Gone(i64),
}

/// Records the change and derives the slot's state again.
async fn derive_after(
    handle: &DatasetHandle,
    location_id: LocationId,
    slot: i64,
    change: Change,
) -> Result<()> {
    let (row, spec) = (handle.session.row.clone(), handle.ds.spec.clone());
    let last_settled = handle.ds.last_settled_slot(crate::clock::now());
    handle
        .session
        .db
        .call(move |c| {
            match change {
                Change::Record(record) => c.record_object(location_id, &record)?,
                Change::Gone(id) => c.mark_gone(id)?,
            }
            c.derive_slots(&row, &spec, (slot, slot), last_settled)
        })
        .await
        .map_err(Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_minio_sns_and_eventbridge_shapes_decode() {
        let aws = br#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b"},"object":{"key":"m/2025/08/14/00/2025-08-14_00-20.jsonl","size":300,"eTag":"abc"}}}]}"#;
        let records = parse(aws).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].action, Some(Action::Created));
        assert_eq!(records[0].key, "m/2025/08/14/00/2025-08-14_00-20.jsonl");
        assert_eq!(records[0].size, Some(300));
        assert_eq!(records[0].etag.as_deref(), Some("abc"));

        let minio = br#"{"EventName":"s3:ObjectRemoved:Delete","Key":"b/m%2F2025%2F08%2F14%2F00%2F2025-08-14_00-20.jsonl",
            "Records":[{"eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},
            "object":{"key":"m%2F2025%2F08%2F14%2F00%2F2025-08-14_00-20.jsonl","sequencer":"1"}}}]}"#;
        let records = parse(minio).unwrap();
        assert_eq!(records[0].action, Some(Action::Removed));
        assert_eq!(records[0].key, "m/2025/08/14/00/2025-08-14_00-20.jsonl");

        let sns = serde_json::json!({
            "Type": "Notification",
            "Message": String::from_utf8(aws.to_vec()).unwrap(),
        });
        assert_eq!(
            parse(sns.to_string().as_bytes()).unwrap(),
            parse(aws).unwrap()
        );

        let bridge = br#"{"source":"aws.s3","detail-type":"Object Deleted","detail":{"bucket":{"name":"b"},"object":{"key":"a+b.jsonl"}}}"#;
        let records = parse(bridge).unwrap();
        assert_eq!(records[0].action, Some(Action::Removed));
        assert_eq!(records[0].key, "a b.jsonl");

        let access = br#"{"Records":[{"eventName":"s3:ObjectAccessed:Get","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#;
        assert_eq!(parse(access).unwrap()[0].action, None);
        assert!(parse(b"{\"hello\": 1}").is_err());
        assert!(parse(b"not json").is_err());
        assert_eq!(
            parse(br#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#).unwrap(),
            Vec::new()
        );
        assert!(same_etag(Some("\"ABC\""), Some("abc")));
        assert!(!same_etag(None, Some("abc")));
    }
}
