//! What an origin's answer says about its rate limit, in every form the
//! servers use (misskey-api.md §4, §7, §9.2–9.4):
//!
//! - `X-RateLimit-Remaining` (and `-Limit`): calls left in the current window.
//! - `X-RateLimit-Reset`: when the window ends, as ISO 8601 (Mastodon,
//!   GoToSocial 0.19), Unix seconds (other GoToSocial versions and many
//!   proxies), Unix milliseconds, or seconds from now with decimals (Sharkey).
//!   A number below 10⁹ cannot be a date after 2001, so it is relative.
//! - `X-RateLimit-Clear`: Sharkey's seconds until its bucket is empty again.
//! - `Retry-After`: seconds, or an HTTP date.
//! - Misskey's 429 body: `error.info.resetMs`, epoch milliseconds in the
//!   classic limiter; a value too small to be a date is taken as relative.
//!
//! A throttling answer is a 429, or a 503 that carries `Retry-After`
//! (GoToSocial's request throttle). Every wait is measured from the origin's
//! own clock when its `Date` header shows ours is off, is never negative,
//! and is turned into real time by [`crate::clock::real_duration`]. A reset
//! or a `Retry-After` date given to the whole second (GoToSocial floors its
//! reset) gets a second more, so the first call of the next window does not
//! arrive before it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Below this, `X-RateLimit-Reset` is seconds from now (10⁹ s is 2001-09-09).
const EPOCH_SECONDS_FROM: f64 = 1e9;
/// From this, `X-RateLimit-Reset` and `resetMs` are epoch milliseconds (2001-09-09).
const EPOCH_MS_FROM: f64 = 1e12;
/// Our clock is trusted unless the origin's `Date` differs by more than this
/// (`Date` itself has whole seconds).
const SKEW_TOLERANCE_MS: i64 = 2000;
/// Added to a reset given to the whole second.
const WHOLE_SECOND_MARGIN_MS: i64 = 1000;
/// The longest wait ever taken, whatever the origin asks.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// The rate-limit facts of one answer; waits in real time from its arrival.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Until the window resets (`X-RateLimit-Reset`, else `X-RateLimit-Clear`).
    pub reset_in: Option<Duration>,
    pub retry_after: Option<Duration>,
}

impl Limits {
    /// Reads an answer's headers, now.
    pub fn of(headers: &HeaderMap) -> Limits {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Limits::read(text, crate::clock::now())
    }

    /// Reads the headers `text` looks up, as seen at `local_now`.
    pub fn read<'a>(text: impl Fn(&str) -> Option<&'a str>, local_now: DateTime<Utc>) -> Limits {
        let now_ms = origin_now_ms(text("date"), local_now);
        let count = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
        let reset_ms = text("x-ratelimit-reset")
            .and_then(|v| reset_wait_ms(v, now_ms))
            .or_else(|| text("x-ratelimit-clear").and_then(relative_ms));
        Limits {
            limit: count("x-ratelimit-limit"),
            remaining: count("x-ratelimit-remaining"),
            reset_in: reset_ms.map(real),
            retry_after: text("retry-after")
                .and_then(|v| retry_after_ms(v, now_ms))
                .map(real),
        }
    }

    /// `Some(wait)` when the answer is a throttle (429, or 503 with
    /// `Retry-After`), with the wait the origin named, if it named one.
    pub fn throttle(&self, status: StatusCode, body: &[u8]) -> Option<Option<Duration>> {
        let throttled = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE && self.retry_after.is_some());
        throttled.then(|| {
            self.retry_after
                .or(self.reset_in)
                .or_else(|| misskey_reset_ms(body, crate::clock::now()).map(real))
        })
    }

    /// Whether the origin announced a budget for its current window.
    pub fn announces_budget(&self) -> bool {
        self.remaining.is_some() && self.reset_in.is_some()
    }
}

/// Origin-time milliseconds as a real wait (a sped-up test clock shrinks it).
fn real(ms: i64) -> Duration {
    crate::clock::real_duration(chrono::Duration::milliseconds(ms.max(0)))
}

