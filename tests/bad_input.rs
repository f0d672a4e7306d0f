//! Bad input gets exactly one clear line on stderr, the documented exit code
//! (2 for usage and configuration errors, 1 for runtime failures), nothing on
//! stdout, and leaves the catalog as it was: every table holds the same rows
//! afterwards, except that a command that got as far as recording a run
//! appends that run, marked `failed` with the same message (and, for a fill,
//! its `failed` attempts). Without a catalog, none is created, or it holds no
//! data. The cases are grouped by topic: usage and configuration, catalog
//! files, storage and origin failures; the harness is `support::bad_input`.

use std::path::Path;

use crate::support::bad_input::*;
use crate::support::s3::S3Server;
use crate::support::*;

/// Flags, times, config files and locations: refused before anything is
/// opened or written, and catalog-only mistakes (SQL that writes, an unknown
/// report, another slot width) that change nothing.
#[test]
fn usage_and_configuration_errors_get_one_line_and_change_nothing() {
    let f = fixture();
    let base = f.base_config.clone();
    let primary_url = format!("s3://{}/misskey", f.bucket);
    let cases = vec![
        case(
            "unknown dataset",
            [
                "scan",
                "-d",
                "nope",
                "--start",
                "2025-08-01T00:00",
                "--end",
                "2025-08-01T00:50",
            ],
            2,
            "unknown dataset \"nope\" (configured: jp)",
        ),
        case(
            "malformed time",
            [
                "scan",
                "-d",
                "jp",
                "--start",
                "2025-08-01T25:00",
                "--end",
                "2025-08-01T00:50",
            ],
            2,
            "cannot parse time \"2025-08-01T25:00\"",
        ),
        case(
            "malformed relative time",
            ["gaps", "-d", "jp", "--start", "-3x", "--end", "now"],
            2,
            "cannot parse time \"-3x\"",
        ),
        case(
            "time in no accepted form",
            [
                "scan",
                "-d",
                "jp",
                "--start",
                "2025-08-01 00:00 JST",
                "--end",
                "2025-08-01T00:50",
            ],
            2,
            "expected 2025-08-01T00:40 (the dataset's offset), 2025-08-01T00:40+09:00 or 2025-08-01T00:40Z",
        ),
        case(
            "end before start",
            [
                "scan",
                "-d",
                "jp",
                "--start",
                "2025-08-02T00:00",
                "--end",
                "2025-08-01T00:00",
            ],
            2,
            "is before its start",
        ),
        case(
            "a window of 100 years",
            [
                "scan",
                "-d",
                "jp",
                "--start",
                "1925-08-01T00:00",
                "--end",
                "2025-08-01T00:00",
            ],
            2,
            "longer than the limit",
        ),
        case(
            "slot minutes not dividing a day (flag)",
            f.windowed("scan", &["--slot-minutes", "7"]),
            2,
            "slot_minutes must be between 1 and 1440 and divide a day evenly (got 7)",
        ),
        case(
            "slot minutes not dividing a day (config)",
            f.windowed("scan", &[]),
            2,
            "divide a day evenly (got 7)",
        )
        .config(base.replace("slot_minutes = 10", "slot_minutes = 7")),
        case(
            "key template without a day field",
            f.windowed("scan", &[]),
            2,
            "needs a day field %d",
        )
        .config(base.replace(TEMPLATE, "%Y/%m/%H/%Y-%m_%H-%M.jsonl")),
        case(
            "bad utc offset",
            f.windowed("scan", &[]),
            2,
            "utc_offset must look like",
        )
        .config(base.replace("utc_offset = \"+09:00\"", "utc_offset = \"JST\"")),
        case(
            "missing config file",
            f.windowed("scan", &[]),
            2,
            "absent.toml not found",
        )
        .no_config(),
        case(
            "config with an unknown key",
            f.windowed("scan", &[]),
            2,
            "line 7: unknown field `slot_minute`",
        )
        .config(base.replace("slot_minutes = 10", "slot_minute = 10")),
        case(
            "config with a wrong type",
            f.windowed("scan", &[]),
            2,
            "line 7: invalid type: string \"ten\", expected u32",
        )
        .config(base.replace("slot_minutes = 10", "slot_minutes = \"ten\"")),
        case(
            "config that is not TOML",
            ["status"],
            2,
            "line 1: unclosed table",
        )
        .config("[datasets.jp\nprimary = ".to_string()),
        case(
            "location that is not a URL",
            f.windowed("scan", &["--primary", "miyazawa1s3/misskey"]),
            2,
            "must start with s3:// or file://",
        ),
        case(
            "sql that writes",
            ["sql", "DELETE FROM slots"],
            2,
            "slotfill sql only reads",
        )
        .not_fresh(),
        case(
            "gaps at another slot width than catalogued",
            ["gaps", "-d", "jp", "--slot-minutes", "60"],
            2,
            "dataset jp was catalogued with 10-minute slots",
        )
        .not_fresh(),
        case(
            "report on an unknown dataset",
            ["report", "coverage-by-day", "-d", "nope"],
            2,
            "unknown dataset \"nope\" (configured: jp)",
        )
        .not_fresh(),
        case(
            "unknown report",
            ["report", "nope"],
            2,
            "unknown report \"nope\"",
        )
        .not_fresh(),
        case(
            "complement overlapping primary",
            f.windowed("fill", &["--complement", &format!("{primary_url}/fill")]),
            2,
            "overlaps the primary location",
        ),
        case(
            "fill without a complement",
            f.windowed("fill", &[]),
            2,
            "no complement location",
        )
        .config(base.replace(
            &format!("complement = \"s3://{}/misskey_complement\"\n", f.bucket),
            "",
        )),
    ];
    assert!(cases.len() >= 15);
    run_cases(&f, &cases);
}

