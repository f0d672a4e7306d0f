//! Id codecs of the Mastodon-API servers: what time an id carries (if any),
//! how the server orders ids, and the bound an instant becomes in the
//! server's own id space.
//!
//! | codec | servers | id | order |
//! |---|---|---|---|
//! | `snowflake` | Mastodon | decimal `ms << 16 \| tail` | numbers |
//! | `ulid` | GoToSocial (and Misskey's `ulid`) | 26 uppercase Crockford, 10 of time | strings |
//! | `aid`, `aidx`, `meid`, `meidg`, `objectid` | Sharkey, CherryPick (Misskey ids) | see [`IdScheme`] | strings |
//! | `flake` | Pleroma, Akkoma | base62 of a 128-bit FlakeId, 64 bits of ms first | strings of equal length |
//! | `opaque` | anything else | no time a client can read | the server's own |
//!
//! A bound sent in another id space bounds nothing: a numeric `max_id` sorts
//! after every ULID, a lowercase ULID after every uppercase one. So bounds are
//! only ever built by the codec the server's ids were detected with.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::ids::{IdScheme, parse_radix, radix};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 2000-01-01T00:00:00Z: no server minted ids before it.
const PLAUSIBLE_FROM_MS: i64 = 946_684_800_000;
/// How far before its status's `created_at` an id's time may lie (a back-dated
/// snowflake's millisecond is random within its second), and, for detection,
/// clock skew.
pub const ID_BEFORE_CREATED_MS: i64 = 1000;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCodec {
    /// Mastodon: a 64-bit integer sent as a decimal string, `ms << 16 | tail`.
    Snowflake,
    /// A fixed-width time prefix compared as strings: ULID, Misskey's schemes.
    Prefixed(IdScheme),
    /// Pleroma/Akkoma: a FlakeId (64 bits of ms, 48 of worker, 16 of sequence) in base62.
    Flake,
    /// Ids that carry no time: ranges are paged by `created_at`.
    Opaque,
}

impl IdCodec {
    /// Every codec, in the order `auto` tries them.
    pub const ALL: [IdCodec; 9] = [
        IdCodec::Snowflake,
        IdCodec::Prefixed(IdScheme::Ulid),
        IdCodec::Flake,
        IdCodec::Prefixed(IdScheme::Aidx),
        IdCodec::Prefixed(IdScheme::Aid),
        IdCodec::Prefixed(IdScheme::Meidg),
        IdCodec::Prefixed(IdScheme::Meid),
        IdCodec::Prefixed(IdScheme::ObjectId),
        IdCodec::Opaque,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IdCodec::Snowflake => "snowflake",
            IdCodec::Prefixed(scheme) => scheme.name(),
            IdCodec::Flake => "flake",
            IdCodec::Opaque => "opaque",
        }
    }

    /// Whether ids carry a time the client can read.
    pub fn has_time(self) -> bool {
        self != IdCodec::Opaque
    }

    /// The time (Unix ms) an id carries; None when it does not fit the codec.
    pub fn time_of(self, id: &str) -> Option<i64> {
        match self {
            IdCodec::Snowflake => {
                let digits = id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
                let value: u64 = id.parse().ok().filter(|_| digits)?;
                Some((value >> 16) as i64)
            }
            IdCodec::Prefixed(scheme) => scheme.time_of(id),
            IdCodec::Flake => {
                let fits = (1..=22).contains(&id.len()) && id.bytes().all(|b| BASE62.contains(&b));
                let value = parse_base62(id).filter(|_| fits)?;
                i64::try_from(value >> 64).ok()
            }
            IdCodec::Opaque => None,
        }
    }

    /// The smallest id any status of millisecond `ms` can have: as `max_id`
    /// (exclusive) it selects every id of earlier milliseconds. None for opaque ids.
    pub fn min_id_at(self, ms: i64) -> Option<String> {
        let ms = ms.max(0);
        match self {
            IdCodec::Snowflake => Some(((ms as u64) << 16).to_string()),
            IdCodec::Prefixed(scheme) => Some(scheme.min_id_at(ms)),
            IdCodec::Flake => Some(base62((ms as u128) << 64)),
            IdCodec::Opaque => None,
        }
    }

    /// The server's order of two ids; None when the codec cannot tell (opaque
    /// ids, or an id that does not fit).
    pub fn cmp(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            IdCodec::Snowflake => Some(a.parse::<u64>().ok()?.cmp(&b.parse::<u64>().ok()?)),
            IdCodec::Prefixed(_) => Some(a.cmp(b)),
            // Base62 without padding: a longer id is a larger number.
            IdCodec::Flake => Some(a.len().cmp(&b.len()).then_with(|| a.cmp(b))),
            IdCodec::Opaque => None,
        }
    }

    /// Whether `id` sorts strictly below `bound` in the server's order.
    pub fn below(self, id: &str, bound: &str) -> bool {
        self.cmp(id, bound) == Some(Ordering::Less)
    }

    /// Whether the codec reads every sample id, each to a time a server could
    /// have minted it at: not before 2000, not a day past now, and not more
    /// than a day before its status's `created_at` (ids are minted when a
    /// status is created or received, never long before). Random or sequential
    /// ids decode to times that fail this.
    pub fn reads(self, samples: &[(&str, i64)], now_ms: i64) -> bool {
        !samples.is_empty()
            && samples.iter().all(|(id, created_ms)| {
                self.time_of(id).is_some_and(|t| {
                    t >= PLAUSIBLE_FROM_MS && t <= now_ms + DAY_MS && t >= created_ms - DAY_MS
                })
            })
    }

    /// The codec that reads the sample `(id, created_at ms)` pairs; opaque
    /// when none does (or there are none).
    pub fn detect(samples: &[(&str, i64)], now_ms: i64) -> IdCodec {
        IdCodec::ALL
            .into_iter()
            .find(|codec| codec.has_time() && codec.reads(samples, now_ms))
            .unwrap_or(IdCodec::Opaque)
    }

    fn accepted() -> String {
        let names: Vec<&str> = IdCodec::ALL.iter().map(|c| c.name()).collect();
        names.join(", ")
    }
}

