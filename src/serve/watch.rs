//! The freshness watch: notices within minutes that the collector stopped
//! writing, says so once, and fills what it left out.
//!
//! Every `check_every` the watch scans only the newest day prefix(es) of each
//! location (the local day holding the oldest slot it watches, and today's;
//! objects already counted are not downloaded again), then looks at the gap
//! slots of those days that ended more than `grace` ago: they are *overdue*.
//!
//! An *incident* opens when slots are overdue or when the newest slot a
//! collector (primary or backup) wrote validly is older than `alert_after`;
//! the webhook hears of it once, naming the overdue slots and the age of that
//! newest object. It closes, with one more message, when nothing is overdue,
//! the collector's newest object is fresh again and it is newer than the
//! incident's overdue slots (the collector is back, not merely filled in
//! behind). With `fill = true` overdue slots are filled from the origin, as
//! `slotfill fill` would, with its default politeness, under the dataset's
//! one-run-at-a-time claim.

use std::sync::Arc;

use serde::Serialize;

use crate::catalog::RunSummary;
use crate::commands::fill::{FillFlags, fill_options, fill_summary, run_fill};
use crate::commands::{Global, Notify, Session};
use crate::error::Result;
use crate::scan::ScanOptions;
use crate::slot::{SlotStart, Window};
use crate::source::NoteSource;
use crate::state::State;

use super::runs::RunProgress;
use super::settings::Freshness;
use super::{AppState, Claim, DatasetHandle};

/// An open incident.
#[derive(Debug, Clone)]
struct Incident {
    /// The newest slot that was overdue during the incident.
    last_overdue: Option<SlotStart>,
}

/// What one check found.
#[derive(Debug, Clone)]
struct Check {
    overdue: Vec<SlotStart>,
    newest_collector: Option<SlotStart>,
    stale: bool,
}

#[derive(Serialize)]
struct AlertDetails<'a> {
    dataset: &'a str,
    status: &'a str,
    overdue_slots: Vec<String>,
    newest_valid_slot: Option<String>,
    newest_valid_age_seconds: Option<i64>,
}

/// Runs the watch of one dataset until the server stops.
pub async fn watch(state: Arc<AppState>, dataset: String, freshness: Freshness) {
    let Some(handle) = state.dataset(&dataset) else {
        return;
    };
    let mut incident: Option<Incident> = None;
    loop {
        if state.shutdown.is_triggered() {
            return;
        }
        let checked = tokio::select! {
            checked = check(&handle, &freshness) => checked,
            () = state.shutdown.wait() => return,
        };
        super::add(&handle.counters.watch_checks, 1);
        match checked {
            Ok(found) => {
                handle.counters.overdue.store(
                    found.overdue.len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                incident = follow_incident(&handle, incident, &found).await;
                if freshness.fill && !found.overdue.is_empty() {
                    fill_overdue(&state, &handle, &found.overdue).await;
                }
            }
            Err(e) => tracing::warn!(dataset = %dataset, error = %e, "freshness check failed"),
        }
        let pause = crate::clock::real_duration(freshness.check_every);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = state.shutdown.wait() => return,
        }
    }
}

/// Scans the newest day prefix(es) and reads what is overdue.
async fn check(handle: &DatasetHandle, freshness: &Freshness) -> Result<Check> {
    let ds = &handle.ds;
    let spec = &ds.spec;
    let now = crate::clock::now();
    let lookback =
        freshness.grace.max(freshness.alert_after) + chrono::Duration::seconds(spec.width_secs());
    let oldest = spec.align_down((now - lookback).timestamp());
    let window = Window {
        first: spec.day_bounds(spec.day_of(oldest)).0,
        last: spec.align_down(now.timestamp()),
    };
    let options = ScanOptions {
        window,
        concurrency: 8,
        progress: false,
    };
    crate::commands::scan::run_scan(&handle.session, &options).await?;
    // Overdue: a gap whose slot ended more than `grace` ago.
    let overdue_before = (now - freshness.grace).timestamp() - spec.width_secs();
    let id = handle.session.row.id;
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
            Ok::<_, crate::catalog::CatalogError>((overdue, newest))
        })
        .await?;
    let stale = newest_collector.is_none_or(|slot| {
        let end = slot + spec.width_secs();
        now.timestamp() - end > freshness.alert_after.num_seconds()
    });
    Ok(Check {
        overdue,
        newest_collector,
        stale,
    })
}

