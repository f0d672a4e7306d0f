//! The freshness watch: one alert per incident, however many checks see it
//! and across a kill -9; the overdue slot filled; the recovery said once; an
//! alert the webhook did not take sent when the process comes back.

use serde_json::Value;

use crate::support::serve::{Serve, ServeFixture, Webhook, wait_for};
use crate::support::*;

/// 2025-08-14 00:00 JST; the tests' clock reads 01:00. The collector wrote
/// 00:00, 00:10, 00:30 and 00:40; 00:20 ended at 00:30, so it is overdue
/// since 00:45 (grace 15 min).
const DAY: i64 = AUG1_JST + 13 * 86_400;
const NOW: &str = "2025-08-14T01:00:00+09:00";

fn slot(i: i64) -> i64 {
    DAY + i * SLOT
}

fn watched(hook: &str, fill: bool) -> ServeFixture {
    let f = ServeFixture::new(
        &format!("notify_webhook = \"{hook}\"\n"),
        &format!(
            "[datasets.jp.freshness]\ngrace = \"15m\"\ncheck_every = \"1s\"\nalert_after = \"30m\"\nfill = {fill}\n"
        ),
    );
    for i in [0, 1, 3, 4] {
        f.put_primary(slot(i));
    }
    f
}

fn checks(serve: &Serve) -> f64 {
    serve.metric("slotfill_watch_checks_total{dataset=\"jp\"}", None)
}

/// Waits for `n` more checks by this process.
fn more_checks(serve: &Serve, n: f64) {
    let from = checks(serve);
    wait_for(&format!("{n} more checks"), || checks(serve) >= from + n);
}

