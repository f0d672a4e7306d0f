//! The gaps listing: gap slots grouped into contiguous periods. Confirmed-empty
//! and pending slots are not gaps; they are counted apart (unless the dataset
//! counts empty slots as gaps).
//!
//! CSV is one row per slot and starts with `slot_start,status` (a contract:
//! scripts parse it). Table and JSON show one entry per period.

use crate::catalog::DatasetId;
use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::format::{Format, csv_row, plural};
use crate::catalog::{Catalog, SlotRow};
use crate::slot::{SlotSpec, SlotStart};
use crate::state::State;

/// A contiguous run of non-ok slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub first: SlotStart,
    pub last: SlotStart,
    pub first_local: String,
    pub last_local: String,
    pub reasons: BTreeMap<State, u64>,
}

impl Period {
    pub fn slots(&self) -> u64 {
        self.reasons.values().sum()
    }

    pub fn describe_reasons(&self) -> String {
        self.reasons
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `gaps --format json`: fields in this order (a `json!` map would sort them).
#[derive(Serialize)]
struct JsonGaps<'a> {
    slots_not_ok: u64,
    periods: Vec<JsonPeriod<'a>>,
    slots_empty: u64,
    slots_pending: u64,
}

#[derive(Serialize)]
struct JsonPeriod<'a> {
    start: &'a str,
    last_slot: &'a str,
    slots: u64,
    reasons: Reasons<'a>,
}

/// Reasons by state, in the states' order.
struct Reasons<'a>(&'a BTreeMap<State, u64>);

impl Serialize for Reasons<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(state, n)| (state.as_str(), n)))
    }
}

/// Folds non-ok slots (in time order) into periods.
#[derive(Debug)]
pub struct PeriodBuilder {
    width: i64,
    current: Option<Period>,
}

impl PeriodBuilder {
    pub fn new(spec: &SlotSpec) -> Self {
        PeriodBuilder {
            width: spec.width_secs(),
            current: None,
        }
    }

    /// Adds a slot; returns the period it closed, if any.
    pub fn push(&mut self, row: &SlotRow) -> Option<Period> {
        let closed = match &mut self.current {
            Some(p) if p.last + self.width == row.slot_start => {
                p.last = row.slot_start;
                p.last_local = row.start_local.clone();
                *p.reasons.entry(row.state).or_default() += 1;
                return None;
            }
            _ => self.current.take(),
        };
        self.current = Some(Period {
            first: row.slot_start,
            last: row.slot_start,
            first_local: row.start_local.clone(),
            last_local: row.start_local.clone(),
            reasons: BTreeMap::from([(row.state, 1)]),
        });
        closed
    }

    pub fn finish(self) -> Option<Period> {
        self.current
    }
}

/// Writes the gaps of a range (slots in one of `include`, normally
/// [`State::GAPS`]); returns (gap slots, periods).
pub fn write_gaps(
    out: &mut dyn Write,
    catalog: &Catalog,
    dataset_id: DatasetId,
    spec: &SlotSpec,
    range: (SlotStart, SlotStart),
    include: &[State],
    format: Format,
) -> super::Result<(u64, u64)> {
    let mut builder = PeriodBuilder::new(spec);
    let mut periods = Vec::new();
    let mut slots = 0u64;
    let mut period_start = String::new();
    let mut io_error = None;
    if format == Format::Csv {
        let header = [
            "slot_start",
            "status",
            "period_start",
            "location",
            "key",
            "size",
            "lines",
        ];
        csv_row(out, &header.map(str::to_string)).map_err(io)?;
    }
    catalog.visit_slots(dataset_id, range, Some(include), |row| {
        slots += 1;
        if let Some(closed) = builder.push(&row) {
            periods.push(closed);
        }
        if format == Format::Csv {
            if builder
                .current
                .as_ref()
                .is_some_and(|p| p.first == row.slot_start)
            {
                period_start = row.start_local.clone();
            }
            let fields = [
                row.start_local.clone(),
                row.state.to_string(),
                period_start.clone(),
                row.location.clone().unwrap_or_default(),
                row.key.clone().unwrap_or_default(),
                row.size.map(|s| s.to_string()).unwrap_or_default(),
                row.lines.map(|s| s.to_string()).unwrap_or_default(),
            ];
            if let Err(e) = csv_row(out, &fields) {
                io_error.get_or_insert(e);
            }
        }
        Ok(())
    })?;
    if let Some(e) = io_error {
        return Err(io(e));
    }
    periods.extend(builder.finish());
    let count = periods.len() as u64;
    let states = catalog.slot_states(dataset_id, range)?;
    let apart = |state: State| (!include.contains(&state)).then(|| states.get(state));
    let (empty, pending) = (apart(State::Empty), apart(State::Pending));
    match format {
        Format::Csv => {}
        Format::Json => {
            let periods: Vec<_> = periods
                .iter()
                .map(|p| JsonPeriod {
                    start: &p.first_local,
                    last_slot: &p.last_local,
                    slots: p.slots(),
                    reasons: Reasons(&p.reasons),
                })
                .collect();
            let doc = JsonGaps {
                slots_not_ok: slots,
                periods,
                slots_empty: empty.unwrap_or(0),
                slots_pending: pending.unwrap_or(0),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("json")).map_err(io)?;
        }
        Format::Table => {
            if periods.is_empty() {
                writeln!(out, "no gaps in the catalogued slots of the window").map_err(io)?;
            } else {
                writeln!(
                    out,
                    "{:<27} {:<27} {:>6}  reasons",
                    "first slot", "last slot", "slots"
                )
                .map_err(io)?;
                for p in &periods {
                    writeln!(
                        out,
                        "{:<27} {:<27} {:>6}  {}",
                        p.first_local,
                        p.last_local,
                        p.slots(),
                        p.describe_reasons()
                    )
                    .map_err(io)?;
                }
                writeln!(
                    out,
                    "{} not ok in {}",
                    plural(slots, "slot"),
                    plural(count, "period")
                )
                .map_err(io)?;
            }
            if let Some(n) = empty.filter(|n| *n > 0) {
                writeln!(out, "{n} slots confirmed empty at the origin (not gaps)").map_err(io)?;
            }
            if let Some(n) = pending.filter(|n| *n > 0) {
                writeln!(
                    out,
                    "{n} slots pending: not ended plus the settle delay (not gaps)"
                )
                .map_err(io)?;
            }
        }
    }
    Ok((slots, count))
}

fn io(source: std::io::Error) -> super::ReportError {
    super::ReportError::Output {
        what: "output",
        source,
    }
}
