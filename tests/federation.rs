//! Federated timelines with late deliveries (receipt-time ids, misskey-api.md
//! §9.2) under both slot rules, and Mastodon 4.5's feed settings: a feed
//! closed to the caller answers 200 `[]`, so the probe stops the run.

use serde_json::Value;

use crate::support::fediverse::{Fixture, budget, get, ids, slots};
use crate::support::mastodon::{
    FeedAccess, MastodonConfig, MastodonEmulator, StatusSpec, mixed_statuses,
};
use crate::support::*;

/// Six slots of mixed statuses, and remote statuses delivered late around
/// every slot's end (2 s to 9 minutes after their creation).
fn late_deliveries() -> (MastodonEmulator, Vec<i64>, Vec<StatusSpec>) {
    let e = MastodonEmulator::start(MastodonConfig::default());
    let window = slots(AUG1_JST, 6);
    let mut late = Vec::new();
    for (i, &slot) in window.iter().enumerate() {
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        let mut statuses = mixed_statuses(start, end, [80, 30, 0, 120, 55, 40][i], 200 + i as u64);
        for s in &mut statuses {
            s.backdated = false;
        }
        e.add_statuses(statuses);
        for (at, delay) in [
            (end - 3000, 2_000),
            (end - 1500, 45_000),
            (end - 200, 240_000),
            (start + 5000, 540_000),
        ] {
            late.push(StatusSpec::delivered(at, delay, "delivered late"));
        }
    }
    e.add_statuses(late.clone());
    (e, window, late)
}

/// Per slot: (statuses written, calls); asserts each slot against `expected`.
fn fill_and_compare(
    f: &Fixture,
    window: &[i64],
    expected: impl Fn(i64) -> Vec<Value>,
) -> Vec<(usize, i64)> {
    f.fill(window[0], *window.last().unwrap(), &["--concurrency", "1"])
        .ok();
    let attempts = f.attempts();
    window
        .iter()
        .map(|&slot| {
            let want = expected(slot);
            let got = f.slot(slot).expect("every slot has its object");
            assert_eq!(ids(&got), ids(&want), "{}", local_iso(slot));
            (got.len(), attempts[&slot].2)
        })
        .collect()
}

#[test]
fn late_deliveries_land_in_their_created_at_slot_within_the_federation_lag() {
    let (e, window, late) = late_deliveries();
    let by_created = |slot: i64| e.expected("public", slot * 1000, (slot + SLOT) * 1000);
    let mut costs = Vec::new();
    for lag in ["10m", "5m"] {
        let f = Fixture::new(&e, "public", &format!("federation_lag = \"{lag}\"\n"));
        let seen = fill_and_compare(&f, &window, by_created);
        costs.push((lag, seen.iter().map(|(_, c)| c).sum::<i64>()));
    }
    // The default is 10 minutes: the same fill without the key.
    let f = Fixture::new(&e, "public", "");
    let seen = fill_and_compare(&f, &window, by_created);
    let statuses: usize = seen.iter().map(|(n, _)| n).sum();

    // Without a lag, a status delivered after its slot's end plus the one
    // second of widening is in no slot at all.
    let f = Fixture::new(&e, "public", "federation_lag = \"0\"\n");
    f.fill(window[0], window[5], &["--concurrency", "1"]).ok();
    let attempts = f.attempts();
    let mut lost = 0;
    for &slot in &window {
        let end = (slot + SLOT) * 1000;
        let missed = |s: &Value| {
            let created = chrono::DateTime::parse_from_rfc3339(s["created_at"].as_str().unwrap());
            let created = created.unwrap().timestamp_millis();
            late.iter().any(|l| {
                l.created_at_ms == created && created < end && created + l.delay_ms >= end + 1000
            })
        };
        let want: Vec<Value> = by_created(slot)
            .into_iter()
            .filter(|s| !missed(s))
            .collect();
        lost += by_created(slot).len() - want.len();
        assert_eq!(
            ids(&f.slot(slot).expect("object")),
            ids(&want),
            "{}",
            local_iso(slot)
        );
    }
    assert_eq!(lost, 12, "the statuses delivered past the widening");
    costs.push(("0", attempts.values().map(|(_, _, c)| c).sum()));
    // What the lag costs: the pages of the next 5 or 10 minutes' statuses.
    eprintln!("{statuses} statuses in 6 slots of 10 minutes; calls by federation_lag: {costs:?}");
    let calls = |lag| costs.iter().find(|(l, _)| *l == lag).unwrap().1;
    assert!(
        calls("0") < calls("5m") && calls("5m") < calls("10m"),
        "{costs:?}"
    );
}

