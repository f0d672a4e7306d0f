//! Crash safety and the single writer: `fill` and `run` killed with SIGKILL at
//! many instants end, after plain reruns, exactly where an uninterrupted run
//! ends; two processes never fill one dataset at once; a dead holder's lease
//! is taken over.
//!
//! The fixtures here (an origin with a seeded dataset, complement places read
//! directly, end-state comparison) are shared with `faults.rs`. The kill
//! scenarios run against each origin, Misskey and Mastodon (`mastodon_…`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::misskey::Fault;
use crate::support::origin::{Emulator, OriginKind};
use crate::support::s3::{FaultRule, S3Fault, S3Op, S3Server};
use crate::support::*;

/// A small deterministic generator (splitmix64), so kill schedules replay.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A location read and written directly by the tests, never through slotfill.
#[derive(Clone, Debug)]
pub(crate) enum Place {
    Dir(PathBuf),
    Bucket { bucket: String, prefix: String },
}

impl Place {
    pub(crate) fn dir(root: &Path, name: &str) -> Place {
        Place::Dir(root.join(name))
    }

    pub(crate) fn bucket(name: &str, prefix: &str) -> Place {
        Place::Bucket {
            bucket: S3Server::shared().new_bucket(name),
            prefix: prefix.to_string(),
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Place::Dir(dir) => format!("file://{}", dir.display()),
            Place::Bucket { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    pub(crate) fn is_s3(&self) -> bool {
        matches!(self, Place::Bucket { .. })
    }

    pub(crate) fn bucket_name(&self) -> &str {
        match self {
            Place::Bucket { bucket, .. } => bucket,
            Place::Dir(_) => panic!("not a bucket"),
        }
    }

    pub(crate) fn put(&self, key: &str, body: &[u8]) {
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

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Place::Dir(dir) => std::fs::read(dir.join(key)).ok(),
            Place::Bucket { bucket, prefix } => {
                S3Server::shared().get(bucket, &format!("{prefix}/{key}"))
            }
        }
    }

    /// The user metadata slotfill wrote with the object.
    pub(crate) fn metadata(&self, key: &str) -> Option<HashMap<String, String>> {
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
    pub(crate) fn keys(&self) -> BTreeSet<String> {
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
    pub(crate) fn contents(&self) -> BTreeMap<String, Vec<u8>> {
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
pub(crate) struct Origin {
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
    pub(crate) fn new(seed: u64, slots: usize, notes: (u64, u64)) -> Origin {
        Origin::of(OriginKind::Misskey, seed, slots, notes)
    }

    /// The same window at an origin of `kind`.
    pub(crate) fn of(kind: OriginKind, seed: u64, slots: usize, notes: (u64, u64)) -> Origin {
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
    pub(crate) fn expected(&self, slot: i64) -> Vec<Value> {
        let mut cache = self.expected.lock().unwrap();
        cache
            .entry(slot)
            .or_insert_with(|| self.emulator.expected(slot * 1000, (slot + SLOT) * 1000))
            .clone()
    }

    /// Missing slots with notes: those a fill writes.
    pub(crate) fn fillable(&self) -> Vec<i64> {
        self.missing
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, _)| *s)
            .collect()
    }

    pub(crate) fn window(&self) -> Vec<String> {
        vec![
            "--start".into(),
            arg_time(self.first),
            "--end".into(),
            arg_time(self.last),
        ]
    }

    /// `command -d jp --start … --end …` plus `extra`.
    pub(crate) fn args(&self, command: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![command.to_string(), "-d".into(), "jp".into()];
        args.extend(self.window());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// The source section pointing at the emulator.
    pub(crate) fn source(&self) -> String {
        self.emulator.source()
    }

    /// A workspace for dataset `jp` over `primary` (filled with the present
    /// slots' objects) and `complement`.
    pub(crate) fn workspace(&self, primary: &Place, complement: &Place) -> Workspace {
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
    pub(crate) fn slot_of(&self, request: &Value) -> Option<i64> {
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
    pub(crate) fn requests_per_slot(&self, requests: &[Value]) -> BTreeMap<i64, u64> {
        let mut out = BTreeMap::new();
        for r in requests {
            if let Some(slot) = self.slot_of(r) {
                *out.entry(slot).or_default() += 1;
            }
        }
        out
    }

    /// Every page request the origin received (Misskey: to its search endpoint).
    pub(crate) fn search_requests(&self) -> Vec<Value> {
        self.emulator.page_requests()
    }

    /// Waits until requests a killed process sent have all arrived (no call for 100 ms).
    pub(crate) fn settle(&self) {
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
pub(crate) fn catalog_ready(ws: &Workspace) -> bool {
    ws.catalog_path().exists()
        && ws.query_i64(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('slots', 'fill_attempts')",
        ) == 2
}

/// (slot_start, state, ok_role) of every catalogued slot, in order.
pub(crate) fn slot_states(ws: &Workspace) -> Vec<(i64, String, Option<String>)> {
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
pub(crate) fn done_slots(ws: &Workspace) -> BTreeSet<i64> {
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
pub(crate) fn assert_consistent(o: &Origin, ws: &Workspace, complement: &Place) {
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
pub(crate) fn assert_notes_exact(o: &Origin, slot: i64, key: &str, body: &[u8]) {
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
pub(crate) struct EndState {
    pub slots: Vec<(i64, String, Option<String>)>,
    pub objects: BTreeMap<String, Vec<u8>>,
}

pub(crate) fn end_state(ws: &Workspace, complement: &Place) -> EndState {
    EndState {
        slots: slot_states(ws),
        objects: complement.contents(),
    }
}

/// Asserts two end states are equal, naming the first difference.
#[track_caller]
pub(crate) fn assert_same_end_state(got: &EndState, want: &EndState) {
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
pub(crate) fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn spawn(ws: &Workspace, args: &[String]) -> Child {
    ws.command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slotfill")
}

/// When a kill fires, after the process started.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// This long after the spawn.
    After(Duration),
    /// Once the origin has received this many more calls.
    OriginCalls(u64),
    /// Once the primary's bucket has received this many more list requests.
    Lists(u64),
}

/// How one scheduled kill went.
#[derive(Debug)]
struct Killed {
    /// The process was still running when SIGKILL came.
    killed: bool,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// Spawns `args`, waits for `trigger` and then `extra`, and sends SIGKILL
/// unless the process ended by itself.
fn spawn_and_kill(
    ws: &Workspace,
    args: &[String],
    o: &Origin,
    primary: Option<&str>,
    trigger: Trigger,
    extra: Duration,
) -> Killed {
    let calls = o.emulator.calls();
    let lists = primary.map_or(0, |b| S3Server::shared().counts(b).list);
    let started = Instant::now();
    let mut child = spawn(ws, args);
    let fired = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        let reached = match trigger {
            Trigger::After(d) => started.elapsed() >= d,
            Trigger::OriginCalls(n) => o.emulator.calls() >= calls + n,
            Trigger::Lists(n) => S3Server::shared().counts(primary.unwrap()).list >= lists + n,
        };
        if reached {
            break true;
        }
        // Only paces the polling.
        std::thread::sleep(Duration::from_micros(500));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "trigger {trigger:?} never fired"
        );
    };
    if fired {
        std::thread::sleep(extra);
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let read = |r: Option<&mut dyn std::io::Read>| {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    };
    let stdout = read(child.stdout.as_mut().map(|s| s as &mut dyn std::io::Read));
    let stderr = read(child.stderr.as_mut().map(|s| s as &mut dyn std::io::Read));
    Killed {
        killed: status.signal() == Some(libc::SIGKILL),
        stdout,
        stderr,
        code: status.code(),
    }
}

/// The origin calls one process may waste when killed, with `concurrency`
/// slots in flight: its start-up calls (id-scheme detection and the engine
/// probe, each at most once per slot task) and every page of the slots in flight.
fn waste_bound(o: &Origin, concurrency: u64) -> u64 {
    let limit = o.emulator.page_limit();
    let pages = |notes: usize| (notes as u64 + 6).div_ceil(limit) + 1;
    let max_pages = o.missing.values().map(|n| pages(*n)).max().unwrap();
    concurrency * 2 + concurrency * max_pages
}

/// The reference: the same origin filled into a fresh dataset without kills.
struct Reference {
    ws: Workspace,
    complement: Place,
    calls: u64,
    duration: Duration,
}

fn reference(o: &Origin, primary: Place, complement: Place, command: &str) -> Reference {
    let ws = o.workspace(&primary, &complement);
    if command == "fill" {
        ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    }
    let (calls, requests) = (o.emulator.calls(), o.search_requests().len());
    let started = Instant::now();
    let out = ws.slotfill(&as_strs(&o.args(command, &[])));
    let duration = started.elapsed();
    assert!(
        out.code == 0 || (command == "run" && out.code == 3),
        "reference {command}: {out:?}"
    );
    assert_consistent(o, &ws, &complement);
    let all = o.search_requests();
    let requests = o.requests_per_slot(&all[requests..]);
    for slot in o.missing.keys() {
        assert!(
            requests.get(slot).copied().unwrap_or(0) >= 1,
            "reference: slot {} never requested",
            local_iso(*slot)
        );
    }
    Reference {
        calls: o.emulator.calls() - calls,
        ws,
        complement,
        duration,
    }
}

pub(crate) fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// What the kill loop of a crash scenario measured.
struct CrashRun {
    kills: usize,
    /// What each killed process had printed: the phase of `run` it died in.
    phases: Vec<Phase>,
    calls: u64,
    /// Kills after which an object was written but not recorded in the catalog.
    written_unrecorded: usize,
    /// Kills that left attempts of the killed process started and not finished.
    in_flight: usize,
}

/// Where `run` was when it died, from what it had printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Scan,
    Fill,
    Verify,
}

impl Phase {
    fn of(stdout: &str) -> Phase {
        if stdout.contains("fill jp:") {
            Phase::Verify
        } else if stdout.contains("scanned jp") {
            Phase::Fill
        } else {
            Phase::Scan
        }
    }
}

/// One crash scenario: runs `command` over and over, killing it on each of
/// `schedule`, then once to its end; checks after every process that no slot
/// already done is fetched again and the catalog agrees with the complement.
fn crash_loop(
    o: &Origin,
    ws: &Workspace,
    complement: &Place,
    primary_bucket: Option<&str>,
    command: &str,
    schedule: &[(Trigger, Duration)],
) -> CrashRun {
    let args = o.args(command, &[]);
    let calls = o.emulator.calls();
    let (mut kills, mut written_unrecorded, mut in_flight) = (0, 0, 0);
    let mut phases = Vec::new();
    for (i, (trigger, extra)) in schedule.iter().enumerate() {
        let done = done_slots(ws);
        let seen = o.search_requests().len();
        let k = spawn_and_kill(ws, &args, o, primary_bucket, *trigger, *extra);
        assert!(
            k.killed,
            "kill {i} ({trigger:?}) came after the process ended ({:?}): the schedule is too late\n{}\n{}",
            k.code, k.stdout, k.stderr
        );
        kills += 1;
        phases.push(Phase::of(&k.stdout));
        let refetched: Vec<i64> = o.search_requests()[seen..]
            .iter()
            .filter_map(|r| o.slot_of(r))
            .filter(|s| done.contains(s))
            .collect();
        assert!(
            refetched.is_empty(),
            "kill {i}: slots already done were fetched again: {refetched:?}"
        );
        assert_consistent(o, ws, complement);
        if !catalog_ready(ws) {
            continue;
        }
        let recorded = ws.query_i64("SELECT COUNT(*) FROM slots WHERE ok_role = 'complement'");
        written_unrecorded += usize::from(complement.keys().len() as i64 > recorded);
        in_flight += usize::from(
            ws.query_i64(
                "SELECT COUNT(*) FROM fill_attempts
                 WHERE finished_at IS NULL AND run_id = (SELECT MAX(id) FROM runs)",
            ) > 0,
        );
    }
    let done = done_slots(ws);
    let seen = o.search_requests().len();
    let last = ws.slotfill(&as_strs(&args));
    assert!(
        last.code == 0 || (command == "run" && last.code == 3),
        "final rerun: {last:?}"
    );
    let refetched: Vec<i64> = o.search_requests()[seen..]
        .iter()
        .filter_map(|r| o.slot_of(r))
        .filter(|s| done.contains(s))
        .collect();
    assert!(
        refetched.is_empty(),
        "final rerun fetched done slots again: {refetched:?}"
    );
    CrashRun {
        kills,
        phases,
        calls: o.emulator.calls() - calls,
        written_unrecorded,
        in_flight,
    }
}

/// 117 missing slots (115 with notes) filled into S3 by `fill`, killed with
/// SIGKILL 20 times and rerun: the end state equals that of an uninterrupted
/// fill of the same origin (into local directories) byte for byte; after
/// every kill the catalog and the complement agree, no object is partial and
/// no slot already done is fetched again; the origin calls the kills wasted
/// stay within what the processes in flight could have spent.
#[test]
fn fill_killed_at_twenty_instants_ends_like_an_uninterrupted_fill() {
    fill_killed_at_twenty_instants(OriginKind::Misskey);
}

#[test]
fn mastodon_fill_killed_at_twenty_instants_ends_like_an_uninterrupted_fill() {
    fill_killed_at_twenty_instants(OriginKind::Mastodon);
}

fn fill_killed_at_twenty_instants(kind: OriginKind) {
    let o = Origin::of(kind, 0x5107_f111, 130, (130, 300));
    assert!(o.fillable().len() >= 100, "{} fillable", o.fillable().len());
    let dirs = tempfile::tempdir().unwrap();
    // Every 9th origin call answers 150 ms late, so kills land with pages in flight.
    o.emulator
        .fail_every(9, Fault::Slow(Duration::from_millis(150)));
    let reference = reference(
        &o,
        Place::dir(dirs.path(), "ref-primary"),
        Place::dir(dirs.path(), "ref-complement"),
        "fill",
    );
    eprintln!(
        "reference fill: {} calls in {:?}",
        reference.calls, reference.duration
    );

    let complement = Place::bucket("crash-complement", "misskey_complement");
    let primary = Place::dir(dirs.path(), "primary");
    let ws = o.workspace(&primary, &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();

    // 20 kills: four in the first 60 ms of a process (start-up, catalog,
    // lease, id-scheme detection), sixteen after a seeded number of origin
    // calls spread over the reference run, each plus a random delay so it
    // lands mid-page, mid-PUT or mid-commit.
    let mut rng = Rng::new(20);
    let per_kill = reference.calls / 24;
    let schedule: Vec<(Trigger, Duration)> = (0..20)
        .map(|i| {
            let extra = Duration::from_millis(rng.range(0, 25));
            if i % 5 == 0 {
                (
                    Trigger::After(Duration::from_millis(rng.range(0, 60))),
                    Duration::ZERO,
                )
            } else {
                (
                    Trigger::OriginCalls(rng.range(per_kill / 2, per_kill * 3 / 2).max(1)),
                    extra,
                )
            }
        })
        .collect();
    let crash = crash_loop(&o, &ws, &complement, None, "fill", &schedule);
    assert_eq!(crash.kills, 20);
    assert_consistent(&o, &ws, &complement);
    // Every interrupted attempt was closed by the slot's next attempt.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE finished_at IS NULL"),
        0
    );
    assert_same_end_state(
        &end_state(&ws, &complement),
        &end_state(&reference.ws, &reference.complement),
    );
    let wasted = crash.calls.saturating_sub(reference.calls);
    let bound = 21 * waste_bound(&o, 4);
    eprintln!(
        "fill killed {} times: {} origin calls against {} uninterrupted, {wasted} wasted (bound {bound}); \
         {} kills left attempts in flight, {} left an object written but not recorded",
        crash.kills, crash.calls, reference.calls, crash.in_flight, crash.written_unrecorded
    );
    assert!(
        wasted <= bound,
        "{wasted} origin calls wasted, bound {bound}"
    );
}

/// `run` on S3 (primary and complement) killed while listing day prefixes,
/// while filling and while verifying, then rerun: it ends exactly as a clean
/// `run` of the same origin does.
#[test]
fn run_killed_while_listing_filling_and_verifying_on_s3_ends_like_a_clean_run() {
    run_killed_while_listing_filling_and_verifying(OriginKind::Misskey);
}

#[test]
fn mastodon_run_killed_while_listing_filling_and_verifying_on_s3_ends_like_a_clean_run() {
    run_killed_while_listing_filling_and_verifying(OriginKind::Mastodon);
}

fn run_killed_while_listing_filling_and_verifying(kind: OriginKind) {
    let o = Origin::of(kind, 0x5107_f112, 60, (130, 260));
    let reference = reference(
        &o,
        Place::bucket("crash-ref-primary", "misskey"),
        Place::bucket("crash-ref-complement", "misskey_complement"),
        "run",
    );
    eprintln!(
        "reference run: {} calls in {:?}",
        reference.calls, reference.duration
    );
    let primary = Place::bucket("crash-primary", "misskey");
    let complement = Place::bucket("crash-complement", "misskey_complement");
    let ws = o.workspace(&primary, &complement);
    // Every listing of the primary is held 500 ms: kills land while day prefixes are listed.
    S3Server::shared().inject(
        primary.bucket_name(),
        FaultRule {
            op: S3Op::List,
            fault: S3Fault::Delay(Duration::from_millis(500)),
            times: u64::MAX,
            skip: 0,
        },
    );
    // The window spans two JST days: a scan lists two day prefixes of the primary.
    let lists_per_scan = 2;
    let mut rng = Rng::new(21);
    let per_kill = reference.calls / 8;
    let listing = |rng: &mut Rng| (Trigger::Lists(1), Duration::from_millis(rng.range(0, 200)));
    let filling = |rng: &mut Rng| {
        (
            Trigger::OriginCalls(rng.range(per_kill / 2, per_kill * 3 / 2).max(1)),
            Duration::from_millis(rng.range(0, 25)),
        )
    };
    let verifying = |rng: &mut Rng| {
        (
            Trigger::Lists(lists_per_scan + 1),
            Duration::from_millis(rng.range(0, 200)),
        )
    };
    let schedule = vec![
        listing(&mut rng),
        filling(&mut rng),
        listing(&mut rng),
        filling(&mut rng),
        filling(&mut rng),
        listing(&mut rng),
        filling(&mut rng),
        filling(&mut rng),
        verifying(&mut rng),
        verifying(&mut rng),
    ];
    let crash = crash_loop(
        &o,
        &ws,
        &complement,
        Some(primary.bucket_name()),
        "run",
        &schedule,
    );
    S3Server::shared().clear_faults(primary.bucket_name());
    assert_consistent(&o, &ws, &complement);
    assert_same_end_state(
        &end_state(&ws, &complement),
        &end_state(&reference.ws, &reference.complement),
    );
    for phase in [Phase::Scan, Phase::Fill, Phase::Verify] {
        assert!(
            crash.phases.contains(&phase),
            "no kill landed in the {phase:?} phase: {:?}",
            crash.phases
        );
    }
    let wasted = crash.calls.saturating_sub(reference.calls);
    let bound = (crash.kills as u64 + 1) * waste_bound(&o, 4);
    eprintln!(
        "run killed {} times ({:?}): {} origin calls against {} uninterrupted, {wasted} wasted (bound {bound}); \
         {} kills left attempts in flight, {} left an object written but not recorded",
        crash.kills,
        crash.phases,
        crash.calls,
        reference.calls,
        crash.in_flight,
        crash.written_unrecorded
    );
    assert!(
        wasted <= bound,
        "{wasted} origin calls wasted, bound {bound}"
    );
}

/// A small dataset on local directories whose every origin call answers
/// after `slow`, so a fill holds its lease for a while.
fn slow_dataset(seed: u64, slow: Duration) -> (Origin, Workspace, Place, tempfile::TempDir) {
    let o = Origin::new(seed, 12, (120, 180));
    o.emulator.fail_every(1, Fault::Slow(slow));
    let dirs = tempfile::tempdir().unwrap();
    let complement = Place::dir(dirs.path(), "complement");
    let ws = o.workspace(&Place::dir(dirs.path(), "primary"), &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    (o, ws, complement, dirs)
}

/// Waits until a process holds the dataset's lease; returns the holder's pid.
fn wait_for_lease(ws: &Workspace, child: &mut Child) -> i64 {
    let started = Instant::now();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fill ended before taking the lease"
        );
        let pid = ws
            .catalog()
            .query_row("SELECT pid FROM leases", [], |r| r.get::<_, i64>(0))
            .ok();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no lease taken"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Every fillable slot was filled by exactly one attempt, and nothing else was attempted.
#[track_caller]
fn assert_filled_once(o: &Origin, ws: &Workspace) {
    let fillable = o.fillable().len() as i64;
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'filled'"),
        fillable
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(DISTINCT slot_start) FROM fill_attempts WHERE outcome = 'filled'"
        ),
        fillable
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome IN ('exists', 'failed', 'partial') OR outcome IS NULL"),
        0,
        "an attempt other than filled or empty"
    );
}

#[test]
fn a_second_fill_or_run_is_refused_while_another_holds_the_lease() {
    let (o, ws, complement, _dirs) = slow_dataset(0x1ea5e, Duration::from_millis(250));
    let mut first = spawn(&ws, &o.args("fill", &[]));
    let pid = wait_for_lease(&ws, &mut first);
    assert_eq!(pid, i64::from(first.id()));
    for command in ["fill", "run"] {
        let second = ws.slotfill(&as_strs(&o.args(command, &[]))).code(1);
        let message = second.stderr.trim();
        assert_eq!(message.lines().count(), 1, "{command}: {message}");
        assert!(
            message.contains("being filled by another slotfill")
                && message.contains(&format!("pid {pid} on {}", this_host())),
            "{command}: {message}"
        );
        assert!(first.try_wait().unwrap().is_none(), "the holder still runs");
    }
    let first = finish(first).ok();
    assert!(
        first
            .stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        first.stdout
    );
    assert_filled_once(&o, &ws);
    assert_consistent(&o, &ws, &complement);
    // The refused commands are recorded as failed runs that attempted nothing.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE outcome = 'failed' AND error LIKE '%being filled by another%'"),
        2
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM leases"),
        0,
        "lease released"
    );
}

#[test]
fn fills_started_together_never_fill_at_once() {
    let (o, ws, complement, _dirs) = slow_dataset(0x1ea5f, Duration::from_millis(100));
    let args = o.args("fill", &["--max-slots", "3"]);
    let mut refused = 0;
    for _round in 0..4 {
        let (a, b) = (spawn(&ws, &args), spawn(&ws, &args));
        for out in [finish(a), finish(b)] {
            match out.code {
                0 => {}
                1 => {
                    assert!(
                        out.stderr.contains("being filled by another slotfill"),
                        "{out:?}"
                    );
                    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
                    refused += 1;
                }
                _ => panic!("{out:?}"),
            }
        }
    }
    ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert_filled_once(&o, &ws);
    assert_consistent(&o, &ws, &complement);
    // The attempts of two fills never interleave in time.
    let db = ws.catalog();
    let mut stmt = db
        .prepare(
            "SELECT run_id, MIN(started_at), MAX(finished_at) FROM fill_attempts GROUP BY run_id ORDER BY 2",
        )
        .unwrap();
    let spans: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for pair in spans.windows(2) {
        assert!(pair[0].2 <= pair[1].1, "two fills at once: {pair:?}");
    }
    eprintln!("{refused} of 4 concurrent second fills were refused; fill spans {spans:?}");
    assert!(refused >= 1, "two fills started together both ran");
}

#[test]
fn a_killed_holders_lease_is_taken_over_at_once_on_the_same_host() {
    let (o, ws, complement, _dirs) = slow_dataset(0x1ea60, Duration::from_millis(200));
    let mut first = spawn(&ws, &o.args("fill", &[]));
    let pid = wait_for_lease(&ws, &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        ws.query_i64("SELECT pid FROM leases"),
        pid,
        "the killed process left its lease"
    );
    o.emulator.fail_every(0, Fault::Slow(Duration::ZERO));
    let rerun = ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert!(
        rerun.stderr.contains("taking over a stale lease"),
        "{}",
        rerun.stderr
    );
    assert_filled_once_after_kill(&o, &ws);
    assert_consistent(&o, &ws, &complement);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM leases"), 0);
}

/// After a kill, a slot may also have an interrupted attempt (recorded failed).
#[track_caller]
fn assert_filled_once_after_kill(o: &Origin, ws: &Workspace) {
    assert_eq!(
        ws.query_i64("SELECT COUNT(DISTINCT slot_start) FROM slots WHERE ok_role = 'complement'"),
        o.fillable().len() as i64
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM (SELECT slot_start FROM fill_attempts WHERE outcome IN ('filled', 'exists')
                                   GROUP BY slot_start HAVING COUNT(*) > 1)"
        ),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE finished_at IS NULL"),
        0
    );
}

#[test]
fn a_lease_from_another_host_is_taken_over_only_once_expired() {
    let (o, mut ws, complement, _dirs) = slow_dataset(0x1ea61, Duration::from_millis(200));
    let mut first = spawn(&ws, &o.args("fill", &[]));
    let pid = wait_for_lease(&ws, &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    // As if the killed process had run on another machine: its pid says nothing here.
    ws.catalog()
        .execute("UPDATE leases SET host = 'elsewhere.example'", [])
        .unwrap();
    let expires: String = ws
        .catalog()
        .query_row("SELECT expires_at FROM leases", [], |r| r.get(0))
        .unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    o.emulator.fail_every(0, Fault::Slow(Duration::ZERO));
    o.settle();
    let (calls, attempts) = (
        o.emulator.calls(),
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts"),
    );
    let held = |ws: &Workspace| {
        let out = ws.slotfill(&as_strs(&o.args("fill", &[]))).code(1);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("pid {pid} on elsewhere.example")),
            "{}",
            out.stderr
        );
    };
    held(&ws);
    ws.set_env(
        "SLOTFILL_NOW",
        &(expires - chrono::Duration::seconds(1)).to_rfc3339(),
    );
    held(&ws);
    assert_eq!(o.emulator.calls(), calls, "a refused fill calls nobody");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts"),
        attempts,
        "a refused fill attempts nothing"
    );
    ws.env.clear();
    ws.set_env(
        "SLOTFILL_NOW",
        &(expires + chrono::Duration::seconds(1)).to_rfc3339(),
    );
    let taken = ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert!(
        taken.stderr.contains("taking over a stale lease"),
        "{}",
        taken.stderr
    );
    assert_filled_once_after_kill(&o, &ws);
    assert_consistent(&o, &ws, &complement);
}

/// `scan` (and so the scan of a `run` that will then be refused the lease)
/// may run while a fill commits: it neither fails on the busy catalog nor
/// loses a slot the fill recorded.
#[test]
fn scans_alongside_a_fill_neither_fail_nor_undo_what_it_filled() {
    let o = Origin::new(0x5ca1, 130, (101, 140));
    let dirs = tempfile::tempdir().unwrap();
    let complement = Place::dir(dirs.path(), "complement");
    let ws = o.workspace(&Place::dir(dirs.path(), "primary"), &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    let mut fill = spawn(&ws, &o.args("fill", &[]));
    let mut scans = 0;
    while fill.try_wait().unwrap().is_none() {
        ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
        scans += 1;
    }
    let fill = finish(fill).ok();
    assert!(
        scans >= 1,
        "the fill ended before a scan could run alongside"
    );
    assert!(
        fill.stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        fill.stdout
    );
    assert_consistent(&o, &ws, &complement);
    // The catalog still knows every filled slot: a fill right after fetches nothing.
    let calls = o.emulator.calls();
    let again = ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert!(
        again.stdout.contains("0 slots to fill"),
        "after {scans} scans: {}",
        again.stdout
    );
    assert_eq!(o.emulator.calls(), calls);
    assert_filled_once(&o, &ws);
    eprintln!("{scans} scans ran alongside the fill");
}

/// A scan whose listing of the complement began before a concurrent fill
/// wrote and recorded an object must not mark that object gone.
#[test]
fn a_scan_listing_while_a_fill_commits_keeps_the_filled_slot() {
    // A one-day window whose complement day prefix takes two listing pages:
    // 1001 foreign keys sort after the slot keys.
    let o = Origin::new(0x9a9e, 12, (101, 130));
    let primary = Place::bucket("race-primary", "misskey");
    let complement = Place::bucket("race-complement", "misskey_complement");
    let ws = o.workspace(&primary, &complement);
    let day = &key_of(o.first)[..11];
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (complement, day) = (&complement, day);
            scope.spawn(move || {
                for i in (t..1001).step_by(8) {
                    complement.put(&format!("{day}zz-foreign/{i:04}"), b"x\n");
                }
            });
        }
    });
    let server = S3Server::shared();
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    let bucket = complement.bucket_name();
    let lists = server.counts(bucket).list;
    // The second page of the next listing is held 3 s ...
    server.inject(
        bucket,
        FaultRule {
            op: S3Op::List,
            fault: S3Fault::Delay(Duration::from_secs(3)),
            times: 1,
            skip: 1,
        },
    );
    let scan = spawn(&ws, &o.args("scan", &[]));
    let started = Instant::now();
    while server.counts(bucket).list < lists + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no second page"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // ... while a fill writes and records the first missing slot.
    let slot = o.fillable()[0];
    ws.slotfill(&as_strs(&o.args("fill", &["--max-slots", "1"])))
        .ok();
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT ok_role = 'complement' FROM slots WHERE slot_start = {slot}"
        )),
        1
    );
    finish(scan).ok();
    server.clear_faults(bucket);
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT COUNT(*) FROM slots WHERE slot_start = {slot} AND ok_role = 'complement'"
        )),
        1,
        "the scan undid the fill of {}",
        local_iso(slot)
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM objects WHERE gone_at IS NOT NULL"),
        0,
        "an object written during the listing was marked gone"
    );
}
