//! Which public timeline a dataset mirrors, what it can hold, and how a
//! federated status is given its slot.
//!
//! The timelines hold public statuses only, never boosts, and no replies to
//! other accounts (`app/models/public_feed.rb`; GoToSocial drops multi-author
//! reply chains the same way). Servers ignore parameters they do not know
//! (GoToSocial 0.19 ignores `remote` and `only_media`), so the timeline's
//! part (local or remote) and `only_media` are applied to every status on the
//! client side too ([`in_timeline`]).

use std::borrow::Cow;
use std::str::FromStr;

use serde::Deserialize;

use crate::source::{Visibility, VisibilityPolicy};

/// Which public timeline a dataset mirrors; spelled `local`, `public` or
/// `remote` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Timeline {
    /// `local=true`: statuses of the server's own accounts.
    Local,
    /// Everything the server knows: local and federated.
    Public,
    /// `remote=true`: federated statuses only.
    Remote,
}

/// How a slot claims a federated status (`slot_by`). A status reaches a
/// server some time after it was created; its id carries when the server
/// received it (Mastodon's inbox deliveries, Pleroma's FlakeIds) or when it
/// claims to have been created (fetched statuses, Misskey ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRule {
    /// By `created_at`, looking for ids up to `lag_ms` past the slot's end, so
    /// a status delivered that late is still found in its slot.
    CreatedAt { lag_ms: i64 },
    /// By the time its id carries: when the server received it, which is what
    /// a collector reading the server's stream saw.
    Receipt,
}

/// `[datasets.X.source] slot_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SlotBy {
    #[serde(rename = "created_at")]
    CreatedAt,
    #[serde(rename = "receipt")]
    Receipt,
}

impl Timeline {
    pub const ALL: [Timeline; 3] = [Timeline::Local, Timeline::Public, Timeline::Remote];

    pub fn name(self) -> &'static str {
        match self {
            Timeline::Local => "local",
            Timeline::Public => "public",
            Timeline::Remote => "remote",
        }
    }

    pub(super) fn param(self) -> Option<(&'static str, &'static str)> {
        match self {
            Timeline::Local => Some(("local", "true")),
            Timeline::Public => None,
            Timeline::Remote => Some(("remote", "true")),
        }
    }

    /// The parts of the server's feed (`local`, `remote`) this timeline reads.
    pub(super) fn parts(self) -> &'static [&'static str] {
        match self {
            Timeline::Local => &["local"],
            Timeline::Public => &["local", "remote"],
            Timeline::Remote => &["remote"],
        }
    }

    /// Whether it holds federated statuses (whose delivery may be late).
    pub fn federated(self) -> bool {
        self != Timeline::Local
    }

    /// Refuses scope settings this timeline can never satisfy: they would
    /// silently write nothing, slot after slot.
    pub fn check_scope(self, host: Option<&str>, policy: &VisibilityPolicy) -> Result<(), String> {
        let name = self.name();
        match (self, host) {
            (Timeline::Local, Some(host)) if host != "." => {
                return Err(format!(
                    "timeline \"{name}\" holds only the server's own statuses, so host = {host:?} would keep none; \
                     use host = \".\", or timeline \"public\" or \"remote\""
                ));
            }
            (Timeline::Remote, Some(".")) => {
                return Err(format!(
                    "timeline \"{name}\" holds only federated statuses, so host = \".\" would keep none; \
                     use timeline \"local\" or \"public\""
                ));
            }
            _ => {}
        }
        // The public timelines hold public statuses only (app/models/public_feed.rb).
        if !policy.allows(Visibility::Public) {
            return Err(format!(
                "timeline \"{name}\" returns only public statuses, and the source visibility allows none of them"
            ));
        }
        Ok(())
    }
}

impl TryFrom<String> for Timeline {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
    }
}

impl FromStr for Timeline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timeline::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown timeline {s:?} (local, public, remote)"))
    }
}

/// The fields of a status the timeline rules read.
#[derive(Deserialize)]
struct Status<'a> {
    #[serde(default, borrow)]
    visibility: Option<Cow<'a, str>>,
    #[serde(default)]
    reblog: Option<serde::de::IgnoredAny>,
    #[serde(default, borrow)]
    in_reply_to_account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    account: Account<'a>,
    #[serde(default)]
    media_attachments: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Account<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    acct: Cow<'a, str>,
}

impl Status<'_> {
    fn remote(&self) -> bool {
        self.account.acct.contains('@')
    }

    fn in_part(&self, timeline: Timeline, only_media: bool) -> bool {
        let part = match timeline {
            Timeline::Local => !self.remote(),
            Timeline::Remote => self.remote(),
            Timeline::Public => true,
        };
        part && (!only_media || !self.media_attachments.is_empty())
    }
}

