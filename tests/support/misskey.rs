//! In-process emulator of the Misskey HTTP API for integration tests (see
//! `shared/misskey-api.md`): `notes`, `notes/local-timeline`, `notes/global-timeline` and
//! `notes/search`; POST + JSON only; Ajv-style validation without coercion; the pagination table
//! of §2.1 (byte-string ids, exclusive bounds, sinceId-only ascending); Meilisearch quirks (§2.7);
//! the id layouts of §3.1; Misskey's error shapes (§5) and injectable faults.
//!
//! The server is a small hand-written HTTP/1.1 server (keep-alive, Content-Length or chunked
//! bodies, `Expect: 100-continue`) bound to 127.0.0.1:0 on its own thread and tokio runtime, so
//! plain `#[test]` functions can use it.
#![allow(dead_code)]

use rand::Rng;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ─────────────────────────────── ids (§3) ───────────────────────────────

const E2000: i64 = 946_684_800_000;
const B36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

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
fn encode(mut v: u64, alpha: &[u8], width: usize) -> String {
    let base = alpha.len() as u64;
    let mut out = vec![alpha[0]; width];
    for slot in out.iter_mut().rev() {
        (*slot, v) = (alpha[(v % base) as usize], v / base);
    }
    String::from_utf8(out).expect("ascii")
}

