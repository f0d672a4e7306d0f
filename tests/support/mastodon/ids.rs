//! Status ids as each server kind mints and orders them (misskey-api.md §7,
//! §9.2–9.4): Mastodon's snowflakes (receipt time for delivered statuses,
//! a random millisecond for back-dated ones), GoToSocial's ULIDs (a few ms
//! before `created_at`), Akkoma's FlakeIds (insert time), Sharkey's aidx
//! (from `createdAt`), and ids that carry no time.

use rand::Rng;

use super::super::misskey::{IdScheme, time_part};
use super::{ServerKind, StatusSpec};

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const B36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// How the server orders ids: numbers, or strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key {
    Num(u64),
    Str(String),
}

impl ServerKind {
    /// Whether ids compare as numbers (`id < max_id` on a bigint column).
    fn numeric(self) -> bool {
        matches!(self, ServerKind::Mastodon | ServerKind::Opaque)
    }

    /// A query bound as the server reads it: Rails' `to_i` for numbers (a
    /// foreign string is 0), the raw string otherwise (GoToSocial validates
    /// nothing: `max_id=not-an-id` answers 200).
    pub(super) fn bound(self, v: &str) -> Key {
        match self.numeric() {
            true => {
                let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
                Key::Num(digits.parse().unwrap_or(0))
            }
            false => Key::Str(v.to_string()),
        }
    }

    /// The id a new status gets, with its sort key; `sequence` counts statuses.
    pub(super) fn mint(self, spec: &StatusSpec, sequence: u64) -> (String, Key) {
        let mut rng = rand::rng();
        let received = spec.created_at_ms + spec.delay_ms;
        match self {
            ServerKind::Mastodon => {
                let id = if spec.backdated {
                    let second = spec.created_at_ms.div_euclid(1000) * 1000;
                    (((second + rng.random_range(0..1000)) as u64) << 16)
                        + rng.random_range(0..65536u64)
                } else {
                    ((received as u64) << 16) | (sequence & 0xffff)
                };
                (id.to_string(), Key::Num(id))
            }
            ServerKind::GoToSocial => {
                // Measured on 0.19.2: the id's millisecond is 0–2 ms before created_at.
                let ms = spec.created_at_ms - rng.random_range(0..=2);
                let id = time_part(IdScheme::Ulid, ms) + &random(CROCKFORD, 16);
                (id.clone(), Key::Str(id))
            }
            ServerKind::Akkoma => {
                let worker: u128 = 0x5a_17_c0_ff_ee_01;
                let value =
                    ((received as u128) << 64) | (worker << 16) | u128::from(sequence as u16);
                let id = base62(value);
                (id.clone(), Key::Str(id))
            }
            ServerKind::Sharkey => {
                let counter = sequence % (36u64.pow(4));
                let id =
                    time_part(IdScheme::Aidx, spec.created_at_ms) + "x7k2" + &encode36(counter, 4);
                (id.clone(), Key::Str(id))
            }
            ServerKind::Opaque => {
                // Ordered by receipt, like a sequence in insert order; no codec reads a time.
                let id = (received as u64) * 1000 + sequence % 1000;
                (id.to_string(), Key::Num(id))
            }
        }
    }

    /// The time (ms) an id of this kind carries, as the server minted it.
    pub(super) fn id_time(self, spec: &StatusSpec, id: &str) -> i64 {
        match self {
            ServerKind::Mastodon => (id.parse::<u64>().expect("snowflake") >> 16) as i64,
            ServerKind::GoToSocial => decode(&id[..10], CROCKFORD) as i64,
            ServerKind::Akkoma => (decode(id, BASE62) >> 64) as i64,
            ServerKind::Sharkey => decode(&id[..8], B36) as i64 + 946_684_800_000,
            ServerKind::Opaque => spec.created_at_ms + spec.delay_ms,
        }
    }
}

fn random(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

fn encode36(mut v: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = B36[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out).expect("ascii")
}

/// A FlakeId's base62 form (no padding).
pub fn base62(mut value: u128) -> String {
    let mut digits = Vec::new();
    while value > 0 {
        digits.push(BASE62[(value % 62) as usize]);
        value /= 62;
    }
    digits.reverse();
    String::from_utf8(digits).expect("ascii")
}

fn decode(s: &str, alphabet: &[u8]) -> u128 {
    s.bytes().fold(0u128, |acc, b| {
        let digit = alphabet.iter().position(|&a| a == b).expect("id alphabet");
        acc * alphabet.len() as u128 + digit as u128
    })
}
