//! Reports: the gaps listing, canned SQL queries, the coverage heatmap and output formats.

pub mod format;
pub mod gaps;
pub mod heatmap;
pub mod query;

pub use format::Format;
