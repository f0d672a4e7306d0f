//! The complement object of a slot: written from the slot file with slotfill's
//! metadata, or found and counted when it already exists.

use crate::catalog::{AttemptOutcome, ObjectRecord};
use crate::scan::{ComplementMeta, ScanError, inspect};
use crate::slot::SlotStart;
use crate::source::SlotFile;
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

/// Writes the slot file to the complement location under `condition`.
pub async fn write_object(
    ctx: &Context<'_>,
    key: &str,
    slot: SlotStart,
    file: &SlotFile,
    condition: WriteCondition,
) -> Result<(AttemptOutcome, Option<ObjectRecord>), StoreError> {
    let meta = ComplementMeta {
        complete: Some(true),
        note_count: Some(file.notes as i64),
        earliest: file.earliest.clone(),
        latest: file.latest.clone(),
        promoted: false,
    };
    let metadata = meta.to_metadata(slot, ctx.ds.spec.local_iso(slot), ctx.source.describe());
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
                status: Some(status),
                counted: true,
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
