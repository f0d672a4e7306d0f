//! Incidents: when one opens and closes, what the webhook is told, and how
//! that survives a restart.
//!
//! An *incident* opens when slots are overdue or when the newest slot a
//! collector (primary or backup) wrote validly is older than `alert_after`;
//! the webhook hears of it once, naming the overdue slots and the age of that
//! newest object. It closes, with one more message, when nothing is overdue,
//! the collector's newest object is fresh again and it is newer than the
//! incident's overdue slots (the collector is back, not merely filled in
//! behind).
//!
//! The incident and its alert are written to the catalog in one transaction
//! before the webhook is called ([`crate::catalog::NewAlert`] starts
//! `pending`); [`deliver`] then posts every pending alert of the dataset in
//! order and marks each one sent. A restart finds the open incident (no new
//! alert) and any alert not yet taken (sent now).

use serde::Serialize;

use crate::catalog::{AlertStatus, Delivery, IncidentId, NewAlert, OpenIncident, PendingAlert};
use crate::slot::SlotStart;

use chrono::{DateTime, Utc};

use super::super::counters::add;
use super::super::state::DatasetHandle;

/// What one check found.
#[derive(Debug, Clone)]
pub struct Check {
    /// When the check read the clock.
    pub at: DateTime<Utc>,
    /// Gap slots past the grace, oldest first.
    pub overdue: Vec<SlotStart>,
    /// The newest slot a collector (primary or backup) wrote validly.
    pub newest_collector: Option<SlotStart>,
    /// That slot ended longer than `alert_after` ago (or there is none).
    pub stale: bool,
}

/// Alerts refused this many times are given up on (shown on the dashboard).
const MAX_DELIVERY_ATTEMPTS: i64 = 100;
/// Overdue slots a message names at most.
const NAMED: usize = 10;

/// What a check means for the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// No incident, none needed.
    Quiet,
    /// An incident opens, for this reason.
    Open(AlertStatus),
    /// The incident goes on; the newest overdue slot it has seen.
    Continue(Option<SlotStart>),
    /// The incident is over.
    Close,
}

/// The transition after a check, given the open incident's newest overdue slot
/// (`Some(None)`: an incident without overdue slots is open).
pub fn transition(open: Option<Option<SlotStart>>, found: &Check) -> Transition {
    let newest_overdue = found.overdue.last().copied();
    match open {
        None if !found.overdue.is_empty() => Transition::Open(AlertStatus::Overdue),
        None if found.stale => Transition::Open(AlertStatus::Stale),
        None => Transition::Quiet,
        Some(last_overdue) => {
            let last_overdue = last_overdue.max(newest_overdue);
            // The collector is back when it wrote past the incident's overdue
            // slots, not merely because slotfill filled them in behind it.
            let collector_back = match last_overdue {
                Some(overdue) => found.newest_collector.is_some_and(|n| n > overdue),
                None => true,
            };
            if found.overdue.is_empty() && !found.stale && collector_back {
                Transition::Close
            } else {
                Transition::Continue(last_overdue)
            }
        }
    }
}

/// Carries out the check's transition in the catalog (with its alert) and
/// returns the incident open afterwards. A catalog error keeps what was
/// known: the next check tries again.
pub async fn follow(
    handle: &DatasetHandle,
    open: Option<OpenIncident>,
    found: &Check,
) -> Option<OpenIncident> {
    let step = transition(open.as_ref().map(|o| o.last_overdue), found);
    let result = match (step, open.clone()) {
        (Transition::Quiet, _) => return None,
        (Transition::Open(status), _) => begin(handle, status, found).await,
        (Transition::Continue(last), Some(incident)) if last != incident.last_overdue => {
            extend(handle, incident, last).await
        }
        (Transition::Continue(_), incident) => return incident,
        (Transition::Close, Some(incident)) => end(handle, &incident, found).await,
        (Transition::Close, None) => return None,
    };
    match result {
        Ok(next) => next,
        Err(e) => {
            tracing::warn!(dataset = %handle.ds.name, error = %e, "the incident could not be recorded");
            open
        }
    }
}

type Recorded = Result<Option<OpenIncident>, crate::catalog::CatalogError>;

