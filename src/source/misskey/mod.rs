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
//! # When a range is done
//! Only on proof (misskey-api.md §9): an empty page, a note older than the
//! start, or, on a millisecond engine, a page that brings nothing new once the
//! boundary millisecond was read again. A short page proves nothing: those
//! engines ask for `limit` hits and *then* drop notes deleted since they were
//! indexed, suspended authors and blocked hosts (and, for a signed-in caller,
//! muted users), so a page can be short while more notes lie below it. On the
//! SQL engine a slot of n notes costs at most ceil(n/100) + 1 calls (the +1
//! is the empty page); on a millisecond engine ceil(n/100) + 2 (each page
//! after the first re-reads the boundary millisecond). Anything else (retries
//! or page budget exhausted) leaves the fetch incomplete.
//!
//! `scope` holds what each mode returns by design, for calibration, and the
//! advice given when the origin turns out blind.

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
use super::{BlindTo, Failure, Fetch, NoteSource, Provenance, RangeEnd, SourceError, TokenClass};
use crate::redact::scrub;

mod mode;
mod scope;
pub mod settings;

pub use mode::Mode;
pub use settings::{MisskeyConfig, MisskeySettings};

pub const PAGE_LIMIT: usize = 100;

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
        self.settings.policy
    }

    /// A call with retries: rate limits are waited out, transient failures backed off.
    async fn call(
        &self,
        body: &Value,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, CallFailure> {
        http::call(&self.policy(), &self.pacer, stats, || self.call_once(body)).await
    }

    /// The instance's id scheme: configured, learned from the archive, or
    /// detected from the instance's newest notes.
    async fn scheme(&self, stats: &mut Fetch) -> Result<IdScheme, SourceError> {
        if let Some(scheme) = self.settings.id_scheme {
            return Ok(scheme);
        }
        // Concurrent slots wait for the first detection instead of each detecting.
        let scheme = self
            .scheme
            .get_or_try_init(|| async {
                let (policy, body) = (self.policy().for_probe(), self.body(None, None, 10));
                let page = http::call(&policy, &self.pacer, stats, || self.call_once(&body))
                    .await
                    .map_err(CallFailure::into_probe_error)?;
                let ids: Vec<String> = page.iter().filter_map(|raw| note_id(raw)).collect();
                if ids.is_empty() {
                    return Err(SourceError::Config(self.nothing_to_detect_from()));
                }
                let scheme = IdScheme::detect(ids.iter().map(String::as_str)).ok_or_else(|| {
                    SourceError::Config(format!(
                        "cannot detect the instance's id scheme: {} of its notes match no known scheme; set id_scheme in the source config",
                        ids.len()
                    ))
                })?;
                tracing::info!(%scheme, "detected the id scheme");
                Ok(scheme)
            })
            .await?;
        Ok(*scheme)
    }

    /// Why the id scheme is unknown when the origin sent no note to learn it from.
    fn nothing_to_detect_from(&self) -> String {
        format!(
            "{} returned no notes at all, not even its newest, so its id scheme cannot be detected; \
             the endpoint may be empty or hidden for this caller, or served from a cache without \
             database fallback; set id_scheme in the source config, or try another mode",
            self.settings.mode.endpoint()
        )
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
                // More than two: a thinning engine may drop some of the hits it returns.
                let probe = self.call(&self.body(Some(&since), None, 20), stats).await;
                let ids: Vec<String> = match &probe {
                    Ok(page) => page.iter().filter_map(|r| note_id(r)).collect(),
                    Err(_) => Vec::new(),
                };
                let compare = match ids.as_slice() {
                    [first, second, ..] if first < second => BoundCompare::Exact,
                    [_, _, ..] => BoundCompare::Millisecond,
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
        let learned = self.scheme(&mut stats).await;
        let Some(scheme) = stats.id_scheme(learned)? else {
            return Ok(stats);
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
                stats.ended(RangeEnd::EmptyPage);
                return Ok(stats);
            }
            let seen_before = sink.distinct_seen();
            let mut oldest: Option<(String, i64)> = None;
            for raw in &page {
                let Ok(note) = sink.offer(raw) else {
                    let bad = Failure::BadRecord("a note without an id or createdAt".into());
                    stats.failure = Some(bad);
                    return Ok(stats);
                };
                if oldest
                    .as_ref()
                    .is_none_or(|(o, _)| note.id.as_ref() < o.as_str())
                {
                    oldest = Some((note.id.into_owned(), note.created_ms));
                }
            }
            let (oldest_id, oldest_ms) = oldest.expect("page is not empty");
            if oldest_ms < start_ms {
                stats.ended(RangeEnd::OlderRecord);
                return Ok(stats);
            }
            // A short page is no proof: the engine may have thinned it after the limit.
            let nothing_new = sink.distinct_seen() == seen_before;
            until = match compare {
                BoundCompare::Exact => oldest_id,
                BoundCompare::Millisecond if nothing_new && page.len() < PAGE_LIMIT => {
                    stats.ended(RangeEnd::NoNewRecord);
                    return Ok(stats);
                }
                // Stuck on one millisecond holding a page or more: step below it.
                BoundCompare::Millisecond if nothing_new => scheme.min_id_at(oldest_ms),
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
        format!(
            "misskey:{}",
            crate::redact::url_without_credentials(&self.url)
        )
    }

    async fn fetch(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        self.fetch_range(start_ms, end_ms, sink).await
    }

    /// The pages of n notes plus the empty page that proves the end (and, on
    /// a millisecond engine, the boundary re-read).
    fn estimated_calls(&self, notes: u64) -> u64 {
        let extra = if self.compare.get() == Some(&BoundCompare::Millisecond) {
            2
        } else {
            1
        };
        notes.div_ceil(PAGE_LIMIT as u64) + extra
    }

    fn call_interval(&self) -> Duration {
        self.settings.sleep
    }

    /// Detecting the id scheme is the probe when it is not configured; otherwise
    /// one page of the newest note. An origin that answers but holds no note
    /// passes: the archive can still teach the id scheme, and calibration then
    /// tells whether the origin is blind.
    async fn probe(&self, stats: &mut Fetch) -> Result<(), SourceError> {
        if self.settings.id_scheme.is_none() {
            return match self.scheme(stats).await {
                Err(SourceError::Config(m)) if m == self.nothing_to_detect_from() => {
                    tracing::info!("{m}; the archive may teach it");
                    Ok(())
                }
                other => other.map(|_| ()),
            };
        }
        let (policy, body) = (self.policy().for_probe(), self.body(None, None, 1));
        http::call(&policy, &self.pacer, stats, || self.call_once(&body))
            .await
            .map(|_| ())
            .map_err(CallFailure::into_probe_error)
    }

    fn provenance(&self) -> Provenance {
        let engine = match (self.settings.mode, self.compare.get()) {
            (Mode::Search, Some(BoundCompare::Exact)) => "sql",
            (Mode::Search, Some(BoundCompare::Millisecond)) => "millisecond",
            (Mode::Search, None) => "unknown",
            (Mode::LocalTimeline, _) => "fanout-timeline",
            (Mode::GlobalTimeline, _) => "timeline",
            (Mode::Notes, _) => "sql",
        };
        Provenance {
            origin: "misskey".into(),
            mode: self.settings.mode.name().into(),
            endpoint: crate::redact::url_without_credentials(&self.url),
            engine: engine.into(),
            token: TokenClass::of(self.settings.token.as_deref()),
        }
    }

    fn returnable(&self, record: &str) -> bool {
        scope::returnable(self.settings.mode, record)
    }

    async fn sample(
        &self,
        window: Option<(i64, i64)>,
        stats: &mut Fetch,
    ) -> Result<Vec<Box<RawValue>>, SourceError> {
        let body = match window {
            Some((start_ms, end_ms)) => {
                let (since, until) = self.scheme(stats).await?.bounds(start_ms, end_ms);
                self.body(Some(&since), Some(&until), PAGE_LIMIT)
            }
            None => self.body(None, None, 10),
        };
        self.call(&body, stats)
            .await
            .map_err(CallFailure::into_error)
    }

    fn learn_ids(&self, ids: &[String]) {
        if self.settings.id_scheme.is_some() || self.scheme.get().is_some() {
            return;
        }
        if let Some(scheme) = IdScheme::detect(ids.iter().map(String::as_str)) {
            tracing::info!(%scheme, "learned the id scheme from the archive");
            let _ = self.scheme.set(scheme);
        }
    }

    fn blind_advice(&self, to: BlindTo, answers_recent: Option<bool>) -> String {
        scope::advice(&self.settings, to, answers_recent)
    }
}
