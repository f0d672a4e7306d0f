//! The shapes an S3 event notification arrives in, as serde structs, and
//! their decoding into [`Record`]s:
//!
//! - the S3 notification format, `{"Records": [...]}`, as AWS S3 and MinIO's
//!   webhook target send it (MinIO adds `EventName` and `Key`, `bucket/key`,
//!   at the top level, and sends the top-level pair alone in some setups);
//! - the same inside an SNS HTTPS notification (`"Type": "Notification"`, the
//!   event as the string `Message`), and SNS's `SubscriptionConfirmation`;
//! - EventBridge's `Object Created` / `Object Deleted` events;
//! - S3's `s3:TestEvent`, sent when notifications are set up.
//!
//! Keys arrive URL-encoded (`+` for a space). Fields the decoding does not
//! need are not declared (serde skips them), so new fields never break it.
//! Fixtures of every shape are in `tests/fixtures/s3-events/`.

use percent_encoding::percent_decode_str;
use serde::Deserialize;

/// What a record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Removed,
}

/// One event record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// None for event kinds other than creation and removal.
    pub action: Option<Action>,
    pub event_name: String,
    pub bucket: String,
    /// URL-decoded.
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
}

/// Every top-level field any accepted shape uses.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "Records")]
    records: Option<Vec<S3Record>>,
    /// SNS: `Notification` or `SubscriptionConfirmation`.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    message: Option<serde_json::Value>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    /// `s3:TestEvent`
    #[serde(rename = "Event")]
    test_event: Option<String>,
    /// EventBridge
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    detail: Option<BridgeDetail>,
    /// MinIO's top-level pair; `Key` is `bucket/key`.
    #[serde(rename = "EventName")]
    event_name: Option<String>,
    #[serde(rename = "Key")]
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", alias = "EventName", default)]
    event_name: String,
    s3: Option<S3Entity>,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: Option<Named>,
    object: Option<S3Object>,
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct S3Object {
    #[serde(default)]
    key: String,
    size: Option<u64>,
    #[serde(rename = "eTag", alias = "etag")]
    etag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BridgeDetail {
    bucket: Option<Named>,
    object: Option<S3Object>,
}

const NOT_EVENT: &str = "the body is not an S3 event notification (expected \"Records\", an SNS notification or an EventBridge S3 event)";

/// Decodes a notification body into its records.
pub fn parse(body: &[u8]) -> Result<Vec<Record>, String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        let why = crate::redact::one_line(&e.to_string());
        if e.is_data() {
            format!("{NOT_EVENT}: {why}")
        } else {
            format!("the body is not JSON: {why}")
        }
    })?;
    decode(envelope, true)
}

fn decode(envelope: Envelope, outermost: bool) -> Result<Vec<Record>, String> {
    match envelope.sns_type.as_deref() {
        Some("Notification") if outermost => {
            let message = envelope
                .message
                .as_ref()
                .and_then(|m| m.as_str())
                .ok_or_else(|| NOT_EVENT.to_string())?;
            let inner: Envelope = serde_json::from_str(message)
                .map_err(|e| format!("the SNS message is not an S3 event: {e}"))?;
            return decode(inner, false);
        }
        Some("SubscriptionConfirmation") => {
            if let Some(url) = &envelope.subscribe_url {
                tracing::warn!(
                    subscribe_url = %url,
                    "SNS asks to confirm the subscription: open this URL once (or confirm it in the SNS console)"
                );
            }
            return Ok(Vec::new());
        }
        _ => {}
    }
    if let Some(records) = envelope.records {
        return Ok(records.into_iter().map(record_of).collect());
    }
    if envelope.test_event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if let (Some(kind), Some(detail)) = (envelope.detail_type, envelope.detail) {
        let action = match kind.as_str() {
            "Object Created" => Some(Action::Created),
            "Object Deleted" => Some(Action::Removed),
            _ => None,
        };
        let object = detail.object;
        return Ok(vec![Record {
            action,
            event_name: kind,
            bucket: detail.bucket.map(|b| b.name).unwrap_or_default(),
            key: decode_key(object.as_ref().map_or("", |o| o.key.as_str())),
            size: object.as_ref().and_then(|o| o.size),
            etag: object.and_then(|o| o.etag).filter(|e| !e.is_empty()),
        }]);
    }
    if let (Some(name), Some(key)) = (envelope.event_name, envelope.key) {
        let key = decode_key(&key);
        let (bucket, key) = key.split_once('/').unwrap_or((key.as_str(), ""));
        return Ok(vec![Record {
            action: action_of(&name),
            event_name: name,
            bucket: bucket.to_string(),
            key: key.to_string(),
            size: None,
            etag: None,
        }]);
    }
    Err(NOT_EVENT.to_string())
}

