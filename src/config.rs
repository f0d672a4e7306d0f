//! The configuration file (`slotfill.toml`) and the command-line overrides.
//!
//! A file names the catalog, optional S3 settings and any number of datasets.
//! Unknown keys are errors, so a typo never silently falls back to a default.
//! [`Config::dataset`] resolves one dataset into checked, ready-to-use parts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::slot::{SlotError, SlotSpec};
use crate::source::Visibility;

pub const DEFAULT_KEY_TEMPLATE: &str = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl";

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
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
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

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    #[default]
    Misskey,
    Archive,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(default)]
    pub kind: SourceKind,
    pub base_url: Option<String>,
    /// "search" | "local-timeline" | "global-timeline" | "notes"
    pub mode: Option<String>,
    pub token_env: Option<String>,
    pub id_scheme: Option<String>,
    /// Only notes of this host ("." = local): sent where the endpoint has a
    /// parameter for it, and applied to the notes in every mode.
    pub host: Option<String>,
    pub filter: Option<TextFilter>,
    /// The visibilities a note may have to be written (default: public, home).
    /// Unknown names are refused when the file is read.
    pub visibility: Option<Vec<Visibility>>,
    /// For `kind = "archive"`: where the JSON Lines files are.
    pub location: Option<String>,
    /// Seconds a 429 without `Retry-After` or `resetMs` waits at most (default 60).
    pub rate_limit_wait_cap: Option<f64>,
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

fn default_slot_minutes() -> u32 {
    10
}
fn default_offset() -> String {
    "+09:00".to_string()
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
    /// Count every object of every location, as `--all-locations`; by default an
    /// object is downloaded only when no earlier location holds a valid object for
    /// its slot.
    #[serde(default)]
    pub all_locations: bool,
}

/// Defaults of the dataset settings that have one (each in this one place).
pub mod defaults {
    /// A slot is pending until this long after its end.
    pub const SETTLE_DELAY: &str = "5m";
    /// A confirmed-empty slot is fetched again after this long.
    pub const EMPTY_RECHECK_AFTER: &str = "7d";
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
}

/// A loaded configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub catalog: PathBuf,
    pub notify_webhook: Option<String>,
    pub s3: S3Settings,
    pub datasets: BTreeMap<String, DatasetConfig>,
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
}

impl Dataset {
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
        check_source(&raw.source).map_err(&invalid)?;
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
        let settle_delay = duration("settle_delay", &raw.settle_delay, defaults::SETTLE_DELAY)?;
        let empty_recheck_after = duration(
            "empty_recheck_after",
            &raw.empty_recheck_after,
            defaults::EMPTY_RECHECK_AFTER,
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
            source: raw.source.clone(),
            notify_webhook: raw
                .notify_webhook
                .clone()
                .or_else(|| self.notify_webhook.clone()),
        })
    }
}

/// Parses a duration setting: a whole number and a unit, `90s`, `5m`, `12h`, `7d`,
/// `2w` (`0` alone is zero).
pub fn parse_duration(text: &str) -> Result<chrono::Duration, String> {
    let s = text.trim();
    let bad = || format!("{text:?} is not a duration (a number and a unit: 90s, 5m, 12h, 7d, 2w)");
    if s == "0" {
        return Ok(chrono::Duration::zero());
    }
    let split = s.len().saturating_sub(1);
    let (amount, unit) = (s.get(..split).ok_or_else(bad)?, &s[split..]);
    let amount: i64 = amount.parse().map_err(|_| bad())?;
    if amount < 0 {
        return Err(bad());
    }
    let duration = match unit {
        "s" => chrono::Duration::try_seconds(amount),
        "m" => chrono::Duration::try_minutes(amount),
        "h" => chrono::Duration::try_hours(amount),
        "d" => chrono::Duration::try_days(amount),
        "w" => chrono::Duration::try_weeks(amount),
        _ => None,
    };
    duration.ok_or_else(bad)
}

/// Writes a duration the way [`parse_duration`] reads it, in its largest whole unit.
pub fn format_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")]
        .into_iter()
        .find(|(unit, _)| secs != 0 && secs % unit == 0)
        .map(|(unit, name)| format!("{}{name}", secs / unit))
        .unwrap_or_else(|| format!("{secs}s"))
}

/// The source settings that need no command line to be judged.
fn check_source(source: &SourceConfig) -> Result<(), String> {
    if source.visibility.as_ref().is_some_and(Vec::is_empty) {
        return Err(format!(
            "source visibility lists nothing, so no note could be written; list some of {}",
            Visibility::accepted()
        ));
    }
    Ok(())
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Checks a location URL and removes trailing slashes: `s3://bucket/prefix`
/// or `file:///absolute/dir`.
pub fn normalize_location(url: &str) -> Result<String, String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let rest = rest.trim_end_matches('/');
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(format!(
                "location {url:?} has no bucket (s3://bucket/prefix)"
            ));
        }
        return Ok(format!("s3://{rest}"));
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!(
                "location {url:?} must be an absolute path (file:///dir)"
            ));
        }
        let trimmed = path.trim_end_matches('/');
        return Ok(format!(
            "file://{}",
            if trimmed.is_empty() { "/" } else { trimmed }
        ));
    }
    Err(format!("location {url:?} must start with s3:// or file://"))
}

/// Two locations overlap when one's keys could fall under the other's.
fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (format!("{a}/"), format!("{b}/"));
    a.starts_with(&b) || b.starts_with(&a)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
