//! The one place that reads the wall clock.
//!
//! `SLOTFILL_NOW` (RFC 3339) pins "now" so relative windows and retry times are
//! deterministic in tests and reproducible when replaying a night's job.
//!
//! `SLOTFILL_CLOCK_SPEED` (a positive number, only together with `SLOTFILL_NOW`)
//! makes the pinned clock run: it reads `SLOTFILL_NOW` when the process first
//! asks for the time and then advances `SPEED` clock seconds per real second.
//! That is how a test watches `slotfill serve` fire a 03:15 schedule in a few
//! real seconds. Waits that are measured in clock time (a schedule's next due
//! time, the freshness watch's `check_every`) go through [`real_wait`] and
//! [`real_duration`], so they shrink by the same factor.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};

/// How "now" is read in this process.
#[derive(Debug, Clone, Copy)]
enum Source {
    Wall,
    Pinned(DateTime<Utc>),
    Running {
        start: DateTime<Utc>,
        since: Instant,
        speed: f64,
    },
}

fn pinned() -> Option<DateTime<Utc>> {
    let text = std::env::var("SLOTFILL_NOW").ok()?;
    DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn speed() -> Option<f64> {
    std::env::var("SLOTFILL_CLOCK_SPEED")
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
}

fn source() -> Source {
    // A running clock must keep its start for the life of the process.
    static RUNNING: OnceLock<Option<Source>> = OnceLock::new();
    let running = RUNNING.get_or_init(|| {
        let (start, speed) = (pinned()?, speed()?);
        Some(Source::Running {
            start,
            since: Instant::now(),
            speed,
        })
    });
    match running {
        Some(source) => *source,
        None => pinned().map(Source::Pinned).unwrap_or(Source::Wall),
    }
}

#[allow(clippy::disallowed_methods)]
pub fn now() -> DateTime<Utc> {
    match source() {
        Source::Wall => Utc::now(),
        Source::Pinned(t) => t,
        Source::Running {
            start,
            since,
            speed,
        } => {
            let elapsed = since.elapsed().as_secs_f64() * speed;
            start + chrono::Duration::milliseconds((elapsed * 1000.0) as i64)
        }
    }
}

/// The real time a wait of `d` clock time takes: `d` itself, except on a
/// running test clock, where it is `d / SPEED`.
pub fn real_duration(d: chrono::Duration) -> std::time::Duration {
    let d = d.to_std().unwrap_or_default();
    match source() {
        Source::Running { speed, .. } => d.div_f64(speed),
        Source::Wall | Source::Pinned(_) => d,
    }
}

/// How long to sleep until the clock reads `t`; `None` when it never will (a
/// pinned clock stands still).
pub fn real_wait(t: DateTime<Utc>) -> Option<std::time::Duration> {
    let now = now();
    if t <= now {
        return Some(std::time::Duration::ZERO);
    }
    match source() {
        Source::Pinned(_) => None,
        Source::Wall | Source::Running { .. } => Some(real_duration(t - now)),
    }
}

/// Now as stored in the catalog: RFC 3339, UTC, milliseconds.
pub fn now_text() -> String {
    timestamp_text(now())
}

pub fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
