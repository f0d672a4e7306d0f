//! The Misskey API as a note source (see misskey-api.md for the facts used here).
//!
//! A range `[start, end)` becomes exclusive id bounds built from time, and is
//! paged newest-first with both bounds always sent (a lone `sinceId` flips
//! the order to oldest-first). The next page's `untilId` is the oldest id
//! seen. Search engines that compare bounds by millisecond (Meilisearch,
//! OpenSearch) would drop notes sharing that millisecond, so for them the
//! bound re-includes it and duplicates are dropped by id; which kind of
//! engine answers is probed once per run.
//!
//! A fetch is complete when a page is empty or short, or when a note older
//! than the start appears. Everything else (retries or page budget exhausted)
//! leaves it incomplete.
//!
//! A short page ends the range on both kinds of engine: each page asks for
//! every note of `(sinceId, untilId)`, newest first, at most `limit` of them,
//! so fewer than `limit` means the range below holds no more. On a
//! millisecond engine the page after a full one re-includes the boundary
//! millisecond and so repeats the notes already seen there; the proof still
//! holds, and asking again (once with the boundary re-included, once strictly
//! below it) only cost two calls per slot that bring nothing. A slot of n
//! notes in distinct milliseconds costs at most ceil(n/100) + 1 calls either
//! way. (Misskey's search thins the engine's hits afterwards: notes deleted
//! since they were indexed, authors of blocked hosts. A page thinned below
//! `limit` ends the range early, as an empty page thinned to nothing always
//! did.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::http::{self, Answer, CallFailure, RetryPolicy, error_chain};
use super::ids::IdScheme;
use super::pacer::Pacer;
use super::ratelimit::Limits;
use super::sink::{NoteSink, parse_created_at};
use super::{Failure, Fetch, NoteSource, SourceError};
use crate::redact::scrub;

mod mode;

pub use mode::Mode;

pub const PAGE_LIMIT: usize = 100;

/// Everything the Misskey source needs, resolved from config and flags.
#[derive(Debug, Clone)]
pub struct MisskeySettings {
    pub base_url: String,
    pub mode: Mode,
    pub token: Option<String>,
    /// `None`: detect from the instance's newest notes.
    pub id_scheme: Option<IdScheme>,
    /// notes/search `host` filter ("." = local); `notes` maps "." to `local: true`.
    pub host: Option<String>,
    pub sleep: Duration,
    pub retries: u32,
    pub retry_wait: Duration,
    pub timeout: Duration,
    /// The longest backoff after a 429 that names no wait (no `Retry-After`, no
    /// `info.resetMs`); a wait the origin names is honoured up to 15 minutes.
    pub rate_limit_wait_cap: Duration,
    /// Pages one range may take before the fetch is declared incomplete.
    pub max_pages: u32,
}

/// How the origin compares id bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BoundCompare {
    /// As strings (SQL providers, all timelines): `untilId = oldest seen` is exact.
    Exact,
    /// By millisecond (Meilisearch, OpenSearch): re-include the boundary millisecond.
    Millisecond,
}

pub struct Misskey {
    http: reqwest::Client,
    settings: MisskeySettings,
    url: String,
    pacer: Arc<Pacer>,
    scheme: OnceCell<IdScheme>,
    compare: OnceCell<BoundCompare>,
}

#[derive(serde::Deserialize)]
struct MisskeyErrorBody {
    error: MisskeyError,
}

#[derive(serde::Deserialize)]
struct MisskeyError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl Misskey {
    pub fn new(settings: MisskeySettings) -> Result<Misskey, SourceError> {
        let base = settings.base_url.trim_end_matches('/');
        http::check_base_url(base)?;
        let http = http::client(settings.timeout)?;
        Ok(Misskey {
            url: format!("{base}/api/{}", settings.mode.endpoint()),
            pacer: Arc::new(Pacer::new(settings.sleep)),
            http,
            settings,
            scheme: OnceCell::new(),
            compare: OnceCell::new(),
        })
    }

    fn secrets(&self) -> Vec<&str> {
        self.settings.token.as_deref().into_iter().collect()
    }

    /// The request body for one page between two bounds.
    fn body(&self, since: Option<&str>, until: Option<&str>, limit: usize) -> Value {
        let mut body = json!({ "limit": limit });
        let object = body.as_object_mut().expect("object");
        if let Some(since) = since {
            object.insert("sinceId".into(), json!(since));
        }
        if let Some(until) = until {
            object.insert("untilId".into(), json!(until));
        }
        match self.settings.mode {
            Mode::Search => {
                object.insert("query".into(), json!(""));
                if let Some(host) = &self.settings.host {
                    object.insert("host".into(), json!(host));
                }
            }
            Mode::LocalTimeline => {
                object.insert("allowPartial".into(), json!(false));
                object.insert("withRenotes".into(), json!(true));
                object.insert("withReplies".into(), json!(true));
            }
            Mode::GlobalTimeline => {
                object.insert("withRenotes".into(), json!(true));
            }
            Mode::Notes => {
                if self.settings.host.as_deref() == Some(".") {
                    object.insert("local".into(), json!(true));
                }
            }
        }
        body
    }

