//! Paging one range down by `max_id`, and what proves it exhausted.
//!
//! **Where a range starts and ends, in the server's id space.** A status's
//! id carries a time that may lie up to a second before its `created_at`
//! (back-dated snowflakes, GoToSocial's ULIDs) and, for a federated status
//! whose id was minted on receipt, up to its delivery lag after it. So under
//! the `created_at` rule the first page asks for ids below the end plus the
//! federation lag plus a second, and the statuses' own `created_at` decides
//! (the sink keeps `start ≤ created_at < end`). Under the receipt rule the
//! bounds are exact and the id's time decides. Ids that carry no time start
//! from the newest status, or from a landmark an earlier range left.
//!
//! **What proves a range exhausted** (the proof rule of issue 18): a status
//! below the range's floor (an id older than its start minus a second, or,
//! for ids without time, a `created_at` older than the start minus the lag
//! and a second), a `Link` whose next page starts below the floor (the server
//! read that far, keeping nothing more), or an empty page with no next link.
//! A short page proves nothing, and neither does an empty page that names a
//! next page: GoToSocial filters after its query and answers `[]` with a
//! `Link` when everything it read was filtered out, so paging goes on from
//! where its `Link` says.
//!
//! **The probe** reads the newest statuses: every one must have an id and a
//! `created_at`, the codec is detected from them (or the configured one must
//! read them), and one call below the newest proves the server honours
//! `max_id` at all. A server that cannot be paged stops the run (exit 2).

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::timeline::{SlotRule, in_timeline};
use super::{Mastodon, PAGE_LIMIT};
use crate::source::codec::{ID_BEFORE_CREATED_MS, IdCodec};
use crate::source::http::CallFailure;
use crate::source::sink::{NoteSink, parse_created_at};
use crate::source::{Failure, Fetch, RangeEnd, SourceError};

/// Empty pages with a next link the probe follows looking for a status.
const PROBE_PAGES: usize = 3;

/// What ends a range.
pub(super) enum Floor {
    /// An id below this one.
    Id(String),
    /// A status created before this (ms): ids that carry no time.
    CreatedBefore(i64),
}

/// What one page brought.
struct Read {
    proven: bool,
    /// The oldest status in the server's order: (id, created_at ms).
    oldest: Option<(String, i64)>,
}

/// A status's id and creation time.
fn head(raw: &RawValue) -> Option<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        created_at: Cow<'a, str>,
    }
    let head: Head = serde_json::from_str(raw.get()).ok()?;
    Some((head.id.into_owned(), parse_created_at(&head.created_at)?))
}

fn abbreviate(raw: &RawValue) -> String {
    let text: String = raw.get().chars().take(80).collect();
    format!("{text}…")
}

impl Mastodon {
    /// The server's id codec: configured and checked, or detected, once.
    pub(super) async fn codec(&self, stats: &mut Fetch) -> Result<IdCodec, SourceError> {
        self.codec
            .get_or_try_init(|| self.detect(stats))
            .await
            .copied()
    }

    async fn detect(&self, stats: &mut Fetch) -> Result<IdCodec, SourceError> {
        let mut max_id = None;
        let mut heads = Vec::new();
        for _ in 0..PROBE_PAGES {
            let query = self.query(max_id.as_deref(), PAGE_LIMIT);
            let page = self.probe_page(&query, stats).await?;
            for raw in &page.statuses {
                heads.push(head(raw).ok_or_else(|| {
                    SourceError::Config(format!(
                        "the server's {} timeline cannot be paged: it sent a status without an id or a created_at ({})",
                        self.settings.timeline.name(),
                        abbreviate(raw)
                    ))
                })?);
            }
            match page.next_max_id {
                Some(next) if heads.is_empty() && max_id.as_ref() != Some(&next) => {
                    max_id = Some(next)
                }
                _ => break,
            }
        }
        let samples: Vec<(&str, i64)> = heads.iter().map(|(id, ms)| (id.as_str(), *ms)).collect();
        let now = crate::clock::now().timestamp_millis();
        let newest = samples.first().map(|(id, _)| *id).unwrap_or_default();
        let codec = match self.settings.id_codec {
            Some(c) if c.has_time() && !samples.is_empty() && !c.reads(&samples, now) => {
                return Err(SourceError::Config(format!(
                    "id_scheme = \"{c}\" does not read this server's status ids (the newest is {newest:?}); \
                     set id_scheme = \"auto\" or the server's scheme"
                )));
            }
            Some(c) => c,
            None => IdCodec::detect(&samples, now),
        };
        if self.settings.slot_rule == SlotRule::Receipt && !codec.has_time() {
            let seen = match samples.is_empty() {
                true => "the timeline is empty, so nothing tells its ids' scheme; set id_scheme"
                    .to_string(),
                false => format!("this server's ids carry none (the newest is {newest:?})"),
            };
            return Err(SourceError::Config(format!(
                "slot_by = \"receipt\" needs ids that carry the time the server received a status, and {seen}; \
                 or use slot_by = \"created_at\""
            )));
        }
        if samples.len() >= 2 {
            self.check_paging(codec, newest, stats).await?;
        }
        if !codec.has_time() && !samples.is_empty() {
            tracing::warn!(
                newest,
                "the server's status ids carry no time: each range is paged down from the newest status \
                 (or a landmark of an earlier range) until a status created before its start"
            );
        }
        tracing::info!(%codec, "the server's id scheme");
        Ok(codec)
    }