fn random_string(alpha: &[u8], n: usize) -> String {
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

fn pad_id(scheme: IdScheme, ms: i64, c: char) -> String {
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
fn js_parse_int(s: &str, radix: u32) -> Option<i64> {
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

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap_or_default().as_millis() as i64
}

/// The instance's generator: aid's process counter, aidx node ids + counters, random tails.
struct IdGen {
    scheme: IdScheme,
    aid_counter: u64,
    nodes: Vec<(String, u64)>,
}

impl IdGen {
    fn new(scheme: IdScheme) -> Self {
        // three aidx "worker processes", so same-millisecond order is not insertion order
        let nodes = (0..3).map(|_| (random_string(B36, 4), 0)).collect();
        let aid_counter = rand::rng().random_range(0..65_536);
        IdGen {
            scheme,
            aid_counter,
            nodes,
        }
    }

    fn next_id(&mut self, ms: i64) -> String {
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
    fn gen_bound(&mut self, t: i64) -> String {
        let now = now_ms();
        self.next_id(if t == 0 || t > now { now } else { t })
    }
}

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

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    pub scheme: IdScheme,
    pub search: SearchEngine,
    /// If Some, a presented token (Bearer header or body `i`) that differs gives 401;
    /// no token at all is anonymous and allowed.
    pub required_token: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let (scheme, search) = (IdScheme::Aidx, SearchEngine::SqlLike);
        EmulatorConfig {
            scheme,
            search,
            required_token: None,
        }
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
        }
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

// ─────────────────────────────── note store and packing (§6) ───────────────────────────────

struct Note {
    id: String,
    ms: i64,
    spec: NoteSpec,
    seq: u64,
    user: usize,
    reply_to: Option<(String, usize)>,
    renote_of: Option<(String, usize)>,
    channel: Option<usize>,
}

impl Note {
    fn pure_renote(&self) -> bool {
        self.spec.renote_only || self.spec.text.is_none()
    }

    fn text(&self) -> Option<&str> {
        self.spec.text.as_deref().filter(|_| !self.pure_renote())
    }
}

/// (username, name, host); the first LOCAL_USERS are local.
const USERS: [(&str, Option<&str>, Option<&str>); 10] = [
    ("alice", Some("アリス"), None),
    ("bob", Some("Bob 🐱"), None),
    ("tanaka", Some("田中太郎"), None),
    ("carol", None, None),
    ("info_bot", Some("お知らせBot"), None),
    ("neko", Some(":neko: ねこ"), None),
    ("dave", Some("Dave"), Some("mastodon.example")),
    ("erika", Some("えりか"), Some("misskey.example.net")),
    ("fumi", None, Some("calckey.example.org")),
    ("gus", Some("Gus ✈"), Some("mastodon.example")),
];
const LOCAL_USERS: usize = 6;
const DAY: i64 = 86_400_000;
const CHANNELS: [(&str, &str); 2] = [("雑談", "#86b300"), ("Rust", "#ce422b")];
const BLURHASH: &str = "eQFRshof5NWBRi},juayfPju53WB]0xWBjuayfPFWBj[RiayoeV7j[og";

struct State {
    scheme: IdScheme,
    ids: IdGen,
    notes: BTreeMap<String, Note>,
    /// ids of USERS and CHANNELS
    users: Vec<String>,
    channels: Vec<String>,
}

impl State {
    fn new(scheme: IdScheme) -> Self {
        let mut ids = IdGen::new(scheme);
        let base = 1_682_899_200_000; // 2023-05-01
        let users = (0..10).map(|i| ids.next_id(base + i * DAY)).collect();
        let channels = (0..2).map(|i| ids.next_id(base + 9_000_000 + i)).collect();
        let notes = BTreeMap::new();
        State {
            scheme,
            ids,
            notes,
            users,
            channels,
        }
    }

    fn add(&mut self, spec: NoteSpec) -> String {
        let seq = self.notes.len() as u64;
        let fresh = |id: &String| !self.notes.contains_key(id);
        let mut id = self.ids.next_id(spec.created_at_ms);
        for _ in 0..100_000 {
            if fresh(&id) {
                break;
            }
            id = self.ids.next_id(spec.created_at_ms);
        }
        assert!(fresh(&id), "too many notes in one millisecond");
        let s = seq as usize;
        let user = if spec.local { s % 6 } else { 6 + s % 4 };
        let other = (user + 1 + s % 9) % 10;
        let target_ms = spec.created_at_ms - 3_600_000 - (seq % 86_400) as i64 * 1000;
        let pure = spec.renote_only || spec.text.is_none();
        let target = Some((self.ids.next_id(target_ms), other));
        let reply_to = target.clone().filter(|_| spec.reply_to_other && !pure);
        let renote_of = target.filter(|_| pure);
        let channel = spec.channel.then_some(s % 2);
        let ms = id_time_ms(self.scheme, &id);
        let note = Note {
            id: id.clone(),
            ms,
            spec,
            seq,
            user,
            reply_to,
            renote_of,
            channel,
        };
        self.notes.insert(id.clone(), note);
        id
    }

    fn pack_user(&self, u: usize) -> Value {
        let ((username, name, remote), id) = (USERS[u], &self.users[u]);
        let host = remote.unwrap_or("misskey.test");
        let mut m = json!({
            "id": id, "name": name, "username": username, "host": remote,
            "avatarUrl": format!("https://{host}/identicon/{username}@{host}"),
            "avatarBlurhash": name.map(|_| BLURHASH), "avatarDecorations": [], "emojis": {},
            "onlineStatus": if remote.is_some() { "unknown" } else { "offline" },
        });
        if username.ends_with("bot") {
            m["isBot"] = true.into();
        }
        if let Some(host) = remote {
            let software = host.split('.').next();
            m["instance"] = json!({"name": host, "softwareName": software,
                "softwareVersion": "4.3.0", "iconUrl": format!("https://{host}/favicon.png"),
                "faviconUrl": format!("https://{host}/favicon.ico"), "themeColor": "#6364ff"});
        }
        m
    }

    /// Fields shared by top-level and nested notes (§6); `seed` varies the counters.
    fn base_note(&self, id: &str, user: usize, text: Option<&str>, seed: u64) -> Value {
        let k = if text.is_some() { seed } else { 0 };
        let (likes, hearts) = (k % 7 - k % 7 / 2, k % 7 / 2);
        let mut reactions = Map::new();
        for (emoji, n) in [("👍", likes), ("❤", hearts)] {
            if n > 0 {
                reactions.insert(emoji.into(), n.into());
            }
        }
        let mut m = json!({
            "id": id, "createdAt": iso_ms(id_time_ms(self.scheme, id)),
            "userId": self.users[user], "user": self.pack_user(user), "text": text, "cw": null,
            "reactionAcceptance": seed.is_multiple_of(3).then_some("likeOnlyForRemote"),
            "renoteCount": k % 4, "repliesCount": (k >> 2) % 3, "reactionCount": likes + hearts,
            "reactions": reactions, "reactionEmojis": {}, "fileIds": [], "files": [],
            "replyId": null, "renoteId": null,
        });
        let words = text.unwrap_or("").split_whitespace();
        let tags = words
            .filter(|w| w.len() > 1)
            .filter_map(|w| w.strip_prefix('#'));
        let tags: Vec<String> = tags.map(str::to_lowercase).collect();
        if !tags.is_empty() {
            m["tags"] = tags.into();
        }
        if let Some(host) = USERS[user].2 {
            let uri = format!("https://{host}/notes/{}", id.to_ascii_lowercase());
            (m["uri"], m["url"], m["emojis"]) = (uri.clone().into(), uri.into(), json!({}));
        }
        m
    }

    /// A reply or renote target (not stored), nested as Misskey does (renote with detail).
    fn pack_target(&self, (id, user): &(String, usize), detail: bool) -> Value {
        let text = USERS[*user].2.map_or("元のノートです", |_| "original");
        let mut m = self.base_note(id, *user, Some(text), 1);
        (m["visibility"], m["localOnly"]) = ("public".into(), false.into());
        if detail {
            m["clippedCount"] = 0.into();
        }
        m
    }

    fn pack(&self, n: &Note) -> Value {
        let mut m = self.base_note(&n.id, n.user, n.text(), n.seq);
        m["visibility"] = n.spec.visibility.into();
        m["localOnly"] = n.spec.local_only.into();
        m["clippedCount"] = 0.into();
        if let Some(t) = &n.reply_to {
            (m["replyId"], m["reply"]) = (t.0.clone().into(), self.pack_target(t, false));
        }
        if let Some(t) = &n.renote_of {
            (m["renoteId"], m["renote"]) = (t.0.clone().into(), self.pack_target(t, true));
        }
        if let Some(c) = n.channel {
            let ((name, color), id) = (CHANNELS[c], &self.channels[c]);
            m["channelId"] = id.clone().into();
            m["channel"] = json!({"id": id, "name": name, "color": color, "isSensitive": false,
                "allowRenoteToExternal": true, "userId": self.users[0]});
        }
        m
    }
}

// ─────────────────────────────── endpoints, validation, queries (§1, §2) ───────────────────────────────

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ep {
    Notes,
    Ltl,
    Gtl,
    Search,
}

/// paramDef properties in source order as `name:type`: b = boolean, l = limit (1..=100),
/// i = integer, id / nid = (nullable) misskey:id, s / ns = (nullable) string.
const NOTES_PARAMS: &str = "local:b reply:b renote:b withFiles:b poll:b limit:l sinceId:id \
    untilId:id sinceDate:i untilDate:i";
const LTL_PARAMS: &str = "withFiles:b withRenotes:b withReplies:b limit:l sinceId:id \
    untilId:id sinceDate:i untilDate:i allowPartial:b";
const GTL_PARAMS: &str =
    "withFiles:b withRenotes:b limit:l sinceId:id untilId:id sinceDate:i untilDate:i";
const SEARCH_PARAMS: &str = "query:s sinceId:id untilId:id sinceDate:i untilDate:i limit:l \
    offset:i host:ns userId:nid channelId:nid";

impl Ep {
    fn from_name(name: &str) -> Option<Ep> {
        Some(match name {
            "notes" => Ep::Notes,
            "notes/local-timeline" => Ep::Ltl,
            "notes/global-timeline" => Ep::Gtl,
            "notes/search" => Ep::Search,
            _ => return None,
        })
    }

    fn params(self) -> &'static str {
        [NOTES_PARAMS, LTL_PARAMS, GTL_PARAMS, SEARCH_PARAMS][self as usize]
    }
}

/// Ajv's integer: a JSON number without fraction (no coercion from strings).
fn as_int(v: &Value) -> Option<i64> {
    let whole = |f: &f64| f.is_finite() && f.fract() == 0.0;
    v.as_i64().or(v.as_f64().filter(whole).map(|f| f as i64))
}

fn is_misskey_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn invalid_param(param: &str, reason: &str) -> Resp {
    let info = json!({"param": param, "reason": reason});
    api_error(400, INVALID_PARAM, Some(info))
}

/// Ajv validation (first error only) of the body against the endpoint's paramDef.
fn validate(ep: Ep, body: Option<&Value>) -> Result<&Map<String, Value>, Resp> {
    let Some(Value::Object(obj)) = body else {
        return Err(invalid_param("#/type", "must be object"));
    };
    if ep == Ep::Search && !obj.contains_key("query") {
        let reason = "must have required property 'query'";
        return Err(invalid_param("#/required", reason));
    }
    let params = ep.params().split_whitespace();
    for (name, ty) in params.filter_map(|p| p.split_once(':')) {
        let Some(v) = obj.get(name) else { continue };
        let fail = |kw: &str, why: &str| {
            let param = format!("#/properties/{name}/{kw}");
            Err(invalid_param(&param, why))
        };
        let int = as_int(v);
        let string_ok = v.is_string() || (ty.starts_with('n') && v.is_null());
        let id_ok = v.as_str().is_none_or(is_misskey_id);
        match ty {
            "b" if !v.is_boolean() => return fail("type", "must be boolean"),
            "i" | "l" if int.is_none() => return fail("type", "must be integer"),
            "l" if int < Some(1) => return fail("minimum", "must be >= 1"),
            "l" if int > Some(100) => return fail("maximum", "must be <= 100"),
            "s" | "ns" | "id" | "nid" if !string_ok => return fail("type", "must be string"),
            "id" | "nid" if !id_ok => return fail("format", "must match format \"misskey:id\""),
            _ => {}
        }
    }
    Ok(obj)
}

/// The endpoint's filters after defaults. Emulated notes have no files and no polls.
struct Filters {
    local: bool,
    reply: Option<bool>,
    renote: Option<bool>,
    nothing: bool,
    with_renotes: bool,
    with_replies: bool,
    query: String,
    host: Option<String>,
    user_id: Option<String>,
    channel_id: Option<String>,
}

impl Filters {
    fn from(obj: &Map<String, Value>) -> Filters {
        let b = |k: &str| obj.get(k).and_then(Value::as_bool);
        let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        Filters {
            local: b("local").unwrap_or(false),
            reply: b("reply"),
            renote: b("renote"),
            nothing: b("withFiles") == Some(true) || b("poll") == Some(true),
            with_renotes: b("withRenotes").unwrap_or(true),
            with_replies: b("withReplies").unwrap_or(false),
            query: s("query").unwrap_or_default().to_lowercase(),
            host: s("host"),
            user_id: s("userId"),
            channel_id: s("channelId"),
        }
    }
}

type Notes = BTreeMap<String, Note>;
type NoteIter<'a> = Box<dyn Iterator<Item = &'a Note> + 'a>;

/// `notes.range(lo..hi)`, empty instead of panicking on inverted bounds.
fn range<'a>(
    notes: &'a Notes,
    lo: Bound<&str>,
    hi: Bound<&str>,
) -> impl DoubleEndedIterator<Item = &'a Note> + use<'a> {
    let empty = match (lo, hi) {
        (Included(l), Included(h)) => l > h,
        (Included(l) | Excluded(l), Included(h) | Excluded(h)) => l >= h,
        _ => false,
    };
    let range = (!empty).then(|| notes.range::<str, _>((lo, hi)));
    range.into_iter().flatten().map(|(_, n)| n)
}

