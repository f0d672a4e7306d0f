//! The configuration file (`slotfill.toml`) and the command-line overrides.
//!
//! A file names the catalog, optional S3 settings and any number of datasets.
//! Unknown keys are errors, so a typo never silently falls back to a default.
//! [`Config::dataset`] resolves one dataset into checked, ready-to-use parts.

pub mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::slot::{SlotError, SlotSpec};

pub use crate::source::open::SourceConfig;
use crate::store::overlaps;
pub use crate::store::{S3Settings, normalize_location};
pub use crate::text::{format_duration, parse_duration};

pub const DEFAULT_KEY_TEMPLATE: &str = crate::defaults::KEY_TEMPLATE;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(
        "config file {0} not found (pass --config PATH, or run `slotfill demo` for an example)"
    )]
    NotFound(PathBuf),
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown dataset {name:?} (configured: {known})")]
    UnknownDataset { name: String, known: String },
    #[error("dataset {dataset}: {source}")]
    Slot { dataset: String, source: SlotError },
    #[error("dataset {dataset}: {message}")]
    Invalid { dataset: String, message: String },
    /// `[serve]`, `[[serve.schedule]]` or a freshness watch (see [`serve`]).
    #[error("{0}")]
    Serve(String),
}

/// Validity rules for collector-written locations.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// size <= min_bytes → too_small (decided from the listing, no download)
    pub min_bytes: u64,
    /// lines <= min_lines → too_few_lines
    pub min_lines: u64,
    /// lines >= max_lines → too_many_lines (counting stops here)
    pub max_lines: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_bytes: 102_400,
            min_lines: 100,
            max_lines: 10_000,
        }
    }
}

fn default_slot_minutes() -> u32 {
    crate::defaults::SLOT_MINUTES
}
fn default_offset() -> String {
    crate::defaults::UTC_OFFSET.to_string()
}
fn default_template() -> String {
    DEFAULT_KEY_TEMPLATE.to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    #[serde(default = "default_slot_minutes")]
    pub slot_minutes: u32,
    #[serde(default = "default_offset")]
    pub utc_offset: String,
    #[serde(default = "default_template")]
    pub key_template: String,
    pub primary: Option<String>,
    #[serde(default)]
    pub backup: OneOrMany,
    pub complement: Option<String>,
    #[serde(default)]
    pub rules: Rules,
    #[serde(default)]
    pub source: SourceConfig,
    pub notify_webhook: Option<String>,
    /// How long after a slot's end it is still `pending` (the collector may still be
    /// writing it): never fetched, never a gap. A duration such as "5m".
    pub settle_delay: Option<String>,
    /// How long a slot confirmed empty at the origin waits before it is fetched again
    /// (late federation can fill a past slot). A duration such as "7d".
    pub empty_recheck_after: Option<String>,
    /// Count confirmed-empty slots as gaps (verify and run exit 3), as `--empty-is-gap`.
    #[serde(default)]
    pub empty_is_gap: bool,
    /// The freshness watch of `slotfill serve` (checked by [`serve`]).
    pub freshness: Option<serve::FreshnessConfig>,
    /// Count every object of every location, as `--all-locations`; by default an
    /// object is downloaded only when no earlier location holds a valid object for
    /// its slot.
    #[serde(default)]
    pub all_locations: bool,
    /// The least share of the archived notes the origin must return when it is
    /// calibrated against the archive (0 < r ≤ 1); below it the day is not
    /// filled and the run fails. Unset: any recall above zero is filled and recorded.
    pub min_recall: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    catalog: Option<String>,
    notify_webhook: Option<String>,
    #[serde(default)]
    s3: S3Settings,
    #[serde(default)]
    datasets: BTreeMap<String, DatasetConfig>,
    #[serde(default)]
    serve: serve::ServeConfig,
}

/// A loaded configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub catalog: PathBuf,
    pub notify_webhook: Option<String>,
    pub s3: S3Settings,
    pub datasets: BTreeMap<String, DatasetConfig>,
    /// `[serve]`, for `slotfill serve` (checked by [`serve`]).
    pub serve: serve::ServeConfig,
}

/// Command-line overrides of a dataset's settings.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub primary: Option<String>,
    pub backup: Option<Vec<String>>,
    pub complement: Option<String>,
    pub slot_minutes: Option<u32>,
    /// `--empty-is-gap`: confirmed-empty slots count as gaps.
    pub empty_is_gap: bool,
    /// `--all-locations`: scans count every object of every location.
    pub all_locations: bool,
}

/// Where a location sits in the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Primary,
    Backup,
    Complement,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Complement => "complement",
        }
    }

    pub fn is_collector(self) -> bool {
        self != Role::Complement
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Role::Primary, Role::Backup, Role::Complement]
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// A dataset with its settings checked.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub spec: SlotSpec,
    /// Primary first, then backups in order, then the complement.
    pub locations: Vec<(Role, String)>,
    pub rules: Rules,
    pub source: SourceConfig,
    pub notify_webhook: Option<String>,
    /// See [`DatasetConfig::settle_delay`].
    pub settle_delay: chrono::Duration,
    /// See [`DatasetConfig::empty_recheck_after`].
    pub empty_recheck_after: chrono::Duration,
    pub empty_is_gap: bool,
    /// See [`DatasetConfig::all_locations`].
    pub all_locations: bool,
    /// See [`DatasetConfig::min_recall`].
    pub min_recall: Option<f64>,
}

