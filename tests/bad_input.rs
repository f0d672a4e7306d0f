//! Bad input gets exactly one clear line on stderr, the documented exit code
//! (2 for usage and configuration errors, 1 for runtime failures), nothing on
//! stdout, and leaves the catalog as it was: every table holds the same rows
//! afterwards, except that a command that got as far as recording a run
//! appends that run, marked `failed` with the same message (and, for a fill,
//! its `failed` attempts). Without a catalog, none is created, or it holds no
//! data.
//!
//! Supersedes the smaller table that was in `cli_errors.rs`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::support::catalog_dump::{Dump, dump};
use crate::support::misskey::{EmulatorConfig, MisskeyEmulator, mixed_notes};
use crate::support::s3::S3Server;
use crate::support::*;

/// Tables that hold facts; they must never change on bad input.
const AUDIT_TABLES: [&str; 2] = ["runs", "fill_attempts"];
/// Tables that hold data (as opposed to a dataset's registration and the run log).
const DATA_TABLES: [&str; 4] = ["objects", "listings", "slots", "fill_attempts"];

/// What a case may do to the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trace {
    /// Nothing at all.
    None,
    /// Append one `failed` run (and `failed` fill attempts), nothing else.
    FailedRun,
}

/// Something to do before a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    None,
    /// Remove the dataset's bucket, as if it had been deleted or renamed.
    DeleteBucket,
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// The config to use instead of the workspace's (a file next to it, so
    /// the catalog is the same), or `Absent` for a missing file.
    config: Config,
    env: Vec<(&'static str, String)>,
    setup: Setup,
    code: i32,
    /// Part of the one stderr line.
    message: String,
    trace: Trace,
    /// A catalog file the case points at with `--catalog`: its bytes must not change,
    /// and if it did not exist it must not be created.
    catalog_file: Option<PathBuf>,
    /// Also run the case in a workspace without a catalog.
    fresh: bool,
}

enum Config {
    Workspace,
    Text(String),
    Absent,
}

fn case<S: AsRef<str>>(
    name: &'static str,
    args: impl IntoIterator<Item = S>,
    code: i32,
    message: &str,
) -> Case {
    Case {
        name,
        args: args.into_iter().map(|s| s.as_ref().to_string()).collect(),
        config: Config::Workspace,
        env: Vec::new(),
        setup: Setup::None,
        code,
        message: message.to_string(),
        trace: Trace::None,
        catalog_file: None,
        fresh: true,
    }
}

impl Case {
    fn config(mut self, text: String) -> Self {
        self.config = Config::Text(text);
        self
    }
    fn no_config(mut self) -> Self {
        self.config = Config::Absent;
        self
    }
    fn env(mut self, key: &'static str, value: &str) -> Self {
        self.env.push((key, value.to_string()));
        self
    }
    fn trace(mut self, trace: Trace) -> Self {
        self.trace = trace;
        self
    }
    fn catalog_file(mut self, path: PathBuf) -> Self {
        self.catalog_file = Some(path);
        self.fresh = false;
        self
    }
    fn not_fresh(mut self) -> Self {
        self.fresh = false;
        self
    }
    fn setup(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }
}

const TOKEN: &str = "the-right-token-3141";

struct Fixture {
    ws: Workspace,
    base_config: String,
    _emulator: MisskeyEmulator,
    bucket: String,
    first: i64,
    last: i64,
}