/// makePaginationQuery (§2.1): byte-string ids, exclusive bounds, sinceId-only ascending.
fn page_sql<'a>(notes: &'a Notes, since: Option<&str>, until: Option<&str>) -> NoteIter<'a> {
    let lo = since.map_or(Unbounded, Excluded);
    let hi = until.map_or(Unbounded, Excluded);
    let asc = since.is_some() && until.is_none();
    let it = range(notes, lo, hi);
    if asc {
        Box::new(it)
    } else {
        Box::new(it.rev())
    }
}

/// Meilisearch (§2.7): strict `createdAt` millisecond filters, always newest first.
fn page_meili(notes: &Notes, s: IdScheme, since: Option<i64>, until: Option<i64>) -> NoteIter<'_> {
    let lo = since.map(|m| time_part(s, m.saturating_add(1)));
    let hi = until.map(|m| time_part(s, m.saturating_sub(1)) + "~");
    let lo = lo.as_deref().map_or(Unbounded, Included);
    let hi = hi.as_deref().map_or(Unbounded, Excluded);
    let it = range(notes, lo, hi).rev();
    Box::new(it.filter(move |n| since.is_none_or(|m| n.ms > m) && until.is_none_or(|m| n.ms < m)))
}

/// Which notes an endpoint holds (§2.3–§2.7).
fn holds(ep: Ep, engine: SearchEngine, st: &State, n: &Note, f: &Filters) -> bool {
    let (public, s) = (n.spec.visibility == "public", &n.spec);
    match ep {
        _ if f.nothing => false,
        Ep::Notes => {
            let reply_ok = f.reply.is_none_or(|r| r == n.reply_to.is_some());
            let renote_ok = f.renote.is_none_or(|r| r == n.renote_of.is_some());
            public && !s.local_only && (!f.local || s.local) && reply_ok && renote_ok
        }
        Ep::Ltl => public && s.local && !s.channel && (f.with_replies || n.reply_to.is_none()),
        Ep::Gtl => public && !s.channel && (f.with_renotes || !n.pure_renote()),
        Ep::Search => {
            let Some(text) = n.text() else { return false };
            let channel_id = n.channel.map(|c| st.channels[c].as_str());
            let scope = match (&f.user_id, &f.channel_id) {
                (Some(uid), _) => *uid == st.users[n.user],
                (None, Some(cid)) => channel_id == Some(cid),
                (None, None) => true,
            };
            let host = USERS[n.user].2;
            let host_ok = match f.host.as_deref() {
                Some(".") => host.is_none(),
                h => h.is_none_or(|h| host == Some(h)),
            };
            let visible = public || s.visibility == "home";
            let indexed = engine != SearchEngine::Meilisearch || s.local;
            let matches = text.to_lowercase().contains(&f.query);
            visible && indexed && scope && host_ok && matches
        }
    }
}

