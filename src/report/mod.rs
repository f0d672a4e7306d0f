//! Reports: the gaps listing, canned SQL queries and output formats.

pub mod format;
pub mod gaps;

pub use format::Format;
