//! Slot arithmetic and key templates.
//!
//! A *slot* is a half-open time interval `[start, start + width)`, aligned to
//! the dataset's local midnight (the dataset has a fixed UTC offset). Slots are
//! identified everywhere by their start as Unix seconds (UTC), so the catalog
//! can compare and index them as plain integers.
//!
//! A *key template* renders a slot to an object key (`%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl`)
//! and parses a key back to its slot. The part of a rendered key before the
//! first hour or minute field is the *day prefix*: listing it returns every
//! object of that local day, which is how scan lists each day exactly once.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use thiserror::Error;

/// Unix seconds (UTC) of a slot's start.
pub type SlotStart = i64;

const SECONDS_PER_DAY: i64 = 86_400;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SlotError {
    #[error("slot_minutes must be between 1 and 1440 and divide a day evenly (got {0})")]
    BadWidth(u32),
    #[error("utc_offset must look like +09:00 or -05:30 (got {0:?})")]
    BadOffset(String),
    #[error("key_template {template:?}: {reason}")]
    BadTemplate { template: String, reason: String },
    #[error("cannot parse time {input:?}: {reason}")]
    BadTime { input: String, reason: String },
    #[error("window end {end} is before its start {start}")]
    EndBeforeStart { start: String, end: String },
    #[error("window of {days} days is longer than the limit of {limit} days; split it")]
    WindowTooLong { days: i64, limit: i64 },
}

mod template;
mod window;

pub use template::KeyTemplate;
use template::Token;
pub use window::{MAX_WINDOW_DAYS, TIME_FORMS, Window, parse_time};

/// Everything needed to map between time, slots and keys for one dataset.
#[derive(Debug, Clone)]
pub struct SlotSpec {
    pub minutes: u32,
    pub offset: FixedOffset,
    pub template: KeyTemplate,
}

impl SlotSpec {
    pub fn new(minutes: u32, utc_offset: &str, template: &str) -> Result<Self, SlotError> {
        if minutes == 0 || minutes > 1440 || !1440u32.is_multiple_of(minutes) {
            return Err(SlotError::BadWidth(minutes));
        }
        let offset = parse_offset(utc_offset)?;
        let template = KeyTemplate::parse(template)?;
        let bad = |reason: &str| SlotError::BadTemplate {
            template: template.as_str().to_string(),
            reason: reason.to_string(),
        };
        if minutes < 1440 && !template.has(&Token::Hour) {
            return Err(bad("needs %H for slots shorter than a day"));
        }
        if !minutes.is_multiple_of(60) && !template.has(&Token::Minute) {
            return Err(bad("needs %M for slots that do not start on the hour"));
        }
        Ok(SlotSpec {
            minutes,
            offset,
            template,
        })
    }

    pub fn width_secs(&self) -> i64 {
        i64::from(self.minutes) * 60
    }

    fn offset_secs(&self) -> i64 {
        i64::from(self.offset.local_minus_utc())
    }

    /// The start of the slot containing `ts` (Unix seconds).
    pub fn align_down(&self, ts: i64) -> SlotStart {
        let local = ts + self.offset_secs();
        local - local.rem_euclid(self.width_secs()) - self.offset_secs()
    }

    pub fn local_time(&self, slot: SlotStart) -> NaiveDateTime {
        DateTime::from_timestamp(slot, 0)
            .expect("slot within chrono's range")
            .with_timezone(&self.offset)
            .naive_local()
    }