// ─────────────────────────────── responses ───────────────────────────────

struct Resp {
    status: u16,
    ctype: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// Sent by Misskey itself: adds Cache-Control and CORS headers (not on proxy pages).
    misskey: bool,
}

const JSON: &str = "application/json; charset=utf-8";

impl Resp {
    fn new(status: u16, ctype: Option<&'static str>, body: Vec<u8>, misskey: bool) -> Resp {
        let headers = vec![];
        Resp {
            status,
            ctype,
            body,
            headers,
            misskey,
        }
    }

    fn json(status: u16, v: &Value) -> Resp {
        Resp::new(status, Some(JSON), v.to_string().into(), true)
    }

    fn html(status: u16, body: String, server: &str) -> Resp {
        let mut r = Resp::new(status, Some("text/html; charset=UTF-8"), body.into(), false);
        r.headers.push(("Server", server.into()));
        r
    }
}

/// Misskey ApiErrors used here, as `CODE|id|message` (§5).
const INVALID_PARAM: &str = "INVALID_PARAM|3d81ceae-475f-4600-b2a8-2bc116157532|Invalid param.";
const AUTH_FAILED: &str = "AUTHENTICATION_FAILED|b0a7f5f8-dc2f-4171-b91f-de88ad238e14|\
    Authentication failed. Please ensure your token is correct.";
const UNAVAILABLE: &str =
    "UNAVAILABLE|0b44998d-77aa-4427-80d0-d2c9b8523011|Search of notes unavailable.";
const BOTH_REPLIES_FILES: &str = "BOTH_WITH_REPLIES_AND_WITH_FILES|\
    dd9c8400-1cb5-4eef-8a31-200c5f933793|Specifying both withReplies and withFiles is not supported";
