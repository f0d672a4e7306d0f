//! Origin sources: where a missing slot's notes are fetched from.
//!
//! A source fills a [`NoteSink`] with the notes of one time range and says
//! whether the fetch was *complete* (it provably reached the range's start).
//! Only a complete fetch may be written as a slot's object.
//!
//! - [`misskey`]: the Misskey HTTP API, paged newest-first between id bounds
//!   built from time ([`ids`]), behind one global [`pacer::Pacer`].
//! - [`mastodon`]: the public timelines of any Mastodon-API server, paged
//!   newest-first by ids built in the server's own id space ([`codec`]).
//! - [`archive`]: JSON Lines files at another location (a dump or another
//!   archive), assigned to slots by `createdAt`.
//!
//! What a source returns is not yet what may be written: the sink applies the
//! dataset's client-side scope and its [`visibility`] policy to every note,
//! reading each origin's records through its [`record::RecordShape`]; the
//! retries every HTTP origin shares are in [`http`], and its rate limits,
//! read by [`ratelimit`], are kept by one [`pacer`] per origin.
//!
//! Adding an origin: a module here implementing [`NoteSource`] that owns its
//! settings (as read, checked and used), registered in [`open`] (one variant
//! and its arms), and its emulator in `tests/support/` (see the README's
//! "Adding an origin").

pub mod archive;
pub mod codec;
pub mod http;
pub mod ids;
pub mod mastodon;
pub mod misskey;
pub mod open;
pub mod pacer;
pub mod provenance;
pub mod ratelimit;
pub mod record;
pub mod settings;
pub mod sink;
pub mod visibility;

use async_trait::async_trait;
use thiserror::Error;

pub use provenance::{BlindTo, Provenance, TokenClass};
pub use record::RecordShape;
pub use sink::{NoteFilter, NoteSink, SlotFile};
pub use visibility::{Visibility, VisibilityPolicy};

#[derive(Debug, Error)]
pub enum SourceError {
    /// Wrong settings or credentials: no slot can succeed, stop the run.
    #[error("{0}")]
    Config(String),
    /// The origin failed for this range after every retry.
    #[error("{0}")]
    Origin(String),
}

impl SourceError {
    pub fn is_configuration(&self) -> bool {
        matches!(self, SourceError::Config(_))
    }
}

/// What proved that a range was read to its end (misskey-api.md §9.5). A
/// short page is never proof: search engines thin pages after the limit,
/// timelines without a database fallback answer `[]`, some servers filter
/// after their query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEnd {
    /// A page with nothing in it.
    EmptyPage,
    /// A page holding a record older than the range's start.
    OlderRecord,
    /// On an engine that compares bounds by millisecond: a page that brought
    /// nothing new once the boundary millisecond was read again.
    NoNewRecord,
    /// The server's `Link` header named a next page starting below the
    /// range's start, after it read (and filtered away) everything above.
    NextPageBelowStart,
    /// An archive source read every file that overlaps the range.
    ArchiveRead,
}

impl RangeEnd {
    pub fn name(self) -> &'static str {
        match self {
            RangeEnd::EmptyPage => "empty-page",
            RangeEnd::OlderRecord => "older-note",
            RangeEnd::NoNewRecord => "no-new-note",
            RangeEnd::NextPageBelowStart => "next-page-below-start",
            RangeEnd::ArchiveRead => "archive-read",
        }
    }
}

/// The proofs that ended a fetch's ranges (one per range; sub-slot windows
/// make several), counted by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeEnds {
    pub empty_page: u32,
    pub older_record: u32,
    pub no_new_record: u32,
    pub next_page_below_start: u32,
    pub archive_read: u32,
}

impl RangeEnds {
    pub fn record(&mut self, end: RangeEnd) {
        match end {
            RangeEnd::EmptyPage => self.empty_page += 1,
            RangeEnd::OlderRecord => self.older_record += 1,
            RangeEnd::NoNewRecord => self.no_new_record += 1,
            RangeEnd::NextPageBelowStart => self.next_page_below_start += 1,
            RangeEnd::ArchiveRead => self.archive_read += 1,
        }
    }

    fn add(&mut self, other: &RangeEnds) {
        self.empty_page += other.empty_page;
        self.older_record += other.older_record;
        self.no_new_record += other.no_new_record;
        self.next_page_below_start += other.next_page_below_start;
        self.archive_read += other.archive_read;
    }