catalog = "slotfill.db"
[s3]
endpoint_url = "http://127.0.0.1:9000"
region = "us-east-1"
force_path_style = true
[datasets.jp]
slot_minutes = 10
utc_offset = "+09:00"
key_template = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl"
primary = "s3://miyazawa1s3/misskey"
backup = ["s3://miyazawa1s3-backup/misskey"]
complement = "s3://miyazawa1s3/misskey_complement"
[datasets.jp.rules]
min_bytes = 102400
min_lines = 100
max_lines = 10000
[datasets.jp.source]
kind = "misskey"
base_url = "https://misskey.io"
mode = "search"
token_env = "MISSKEY_TOKEN"
id_scheme = "auto"
host = "."
filter = "none"
"#;

    #[test]
    fn the_documented_example_loads() {
        let config = Config::from_toml(Path::new("/etc/slotfill/slotfill.toml"), EXAMPLE).unwrap();
        assert_eq!(config.catalog, Path::new("/etc/slotfill/slotfill.db"));
        let ds = config.dataset("jp", &Overrides::default()).unwrap();
        assert_eq!(ds.locations.len(), 3);
        assert_eq!(ds.complement(), Some("s3://miyazawa1s3/misskey_complement"));
        assert_eq!(ds.rules, Rules::default());
    }

    #[test]
    fn mistakes_are_reported() {
        let path = Path::new("c.toml");
        let typo = EXAMPLE.replace("slot_minutes", "slot_minute");
        let err = Config::from_toml(path, &typo).unwrap_err().to_string();
        assert!(err.contains("line 8: unknown field `slot_minute`"), "{err}");
        let wrong_type = EXAMPLE.replace("slot_minutes = 10", "slot_minutes = \"ten\"");
        assert!(Config::from_toml(path, &wrong_type).is_err());
        let config = Config::from_toml(path, EXAMPLE).unwrap();
        let err = config.dataset("us", &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("configured: jp"), "{err}");
        let overlap = Overrides {
            complement: Some("s3://miyazawa1s3/misskey/fill".into()),
            ..Default::default()
        };
        let err = config.dataset("jp", &overlap).unwrap_err().to_string();
        assert!(err.contains("overlaps"), "{err}");
        // A sibling prefix sharing a name stem is not an overlap.
        let sibling = Overrides {
            complement: Some("s3://miyazawa1s3/misskey2".into()),
            ..Default::default()
        };
        assert!(config.dataset("jp", &sibling).is_ok());
        let bad_delay = EXAMPLE.replace(
            "slot_minutes = 10",
            "slot_minutes = 10\nsettle_delay = \"5 minutes\"",
        );
        let config = Config::from_toml(path, &bad_delay).unwrap();
        let err = config
            .dataset("jp", &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("settle_delay") && err.contains("90s, 5m"),
            "{err}"
        );
    }

    #[test]
    fn durations_and_the_settled_slot() {
        assert_eq!(parse_duration("90s"), Ok(chrono::Duration::seconds(90)));
        assert_eq!(parse_duration("7d"), Ok(chrono::Duration::days(7)));
        assert_eq!(parse_duration("0"), Ok(chrono::Duration::zero()));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-5m").is_err());
        assert_eq!(format_duration(chrono::Duration::minutes(90)), "90m");
        assert_eq!(format_duration(chrono::Duration::days(7)), "1w");
        assert_eq!(format_duration(chrono::Duration::seconds(45)), "45s");
        let config = Config::from_toml(Path::new("c.toml"), EXAMPLE).unwrap();
        let ds = config.dataset("jp", &Overrides::default()).unwrap();
        assert_eq!(ds.settle_delay, chrono::Duration::minutes(5));
        // At 00:44:59 the slot [00:20, 00:30) has settled (00:35) but [00:30, 00:40) has not (00:45).
        let now = chrono::DateTime::parse_from_rfc3339("2025-08-01T00:44:59Z")
            .unwrap()
            .to_utc();
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
        assert_eq!(ds.last_settled_slot(now), t("2025-08-01T00:20:00Z"));
        let now = chrono::DateTime::parse_from_rfc3339("2025-08-01T00:55:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(ds.last_settled_slot(now), t("2025-08-01T00:40:00Z"));
    }

    #[test]
    fn visibility_and_filter_names_are_checked_when_read() {
        let path = Path::new("c.toml");
        let config = Config::from_toml(path, EXAMPLE).unwrap();
        let ds = config.dataset("jp", &Overrides::default()).unwrap();
        assert_eq!(ds.source.visibility, None, "the default is the policy's");
        assert_eq!(ds.source.filter, Some(TextFilter::None));
        let listed = format!("{EXAMPLE}visibility = [\"public\", \"followers\"]\n");
        let ds = Config::from_toml(path, &listed)
            .unwrap()
            .dataset("jp", &Overrides::default())
            .unwrap();
        assert_eq!(
            ds.source.visibility,
            Some(vec![Visibility::Public, Visibility::Followers])
        );
        let unknown = format!("{EXAMPLE}visibility = [\"public\", \"unlisted\"]\n");
        let err = Config::from_toml(path, &unknown).unwrap_err().to_string();
        for name in ["unlisted", "public", "home", "followers", "specified"] {
            assert!(err.contains(name), "{err}");
        }
        let typo = EXAMPLE.replace("filter = \"none\"", "filter = \"japanes\"");
        let err = Config::from_toml(path, &typo).unwrap_err().to_string();
        assert!(err.contains("japanes") && err.contains("japanese"), "{err}");
        let empty = format!("{EXAMPLE}visibility = []\n");
        let err = Config::from_toml(path, &empty)
            .unwrap()
            .dataset("jp", &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lists nothing"), "{err}");
    }
}
