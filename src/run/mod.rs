//! The run layer: how a piece of recorded work is opened, carried out and
//! recorded, below both front ends (the CLI's [`crate::commands`] and
//! [`crate::serve`]), so neither reaches into the other.
//!
//! - [`session`]: the config and dataset a run works on, a dataset opened for
//!   work (catalog, stores) and the lifecycle of a recorded run.
//! - [`fill`]: the one way to open a recorded fill, from the
//!   [`FillSettings`] and origin overrides a front end built once.
//! - [`scan`] and [`verify`]: a scan of the session's locations and the
//!   verdict of a window.
//! - [`pipeline`]: scan → fill → verify, with a typed report per stage.

mod fill;
mod pipeline;
mod scan;
mod session;
mod verify;

pub use crate::fill::FillSettings;
pub use fill::{OpenedFill, fill_summary, require_complement, run_fill};
pub use pipeline::{StageReport, Stages, pipeline};
pub use scan::{run_scan, scan_summary};
pub use session::{
    Global, Notify, Resolved, Selection, Session, failure_of, parse_window, require_window,
    resolve, stop_signal, until_interrupted,
};
pub use verify::{LISTED, Verdict, verify_window};

/// What a front end finished with; `exit_code` is 0 or 3 (gaps remain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub exit_code: i32,
}

impl Outcome {
    pub const OK: Outcome = Outcome { exit_code: 0 };
}

impl From<crate::catalog::RunOutcome> for Outcome {
    fn from(outcome: crate::catalog::RunOutcome) -> Self {
        Outcome {
            exit_code: crate::error::exit_code(outcome),
        }
    }
}
