//! Promote: copy complement objects into a collector location (the primary by
//! default), so downstream jobs read one complete mirror.
//!
//! The plan comes from the catalog: every slot of the window that is ok only
//! through the complement. Each slot's copy is conditional, so nothing a
//! collector wrote is ever clobbered:
//!
//! - no object at the target: `If-None-Match: *`;
//! - an object the catalog knows to be invalid (too small, too few or too many
//!   lines, unreadable) and `--replace-invalid`: `If-Match` on its recorded
//!   ETag, so it is replaced only if it is still that object;
//! - a valid object, or one the catalog has not judged: never.
//!
//! A condition that fails means someone wrote meanwhile: the slot is reported
//! and skipped, never retried blindly. One exception is recognised: the
//! target already holds this very copy (its `promoted-from` names the source,
//! its size matches), made by an earlier promote killed before it recorded
//! it; that copy is recorded instead of made again, so a rerun after a kill
//! promotes every slot exactly once.
//!
//! Each copy is recorded in one transaction (the object at the target, a
//! `promotions` row, the slot now ok through the target), so the slot's state
//! says at once that the target holds a valid object, and a second promote
//! finds nothing to do. The dataset's lease is held throughout: a promote
//! never races a fill or another promote of the same dataset. It is renewed
//! before each slot, so a promote whose lease another process took over stops
//! before its next copy (the copies already under way finish and are recorded).

mod slot;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use thiserror::Error;

use crate::catalog::{CatalogError, DatasetRow, Lease, PromotionCandidate, RunId, SharedCatalog};
use crate::config::Dataset;
use crate::location::OpenLocation;
use crate::progress::Progress;
use crate::slot::{SlotStart, Window};
use crate::store::StoreError;

pub use slot::Skip;

#[derive(Debug, Error)]
pub enum PromoteError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A configuration error of a location (credentials, bucket): every copy would fail.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct PromoteOptions {
    pub window: Window,
    /// Replace target objects the catalog knows to be invalid (`If-Match`).
    pub replace_invalid: bool,
    pub concurrency: usize,
    pub dry_run: bool,
    pub progress: bool,
}

/// What a promote did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct PromoteReport {
    /// Slots ok only through the complement.
    pub candidates: Vec<PromotionCandidate>,
    /// Copied server-side (CopyObject).
    pub copied: u64,
    /// Copied through a temporary file (local directory ↔ S3).
    pub streamed: u64,
    /// Copies an earlier, interrupted promote made, recorded now.
    pub found: u64,
    /// Invalid target objects replaced (`--replace-invalid`), among the above.
    pub replaced: u64,
    pub bytes: u64,
    /// Slots not promoted, and why, in time order.
    pub skipped: Vec<(SlotStart, Skip)>,
    /// Slots whose copy failed, with the cause.
    pub failed: Vec<(SlotStart, String)>,
    /// With `dry_run`: the slots that would be copied.
    pub planned: Vec<(SlotStart, slot::Action)>,
    /// Why the promote stopped before its last slot: its lease was lost.
    pub stopped: Option<String>,
}

impl PromoteReport {
    pub fn promoted(&self) -> u64 {
        self.copied + self.streamed + self.found
    }

    /// Candidates neither promoted, skipped nor failed: the promote stopped first.
    pub fn unfinished(&self) -> u64 {
        let done = self.promoted() + (self.skipped.len() + self.failed.len()) as u64;
        (self.candidates.len() as u64).saturating_sub(done)
    }
}

/// What every slot's copy shares.
struct Context<'a> {
    ds: &'a Dataset,
    dataset: &'a DatasetRow,
    db: &'a SharedCatalog,
    complement: &'a OpenLocation,
    target: &'a OpenLocation,
    run: Option<RunId>,
    options: &'a PromoteOptions,
    /// The dataset's lease (none in a dry run), renewed before each slot.
    lease: Option<Lease>,
    stop: AtomicBool,
    /// Why the lease could not be renewed: the run stops.
    lost: OnceLock<String>,
}

