//! The fill lease: taken before planning, renewed by a heartbeat while slots are
//! filled, released at the end, so two processes never fill one dataset at once.

use std::time::Duration;

use crate::catalog::{DatasetRow, Lease, SharedCatalog};

use super::FillError;

const LEASE_TTL_SECS: i64 = 120;
const LEASE_RENEW: Duration = Duration::from_secs(30);

pub async fn acquire(db: &SharedCatalog, dataset: &DatasetRow) -> Result<Lease, FillError> {
    let (id, name) = (dataset.id, dataset.name.clone());
    Ok(db
        .call(move |c| c.acquire_lease(id, &name, chrono::Duration::seconds(LEASE_TTL_SECS)))
        .await?)
}

pub async fn release(db: &SharedCatalog, lease: Lease) {
    let _ = db.call(move |c| c.release_lease(&lease)).await;
}

/// Renews the lease now; the message if it was lost (another process took it
/// over) or cannot be confirmed.
pub async fn renew(db: &SharedCatalog, lease: &Lease) -> Result<(), String> {
    let lease = lease.clone();
    db.call(move |c| c.renew_lease(&lease, chrono::Duration::seconds(LEASE_TTL_SECS)))
        .await
        .map_err(|e| e.to_string())
}

/// Renews the lease until aborted; ends early with a message if it was lost.
pub fn spawn_heartbeat(db: SharedCatalog, lease: Lease) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            if let Err(e) = renew(&db, &lease).await {
                tracing::error!(error = %e, "lost the fill lease");
                return Some(e);
            }
        }
    })
}
