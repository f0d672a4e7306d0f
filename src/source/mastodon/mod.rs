//! The Mastodon API as a note source: a public timeline of
//! `GET /api/v1/timelines/public`, read newest first, from any server that
//! speaks it: Mastodon, GoToSocial, Pleroma/Akkoma, and the Mastodon layers
//! of Misskey forks (misskey-api.md §7, §9.2–9.4).
//!
//! Each server has its own id space ([`IdCodec`]): snowflakes, ULIDs,
//! FlakeIds, Misskey ids, or ids that carry no time. The codec is configured
//! (`id_scheme`) or detected from the statuses the probe reads, and every
//! bound is built in it. How a range is paged and what proves it exhausted
//! is in [`paging`]; what the probe checks first (the feed settings, that the
//! server pages at all) in [`access`] and [`paging`].
//!
//! Rate limits go through the shared [`Pacer`]: the announced budget is
//! never overdrawn, and a throttle is waited out.

mod access;
mod client;
mod landmarks;
mod paging;
pub mod settings;
mod timeline;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::codec::IdCodec;
use super::http::{self, CallFailure};
use super::pacer::Pacer;
use super::record::RecordShape;
use super::sink::NoteSink;
use super::{BlindTo, Fetch, NoteSource, Provenance, SourceError, TokenClass};

pub use settings::{MastodonConfig, MastodonSettings};
pub use timeline::{SlotBy, SlotRule, Timeline, in_timeline, returnable};

/// The most statuses a page holds (Mastodon: `2 × DEFAULT_STATUSES_LIMIT`;
/// GoToSocial and Pleroma clamp to it too).
pub const PAGE_LIMIT: usize = 40;
pub const ENDPOINT: &str = "api/v1/timelines/public";

pub struct Mastodon {
    http: reqwest::Client,
    settings: MastodonSettings,
    /// The base URL without a trailing slash.
    base: String,
    /// The timeline's URL.
    url: String,
    pacer: Arc<Pacer>,
    codec: OnceCell<IdCodec>,
    /// Where earlier pages were, for ids that carry no time.
    landmarks: Mutex<landmarks::Landmarks>,
}

impl Mastodon {
    pub fn new(settings: MastodonSettings) -> Result<Mastodon, SourceError> {
        let base = settings.base_url.trim_end_matches('/').to_string();
        http::check_base_url(&base)?;
        Ok(Mastodon {
            http: http::client(settings.timeout)?,
            url: format!("{base}/{ENDPOINT}"),
            base,
            pacer: Arc::new(Pacer::new(settings.sleep)),
            codec: OnceCell::new(),
            landmarks: Mutex::default(),
            settings,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.settings.token.as_deref().into_iter().collect()
    }

    /// The query of one page: the timeline, `only_media`, `limit`, and `max_id`.
    fn query(&self, max_id: Option<&str>, limit: usize) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some((key, value)) = self.settings.timeline.param() {
            query.push((key, value.to_string()));
        }
        if self.settings.only_media {
            query.push(("only_media", "true".to_string()));
        }
        query.push(("limit", limit.to_string()));
        if let Some(max_id) = max_id {
            query.push(("max_id", max_id.to_string()));
        }
        query
    }

    async fn page(
        &self,
        query: &[(&'static str, String)],
        stats: &mut Fetch,
    ) -> Result<client::Page, CallFailure> {
        http::call(&self.settings.policy, &self.pacer, stats, || {
            self.page_once(query)
        })
        .await
    }

    /// A page the probe asks for: a server nothing answers at is told after
    /// one retry ([`RetryPolicy::for_probe`]).
    async fn probe_page(
        &self,
        query: &[(&'static str, String)],
        stats: &mut Fetch,
    ) -> Result<client::Page, SourceError> {
        let policy = self.settings.policy.for_probe();
        http::call(&policy, &self.pacer, stats, || self.page_once(query))
            .await
            .map_err(CallFailure::into_probe_error)
    }
}

#[async_trait]
impl NoteSource for Mastodon {
    fn describe(&self) -> String {
        let query: Vec<(&'static str, String)> = self
            .query(None, PAGE_LIMIT)
            .into_iter()
            .filter(|(key, _)| *key != "limit")
            .collect();
        let url = crate::redact::url_without_credentials(&self.url);
        match query.is_empty() {
            true => format!("mastodon:{url}"),
            false => format!("mastodon:{url}?{}", client::encode(&query)),
        }
    }

    async fn fetch(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        self.fetch_range(start_ms, end_ms, sink).await
    }

    /// The pages of n statuses plus the page that proves the end.
    fn estimated_calls(&self, notes: u64) -> u64 {
        notes.div_ceil(PAGE_LIMIT as u64) + 1
    }

    fn call_interval(&self) -> Duration {
        self.settings.sleep
    }

    /// Statuses by `created_at`, or, with `slot_by = "receipt"`, by the time
    /// their id carries (known once the probe has the codec).
    fn shape(&self) -> RecordShape {
        match self.settings.slot_rule {
            SlotRule::CreatedAt { .. } => RecordShape::Mastodon,
            // Before the probe no id can be read: every record is refused, never misplaced.
            SlotRule::Receipt => {
                RecordShape::MastodonReceipt(self.codec.get().copied().unwrap_or(IdCodec::Opaque))
            }
        }
    }

    /// The feed settings (Mastodon 4.5), then the newest statuses: the server
    /// answers, lets this caller read the timeline, its ids are read (or
    /// detected) and it pages by `max_id`.
    async fn probe(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        self.check_access(stats).await?;
        self.codec(stats).await.map(|_| ())
    }

    /// The engine is the id space the server answers in (`snowflake`:
    /// Mastodon, `ulid`: GoToSocial, `flake`: Pleroma/Akkoma, a Misskey
    /// scheme: a Misskey fork's layer, `opaque`), once known.
    fn provenance(&self) -> Provenance {
        let codec = self.settings.id_codec.or(self.codec.get().copied());
        Provenance {
            origin: "mastodon".into(),
            mode: format!("timeline:{}", self.settings.timeline.name()),
            endpoint: crate::redact::url_without_credentials(&self.url),
            engine: codec.map_or("unknown", IdCodec::name).into(),
            token: TokenClass::of(self.settings.token.as_deref()),
        }
    }

    fn returnable(&self, record: &str) -> bool {
        returnable(self.settings.timeline, self.settings.only_media, record)
    }

    /// A range's first page as a fill asks for it (its upper bound), or the newest page.
    async fn sample(
        &self,
        window: Option<(i64, i64)>,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, SourceError> {
        let query = match window {
            Some((start_ms, end_ms)) => {
                let codec = self.codec(stats).await?;
                let (max_id, _) = self.bounds(codec, start_ms, end_ms);
                self.query(max_id.as_deref(), PAGE_LIMIT)
            }
            None => self.query(None, 10),
        };
        let page = self
            .page(&query, stats)
            .await
            .map_err(CallFailure::into_error)?;
        Ok(page.statuses)
    }

    fn blind_advice(&self, to: BlindTo, answers_recent: Option<bool>) -> String {
        let timeline = self.settings.timeline.name();
        let env = &self.settings.token_env;
        match (to, answers_recent) {
            (BlindTo::All, Some(false)) => format!(
                "the {timeline} timeline answers nothing at all: the feed may be disabled for this \
                 caller (Mastodon 4.5 timelines_access) or need a signed-in user; set a token in \
                 {env} (the source's token_env) or try another timeline"
            ),
            _ => super::provenance::generic_advice(to, answers_recent),
        }
    }
}
