//! The Mastodon API as a note source (misskey-api.md §7): a timeline of
//! `GET /api/v1/timelines/public`, read newest first.
//!
//! Status ids are snowflakes, `(ms << 16) | tail`, sent as strings, so a
//! range `[start, end)` becomes id bounds built from time. Remote statuses
//! with a past `published` date are back-dated with a random millisecond
//! within their second, so both bounds are widened by a second and the
//! status's own `created_at` decides (the sink keeps `start ≤ created_at <
//! end`). Pages go down by `max_id` (the oldest id seen, exclusive) with no
//! lower bound sent, until a page holds a status whose id is below the
//! widened start: that proves every status of the range was seen, whatever
//! page size the server allows (40 on Mastodon). An empty page proves it too.
//!
//! Rate limits: every answer carries `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset`; when nothing remains, every fetcher waits for the
//! reset before the next call, so the 429 never comes. When it comes anyway
//! (concurrent calls), its `X-RateLimit-Reset` is waited out.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::value::RawValue;

use super::http::{self, Answer, CallFailure, RetryPolicy, error_chain};
use super::pacer::Pacer;
use super::record::RecordShape;
use super::sink::NoteSink;
use super::{
    Failure, Fetch, NoteSource, Provenance, RangeEnd, SourceError, TokenClass, Visibility,
    VisibilityPolicy,
};
use crate::redact::scrub;

/// Mastodon's cap: `2 × DEFAULT_STATUSES_LIMIT`.
pub const PAGE_LIMIT: usize = 40;
/// How far a back-dated status's id may be from its `created_at`.
const BACKDATE_MS: i64 = 1000;
pub const ENDPOINT: &str = "api/v1/timelines/public";

/// Which public timeline a dataset mirrors; spelled `local`, `public` or
/// `remote` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Timeline {
    /// `local=true`: statuses of the server's own accounts.
    Local,
    /// Everything the server knows: local and federated.
    Public,
    /// `remote=true`: federated statuses only.
    Remote,
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

    fn param(self) -> Option<(&'static str, &'static str)> {
        match self {
            Timeline::Local => Some(("local", "true")),
            Timeline::Public => None,
            Timeline::Remote => Some(("remote", "true")),
        }
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

/// Everything the Mastodon source needs, resolved from config and flags.
#[derive(Debug, Clone)]
pub struct MastodonSettings {
    pub base_url: String,
    pub timeline: Timeline,
    pub only_media: bool,
    pub token: Option<String>,
    /// The variable the token comes from, for messages.
    pub token_env: String,
    pub sleep: Duration,
    pub policy: RetryPolicy,
    pub timeout: Duration,
    /// Pages one range may take before the fetch is declared incomplete.
    pub max_pages: u32,
}

pub struct Mastodon {
    http: reqwest::Client,
    settings: MastodonSettings,
    url: String,
    pacer: Arc<Pacer>,
}

/// Mastodon's error body: `{"error": "…"}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
}