    /// `2025-08-01T00:40:00+09:00`
    pub fn local_iso(&self, slot: SlotStart) -> String {
        DateTime::from_timestamp(slot, 0)
            .expect("slot within chrono's range")
            .with_timezone(&self.offset)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    pub fn key(&self, slot: SlotStart) -> String {
        self.template.render(&self.local_time(slot))
    }

    /// The slot a key names, if the key matches the template and is aligned.
    pub fn parse_key(&self, key: &str) -> Option<SlotStart> {
        let local = self.template.parse_key(key)?;
        let slot = local.and_utc().timestamp() - self.offset_secs();
        (self.align_down(slot) == slot).then_some(slot)
    }

    pub fn day_of(&self, slot: SlotStart) -> NaiveDate {
        self.local_time(slot).date()
    }

    pub fn day_prefix(&self, day: NaiveDate) -> String {
        self.template.day_prefix(day)
    }

    /// First and last slot start of a local day.
    pub fn day_bounds(&self, day: NaiveDate) -> (SlotStart, SlotStart) {
        let midnight = day
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp();
        let first = midnight - self.offset_secs();
        (first, first + SECONDS_PER_DAY - self.width_secs())
    }
}

fn parse_offset(s: &str) -> Result<FixedOffset, SlotError> {
    let bad = || SlotError::BadOffset(s.to_string());
    if s == "Z" || s == "UTC" {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl";

    fn jst() -> SlotSpec {
        SlotSpec::new(10, "+09:00", TEMPLATE).unwrap()
    }

    fn now() -> DateTime<chrono::Utc> {
        DateTime::parse_from_rfc3339("2025-08-10T12:34:56Z")
            .unwrap()
            .into()
    }

    #[test]
    fn renders_and_parses_the_reference_key() {
        let spec = jst();
        let slot = parse_time(&spec, "2025-08-01T00:40", now()).unwrap();
        assert_eq!(slot, 1_753_976_400);
        assert_eq!(spec.key(slot), "2025/08/01/00/2025-08-01_00-40.jsonl");
        assert_eq!(
            spec.parse_key("2025/08/01/00/2025-08-01_00-40.jsonl"),
            Some(slot)
        );
        assert_eq!(spec.local_iso(slot), "2025-08-01T00:40:00+09:00");
    }

    #[test]
    fn rejects_keys_that_do_not_match() {
        let spec = jst();
        for key in [
            "2025/08/01/00/2025-08-01_00-45.jsonl", // not aligned
            "2025/08/01/00/2025-08-02_00-40.jsonl", // inconsistent day
            "2025/08/01/00/2025-08-01_00-40.jsonl.meta.json",
            "2025/08/01/00/2025-08-01_0a-40.jsonl",
            "2025/13/01/00/2025-13-01_00-40.jsonl",
        ] {
            assert_eq!(spec.parse_key(key), None, "{key}");
        }
    }

    #[test]
    fn day_prefix_and_day_bounds_follow_the_offset() {
        let spec = jst();
        let day = NaiveDate::from_ymd_opt(2025, 8, 1).unwrap();
        assert_eq!(spec.day_prefix(day), "2025/08/01/");
        let (first, last) = spec.day_bounds(day);
        assert_eq!(spec.local_iso(first), "2025-08-01T00:00:00+09:00");
        assert_eq!(spec.local_iso(last), "2025-08-01T23:50:00+09:00");
        assert_eq!(spec.day_of(first), day);
        let flat = SlotSpec::new(60, "-05:30", "x-%Y%m%d-%H.jsonl").unwrap();
        assert_eq!(flat.day_prefix(day), "x-20250801-");
    }

    #[test]
    fn windows_are_inclusive_and_aligned() {
        let spec = jst();
        let w = Window::parse(&spec, "2025-08-01T00:03", "2025-08-01T23:50", now()).unwrap();
        assert_eq!(spec.local_iso(w.first), "2025-08-01T00:00:00+09:00");
        assert_eq!(w.slot_count(&spec), 144);
        assert_eq!(w.days(&spec).len(), 1);
        let rel = Window::parse(&spec, "-3d", "-2d", now()).unwrap();
        // now = 21:34:56 JST on 08-10 → 3 days ago 21:30, 2 days ago 21:30 inclusive.
        assert_eq!(spec.local_iso(rel.first), "2025-08-07T21:30:00+09:00");
        assert_eq!(spec.local_iso(rel.last), "2025-08-08T21:30:00+09:00");
        assert_eq!(rel.days(&spec).len(), 2);
    }

    #[test]
    fn explicit_offsets_and_z_are_accepted() {
        let spec = jst();
        let local = parse_time(&spec, "2025-08-01T00:00", now()).unwrap();
        for input in [
            "2025-08-01T00:00+09:00",
            "2025-08-01T00:00:00+09:00",
            "2025-08-01 00:00+0900",
            "2025-07-31T15:00Z",
            "2025-07-31T15:00:00Z",
            "2025-07-31 10:00-05:00",
        ] {
            assert_eq!(parse_time(&spec, input, now()), Ok(local), "{input}");
        }
        let w = Window::parse(&spec, "2025-08-01T00:00+09:00", "2025-07-31T15:50Z", now()).unwrap();
        assert_eq!(w.slot_count(&spec), 6);
        assert!(parse_time(&spec, "2025-08-01T00:00+25:00", now()).is_err());
    }

    #[test]
    fn bad_input_is_refused() {
        let spec = jst();
        assert!(matches!(
            Window::parse(&spec, "2025-08-02", "2025-08-01", now()),
            Err(SlotError::EndBeforeStart { .. })
        ));
        assert!(matches!(
            Window::parse(&spec, "1925-08-01", "2025-08-01", now()),
            Err(SlotError::WindowTooLong { .. })
        ));
        assert!(matches!(
            parse_time(&spec, "2025-08-01T25:00", now()),
            Err(SlotError::BadTime { .. })
        ));
        assert!(matches!(
            parse_time(&spec, "-3x", now()),
            Err(SlotError::BadTime { .. })
        ));
        // Beyond the calendar: an error, not a panic (found by serve's fuzzing).
        for huge in ["-99999999999h", "-9223372036854775807m", "-99999999999999d"] {
            assert!(
                matches!(
                    parse_time(&spec, huge, now()),
                    Err(SlotError::BadTime { .. })
                ),
                "{huge}"
            );
        }
        let message = parse_time(&spec, "01/08/2025 00:00", now())
            .unwrap_err()
            .to_string();
        assert!(message.contains("2025-08-01T00:40+09:00"), "{message}");
        assert!(message.contains("-3d"), "{message}");
        assert_eq!(
            SlotSpec::new(7, "+09:00", TEMPLATE).unwrap_err(),
            SlotError::BadWidth(7)
        );
        assert!(SlotSpec::new(10, "+9", TEMPLATE).is_err());
        assert!(SlotSpec::new(10, "+09:00", "%H/%Y-%m-%d_%M.jsonl").is_err());
        assert!(SlotSpec::new(10, "+09:00", "%Y/%m/%H.jsonl").is_err());
        assert!(SlotSpec::new(10, "+09:00", "%Y/%m/%d/%H.jsonl").is_err());
        assert!(SlotSpec::new(60, "+09:00", "%Y/%m/%d/%H.jsonl").is_ok());
    }
}
