//! The verdicts slotfill gives objects and slots.

use std::fmt;
use std::str::FromStr;

/// The state of an object, or of a slot.
///
/// Slots and objects share the vocabulary: a slot takes the state of the object
/// that decides it, or `Missing` when there is none, or `Pending` while it has not
/// ended plus the settle delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Ok,
    /// The origin confirmed, by a complete fetch, that it holds no record for the
    /// slot; a zero-line complement object records the fact. Resolved, not a gap.
    Empty,
    /// The slot has not ended plus the settle delay: never fetched, never a gap.
    Pending,
    Missing,
    TooSmall,
    TooFewLines,
    TooManyLines,
    Unreadable,
    /// A complement object whose metadata says its fill did not complete, or
    /// whose line count disagrees with its metadata.
    Incomplete,
    /// An object that was listed but not counted (it cannot decide its slot yet).
    Unchecked,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Ok,
        State::Empty,
        State::Pending,
        State::Missing,
        State::TooSmall,
        State::TooFewLines,
        State::TooManyLines,
        State::Unreadable,
        State::Incomplete,
        State::Unchecked,
    ];

    /// The states that make a slot a gap: something slotfill could still act on.
    pub const GAPS: [State; 6] = [
        State::Missing,
        State::TooSmall,
        State::TooFewLines,
        State::TooManyLines,
        State::Unreadable,
        State::Incomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Empty => "empty",
            State::Pending => "pending",
            State::Missing => "missing",
            State::TooSmall => "too_small",
            State::TooFewLines => "too_few_lines",
            State::TooManyLines => "too_many_lines",
            State::Unreadable => "unreadable",
            State::Incomplete => "incomplete",
            State::Unchecked => "unchecked",
        }
    }

    /// A slot in this state is a gap (neither ok, confirmed empty nor pending).
    pub fn is_gap(self) -> bool {
        State::GAPS.contains(&self)
    }

    /// How telling a reason is when no location holds a valid object: the
    /// slot reports the reason of its most nearly valid object (an object
    /// that exists says more than a missing one, a full but faulty object more
    /// than a tiny one). A valid object beats a confirmed-empty one: the
    /// collector's data is the better witness.
    pub fn tellingness(self) -> u8 {
        match self {
            State::Ok => 9,
            State::Empty => 8,
            State::TooManyLines => 6,
            State::Incomplete => 5,
            State::TooFewLines => 4,
            State::Unreadable => 3,
            State::TooSmall => 2,
            State::Missing | State::Pending | State::Unchecked => 1,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}"))
    }
}
