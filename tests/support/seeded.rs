//! A seeded origin and its dataset, shared by the crash, fault, promote and
//! Mastodon tests: an emulator (Misskey or Mastodon) holding deterministic
//! notes, primary and complement places read directly (bucket or directory),
//! the slotfill processes started against them, and the consistency and
//! end-state checks every scenario ends with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::origin::{Emulator, OriginKind};
use super::s3::S3Server;
use super::*;

/// A small deterministic generator (splitmix64), so kill schedules replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A location read and written directly by the tests, never through slotfill.
#[derive(Clone, Debug)]
pub enum Place {
    Dir(PathBuf),
    Bucket { bucket: String, prefix: String },
}

impl Place {
    pub fn dir(root: &Path, name: &str) -> Place {
        Place::Dir(root.join(name))
    }

    pub fn bucket(name: &str, prefix: &str) -> Place {
        Place::Bucket {
            bucket: S3Server::shared().new_bucket(name),
            prefix: prefix.to_string(),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Place::Dir(dir) => format!("file://{}", dir.display()),
            Place::Bucket { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Place::Bucket { .. })
    }

    pub fn bucket_name(&self) -> &str {
        match self {
            Place::Bucket { bucket, .. } => bucket,
            Place::Dir(_) => panic!("not a bucket"),
        }
    }

    pub fn put(&self, key: &str, body: &[u8]) {
        match self {
            Place::Dir(dir) => {
                let path = dir.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, body).unwrap();
            }
            Place::Bucket { bucket, prefix } => {
                S3Server::shared().put(bucket, &format!("{prefix}/{key}"), body)
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Place::Dir(dir) => std::fs::read(dir.join(key)).ok(),
            Place::Bucket { bucket, prefix } => {
                S3Server::shared().get(bucket, &format!("{prefix}/{key}"))
            }
        }
    }

    /// The user metadata slotfill wrote with the object.
    pub fn metadata(&self, key: &str) -> Option<HashMap<String, String>> {
        match self {
            Place::Dir(dir) => {
                let sidecar = std::fs::read(dir.join(format!("{key}.meta.json"))).ok()?;
                Some(serde_json::from_slice(&sidecar).expect("sidecar is JSON"))
            }
            Place::Bucket { bucket, prefix } => {
                S3Server::shared().head_metadata(bucket, &format!("{prefix}/{key}"))
            }
        }
    }

    /// Every object's key relative to the location (sidecars and staging files excluded).
    pub fn keys(&self) -> BTreeSet<String> {
        match self {
            Place::Dir(dir) => {
                let mut out = BTreeSet::new();
                walk(dir, dir, &mut out);
                out.retain(|k| !k.ends_with(".meta.json") && !k.contains(".slotfill-tmp-"));
                out
            }
            Place::Bucket { bucket, prefix } => S3Server::shared()
                .list_keys(bucket, &format!("{prefix}/"))
                .into_iter()
                .map(|k| k[prefix.len() + 1..].to_string())
                .collect(),
        }
    }

    /// Every object's bytes, by key.
    pub fn contents(&self) -> BTreeMap<String, Vec<u8>> {
        self.keys()
            .into_iter()
            .map(|k| {
                let body = self.get(&k).expect("listed object readable");
                (k, body)
            })
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let key = path.strip_prefix(root).unwrap().to_str().unwrap();
            out.insert(key.to_string());
        }
    }
}

/// A window of slots: some in the primary, the rest missing, each missing
/// slot with a seeded number of notes at the emulated origin (some with none).
/// The origin is Misskey or Mastodon ([`Origin::of`]): the guarantees tested
/// over it are the same.
pub struct Origin {
    pub emulator: Emulator,
    pub first: i64,
    pub last: i64,
    /// Slots whose object the primary holds.
    pub present: BTreeSet<i64>,
    /// Missing slots and the notes the origin holds for each (0: an empty slot).
    pub missing: BTreeMap<i64, usize>,
    expected: std::sync::Mutex<HashMap<i64, Vec<Value>>>,
    /// Complement objects already found complete and exact.
    checked: std::sync::Mutex<BTreeSet<String>>,
}

impl Origin {
    /// `slots` slots from 2025-07-31T20:00 JST; every tenth is in the primary,
    /// every fiftieth (from the 25th) is empty at the origin, the others hold
    /// `notes` raw notes (before the search filter) with notes on both edges.
    pub fn new(seed: u64, slots: usize, notes: (u64, u64)) -> Origin {
        Origin::of(OriginKind::Misskey, seed, slots, notes)
    }

