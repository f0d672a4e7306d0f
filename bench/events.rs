//! `bench/run.sh --profile events`: a storm of S3 event records at `slotfill
//! serve` (issue 21).
//!
//! A week of 10-minute slots over three locations (primary, backup,
//! complement) is scanned into serve's catalog; then objects are created,
//! overwritten and deleted at random while each change's record is posted by
//! `senders` concurrent senders (one record a request, as S3 sends them),
//! with duplicates and, at the end, stale records replayed out of order. The
//! catalog must then equal what a fresh scan of the buckets records. The same
//! storm is sent again while the store fails for a while (503 SlowDown on
//! every request serve makes to it): serve answers 503, the senders retry,
//! and nothing is lost.
//!
//! The last line printed is one JSON object: `events`, `applied`, `errors`,
//! `p50_ms`, `p99_ms`, `catalog_equals_scan` (the contract of issue 21), and
//! the same under `store_down`.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::s3::{self, FaultRule, S3Fault, S3Op, S3Server};
use super::serve_proc::{ServeProc, http, s3_event, windowed, work_dir};

pub struct EventsOptions {
    pub slotfill: PathBuf,
    pub events: usize,
    pub senders: usize,
}

const SLOT: i64 = 600;
/// 2025-08-01T00:00:00+09:00; the storm's week starts here.
const FIRST: i64 = 1_753_974_000;
const DAYS: i64 = 7;
const NOW: &str = "2025-08-20T12:00:00+09:00";

pub fn run(opts: &EventsOptions) -> Value {
    let calm = storm(opts, 1, false);
    let down = storm(opts, 2, true);
    let mut out = calm;
    out["store_down"] = down;
    out
}

/// One storm on fresh buckets and a fresh catalog; with `failing`, the store
/// answers 503 to serve for a while.
fn storm(opts: &EventsOptions, seed: u64, failing: bool) -> Value {
    let server = S3Server::shared();
    let buckets = [
        server.new_bucket("storm-primary"),
        server.new_bucket("storm-backup"),
        server.new_bucket("storm-complement"),
    ];
    let (dir, config) = work_dir("slotfill-events-");
    std::fs::write(&config, events_config(&buckets, "slotfill.db")).expect("config");
    let mut rng = StdRng::seed_from_u64(seed);
    // A starting state, scanned into the catalog serve starts with.
    let mut live: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); 3];
    for (b, bucket) in buckets.iter().enumerate() {
        for slot in slots() {
            if rng.random::<f64>() < [0.8, 0.5, 0.2][b] {
                server.put(bucket, &key(slot), &body(&mut rng));
                live[b].insert(slot);
            }
        }
    }
    scan(&opts.slotfill, &config);
    let log = dir.path().join("serve.log");
    let env = vec![("SLOTFILL_NOW".to_string(), NOW.to_string())];
    let mut serve = ServeProc::start(&opts.slotfill, &config, &env, &log);
    if failing {
        for bucket in &buckets {
            let rule = FaultRule {
                op: S3Op::Any,
                fault: S3Fault::SlowDown503,
                times: 400,
                skip: 200,
            };
            server.inject(bucket, rule);
        }
    }
    let queue = Arc::new(Queue::default());
    let started = Instant::now();
    let tally = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..opts.senders)
            .map(|_| {
                let (queue, addr) = (queue.clone(), serve.addr.clone());
                scope.spawn(move || send_all(&queue, &addr))
            })
            .collect();
        mutate(opts.events, &mut rng, &buckets, &mut live, &queue);
        queue.close();
        let mut tally = Tally::default();
        for sender in senders {
            tally.add(sender.join().expect("a sender"));
        }
        tally
    });
    let seconds = started.elapsed().as_secs_f64();
    for bucket in &buckets {
        server.clear_faults(bucket);
    }
    serve.terminate();
    let scanned = dir.path().join("scan.toml");
    std::fs::write(&scanned, events_config(&buckets, "scan.db")).expect("config");
    scan(&opts.slotfill, &scanned);
    let (equal, differences) =
        compare(&dir.path().join("slotfill.db"), &dir.path().join("scan.db"));
    for d in differences.iter().take(10) {
        eprintln!("events: catalog differs from a fresh scan: {d}");
    }
    if std::env::var_os("SLOTFILL_BENCH_KEEP").is_some() {
        eprintln!("events: kept {}", dir.keep().display());
    }
    let mut latencies = tally.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).map(|v| (v * 10.0).round() / 10.0)
    };
    eprintln!(
        "events{}: {} records in {seconds:.1} s, {} answered 503, {} retried",
        if failing { " (store down)" } else { "" },
        tally.records,
        tally.unavailable,
        tally.retries
    );
    json!({
        "events": tally.records,
        "applied": tally.applied,
        "ignored": tally.ignored,
        "unchanged": tally.unchanged,
        "errors": tally.errors,
        "answered_5xx": tally.unavailable + tally.other_5xx,
        "answered_503": tally.unavailable,
        "retries": tally.retries,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "records_per_second": (tally.records as f64 / seconds).round(),
        "senders": opts.senders,
        "catalog_equals_scan": equal,
        "differences": differences.len(),
    })
}

