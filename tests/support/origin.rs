//! Either origin emulator behind one handle, so a test of fill's guarantees
//! (crashes, faults) runs unchanged against Misskey and against Mastodon.
#![allow(dead_code)]

use serde_json::{Value, json};

use super::mastodon::{MastodonConfig, MastodonEmulator, StatusSpec, Throttle, mixed_statuses};
use super::misskey::{EmulatorConfig, Fault, MisskeyEmulator, NoteSpec, max_id_at, mixed_notes};

/// The endpoint the Misskey datasets of these tests read.
pub const MISSKEY_EP: &str = "notes/search";
/// The timeline the Mastodon datasets of these tests read.
pub const MASTODON_TIMELINE: &str = "public";
/// The federation lag of those datasets (slotfill's default, "10m"): a slot's
/// first page asks for ids below its end plus this plus a second.
pub const MASTODON_LAG_MS: i64 = 600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    Misskey,
    Mastodon,
}

pub enum Emulator {
    Misskey(MisskeyEmulator),
    Mastodon(MastodonEmulator),
}

impl Emulator {
    /// A fresh emulator; Mastodon's throttles are lifted out of the way (the
    /// rate-limit tests set their own).
    pub fn start(kind: OriginKind) -> Emulator {
        match kind {
            OriginKind::Misskey => {
                Emulator::Misskey(MisskeyEmulator::start(EmulatorConfig::default()))
            }
            OriginKind::Mastodon => Emulator::Mastodon(MastodonEmulator::start(MastodonConfig {
                throttles: vec![Throttle {
                    limit: 1_000_000,
                    period_secs: 300,
                    paging_only: false,
                }],
                ..Default::default()
            })),
        }
    }

    pub fn kind(&self) -> OriginKind {
        match self {
            Emulator::Misskey(_) => OriginKind::Misskey,
            Emulator::Mastodon(_) => OriginKind::Mastodon,
        }
    }

    pub fn calls(&self) -> u64 {
        match self {
            Emulator::Misskey(e) => e.calls(),
            Emulator::Mastodon(e) => e.calls(),
        }
    }

    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        match self {
            Emulator::Misskey(e) => e.fail_next(faults),
            Emulator::Mastodon(e) => e.fail_next(faults),
        }
    }

    pub fn fail_every(&self, n: u64, fault: Fault) {
        match self {
            Emulator::Misskey(e) => e.fail_every(n, fault),
            Emulator::Mastodon(e) => e.fail_every(n, fault),
        }
    }

    pub fn base_url(&self) -> String {
        match self {
            Emulator::Misskey(e) => e.base_url(),
            Emulator::Mastodon(e) => e.base_url(),
        }
    }

    /// Records of `[start_ms, end_ms)` of mixed kinds (`count` before the
    /// origin's own filters), plus records on the range's edges when `edges`.
    pub fn add_mixed(&self, start_ms: i64, end_ms: i64, count: usize, seed: u64, edges: bool) {
        match self {
            Emulator::Misskey(e) => {
                e.add_notes(mixed_notes(start_ms, end_ms, count, seed));
                if edges {
                    for ms in [start_ms, start_ms, end_ms - 1] {
                        e.add_note(NoteSpec::public_local(ms, &format!("edge {ms}")));
                    }
                }
            }
            Emulator::Mastodon(e) => {
                e.add_statuses(mixed_statuses(start_ms, end_ms, count, seed));
                if edges {
                    for ms in [start_ms, start_ms, end_ms - 1] {
                        e.add_status(StatusSpec::local(ms, &format!("edge {ms}")));
                    }
                    // Back-dated on the first and last second: ids anywhere in them.
                    for ms in [start_ms, end_ms - 1000] {
                        e.add_status(StatusSpec::backdated(ms, &format!("late {ms}")));
                    }
                }
            }
        }
    }

    /// The records a complete fill of `[start_ms, end_ms)` writes, in order.
    pub fn expected(&self, start_ms: i64, end_ms: i64) -> Vec<Value> {
        match self {
            Emulator::Misskey(e) => e.expected(MISSKEY_EP, start_ms, end_ms),
            Emulator::Mastodon(e) => e.expected(MASTODON_TIMELINE, start_ms, end_ms),
        }
    }

    /// Every page request, as a JSON object (Misskey's body, Mastodon's query).
    pub fn page_requests(&self) -> Vec<Value> {
        match self {
            Emulator::Misskey(e) => e.requests_to(MISSKEY_EP),
            Emulator::Mastodon(e) => e.requests().into_iter().map(|q| json!(q)).collect(),
        }
    }

    /// The range a request was the *first* page of, by its lower end (Misskey:
    /// every page carries `sinceId`; Mastodon: a slot's first page carries
    /// `max_id` = the end's snowflake widened by the lag and a second, later
    /// pages an id seen).
    pub fn first_ms_of(&self, request: &Value, width_ms: i64) -> Option<i64> {
        match self {
            Emulator::Misskey(e) => {
                let since = request.get("sinceId")?.as_str()?;
                let scheme = e.scheme();
                // The lower bound is the largest id 1 ms before the start.
                let ms = super::misskey::parse_id_ms(scheme, since)? + 1;
                (max_id_at(scheme, ms - 1) == since).then_some(ms)
            }
            Emulator::Mastodon(_) => {
                let max_id: u64 = request.get("max_id")?.as_str()?.parse().ok()?;
                let end = (max_id >> 16) as i64 - 1000 - MASTODON_LAG_MS;
                let first_page = max_id & 0xffff == 0 && end % width_ms == 0;
                first_page.then_some(end - width_ms)
            }
        }
    }

    /// Calls the probe makes before the first slot (with a fixed id scheme
    /// on Misskey): Mastodon reads the instance's feed settings, the newest
    /// statuses, and one page below them.
    pub fn probe_calls(&self) -> usize {
        match self {
            Emulator::Misskey(_) => 1,
            Emulator::Mastodon(_) => 3,
        }
    }

    /// The most records one page holds.
    pub fn page_limit(&self) -> u64 {
        match self {
            Emulator::Misskey(_) => 100,
            Emulator::Mastodon(_) => 40,
        }
    }

    /// The `[datasets.jp.source]` section pointing at this emulator.
    pub fn source(&self) -> String {
        match self {
            Emulator::Misskey(e) => format!(
                "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{}\"\nmode = \"{}\"\nid_scheme = \"auto\"\n",
                e.base_url(),
                "search"
            ),
            Emulator::Mastodon(e) => format!(
                "[datasets.jp.source]\nkind = \"mastodon\"\nbase_url = \"{}\"\ntimeline = \"{MASTODON_TIMELINE}\"\n",
                e.base_url()
            ),
        }
    }
}
