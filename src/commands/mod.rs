//! The commands: each a plain async function over its options, called by the CLI.
//!
//! A command opens its work through the run layer ([`crate::run`]), which
//! records it in the catalog, and prints what happened for people.

pub mod demo;
pub mod fill;
pub mod gaps;
mod promote;
mod report;
pub mod run;
pub mod scan;
pub mod verify;

pub use crate::run::{FillSettings, Global, Outcome, Selection};
pub use crate::source::open::SourceFlags;
pub use fill::{FillCommand, fill};
pub use gaps::{GapsOptions, gaps, status};
pub use promote::{PromoteCommand, promote};
pub use report::{ReportCommand, report, sql};
pub use run::{RunCommand, run};
pub use scan::{ScanCommand, scan};
pub use verify::{VerifyCommand, verify};