fn base62(value: u128) -> String {
    radix(value, BASE62, 1)
}

fn parse_base62(s: &str) -> Option<u128> {
    parse_radix(s, BASE62)
}

impl fmt::Display for IdCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for IdCodec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(scheme) = s.parse::<IdScheme>() {
            return Ok(IdCodec::Prefixed(scheme));
        }
        IdCodec::ALL
            .into_iter()
            .find(|codec| codec.name() == s)
            .ok_or_else(|| format!("unknown id_scheme {s:?} (auto, {})", IdCodec::accepted()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_753_976_400_000; // 2025-07-31T15:40:00Z
    const NOW: i64 = T0 + 3_600_000;

    #[test]
    fn each_codec_reads_its_own_bounds_and_orders_them() {
        for codec in IdCodec::ALL.into_iter().filter(|c| c.has_time()) {
            let step = if codec == IdCodec::Prefixed(IdScheme::ObjectId) {
                1000
            } else {
                1
            };
            let (a, b) = (
                codec.min_id_at(T0).unwrap(),
                codec.min_id_at(T0 + step).unwrap(),
            );
            assert_eq!(codec.time_of(&a), Some(T0), "{codec}");
            assert_eq!(codec.time_of(&b), Some(T0 + step), "{codec}");
            assert!(codec.below(&a, &b) && !codec.below(&b, &a), "{codec}");
            assert_eq!(IdCodec::detect(&[(&a, T0)], NOW), codec, "{codec}");
            assert_eq!(codec.name().parse::<IdCodec>(), Ok(codec));
        }
        // misskey-api.md §7 and §3.5.
        assert_eq!(
            IdCodec::Snowflake.min_id_at(T0).unwrap(),
            "114948597350400000"
        );
        assert_eq!(
            IdCodec::Prefixed(IdScheme::Ulid).min_id_at(T0).unwrap(),
            "01K1GJ7T400000000000000000"
        );
    }

    #[test]
    fn numbers_order_as_numbers_and_flakes_as_equal_length_strings() {
        let s = IdCodec::Snowflake;
        assert!(s.below("99", "100"), "numeric, not string order");
        assert_eq!(s.cmp("x", "1"), None);
        let f = IdCodec::Flake;
        assert!(f.below("zz", "100") && f.below("A0", "a0"));
        // A real Pleroma id: 18 characters, a 2019 millisecond.
        let t = f.time_of("9n2ciuRvKHpXa4ljp2").unwrap();
        assert!((1_546_300_800_000..1_577_836_800_000).contains(&t), "{t}");
        assert_eq!(IdCodec::Opaque.cmp("1", "2"), None);
        assert_eq!(IdCodec::Opaque.min_id_at(T0), None);
    }

    #[test]
    fn detection_reads_time_or_says_opaque() {
        let ulid = "01K1GJ7T40ABCDEFGHJKMNPQRS";
        assert_eq!(
            IdCodec::detect(&[(ulid, T0 + 2)], NOW),
            IdCodec::Prefixed(IdScheme::Ulid)
        );
        let flake = IdCodec::Flake.min_id_at(T0 + 5000).unwrap();
        assert_eq!(IdCodec::detect(&[(&flake, T0)], NOW), IdCodec::Flake);
        assert_eq!(
            IdCodec::detect(&[("aav4kppvuwcu01wc", T0)], NOW),
            IdCodec::Prefixed(IdScheme::Aidx)
        );
        // Sequential numbers look like snowflakes of 1970: no time.
        assert_eq!(
            IdCodec::detect(&[("1234", T0), ("1233", T0)], NOW),
            IdCodec::Opaque
        );
        // Mixed or foreign ids, or none.
        let snowflake = IdCodec::Snowflake.min_id_at(T0).unwrap();
        assert_eq!(
            IdCodec::detect(&[(&snowflake, T0), (ulid, T0)], NOW),
            IdCodec::Opaque
        );
        assert_eq!(IdCodec::detect(&[("not-an-id", T0)], NOW), IdCodec::Opaque);
        assert_eq!(IdCodec::detect(&[], NOW), IdCodec::Opaque);
        // A receipt-time id hours after its status is still read.
        let late = IdCodec::Snowflake.min_id_at(T0 + 3 * 3_600_000).unwrap();
        assert_eq!(
            IdCodec::detect(&[(&late, T0)], T0 + 4 * 3_600_000),
            IdCodec::Snowflake
        );
        let err = "snowflak".parse::<IdCodec>().unwrap_err();
        assert!(err.contains("auto, snowflake, ulid, flake, aidx"), "{err}");
    }
}
