//! verify, run, reports, the heatmap, notifications and the demo.

use crate::support::http::Webhook;
use crate::support::misskey::{EmulatorConfig, MisskeyEmulator, mixed_notes};
use crate::support::s3::S3Server;
use crate::support::*;

/// Runs the demo in a workspace; returns the workspace and the demo dir.
fn demo() -> (Workspace, std::path::PathBuf) {
    let ws = Workspace::new("");
    let dir = ws.path().join("demo");
    let out = ws.slotfill(&["demo", "--dir", dir.to_str().unwrap()]).ok();
    assert!(
        out.stdout.contains("Done: no gaps remain"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("$ slotfill --config"),
        "the demo shows its commands"
    );
    (ws, dir)
}

fn report(ws: &Workspace, dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let config = dir.join("slotfill.toml");
    let mut all = vec!["--config", config.to_str().unwrap(), "report"];
    all.extend(args);
    all.extend(["--format", "json"]);
    let mut command = ws.bare_command();
    command.args(&all);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json report")
}

#[test]
fn the_demo_runs_the_whole_cycle_and_every_report_answers() {
    let (ws, dir) = demo();
    let by_day = report(&ws, &dir, &["coverage-by-day", "--dataset", "demo"]);
    assert_eq!(by_day.as_array().unwrap().len(), 2);
    assert_eq!(by_day[0]["ok"], 144);
    assert_eq!(by_day[0]["ok_backup"], 4);
    assert_eq!(by_day[0]["ok_complement"], 10);
    assert_eq!(by_day[1]["ok_complement"], 5);
    assert_eq!(by_day[1]["coverage_pct"], 100.0);

    assert_eq!(
        report(&ws, &dir, &["gaps", "--dataset", "demo"]),
        serde_json::json!([])
    );
    let attempts = report(&ws, &dir, &["fill-attempts", "--dataset", "demo"]);
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 15);
    assert!(
        attempts
            .iter()
            .all(|a| a["last_outcome"] == "filled" && a["attempts"] == 1)
    );
    let runs = report(&ws, &dir, &["runs", "--dataset", "demo"]);
    let commands: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["verify", "fill", "fill", "scan", "scan"]);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "ok")
    );
    let thin = report(
        &ws,
        &dir,
        &["thin-coverage", "--dataset", "demo", "--thin-seconds", "5"],
    );
    for row in thin.as_array().unwrap() {
        assert!(row["coverage_seconds"].as_f64().unwrap() > 5.0, "{row}");
    }
    let states = report(&ws, &dir, &["states", "--dataset", "demo"]);
    let total: i64 = states
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slots"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 288);

    // The heatmap is well-formed SVG with one cell per slot.
    let svg = std::fs::read_to_string(dir.join("coverage.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    let cells = doc
        .descendants()
        .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("slot ")))
        .count();
    assert_eq!(cells, 288);
    assert_eq!(
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("slot ok-complement"))
            .count(),
        15
    );

    // Ad hoc SQL reads, and refuses to write.
    let config = dir.join("slotfill.toml");
    let config = config.to_str().unwrap();
    let sql = |query: &str| {
        let mut command = ws.bare_command();
        command.args(["--config", config, "sql", query, "--format", "csv"]);
        command.output().unwrap()
    };
    let out = sql("SELECT COUNT(*) AS n FROM slots WHERE state = 'ok'");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n288\n");
    for write in [
        "DELETE FROM slots",
        "UPDATE slots SET state = 'missing'",
        "DROP TABLE runs",
    ] {
        let out = sql(write);
        assert_eq!(out.status.code(), Some(2), "{write}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only reads"),
            "{write}"
        );
    }
    let out = sql("SELECT COUNT(*) AS n FROM slots");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "n\n288\n",
        "nothing was changed"
    );
}

#[test]
fn the_demo_runs_on_a_real_s3_server_and_rescans_without_downloads() {
    let ws = Workspace::new("");
    let dir = ws.path().join("demo-s3");
    let endpoint = S3Server::shared().endpoint();
    let out = ws
        .slotfill(&[
            "demo",
            "--dir",
            dir.to_str().unwrap(),
            "--endpoint-url",
            &endpoint,
        ])
        .ok();
    assert!(
        out.stdout.contains("Done: no gaps remain"),
        "{}",
        out.stdout
    );
    let config = std::fs::read_to_string(dir.join("slotfill.toml")).unwrap();
    assert!(
        config.contains("primary = \"s3://slotfill-demo/"),
        "{config}"
    );
    // The second scan lists each day prefix of each location once and downloads nothing.
    let rescan = out
        .stdout
        .split("# Scanning again")
        .nth(1)
        .expect("a rescan step");
    assert!(
        rescan.contains("0 counted (0 B), 277 unchanged"),
        "{rescan}"
    );
    assert!(rescan.contains("requests: 6\n"), "{rescan}");
}

/// A dataset on S3 with gaps that an emulated origin can fill.
struct Nightly {
    ws: Workspace,
    emulator: MisskeyEmulator,
    complement: String,
    first: i64,
}

