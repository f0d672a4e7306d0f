//! The bad-input harness: a dataset on S3 with history in every catalog table,
//! cases (a command line, a config, an environment, the exit code and message
//! expected, what the case may change), and [`run_cases`], which runs each case
//! against that catalog (and, where it makes sense, without one) and checks
//! one line on stderr, nothing on stdout, and the catalog kept row for row.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::catalog_dump::{Dump, dump};
use super::misskey::{EmulatorConfig, MisskeyEmulator, mixed_notes};
use super::s3::S3Server;
use super::*;

/// Tables that hold facts; they must never change on bad input.
const AUDIT_TABLES: [&str; 2] = ["runs", "fill_attempts"];
/// Tables that hold data (as opposed to a dataset's registration and the run log).
const DATA_TABLES: [&str; 4] = ["objects", "listings", "slots", "fill_attempts"];

/// What a case may do to the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// Nothing at all.
    None,
    /// Append one `failed` run (and `failed` fill attempts), nothing else.
    FailedRun,
}

/// Something to do before a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    None,
    /// Remove the dataset's bucket, as if it had been deleted or renamed.
    DeleteBucket,
}

pub struct Case {
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

pub fn case<S: AsRef<str>>(
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
    pub fn config(mut self, text: String) -> Self {
        self.config = Config::Text(text);
        self
    }
    pub fn no_config(mut self) -> Self {
        self.config = Config::Absent;
        self
    }
    pub fn env(mut self, key: &'static str, value: &str) -> Self {
        self.env.push((key, value.to_string()));
        self
    }
    pub fn trace(mut self, trace: Trace) -> Self {
        self.trace = trace;
        self
    }
    pub fn catalog_file(mut self, path: PathBuf) -> Self {
        self.catalog_file = Some(path);
        self.fresh = false;
        self
    }
    pub fn not_fresh(mut self) -> Self {
        self.fresh = false;
        self
    }
    pub fn setup(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }
}

pub const TOKEN: &str = "the-right-token-3141";

pub struct Fixture {
    pub ws: Workspace,
    pub base_config: String,
    _emulator: MisskeyEmulator,
    pub bucket: String,
    first: i64,
    last: i64,
}

/// A dataset on S3 with history: primary and complement in one bucket, six
/// slots (three ok, one too small, two missing), scanned, one slot filled
/// from an origin that demands a token, verified. Every table has rows.
pub fn fixture() -> Fixture {
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
    pub fn window(&self) -> Vec<String> {
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
    pub fn windowed(&self, command: &str, extra: &[&str]) -> Vec<String> {
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
pub fn closed_port() -> u16 {
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
        match v.is_empty() {
            // An empty value stands for "not set at all".
            true => command.env_remove(k),
            false => command.env(k, v),
        };
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
pub fn catalog_variants(f: &Fixture) -> (PathBuf, PathBuf, PathBuf) {
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

/// Runs every case in order against the fixture's catalog (and in a fresh
/// workspace where the case allows): one line, the code, the catalog kept.
pub fn run_cases(f: &Fixture, cases: &[Case]) {
    let base = &f.base_config;
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
            let fresh = Workspace::new(base);
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
}