async fn begin(handle: &DatasetHandle, status: AlertStatus, found: &Check) -> Recorded {
    let (dataset, name) = (handle.session.row.id, handle.ds.name.clone());
    let overdue = (
        found.overdue.first().copied(),
        found.overdue.last().copied(),
    );
    let draft = draft(handle, status, found);
    let (incident, _) = handle
        .session
        .db
        .call(move |c| c.begin_incident(dataset, status, overdue, |id| draft.alert(id)))
        .await?;
    tracing::warn!(dataset = %name, incident = incident.id.0, %status, "incident opened");
    add(&handle.counters.alerts, 1);
    Ok(Some(incident))
}

async fn extend(handle: &DatasetHandle, incident: OpenIncident, last: Option<i64>) -> Recorded {
    let Some(last) = last else {
        return Ok(Some(incident));
    };
    let id = incident.id;
    handle
        .session
        .db
        .call(move |c| c.extend_incident(id, last))
        .await?;
    Ok(Some(OpenIncident {
        last_overdue: Some(last),
        ..incident
    }))
}

async fn end(handle: &DatasetHandle, incident: &OpenIncident, found: &Check) -> Recorded {
    let alert = draft(handle, AlertStatus::Recovered, found).alert(incident.id);
    let id = incident.id;
    handle
        .session
        .db
        .call(move |c| c.end_incident(id, &alert))
        .await?;
    tracing::warn!(dataset = %handle.ds.name, incident = id.0, "incident closed: recovered");
    add(&handle.counters.alerts, 1);
    Ok(None)
}

/// What the webhook receives under `slotfill`.
#[derive(Debug, Clone, Serialize)]
struct AlertDetails {
    dataset: String,
    status: AlertStatus,
    /// The incident's id (`incidents.id`): one opening and one recovery each.
    incident: i64,
    overdue_slots: Vec<String>,
    overdue_count: usize,
    newest_valid_slot: Option<String>,
    newest_valid_age_seconds: Option<i64>,
}

/// An alert before its incident's id is known.
struct Draft {
    text: String,
    details: AlertDetails,
    delivery: Delivery,
}

impl Draft {
    fn alert(mut self, incident: IncidentId) -> NewAlert {
        self.details.incident = incident.0;
        NewAlert {
            status: self.details.status,
            message: self.text,
            details: serde_json::to_string(&self.details).unwrap_or_else(|_| "{}".to_string()),
            delivery: self.delivery,
        }
    }
}

fn draft(handle: &DatasetHandle, status: AlertStatus, found: &Check) -> Draft {
    let ds = &handle.ds;
    let spec = &ds.spec;
    let age = found
        .newest_collector
        .map(|slot| found.at.timestamp() - (slot + spec.width_secs()));
    let newest = match (found.newest_collector, age) {
        (Some(slot), Some(age)) => format!(
            "the newest valid collector object is {} old (slot {})",
            human_age(age),
            spec.local_iso(slot)
        ),
        _ => "no collector object is valid yet".to_string(),
    };
    let named: Vec<String> = found
        .overdue
        .iter()
        .take(NAMED)
        .map(|s| spec.local_iso(*s))
        .collect();
    let text = if status == AlertStatus::Recovered {
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
                crate::text::plural(found.overdue.len() as u64, "slot"),
                named.join(", ")
            )
        };
        format!("slotfill watch {}: {slots}; {newest}", ds.name)
    };
    Draft {
        details: AlertDetails {
            dataset: ds.name.clone(),
            status,
            incident: 0,
            overdue_count: found.overdue.len(),
            overdue_slots: named,
            newest_valid_slot: found.newest_collector.map(|s| spec.local_iso(s)),
            newest_valid_age_seconds: age,
        },
        text,
        delivery: if ds.notify_webhook.is_some() {
            Delivery::Pending
        } else {
            Delivery::LogOnly
        },
    }
}

fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Posts the dataset's pending alerts, oldest first, and records each
/// attempt; stops at the first refusal so that they arrive in order.
pub async fn deliver(handle: &DatasetHandle) {
    let Some(url) = handle.ds.notify_webhook.as_deref() else {
        return;
    };
    let dataset = handle.session.row.id;
    let pending = match handle
        .session
        .db
        .call(move |c| c.undelivered_alerts(dataset))
        .await
    {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(dataset = %handle.ds.name, error = %e, "pending alerts cannot be read");
            return;
        }
    };
    for alert in pending {
        let taken = post(url, &alert).await;
        let give_up = !taken && alert.attempts + 1 >= MAX_DELIVERY_ATTEMPTS;
        let id = alert.id;
        let outcome = if taken {
            Ok(())
        } else {
            Err("the webhook did not take the message")
        };
        let recorded = handle
            .session
            .db
            .call(move |c| c.alert_attempted(id, outcome, give_up))
            .await;
        if let Err(e) = recorded {
            tracing::warn!(dataset = %handle.ds.name, error = %e, "an alert's delivery cannot be recorded");
        }
        if !taken {
            tracing::warn!(dataset = %handle.ds.name, incident = alert.incident.0, status = %alert.status, attempts = alert.attempts + 1, give_up, "the alert will be sent again at the next check");
            return;
        }
    }
}

async fn post(url: &str, alert: &PendingAlert) -> bool {
    let details: serde_json::Value =
        serde_json::from_str(&alert.details).unwrap_or(serde_json::Value::Null);
    crate::notify::send_message(url, &alert.message, &details).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(overdue: &[i64], newest: Option<i64>, stale: bool) -> Check {
        Check {
            at: chrono::DateTime::from_timestamp(100_000, 0).unwrap(),
            overdue: overdue.to_vec(),
            newest_collector: newest,
            stale,
        }
    }

    /// Follows the transitions the way [`follow`] keeps the incident.
    fn step(open: Option<Option<i64>>, found: &Check) -> (Option<Option<i64>>, Transition) {
        let t = transition(open, found);
        let next = match t {
            Transition::Quiet | Transition::Close => None,
            Transition::Open(_) => Some(found.overdue.last().copied()),
            Transition::Continue(last) => Some(last),
        };
        (next, t)
    }

    #[test]
    fn one_message_when_an_incident_opens_and_one_when_the_collector_is_back() {
        // A missed slot, filled, with the collector writing after it: open, then closed.
        let (open, said) = step(None, &check(&[20], Some(40), false));
        assert_eq!(said, Transition::Open(AlertStatus::Overdue));
        let (still, said) = step(open, &check(&[20], Some(40), false));
        assert_eq!(said, Transition::Continue(Some(20)), "no second alert");
        let (closed, said) = step(still, &check(&[], Some(40), false));
        assert_eq!((closed, said), (None, Transition::Close));

        // The collector stopped: each new slot is filled behind it, but the
        // incident stays one until the collector writes past it again.
        let (open, _) = step(None, &check(&[50], Some(40), false));
        let (open, said) = step(open, &check(&[], Some(40), false));
        assert_eq!(said, Transition::Continue(Some(50)));
        let (open, said) = step(open, &check(&[60], Some(40), true));
        assert_eq!(said, Transition::Continue(Some(60)));
        let (open, said) = step(open, &check(&[], Some(40), true));
        assert_eq!(said, Transition::Continue(Some(60)));
        let (open, said) = step(open, &check(&[], Some(60), false));
        assert_eq!(said, Transition::Continue(Some(60)), "not past 60 yet");
        let (closed, said) = step(open, &check(&[], Some(70), false));
        assert_eq!((closed, said), (None, Transition::Close));

        // Nothing overdue and fresh: no incident, nothing said.
        assert_eq!(
            step(None, &check(&[], Some(70), false)).1,
            Transition::Quiet
        );
        // Stale alone opens one; it closes when fresh again.
        let (open, said) = step(None, &check(&[], None, true));
        assert_eq!(said, Transition::Open(AlertStatus::Stale));
        assert_eq!(
            step(open, &check(&[], Some(80), false)).1,
            Transition::Close
        );
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(human_age(59), "59 s");
        assert_eq!(human_age(600), "10 min");
        assert_eq!(human_age(3 * 3600), "3 h");
        assert_eq!(human_age(3 * 86_400), "3 days");
    }
}
