//! Calibration: checking the origin's answers against the archive before a
//! fill seals anything on them.
//!
//! An origin can answer a window with nothing, or with less than it holds,
//! and look exactly like a quiet window: a fanout timeline without database
//! fallback answers `[]` for old windows, visitors may see only local notes, a
//! Mastodon feed disabled for the caller answers `[]` (misskey-api.md §9). The
//! collector's valid objects are ground truth, so before the gap slots of a day
//! are filled, the archived slot nearest to them is read (one GET) and the
//! first page a fill would ask for that slot's window is asked (one call). The
//! archived notes the answer should hold are those the mode returns by design
//! ([`NoteSource::returnable`]) that the dataset's scope admits, newer than the
//! oldest note of the page (a page stops somewhere inside the window).
//!
//! - **Blind**: nothing came back where the archive holds notes, or none of a
//!   whole kind (remote or local notes). One more call (the newest page, no
//!   bounds) tells "blind at that age" from "blind to this caller". The day's
//!   slots are not fetched: nothing is sealed empty or complete on answers that
//!   cannot see it, and the run fails naming the likely cause.
//! - **Partial**: some notes are missing (deleted since, thinned). The recall is
//!   recorded and filling goes on, unless it is below the dataset's
//!   `min_recall` (then as blind: not filled, the run fails).
//! - **Inconclusive** (too few comparable notes, an unreadable reference, an
//!   origin failing) and **skipped** (no valid archived slot anywhere) are said
//!   and recorded; filling goes on.
//!
//! Each calibration is a row of `calibrations`; each attempt points at the one
//! that vouched for it, and each complement object carries its summary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::catalog::{
    CalibrationId, FillCandidate, NewCalibration, ReferenceSlot, RunId, SharedCatalog,
};
use crate::config::Dataset;
use crate::location::OpenLocation;
use crate::slot::SlotStart;
use crate::source::record::{Author, RecordHead};
use crate::source::sink::parse_created_at;
use crate::source::{BlindTo, Fetch, NoteFilter, NoteSource, SourceError};

use super::FillError;

/// Below this many comparable archived notes, silence proves nothing either way.
const MIN_COMPARABLE: u64 = 3;
/// Archived ids handed to a source that could not learn its id scheme.
const ID_SAMPLE: usize = 10;

/// What a calibration concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Partial,
    /// Below the dataset's `min_recall`.
    LowRecall,
    Blind(BlindTo),
    Inconclusive,
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Partial => "partial",
            Verdict::LowRecall => "low_recall",
            Verdict::Blind(_) => "blind",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Skipped => "skipped",
        }
    }

    /// The day's slots must not be filled from these answers.
    pub fn blocks(self) -> bool {
        matches!(self, Verdict::LowRecall | Verdict::Blind(_))
    }
}

/// One calibration, as a fill uses it.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub id: Option<CalibrationId>,
    pub verdict: Verdict,
    pub expected: u64,
    pub found: u64,
    /// The archived slot compared, rendered in the dataset's offset.
    pub reference: Option<String>,
    /// For people: what was compared, or why nothing was.
    pub message: String,
    pub origin_calls: u64,
}

impl Calibration {
    pub fn recall(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.found as f64 / self.expected as f64)
    }

    /// The object metadata value: `partial recall=0.980 found=96/98 ref=2025-08-01T00:30+09:00`.
    pub fn summary(&self) -> String {
        match (self.verdict, self.recall(), &self.reference) {
            (Verdict::Skipped | Verdict::Inconclusive, ..) | (_, None, _) | (_, _, None) => {
                format!("{}: {}", self.verdict.as_str(), self.message)
            }
            (verdict, Some(recall), Some(reference)) => format!(
                "{} recall={recall:.3} found={}/{} ref={reference}",
                verdict.as_str(),
                self.found,
                self.expected
            ),
        }
    }
}

/// What a fill's calibration needs.
pub struct Calibrator<'a> {
    pub ds: &'a Dataset,
    pub db: &'a SharedCatalog,
    pub dataset_id: crate::catalog::DatasetId,
    pub targets: &'a [OpenLocation],
    pub source: &'a Arc<dyn NoteSource>,
    pub filter: &'a NoteFilter,
    pub run: Option<RunId>,
}

