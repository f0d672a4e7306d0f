//! One exchange with a Mastodon-API server, classified: a page of statuses
//! (with the `max_id` its `Link` header names for the next page), a JSON
//! object (instance facts), a throttle, a refusal no retry will fix, or a
//! transient failure.
//!
//! The servers answer errors as `{"error": "…"}`; Sharkey's Mastodon layer
//! answers most errors as 401, GoToSocial a request without a `User-Agent`
//! as 418 (every request here has one).

use reqwest::StatusCode;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Mastodon;
use crate::redact::scrub;
use crate::source::SourceError;
use crate::source::http::{self, Answer, error_chain};
use crate::source::ratelimit::Limits;

/// One page of a timeline.
pub(super) struct Page {
    pub(super) statuses: Vec<Box<RawValue>>,
    /// The `max_id` of the `Link` header's `rel="next"`: where the server
    /// says the next page starts. GoToSocial names the last status it read,
    /// even one it then filtered out (and on an empty page).
    pub(super) next_max_id: Option<String>,
}

/// Mastodon's error body: `{"error": "…"}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
}

/// A query as `key=value&…`, values percent-encoded (opaque ids may hold anything).
pub(super) fn encode(query: &[(&'static str, String)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            let v = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
            format!("{k}={v}")
        })
        .collect();
    pairs.join("&")
}

impl Mastodon {
    /// One exchange with `url` (a path under the base URL plus its query).
    async fn exchange(
        &self,
        url: &str,
    ) -> Result<(StatusCode, Limits, Vec<u8>, Option<String>), Answer<()>> {
        let token = self.settings.token.as_deref();
        let (base_url, timeout) = (&self.settings.base_url, self.settings.timeout);
        let request = self.http.get(url);
        let response = http::send(&self.pacer, request, token, base_url, timeout).await?;
        let status = response.status();
        let limits = Limits::of(response.headers());
        let link = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match response.bytes().await {
            Ok(bytes) => Ok((status, limits, bytes.to_vec(), link)),
            Err(e) => Err(Answer::Transient {
                code: "truncated".into(),
                message: format!("HTTP {status}: body cut off: {}", error_chain(&e)),
            }),
        }
    }

    /// One page of the timeline for `query`.
    pub(super) async fn page_once(&self, query: &[(&'static str, String)]) -> Answer<Page> {
        let url = format!("{}?{}", self.url, encode(query));
        let (status, limits, bytes, link) = match self.exchange(&url).await {
            Ok(exchanged) => exchanged,
            Err(answer) => return relabel(answer),
        };
        if status == StatusCode::OK {
            return match serde_json::from_slice::<Vec<Box<RawValue>>>(&bytes) {
                Ok(statuses) => Answer::Page(Page {
                    statuses,
                    next_max_id: link.as_deref().and_then(next_max_id),
                }),
                Err(_) => transient(
                    "bad_json",
                    format!(
                        "HTTP 200 with a body that is not a JSON array ({} bytes)",
                        bytes.len()
                    ),
                ),
            };
        }
        self.failure(status, &limits, &bytes)
    }

    /// A JSON object at `path` (instance facts): `None` when the server has
    /// no such endpoint or refuses it (older servers, other software).
    pub(super) async fn object_once(&self, path: &str) -> Answer<Option<Value>> {
        let url = format!("{}/{path}", self.base);
        let (status, limits, bytes, _) = match self.exchange(&url).await {
            Ok(exchanged) => exchanged,
            Err(answer) => return relabel(answer),
        };
        if status == StatusCode::OK {
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => Answer::Page(Some(value)),
                Err(_) => transient(
                    "bad_json",
                    format!(
                        "HTTP 200 from {path} with a body that is not JSON ({} bytes)",
                        bytes.len()
                    ),
                ),
            };
        }
        match self.failure::<Option<Value>>(status, &limits, &bytes) {
            Answer::Fatal(_) => Answer::Page(None),
            other => other,
        }
    }

    /// A non-200 answer, classified.
    fn failure<T>(&self, status: StatusCode, limits: &Limits, bytes: &[u8]) -> Answer<T> {
        if let Some(wait) = limits.throttle(status, bytes) {
            return Answer::RateLimited(wait);
        }
        let error = serde_json::from_slice::<ErrorBody>(bytes).ok();
        match error {
            Some(e) if status.is_client_error() => Answer::Fatal(self.refusal(status, &e.error)),
            // Without an error body: a wrong base_url (404), or an odd refusal.
            // An HTML 403 is left to retry: CDNs answer challenges that way.
            None if matches!(status.as_u16(), 401 | 404 | 418 | 422) => {
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
    pub(super) fn refusal(&self, status: StatusCode, message: &str) -> SourceError {
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
}

fn transient<T>(code: &str, message: String) -> Answer<T> {
    Answer::Transient {
        code: code.to_string(),
        message,
    }
}

/// An exchange that failed before its answer was read, as an answer of any page type.
fn relabel<T>(answer: Answer<()>) -> Answer<T> {
    match answer {
        Answer::Page(()) => unreachable!("an exchange never fails with a page"),
        Answer::RateLimited(wait) => Answer::RateLimited(wait),
        Answer::Transient { code, message } => Answer::Transient { code, message },
        Answer::Fatal(e) => Answer::Fatal(e),
    }
}

/// The `max_id` of a `Link` header's `rel="next"` URL (the host it names is
/// the server's configured one, not necessarily the address called).
pub(super) fn next_max_id(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        let query = url.split_once('?')?.1;
        let value = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("max_id="))
            .filter(|v| next && !v.is_empty())?;
        percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_links_max_id() {
        let gts = "<https://gts.example/api/v1/timelines/public?limit=40&max_id=01K1GJ7T40ABCDEFGHJKMNPQRS&local=true>; rel=\"next\", \
                   <https://gts.example/api/v1/timelines/public?limit=40&min_id=01K1GJ7T40ABCDEFGHJKMNPQRT&local=true>; rel=\"prev\"";
        assert_eq!(
            next_max_id(gts).as_deref(),
            Some("01K1GJ7T40ABCDEFGHJKMNPQRS")
        );
        let prev_only = "<https://m.example/api/v1/timelines/public?min_id=5>; rel=\"prev\"";
        assert_eq!(next_max_id(prev_only), None);
        assert_eq!(
            next_max_id("<https://m.example/x?max_id=a%2Bb>; rel=\"next\"").as_deref(),
            Some("a+b")
        );
        assert_eq!(next_max_id("garbage"), None);
        assert_eq!(
            encode(&[("max_id", "a+b/c".into()), ("limit", "40".into())]),
            "max_id=a%2Bb%2Fc&limit=40"
        );
    }
}