    /// One call below the newest status: a server that answers it again, or
    /// answers ids out of their order, cannot be paged.
    async fn check_paging(
        &self,
        codec: IdCodec,
        newest: &str,
        stats: &mut Fetch,
    ) -> Result<(), SourceError> {
        let page = self.probe_page(&self.query(Some(newest), 2), stats).await?;
        let cannot = |what: String| {
            SourceError::Config(format!(
                "the server's {} timeline cannot be paged: asked for the statuses below {newest:?} (max_id), {what}",
                self.settings.timeline.name()
            ))
        };
        for (id, _) in page.statuses.iter().filter_map(|raw| head(raw)) {
            if id == newest {
                return Err(cannot(format!(
                    "it answered {newest:?} again: it ignores max_id"
                )));
            }
            if codec.has_time() && !codec.below(&id, newest) {
                return Err(cannot(format!(
                    "it answered {id:?}, which is not below it as {codec} ids: set id_scheme"
                )));
            }
        }
        Ok(())
    }

    /// The first page's `max_id` and the floor that ends the range.
    pub(super) fn bounds(
        &self,
        codec: IdCodec,
        start_ms: i64,
        end_ms: i64,
    ) -> (Option<String>, Floor) {
        let w = ID_BEFORE_CREATED_MS;
        let lag = match self.settings.slot_rule {
            SlotRule::CreatedAt { lag_ms } => lag_ms,
            SlotRule::Receipt => 0,
        };
        match (self.settings.slot_rule, codec.min_id_at(start_ms)) {
            (SlotRule::Receipt, Some(floor)) => (codec.min_id_at(end_ms), Floor::Id(floor)),
            (SlotRule::CreatedAt { .. }, Some(_)) => (
                codec.min_id_at(end_ms + lag + w),
                Floor::Id(codec.min_id_at(start_ms - w).expect("a codec with time")),
            ),
            (_, None) => {
                let landmark = self.landmarks().at_or_after(end_ms + lag + w);
                (landmark, Floor::CreatedBefore(start_ms - lag - w))
            }
        }
    }

    fn landmarks(&self) -> std::sync::MutexGuard<'_, super::landmarks::Landmarks> {
        self.landmarks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn fetch_range(
        &self,
        start_ms: i64,
        end_ms: i64,
        sink: &mut NoteSink,
    ) -> Result<Fetch, SourceError> {
        let mut stats = Fetch::default();
        let learned = self.codec(&mut stats).await;
        let Some(codec) = stats.id_scheme(learned)? else {
            return Ok(stats);
        };
        let (mut max_id, floor) = self.bounds(codec, start_ms, end_ms);
        for _ in 0..self.settings.max_pages {
            let query = self.query(max_id.as_deref(), PAGE_LIMIT);
            let page = match self.page(&query, &mut stats).await {
                Ok(page) => page,
                Err(CallFailure::Fatal(e)) => return Err(e),
                Err(CallFailure::Exhausted { code, message }) => {
                    tracing::warn!(%code, %message, "giving up on this range for now");
                    stats.failure = Some(Failure::Origin { code, message });
                    return Ok(stats);
                }
            };
            let read = match self.absorb(codec, &page.statuses, &floor, sink) {
                Ok(read) => read,
                Err(failure) => {
                    stats.failure = Some(failure);
                    return Ok(stats);
                }
            };
            if read.proven {
                stats.ended(RangeEnd::OlderRecord);
                return Ok(stats);
            }
            if let (false, Some((id, created_ms))) = (codec.has_time(), &read.oldest) {
                self.landmarks().note(*created_ms, id);
            }
            let oldest = read.oldest.map(|(id, _)| id);
            let Some(next) = next_max_id(codec, max_id.as_deref(), oldest, page.next_max_id) else {
                if page.statuses.is_empty() {
                    // An empty page that names no next page: nothing is below.
                    stats.ended(RangeEnd::EmptyPage);
                } else {
                    let message = format!(
                        "the server's next page does not start below {:?}",
                        max_id.unwrap_or_default()
                    );
                    stats.failure = Some(Failure::Origin {
                        code: "paging_stuck".into(),
                        message,
                    });
                }
                return Ok(stats);
            };
            if let Floor::Id(floor) = &floor
                && codec.below(&next, floor)
            {
                // The server read below the floor and kept nothing more for us.
                stats.ended(RangeEnd::NextPageBelowStart);
                return Ok(stats);
            }
            max_id = Some(next);
        }
        stats.failure = Some(Failure::PageBudget {
            pages: self.settings.max_pages,
        });
        Ok(stats)
    }