const RATE_LIMITED: &str = "RATE_LIMIT_EXCEEDED|d5826d14-3982-4d2e-8011-b9e9f02499ef|\
    Rate limit exceeded. Please try again later.";
const INTERNAL_ERROR: &str = "INTERNAL_ERROR|5d37dbcb-891e-41ca-a3d6-e690c97775ac|\
    Internal error occurred. Please contact us if the error persists.";
const UNKNOWN_ENDPOINT: &str =
    "UNKNOWN_API_ENDPOINT|2ca3b769-540a-4f08-9dd5-b5a825b6d0f1|Unknown API endpoint.";

/// `{"error":{message,code,id,kind,info?}}`; kind is `server` for 500, else `client`.
fn api_error(status: u16, err: &str, info: Option<Value>) -> Resp {
    let [code, id, msg] = [0, 1, 2].map(|i| err.split('|').nth(i).unwrap_or_default());
    let kind = if status == 500 { "server" } else { "client" };
    let mut e = json!({"message": msg, "code": code, "id": id, "kind": kind});
    if let Some(info) = info {
        e["info"] = info;
    }
    let mut r = Resp::json(status, &json!({ "error": e }));
    if status == 400 {
        r.headers.push(("WWW-Authenticate", invalid_request(msg)));
    }
    r
}

fn invalid_request(msg: &str) -> String {
    format!("Bearer realm=\"Misskey\", error=\"invalid_request\", error_description=\"{msg}\"")
}

/// Fastify's own error body; `err` is `CODE|message` (empty code: none).
fn fastify_error(status: u16, err: &str) -> Resp {
    let (code, message) = err.split_once('|').unwrap_or_default();
    let mut v = json!({"statusCode": status, "error": reason(status), "message": message});
    if !code.is_empty() {
        v["code"] = code.into();
    }
    Resp::json(status, &v)
}

const BAD_REQUEST: &str = "|Bad Request";
const TOO_LARGE: &str = "FST_ERR_CTP_BODY_TOO_LARGE|Request body is too large";
const EMPTY_JSON: &str = "FST_ERR_CTP_EMPTY_JSON_BODY|\
    Body cannot be empty when content-type is set to 'application/json'";
const INVALID_JSON: &str = "FST_ERR_CTP_INVALID_JSON_BODY|\
    Body is not valid JSON but content-type is set to 'application/json'";

/// 500 INTERNAL_ERROR with `info.e` = the raw error (`name`, `message`) and a log uuid.
fn internal_error(name: &str, message: &str) -> Resp {
    let mut b: [u8; 16] = rand::random();
    (b[6], b[8]) = ((b[6] & 0x0f) | 0x40, (b[8] & 0x3f) | 0x80);
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let parts = [0..8, 8..12, 12..16, 16..20, 20..32].map(|r| &h[r]);
    let uuid = parts.join("-");
    let info = json!({"e": {"message": message, "code": name, "id": uuid}});
    api_error(500, INTERNAL_ERROR, Some(info))
}

fn reason(status: u16) -> &'static str {
    const REASONS: &str = "100 Continue|200 OK|400 Bad Request|401 Unauthorized|403 Forbidden|\
        404 Not Found|405 Method Not Allowed|413 Payload Too Large|415 Unsupported Media Type|\
        429 Too Many Requests|500 Internal Server Error|502 Bad Gateway|\
        503 Service Temporarily Unavailable|504 Gateway Time-out|\
        520 Web Server Returned an Unknown Error|521 Web Server Is Down|522 Connection Timed Out|\
        523 Origin Is Unreachable|524 A Timeout Occurred";
    let code = format!("{status} ");
    let mut all = REASONS.split('|');
    all.find_map(|r| r.strip_prefix(code.as_str()))
        .unwrap_or("Unknown")
}

const CLOUDFLARE_1015: &str = "<!DOCTYPE html>\n<html><head><title>Access denied | misskey.test \
    used Cloudflare to restrict access</title></head>\n<body><div id=\"cf-error-details\">\
    <h1><span class=\"cf-error-type\">Error</span> <span class=\"cf-error-code\">1015</span></h1>\n\
    <h2 class=\"cf-subheadline\">You are being rate limited</h2>\n<p>The owner of this website \
    (misskey.test) has banned you temporarily from accessing this website.</p></div></body></html>\n";
const STATEMENT_TIMEOUT: &str = "canceling statement due to statement timeout";

