//! In-process emulator of the Misskey HTTP API for integration tests (see
//! `shared/misskey-api.md`): `notes`, `notes/local-timeline`, `notes/global-timeline` and
//! `notes/search`; POST + JSON only; Ajv-style validation without coercion; the pagination table
//! of §2.1 (byte-string ids, exclusive bounds, sinceId-only ascending); Meilisearch quirks (§2.7);
//! the id layouts of §3.1; Misskey's error shapes (§5) and injectable faults. Callers are
//! anonymous or signed in with an [`Account`]'s token: a signed-in search also returns the
//! owner's own followers/specified notes and followers notes of the users it follows (§2.7),
//! and a role without `canSearchNotes` gets 400 UNAVAILABLE while others search.
//!
//! Answers that prove nothing (§9.1), each a setting off by default: Meilisearch pages thinned
//! *after* the limit (notes deleted since they were indexed, suspended authors, blocked hosts,
//! and a signed-in caller's mutes: [`MisskeyEmulator::delete_since_indexed`], `suspend`,
//! `block_host`, [`Account::muting`]; the SQL paths filter those inside the query), the fanout
//! timeline without database fallback ([`Fanout`]), and visitors who see only local notes or
//! none ([`Visitors`]).
//!
//! The server is the tests' HTTP toolkit (`support/http`: keep-alive, Content-Length or chunked
//! bodies, `Expect: 100-continue`) bound to 127.0.0.1:0 on its own thread and tokio runtime, so
//! plain `#[test]` functions can use it.
//!
//! Layout: this file holds the public types and the handle; `ids` the id layouts (§3),
//! `notes` the note store and packing (§6), `api` the endpoints and request handling (§1, §2),
//! `http` the responses, errors (§5) and how they are served.
#![allow(dead_code)]

mod api;
mod http;
mod ids;
mod notes;

// The id helpers are part of the emulator's API even where no test uses them yet.
#[allow(unused_imports)]
pub use ids::{IdScheme, id_time_ms, iso_ms, max_id_at, min_id_at, parse_id_ms, time_part};

use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::Server;
use api::{Ep, Filters, Shared, holds, lock, refuses_search};
use notes::{Note, State};

// ─────────────────────────────── public config types ───────────────────────────────

/// `fulltextSearch.provider`, or search disabled by the role policy as on a stock instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchEngine {
    /// `canSearchNotes` is false: 400 UNAVAILABLE.
    Disabled,
    SqlLike,
    Meilisearch,
}

/// A failure injected before normal handling of one call.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Misskey's 429 RATE_LIMIT_EXCEEDED; `info` only if `with_info`, `Retry-After` only if Some.
    RateLimit {
        retry_after_secs: Option<u64>,
        with_info: bool,
    },
    /// Cloudflare's 429 HTML "error 1015" page.
    CloudflareRateLimit,
    /// 500 INTERNAL_ERROR (§5).
    Internal500,
    /// A proxy error page (502/503/504/52x), `text/html`.
    Html(u16),
    /// 200 `application/json` with the real body cut in half.
    TruncatedJson,
    /// Close the TCP connection (RST) without sending any byte.
    ResetConnection,
    /// Sleep, then answer normally.
    Slow(Duration),
}

/// The faults of upcoming calls, as both emulators inject them: queued ones, one
/// a call, and meanwhile the fault of every n-th call.
#[derive(Default)]
pub struct FaultPlan {
    queue: VecDeque<Fault>,
    every: Option<(u64, Fault)>,
    seen: u64,
}

impl FaultPlan {
    pub fn queue(&mut self, faults: impl IntoIterator<Item = Fault>) {
        self.queue.extend(faults);
    }

    /// Every n-th call from now on gets `fault` (0 disables).
    pub fn every(&mut self, n: u64, fault: Fault) {
        (self.every, self.seen) = ((n > 0).then_some((n, fault)), 0);
    }

    /// The fault of the call being answered, if any; a queued fault takes precedence.
    pub fn next(&mut self) -> Option<Fault> {
        self.seen += 1;
        let queued = self.queue.pop_front();
        match &self.every {
            Some((n, f)) if queued.is_none() && self.seen.is_multiple_of(*n) => Some(f.clone()),
            _ => queued,
        }
    }
}

