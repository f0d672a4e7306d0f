//! `slotfill serve` (issue 10): the real process driven over HTTP, against the
//! real S3 server, the Misskey emulator, a local webhook receiver and a real
//! browser. Effects are asserted where they happen: run records and slot
//! states in the catalog, objects in the buckets, calls at the emulator,
//! posts at the webhook, the rendered page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::misskey::{EmulatorConfig, Fault, MisskeyEmulator, NoteSpec};
use crate::support::s3::S3Server;
use crate::support::*;

const TOKEN: &str = "serve-test-token-8c1f";

/// A running `slotfill serve`; killed on drop if the test did not stop it.
struct Serve {
    child: Option<Child>,
    addr: String,
    logs: Arc<Mutex<String>>,
}

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

impl Serve {
    fn start(ws: &Workspace, env: &[(&str, &str)]) -> Serve {
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// A request with `Connection: close`; `body` is JSON unless it is empty.
    fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(&self.addr).expect("connect to serve");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        read_reply(stream)
    }

    fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, token, b"")
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.request("POST", path, token, body.to_string().as_bytes())
    }

    /// Polls a run until it is no longer running; returns its record.
    fn wait_run(&self, id: i64, token: Option<&str>) -> Value {
        let mut last = Value::Null;
        wait_for(&format!("run {id} to finish"), || {
            last = self.get(&format!("/api/runs/{id}"), token).json();
            last["state"] != "running"
        });
        last
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
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
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_reply(mut stream: TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Polls `done` every 50 ms; fails after a minute.
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A dataset `jp` on fresh buckets (primary `m/`, complement `c/`), its origin
/// the emulator; `extra` is appended (more tables), `dataset_keys` go into `[datasets.jp]`.
struct Fixture {
    ws: Workspace,
    emulator: MisskeyEmulator,
    primary: String,
    complement: String,
}

fn fixture(dataset_keys: &str, extra: &str) -> Fixture {
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
    Fixture {
        ws: Workspace::new(&config),
        emulator,
        primary,
        complement,
    }
}

impl Fixture {
    fn put_primary(&self, slot: i64) {
        S3Server::shared().put(
            &self.primary,
            &format!("m/{}", key_of(slot)),
            &jsonl(10, 100),
        );
    }

    fn notes_at(&self, slot: i64, n: i64) {
        self.emulator.add_notes(
            (0..n).map(|i| NoteSpec::public_local((slot + 30 + i * 40) * 1000, "ノート")),
        );
    }

    fn state(&self, slot: i64) -> Option<String> {
        self.ws
            .catalog()
            .query_row(
                "SELECT state FROM slots WHERE slot_start = ?1",
                [slot],
                |r| r.get(0),
            )
            .ok()
    }

    fn complement_object(&self, slot: i64) -> Option<Vec<u8>> {
        S3Server::shared().get(&self.complement, &format!("c/{}", key_of(slot)))
    }
}

#[test]
fn serve_runs_events_metrics_and_dashboard_over_http() {
    let f = fixture("", "");
    let first = AUG1_JST;
    let slot = |i: i64| first + i * SLOT;
    f.put_primary(slot(0));
    f.put_primary(slot(1));
    for i in 2..6 {
        f.notes_at(slot(i), 5);
    }
    let mut serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_API_TOKEN", TOKEN),
            ("SLOTFILL_NOW", "2025-08-02T12:00:00+09:00"),
        ],
    );
    let token = Some(TOKEN);

    // Probes need no token; everything else does, compared exactly.
    let health = serve.get("/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let window = json!({"start": arg_time(slot(0)), "end": arg_time(slot(5))});
    for bad in [None, Some("wrong"), Some("serve-test-token-8c1")] {
        assert_eq!(
            serve.post("/api/datasets/jp/runs", bad, &window).status,
            401
        );
        assert_eq!(serve.get("/metrics", bad).status, 401);
        assert_eq!(serve.get("/api/runs/1", bad).status, 401);
    }
    // Bodies over 1 MiB are refused before they are read.
    let huge = Reply::from_oversized(&serve);
    assert_eq!(huge.status, 413, "{huge:?}");
    // Bad input: one line, 400; an unknown dataset: 404.
    for body in [
        json!({"start": "yesterday", "end": "-1d"}),
        json!({"start": "-1d"}),
        json!({"start": "-1d", "end": "-2d", "date": "2025-08-01"}),
        json!({"start": "-2d", "end": "-1d", "colour": "red"}),
    ] {
        let reply = serve.post("/api/datasets/jp/runs", token, &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let message = reply.json()["error"].as_str().unwrap().to_string();
        assert!(!message.is_empty() && !message.contains('\n'), "{message}");
    }
    assert_eq!(
        serve.post("/api/datasets/nope/runs", token, &window).status,
        404
    );

    // A triggered run: 202 with its id; a second one meanwhile is 409. The probe
    // is slowed and the first slot's call rate-limited, so the first run is still
    // in progress when the second arrives.
    f.emulator.fail_next([
        Fault::Slow(Duration::from_secs(2)),
        Fault::RateLimit {
            retry_after_secs: None,
            with_info: false,
        },
    ]);
    let started = serve.post("/api/datasets/jp/runs", token, &window);
    assert_eq!(started.status, 202, "{}", started.body);
    assert!(started.head.contains("/api/runs/"), "{}", started.head);
    let run_id = started.json()["run_id"].as_i64().unwrap();
    let second = serve.post(
        "/api/datasets/jp/runs?date=2025-08-01&days=1",
        token,
        &json!({}),
    );
    assert_eq!(second.status, 409, "{}", second.body);
    assert!(
        second.json()["error"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );
    let record = serve.wait_run(run_id, token);
    assert_eq!(record["state"], "finished", "{record}");
    assert_eq!(record["outcome"], "ok", "{record}");
    assert_eq!(record["exit_status"], 0);
    assert_eq!(record["command"], "run");
    assert_eq!(record["missing_before"], 4);
    assert_eq!(record["filled"], 4);
    assert_eq!(record["still_missing"], 0);
    assert_eq!(record["window_start"], local_iso(slot(0)));
    for i in 2..6 {
        let object = f.complement_object(slot(i)).expect("filled object");
        assert_eq!(String::from_utf8_lossy(&object).lines().count(), 5);
        assert_eq!(f.state(slot(i)).as_deref(), Some("ok"));
    }
    assert_eq!(serve.get("/api/runs/999999", token).status, 404);

    // The date form schedulers send works once the dataset is free.
    let by_date = serve.post(
        "/api/datasets/jp/runs?date=2025-08-01&days=1&dry_run=true",
        token,
        &json!({}),
    );
    assert_eq!(by_date.status, 202, "{}", by_date.body);
    let dry = serve.wait_run(by_date.json()["run_id"].as_i64().unwrap(), token);
    assert_eq!(dry["outcome"], "dry_run");
    assert_eq!(dry["window_start"], "2025-08-01T00:00:00+09:00");
    assert_eq!(dry["window_end"], "2025-08-01T23:50:00+09:00");

    // The gaps endpoint answers what `gaps --format json` prints.
    let (start, end) = (arg_time(slot(0)), arg_time(slot(143)));
    let api = serve.get(
        &format!("/api/datasets/jp/gaps?start={start}&end={end}"),
        token,
    );
    assert_eq!(api.status, 200, "{}", api.body);
    let cli =
        f.ws.slotfill(&[
            "gaps", "-d", "jp", "--start", &start, "--end", &end, "--format", "json",
        ])
        .ok();
    let cli: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(api.json(), cli);
    assert_eq!(cli["slots_not_ok"], 138, "{cli}");

    // Storage events: an object written to the primary (AWS shape) makes its
    // slot ok with one HEAD and one GET of that object, no listing.
    let s3 = S3Server::shared();
    let key = format!("m/{}", key_of(slot(6)));
    assert_eq!(f.state(slot(6)).as_deref(), Some("missing"));
    f.put_primary(slot(6));
    let etag = s3.etag(&f.primary, &key).unwrap();
    let created = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": f.primary}, "object": {"key": key, "size": jsonl(10, 100).len(), "eTag": etag.trim_matches('"')}}
    }]});
    s3.reset_counts(&f.primary);
    let applied = serve.post("/api/events/s3", token, &created);
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert_eq!(
        applied.json(),
        json!({"applied": 1, "ignored": 0, "unchanged": 0})
    );
    assert_eq!(f.state(slot(6)).as_deref(), Some("ok"));
    let counts = s3.counts(&f.primary);
    assert_eq!(
        (counts.list, counts.head, counts.get),
        (0, 1, 1),
        "{counts:?}"
    );
    // A replay changes nothing and reads nothing: the ETag is known.
    let counted_at = |ws: &Workspace| -> String {
        ws.catalog()
            .query_row(
                "SELECT counted_at FROM objects WHERE key = ?1",
                [key_of(slot(6))],
                |r| r.get(0),
            )
            .unwrap()
    };
    let before = counted_at(&f.ws);
    let replay = serve.post("/api/events/s3", token, &created);
    assert_eq!(
        replay.json(),
        json!({"applied": 1, "ignored": 0, "unchanged": 1})
    );
    assert_eq!(s3.counts(&f.primary), counts, "a replay reads nothing");
    assert_eq!(counted_at(&f.ws), before);

    // A MinIO-shaped delete turns an old slot red at once; records for other
    // buckets or foreign keys are ignored and counted.
    s3.delete(&f.primary, &format!("m/{}", key_of(slot(0))));
    let encoded = format!("m/{}", key_of(slot(0))).replace('/', "%2F");
    let removed = json!({
        "EventName": "s3:ObjectRemoved:Delete",
        "Key": format!("{}/{encoded}", f.primary),
        "Records": [
            {"eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectRemoved:Delete",
             "s3": {"bucket": {"name": f.primary}, "object": {"key": encoded, "sequencer": "18"}}},
            {"eventName": "s3:ObjectCreated:Put",
             "s3": {"bucket": {"name": "someone-elses-bucket"}, "object": {"key": encoded, "size": 5, "eTag": "x"}}},
            {"eventName": "s3:ObjectCreated:Put",
             "s3": {"bucket": {"name": f.primary}, "object": {"key": "m/README.txt", "size": 5, "eTag": "x"}}}
        ]
    });
    let answer = serve.post("/api/events/s3", token, &removed);
    assert_eq!(
        answer.json(),
        json!({"applied": 1, "ignored": 2, "unchanged": 0})
    );
    assert_eq!(f.state(slot(0)).as_deref(), Some("missing"));
    let not_event = serve.post("/api/events/s3", token, &json!({"hello": "world"}));
    assert_eq!(not_event.status, 400);

    // Metrics: the contract's names and labels, from the catalog and this process.
    let metrics = serve.get("/metrics", token);
    assert_eq!(metrics.status, 200);
    for expected in [
        "slotfill_slots{dataset=\"jp\",state=\"ok\"} 6.0".to_string(),
        "slotfill_slots{dataset=\"jp\",state=\"missing\"} 138.0".to_string(),
        "slotfill_fill_attempts_total{dataset=\"jp\",outcome=\"filled\"} 4".to_string(),
        "slotfill_origin_rate_limited_total{dataset=\"jp\"} 1".to_string(),
        format!(
            "slotfill_newest_valid_slot_timestamp_seconds{{dataset=\"jp\"}} {}.0",
            slot(6)
        ),
        "slotfill_s3_events_total{outcome=\"ignored\"} 2".to_string(),
    ] {
        assert!(
            metrics.body.contains(&expected),
            "{expected} in\n{}",
            metrics.body
        );
    }
    let calls = f.emulator.calls();
    assert!(
        metrics.body.contains(&format!(
            "slotfill_origin_calls_total{{dataset=\"jp\"}} {calls}"
        )),
        "{calls} calls in\n{}",
        metrics.body
    );
    assert!(
        metrics.body.lines().any(|l| l.starts_with(
            "slotfill_last_run_timestamp_seconds{dataset=\"jp\",command=\"run\",outcome=\"ok\"}"
        )),
        "{}",
        metrics.body
    );

    // The dashboard, in a real browser.
    let dashboard = serve.get("/", None);
    assert_eq!(dashboard.status, 200);
    check_dashboard_in_browser(&serve.url("/"), run_id);

    assert_eq!(serve.terminate(), 0, "{}", serve.logs());
    // The token never reaches the logs, the catalog or the page.
    assert!(!serve.logs().contains(TOKEN));
    assert!(!dashboard.body.contains(TOKEN));
    let leaked = f.ws.query_i64(&format!(
        "SELECT COUNT(*) FROM runs WHERE args LIKE '%{TOKEN}%' OR error LIKE '%{TOKEN}%'"
    ));
    assert_eq!(leaked, 0);
}

