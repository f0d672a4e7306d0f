//! What slotfill reads from an origin's record, whatever the origin calls it.
//!
//! A record (a Misskey note, a Mastodon status) is written to the slot's object
//! exactly as the origin sent it; slotfill only reads a few fields to place and
//! scope it: its id, its creation time, its text, its visibility and its
//! author's host. Each origin names them differently ([`RecordShape`]); the
//! sink reads every record through [`RecordHead::parse`], so nothing past the
//! source needs to know which origin a record came from.

use std::borrow::Cow;

use serde::Deserialize;

use super::codec::IdCodec;
use super::visibility::Visibility;

/// How an origin's records name the fields slotfill reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordShape {
    /// Misskey notes: `id`, `createdAt`, `text`, `visibility` (Misskey's four
    /// names), `user.host` (null for the instance's own users).
    #[default]
    Misskey,
    /// Mastodon statuses: `id`, `created_at`, `content` (HTML), `visibility`
    /// (`public`, `unlisted`, `private`, `direct`), `account.acct` (`user` for
    /// local accounts, `user@host` for remote ones).
    Mastodon,
    /// Mastodon statuses placed by the time their id carries (when the server
    /// received them: `slot_by = "receipt"`): [`RecordHead::created_at`] reads
    /// as that time, so the sink places, sorts and dates them by it.
    MastodonReceipt(IdCodec),
}

/// Whose record it is, as far as the host scope cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author<'a> {
    /// The record carries no author: it cannot be placed, never guessed.
    Unknown,
    Local,
    Remote(Cow<'a, str>),
}

/// The fields of one record slotfill reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHead<'a> {
    pub id: Cow<'a, str>,
    /// ISO 8601, as the origin wrote it: the time that places the record in
    /// a slot (for [`RecordShape::MastodonReceipt`], its id's time).
    pub created_at: Cow<'a, str>,
    pub text: Option<Cow<'a, str>>,
    /// None when missing or not a name the origin uses.
    pub visibility: Option<Visibility>,
    pub author: Author<'a>,
}

#[derive(Deserialize)]
struct MisskeyNote<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "createdAt", borrow)]
    created_at: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    visibility: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<MisskeyUser<'a>>,
}

#[derive(Deserialize)]
struct MisskeyUser<'a> {
    #[serde(default, borrow)]
    host: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MastodonStatus<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    visibility: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    account: Option<MastodonAccount<'a>>,
}

#[derive(Deserialize)]
struct MastodonAccount<'a> {
    #[serde(borrow)]
    acct: Cow<'a, str>,
}

impl<'a> RecordHead<'a> {
    /// Reads a record's head; None when it lacks an id or a creation time.
    pub fn parse(shape: RecordShape, json: &'a str) -> Option<RecordHead<'a>> {
        match shape {
            RecordShape::Misskey => {
                let note: MisskeyNote = serde_json::from_str(json).ok()?;
                Some(RecordHead {
                    id: note.id,
                    created_at: note.created_at,
                    text: note.text,
                    visibility: note
                        .visibility
                        .as_deref()
                        .and_then(Visibility::from_misskey),
                    author: match note.user {
                        None => Author::Unknown,
                        Some(MisskeyUser { host: None }) => Author::Local,
                        Some(MisskeyUser { host: Some(host) }) => Author::Remote(host),
                    },
                })
            }
            RecordShape::MastodonReceipt(codec) => {
                let mut head = RecordHead::parse(RecordShape::Mastodon, json)?;
                let received = chrono::DateTime::from_timestamp_millis(codec.time_of(&head.id)?)?;
                head.created_at = Cow::Owned(received.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
                Some(head)
            }
            RecordShape::Mastodon => {
                let status: MastodonStatus = serde_json::from_str(json).ok()?;
                Some(RecordHead {
                    id: status.id,
                    created_at: status.created_at,
                    text: status.content,
                    visibility: status
                        .visibility
                        .as_deref()
                        .and_then(Visibility::from_mastodon),
                    author: match status.account {
                        None => Author::Unknown,
                        Some(account) => match account.acct.split_once('@') {
                            None => Author::Local,
                            Some((_, host)) => Author::Remote(Cow::Owned(host.to_string())),
                        },
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_read_the_same_facts() {
        let note = r#"{"id":"a1","createdAt":"2025-07-31T15:40:00.691Z","text":"t","visibility":"home","user":{"host":"mastodon.example"}}"#;
        let status = r#"{"id":"114948597350399999","created_at":"2025-07-31T15:40:00.691Z","content":"<p>t</p>","visibility":"unlisted","account":{"acct":"alice@mastodon.example"}}"#;
        let n = RecordHead::parse(RecordShape::Misskey, note).unwrap();
        let s = RecordHead::parse(RecordShape::Mastodon, status).unwrap();
        assert_eq!(n.created_at, s.created_at);
        assert_eq!(
            (n.visibility, s.visibility),
            (Some(Visibility::Home), Some(Visibility::Home))
        );
        assert_eq!(n.author, s.author);
        let local = r#"{"id":"1","created_at":"2025-07-31T15:40:00Z","visibility":"private","account":{"acct":"bob"}}"#;
        let local = RecordHead::parse(RecordShape::Mastodon, local).unwrap();
        assert_eq!(local.author, Author::Local);
        assert_eq!(local.visibility, Some(Visibility::Followers));
        // Placed by receipt: the id's time (a snowflake received 2 s after creation).
        let late = status.replace(
            "114948597350399999",
            &((1_753_976_402_691u64 << 16).to_string()),
        );
        let r = RecordHead::parse(RecordShape::MastodonReceipt(IdCodec::Snowflake), &late).unwrap();
        assert_eq!(r.created_at, "2025-07-31T15:40:02.691Z");
        let opaque = RecordShape::MastodonReceipt(IdCodec::Opaque);
        assert!(
            RecordHead::parse(opaque, status).is_none(),
            "no time: never placed"
        );
        // A Misskey-shaped record is not a status, and the reverse.
        assert!(RecordHead::parse(RecordShape::Mastodon, note).is_none());
        assert!(RecordHead::parse(RecordShape::Misskey, status).is_none());
    }
}