impl Mastodon {
    pub fn new(settings: MastodonSettings) -> Result<Mastodon, SourceError> {
        let base = settings.base_url.trim_end_matches('/');
        http::check_base_url(base)?;
        Ok(Mastodon {
            http: http::client(settings.timeout)?,
            url: format!("{base}/{ENDPOINT}"),
            pacer: Arc::new(Pacer::new(settings.sleep)),
            settings,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.settings.token.as_deref().into_iter().collect()
    }

    /// The query of one page: the timeline, `only_media`, `limit`, and `max_id`.
    fn query(&self, max_id: Option<u64>, limit: usize) -> Vec<(&'static str, String)> {
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

    /// One HTTP exchange, classified; a spent rate limit holds every fetcher
    /// back until its reset before this answer is returned.
    async fn call_once(&self, query: &[(&'static str, String)]) -> Answer {
        self.pacer.wait_turn().await;
        // Every value is a number or `true`: nothing to escape.
        let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("{}?{}", self.url, pairs.join("&"));
        let transient = |code: &str, message: String| Answer::Transient {
            code: code.to_string(),
            message,
        };
        let token = self.settings.token.as_deref();
        let (base_url, timeout) = (&self.settings.base_url, self.settings.timeout);
        let response = match http::send(self.http.get(&url), token, base_url, timeout).await {
            Ok(response) => response,
            Err(answer) => return answer,
        };
        let status = response.status();
        let limits = RateLimit::of(response.headers());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return transient(
                    "truncated",
                    format!("HTTP {status}: body cut off: {}", error_chain(&e)),
                );
            }
        };
        if status == StatusCode::OK {
            let page = match serde_json::from_slice::<Vec<Box<RawValue>>>(&bytes) {
                Ok(page) => page,
                Err(_) => {
                    return transient(
                        "bad_json",
                        format!(
                            "HTTP 200 with a body that is not a JSON array ({} bytes)",
                            bytes.len()
                        ),
                    );
                }
            };
            if limits.remaining == Some(0)
                && let Some(wait) = limits.reset_wait.filter(|w| !w.is_zero())
            {
                let wait = wait.min(http::MAX_WAIT);
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "origin rate limit spent: waiting for its reset"
                );
                crate::progress::origin_waits_until(std::time::Instant::now() + wait);
                self.pacer.back_off(wait).await;
            }
            return Answer::Page(page);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Answer::RateLimited(limits.reset_wait.or(limits.retry_after));
        }
        let error = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        match error {
            Some(e) if status.is_client_error() => Answer::Fatal(self.refusal(status, &e.error)),
            // Without Mastodon's body: a wrong base_url (404), or an odd refusal.
            // An HTML 403 is left to retry: CDNs answer challenges that way.
            None if matches!(status.as_u16(), 401 | 404 | 422) => {
                Answer::Fatal(self.refusal(status, "no Mastodon error body"))
            }
            Some(e) => transient(
                &format!("http_{}", status.as_u16()),
                format!("HTTP {status}: {}", e.error),
            ),
            None => transient(
                &format!("http_{}", status.as_u16()),
                format!("HTTP {status} with a non-JSON body"),
            ),
        }
    }

    /// A refusal no retry will fix, as one line naming the setting to change.
    fn refusal(&self, status: StatusCode, message: &str) -> SourceError {
        let code = status.as_u16();
        let timeline = self.settings.timeline.name();
        let env = &self.settings.token_env;
        let signed_in = self.settings.token.is_some();
        let text = match code {
            401 | 422 if !signed_in => format!(
                "the Mastodon server requires a signed-in user for the {timeline} timeline ({code}: {message}); \
                 set a user access token in {env} (the source's token_env) or pass --token"
            ),
            401 => format!(
                "the Mastodon server rejected the access token ({code}: {message}); check the token in {env} (the source's token_env) or --token"
            ),
            403 => format!(
                "the Mastodon server refuses the {timeline} timeline to this caller ({code}: {message}); \
                 try another timeline, or a token in {env} (the source's token_env)"
            ),
            404 => format!(
                "{} answered 404 ({message}): no Mastodon API there; check the source's base_url",
                self.settings.base_url
            ),
            _ => format!("the Mastodon server refused the request ({code}: {message})"),
        };
        SourceError::Config(scrub(&text, &self.secrets()))
    }

    async fn call(
        &self,
        query: &[(&'static str, String)],
        stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, CallFailure> {
        http::call(&self.settings.policy, &self.pacer, stats, || {
            self.call_once(query)
        })
        .await
    }

    async fn fetch_range(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        let mut stats = Fetch::default();
        // Ids below this one belong to statuses created before the start, even back-dated ones.
        let past_start = snowflake(start_ms - BACKDATE_MS);
        let mut max_id = snowflake(end_ms + BACKDATE_MS);
        for _ in 0..self.settings.max_pages {
            let query = self.query(Some(max_id), PAGE_LIMIT);
            let page = match self.call(&query, &mut stats).await {
                Ok(page) => page,
                Err(CallFailure::Fatal(e)) => return Err(e),
                Err(CallFailure::Exhausted { code, message }) => {
                    tracing::warn!(%code, %message, "giving up on this range for now");
                    stats.failure = Some(Failure::Origin { code, message });
                    return Ok(stats);
                }
            };
            let Some(oldest) = self.absorb(&page, sink) else {
                stats.failure = Some(Failure::BadRecord("a status without a numeric id".into()));
                return Ok(stats);
            };
            match oldest {
                None => {
                    stats.ended(RangeEnd::EmptyPage);
                    return Ok(stats);
                }
                Some(oldest) if oldest < past_start => {
                    stats.ended(RangeEnd::OlderRecord);
                    return Ok(stats);
                }
                Some(oldest) => max_id = oldest,
            }
        }
        stats.failure = Some(Failure::PageBudget {
            pages: self.settings.max_pages,
        });
        Ok(stats)
    }

    /// Offers a page to the sink; returns its oldest id (None for an empty
    /// page), or None when a status cannot be read.
    fn absorb(&self, page: &[Box<RawValue>], sink: &mut NoteSink) -> Option<Option<u64>> {
        let mut oldest: Option<u64> = None;
        for raw in page {
            let id = status_id(raw)?;
            sink.push(raw).ok()?;
            oldest = Some(oldest.map_or(id, |o| o.min(id)));
        }
        Some(oldest)
    }
}

/// The smallest snowflake id of a millisecond.
pub fn snowflake(ms: i64) -> u64 {
    (ms.max(0) as u64) << 16
}

fn status_id(raw: &RawValue) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let head: Head = serde_json::from_str(raw.get()).ok()?;
    head.id.parse().ok()
}

/// The rate-limit headers of one answer.
struct RateLimit {
    remaining: Option<u64>,
    /// Until `X-RateLimit-Reset` (ISO 8601), from now.
    reset_wait: Option<Duration>,
    retry_after: Option<Duration>,
}

impl RateLimit {
    fn of(headers: &reqwest::header::HeaderMap) -> RateLimit {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let reset_wait = text("x-ratelimit-reset")
            .and_then(|v| chrono::DateTime::parse_from_rfc3339(v.trim()).ok())
            .map(|reset| {
                let ms = reset.timestamp_millis() - crate::clock::now().timestamp_millis();
                Duration::from_millis(ms.max(0) as u64)
            });
        RateLimit {
            remaining: text("x-ratelimit-remaining").and_then(|v| v.trim().parse().ok()),
            reset_wait,
            retry_after: text("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }
    }
}

#[async_trait]
impl NoteSource for Mastodon {
    fn describe(&self) -> String {
        let query: Vec<String> = self
            .query(None, PAGE_LIMIT)
            .into_iter()
            .filter(|(key, _)| *key != "limit")
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        match query.is_empty() {
            true => format!("mastodon:{}", self.url),
            false => format!("mastodon:{}?{}", self.url, query.join("&")),
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

    fn estimated_calls(&self, notes: u64) -> u64 {
        notes / PAGE_LIMIT as u64 + 1
    }

    fn call_interval(&self) -> Duration {
        self.settings.sleep
    }

    fn shape(&self) -> RecordShape {
        RecordShape::Mastodon
    }

    fn provenance(&self) -> Provenance {
        Provenance {
            origin: "mastodon".into(),
            mode: format!("timeline:{}", self.settings.timeline.name()),
            endpoint: self.url.clone(),
            engine: "mastodon".into(),
            token: TokenClass::of(self.settings.token.as_deref()),
        }
    }

    async fn sample(
        &self,
        window: Option<(i64, i64)>,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        let query = match window {
            Some((_, end_ms)) => self.query(Some(snowflake(end_ms + BACKDATE_MS)), PAGE_LIMIT),
            None => self.query(None, 10),
        };
        self.call(&query, stats)
            .await
            .map_err(CallFailure::into_error)
    }

    /// The newest status of the timeline: proves the server answers and lets
    /// this caller read the timeline.
    async fn probe(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        self.call(&self.query(None, 1), stats)
            .await
            .map(|_| ())
            .map_err(CallFailure::into_probe_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_bounds_check_out() {
        // misskey-api.md §7: T0 = 2025-07-31T15:40Z.
        let t0 = 1_753_976_400_000;
        assert_eq!(snowflake(t0) - 1, 114_948_597_350_399_999);
        assert_eq!(snowflake(t0 + 600_000), 114_948_636_672_000_000);
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