fn events_config(buckets: &[String; 3], catalog: &str) -> String {
    let server = S3Server::shared();
    format!(
        "catalog = \"{catalog}\"\n[s3]\nendpoint_url = \"{}\"\nregion = \"{}\"\nforce_path_style = true\n\
         [datasets.jp]\nslot_minutes = 10\nutc_offset = \"+09:00\"\n\
         key_template = \"%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl\"\n\
         primary = \"s3://{}/misskey\"\nbackup = [\"s3://{}/misskey\"]\ncomplement = \"s3://{}/misskey_complement\"\n\
         [datasets.jp.rules]\nmin_bytes = 200\nmin_lines = 3\nmax_lines = 40\n",
        server.endpoint(),
        s3::REGION,
        buckets[0],
        buckets[1],
        buckets[2]
    )
}

fn slots() -> impl Iterator<Item = i64> {
    (0..DAYS * 144).map(|i| FIRST + i * SLOT)
}

fn location_prefix(b: usize) -> &'static str {
    if b == 2 {
        "misskey_complement"
    } else {
        "misskey"
    }
}

fn key(slot: i64) -> String {
    let t = chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
        .expect("time")
        .naive_utc();
    format!("misskey/{}", t.format("%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl"))
}

fn full_key(b: usize, slot: i64) -> String {
    key(slot).replacen("misskey", location_prefix(b), 1)
}

/// A valid object most of the time, else too small or with too few lines.
fn body(rng: &mut StdRng) -> Vec<u8> {
    let lines = match rng.random_range(0..10) {
        0 => 1,
        1 => 2,
        _ => rng.random_range(5..30),
    };
    let width = rng.random_range(40..120);
    let mut out = Vec::new();
    for i in 0..lines {
        out.extend_from_slice(
            format!("{{\"id\":\"n{i:06}\",\"t\":\"{}\"}}\n", "x".repeat(width)).as_bytes(),
        );
    }
    out
}

