//! The status store and `GET /api/v1/timelines/public`: the feed's filters
//! (`app/models/public_feed.rb`), the ordering of each bound (`paginable.rb`),
//! the limit cap and the Link header. GoToSocial's own paging is in `gts`.

use std::collections::{BTreeMap, btree_map};
use std::ops::Bound;

use serde_json::{Value, json};

use super::ids::Key;
use super::{ServerKind, StatusSpec};

pub(super) const HOST: &str = "mastodon.test";

/// One stored status and the facts the feed filters on.
pub(super) struct Status {
    pub(super) id: String,
    pub(super) json: String,
    pub(super) spec: StatusSpec,
    /// The time its id carries.
    pub(super) id_ms: i64,
}

pub(super) struct State {
    pub(super) kind: ServerKind,
    pub(super) statuses: BTreeMap<Key, Status>,
    sequence: u64,
}

/// Which part of the feed a request may see, after the feed settings (4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Part {
    All,
    Local,
    Remote,
    /// A feed disabled for this caller: `[]`.
    Nothing,
}

/// `2025-07-31T15:40:00.691Z`: Mastodon's `created_at`, with milliseconds.
pub fn iso_ms(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl State {
    pub(super) fn new(kind: ServerKind) -> State {
        State {
            kind,
            statuses: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// Stores a status; returns its id.
    pub(super) fn add(&mut self, spec: StatusSpec) -> String {
        let (id, key) = loop {
            self.sequence += 1;
            let (id, key) = self.kind.mint(&spec, self.sequence);
            if !self.statuses.contains_key(&key) {
                break (id, key);
            }
        };
        let json = pack(&id, &spec).to_string();
        let id_ms = self.kind.id_time(&spec, &id);
        self.statuses.insert(
            key,
            Status {
                id: id.clone(),
                json,
                spec,
                id_ms,
            },
        );
        id
    }
}

fn pack(id: &str, s: &StatusSpec) -> Value {
    let acct = match s.remote {
        true => format!("{}@remote.example", s.author),
        false => s.author.to_string(),
    };
    let server = if s.remote { "remote.example" } else { HOST };
    let account_id = (s.author.len() as u64 * 7919) + u64::from(s.remote);
    let account = json!({
        "id": account_id.to_string(), "username": s.author, "acct": acct,
        "display_name": s.author.to_uppercase(), "locked": false, "bot": false,
        "url": format!("https://{server}/@{}", s.author),
        "avatar": format!("https://{HOST}/avatars/{}.png", s.author),
        "followers_count": 3, "following_count": 5, "statuses_count": 42,
        "emojis": [], "fields": []
    });
    let reply_to = match (s.reply_to_other, s.self_reply) {
        (true, _) => Some("108000000000000001"),
        (_, true) => Some("108000000000000002"),
        _ => None,
    };
    let media: Vec<Value> = match s.media {
        true => vec![json!({"id": format!("{id}1"), "type": "image",
            "url": format!("https://{HOST}/media/{id}.png"), "description": null})],
        false => vec![],
    };
    let reblog = s
        .reblog
        .then(|| json!({"id": "108000000000000003", "content": "<p>boosted</p>"}));
    let text = s.text.replace('&', "&amp;").replace('<', "&lt;");
    json!({
        "id": id,
        "created_at": iso_ms(s.created_at_ms),
        "in_reply_to_id": reply_to,
        "in_reply_to_account_id": reply_to.map(|_| if s.self_reply { account_id.to_string() } else { "99".to_string() }),
        "sensitive": false, "spoiler_text": "", "visibility": s.visibility, "language": "ja",
        "uri": format!("https://{server}/users/{}/statuses/{id}", s.author),
        "url": format!("https://{server}/@{}/{id}", s.author),
        "replies_count": 0, "reblogs_count": 1, "favourites_count": 2, "edited_at": null,
        "content": if s.reblog { String::new() } else { format!("<p>{text}</p>") },
        "reblog": reblog, "application": null, "account": account,
        "media_attachments": media, "mentions": [], "tags": [], "emojis": [],
        "card": null, "poll": null
    })
}

/// Rails' `ActiveModel::Type::Boolean` cast of a query value.
pub(super) fn truthy(v: Option<&str>) -> bool {
    !matches!(
        v,
        None | Some("" | "0" | "f" | "F" | "false" | "FALSE" | "off" | "OFF")
    )
}

/// The part `local`/`remote` select (both given: neither applies).
pub(super) fn part_of(q: &BTreeMap<String, String>) -> Part {
    let flag = |k: &str| truthy(q.get(k).map(String::as_str));
    match (flag("local"), flag("remote")) {
        (true, false) => Part::Local,
        (false, true) => Part::Remote,
        _ => Part::All,
    }
}

/// What the feed selects in its query: public statuses, no boosts; the part; media.
pub(super) fn selects(s: &StatusSpec, part: Part, only_media: bool) -> bool {
    let part_ok = match part {
        Part::All => true,
        Part::Local => !s.remote,
        Part::Remote => s.remote,
        Part::Nothing => false,
    };
    s.visibility == "public" && !s.reblog && part_ok && (!only_media || s.media)
}

/// What it keeps of those: no replies to others, no suspended or silenced
/// authors (GoToSocial checks these after its query).
pub(super) fn keeps(s: &StatusSpec) -> bool {
    !s.reply_to_other && !s.suspended
}

/// `limit_param(DEFAULT_STATUSES_LIMIT = 20)`: `[abs(limit), 40].min`.
pub(super) fn limit(q: &BTreeMap<String, String>) -> usize {
    match q.get("limit") {
        None => 20,
        // Ruby's `to_i`: leading digits, else 0.
        Some(v) => {
            let v = v.trim_start_matches('-');
            let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().unwrap_or(0).min(40)
        }
    }
}

impl State {
    /// The statuses whose key is below `max` (every one without it), ascending.
    pub(super) fn below(&self, max: Option<Key>) -> btree_map::Range<'_, Key, Status> {
        let upper = max.map_or(Bound::Unbounded, Bound::Excluded);
        self.statuses.range((Bound::Unbounded, upper))
    }

    pub(super) fn bound(&self, q: &BTreeMap<String, String>, key: &str) -> Option<Key> {
        q.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| self.kind.bound(v))
    }

    /// One page (every kind but GoToSocial): `min_id` ascending then reversed
    /// (max_id an upper bound); otherwise `max_id`/`since_id` descending.
    /// Every bound exclusive.
    pub(super) fn page(&self, q: &BTreeMap<String, String>, part: Part) -> Vec<&Status> {
        let (max, since, min) = (
            self.bound(q, "max_id"),
            self.bound(q, "since_id"),
            self.bound(q, "min_id"),
        );
        let n = limit(q);
        let only_media = truthy(q.get("only_media").map(String::as_str));
        let held = |s: &(&Key, &Status)| selects(&s.1.spec, part, only_media) && keeps(&s.1.spec);
        match min {
            Some(min) => {
                let mut page: Vec<&Status> = self
                    .below(max)
                    .filter(|(k, _)| **k > min)
                    .filter(held)
                    .take(n)
                    .map(|(_, s)| s)
                    .collect();
                page.reverse();
                page
            }
            None => self
                .below(max)
                .rev()
                .filter(|(k, _)| since.as_ref().is_none_or(|m| *k > m))
                .filter(held)
                .take(n)
                .map(|(_, s)| s)
                .collect(),
        }
    }

    /// Ground truth: the statuses the timeline holds by design (whatever the
    /// server ignores or filters late) placed in `[start, end)` by `created_at`,
    /// or, `by_receipt`, by the time their id carries; sorted the way slotfill
    /// writes them.
    pub(super) fn expected(
        &self,
        part: Part,
        only_media: bool,
        (start, end): (i64, i64),
        by_receipt: bool,
    ) -> Vec<Value> {
        let at = |s: &Status| match by_receipt {
            true => s.id_ms,
            false => s.spec.created_at_ms,
        };
        let mut held: Vec<&Status> = self
            .statuses
            .values()
            .filter(|s| (start..end).contains(&at(s)))
            .filter(|s| selects(&s.spec, part, only_media) && keeps(&s.spec))
            .collect();
        held.sort_by(|a, b| (at(a), &a.id).cmp(&(at(b), &b.id)));
        held.iter()
            .map(|s| serde_json::from_str(&s.json).expect("packed"))
            .collect()
    }
}

/// `Link: <…?max_id=LAST>; rel="next", <…?min_id=FIRST>; rel="prev"`, keeping
/// `local`, `remote`, `limit` and `only_media`; None for an empty page.
pub(super) fn link(base: &str, q: &BTreeMap<String, String>, page: &[&Status]) -> Option<String> {
    let (first, last) = (page.first()?, page.last()?);
    let kept: Vec<String> = ["local", "remote", "limit", "only_media"]
        .iter()
        .filter_map(|k| q.get(*k).map(|v| format!("{k}={v}")))
        .collect();
    let url = |bound: &str, id: &str| {
        let mut params = kept.clone();
        params.push(format!("{bound}={id}"));
        format!("{base}/api/v1/timelines/public?{}", params.join("&"))
    };
    Some(format!(
        "<{}>; rel=\"next\", <{}>; rel=\"prev\"",
        url("max_id", &last.id),
        url("min_id", &first.id)
    ))
}