    /// One HTTP exchange, classified.
    async fn call_once(&self, body: &Value) -> Answer {
        let transient = |code: &str, message: String| Answer::Transient {
            code: code.to_string(),
            message,
        };
        let request = self.http.post(&self.url).json(body);
        let token = self.settings.token.as_deref();
        let (base_url, timeout) = (&self.settings.base_url, self.settings.timeout);
        let response = match http::send(&self.pacer, request, token, base_url, timeout).await {
            Ok(response) => response,
            Err(answer) => return answer,
        };
        let status = response.status();
        let limits = Limits::of(response.headers());
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
            return match serde_json::from_slice::<Vec<Box<RawValue>>>(&bytes) {
                Ok(page) => Answer::Page(page),
                Err(_) => transient(
                    "bad_json",
                    format!(
                        "HTTP 200 with a body that is not a JSON array ({} bytes)",
                        bytes.len()
                    ),
                ),
            };
        }
        if let Some(wait) = limits.throttle(status, &bytes) {
            return Answer::RateLimited(wait);
        }
        let error = serde_json::from_slice::<MisskeyErrorBody>(&bytes)
            .ok()
            .map(|b| b.error);
        match error {
            Some(e) if status.is_client_error() => Answer::Fatal(self.client_error(status, &e)),
            Some(e) => transient(
                &e.code.to_lowercase(),
                format!("HTTP {status} {}: {}", e.code, e.message),
            ),
            None if status == StatusCode::NOT_FOUND => Answer::Fatal(SourceError::Config(format!(
                "{} answered 404: this server has no {} endpoint (is base_url a Misskey instance?)",
                self.settings.base_url,
                self.settings.mode.endpoint()
            ))),
            None => transient(
                &format!("http_{}", status.as_u16()),
                format!("HTTP {status} with a non-JSON body"),
            ),
        }
    }

    /// A Misskey error that no retry will fix.
    fn client_error(&self, status: StatusCode, e: &MisskeyError) -> SourceError {
        let text = match e.code.as_str() {
            "AUTHENTICATION_FAILED" => format!(
                "the origin rejected the API token ({} {}); check the token (--token or the variable named by token_env)",
                status.as_u16(),
                e.code
            ),
            "CREDENTIAL_REQUIRED" => format!(
                "{} needs an API token ({} {}); set MISSKEY_TOKEN or --token",
                self.settings.mode.endpoint(),
                status.as_u16(),
                e.code
            ),
            // The origin answers the same whether search is off for everyone or
            // only for this caller's role (misskey-api.md §2.7): name both.
            "UNAVAILABLE" if self.settings.mode == Mode::Search => format!(
                "notes/search was refused ({} UNAVAILABLE): search is disabled on this instance, \
                 or {} role is not allowed to search (canSearchNotes); use mode = \"local-timeline\", \
                 \"global-timeline\" or \"notes\" (--mode){}",
                status.as_u16(),
                if self.settings.token.is_some() {
                    "this token's"
                } else {
                    "an anonymous caller's"
                },
                if self.settings.token.is_some() {
                    ""
                } else {
                    ", or a token whose role may search"
                }
            ),
            "LTL_DISABLED" | "GTL_DISABLED" => format!(
                "{} is disabled on this instance ({} {}); try another --mode",
                self.settings.mode.endpoint(),
                status.as_u16(),
                e.code
            ),
            _ => format!(
                "the origin refused the request: {} {}: {}",
                status.as_u16(),
                e.code,
                e.message
            ),
        };
        SourceError::Config(scrub(&text, &self.secrets()))
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.settings.retries,
            retry_wait: self.settings.retry_wait,
            rate_limit_wait_cap: self.settings.rate_limit_wait_cap,
        }
    }

    /// A call with retries: rate limits are waited out, transient failures backed off.
    async fn call(
        &self,
        body: &Value,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, CallFailure> {
        http::call(&self.policy(), &self.pacer, stats, || self.call_once(body)).await
    }

    /// The instance's id scheme: configured, or detected from its newest notes.
    async fn scheme(&self, stats: &mut Fetch) -> Result<IdScheme, SourceError> {
        if let Some(scheme) = self.settings.id_scheme {
            return Ok(scheme);
        }
        // Concurrent slots wait for the first detection instead of each detecting.
        let scheme = self
            .scheme
            .get_or_try_init(|| async {
                let page = self
                    .call(&self.body(None, None, 10), stats)
                    .await
                    .map_err(CallFailure::into_probe_error)?;
                let ids: Vec<String> = page.iter().filter_map(|raw| note_id(raw)).collect();
                let scheme = IdScheme::detect(ids.iter().map(String::as_str)).ok_or_else(|| {
                    SourceError::Config(format!(
                        "cannot detect the instance's id scheme from {}; set id_scheme in the source config",
                        crate::report::format::plural(ids.len() as u64, "sample note")
                    ))
                })?;
                tracing::info!(%scheme, "detected the id scheme");
                Ok(scheme)
            })
            .await?;
        Ok(*scheme)
    }

    /// Probes (once) whether the search engine compares bounds by millisecond:
    /// such engines sort newest-first even for a lone `sinceId`.
    async fn compare(&self, scheme: IdScheme, start_ms: i64, stats: &mut Fetch) -> BoundCompare {
        if self.settings.mode != Mode::Search {
            return BoundCompare::Exact;
        }
        let probed = self
            .compare
            .get_or_try_init(|| async {
                let since = scheme.max_id_at(start_ms - 1);
                let probe = self.call(&self.body(Some(&since), None, 2), stats).await;
                let ids: Vec<String> = match &probe {
                    Ok(page) => page.iter().filter_map(|r| note_id(r)).collect(),
                    Err(_) => Vec::new(),
                };
                let compare = match ids.as_slice() {
                    [first, second] if first < second => BoundCompare::Exact,
                    [_, _] => BoundCompare::Millisecond,
                    // Too few notes to tell: probe again on a later range.
                    _ => return Err(()),
                };
                tracing::info!(?compare, "probed how the search engine compares id bounds");
                Ok(compare)
            })
            .await;
        // Undecided: re-including the boundary millisecond is always safe.
        probed.copied().unwrap_or(BoundCompare::Millisecond)
    }

    async fn fetch_range(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        let mut stats = Fetch::default();
        let scheme = match self.scheme(&mut stats).await {
            Ok(scheme) => scheme,
            Err(SourceError::Origin(message)) => {
                tracing::warn!(%message, "giving up on this range for now");
                stats.failure = Some(Failure::IdScheme(message));
                return Ok(stats);
            }
            Err(e) => return Err(e),
        };
        let compare = self.compare(scheme, start_ms, &mut stats).await;
        let (since, mut until) = scheme.bounds(start_ms, end_ms);
        for _ in 0..self.settings.max_pages {
            let body = self.body(Some(&since), Some(&until), PAGE_LIMIT);
            let page = match self.call(&body, &mut stats).await {
                Ok(page) => page,
                Err(CallFailure::Fatal(e)) => return Err(e),
                Err(CallFailure::Exhausted { code, message }) => {
                    tracing::warn!(%code, %message, "giving up on this range for now");
                    stats.failure = Some(Failure::Origin { code, message });
                    return Ok(stats);
                }
            };
            if page.is_empty() {
                stats.complete = true;
                return Ok(stats);
            }
            let seen_before = sink.distinct_seen();
            let mut oldest: Option<(String, i64)> = None;
            for raw in &page {
                let bad = || Failure::BadRecord("a note without an id or createdAt".into());
                let Some((id, created_ms)) = note_head(raw) else {
                    stats.failure = Some(bad());
                    return Ok(stats);
                };
                if sink.push(raw).is_err() {
                    stats.failure = Some(bad());
                    return Ok(stats);
                }
                if oldest.as_ref().is_none_or(|(o, _)| id < *o) {
                    oldest = Some((id, created_ms));
                }
            }
            let (oldest_id, oldest_ms) = oldest.expect("page is not empty");
            let short = page.len() < PAGE_LIMIT;
            if oldest_ms < start_ms || short {
                stats.complete = true;
                return Ok(stats);
            }
            until = match compare {
                BoundCompare::Exact => oldest_id,
                // Stuck on one millisecond holding more than a page: step below it.
                BoundCompare::Millisecond if sink.distinct_seen() == seen_before => {
                    scheme.min_id_at(oldest_ms)
                }
                BoundCompare::Millisecond => scheme.min_id_at(oldest_ms + scheme.resolution_ms()),
            };
        }
        stats.failure = Some(Failure::PageBudget {
            pages: self.settings.max_pages,
        });
        Ok(stats)
    }
}

fn note_head(raw: &RawValue) -> Option<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Head {
        id: String,
        #[serde(rename = "createdAt")]
        created_at: String,
    }
    let head: Head = serde_json::from_str(raw.get()).ok()?;
    Some((head.id, parse_created_at(&head.created_at)?))
}

fn note_id(raw: &RawValue) -> Option<String> {
    note_head(raw).map(|(id, _)| id)
}

#[async_trait]
impl NoteSource for Misskey {
    fn describe(&self) -> String {
        format!("misskey:{}", self.url)
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

    /// Detecting the id scheme is the probe when it is not configured; otherwise
    /// one page of the newest note.
    async fn probe(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        if self.settings.id_scheme.is_none() {
            return self.scheme(stats).await.map(|_| ());
        }
        self.call(&self.body(None, None, 1), stats)
            .await
            .map(|_| ())
            .map_err(CallFailure::into_probe_error)
    }
}
