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

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Timelike};
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

/// One piece of a parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

impl Token {
    fn digits(&self) -> usize {
        match self {
            Token::Year => 4,
            Token::Literal(_) => 0,
            _ => 2,
        }
    }
}

/// A parsed key template; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    tokens: Vec<Token>,
}

impl KeyTemplate {
    pub fn parse(template: &str) -> Result<Self, SlotError> {
        let bad = |reason: &str| SlotError::BadTemplate {
            template: template.to_string(),
            reason: reason.to_string(),
        };
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let field = match chars.next() {
                Some('Y') => Token::Year,
                Some('m') => Token::Month,
                Some('d') => Token::Day,
                Some('H') => Token::Hour,
                Some('M') => Token::Minute,
                Some('%') => {
                    literal.push('%');
                    continue;
                }
                Some(other) => {
                    return Err(bad(&format!(
                        "unsupported field %{other} (use %Y %m %d %H %M)"
                    )));
                }
                None => return Err(bad("ends with a lone %")),
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(field);
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        let first_time_field = tokens
            .iter()
            .position(|t| matches!(t, Token::Hour | Token::Minute))
            .unwrap_or(tokens.len());
        let day_part = &tokens[..first_time_field];
        for (needed, name) in [
            (Token::Year, "%Y"),
            (Token::Month, "%m"),
            (Token::Day, "%d"),
        ] {
            if !day_part.contains(&needed) {
                return Err(bad(&format!(
                    "needs a day field {name} before any hour or minute field"
                )));
            }
        }
        if template.starts_with('/') {
            return Err(bad("must be relative (no leading /)"));
        }
        Ok(KeyTemplate {
            source: template.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn has(&self, token: &Token) -> bool {
        self.tokens.contains(token)
    }

    fn render_tokens(tokens: &[Token], t: &NaiveDateTime) -> String {
        let mut out = String::with_capacity(48);
        for token in tokens {
            match token {
                Token::Literal(s) => out.push_str(s),
                Token::Year => out.push_str(&format!("{:04}", t.year())),
                Token::Month => out.push_str(&format!("{:02}", t.month())),
                Token::Day => out.push_str(&format!("{:02}", t.day())),
                Token::Hour => out.push_str(&format!("{:02}", t.hour())),
                Token::Minute => out.push_str(&format!("{:02}", t.minute())),
            }
        }
        out
    }

    /// Renders a local time to a key.
    pub fn render(&self, local: &NaiveDateTime) -> String {
        Self::render_tokens(&self.tokens, local)
    }

    /// The literal key prefix shared by every object of one local day.
    pub fn day_prefix(&self, day: NaiveDate) -> String {
        let end = self
            .tokens
            .iter()
            .position(|t| matches!(t, Token::Hour | Token::Minute))
            .unwrap_or(self.tokens.len());
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
        Self::render_tokens(&self.tokens[..end], &midnight)
    }

    /// Parses a key back to the local time it names; `None` if it does not match.
    pub fn parse_key(&self, key: &str) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day, mut hour, mut minute) = (None, None, None, 0, 0);
        let mut rest = key;
        for token in &self.tokens {
            if let Token::Literal(s) = token {
                rest = rest.strip_prefix(s.as_str())?;
                continue;
            }
            let n = token.digits();
            let digits = rest.get(..n)?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let value: u32 = digits.parse().ok()?;
            rest = &rest[n..];
            let consistent = |slot: &mut Option<u32>| match *slot {
                Some(previous) => previous == value,
                None => {
                    *slot = Some(value);
                    true
                }
            };
            let ok = match token {
                Token::Year => consistent(&mut year),
                Token::Month => consistent(&mut month),
                Token::Day => consistent(&mut day),
                Token::Hour => {
                    hour = value;
                    true
                }
                Token::Minute => {
                    minute = value;
                    true
                }
                Token::Literal(_) => true,
            };
            if !ok {
                return None;
            }
        }
        if !rest.is_empty() {
            return None;
        }
        NaiveDate::from_ymd_opt(year? as i32, month?, day?)?.and_hms_opt(hour, minute, 0)
    }
}

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
            "w" => Duration::weeks(amount),
            "d" => Duration::days(amount),
            "h" => Duration::hours(amount),
            "m" => Duration::minutes(amount),
            _ => return Err(bad("relative times look like -3d, -12h, -90m or -2w")),
        };
        return Ok((now - delta).timestamp());
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
