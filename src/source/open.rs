//! The origins, registered in one place: `[datasets.X.source]` read by its
//! `kind`, checked, and connected.
//!
//! Each origin module owns its config as read, its checks ([`plan`] calls
//! them before the catalog is opened, so a setting that cannot be honoured
//! records nothing) and its construction ([`build`]). Adding an origin is a
//! module in `src/source/` implementing [`NoteSource`] with its settings
//! (see `misskey/settings.rs`), one variant of [`OriginConfig`] and its arm in
//! the three matches below, and its emulator in `tests/support/`.
//!
//! Scope settings (`host`, `filter`, `visibility`) are read for every kind
//! and never silently ignored. `host` is sent where the endpoint has a
//! parameter for it and applied to the notes in every mode; the visibility
//! policy is always applied to the notes. A combination that would keep
//! nothing is refused by the origin's checks.

use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use super::archive::{Archive, ArchiveConfig};
use super::mastodon::{Mastodon, MastodonConfig, MastodonSettings};
use super::misskey::{Misskey, MisskeyConfig, MisskeySettings};
use super::settings::ScopeConfig;
pub use super::settings::SourceFlags;
use super::{NoteFilter, NoteSource, SourceError};
use crate::store::{self, S3Settings};

/// `[datasets.X.source]`: the origin (by `kind`, `"misskey"` when absent) and
/// the scope every kind reads.
#[derive(Debug, Clone, Default)]
pub struct SourceConfig {
    pub origin: OriginConfig,
    pub scope: ScopeConfig,
}

/// The origin a dataset is filled from, as configured.
#[derive(Debug, Clone)]
pub enum OriginConfig {
    Misskey(MisskeyConfig),
    /// Any Mastodon-API server's public timelines.
    Mastodon(MastodonConfig),
    /// JSON Lines files at another location.
    Archive(ArchiveConfig),
}

impl OriginConfig {
    /// The dataset's own cap on one rate-limit wait, where its origin has one.
    pub fn rate_limit_wait_cap(&self) -> Option<f64> {
        match self {
            OriginConfig::Misskey(c) => c.rate_limit_wait_cap,
            OriginConfig::Mastodon(c) => c.rate_limit_wait_cap,
            OriginConfig::Archive(_) => None,
        }
    }
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig::Misskey(MisskeyConfig::default())
    }
}

/// Each kind's name and keys, for reading and for naming a key of another kind.
const KINDS: [(&str, &[&str]); 3] = [
    ("misskey", MisskeyConfig::KEYS),
    ("mastodon", MastodonConfig::KEYS),
    ("archive", ArchiveConfig::KEYS),
];

impl OriginConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            OriginConfig::Misskey(_) => "misskey",
            OriginConfig::Mastodon(_) => "mastodon",
            OriginConfig::Archive(_) => "archive",
        }
    }

    /// Reads the origin's keys of `table` as the config of `kind`.
    fn read(kind: &str, table: toml::Table) -> Result<OriginConfig, String> {
        let Some((_, keys)) = KINDS.iter().find(|(name, _)| *name == kind) else {
            let names: Vec<_> = KINDS.iter().map(|(name, _)| *name).collect();
            return Err(format!(
                "unknown source kind {kind:?} ({})",
                names.join(", ")
            ));
        };
        refuse_other_kinds_keys(kind, keys, &table)?;
        let read = |e: toml::de::Error| e.message().to_string();
        Ok(match kind {
            "misskey" => OriginConfig::Misskey(table.try_into().map_err(read)?),
            "mastodon" => OriginConfig::Mastodon(table.try_into().map_err(read)?),
            _ => OriginConfig::Archive(table.try_into().map_err(read)?),
        })
    }
}

