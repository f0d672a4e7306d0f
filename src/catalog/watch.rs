//! The freshness watch's memory (schema version 6): each dataset's last check,
//! its incidents and every alert, so that a restarted `slotfill serve` knows
//! an incident is already open and alerts once per incident.
//!
//! An alert is written in the transaction that opens or closes its incident,
//! as `pending`, and marked `sent` once the webhook took it: a process killed
//! in between finds it pending and sends it when it comes back. (Only a kill
//! between the webhook's answer and that mark can send one twice; the
//! message carries its incident's id, so a receiver can tell.)

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Catalog, DatasetId, Result, parse_column};

/// Why an incident opened, and the alert that says so; `Recovered` closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Slots are past the grace and still gaps.
    Overdue,
    /// The collector's newest valid object is older than `alert_after`.
    Stale,
    Recovered,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Overdue => "overdue",
            AlertStatus::Stale => "stale",
            AlertStatus::Recovered => "recovered",
        }
    }
}

impl std::str::FromStr for AlertStatus {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            AlertStatus::Overdue,
            AlertStatus::Stale,
            AlertStatus::Recovered,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown alert status {s:?}"))
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not taken by the webhook yet.
    Pending,
    Sent,
    /// The dataset has no webhook: the log line is the alert.
    LogOnly,
    /// Refused too many times; left for a person to see on the dashboard.
    GaveUp,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Sent => "sent",
            Delivery::LogOnly => "log_only",
            Delivery::GaveUp => "gave_up",
        }
    }
}

impl std::str::FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            Delivery::Pending,
            Delivery::Sent,
            Delivery::LogOnly,
            Delivery::GaveUp,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| format!("unknown alert delivery {s:?}"))
    }
}

/// The open incident of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIncident {
    pub id: super::IncidentId,
    pub kind: AlertStatus,
    pub opened_at: String,
    pub first_overdue: Option<i64>,
    pub last_overdue: Option<i64>,
}

/// An alert to record: what is posted.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub status: AlertStatus,
    pub message: String,
    /// JSON, posted under `slotfill`.
    pub details: String,
    /// `Pending` when a webhook will be asked, `LogOnly` otherwise.
    pub delivery: Delivery,
}

/// An alert the webhook has not taken yet.
#[derive(Debug, Clone)]
pub struct PendingAlert {
    pub id: super::AlertId,
    pub incident: super::IncidentId,
    pub status: AlertStatus,
    pub message: String,
    pub details: String,
    pub attempts: i64,
}

/// The last check of a dataset's watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchCheck {
    pub checked_at: String,
    pub overdue: i64,
    pub newest_collector: Option<i64>,
    pub checks: i64,
}

/// An incident with its alerts, for the dashboard.
#[derive(Debug, Clone)]
pub struct IncidentRecord {
    pub id: super::IncidentId,
    pub kind: AlertStatus,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub first_overdue: Option<i64>,
    pub last_overdue: Option<i64>,
    /// (status, delivery, sent_at), oldest first.
    pub alerts: Vec<(AlertStatus, Delivery, Option<String>)>,
}

