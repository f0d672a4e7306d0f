//! Tests of the catalog: opening, migrating, settings guards.

use super::*;
use crate::config::{Config, Overrides};

pub fn dataset() -> Dataset {
    let toml = r#"
[datasets.jp]
primary = "s3://b/misskey"
backup = ["s3://b-backup/misskey"]
complement = "s3://b/misskey_complement"
"#;
    Config::from_toml(Path::new("x.toml"), toml)
        .unwrap()
        .dataset("jp", &Overrides::default())
        .unwrap()
}

#[test]
fn migrating_twice_is_harmless_and_settings_are_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let ds = dataset();
    let row = Catalog::open(&path).unwrap().ensure_dataset(&ds).unwrap();
    assert_eq!(row.locations.len(), 3);
    let again = Catalog::open(&path).unwrap().ensure_dataset(&ds).unwrap();
    assert_eq!(row.id, again.id);
    assert_eq!(row.locations, again.locations);
    let mut wider = ds.clone();
    wider.spec =
        crate::slot::SlotSpec::new(30, "+09:00", crate::config::DEFAULT_KEY_TEMPLATE).unwrap();
    let err = Catalog::open(&path)
        .unwrap()
        .ensure_dataset(&wider)
        .unwrap_err();
    assert!(err.to_string().contains("10-minute"), "{err}");
}

#[test]
fn a_version_1_catalog_keeps_every_row_through_the_rebuild_of_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(1))
        .run(&mut conn)
        .unwrap();
    conn.execute_batch(
        "INSERT INTO datasets VALUES (1, 'jp', 10, '+09:00', 't', 'x');
         INSERT INTO locations VALUES (1, 1, 's3://b/p', 'primary', 0, 1);
         INSERT INTO objects (id, location_id, key, slot_start, size, lines, status, seen_at)
             VALUES (7, 1, 'k', 600, 200000, 500, 'ok', 'x');
         INSERT INTO slots VALUES (1, 600, 'l', '2025-08-01', 'ok', 'primary', 7, 'x', NULL);
         INSERT INTO slots VALUES (1, 1200, 'l', '2025-08-01', 'missing', NULL, NULL, 'x', 'r');
         INSERT INTO fill_attempts (dataset_id, slot_start, started_at, outcome, object_id)
             VALUES (1, 600, 'x', 'exists', 7);",
    )
    .unwrap();
    drop(conn);
    let catalog = Catalog::open(&path).unwrap();
    let c = catalog.connection();
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(
        count("SELECT COUNT(*) FROM objects WHERE id = 7 AND lines = 500"),
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM slots"), 2);
    assert_eq!(
        count("SELECT object_id FROM slots WHERE slot_start = 600"),
        7
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM fill_attempts WHERE object_id = 7"),
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
    assert_eq!(count("PRAGMA foreign_keys"), 1, "on again after migrating");
    // The new states are accepted; views are back.
    assert_eq!(count("SELECT slots FROM gaps WHERE first_slot = 1200"), 1);
    c.execute(
        "UPDATE slots SET state = 'empty' WHERE slot_start = 1200",
        [],
    )
    .unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM gaps"), 0);
    assert_eq!(count("SELECT SUM(empty) FROM coverage_by_day"), 1);
}

#[test]
fn newer_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(Catalog::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'future', '', '0')",
        [],
    )
    .unwrap();
    drop(conn);
    assert!(matches!(
        Catalog::open(&path),
        Err(CatalogError::NewerSchema { .. })
    ));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = Catalog::open(&junk).err().unwrap().to_string();
    assert!(err.contains("not a slotfill catalog"), "{err}");
    assert!(matches!(
        Catalog::open_read_only(&dir.path().join("none.db")),
        Err(CatalogError::Absent(_))
    ));
}
