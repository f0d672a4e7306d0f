//! Reports: the gaps listing, canned SQL queries, the coverage heatmap and output formats.

pub mod format;
pub mod gaps;
pub mod heatmap;
pub mod query;

pub use format::Format;

/// A count with its noun, singular or plural: "1 slot", "3 slots".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