impl Catalog {
    pub fn open_incident(&self, dataset: DatasetId) -> Result<Option<OpenIncident>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, kind, opened_at, first_overdue, last_overdue FROM incidents
                 WHERE dataset_id = ?1 AND closed_at IS NULL",
            )?
            .query_row([dataset], |r| {
                Ok(OpenIncident {
                    id: r.get(0)?,
                    kind: parse_column(r, 1, "incidents.kind")?,
                    opened_at: r.get(2)?,
                    first_overdue: r.get(3)?,
                    last_overdue: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Opens an incident and records its alert, in one transaction. `alert`
    /// is given the new incident's id (the message names it).
    pub fn begin_incident(
        &mut self,
        dataset: DatasetId,
        kind: AlertStatus,
        overdue: (Option<i64>, Option<i64>),
        alert: impl FnOnce(super::IncidentId) -> NewAlert,
    ) -> Result<(OpenIncident, super::AlertId)> {
        let now = crate::clock::now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO incidents (dataset_id, kind, opened_at, first_overdue, last_overdue)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![dataset, kind.as_str(), now, overdue.0, overdue.1],
        )?;
        let id = super::IncidentId(tx.last_insert_rowid());
        let alert_id = insert_alert(&tx, id, &alert(id), &now)?;
        tx.commit()?;
        let incident = OpenIncident {
            id,
            kind,
            opened_at: now,
            first_overdue: overdue.0,
            last_overdue: overdue.1,
        };
        Ok((incident, alert_id))
    }

    /// Remembers the newest slot overdue during an open incident.
    pub fn extend_incident(&mut self, id: super::IncidentId, last_overdue: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE incidents SET last_overdue = ?2 WHERE id = ?1",
            params![id, last_overdue],
        )?;
        Ok(())
    }

    /// Closes an incident and records its recovery alert, in one transaction.
    pub fn end_incident(
        &mut self,
        id: super::IncidentId,
        alert: &NewAlert,
    ) -> Result<super::AlertId> {
        let now = crate::clock::now_text();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE incidents SET closed_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        let alert_id = insert_alert(&tx, id, alert, &now)?;
        tx.commit()?;
        Ok(alert_id)
    }

    /// The dataset's alerts the webhook has not taken yet, oldest first.
    pub fn undelivered_alerts(&self, dataset: DatasetId) -> Result<Vec<PendingAlert>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.id, a.incident_id, a.status, a.message, a.details, a.attempts
             FROM alerts a JOIN incidents i ON i.id = a.incident_id
             WHERE i.dataset_id = ?1 AND a.delivery = 'pending' ORDER BY a.id",
        )?;
        let rows = stmt.query_map([dataset], |r| {
            Ok(PendingAlert {
                id: r.get(0)?,
                incident: r.get(1)?,
                status: parse_column(r, 2, "alerts.status")?,
                message: r.get(3)?,
                details: r.get(4)?,
                attempts: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Records one delivery attempt: taken by the webhook, or refused with
    /// `error` (and given up on when `give_up`).
    pub fn alert_attempted(
        &mut self,
        id: super::AlertId,
        outcome: std::result::Result<(), &str>,
        give_up: bool,
    ) -> Result<()> {
        let now = crate::clock::now_text();
        let (delivery, sent_at, error) = match outcome {
            Ok(()) => (Delivery::Sent, Some(now), None),
            Err(e) if give_up => (Delivery::GaveUp, None, Some(e)),
            Err(e) => (Delivery::Pending, None, Some(e)),
        };
        self.conn.execute(
            "UPDATE alerts SET attempts = attempts + 1, delivery = ?2, sent_at = ?3,
                 last_error = COALESCE(?4, last_error) WHERE id = ?1",
            params![id, delivery.as_str(), sent_at, error],
        )?;
        Ok(())
    }

    /// Records a check of the dataset's watch; returns it with the running count.
    pub fn record_watch_check(
        &mut self,
        dataset: DatasetId,
        checked_at: &str,
        overdue: i64,
        newest_collector: Option<i64>,
    ) -> Result<WatchCheck> {
        self.conn.execute(
            "INSERT INTO watch_checks (dataset_id, checked_at, overdue, newest_collector, checks)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (dataset_id) DO UPDATE SET checked_at = excluded.checked_at,
                 overdue = excluded.overdue, newest_collector = excluded.newest_collector,
                 checks = checks + 1",
            params![dataset, checked_at, overdue, newest_collector],
        )?;
        Ok(self.watch_check(dataset)?.expect("just written"))
    }

    pub fn watch_check(&self, dataset: DatasetId) -> Result<Option<WatchCheck>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT checked_at, overdue, newest_collector, checks FROM watch_checks
                 WHERE dataset_id = ?1",
            )?
            .query_row([dataset], |r| {
                Ok(WatchCheck {
                    checked_at: r.get(0)?,
                    overdue: r.get(1)?,
                    newest_collector: r.get(2)?,
                    checks: r.get(3)?,
                })
            })
            .optional()?)
    }

    /// The dataset's latest incidents, newest first, with their alerts.
    pub fn recent_incidents(
        &self,
        dataset: DatasetId,
        limit: usize,
    ) -> Result<Vec<IncidentRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, opened_at, closed_at, first_overdue, last_overdue FROM incidents
             WHERE dataset_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![dataset, limit as i64], |r| {
            Ok(IncidentRecord {
                id: r.get(0)?,
                kind: parse_column(r, 1, "incidents.kind")?,
                opened_at: r.get(2)?,
                closed_at: r.get(3)?,
                first_overdue: r.get(4)?,
                last_overdue: r.get(5)?,
                alerts: Vec::new(),
            })
        })?;
        let mut incidents = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let mut alerts = self.conn.prepare_cached(
            "SELECT status, delivery, sent_at FROM alerts WHERE incident_id = ?1 ORDER BY id",
        )?;
        for incident in &mut incidents {
            let rows = alerts.query_map([incident.id], |r| {
                Ok((
                    parse_column(r, 0, "alerts.status")?,
                    parse_column(r, 1, "alerts.delivery")?,
                    r.get(2)?,
                ))
            })?;
            incident.alerts = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        }
        Ok(incidents)
    }
}