/// Catalog paths that cannot hold a catalog, and catalogs that are garbled,
/// truncated or from a newer slotfill: each left byte for byte as it was.
#[test]
fn bad_catalog_files_get_one_line_and_are_left_as_they_were() {
    let f = fixture();
    let ws_dir = f.ws.path().to_path_buf();
    let (newer, garbled, truncated) = catalog_variants(&f);
    let catalog_dir = ws_dir.join("a-directory");
    std::fs::create_dir(&catalog_dir).unwrap();
    let under_a_file = ws_dir.join("slotfill.toml").join("slotfill.db");
    let no_catalog = ws_dir.join("none.db");
    let s = |p: &Path| p.display().to_string();
    let cases = vec![
        case(
            "catalog path under a regular file",
            f.windowed("scan", &["--catalog", &s(&under_a_file)]),
            2,
            "is not a directory",
        )
        .catalog_file(under_a_file.clone()),
        case(
            "catalog path that is a directory",
            f.windowed("scan", &["--catalog", &s(&catalog_dir)]),
            2,
            "is a directory",
        )
        .catalog_file(catalog_dir.clone()),
        case(
            "no catalog yet (read-only command)",
            ["gaps", "-d", "jp", "--catalog", &s(&no_catalog)],
            2,
            "no catalog at",
        )
        .catalog_file(no_catalog.clone()),
        case(
            "corrupt catalog (scan)",
            f.windowed("scan", &["--catalog", &s(&garbled)]),
            2,
            "is not a slotfill catalog",
        )
        .catalog_file(garbled.clone()),
        case(
            "corrupt catalog (gaps)",
            ["gaps", "-d", "jp", "--catalog", &s(&garbled)],
            2,
            "is not a slotfill catalog",
        )
        .catalog_file(garbled.clone()),
        case(
            "truncated catalog (scan)",
            f.windowed("scan", &["--catalog", &s(&truncated)]),
            2,
            "is corrupt",
        )
        .catalog_file(truncated.clone()),
        case(
            "truncated catalog (sql)",
            [
                "sql",
                "SELECT COUNT(*) FROM objects",
                "--catalog",
                &s(&truncated),
            ],
            2,
            "is corrupt",
        )
        .catalog_file(truncated.clone()),
        case(
            "catalog of a newer schema (scan)",
            f.windowed("scan", &["--catalog", &s(&newer)]),
            2,
            "was written by a newer slotfill (it has schema version 99",
        )
        .catalog_file(newer.clone()),
        case(
            "catalog of a newer schema (status)",
            ["status", "--catalog", &s(&newer)],
            2,
            "was written by a newer slotfill",
        )
        .catalog_file(newer.clone()),
    ];
    run_cases(&f, &cases);
    // The config file the catalog path ran into is intact.
    assert_eq!(
        std::fs::read_to_string(f.ws.config_path()).unwrap(),
        f.base_config
    );
}

