//! The SQLite catalog: every fact slotfill learns, kept between runs.
//!
//! # Schema
//! Created by the migrations in `migrations/` (embedded with refinery) and
//! documented for users in `docs/catalog.md`: datasets, locations, objects,
//! listings, slots, runs, fill_attempts, calibrations, leases, promotions, the
//! watch's watch_checks, incidents and alerts, and the `gaps` and
//! `coverage_by_day` views.
//!
//! # Locking and pragmas
//! WAL journal (readers never block the writer), `busy_timeout` of 10 s so two
//! processes queue instead of failing, foreign keys on. Each unit of work (one
//! listed day prefix, one day of derived slots, one fill attempt) is one
//! transaction, so a kill at any instant loses at most the unit in flight.
//!
//! # Compatibility
//! Opening for writing migrates an older catalog forward. A catalog that
//! holds migrations this binary does not know was written by a newer slotfill
//! and is refused. `open_read_only` never migrates and never writes.
//!
//! # Performance
//! Statements are `prepare_cached`; a day's listing is written in one
//! transaction with upserts, so a rescan costs a handful of statements per day.

mod activity;
mod calibrations;
mod detail;
mod fills;
mod lease;
mod objects;
mod promotions;
mod provenance;
mod query;
mod runs;
mod slots;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;

use crate::config::{Dataset, Role};

pub use activity::RunRecord;
pub use calibrations::{NewCalibration, ReferenceSlot};
pub use detail::AttemptRow;
pub use fills::{AttemptOutcome, CandidateQuery, FillCandidate, FinishedAttempt};
pub use lease::{Lease, LeaseError, this_host};
pub use objects::{KnownObject, ListedDay, ObjectRecord};
pub use promotions::{Promotion, PromotionCandidate, TargetObject};
pub use provenance::{AttemptProvenance, CalibrationRecord, LatestCalibration, ProvenanceSummary};
pub use query::QueryError;
pub use runs::{RunOutcome, RunSummary};
pub use slots::{DayStates, SlotRow};
pub use watch::{
    AlertStatus, Delivery, IncidentRecord, NewAlert, OpenIncident, PendingAlert, WatchCheck,
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error(
        "catalog {path} was written by a newer slotfill (it has schema version {found}; this binary knows up to {known}); upgrade slotfill"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no catalog at {0}; run `slotfill scan` first")]
    Absent(PathBuf),
    #[error(
        "dataset {name} was catalogued with {old}; it is now configured with {new}. Use another catalog or dataset name"
    )]
    SettingsChanged {
        name: String,
        old: String,
        new: String,
    },
    #[error("dataset {0} is not in the catalog yet; run `slotfill scan` first")]
    UnknownDataset(String),
    #[error("catalog: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Lease(#[from] LeaseError),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// An open catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// A dataset's catalog identity and its locations, primary first.