/// What an anonymous caller may see: `ugcVisibilityForVisitor` (2025.5.1), applied to search,
/// the timelines and `notes` as some forks do (§9.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Visitors {
    #[default]
    All,
    /// Only notes of local users (`userHost IS NULL`).
    Local,
    /// Nothing: every page is `[]`.
    None,
}

/// The fanout timeline (§2.2, §9.1): `notes/local-timeline` is served from a Redis list of the
/// newest `cached` notes it holds; older windows come from the database only with `db_fallback`
/// (off, they answer `[]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    pub cached: usize,
    pub db_fallback: bool,
}

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub scheme: IdScheme,
    pub search: SearchEngine,
    /// If Some, the token of an account of `admin`, who authors no notes and follows nobody
    /// (so it sees what an anonymous caller sees).
    pub required_token: Option<String>,
    /// Further accounts. A token (Bearer header or body `i`) that is neither `required_token`
    /// nor one of these gives 401 (§1); no token at all is anonymous and allowed.
    pub accounts: Vec<Account>,
    pub visitors: Visitors,
    /// None: local-timeline reads the database (or Redis with fallback, the same answers).
    pub fanout: Option<Fanout>,
    /// Every error body repeats the caller's token (Bearer header or body `i`) in its
    /// messages, as a server that puts its raw error (a failed query with its parameters)
    /// in `info.e` does: the client must never show them unmasked. Off by default.
    pub echo_token_in_errors: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let (scheme, search) = (IdScheme::Aidx, SearchEngine::SqlLike);
        EmulatorConfig {
            scheme,
            search,
            required_token: None,
            accounts: Vec::new(),
            visitors: Visitors::All,
            fanout: None,
            echo_token_in_errors: false,
        }
    }
}

impl EmulatorConfig {
    /// The account a token signs in as; None for an unknown token.
    fn account(&self, token: &str) -> Option<Account> {
        let found = self.accounts.iter().find(|a| a.token == token).cloned();
        let admin = || Account::new(token, "admin");
        found.or_else(|| (self.required_token.as_deref() == Some(token)).then(admin))
    }
}

/// A user's API token, and what its owner sees beyond the public (§2.7).
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub token: String,
    /// The owner: one of the emulator's usernames (`alice`, `bob`, … `dave`, …, `admin`).
    pub username: &'static str,
    /// Users the owner follows: their `followers` notes are in the owner's search results.
    pub follows: Vec<&'static str>,
    /// The role policy: false gives 400 UNAVAILABLE on `notes/search` for this token only.
    pub can_search_notes: bool,
    /// Users the owner muted: their notes are dropped from what the owner is answered.
    pub mutes: Vec<&'static str>,
}

impl Account {
    pub fn new(token: &str, username: &'static str) -> Self {
        let (token, follows) = (token.to_string(), Vec::new());
        Account {
            token,
            username,
            follows,
            can_search_notes: true,
            mutes: Vec::new(),
        }
    }

