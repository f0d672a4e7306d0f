//! The benchmark harness behind `bench/run.sh` (through `examples/bench.rs`) and the CI smoke
//! test (`tests/bench_smoke.rs`).
//!
//! It generates datasets of the reference layout into the test S3 server (SeaweedFS behind the
//! counting proxy of `tests/support/s3/`), runs the real `slotfill` binary as a child process
//! and measures wall time, the child's CPU time and peak RSS (`wait4`), the requests and bytes
//! the server saw, and the CPU time SeaweedFS and this process (the proxy) spent meanwhile.
//! With checks on, it also asserts the request counts the design promises: every object that
//! needs counting downloaded exactly once, a warm rescan without a single GET and with one LIST
//! page per day prefix and location, only the changed objects downloaded again, and at most
//! ceil(notes/100)+1 origin calls per filled slot.
//!
//! The including crate provides the modules `s3` and `misskey` (the test support files) in the
//! parent module of this one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::misskey::{EmulatorConfig, MisskeyEmulator, NoteSpec, sample_text};
use super::s3::{self, RequestCounts, S3Server};

#[path = "calls.rs"]
mod calls;
#[path = "limit.rs"]
mod limit;

/// Bytes of an average line in the real dataset.
pub const REAL_LINE: usize = 3_600;
/// Object sizes: log-normal with this median (bytes) ...
pub const REAL_MEDIAN: f64 = 2.0e6;
/// ... and this sigma (natural log), clamped to [REAL_MIN, REAL_MAX].
pub const REAL_SIGMA: f64 = 0.85;
pub const REAL_MIN: f64 = 60.0e3;
pub const REAL_MAX: usize = 57_000_000;
/// The default rules of slotfill.
pub const MIN_BYTES: u64 = 102_400;
pub const MIN_LINES: u64 = 100;
pub const MAX_LINES: u64 = 10_000;
/// The narrowest line [`body`] writes.
pub const MIN_WIDTH: usize = 40;
/// Slots a (JST) day has.
pub const SLOTS_A_DAY: usize = 144;

/// What to run, and how big.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    /// The scan dataset: days, from `first_day`, in a primary and a backup.
    pub first_day: NaiveDate,
    pub days: usize,
    /// Object sizes (and so line widths and `min_bytes`) divided by this.
    pub scale: usize,
    pub concurrencies: Vec<usize>,
    /// The share of objects changed before the last rescan.
    pub changed_fraction: f64,
    /// Fill: this many missing slots, each with this many notes at the origin.
    pub fill_slots: usize,
    pub fill_notes: usize,
    pub fill_concurrency: Vec<usize>,
    /// A sample at the real size distribution: days of a primary, plus this many 57 MB objects.
    pub sample_days: usize,
    pub sample_largest: usize,
    pub sample_concurrencies: Vec<usize>,
    /// The 1-year memory run: days of tiny objects plus this many 57 MB objects.
    pub year_days: usize,
    pub year_largest: usize,
    pub year_concurrencies: Vec<usize>,
    /// Threads uploading the generated objects.
    pub upload_threads: usize,
}

impl Profile {
    /// A few days of small objects: the CI check of request counts (times mean nothing here).
    pub fn smoke() -> Profile {
        Profile {
            name: "smoke",
            first_day: date(2025, 5, 1),
            days: 3,
            scale: 256,
            concurrencies: vec![4],
            changed_fraction: 0.01,
            fill_slots: 12,
            fill_notes: 250,
            fill_concurrency: vec![4],
            sample_days: 0,
            sample_largest: 0,
            sample_concurrencies: vec![],
            year_days: 0,
            year_largest: 0,
            year_concurrencies: vec![],
            upload_threads: 4,
        }
    }

    /// The measurements of docs/BENCHMARKS.md (see there for what is scaled and why).
    pub fn full() -> Profile {
        Profile {
            name: "full",
            first_day: date(2025, 5, 1),
            days: 92,
            scale: 32,
            concurrencies: vec![1, 4, 16, 64],
            changed_fraction: 0.01,
            fill_slots: 500,
            fill_notes: 1_000,
            fill_concurrency: vec![4],
            sample_days: 2,
            sample_largest: 4,
            sample_concurrencies: vec![1, 4, 16, 64],
            year_days: 365,
            year_largest: 8,
            year_concurrencies: vec![8, 64],
            upload_threads: 8,
        }
    }

    /// slotfill against the limit (bench/limit.rs): real sizes, a few minutes.
    pub fn limit() -> Profile {
        Profile {
            name: "limit",
            days: 2,
            concurrencies: vec![],
            fill_slots: 0,
            upload_threads: 8,
            ..Profile::smoke()
        }
    }

    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "smoke" => Some(Profile::smoke()),
            "full" => Some(Profile::full()),
            "limit" => Some(Profile::limit()),
            _ => None,
        }
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// Which parts to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub slotfill: PathBuf,
    /// Parts: "scan", "sample", "fill", "year" (all when empty).
    pub only: Vec<String>,
    /// Print each measurement as it is taken.
    pub verbose: bool,
    /// Run `perf record` around the first cold scan of the sample, into this directory.
    pub perf_dir: Option<PathBuf>,
    /// A program that runs `--launch RESULT_FILE PROGRAM ARGS…` (see [`launch`]). Without one,
    /// peak RSS is not measured: a child spawned straight from this process inherits this
    /// process's peak RSS as its own (Linux keeps `maxrss` across `exec`).
    pub launcher: Option<PathBuf>,
    /// Before each measurement, wait (up to 2 minutes) until other processes leave the machine
    /// nearly idle, so that their work does not count as slotfill's time.
    pub wait_for_quiet: bool,
    /// Run slotfill on this CPU only (the limit profile's pinned side-by-side runs).
    pub client_cpu: Option<usize>,
}