/// A key of another kind is a mistake (a copied config, a wrong kind), named
/// as such rather than as an unknown key.
fn refuse_other_kinds_keys(kind: &str, own: &[&str], table: &toml::Table) -> Result<(), String> {
    for key in table.keys().filter(|k| !own.contains(&k.as_str())) {
        if let Some((owner, _)) = KINDS.iter().find(|(_, keys)| keys.contains(&key.as_str())) {
            return Err(format!(
                "source key {key} is a {owner} setting; a {kind} source reads {}",
                own.join(", ")
            ));
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for SourceConfig {
    /// Reads the table whole, then by its `kind`; errors name the table's line.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(deserializer)?;
        let mut scope = toml::Table::new();
        for key in ScopeConfig::KEYS {
            if let Some(value) = table.remove(*key) {
                scope.insert(key.to_string(), value);
            }
        }
        let scope: ScopeConfig = scope
            .try_into()
            .map_err(|e: toml::de::Error| D::Error::custom(e.message()))?;
        scope.check().map_err(D::Error::custom)?;
        let kind = match table.remove("kind") {
            None => crate::defaults::SOURCE_KIND.to_string(),
            Some(toml::Value::String(kind)) => kind,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "source kind must be a string, not {}",
                    other.type_str()
                )));
            }
        };
        let origin = OriginConfig::read(&kind, table).map_err(D::Error::custom)?;
        Ok(SourceConfig { origin, scope })
    }
}

/// A source whose settings have been checked, not yet connected.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    origin: Planned,
    /// The client-side scope every note passes through.
    pub filter: NoteFilter,
}

#[derive(Debug, Clone)]
enum Planned {
    Misskey(MisskeySettings),
    Mastodon(MastodonSettings),
    Archive { location: String },
}

/// Checks dataset `name`'s source settings and the flags, without any I/O.
pub fn plan(
    name: &str,
    config: &SourceConfig,
    flags: &SourceFlags,
) -> Result<SourcePlan, SourceError> {
    let bad = |m: String| SourceError::Config(format!("dataset {name}: {m}"));
    let filter = config.scope.filter(flags).map_err(bad)?;
    let origin = match &config.origin {
        OriginConfig::Misskey(c) => {
            Planned::Misskey(super::misskey::settings::plan(c, &filter, flags).map_err(bad)?)
        }
        OriginConfig::Mastodon(c) => {
            Planned::Mastodon(super::mastodon::settings::plan(c, &filter, flags).map_err(bad)?)
        }
        OriginConfig::Archive(c) => Planned::Archive {
            location: c.plan(flags).map_err(bad)?,
        },
    };
    Ok(SourcePlan { origin, filter })
}

/// Connects the planned source (an archive location is opened here).
pub async fn build(plan: &SourcePlan, s3: &S3Settings) -> Result<Arc<dyn NoteSource>, SourceError> {
    Ok(match &plan.origin {
        Planned::Misskey(settings) => Arc::new(Misskey::new(settings.clone())?),
        Planned::Mastodon(settings) => Arc::new(Mastodon::new(settings.clone())?),
        Planned::Archive { location } => {
            let store =
                store::open(location, s3)
                    .await
                    .map_err(|e| match e.is_configuration() {
                        true => SourceError::Config(e.to_string()),
                        false => SourceError::Origin(e.to_string()),
                    })?;
            Arc::new(Archive::new(store))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<SourceConfig, String> {
        toml::from_str::<SourceConfig>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn the_kind_chooses_the_keys_and_misskey_is_the_default() {
        let config =
            read("base_url = \"https://m.example\"\nmode = \"notes\"\nhost = \".\"").unwrap();
        assert_eq!(config.origin.kind(), "misskey");
        assert_eq!(config.scope.host.as_deref(), Some("."));
        let config = read("kind = \"mastodon\"\nbase_url = \"u\"\ntimeline = \"local\"").unwrap();
        assert_eq!(config.origin.kind(), "mastodon");
        let err = read("kind = \"misskey\"\ntimeline = \"local\"").unwrap_err();
        assert!(
            err.contains("timeline is a mastodon setting; a misskey source reads base_url, mode"),
            "{err}"
        );
        let err = read("kind = \"mastodon\"\nmode = \"search\"").unwrap_err();
        assert!(err.contains("mode is a misskey setting"), "{err}");
        let err = read("kind = \"nostr\"").unwrap_err();
        assert!(
            err.contains("unknown source kind \"nostr\" (misskey, mastodon, archive)"),
            "{err}"
        );
        let err = read("kind = \"misskey\"\nbase_urll = \"u\"").unwrap_err();
        assert!(err.contains("unknown field `base_urll`"), "{err}");
        let err = read("visibility = []").unwrap_err();
        assert!(err.contains("lists nothing"), "{err}");
    }
}
