//! In-process emulator of the public timelines of Mastodon-API servers for
//! integration tests (`shared/misskey-api.md` §7, §9.2–9.4): `GET
//! /api/v1/timelines/public` with `local`, `remote`, `only_media`, `max_id`,
//! `since_id`, `min_id` and `limit` (default 20, capped at 40); every bound
//! exclusive; `max_id`/`since_id` newest first, `min_id` the page right after
//! it, reversed; the Link header (none on an empty page); `{"error": "…"}`
//! bodies (401/422 when a user is required); injected faults ([`Fault`],
//! shared with the Misskey emulator).
//!
//! [`ServerKind`] picks the server, each failing the way the real one does:
//! Mastodon's snowflakes (receipt-time ids for statuses delivered late,
//! [`StatusSpec::delivered`]), GoToSocial (ULIDs compared as strings, the
//! clamp to 40, the `min_id` quirk, ignored `remote`/`only_media`, 418
//! without a User-Agent, filtering after its query with `[]` pages that carry
//! a Link), Akkoma's FlakeIds, a Sharkey layer with aidx ids and its errors as
//! 401, and ids that carry no time. [`RateLimitForm`] picks how the rate
//! limits announce themselves; [`FeedAccess`] gives the server Mastodon 4.5's
//! feed settings (a disabled feed answers a signed-in caller 200 `[]`).
//! Everything but stock Mastodon is off by default.
//!
//! Layout: this file holds the public types and the handle; `ids` how each
//! kind mints and orders ids; `feed` the statuses, filters and paging; `gts`
//! GoToSocial's own paging; `limits` the rate-limit forms; `http` the
//! endpoints, authentication, faults and plumbing.
#![allow(dead_code)]

mod feed;
mod gts;
mod http;
mod ids;
mod limits;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::http::Server;
pub use super::misskey::Fault;
use feed::{Part, part_of};
pub use gts::GTS_HOST;
use http::{Shared, lock};
pub use limits::RateLimitForm;

/// One rack-attack throttle: `limit` requests per fixed window of `period_secs`.
#[derive(Clone, Debug)]
pub struct Throttle {
    pub limit: u64,
    pub period_secs: u64,
    /// Counts only paging requests (any `max_id`/`min_id`/`since_id`/`page`).
    pub paging_only: bool,
}

/// Which server answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerKind {
    /// Mastodon 4.x: snowflakes; a status delivered late gets its receipt time.
    #[default]
    Mastodon,
    /// GoToSocial 0.19.2 (misskey-api.md §9.3).
    GoToSocial,
    /// Pleroma/Akkoma: FlakeIds minted on insert (receipt), compared as strings.
    Akkoma,
    /// Sharkey's Mastodon layer: aidx ids from `createdAt`, errors as 401.
    Sharkey,
    /// Ids that carry no time (numbers in receipt order that no codec reads).
    Opaque,
}

/// Mastodon 4.5's `timelines_access.live_feeds`: `public`, `authenticated`
/// or `disabled`, for local and remote statuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedAccess {
    pub local: &'static str,
    pub remote: &'static str,
}

#[derive(Clone, Debug)]
pub struct MastodonConfig {
    pub kind: ServerKind,
    pub rate_limit_form: RateLimitForm,
    /// Mastodon 4.5's feed settings; None: a server without them.
    pub feed_access: Option<FeedAccess>,
    /// The feed settings apply but `GET /api/v2/instance` does not show them
    /// (a fork, or a proxy in front): only the answers tell.
    pub hide_feed_settings: bool,
    /// Tokens whose role may view disabled feeds (`view_feeds`).
    pub staff_tokens: Vec<String>,
    /// A server that ignores `max_id`: it cannot be paged at all.
    pub ignore_max_id: bool,
    /// How long each answer takes (after the rate limit counted the request),
    /// so concurrent calls overlap at the server.
    pub answer_delay: Duration,
    /// The server needs a signed-in user for its public timelines
    /// (`local_live_feed_access` / `remote_live_feed_access`).
    pub require_token: bool,
    /// The status of that refusal: 422 in older versions, 401 in newer ones.
    pub auth_status: u16,
    /// Valid access tokens; any other gives 401.
    pub tokens: Vec<String>,
    pub throttles: Vec<Throttle>,
}

