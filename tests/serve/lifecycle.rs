//! Starting and stopping: SIGTERM in the middle of a fill, the refusal to
//! listen beyond loopback without a token, and the token itself, which no
//! output ever shows.

use std::time::Duration;

use serde_json::json;

use crate::support::misskey::Fault;
use crate::support::serve::{Serve, ServeFixture, TOKEN, wait_for};
use crate::support::*;

#[test]
fn sigterm_during_a_fill_leaves_a_catalog_that_the_next_run_completes() {
    let f = ServeFixture::new("", "");
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
    let f = ServeFixture::new("", "");
    let run = f.ws.slotfill(&["serve", "--listen", "0.0.0.0:0"]).code(2);
    assert!(run.stderr.contains("SLOTFILL_API_TOKEN"), "{}", run.stderr);
    let bad_cron = ServeFixture::new(
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

#[test]
fn the_api_token_appears_in_no_log_page_answer_or_catalog() {
    let f = ServeFixture::new("", "");
    let slot = AUG1_JST + 13 * 86_400;
    f.put_primary(slot);
    let mut serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_API_TOKEN", TOKEN),
            ("SLOTFILL_NOW", "2025-08-14T12:00:00+09:00"),
        ],
    );
    let token = Some(TOKEN);
    let mut answers = Vec::new();
    // The token offered where it does not belong: wrong schemes, inside
    // bad input that error messages quote, in paths and query strings.
    answers.push(serve.send(
        "GET",
        "/metrics",
        &[("Authorization", &format!("Token {TOKEN}"))],
        b"",
    ));
    answers.push(serve.post(
        "/api/datasets/jp/runs",
        token,
        &json!({"start": TOKEN, "end": "-1d"}),
    ));
    answers.push(serve.post(
        "/api/datasets/jp/runs",
        token,
        &json!({"start": "-2d", "end": "-1d", TOKEN: 1}),
    ));
    answers.push(serve.get(&format!("/api/datasets/{TOKEN}/gaps"), token));
    answers.push(serve.get(&format!("/api/datasets/jp/gaps?{TOKEN}=1"), token));
    answers.push(serve.get(
        &format!("/api/datasets/jp/gaps?start={TOKEN}&end=-1d"),
        token,
    ));
    answers.push(serve.get(&format!("/api/runs/{TOKEN}"), token));
    answers.push(serve.get(&format!("/datasets/{TOKEN}"), None));
    answers.push(serve.get(&format!("/datasets/jp?end={TOKEN}"), None));
    answers.push(serve.send(
        "GET",
        &format!("/datasets/jp/slots?start={TOKEN}&end=-1d"),
        &[("Accept", "text/html")],
        b"",
    ));
    answers.push(serve.request("POST", "/api/events/s3", token, TOKEN.as_bytes()));
    answers.push(
        serve.request(
            "POST",
            "/api/events/s3",
            token,
            json!({"Type": "Notification", "Message": TOKEN})
                .to_string()
                .as_bytes(),
        ),
    );
    answers.push(serve.get(&format!("/{TOKEN}"), token));
    for answer in &answers {
        assert!(answer.status >= 400, "{answer:?}");
        assert!(
            !answer.head.contains(TOKEN) && !answer.body.contains(TOKEN),
            "the token in an answer: {answer:?}"
        );
    }
    // A run, so that the catalog holds run records and attempts.
    let started = serve.post(
        "/api/datasets/jp/runs",
        token,
        &json!({"start": arg_time(slot), "end": arg_time(slot + SLOT)}),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    serve.wait_run(started.json()["run_id"].as_i64().unwrap(), token);
    for page in ["/", "/datasets/jp", "/runs/1", "/api/openapi.json"] {
        let body = serve.get(page, None).body;
        assert!(!body.contains(TOKEN), "the token on {page}");
    }
    assert!(!serve.get("/metrics", token).body.contains(TOKEN));
    assert_eq!(serve.terminate(), 0);
    assert!(
        !serve.logs().contains(TOKEN),
        "the token in the log:\n{}",
        serve.logs()
    );
    // Every byte of the catalog (and its journal, if any is left).
    for entry in std::fs::read_dir(f.ws.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("slotfill.db") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "the token in {}",
                path.display()
            );
        }
    }
}
