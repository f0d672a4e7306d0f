//! Misskey note-id codecs: ids encode their creation time.
//!
//! Every scheme puts a fixed-width time part first, so ids sort by time as
//! byte strings. From a time we build the smallest and largest id possible
//! at that instant, which turns a slot `[start, end)` into exact exclusive
//! bounds: `sinceId = largest(start − 1 ms)`, `untilId = smallest(end)`.

use std::fmt;
use std::str::FromStr;

/// Milliseconds from the Unix epoch to 2000-01-01T00:00:00Z (aid's epoch).
const EPOCH_2000_MS: i64 = 946_684_800_000;
const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdScheme {
    Aid,
    Aidx,
    Meid,
    Meidg,
    Ulid,
    ObjectId,
}

impl IdScheme {
    pub const ALL: [IdScheme; 6] = [
        IdScheme::Aid,
        IdScheme::Aidx,
        IdScheme::Meid,
        IdScheme::Meidg,
        IdScheme::Ulid,
        IdScheme::ObjectId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IdScheme::Aid => "aid",
            IdScheme::Aidx => "aidx",
            IdScheme::Meid => "meid",
            IdScheme::Meidg => "meidg",
            IdScheme::Ulid => "ulid",
            IdScheme::ObjectId => "objectid",
        }
    }

    /// Total id length and the length of its time part.
    fn layout(self) -> (usize, usize) {
        match self {
            IdScheme::Aid => (10, 8),
            IdScheme::Aidx => (16, 8),
            IdScheme::Meid => (24, 12),
            IdScheme::Meidg => (24, 12),
            IdScheme::Ulid => (26, 10),
            IdScheme::ObjectId => (24, 8),
        }
    }

    fn max_suffix_char(self) -> char {
        match self {
            IdScheme::Aid | IdScheme::Aidx => 'z',
            IdScheme::Ulid => 'Z',
            _ => 'f',
        }
    }

    /// The time part of an id at `ms` (clamped to the scheme's range).
    pub fn time_part(self, ms: i64) -> String {
        match self {
            IdScheme::Aid | IdScheme::Aidx => {
                let t = (ms - EPOCH_2000_MS).max(0) as u64;
                let s = radix(t.into(), BASE36, 8);
                s[s.len() - 8..].to_string()
            }
            IdScheme::Meid => format!("{:012x}", ms.max(0) as u64 + 0x8000_0000_0000),
            IdScheme::Meidg => format!("g{:011x}", ms.max(0) as u64),
            IdScheme::Ulid => radix(ms.max(0) as u128, CROCKFORD, 10),
            IdScheme::ObjectId => format!("{:08x}", ms.max(0) as u64 / 1000),
        }
    }

    /// The smallest id any note created at `ms` can have.
    pub fn min_id_at(self, ms: i64) -> String {
        let (total, time) = self.layout();
        format!("{}{}", self.time_part(ms), "0".repeat(total - time))
    }

    /// The largest id any note created at `ms` can have.
    pub fn max_id_at(self, ms: i64) -> String {
        let (total, time) = self.layout();
        let suffix: String = std::iter::repeat_n(self.max_suffix_char(), total - time).collect();
        format!("{}{suffix}", self.time_part(ms))
    }

    /// Exclusive bounds selecting exactly the notes with `start_ms <= t < end_ms`.
    pub fn bounds(self, start_ms: i64, end_ms: i64) -> (String, String) {
        // objectid has second precision: the last id of the previous second.
        let before = if self == IdScheme::ObjectId {
            start_ms - 1000
        } else {
            start_ms - 1
        };
        (self.max_id_at(before), self.min_id_at(end_ms))
    }

    /// The smallest step between distinct id times: objectid has whole seconds.
    pub fn resolution_ms(self) -> i64 {
        if self == IdScheme::ObjectId { 1000 } else { 1 }
    }

    /// The creation time (Unix ms) an id encodes, if it fits this scheme.
    pub fn time_of(self, id: &str) -> Option<i64> {
        let (total, time) = self.layout();
        if id.len() != total || !id.is_ascii() {
            return None;
        }
        match self {
            IdScheme::Aid | IdScheme::Aidx => {
                Some(i64::try_from(parse_radix(&id[..time], BASE36)?).ok()? + EPOCH_2000_MS)
            }
            IdScheme::Meid => i64::from_str_radix(&id[..12], 16)
                .ok()
                .map(|v| v - 0x8000_0000_0000),
            IdScheme::Meidg => id
                .strip_prefix('g')
                .and_then(|rest| i64::from_str_radix(&rest[..11], 16).ok()),
            IdScheme::Ulid => i64::try_from(parse_radix(&id[..time], CROCKFORD)?).ok(),
            IdScheme::ObjectId => i64::from_str_radix(&id[..8], 16).ok().map(|s| s * 1000),
        }
    }

    /// Guesses the scheme from sample ids (misskey-api.md §3.4); `None` if they disagree.
    pub fn detect<'a>(ids: impl IntoIterator<Item = &'a str>) -> Option<IdScheme> {
        let mut found = None;
        for id in ids {
            let scheme = detect_one(id)?;
            if found.is_some_and(|f| f != scheme) {
                return None;
            }
            found = Some(scheme);
        }
        found
    }
}

