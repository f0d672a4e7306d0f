//! The status store, snowflake ids (§7) and `GET /api/v1/timelines/public`:
//! its filters (`app/models/public_feed.rb`), the ordering of each bound
//! (`paginable.rb`), the limit cap and the Link header.

use std::collections::BTreeMap;

use rand::Rng;
use serde_json::{Value, json};

use super::StatusSpec;

pub(super) const HOST: &str = "mastodon.test";

/// One stored status and the facts the feed filters on.
pub(super) struct Status {
    pub(super) id: u64,
    pub(super) json: String,
    spec: StatusSpec,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) statuses: BTreeMap<u64, Status>,
    sequence: u64,
}

/// `2025-07-31T15:40:00.691Z`: Mastodon's `created_at`, with milliseconds.
pub fn iso_ms(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).expect("time");
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl State {
    /// Stores a status; returns its id. Local rows get `ms << 16 | sequence`;
    /// back-dated rows `((seconds * 1000 + rand(1000)) << 16) + rand(65536)`
    /// (`lib/mastodon/snowflake.rb`): only their second is the status's.
    pub(super) fn add(&mut self, spec: StatusSpec) -> String {
        let mut rng = rand::rng();
        let id = loop {
            let id = if spec.backdated {
                let second = spec.created_at_ms.div_euclid(1000) * 1000;
                (((second + rng.random_range(0..1000)) as u64) << 16)
                    + rng.random_range(0..65536u64)
            } else {
                self.sequence += 1;
                ((spec.created_at_ms as u64) << 16) | (self.sequence & 0xffff)
            };
            if !self.statuses.contains_key(&id) {
                break id;
            }
        };
        let json = pack(id, &spec).to_string();
        self.statuses.insert(id, Status { id, json, spec });
        id.to_string()
    }
}

fn pack(id: u64, s: &StatusSpec) -> Value {
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
        "id": id.to_string(),
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

/// The feed's own filters: public statuses, no boosts, no replies to others
/// (self-replies stay), no suspended or silenced authors; `local`/`remote`
/// (both given: neither applies) and `only_media`.
pub(super) fn holds(s: &StatusSpec, q: &BTreeMap<String, String>) -> bool {
    let (local, remote) = (
        truthy(q.get("local").map(String::as_str)),
        truthy(q.get("remote").map(String::as_str)),
    );
    let only_media = truthy(q.get("only_media").map(String::as_str));
    let in_feed = s.visibility == "public" && !s.reblog && !s.reply_to_other && !s.suspended;
    let origin_ok = match (local && !remote, remote && !local) {
        (true, _) => !s.remote,
        (_, true) => s.remote,
        _ => true,
    };
    in_feed && origin_ok && (!only_media || s.media)
}

/// `limit_param(DEFAULT_STATUSES_LIMIT = 20)`: `[abs(limit), 40].min`.
fn limit(q: &BTreeMap<String, String>) -> usize {
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

fn id_param(q: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    q.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap_or(0))
}

impl State {
    /// One page: `min_id` ascending then reversed (max_id an upper bound);
    /// otherwise `max_id`/`since_id` descending. Every bound exclusive.
    pub(super) fn page(&self, q: &BTreeMap<String, String>) -> Vec<&Status> {
        let (max, since, min) = (
            id_param(q, "max_id"),
            id_param(q, "since_id"),
            id_param(q, "min_id"),
        );
        let n = limit(q);
        let below = |s: &&Status| max.is_none_or(|m| s.id < m);
        let held = |s: &&Status| holds(&s.spec, q);
        match min {
            Some(min) => {
                let mut page: Vec<&Status> = self
                    .statuses
                    .range(min.saturating_add(1)..)
                    .map(|(_, s)| s)
                    .filter(below)
                    .filter(held)
                    .take(n)
                    .collect();
                page.reverse();
                page
            }
            None => self
                .statuses
                .values()
                .rev()
                .filter(below)
                .filter(|s| since.is_none_or(|m| s.id > m))
                .filter(held)
                .take(n)
                .collect(),
        }
    }

    /// Ground truth: the statuses a query holds with `start ≤ created_at < end`,
    /// sorted by created_at then id, as served.
    pub(super) fn expected(
        &self,
        q: &BTreeMap<String, String>,
        start: i64,
        end: i64,
    ) -> Vec<Value> {
        let mut held: Vec<&Status> = self
            .statuses
            .values()
            .filter(|s| (start..end).contains(&s.spec.created_at_ms) && holds(&s.spec, q))
            .collect();
        held.sort_by(|a, b| {
            (a.spec.created_at_ms, a.id.to_string()).cmp(&(b.spec.created_at_ms, b.id.to_string()))
        });
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
    let url = |bound: &str, id: u64| {
        let mut params = kept.clone();
        params.push(format!("{bound}={id}"));
        format!("{base}/api/v1/timelines/public?{}", params.join("&"))
    };
    Some(format!(
        "<{}>; rel=\"next\", <{}>; rel=\"prev\"",
        url("max_id", last.id),
        url("min_id", first.id)
    ))
}