impl Options {
    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// One measured run of slotfill.
#[derive(Debug, Clone, Default)]
pub struct Measure {
    pub name: String,
    pub wall: f64,
    /// The child's CPU seconds (user, system) and peak RSS in KiB.
    pub user: f64,
    pub sys: f64,
    pub max_rss_kib: u64,
    /// Requests the server saw, over every bucket of the run.
    pub counts: RequestCounts,
    /// CPU seconds SeaweedFS and this process (the proxy, mostly) used meanwhile.
    pub weed_cpu: f64,
    pub harness_cpu: f64,
    /// CPU seconds every other process of the machine used meanwhile (other work on it).
    pub other_cpu: f64,
    pub extra: Vec<(String, Value)>,
}

impl Measure {
    pub fn mb_read(&self) -> f64 {
        self.counts.bytes_out as f64 / 1e6
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "wall_s": round3(self.wall),
            "user_s": round3(self.user),
            "sys_s": round3(self.sys),
            "peak_rss_mib": round3(self.max_rss_kib as f64 / 1024.0),
            "list": self.counts.list,
            "get": self.counts.get,
            "head": self.counts.head,
            "put": self.counts.put,
            "bytes_read": self.counts.bytes_out,
            "mb_per_s": round3(self.mb_read() / self.wall.max(1e-9)),
            "weed_cpu_s": round3(self.weed_cpu),
            "harness_cpu_s": round3(self.harness_cpu),
            "other_cpu_s": round3(self.other_cpu),
        });
        for (k, x) in &self.extra {
            v[k] = x.clone();
        }
        v
    }

    pub fn line(&self) -> String {
        let extra: Vec<String> = self.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{:<34} wall {:>8.2} s | GET {:>6} LIST {:>5} PUT {:>4} | {:>9.1} MB {:>7.1} MB/s | \
             RSS {:>6.1} MiB | cpu slotfill {:>6.2} s weed {:>6.2} s proxy {:>6.2} s other {:>6.2} s | {}",
            self.name,
            self.wall,
            self.counts.get,
            self.counts.list,
            self.counts.put,
            self.mb_read(),
            self.mb_read() / self.wall.max(1e-9),
            self.max_rss_kib as f64 / 1024.0,
            self.user + self.sys,
            self.weed_cpu,
            self.harness_cpu,
            self.other_cpu,
            extra.join(" ")
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Everything a benchmark run measured, and the checks that failed.
#[derive(Debug, Default)]
pub struct Report {
    pub measures: Vec<Measure>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: String) {
        let line = format!("{} {what}", if ok { "ok  " } else { "FAIL" });
        eprintln!("check: {line}");
        if !ok {
            self.failures.push(what);
        }
    }

    fn note(&mut self, verbose: bool, text: String) {
        if verbose {
            eprintln!("{text}");
        }
        self.notes.push(text);
    }
}

// ------------------------------------------------------------------------------------------------
// Datasets
// ------------------------------------------------------------------------------------------------

/// One object to generate.
#[derive(Debug, Clone)]
pub struct Obj {
    pub key: String,
    pub lines: usize,
    pub width: usize,
    pub seed: u64,
    /// The status slotfill should give it.
    pub expect: &'static str,
}

impl Obj {
    pub fn size(&self) -> u64 {
        (self.lines * self.width) as u64
    }
}

/// The rules a dataset is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub min_bytes: u64,
    pub min_lines: u64,
    pub max_lines: u64,
}

impl Rules {
    pub fn scaled(scale: usize) -> Rules {
        Rules {
            min_bytes: MIN_BYTES / scale as u64,
            min_lines: MIN_LINES,
            max_lines: MAX_LINES,
        }
    }

    fn judge(&self, lines: usize, size: u64) -> &'static str {
        if size <= self.min_bytes {
            "too_small"
        } else if lines as u64 <= self.min_lines {
            "too_few_lines"
        } else if lines as u64 >= self.max_lines {
            "too_many_lines"
        } else {
            "ok"
        }
    }

    fn toml(&self) -> String {
        format!(
            "[datasets.jp.rules]\nmin_bytes = {}\nmin_lines = {}\nmax_lines = {}\n",
            self.min_bytes, self.min_lines, self.max_lines
        )
    }
}

/// The key of slot `i` (0..144) of a JST day under `misskey/`.
pub fn key_of(day: NaiveDate, i: usize) -> String {
    let (h, m) = (i / 6, (i % 6) * 10);
    format!(
        "misskey/{}/{h:02}/{}_{h:02}-{m:02}.jsonl",
        day.format("%Y/%m/%d"),
        day.format("%Y-%m-%d")
    )
}

/// `--start`/`--end` of a window of whole days.
fn window_args(first: NaiveDate, days: usize) -> Vec<String> {
    let last = first + chrono::Days::new(days as u64 - 1);
    vec![
        "--start".into(),
        format!("{}T00:00", first.format("%Y-%m-%d")),
        "--end".into(),
        format!("{}T23:50", last.format("%Y-%m-%d")),
    ]
}

fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * z).exp()
}

