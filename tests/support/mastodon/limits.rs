//! Rate limits in each form the servers use (misskey-api.md §4, §7, §9), and
//! a log of every refusal by the window it fell in, so a test can count the
//! 429s (or throttling 503s) a client drew per window.
//!
//! - [`RateLimitForm::MastodonIso`]: rack-attack's fixed windows aligned to
//!   the period; every answer carries `X-RateLimit-Limit/Remaining/Reset`
//!   (ISO 8601 with microseconds); a 429 has no `Retry-After`. Refused
//!   requests count too.
//! - [`RateLimitForm::GoToSocialIso`] and [`RateLimitForm::UnixSeconds`]:
//!   ulule/limiter's windows, which start at the first request after the last
//!   one expired; the reset is given to the whole second (floored), as ISO
//!   8601 (GoToSocial 0.19) or Unix seconds (other versions).
//! - [`RateLimitForm::SharkeyRelative`]: a leaky bucket of `limit` calls that
//!   drains one call every `period / limit`; answers carry
//!   `X-RateLimit-Remaining` and `X-RateLimit-Clear` (seconds until empty, 3
//!   decimals), a refusal `X-RateLimit-Reset` (seconds until one call is
//!   allowed, 3 decimals) and `Retry-After` (whole seconds). Refused calls are
//!   not counted.
//! - [`RateLimitForm::RetryAfterSeconds`], [`RateLimitForm::RetryAfterDate`]
//!   and [`RateLimitForm::Throttle503`]: no budget announced; a refusal is a
//!   429 (503 for GoToSocial's throttle) with `Retry-After` in seconds or as
//!   an HTTP date.

use std::collections::BTreeMap;

use super::super::http::http_date;
use super::Throttle;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitForm {
    #[default]
    MastodonIso,
    GoToSocialIso,
    UnixSeconds,
    SharkeyRelative,
    RetryAfterSeconds,
    RetryAfterDate,
    Throttle503,
}

/// One throttle's state.
#[derive(Clone, Debug, Default)]
pub(super) struct Meter {
    /// The current window's start (ms) and the requests counted in it.
    window: (i64, u64),
    /// Sharkey's bucket: its level (calls) at `last` (ms), and the first call.
    level: f64,
    last: i64,
    first: Option<i64>,
}

/// Every refusal, by (throttle, window start ms).
#[derive(Debug, Default)]
pub(super) struct Refusals {
    pub(super) by_window: BTreeMap<(usize, i64), u64>,
}

/// What a throttle says about one request.
pub(super) struct Verdict {
    pub(super) refused: bool,
    pub(super) headers: Vec<(&'static str, String)>,
    /// Which remaining count this is (for picking the tightest throttle).
    pub(super) remaining: u64,
}

fn iso(ms: i64, micros: bool) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    match micros {
        true => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        false => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    }
}

impl Meter {
    /// Counts a request at `now` (ms) against `t` in `form`.
    pub(super) fn count(&mut self, t: &Throttle, form: RateLimitForm, now: i64) -> Verdict {
        let period = (t.period_secs.max(1) * 1000) as i64;
        if form == RateLimitForm::SharkeyRelative {
            return self.drip(t, period, now);
        }
        let start = match form {
            RateLimitForm::MastodonIso => now.div_euclid(period) * period,
            _ if now >= self.window.0 + period || self.window.1 == 0 => now,
            _ => self.window.0,
        };
        if self.window.0 != start {
            self.window = (start, 0);
        }
        self.window.1 += 1;
        let refused = self.window.1 > t.limit;
        let remaining = t.limit.saturating_sub(self.window.1);
        let reset = start + period;
        let whole = reset.div_euclid(1000) * 1000;
        let budget = |reset: String| {
            vec![
                ("X-RateLimit-Limit", t.limit.to_string()),
                ("X-RateLimit-Remaining", remaining.to_string()),
                ("X-RateLimit-Reset", reset),
            ]
        };
        // Retry-After in whole seconds, rounded up: never before the reset.
        let retry_secs = ((reset - now) as f64 / 1000.0).ceil() as i64;
        let headers = match form {
            RateLimitForm::MastodonIso => budget(iso(reset, true)),
            RateLimitForm::GoToSocialIso => budget(iso(whole, false)),
            RateLimitForm::UnixSeconds => budget((whole / 1000).to_string()),
            RateLimitForm::RetryAfterSeconds | RateLimitForm::Throttle503 if refused => {
                vec![("Retry-After", retry_secs.to_string())]
            }
            RateLimitForm::RetryAfterDate if refused => {
                vec![("Retry-After", http_date(now + retry_secs * 1000))]
            }
            _ => Vec::new(),
        };
        Verdict {
            refused,
            headers,
            remaining,
        }
    }

    /// Sharkey's leaky bucket.
    fn drip(&mut self, t: &Throttle, period: i64, now: i64) -> Verdict {
        let drip_ms = period as f64 / t.limit.max(1) as f64;
        self.level = (self.level - (now - self.last) as f64 / drip_ms).max(0.0);
        self.last = now;
        self.first.get_or_insert(now);
        let size = t.limit as f64;
        let refused = self.level + 1.0 > size;
        if !refused {
            self.level += 1.0;
        }
        let remaining = (size - self.level).floor().max(0.0) as u64;
        let clear_ms = self.level * drip_ms;
        let mut headers = vec![
            ("X-RateLimit-Clear", format!("{:.3}", clear_ms / 1000.0)),
            ("X-RateLimit-Remaining", remaining.to_string()),
        ];
        if refused {
            let reset_ms = (self.level + 1.0 - size) * drip_ms;
            headers.push((
                "Retry-After",
                ((reset_ms / 1000.0).ceil() as i64).to_string(),
            ));
            headers.push(("X-RateLimit-Reset", format!("{:.3}", reset_ms / 1000.0)));
        }
        Verdict {
            refused,
            headers,
            remaining,
        }
    }

    /// The rate window a refusal at `now` belongs to, for counting: the
    /// counted window, or for the bucket, periods since its first call.
    pub(super) fn window_of(&self, t: &Throttle, form: RateLimitForm, now: i64) -> i64 {
        let period = (t.period_secs.max(1) * 1000) as i64;
        match (form, self.first) {
            (RateLimitForm::SharkeyRelative, Some(first)) => {
                first + (now - first).div_euclid(period) * period
            }
            _ => self.window.0,
        }
    }
}