impl Reply {
    /// Declares a 2 MiB body and sends its first part: the answer comes from
    /// the declared length alone.
    fn from_oversized(serve: &Serve) -> Reply {
        let mut stream = TcpStream::connect(&serve.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let head = format!(
            "POST /api/events/s3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            2 << 20
        );
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(&vec![b' '; 64 * 1024]);
        read_reply(stream)
    }
}

/// Loads the page in headless Chromium: asserts on the rendered DOM and keeps
/// a screenshot under target/.
fn check_dashboard_in_browser(url: &str, run_id: i64) {
    let Some(browser) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| which(b))
    else {
        eprintln!(
            "SKIPPED the browser check of the dashboard: Chromium is not installed and could not be \
             (bash scripts/install-test-deps.sh installs it from Debian's packages as root)"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[String]| {
        let mut command = std::process::Command::new(browser);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1280,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        command.output().expect("run chromium")
    };
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom".to_string()]).stdout).into_owned();
    for expected in [
        "<h2>jp</h2>",
        "Slots by state",
        "Coverage, last 14 days",
        "Open gaps",
        "Recent runs",
        "No run in progress.",
    ] {
        assert!(
            dom.contains(expected),
            "{expected:?} in the rendered page:\n{dom}"
        );
    }
    let doc = dom.replace("&nbsp;", " ");
    let cells = doc.matches("class=\"slot ").count();
    assert!(
        cells >= 144,
        "the heatmap draws the catalogued slots ({cells})"
    );
    assert!(doc.contains("slot ok-complement"), "filled slots are drawn");
    assert!(
        doc.contains(&format!("<td>{run_id}</td><td>run</td>")),
        "the run is listed"
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Collects the bodies posted to it.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let posts = Arc::new(Mutex::new(Vec::new()));
    let received = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            let body = loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&data).into_owned();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    break Some(text[end + 4..].to_string());
                }
            };
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if let Some(body) = body {
                received.lock().unwrap().push(body);
            }
        }
    });
    (url, posts)
}

