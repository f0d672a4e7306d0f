//! Leases: at most one process fills a dataset at a time.
//!
//! A lease names its holder (host, pid) and expires unless renewed. A lease
//! whose holder was killed is taken over once it expires, or at once when the
//! holder ran on this host and its process is gone.

use super::DatasetId;
use chrono::Duration;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

use super::{Catalog, Result};

#[derive(Debug, Error)]
pub enum LeaseError {
    #[error(
        "dataset {dataset} is being filled by another slotfill (pid {pid} on {host}, lease until {expires_at}); wait for it or try again later"
    )]
    Held {
        dataset: String,
        pid: i64,
        host: String,
        expires_at: String,
    },
    #[error("lost the lease on dataset {0} to another process; stopping")]
    Lost(String),
}

#[derive(Debug, Clone)]
pub struct Lease {
    pub dataset_id: DatasetId,
    pub dataset: String,
    pub holder: String,
}

pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn process_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Catalog {
    pub fn acquire_lease(
        &mut self,
        dataset_id: DatasetId,
        dataset: &str,
        ttl: Duration,
    ) -> Result<Lease> {
        let host = this_host();
        let pid = i64::from(std::process::id());
        let holder = format!("{host}:{pid}:{}", rand::random::<u32>());
        let now = crate::clock::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(String, String, i64, String)> = tx
            .query_row(
                "SELECT holder, host, pid, expires_at FROM leases WHERE dataset_id = ?1",
                [dataset_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((_, held_host, held_pid, expires_at)) = current {
            let expired = expires_at < crate::clock::timestamp_text(now);
            let holder_dead = held_host == host && held_pid != pid && !process_alive(held_pid);
            if !expired && !holder_dead {
                return Err(LeaseError::Held {
                    dataset: dataset.to_string(),
                    pid: held_pid,
                    host: held_host,
                    expires_at,
                }
                .into());
            }
            tracing::warn!(dataset, held_pid, held_host, "taking over a stale lease");
        }
        tx.execute(
            "INSERT INTO leases (dataset_id, holder, host, pid, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (dataset_id) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid,
                 acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
            params![
                dataset_id,
                holder,
                host,
                pid,
                crate::clock::timestamp_text(now),
                crate::clock::timestamp_text(now + ttl)
            ],
        )?;
        tx.commit()?;
        Ok(Lease {
            dataset_id,
            dataset: dataset.to_string(),
            holder,
        })
    }

    /// Extends a lease; fails if another process took it over.
    pub fn renew_lease(&mut self, lease: &Lease, ttl: Duration) -> Result<()> {
        let until = crate::clock::timestamp_text(crate::clock::now() + ttl);
        let n = self.conn.execute(
            "UPDATE leases SET expires_at = ?3 WHERE dataset_id = ?1 AND holder = ?2",
            params![lease.dataset_id, lease.holder, until],
        )?;
        if n == 0 {
            return Err(LeaseError::Lost(lease.dataset.clone()).into());
        }
        Ok(())
    }

    pub fn release_lease(&mut self, lease: &Lease) -> Result<()> {
        self.conn.execute(
            "DELETE FROM leases WHERE dataset_id = ?1 AND holder = ?2",
            params![lease.dataset_id, lease.holder],
        )?;
        Ok(())
    }
}