    /// The same window at an origin of `kind`.
    pub fn of(kind: OriginKind, seed: u64, slots: usize, notes: (u64, u64)) -> Origin {
        let emulator = Emulator::start(kind);
        let first = AUG1_JST - 24 * SLOT;
        let last = first + (slots as i64 - 1) * SLOT;
        let mut rng = Rng::new(seed);
        let (mut present, mut missing) = (BTreeSet::new(), BTreeMap::new());
        for i in 0..slots {
            let slot = first + i as i64 * SLOT;
            let (start_ms, end_ms) = (slot * 1000, (slot + SLOT) * 1000);
            if i % 10 == 0 {
                present.insert(slot);
                emulator.add_mixed(start_ms, end_ms, 20, seed ^ i as u64, false);
                continue;
            }
            if i % 50 == 25 {
                missing.insert(slot, 0);
                continue;
            }
            let n = rng.range(notes.0, notes.1) as usize;
            emulator.add_mixed(start_ms, end_ms, n, seed ^ i as u64, true);
            missing.insert(slot, n);
        }
        Origin {
            emulator,
            first,
            last,
            present,
            missing,
            expected: Default::default(),
            checked: Default::default(),
        }
    }

    /// The notes a complete fill of `slot` writes, in order.
    pub fn expected(&self, slot: i64) -> Vec<Value> {
        let mut cache = self.expected.lock().unwrap();
        cache
            .entry(slot)
            .or_insert_with(|| self.emulator.expected(slot * 1000, (slot + SLOT) * 1000))
            .clone()
    }

    /// Missing slots with notes: those a fill writes.
    pub fn fillable(&self) -> Vec<i64> {
        self.missing
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, _)| *s)
            .collect()
    }

    pub fn window(&self) -> Vec<String> {
        vec![
            "--start".into(),
            arg_time(self.first),
            "--end".into(),
            arg_time(self.last),
        ]
    }

    /// `command -d jp --start … --end …` plus `extra`.
    pub fn args(&self, command: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![command.to_string(), "-d".into(), "jp".into()];
        args.extend(self.window());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// The source section pointing at the emulator.
    pub fn source(&self) -> String {
        self.emulator.source()
    }

    /// A workspace for dataset `jp` over `primary` (filled with the present
    /// slots' objects) and `complement`.
    pub fn workspace(&self, primary: &Place, complement: &Place) -> Workspace {
        for &slot in &self.present {
            primary.put(&key_of(slot), &jsonl(10, 100));
        }
        let config = if primary.is_s3() || complement.is_s3() {
            s3_config(&primary.url(), &[], Some(&complement.url()), &self.source())
        } else {
            format!(
                "catalog = \"slotfill.db\"\n[datasets.jp]\nprimary = \"{}\"\ncomplement = \"{}\"\n{RULES}{}",
                primary.url(),
                complement.url(),
                self.source()
            )
        };
        Workspace::new(&config)
    }

    /// The slot a request is the first page of (Misskey: any page, by its
    /// `sinceId`; Mastodon: a slot's first page, by its `max_id`); None for
    /// other requests. A refetch of a slot always makes its first page.
    pub fn slot_of(&self, request: &Value) -> Option<i64> {
        let kind = self.emulator.kind();
        let Some(ms) = self.emulator.first_ms_of(request, SLOT * 1000) else {
            let bounded = kind == OriginKind::Misskey && request.get("sinceId").is_some();
            assert!(
                !bounded,
                "request with a sinceId that is no slot's lower bound: {request}"
            );
            return None;
        };
        let slot = ms / 1000;
        let known = self.missing.contains_key(&slot) || self.present.contains(&slot);
        assert!(known, "request for no slot of the window: {request}");
        Some(slot)
    }

    /// Page requests per slot among `requests`.
    pub fn requests_per_slot(&self, requests: &[Value]) -> BTreeMap<i64, u64> {
        let mut out = BTreeMap::new();
        for r in requests {
            if let Some(slot) = self.slot_of(r) {
                *out.entry(slot).or_default() += 1;
            }
        }
        out
    }

    /// Every page request the origin received (Misskey: to its search endpoint).
    pub fn search_requests(&self) -> Vec<Value> {
        self.emulator.page_requests()
    }

    /// Waits until requests a killed process sent have all arrived (no call for 100 ms).
    pub fn settle(&self) {
        loop {
            let calls = self.emulator.calls();
            std::thread::sleep(Duration::from_millis(100));
            if self.emulator.calls() == calls {
                return;
            }
        }
    }
}

/// The catalog exists and is migrated (a process killed at its start may leave neither).
pub fn catalog_ready(ws: &Workspace) -> bool {
    ws.catalog_path().exists()
        && ws.query_i64(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('slots', 'fill_attempts')",
        ) == 2
}