/// The calibrations of a fill's candidates, by local day.
#[derive(Debug, Default)]
pub struct Calibrations {
    by_day: HashMap<NaiveDate, Arc<Calibration>>,
}

impl Calibrations {
    pub fn of(&self, ds: &Dataset, slot: SlotStart) -> Option<&Arc<Calibration>> {
        self.by_day.get(&ds.spec.day_of(slot))
    }

    /// Each distinct calibration once, in the order of their days.
    pub fn distinct(&self) -> Vec<Arc<Calibration>> {
        let mut days: Vec<_> = self.by_day.iter().collect();
        days.sort_by_key(|(day, _)| **day);
        let mut seen = HashSet::new();
        days.into_iter()
            .filter(|(_, c)| seen.insert(Arc::as_ptr(c)))
            .map(|(_, c)| c.clone())
            .collect()
    }
}

impl Calibrator<'_> {
    /// Calibrates the origin once per local day of `candidates` (days sharing
    /// their nearest archived slot share one calibration). `Err` only for a
    /// configuration error the origin answered with.
    pub async fn calibrate(&self, candidates: &[FillCandidate]) -> Result<Calibrations, FillError> {
        let mut days: BTreeMap<NaiveDate, (SlotStart, SlotStart)> = BTreeMap::new();
        for c in candidates {
            let day = self.ds.spec.day_of(c.slot_start);
            let scope = days.entry(day).or_insert((c.slot_start, c.slot_start));
            *scope = (scope.0.min(c.slot_start), scope.1.max(c.slot_start));
        }
        let mut out = Calibrations::default();
        if !self.source.calibrates() {
            return Ok(out);
        }
        let mut by_reference: HashMap<Option<SlotStart>, Arc<Calibration>> = HashMap::new();
        for (day, scope) in days {
            let (dataset_id, near) = (self.dataset_id, scope.0);
            let reference = self
                .db
                .call(move |c| c.reference_slot(dataset_id, near))
                .await?;
            let key = reference.as_ref().map(|r| r.slot_start);
            let calibration = match by_reference.get(&key) {
                Some(done) => done.clone(),
                None => {
                    let done = Arc::new(self.calibrate_scope(scope, reference).await?);
                    by_reference.insert(key, done.clone());
                    done
                }
            };
            out.by_day.insert(day, calibration);
        }
        Ok(out)
    }

    async fn calibrate_scope(
        &self,
        scope: (SlotStart, SlotStart),
        reference: Option<ReferenceSlot>,
    ) -> Result<Calibration, FillError> {
        let mut stats = Fetch::default();
        let mut calibration = match &reference {
            None => Calibration::without(
                Verdict::Skipped,
                "no valid archived slot to compare the origin's answers with".into(),
            ),
            Some(reference) => self.compare(reference, &mut stats).await?,
        };
        calibration.origin_calls = stats.calls;
        calibration.reference = reference
            .as_ref()
            .map(|r| self.ds.spec.local_iso(r.slot_start));
        let record = NewCalibration {
            dataset_id: self.dataset_id,
            run_id: self.run,
            scope,
            reference,
            source: self.source.describe(),
            expected: (calibration.expected > 0 || calibration.found > 0)
                .then_some(calibration.expected),
            found: (calibration.expected > 0).then_some(calibration.found),
            recall: calibration.recall(),
            verdict: calibration.verdict.as_str(),
            blind_to: match calibration.verdict {
                Verdict::Blind(to) => Some(to.name()),
                _ => None,
            },
            origin_calls: calibration.origin_calls,
            message: calibration.message.clone(),
        };
        calibration.id = Some(self.db.call(move |c| c.record_calibration(&record)).await?);
        log(&calibration);
        Ok(calibration)
    }

    /// Reads the reference object, asks the origin for its window, compares.
    async fn compare(
        &self,
        reference: &ReferenceSlot,
        stats: &mut Fetch,
    ) -> Result<Calibration, FillError> {
        let start_ms = reference.slot_start * 1000;
        let end_ms = start_ms + self.ds.spec.width_secs() * 1000;
        let archived = match self.read_reference(reference, (start_ms, end_ms)).await {
            Ok(archived) => archived,
            Err(message) => return Ok(Calibration::without(Verdict::Inconclusive, message)),
        };
        self.source.learn_ids(&archived.sample_ids);
        if (archived.notes.len() as u64) < MIN_COMPARABLE {
            let message = format!(
                "the archived slot holds {} this mode could return: too few to compare",
                crate::text::plural(archived.notes.len() as u64, "note")
            );
            return Ok(Calibration::without(Verdict::Inconclusive, message));
        }
        let page = match self.source.sample(Some((start_ms, end_ms)), stats).await {
            Ok(page) => page,
            Err(SourceError::Origin(message)) => {
                let message = format!("the origin failed: {message}");
                return Ok(Calibration::without(Verdict::Inconclusive, message));
            }
            Err(e) => return Err(e.into()),
        };
        let answer = Answer::read(self.source.shape(), &page, start_ms);
        let tally = archived.tally(&answer, end_ms);
        let mut calibration = self.judge(tally, &self.ds.spec.local_iso(reference.slot_start));
        if let Verdict::Blind(to) = calibration.verdict {
            let answers_recent = match self.source.sample(None, stats).await {
                Ok(page) => Some(!page.is_empty()),
                Err(SourceError::Origin(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let advice = self.source.blind_advice(to, answers_recent);
            calibration.message = format!("{}; {advice}", calibration.message);
        }
        Ok(calibration)
    }

    fn judge(&self, tally: Tally, reference: &str) -> Calibration {
        let endpoint = self.source.provenance().endpoint;
        let mut calibration = Calibration::without(Verdict::Ok, String::new());
        (calibration.expected, calibration.found) = (tally.expected(), tally.found());
        let held = |n: u64, noun: &str| {
            format!(
                "{endpoint} returned none of the {} the archive holds for {reference}",
                crate::text::plural(n, noun)
            )
        };
        calibration.verdict = if tally.expected() < MIN_COMPARABLE {
            calibration.message = format!(
                "only {} of the archived slot could be compared",
                crate::text::plural(tally.expected(), "note")
            );
            Verdict::Inconclusive
        } else if tally.found() == 0 {
            calibration.message = held(tally.expected(), "note");
            Verdict::Blind(BlindTo::All)
        } else if tally.remote.0 >= MIN_COMPARABLE && tally.remote.1 == 0 {
            let held = held(tally.remote.0, "remote note");
            calibration.message = format!("{held} (local notes came back)");
            Verdict::Blind(BlindTo::Remote)
        } else if tally.local.0 >= MIN_COMPARABLE && tally.local.1 == 0 {
            let held = held(tally.local.0, "local note");
            calibration.message = format!("{held} (remote notes came back)");
            Verdict::Blind(BlindTo::Local)
        } else {
            let recall = tally.found() as f64 / tally.expected() as f64;
            calibration.message = format!(
                "{} of {} archived notes came back (recall {recall:.3})",
                tally.found(),
                tally.expected()
            );
            match self.ds.min_recall {
                Some(min) if recall < min => {
                    calibration.message =
                        format!("{}, below min_recall = {min}", calibration.message);
                    Verdict::LowRecall
                }
                _ if tally.found() < tally.expected() => Verdict::Partial,
                _ => Verdict::Ok,
            }
        };
        calibration
    }

    /// The archived notes of the reference window the answer could hold, in a
    /// compact form (id, time, author's side), bounded by the object's lines.
    async fn read_reference(
        &self,
        reference: &ReferenceSlot,
        (start_ms, end_ms): (i64, i64),
    ) -> Result<Archived, String> {
        let target = self
            .targets
            .iter()
            .find(|t| t.row.id == reference.location_id)
            .ok_or_else(|| "the reference slot's location is no longer configured".to_string())?;
        let cannot = |e: &dyn std::fmt::Display| {
            format!(
                "cannot read the archived slot {}: {e}",
                self.ds.spec.local_iso(reference.slot_start)
            )
        };
        let read = target
            .store
            .read(&reference.key)
            .await
            .map_err(|e| cannot(&e))?;
        let mut lines = BufReader::new(read.body);
        let mut line = Vec::new();
        let mut archived = Archived::default();
        loop {
            line.clear();
            if lines
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| cannot(&e))?
                == 0
            {
                break;
            }
            let Ok(json) = std::str::from_utf8(&line) else {
                continue;
            };
            archived.offer(json.trim_end(), self, (start_ms, end_ms));
        }
        Ok(archived)
    }
}

impl Calibration {
    fn without(verdict: Verdict, message: String) -> Calibration {
        Calibration {
            id: None,
            verdict,
            expected: 0,
            found: 0,
            reference: None,
            message,
            origin_calls: 0,
        }
    }
}

fn log(c: &Calibration) {
    let verdict = c.verdict.as_str();
    match c.verdict {
        Verdict::Ok | Verdict::Partial => {
            tracing::info!(
                verdict,
                expected = c.expected,
                found = c.found,
                "calibrated the origin against the archive"
            )
        }
        // A blocking verdict ends the run with its message as the error line.
        _ => tracing::info!(verdict, message = %c.message, "calibration"),
    }
}

/// One archived note the answer could hold.
struct ArchivedNote {
    id: String,
    created_ms: i64,
    remote: bool,
}

#[derive(Default)]
struct Archived {
    notes: Vec<ArchivedNote>,
    sample_ids: Vec<String>,
}

impl Archived {
    fn offer(&mut self, json: &str, calibrator: &Calibrator<'_>, (start, end): (i64, i64)) {
        let Some(head) = RecordHead::parse(calibrator.source.shape(), json) else {
            return;
        };
        if self.sample_ids.len() < ID_SAMPLE {
            self.sample_ids.push(head.id.to_string());
        }
        let Some(created_ms) = parse_created_at(&head.created_at) else {
            return;
        };
        let comparable = (start..end).contains(&created_ms)
            && calibrator.filter.admits(&head)
            && calibrator.source.returnable(json);
        if comparable {
            self.notes.push(ArchivedNote {
                id: head.id.to_string(),
                created_ms,
                remote: matches!(head.author, Author::Remote(_)),
            });
        }
    }

    /// Counts, over the part of the window the answer covers, the archived
    /// notes it should hold and those it held: (expected, found) per side.
    fn tally(&self, answer: &Answer, end_ms: i64) -> Tally {
        let mut tally = Tally::default();
        for note in &self.notes {
            if note.created_ms < answer.covers_from || note.created_ms >= end_ms {
                continue;
            }
            let side = if note.remote {
                &mut tally.remote
            } else {
                &mut tally.local
            };
            side.0 += 1;
            side.1 += u64::from(answer.ids.contains(&note.id));
        }
        tally
    }
}

/// The origin's answer for the reference window.
struct Answer {
    ids: HashSet<String>,
    /// The answer holds every note it can from this time to the window's end:
    /// the window's start when the page reached past it (or was empty), else
    /// just after the page's oldest note (a page stops inside a millisecond).
    covers_from: i64,
}

impl Answer {
    fn read(shape: crate::source::RecordShape, page: &[Box<RawValue>], start_ms: i64) -> Answer {
        let heads: Vec<(String, i64)> = page
            .iter()
            .filter_map(|raw| {
                let head = RecordHead::parse(shape, raw.get())?;
                Some((head.id.to_string(), parse_created_at(&head.created_at)?))
            })
            .collect();
        let oldest = heads.iter().map(|(_, ms)| *ms).min();
        let covers_from = match oldest {
            Some(ms) if ms >= start_ms => ms + 1,
            _ => start_ms,
        };
        Answer {
            ids: heads.into_iter().map(|(id, _)| id).collect(),
            covers_from,
        }
    }
}

/// (expected, found) of local and remote archived notes.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    local: (u64, u64),
    remote: (u64, u64),
}

impl Tally {
    fn expected(&self) -> u64 {
        self.local.0 + self.remote.0
    }

    fn found(&self) -> u64 {
        self.local.1 + self.remote.1
    }
}
