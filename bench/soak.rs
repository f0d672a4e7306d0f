//! `bench/run.sh --profile soak`: a month of `slotfill serve` under collector
//! chaos, in minutes (issue 21).
//!
//! A clock that runs `speed` times faster than real time is shared by every
//! party (SLOTFILL_NOW / SLOTFILL_CLOCK_SINCE / SLOTFILL_CLOCK_SPEED). On it,
//! [`world`] runs a collector that writes one object per 10-minute slot to
//! SeaweedFS and a backup that writes 25 minutes late, both dying for minutes
//! to hours and sometimes writing short or cut objects, each write told to
//! serve as an S3 event; a Misskey emulator holding every slot's notes, with
//! outages (503 pages) and 429 storms; and a webhook. serve runs the
//! freshness watch (grace 15 min, checks every 5 min, fill on), a nightly
//! schedule (03:15, the 3 days to 1 day ago) and takes the events; it is
//! killed (SIGKILL or SIGTERM) and restarted at random. Chaos stops 3.5 days
//! before the end, so the last nightly runs cover it. Then `slotfill verify`
//! checks the whole month against the buckets.
//!
//! The last line printed is one JSON object (the contract of issue 21; the
//! figures are explained in docs/BENCHMARKS.md).

#[path = "soak_world.rs"]
mod world;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use super::misskey::{EmulatorConfig, MisskeyEmulator, NoteSpec};
use super::s3::{self, S3Server};
use super::serve_proc::{ServeProc, windowed, work_dir};
use world::{Clock, Collectors, EventSender, Kill, Plan, Receiver, SLOT};

pub struct SoakOptions {
    pub slotfill: PathBuf,
    /// Simulated days (the last 3.5 calm).
    pub days: f64,
    /// Simulated seconds per real second.
    pub speed: f64,
    pub seed: u64,
}

const GRACE_MIN: f64 = 15.0;
const CHECK_MIN: f64 = 5.0;
const CALM_DAYS: f64 = 3.5;
const NOTES_PER_SLOT: i64 = 5;

