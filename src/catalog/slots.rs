//! Slots: the derived state of every catalogued slot.

use super::DatasetId;
use std::collections::{BTreeMap, HashMap};

use rusqlite::{TransactionBehavior, params};

use super::{Catalog, DatasetRow, Result, parse_column, parse_optional_column};
use crate::config::Role;
use crate::slot::{SlotSpec, SlotStart};
use crate::state::State;

/// How many slots of a derived range ended in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayStates {
    pub counts: BTreeMap<State, u64>,
}

impl DayStates {
    pub fn add(&mut self, other: &DayStates) {
        for (state, n) in &other.counts {
            *self.counts.entry(*state).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn get(&self, state: State) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    /// Slots that are gaps: neither ok, confirmed empty nor pending.
    pub fn gaps(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(state, _)| state.is_gap())
            .map(|(_, n)| n)
            .sum()
    }
}

/// One catalogued slot, with the object that decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    pub slot_start: SlotStart,
    pub start_local: String,
    pub state: State,
    pub ok_role: Option<Role>,
    pub location: Option<String>,
    pub key: Option<String>,
    pub size: Option<i64>,
    pub lines: Option<i64>,
}

struct Candidate {
    object_id: i64,
    state: State,
    role: Role,
    position: i64,
}

impl Candidate {
    /// Valid objects win by location order (primary, backups, complement);
    /// otherwise the most telling reason wins, earlier locations breaking ties.
    fn beats(&self, other: &Candidate) -> bool {
        let key = |c: &Candidate| (c.state.tellingness(), std::cmp::Reverse(c.position));
        key(self) > key(other)
    }
}

impl Catalog {
    /// Derives the state of every slot in `[first, last]` from the live objects
    /// of the dataset's active locations, in one transaction. Slots after
    /// `last_settled` that no object makes ok or empty are `pending`.
    pub fn derive_slots(
        &mut self,
        ds: &DatasetRow,
        spec: &SlotSpec,
        (first, last): (SlotStart, SlotStart),
        last_settled: SlotStart,
    ) -> Result<DayStates> {
        let now = crate::clock::now_text();
        // Immediate: this reads before it writes, and a deferred transaction would fail
        // at once ("database is locked") if another process wrote in between.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut best: HashMap<SlotStart, Candidate> = HashMap::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT o.slot_start, o.id, o.status, l.role, l.position
                 FROM objects o JOIN locations l ON l.id = o.location_id
                 WHERE l.dataset_id = ?1 AND l.active = 1 AND o.gone_at IS NULL
                   AND o.status <> 'unchecked' AND o.slot_start BETWEEN ?2 AND ?3",
            )?;
            let rows = stmt.query_map(params![ds.id, first, last], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Candidate {
                        object_id: r.get(1)?,
                        state: parse_column(r, 2, "objects.status")?,
                        role: parse_column(r, 3, "locations.role")?,
                        position: r.get(4)?,
                    },
                ))
            })?;
            for row in rows {
                let (slot, candidate) = row?;
                match best.get(&slot) {
                    Some(current) if !candidate.beats(current) => {}
                    _ => {
                        best.insert(slot, candidate);
                    }
                }
            }
        }
        let mut states = DayStates::default();
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO slots (dataset_id, slot_start, start_local, day, state, ok_role, object_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (dataset_id, slot_start) DO UPDATE SET
                     state = excluded.state, ok_role = excluded.ok_role, object_id = excluded.object_id,
                     updated_at = CASE WHEN slots.state = excluded.state AND slots.object_id IS excluded.object_id
                                       THEN slots.updated_at ELSE excluded.updated_at END",
            )?;
            let mut slot = first;
            while slot <= last {
                let (state, ok_role, object_id) = match best.get(&slot) {
                    Some(c) => (
                        c.state,
                        (c.state == State::Ok).then_some(c.role),
                        Some(c.object_id),
                    ),
                    None => (State::Missing, None, None),
                };
                let state = if slot > last_settled && state.is_gap() {
                    State::Pending
                } else {
                    state
                };
                upsert.execute(params![
                    ds.id,
                    slot,
                    spec.local_iso(slot),
                    spec.day_of(slot).to_string(),
                    state,
                    ok_role,
                    object_id,
                    now
                ])?;
                *states.counts.entry(state).or_default() += 1;
                slot += spec.width_secs();
            }
        }
        tx.commit()?;
        Ok(states)
    }

    /// Visits catalogued slots in time order, all of them or only those in `states`.
    pub fn visit_slots(
        &self,
        dataset_id: DatasetId,
        range: (SlotStart, SlotStart),
        states: Option<&[State]>,
        mut visit: impl FnMut(SlotRow) -> Result<()>,
    ) -> Result<()> {
        // The states are this binary's own constants, never user input.
        let state_filter = states
            .map(|states| {
                let list: Vec<String> =
                    states.iter().map(|s| format!("'{}'", s.as_str())).collect();
                format!("AND s.state IN ({})", list.join(", "))
            })
            .unwrap_or_default();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT s.slot_start, s.start_local, s.state, s.ok_role, l.url, o.key, o.size, o.lines
             FROM slots s
             LEFT JOIN objects o ON o.id = s.object_id
             LEFT JOIN locations l ON l.id = o.location_id
             WHERE s.dataset_id = ?1 AND s.slot_start BETWEEN ?2 AND ?3 {state_filter}
             ORDER BY s.slot_start"
        ))?;
        let mut rows = stmt.query(params![dataset_id, range.0, range.1])?;
        while let Some(r) = rows.next()? {
            visit(SlotRow {
                slot_start: r.get(0)?,
                start_local: r.get(1)?,
                state: parse_column(r, 2, "slots.state")?,
                ok_role: parse_optional_column(r, 3, "slots.ok_role")?,
                location: r.get(4)?,
                key: r.get(5)?,
                size: r.get(6)?,
                lines: r.get(7)?,
            })?;
        }
        Ok(())
    }

    /// Slot counts by state in a range, from the catalog alone.
    pub fn slot_states(
        &self,
        dataset_id: DatasetId,
        range: (SlotStart, SlotStart),
    ) -> Result<DayStates> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, COUNT(*) FROM slots WHERE dataset_id = ?1 AND slot_start BETWEEN ?2 AND ?3 GROUP BY state",
        )?;
        let mut states = DayStates::default();
        let rows = stmt.query_map(params![dataset_id, range.0, range.1], |r| {
            Ok((parse_column(r, 0, "slots.state")?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            states.counts.insert(state, n as u64);
        }
        Ok(states)
    }

    /// Ok slots by the role of the location that makes them ok.
    pub fn ok_by_role(
        &self,
        dataset_id: DatasetId,
        range: (SlotStart, SlotStart),
    ) -> Result<BTreeMap<String, u64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ok_role, COUNT(*) FROM slots
             WHERE dataset_id = ?1 AND slot_start BETWEEN ?2 AND ?3 AND state = 'ok' GROUP BY ok_role",
        )?;
        let rows = stmt.query_map(params![dataset_id, range.0, range.1], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, i64>(1)? as u64,
            ))
        })?;
        rows.collect::<rusqlite::Result<BTreeMap<_, _>>>()
            .map_err(Into::into)
    }

    /// The first and last catalogued slot of a dataset.
    pub fn slot_extent(&self, dataset_id: DatasetId) -> Result<Option<(SlotStart, SlotStart)>> {
        let extent: (Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT MIN(slot_start), MAX(slot_start) FROM slots WHERE dataset_id = ?1",
            [dataset_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(extent.0.zip(extent.1))
    }
}
