//! Helpers shared by the integration tests: a workspace per test (config,
//! catalog, local dirs), running the real `slotfill` binary, and test data.
#![allow(dead_code)]

pub mod bad_input;
pub mod bodies;
pub mod catalog_dump;
pub mod fediverse;
pub mod http;
pub mod mastodon;
pub mod misskey;
pub mod origin;
pub mod rss;
pub mod s3;
pub mod seeded;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::Connection;

pub const TEMPLATE: &str = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl";
/// 2025-08-01T00:00:00+09:00 in Unix seconds.
pub const AUG1_JST: i64 = 1_753_974_000;
pub const SLOT: i64 = 600;

/// Small rules so test objects stay small.
pub const RULES: &str = "[datasets.jp.rules]\nmin_bytes = 200\nmin_lines = 3\nmax_lines = 40\n";

/// The result of one `slotfill` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "slotfill failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, expected: i32) -> Run {
        assert_eq!(
            self.code, expected,
            "unexpected exit code:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A temporary directory holding a config file and the catalog.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Workspace {
    pub fn new(config: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let ws = Workspace {
            dir,
            env: Vec::new(),
        };
        ws.write_config(config);
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("slotfill.toml")
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.path().join("slotfill.db")
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config_path(), config).expect("write config");
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The command to run `slotfill` in this workspace (for tests that need a handle).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.bare_command();
        command.arg("--config").arg(self.config_path()).args(args);
        command
    }

    /// The command without this workspace's `--config`.
    pub fn bare_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_slotfill"));
        command
            .current_dir(self.path())
            .env_remove("RUST_LOG")
            .env_remove("MISSKEY_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .env("AWS_REGION", s3::REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // No ~/.aws of the machine leaks in.
            .env("HOME", self.path())
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    pub fn slotfill(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run slotfill");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn catalog(&self) -> Connection {
        Connection::open(self.catalog_path()).expect("open catalog")
    }

    /// One value from the catalog.
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.catalog().query_row(sql, [], |r| r.get(0)).expect(sql)
    }
}

/// The config of a dataset `jp` on S3 at the shared test server.
pub fn s3_config(primary: &str, backups: &[&str], complement: Option<&str>, extra: &str) -> String {
    let server = s3::S3Server::shared();
    let backups = backups
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let complement = complement
        .map(|c| format!("complement = \"{c}\"\n"))
        .unwrap_or_default();
    format!(
        "catalog = \"slotfill.db\"\n[s3]\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\nforce_path_style = true\n\
         [datasets.jp]\nslot_minutes = 10\nutc_offset = \"+09:00\"\nkey_template = \"{TEMPLATE}\"\n\
         primary = \"{primary}\"\nbackup = [{backups}]\n{complement}{RULES}{extra}",
        server.endpoint()
    )
}

/// A key of the reference layout for a slot start.
pub fn key_of(slot: i64) -> String {
    let t = chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
        .expect("time")
        .naive_utc();
    t.format("%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl").to_string()
}

/// `2025-08-01T00:40:00+09:00` for a slot start.
pub fn local_iso(slot: i64) -> String {
    let t = chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
        .expect("time")
        .naive_utc();
    format!("{}+09:00", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// `--start`/`--end` argument for a slot start.
pub fn arg_time(slot: i64) -> String {
    local_iso(slot)[..16].to_string()
}

/// A JSON Lines body of `lines` lines, each about `width` bytes.
pub fn jsonl(lines: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..lines {
        let pad = "x".repeat(width.saturating_sub(30));
        out.extend_from_slice(format!("{{\"id\":\"n{i:06}\",\"t\":\"{pad}\"}}\n").as_bytes());
    }
    out
}

/// A JSON Lines body of exactly `size` bytes in `lines` lines (each at least 24 bytes).
pub fn jsonl_of_size(lines: usize, size: usize) -> Vec<u8> {
    let empty = jsonl(lines, 0).len();
    assert!(size >= empty, "{lines} lines need at least {empty} bytes");
    let (pad, extra) = ((size - empty) / lines, (size - empty) % lines);
    let mut out = Vec::with_capacity(size);
    for i in 0..lines {
        let x = "x".repeat(pad + usize::from(i < extra));
        out.extend_from_slice(format!("{{\"id\":\"n{i:06}\",\"t\":\"{x}\"}}\n").as_bytes());
    }
    assert_eq!(out.len(), size);
    out
}

/// The number a command's summary prints after `label` (`"retries: "`).
pub fn summary_number(stdout: &str, label: &str) -> i64 {
    stdout
        .split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{stdout}"))
}

/// Parses `gaps --format csv` into (slot_start, status) pairs.
pub fn gaps_csv(stdout: &str) -> Vec<(String, String)> {
    let mut lines = stdout.lines();
    let header = lines.next().expect("csv header");
    assert!(
        header.starts_with("slot_start,status"),
        "csv header: {header}"
    );
    lines
        .map(|l| {
            let mut fields = l.split(',');
            (
                fields.next().unwrap().to_string(),
                fields.next().unwrap().to_string(),
            )
        })
        .collect()
}
