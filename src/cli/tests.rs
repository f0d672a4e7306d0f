//! Table tests of the command line.

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("slotfill").chain(args.iter().copied()))
}

#[test]
fn help_shows_defaults_and_what_each_mode_reads() {
    use clap::CommandFactory;
    for command in ["fill", "run"] {
        let help = Cli::command()
            .find_subcommand_mut(command)
            .expect("subcommand")
            .render_long_help()
            .to_string();
        for expected in [
            "[default: 0]",
            "[default: 5]",
            "[default: 2]",
            "[default: 60]",
            "--rate-limit-wait-cap",
            "notes/search",
            "notes/local-timeline",
            "notes/global-timeline",
        ] {
            assert!(
                help.contains(expected),
                "{command}: {expected:?} in\n{help}"
            );
        }
        assert!(!help.contains("seed"), "{command}:\n{help}");
    }
}

#[test]
fn command_lines() {
    let ok = [
        vec![
            "scan",
            "--dataset",
            "jp",
            "--start",
            "2025-08-01T00:00",
            "--end",
            "2025-08-07T23:50",
        ],
        vec![
            "scan",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--concurrency",
            "16",
            "--progress",
        ],
        vec!["gaps", "--dataset", "jp", "--format", "csv"],
        vec!["gaps", "--dataset", "jp", "--start", "-3d", "--end", "now"],
        vec!["--config", "x.toml", "status"],
        vec!["-vv", "--log-format", "json", "status", "--dataset", "jp"],
        // Every command that takes a dataset takes `-d` (the README says so).
        vec!["status", "-d", "jp"],
        vec![
            "fill",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--max-slots",
            "5",
            "--order",
            "newest",
        ],
        vec![
            "fill",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--mode",
            "timeline",
            "--sleep",
            "0.5",
            "--dry-run",
        ],
        vec![
            "verify",
            "-d",
            "jp",
            "--start",
            "2025-08-01",
            "--end",
            "2025-08-02",
        ],
        vec![
            "promote",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--into",
            "s3://b/misskey",
            "--replace-invalid",
            "--concurrency",
            "8",
            "--dry-run",
        ],
        vec![
            "run",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--dry-run",
            "--token",
            "x",
            "--retry",
            "3",
        ],
    ];
    for args in ok {
        assert!(
            parse(&args).is_ok(),
            "{args:?}: {}",
            parse(&args).unwrap_err()
        );
    }
    let bad = [
        vec!["scan", "--dataset", "jp"],
        vec![
            "scan",
            "--dataset",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--concurrency",
            "0",
        ],
        vec!["gaps", "--dataset", "jp", "--start", "-3d"],
        vec!["gaps", "--dataset", "jp", "--format", "xml"],
        vec!["-v", "-q", "status"],
        vec!["promote", "-d", "jp", "--start", "-3d"],
        vec![
            "promote",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--concurrency",
            "0",
        ],
        vec!["frobnicate"],
        vec![
            "fill", "-d", "jp", "--start", "-3d", "--end", "-2d", "--mode", "hybrid",
        ],
        vec![
            "fill", "-d", "jp", "--start", "-3d", "--end", "-2d", "--order", "random",
        ],
        vec![
            "run",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--concurrency",
            "0",
        ],
    ];
    for args in bad {
        assert!(parse(&args).is_err(), "{args:?} should be refused");
    }
}