    /// `empty-page` for one range; `empty-page:5,no-new-note:1` for several;
    /// empty when no range ended.
    pub fn describe(&self) -> String {
        let counts = [
            (RangeEnd::EmptyPage, self.empty_page),
            (RangeEnd::OlderRecord, self.older_record),
            (RangeEnd::NoNewRecord, self.no_new_record),
            (RangeEnd::NextPageBelowStart, self.next_page_below_start),
            (RangeEnd::ArchiveRead, self.archive_read),
        ];
        let ended: Vec<_> = counts.iter().filter(|(_, n)| *n > 0).collect();
        match ended.as_slice() {
            [(end, 1)] => end.name().to_string(),
            _ => ended
                .iter()
                .map(|(end, n)| format!("{}:{n}", end.name()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// How a fetch of one range went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// Every range ended on proof ([`RangeEnd`]): the pages provably reached
    /// the range's start.
    pub complete: bool,
    /// The proofs that ended the ranges.
    pub ends: RangeEnds,
    pub calls: u64,
    pub retries: u64,
    /// Rate-limit answers (429) waited out.
    pub rate_limited: u64,
    /// Why the fetch is not complete.
    pub failure: Option<Failure>,
}

/// Why a fetch did not complete, or why an attempt wrote no object: shared by
/// the sources, fill and the catalog (`fill_attempts.error_code` is [`Failure::code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The origin failed after every retry; `code` says how (`timeout`,
    /// `connect`, `http_503`, `rate_limited`, `bad_json`, …).
    Origin { code: String, message: String },
    /// The slot needs more pages than the page budget (`--max-pages`).
    PageBudget { pages: u32 },
    /// The origin sent a record that is not a note (no usable id or time).
    BadRecord(String),
    /// The instance's id scheme could not be detected.
    IdScheme(String),
    /// An archive file could not be read.
    ArchiveRead(String),
    /// The slot file could not be spooled to disk.
    Spool(String),
    /// The complement object could not be written.
    Store(String),
    /// A configuration error that stopped the run.
    Config(String),
}

impl Failure {
    /// What `fill_attempts.error_code` records. (The catalog itself records
    /// `interrupted` for attempts a killed process left.)
    pub fn code(&self) -> &str {
        match self {
            Failure::Origin { code, .. } => code,
            Failure::PageBudget { .. } => "page_budget",
            Failure::BadRecord(_) => "bad_note",
            Failure::IdScheme(_) => "id_scheme",
            Failure::ArchiveRead(_) => "archive_read",
            Failure::Spool(_) => "spool",
            Failure::Store(_) => "store",
            Failure::Config(_) => "config",
        }
    }

    /// The real cause, for people.
    pub fn message(&self) -> String {
        match self {
            Failure::Origin { message, .. } => format!("the origin failed: {message}"),
            Failure::PageBudget { pages } => format!(
                "the slot needs more than {} (the page budget, --max-pages)",
                crate::text::plural(u64::from(*pages), "page")
            ),
            Failure::BadRecord(what) => format!("the origin sent {what}"),
            Failure::IdScheme(message)
            | Failure::ArchiveRead(message)
            | Failure::Spool(message)
            | Failure::Store(message)
            | Failure::Config(message) => message.clone(),
        }
    }

    /// The fetch ran out of pages rather than failing: the attempt was partial.
    pub fn is_partial(&self) -> bool {
        matches!(self, Failure::PageBudget { .. })
    }
}

impl Fetch {
    /// The id scheme a range's bounds are built in, once learned. One the
    /// origin cannot tell now fails this range only (it is tried again later),
    /// recorded here: `None`. A configuration error still stops the run.
    pub fn id_scheme<T>(
        &mut self,
        learned: Result<T, SourceError>,
    ) -> Result<Option<T>, SourceError> {
        match learned {
            Ok(scheme) => Ok(Some(scheme)),
            Err(SourceError::Origin(message)) => {
                tracing::warn!(%message, "giving up on this range for now");
                self.failure = Some(Failure::IdScheme(message));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn absorb(&mut self, other: &Fetch) {
        self.calls += other.calls;
        self.retries += other.retries;
        self.rate_limited += other.rate_limited;
        self.ends.add(&other.ends);
    }

    /// The range was read to its end, proven by `end`.
    pub fn ended(&mut self, end: RangeEnd) {
        self.complete = true;
        self.ends.record(end);
    }
}

#[async_trait]
pub trait NoteSource: Send + Sync {
    /// For metadata and messages: `misskey:https://host/api/notes/search`.
    fn describe(&self) -> String;

    /// Fetches every note with `start_ms <= createdAt < end_ms` into the sink.
    /// `Err` only for configuration errors; origin failures are an incomplete `Fetch`.
    async fn fetch(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError>;

    /// Origin calls a slot of `notes` notes costs, for dry-run estimates.
    fn estimated_calls(&self, notes: u64) -> u64;

    /// How this origin's records name the fields slotfill reads.
    fn shape(&self) -> RecordShape {
        RecordShape::Misskey
    }

    /// The pause between two calls (`--sleep`), for dry-run estimates.
    fn call_interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// One call before the first slot, proving the origin answers and accepts the
    /// settings: `Config` when it refuses them, `Origin` (naming the real cause)
    /// when it cannot be reached.
    async fn probe(&self, _stats: &mut Fetch) -> Result<(), SourceError> {
        Ok(())
    }

    /// How this source reads the origin, for the record. Read after the
    /// fetches: some facts (the search engine's kind) are learned on the way.
    fn provenance(&self) -> Provenance;

    /// Whether the answers of this source can prove nothing and must be checked
    /// against the archive before a slot is sealed (an archive cannot be blind).
    fn calibrates(&self) -> bool {
        true
    }

    /// Whether the mode could return this archived record by design (search:
    /// notes with text; local-timeline: local notes; …). Calibration compares
    /// only these. Scope settings (host, text filter, visibility policy) are
    /// applied by the caller.
    fn returnable(&self, _record: &str) -> bool {
        true
    }

    /// The first page a fill of `[start_ms, end_ms)` asks for, exactly as it
    /// asks; with no window, the origin's newest page. For calibration.
    async fn sample(
        &self,
        window: Option<(i64, i64)>,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, SourceError>;

    /// Record ids read from the archive, for a source that could not learn its
    /// id scheme from the origin (which answered nothing).
    fn learn_ids(&self, _ids: &[String]) {}

    /// What to tell a user whose origin returned nothing where the archive
    /// holds records (`to`), and whether it answers recent records at all.
    fn blind_advice(&self, to: BlindTo, answers_recent: Option<bool>) -> String {
        provenance::generic_advice(to, answers_recent)
    }
}