impl Dataset {
    /// The slot states that count as gaps: the gap states, with `empty` when
    /// the dataset counts confirmed-empty slots as gaps.
    pub fn gap_states(&self) -> Vec<crate::state::State> {
        let mut states = crate::state::State::GAPS.to_vec();
        if self.empty_is_gap {
            states.push(crate::state::State::Empty);
        }
        states
    }

    /// The last slot start that has ended plus the settle delay at `now`: later
    /// slots are pending.
    pub fn settle_delay_text(&self) -> String {
        format_duration(self.settle_delay)
    }

    pub fn last_settled_slot(&self, now: chrono::DateTime<chrono::Utc>) -> crate::slot::SlotStart {
        let settled = now - self.settle_delay;
        self.spec.align_down(settled.timestamp()) - self.spec.width_secs()
    }

    pub fn complement(&self) -> Option<&str> {
        self.locations
            .iter()
            .find(|(role, _)| *role == Role::Complement)
            .map(|(_, url)| url.as_str())
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound(path.to_path_buf()));
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::from_toml(path, &text)
    }

    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            // The message alone does not say where: name the line.
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            ConfigError::Parse {
                path: path.to_path_buf(),
                message: match line {
                    Some(line) => format!("line {line}: {}", one_line(e.message())),
                    None => one_line(e.message()),
                },
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let catalog = resolve(base, file.catalog.as_deref().unwrap_or("slotfill.db"));
        Ok(Config {
            path: path.to_path_buf(),
            catalog,
            notify_webhook: file.notify_webhook,
            s3: file.s3,
            datasets: file.datasets,
            serve: file.serve,
        })
    }

    pub fn dataset(&self, name: &str, overrides: &Overrides) -> Result<Dataset, ConfigError> {
        let raw = self
            .datasets
            .get(name)
            .ok_or_else(|| ConfigError::UnknownDataset {
                name: name.to_string(),
                known: if self.datasets.is_empty() {
                    "none".to_string()
                } else {
                    self.datasets.keys().cloned().collect::<Vec<_>>().join(", ")
                },
            })?;
        let invalid = |message: String| ConfigError::Invalid {
            dataset: name.to_string(),
            message,
        };
        let minutes = overrides.slot_minutes.unwrap_or(raw.slot_minutes);
        let spec =
            SlotSpec::new(minutes, &raw.utc_offset, &raw.key_template).map_err(|source| {
                ConfigError::Slot {
                    dataset: name.to_string(),
                    source,
                }
            })?;
        let primary = overrides
            .primary
            .clone()
            .or_else(|| raw.primary.clone())
            .ok_or_else(|| invalid("no primary location".to_string()))?;
        let backups = overrides
            .backup
            .clone()
            .unwrap_or_else(|| raw.backup.clone().into_vec());
        let complement = overrides
            .complement
            .clone()
            .or_else(|| raw.complement.clone());

        let mut locations = vec![(
            Role::Primary,
            normalize_location(&primary).map_err(&invalid)?,
        )];
        for b in backups {
            locations.push((Role::Backup, normalize_location(&b).map_err(&invalid)?));
        }
        if let Some(c) = complement {
            let c = normalize_location(&c).map_err(&invalid)?;
            for (role, url) in &locations {
                if overlaps(url, &c) {
                    return Err(invalid(format!(
                        "complement location {c} overlaps the {} location {url}; slotfill never writes there",
                        role.as_str()
                    )));
                }
            }
            locations.push((Role::Complement, c));
        }
        for (i, (_, a)) in locations.iter().enumerate() {
            if locations[..i].iter().any(|(_, b)| a == b) {
                return Err(invalid(format!("location {a} is listed twice")));
            }
        }
        let rules = raw.rules;
        if rules.max_lines == 0 || rules.min_lines >= rules.max_lines {
            return Err(invalid(format!(
                "rules: min_lines ({}) must be below max_lines ({})",
                rules.min_lines, rules.max_lines
            )));
        }
        let duration = |key: &str, value: &Option<String>, default: &str| {
            parse_duration(value.as_deref().unwrap_or(default))
                .map_err(|e| invalid(format!("{key}: {e}")))
        };
        if let Some(r) = raw.min_recall.filter(|r| !(*r > 0.0 && *r <= 1.0)) {
            return Err(invalid(format!(
                "min_recall must be above 0 and at most 1 (got {r})"
            )));
        }
        let settle_delay = duration(
            "settle_delay",
            &raw.settle_delay,
            crate::defaults::SETTLE_DELAY,
        )?;
        let empty_recheck_after = duration(
            "empty_recheck_after",
            &raw.empty_recheck_after,
            crate::defaults::EMPTY_RECHECK_AFTER,
        )?;
        Ok(Dataset {
            name: name.to_string(),
            spec,
            locations,
            rules,
            settle_delay,
            empty_recheck_after,
            empty_is_gap: raw.empty_is_gap || overrides.empty_is_gap,
            all_locations: raw.all_locations || overrides.all_locations,
            min_recall: raw.min_recall,
            source: raw.source.clone(),
            notify_webhook: raw
                .notify_webhook
                .clone()
                .or_else(|| self.notify_webhook.clone()),
        })
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