/// The origin's "now" in epoch ms: ours, unless its `Date` shows ours is off.
fn origin_now_ms(date: Option<&str>, local_now: DateTime<Utc>) -> i64 {
    let local = local_now.timestamp_millis();
    let date = date.and_then(|d| DateTime::parse_from_rfc2822(d.trim()).ok());
    match date.map(|d| d.timestamp_millis()) {
        Some(origin) if (origin - local).abs() > SKEW_TOLERANCE_MS => origin,
        _ => local,
    }
}

/// Milliseconds until an `X-RateLimit-Reset` value, never negative.
fn reset_wait_ms(value: &str, now_ms: i64) -> Option<i64> {
    let v = value.trim();
    if let Ok(x) = v.parse::<f64>() {
        if !x.is_finite() || x < 0.0 {
            return None;
        }
        let whole = x.fract() == 0.0;
        let wait = if x >= EPOCH_MS_FROM {
            x as i64 - now_ms
        } else if x >= EPOCH_SECONDS_FROM {
            (x * 1000.0) as i64 - now_ms + if whole { WHOLE_SECOND_MARGIN_MS } else { 0 }
        } else {
            (x * 1000.0).ceil() as i64
        };
        return Some(wait.max(0));
    }
    let at = DateTime::parse_from_rfc3339(v)
        .or_else(|_| DateTime::parse_from_rfc2822(v))
        .ok()?;
    let whole = at.timestamp_subsec_millis() == 0;
    let margin = if whole { WHOLE_SECOND_MARGIN_MS } else { 0 };
    Some((at.timestamp_millis() - now_ms + margin).max(0))
}

/// Seconds from now with decimals (`X-RateLimit-Clear`), in ms.
fn relative_ms(value: &str) -> Option<i64> {
    let x = value.trim().parse::<f64>().ok()?;
    (x.is_finite() && x >= 0.0).then(|| (x * 1000.0).ceil() as i64)
}

/// `Retry-After`: seconds, or an HTTP date (whole seconds, so a second is
/// added: a server that floors its reset to one would be met early); in ms,
/// never negative.
fn retry_after_ms(value: &str, now_ms: i64) -> Option<i64> {
    relative_ms(value).or_else(|| {
        let at = DateTime::parse_from_rfc2822(value.trim()).ok()?;
        Some((at.timestamp_millis() - now_ms + WHOLE_SECOND_MARGIN_MS).max(0))
    })
}