/// The response of a fault that answers at once (all but TruncatedJson, ResetConnection, Slow).
fn fault_response(f: &Fault) -> Resp {
    match *f {
        Fault::RateLimit {
            retry_after_secs,
            with_info,
        } => {
            let reset_ms = now_ms() + retry_after_secs.unwrap_or(1) as i64 * 1000;
            let info = json!({"remaining": 0, "reset": reset_ms / 1000, "resetMs": reset_ms,
                "total": 300});
            let mut r = api_error(429, RATE_LIMITED, with_info.then_some(info));
            let msg = RATE_LIMITED.rsplit('|').next().unwrap_or_default();
            r.headers.push(match retry_after_secs {
                Some(s) => ("Retry-After", s.to_string()),
                None => ("WWW-Authenticate", invalid_request(msg)), // before 2024.9.0
            });
            r
        }
        Fault::CloudflareRateLimit => Resp::html(429, CLOUDFLARE_1015.into(), "cloudflare"),
        Fault::Internal500 => internal_error("QueryFailedError", STATEMENT_TIMEOUT),
        Fault::Html(code) => {
            let t = format!("{code} {}", reason(code));
            let body = format!(
                "<html>\r\n<head><title>{t}</title></head>\r\n<body>\r\n\
                <center><h1>{t}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
            );
            Resp::html(code, body, "nginx")
        }
        _ => unreachable!("handled by Shared::respond"),
    }
}

// ─────────────────────────────── HTTP/1.1 plumbing ───────────────────────────────

const BODY_LIMIT: usize = 1 << 20;
const HEAD_LIMIT: usize = 64 << 10;

struct Request {
    method: String,
    target: String,
    /// (lowercase name, value)
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|h| h.0 == name);
        found.map(|h| h.1.as_str())
    }

    /// Whether the header's value contains `token` (case-insensitive).
    fn has(&self, name: &str, token: &str) -> bool {
        let value = self.header(name).unwrap_or_default();
        value.to_ascii_lowercase().contains(token)
    }
}

/// Err(None): the peer closed; Err(Some(resp)): malformed request, answer and close.
type Read<T> = Result<T, Option<Resp>>;