/// S3 refusing the credentials, an unreachable endpoint, a bucket gone, an
/// origin rejecting the token: one line, and only the failed run recorded.
#[test]
fn storage_and_origin_failures_get_one_line_and_keep_the_catalog() {
    let f = fixture();
    let base = f.base_config.clone();
    let unreachable = base.replace(
        &S3Server::shared().endpoint(),
        &format!("http://127.0.0.1:{}", closed_port()),
    );
    assert_ne!(unreachable, base);
    let cases = vec![
        case(
            "no AWS credentials anywhere",
            f.windowed("scan", &[]),
            2,
            "no AWS credentials found",
        )
        .env("AWS_ACCESS_KEY_ID", "")
        .env("AWS_SECRET_ACCESS_KEY", "")
        .trace(Trace::FailedRun),
        case(
            "wrong AWS secret key",
            f.windowed("scan", &[]),
            2,
            "access denied (SignatureDoesNotMatch)",
        )
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .trace(Trace::FailedRun),
        case(
            "unknown AWS access key",
            f.windowed("verify", &[]),
            2,
            "access denied (InvalidAccessKeyId)",
        )
        .env("AWS_ACCESS_KEY_ID", "NOSUCHKEY")
        .trace(Trace::FailedRun),
        case(
            "wrong AWS secret key (fill)",
            f.windowed("fill", &["--token", TOKEN]),
            2,
            "access denied (SignatureDoesNotMatch)",
        )
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .trace(Trace::FailedRun)
        .not_fresh(),
        case(
            "unreachable S3 endpoint",
            f.windowed("scan", &[]),
            1,
            "cannot reach the S3 endpoint",
        )
        .config(unreachable)
        .trace(Trace::FailedRun)
        .not_fresh(),
        case(
            "token the origin rejects",
            f.windowed("fill", &["--token", "not-the-token"]),
            2,
            "the origin rejected the API token",
        )
        .trace(Trace::FailedRun)
        .not_fresh(),
        case(
            "missing bucket",
            f.windowed("scan", &[]),
            2,
            &format!("bucket {} does not exist", f.bucket),
        )
        .setup(Setup::DeleteBucket)
        .trace(Trace::FailedRun),
    ];
    run_cases(&f, &cases);
}

#[test]
fn command_line_mistakes_exit_2() {
    // clap's own errors (unknown flags, missing values) keep clap's usage text,
    // but still exit 2 and print nothing on stdout.
    let ws = Workspace::new("");
    for args in [
        &["scan", "-d", "jp"][..],
        &["frobnicate"],
        &["gaps", "-d", "jp", "--start", "-3d"],
        &[
            "scan",
            "-d",
            "jp",
            "--start",
            "-3d",
            "--end",
            "-2d",
            "--concurrency",
            "0",
        ],
        &["-v", "-q", "status"],
    ] {
        let out = ws.slotfill(args).code(2);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(!ws.catalog_path().exists());
}