/// Misskey's 429 body: `error.info.resetMs`, absolute epoch ms or relative ms.
fn misskey_reset_ms(body: &[u8], now: DateTime<Utc>) -> Option<i64> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reset = body.pointer("/error/info/resetMs")?.as_f64()?;
    if !reset.is_finite() || reset < 0.0 {
        return None;
    }
    let wait = match reset >= EPOCH_MS_FROM {
        true => reset as i64 - now.timestamp_millis(),
        false => reset.ceil() as i64,
    };
    Some(wait.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    const NOW: i64 = 1_753_976_400_250; // 2025-07-31T15:40:00.250Z

    fn read(headers: &[(&str, &str)], now: i64) -> Limits {
        Limits::read(
            |name| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v),
            at(now),
        )
    }

    fn ms(d: Option<Duration>) -> Option<u128> {
        d.map(|d| d.as_millis())
    }

    #[test]
    fn every_reset_form_becomes_the_same_wait() {
        let forms = [
            // Mastodon: ISO 8601 with microseconds.
            ("2025-07-31T15:40:03.250000Z", 3000),
            // GoToSocial 0.19: ISO from whole seconds, a second added.
            ("2025-07-31T15:40:03.000Z", 3750),
            // Unix seconds (whole: a second added), with decimals, and milliseconds.
            ("1753976403", 3750),
            ("1753976403.25", 3000),
            ("1753976403250", 3000),
            // Sharkey: seconds from now, with decimals.
            ("3.000", 3000),
            ("0.0015", 2),
        ];
        for (value, wait) in forms {
            let limits = read(&[("x-ratelimit-reset", value)], NOW);
            assert_eq!(ms(limits.reset_in), Some(wait), "{value}");
        }
        // Past resets and nonsense: never a negative wait.
        assert_eq!(
            ms(read(&[("x-ratelimit-reset", "2025-07-31T15:39:00Z")], NOW).reset_in),
            Some(0)
        );
        assert_eq!(read(&[("x-ratelimit-reset", "-3")], NOW).reset_in, None);
        assert_eq!(read(&[("x-ratelimit-reset", "soon")], NOW).reset_in, None);
        // Sharkey's X-RateLimit-Clear stands in for a missing reset.
        let sharkey = read(
            &[
                ("x-ratelimit-remaining", "4"),
                ("x-ratelimit-clear", "1.500"),
            ],
            NOW,
        );
        assert_eq!(
            (sharkey.remaining, ms(sharkey.reset_in)),
            (Some(4), Some(1500))
        );
        assert!(sharkey.announces_budget());
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let seconds = read(&[("retry-after", "7")], NOW);
        assert_eq!(ms(seconds.retry_after), Some(7000));
        let date = read(&[("retry-after", "Thu, 31 Jul 2025 15:40:05 GMT")], NOW);
        assert_eq!(
            ms(date.retry_after),
            Some(5750),
            "a second added to a whole-second date"
        );
        let past = read(&[("retry-after", "Thu, 31 Jul 2025 15:00:00 GMT")], NOW);
        assert_eq!(ms(past.retry_after), Some(0));
    }

    #[test]
    fn the_origins_date_corrects_a_clock_that_is_off() {
        // Our clock is an hour behind the origin's.
        let behind = NOW - 3_600_000;
        let headers = [
            ("date", "Thu, 31 Jul 2025 15:40:00 GMT"),
            ("x-ratelimit-reset", "2025-07-31T15:40:03.250000Z"),
        ];
        // Measured from the origin's Date (whole seconds: up to a second long).
        assert_eq!(ms(read(&headers, behind).reset_in), Some(3250));
        // Within the tolerance our own, finer clock is used.
        assert_eq!(ms(read(&headers, NOW).reset_in), Some(3000));
    }

    #[test]
    fn throttles_are_429s_and_503s_that_say_when() {
        let none = Limits::default();
        assert_eq!(
            none.throttle(StatusCode::TOO_MANY_REQUESTS, b"<html>"),
            Some(None)
        );
        assert_eq!(none.throttle(StatusCode::SERVICE_UNAVAILABLE, b""), None);
        assert_eq!(none.throttle(StatusCode::OK, b"[]"), None);
        let gts = read(&[("retry-after", "2")], NOW);
        let wait = gts.throttle(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(wait.map(ms), Some(Some(2000)));
        // Sharkey sends both: Retry-After (whole seconds) wins over the reset.
        let sharkey = read(&[("retry-after", "2"), ("x-ratelimit-reset", "1.250")], NOW);
        let wait = sharkey.throttle(StatusCode::TOO_MANY_REQUESTS, b"");
        assert_eq!(wait.map(ms), Some(Some(2000)));
    }

    #[test]
    fn misskeys_reset_ms_absolute_or_relative_never_negative() {
        let now = at(NOW);
        let body = |reset: &str| {
            format!(r#"{{"error":{{"code":"RATE_LIMIT_EXCEEDED","info":{{"resetMs":{reset}}}}}}}"#)
        };
        assert_eq!(
            misskey_reset_ms(body("1753976401250").as_bytes(), now),
            Some(1000)
        );
        assert_eq!(misskey_reset_ms(body("1500").as_bytes(), now), Some(1500));
        assert_eq!(
            misskey_reset_ms(body("1753976000000").as_bytes(), now),
            Some(0)
        );
        assert_eq!(misskey_reset_ms(body("-5").as_bytes(), now), None);
        assert_eq!(misskey_reset_ms(b"{}", now), None);
    }
}
