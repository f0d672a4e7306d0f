//! Helpers for the tests of `slotfill serve`: the real process (started,
//! asked over a real socket, stopped with SIGTERM or killed with SIGKILL), a
//! webhook receiver that keeps every body posted to it, a dataset on fresh
//! buckets with the Misskey emulator as its origin, and headless Chromium.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http;
pub use super::http::{Reply, Webhook};
use super::misskey::{EmulatorConfig, MisskeyEmulator, NoteSpec};
use super::s3::S3Server;
use super::{Workspace, jsonl, key_of, s3_config};

/// The API token the tests configure (`SLOTFILL_API_TOKEN`).
pub const TOKEN: &str = "serve-test-token-8c1f";

/// A running `slotfill serve`; killed on drop if the test did not stop it.
pub struct Serve {
    child: Option<Child>,
    pub addr: String,
    logs: Arc<Mutex<String>>,
}

impl Serve {
    /// `slotfill -v serve --listen 127.0.0.1:0` in the workspace, with `env`.
    pub fn start(ws: &Workspace, env: &[(&str, &str)]) -> Serve {
        let mut command = ws.command(&["-v", "serve", "--listen", "127.0.0.1:0"]);
        for (k, v) in env {
            command.env(k, v);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start slotfill serve");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out_logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                out_logs.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let stderr = child.stderr.take().unwrap();
        let err_logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                err_logs.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start:\n{}", logs.lock().unwrap());
            }
        };
        Serve {
            child: Some(child),
            addr,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// A request with `Connection: close`; `headers` are added as given.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        http::exchange(&self.addr, method, path, headers, body)
    }