/// (slot_start, state, ok_role) of every catalogued slot, in order.
pub fn slot_states(ws: &Workspace) -> Vec<(i64, String, Option<String>)> {
    if !catalog_ready(ws) {
        return Vec::new();
    }
    let db = ws.catalog();
    let mut stmt = db
        .prepare("SELECT slot_start, state, ok_role FROM slots ORDER BY slot_start")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Slots whose fill is over: ok through the complement, or fetched complete and empty.
pub fn done_slots(ws: &Workspace) -> BTreeSet<i64> {
    if !catalog_ready(ws) {
        return BTreeSet::new();
    }
    let db = ws.catalog();
    let mut stmt = db
        .prepare(
            "SELECT slot_start FROM slots WHERE ok_role = 'complement'
             UNION SELECT slot_start FROM fill_attempts WHERE outcome = 'empty'",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The catalog and the complement agree, and no complement object is partial:
/// every slot recorded ok through the complement has its object; every object
/// holds exactly the origin's notes of its slot (byte for byte), as many as
/// its `note-count` says; no slot was filled twice. Objects already checked
/// are not read again (nothing overwrites a complement object).
#[track_caller]
pub fn assert_consistent(o: &Origin, ws: &Workspace, complement: &Place) {
    let keys = complement.keys();
    for (slot, state, role) in slot_states(ws) {
        if role.as_deref() == Some("complement") {
            assert_eq!(state, "ok");
            assert!(
                keys.contains(&key_of(slot)),
                "slot {} recorded filled without its object",
                local_iso(slot)
            );
        }
    }
    let by_key: HashMap<String, i64> = o.missing.keys().map(|&s| (key_of(s), s)).collect();
    for key in &keys {
        let id = format!("{}/{key}", complement.url());
        if o.checked.lock().unwrap().contains(&id) {
            continue;
        }
        let slot = *by_key
            .get(key)
            .unwrap_or_else(|| panic!("complement object {key} is no missing slot's"));
        let body = complement.get(key).unwrap();
        assert_notes_exact(o, slot, key, &body);
        let meta = complement.metadata(key).expect("metadata");
        assert_eq!(
            meta.get("complete").map(String::as_str),
            Some("true"),
            "{key}"
        );
        let lines = body.iter().filter(|b| **b == b'\n').count();
        assert_eq!(
            meta.get("note-count"),
            Some(&lines.to_string()),
            "{key}: line count differs from its note-count"
        );
        o.checked.lock().unwrap().insert(id);
    }
    if !catalog_ready(ws) {
        return;
    }
    let twice = ws.query_i64(
        "SELECT COUNT(*) FROM (SELECT slot_start FROM fill_attempts WHERE outcome = 'filled'
                               GROUP BY slot_start HAVING COUNT(*) > 1)",
    );
    assert_eq!(twice, 0, "a slot was filled twice");
}

/// `body` is exactly the origin's notes of `slot`, one JSON line each, in order.
#[track_caller]
pub fn assert_notes_exact(o: &Origin, slot: i64, key: &str, body: &[u8]) {
    let expected = o.expected(slot);
    let mut want = Vec::new();
    for note in &expected {
        serde_json::to_writer(&mut want, note).unwrap();
        want.push(b'\n');
    }
    if body == want.as_slice() {
        return;
    }
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with('\n'), "{key}: unterminated last line");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: {e}: {l}")))
        .collect();
    assert_eq!(lines.len(), expected.len(), "{key}: note count");
    assert_eq!(lines, expected, "{key}: not the slot's notes");
}

/// The end state two runs are compared by.
#[derive(Debug, PartialEq, Eq)]
pub struct EndState {
    pub slots: Vec<(i64, String, Option<String>)>,
    pub objects: BTreeMap<String, Vec<u8>>,
}

pub fn end_state(ws: &Workspace, complement: &Place) -> EndState {
    EndState {
        slots: slot_states(ws),
        objects: complement.contents(),
    }
}

/// Asserts two end states are equal, naming the first difference.
#[track_caller]
pub fn assert_same_end_state(got: &EndState, want: &EndState) {
    assert_eq!(got.slots.len(), want.slots.len(), "slot count");
    for (g, w) in got.slots.iter().zip(&want.slots) {
        assert_eq!(g, w, "slot {}", local_iso(w.0));
    }
    let (gk, wk): (Vec<_>, Vec<_>) = (got.objects.keys().collect(), want.objects.keys().collect());
    assert_eq!(gk, wk, "complement keys");
    for (key, body) in &want.objects {
        assert!(got.objects[key] == *body, "{key}: bytes differ");
    }
}

/// Runs a spawned slotfill to its end; panics if it fails.
pub fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn spawn(ws: &Workspace, args: &[String]) -> Child {
    ws.command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slotfill")
}

pub fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