fn nightly() -> Nightly {
    let server = S3Server::shared();
    let (primary, complement) = (
        server.new_bucket("night-primary"),
        server.new_bucket("night-complement"),
    );
    let first = AUG1_JST;
    let emulator = MisskeyEmulator::start(EmulatorConfig::default());
    for i in 0..12 {
        let slot = first + i * SLOT;
        if i % 4 != 1 {
            server.put(
                &primary,
                &format!("misskey/{}", key_of(slot)),
                &jsonl(10, 100),
            );
        }
        emulator.add_notes(mixed_notes(
            slot * 1000,
            (slot + SLOT) * 1000,
            30 + 10 * i as usize,
            i as u64,
        ));
    }
    let source = format!(
        "[datasets.jp.source]\nbase_url = \"{}\"\nmode = \"global-timeline\"\n",
        emulator.base_url()
    );
    let config = s3_config(
        &format!("s3://{primary}/misskey"),
        &[],
        Some(&format!("s3://{complement}/misskey_complement")),
        &source,
    );
    Nightly {
        ws: Workspace::new(&config),
        emulator,
        complement,
        first,
    }
}

#[test]
fn run_is_a_nightly_job_with_a_relative_window() {
    let mut n = nightly();
    // "Now" is three hours after the first slot: -3h .. -70m covers the 12 slots.
    let now = chrono::DateTime::from_timestamp(n.first + 3 * 3600, 0)
        .unwrap()
        .to_rfc3339();
    n.ws.set_env("SLOTFILL_NOW", &now);
    let hook = Webhook::start();
    let url = hook.url.clone();
    let dry =
        n.ws.slotfill(&[
            "run",
            "-d",
            "jp",
            "--start",
            "-3h",
            "--end",
            "-70m",
            "--dry-run",
        ])
        .ok();
    assert!(dry.stdout.contains("3 slots to fill"), "{}", dry.stdout);
    assert_eq!(n.emulator.calls(), 0, "a dry run fetches nothing");

    let out =
        n.ws.slotfill(&[
            "run",
            "-d",
            "jp",
            "--start",
            "-3h",
            "--end",
            "-70m",
            "--notify-webhook",
            &url,
        ])
        .ok();
    assert!(out.stdout.contains("12 slots, 12 ok"), "{}", out.stdout);
    for i in [1, 5, 9] {
        let slot = n.first + i * SLOT;
        let body = S3Server::shared()
            .get(
                &n.complement,
                &format!("misskey_complement/{}", key_of(slot)),
            )
            .expect("filled");
        let lines: Vec<serde_json::Value> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            n.emulator
                .expected("notes/global-timeline", slot * 1000, (slot + SLOT) * 1000)
        );
    }
    crate::support::serve::wait_for("the webhook's message", || hook.count() == 1);
    let payload = hook.messages().remove(0);
    assert!(payload["content"].as_str().unwrap().contains("jp"));
    assert_eq!(
        payload["content"], payload["text"],
        "Discord and Slack both read it"
    );
    assert_eq!(payload["slotfill"]["filled"], 3);
    assert_eq!(payload["slotfill"]["still_missing"], 0);
    assert_eq!(payload["slotfill"]["status"], "ok");
    let recorded =
        n.ws.query_i64("SELECT COUNT(*) FROM runs WHERE command = 'run' AND outcome = 'ok'");
    assert_eq!(recorded, 1);
    let args: String =
        n.ws.catalog()
            .query_row(
                "SELECT args FROM runs WHERE command = 'run' AND outcome = 'ok'",
                [],
                |r| r.get(0),
            )
            .unwrap();
    assert!(
        args.contains("--notify-webhook ***"),
        "webhook URLs are secrets: {args}"
    );

    // A second night: nothing left to fetch, and a dead webhook is only a warning.
    let calls = n.emulator.calls();
    let again =
        n.ws.slotfill(&[
            "run",
            "-d",
            "jp",
            "--start",
            "-3h",
            "--end",
            "-70m",
            "--notify-webhook",
            "http://127.0.0.1:9/x",
        ])
        .ok();
    assert_eq!(n.emulator.calls(), calls);
    assert!(
        again.stderr.contains("notification webhook"),
        "{}",
        again.stderr
    );
}

#[test]
fn verify_exits_3_while_gaps_remain_and_lists_them() {
    let n = nightly();
    let window = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T01:50"];
    let out =
        n.ws.slotfill(&[&["verify", "-d", "jp"][..], &window].concat())
            .code(3);
    assert!(out.stdout.contains("3 still not ok"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&local_iso(n.first + SLOT)),
        "{}",
        out.stdout
    );
    let outcome: String =
        n.ws.catalog()
            .query_row(
                "SELECT outcome FROM runs WHERE command = 'verify'",
                [],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(outcome, "gaps_remain");
    n.ws.slotfill(&[&["fill", "-d", "jp"][..], &window].concat())
        .ok();
    let server = S3Server::shared();
    server.reset_counts(&n.complement);
    n.ws.slotfill(&[&["verify", "-d", "jp"][..], &window].concat())
        .code(0);
    assert_eq!(
        server.counts(&n.complement).get,
        0,
        "verify re-reads nothing fill already recorded"
    );
}