fn insert_alert(
    tx: &rusqlite::Transaction<'_>,
    incident: super::IncidentId,
    alert: &NewAlert,
    now: &str,
) -> Result<super::AlertId> {
    tx.execute(
        "INSERT INTO alerts (incident_id, status, message, details, created_at, delivery)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            incident,
            alert.status.as_str(),
            alert.message,
            alert.details,
            now,
            alert.delivery.as_str()
        ],
    )?;
    Ok(super::AlertId(tx.last_insert_rowid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset_fixture() -> (Catalog, super::super::DatasetRow, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let row = catalog
            .ensure_dataset(&crate::catalog::tests::dataset())
            .unwrap();
        (catalog, row, dir)
    }

    fn alert(status: AlertStatus) -> NewAlert {
        NewAlert {
            status,
            message: format!("{status}"),
            details: "{}".to_string(),
            delivery: Delivery::Pending,
        }
    }

    #[test]
    fn one_open_incident_per_dataset_and_one_alert_of_each_kind() {
        let (mut catalog, row, _dir) = dataset_fixture();
        assert_eq!(catalog.open_incident(row.id).unwrap(), None);
        let (open, first) = catalog
            .begin_incident(row.id, AlertStatus::Overdue, (Some(600), Some(600)), |_| {
                alert(AlertStatus::Overdue)
            })
            .unwrap();
        assert_eq!(catalog.open_incident(row.id).unwrap(), Some(open.clone()));
        // A second open incident of the dataset is refused by the schema.
        assert!(
            catalog
                .begin_incident(row.id, AlertStatus::Stale, (None, None), |_| alert(
                    AlertStatus::Stale
                ))
                .is_err()
        );
        catalog.extend_incident(open.id, 1200).unwrap();
        assert_eq!(
            catalog.open_incident(row.id).unwrap().unwrap().last_overdue,
            Some(1200)
        );
        let pending = catalog.undelivered_alerts(row.id).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (pending[0].id, pending[0].status),
            (first, AlertStatus::Overdue)
        );
        catalog.alert_attempted(first, Err("503"), false).unwrap();
        assert_eq!(catalog.undelivered_alerts(row.id).unwrap()[0].attempts, 1);
        catalog.alert_attempted(first, Ok(()), false).unwrap();
        assert!(catalog.undelivered_alerts(row.id).unwrap().is_empty());

        let recovered = catalog
            .end_incident(open.id, &alert(AlertStatus::Recovered))
            .unwrap();
        assert_eq!(catalog.open_incident(row.id).unwrap(), None);
        assert!(
            catalog
                .end_incident(open.id, &alert(AlertStatus::Recovered))
                .is_err(),
            "a second recovery of one incident is refused"
        );
        catalog
            .alert_attempted(recovered, Err("timeout"), true)
            .unwrap();
        let incidents = catalog.recent_incidents(row.id, 10).unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(
            incidents[0]
                .alerts
                .iter()
                .map(|(s, d, _)| (*s, *d))
                .collect::<Vec<_>>(),
            [
                (AlertStatus::Overdue, Delivery::Sent),
                (AlertStatus::Recovered, Delivery::GaveUp)
            ]
        );
    }

    #[test]
    fn checks_are_counted_across_processes() {
        let (mut catalog, row, _dir) = dataset_fixture();
        assert_eq!(catalog.watch_check(row.id).unwrap(), None);
        catalog
            .record_watch_check(row.id, "2025-08-14T00:00:00.000Z", 2, Some(0))
            .unwrap();
        let second = catalog
            .record_watch_check(row.id, "2025-08-14T00:05:00.000Z", 0, Some(600))
            .unwrap();
        assert_eq!(second.checks, 2);
        assert_eq!(second.overdue, 0);
        assert_eq!(second.checked_at, "2025-08-14T00:05:00.000Z");
    }
}
