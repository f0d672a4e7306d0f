//! The world the soak simulates around `slotfill serve`: one clock that runs
//! fast, a chaos plan drawn from a seed, the collector and its lagging backup
//! writing one object per slot into SeaweedFS (and telling serve by S3
//! events), the origin's outages and 429 storms, and the webhook that
//! receives the alerts.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::super::misskey::{Fault, MisskeyEmulator};
use super::super::s3::S3Server;
use super::super::serve_proc;

pub const SLOT: i64 = 600;

/// The simulated clock every party reads: `t0` at real instant `r0_ms`,
/// `speed` simulated seconds per real second (what serve's
/// SLOTFILL_NOW / SLOTFILL_CLOCK_SINCE / SLOTFILL_CLOCK_SPEED say).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub t0: i64,
    pub r0_ms: i64,
    pub speed: f64,
}

impl Clock {
    pub fn start(t0: i64, speed: f64) -> Clock {
        Clock {
            t0,
            r0_ms: wall_ms(),
            speed,
        }
    }

    /// Simulated Unix seconds, with milliseconds.
    pub fn now(&self) -> f64 {
        self.t0 as f64 + (wall_ms() - self.r0_ms) as f64 / 1000.0 * self.speed
    }

    /// Sleeps until the simulated clock reads `t`.
    pub fn sleep_until(&self, t: f64) {
        let wait = (t - self.now()) / self.speed;
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
    }

    pub fn real(&self, simulated_secs: f64) -> Duration {
        Duration::from_secs_f64((simulated_secs / self.speed).max(0.0))
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let t0 = chrono::DateTime::from_timestamp(self.t0, 0).expect("t0");
        vec![
            ("SLOTFILL_NOW".into(), t0.to_rfc3339()),
            ("SLOTFILL_CLOCK_SPEED".into(), self.speed.to_string()),
            ("SLOTFILL_CLOCK_SINCE".into(), self.r0_ms.to_string()),
        ]
    }
}

pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// What goes wrong, and when (simulated Unix seconds).
#[derive(Debug, Default)]
pub struct Plan {
    pub primary_down: Vec<(i64, i64)>,
    pub backup_down: Vec<(i64, i64)>,
    /// Slots whose primary object comes out short or cut mid-line.
    pub truncated: HashSet<i64>,
    /// Slots with no note at the origin (the collectors write an empty object).
    pub quiet: HashSet<i64>,
    /// Origin faults: outages (503 pages) and 429 storms.
    pub origin: Vec<(i64, i64, OriginFault)>,
    /// When serve dies, how, and how long it stays down (simulated seconds).
    pub kills: Vec<(i64, Kill, i64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginFault {
    Outage,
    Storm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    Sigkill,
    Sigterm,
}

/// Intervals in [start, end): exponential gaps at `per_day`, log-uniform
/// lengths in [min, max] seconds, never overlapping.
fn intervals(
    rng: &mut StdRng,
    (start, end): (i64, i64),
    per_day: f64,
    (min, max): (f64, f64),
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut t = start as f64;
    loop {
        t += -(1.0 - rng.random::<f64>()).ln() * 86_400.0 / per_day;
        if t >= end as f64 {
            return out;
        }
        let length = (min.ln() + rng.random::<f64>() * (max.ln() - min.ln())).exp();
        let (a, b) = (t as i64, (t + length).min(end as f64) as i64);
        out.push((a, b));
        t += length;
    }
}

impl Plan {
    /// The chaos of `[start, end)`, from `seed`.
    pub fn draw(seed: u64, start: i64, end: i64) -> Plan {
        let mut rng = StdRng::seed_from_u64(seed);
        let span = (start, end);
        let primary_down = intervals(&mut rng, span, 1.0, (10.0 * 60.0, 6.0 * 3600.0));
        let mut backup_down = intervals(&mut rng, span, 0.3, (30.0 * 60.0, 12.0 * 3600.0));
        // A third of the primary's outages take the backup down too (one host).
        for &(a, b) in &primary_down {
            if rng.random::<f64>() < 0.33 {
                backup_down.push((a, b));
            }
        }
        let mut slots = HashSet::new();
        let mut quiet = HashSet::new();
        let mut slot = start - start.rem_euclid(SLOT);
        while slot < end {
            if rng.random::<f64>() < 0.005 {
                slots.insert(slot);
            } else if rng.random::<f64>() < 0.002 {
                quiet.insert(slot);
            }
            slot += SLOT;
        }
        let mut origin: Vec<(i64, i64, OriginFault)> = Vec::new();
        for (a, b) in intervals(&mut rng, span, 0.4, (10.0 * 60.0, 3.0 * 3600.0)) {
            origin.push((a, b, OriginFault::Outage));
        }
        for (a, b) in intervals(&mut rng, span, 0.4, (5.0 * 60.0, 3600.0)) {
            if !origin.iter().any(|&(x, y, _)| a < y && x < b) {
                origin.push((a, b, OriginFault::Storm));
            }
        }
        // The collector streams from the origin: half its outages come with
        // one of the origin's, which may outlast it (then the fill waits too).
        for &(a, b) in &primary_down {
            if rng.random::<f64>() < 0.5 && !origin.iter().any(|&(x, y, _)| a < y && x < b) {
                let length = rng.random_range(0.3..1.5) * (b - a) as f64;
                let fault = if rng.random::<bool>() {
                    OriginFault::Outage
                } else {
                    OriginFault::Storm
                };
                origin.push((a, (a + length as i64).min(end), fault));
            }
        }
        origin.sort_by_key(|o| o.0);
        let mut kills: Vec<(i64, Kill, i64)> = intervals(&mut rng, span, 0.8, (60.0, 20.0 * 60.0))
            .into_iter()
            .map(|(a, b)| (a, Kill::Sigkill, b - a))
            .collect();
        // A third of them land in the nightly run (03:15 JST, 18:15 UTC).
        for kill in kills.iter_mut() {
            if rng.random::<f64>() < 0.33 {
                let day = kill.0 - (kill.0 + 9 * 3600).rem_euclid(86_400);
                kill.0 = day + 3 * 3600 + 15 * 60 + rng.random_range(5..120);
            }
            if rng.random::<f64>() < 0.4 {
                kill.1 = Kill::Sigterm;
            }
        }
        kills.retain(|k| k.0 >= start && k.0 < end);
        kills.sort_by_key(|k| k.0);
        let kills = kills;
        Plan {
            primary_down,
            backup_down,
            truncated: slots,
            quiet,
            origin,
            kills,
        }
    }

    pub fn down(intervals: &[(i64, i64)], t: i64) -> bool {
        intervals.iter().any(|&(a, b)| a <= t && t < b)
    }
}

/// A collector object's key for a slot (JST, the reference layout).
pub fn key_of(slot: i64) -> String {
    let t = chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
        .expect("time")
        .naive_utc();
    t.format("%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl").to_string()
}

fn body(lines: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        out.extend_from_slice(
            format!("{{\"id\":\"n{i:06}\",\"t\":\"{}\"}}\n", "x".repeat(70)).as_bytes(),
        );
    }
    out
}

/// What the collectors did, for the report.
#[derive(Debug, Default)]
pub struct Written {
    /// Slots the primary did not write validly (down, short, quiet).
    pub primary_missed: Vec<i64>,
    pub primary_objects: u64,
    pub backup_objects: u64,
}

/// One storage event to deliver: bucket, key, ETag and size.
pub type Event = (String, String, String, u64);

/// The primary (writing each slot a minute after its end) and the backup
/// (25 minutes after: later than the watch's grace), from `first` until the
/// clock reads `until`; chaos only before `calm`.
pub struct Collectors {
    pub primary: String,
    pub backup: String,
    pub prefix: String,
    pub plan: Arc<Plan>,
    pub events: std::sync::mpsc::Sender<Event>,
}

const PRIMARY_LAG: i64 = 60;
const BACKUP_LAG: i64 = 25 * 60;

impl Collectors {
    pub fn run(&self, clock: Clock, first: i64, calm: i64, until: i64) -> Written {
        let s3 = S3Server::shared();
        let mut written = Written::default();
        let (mut next_primary, mut next_backup) = (first, first);
        loop {
            let now = clock.now() as i64;
            if now >= until {
                return written;
            }
            while next_primary + SLOT + PRIMARY_LAG <= now {
                let slot = next_primary;
                let at = slot + SLOT + PRIMARY_LAG;
                let chaos = at < calm;
                let lines = if self.plan.quiet.contains(&slot) {
                    Some(0)
                } else if chaos && Plan::down(&self.plan.primary_down, at) {
                    None
                } else if chaos && self.plan.truncated.contains(&slot) {
                    // Short (too small), or cut in its third line (too few lines).
                    Some(if (slot / SLOT) % 2 == 0 { 1 } else { 3 })
                } else {
                    Some(8)
                };
                if lines != Some(8) {
                    written.primary_missed.push(slot);
                }
                if let Some(lines) = lines {
                    self.put(s3, &self.primary, slot, lines, lines == 3);
                    written.primary_objects += 1;
                }
                next_primary += SLOT;
            }
            while next_backup + SLOT + BACKUP_LAG <= now {
                let slot = next_backup;
                let at = slot + SLOT + BACKUP_LAG;
                if !(at < calm && Plan::down(&self.plan.backup_down, at)) {
                    let lines = if self.plan.quiet.contains(&slot) {
                        0
                    } else {
                        8
                    };
                    self.put(s3, &self.backup, slot, lines, false);
                    written.backup_objects += 1;
                }
                next_backup += SLOT;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Writes one object; `cut` cuts its last line in the middle.
    fn put(&self, s3: &S3Server, bucket: &str, slot: i64, lines: usize, cut: bool) {
        let key = format!("{}/{}", self.prefix, key_of(slot));
        let mut bytes = body(lines);
        if cut {
            bytes.truncate(bytes.len() - 20);
        }
        s3.put(bucket, &key, &bytes);
        let etag = s3.etag(bucket, &key).unwrap_or_default();
        let _ = self
            .events
            .send((bucket.to_string(), key, etag, bytes.len() as u64));
    }
}

/// Sets the origin's faults as the plan says, until the clock reads `until`.
pub fn origin_chaos(clock: Clock, plan: &Plan, origin: &MisskeyEmulator, until: i64) {
    for &(a, b, fault) in &plan.origin {
        if a >= until {
            break;
        }
        clock.sleep_until(a as f64);
        let fault = match fault {
            OriginFault::Outage => Fault::Html(503),
            OriginFault::Storm => Fault::RateLimit {
                retry_after_secs: None,
                with_info: false,
            },
        };
        origin.fail_every(1, fault);
        clock.sleep_until(b.min(until) as f64);
        origin.fail_every(0, Fault::Slow(Duration::ZERO));
    }
}

/// Delivers storage events to whichever serve is up, as a store's
/// notification queue would: a refused or unanswered delivery is retried for
/// a while (about a simulated hour), then dropped (a scan catches up).
pub struct EventSender {
    pub addr: Arc<Mutex<String>>,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
}

impl EventSender {
    pub fn run(&self, clock: Clock, events: std::sync::mpsc::Receiver<Event>) {
        for (bucket, key, etag, size) in events {
            let body = serve_proc::s3_event(&bucket, &key, Some((&etag, size))).to_string();
            let give_up = clock.now() + 3600.0;
            loop {
                let addr = self.addr.lock().unwrap().clone();
                match serve_proc::http(&addr, "POST", "/api/events/s3", body.as_bytes()) {
                    Ok((200, _)) => {
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ if clock.now() > give_up => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => {
                        self.retried.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }
}

/// The webhook: every body posted, with the simulated time it arrived.
pub struct Receiver {
    pub url: String,
    pub posts: Arc<Mutex<Vec<(f64, Value)>>>,
    _server: crate::http::Server,
}

struct Hook {
    clock: Clock,
    posts: Arc<Mutex<Vec<(f64, Value)>>>,
}

impl crate::http::Handler for Hook {
    async fn answer(&self, req: crate::http::Request) -> crate::http::Answer {
        let at = self.clock.now();
        if let Ok(json) = serde_json::from_slice(&req.body) {
            self.posts.lock().unwrap().push((at, json));
        }
        let mut done = crate::http::Response::new(204);
        done.close = true;
        done.into()
    }
}

impl Receiver {
    pub fn start(clock: Clock) -> Receiver {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let kept = posts.clone();
        let (server, _) =
            crate::http::Server::start("webhook", move |_| Arc::new(Hook { clock, posts: kept }));
        Receiver {
            url: format!("{}/hook", server.base_url()),
            posts,
            _server: server,
        }
    }
}