fn record_of(r: S3Record) -> Record {
    let (bucket, object) = match r.s3 {
        Some(s3) => (s3.bucket.map(|b| b.name), s3.object),
        None => (None, None),
    };
    Record {
        action: action_of(&r.event_name),
        bucket: bucket.unwrap_or_default(),
        key: decode_key(object.as_ref().map_or("", |o| o.key.as_str())),
        size: object.as_ref().and_then(|o| o.size),
        etag: object.and_then(|o| o.etag).filter(|e| !e.is_empty()),
        event_name: r.event_name,
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

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../../tests/fixtures/s3-events/", $name))
        };
    }

    const KEY: &str = "misskey/2025/08/14/00/2025-08-14_00-20.jsonl";

    fn one(body: &[u8]) -> Record {
        let mut records = parse(body).unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
        records.remove(0)
    }

    #[test]
    fn aws_and_minio_notifications_decode() {
        let put = one(fixture!("aws-put.json"));
        assert_eq!(put.action, Some(Action::Created));
        assert_eq!(
            (put.bucket.as_str(), put.key.as_str()),
            ("miyazawa1s3", KEY)
        );
        assert_eq!(put.size, Some(2_048_123));
        assert_eq!(
            put.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        let expired = one(fixture!("aws-lifecycle-expiration.json"));
        assert_eq!(expired.action, Some(Action::Removed));
        assert_eq!((expired.size, expired.etag), (None, None));

        let removed = one(fixture!("minio-delete.json"));
        assert_eq!(removed.action, Some(Action::Removed));
        assert_eq!(removed.key, KEY, "MinIO encodes the slashes");
        let minio_put = one(fixture!("minio-put.json"));
        assert_eq!(minio_put.action, Some(Action::Created));
        assert_eq!(
            (minio_put.key.as_str(), minio_put.size),
            (KEY, Some(2_048_123))
        );
        assert_eq!(parse(fixture!("aws-test-event.json")).unwrap(), Vec::new());
    }

    #[test]
    fn sns_wraps_the_same_records_and_asks_for_confirmation_first() {
        assert_eq!(
            parse(fixture!("sns-notification.json")).unwrap(),
            parse(fixture!("aws-put.json")).unwrap()
        );
        assert_eq!(
            parse(fixture!("sns-subscription-confirmation.json")).unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn eventbridge_objects_created_and_deleted_decode() {
        let created = one(fixture!("eventbridge-created.json"));
        assert_eq!(created.action, Some(Action::Created));
        assert_eq!((created.key.as_str(), created.size), (KEY, Some(2_048_123)));
        assert_eq!(
            created.etag.as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        let deleted = one(fixture!("eventbridge-deleted.json"));
        assert_eq!(deleted.action, Some(Action::Removed));
        assert_eq!(deleted.key, KEY);
    }

    #[test]
    fn other_kinds_are_records_without_an_action_and_other_bodies_are_refused() {
        let access = br#"{"Records":[{"eventName":"s3:ObjectAccessed:Get","s3":{"bucket":{"name":"b"},"object":{"key":"a+b%2Fc"}}}]}"#;
        let record = one(access);
        assert_eq!((record.action, record.key.as_str()), (None, "a b/c"));
        for bad in [
            &b"{\"hello\": 1}"[..],
            b"not json",
            b"[]",
            b"{\"Records\": 5}",
            br#"{"Type": "Notification", "Message": 5}"#,
            br#"{"Type": "Notification", "Message": "{\"Type\": \"Notification\", \"Message\": \"{}\"}"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