impl Context<'_> {
    /// Renews the lease before a slot is promoted; false (and the run
    /// stopping) when another process took it over.
    async fn hold_lease(&self) -> bool {
        let Some(lease) = &self.lease else {
            return true;
        };
        match crate::fill::lease::renew(self.db, lease).await {
            Ok(()) => true,
            Err(lost) => {
                tracing::debug!(error = %lost, "lost the lease; promoting no further slot");
                self.stop.store(true, Ordering::SeqCst);
                let _ = self.lost.set(lost);
                false
            }
        }
    }
}

/// Promotes every slot of the window that is ok only through the complement into `target`.
pub async fn promote(
    db: &SharedCatalog,
    ds: &Dataset,
    dataset: &DatasetRow,
    complement: &OpenLocation,
    target: &OpenLocation,
    run: Option<RunId>,
    options: &PromoteOptions,
) -> Result<PromoteReport, PromoteError> {
    let (id, source_id, target_id) = (dataset.id, complement.row.id, target.row.id);
    let range = (options.window.first, options.window.last);
    let plan = move |c: &mut crate::catalog::Catalog| {
        c.promotion_candidates(id, source_id, target_id, range)
    };
    let mut ctx = Context {
        ds,
        dataset,
        db,
        complement,
        target,
        run,
        options,
        lease: None,
        stop: AtomicBool::new(false),
        lost: OnceLock::new(),
    };
    if options.dry_run {
        let candidates = db.call(plan).await?;
        let mut report = PromoteReport::default();
        for c in &candidates {
            match slot::action(&ctx, c) {
                Ok(action) => report.planned.push((c.slot_start, action)),
                Err(skip) => report.skipped.push((c.slot_start, skip)),
            }
        }
        report.candidates = candidates;
        return Ok(report);
    }
    // The lease first, then the plan: a plan made before it could be stale.
    let lease = crate::fill::lease::acquire(db, dataset)
        .await
        .map_err(lease_error)?;
    let heartbeat = crate::fill::lease::spawn_heartbeat(db.clone(), lease.clone());
    ctx.lease = Some(lease.clone());
    let result = match db.call(plan).await {
        Ok(candidates) => promote_all(&ctx, candidates).await,
        Err(e) => Err(e.into()),
    };
    heartbeat.abort();
    let lost_by_heartbeat = heartbeat.await.ok().flatten();
    crate::fill::lease::release(db, lease).await;
    result.map(|mut report| {
        report.stopped = ctx.lost.into_inner().or(lost_by_heartbeat);
        report
    })
}

fn lease_error(e: crate::fill::FillError) -> PromoteError {
    match e {
        crate::fill::FillError::Catalog(e) => PromoteError::Catalog(e),
        crate::fill::FillError::Store(e) => PromoteError::Store(e),
        other => PromoteError::Catalog(CatalogError::Lease(crate::catalog::LeaseError::Lost(
            other.to_string(),
        ))),
    }
}

/// Copies every candidate, `concurrency` at once; stops at the first error
/// that would fail every other copy alike.
async fn promote_all(
    ctx: &Context<'_>,
    candidates: Vec<PromotionCandidate>,
) -> Result<PromoteReport, PromoteError> {
    let mut report = PromoteReport {
        candidates: candidates.clone(),
        ..Default::default()
    };
    let progress = Progress::new(ctx.options.progress, candidates.len() as u64, "promoting");
    let mut results = futures::stream::iter(candidates)
        .map(|candidate| slot::promote_one(ctx, candidate))
        .buffer_unordered(ctx.options.concurrency.max(1));
    let mut fatal = None;
    while let Some(result) = results.next().await {
        progress.inc(1);
        match result {
            Ok(Some(done)) => done.absorb_into(&mut report),
            Ok(None) => {}
            Err(e) => {
                ctx.stop.store(true, Ordering::SeqCst);
                fatal.get_or_insert(e);
            }
        }
    }
    progress.finish();
    if let Some(e) = fatal {
        return Err(e);
    }
    report.skipped.sort_by_key(|(slot, _)| *slot);
    report.failed.sort_by_key(|(slot, _)| *slot);
    Ok(report)
}
