//! One slot's attempt: record it, fetch the slot, write its object, record how it ended.

use crate::catalog::AttemptId;
use std::sync::atomic::Ordering;

use tracing::Instrument;

use crate::catalog::{AttemptOutcome, FillCandidate, FinishedAttempt, ObjectRecord};
use crate::slot::SlotStart;
use crate::source::{Failure, Fetch, NoteSink};
use crate::state::State;
use crate::store::WriteCondition;

use super::object::{existing_object, write_object};
use super::{Context, FillError};

/// One finished slot, for the report.
pub struct SlotResult {
    pub slot: SlotStart,
    pub outcome: AttemptOutcome,
    pub fetch: Fetch,
    pub notes: u64,
    /// Notes the visibility policy kept out; None when nothing was fetched.
    pub left_out: Option<u64>,
    /// In-range notes outside the scope (host, text filter); None when nothing was fetched.
    pub out_of_scope: Option<u64>,
    pub coverage: Option<f64>,
    /// The slot ended confirmed empty at the origin.
    pub confirmed_empty: bool,
    /// Why the slot failed, when it did.
    pub failure: Option<String>,
}

/// Fills one slot; `Ok(None)` when skipped because the run is stopping.
pub async fn fill_one(
    ctx: &Context<'_>,
    candidate: FillCandidate,
) -> Result<Option<SlotResult>, FillError> {
    if ctx.stop.load(Ordering::SeqCst) || !ctx.hold_lease().await {
        return Ok(None);
    }
    let span = tracing::info_span!("slot", slot = %candidate.start_local);
    fill_slot(ctx, candidate).instrument(span).await
}

async fn fill_slot(
    ctx: &Context<'_>,
    candidate: FillCandidate,
) -> Result<Option<SlotResult>, FillError> {
    let slot = candidate.slot_start;
    let (id, run) = (ctx.dataset.id, ctx.run);
    let attempt_id = ctx.db.call(move |c| c.start_attempt(id, slot, run)).await?;
    let (ending, stop_run) = attempt(ctx, &candidate).await;
    let result = finish(ctx, attempt_id, slot, ending).await?;
    match stop_run {
        Some(e) => Err(e),
        None => Ok(Some(result)),
    }
}

/// How an attempt ended, as it is recorded.
struct Ending {
    outcome: AttemptOutcome,
    fetch: Fetch,
    object: Option<ObjectRecord>,
    /// The slot stays (or became) confirmed empty.
    confirmed_empty: bool,
    /// Notes the visibility policy kept out; None when nothing was fetched.
    left_out: Option<u64>,
    /// In-range notes outside the scope; None when nothing was fetched.
    out_of_scope: Option<u64>,
}

impl Ending {
    fn new(outcome: AttemptOutcome, fetch: Fetch) -> Self {
        Ending {
            outcome,
            fetch,
            object: None,
            confirmed_empty: false,
            left_out: None,
            out_of_scope: None,
        }
    }

    fn failed(fetch: Fetch, failure: Failure) -> Self {
        let fetch = Fetch {
            failure: Some(failure),
            ..fetch
        };
        Ending::new(AttemptOutcome::Failed, fetch)
    }

    fn with_object(outcome: AttemptOutcome, fetch: Fetch, object: Option<ObjectRecord>) -> Self {
        let confirmed_empty = object
            .as_ref()
            .is_some_and(|o| o.status == Some(State::Empty));
        Ending {
            object,
            confirmed_empty,
            ..Ending::new(outcome, fetch)
        }
    }
}

/// The work of one attempt. Also returns the error that must stop the whole
/// run, for failures that would doom every other slot alike.
async fn attempt(ctx: &Context<'_>, candidate: &FillCandidate) -> (Ending, Option<FillError>) {
    let slot = candidate.slot_start;
    let key = ctx.ds.spec.key(slot);
    if candidate.unfinished_attempt && !ctx.options.settings.overwrite {
        // An earlier run may have written the object and died before recording it.
        if let Some(found) = existing_object(ctx, &key, slot).await {
            tracing::info!("found the object of an interrupted attempt; not fetching again");
            let ending = Ending::with_object(AttemptOutcome::Exists, Fetch::default(), Some(found));
            return (ending, None);
        }
    }
    let (start_ms, end_ms) = (slot * 1000, (slot + ctx.ds.spec.width_secs()) * 1000);
    let sink = NoteSink::new(
        start_ms,
        end_ms,
        ctx.options.filter.clone(),
        ctx.source.shape(),
    );
    let mut sink = match sink {
        Ok(sink) => sink,
        Err(e) => {
            let message = format!("cannot create a spool file: {e}");
            tracing::error!("{message}");
            return (
                Ending::failed(Fetch::default(), Failure::Spool(message)),
                None,
            );
        }
    };
    let fetch = match fetch_slot(ctx, start_ms, end_ms, &mut sink).await {
        Ok(fetch) => fetch,
        Err(e) => {
            let ending = Ending::failed(Fetch::default(), Failure::Config(e.to_string()));
            return (ending, Some(e.into()));
        }
    };
    let (left_out, out_of_scope) = (Some(sink.left_out()), Some(sink.out_of_scope()));
    let (ending, stop_run) = settle(ctx, candidate, &key, sink, fetch).await;
    let ending = Ending {
        left_out,
        out_of_scope,
        ..ending
    };
    (ending, stop_run)
}

