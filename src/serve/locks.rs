//! One lock per object (location and key): records of one object are applied
//! one at a time, so of two deliveries racing, the one that read the bucket
//! last also writes last. Locks exist only while someone holds or waits for
//! them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::catalog::LocationId;

type Lock = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug, Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<(LocationId, String), Lock>>,
}

/// A held lock; released (and forgotten when nobody else wants it) on drop.
pub struct KeyGuard<'a> {
    owner: &'a KeyLocks,
    id: (LocationId, String),
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    fn lock_of(&self, id: &(LocationId, String)) -> Lock {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(id.clone()).or_default().clone()
    }

    /// Waits for the object's lock.
    pub async fn lock(&self, location: LocationId, key: &str) -> KeyGuard<'_> {
        let id = (location, key.to_string());
        let guard = self.lock_of(&id).lock_owned().await;
        KeyGuard {
            owner: self,
            id,
            guard: Some(guard),
        }
    }

    /// The object's lock if nobody holds it now.
    pub fn try_lock(&self, location: LocationId, key: &str) -> Option<KeyGuard<'_>> {
        let id = (location, key.to_string());
        let guard = self.lock_of(&id).try_lock_owned().ok();
        let held = KeyGuard {
            owner: self,
            id,
            guard,
        };
        held.guard.is_some().then_some(held)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().unwrap().len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map's own reference left: nobody holds or waits for it.
        if locks
            .get(&self.id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_object_and_nothing_kept_after() {
        let locks = KeyLocks::default();
        let first = locks.lock(LocationId(1), "a").await;
        assert!(locks.try_lock(LocationId(1), "a").is_none());
        let other = locks.try_lock(LocationId(2), "a").expect("another object");
        drop(other);
        drop(first);
        assert!(locks.try_lock(LocationId(1), "a").is_some());
        assert_eq!(locks.len(), 0);
    }
}
