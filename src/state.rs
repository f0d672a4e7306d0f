//! The verdicts slotfill gives objects and slots.

use std::fmt;
use std::str::FromStr;

/// The state of an object, or of a slot (a slot can also be `Missing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Ok,
    Missing,
    TooSmall,
    TooFewLines,
    TooManyLines,
    Unreadable,
    /// A complement object whose metadata says its fill did not complete, or
    /// whose line count disagrees with its metadata.
    Incomplete,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Ok,
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
            State::Missing => "missing",
            State::TooSmall => "too_small",
            State::TooFewLines => "too_few_lines",
            State::TooManyLines => "too_many_lines",
            State::Unreadable => "unreadable",
            State::Incomplete => "incomplete",
        }
    }

    /// How telling a reason is when no location holds a valid object: the
    /// slot reports the reason of its most nearly valid object (an object
    /// that exists says more than a missing one, a full but faulty object more
    /// than a tiny one).
    pub fn tellingness(self) -> u8 {
        match self {
            State::Ok => 7,
            State::TooManyLines => 6,
            State::Incomplete => 5,
            State::TooFewLines => 4,
            State::Unreadable => 3,
            State::TooSmall => 2,
            State::Missing => 1,
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
