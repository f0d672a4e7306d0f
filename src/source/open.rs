//! Opening the dataset's origin source from its typed config and the command
//! line's overrides. The one place that knows each origin kind's settings and
//! their defaults: commands hand over the overrides and get a [`NoteSource`].
//!
//! Resolving is split in two so that a setting that cannot be honoured stops
//! the command before the catalog is opened or written: [`plan`] checks
//! everything that needs no network (mode or timeline, id scheme, base URL,
//! the scope settings against them) and [`build`] then connects what the plan
//! names. A new origin kind gets its arm here.
//!
//! Scope settings are never silently ignored. `host` is sent where the
//! endpoint has a parameter for it (`notes/search`'s `host`, `notes`'s
//! `local`) and is applied to the notes in every mode, so a timeline without
//! a host parameter still keeps only that host's notes. The visibility policy
//! has no endpoint parameter anywhere and is always applied to the notes.
//! A combination that would keep nothing is refused.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Dataset, IdSchemeSetting, S3Settings, SourceConfig, SourceKind, TextFilter};
use crate::error::{Error, Result};
use crate::source::codec::IdCodec;
use crate::source::http::RetryPolicy;
use crate::source::mastodon::{Mastodon, MastodonSettings, SlotBy, SlotRule, Timeline};
use crate::source::misskey::{Misskey, MisskeySettings, Mode};
use crate::source::{NoteFilter, NoteSource, SourceError, Visibility, VisibilityPolicy};
use crate::store;

/// The defaults of the origin settings, each in this one place.
pub mod defaults {
    /// Seconds between origin calls (`--sleep`).
    pub const SLEEP: f64 = 0.0;
    /// Retries of a failed call (`--retry`).
    pub const RETRIES: u32 = 5;
    /// Base seconds of the exponential backoff (`--retry-wait`).
    pub const RETRY_WAIT: f64 = 2.0;
    /// Seconds before a call times out (`--timeout`).
    pub const TIMEOUT: f64 = 60.0;
    /// Pages one slot may take before its fetch counts as partial (`--max-pages`).
    pub const MAX_PAGES: u32 = 2000;
    /// Seconds a rate-limit answer without a wait of its own backs off at most.
    pub const RATE_LIMIT_WAIT_CAP: f64 = 60.0;
    /// The Misskey mode.
    pub const MODE: crate::source::misskey::Mode = crate::source::misskey::Mode::Search;
    /// The variable the Misskey token is read from.
    pub const TOKEN_ENV: &str = "MISSKEY_TOKEN";
    /// The variable the Mastodon token is read from.
    pub const MASTODON_TOKEN_ENV: &str = "MASTODON_TOKEN";
    /// How a slot of a federated Mastodon timeline claims a status.
    pub const SLOT_BY: crate::source::mastodon::SlotBy = crate::source::mastodon::SlotBy::CreatedAt;
    /// How late a federated status may be delivered and still be found in its
    /// slot under `slot_by = "created_at"`: Mastodon retries a failed delivery
    /// after about 15 s, 30 s, 1 min, 1.5 min and 4.5 min, so 10 minutes
    /// covers five retries.
    pub const FEDERATION_LAG: &str = "10m";
}

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

/// A source whose settings have been checked, not yet connected.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    origin: Origin,
    /// The client-side scope every note passes through.
    pub filter: NoteFilter,
}

#[derive(Debug, Clone)]
enum Origin {
    Archive { location: String },
    Misskey(MisskeySettings),
    Mastodon(MastodonSettings),
}

