//! `slotfill serve` as the soak and the event storm drive it: started as a
//! child process (its output appended to a log file, its port read from the
//! line it prints), asked over plain HTTP/1.1, stopped with SIGTERM or killed
//! with SIGKILL, and measured from /proc (resident memory, open descriptors).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::s3;

/// The API token the benches configure.
pub const TOKEN: &str = "bench-serve-token-31c7";

pub struct ServeProc {
    child: Option<Child>,
    pub addr: String,
    pub pid: u32,
}

impl ServeProc {
    /// Starts `slotfill --config CONFIG serve --listen 127.0.0.1:0` with `env`;
    /// everything it prints is appended to `log`.
    pub fn start(
        slotfill: &Path,
        config: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> ServeProc {
        let mut command = Command::new(slotfill);
        command
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(std::env::var_os("SLOTFILL_BENCH_VERBOSE").map(|_| "-v"))
            .current_dir(config.parent().expect("config dir"))
            .env_remove("RUST_LOG")
            .env("SLOTFILL_API_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        with_bench_s3(&mut command);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start slotfill serve");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for (stream, tx) in [
            (Box::new(out) as Box<dyn Read + Send>, Some(tx)),
            (Box::new(err), None),
        ] {
            let log = log.to_path_buf();
            std::thread::spawn(move || copy_lines(stream, &log, tx));
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("serve did not start; see {}", log.display()));
        ServeProc {
            child: Some(child),
            addr,
            pid,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL: nothing is cleaned up, as after a crash or an OOM kill.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit code (-1 when it had to be killed after a minute).
    pub fn terminate(&mut self) -> i32 {
        let Some(mut child) = self.child.take() else {
            return -1;
        };
        // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return -1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident memory in KiB (VmRSS), 0 when gone.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors, 0 when gone.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn copy_lines(stream: Box<dyn Read + Send>, log: &Path, port: Option<mpsc::Sender<String>>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the serve log");
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if let (Some(tx), Some(rest)) = (&port, line.split("listening on http://").nth(1)) {
            let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
        }
        let _ = writeln!(file, "{line}");
    }
}

/// One HTTP/1.1 exchange (`Connection: close`): the status and the body; an
/// error when nothing answered (the process is down).
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Connection", "close"),
    ];
    let within = Duration::from_secs(60);
    let reply = crate::http::try_exchange(addr, method, path, &headers, body, within)?;
    Ok((reply.status, reply.body))
}

/// An AWS-shaped `ObjectCreated:Put` (or `ObjectRemoved:Delete`) record.
pub fn s3_event(bucket: &str, key: &str, created: Option<(&str, u64)>) -> serde_json::Value {
    let object = match created {
        Some((etag, size)) => {
            serde_json::json!({"key": key, "size": size, "eTag": etag.trim_matches('"')})
        }
        None => serde_json::json!({"key": key}),
    };
    let name = if created.is_some() {
        "ObjectCreated:Put"
    } else {
        "ObjectRemoved:Delete"
    };
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": object}
    }]})
}

/// The credentials of the bench's S3 server (and no instance metadata lookups).
fn with_bench_s3(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .env("AWS_REGION", s3::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// `slotfill --config CONFIG COMMAND -d DATASET --start … --end …` over the slots
/// `first..=last` (Unix times), against the bench's S3 server, with the clock at `now`.
pub fn windowed(
    slotfill: &Path,
    config: &Path,
    command: &str,
    dataset: &str,
    (first, last): (i64, i64),
    now: &str,
) -> std::process::Output {
    let mut cmd = Command::new(slotfill);
    cmd.arg("--config").arg(config).args([
        command,
        "-d",
        dataset,
        "--start",
        &jst_minute(first),
        "--end",
        &jst_minute(last),
    ]);
    with_bench_s3(&mut cmd)
        .env("SLOTFILL_NOW", now)
        .output()
        .unwrap_or_else(|e| panic!("run slotfill {command}: {e}"))
}

/// A Unix time as the command line's `--start`/`--end` take it in the benches' +09:00 datasets.
fn jst_minute(t: i64) -> String {
    chrono::DateTime::from_timestamp(t + 9 * 3600, 0)
        .expect("time")
        .naive_utc()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// A fresh directory for a bench's config, catalog and log.
pub fn work_dir(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    let config = dir.path().join("slotfill.toml");
    (dir, config)
}