impl Default for MastodonConfig {
    /// Anonymous access; the stock limits: 300 / 5 min for the API, and
    /// 300 / 15 min more for paging requests.
    fn default() -> Self {
        MastodonConfig {
            kind: ServerKind::Mastodon,
            rate_limit_form: RateLimitForm::MastodonIso,
            feed_access: None,
            hide_feed_settings: false,
            staff_tokens: Vec::new(),
            ignore_max_id: false,
            answer_delay: Duration::ZERO,
            require_token: false,
            auth_status: 401,
            tokens: Vec::new(),
            throttles: vec![
                Throttle {
                    limit: 300,
                    period_secs: 300,
                    paging_only: false,
                },
                Throttle {
                    limit: 300,
                    period_secs: 900,
                    paging_only: true,
                },
            ],
        }
    }
}

/// What a status looks like.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusSpec {
    pub created_at_ms: i64,
    pub author: &'static str,
    /// From another server: `acct` is `author@remote.example`.
    pub remote: bool,
    /// A remote status with a past `published`: its id's millisecond is random
    /// within its second.
    pub backdated: bool,
    /// `public`, `unlisted`, `private` or `direct`.
    pub visibility: &'static str,
    pub reply_to_other: bool,
    pub self_reply: bool,
    pub reblog: bool,
    pub media: bool,
    /// A suspended or silenced author: left out of the public feed.
    pub suspended: bool,
    pub text: String,
    /// How long after `created_at` the server received it (a late delivery).
    pub delay_ms: i64,
}

impl StatusSpec {
    pub fn local(created_at_ms: i64, text: &str) -> Self {
        StatusSpec {
            created_at_ms,
            author: "alice",
            remote: false,
            backdated: false,
            visibility: "public",
            reply_to_other: false,
            self_reply: false,
            reblog: false,
            media: false,
            suspended: false,
            text: text.to_string(),
            delay_ms: 0,
        }
    }

    /// A remote status delivered `delay_ms` after its creation.
    pub fn delivered(created_at_ms: i64, delay_ms: i64, text: &str) -> Self {
        StatusSpec {
            remote: true,
            author: "carol",
            delay_ms,
            ..Self::local(created_at_ms, text)
        }
    }

    /// A reply to another account's status: never in the public feed.
    pub fn reply_to_other(created_at_ms: i64, text: &str) -> Self {
        StatusSpec {
            reply_to_other: true,
            ..Self::local(created_at_ms, text)
        }
    }

    /// A remote status, back-dated (its id only second-accurate).
    pub fn backdated(created_at_ms: i64, text: &str) -> Self {
        StatusSpec {
            remote: true,
            backdated: true,
            author: "carol",
            ..Self::local(created_at_ms, text)
        }
    }