fn incidents(f: &ServeFixture) -> Vec<(i64, Option<String>)> {
    let c = f.ws.catalog();
    let mut stmt = c
        .prepare("SELECT id, closed_at FROM incidents ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn the_watch_alerts_once_fills_an_overdue_slot_and_says_when_it_recovered() {
    let hook = Webhook::start();
    let f = watched(&hook.url, true);
    f.notes_at(slot(2), 7);
    let serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", NOW)]);

    wait_for("the alert and the recovery", || hook.count() >= 2);
    let object = f
        .complement_object(slot(2))
        .expect("the overdue slot was filled");
    assert_eq!(String::from_utf8_lossy(&object).lines().count(), 7);
    assert_eq!(f.state(slot(2)).as_deref(), Some("ok"));
    // Not overdue: the slots that have not ended plus the settle delay.
    assert_eq!(f.state(slot(5)).as_deref(), Some("pending"));
    let messages = hook.messages();
    let alert = messages[0]["content"].as_str().unwrap();
    assert!(
        alert.contains("jp") && alert.contains("1 slot overdue: 2025-08-14T00:20:00+09:00"),
        "{alert}"
    );
    assert!(
        alert.contains("10 min old"),
        "the age of the newest valid object: {alert}"
    );
    assert_eq!(hook.statuses(), ["overdue", "recovered"]);
    assert_eq!(
        messages[0]["slotfill"]["incident"], messages[1]["slotfill"]["incident"],
        "one incident"
    );
    let fill_runs = f.ws.query_i64(
        "SELECT COUNT(*) FROM runs WHERE command = 'fill' AND outcome = 'ok' AND args LIKE '%watch%'",
    );
    assert_eq!(fill_runs, 1);

    // Three more checks later: still one alert and one recovery.
    more_checks(&serve, 3.0);
    assert_eq!(hook.count(), 2, "{:?}", hook.messages());
    assert_eq!(
        serve.metric("slotfill_overdue_slots{dataset=\"jp\"}", None),
        0.0
    );
    // The catalog holds the incident, closed, and both alerts, sent.
    assert_eq!(incidents(&f).len(), 1);
    assert!(incidents(&f)[0].1.is_some(), "closed");
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM alerts WHERE delivery = 'sent'"),
        2
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
fn a_slot_overdue_over_many_checks_and_a_kill_9_is_alerted_once() {
    let hook = Webhook::start();
    // Not filled: the slot stays overdue until the collector writes it.
    let f = watched(&hook.url, false);
    let mut serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", NOW)]);
    wait_for("the alert", || hook.count() >= 1);
    more_checks(&serve, 4.0);
    assert_eq!(hook.statuses(), ["overdue"], "one alert over five checks");
    assert_eq!(f.state(slot(2)).as_deref(), Some("missing"));
    assert_eq!(incidents(&f), [(1, None)]);

    // Killed in the middle of the incident: the next process finds it open.
    serve.kill9();
    let serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", NOW)]);
    more_checks(&serve, 4.0);
    assert_eq!(
        hook.statuses(),
        ["overdue"],
        "no second alert after the restart"
    );
    assert!(
        serve
            .logs()
            .contains("an incident is open; it is not alerted again"),
        "{}",
        serve.logs()
    );
    assert_eq!(
        serve.metric("slotfill_watch_incident_open{dataset=\"jp\"}", None),
        1.0
    );

    // The collector writes the slot: one recovery, for the same incident.
    f.put_primary(slot(2));
    wait_for("the recovery", || hook.count() >= 2);
    more_checks(&serve, 3.0);
    assert_eq!(hook.statuses(), ["overdue", "recovered"]);
    let ids: Vec<Value> = hook
        .messages()
        .iter()
        .map(|m| m["slotfill"]["incident"].clone())
        .collect();
    assert_eq!(ids, [Value::from(1), Value::from(1)]);
    assert_eq!(incidents(&f).len(), 1);
}

#[test]
fn an_alert_the_webhook_did_not_take_is_sent_once_by_the_next_process() {
    // A webhook nobody listens on: the alert is recorded, not delivered.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let f = watched(&dead, false);
    let mut serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", NOW)]);
    wait_for("a delivery attempt", || {
        f.ws.query_i64("SELECT COALESCE(SUM(attempts), 0) FROM alerts") >= 2
    });
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM alerts WHERE delivery = 'pending'"),
        1
    );
    serve.kill9();

    // The webhook is reachable again (here: the config names a live one).
    let hook = Webhook::start();
    let config = std::fs::read_to_string(f.ws.config_path()).unwrap();
    f.ws.write_config(&config.replace(&dead, &hook.url));
    let serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", NOW)]);
    wait_for("the pending alert", || hook.count() >= 1);
    more_checks(&serve, 3.0);
    assert_eq!(hook.statuses(), ["overdue"], "sent once, no new incident");
    assert_eq!(incidents(&f).len(), 1);
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM alerts WHERE delivery = 'sent'"),
        1
    );
}

#[test]
fn an_incident_across_midnight_keeps_its_slots_until_they_are_filled() {
    let hook = Webhook::start();
    let f = watched(&hook.url, false);
    // 23:50 on the 13th is missed; the collector wrote the rest of the 13th,
    // and from 00:00 on.
    let midnight = DAY;
    for slot in (1..144).map(|i| midnight - (i + 1) * SLOT) {
        f.put_primary(slot);
    }
    f.put_primary(midnight);
    f.put_primary(midnight + SLOT);
    let mut serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", "2025-08-14T00:20:00+09:00")]);
    wait_for("the alert", || hook.count() >= 1);
    assert_eq!(serve.terminate(), 0);
    let first = hook.messages()[0]["content"].as_str().unwrap().to_string();
    assert!(
        first.contains("1 slot overdue: 2025-08-13T23:50:00+09:00"),
        "{first}"
    );

    // An hour later the newest day prefix is today's alone, and the collector
    // is fresh: the slot of yesterday is still missing, so no recovery yet.
    for slot in 2..6 {
        f.put_primary(midnight + slot * SLOT);
    }
    let serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", "2025-08-14T01:10:00+09:00")]);
    more_checks(&serve, 3.0);
    assert_eq!(
        hook.statuses(),
        ["overdue"],
        "not recovered while 23:50 is missing"
    );
    f.put_primary(midnight - SLOT);
    wait_for("the recovery", || hook.count() >= 2);
    assert_eq!(hook.statuses(), ["overdue", "recovered"]);
}