fn detect_one(id: &str) -> Option<IdScheme> {
    let lower36 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    match id.len() {
        10 if lower36(id) => Some(IdScheme::Aid),
        16 if lower36(id) => Some(IdScheme::Aidx),
        26 if id.bytes().all(|b| CROCKFORD.contains(&b)) => Some(IdScheme::Ulid),
        24 if id.starts_with('g') && hex(&id[1..]) => Some(IdScheme::Meidg),
        24 if hex(id) => Some(if id.as_bytes()[0] >= b'8' {
            IdScheme::Meid
        } else {
            IdScheme::ObjectId
        }),
        _ => None,
    }
}

/// `value` in `alphabet`'s digits, zero-padded to `width` (shared with the codecs).
pub(super) fn radix(mut value: u128, alphabet: &[u8], width: usize) -> String {
    let base = alphabet.len() as u128;
    let mut digits = Vec::new();
    while value > 0 {
        digits.push(alphabet[(value % base) as usize]);
        value /= base;
    }
    while digits.len() < width {
        digits.push(alphabet[0]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("ascii alphabet")
}

/// A number written in `alphabet`'s digits; None for a foreign digit or an overflow.
pub(super) fn parse_radix(s: &str, alphabet: &[u8]) -> Option<u128> {
    s.bytes().try_fold(0u128, |acc, b| {
        let digit = alphabet.iter().position(|&a| a == b)? as u128;
        acc.checked_mul(alphabet.len() as u128)?.checked_add(digit)
    })
}

impl fmt::Display for IdScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IdScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdScheme::ALL
            .into_iter()
            .find(|scheme| scheme.name() == s)
            .ok_or_else(|| {
                format!("unknown id_scheme {s:?} (auto, aid, aidx, meid, meidg, ulid, objectid)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_753_976_400_000; // 2025-08-01T00:40:00+09:00

    #[test]
    fn the_documented_example_checks_out() {
        let id = "aav4kppvuwcu01wc";
        assert_eq!(IdScheme::detect([id]), Some(IdScheme::Aidx));
        assert_eq!(IdScheme::Aidx.time_of(id), Some(1_753_976_400_691));
        assert_eq!(IdScheme::Aidx.time_part(T0), "aav4kp6o");
        let (since, until) = IdScheme::Aidx.bounds(T0, T0 + 600_000);
        assert_eq!(since, "aav4kp6nzzzzzzzz");
        assert_eq!(until, "aav4xk5c00000000");
        assert!(since.as_str() < id && id < until.as_str());
        assert_eq!(IdScheme::Ulid.time_part(T0), "01K1GJ7T40");
    }

    #[test]
    fn every_scheme_round_trips_and_orders() {
        for scheme in IdScheme::ALL {
            let ms = if scheme == IdScheme::ObjectId {
                T0 + 7000
            } else {
                T0 + 7
            };
            let min = scheme.min_id_at(ms);
            let max = scheme.max_id_at(ms);
            assert_eq!(scheme.time_of(&min), Some(ms), "{scheme}");
            assert_eq!(scheme.time_of(&max), Some(ms), "{scheme}");
            assert_eq!(
                IdScheme::detect([min.as_str(), max.as_str()]),
                Some(scheme),
                "{scheme}"
            );
            let (since, until) = scheme.bounds(ms, ms + 600_000);
            assert!(
                since < min && max < until,
                "{scheme}: bounds exclude the window's edges"
            );
            assert!(scheme.max_id_at(ms + 600_000 - 1) < until || scheme == IdScheme::ObjectId);
            assert!(until <= scheme.min_id_at(ms + 600_000), "{scheme}");
        }
    }

    #[test]
    fn detection_refuses_mixed_or_foreign_ids() {
        assert_eq!(IdScheme::detect(["aav4kppvuwcu01wc", "aav4kppvuw"]), None);
        assert_eq!(IdScheme::detect(["not-an-id"]), None);
        assert_eq!(
            IdScheme::detect(["5f0c8a1b2c3d4e5f6a7b8c9d"]),
            Some(IdScheme::ObjectId)
        );
    }
}
