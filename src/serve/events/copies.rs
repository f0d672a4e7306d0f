//! Copies first in line: a listing records a later location's copy of a slot
//! `unchecked` (listed, not read) while an earlier location holds a valid
//! object. When that earlier object is deleted or turns invalid, the next
//! scan counts the copy; a storage event does it at once, so the catalog
//! after the event is what a scan would record.

use super::super::error::ServeError;
use super::super::locks::KeyLocks;
use super::super::state::DatasetHandle;
use super::object::{derive_after, known, look};

/// Counts, in location order, the slot's uncounted copies that stand before
/// the object deciding it (all of them while it is a gap), until none does.
/// A copy whose own record is being applied meanwhile is left to that record
/// (which counts it).
pub async fn count_first_in_line(
    locks: &KeyLocks,
    handle: &DatasetHandle,
    slot: i64,
) -> Result<(), ServeError> {
    let dataset = handle.session.row.id;
    let mut left = Vec::new();
    loop {
        let copies = handle
            .session
            .db
            .call(move |c| c.uncounted_copies(dataset, slot))
            .await?;
        let Some((location, key)) = copies.into_iter().find(|c| !left.contains(c)) else {
            return Ok(());
        };
        let target = handle.session.targets.iter().find(|t| t.row.id == location);
        let (Some(target), Some(guard)) = (target, locks.try_lock(location, &key)) else {
            left.push((location, key));
            continue;
        };
        let known = known(handle, location, &key).await?;
        match look(handle, target, &key, slot, known).await? {
            Some(change) => derive_after(handle, location, slot, change).await?,
            None => left.push((location, key)),
        }
        drop(guard);
    }
}
