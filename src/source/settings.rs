//! What every origin's settings share: the command line's overrides, the
//! scope keys every kind reads (`host`, `filter`, `visibility`), the token,
//! the retry policy (their defaults are in [`crate::defaults`]).
//!
//! Each origin module owns the rest of its settings (its config as read, its
//! checks, its settings as used); [`super::open`] registers them.

use std::time::Duration;

use serde::Deserialize;

use super::http::RetryPolicy;
use super::misskey::Mode;
use super::{NoteFilter, Visibility, VisibilityPolicy};

/// Origin settings given on the command line (they override the config).
#[derive(Debug, Clone, Default)]
pub struct SourceFlags {
    pub mode: Option<Mode>,
    pub token: Option<String>,
    pub host: Option<String>,
    pub base_url: Option<String>,
    pub sleep: Option<f64>,
    pub retry: Option<u32>,
    pub retry_wait: Option<f64>,
    pub timeout: Option<f64>,
    pub rate_limit_wait_cap: Option<f64>,
    pub keep_non_japanese: bool,
    pub max_pages: Option<u32>,
}

/// The keys of `[datasets.X.source]` every kind reads: which notes are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// Only notes of this host ("." = local): sent where the endpoint has a
    /// parameter for it, and applied to the notes in every mode.
    pub host: Option<String>,
    pub filter: Option<TextFilter>,
    /// The visibilities a note may have to be written (default: public, home).
    pub visibility: Option<Vec<Visibility>>,
}

impl ScopeConfig {
    pub const KEYS: &[&str] = &["host", "filter", "visibility"];

    /// The settings that need no command line to be judged.
    pub fn check(&self) -> Result<(), String> {
        if self.visibility.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "source visibility lists nothing, so no note could be written; list some of {}",
                Visibility::accepted()
            ));
        }
        Ok(())
    }

    /// The client-side scope every note passes through, with the flags' overrides.
    pub fn filter(&self, flags: &SourceFlags) -> Result<NoteFilter, String> {
        let host = flags.host.clone().or_else(|| self.host.clone());
        if host.as_deref() == Some("") {
            return Err("host is empty; use \".\" for local notes or a host name".into());
        }
        Ok(NoteFilter {
            host,
            japanese: self.filter == Some(TextFilter::Japanese) && !flags.keep_non_japanese,
            visibility: match self.visibility.as_deref() {
                Some(listed) => VisibilityPolicy::of(listed),
                None => VisibilityPolicy::default(),
            },
        })
    }
}

/// `[datasets.X.source] filter`: which notes to keep by their text.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextFilter {
    #[default]
    None,
    /// Notes whose text has kana or kanji.
    Japanese,
}

/// `id_scheme`: detected from the origin's notes, or fixed. Misskey instances
/// use the Misskey schemes; Mastodon-API servers any
/// [`IdCodec`](crate::source::codec::IdCodec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum IdSchemeSetting {
    Auto,
    Fixed(crate::source::codec::IdCodec),
}

impl TryFrom<String> for IdSchemeSetting {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "auto" => Ok(IdSchemeSetting::Auto),
            other => other.parse().map(IdSchemeSetting::Fixed),
        }
    }
}

/// The base URL from the flags or the config.
/// The origin's base URL: `--base-url`, else the config's. A password in it
/// (`https://user:pass@host`, for a proxy's basic auth) is registered as a
/// secret; the URL shown anywhere is [`crate::redact::url_without_credentials`].
pub fn base_url(flags: &SourceFlags, configured: &Option<String>) -> Result<String, String> {
    let url = flags
        .base_url
        .clone()
        .or_else(|| configured.clone())
        .ok_or_else(|| "no source base_url configured".to_string())?;
    if let Ok(parsed) = reqwest::Url::parse(&url)
        && let Some(password) = parsed.password()
    {
        crate::redact::register_secret(password);
    }
    Ok(url)
}

pub fn seconds(v: Option<f64>, default: f64) -> Duration {
    Duration::from_secs_f64(v.unwrap_or(default).max(0.0))
}

/// The token from `--token` or the variable `token_env` names (registered as a
/// secret, so it never reaches a log or a message), and that variable's name.
pub fn token(
    token_env: Option<&str>,
    flags: &SourceFlags,
    default_env: &str,
) -> (Option<String>, String) {
    let token_env = token_env.unwrap_or(default_env);
    let token = flags
        .token
        .clone()
        .or_else(|| std::env::var(token_env).ok())
        .filter(|t| !t.is_empty());
    if let Some(token) = &token {
        crate::redact::register_secret(token);
    }
    (token, token_env.to_string())
}

/// Retries, backoff and the longest wait after a 429 that names none.
pub fn retry_policy(
    rate_limit_wait_cap: Option<f64>,
    flags: &SourceFlags,
) -> Result<RetryPolicy, String> {
    let cap = flags
        .rate_limit_wait_cap
        .or(rate_limit_wait_cap)
        .unwrap_or(crate::defaults::RATE_LIMIT_WAIT_CAP);
    if !(cap.is_finite() && cap >= 0.0) {
        return Err(format!(
            "rate_limit_wait_cap must be a number of seconds, 0 or more (got {cap})"
        ));
    }
    Ok(RetryPolicy {
        retries: flags.retry.unwrap_or(crate::defaults::RETRIES),
        retry_wait: seconds(flags.retry_wait, crate::defaults::RETRY_WAIT),
        rate_limit_wait_cap: Duration::from_secs_f64(cap),
        fail_fast: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_base_url_is_a_secret_and_never_shown() {
        let configured = Some("https://collector:pw-SECRET-31f0@m.example/".to_string());
        let url = base_url(&SourceFlags::default(), &configured).unwrap();
        assert_eq!(url, "https://collector:pw-SECRET-31f0@m.example/");
        let message = crate::redact::one_line(&format!("{url} did not answer"));
        assert!(!message.contains("pw-SECRET-31f0"), "{message}");
        assert_eq!(
            crate::redact::url_without_credentials(&url),
            "https://m.example"
        );
    }
}
