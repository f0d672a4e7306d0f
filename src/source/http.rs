//! What every HTTP origin shares: answers classified the same way, retries
//! with backoff, rate-limit waits shared through the pacer, and transport
//! failures named by their real cause.
//!
//! Every exchange goes through [`send`], which takes its turn from the
//! origin's [`Pacer`] and reports the answer's rate-limit headers
//! ([`Limits`]) back to it. A source turns one exchange into an [`Answer`];
//! [`call`] repeats it until it yields a page, a fatal error, or the retries
//! run out. A rate limit is not a failure: every fetcher waits (the pacer's
//! back-off) for as long as the origin said, or, when it said nothing, an
//! exponential backoff capped by `rate_limit_wait_cap`.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use serde_json::value::RawValue;

use super::pacer::Pacer;
use super::ratelimit::{Limits, MAX_WAIT};
use super::{Fetch, SourceError};

/// Consecutive rate-limit answers tolerated for one call before giving up on it.
const MAX_RATE_LIMIT_WAITS: u32 = 30;

/// One answer from the origin, classified; `T` is what a page holds.
pub enum Answer<T = Vec<Box<RawValue>>> {
    Page(T),
    /// 429; the wait the origin named, if it named one.
    RateLimited(Option<Duration>),
    Transient {
        code: String,
        message: String,
    },
    Fatal(SourceError),
}

/// Sends one request when the pacer allows, with the bearer token if there is
/// one, and tells the pacer what the answer's rate-limit headers say. A failed
/// exchange comes back as the transient answer that names its real cause
/// (connection refused, DNS, TLS, timeout) and the origin, secrets scrubbed.
pub async fn send<T>(
    pacer: &Pacer,
    request: reqwest::RequestBuilder,
    token: Option<&str>,
    base_url: &str,
    timeout: Duration,
) -> Result<reqwest::Response, Answer<T>> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let permit = pacer.acquire().await;
    let sent = request.send().await;
    if let Ok(response) = &sent {
        permit.observe(base_url, response.status(), &Limits::of(response.headers()));
    }
    drop(permit);
    sent.map_err(|e| {
        let (code, cause) = transport_cause(&e, timeout);
        let secrets: Vec<&str> = token.into_iter().collect();
        let detail = crate::redact::scrub(&crate::redact::one_line(&error_chain(&e)), &secrets);
        Answer::Transient {
            code: code.to_string(),
            message: format!("{cause} ({base_url} {detail})"),
        }
    })
}

/// Why a call gave up.
pub enum CallFailure {
    /// Retries (or rate-limit waits) ran out; `code` is for the catalog.
    Exhausted {
        code: String,
        message: String,
    },
    Fatal(SourceError),
}

impl CallFailure {
    /// For calls made before any slot (probes): an exhausted call means the
    /// origin cannot be reached.
    pub fn into_probe_error(self) -> SourceError {
        match self {
            CallFailure::Fatal(e) => e,
            CallFailure::Exhausted { message, .. } => unreachable_origin(&message),
        }
    }

    /// For calls outside a slot's fetch (calibration): a failure as an error.
    pub fn into_error(self) -> SourceError {
        match self {
            CallFailure::Fatal(e) => e,
            CallFailure::Exhausted { message, .. } => SourceError::Origin(message),
        }
    }
}

/// How a source retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub retries: u32,
    pub retry_wait: Duration,
    /// The longest backoff after a 429 that names no wait.
    pub rate_limit_wait_cap: Duration,
    /// Connection failures get one retry at most (the probe: see [`Self::for_probe`]).
    pub fail_fast: bool,
}

impl RetryPolicy {
    /// For the probe made before the first slot: an origin that cannot be
    /// connected to at all (refused, unresolvable, no TLS) is told at once,
    /// after one retry, not after the whole backoff. An origin that answers,
    /// even with a 502, gets every retry.
    pub fn for_probe(self) -> RetryPolicy {
        RetryPolicy {
            fail_fast: true,
            ..self
        }
    }

