//! GoToSocial 0.19.2's public timeline (`internal/processing/timeline/public.go`,
//! `internal/db/bundb/timeline.go`), as its source does it:
//!
//! - `limit`: default 20, clamped to [1, 40] without an error; a number that
//!   does not parse is a 400.
//! - The query selects public statuses that are not boosts (`local=true`
//!   keeps local ones; `remote` and `only_media` are not read), ordered by id
//!   as **strings**, `limit + 5` of them; `max_id` empty or ≥ the highest ULID
//!   becomes "now + 24 h". `min_id` pages up (ascending, then reversed).
//! - Then each status is checked (`StatusPublicTimelineable`: multi-author
//!   reply chains, suspended authors) and kept up to `limit`. With nothing
//!   kept it tries again from the last status read, three times at most, and
//!   then answers `[]` **with** a Link header naming where it stopped.
//! - Paging up with `min_id` keeps the newest `limit` of the `limit + 5`
//!   read: the 5 statuses right after `min_id` are dropped.
//! - The Link header names the configured host and protocol (not the address
//!   called): `next` is the last status read (kept or not), `prev` the first.
//!   No Link at all when the query found nothing.

use std::collections::BTreeMap;

use super::feed::{Part, State, Status, keeps, selects};
use super::ids::Key;

/// The host GoToSocial is configured with (its Link headers name it).
pub const GTS_HOST: &str = "gts.example";
/// `id.Highest`.
const HIGHEST: &str = "ZZZZZZZZZZZZZZZZZZZZZZZZZZ";
const MAX_ATTEMPTS: usize = 3;

/// A page, or the 400 for a `limit` that is not a number.
pub(super) enum GtsAnswer<'a> {
    Page {
        statuses: Vec<&'a Status>,
        link: Option<String>,
    },
    BadLimit(String),
}

impl State {
    /// `GetPublicTimeline`: at most `n` status keys of the query, newest first.
    fn gts_query(&self, max: &str, since: &str, min: &str, n: usize, local: bool) -> Vec<&Key> {
        let max = match max.is_empty() || max >= HIGHEST {
            true => None,
            false => Some(Key::Str(max.to_string())),
        };
        let part = if local { Part::Local } else { Part::All };
        let rows = self
            .below(max)
            .filter(|(_, s)| selects(&s.spec, part, false))
            .filter(|(k, _)| since.is_empty() || **k > Key::Str(since.to_string()))
            .filter(|(k, _)| min.is_empty() || **k > Key::Str(min.to_string()));
        match min.is_empty() {
            true => rows.rev().take(n).map(|(k, _)| k).collect(),
            false => {
                let mut up: Vec<&Key> = rows.take(n).map(|(k, _)| k).collect();
                up.reverse();
                up
            }
        }
    }

    /// `PublicTimelineGet`.
    pub(super) fn gts_page(&self, q: &BTreeMap<String, String>) -> GtsAnswer<'_> {
        let param = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        let limit = match param("limit") {
            "" => 20,
            v => match v.parse::<i64>() {
                Ok(v) => v.clamp(1, 40) as usize,
                Err(_) => return GtsAnswer::BadLimit(v.to_string()),
            },
        };
        let local = matches!(param("local"), "true" | "1" | "t" | "T" | "TRUE" | "True");
        let (mut max, since, mut min) = (
            param("max_id").to_string(),
            param("since_id"),
            param("min_id").to_string(),
        );
        let (mut next, mut prev) = (None::<String>, None::<String>);
        let mut items: Vec<&Status> = Vec::new();
        for attempt in 1.. {
            let keys = self.gts_query(&max, since, &min, limit + 5, local);
            if keys.is_empty() {
                // Nothing (left) in the database: no Link header.
                return GtsAnswer::Page {
                    statuses: Vec::new(),
                    link: None,
                };
            }
            let statuses: Vec<&Status> = keys.iter().map(|k| &self.statuses[*k]).collect();
            prev = Some(statuses[0].id.clone());
            for status in &statuses {
                next = Some(status.id.clone());
                if !keeps(&status.spec) {
                    continue;
                }
                items.push(status);
                if items.len() == limit {
                    break;
                }
            }
            if !items.is_empty() || attempt >= MAX_ATTEMPTS {
                break;
            }
            match min.is_empty() {
                true => max = next.clone().unwrap_or_default(),
                false => min = prev.clone().unwrap_or_default(),
            }
        }
        let local = format!("local={local}");
        let url = |key: &str, id: &str| {
            format!("https://{GTS_HOST}/api/v1/timelines/public?limit={limit}&{key}={id}&{local}")
        };
        let mut parts = Vec::new();
        if let Some(next) = &next {
            parts.push(format!("<{}>; rel=\"next\"", url("max_id", next)));
        }
        if let Some(prev) = &prev {
            parts.push(format!("<{}>; rel=\"prev\"", url("min_id", prev)));
        }
        GtsAnswer::Page {
            statuses: items,
            link: Some(parts.join(", ")),
        }
    }
}
