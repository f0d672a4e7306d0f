//! The note sink: collects one slot's notes on disk, in constant memory.
//!
//! Notes arrive page by page, newest first, possibly with duplicates and
//! possibly outside the slot (engines that compare by milliseconds, archives).
//! The sink keeps exactly the notes with `start <= createdAt < end`, once per
//! id, that pass the dataset's client-side filters ([`NoteFilter`]: host,
//! Japanese text, visibility policy), spools their JSON unchanged to a
//! temporary file and remembers only (time, id, offset, length) per note.
//! `finish` writes them sorted by createdAt into the final JSON Lines file.
//! Each note is parsed once, when it is offered: the source reads its id and
//! time from what [`NoteSink::offer`] returns, and the earliest and latest
//! `createdAt` texts are kept on the way for the object's metadata.
//!
//! The filters are applied here, whatever the source, so a scope setting an
//! endpoint cannot express (`host` on a timeline, the visibility policy
//! everywhere) is still honoured, and an archive source obeys them too.

use std::collections::HashSet;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use chrono::DateTime;
use serde_json::value::RawValue;
use tempfile::NamedTempFile;

use super::record::{Author, RecordHead, RecordShape};
use super::visibility::VisibilityPolicy;

/// Which notes to keep besides the time range.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoteFilter {
    /// Only notes whose author is on this host; "." = local (`user.host` null).
    pub host: Option<String>,
    /// Only notes whose text has kana or kanji.
    pub japanese: bool,
    /// The visibilities a note may have to be written; the rest are left out and counted.
    pub visibility: VisibilityPolicy,
}

impl NoteFilter {
    /// Whether a record in range would be written: in scope and allowed by the
    /// visibility policy.
    pub fn admits(&self, head: &RecordHead) -> bool {
        self.in_scope(head) && head.visibility.is_some_and(|v| self.visibility.allows(v))
    }

    fn in_scope(&self, head: &RecordHead) -> bool {
        let host_ok = match self.host.as_deref() {
            None => true,
            // A note without its author cannot be placed: out of scope, never guessed.
            Some(want) => match (want, &head.author) {
                (_, Author::Unknown) => false,
                (".", author) => *author == Author::Local,
                (want, Author::Remote(host)) => host.eq_ignore_ascii_case(want),
                (_, Author::Local) => false,
            },
        };
        host_ok && (!self.japanese || head.text.as_deref().is_some_and(has_japanese))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Kept,
    Duplicate,
    OutOfRange,
    /// Outside the configured scope (host, Japanese text).
    Filtered,
    /// In scope, but its visibility is not allowed (or missing, or unknown).
    LeftOut,
}

/// What the sink did with an offered note, and the note's id and time.
#[derive(Debug, PartialEq, Eq)]
pub struct Offered<'a> {
    pub outcome: Pushed,
    pub id: std::borrow::Cow<'a, str>,
    pub created_ms: i64,
}

/// A kept note's place in the order, and its `createdAt` as the origin wrote it.
struct Edge {
    key: (i64, String),
    created_at: String,
}

struct Entry {
    created_ms: i64,
    id: String,
    offset: u64,
    len: u32,
}

pub struct NoteSink {
    start_ms: i64,
    end_ms: i64,
    filter: NoteFilter,
    shape: RecordShape,
    seen: HashSet<String>,
    entries: Vec<Entry>,
    spool: BufWriter<NamedTempFile>,
    spooled: u64,
    left_out: u64,
    out_of_scope: u64,
    /// The first and last kept notes in (createdAt, id) order.
    earliest: Option<Edge>,
    latest: Option<Edge>,
    /// The oldest createdAt seen in any pushed note (kept or not).
    pub oldest_seen_ms: Option<i64>,
}

/// The finished slot file and what it holds.
pub struct SlotFile {
    pub file: NamedTempFile,
    pub notes: u64,
    pub bytes: u64,
    pub earliest: Option<String>,
    pub latest: Option<String>,
    pub earliest_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("record is not a JSON object with an id and a creation time: {0}")]
    BadNote(String),
    #[error("spool file: {0}")]
    Io(#[from] std::io::Error),
}

/// Parses an ISO 8601 `createdAt` to Unix milliseconds.
pub fn parse_created_at(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

pub fn has_japanese(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(c as u32,
            0x3040..=0x309F   // hiragana
            | 0x30A0..=0x30FF // katakana
            | 0x31F0..=0x31FF // katakana extensions
            | 0x3400..=0x4DBF // CJK extension A
            | 0x4E00..=0x9FFF // CJK unified ideographs
            | 0xFF66..=0xFF9F // halfwidth katakana
        )
    })
}

