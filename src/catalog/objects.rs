//! Objects and listings: what each listed day prefix held.

use super::{LocationId, ObjectId};
use std::collections::HashMap;

use rusqlite::params;

use super::{Catalog, Result};
use crate::state::State;
use crate::store::{LineCount, ListedObject};

/// What the catalog already knows about a listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownObject {
    pub id: ObjectId,
    pub size: i64,
    pub etag: Option<String>,
    pub lines: Option<i64>,
    pub utf8_valid: Option<bool>,
    pub unterminated: Option<bool>,
    pub complete: Option<bool>,
    pub note_count: Option<i64>,
    pub status: State,
}

/// One object as a listing (and possibly a download) saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRecord {
    pub key: String,
    pub slot_start: i64,
    pub size: i64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub lines: Option<i64>,
    pub utf8_valid: Option<bool>,
    pub unterminated: Option<bool>,
    pub complete: Option<bool>,
    pub note_count: Option<i64>,
    pub earliest: Option<String>,
    pub latest: Option<String>,
    pub status: Option<State>,
    /// True when the facts come from a download made now.
    pub counted: bool,
}

impl ObjectRecord {
    /// An object as a listing saw it: key, size, ETag and time, nothing read yet.
    pub fn listed(object: &ListedObject, slot_start: i64) -> Self {
        ObjectRecord {
            key: object.key.clone(),
            slot_start,
            size: object.size as i64,
            etag: object.etag.clone(),
            last_modified: object.last_modified.clone(),
            ..Default::default()
        }
    }

    /// An object slotfill has just written (a fill's complement object, a
    /// promoted copy): its lines are known from the writing, all valid UTF-8
    /// and terminated, so it needs no download.
    pub fn written(
        key: &str,
        slot_start: i64,
        size: u64,
        etag: Option<String>,
        lines: u64,
    ) -> Self {
        ObjectRecord {
            key: key.to_string(),
            slot_start,
            size: size as i64,
            etag,
            last_modified: Some(crate::clock::now_text()),
            lines: Some(lines as i64),
            utf8_valid: Some(true),
            unterminated: Some(false),
            counted: true,
            ..Default::default()
        }
    }

    /// The facts of a download that counted it now.
    pub fn with_count(self, count: &LineCount) -> Self {
        ObjectRecord {
            lines: Some(count.lines as i64),
            utf8_valid: Some(count.utf8_valid),
            unterminated: Some(count.unterminated),
            counted: true,
            ..self
        }
    }

    /// The facts the catalog already holds of the same object (same size and ETag).
    pub fn with_known(self, known: &KnownObject) -> Self {
        ObjectRecord {
            lines: known.lines,
            utf8_valid: known.utf8_valid,
            unterminated: known.unterminated,
            complete: known.complete,
            note_count: known.note_count,
            ..self
        }
    }

    pub fn with_status(self, status: State) -> Self {
        ObjectRecord {
            status: Some(status),
            ..self
        }
    }
}

/// The outcome of listing one day prefix of one location.
#[derive(Debug, Clone, Default)]
pub struct ListedDay {
    pub location_id: LocationId,
    pub day: String,
    pub prefix: String,
    pub pages: u32,
    pub listed_objects: usize,
    /// New, changed or re-judged objects to upsert.
    pub upserts: Vec<ObjectRecord>,
    /// Catalogued objects the listing no longer has.
    pub gone: Vec<ObjectId>,
}