/// Reads until `buf` holds `n` bytes (empty `delim`) or `delim`; returns the bytes before it.
async fn take(sock: &mut TcpStream, buf: &mut Vec<u8>, n: usize, delim: &[u8]) -> Read<Vec<u8>> {
    let mut tmp = [0u8; 16 * 1024];
    loop {
        let end = match delim {
            [] => (buf.len() >= n).then_some(n),
            d => buf.windows(d.len()).position(|w| w == d),
        };
        if let Some(end) = end {
            let out = buf[..end].to_vec();
            buf.drain(..end + delim.len());
            return Ok(out);
        } else if !delim.is_empty() && buf.len() > HEAD_LIMIT {
            return Err(Some(fastify_error(400, BAD_REQUEST)));
        }
        match sock.read(&mut tmp).await {
            Ok(got) if got > 0 => buf.extend_from_slice(&tmp[..got]),
            _ => return Err(None),
        }
    }
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Read<Request> {
    let bad = || Some(fastify_error(400, BAD_REQUEST));
    let too_large = || Some(fastify_error(413, TOO_LARGE));
    let head = String::from_utf8_lossy(&take(sock, buf, 0, b"\r\n\r\n").await?).into_owned();
    let mut lines = head.split("\r\n");
    let line: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    let [method, target, version] = line[..] else {
        return Err(bad());
    };
    let mut headers = vec![];
    for l in lines {
        let (k, v) = l.split_once(':').ok_or_else(bad)?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let (method, target, body) = (method.to_string(), target.to_string(), vec![]);
    let mut req = Request {
        method,
        target,
        headers,
        body,
        keep_alive: false,
    };
    let old = version == "HTTP/1.0";
    req.keep_alive =
        req.has("connection", "keep-alive") || !(old || req.has("connection", "close"));
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    } else if req.has("expect", "100-continue") {
        let _ = sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
    }
    if req.has("transfer-encoding", "chunked") {
        loop {
            let line = String::from_utf8_lossy(&take(sock, buf, 0, b"\r\n").await?).into_owned();
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
            if size == 0 {
                while !take(sock, buf, 0, b"\r\n").await?.is_empty() {} // trailers
                break;
            } else if req.body.len() + size > BODY_LIMIT {
                return Err(too_large());
            }
            let chunk = take(sock, buf, size + 2, b"").await?;
            req.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = req.header("content-length") {
        let n: usize = len.parse().map_err(|_| bad())?;
        if n > BODY_LIMIT {
            return Err(too_large());
        }
        req.body = take(sock, buf, n, b"").await?;
    }
    Ok(req)
}

async fn write_response(sock: &mut TcpStream, r: &Resp, keep: bool, head: bool) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    let date = chrono::DateTime::from_timestamp_millis(now_ms()).expect("now");
    h += &format!("Date: {}\r\n", date.format("%a, %d %b %Y %H:%M:%S GMT"));
    if let Some(ct) = r.ctype {
        h += &format!("Content-Type: {ct}\r\n");
    }
    h += &format!("Content-Length: {}\r\n", r.body.len());
    if r.misskey {
        h += "Cache-Control: private, max-age=0, must-revalidate\r\n";
        h += "Access-Control-Allow-Origin: *\r\n";
    }
    for (k, v) in &r.headers {
        h += &format!("{k}: {v}\r\n");
    }
    h += if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    };
    let mut out = h.into_bytes();
    if !head {
        out.extend_from_slice(&r.body);
    }
    sock.write_all(&out).await?;
    sock.flush().await
}

async fn serve_connection(shared: Arc<Shared>, mut sock: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let (resp, keep, head) = match read_request(&mut sock, &mut buf).await {
            Err(None) => return,
            Err(Some(resp)) => (resp, false, false),
            Ok(req) => match shared.respond(&req).await {
                Some(resp) => (resp, req.keep_alive, req.method == "HEAD"),
                None => {
                    let _ = sock.set_zero_linger(); // ResetConnection: RST, not a byte sent
                    return;
                }
            },
        };
        let written = write_response(&mut sock, &resp, keep, head).await;
        if written.is_err() || !keep {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

// ─────────────────────────────── request handling ───────────────────────────────

#[derive(Default)]
struct Log {
    calls: u64,
    per_endpoint: HashMap<String, u64>,
    bodies: Vec<(String, Value)>,
    auth: Vec<String>,
    queue: VecDeque<Fault>,
    every: Option<(u64, Fault)>,
    every_seen: u64,
}

struct Shared {
    cfg: EmulatorConfig,
    state: Mutex<State>,
    log: Mutex<Log>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fastify's content-type parsers: JSON (400 on empty or malformed), text/plain, else 415.
fn parse_body(req: &Request) -> Result<Option<Value>, Resp> {
    let media = |c: &str| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let ct = req.header("content-type").map(media);
    match (ct.as_deref(), req.body.is_empty()) {
        (None, true) => Ok(None),
        (Some("application/json"), true) => Err(fastify_error(400, EMPTY_JSON)),
        (Some("application/json"), false) => {
            let parsed = serde_json::from_slice(&req.body).map(Some);
            parsed.map_err(|_| fastify_error(400, INVALID_JSON))
        }
        (Some("text/plain"), _) => Ok(Some(String::from_utf8_lossy(&req.body).into())),
        (other, _) => {
            let other = other.unwrap_or("undefined");
            let err = format!("FST_ERR_CTP_INVALID_MEDIA_TYPE|Unsupported Media Type: {other}");
            Err(fastify_error(415, &err))
        }
    }
}

impl Shared {
    /// Counts and logs the call, then picks its fault (queued first, then `fail_every`).
    fn record(&self, endpoint: &str, req: &Request) -> Option<Fault> {
        let mut log = lock(&self.log);
        log.calls += 1;
        *log.per_endpoint.entry(endpoint.to_string()).or_default() += 1;
        if let Some(a) = req.header("authorization") {
            log.auth.push(a.to_string());
        }
        if let Ok(mut v) = serde_json::from_slice::<Value>(&req.body) {
            v.as_object_mut().map(|o| o.remove("i"));
            log.bodies.push((endpoint.to_string(), v));
        }
        log.every_seen += 1;
        let queued = log.queue.pop_front();
        match &log.every {
            Some((n, f)) if queued.is_none() && log.every_seen.is_multiple_of(*n) => {
                Some(f.clone())
            }
            _ => queued,
        }
    }

    /// None means: reset the connection without answering.
    async fn respond(&self, req: &Request) -> Option<Resp> {
        let path = req.target.split('?').next().unwrap_or_default();
        match self.record(path.strip_prefix("/api/").unwrap_or(path), req) {
            None => Some(self.handle(req, path)),
            Some(Fault::ResetConnection) => None,
            Some(Fault::Slow(d)) => {
                tokio::time::sleep(d).await;
                Some(self.handle(req, path))
            }
            Some(Fault::TruncatedJson) => {
                let mut body = self.handle(req, path).body;
                body.truncate(body.len() / 2);
                Some(Resp::new(200, Some(JSON), body, true))
            }
            Some(f) => Some(fault_response(&f)),
        }
    }

    fn handle(&self, req: &Request, path: &str) -> Resp {
        let route = format!("|Route {}:{} not found", req.method, req.target);
        let name = path.strip_prefix("/api/");
        let ep = match (req.method.as_str(), name.map(Ep::from_name)) {
            ("GET" | "HEAD", Some(Some(_))) => return Resp::new(405, None, vec![], true),
            ("GET" | "HEAD", Some(None)) => return api_error(404, UNKNOWN_ENDPOINT, None),
            (_, None | Some(None)) => return fastify_error(404, &route),
            (_, Some(Some(ep))) => ep,
        };
        let body = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        // §1: `Authorization: Bearer` (case-sensitive) wins over the body's `i`
        let auth = req.header("authorization").unwrap_or_default();
        let token = match auth.strip_prefix("Bearer ") {
            Some(t) => Some(t.to_string()),
            None => match body.as_ref().and_then(|b| b.get("i")) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Resp::new(400, None, vec![], true),
            },
        };
        if let (Some(want), Some(got)) = (&self.cfg.required_token, &token)
            && want != got
        {
            let mut r = api_error(401, AUTH_FAILED, None);
            let value = "Bearer realm=\"Misskey\", error=\"invalid_token\", \
                error_description=\"Failed to authenticate\"";
            r.headers.push(("WWW-Authenticate", value.into()));
            return r;
        }
        match validate(ep, body.as_ref()).and_then(|obj| self.query(ep, obj)) {
            Ok(notes) => Resp::json(200, &Value::Array(notes)),
            Err(r) => r,
        }
    }

    fn query(&self, ep: Ep, obj: &Map<String, Value>) -> Result<Vec<Value>, Resp> {
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
        let engine = self.cfg.search;
        if ep == Ep::Ltl && flag("withReplies") && flag("withFiles") {
            return Err(api_error(400, BOTH_REPLIES_FILES, None));
        } else if ep == Ep::Search && engine == SearchEngine::Disabled {
            return Err(api_error(400, UNAVAILABLE, None));
        }
        let limit = obj.get("limit").and_then(as_int).unwrap_or(10) as usize;
        // allowPartial: emulate a fanout-timeline short page
        let partial = ep == Ep::Ltl && flag("allowPartial");
        let limit = if partial { (limit / 2).max(1) } else { limit };
        let id = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let date = |k: &str| obj.get(k).and_then(as_int).filter(|d| *d != 0);
        let (mut since, mut until) = (id("sinceId"), id("untilId"));
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if matches!(ep, Ep::Ltl | Ep::Search) {
            // style (a): per bound
            since = since.or_else(|| date("sinceDate").map(|t| st.ids.gen_bound(t)));
            until = until.or_else(|| date("untilDate").map(|t| st.ids.gen_bound(t)));
        } else if since.is_none() && until.is_none() {
            // style (b): all or nothing
            since = date("sinceDate").map(|t| st.ids.gen_bound(t));
            until = date("untilDate").map(|t| st.ids.gen_bound(t));
        }
        let st = &*st;
        let page = if ep == Ep::Search && engine == SearchEngine::Meilisearch {
            let nan = || internal_error("MeiliSearchApiError", "invalid filter: createdAt > NaN");
            let ms = |b: Option<String>| b.map(|s| parse_id_ms(st.scheme, &s).ok_or_else(nan));
            let (since, until) = (ms(since).transpose()?, ms(until).transpose()?);
            page_meili(&st.notes, st.scheme, since, until)
        } else {
            page_sql(&st.notes, since.as_deref(), until.as_deref())
        };
        let f = Filters::from(obj);
        let page = page.filter(|n| holds(ep, engine, st, n, &f)).take(limit);
        Ok(page.map(|n| st.pack(n)).collect())
    }
}

// ─────────────────────────────── the emulator handle ───────────────────────────────

/// A running emulator; stops (closing every connection) on Drop.
pub struct MisskeyEmulator {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Stop = tokio::sync::oneshot::Receiver<()>;

async fn accept_loop(shared: Arc<Shared>, listener: std::net::TcpListener, mut stop: Stop) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Ok((sock, _)) = listener.accept() => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(serve_connection(shared.clone(), sock));
            }
        }
    }
}