/// The collector objects of one location over `days`: about 3% missing, 2% too small, 2% too
/// few lines, 1% too many lines, the rest ok with sizes log-normal around 2 MB (tail to 57 MB),
/// all divided by `scale`. Lines keep their real count; their width is divided instead.
pub fn realistic_location(
    rng: &mut StdRng,
    first: NaiveDate,
    days: usize,
    scale: usize,
    rules: Rules,
) -> Vec<Obj> {
    let width = (REAL_LINE / scale).max(MIN_WIDTH);
    let mut out = Vec::new();
    for d in 0..days {
        let day = first + chrono::Days::new(d as u64);
        for i in 0..SLOTS_A_DAY {
            let u: f64 = rng.random();
            let (lines, width) = if u < 0.03 {
                continue; // missing
            } else if u < 0.05 {
                // too small: decided from the listing, never downloaded
                let width = width.min(rules.min_bytes as usize / 10).max(MIN_WIDTH);
                let most = (rules.min_bytes as usize / width).max(1);
                (rng.random_range(1..=most), width)
            } else if u < 0.07 {
                let lines = rng.random_range(20..=MIN_LINES as usize);
                let at_least = rules.min_bytes as usize / lines + 1;
                (lines, width.max(at_least))
            } else if u < 0.08 {
                (
                    rng.random_range(MAX_LINES as usize..=REAL_MAX / REAL_LINE),
                    width,
                )
            } else {
                let real = lognormal(rng, REAL_MEDIAN, REAL_SIGMA).clamp(REAL_MIN, REAL_MAX as f64);
                let lines = (real / REAL_LINE as f64) as usize;
                (
                    lines.clamp(MIN_LINES as usize + 1, MAX_LINES as usize - 1),
                    width,
                )
            };
            let expect = rules.judge(lines, (lines * width) as u64);
            out.push(Obj {
                key: key_of(day, i),
                lines,
                width,
                seed: rng.random(),
                expect,
            });
        }
    }
    out
}

/// A JSON Lines body: `lines` lines of exactly `width` bytes (Japanese and ASCII text).
pub fn body(lines: usize, width: usize, seed: u64) -> Vec<u8> {
    const FILLER: &str = "今日もいい天気ですね☀️ Hello, fediverse! 猫がかわいい🐈 #猫 ";
    let fixed = "{\"id\":\"0123456789abcdef\",\"text\":\"\"}\n".len();
    let room = width.saturating_sub(fixed);
    let mut pad = String::with_capacity(room);
    for c in FILLER.chars().cycle() {
        if pad.len() + c.len_utf8() > room {
            break;
        }
        pad.push(c);
    }
    while pad.len() < room {
        pad.push('x');
    }
    let mut out = Vec::with_capacity(lines * (fixed + room));
    let hex = b"0123456789abcdef";
    for i in 0..lines as u64 {
        let id = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i;
        out.extend_from_slice(b"{\"id\":\"");
        for shift in (0..16).rev() {
            out.push(hex[((id >> (shift * 4)) & 15) as usize]);
        }
        out.extend_from_slice(b"\",\"text\":\"");
        out.extend_from_slice(pad.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
    out
}

/// Uploads objects with `threads` threads, straight to SeaweedFS (neither counted nor faulted).
pub fn upload(server: &S3Server, bucket: &str, objects: &[Obj], threads: usize) -> (f64, u64) {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let bytes = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(o) = objects.get(i) else { break };
                    let data = body(o.lines, o.width, o.seed);
                    bytes.fetch_add(data.len(), Ordering::Relaxed);
                    server.put(bucket, &o.key, &data);
                }
            });
        }
    });
    (
        started.elapsed().as_secs_f64(),
        bytes.load(Ordering::Relaxed) as u64,
    )
}

/// What a default scan of a primary `p` and a backup `b` reads and records: a backup object is
/// downloaded only when the primary holds no valid object for its slot (otherwise it is recorded
/// `unchecked`, listed but not counted), and no object too small by size is downloaded. Returns
/// the objects downloaded, with their location (0 primary, 1 backup), and the expected statuses.
pub fn scan_plan<'a>(
    p: &'a [Obj],
    b: &'a [Obj],
    rules: Rules,
) -> (
    Vec<(usize, &'a Obj)>,
    std::collections::BTreeMap<String, i64>,
) {
    let valid: std::collections::HashSet<&str> = p
        .iter()
        .filter(|o| o.expect == "ok")
        .map(|o| o.key.as_str())
        .collect();
    let mut downloaded = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for (location, o) in p.iter().map(|o| (0, o)).chain(b.iter().map(|o| (1, o))) {
        let counted = o.size() > rules.min_bytes;
        let status = if location == 1 && counted && valid.contains(o.key.as_str()) {
            "unchecked"
        } else {
            if counted {
                downloaded.push((location, o));
            }
            o.expect
        };
        *statuses.entry(status.to_string()).or_insert(0) += 1;
    }
    (downloaded, statuses)
}

fn count_by_status(objects: &[&Obj]) -> std::collections::BTreeMap<String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for o in objects {
        *m.entry(o.expect.to_string()).or_insert(0) += 1;
    }
    m
}

// ------------------------------------------------------------------------------------------------
// Running slotfill
// ------------------------------------------------------------------------------------------------

/// A directory with a config and a catalog.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(config: &str) -> Workspace {
        let dir = tempfile::Builder::new()
            .prefix("slotfill-bench-ws-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("slotfill.toml"), config).expect("write config");
        Workspace { dir }
    }

    pub fn catalog(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("slotfill.db")).expect("open catalog")
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        let v: Option<i64> = self
            .catalog()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        v.unwrap_or(0)
    }

    pub fn statuses(&self) -> std::collections::BTreeMap<String, i64> {
        let c = self.catalog();
        let mut q = c
            .prepare("SELECT status, COUNT(*) FROM objects WHERE gone_at IS NULL GROUP BY status")
            .expect("prepare");
        let rows = q
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("query");
        rows.map(|r| r.expect("row")).collect()
    }
}