pub fn run(opts: &SoakOptions) -> Value {
    let started = Instant::now();
    let server = S3Server::shared();
    let (primary, backup, complement) = (
        server.new_bucket("soak-primary"),
        server.new_bucket("soak-backup"),
        server.new_bucket("soak-complement"),
    );
    // 2025-09-01T00:00:00+09:00
    let t0 = 1_756_652_400;
    let end = t0 + (opts.days * 86_400.0) as i64;
    let calm = end - (CALM_DAYS * 86_400.0) as i64;
    let plan = Arc::new(Plan::draw(opts.seed, t0, calm));
    let origin = MisskeyEmulator::start(EmulatorConfig::default());
    load_notes(&origin, &plan, t0, end);
    eprintln!(
        "soak: {} days at {}x ({:.0} s real), seed {}: {} primary outages, {} backup outages, {} short/cut objects, {} origin faults, {} kills",
        opts.days,
        opts.speed,
        opts.days * 86_400.0 / opts.speed,
        opts.seed,
        plan.primary_down.len(),
        plan.backup_down.len(),
        plan.truncated.len(),
        plan.origin.len(),
        plan.kills.len()
    );

    let (dir, config) = work_dir("slotfill-soak-");
    let clock = Clock::start(t0 - 3600, opts.speed);
    let receiver = Receiver::start(clock);
    std::fs::write(
        &config,
        soak_config(
            &primary,
            &backup,
            &complement,
            &origin.base_url(),
            &receiver.url,
        ),
    )
    .expect("write the config");
    let log = dir.path().join("serve.log");

    let (events_tx, events_rx) = std::sync::mpsc::channel();
    let sender = Arc::new(EventSender {
        addr: Arc::new(Mutex::new(String::new())),
        delivered: Default::default(),
        retried: Default::default(),
        dropped: Default::default(),
    });
    let collectors = Collectors {
        primary: primary.clone(),
        backup: backup.clone(),
        prefix: "misskey".to_string(),
        plan: plan.clone(),
        events: events_tx,
    };
    let (written, life) = std::thread::scope(|scope| {
        let sending = sender.clone();
        scope.spawn(move || sending.run(clock, events_rx));
        // The collectors own the events' sender: when they stop, the queue drains and ends.
        let writing = scope.spawn(move || collectors.run(clock, t0, calm, end));
        scope.spawn(|| world::origin_chaos(clock, &plan, &origin, calm));
        let life = life_of_serve(opts, clock, &plan, &config, &log, &sender.addr, t0, end);
        (writing.join().expect("the collectors"), life)
    });
    let verify = verify(opts, &config, t0, end);
    let report = Report {
        catalog: rusqlite::Connection::open(dir.path().join("slotfill.db")).expect("catalog"),
        posts: receiver.posts.lock().unwrap().clone(),
    };
    let mut out = report.figures(t0, end);
    let obj = out.as_object_mut().expect("object");
    obj.insert("restarts".into(), json!(life.kills.0 + life.kills.1));
    obj.insert("kills_sigkill".into(), json!(life.kills.0));
    obj.insert("kills_sigterm".into(), json!(life.kills.1));
    obj.insert("sigterm_exit_not_0".into(), json!(life.bad_exits));
    let (first, last) = (life.samples.first(), life.samples.last());
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    obj.insert("rss_first_mib".into(), json!(first.map(|s| mib(s.1))));
    obj.insert("rss_last_mib".into(), json!(last.map(|s| mib(s.1))));
    obj.insert(
        "rss_max_mib".into(),
        json!(life.samples.iter().map(|s| mib(s.1)).fold(0.0, f64::max)),
    );
    obj.insert("fds_first".into(), json!(first.map(|s| s.2)));
    obj.insert("fds_last".into(), json!(last.map(|s| s.2)));
    obj.insert(
        "fds_max".into(),
        json!(life.samples.iter().map(|s| s.2).max()),
    );
    // Each day's noon sample: a restarted process starts lower again.
    let daily: Vec<f64> = life.samples.iter().map(|s| mib(s.1)).collect();
    obj.insert("rss_daily_mib".into(), json!(daily));
    let fds: Vec<usize> = life.samples.iter().map(|s| s.2).collect();
    obj.insert("fds_daily".into(), json!(fds));
    obj.insert(
        "primary_missed_slots".into(),
        json!(written.primary_missed.len()),
    );
    obj.insert("episodes".into(), json!(episodes(&written.primary_missed)));
    obj.insert(
        "events_delivered".into(),
        json!(sender.delivered.load(Ordering::Relaxed)),
    );
    obj.insert(
        "events_dropped".into(),
        json!(sender.dropped.load(Ordering::Relaxed)),
    );
    obj.insert(
        "origin_outages".into(),
        json!(
            plan.origin
                .iter()
                .filter(|o| o.2 == world::OriginFault::Outage)
                .count()
        ),
    );
    obj.insert(
        "origin_storms".into(),
        json!(
            plan.origin
                .iter()
                .filter(|o| o.2 == world::OriginFault::Storm)
                .count()
        ),
    );
    obj.insert("verify_exit".into(), json!(verify));
    obj.insert("origin_calls".into(), json!(origin.calls()));
    obj.insert("speed".into(), json!(opts.speed));
    obj.insert("seed".into(), json!(opts.seed));
    obj.insert("real_seconds".into(), json!(started.elapsed().as_secs()));
    drop(dir);
    out
}

fn soak_config(primary: &str, backup: &str, complement: &str, origin: &str, hook: &str) -> String {
    let server = S3Server::shared();
    format!(
        "catalog = \"slotfill.db\"\n[s3]\nendpoint_url = \"{}\"\nregion = \"{}\"\nforce_path_style = true\n\
         [[serve.schedule]]\ndataset = \"jp\"\ncron = \"15 3 * * *\"\nstart = \"-3d\"\nend = \"-1d\"\n\
         [datasets.jp]\nslot_minutes = 10\nutc_offset = \"+09:00\"\n\
         key_template = \"%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl\"\n\
         primary = \"s3://{primary}/misskey\"\nbackup = [\"s3://{backup}/misskey\"]\n\
         complement = \"s3://{complement}/misskey_complement\"\nnotify_webhook = \"{hook}\"\n\
         [datasets.jp.rules]\nmin_bytes = 200\nmin_lines = 3\nmax_lines = 40\n\
         [datasets.jp.source]\nbase_url = \"{origin}\"\nmode = \"search\"\n\
         [datasets.jp.freshness]\ngrace = \"{GRACE_MIN}m\"\ncheck_every = \"{CHECK_MIN}m\"\nalert_after = \"30m\"\nfill = true\n",
        server.endpoint(),
        s3::REGION
    )
}