/// A dataset on S3 with history: primary and complement in one bucket, six
/// slots (three ok, one too small, two missing), scanned, one slot filled
/// from an origin that demands a token, verified. Every table has rows.
fn fixture() -> Fixture {
    let server = S3Server::shared();
    let bucket = server.new_bucket("bad-input");
    let first = AUG1_JST;
    let last = first + 5 * SLOT;
    let emulator = MisskeyEmulator::start(EmulatorConfig {
        required_token: Some(TOKEN.into()),
        ..Default::default()
    });
    for i in 0..6 {
        let slot = first + i * SLOT;
        let key = format!("misskey/{}", key_of(slot));
        match i {
            0 | 1 | 3 => server.put(&bucket, &key, &jsonl(10, 100)),
            2 => server.put(&bucket, &key, &jsonl(2, 20)),
            _ => {}
        }
        emulator.add_notes(mixed_notes(slot * 1000, (slot + SLOT) * 1000, 20, i as u64));
    }
    let source = format!(
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{}\"\nmode = \"search\"\n",
        emulator.base_url()
    );
    let base_config = s3_config(
        &format!("s3://{bucket}/misskey"),
        &[],
        Some(&format!("s3://{bucket}/misskey_complement")),
        &source,
    );
    let ws = Workspace::new(&base_config);
    let f = Fixture {
        ws,
        base_config,
        _emulator: emulator,
        bucket,
        first,
        last,
    };
    let window = f.window();
    let w: Vec<&str> = window.iter().map(String::as_str).collect();
    f.ws.slotfill(&[&["scan"][..], &w].concat()).ok();
    f.ws.slotfill(&[&["fill"][..], &w, &["--max-slots", "1", "--token", TOKEN]].concat())
        .ok();
    f.ws.slotfill(&[&["verify"][..], &w].concat()).code(3);
    let before = dump(&f.ws.catalog_path());
    for table in [
        "datasets",
        "locations",
        "objects",
        "listings",
        "slots",
        "runs",
    ] {
        assert!(!before[table].is_empty(), "fixture: {table} is empty");
    }
    assert_eq!(before["fill_attempts"].len(), 1);
    f
}