/// The config of dataset `jp` on the test server.
pub fn config(
    primary: &str,
    backup: Option<&str>,
    complement: Option<&str>,
    extra: &str,
) -> String {
    let server = S3Server::shared();
    let backup = backup
        .map(|b| format!("backup = [\"s3://{b}/misskey\"]\n"))
        .unwrap_or_default();
    let complement = complement
        .map(|c| format!("complement = \"s3://{c}/misskey_complement\"\n"))
        .unwrap_or_default();
    format!(
        "catalog = \"slotfill.db\"\n[s3]\nendpoint_url = \"{}\"\nregion = \"{}\"\nforce_path_style = true\n\
         [datasets.jp]\nslot_minutes = 10\nutc_offset = \"+09:00\"\n\
         key_template = \"%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl\"\n\
         primary = \"s3://{primary}/misskey\"\n{backup}{complement}{extra}",
        server.endpoint(),
        s3::REGION
    )
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process, in seconds (0 if unreadable).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let get = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    (get(14).unwrap_or(0.0) + get(15).unwrap_or(0.0)) / clock_ticks()
}

/// CPU seconds every process of the machine has used (all cores, from /proc/stat).
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: f64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    busy / clock_ticks()
}

/// Waits until, over one second, the machine is busy less than a quarter of a core (this process
/// and SeaweedFS included); gives up after two minutes.
fn wait_for_quiet() {
    let started = Instant::now();
    for _ in 0..120 {
        let before = machine_cpu();
        std::thread::sleep(std::time::Duration::from_secs(1));
        if machine_cpu() - before < 0.25 {
            break;
        }
    }
    let waited = started.elapsed().as_secs_f64();
    if waited > 1.5 {
        eprintln!("(waited {waited:.0} s for the machine to be quiet)");
    }
}

fn self_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn add_counts(a: RequestCounts, b: RequestCounts) -> RequestCounts {
    RequestCounts {
        list: a.list + b.list,
        get: a.get + b.get,
        head: a.head + b.head,
        put: a.put + b.put,
        delete: a.delete + b.delete,
        other: a.other + b.other,
        bytes_out: a.bytes_out + b.bytes_out,
    }
}

