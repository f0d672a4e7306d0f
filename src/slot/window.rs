//! Windows of slots, and the times users give for them.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime};

use super::{SECONDS_PER_DAY, SlotError, SlotSpec, SlotStart};

/// An inclusive range of slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub first: SlotStart,
    pub last: SlotStart,
}

/// Windows longer than this are refused: they are almost always a typo.
pub const MAX_WINDOW_DAYS: i64 = 3660;

impl Window {
    /// Builds a window from user input. `end` names the last slot included
    /// (the slot containing that time), as the seed pipeline did.
    pub fn parse(
        spec: &SlotSpec,
        start: &str,
        end: &str,
        now: DateTime<chrono::Utc>,
    ) -> Result<Window, SlotError> {
        let first = spec.align_down(parse_time(spec, start, now)?);
        let last = spec.align_down(parse_time(spec, end, now)?);
        if last < first {
            return Err(SlotError::EndBeforeStart {
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        let days = (last - first) / SECONDS_PER_DAY;
        if days > MAX_WINDOW_DAYS {
            return Err(SlotError::WindowTooLong {
                days,
                limit: MAX_WINDOW_DAYS,
            });
        }
        Ok(Window { first, last })
    }

    pub fn slot_count(&self, spec: &SlotSpec) -> i64 {
        (self.last - self.first) / spec.width_secs() + 1
    }

    pub fn contains(&self, slot: SlotStart) -> bool {
        (self.first..=self.last).contains(&slot)
    }

    pub fn slots(self, spec: &SlotSpec) -> impl Iterator<Item = SlotStart> + use<> {
        let width = spec.width_secs();
        (0..self.slot_count(spec)).map(move |i| self.first + i * width)
    }

    /// The local days the window touches, in order.
    pub fn days(&self, spec: &SlotSpec) -> Vec<NaiveDate> {
        let (first, last) = (spec.day_of(self.first), spec.day_of(self.last));
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .collect::<Vec<_>>()
    }
}

/// The forms `--start`/`--end` accept, for error messages.
pub const TIME_FORMS: &str = "expected 2025-08-01T00:40 (the dataset's offset), \
     2025-08-01T00:40+09:00 or 2025-08-01T00:40Z (an explicit offset; seconds optional), \
     2025-08-01, now, or relative to now: -3d, -12h, -90m, -2w";

/// Parses an absolute local time (`2025-08-01T00:40`, `2025-08-01 00:40:00`,
/// `2025-08-01`), a time with its own offset (`2025-08-01T00:40+09:00`,
/// `…Z`, RFC 3339), `now`, or a time relative to now (`-3d`, `-12h`, `-90m`, `-2w`).
pub fn parse_time(
    spec: &SlotSpec,
    input: &str,
    now: DateTime<chrono::Utc>,
) -> Result<i64, SlotError> {
    let s = input.trim();
    let bad = |reason: &str| SlotError::BadTime {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if s == "now" {
        return Ok(now.timestamp());
    }
    if let Some(rel) = s.strip_prefix('-') {
        let split = rel.len().saturating_sub(1);
        let (amount, unit) = rel.split_at(split);
        let amount: i64 = amount
            .parse()
            .map_err(|_| bad("relative times look like -3d, -12h, -90m or -2w"))?;
        let delta = match unit {
            "w" => Duration::try_weeks(amount),
            "d" => Duration::try_days(amount),
            "h" => Duration::try_hours(amount),
            "m" => Duration::try_minutes(amount),
            _ => return Err(bad("relative times look like -3d, -12h, -90m or -2w")),
        };
        // A huge amount leaves the calendar: an error, never a panic.
        let then = delta.and_then(|d| now.checked_sub_signed(d));
        return then
            .map(|t| t.timestamp())
            .ok_or_else(|| bad("that is further back than the calendar goes"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Some(t) = parse_with_offset(s) {
        return Ok(t);
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| bad(TIME_FORMS))?;
    Ok(local.and_utc().timestamp() - i64::from(spec.offset.local_minus_utc()))
}

/// A local time followed by an explicit offset (`+09:00`, `+0900`, `-05`) or `Z`,
/// with or without seconds, `T` or a space between date and time.
fn parse_with_offset(s: &str) -> Option<i64> {
    let s = match s.strip_suffix(['Z', 'z']) {
        Some(utc) => format!("{utc}+00:00"),
        None => s.to_string(),
    };
    [
        "%Y-%m-%dT%H:%M:%S%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M:%S%#z",
        "%Y-%m-%d %H:%M%#z",
    ]
    .iter()
    .find_map(|f| DateTime::parse_from_str(&s, f).ok())
    .map(|t| t.timestamp())
}
