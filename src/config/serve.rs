//! The `[serve]` section, `[[serve.schedule]]` entries and each dataset's
//! `[datasets.X.freshness]`: read with the config file, checked here before
//! the server starts (a mistake is a configuration error, exit 2, naming the key).
//! They live with the rest of the configuration so that reading the file
//! needs nothing from the server.

use std::net::SocketAddr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

use super::{Config, ConfigError, Dataset, Overrides, parse_duration};

type Result<T> = std::result::Result<T, ConfigError>;

use crate::defaults;

/// `[serve]` as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: Option<String>,
    pub token_env: Option<String>,
    #[serde(default)]
    pub schedule: Vec<ScheduleConfig>,
}

/// One `[[serve.schedule]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub dataset: String,
    /// 5-field cron, evaluated in the dataset's `utc_offset`.
    pub cron: String,
    pub start: String,
    pub end: String,
    pub max_slots: Option<u64>,
}

/// `[datasets.X.freshness]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshnessConfig {
    pub grace: Option<String>,
    pub check_every: Option<String>,
    #[serde(default)]
    pub fill: bool,
    pub alert_after: Option<String>,
}

/// A checked schedule entry.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its position in the file, for messages and run records.
    pub index: usize,
    pub dataset: String,
    pub cron: Cron,
    pub cron_text: String,
    pub start: String,
    pub end: String,
    pub max_slots: Option<u64>,
}

/// A checked freshness watch.
#[derive(Debug, Clone)]
pub struct Freshness {
    pub grace: chrono::Duration,
    pub check_every: chrono::Duration,
    pub fill: bool,
    pub alert_after: chrono::Duration,
}

/// Everything `slotfill serve` needs from the config, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    /// The bearer token, if configured (from the variable `token_env` names).
    pub token: Option<String>,
    pub token_env: String,
    pub datasets: Vec<Dataset>,
    pub schedules: Vec<Schedule>,
    pub watches: Vec<(String, Freshness)>,
}

fn usage(message: String) -> ConfigError {
    ConfigError::Serve(message)
}

impl Settings {
    pub fn check(config: &Config, listen_flag: Option<&str>) -> Result<Settings> {
        let serve = &config.serve;
        let listen = listen_flag
            .map(str::to_string)
            .or_else(|| serve.listen.clone())
            .unwrap_or_else(|| defaults::LISTEN.to_string());
        let token_env = serve
            .token_env
            .clone()
            .unwrap_or_else(|| defaults::API_TOKEN_ENV.to_string());
        let token = std::env::var(&token_env)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if let Some(token) = &token {
            crate::redact::register_secret(token);
        }
        let mut datasets = Vec::new();
        for name in config.datasets.keys() {
            let ds = config.dataset(name, &Overrides::default())?;
            if let Some(webhook) = &ds.notify_webhook {
                crate::redact::register_secret(webhook);
            }
            datasets.push(ds);
        }
        let find = |name: &str, what: &str| {
            datasets.iter().find(|d| d.name == name).ok_or_else(|| {
                usage(format!(
                    "{what} names dataset {name:?}, which is not configured"
                ))
            })
        };
        let mut schedules = Vec::new();
        for (index, entry) in serve.schedule.iter().enumerate() {
            let what = format!("serve.schedule[{index}]");
            let ds = find(&entry.dataset, &what)?;
            let cron = parse_cron(&entry.cron).map_err(|e| usage(format!("{what}: {e}")))?;
            crate::slot::Window::parse(&ds.spec, &entry.start, &entry.end, crate::clock::now())
                .map_err(|e| usage(format!("{what}: {e}")))?;
            schedules.push(Schedule {
                index,
                dataset: entry.dataset.clone(),
                cron,
                cron_text: entry.cron.clone(),
                start: entry.start.clone(),
                end: entry.end.clone(),
                max_slots: entry.max_slots,
            });
        }
        let mut watches = Vec::new();
        for (name, raw) in &config.datasets {
            let Some(f) = &raw.freshness else { continue };
            let duration = |key: &str, value: &Option<String>, default: &str| {
                let d = parse_duration(value.as_deref().unwrap_or(default))
                    .map_err(|e| usage(format!("dataset {name}: freshness {key}: {e}")))?;
                Ok::<_, ConfigError>(d)
            };
            let check_every = duration("check_every", &f.check_every, defaults::CHECK_EVERY)?;
            if check_every < chrono::Duration::seconds(1) {
                return Err(usage(format!(
                    "dataset {name}: freshness check_every must be at least 1s"
                )));
            }
            watches.push((
                name.clone(),
                Freshness {
                    grace: duration("grace", &f.grace, defaults::GRACE)?,
                    check_every,
                    fill: f.fill,
                    alert_after: duration("alert_after", &f.alert_after, defaults::ALERT_AFTER)?,
                },
            ));
        }
        Ok(Settings {
            listen,
            token,
            token_env,
            datasets,
            schedules,
            watches,
        })
    }

    /// Refuses to listen beyond loopback without a token.
    pub fn check_exposure(&self, addrs: &[SocketAddr]) -> Result<()> {
        let exposed = addrs.iter().any(|a| !a.ip().is_loopback());
        if exposed && self.token.is_none() {
            return Err(usage(format!(
                "serve: listening on {} (not loopback) needs an API token: set {} (the variable [serve] token_env names)",
                self.listen, self.token_env
            )));
        }
        Ok(())
    }
}

/// A standard 5-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_cron(text: &str) -> std::result::Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron {text:?} has {fields} fields; give 5 (minute hour day-of-month month day-of-week), e.g. \"15 3 * * *\""
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("cron {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset};

    #[test]
    fn cron_is_five_fields_and_evaluated_in_the_given_offset() {
        assert!(parse_cron("15 3 * * * *").is_err());
        assert!(parse_cron("15 3 * *").is_err());
        assert!(parse_cron("61 3 * * *").is_err());
        let cron = parse_cron("15 3 * * *").unwrap();
        let jst = FixedOffset::east_opt(9 * 3600).unwrap();
        let now = DateTime::parse_from_rfc3339("2025-08-14T03:14:00+09:00")
            .unwrap()
            .with_timezone(&jst);
        let next = cron.find_next_occurrence(&now, false).unwrap();
        assert_eq!(next.to_rfc3339(), "2025-08-14T03:15:00+09:00");
        let after = cron.find_next_occurrence(&next, false).unwrap();
        assert_eq!(after.to_rfc3339(), "2025-08-15T03:15:00+09:00");
    }
}
