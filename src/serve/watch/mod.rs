//! The freshness watch: notices within minutes that the collector stopped
//! writing, says so once, and fills what it left out.
//!
//! Checks run on fixed ticks of the clock, every `check_every` (at :00, :05,
//! :10, … for 5 minutes), whatever a check took, so a slot whose end plus
//! `grace` falls on a tick is seen the moment it becomes overdue. A check
//! scans only the newest day prefix(es) of each location (the local day
//! holding the oldest slot it watches, and today's; objects already counted
//! are not downloaded again), then looks at the gap slots of those days that
//! ended more than `grace` ago: they are *overdue*. While an incident is
//! open, the days back to its first overdue slot stay watched (up to a
//! week), so an incident that crosses midnight neither forgets its slots
//! nor says it recovered before they are filled.
//!
//! [`incident`] decides when an incident opens and closes and keeps it, its
//! alerts and the last check in the catalog, so a restart neither forgets an
//! incident nor alerts again. With `fill = true`, [`fill`] fills the overdue
//! slots in the background, under the dataset's one-run-at-a-time claim,
//! while the checks go on.

mod fill;
pub mod incident;

pub use incident::Check;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::catalog::{DatasetId, OpenIncident};
use crate::scan::ScanOptions;
use crate::slot::Window;
use crate::state::State;

use super::counters::add;
use super::error::ServeError;
use super::state::{AppState, DatasetHandle};
use crate::config::serve::Freshness;

/// How far back an open incident keeps its overdue slots watched.
const INCIDENT_LOOKBACK: chrono::Duration = chrono::Duration::days(7);

/// Runs the watch of one dataset until the server stops.
pub async fn watch(state: Arc<AppState>, dataset: String, freshness: Freshness) {
    let Some(handle) = state.dataset(&dataset) else {
        return;
    };
    let (mut incident, mut next) = match remembered(&handle, &freshness).await {
        Ok(remembered) => remembered,
        Err(e) => {
            tracing::warn!(dataset = %dataset, error = %e, "the watch's state cannot be read; starting afresh");
            (None, crate::clock::now())
        }
    };
    loop {
        if !sleep_until(&state, next, &freshness).await {
            return;
        }
        let at = crate::clock::now();
        let checked = tokio::select! {
            checked = check(&handle, &freshness, at, incident.as_ref()) => checked,
            () = state.shutdown.wait() => return,
        };
        add(&handle.counters.watch_checks, 1);
        match checked {
            Ok(found) => {
                handle.counters.overdue.store(
                    found.overdue.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                incident = incident::follow(&handle, incident, &found).await;
                incident::deliver(&handle).await;
                if freshness.fill && !found.overdue.is_empty() {
                    fill::fill_overdue(&state, &handle, &found.overdue);
                }
            }
            Err(e) => tracing::warn!(dataset = %dataset, error = %e, "freshness check failed"),
        }
        next = crate::clock::next_tick(at, freshness.check_every);
    }
}

/// The open incident and when the first check is due: at once, unless the
/// last check (of this process or an earlier one) was less than
/// `check_every` ago, then at the next tick.
async fn remembered(
    handle: &DatasetHandle,
    freshness: &Freshness,
) -> Result<(Option<OpenIncident>, DateTime<Utc>), ServeError> {
    let id: DatasetId = handle.session.row.id;
    let (open, last) = handle
        .session
        .db
        .call(move |c| {
            Ok::<_, crate::catalog::CatalogError>((c.open_incident(id)?, c.watch_check(id)?))
        })
        .await?;
    let now = crate::clock::now();
    let last = last
        .and_then(|c| DateTime::parse_from_rfc3339(&c.checked_at).ok())
        .map(|t| t.to_utc());
    let first = match last {
        Some(t) if t <= now && now - t < freshness.check_every => {
            crate::clock::next_tick(t, freshness.check_every)
        }
        _ => now,
    };
    if let Some(open) = &open {
        tracing::info!(dataset = %handle.ds.name, incident = open.id.0, since = %open.opened_at, "an incident is open; it is not alerted again");
    }
    Ok((open, first))
}

/// Sleeps until the clock reads `t`; false when the server stops first. A
/// pinned clock never moves: then the wait is `check_every` of real time.
async fn sleep_until(state: &AppState, t: DateTime<Utc>, freshness: &Freshness) -> bool {
    if state.shutdown.is_triggered() {
        return false;
    }
    let wait = crate::clock::real_wait(t)
        .unwrap_or_else(|| crate::clock::real_duration(freshness.check_every));
    if wait.is_zero() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = state.shutdown.wait() => false,
    }
}

/// Scans the newest day prefix(es) and reads what is overdue.
async fn check(
    handle: &DatasetHandle,
    freshness: &Freshness,
    now: DateTime<Utc>,
    open: Option<&OpenIncident>,
) -> Result<Check, ServeError> {
    let ds = &handle.ds;
    let spec = &ds.spec;
    let lookback =
        freshness.grace.max(freshness.alert_after) + chrono::Duration::seconds(spec.width_secs());
    let mut oldest = spec.align_down((now - lookback).timestamp());
    // An open incident keeps its slots watched after midnight, until they are
    // filled (or a week old: the nightly runs and the gaps report have them).
    if let Some(first) = open.and_then(|i| i.first_overdue) {
        let floor = spec.align_down((now - INCIDENT_LOOKBACK).timestamp());
        oldest = oldest.min(first.max(floor));
    }
    let window = Window {
        first: spec.day_bounds(spec.day_of(oldest)).0,
        last: spec.align_down(now.timestamp()),
    };
    let options = ScanOptions {
        window,
        concurrency: crate::defaults::SCAN_CONCURRENCY,
        progress: false,
    };
    crate::run::run_scan(&handle.session, &options).await?;
    // Overdue: a gap whose slot ended more than `grace` ago.
    let overdue_before = (now - freshness.grace).timestamp() - spec.width_secs();
    let id = handle.session.row.id;
    let checked_at = crate::clock::timestamp_text(now);
    let (overdue, newest_collector) = handle
        .session
        .db
        .call(move |c| {
            let mut overdue = Vec::new();
            c.visit_slots(id, (window.first, window.last), Some(&State::GAPS), |row| {
                if row.slot_start <= overdue_before {
                    overdue.push(row.slot_start);
                }
                Ok(())
            })?;
            let newest = c.newest_ok_slot(id, true)?;
            c.record_watch_check(id, &checked_at, overdue.len() as i64, newest)?;
            Ok::<_, crate::catalog::CatalogError>((overdue, newest))
        })
        .await?;
    let stale = newest_collector.is_none_or(|slot| {
        let end = slot + spec.width_secs();
        now.timestamp() - end > freshness.alert_after.num_seconds()
    });
    Ok(Check {
        at: now,
        overdue,
        newest_collector,
        stale,
    })
}
