//! A Misskey source's settings: `[datasets.X.source]` with `kind = "misskey"`
//! as read ([`MisskeyConfig`]), checked against the scope and the command
//! line ([`plan`]), and as the source uses them ([`MisskeySettings`]).

use std::time::Duration;

use serde::Deserialize;

use super::Mode;
use crate::defaults;
use crate::source::NoteFilter;
use crate::source::codec::IdCodec;
use crate::source::http::RetryPolicy;
use crate::source::ids::IdScheme;
use crate::source::settings::{self, IdSchemeSetting, SourceFlags};
use crate::source::{Visibility, VisibilityPolicy};

/// `[datasets.X.source]` of a Misskey dataset, as read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MisskeyConfig {
    pub base_url: Option<String>,
    /// "search" | "local-timeline" | "global-timeline" | "notes"
    pub mode: Option<Mode>,
    pub token_env: Option<String>,
    /// How the instance's ids encode time: detected ("auto") or fixed.
    pub id_scheme: Option<IdSchemeSetting>,
    /// Seconds a 429 without `Retry-After` or `resetMs` waits at most (default 60).
    pub rate_limit_wait_cap: Option<f64>,
}

impl MisskeyConfig {
    pub const KEYS: &[&str] = &[
        "base_url",
        "mode",
        "token_env",
        "id_scheme",
        "rate_limit_wait_cap",
    ];
}

/// Everything the Misskey source needs, resolved from config and flags.
#[derive(Debug, Clone)]
pub struct MisskeySettings {
    pub base_url: String,
    pub mode: Mode,
    pub token: Option<String>,
    /// The variable the token comes from, for messages.
    pub token_env: String,
    /// `None`: detect from the instance's newest notes (or the archive's).
    pub id_scheme: Option<IdScheme>,
    /// notes/search `host` filter ("." = local); `notes` maps "." to `local: true`.
    pub host: Option<String>,
    pub sleep: Duration,
    /// Retries, backoff, and the longest wait after a 429 that names none (a
    /// wait the origin names is honoured up to 15 minutes).
    pub policy: RetryPolicy,
    pub timeout: Duration,
    /// Pages one range may take before the fetch is declared incomplete.
    pub max_pages: u32,
}

/// Checks the settings against the scope and the flags, without any I/O.
pub fn plan(
    config: &MisskeyConfig,
    filter: &NoteFilter,
    flags: &SourceFlags,
) -> Result<MisskeySettings, String> {
    let base_url = settings::base_url(flags, &config.base_url)?;
    let mode = flags.mode.or(config.mode).unwrap_or_else(default_mode);
    let id_scheme = match config.id_scheme {
        None | Some(IdSchemeSetting::Auto) => None,
        Some(IdSchemeSetting::Fixed(IdCodec::Prefixed(scheme))) => Some(scheme),
        Some(IdSchemeSetting::Fixed(other)) => {
            return Err(format!(
                "id_scheme \"{other}\" is an id scheme of Mastodon-API servers; a misskey source uses \"auto\", aid, aidx, meid, meidg, ulid or objectid"
            ));
        }
    };
    let (token, token_env) = settings::token(
        config.token_env.as_deref(),
        flags,
        defaults::MISSKEY_TOKEN_ENV,
    );
    let host = filter.host.clone();
    check_scope(mode, host.as_deref(), &filter.visibility, token.is_some())?;
    Ok(MisskeySettings {
        base_url,
        mode,
        token,
        token_env,
        id_scheme,
        host,
        sleep: settings::seconds(flags.sleep, defaults::SLEEP),
        policy: settings::retry_policy(config.rate_limit_wait_cap, flags)?,
        timeout: settings::seconds(flags.timeout, defaults::TIMEOUT),
        max_pages: flags.max_pages.unwrap_or(defaults::MAX_PAGES),
    })
}

/// Refuses scope settings a Misskey mode can never satisfy: they would
/// silently write nothing, slot after slot.
fn check_scope(
    mode: Mode,
    host: Option<&str>,
    policy: &VisibilityPolicy,
    signed_in: bool,
) -> std::result::Result<(), String> {
    let mode_name = mode.name();
    if mode == Mode::LocalTimeline && host.is_some_and(|h| h != ".") {
        return Err(format!(
            "mode \"{mode_name}\" holds only local notes, so host = {:?} would keep none; \
             use host = \".\", or mode \"global-timeline\", \"notes\" or \"search\"",
            host.unwrap_or_default()
        ));
    }
    // What each endpoint can return at all (misskey-api.md §2.3–2.7).
    let returns: &[Visibility] = match mode {
        Mode::Search if signed_in => &Visibility::ALL,
        Mode::Search => &[Visibility::Public, Visibility::Home],
        _ => &[Visibility::Public],
    };
    if !returns.iter().any(|v| policy.allows(*v)) {
        let names: Vec<_> = returns.iter().map(|v| v.as_str()).collect();
        return Err(format!(
            "mode \"{mode_name}\" returns only {} notes here, and the source visibility allows none of them",
            names.join(" and ")
        ));
    }
    Ok(())
}

/// [`crate::defaults::MISSKEY_MODE`], as a mode.
fn default_mode() -> Mode {
    defaults::MISSKEY_MODE
        .parse()
        .expect("the default mode is one of the modes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_that_would_keep_nothing_is_refused() {
        let public = VisibilityPolicy::default();
        assert!(check_scope(Mode::GlobalTimeline, Some("."), &public, false).is_ok());
        assert!(check_scope(Mode::Notes, Some("mastodon.example"), &public, false).is_ok());
        assert!(check_scope(Mode::LocalTimeline, Some("."), &public, false).is_ok());
        let err =
            check_scope(Mode::LocalTimeline, Some("remote.example"), &public, false).unwrap_err();
        assert!(err.contains("only local notes"), "{err}");

        let followers = VisibilityPolicy::of(&[Visibility::Followers]);
        let err = check_scope(Mode::GlobalTimeline, None, &followers, true).unwrap_err();
        assert!(err.contains("only public notes"), "{err}");
        let err = check_scope(Mode::Search, None, &followers, false).unwrap_err();
        assert!(err.contains("public and home"), "{err}");
        // A signed-in search does return followers-only notes.
        assert!(check_scope(Mode::Search, None, &followers, true).is_ok());
        let home = VisibilityPolicy::of(&[Visibility::Home]);
        assert!(check_scope(Mode::Search, None, &home, false).is_ok());
    }
}