fn scan(slotfill: &Path, config: &Path) {
    let last = FIRST + (DAYS * 144 - 1) * SLOT;
    let out = windowed(slotfill, config, "scan", "jp", (FIRST, last), NOW);
    assert!(
        out.status.success(),
        "scan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Records waiting to be posted; closed once the last one is queued.
#[derive(Default)]
struct Queue {
    records: Mutex<(VecDeque<String>, bool)>,
    ready: std::sync::Condvar,
}

impl Queue {
    fn push(&self, record: String) {
        self.records.lock().unwrap().0.push_back(record);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.records.lock().unwrap().1 = true;
        self.ready.notify_all();
    }

    fn pop(&self) -> Option<String> {
        let mut guard = self.records.lock().unwrap();
        loop {
            if let Some(record) = guard.0.pop_front() {
                return Some(record);
            }
            if guard.1 {
                return None;
            }
            guard = self.ready.wait(guard).unwrap();
        }
    }
}

/// Changes the buckets at random and queues each change's record (some
/// twice), then replays a share of the old records in random order.
fn mutate(
    total: usize,
    rng: &mut StdRng,
    buckets: &[String; 3],
    live: &mut [BTreeSet<i64>],
    queue: &Queue,
) {
    let server = S3Server::shared();
    let all: Vec<i64> = slots().collect();
    let mut sent: Vec<String> = Vec::new();
    let replays = total / 4;
    while sent.len() < total - replays {
        let b = rng.random_range(0..3);
        let slot = all[rng.random_range(0..all.len())];
        let key = full_key(b, slot);
        let record = if live[b].contains(&slot) && rng.random::<f64>() < 0.4 {
            server.delete(&buckets[b], &key);
            live[b].remove(&slot);
            s3_event(&buckets[b], &key, None)
        } else {
            let bytes = body(rng);
            server.put(&buckets[b], &key, &bytes);
            live[b].insert(slot);
            let etag = server.etag(&buckets[b], &key).unwrap_or_default();
            s3_event(&buckets[b], &key, Some((&etag, bytes.len() as u64)))
        }
        .to_string();
        queue.push(record.clone());
        sent.push(record.clone());
        if rng.random::<f64>() < 0.12 && sent.len() < total - replays {
            queue.push(record.clone());
            sent.push(record);
        }
    }
    let mut old: Vec<String> = sent.choose_multiple(rng, replays).cloned().collect();
    old.shuffle(rng);
    for record in old {
        queue.push(record);
    }
}

#[derive(Default)]
struct Tally {
    records: u64,
    applied: u64,
    ignored: u64,
    unchanged: u64,
    errors: u64,
    unavailable: u64,
    other_5xx: u64,
    retries: u64,
    latencies_ms: Vec<f64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.records += other.records;
        self.applied += other.applied;
        self.ignored += other.ignored;
        self.unchanged += other.unchanged;
        self.errors += other.errors;
        self.unavailable += other.unavailable;
        self.other_5xx += other.other_5xx;
        self.retries += other.retries;
        self.latencies_ms.extend(other.latencies_ms);
    }
}

/// Posts records until the queue is closed and empty; a 503 or a failed
/// exchange is retried (as S3, SNS and MinIO retry), anything else is final.
fn send_all(queue: &Queue, addr: &str) -> Tally {
    let mut tally = Tally::default();
    while let Some(record) = queue.pop() {
        tally.records += 1;
        let mut wait = Duration::from_millis(20);
        let give_up = Instant::now() + Duration::from_secs(300);
        loop {
            let started = Instant::now();
            let answer = http(addr, "POST", "/api/events/s3", record.as_bytes());
            tally
                .latencies_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
            match answer {
                Ok((200, body)) => {
                    let counts: Value = serde_json::from_str(&body).unwrap_or_default();
                    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
                    tally.applied += n("applied");
                    tally.ignored += n("ignored");
                    tally.unchanged += n("unchanged");
                    break;
                }
                Ok((503, _)) | Err(_) if Instant::now() < give_up => {
                    if matches!(answer, Ok((503, _))) {
                        tally.unavailable += 1;
                    }
                    tally.retries += 1;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Ok((status, body)) => {
                    if status >= 500 {
                        tally.other_5xx += 1;
                    }
                    eprintln!("events: a record was refused: {status} {body}");
                    tally.errors += 1;
                    break;
                }
                Err(e) => {
                    eprintln!("events: a record was never answered: {e}");
                    tally.errors += 1;
                    break;
                }
            }
        }
    }
    tally
}

/// Slots (state, the deciding object's location and key) and live objects
/// (location, key, ETag, size) of two catalogs; the differences.
fn compare(served: &Path, scanned: &Path) -> (bool, Vec<String>) {
    let read = |path: &Path| -> (BTreeSet<String>, BTreeSet<String>) {
        let c = rusqlite::Connection::open(path).expect("catalog");
        let rows = |sql: &str| -> BTreeSet<String> {
            let mut stmt = c.prepare(sql).expect(sql);
            stmt.query_map([], |r| {
                let n = r.as_ref().column_count();
                Ok((0..n)
                    .map(|i| match r.get_ref(i).expect("column") {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" | "))
            })
            .expect(sql)
            .map(Result::unwrap)
            .collect()
        };
        (
            rows(
                "SELECT s.slot_start, s.state, COALESCE(s.ok_role, ''), COALESCE(l.url, ''), COALESCE(o.key, '')
                 FROM slots s LEFT JOIN objects o ON o.id = s.object_id LEFT JOIN locations l ON l.id = o.location_id",
            ),
            rows(
                "SELECT l.url, o.key, o.etag, o.size FROM objects o JOIN locations l ON l.id = o.location_id
                 WHERE o.gone_at IS NULL",
            ),
        )
    };
    let (a, b) = (read(served), read(scanned));
    let mut differences = Vec::new();
    for (what, x, y) in [("slot", &a.0, &b.0), ("object", &a.1, &b.1)] {
        differences.extend(
            x.difference(y)
                .map(|r| format!("{what} only after the events: {r}")),
        );
        differences.extend(
            y.difference(x)
                .map(|r| format!("{what} only in the scan: {r}")),
        );
    }
    (differences.is_empty(), differences)
}