fn prefix_upper_bound(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl Catalog {
    /// The live objects of a location under a key prefix.
    pub fn known_objects(
        &self,
        location_id: LocationId,
        prefix: &str,
    ) -> Result<HashMap<String, KnownObject>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, id, size, etag, lines, utf8_valid, unterminated, complete, note_count, status
             FROM objects
             WHERE location_id = ?1 AND key >= ?2 AND key < ?3 AND gone_at IS NULL",
        )?;
        let rows = stmt.query_map(
            params![location_id, prefix, prefix_upper_bound(prefix)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    KnownObject {
                        id: r.get(1)?,
                        size: r.get(2)?,
                        etag: r.get(3)?,
                        lines: r.get(4)?,
                        utf8_valid: r.get(5)?,
                        unterminated: r.get(6)?,
                        complete: r.get(7)?,
                        note_count: r.get(8)?,
                        status: super::parse_column(r, 9, "objects.status")?,
                    },
                ))
            },
        )?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(Into::into)
    }

    /// The live object at one key of a location, if the catalog has one.
    pub fn live_object(&self, location_id: LocationId, key: &str) -> Result<Option<KnownObject>> {
        Ok(self
            .known_objects(location_id, key)?
            .into_iter()
            .find_map(|(k, known)| (k == key).then_some(known)))
    }

    /// Records one object seen outside a listing (a storage event), in one transaction.
    pub fn record_object(&mut self, location_id: LocationId, object: &ObjectRecord) -> Result<()> {
        let now = crate::clock::now_text();
        let tx = self.conn.transaction()?;
        upsert_object(&tx, location_id, object, &now)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks an object gone (deleted from its location): it no longer counts.
    pub fn mark_gone(&mut self, object_id: ObjectId) -> Result<()> {
        self.conn.execute(
            "UPDATE objects SET gone_at = ?2 WHERE id = ?1 AND gone_at IS NULL",
            params![object_id, crate::clock::now_text()],
        )?;
        Ok(())
    }

    /// Records one listed day prefix in one transaction.
    pub fn record_listing(&mut self, day: &ListedDay) -> Result<()> {
        let now = crate::clock::now_text();
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "UPDATE objects SET seen_at = ?4
             WHERE location_id = ?1 AND key >= ?2 AND key < ?3 AND gone_at IS NULL",
        )?
        .execute(params![
            day.location_id,
            day.prefix,
            prefix_upper_bound(&day.prefix),
            now
        ])?;
        for o in &day.upserts {
            upsert_object(&tx, day.location_id, o, &now)?;
        }
        {
            let mut gone = tx.prepare_cached("UPDATE objects SET gone_at = ?2 WHERE id = ?1")?;
            for id in &day.gone {
                gone.execute(params![id, now])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO listings (location_id, day, prefix, listed_at, objects, pages) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (location_id, day) DO UPDATE SET prefix = excluded.prefix, listed_at = excluded.listed_at,
                 objects = excluded.objects, pages = excluded.pages",
        )?
        .execute(params![day.location_id, day.day, day.prefix, now, day.listed_objects as i64, day.pages])?;
        tx.commit()?;
        Ok(())
    }
}

/// Inserts or updates one object inside the caller's transaction.
pub(super) fn upsert_object(
    tx: &rusqlite::Transaction<'_>,
    location_id: LocationId,
    o: &ObjectRecord,
    now: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO objects (location_id, key, slot_start, size, etag, last_modified, lines, utf8_valid,
                              unterminated, complete, note_count, earliest, latest, status, counted_at, seen_at, gone_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, NULL)
         ON CONFLICT (location_id, key) DO UPDATE SET
             slot_start = excluded.slot_start, size = excluded.size, etag = excluded.etag,
             last_modified = excluded.last_modified, lines = excluded.lines, utf8_valid = excluded.utf8_valid,
             unterminated = excluded.unterminated, complete = excluded.complete,
             note_count = excluded.note_count,
             earliest = COALESCE(excluded.earliest, CASE WHEN excluded.counted_at IS NULL THEN objects.earliest END),
             latest = COALESCE(excluded.latest, CASE WHEN excluded.counted_at IS NULL THEN objects.latest END),
             status = excluded.status,
             counted_at = COALESCE(excluded.counted_at, objects.counted_at),
             seen_at = excluded.seen_at, gone_at = NULL",
    )?
    .execute(params![
        location_id,
        o.key,
        o.slot_start,
        o.size,
        o.etag,
        o.last_modified,
        o.lines,
        o.utf8_valid,
        o.unterminated,
        o.complete,
        o.note_count,
        o.earliest,
        o.latest,
        o.status.unwrap_or(State::Unreadable).as_str(),
        o.counted.then_some(now),
        now,
    ])?;
    Ok(())
}