/// The output of one run.
pub struct Output {
    pub measure: Measure,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Starts a child on one CPU only, or wherever the scheduler puts it.
pub trait PinTo {
    fn pin_to(&mut self, cpu: Option<usize>) -> &mut Self;
}

impl PinTo for Command {
    fn pin_to(&mut self, cpu: Option<usize>) -> &mut Self {
        use std::os::unix::process::CommandExt;
        if cpu.is_some() {
            let mask = cpu_mask(cpu);
            // SAFETY: between fork and exec the closure only makes one async-signal-safe
            // system call with a mask copied into it.
            unsafe {
                self.pre_exec(move || {
                    if libc::sched_setaffinity(0, std::mem::size_of_val(&mask), &mask) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        self
    }
}

/// A CPU set of one CPU, or of every CPU.
pub fn cpu_mask(cpu: Option<usize>) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit set; all zeros is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for c in 0..cpus {
        if cpu.is_none_or(|only| only == c) {
            // SAFETY: c is below the set's capacity (CPU_SETSIZE is 1024).
            unsafe { libc::CPU_SET(c, &mut mask) };
        }
    }
    mask
}

/// Runs `slotfill --config … args` in the workspace; measures it (counts over `buckets`).
pub fn run_slotfill(
    opts: &Options,
    ws: &Workspace,
    buckets: &[&str],
    name: &str,
    args: &[String],
    perf: Option<&Path>,
) -> Output {
    let server = S3Server::shared();
    for b in buckets {
        server.reset_counts(b);
    }
    let (out_path, err_path) = (ws.dir.path().join("stdout"), ws.dir.path().join("stderr"));
    let stdout = std::fs::File::create(&out_path).expect("stdout file");
    let stderr = std::fs::File::create(&err_path).expect("stderr file");
    let result_path = ws.dir.path().join("rusage");
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(data) = perf {
        argv.extend(["perf", "record", "-F", "499", "-g", "-o"].map(Into::into));
        argv.push(data.into());
        argv.push("--".into());
    }
    argv.push(opts.slotfill.clone().into());
    let mut command = match &opts.launcher {
        Some(launcher) => {
            let mut c = Command::new(launcher);
            c.arg("--launch").arg(&result_path).args(&argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    command
        .pin_to(opts.client_cpu)
        .arg("--config")
        .arg(ws.dir.path().join("slotfill.toml"))
        .args(args)
        .current_dir(ws.dir.path())
        .env_remove("RUST_LOG")
        .env_remove("MISSKEY_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .env("AWS_REGION", s3::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", ws.dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if opts.wait_for_quiet {
        wait_for_quiet();
    }
    let run = ChildRun::run(&mut command, "slotfill");
    let mut code = exit_code(run.status);
    let (mut user, mut sys) = run.cpu();
    // Not measurable without a launcher (see Options::launcher).
    let mut max_rss_kib = 0;
    if opts.launcher.is_some() {
        // What the launcher measured of its child.
        let text = std::fs::read_to_string(&result_path).unwrap_or_default();
        let f: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert_eq!(
            f.len(),
            4,
            "launcher result {text:?} (launcher exit {code})"
        );
        (user, sys, max_rss_kib, code) = (f[0], f[1], f[2] as u64, f[3] as i32);
    }
    let counts = buckets
        .iter()
        .map(|b| server.counts(b))
        .fold(RequestCounts::default(), add_counts);
    let measure = Measure {
        counts,
        ..run.measure(name, (user, sys), max_rss_kib)
    };
    let output = Output {
        measure,
        code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    if opts.verbose {
        eprintln!("$ slotfill {}", args.join(" "));
    }
    output
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// Waits for a child with wait4: its wait status (see [`exit_code`]) and its resource usage.
#[allow(clippy::zombie_processes)] // reaped by wait4, for its rusage
fn wait4(child: std::process::Child) -> std::io::Result<(i32, libc::rusage)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waits for our own child and fills the structs we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(std::io::Error::last_os_error());
    }
    Ok((status, usage))
}

/// A child run to its end, with what SeaweedFS, this process and the whole machine did meanwhile.
pub struct ChildRun {
    /// The wait status (see [`exit_code`]).
    pub status: i32,
    usage: libc::rusage,
    wall: f64,
    weed_cpu: f64,
    harness_cpu: f64,
    machine_cpu: f64,
}

impl ChildRun {
    /// Spawns `command` and waits for it.
    pub fn run(command: &mut Command, what: &str) -> ChildRun {
        let server = S3Server::shared();
        let (weed0, self0, all0) = (process_cpu(server.weed_pid()), self_cpu(), machine_cpu());
        let started = Instant::now();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (status, usage) = wait4(child).unwrap_or_else(|e| panic!("wait4 for {what}: {e}"));
        let wall = started.elapsed().as_secs_f64();
        let (weed1, self1, all1) = (process_cpu(server.weed_pid()), self_cpu(), machine_cpu());
        ChildRun {
            status,
            usage,
            wall,
            weed_cpu: weed1 - weed0,
            harness_cpu: self1 - self0,
            machine_cpu: all1 - all0,
        }
    }

    /// The child's CPU seconds (user, system) as wait4 saw them.
    pub fn cpu(&self) -> (f64, f64) {
        (tv(self.usage.ru_utime), tv(self.usage.ru_stime))
    }

    /// The child's peak RSS in KiB as wait4 saw it.
    pub fn max_rss_kib(&self) -> u64 {
        self.usage.ru_maxrss as u64
    }

    /// The run as a measure, with the child's CPU seconds and peak RSS as given (a launcher
    /// may have measured them); the rest of the machine's CPU is what neither the child,
    /// SeaweedFS nor this process used.
    pub fn measure(&self, name: &str, (user, sys): (f64, f64), max_rss_kib: u64) -> Measure {
        Measure {
            name: name.to_string(),
            wall: self.wall,
            user,
            sys,
            max_rss_kib,
            weed_cpu: self.weed_cpu,
            harness_cpu: self.harness_cpu,
            other_cpu: (self.machine_cpu - user - sys - self.weed_cpu - self.harness_cpu).max(0.0),
            ..Default::default()
        }
    }
}

/// The launcher: runs `argv` as a child, waits for it, and writes its CPU seconds (user, system),
/// peak RSS (KiB) and exit code to `result`. Run as a fresh process, its own memory is small, so
/// the child's peak RSS is the child's alone.
pub fn launch(result: &Path, argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("--launch RESULT_FILE PROGRAM ARGS...");
        return 2;
    };
    let child = match Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot run {program}: {e}");
            return 2;
        }
    };
    let (status, usage) = match wait4(child) {
        Ok(waited) => waited,
        Err(e) => {
            eprintln!("wait4: {e}");
            return 2;
        }
    };
    let line = format!(
        "{} {} {} {}\n",
        tv(usage.ru_utime),
        tv(usage.ru_stime),
        usage.ru_maxrss,
        exit_code(status)
    );
    match std::fs::write(result, line) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("write {}: {e}", result.display());
            2
        }
    }
}

fn record(report: &mut Report, opts: &Options, out: &Output, expected_code: i32) {
    report.check(
        out.code == expected_code,
        format!(
            "{}: exit code {} (expected {expected_code}){}",
            out.measure.name,
            out.code,
            if out.code == expected_code {
                String::new()
            } else {
                format!("\nstdout:\n{}\nstderr:\n{}", out.stdout, tail(&out.stderr))
            }
        ),
    );
    if opts.verbose {
        println!("{}", out.measure.line());
    }
    report.measures.push(out.measure.clone());
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// ------------------------------------------------------------------------------------------------
// The parts
// ------------------------------------------------------------------------------------------------

/// Runs every part the options select.
pub fn run(profile: &Profile, opts: &Options) -> Report {
    let mut report = Report::default();
    let server = S3Server::shared();
    report.note(
        opts.verbose,
        format!(
            "profile {}: S3 at {} (SeaweedFS pid {}), slotfill {}",
            profile.name,
            server.endpoint(),
            server.weed_pid(),
            opts.slotfill.display()
        ),
    );
    if profile.name == "limit" {
        if opts.wants("limit") {
            limit::limit_part(profile, opts, &mut report);
        }
        if opts.wants("calls") {
            calls::calls_part(opts, &mut report);
        }
        return report;
    }
    if opts.wants("scan") {
        scan_part(profile, opts, &mut report);
    }
    if opts.wants("sample") && profile.sample_days > 0 {
        sample_part(profile, opts, &mut report);
    }
    if opts.wants("fill") && profile.fill_slots > 0 {
        fill_part(profile, opts, &mut report);
    }
    if opts.wants("year") && profile.year_days > 0 {
        year_part(profile, opts, &mut report);
    }
    report
}

/// The quarter's dataset (same seed every run), uploaded to fresh buckets.
struct Quarter {
    rules: Rules,
    primary: String,
    backup: String,
    p: Vec<Obj>,
    b: Vec<Obj>,
    upload_seconds: f64,
    upload_bytes: u64,
}

fn quarter(profile: &Profile) -> Quarter {
    let server = S3Server::shared();
    let rules = Rules::scaled(profile.scale);
    let mut rng = StdRng::seed_from_u64(20250501);
    let (primary, backup) = (
        server.new_bucket("bench-primary"),
        server.new_bucket("bench-backup"),
    );
    let p = realistic_location(
        &mut rng,
        profile.first_day,
        profile.days,
        profile.scale,
        rules,
    );
    let b = realistic_location(
        &mut rng,
        profile.first_day,
        profile.days,
        profile.scale,
        rules,
    );
    let (t1, bytes1) = upload(server, &primary, &p, profile.upload_threads);
    let (t2, bytes2) = upload(server, &backup, &b, profile.upload_threads);
    Quarter {
        rules,
        primary,
        backup,
        p,
        b,
        upload_seconds: t1 + t2,
        upload_bytes: bytes1 + bytes2,
    }
}

/// The quarter: cold scans at each concurrency, a warm rescan, a rescan after 1% changed.
fn scan_part(profile: &Profile, opts: &Options, report: &mut Report) {
    let server = S3Server::shared();
    let Quarter {
        rules,
        primary,
        backup,
        p,
        b,
        upload_seconds,
        upload_bytes,
    } = quarter(profile);
    let all: Vec<&Obj> = p.iter().chain(b.iter()).collect();
    let (downloaded, expected_statuses) = scan_plan(&p, &b, rules);
    let expected_gets = downloaded.len() as u64;
    let prefixes = (profile.days * 2) as u64;
    report.note(
        opts.verbose,
        format!(
            "scan dataset: {} days x {} slots x 2 locations: {} objects, {:.1} MB (1/{} of real \
             sizes, lines {} B), uploaded in {:.1} s; expected statuses {:?}",
            profile.days,
            SLOTS_A_DAY,
            all.len(),
            upload_bytes as f64 / 1e6,
            profile.scale,
            (REAL_LINE / profile.scale).max(MIN_WIDTH),
            upload_seconds,
            count_by_status(&all)
        ),
    );
    let cfg = config(&primary, Some(&backup), None, &rules.toml());
    let window = window_args(profile.first_day, profile.days);
    let buckets = [primary.as_str(), backup.as_str()];
    let scan_args = |c: usize| {
        let mut a = vec!["scan".to_string(), "--dataset".into(), "jp".into()];
        a.extend(window.iter().cloned());
        a.extend(["--concurrency".to_string(), c.to_string()]);
        a
    };
    let mut last_ws = None;
    for &c in &profile.concurrencies {
        let ws = Workspace::new(&cfg);
        let mut out = run_slotfill(
            opts,
            &ws,
            &buckets,
            &format!("cold scan c={c}"),
            &scan_args(c),
            None,
        );
        let m = &mut out.measure;
        m.extra.push(("objects".into(), json!(all.len())));
        m.extra.push(("scale".into(), json!(profile.scale)));
        record(report, opts, &out, 0);
        let m = &out.measure;
        report.check(
            m.counts.get == expected_gets,
            format!(
                "cold scan c={c}: {} GETs = the {expected_gets} objects above min_bytes that can \
                 decide their slot",
                m.counts.get
            ),
        );
        report.check(
            m.counts.list == prefixes,
            format!(
                "cold scan c={c}: {} LISTs = {prefixes} day prefixes x locations",
                m.counts.list
            ),
        );
        let statuses = ws.statuses();
        report.check(
            statuses == expected_statuses,
            format!(
                "cold scan c={c}: object statuses {statuses:?} as generated ({expected_statuses:?})"
            ),
        );
        last_ws = Some(ws);
    }
    let ws = last_ws.unwrap_or_else(|| {
        let ws = Workspace::new(&cfg);
        let out = run_slotfill(opts, &ws, &buckets, "cold scan", &scan_args(8), None);
        record(report, opts, &out, 0);
        ws
    });

    let out = run_slotfill(opts, &ws, &buckets, "warm rescan c=8", &scan_args(8), None);
    record(report, opts, &out, 0);
    let m = &out.measure;
    report.check(
        m.counts.get == 0,
        format!("warm rescan: {} GETs (target 0)", m.counts.get),
    );
    report.check(
        m.counts.list <= prefixes,
        format!(
            "warm rescan: {} LISTs for {prefixes} day prefixes x locations (target <= 1 each)",
            m.counts.list
        ),
    );

    // Change 1% of the objects that get downloaded (new content, new ETag), then rescan.
    let candidates: Vec<(&str, &Obj)> = downloaded
        .iter()
        .map(|(location, o)| (buckets[*location], *o))
        .collect();
    let n = ((all.len() as f64 * profile.changed_fraction).round() as usize).max(5);
    let step = (candidates.len() / n).max(1);
    let changed: Vec<(&str, Obj)> = candidates
        .iter()
        .step_by(step)
        .take(n)
        .map(|(bucket, o)| {
            let mut o = (*o).clone();
            o.seed = o.seed.wrapping_add(1);
            (*bucket, o)
        })
        .collect();
    for (bucket, o) in &changed {
        server.put(bucket, &o.key, &body(o.lines, o.width, o.seed));
    }
    let changed_bytes: u64 = changed.iter().map(|(_, o)| o.size()).sum();
    let mut out = run_slotfill(
        opts,
        &ws,
        &buckets,
        "rescan after 1% changed c=8",
        &scan_args(8),
        None,
    );
    out.measure
        .extra
        .push(("changed".into(), json!(changed.len())));
    record(report, opts, &out, 0);
    let m = &out.measure;
    report.check(
        m.counts.get == changed.len() as u64,
        format!(
            "rescan after changes: {} GETs = the {} changed objects",
            m.counts.get,
            changed.len()
        ),
    );
    report.check(
        m.counts.bytes_out <= changed_bytes,
        format!(
            "rescan after changes: {} bytes read <= the changed objects' {changed_bytes}",
            m.counts.bytes_out
        ),
    );
}

/// Generates the quarter's dataset and keeps the server up for manual runs (profilers): writes
/// `slotfill.toml` into `dir`, prints the window, and returns once `dir/stop` exists (or after
/// two hours).
pub fn serve(profile: &Profile, dir: &Path) {
    let Quarter {
        rules,
        primary,
        backup,
        ..
    } = quarter(profile);
    let cfg = config(&primary, Some(&backup), None, &rules.toml());
    let path = dir.join("slotfill.toml");
    std::fs::write(&path, cfg).expect("write config");
    let window = window_args(profile.first_day, profile.days).join(" ");
    println!(
        "serving: AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={} slotfill --config {}          scan -d jp {window}
touch {} to stop",
        s3::ACCESS_KEY,
        s3::SECRET_KEY,
        s3::REGION,
        path.display(),
        dir.join("stop").display()
    );
    for _ in 0..7_200 {
        if dir.join("stop").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A sample at the real size distribution, to measure MB/s and memory honestly.
fn sample_part(profile: &Profile, opts: &Options, report: &mut Report) {
    let server = S3Server::shared();
    let rules = Rules::scaled(1);
    let mut rng = StdRng::seed_from_u64(20250801);
    let bucket = server.new_bucket("bench-sample");
    let first = date(2025, 8, 1);
    let mut objects = realistic_location(&mut rng, first, profile.sample_days, 1, rules);
    // The largest objects: half ok (long lines, read whole), half too many lines (read to the cap).
    let n = objects.len();
    for k in 0..profile.sample_largest.min(n) {
        let o = &mut objects[(k * 37 + 11) % n];
        (o.lines, o.width) = if k % 2 == 0 {
            (9_000, REAL_MAX / 9_000)
        } else {
            (REAL_MAX / REAL_LINE, REAL_LINE)
        };
        o.expect = rules.judge(o.lines, o.size());
    }
    let (t, bytes) = upload(server, &bucket, &objects, profile.upload_threads.min(4));
    let refs: Vec<&Obj> = objects.iter().collect();
    let sizes = {
        let mut s: Vec<u64> = objects.iter().map(Obj::size).collect();
        s.sort_unstable();
        s
    };
    report.note(
        opts.verbose,
        format!(
            "sample (real sizes): {} days, {} objects, {:.1} MB (median {:.2} MB, max {:.1} MB), \
             uploaded in {:.1} s; statuses {:?}",
            profile.sample_days,
            objects.len(),
            bytes as f64 / 1e6,
            sizes[sizes.len() / 2] as f64 / 1e6,
            *sizes.last().unwrap_or(&0) as f64 / 1e6,
            t,
            count_by_status(&refs)
        ),
    );
    let cfg = config(&bucket, None, None, &rules.toml());
    let window = window_args(first, profile.sample_days);
    for (i, &c) in profile.sample_concurrencies.iter().enumerate() {
        let ws = Workspace::new(&cfg);
        let mut args = vec!["scan".to_string(), "--dataset".into(), "jp".into()];
        args.extend(window.iter().cloned());
        args.extend(["--concurrency".to_string(), c.to_string()]);
        let out = run_slotfill(
            opts,
            &ws,
            &[&bucket],
            &format!("sample cold scan c={c}"),
            &args,
            None,
        );
        record(report, opts, &out, 0);
        let statuses = ws.statuses();
        report.check(
            statuses == count_by_status(&refs),
            format!("sample c={c}: statuses {statuses:?} as generated"),
        );
        if let (0, Some(dir)) = (i, &opts.perf_dir) {
            // The same scan again under perf (its times are not the measurement).
            let ws = Workspace::new(&cfg);
            let data = dir.join(format!("sample-scan-c{c}.perf.data"));
            let out = run_slotfill(
                opts,
                &ws,
                &[&bucket],
                &format!("sample cold scan c={c} under perf"),
                &args,
                Some(&data),
            );
            record(report, opts, &out, 0);
        }
    }
}

/// Fill of many missing slots against the emulator.
fn fill_part(profile: &Profile, opts: &Options, report: &mut Report) {
    let server = S3Server::shared();
    let (primary, complement) = (
        server.new_bucket("bench-fill-primary"),
        server.new_bucket("bench-fill-complement"),
    );
    let emulator = MisskeyEmulator::start(EmulatorConfig::default());
    let first_day = date(2025, 8, 1);
    // 2025-08-01T00:00+09:00
    let first_slot = first_day
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
        - 9 * 3600;
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut seed = 0u64;
    for s in 0..profile.fill_slots as i64 {
        let start_ms = (first_slot + s * 600) * 1000;
        let notes = (0..profile.fill_notes).map(|_| {
            seed += 1;
            let ms = start_ms + rng.random_range(0..600_000);
            NoteSpec::public_local(ms, &sample_text(seed))
        });
        emulator.add_notes(notes);
    }
    let last_slot = first_slot + (profile.fill_slots as i64 - 1) * 600;
    let local = |slot: i64| {
        chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
            .expect("time")
            .naive_utc()
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    report.note(
        opts.verbose,
        format!(
            "fill: {} slots x {} notes at the emulator ({} notes, set up in {:.1} s)",
            profile.fill_slots,
            profile.fill_notes,
            emulator.note_count(),
            started.elapsed().as_secs_f64()
        ),
    );
    let source = format!(
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{}\"\nmode = \"search\"\nid_scheme = \"auto\"\n",
        emulator.base_url()
    );
    let window = [
        "--start".to_string(),
        local(first_slot),
        "--end".into(),
        local(last_slot),
    ];
    let per_slot = profile.fill_notes.div_ceil(100) as i64 + 1;
    for &c in &profile.fill_concurrency {
        // A fresh complement bucket per run, so every run fills every slot.
        let complement = if c == profile.fill_concurrency[0] {
            complement.clone()
        } else {
            server.new_bucket("bench-fill-complement")
        };
        let cfg = config(&primary, None, Some(&complement), &source);
        let ws = Workspace::new(&cfg);
        let mut scan = vec!["scan".to_string(), "--dataset".into(), "jp".into()];
        scan.extend(window.iter().cloned());
        let out = run_slotfill(opts, &ws, &[&primary], "fill: scan first", &scan, None);
        report.check(out.code == 0, format!("fill: scan exit code {}", out.code));
        let calls_before = emulator.calls();
        let mut fill = vec!["fill".to_string(), "--dataset".into(), "jp".into()];
        fill.extend(window.iter().cloned());
        fill.extend(["--concurrency".to_string(), c.to_string()]);
        let mut out = run_slotfill(
            opts,
            &ws,
            &[&primary, &complement],
            &format!("fill {} slots c={c}", profile.fill_slots),
            &fill,
            None,
        );
        let calls = emulator.calls() - calls_before;
        let filled = ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'filled'");
        let notes = ws.query_i64("SELECT SUM(notes) FROM fill_attempts WHERE outcome = 'filled'");
        let max_calls = ws.query_i64("SELECT MAX(origin_calls) FROM fill_attempts");
        let over = ws.query_i64(
            "SELECT COUNT(*) FROM fill_attempts WHERE origin_calls > (notes + 99) / 100 + 1",
        );
        let m = &mut out.measure;
        let slots = profile.fill_slots as f64;
        m.extra.extend([
            ("origin_calls".to_string(), json!(calls)),
            ("calls_per_slot".into(), json!(round3(calls as f64 / slots))),
            ("max_calls_one_slot".into(), json!(max_calls)),
            ("target_per_slot".into(), json!(per_slot)),
            ("notes".into(), json!(notes)),
            ("notes_per_s".into(), json!((notes as f64 / m.wall).round())),
        ]);
        record(report, opts, &out, 0);
        report.check(
            filled == profile.fill_slots as i64,
            format!(
                "fill c={c}: {filled} slots filled of {}",
                profile.fill_slots
            ),
        );
        report.check(
            notes == (profile.fill_slots * profile.fill_notes) as i64,
            format!("fill c={c}: {notes} notes written"),
        );
        // Two one-off probes (id scheme, bound comparison) come on top of the slots; the slots
        // that start together before the first answer each make them.
        let budget = per_slot as u64 * profile.fill_slots as u64 + 2 * c as u64;
        report.check(
            calls <= budget,
            format!(
                "fill c={c}: {calls} origin calls <= {per_slot} a slot + 2 probes x {c} = {budget}"
            ),
        );
        report.check(
            over <= c as i64,
            format!("fill c={c}: {over} slots took more than ceil(notes/100)+1 calls (the probes)"),
        );
    }
}

/// Memory over a 1-year window: tiny objects everywhere but a few of the largest.
fn year_part(profile: &Profile, opts: &Options, report: &mut Report) {
    let server = S3Server::shared();
    let rules = Rules {
        min_bytes: 1_000,
        min_lines: 10,
        max_lines: MAX_LINES,
    };
    let bucket = server.new_bucket("bench-year");
    let first = date(2024, 8, 1);
    let mut rng = StdRng::seed_from_u64(2024);
    let mut objects = Vec::new();
    for d in 0..profile.year_days {
        let day = first + chrono::Days::new(d as u64);
        for i in 0..SLOTS_A_DAY {
            if rng.random::<f64>() < 0.03 {
                continue;
            }
            objects.push(Obj {
                key: key_of(day, i),
                lines: 12,
                width: 100,
                seed: rng.random(),
                expect: "ok",
            });
        }
    }
    let n = objects.len();
    for k in 0..profile.year_largest.min(n) {
        let o = &mut objects[(k * 7_919 + 101) % n];
        (o.lines, o.width) = if k % 2 == 0 {
            (9_000, REAL_MAX / 9_000)
        } else {
            (REAL_MAX / REAL_LINE, REAL_LINE)
        };
        o.expect = rules.judge(o.lines, o.size());
    }
    let (t, bytes) = upload(server, &bucket, &objects, profile.upload_threads);
    let refs: Vec<&Obj> = objects.iter().collect();
    report.note(
        opts.verbose,
        format!(
            "year: {} days ({} slots), {} objects, {:.1} MB ({} of them 57 MB), uploaded in {:.1} s",
            profile.year_days,
            profile.year_days * SLOTS_A_DAY,
            objects.len(),
            bytes as f64 / 1e6,
            profile.year_largest,
            t
        ),
    );
    let cfg = config(&bucket, None, None, &rules.toml());
    let window = window_args(first, profile.year_days);
    for &c in &profile.year_concurrencies {
        let ws = Workspace::new(&cfg);
        let mut args = vec!["scan".to_string(), "--dataset".into(), "jp".into()];
        args.extend(window.iter().cloned());
        args.extend(["--concurrency".to_string(), c.to_string()]);
        let mut out = run_slotfill(
            opts,
            &ws,
            &[&bucket],
            &format!("year cold scan c={c}"),
            &args,
            None,
        );
        let slots = ws.query_i64("SELECT COUNT(*) FROM slots");
        out.measure.extra.push(("slots".into(), json!(slots)));
        record(report, opts, &out, 0);
        report.check(
            slots == (profile.year_days * SLOTS_A_DAY) as i64,
            format!("year c={c}: {slots} slots catalogued"),
        );
        let statuses = ws.statuses();
        report.check(
            statuses == count_by_status(&refs),
            format!("year c={c}: statuses {statuses:?} as generated"),
        );
        // A warm rescan and `gaps` over the whole year: memory flat in slots too.
        let mut out = run_slotfill(
            opts,
            &ws,
            &[&bucket],
            &format!("year warm rescan c={c}"),
            &args,
            None,
        );
        out.measure.extra.push(("slots".into(), json!(slots)));
        record(report, opts, &out, 0);
        report.check(
            out.measure.counts.get == 0,
            format!("year warm rescan: {} GETs", out.measure.counts.get),
        );
        let mut gaps = vec!["gaps".to_string(), "--dataset".into(), "jp".into()];
        gaps.extend(window.iter().cloned());
        gaps.extend(["--format".to_string(), "csv".into()]);
        let out = run_slotfill(
            opts,
            &ws,
            &[&bucket],
            "year gaps (catalog only)",
            &gaps,
            None,
        );
        record(report, opts, &out, 0);
    }
}