    pub fn muting(mut self, usernames: &[&'static str]) -> Self {
        self.mutes.extend_from_slice(usernames);
        self
    }

    pub fn following(mut self, usernames: &[&'static str]) -> Self {
        self.follows.extend_from_slice(usernames);
        self
    }

    /// A role with `canSearchNotes: false`.
    pub fn without_search(mut self) -> Self {
        self.can_search_notes = false;
        self
    }
}

/// What a note looks like. It is a pure renote (text null, `renoteId` set) when `renote_only`
/// is true or `text` is None; a pure renote is never a reply.
#[derive(Clone, Debug, PartialEq)]
pub struct NoteSpec {
    pub created_at_ms: i64,
    pub local: bool,
    pub local_only: bool,
    pub channel: bool,
    pub reply_to_other: bool,
    pub renote_only: bool,
    /// `public`, `home`, `followers` or `specified`.
    pub visibility: &'static str,
    pub text: Option<String>,
    /// The author's username; None picks a local or remote user by `local`. Setting it makes
    /// `local` follow the author's host.
    pub author: Option<&'static str>,
}

impl NoteSpec {
    pub fn public_local(created_at_ms: i64, text: &str) -> Self {
        NoteSpec {
            created_at_ms,
            local: true,
            local_only: false,
            channel: false,
            reply_to_other: false,
            renote_only: false,
            visibility: "public",
            text: Some(text.to_string()),
            author: None,
        }
    }

    /// The same note written by `username`.
    pub fn by(mut self, username: &'static str) -> Self {
        self.author = Some(username);
        self
    }

    /// The same note with another visibility.
    pub fn visible(mut self, visibility: &'static str) -> Self {
        self.visibility = visibility;
        self
    }

    pub fn public_remote(created_at_ms: i64, text: &str) -> Self {
        let mut n = Self::public_local(created_at_ms, text);
        n.local = false;
        n
    }

    pub fn pure_renote(created_at_ms: i64, local: bool) -> Self {
        let mut n = Self::public_local(created_at_ms, "");
        (n.local, n.renote_only, n.text) = (local, true, None);
        n
    }
}

const SAMPLE_TEXTS: &[&str] = &[
    "おはようございます！今日もいい天気ですね☀️",
    "Hello, fediverse! Just testing a backfill.",
    "猫がかわいい🐈 #猫 #cat",
    "東京は雨。傘を忘れた…",
    "Rust 2024 edition is out 🦀 #rustlang",
    "改行を\n含む\nノートです",
    "\"quotes\", \\backslashes\\, <html> & ampersands",
    "カタカナとひらがな、そして漢字。",
    "Ünïcödé façade — naïve café ✓",
    "今日のお昼ご飯はラーメン🍜",
];

/// A note text, Japanese (kana/kanji), English or other non-ASCII, unique per `seed`.
pub fn sample_text(seed: u64) -> String {
    let i = (seed % SAMPLE_TEXTS.len() as u64) as usize;
    format!("{} [{seed}]", SAMPLE_TEXTS[i])
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let z = (*x ^ (*x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` deterministic, varied notes in `[start_ms, end_ms)`: mostly public local, plus
/// remote, localOnly, channel, replies to others, pure renotes, home and followers notes.
/// About one in eight shares the previous note's millisecond.
pub fn mixed_notes(start_ms: i64, end_ms: i64, count: usize, seed: u64) -> Vec<NoteSpec> {
    let (mut s, mut prev) = (seed, start_ms);
    let span = (end_ms - start_ms).max(1) as u64;
    let mut one = |i: usize| {
        let r = splitmix(&mut s);
        if i == 0 || !r.is_multiple_of(8) {
            prev = start_ms + (splitmix(&mut s) % span) as i64;
        }
        let mut n = NoteSpec::public_local(prev, &sample_text(r >> 32));
        match (r >> 3) % 20 {
            0..=2 => n.local = false,
            3 => n.local_only = true,
            4 => n.channel = true,
            5 => n.reply_to_other = true,
            6 => (n.local, n.reply_to_other) = (false, true),
            7 => (n.renote_only, n.text, n.local) = (true, None, r.is_multiple_of(2)),
            8 => n.visibility = "home",
            9 => n.visibility = "followers",
            _ => {}
        }
        n
    };
    (0..count).map(&mut one).collect()
}

// ─────────────────────────────── the emulator handle ───────────────────────────────

/// A running emulator; stops (closing every connection) on Drop.
pub struct MisskeyEmulator {
    shared: Arc<Shared>,
    server: Server,
}

impl MisskeyEmulator {
    /// Binds 127.0.0.1:0 and serves on a dedicated thread with its own tokio runtime.
    pub fn start(cfg: EmulatorConfig) -> MisskeyEmulator {
        let state = Mutex::new(State::new(cfg.scheme));
        let shared = Shared {
            cfg,
            state,
            log: Mutex::default(),
        };
        let (server, shared) = Server::start("misskey-emulator", |_| Arc::new(shared));
        MisskeyEmulator { shared, server }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn scheme(&self) -> IdScheme {
        self.shared.cfg.scheme
    }

    /// Stores a note; returns its id (from `created_at_ms` plus a counter/random tail, unique).
    pub fn add_note(&self, spec: NoteSpec) -> String {
        lock(&self.shared.state).add(spec)
    }

    pub fn add_notes(&self, specs: impl IntoIterator<Item = NoteSpec>) -> Vec<String> {
        let mut st = lock(&self.shared.state);
        specs.into_iter().map(|s| st.add(s)).collect()
    }

    /// Deletes notes from the database while the search index still holds them: Meilisearch
    /// returns them as hits and Misskey drops them after the limit (§9.1).
    pub fn delete_since_indexed(&self, ids: &[String]) {
        lock(&self.shared.state).deleted.extend(ids.iter().cloned());
    }

    /// Suspends a user: their notes are filtered out (after the limit on Meilisearch).
    pub fn suspend(&self, username: &'static str) {
        lock(&self.shared.state).suspended.insert(username);
    }

    /// Blocks a host: its users' notes are filtered out (after the limit on Meilisearch).
    pub fn block_host(&self, host: &str) {
        lock(&self.shared.state)
            .blocked_hosts
            .insert(host.to_string());
    }

    pub fn note_count(&self) -> usize {
        lock(&self.shared.state).notes.len()
    }

    /// Ground truth: the notes `endpoint` holds (default parameters; `query: ""` for search) with
    /// `start_ms <= createdAt < end_ms`, as the exact JSON served, sorted by createdAt then id.
    pub fn expected(&self, endpoint: &str, start_ms: i64, end_ms: i64) -> Vec<Value> {
        self.expected_with(endpoint, start_ms, end_ms, &json!({}))
    }

    /// Like [`Self::expected`], for requests carrying the filter parameters in `params`
    /// (e.g. `{"withReplies": true}` for the local timeline).
    pub fn expected_with(
        &self,
        endpoint: &str,
        start_ms: i64,
        end_ms: i64,
        params: &Value,
    ) -> Vec<Value> {
        self.expected_as(None, endpoint, start_ms, end_ms, params)
    }

    /// Like [`Self::expected_with`], for a caller signed in with `token` (None: anonymous).
    pub fn expected_as(
        &self,
        token: Option<&str>,
        endpoint: &str,
        start_ms: i64,
        end_ms: i64,
        params: &Value,
    ) -> Vec<Value> {
        let ep = Ep::from_name(endpoint).unwrap_or_else(|| panic!("unknown endpoint {endpoint}"));
        let engine = self.shared.cfg.search;
        let viewer = token.map(|t| self.shared.cfg.account(t).expect("a known token"));
        if ep == Ep::Search && refuses_search(engine, viewer.as_ref()) {
            return vec![];
        }
        let empty = Map::new();
        let f = Filters::from(params.as_object().unwrap_or(&empty));
        let st = lock(&self.shared.state);
        let in_range = |n: &&Note| (start_ms..end_ms).contains(&n.ms);
        let notes = st.notes.values().filter(in_range);
        let holds = |n: &&Note| holds(ep, engine, &st, n, &f, viewer.as_ref());
        let served = self.shared.served(ep, &st, viewer.as_ref());
        let shown = |n: &&Note| st.shown(n, viewer.as_ref());
        let notes = notes.filter(holds).filter(|n| served(n)).filter(shown);
        let mut notes: Vec<&Note> = notes.collect();
        notes.sort_by(|a, b| (a.ms, &a.id).cmp(&(b.ms, &b.id)));
        notes.into_iter().map(|n| st.pack(n)).collect()
    }

    /// What a collector archived for `[start_ms, end_ms)` while every note existed: every stored
    /// note of the window, of every kind, as JSON Lines sorted by createdAt then id. Calibration
    /// compares the origin's answers with such objects.
    pub fn archive(&self, start_ms: i64, end_ms: i64) -> Vec<u8> {
        let st = lock(&self.shared.state);
        let mut notes: Vec<&Note> = st
            .notes
            .values()
            .filter(|n| (start_ms..end_ms).contains(&n.ms))
            .collect();
        notes.sort_by(|a, b| (a.ms, &a.id).cmp(&(b.ms, &b.id)));
        let mut out = Vec::new();
        for n in notes {
            serde_json::to_writer(&mut out, &st.pack(n)).expect("json");
            out.push(b'\n');
        }
        out
    }

    /// All calls received, including faulted ones.
    pub fn calls(&self) -> u64 {
        lock(&self.shared.log).calls
    }

    /// Calls to `endpoint`, e.g. `"notes/search"`.
    pub fn calls_to(&self, endpoint: &str) -> u64 {
        let log = lock(&self.shared.log);
        log.per_endpoint.get(endpoint).copied().unwrap_or(0)
    }

    /// Every JSON request body received, in order, without the token field `i`.
    pub fn requests(&self) -> Vec<Value> {
        let log = lock(&self.shared.log);
        log.bodies.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Like [`Self::requests`], for one endpoint.
    pub fn requests_to(&self, endpoint: &str) -> Vec<Value> {
        let log = lock(&self.shared.log);
        let bodies = log.bodies.iter().filter(|(e, _)| e == endpoint);
        bodies.map(|(_, v)| v.clone()).collect()
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
