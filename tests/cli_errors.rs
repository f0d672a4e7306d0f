//! Bad input gets one clear line on stderr and the documented exit code.

use crate::support::*;

const LOCAL: &str =
    "[datasets.jp]\nprimary = \"file:///nonexistent/p\"\ncomplement = \"file:///nonexistent/c\"\n";

#[test]
fn usage_and_configuration_errors_exit_2_with_one_line() {
    let ws = Workspace::new(LOCAL);
    let window = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T01:00"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["scan", "-d", "nope"], "unknown dataset"),
        (
            vec![
                "scan",
                "-d",
                "jp",
                "--start",
                "2025-13-01",
                "--end",
                "2025-08-02",
            ],
            "cannot parse time",
        ),
        (
            vec![
                "scan",
                "-d",
                "jp",
                "--start",
                "2025-08-02",
                "--end",
                "2025-08-01",
            ],
            "before its start",
        ),
        (
            vec![
                "scan",
                "-d",
                "jp",
                "--start",
                "1925-08-02",
                "--end",
                "2025-08-01",
            ],
            "longer than the limit",
        ),
        (vec!["gaps", "-d", "jp"], "no catalog"),
        (
            vec!["fill", "-d", "jp", "--slot-minutes", "7"],
            "slot_minutes",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = if args.len() == 3 || args.contains(&"--slot-minutes") {
            [&args[..], &window[..]].concat()
        } else {
            args
        };
        let out = ws.slotfill(&args).code(2);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "{args:?}: {}",
            out.stderr
        );
    }
    let missing = Workspace::new(LOCAL);
    std::fs::remove_file(missing.config_path()).unwrap();
    let out = missing.slotfill(&["status"]).code(2);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
}