#[test]
fn the_receipt_rule_places_each_status_by_the_time_its_id_carries() {
    let (e, window, _) = late_deliveries();
    let f = Fixture::new(&e, "public", "slot_by = \"receipt\"\n");
    let by_receipt = |slot: i64| e.expected_by_receipt("public", slot * 1000, (slot + SLOT) * 1000);
    let seen = fill_and_compare(&f, &window, by_receipt);
    for (&slot, (n, calls)) in window.iter().zip(&seen) {
        assert!(
            *calls <= budget(*n),
            "{}: {calls} calls for {n}",
            local_iso(slot)
        );
    }
    // Objects hold each status as served, in the order it was received.
    let got = f.slot(window[0]).unwrap();
    assert_eq!(got, by_receipt(window[0]));
    // The local timeline needs neither rule: refused, with the reason.
    let f = Fixture::new(&e, "local", "slot_by = \"receipt\"\n");
    let out = f.run("fill", window[0], window[0], &[]).code(2);
    assert!(
        out.stderr
            .contains("slot_by applies to the federated timelines"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_local_timeline_stays_exact_among_late_remote_deliveries() {
    let (e, window, _) = late_deliveries();
    let f = Fixture::new(&e, "local", "");
    let seen = fill_and_compare(&f, &window, |slot| {
        e.expected("local", slot * 1000, (slot + SLOT) * 1000)
    });
    for (&slot, (n, calls)) in window.iter().zip(&seen) {
        // Its pages hold local statuses only: no lag, no remote ones.
        let served = e
            .expected("local", slot * 1000 - 1000, (slot + SLOT) * 1000 + 1000)
            .len();
        assert!(
            *calls <= budget(served),
            "{}: {calls} calls for {n}",
            local_iso(slot)
        );
    }
}

fn access(local: &'static str, remote: &'static str) -> MastodonEmulator {
    let e = MastodonEmulator::start(MastodonConfig {
        feed_access: Some(FeedAccess { local, remote }),
        tokens: vec!["user-token".into(), "staff-token".into()],
        staff_tokens: vec!["staff-token".into()],
        ..Default::default()
    });
    e.add_statuses(mixed_statuses(
        AUG1_JST * 1000,
        (AUG1_JST + SLOT) * 1000,
        60,
        5,
    ));
    e
}

fn fill_with(e: &MastodonEmulator, timeline: &str, token: Option<&str>) -> (Fixture, Run) {
    let extra = if timeline == "local" {
        ""
    } else {
        "federation_lag = \"0\"\n"
    };
    let mut f = Fixture::new(e, timeline, extra);
    if let Some(token) = token {
        f.ws.set_env("MASTODON_TOKEN", token);
    }
    let out = f.fill(AUG1_JST, AUG1_JST, &[]);
    (f, out)
}

#[test]
fn a_feed_disabled_for_the_caller_stops_at_the_probe_naming_the_setting() {
    let e = access("disabled", "public");
    // The server answers a signed-in caller of the disabled feed 200 [].
    let path = "/api/v1/timelines/public?local=true&limit=40";
    let (status, _, body) = get(&e.base_url(), path, Some("user-token"), true);
    assert_eq!((status, body.as_str()), (200, "[]"));
    for timeline in ["local", "public"] {
        let (f, out) = fill_with(&e, timeline, Some("user-token"));
        let out = out.code(2);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.contains(
                "timelines_access.live_feeds.local = \"disabled\" (local_live_feed_access)"
            ),
            "{timeline}: {}",
            out.stderr
        );
        assert_eq!(
            f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"),
            0,
            "no slot recorded"
        );
        assert!(f.complement.keys().is_empty(), "nothing written");
    }
    // The remote part is open: filled.
    let (f, out) = fill_with(&e, "remote", Some("user-token"));
    out.ok();
    let want = e.expected("remote", AUG1_JST * 1000, (AUG1_JST + SLOT) * 1000);
    assert_eq!(ids(&f.slot(AUG1_JST).unwrap()), ids(&want));
    // A role that may view feeds reads the disabled one.
    let (f, out) = fill_with(&e, "local", Some("staff-token"));
    out.ok();
    let want = e.expected("local", AUG1_JST * 1000, (AUG1_JST + SLOT) * 1000);
    assert!(!want.is_empty());
    assert_eq!(ids(&f.slot(AUG1_JST).unwrap()), ids(&want));

    // A feed for signed-in users only, read anonymously.
    let e = access("public", "authenticated");
    let (f, out) = fill_with(&e, "remote", None);
    let out = out.code(2);
    assert!(
        out.stderr.contains(
            "only to signed-in users (timelines_access.live_feeds.remote = \"authenticated\""
        ) && out.stderr.contains("MASTODON_TOKEN"),
        "{}",
        out.stderr
    );
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
}