impl MisskeyEmulator {
    /// Binds 127.0.0.1:0 and serves on a dedicated thread with its own tokio runtime.
    pub fn start(cfg: EmulatorConfig) -> MisskeyEmulator {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let state = Mutex::new(State::new(cfg.scheme));
        let shared = Arc::new(Shared {
            cfg,
            state,
            log: Mutex::default(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sh = shared.clone();
        let serve = move || {
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            let rt = rt.worker_threads(2).enable_all().build();
            let rt = rt.expect("tokio runtime");
            rt.block_on(accept_loop(sh, listener, rx));
            rt.shutdown_timeout(Duration::from_millis(500));
        };
        let thread = std::thread::Builder::new().name("misskey-emulator".into());
        let thread = thread.spawn(serve);
        let thread = Some(thread.expect("spawn emulator thread"));
        MisskeyEmulator {
            shared,
            addr,
            stop: Some(tx),
            thread,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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
        let ep = Ep::from_name(endpoint).unwrap_or_else(|| panic!("unknown endpoint {endpoint}"));
        let engine = self.shared.cfg.search;
        if ep == Ep::Search && engine == SearchEngine::Disabled {
            return vec![];
        }
        let empty = Map::new();
        let f = Filters::from(params.as_object().unwrap_or(&empty));
        let st = lock(&self.shared.state);
        let in_range = |n: &&Note| (start_ms..end_ms).contains(&n.ms);
        let notes = st.notes.values().filter(in_range);
        let mut notes: Vec<&Note> = notes.filter(|n| holds(ep, engine, &st, n, &f)).collect();
        notes.sort_by(|a, b| (a.ms, &a.id).cmp(&(b.ms, &b.id)));
        notes.into_iter().map(|n| st.pack(n)).collect()
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
        lock(&self.shared.log).queue.extend(faults);
    }

    /// Every n-th call from now on gets `fault` (0 disables); queued faults take precedence.
    pub fn fail_every(&self, n: u64, fault: Fault) {
        let mut log = lock(&self.shared.log);
        (log.every, log.every_seen) = ((n > 0).then_some((n, fault)), 0);
    }

    pub fn seen_authorization_headers(&self) -> Vec<String> {
        lock(&self.shared.log).auth.clone()
    }
}

impl Drop for MisskeyEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
