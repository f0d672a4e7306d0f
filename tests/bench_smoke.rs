//! The benchmark's smoke profile (`bench/run.sh --profile smoke`) as a test: it checks the
//! request counts the server sees, never times.

use std::path::PathBuf;

use crate::support::{misskey, s3};

#[path = "../bench/harness.rs"]
mod harness;

#[test]
fn smoke_profile_request_counts() {
    let options = harness::Options {
        slotfill: PathBuf::from(env!("CARGO_BIN_EXE_slotfill")),
        only: Vec::new(),
        verbose: false,
        perf_dir: None,
        launcher: None,
        wait_for_quiet: false,
        client_cpu: None,
    };
    let report = harness::run(&harness::Profile::smoke(), &options);
    assert!(
        report.failures.is_empty(),
        "benchmark smoke checks failed:\n{}",
        report.failures.join("\n")
    );
}
