//! The one place that reads the wall clock.
//!
//! `SLOTFILL_NOW` (RFC 3339) pins "now" so relative windows and retry times are
//! deterministic in tests and reproducible when replaying a night's job.
//!
//! `SLOTFILL_CLOCK_SPEED` (a positive number, only together with `SLOTFILL_NOW`)
//! makes the pinned clock run: it reads `SLOTFILL_NOW` when the process first
//! asks for the time and then advances `SPEED` clock seconds per real second.
//! `SLOTFILL_CLOCK_SINCE` (Unix milliseconds of the real wall clock) names the
//! real instant at which the running clock read `SLOTFILL_NOW` instead: every
//! process started with the same three values shares one simulated clock,
//! however late it starts (a soak restarts `slotfill serve` many times).
//!
//! That is how a test watches `slotfill serve` fire a 03:15 schedule in a few
//! real seconds, and how the soak lives a month in minutes. Every wait that is
//! measured in clock time (a schedule's next due time, the freshness watch's
//! `check_every`, serve's retry and rate-limit politeness) goes through
//! [`real_wait`], [`real_duration`], [`real_std`] or [`sleep`], so it shrinks
//! by the same factor.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

fn env_speed() -> Option<f64> {
    std::env::var("SLOTFILL_CLOCK_SPEED")
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
}

/// Real milliseconds elapsed since `SLOTFILL_CLOCK_SINCE`, if it is set and past.
fn since_real_start() -> Option<f64> {
    let since: i64 = std::env::var("SLOTFILL_CLOCK_SINCE").ok()?.parse().ok()?;
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let elapsed = wall.as_millis() as i64 - since;
    (elapsed >= 0).then_some(elapsed as f64)
}

fn source() -> Source {
    // A running clock must keep its start for the life of the process.
    static RUNNING: OnceLock<Option<Source>> = OnceLock::new();
    let running = RUNNING.get_or_init(|| {
        let (pinned, speed) = (pinned()?, env_speed()?);
        // Started late: the clock has already run this far.
        let ran = since_real_start().unwrap_or(0.0) * speed;
        Some(Source::Running {
            start: pinned + chrono::Duration::milliseconds(ran as i64),
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

/// Clock seconds per real second: 1 unless a running test clock is set.
pub fn speed() -> f64 {
    match source() {
        Source::Running { speed, .. } => speed,
        Source::Wall | Source::Pinned(_) => 1.0,
    }
}

/// Whether the clock stands still (`SLOTFILL_NOW` without a speed).
pub fn is_pinned() -> bool {
    matches!(source(), Source::Pinned(_))
}

/// The real time a wait of `d` clock time takes: `d` itself, except on a
/// running test clock, where it is `d / SPEED`.
pub fn real_duration(d: chrono::Duration) -> std::time::Duration {
    real_std(d.to_std().unwrap_or_default())
}

/// [`real_duration`] for a wait already given as a `std` duration (a retry
/// wait, a rate-limit cap).
pub fn real_std(d: std::time::Duration) -> std::time::Duration {
    match source() {
        Source::Running { speed, .. } => d.div_f64(speed),
        Source::Wall | Source::Pinned(_) => d,
    }
}

/// Sleeps for `d` of clock time (`d / SPEED` on a running test clock; `d`
/// itself on a pinned one, which never reaches anything).
pub async fn sleep(d: chrono::Duration) {
    tokio::time::sleep(real_duration(d)).await;
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

/// The first multiple of `every` (counted from the Unix epoch) after `t`: the
/// fixed ticks a periodic task keeps to, whatever its work took.
pub fn next_tick(t: DateTime<Utc>, every: chrono::Duration) -> DateTime<Utc> {
    let every_ms = every.num_milliseconds().max(1);
    let ms = t.timestamp_millis();
    let next = (ms.div_euclid(every_ms) + 1) * every_ms;
    DateTime::from_timestamp_millis(next).unwrap_or(t)
}

/// Now as stored in the catalog: RFC 3339, UTC, milliseconds.
pub fn now_text() -> String {
    timestamp_text(now())
}

pub fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_multiples_of_the_period_strictly_after_the_time() {
        let t = DateTime::parse_from_rfc3339("2025-08-14T00:37:12Z")
            .unwrap()
            .to_utc();
        let five = chrono::Duration::minutes(5);
        assert_eq!(next_tick(t, five).to_rfc3339(), "2025-08-14T00:40:00+00:00");
        let on = DateTime::parse_from_rfc3339("2025-08-14T00:40:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            next_tick(on, five).to_rfc3339(),
            "2025-08-14T00:45:00+00:00"
        );
    }
}
