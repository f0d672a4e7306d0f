//! The note store and how notes are packed as JSON (§6).

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};

use super::ids::*;
use super::{Account, NoteSpec};

// ─────────────────────────────── note store and packing (§6) ───────────────────────────────

pub(super) struct Note {
    pub(super) id: String,
    pub(super) ms: i64,
    pub(super) spec: NoteSpec,
    pub(super) seq: u64,
    pub(super) user: usize,
    pub(super) reply_to: Option<(String, usize)>,
    pub(super) renote_of: Option<(String, usize)>,
    pub(super) channel: Option<usize>,
}

impl Note {
    pub(super) fn pure_renote(&self) -> bool {
        self.spec.renote_only || self.spec.text.is_none()
    }

    pub(super) fn text(&self) -> Option<&str> {
        self.spec.text.as_deref().filter(|_| !self.pure_renote())
    }
}

/// (username, name, host); the first LOCAL_USERS are local. Notes are written by the first ten;
/// `admin` (local) writes only the notes a test gives it.
pub(super) const USERS: [(&str, Option<&str>, Option<&str>); 11] = [
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
    ("admin", Some("管理人"), None),
];
pub(super) const LOCAL_USERS: usize = 6;
pub(super) const DAY: i64 = 86_400_000;
pub(super) const CHANNELS: [(&str, &str); 2] = [("雑談", "#86b300"), ("Rust", "#ce422b")];
pub(super) const BLURHASH: &str = "eQFRshof5NWBRi},juayfPju53WB]0xWBjuayfPFWBj[RiayoeV7j[og";

pub(super) struct State {
    pub(super) scheme: IdScheme,
    pub(super) ids: IdGen,
    pub(super) notes: BTreeMap<String, Note>,
    /// ids of USERS and CHANNELS
    pub(super) users: Vec<String>,
    pub(super) channels: Vec<String>,
    /// Deleted from the database since the search index took them (§9.1).
    pub(super) deleted: HashSet<String>,
    pub(super) suspended: HashSet<&'static str>,
    pub(super) blocked_hosts: HashSet<String>,
}

impl State {
    pub(super) fn new(scheme: IdScheme) -> Self {
        let mut ids = IdGen::new(scheme);
        let base = 1_682_899_200_000; // 2023-05-01
        let users = (0..USERS.len() as i64)
            .map(|i| ids.next_id(base + i * DAY))
            .collect();
        let channels = (0..2).map(|i| ids.next_id(base + 9_000_000 + i)).collect();
        let notes = BTreeMap::new();
        State {
            scheme,
            ids,
            notes,
            users,
            channels,
            deleted: HashSet::new(),
            suspended: HashSet::new(),
            blocked_hosts: HashSet::new(),
        }
    }

    /// Whether the database still answers `n` to `viewer`: not deleted, its author neither
    /// suspended, on a blocked host, nor muted by the viewer (§9.1's filters).
    pub(super) fn shown(&self, n: &Note, viewer: Option<&Account>) -> bool {
        let (author, _, host) = USERS[n.user];
        let blocked = host.is_some_and(|h| self.blocked_hosts.contains(h));
        let muted = viewer.is_some_and(|v| v.mutes.contains(&author));
        !self.deleted.contains(&n.id) && !self.suspended.contains(author) && !blocked && !muted
    }

    pub(super) fn add(&mut self, mut spec: NoteSpec) -> String {
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
        let author = spec.author.map(|name| {
            let found = USERS.iter().position(|u| u.0 == name);
            found.unwrap_or_else(|| panic!("no user {name:?}"))
        });
        if let Some(user) = author {
            spec.local = USERS[user].2.is_none();
        }
        let user = author.unwrap_or(if spec.local { s % 6 } else { 6 + s % 4 });
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

    pub(super) fn pack_user(&self, u: usize) -> Value {
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
    pub(super) fn base_note(&self, id: &str, user: usize, text: Option<&str>, seed: u64) -> Value {
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
    pub(super) fn pack_target(&self, (id, user): &(String, usize), detail: bool) -> Value {
        let text = USERS[*user].2.map_or("元のノートです", |_| "original");
        let mut m = self.base_note(id, *user, Some(text), 1);
        (m["visibility"], m["localOnly"]) = ("public".into(), false.into());
        if detail {
            m["clippedCount"] = 0.into();
        }
        m
    }

    pub(super) fn pack(&self, n: &Note) -> Value {
        let mut m = self.base_note(&n.id, n.user, n.text(), n.seq);
        m["visibility"] = n.spec.visibility.into();
        m["localOnly"] = n.spec.local_only.into();
        m["clippedCount"] = 0.into();
        if n.spec.visibility == "specified" {
            // §6: present on specified notes only; emulated ones are addressed to nobody else.
            m["visibleUserIds"] = Value::Array(vec![]);
        }
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