#[derive(Debug, Clone)]
pub struct DatasetRow {
    pub id: DatasetId,
    pub name: String,
    pub locations: Vec<LocationRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRow {
    pub id: LocationId,
    pub role: Role,
    pub position: i64,
    pub url: String,
}

impl Catalog {
    /// Opens (creating if needed) and migrates a catalog for writing.
    pub fn open(path: &Path) -> Result<Catalog> {
        let open_err = |message: String| CatalogError::Open {
            path: path.to_path_buf(),
            message,
        };
        if path.is_dir() {
            return Err(open_err("is a directory, not a catalog file".to_string()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // "File exists" or "Not a directory" from create_dir_all do not say which path is wrong.
            if let Some(file) = parent.ancestors().find(|a| a.is_file()) {
                return Err(open_err(format!("{} is not a directory", file.display())));
            }
            std::fs::create_dir_all(parent).map_err(|e| {
                open_err(format!(
                    "cannot create its directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_err(sqlite_message(&e)))?;
        configure(&conn).map_err(|e| open_err(sqlite_message(&e)))?;
        refuse_newer_schema(&conn, path)?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| open_err(format!("migration failed: {e}")))?;
        // After migrating: a migration that rebuilds a table (V2) must not cascade.
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(|e| open_err(sqlite_message(&e)))?;
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing catalog read-only: no migration, every write refused by SQLite.
    pub fn open_read_only(path: &Path) -> Result<Catalog> {
        if !path.exists() {
            return Err(CatalogError::Absent(path.to_path_buf()));
        }
        if path.is_dir() {
            return Err(CatalogError::Open {
                path: path.to_path_buf(),
                message: "is a directory, not a catalog file".to_string(),
            });
        }
        let open_err = |e: rusqlite::Error| CatalogError::Open {
            path: path.to_path_buf(),
            message: sqlite_message(&e),
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(open_err)?;
        refuse_newer_schema(&conn, path)?;
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for tests.
    #[cfg(test)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Registers a dataset and its current locations (or checks they match).
    pub fn ensure_dataset(&mut self, ds: &Dataset) -> Result<DatasetRow> {
        let now = crate::clock::now_text();
        // Immediate: a deferred transaction that reads and then writes fails at once with
        // "database is locked" when another process wrote in between (no busy wait).
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<(i64, u32, String, String)> = tx
            .query_row(
                "SELECT id, slot_minutes, utc_offset, key_template FROM datasets WHERE name = ?1",
                [&ds.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let id = match existing {
            Some((id, minutes, offset, template)) => {
                same_settings(ds, minutes, &offset, &template)?;
                id
            }
            None => {
                tx.execute(
                    "INSERT INTO datasets (name, slot_minutes, utc_offset, key_template, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![ds.name, ds.spec.minutes, offset_text(ds), ds.spec.template.as_str(), now],
                )?;
                tx.last_insert_rowid()
            }
        };
        tx.execute(
            "UPDATE locations SET active = 0 WHERE dataset_id = ?1",
            [id],
        )?;
        for (position, (role, url)) in ds.locations.iter().enumerate() {
            tx.execute(
                "INSERT INTO locations (dataset_id, url, role, position, active) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (dataset_id, url) DO UPDATE SET role = excluded.role, position = excluded.position, active = 1",
                params![id, url, role, position as i64],
            )?;
        }
        tx.commit()?;
        self.dataset_row(&ds.name)
    }

    /// The catalogued dataset, read-only, refused like [`Catalog::ensure_dataset`]
    /// refuses it when its slot settings (width, offset, key template, after any
    /// command-line override) differ from the catalogued ones.
    pub fn dataset_row_for(&self, ds: &Dataset) -> Result<DatasetRow> {
        let stored: Option<(u32, String, String)> = self
            .conn
            .query_row(
                "SELECT slot_minutes, utc_offset, key_template FROM datasets WHERE name = ?1",
                [&ds.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((minutes, offset, template)) = stored {
            same_settings(ds, minutes, &offset, &template)?;
        }
        self.dataset_row(&ds.name)
    }

    /// The catalogued dataset and its active locations.
    pub fn dataset_row(&self, name: &str) -> Result<DatasetRow> {
        let id: DatasetId = self
            .conn
            .query_row("SELECT id FROM datasets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| CatalogError::UnknownDataset(name.to_string()))?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, role, position, url FROM locations WHERE dataset_id = ?1 AND active = 1 ORDER BY position",
        )?;
        let locations = stmt
            .query_map([id], |r| {
                Ok(LocationRow {
                    id: r.get(0)?,
                    role: parse_column(r, 1, "locations.role")?,
                    position: r.get(2)?,
                    url: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(DatasetRow {
            id,
            name: name.to_string(),
            locations,
        })
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Foreign keys are turned on once the migrations have run (see `Catalog::open`).
    conn.pragma_update(None, "foreign_keys", false)?;
    Ok(())
}

fn refuse_newer_schema(conn: &Connection, path: &Path) -> Result<()> {
    let has_history: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'refinery_schema_history')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| CatalogError::Open {
            path: path.to_path_buf(),
            message: sqlite_message(&e),
        })?;
    if !has_history {
        return Ok(());
    }
    let found: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history",
        [],
        |r| r.get(0),
    )?;
    let known = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0);
    if found > known {
        return Err(CatalogError::NewerSchema {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    Ok(())
}

/// SQLite's messages for a file that is not a database are cryptic; say what it means.
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "is not a slotfill catalog (not an SQLite database, or corrupt)".to_string()
        }
        Some(rusqlite::ErrorCode::CannotOpen) => {
            "cannot be opened (check the path and permissions)".to_string()
        }
        Some(rusqlite::ErrorCode::ReadOnly) => "is read-only (check permissions)".to_string(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => "is corrupt".to_string(),
        _ => e.to_string(),
    }
}

fn offset_text(ds: &Dataset) -> String {
    ds.spec.offset.to_string()
}

fn describe_settings(minutes: u32, offset: &str, template: &str) -> String {
    format!("{minutes}-minute slots at {offset} keyed {template}")
}

/// Reads a text column into its type; a value this binary does not know is an
/// error naming the column, never a silent fallback.
pub(crate) fn parse_column<T: std::str::FromStr<Err = String>>(
    row: &rusqlite::Row<'_>,
    index: usize,
    column: &'static str,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse_text(index, column, &text)
}

/// [`parse_column`] for a column that may be NULL.
pub(crate) fn parse_optional_column<T: std::str::FromStr<Err = String>>(
    row: &rusqlite::Row<'_>,
    index: usize,
    column: &'static str,
) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(index)?;
    text.map(|text| parse_text(index, column, &text))
        .transpose()
}

fn parse_text<T: std::str::FromStr<Err = String>>(
    index: usize,
    column: &'static str,
    text: &str,
) -> rusqlite::Result<T> {
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("{column}: {e}").into(),
        )
    })
}

/// Refuses a dataset whose slot settings differ from the catalogued ones.
fn same_settings(ds: &Dataset, minutes: u32, offset: &str, template: &str) -> Result<()> {
    let stored = describe_settings(minutes, offset, template);
    let configured =
        describe_settings(ds.spec.minutes, &offset_text(ds), ds.spec.template.as_str());
    if stored != configured {
        return Err(CatalogError::SettingsChanged {
            name: ds.name.clone(),
            old: stored,
            new: configured,
        });
    }
    Ok(())
}

/// Row ids of the catalog's tables, typed so that one kind cannot be passed for
/// another; stored as the plain integers SQLite gives them.
macro_rules! row_id {
    ($($(#[$doc:meta])* $name:ident),*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.0))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                value.as_i64().map($name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

row_id!(
    /// `datasets.id`
    DatasetId,
    /// `locations.id`
    LocationId,
    /// `objects.id`
    ObjectId,
    /// `runs.id`
    RunId,
    /// `fill_attempts.id`
    AttemptId,
    /// `calibrations.id`
    CalibrationId,
    /// `incidents.id`
    IncidentId,
    /// `alerts.id`
    AlertId
);

/// The enums the catalog stores as text, written by their `as_str`.
macro_rules! stored_as_text {
    ($($t:ty),*) => {$(
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }
    )*};
}

stored_as_text!(crate::state::State, Role, AttemptOutcome, RunOutcome);

/// A catalog shared by async tasks. Every call runs on tokio's blocking pool,
/// inside the caller's tracing span, so SQLite never stalls the runtime.
#[derive(Clone)]
pub struct SharedCatalog {
    inner: Arc<Mutex<Catalog>>,
}

impl SharedCatalog {
    pub fn new(catalog: Catalog) -> Self {
        SharedCatalog {
            inner: Arc::new(Mutex::new(catalog)),
        }
    }

    pub async fn call<R, F>(&self, f: F) -> R
    where
        F: FnOnce(&mut Catalog) -> R + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut catalog = inner
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut catalog)
        })
        .await
        .expect("catalog task panicked")
    }
}

#[cfg(test)]
pub(crate) mod tests;