/// Checks the dataset's source settings and the flags, without any I/O.
pub fn plan(ds: &Dataset, flags: &SourceFlags) -> Result<SourcePlan> {
    let config = &ds.source;
    let bad = |m: String| Error::Source(SourceError::Config(format!("dataset {}: {m}", ds.name)));
    let host = flags.host.clone().or_else(|| config.host.clone());
    if host.as_deref() == Some("") {
        return Err(bad(
            "host is empty; use \".\" for local notes or a host name".into(),
        ));
    }
    let filter = NoteFilter {
        host: host.clone(),
        japanese: config.filter == Some(TextFilter::Japanese) && !flags.keep_non_japanese,
        visibility: match config.visibility.as_deref() {
            Some(listed) => VisibilityPolicy::of(listed),
            None => VisibilityPolicy::default(),
        },
    };
    refuse_other_kinds_settings(config, flags).map_err(bad)?;
    let origin = match config.kind {
        SourceKind::Archive => {
            let location = config
                .location
                .as_deref()
                .ok_or_else(|| bad("source kind \"archive\" needs location".to_string()))?;
            let location = crate::config::normalize_location(location).map_err(bad)?;
            Origin::Archive { location }
        }
        SourceKind::Misskey => {
            let base_url = flags
                .base_url
                .clone()
                .or_else(|| config.base_url.clone())
                .ok_or_else(|| bad("no source base_url configured".to_string()))?;
            let mode = flags.mode.or(config.mode).unwrap_or(defaults::MODE);
            let id_scheme = match config.id_scheme {
                None | Some(IdSchemeSetting::Auto) => None,
                Some(IdSchemeSetting::Fixed(IdCodec::Prefixed(scheme))) => Some(scheme),
                Some(IdSchemeSetting::Fixed(other)) => {
                    return Err(bad(format!(
                        "id_scheme \"{other}\" is an id scheme of Mastodon-API servers; a misskey source uses \"auto\", aid, aidx, meid, meidg, ulid or objectid"
                    )));
                }
            };
            let (token, token_env) = token(config, flags, defaults::TOKEN_ENV);
            check_scope(mode, host.as_deref(), &filter.visibility, token.is_some()).map_err(bad)?;
            let policy = retry_policy(config, flags).map_err(bad)?;
            Origin::Misskey(MisskeySettings {
                base_url,
                mode,
                token,
                token_env,
                id_scheme,
                host,
                sleep: seconds(flags.sleep, defaults::SLEEP),
                policy,
                timeout: seconds(flags.timeout, defaults::TIMEOUT),
                max_pages: flags.max_pages.unwrap_or(defaults::MAX_PAGES),
            })
        }
        SourceKind::Mastodon => {
            let base_url = flags
                .base_url
                .clone()
                .or_else(|| config.base_url.clone())
                .ok_or_else(|| bad("no source base_url configured".to_string()))?;
            let timeline = config.timeline.ok_or_else(|| {
                bad(
                    "a mastodon source needs timeline = \"local\", \"public\" or \"remote\""
                        .to_string(),
                )
            })?;
            timeline
                .check_scope(host.as_deref(), &filter.visibility)
                .map_err(bad)?;
            let (token, token_env) = token(config, flags, defaults::MASTODON_TOKEN_ENV);
            let slot_rule = slot_rule(config, timeline).map_err(bad)?;
            let id_codec = match config.id_scheme {
                None | Some(IdSchemeSetting::Auto) => None,
                Some(IdSchemeSetting::Fixed(codec)) => Some(codec),
            };
            Origin::Mastodon(MastodonSettings {
                base_url,
                timeline,
                only_media: config.only_media.unwrap_or(false),
                token,
                token_env,
                sleep: seconds(flags.sleep, defaults::SLEEP),
                policy: retry_policy(config, flags).map_err(bad)?,
                timeout: seconds(flags.timeout, defaults::TIMEOUT),
                max_pages: flags.max_pages.unwrap_or(defaults::MAX_PAGES),
                id_codec,
                slot_rule,
            })
        }
    };
    Ok(SourcePlan { origin, filter })
}

/// How a slot claims a status: `local` is exact (its ids carry the creation
/// time); the federated timelines follow `slot_by` and `federation_lag`.
fn slot_rule(config: &SourceConfig, timeline: Timeline) -> std::result::Result<SlotRule, String> {
    if !timeline.federated() {
        if let Some(key) = [
            ("slot_by", config.slot_by.is_some()),
            ("federation_lag", config.federation_lag.is_some()),
        ]
        .iter()
        .find_map(|(key, set)| set.then_some(key))
        {
            return Err(format!(
                "timeline \"local\" holds only the server's own statuses, whose ids carry their creation time: \
                 {key} applies to the federated timelines (\"public\", \"remote\")"
            ));
        }
        return Ok(SlotRule::CreatedAt { lag_ms: 0 });
    }
    match config.slot_by.unwrap_or(defaults::SLOT_BY) {
        SlotBy::Receipt if config.federation_lag.is_some() => Err(
            "federation_lag widens slot_by = \"created_at\"; with slot_by = \"receipt\" the id's time decides and no lag applies".to_string(),
        ),
        SlotBy::Receipt => Ok(SlotRule::Receipt),
        SlotBy::CreatedAt => {
            let lag = config.federation_lag.as_deref().unwrap_or(defaults::FEDERATION_LAG);
            let lag = crate::config::parse_duration(lag).map_err(|e| format!("federation_lag: {e}"))?;
            Ok(SlotRule::CreatedAt { lag_ms: lag.num_milliseconds() })
        }
    }
}

fn seconds(v: Option<f64>, default: f64) -> Duration {
    Duration::from_secs_f64(v.unwrap_or(default).max(0.0))
}