/// What a finished fetch comes to: nothing, the slot confirmed empty again, or
/// an object written.
async fn settle(
    ctx: &Context<'_>,
    candidate: &FillCandidate,
    key: &str,
    sink: NoteSink,
    fetch: Fetch,
) -> (Ending, Option<FillError>) {
    let slot = candidate.slot_start;
    if !fetch.complete {
        let outcome = if fetch.failure.as_ref().is_some_and(Failure::is_partial) {
            AttemptOutcome::Partial
        } else {
            AttemptOutcome::Failed
        };
        return (Ending::new(outcome, fetch), None);
    }
    let condition = match &candidate.empty_object_etag {
        _ if ctx.options.settings.overwrite => WriteCondition::Always,
        // A re-check of a confirmed-empty slot: its zero-line object already says so.
        Some(_) if sink.is_empty() => {
            let ending = Ending {
                confirmed_empty: true,
                ..Ending::new(AttemptOutcome::Empty, fetch)
            };
            return (ending, None);
        }
        // Notes appeared (late federation): replace the zero-line object, only if
        // it is still the one slotfill wrote.
        Some(etag) => WriteCondition::IfMatch(etag.clone()),
        None => WriteCondition::IfAbsent,
    };
    let file = match sink.finish() {
        Ok(file) => file,
        Err(e) => {
            let message = format!("cannot write the slot file: {e}");
            tracing::error!("{message}");
            return (Ending::failed(fetch, Failure::Spool(message)), None);
        }
    };
    match write_object(ctx, key, slot, &file, &fetch, condition).await {
        Ok((outcome, object)) => (Ending::with_object(outcome, fetch, object), None),
        // Wrong credentials or a missing bucket fail every slot alike: stop at once
        // instead of fetching more slots from the origin for nothing.
        Err(e) if e.is_configuration() => (
            Ending::failed(fetch, Failure::Store(e.to_string())),
            Some(FillError::Store(e)),
        ),
        Err(e) => {
            tracing::error!(error = %e, "writing the complement object failed");
            (Ending::failed(fetch, Failure::Store(e.to_string())), None)
        }
    }
}

/// Fetches a slot, in sub-slot windows if asked; stops at the first incomplete window.
async fn fetch_slot(
    ctx: &Context<'_>,
    start_ms: i64,
    end_ms: i64,
    sink: &mut NoteSink,
) -> Result<Fetch, crate::source::SourceError> {
    let step = ctx
        .options
        .settings
        .sub_slot_seconds
        .map(|s| i64::from(s.max(1)) * 1000)
        .unwrap_or(end_ms - start_ms);
    let mut total = Fetch {
        complete: true,
        ..Default::default()
    };
    let mut window_end = end_ms;
    // Newest window first, like the pages inside each window.
    while window_end > start_ms {
        let window_start = (window_end - step).max(start_ms);
        let fetch = ctx.source.fetch(window_start, window_end, sink).await?;
        total.absorb(&fetch);
        if !fetch.complete {
            total.complete = false;
            total.failure = fetch.failure;
            break;
        }
        window_end = window_start;
    }
    Ok(total)
}

async fn finish(
    ctx: &Context<'_>,
    attempt_id: AttemptId,
    slot: SlotStart,
    ending: Ending,
) -> Result<SlotResult, FillError> {
    let Ending {
        outcome,
        fetch,
        object,
        confirmed_empty,
        left_out,
        out_of_scope,
    } = ending;
    let notes = object
        .as_ref()
        .and_then(|o| o.note_count.or(o.lines))
        .unwrap_or(0) as u64;
    let coverage = object
        .as_ref()
        .and_then(|o| crate::location::coverage_seconds(slot, o.earliest.as_deref()));
    let failed = matches!(outcome, AttemptOutcome::Failed | AttemptOutcome::Partial);
    if failed {
        let failures = ctx.consecutive_failures.fetch_add(1, Ordering::SeqCst) + 1;
        if failures >= ctx.options.settings.max_consecutive_failures {
            ctx.stop.store(true, Ordering::SeqCst);
        }
    } else {
        ctx.consecutive_failures.store(0, Ordering::SeqCst);
    }
    let retry_after = confirmed_empty
        .then(|| crate::clock::timestamp_text(crate::clock::now() + ctx.ds.empty_recheck_after));
    let calibration = ctx.calibrations.of(ctx.ds, slot);
    let fetched = fetch.calls > 0 || fetch.complete;
    let done = FinishedAttempt {
        dataset_id: ctx.dataset.id,
        attempt_id,
        slot_start: slot,
        outcome,
        notes,
        origin_calls: fetch.calls,
        retries: fetch.retries,
        coverage_seconds: coverage,
        error_code: fetch.failure.as_ref().map(|f| f.code().to_string()),
        object: object.map(|o| (ctx.complement.row.id, o)),
        retry_after,
        left_out,
        out_of_scope,
        calibration_id: calibration.and_then(|c| c.id),
        range_end: Some(fetch.ends.describe()).filter(|e| !e.is_empty()),
        provenance: fetched.then(|| super::object::provenance_json(ctx)),
    };
    ctx.db.call(move |c| c.finish_attempt(&done)).await?;
    tracing::info!(
        outcome = outcome.as_str(),
        notes,
        left_out,
        calls = fetch.calls,
        "slot done"
    );
    let failure = failed.then(|| {
        fetch
            .failure
            .as_ref()
            .map(Failure::message)
            .unwrap_or_else(|| "the fetch did not complete".to_string())
    });
    Ok(SlotResult {
        slot,
        outcome,
        fetch,
        notes,
        left_out,
        out_of_scope,
        coverage,
        confirmed_empty,
        failure,
    })
}