impl Fixture {
    fn window(&self) -> Vec<String> {
        [
            "--dataset",
            "jp",
            "--start",
            &arg_time(self.first),
            "--end",
            &arg_time(self.last),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `command --dataset jp --start … --end …` followed by `extra`.
    fn windowed(&self, command: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![command.to_string()];
        args.extend(self.window());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn delete_bucket(&self) {
        let server = S3Server::shared();
        for key in server.list_keys(&self.bucket, "") {
            server.delete(&self.bucket, &key);
        }
        let config = crate::support::s3::s3_config(&server.direct_endpoint()).build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let bucket = self.bucket.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(client.delete_bucket().bucket(bucket).send())
            .expect("delete bucket");
    }
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs one case in `ws` (whose config is the fixture's); returns the outcome.
fn run_case(ws: &Workspace, case: &Case, index: usize) -> Run {
    let config = match &case.config {
        Config::Workspace => ws.config_path(),
        Config::Absent => ws.path().join("absent.toml"),
        Config::Text(text) => {
            let path = ws.path().join(format!("case-{index}.toml"));
            std::fs::write(&path, text).unwrap();
            path
        }
    };
    let mut command = ws.bare_command();
    command.arg("--config").arg(&config).args(&case.args);
    for (k, v) in &case.env {
        command.env(k, v);
    }
    let output = command.output().expect("run slotfill");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One line on stderr, with the message; the exit code; nothing on stdout.
#[track_caller]
fn assert_one_line(case: &Case, out: &Run, where_: &str) {
    let name = case.name;
    assert_eq!(
        out.code, case.code,
        "{name} ({where_}): exit code\nstderr:\n{}",
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{name} ({where_}): stderr must be one line:\n{}",
        out.stderr
    );
    assert!(
        lines[0].starts_with("slotfill: error: ") && lines[0].contains(&case.message),
        "{name} ({where_}): expected {:?} in:\n{}",
        case.message,
        lines[0]
    );
    assert!(
        out.stdout.is_empty(),
        "{name} ({where_}): stdout:\n{}",
        out.stdout
    );
}

/// The catalog after a case: what it was, plus at most the case's failed run.
#[track_caller]
fn assert_catalog_kept(case: &Case, before: &Dump, after: &Dump, message: &str) {
    let name = case.name;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{name}: tables"
    );
    for (table, rows) in before {
        let now = &after[table];
        let audit = AUDIT_TABLES.contains(&table.as_str()) && case.trace == Trace::FailedRun;
        if !audit {
            assert_eq!(rows, now, "{name}: table {table} changed");
            continue;
        }
        for row in rows {
            assert!(now.contains(row), "{name}: {table} lost or changed {row}");
        }
        let added: Vec<&String> = now.iter().filter(|r| !rows.contains(r)).collect();
        if table == "runs" {
            assert!(added.len() <= 1, "{name}: runs added {added:?}");
        }
        for row in added {
            assert!(
                row.contains("\"failed\""),
                "{name}: {table} added a row that is not a failure: {row}"
            );
            if table == "runs" {
                assert!(
                    row.contains(message),
                    "{name}: the run records another error than the one shown: {row}"
                );
            }
        }
    }
}

fn file_state(path: &Path) -> Option<Vec<u8>> {
    if path.is_dir() {
        let entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        return Some(format!("dir {entries:?}").into_bytes());
    }
    std::fs::read(path).ok()
}

/// The newer-schema and corrupt catalogs, made from copies of the fixture's.
fn catalog_variants(f: &Fixture) -> (PathBuf, PathBuf, PathBuf) {
    let original = f.ws.catalog_path();
    // Fold the WAL into the file so a plain copy is the whole catalog.
    f.ws.catalog()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let newer = f.ws.path().join("newer.db");
    std::fs::copy(&original, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'from_the_future', '2030-01-01', '0')",
            [],
        )
        .unwrap();
    let _ = std::fs::remove_file(f.ws.path().join("newer.db-wal"));
    let _ = std::fs::remove_file(f.ws.path().join("newer.db-shm"));
    // Overwritten: the header and first page are garbage, the rest intact.
    let garbled = f.ws.path().join("garbled.db");
    let mut bytes = std::fs::read(&original).unwrap();
    for (i, b) in bytes.iter_mut().take(4096).enumerate() {
        *b = b"not a database "[i % 15];
    }
    std::fs::write(&garbled, &bytes).unwrap();
    // Cut short, as by a full disk or an interrupted copy.
    let truncated = f.ws.path().join("truncated.db");
    let bytes = std::fs::read(&original).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    (newer, garbled, truncated)
}

#[test]
fn bad_input_gets_one_line_the_documented_code_and_keeps_the_catalog() {
    let f = fixture();
    let base = f.base_config.clone();
    let ws_dir = f.ws.path().to_path_buf();
    let (newer, garbled, truncated) = catalog_variants(&f);
    let catalog_dir = ws_dir.join("a-directory");
    std::fs::create_dir(&catalog_dir).unwrap();
    let under_a_file = ws_dir.join("slotfill.toml").join("slotfill.db");
    let no_catalog = ws_dir.join("none.db");
    let s = |p: &Path| p.display().to_string();
    let primary_url = format!("s3://{}/misskey", f.bucket);
    let unreachable = base.replace(
        &S3Server::shared().endpoint(),
        &format!("http://127.0.0.1:{}", closed_port()),
    );
    assert_ne!(unreachable, base);

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
    assert!(cases.len() >= 15);

    let catalog = f.ws.catalog_path();
    for (index, case) in cases.iter().enumerate() {
        if case.setup == Setup::DeleteBucket {
            f.delete_bucket();
        }
        let name = case.name;
        let before = dump(&catalog);
        let file_before = case.catalog_file.as_deref().map(file_state);
        let out = run_case(&f.ws, case, index);
        assert_one_line(case, &out, "with a catalog");
        let message = out.stderr.trim().trim_start_matches("slotfill: error: ");
        assert_catalog_kept(case, &before, &dump(&catalog), message);
        if let Some(path) = &case.catalog_file {
            assert_eq!(
                file_state(path),
                file_before.unwrap(),
                "{name}: {} changed",
                path.display()
            );
            // No change waits in a WAL or journal either (a reader may leave an
            // empty WAL and its index behind, as SQLite does).
            for suffix in ["-wal", "-journal"] {
                let side = PathBuf::from(format!("{}{suffix}", path.display()));
                let size = std::fs::metadata(&side).map(|m| m.len()).unwrap_or(0);
                assert_eq!(size, 0, "{name}: {} holds changes", side.display());
            }
        }

        if case.fresh {
            let fresh = Workspace::new(&base);
            let out = run_case(&fresh, case, index);
            assert_one_line(case, &out, "without a catalog");
            let path = fresh.catalog_path();
            if path.exists() {
                let data = dump(&path);
                for table in DATA_TABLES {
                    assert!(
                        data[table].is_empty(),
                        "{name}: a fresh catalog got {table} rows: {:?}",
                        data[table]
                    );
                }
            }
        }
    }
    // The config file the catalog path ran into is intact.
    assert_eq!(std::fs::read_to_string(f.ws.config_path()).unwrap(), base);
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