    /// A JSON request, with the bearer token if given.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        self.send(method, path, &headers, body)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, token, b"")
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.request("POST", path, token, body.to_string().as_bytes())
    }

    /// Polls a run until it is no longer running; returns its record.
    pub fn wait_run(&self, id: i64, token: Option<&str>) -> Value {
        let mut last = Value::Null;
        wait_for(&format!("run {id} to finish"), || {
            last = self.get(&format!("/api/runs/{id}"), token).json();
            last["state"] != "running"
        });
        last
    }

    /// A metric's value, 0 when absent.
    pub fn metric(&self, line_start: &str, token: Option<&str>) -> f64 {
        let body = self.get("/metrics", token).body;
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("serve did not stop after SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash or an OOM kill ends it: nothing is cleaned up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` every 50 ms; fails after a minute.
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A dataset `jp` on fresh buckets (primary `m/`, complement `c/`), its origin
/// the emulator.
pub struct ServeFixture {
    pub ws: Workspace,
    pub emulator: MisskeyEmulator,
    pub primary: String,
    pub complement: String,
}

impl ServeFixture {
    /// `dataset_keys` go into `[datasets.jp]`; `extra` is appended (more tables).
    pub fn new(dataset_keys: &str, extra: &str) -> ServeFixture {
        let server = S3Server::shared();
        let (primary, complement) = (
            server.new_bucket("serve-primary"),
            server.new_bucket("serve-complement"),
        );
        let emulator = MisskeyEmulator::start(EmulatorConfig::default());
        let source = format!(
            "[datasets.jp.source]\nbase_url = \"{}\"\nmode = \"search\"\nrate_limit_wait_cap = 0.5\n{extra}",
            emulator.base_url()
        );
        let config = s3_config(
            &format!("s3://{primary}/m"),
            &[],
            Some(&format!("s3://{complement}/c")),
            &source,
        )
        .replace("[datasets.jp]\n", &format!("[datasets.jp]\n{dataset_keys}"));
        ServeFixture {
            ws: Workspace::new(&config),
            emulator,
            primary,
            complement,
        }
    }

    /// A valid collector object (10 lines) for the slot.
    pub fn put_primary(&self, slot: i64) {
        S3Server::shared().put(
            &self.primary,
            &format!("m/{}", key_of(slot)),
            &jsonl(10, 100),
        );
    }

    /// `n` notes at the origin inside the slot.
    pub fn notes_at(&self, slot: i64, n: i64) {
        self.emulator.add_notes(
            (0..n).map(|i| NoteSpec::public_local((slot + 30 + i * 40) * 1000, "ノート")),
        );
    }

    pub fn state(&self, slot: i64) -> Option<String> {
        self.ws
            .catalog()
            .query_row(
                "SELECT state FROM slots WHERE slot_start = ?1",
                [slot],
                |r| r.get(0),
            )
            .ok()
    }

    pub fn complement_object(&self, slot: i64) -> Option<Vec<u8>> {
        S3Server::shared().get(&self.complement, &format!("c/{}", key_of(slot)))
    }
}

/// Headless Chromium, if installed (scripts/install-test-deps.sh installs it).
pub struct Browser {
    program: &'static str,
    profile: tempfile::TempDir,
}

impl Browser {
    pub fn find() -> Option<Browser> {
        let program = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|b| on_path(b));
        let Some(program) = program else {
            eprintln!(
                "SKIPPED the browser check: Chromium is not installed and could not be \
                 (bash scripts/install-test-deps.sh installs it from Debian's packages as root)"
            );
            return None;
        };
        Some(Browser {
            program,
            profile: tempfile::tempdir().unwrap(),
        })
    }

    fn run(&self, url: &str, extra: &[String]) -> std::process::Output {
        std::process::Command::new(self.program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run chromium")
    }

    /// The DOM after the page loaded.
    pub fn dom(&self, url: &str) -> String {
        let out = self.run(url, &["--dump-dom".to_string()]);
        String::from_utf8_lossy(&out.stdout).replace("&nbsp;", " ")
    }

    /// A PNG of the page under the test binary's target directory; its path.
    pub fn screenshot(&self, url: &str, name: &str) -> std::path::PathBuf {
        let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_file(&shot);
        self.run(url, &[format!("--screenshot={}", shot.display())]);
        let png = std::fs::read(&shot).expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());
        eprintln!("screenshot: {}", shot.display());
        shot
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The server's routes in process: a dataset `jp` on local directories
/// (primary, complement, and an archive standing in for the origin), answered
/// by the router itself through `tower::ServiceExt::oneshot`, with the API
/// token [`TOKEN`] required.
pub struct InProcess {
    pub dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub state: std::sync::Arc<slotfill::serve::AppState>,
    pub router: axum::Router,
}

impl InProcess {
    pub fn new() -> InProcess {
        InProcess::with_source(|dir| {
            let archive = dir.join("archive");
            std::fs::create_dir_all(&archive).unwrap();
            format!(
                "kind = \"archive\"\nlocation = \"file://{}\"\n",
                archive.display()
            )
        })
    }

    /// The same dataset with another origin: `source(dir)` gives the body of
    /// `[datasets.jp.source]`.
    pub fn with_source(source: impl FnOnce(&std::path::Path) -> String) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            format!("file://{}", path.display())
        };
        let config = format!(
            "catalog = \"slotfill.db\"\n[datasets.jp]\nslot_minutes = 10\nutc_offset = \"+09:00\"\n\
             primary = \"{}\"\ncomplement = \"{}\"\n{}\
             [datasets.jp.source]\n{}",
            url("primary"),
            url("complement"),
            super::RULES,
            source(dir.path()),
        );
        let path = dir.path().join("slotfill.toml");
        std::fs::write(&path, config).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = slotfill::config::Config::load(&path).unwrap();
        let mut settings = slotfill::serve::Settings::check(&config, None).unwrap();
        settings.token = Some(TOKEN.to_string());
        slotfill::redact::register_secret(TOKEN);
        let global = slotfill::commands::Global {
            config: path,
            ..Default::default()
        };
        let state = runtime
            .block_on(slotfill::serve::AppState::open(config, global, settings))
            .unwrap();
        let router = slotfill::serve::api::router(state.clone());
        InProcess {
            dir,
            runtime,
            state,
            router,
        }
    }

    /// One request through the router; the status, the headers and the body.
    pub fn call(&self, request: axum::http::Request<axum::body::Body>) -> InReply {
        use tower::ServiceExt;
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let response = router.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            InReply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        })
    }

    /// A request with the token (when `token`), `body` as JSON.
    pub fn send(&self, method: &str, uri: &str, token: bool, body: &[u8]) -> InReply {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if token {
            request = request.header("authorization", format!("Bearer {TOKEN}"));
        }
        self.call(request.body(axum::body::Body::from(body.to_vec())).unwrap())
    }
}

/// An answer from [`InProcess::call`].
#[derive(Debug)]
pub struct InReply {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl InReply {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}