impl NoteSink {
    /// A sink for `[start_ms, end_ms)` of records of `shape`.
    pub fn new(
        start_ms: i64,
        end_ms: i64,
        filter: NoteFilter,
        shape: RecordShape,
    ) -> std::io::Result<Self> {
        Ok(NoteSink {
            start_ms,
            end_ms,
            filter,
            shape,
            seen: HashSet::new(),
            entries: Vec::new(),
            spool: BufWriter::with_capacity(256 * 1024, NamedTempFile::new()?),
            spooled: 0,
            left_out: 0,
            out_of_scope: 0,
            earliest: None,
            latest: None,
            oldest_seen_ms: None,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct in-range ids offered so far, kept, filtered or left out.
    pub fn distinct_seen(&self) -> usize {
        self.seen.len()
    }

    /// Distinct in-range, in-scope notes the visibility policy kept out.
    pub fn left_out(&self) -> u64 {
        self.left_out
    }

    /// Distinct in-range notes outside the scope (the host or text filter).
    pub fn out_of_scope(&self) -> u64 {
        self.out_of_scope
    }

    /// Offers one note (its raw JSON); returns what happened to it.
    pub fn push(&mut self, raw: &RawValue) -> Result<Pushed, SinkError> {
        self.offer(raw).map(|offered| offered.outcome)
    }

    /// Offers one note; returns what happened to it, with its id and time.
    pub fn offer<'a>(&mut self, raw: &'a RawValue) -> Result<Offered<'a>, SinkError> {
        let json = raw.get();
        let head = RecordHead::parse(self.shape, json)
            .ok_or_else(|| SinkError::BadNote(abbreviate(json)))?;
        let created_ms = parse_created_at(&head.created_at)
            .ok_or_else(|| SinkError::BadNote(abbreviate(json)))?;
        let outcome = self.place(&head, created_ms, json)?;
        Ok(Offered {
            outcome,
            id: head.id,
            created_ms,
        })
    }

    fn place(
        &mut self,
        head: &RecordHead,
        created_ms: i64,
        json: &str,
    ) -> Result<Pushed, SinkError> {
        self.oldest_seen_ms = Some(
            self.oldest_seen_ms
                .map_or(created_ms, |o| o.min(created_ms)),
        );
        if created_ms < self.start_ms || created_ms >= self.end_ms {
            return Ok(Pushed::OutOfRange);
        }
        if self.seen.contains(head.id.as_ref()) {
            return Ok(Pushed::Duplicate);
        }
        self.seen.insert(head.id.to_string());
        if !self.filter.in_scope(head) {
            self.out_of_scope += 1;
            return Ok(Pushed::Filtered);
        }
        // After the scope: the count says what the policy alone kept out.
        if !head
            .visibility
            .is_some_and(|v| self.filter.visibility.allows(v))
        {
            self.left_out += 1;
            return Ok(Pushed::LeftOut);
        }
        self.spool.write_all(json.as_bytes())?;
        self.entries.push(Entry {
            created_ms,
            id: head.id.to_string(),
            offset: self.spooled,
            len: json.len() as u32,
        });
        self.spooled += json.len() as u64;
        let key = (created_ms, head.id.to_string());
        let edge = || Edge {
            key: key.clone(),
            created_at: head.created_at.to_string(),
        };
        if self.earliest.as_ref().is_none_or(|e| key < e.key) {
            self.earliest = Some(edge());
        }
        if self.latest.as_ref().is_none_or(|e| key > e.key) {
            self.latest = Some(edge());
        }
        Ok(Pushed::Kept)
    }

    /// Writes the kept notes, sorted by createdAt then id, one per line.
    pub fn finish(mut self) -> Result<SlotFile, SinkError> {
        self.entries
            .sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        let mut spool = self.spool.into_inner().map_err(|e| e.into_error())?;
        let mut out = BufWriter::with_capacity(256 * 1024, NamedTempFile::new()?);
        let mut buffer = Vec::new();
        let mut bytes = 0u64;
        for entry in &self.entries {
            buffer.resize(entry.len as usize, 0);
            spool.as_file_mut().seek(SeekFrom::Start(entry.offset))?;
            spool.as_file_mut().read_exact(&mut buffer)?;
            out.write_all(&buffer)?;
            out.write_all(b"\n")?;
            bytes += u64::from(entry.len) + 1;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.as_file().sync_all()?;
        Ok(SlotFile {
            file,
            notes: self.entries.len() as u64,
            bytes,
            earliest_ms: self.earliest.as_ref().map(|e| e.key.0),
            earliest: self.earliest.map(|e| e.created_at),
            latest: self.latest.map(|e| e.created_at),
        })
    }
}

fn abbreviate(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Visibility;

    fn raw(id: &str, at: &str, text: &str) -> Box<RawValue> {
        note(id, at, text, "public", "null")
    }

    fn note(id: &str, at: &str, text: &str, visibility: &str, host: &str) -> Box<RawValue> {
        RawValue::from_string(format!(
            r#"{{"id":"{id}","createdAt":"{at}","user":{{"host":{host}}},"text":{text},"visibility":"{visibility}"}}"#
        ))
        .unwrap()
    }

    fn sink(filter: NoteFilter) -> NoteSink {
        let start = parse_created_at("2025-07-31T15:40:00.000Z").unwrap();
        NoteSink::new(start, start + 600_000, filter, RecordShape::Misskey).unwrap()
    }

    #[test]
    fn keeps_the_range_once_sorted_and_unchanged() {
        let start = parse_created_at("2025-07-31T15:40:00.000Z").unwrap();
        let mut sink = sink(NoteFilter::default());
        let notes = [
            raw("c", "2025-07-31T15:49:59.999Z", "\"last\""),
            raw("b", "2025-07-31T15:40:00.000Z", "\"first\""),
            raw("a", "2025-07-31T15:40:00.000Z", "null"),
            raw("b", "2025-07-31T15:40:00.000Z", "\"first\""),
            raw("z", "2025-07-31T15:50:00.000Z", "\"next slot\""),
            raw("y", "2025-07-31T15:39:59.999Z", "\"previous slot\""),
        ];
        let outcomes: Vec<_> = notes.iter().map(|n| sink.push(n).unwrap()).collect();
        assert_eq!(outcomes[3], Pushed::Duplicate);
        assert_eq!(outcomes[4], Pushed::OutOfRange);
        assert_eq!(sink.oldest_seen_ms, Some(start - 1));
        let file = sink.finish().unwrap();
        assert_eq!(file.notes, 3);
        let text = std::fs::read_to_string(file.file.path()).unwrap();
        let ids: Vec<_> = text.lines().map(|l| l.split('"').nth(3).unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(text.lines().nth(2).unwrap(), notes[0].get());
        assert_eq!(file.earliest.as_deref(), Some("2025-07-31T15:40:00.000Z"));
        assert_eq!(file.latest.as_deref(), Some("2025-07-31T15:49:59.999Z"));
    }

    #[test]
    fn japanese_filter() {
        assert!(has_japanese("こんにちは") && has_japanese("漢字") && has_japanese("ｶﾀｶﾅ"));
        assert!(!has_japanese("hello, world") && !has_japanese("한국어"));
        let mut sink = sink(NoteFilter {
            japanese: true,
            ..Default::default()
        });
        sink.push(&raw("a", "2025-07-31T15:41:00.000Z", "\"hello\""))
            .unwrap();
        sink.push(&raw("b", "2025-07-31T15:41:00.000Z", "\"おはよう\""))
            .unwrap();
        sink.push(&raw("c", "2025-07-31T15:41:00.000Z", "null"))
            .unwrap();
        assert_eq!(sink.len(), 1);
    }

    #[test]
    fn the_visibility_policy_leaves_out_and_counts_once() {
        let at = "2025-07-31T15:41:00.000Z";
        let offered = [
            note("p", at, "\"x\"", "public", "null"),
            note("h", at, "\"x\"", "home", "null"),
            note("f", at, "\"x\"", "followers", "null"),
            note("f", at, "\"x\"", "followers", "null"),
            note("s", at, "\"x\"", "specified", "null"),
            note("u", at, "\"x\"", "unlisted", "null"),
            RawValue::from_string(format!(r#"{{"id":"m","createdAt":"{at}"}}"#)).unwrap(),
        ];
        let mut default = sink(NoteFilter::default());
        let outcomes: Vec<_> = offered.iter().map(|n| default.push(n).unwrap()).collect();
        assert_eq!(outcomes[2], Pushed::LeftOut);
        assert_eq!(outcomes[3], Pushed::Duplicate);
        assert_eq!((default.len(), default.left_out()), (2, 4));
        assert_eq!(default.distinct_seen(), 6);

        let mut wide = sink(NoteFilter {
            visibility: VisibilityPolicy::of(&Visibility::ALL),
            ..Default::default()
        });
        for n in &offered {
            wide.push(n).unwrap();
        }
        // Unknown and missing visibilities are left out whatever the policy.
        assert_eq!((wide.len(), wide.left_out()), (4, 2));
    }

    #[test]
    fn host_scope_is_applied_before_the_policy() {
        let at = "2025-07-31T15:41:00.000Z";
        let mut local = sink(NoteFilter {
            host: Some(".".into()),
            ..Default::default()
        });
        let remote = "\"Mastodon.Example\"";
        local
            .push(&note("a", at, "null", "public", "null"))
            .unwrap();
        let pushed = local.push(&note("b", at, "null", "public", remote));
        assert_eq!(pushed.unwrap(), Pushed::Filtered);
        let pushed = local.push(&note("c", at, "null", "followers", remote));
        assert_eq!(pushed.unwrap(), Pushed::Filtered);
        let no_user = RawValue::from_string(format!(
            r#"{{"id":"d","createdAt":"{at}","visibility":"public"}}"#
        ))
        .unwrap();
        assert_eq!(local.push(&no_user).unwrap(), Pushed::Filtered);
        assert_eq!((local.len(), local.left_out()), (1, 0));
        assert_eq!(local.out_of_scope(), 3);

        let mut one_host = sink(NoteFilter {
            host: Some("mastodon.example".into()),
            ..Default::default()
        });
        one_host
            .push(&note("a", at, "null", "public", "null"))
            .unwrap();
        one_host
            .push(&note("b", at, "null", "public", remote))
            .unwrap();
        assert_eq!(one_host.len(), 1);
    }
}