    /// Offers a page's statuses (those in the timeline's part) to the sink.
    fn absorb(
        &self,
        codec: IdCodec,
        statuses: &[Box<RawValue>],
        floor: &Floor,
        sink: &mut NoteSink,
    ) -> Result<Read, Failure> {
        let (timeline, only_media) = (self.settings.timeline, self.settings.only_media);
        let mut read = Read {
            proven: false,
            oldest: None,
        };
        for raw in statuses {
            let bad = |what: String| Failure::BadRecord(what);
            let (id, created_ms) = head(raw).ok_or_else(|| {
                bad(format!(
                    "a status without an id or a created_at ({})",
                    abbreviate(raw)
                ))
            })?;
            if codec.has_time() && codec.time_of(&id).is_none() {
                return Err(bad(format!("a status id {id:?} that is not a {codec} id")));
            }
            if in_timeline(timeline, only_media, raw.get()) && sink.push(raw).is_err() {
                return Err(bad(format!(
                    "a status it cannot place ({})",
                    abbreviate(raw)
                )));
            }
            read.proven |= match floor {
                Floor::Id(floor) => codec.below(&id, floor),
                Floor::CreatedBefore(ms) => created_ms < *ms,
            };
            let older = match &read.oldest {
                None => true,
                Some((oldest, _)) => !codec.has_time() || codec.below(&id, oldest),
            };
            if older {
                read.oldest = Some((id, created_ms));
            }
        }
        Ok(read)
    }
}

/// Where the next page starts: below both the oldest status read and the
/// server's own next link (GoToSocial's may be lower: it read statuses it then
/// filtered out), and strictly below the current `max_id`; None when nothing
/// moves down. Ids without time cannot be compared: the server's link, else
/// the last status, unless it is where this page started.
fn next_max_id(
    codec: IdCodec,
    current: Option<&str>,
    oldest: Option<String>,
    link: Option<String>,
) -> Option<String> {
    if !codec.has_time() {
        return link
            .or(oldest)
            .filter(|next| Some(next.as_str()) != current);
    }
    [oldest, link]
        .into_iter()
        .flatten()
        .filter(|c| codec.time_of(c).is_some())
        .filter(|c| current.is_none_or(|cur| codec.below(c, cur)))
        .min_by(|a, b| codec.cmp(a, b).unwrap_or(std::cmp::Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_always_moves_down() {
        let c = IdCodec::Snowflake;
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            next_max_id(c, Some("500"), some("300"), some("200")),
            some("200")
        );
        assert_eq!(next_max_id(c, Some("500"), some("300"), None), some("300"));
        // A link above the page, or not an id at all, is not followed.
        assert_eq!(
            next_max_id(c, Some("500"), some("300"), some("600")),
            some("300")
        );
        assert_eq!(
            next_max_id(c, Some("500"), some("300"), some("x")),
            some("300")
        );
        assert_eq!(next_max_id(c, Some("500"), None, None), None);
        assert_eq!(
            next_max_id(c, Some("500"), some("500"), None),
            None,
            "stuck"
        );
        let o = IdCodec::Opaque;
        assert_eq!(next_max_id(o, None, some("b"), None), some("b"));
        assert_eq!(next_max_id(o, Some("a"), some("b"), some("c")), some("c"));
        assert_eq!(next_max_id(o, Some("b"), some("b"), None), None, "stuck");
    }
}
