//! In-process tests of fill: a local-directory complement, a real SQLite
//! catalog and a scripted origin, so each attempt's path is driven exactly.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::*;
use crate::catalog::{Catalog, SharedCatalog};
use crate::config::{Config, Overrides};
use crate::source::Fetch;
use crate::store::LocalStore;

/// 2025-08-01T00:00:00+09:00.
const T0: i64 = 1_753_974_000;

/// What the scripted origin answers to each fetch, in order.
enum Reply {
    /// A complete fetch of notes at these offsets (ms) from the range start.
    Notes(Vec<i64>),
    /// Notes at these offsets, but the pages never reached the start.
    Incomplete(Vec<i64>),
    /// Another process takes the dataset's lease over (through the catalog
    /// file), then the fetch answers like `Notes`.
    LeaseTakenOver(std::path::PathBuf, Vec<i64>),
}

struct Scripted {
    replies: Mutex<VecDeque<Reply>>,
    fetches: Mutex<u32>,
}

impl Scripted {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Arc<Scripted> {
        Arc::new(Scripted {
            replies: Mutex::new(replies.into_iter().collect()),
            fetches: Mutex::new(0),
        })
    }

    fn fetches(&self) -> u32 {
        *self.fetches.lock().unwrap()
    }
}

fn note(ms: i64) -> Box<RawValue> {
    let created = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    RawValue::from_string(format!(
        r#"{{"id":"n{ms}","createdAt":"{created}","visibility":"public","text":"x"}}"#
    ))
    .unwrap()
}

#[async_trait]
impl NoteSource for Scripted {
    fn describe(&self) -> String {
        "scripted:test".to_string()
    }

    async fn fetch(
        &self,
        start_ms: i64,
        _end_ms: i64,
        sink: &mut crate::source::NoteSink,
    ) -> Result<Fetch, SourceError> {
        *self.fetches.lock().unwrap() += 1;
        let reply = self.replies.lock().unwrap().pop_front();
        let (offsets, complete) = match reply.expect("an unscripted fetch") {
            Reply::Notes(offsets) => (offsets, true),
            Reply::Incomplete(offsets) => (offsets, false),
            Reply::LeaseTakenOver(catalog, offsets) => {
                let other = rusqlite::Connection::open(catalog).unwrap();
                other
                    .execute("UPDATE leases SET holder = 'elsewhere:1:x'", [])
                    .unwrap();
                (offsets, true)
            }
        };
        for offset in offsets {
            sink.push(&note(start_ms + offset)).unwrap();
        }
        Ok(Fetch {
            complete,
            calls: 1,
            failure: (!complete).then_some(crate::source::Failure::PageBudget { pages: 1 }),
            ..Default::default()
        })
    }

    fn estimated_calls(&self, _notes: u64) -> u64 {
        1
    }

    fn provenance(&self) -> crate::source::Provenance {
        crate::source::Provenance {
            origin: "scripted".into(),
            mode: "test".into(),
            endpoint: "scripted:test".into(),
            engine: "scripted".into(),
            token: crate::source::TokenClass::Anonymous,
        }
    }

    async fn sample(
        &self,
        _window: Option<(i64, i64)>,
        _stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        Ok(Vec::new())
    }
}

struct Bed {
    dir: tempfile::TempDir,
    ds: Dataset,
    db: SharedCatalog,
    row: DatasetRow,
    complement: OpenLocation,
}

/// A dataset of three missing slots from `T0`, scanned, with an empty complement.
async fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display();
    let toml =
        format!("[datasets.jp]\nprimary = \"file://{root}/p\"\ncomplement = \"file://{root}/c\"\n");
    let ds = Config::from_toml(&dir.path().join("c.toml"), &toml)
        .unwrap()
        .dataset("jp", &Overrides::default())
        .unwrap();
    let mut catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
    let row = catalog.ensure_dataset(&ds).unwrap();
    catalog
        .derive_slots(&row, &ds.spec, (T0, T0 + 1200), i64::MAX)
        .unwrap();
    let location = row.locations[1].clone();
    let store = Arc::new(LocalStore::new(&location.url, &dir.path().join("c")));
    Bed {
        complement: OpenLocation {
            row: location,
            store,
        },
        db: SharedCatalog::new(catalog),
        dir,
        ds,
        row,
    }
}

