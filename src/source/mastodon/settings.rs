//! A Mastodon-API source's settings: `[datasets.X.source]` with `kind =
//! "mastodon"` as read ([`MastodonConfig`]), checked against the scope and
//! the command line ([`plan`]), and as the source uses them
//! ([`MastodonSettings`]).

use std::time::Duration;

use serde::Deserialize;

use super::timeline::{SlotBy, SlotRule, Timeline};
use crate::defaults;
use crate::source::NoteFilter;
use crate::source::codec::IdCodec;
use crate::source::http::RetryPolicy;
use crate::source::settings::{self, IdSchemeSetting, SourceFlags};

/// `[datasets.X.source]` of a Mastodon-API dataset, as read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MastodonConfig {
    pub base_url: Option<String>,
    /// "local" | "public" | "remote" (required)
    pub timeline: Option<Timeline>,
    /// Only statuses with media attachments (`only_media`).
    pub only_media: Option<bool>,
    pub token_env: Option<String>,
    /// How the server's ids encode time: detected ("auto") or fixed.
    pub id_scheme: Option<IdSchemeSetting>,
    /// Federated timelines: how a slot claims a status, "created_at" (the
    /// default) or "receipt" (the time its id carries).
    pub slot_by: Option<SlotBy>,
    /// `slot_by = "created_at"` on a federated timeline: how late a status may
    /// be delivered and still be found in its slot (a duration).
    pub federation_lag: Option<String>,
    /// Seconds a 429 without a reset time waits at most (default 60).
    pub rate_limit_wait_cap: Option<f64>,
}

impl MastodonConfig {
    pub const KEYS: &[&str] = &[
        "base_url",
        "timeline",
        "only_media",
        "token_env",
        "id_scheme",
        "slot_by",
        "federation_lag",
        "rate_limit_wait_cap",
    ];
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
    /// `None`: detected from the statuses the probe reads (`id_scheme = "auto"`).
    pub id_codec: Option<IdCodec>,
    /// How a slot claims a status; the local timeline's ids carry their
    /// creation time, so it is `CreatedAt` with no lag there.
    pub slot_rule: SlotRule,
}

/// Checks the settings against the scope and the flags, without any I/O.
pub fn plan(
    config: &MastodonConfig,
    filter: &NoteFilter,
    flags: &SourceFlags,
) -> Result<MastodonSettings, String> {
    if flags.mode.is_some() {
        return Err(
            "--mode chooses a Misskey endpoint; a mastodon source reads the timeline setting"
                .to_string(),
        );
    }
    let base_url = settings::base_url(flags, &config.base_url)?;
    let timeline = config.timeline.ok_or_else(|| {
        "a mastodon source needs timeline = \"local\", \"public\" or \"remote\"".to_string()
    })?;
    timeline.check_scope(filter.host.as_deref(), &filter.visibility)?;
    let (token, token_env) = settings::token(
        config.token_env.as_deref(),
        flags,
        defaults::MASTODON_TOKEN_ENV,
    );
    let id_codec = match config.id_scheme {
        None | Some(IdSchemeSetting::Auto) => None,
        Some(IdSchemeSetting::Fixed(codec)) => Some(codec),
    };
    Ok(MastodonSettings {
        base_url,
        timeline,
        only_media: config.only_media.unwrap_or(false),
        token,
        token_env,
        sleep: settings::seconds(flags.sleep, defaults::SLEEP),
        policy: settings::retry_policy(config.rate_limit_wait_cap, flags)?,
        timeout: settings::seconds(flags.timeout, defaults::TIMEOUT),
        max_pages: flags.max_pages.unwrap_or(defaults::MAX_PAGES),
        id_codec,
        slot_rule: slot_rule(config, timeline)?,
    })
}

/// How a slot claims a status: `local` is exact (its ids carry the creation
/// time); the federated timelines follow `slot_by` and `federation_lag`.
fn slot_rule(config: &MastodonConfig, timeline: Timeline) -> Result<SlotRule, String> {
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
    match config.slot_by.unwrap_or_else(default_slot_by) {
        SlotBy::Receipt if config.federation_lag.is_some() => Err(
            "federation_lag widens slot_by = \"created_at\"; with slot_by = \"receipt\" the id's time decides and no lag applies".to_string(),
        ),
        SlotBy::Receipt => Ok(SlotRule::Receipt),
        SlotBy::CreatedAt => {
            let lag = config.federation_lag.as_deref().unwrap_or(defaults::FEDERATION_LAG);
            let lag = crate::text::parse_duration(lag).map_err(|e| format!("federation_lag: {e}"))?;
            Ok(SlotRule::CreatedAt { lag_ms: lag.num_milliseconds() })
        }
    }
}

/// [`crate::defaults::SLOT_BY`], as a rule.
fn default_slot_by() -> SlotBy {
    SlotBy::deserialize(
        serde::de::value::StrDeserializer::<serde::de::value::Error>::new(defaults::SLOT_BY),
    )
    .expect("the default slot rule is one of the rules")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_rules_by_timeline_and_their_defaults() {
        let config = |slot_by: Option<SlotBy>, lag: Option<&str>| MastodonConfig {
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
}
