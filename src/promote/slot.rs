//! One slot's promotion: decide the condition, copy, record.

use std::fmt;
use std::sync::atomic::Ordering;

use tracing::Instrument;

use crate::catalog::{ObjectRecord, Promotion, PromotionCandidate};
use crate::location::{ComplementMeta, judge};
use crate::slot::SlotStart;
use crate::state::State;
use crate::store::LineCount;
use crate::store::{self, CopyOutcome, CopyRequest, WriteCondition};

use super::{Context, PromoteError, PromoteReport};

/// The metadata key that names the complement object a promoted object was copied from.
pub const PROMOTED_FROM: &str = "promoted-from";

/// What a promote does with a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The target has no object: copy under `If-None-Match: *`.
    Copy,
    /// The target holds an invalid object: replace it under `If-Match` on its ETag.
    Replace { status: State, etag: String },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Copy => f.write_str("copy"),
            Action::Replace { status, .. } => write!(f, "replace the {status} object"),
        }
    }
}

/// Why a slot was not promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The target holds an object the catalog judged invalid, and
    /// `--replace-invalid` was not given.
    Invalid(State),
    /// The target holds an object the catalog judged valid (a later scan will
    /// make the slot ok through it).
    Valid,
    /// The target holds an object the catalog has not judged yet.
    Unjudged,
    /// The target's condition failed: someone wrote (or replaced) it meanwhile.
    Conflict,
    /// The complement object is gone or changed since it was catalogued.
    SourceChanged,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Invalid(state) => write!(
                f,
                "the target holds a {state} object; --replace-invalid replaces it"
            ),
            Skip::Valid => f.write_str("the target already holds a valid object; kept"),
            Skip::Unjudged => f.write_str(
                "the target holds an object not counted yet; scan the window, then promote again",
            ),
            Skip::Conflict => f.write_str(
                "the target was written meanwhile by someone else (the conditional copy failed); kept, scan to catalogue it",
            ),
            Skip::SourceChanged => f.write_str(
                "the complement object changed since it was catalogued; scan the window, then promote again",
            ),
        }
    }
}

/// What a slot's target holds decides what may be done to it.
pub fn action(ctx: &Context<'_>, c: &PromotionCandidate) -> Result<Action, Skip> {
    let Some(target) = &c.target else {
        return Ok(Action::Copy);
    };
    match target.status {
        State::Ok => Err(Skip::Valid),
        State::Unchecked => Err(Skip::Unjudged),
        status if !ctx.options.replace_invalid => Err(Skip::Invalid(status)),
        status => match &target.etag {
            Some(etag) => Ok(Action::Replace {
                status,
                etag: etag.clone(),
            }),
            // Nothing to make the replacement conditional on: never replace blindly.
            None => Err(Skip::Unjudged),
        },
    }
}

/// How one slot ended.
pub enum SlotDone {
    Promoted {
        method: &'static str,
        bytes: u64,
        replaced: bool,
    },
    Skipped(SlotStart, Skip),
    Failed(SlotStart, String),
}

impl SlotDone {
    pub fn absorb_into(self, report: &mut PromoteReport) {
        match self {
            SlotDone::Promoted {
                method,
                bytes,
                replaced,
            } => {
                match method {
                    "copy" => report.copied += 1,
                    "stream" => report.streamed += 1,
                    _ => report.found += 1,
                }
                report.bytes += bytes;
                report.replaced += u64::from(replaced);
            }
            SlotDone::Skipped(slot, skip) => report.skipped.push((slot, skip)),
            SlotDone::Failed(slot, cause) => report.failed.push((slot, cause)),
        }
    }
}

/// Promotes one slot; `Ok(None)` when skipped because the run is stopping (a
/// fatal error, or the lease lost).
pub async fn promote_one(
    ctx: &Context<'_>,
    c: PromotionCandidate,
) -> Result<Option<SlotDone>, PromoteError> {
    if ctx.stop.load(Ordering::SeqCst) || !ctx.hold_lease().await {
        return Ok(None);
    }
    let span = tracing::info_span!("slot", slot = %c.start_local);
    promote_slot(ctx, c).instrument(span).await.map(Some)
}

