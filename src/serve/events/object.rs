//! One object as a record finds it: what the catalog knows of it, what the
//! store holds now (as a change to record), and the slot derived again.

use crate::catalog::{KnownObject, LocationId};
use crate::location::OpenLocation;
use crate::store::ListedObject;

use super::super::error::ServeError;
use super::super::state::DatasetHandle;

/// The catalog's live object at `key`, if any.
pub async fn known(
    handle: &DatasetHandle,
    location: LocationId,
    key: &str,
) -> Result<Option<KnownObject>, ServeError> {
    let lookup = key.to_string();
    Ok(handle
        .session
        .db
        .call(move |c| c.live_object(location, &lookup))
        .await?)
}

/// What the store holds at `key` now, as a change to the catalog: gone, a
/// new record, or nothing to change.
pub async fn look(
    handle: &DatasetHandle,
    target: &OpenLocation,
    key: &str,
    slot: i64,
    known: Option<KnownObject>,
) -> Result<Option<Change>, ServeError> {
    let Some(head) = target.store.head(key).await? else {
        return Ok(known.map(|k| Change::Gone(k.id)));
    };
    let object = ListedObject {
        key: key.to_string(),
        size: head.size,
        etag: head.etag,
        last_modified: head.last_modified,
    };
    let examined = crate::scan::examine(target, &handle.ds, object, slot, known.as_ref()).await?;
    Ok(examined.map(|(record, _bytes)| Change::Record(Box::new(record))))
}

pub enum Change {
    Record(Box<crate::catalog::ObjectRecord>),
    Gone(crate::catalog::ObjectId),
}

/// Records the change and derives the slot's state again.
pub async fn derive_after(
    handle: &DatasetHandle,
    location_id: LocationId,
    slot: i64,
    change: Change,
) -> Result<(), ServeError> {
    let (row, spec) = (handle.session.row.clone(), handle.ds.spec.clone());
    let last_settled = handle.ds.last_settled_slot(crate::clock::now());
    handle
        .session
        .db
        .call(move |c| {
            match change {
                Change::Record(record) => c.record_object(location_id, &record)?,
                Change::Gone(id) => c.mark_gone(id)?,
            }
            c.derive_slots(&row, &spec, (slot, slot), last_settled)
        })
        .await?;
    Ok(())
}
