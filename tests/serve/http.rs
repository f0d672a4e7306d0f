//! The HTTP API end to end, through a real socket: the token guard, the body
//! limit, bad input, runs started and refused, their records, the gaps
//! endpoint and the metrics.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http;
use crate::support::misskey::Fault;
use crate::support::serve::{Reply, Serve, ServeFixture, TOKEN};
use crate::support::*;

#[test]
fn serve_runs_a_window_over_http_and_answers_for_its_catalog() {
    let f = ServeFixture::new("", "");
    let slot = |i: i64| AUG1_JST + i * SLOT;
    f.put_primary(slot(0));
    f.put_primary(slot(1));
    for i in 2..6 {
        f.notes_at(slot(i), 5);
    }
    let serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_API_TOKEN", TOKEN),
            ("SLOTFILL_NOW", "2025-08-02T12:00:00+09:00"),
        ],
    );
    let token = Some(TOKEN);

    // Probes and the API's description need no token; everything else does,
    // compared exactly.
    let health = serve.get("/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(serve.get("/api/openapi.json", None).status, 200);
    let window = json!({"start": arg_time(slot(0)), "end": arg_time(slot(5))});
    for bad in [None, Some("wrong"), Some("serve-test-token-8c1")] {
        let refused = serve.post("/api/datasets/jp/runs", bad, &window);
        assert_eq!(refused.status, 401);
        assert!(refused.json()["error"].as_str().unwrap().contains("token"));
        assert_eq!(serve.get("/metrics", bad).status, 401);
        assert_eq!(serve.get("/api/runs/1", bad).status, 401);
    }
    // Bodies over 1 MiB are refused before they are read.
    let huge = oversized(&serve);
    assert_eq!(huge.status, 413, "{huge:?}");
    assert!(huge.json()["error"].as_str().unwrap().contains("larger"));
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
    let run_id = started.json()["run_id"].as_i64().unwrap();
    assert_eq!(
        started.header("location").as_deref(),
        Some(format!("/api/runs/{run_id}").as_str())
    );
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
    assert_eq!(serve.get("/api/runs/abc", token).status, 400);

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
            slot(5)
        ),
        "slotfill_run_in_progress{dataset=\"jp\"} 0.0".to_string(),
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
}

/// Declares a 2 MiB body and sends its first part: the answer comes from the
/// declared length alone.
fn oversized(serve: &Serve) -> Reply {
    let (auth, length) = (format!("Bearer {TOKEN}"), (2 << 20).to_string());
    let headers = [
        ("Host", "x"),
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
        ("Content-Length", length.as_str()),
    ];
    let part = vec![b' '; 64 * 1024];
    http::exchange(&serve.addr, "POST", "/api/events/s3", &headers, &part)
}