/// Opens, keeps or closes the incident, and says so on the webhook.
async fn follow_incident(
    handle: &DatasetHandle,
    incident: Option<Incident>,
    found: &Check,
) -> Option<Incident> {
    let (next, message) = next_incident(incident, found);
    if let Some(status) = message {
        alert(handle, status, found).await;
    }
    next
}

/// The incident after a check, and the message to send (`overdue` or `stale`
/// when one opens, `recovered` when it closes), if any.
fn next_incident(
    incident: Option<Incident>,
    found: &Check,
) -> (Option<Incident>, Option<&'static str>) {
    let last_overdue = found.overdue.last().copied();
    match incident {
        None if !found.overdue.is_empty() || found.stale => {
            let status = if found.overdue.is_empty() {
                "stale"
            } else {
                "overdue"
            };
            (Some(Incident { last_overdue }), Some(status))
        }
        None => (None, None),
        Some(mut open) => {
            open.last_overdue = open.last_overdue.max(last_overdue);
            // The collector is back when it wrote past the incident's overdue
            // slots, not merely because slotfill filled them in behind it.
            let collector_back = match open.last_overdue {
                Some(overdue) => found.newest_collector.is_some_and(|n| n > overdue),
                None => true,
            };
            if found.overdue.is_empty() && !found.stale && collector_back {
                (None, Some("recovered"))
            } else {
                (Some(open), None)
            }
        }
    }
}

async fn alert(handle: &DatasetHandle, status: &str, found: &Check) {
    let ds = &handle.ds;
    let spec = &ds.spec;
    let now = crate::clock::now().timestamp();
    let age = found
        .newest_collector
        .map(|slot| now - (slot + spec.width_secs()));
    let newest = match (found.newest_collector, age) {
        (Some(slot), Some(age)) => format!(
            "the newest valid collector object is {} old (slot {})",
            human_age(age),
            spec.local_iso(slot)
        ),
        _ => "no collector object is valid yet".to_string(),
    };
    const NAMED: usize = 10;
    let named: Vec<String> = found
        .overdue
        .iter()
        .take(NAMED)
        .map(|s| spec.local_iso(*s))
        .collect();
    let text = if status == "recovered" {
        format!(
            "slotfill watch {}: recovered; no slot is overdue and {newest}",
            ds.name
        )
    } else {
        let more = if found.overdue.len() > NAMED {
            format!(", … ({} in all)", found.overdue.len())
        } else {
            String::new()
        };
        let slots = if found.overdue.is_empty() {
            "no slot is overdue yet".to_string()
        } else {
            format!(
                "{} overdue: {}{more}",
                crate::report::format::plural(found.overdue.len() as u64, "slot"),
                named.join(", ")
            )
        };
        format!("slotfill watch {}: {slots}; {newest}", ds.name)
    };
    tracing::warn!(dataset = %ds.name, status, "{text}");
    super::add(&handle.counters.alerts, 1);
    let Some(url) = ds.notify_webhook.as_deref() else {
        return;
    };
    let details = AlertDetails {
        dataset: &ds.name,
        status,
        overdue_slots: named,
        newest_valid_slot: found.newest_collector.map(|s| spec.local_iso(s)),
        newest_valid_age_seconds: age,
    };
    crate::notify::send_message(url, &text, &details).await;
}

fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Fills the overdue slots, recorded as a `fill` run, unless a run holds the dataset.
async fn fill_overdue(state: &Arc<AppState>, handle: &Arc<DatasetHandle>, overdue: &[SlotStart]) {
    let ds = &handle.ds;
    if ds.complement().is_none() {
        tracing::warn!(dataset = %ds.name, "freshness fill = true, but the dataset has no complement location");
        return;
    }
    let Some(claim) = Claim::take(state, &ds.name, "watch fill") else {
        tracing::info!(dataset = %ds.name, "a run is in progress; the watch fills nothing now");
        return;
    };
    let (Some(first), Some(last)) = (overdue.first(), overdue.last()) else {
        return;
    };
    let window = Window {
        first: *first,
        last: *last,
    };
    if let Err(e) = fill_window(state, handle, &claim, window).await {
        tracing::warn!(dataset = %ds.name, error = %e, "watch fill failed");
    }
}

async fn fill_window(
    state: &Arc<AppState>,
    handle: &Arc<DatasetHandle>,
    claim: &Claim,
    window: Window,
) -> Result<()> {
    let flags = FillFlags {
        concurrency: 4,
        ..Default::default()
    };
    let plan = crate::source::open::plan(&handle.ds.name, &handle.ds.source, &flags.source)?;
    // A session of its own, over the overdue slots: the run record names them.
    let session = Session::open(state.resolved(&handle.ds, window)).await?;
    let source = crate::source::open::build(&plan, &session.resolved.config.s3).await?;
    let source: Arc<dyn NoteSource> = Arc::new(super::runs::Counted {
        inner: source,
        handle: handle.clone(),
    });
    let options = fill_options(window, &flags, &plan);
    let global = Global {
        args: "slotfill serve: freshness watch fill of overdue slots".to_string(),
        ..state.global.clone()
    };
    let progress = Arc::new(RunProgress::default());
    progress.enter("filling");
    let (report, summary) = session
        .record(&global, "fill", Notify::Never, |run| {
            claim.set_run(run.0, progress.clone());
            let (session, options) = (&session, &options);
            async move {
                let report = run_fill(session, source, Some(run), options).await?;
                let summary = RunSummary {
                    requests: Some(session.requests()),
                    ..fill_summary(&report, options)
                };
                Ok((report, summary))
            }
        })
        .await?;
    tracing::info!(
        dataset = %handle.ds.name,
        filled = report.completed(),
        empty = report.empty,
        failed = report.failed + report.partial,
        outcome = %summary.outcome,
        "watch filled overdue slots"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(overdue: &[i64], newest: Option<i64>, stale: bool) -> Check {
        Check {
            overdue: overdue.to_vec(),
            newest_collector: newest,
            stale,
        }
    }

    #[test]
    fn one_message_when_an_incident_opens_and_one_when_the_collector_is_back() {
        // A missed slot, filled, with the collector writing after it: open, then recovered.
        let (open, said) = next_incident(None, &check(&[20], Some(40), false));
        assert_eq!(said, Some("overdue"));
        let (still, said) = next_incident(open.clone(), &check(&[20], Some(40), false));
        assert_eq!(said, None, "no second alert while it lasts");
        let (closed, said) = next_incident(still, &check(&[], Some(40), false));
        assert_eq!((closed.is_none(), said), (true, Some("recovered")));

        // The collector stopped: each new slot is filled behind it, but the
        // incident stays one until the collector writes past it again.
        let (open, _) = next_incident(None, &check(&[50], Some(40), false));
        let (open, said) = next_incident(open, &check(&[], Some(40), false));
        assert_eq!((open.is_some(), said), (true, None));
        let (open, said) = next_incident(open, &check(&[60], Some(40), true));
        assert_eq!((open.is_some(), said), (true, None));
        let (open, said) = next_incident(open, &check(&[], Some(40), true));
        assert_eq!((open.is_some(), said), (true, None));
        let (closed, said) = next_incident(open, &check(&[], Some(70), false));
        assert_eq!((closed.is_none(), said), (true, Some("recovered")));

        // Nothing overdue and fresh: no incident, nothing said.
        assert_eq!(next_incident(None, &check(&[], Some(70), false)).1, None);
        // Stale alone opens one.
        assert_eq!(
            next_incident(None, &check(&[], None, true)).1,
            Some("stale")
        );
    }
}