async fn promote_slot(ctx: &Context<'_>, c: PromotionCandidate) -> Result<SlotDone, PromoteError> {
    let slot = c.slot_start;
    let action = match action(ctx, &c) {
        Ok(action) => action,
        Err(skip) => return Ok(SlotDone::Skipped(slot, skip)),
    };
    let key = ctx.ds.spec.key(slot);
    let promoted_from = format!("{}/{}", ctx.complement.row.url, c.source.key);
    let (condition, replaced_etag) = match &action {
        Action::Copy => (WriteCondition::IfAbsent, None),
        Action::Replace { etag, .. } => (WriteCondition::IfMatch(etag.clone()), Some(etag.clone())),
    };
    let request = CopyRequest {
        source: ctx.complement.store.as_ref(),
        source_key: &c.source.key,
        source_etag: c.source.etag.as_deref(),
        extra_metadata: vec![(PROMOTED_FROM.to_string(), promoted_from.clone())],
        content_type: "application/x-ndjson".to_string(),
    };
    let copied = store::copy(ctx.target.store.as_ref(), &key, &request, condition).await;
    let (method, etag) = match copied {
        Ok(CopyOutcome::Copied { etag, method, .. }) => (method.as_str(), etag),
        Ok(CopyOutcome::ConditionFailed) => match own_copy(ctx, &key, &promoted_from, &c).await {
            Some(etag) => {
                tracing::info!("found this slot's copy, made by an interrupted promote");
                ("found", etag)
            }
            None => {
                tracing::warn!("the target was written meanwhile; not promoting this slot");
                return Ok(SlotDone::Skipped(slot, Skip::Conflict));
            }
        },
        Ok(CopyOutcome::SourceChanged) => return Ok(SlotDone::Skipped(slot, Skip::SourceChanged)),
        Err(e) if e.is_configuration() => return Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "copy failed");
            return Ok(SlotDone::Failed(slot, e.to_string()));
        }
    };
    let object = promoted_object(ctx, &c, key, etag);
    let promotion = Promotion {
        dataset_id: ctx.dataset.id,
        run: ctx.run,
        slot_start: slot,
        source_location_id: ctx.complement.row.id,
        source_key: c.source.key.clone(),
        source_etag: c.source.etag.clone(),
        target_location_id: ctx.target.row.id,
        target_role: ctx.target.row.role,
        object,
        replaced_etag: replaced_etag.filter(|_| method != "found"),
        method,
    };
    let replaced = promotion.replaced_etag.is_some();
    ctx.db
        .call(move |catalog| catalog.record_promotion(&promotion))
        .await?;
    tracing::info!(method, "promoted");
    Ok(SlotDone::Promoted {
        method,
        bytes: c.source.size.max(0) as u64,
        replaced,
    })
}

/// The ETag of the target object when it is this slot's copy already (an
/// earlier promote made it and was killed before recording it).
async fn own_copy(
    ctx: &Context<'_>,
    key: &str,
    promoted_from: &str,
    c: &PromotionCandidate,
) -> Option<Option<String>> {
    let head = match ctx.target.store.head(key).await {
        Ok(head) => head?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the target object");
            return None;
        }
    };
    let from = head
        .metadata
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(PROMOTED_FROM))
        .map(|(_, v)| v.as_str());
    (from == Some(promoted_from) && head.size as i64 == c.source.size).then_some(head.etag)
}

/// The object now at the target: the complement object's facts (the bytes
/// are the same), judged as the target's role judges a promoted object.
fn promoted_object(
    ctx: &Context<'_>,
    c: &PromotionCandidate,
    key: String,
    etag: Option<String>,
) -> ObjectRecord {
    let source = &c.source;
    let lines = source.lines.unwrap_or(0).max(0) as u64;
    let count = LineCount {
        lines,
        bytes: source.size.max(0) as u64,
        capped: false,
        utf8_valid: true,
        unterminated: false,
    };
    let meta = ComplementMeta {
        complete: source.complete,
        note_count: source.note_count,
        promoted: true,
        ..Default::default()
    };
    let status = judge(
        ctx.target.row.role,
        count.bytes,
        Some(&count),
        &meta,
        &ctx.ds.rules,
    );
    ObjectRecord {
        lines: source.lines,
        complete: source.complete,
        note_count: source.note_count,
        earliest: source.earliest.clone(),
        latest: source.latest.clone(),
        ..ObjectRecord::written(&key, c.slot_start, count.bytes, etag, lines).with_status(status)
    }
}
