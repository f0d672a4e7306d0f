//! The complement object of a slot: written from the slot file with slotfill's
//! metadata and its provenance, or found and counted when it already exists.
//!
//! Provenance keys (user metadata, beside `source`): `mode`, `engine`, `token`
//! (`anonymous` or `user`, never the token), `visibility`, `host`, `filter`,
//! `range-end` (what proved each range read to its end) and `calibration`
//! (how the origin's answers compared with the archive). Someone holding only
//! the bucket can tell how the notes were obtained and how sure that is.

use crate::catalog::{AttemptOutcome, ObjectRecord};
use crate::location::{ComplementMeta, inspect};
use crate::slot::SlotStart;
use crate::source::{Fetch, SlotFile};
use crate::state::State;
use crate::store::{ListedObject, PutOutcome, PutRequest, StoreError, WriteCondition};

use super::Context;

/// The complement object of a slot, counted, if it exists.
pub async fn existing_object(
    ctx: &Context<'_>,
    key: &str,
    slot: SlotStart,
) -> Option<ObjectRecord> {
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
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the complement object");
            None
        }
    }
}

/// Writes the slot file to the complement location under `condition`.
pub async fn write_object(
    ctx: &Context<'_>,
    key: &str,
    slot: SlotStart,
    file: &SlotFile,
    fetch: &Fetch,
    condition: WriteCondition,
) -> Result<(AttemptOutcome, Option<ObjectRecord>), StoreError> {
    let meta = ComplementMeta {
        complete: Some(true),
        note_count: Some(file.notes as i64),
        earliest: file.earliest.clone(),
        latest: file.latest.clone(),
        promoted: false,
    };
    let mut metadata = meta.to_metadata(slot, ctx.ds.spec.local_iso(slot), ctx.source.describe());
    metadata.extend(provenance_metadata(ctx, slot, fetch));
    let request = PutRequest {
        content_type: "application/x-ndjson".to_string(),
        metadata,
        condition,
    };
    match ctx
        .complement
        .store
        .put_file(key, file.file.path(), &request)
        .await?
    {
        PutOutcome::Created { etag } => {
            let (outcome, status) = if file.notes == 0 {
                (AttemptOutcome::Empty, State::Empty)
            } else {
                (AttemptOutcome::Filled, State::Ok)
            };
            let record = ObjectRecord {
                complete: Some(true),
                note_count: Some(file.notes as i64),
                earliest: file.earliest.clone(),
                latest: file.latest.clone(),
                ..ObjectRecord::written(key, slot, file.bytes, etag, file.notes).with_status(status)
            };
            Ok((outcome, Some(record)))
        }
        PutOutcome::AlreadyExists => {
            tracing::info!(
                "the complement object already exists (or changed since it was catalogued); keeping it (use --overwrite to replace)"
            );
            Ok((
                AttemptOutcome::Exists,
                existing_object(ctx, key, slot).await,
            ))
        }
    }
}

/// The provenance keys of a slot's object.
fn provenance_metadata(ctx: &Context<'_>, slot: SlotStart, fetch: &Fetch) -> Vec<(String, String)> {
    let source = ctx.source.provenance();
    let filter = &ctx.options.filter;
    let calibration = match ctx.calibrations.of(ctx.ds, slot) {
        Some(c) => c.summary(),
        None if !ctx.source.calibrates() => "not-applicable: an archive source".to_string(),
        None => "none".to_string(),
    };
    [
        ("mode", source.mode),
        ("engine", source.engine),
        ("token", source.token.name().to_string()),
        ("visibility", filter.visibility.names().join(",")),
        ("host", filter.host.clone().unwrap_or_else(|| "any".into())),
        ("filter", text_filter(filter).to_string()),
        ("range-end", fetch.ends.describe()),
        ("calibration", calibration),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), header_value(&v)))
    .collect()
}

/// S3 user metadata travels in HTTP headers: printable ASCII, kept short.
fn header_value(value: &str) -> String {
    let ascii: String = value
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect();
    ascii
}

fn text_filter(filter: &crate::source::NoteFilter) -> &'static str {
    if filter.japanese { "japanese" } else { "none" }
}

/// How an attempt's notes were obtained, as recorded in `fill_attempts.provenance`.
pub fn provenance_json(ctx: &Context<'_>) -> String {
    let filter = &ctx.options.filter;
    let mut value = serde_json::to_value(ctx.source.provenance()).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("visibility".into(), filter.visibility.names().into());
        object.insert("host".into(), filter.host.clone().into());
        object.insert("filter".into(), text_filter(filter).into());
    }
    value.to_string()
}