    pub fn visible(mut self, visibility: &'static str) -> Self {
        self.visibility = visibility;
        self
    }
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (*x ^ (*x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` deterministic, varied statuses in `[start_ms, end_ms)`: mostly
/// public local, plus remote (some back-dated), unlisted, private and direct
/// ones, boosts, replies to others and to oneself, media, suspended authors.
/// About one in eight shares the previous status's millisecond.
pub fn mixed_statuses(start_ms: i64, end_ms: i64, count: usize, seed: u64) -> Vec<StatusSpec> {
    let (mut s, mut prev) = (seed, start_ms);
    let span = (end_ms - start_ms).max(1) as u64;
    let authors = ["alice", "bob", "dave", "erin"];
    (0..count)
        .map(|i| {
            let r = splitmix(&mut s);
            if i == 0 || !r.is_multiple_of(8) {
                prev = start_ms + (splitmix(&mut s) % span) as i64;
            }
            let text = super::misskey::sample_text(r >> 32);
            let mut n = StatusSpec::local(prev, &text);
            n.author = authors[(r >> 40) as usize % authors.len()];
            match (r >> 3) % 20 {
                0..=2 => n.remote = true,
                3 | 4 => n = StatusSpec::backdated(prev - prev.rem_euclid(1000), &text),
                5 => n.visibility = "unlisted",
                6 => n.visibility = "private",
                7 => n.visibility = "direct",
                8 => n.reblog = true,
                9 => n.reply_to_other = true,
                10 => n.self_reply = true,
                11 => n.media = true,
                12 => n.suspended = true,
                _ => {}
            }
            n
        })
        .collect()
}

/// A running emulator; stops (closing every connection) on Drop.
pub struct MastodonEmulator {
    shared: Arc<Shared>,
    _server: Server,
}

/// The part of the feed a timeline reads: `local`, `public` or `remote`.
fn timeline_part(timeline: &str) -> Part {
    match timeline {
        "local" => Part::Local,
        "remote" => Part::Remote,
        "public" => Part::All,
        other => panic!("unknown timeline {other}"),
    }
}

impl MastodonEmulator {
    /// Binds 127.0.0.1:0 and serves on a dedicated thread with its own tokio runtime.
    pub fn start(cfg: MastodonConfig) -> MastodonEmulator {
        let state = Mutex::new(feed::State::new(cfg.kind));
        let shared = |addr| {
            Arc::new(Shared {
                state,
                cfg,
                log: Mutex::default(),
                base: format!("http://{addr}"),
            })
        };
        let (server, shared) = Server::start("mastodon-emulator", shared);
        MastodonEmulator {
            shared,
            _server: server,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// Stores a status; returns its id.
    pub fn add_status(&self, spec: StatusSpec) -> String {
        lock(&self.shared.state).add(spec)
    }

    pub fn add_statuses(&self, specs: impl IntoIterator<Item = StatusSpec>) -> Vec<String> {
        let mut st = lock(&self.shared.state);
        specs.into_iter().map(|s| st.add(s)).collect()
    }

    /// Ground truth: the statuses `timeline` holds by design with `start_ms ≤
    /// created_at < end_ms`, as the exact JSON served, sorted by created_at then id.
    pub fn expected(&self, timeline: &str, start_ms: i64, end_ms: i64) -> Vec<Value> {
        let state = lock(&self.shared.state);
        state.expected(timeline_part(timeline), false, (start_ms, end_ms), false)
    }

    /// Like [`Self::expected`], for a timeline read with `only_media=true`.
    pub fn expected_media(&self, timeline: &str, start_ms: i64, end_ms: i64) -> Vec<Value> {
        let state = lock(&self.shared.state);
        state.expected(timeline_part(timeline), true, (start_ms, end_ms), false)
    }

    /// Like [`Self::expected`], placed and sorted by the time the ids carry
    /// (when the server received each status).
    pub fn expected_by_receipt(&self, timeline: &str, start_ms: i64, end_ms: i64) -> Vec<Value> {
        let state = lock(&self.shared.state);
        state.expected(timeline_part(timeline), false, (start_ms, end_ms), true)
    }

    /// A page as the server would answer `query` (`key=value&…`), ids only
    /// (every kind but GoToSocial, which pages in `gts`).
    pub fn page_ids(&self, query: &str) -> Vec<String> {
        let q: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let st = lock(&self.shared.state);
        st.page(&q, part_of(&q))
            .iter()
            .map(|s| s.id.to_string())
            .collect()
    }

    /// All calls received, including faulted and throttled ones.
    pub fn calls(&self) -> u64 {
        lock(&self.shared.log).calls
    }

    /// The query of every timeline request, in order.
    pub fn requests(&self) -> Vec<BTreeMap<String, String>> {
        let log = lock(&self.shared.log);
        let timeline = log
            .requests
            .iter()
            .filter(|(path, _)| path == "/api/v1/timelines/public");
        timeline.map(|(_, q)| q.clone()).collect()
    }

    /// The path of every request, in order.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.shared.log)
            .requests
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Refusals the rate limits answered (429s, or throttling 503s).
    pub fn throttled(&self) -> u64 {
        lock(&self.shared.log).throttled
    }

    /// The refusals each rate window drew, in the order of the windows.
    pub fn refusals_per_window(&self) -> Vec<u64> {
        let log = lock(&self.shared.log);
        let mut windows: Vec<_> = log
            .refusals
            .by_window
            .iter()
            .map(|((_, w), n)| (*w, *n))
            .collect();
        windows.sort();
        windows.into_iter().map(|(_, n)| n).collect()
    }

    /// The most timeline requests that were ever in flight at once.
    pub fn most_in_flight(&self) -> u64 {
        lock(&self.shared.log).in_flight.1
    }

    /// Queues faults: each upcoming call consumes one.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.log).faults.queue(faults);
    }

    /// Every n-th call from now on gets `fault` (0 disables); queued faults take precedence.
    pub fn fail_every(&self, n: u64, fault: Fault) {
        lock(&self.shared.log).faults.every(n, fault);
    }

    pub fn seen_authorization_headers(&self) -> Vec<String> {
        lock(&self.shared.log).auth.clone()
    }
}