/// Every slot's notes at the origin, but the quiet ones'.
fn load_notes(origin: &MisskeyEmulator, plan: &Plan, t0: i64, end: i64) {
    let mut batch = Vec::new();
    let mut slot = t0 - 86_400;
    while slot < end {
        if !plan.quiet.contains(&slot) {
            for i in 0..NOTES_PER_SLOT {
                batch.push(NoteSpec::public_local(
                    (slot + 30 + i * 110) * 1000,
                    "ノート",
                ));
            }
        }
        if batch.len() >= 5000 {
            origin.add_notes(std::mem::take(&mut batch));
        }
        slot += SLOT;
    }
    origin.add_notes(batch);
}

/// What happened to serve over the month.
struct Life {
    /// (SIGKILL, SIGTERM)
    kills: (u64, u64),
    bad_exits: u64,
    /// (simulated day, RSS KiB, open descriptors) at each day's noon.
    samples: Vec<(i64, u64, usize)>,
}

/// Starts serve, kills and restarts it as planned, samples its memory daily.
#[allow(clippy::too_many_arguments)]
fn life_of_serve(
    opts: &SoakOptions,
    clock: Clock,
    plan: &Plan,
    config: &Path,
    log: &Path,
    addr: &Mutex<String>,
    t0: i64,
    end: i64,
) -> Life {
    let env = clock.env();
    let start = || {
        let proc = ServeProc::start(&opts.slotfill, config, &env, log);
        *addr.lock().unwrap() = proc.addr.clone();
        proc
    };
    let mut life = Life {
        kills: (0, 0),
        bad_exits: 0,
        samples: Vec::new(),
    };
    clock.sleep_until((t0 + 40 * 60) as f64);
    let mut serve = start();
    let mut kills = plan.kills.iter().peekable();
    // Noon JST of each day: 03:00 UTC.
    let mut next_sample = t0 + 12 * 3600;
    loop {
        let now = clock.now() as i64;
        if now >= end {
            break;
        }
        if now >= next_sample {
            let day = (next_sample - t0) / 86_400;
            life.samples.push((day, serve.rss_kib(), serve.fds()));
            next_sample += 86_400;
        }
        if let Some(&&(at, how, down)) = kills.peek()
            && now >= at
        {
            kills.next();
            match how {
                Kill::Sigkill => {
                    serve.kill9();
                    life.kills.0 += 1;
                }
                Kill::Sigterm => {
                    if serve.terminate() != 0 {
                        life.bad_exits += 1;
                    }
                    life.kills.1 += 1;
                }
            }
            std::thread::sleep(clock.real(down as f64));
            serve = start();
            continue;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if serve.terminate() != 0 {
        life.bad_exits += 1;
    }
    life
}

/// `slotfill verify` over the month, at its end: the exit status (0: no gap).
fn verify(opts: &SoakOptions, config: &Path, t0: i64, end: i64) -> i32 {
    let now = chrono::DateTime::from_timestamp(end, 0)
        .expect("end")
        .to_rfc3339();
    let window = (t0, end - 3600);
    let out = windowed(&opts.slotfill, config, "verify", "jp", window, &now);
    if !out.status.success() {
        eprintln!("verify: {}", String::from_utf8_lossy(&out.stdout));
        eprintln!("verify: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().unwrap_or(-1)
}

/// Runs of consecutive slots the primary missed.
fn episodes(missed: &[i64]) -> usize {
    missed
        .iter()
        .enumerate()
        .filter(|(i, slot)| *i == 0 || missed[i - 1] + SLOT != **slot)
        .count()
}

/// The figures read from the catalog and the webhook's posts.
struct Report {
    catalog: rusqlite::Connection,
    posts: Vec<(f64, Value)>,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some((sorted[i] * 10.0).round() / 10.0)
}

fn seconds(text: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or(f64::NAN)
}

impl Report {
    fn figures(&self, t0: i64, end: i64) -> Value {
        let last = end - 3600 - SLOT;
        let count = |sql: &str| -> i64 {
            self.catalog
                .query_row(sql, rusqlite::params![t0, last], |r| r.get(0))
                .expect(sql)
        };
        let slots = count("SELECT COUNT(*) FROM slots WHERE slot_start BETWEEN ?1 AND ?2");
        let complete = count(
            "SELECT COUNT(*) FROM slots WHERE slot_start BETWEEN ?1 AND ?2 AND state IN ('ok', 'empty')",
        );
        let incidents: Vec<(i64, Option<i64>)> = {
            let mut stmt = self
                .catalog
                .prepare("SELECT id, first_overdue FROM incidents ORDER BY id")
                .expect("incidents");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("incidents")
                .map(Result::unwrap)
                .collect()
        };
        let status = |p: &Value| p["slotfill"]["status"].as_str().unwrap_or("").to_string();
        let of = |id: i64, recovered: bool| -> Vec<f64> {
            self.posts
                .iter()
                .filter(|(_, p)| {
                    p["slotfill"]["incident"] == id && (status(p) == "recovered") == recovered
                })
                .map(|(t, _)| *t)
                .collect()
        };
        let (mut detect, mut once, mut stale) = (Vec::new(), 0, 0);
        for &(id, first_overdue) in &incidents {
            let (opened, recovered) = (of(id, false), of(id, true));
            if opened.len() == 1 && recovered.len() == 1 {
                once += 1;
            }
            match (first_overdue, opened.first()) {
                (Some(slot), Some(at)) => detect.push((at - (slot + SLOT) as f64) / 60.0),
                _ => stale += 1,
            }
        }
        detect.sort_by(f64::total_cmp);
        let mut fill: Vec<f64> = {
            let mut stmt = self
                .catalog
                .prepare(
                    "SELECT slot_start, MIN(finished_at) FROM fill_attempts WHERE outcome IN ('filled', 'empty')
                     AND slot_start BETWEEN ?1 AND ?2 GROUP BY slot_start",
                )
                .expect("fills");
            stmt.query_map(rusqlite::params![t0, last], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .expect("fills")
            .map(Result::unwrap)
            .map(|(slot, at)| (seconds(&at) - (slot + SLOT) as f64) / 60.0)
            .collect()
        };
        fill.sort_by(f64::total_cmp);
        let runs = |sql: &str| -> i64 { self.catalog.query_row(sql, [], |r| r.get(0)).expect(sql) };
        // The webhook also hears of every scheduled run's end: those carry no incident.
        let watch: Vec<&(f64, Value)> = self
            .posts
            .iter()
            .filter(|(_, p)| p["slotfill"]["incident"].is_i64())
            .collect();
        let alerts = watch
            .iter()
            .filter(|(_, p)| status(p) != "recovered")
            .count();
        json!({
            "simulated_days": ((end - t0) as f64 / 86_400.0),
            "slots": slots,
            "incidents": incidents.len(),
            "alerts": alerts,
            "recoveries": watch.len() - alerts,
            "run_notifications": self.posts.len() - watch.len(),
            "incidents_alerted_once_and_recovered_once": once,
            "stale_incidents": stale,
            "detect_p50_min": percentile(&detect, 0.5),
            "detect_p95_min": percentile(&detect, 0.95),
            "detect_max_min": detect.last().map(|m| (m * 10.0).round() / 10.0),
            "grace_plus_check_min": GRACE_MIN + CHECK_MIN,
            "fill_p50_min": percentile(&fill, 0.5),
            "fill_p95_min": percentile(&fill, 0.95),
            "slots_filled": fill.len(),
            "completeness": if slots > 0 { complete as f64 / slots as f64 } else { 0.0 },
            "nightly_runs": runs("SELECT COUNT(*) FROM runs WHERE command = 'run' AND args LIKE '%schedule%'"),
            "fill_attempts_failed": runs("SELECT COUNT(*) FROM fill_attempts WHERE outcome IN ('failed', 'partial')"),
            "watch_fills_failed": runs("SELECT COUNT(*) FROM runs WHERE command = 'fill' AND outcome IN ('failed', 'stopped')"),
            "runs_interrupted": runs("SELECT COUNT(*) FROM runs WHERE outcome = 'interrupted' OR (finished_at IS NULL)"),
            "watch_fills": runs("SELECT COUNT(*) FROM runs WHERE command = 'fill' AND args LIKE '%watch%'"),
        })
    }
}
