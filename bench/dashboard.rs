//! `bench/run.sh --profile dashboard`: how long `slotfill serve`'s pages take
//! and how big they are (issue 21): a dataset of 5-minute slots (60 days) and
//! one of a year of 10-minute slots, on local directories, about 2% of their
//! slots in gaps of a few slots to a day. The last line is one JSON object.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::serve_proc::{ServeProc, http, windowed, work_dir};

pub struct DashboardOptions {
    pub slotfill: PathBuf,
    pub requests: usize,
}

/// 2024-08-01T00:00:00+09:00
const FIRST: i64 = 1_722_438_000;

pub fn run(opts: &DashboardOptions) -> Value {
    let (dir, config) = work_dir("slotfill-dashboard-");
    let five = dir.path().join("five");
    let year = dir.path().join("year");
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    let files = write_dataset(&five, 5, 60, &mut rng) + write_dataset(&year, 10, 365, &mut rng);
    eprintln!(
        "dashboard: {files} objects written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(&config, dashboard_config(&five, &year)).expect("config");
    let scanned = Instant::now();
    scan(&opts.slotfill, &config, "five", 5, 60);
    scan(&opts.slotfill, &config, "year", 10, 365);
    eprintln!(
        "dashboard: scanned in {:.1} s",
        scanned.elapsed().as_secs_f64()
    );
    let env = vec![(
        "SLOTFILL_NOW".to_string(),
        "2025-09-01T00:00:00+09:00".to_string(),
    )];
    let serve = ServeProc::start(&opts.slotfill, &config, &env, &dir.path().join("serve.log"));
    let mut out = json!({});
    for (name, path) in [
        ("overview", "/"),
        ("five_minute_dataset", "/datasets/five"),
        ("year_dataset", "/datasets/year"),
        (
            "year_dataset_older_fortnight",
            "/datasets/year?end=2025-01-15",
        ),
        (
            "gap_period_detail",
            "/datasets/year/slots?start=2025-03-01T00:00&end=2025-03-02T23:50",
        ),
        ("run_page", "/runs/2"),
    ] {
        out[name] = measure(&serve.addr, path, opts.requests);
    }
    out["objects"] = json!(files);
    out
}

/// Objects of `days` days of `minutes`-minute slots, ~2% missing in runs.
fn write_dataset(root: &Path, minutes: i64, days: i64, rng: &mut StdRng) -> usize {
    let width = minutes * 60;
    let slots = days * 1440 / minutes;
    let (mut written, mut gap_left) = (0, 0);
    for i in 0..slots {
        if gap_left == 0 && rng.random::<f64>() < 0.002 {
            gap_left = rng.random_range(1..(1440 / minutes).max(2));
        }
        if gap_left > 0 {
            gap_left -= 1;
            continue;
        }
        let path = root.join(key(FIRST + i * width));
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(
            &path,
            "{\"id\":\"a\",\"t\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n".repeat(8),
        )
        .expect("write");
        written += 1;
    }
    written
}

fn key(slot: i64) -> String {
    let t = chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
        .expect("time")
        .naive_utc();
    t.format("%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl").to_string()
}

fn dashboard_config(five: &Path, year: &Path) -> String {
    let dataset = |name: &str, minutes: i64, dir: &Path| {
        format!(
            "[datasets.{name}]\nslot_minutes = {minutes}\nutc_offset = \"+09:00\"\nprimary = \"file://{}\"\n\
             [datasets.{name}.rules]\nmin_bytes = 200\nmin_lines = 3\nmax_lines = 40\n",
            dir.display()
        )
    };
    format!(
        "catalog = \"slotfill.db\"\n{}{}",
        dataset("five", 5, five),
        dataset("year", 10, year)
    )
}

fn scan(slotfill: &Path, config: &Path, dataset: &str, minutes: i64, days: i64) {
    let last = FIRST + days * 86_400 - minutes * 60;
    let now = "2025-09-01T00:00:00+09:00";
    let out = windowed(slotfill, config, "scan", dataset, (FIRST, last), now);
    assert!(
        out.status.success(),
        "scan {dataset}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `requests` GETs of `path`: the status, the page's size and the times.
fn measure(addr: &str, path: &str, requests: usize) -> Value {
    let mut times = Vec::new();
    let (mut status, mut bytes) = (0, 0);
    for _ in 0..requests.max(1) {
        let started = Instant::now();
        let (s, body) = http(addr, "GET", path, b"").expect("an answer");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        (status, bytes) = (s, body.len());
    }
    times.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let i = ((times.len() as f64 - 1.0) * p).round() as usize;
        (times[i] * 10.0).round() / 10.0
    };
    eprintln!(
        "dashboard: {path}: {status}, {bytes} bytes, p50 {} ms, max {} ms",
        at(0.5),
        at(1.0)
    );
    json!({"status": status, "bytes": bytes, "p50_ms": at(0.5), "max_ms": at(1.0)})
}