/// The token from `--token` or the variable `token_env` names (registered as a
/// secret, so it never reaches a log or a message), and that variable's name.
fn token(
    config: &SourceConfig,
    flags: &SourceFlags,
    default_env: &str,
) -> (Option<String>, String) {
    let token_env = config.token_env.as_deref().unwrap_or(default_env);
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

fn retry_policy(
    config: &SourceConfig,
    flags: &SourceFlags,
) -> std::result::Result<RetryPolicy, String> {
    let cap = flags
        .rate_limit_wait_cap
        .or(config.rate_limit_wait_cap)
        .unwrap_or(defaults::RATE_LIMIT_WAIT_CAP);
    if !(cap.is_finite() && cap >= 0.0) {
        return Err(format!(
            "rate_limit_wait_cap must be a number of seconds, 0 or more (got {cap})"
        ));
    }
    Ok(RetryPolicy {
        retries: flags.retry.unwrap_or(defaults::RETRIES),
        retry_wait: seconds(flags.retry_wait, defaults::RETRY_WAIT),
        rate_limit_wait_cap: Duration::from_secs_f64(cap),
        fail_fast: false,
    })
}

/// A setting of another origin kind is a mistake (a copied config, a wrong
/// kind), never silently ignored.
fn refuse_other_kinds_settings(
    config: &SourceConfig,
    flags: &SourceFlags,
) -> std::result::Result<(), String> {
    let kind = config.kind.name();
    let misskey_only = [("mode", config.mode.is_some())];
    let mastodon_only = [
        ("timeline", config.timeline.is_some()),
        ("only_media", config.only_media.is_some()),
        ("slot_by", config.slot_by.is_some()),
        ("federation_lag", config.federation_lag.is_some()),
    ];
    let (foreign, owner, instead): (&[(&str, bool)], _, _) = match config.kind {
        SourceKind::Mastodon => (&misskey_only, "misskey", "timeline"),
        SourceKind::Misskey => (&mastodon_only, "mastodon", "mode"),
        SourceKind::Archive => return Ok(()),
    };
    if let Some((key, _)) = foreign.iter().find(|(_, set)| *set) {
        return Err(format!(
            "source key {key} is a {owner} setting; a {kind} source reads {instead}"
        ));
    }
    if config.kind == SourceKind::Mastodon && flags.mode.is_some() {
        return Err(
            "--mode chooses a Misskey endpoint; a mastodon source reads the timeline setting"
                .to_string(),
        );
    }
    Ok(())
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

/// Connects the planned source (an archive location is opened here).
pub async fn build(plan: &SourcePlan, s3: &S3Settings) -> Result<Arc<dyn NoteSource>> {
    match &plan.origin {
        Origin::Archive { location } => {
            let archive = store::open(location, s3).await?;
            Ok(Arc::new(crate::source::archive::Archive::new(archive)))
        }
        Origin::Misskey(settings) => Ok(Arc::new(Misskey::new(settings.clone())?)),
        Origin::Mastodon(settings) => Ok(Arc::new(Mastodon::new(settings.clone())?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_rules_by_timeline_and_their_defaults() {
        let config = |slot_by: Option<SlotBy>, lag: Option<&str>| SourceConfig {
            slot_by,
            federation_lag: lag.map(str::to_string),
            ..Default::default()
        };
        let ten_minutes = SlotRule::CreatedAt { lag_ms: 600_000 };
        assert_eq!(
            slot_rule(&config(None, None), Timeline::Public),
            Ok(ten_minutes)
        );
        assert_eq!(
            slot_rule(&config(None, Some("90s")), Timeline::Remote),
            Ok(SlotRule::CreatedAt { lag_ms: 90_000 })
        );
        let receipt = config(Some(SlotBy::Receipt), None);
        assert_eq!(slot_rule(&receipt, Timeline::Public), Ok(SlotRule::Receipt));
        assert_eq!(
            slot_rule(&config(None, None), Timeline::Local),
            Ok(SlotRule::CreatedAt { lag_ms: 0 })
        );
        let err = slot_rule(&receipt, Timeline::Local).unwrap_err();
        assert!(
            err.contains("slot_by applies to the federated timelines"),
            "{err}"
        );
        let err =
            slot_rule(&config(Some(SlotBy::Receipt), Some("5m")), Timeline::Public).unwrap_err();
        assert!(err.contains("no lag applies"), "{err}");
        let err = slot_rule(&config(None, Some("5 minutes")), Timeline::Public).unwrap_err();
        assert!(err.starts_with("federation_lag: "), "{err}");
    }

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
