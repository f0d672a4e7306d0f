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
//! Adding an origin: a module here implementing [`NoteSource`], its kind and
//! settings in `config.rs`, and its arm in `commands/source.rs` (`plan` checks
//! the settings before the catalog is opened, `build` connects).

pub mod archive;
pub mod codec;
pub mod http;
pub mod ids;
pub mod mastodon;
pub mod misskey;
pub mod open;
pub mod pacer;
pub mod ratelimit;
pub mod record;
pub mod sink;
pub mod visibility;

use async_trait::async_trait;
use thiserror::Error;

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

/// How a fetch of one range went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// The pages provably reached the range's start.
    pub complete: bool,
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
                crate::report::format::plural(u64::from(*pages), "page")
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
    pub fn absorb(&mut self, other: &Fetch) {
        self.calls += other.calls;
        self.retries += other.retries;
        self.rate_limited += other.rate_limited;
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
}