impl Bed {
    /// One slot at a time, oldest first: the scripted replies go to the slots in order.
    fn options(&self) -> FillOptions {
        let mut options = FillOptions::new(Window {
            first: T0,
            last: T0 + 1200,
        });
        options.settings.concurrency = 1;
        options
    }

    async fn fill(&self, source: Arc<Scripted>, options: &FillOptions) -> FillReport {
        fill(
            &self.db,
            &self.ds,
            &self.row,
            std::slice::from_ref(&self.complement),
            source,
            None,
            options,
        )
        .await
        .unwrap()
    }

    fn object(&self, slot: i64) -> Option<Vec<u8>> {
        std::fs::read(self.path(slot)).ok()
    }

    fn path(&self, slot: i64) -> std::path::PathBuf {
        self.dir.path().join("c").join(self.ds.spec.key(slot))
    }

    async fn sql(&self, sql: &'static str) -> i64 {
        self.db
            .call(move |c| c.connection().query_row(sql, [], |r| r.get(0)))
            .await
            .unwrap()
    }

    async fn state(&self, slot: i64) -> String {
        self.db
            .call(move |c| {
                c.connection().query_row(
                    "SELECT state FROM slots WHERE slot_start = ?1",
                    [slot],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap()
    }
}

fn write(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

#[tokio::test]
async fn a_fill_whose_lease_is_taken_over_fetches_no_further_slot() {
    let b = bed().await;
    let catalog = b.dir.path().join("c.db");
    let source = Scripted::new([
        Reply::LeaseTakenOver(catalog, vec![1]),
        Reply::Notes(vec![2]),
        Reply::Notes(vec![3]),
    ]);
    let report = b.fill(source.clone(), &b.options()).await;
    // The slot in flight when the lease went is finished and recorded; no other is fetched.
    assert_eq!(source.fetches(), 1);
    assert_eq!(report.filled, 1);
    assert!(b.object(T0).is_some() && b.object(T0 + 600).is_none());
    let stopped = report.stopped.expect("the run stopped");
    assert!(stopped.contains("lease"), "{stopped}");
    // The new holder's lease is left in place.
    assert_eq!(
        b.sql("SELECT COUNT(*) FROM leases WHERE holder = 'elsewhere:1:x'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_partial_fetch_writes_nothing_and_the_slot_stays_a_gap() {
    let b = bed().await;
    let source = Scripted::new([
        Reply::Incomplete(vec![5_000, 9_000]),
        Reply::Notes(vec![1]),
        Reply::Notes(vec![2]),
    ]);
    let report = b.fill(source.clone(), &b.options()).await;
    assert_eq!((report.partial, report.filled), (1, 2));
    assert!(
        b.object(T0).is_none(),
        "nothing written for the partial slot"
    );
    assert_eq!(b.state(T0).await, "missing");
    assert_eq!(
        b.sql("SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'partial' AND error_code = 'page_budget'")
            .await,
        1
    );
    assert_eq!(b.state(T0 + 600).await, "ok");
}

#[tokio::test]
async fn a_complete_fetch_without_notes_is_recorded_empty_in_the_bucket_and_the_catalog() {
    let b = bed().await;
    let source = Scripted::new([
        Reply::Notes(vec![]),
        Reply::Notes(vec![1]),
        Reply::Notes(vec![2]),
    ]);
    let report = b.fill(source, &b.options()).await;
    assert_eq!(report.empty, 1);
    assert_eq!(report.empty_slots, vec![T0]);
    assert_eq!(b.object(T0).unwrap(), b"");
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{}.meta.json", b.path(T0).display())).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["note-count"], "0");
    assert_eq!(sidecar["complete"], "true");
    assert_eq!(b.state(T0).await, "empty");
    // Not due for a re-check: a second fill leaves it alone (no fetch scripted).
    let again = b.fill(Scripted::new([]), &b.options()).await;
    assert!(again.candidates.is_empty());
}

#[tokio::test]
async fn an_existing_object_is_kept_unless_overwrite() {
    let b = bed().await;
    write(&b.path(T0), b"{\"by\":\"hand\"}\n");
    let source = Scripted::new([
        Reply::Notes(vec![1]),
        Reply::Notes(vec![1]),
        Reply::Notes(vec![1]),
    ]);
    let report = b.fill(source, &b.options()).await;
    assert_eq!((report.exists, report.filled), (1, 2));
    assert_eq!(b.object(T0).unwrap(), b"{\"by\":\"hand\"}\n");

    let mut overwrite = b.options();
    overwrite.settings.overwrite = true;
    overwrite.window.last = T0;
    let report = b
        .fill(Scripted::new([Reply::Notes(vec![7, 8])]), &overwrite)
        .await;
    assert_eq!(report.filled, 1);
    assert_eq!(
        String::from_utf8(b.object(T0).unwrap())
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert_eq!(b.state(T0).await, "ok");
}

#[tokio::test]
async fn an_attempt_a_killed_process_left_is_settled_from_its_object_without_fetching() {
    let b = bed().await;
    // A process started the attempt, wrote the object and died before recording it.
    let id = b.row.id;
    b.db.call(move |c| c.start_attempt(id, T0, None))
        .await
        .unwrap();
    write_complement_object(&b, T0, 2);
    let source = Scripted::new([Reply::Notes(vec![1]), Reply::Notes(vec![1])]);
    let report = b.fill(source.clone(), &b.options()).await;
    assert_eq!(report.exists, 1);
    assert_eq!(
        source.fetches(),
        2,
        "the interrupted slot is not fetched again"
    );
    assert_eq!(b.state(T0).await, "ok");
    assert_eq!(
        b.sql("SELECT COUNT(*) FROM fill_attempts WHERE finished_at IS NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn a_lease_held_by_another_process_stops_the_fill_before_any_fetch() {
    let b = bed().await;
    b.db.call(|c| {
        c.connection().execute(
            "INSERT INTO leases VALUES (1, 'elsewhere:1:x', 'elsewhere', 1, 'x', '9999-01-01T00:00:00.000Z')",
            [],
        )
    })
    .await
    .unwrap();
    let source = Scripted::new([]);
    let err = fill(
        &b.db,
        &b.ds,
        &b.row,
        std::slice::from_ref(&b.complement),
        source.clone(),
        None,
        &b.options(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("being filled by another slotfill"),
        "{err}"
    );
    assert_eq!(source.fetches(), 0);
    assert_eq!(b.sql("SELECT COUNT(*) FROM fill_attempts").await, 0);
}

/// Writes a complete complement object of `notes` lines with fill's metadata.
fn write_complement_object(b: &Bed, slot: i64, notes: usize) {
    let body: String = (0..notes)
        .map(|i| format!("{}\n", note(slot * 1000 + i as i64).get()))
        .collect();
    write(&b.path(slot), body.as_bytes());
    let meta = crate::location::ComplementMeta {
        complete: Some(true),
        note_count: Some(notes as i64),
        earliest: None,
        latest: None,
        promoted: false,
    }
    .to_metadata(slot, b.ds.spec.local_iso(slot), "scripted:test".into());
    let map: std::collections::HashMap<_, _> = meta.into_iter().collect();
    std::fs::write(
        format!("{}.meta.json", b.path(slot).display()),
        serde_json::to_vec(&map).unwrap(),
    )
    .unwrap();
}