fn metric(serve: &Serve, line_start: &str) -> f64 {
    let body = serve.get("/metrics", None).body;
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_watch_alerts_once_fills_an_overdue_slot_and_says_when_it_recovered() {
    let (hook, posts) = webhook_receiver();
    let f = fixture(
        &format!("notify_webhook = \"{hook}\"\n"),
        "[datasets.jp.freshness]\ngrace = \"15m\"\ncheck_every = \"1s\"\nalert_after = \"30m\"\nfill = true\n",
    );
    // 2025-08-14 00:00 JST; now is 01:00. The collector wrote 00:00, 00:10,
    // 00:30 and 00:40; 00:20 ended at 00:30, so it is overdue since 00:45.
    let day = AUG1_JST + 13 * 86_400;
    let slot = |i: i64| day + i * SLOT;
    for i in [0, 1, 3, 4] {
        f.put_primary(slot(i));
    }
    f.notes_at(slot(2), 7);
    let serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", "2025-08-14T01:00:00+09:00")]);

    wait_for("the alert and the recovery", || {
        posts.lock().unwrap().len() >= 2
    });
    let object = f
        .complement_object(slot(2))
        .expect("the overdue slot was filled");
    assert_eq!(String::from_utf8_lossy(&object).lines().count(), 7);
    assert_eq!(f.state(slot(2)).as_deref(), Some("ok"));
    // Not overdue: the slots that have not ended plus the settle delay.
    assert_eq!(f.state(slot(5)).as_deref(), Some("pending"));
    let messages: Vec<Value> = posts
        .lock()
        .unwrap()
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let alert = messages[0]["content"].as_str().unwrap();
    assert!(
        alert.contains("jp") && alert.contains("1 slot overdue: 2025-08-14T00:20:00+09:00"),
        "{alert}"
    );
    assert!(
        alert.contains("10 min old"),
        "the age of the newest valid object: {alert}"
    );
    assert_eq!(messages[0]["slotfill"]["status"], "overdue");
    assert_eq!(
        messages[1]["slotfill"]["status"], "recovered",
        "{}",
        messages[1]
    );
    let fill_runs = f.ws.query_i64(
        "SELECT COUNT(*) FROM runs WHERE command = 'fill' AND outcome = 'ok' AND args LIKE '%watch%'",
    );
    assert_eq!(fill_runs, 1);

    // Three more checks later: still one alert and one recovery.
    let checks = metric(&serve, "slotfill_watch_checks_total{dataset=\"jp\"}");
    wait_for("three more checks", || {
        metric(&serve, "slotfill_watch_checks_total{dataset=\"jp\"}") >= checks + 3.0
    });
    assert_eq!(
        posts.lock().unwrap().len(),
        2,
        "{:?}",
        posts.lock().unwrap()
    );
    assert_eq!(
        metric(&serve, "slotfill_overdue_slots{dataset=\"jp\"}"),
        0.0
    );
    // The watch listed only the newest day's prefix.
    let days: Vec<String> = {
        let c = f.ws.catalog();
        let mut stmt = c.prepare("SELECT DISTINCT day FROM listings").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(days, ["2025-08-14"]);
}

#[test]
fn a_schedule_fires_once_per_due_time_in_the_datasets_offset() {
    // The clock starts at 03:13 JST and runs 60 times faster than real time:
    // the due times 03:15, 03:18 and 03:21 come 2, 5 and 8 seconds later. In
    // UTC the same cron would be due at 12:15 JST, long after the test.
    let f = fixture(
        "",
        "[[serve.schedule]]\ndataset = \"jp\"\ncron = \"15,18,21 3 * * *\"\nstart = \"-1h\"\nend = \"-40m\"\n",
    );
    let morning = AUG1_JST + 13 * 86_400 + 2 * 3600;
    for i in 0..7 {
        f.put_primary(morning + i * SLOT);
    }
    let mut serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_NOW", "2025-08-14T03:13:00+09:00"),
            ("SLOTFILL_CLOCK_SPEED", "60"),
        ],
    );
    let finished = || {
        f.ws.query_i64(
            "SELECT COUNT(*) FROM runs WHERE args LIKE '%schedule%' AND finished_at IS NOT NULL",
        )
    };
    wait_for("three scheduled runs", || finished() >= 3);
    assert_eq!(serve.terminate(), 0, "{}", serve.logs());
    let runs: Vec<(String, String, String, String)> = {
        let c = f.ws.catalog();
        let mut stmt = c
            .prepare("SELECT args, started_at, window_start, outcome FROM runs WHERE args LIKE '%schedule%' ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let dues: Vec<&str> = runs
        .iter()
        .map(|(args, ..)| args.rsplit("due ").next().unwrap())
        .collect();
    assert_eq!(
        dues,
        [
            "2025-08-14T03:15:00+09:00",
            "2025-08-14T03:18:00+09:00",
            "2025-08-14T03:21:00+09:00"
        ],
        "{}",
        serve.logs()
    );
    for ((_, started, window_start, outcome), due) in runs.iter().zip(dues) {
        assert_eq!(outcome, "ok");
        // Each run starts after its due time, its window relative to it.
        let due = chrono::DateTime::parse_from_rfc3339(due).unwrap();
        let started = chrono::DateTime::parse_from_rfc3339(started).unwrap();
        assert!(started >= due, "{started} before {due}");
        let expected = due - chrono::Duration::hours(1);
        let expected =
            chrono::DateTime::from_timestamp(expected.timestamp() / SLOT * SLOT, 0).unwrap();
        assert_eq!(window_start, &local_iso(expected.timestamp()));
    }
}

#[test]
fn sigterm_during_a_fill_leaves_a_catalog_that_the_next_run_completes() {
    let f = fixture("", "");
    let first = AUG1_JST + 60 * SLOT;
    for i in 0..8 {
        f.notes_at(first + i * SLOT, 3);
    }
    // Every origin call takes 500 ms: the run is well inside its fill when stopped.
    f.emulator
        .fail_every(1, Fault::Slow(Duration::from_millis(500)));
    let mut serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", "2025-08-02T12:00:00+09:00")]);
    let window = json!({"start": arg_time(first), "end": arg_time(first + 7 * SLOT)});
    let started = serve.post("/api/datasets/jp/runs", None, &window);
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id = started.json()["run_id"].as_i64().unwrap();
    wait_for("a slot filled", || {
        let record = serve.get(&format!("/api/runs/{run_id}"), None).json();
        record["progress"]["slots_attempted"].as_u64().unwrap_or(0) >= 1
    });
    // The dashboard shows the run in progress and how far it got.
    let page = serve.get("/", None).body;
    assert!(
        page.contains(&format!("In progress: run #{run_id} — filling;")),
        "{page}"
    );
    assert!(page.contains("attempted so far"), "{page}");
    assert_eq!(serve.terminate(), 0, "{}", serve.logs());
    let outcome: String =
        f.ws.catalog()
            .query_row("SELECT outcome FROM runs WHERE id = ?1", [run_id], |r| {
                r.get(0)
            })
            .unwrap();
    assert_eq!(outcome, "interrupted");
    let ok =
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'ok'");
    assert!((1..8).contains(&ok), "{ok} slots filled before the stop");

    f.emulator.fail_every(0, Fault::Slow(Duration::ZERO));
    f.ws.slotfill(&[
        "run",
        "-d",
        "jp",
        "--start",
        &arg_time(first),
        "--end",
        &arg_time(first + 7 * SLOT),
    ])
    .ok();
    for i in 0..8 {
        assert!(f.complement_object(first + i * SLOT).is_some(), "slot {i}");
    }
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'ok'"),
        8
    );
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_a_token() {
    let f = fixture("", "");
    let run = f.ws.slotfill(&["serve", "--listen", "0.0.0.0:0"]).code(2);
    assert!(run.stderr.contains("SLOTFILL_API_TOKEN"), "{}", run.stderr);
    let bad_cron = fixture(
        "",
        "[[serve.schedule]]\ndataset = \"jp\"\ncron = \"15 3 * * * *\"\nstart = \"-3d\"\nend = \"-1d\"\n",
    );
    let run = bad_cron.ws.slotfill(&["serve"]).code(2);
    assert!(
        run.stderr.contains("serve.schedule[0]") && run.stderr.contains("5"),
        "{}",
        run.stderr
    );
}
