//! Note ids (§3): the six layouts, boundary ids, parsing as Misskey does, and the
//! instance's generator.

use rand::Rng;

// ─────────────────────────────── ids (§3) ───────────────────────────────

pub(super) const E2000: i64 = 946_684_800_000;
pub(super) const B36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
pub(super) const HEX: &[u8] = b"0123456789abcdef";
pub(super) const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The instance's id method (config key `id:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdScheme {
    Aid,
    Aidx,
    Meid,
    Meidg,
    Ulid,
    ObjectId,
}

impl IdScheme {
    pub const ALL: [IdScheme; 6] = {
        use IdScheme::*;
        [Aid, Aidx, Meid, Meidg, Ulid, ObjectId]
    };

    /// (config name, id length, time-part length incl. meidg's `g`, alphabet of the suffix)
    fn layout(&self) -> (&'static str, usize, usize, &'static [u8]) {
        match self {
            Self::Aid => ("aid", 10, 8, B36),
            Self::Aidx => ("aidx", 16, 8, B36),
            Self::Meid => ("meid", 24, 12, HEX),
            Self::Meidg => ("meidg", 24, 12, HEX),
            Self::Ulid => ("ulid", 26, 10, CROCKFORD),
            Self::ObjectId => ("objectid", 24, 8, HEX),
        }
    }

    /// The name used in Misskey's config: `aid`, `aidx`, `meid`, `meidg`, `ulid`, `objectid`.
    pub fn name(&self) -> &'static str {
        self.layout().0
    }

    pub fn id_len(&self) -> usize {
        self.layout().1
    }

    pub fn time_len(&self) -> usize {
        self.layout().2
    }
}

/// `v` in `alpha`, zero-padded and truncated to the last `width` digits.
pub(super) fn encode(mut v: u64, alpha: &[u8], width: usize) -> String {
    let base = alpha.len() as u64;
    let mut out = vec![alpha[0]; width];
    for slot in out.iter_mut().rev() {
        (*slot, v) = (alpha[(v % base) as usize], v / base);
    }
    String::from_utf8(out).expect("ascii")
}

pub(super) fn random_string(alpha: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    let pick = |_| alpha[rng.random_range(0..alpha.len())] as char;
    (0..n).map(pick).collect()
}

/// The time part of an id at `ms` (§3.1), e.g. `aav4kp6o` for aidx at 2025-07-31T15:40Z.
pub fn time_part(scheme: IdScheme, ms: i64) -> String {
    let t = ms.max(0) as u64;
    match scheme {
        IdScheme::Aid | IdScheme::Aidx => encode((ms - E2000).max(0) as u64, B36, 8),
        IdScheme::Meid => encode(t + 0x8000_0000_0000, HEX, 12),
        IdScheme::Meidg => format!("g{}", encode(t, HEX, 11)),
        IdScheme::Ulid => encode(t, CROCKFORD, 10),
        IdScheme::ObjectId => encode(t / 1000, HEX, 8),
    }
}

pub(super) fn pad_id(scheme: IdScheme, ms: i64, c: char) -> String {
    let pad = std::iter::repeat_n(c, scheme.id_len() - scheme.time_len());
    time_part(scheme, ms) + &pad.collect::<String>()
}

/// Smallest id at `ms`: time part + `0…0` (§3.3).
pub fn min_id_at(scheme: IdScheme, ms: i64) -> String {
    pad_id(scheme, ms, '0')
}

/// Largest id at `ms`: time part + `z…z`, `f…f` or `Z…Z`.
pub fn max_id_at(scheme: IdScheme, ms: i64) -> String {
    let alpha = scheme.layout().3;
    pad_id(scheme, ms, alpha[alpha.len() - 1] as char)
}

/// JavaScript `parseInt(s, radix)` for alphanumeric input; None is NaN.
pub(super) fn js_parse_int(s: &str, radix: u32) -> Option<i64> {
    let digits: Vec<u32> = s.chars().map_while(|c| c.to_digit(radix)).collect();
    let fold = |a: i64, d: &u32| a.saturating_mul(radix.into()) + i64::from(*d);
    (!digits.is_empty()).then(|| digits.iter().fold(0, fold))
}

/// `IdService.parse(id).date.getTime()` exactly as Misskey computes it (§3.2); None is NaN.
pub fn parse_id_ms(scheme: IdScheme, id: &str) -> Option<i64> {
    let slice = |a: usize, b: usize| -> String { id.chars().skip(a).take(b - a).collect() };
    match scheme {
        IdScheme::Aid | IdScheme::Aidx => js_parse_int(&slice(0, 8), 36).map(|v| v + E2000),
        IdScheme::Meid => js_parse_int(&slice(0, 12), 16).map(|v| v - 0x8000_0000_0000),
        IdScheme::Meidg => js_parse_int(&slice(1, 12), 16),
        IdScheme::ObjectId => js_parse_int(&slice(0, 8), 16).map(|v| v * 1000),
        // `time * 32 + CHARS.indexOf(timestamp[i])`: -1 for a missing or foreign character
        IdScheme::Ulid => Some((0..10).fold(0i64, |t, i| {
            let c = id.as_bytes().get(i);
            let pos = c.and_then(|c| CROCKFORD.iter().position(|x| x == c));
            t.saturating_mul(32) + pos.map_or(-1, |p| p as i64)
        })),
    }
}

/// Milliseconds encoded in `id` (panics on an id that Misskey would parse to NaN).
pub fn id_time_ms(scheme: IdScheme, id: &str) -> i64 {
    let ms = parse_id_ms(scheme, id);
    ms.unwrap_or_else(|| panic!("{id:?} is not a {} id", scheme.name()))
}

/// `new Date(ms).toISOString()`, e.g. `2025-07-31T15:40:00.691Z`.
pub fn iso_ms(ms: i64) -> String {
    let d = chrono::DateTime::from_timestamp_millis(ms).expect("time in range");
    d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(super) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap_or_default().as_millis() as i64
}

/// The instance's generator: aid's process counter, aidx node ids + counters, random tails.
pub(super) struct IdGen {
    pub(super) scheme: IdScheme,
    pub(super) aid_counter: u64,
    pub(super) nodes: Vec<(String, u64)>,
}

impl IdGen {
    pub(super) fn new(scheme: IdScheme) -> Self {
        // three aidx "worker processes", so same-millisecond order is not insertion order
        let nodes = (0..3).map(|_| (random_string(B36, 4), 0)).collect();
        let aid_counter = rand::rng().random_range(0..65_536);
        IdGen {
            scheme,
            aid_counter,
            nodes,
        }
    }

    pub(super) fn next_id(&mut self, ms: i64) -> String {
        let (_, len, time_len, alpha) = self.scheme.layout();
        let suffix = match self.scheme {
            IdScheme::Aid => {
                self.aid_counter += 1;
                encode(self.aid_counter, B36, 2)
            }
            IdScheme::Aidx => {
                let (node, counter) = &mut self.nodes[rand::rng().random_range(0..3)];
                *counter += 1;
                format!("{node}{}", encode(*counter, B36, 4))
            }
            _ => random_string(alpha, len - time_len),
        };
        time_part(self.scheme, ms) + &suffix
    }

    /// `IdService.gen(t)` for date bounds: 0 or a future time means now (§2.1).
    pub(super) fn gen_bound(&mut self, t: i64) -> String {
        let now = now_ms();
        self.next_id(if t == 0 || t > now { now } else { t })
    }
}