    /// The retries a failure with this code gets.
    fn retries_for(&self, code: &str) -> u32 {
        match code {
            "connect" | "dns" | "tls" if self.fail_fast => self.retries.min(1),
            _ => self.retries,
        }
    }

    /// Exponential backoff with full jitter on top of the base wait.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.retry_wait;
        let exponential =
            base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(10)));
        let jitter = rand::rng().random_range(0.0..=1.0) * base.as_secs_f64();
        (exponential + Duration::from_secs_f64(jitter)).min(MAX_WAIT)
    }
}

/// A call with retries: rate limits are waited out, transient failures backed off.
pub async fn call<T, F, Fut>(
    policy: &RetryPolicy,
    pacer: &Pacer,
    stats: &mut Fetch,
    mut once: F,
) -> Result<T, CallFailure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Answer<T>>,
{
    let (mut failures, mut rate_limits) = (0u32, 0u32);
    loop {
        stats.calls += 1;
        match once().await {
            Answer::Page(page) => return Ok(page),
            Answer::Fatal(e) => return Err(CallFailure::Fatal(e)),
            Answer::RateLimited(wait) => {
                rate_limits += 1;
                stats.rate_limited += 1;
                if rate_limits > MAX_RATE_LIMIT_WAITS {
                    return Err(CallFailure::Exhausted {
                        code: "rate_limited".into(),
                        message: format!("still rate limited after {MAX_RATE_LIMIT_WAITS} waits"),
                    });
                }
                let wait = match wait {
                    Some(told) => told.clamp(Duration::from_millis(500), MAX_WAIT),
                    // At least 0.5 s, unless the cap is set shorter.
                    None => policy
                        .backoff(rate_limits)
                        .max(Duration::from_millis(500))
                        .min(policy.rate_limit_wait_cap),
                };
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "origin rate limit: waiting"
                );
                crate::progress::origin_waits_until(std::time::Instant::now() + wait);
                stats.retries += 1;
                pacer.back_off(wait);
            }
            Answer::Transient { code, message } => {
                failures += 1;
                if failures > policy.retries_for(&code) {
                    let message = format!("{message}; gave up after {failures} tries");
                    return Err(CallFailure::Exhausted { code, message });
                }
                let wait = policy.backoff(failures);
                tracing::warn!(%code, %message, attempt = failures, wait_ms = wait.as_millis() as u64, "origin call failed; retrying");
                stats.retries += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Names the real cause of a failed exchange: connection refused, DNS, TLS, timeout.
pub fn transport_cause(e: &reqwest::Error, timeout: Duration) -> (&'static str, String) {
    let chain = error_chain(e).to_lowercase();
    if e.is_timeout() {
        return (
            "timeout",
            format!("no answer within {} s (--timeout)", timeout.as_secs_f64()),
        );
    }
    let cause = if chain.contains("connection refused") {
        ("connect", "connection refused")
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        ("dns", "the host name does not resolve (DNS)")
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        ("tls", "the TLS handshake failed")
    } else if e.is_connect() {
        ("connect", "cannot connect")
    } else {
        ("network", "the connection failed")
    };
    (cause.0, cause.1.to_string())
}

pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut current = e.source();
    while let Some(next) = current {
        parts.push(next.to_string());
        current = next.source();
    }
    parts.join(": ")
}

pub fn unreachable_origin(message: &str) -> SourceError {
    SourceError::Origin(format!("the origin did not answer: {message}"))
}

/// The HTTP client every origin uses.
pub fn client(timeout: Duration) -> Result<reqwest::Client, SourceError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("slotfill/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Refuses a base URL that is not http(s).
pub fn check_base_url(base: &str) -> Result<(), SourceError> {
    if base.starts_with("http://") || base.starts_with("https://") {
        Ok(())
    } else {
        Err(SourceError::Config(format!(
            "source base_url {base:?} must start with http:// or https://"
        )))
    }
}