/// Whether a status belongs to the timeline's part (local or remote) and,
/// with `only_media`, has media: what the server should have applied itself.
/// A status that cannot be read is kept, for the sink to refuse by name.
pub fn in_timeline(timeline: Timeline, only_media: bool, json: &str) -> bool {
    match serde_json::from_str::<Status>(json) {
        Ok(status) => status.in_part(timeline, only_media),
        Err(_) => true,
    }
}

/// Whether the timeline could return this (archived) status by design: public,
/// not a boost, not a reply to another account, in the timeline's part, and
/// with media under `only_media`.
pub fn returnable(timeline: Timeline, only_media: bool, json: &str) -> bool {
    let Ok(status) = serde_json::from_str::<Status>(json) else {
        return false;
    };
    let reply_to_other = status
        .in_reply_to_account_id
        .as_deref()
        .is_some_and(|to| to != status.account.id);
    status.visibility.as_deref() == Some("public")
        && status.reblog.is_none()
        && !reply_to_other
        && status.in_part(timeline, only_media)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(acct: &str, extra: &str) -> String {
        format!(
            r#"{{"id":"1","created_at":"2025-07-31T15:40:00.000Z","visibility":"public","reblog":null,"in_reply_to_account_id":null,"account":{{"id":"7","acct":"{acct}"}},"media_attachments":[]{extra}}}"#
        )
    }

    #[test]
    fn returnable_follows_the_feeds_rules() {
        let local = status("alice", "");
        let remote = status("carol@remote.example", "");
        assert!(returnable(Timeline::Local, false, &local));
        assert!(!returnable(Timeline::Local, false, &remote));
        assert!(returnable(Timeline::Remote, false, &remote));
        assert!(!returnable(Timeline::Remote, false, &local));
        assert!(
            returnable(Timeline::Public, false, &local)
                && returnable(Timeline::Public, false, &remote)
        );
        assert!(!returnable(Timeline::Public, true, &local), "no media");
        let media = local.replace(
            r#""media_attachments":[]"#,
            r#""media_attachments":[{"id":"m"}]"#,
        );
        assert!(returnable(Timeline::Local, true, &media));
        let unlisted = local.replace(r#""visibility":"public""#, r#""visibility":"unlisted""#);
        assert!(!returnable(Timeline::Local, false, &unlisted));
        let boost = local.replace(r#""reblog":null"#, r#""reblog":{"id":"9"}"#);
        assert!(!returnable(Timeline::Local, false, &boost));
        let reply = |to: &str| {
            local.replace(
                r#""in_reply_to_account_id":null"#,
                &format!(r#""in_reply_to_account_id":"{to}""#),
            )
        };
        assert!(
            !returnable(Timeline::Local, false, &reply("99")),
            "reply to another"
        );
        assert!(
            returnable(Timeline::Local, false, &reply("7")),
            "self-reply"
        );
        assert!(!returnable(Timeline::Local, false, "{\"id\":\"1\"}"));
    }

    #[test]
    fn in_timeline_applies_what_servers_ignore() {
        let local = status("alice", "");
        let remote = status("carol@remote.example", "");
        assert!(
            !in_timeline(Timeline::Remote, false, &local),
            "remote=true ignored by GoToSocial"
        );
        assert!(in_timeline(Timeline::Remote, false, &remote));
        assert!(
            !in_timeline(Timeline::Public, true, &remote),
            "only_media ignored"
        );
        // Replies and boosts are the server's business here, not the client's.
        let boost = local.replace(r#""reblog":null"#, r#""reblog":{"id":"9"}"#);
        assert!(in_timeline(Timeline::Local, false, &boost));
        assert!(in_timeline(Timeline::Local, false, "not json"));
    }

    #[test]
    fn scope_that_would_keep_nothing_is_refused() {
        let public = VisibilityPolicy::default();
        assert!(Timeline::Local.check_scope(Some("."), &public).is_ok());
        assert!(
            Timeline::Public
                .check_scope(Some("m.example"), &public)
                .is_ok()
        );
        let err = Timeline::Local
            .check_scope(Some("m.example"), &public)
            .unwrap_err();
        assert!(err.contains("only the server's own"), "{err}");
        let err = Timeline::Remote
            .check_scope(Some("."), &public)
            .unwrap_err();
        assert!(err.contains("only federated"), "{err}");
        let home = VisibilityPolicy::of(&[Visibility::Home]);
        let err = Timeline::Public.check_scope(None, &home).unwrap_err();
        assert!(err.contains("only public statuses"), "{err}");
        assert_eq!("remote".parse::<Timeline>(), Ok(Timeline::Remote));
        assert!(
            "federated"
                .parse::<Timeline>()
                .unwrap_err()
                .contains("local, public, remote")
        );
    }
}
