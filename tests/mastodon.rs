//! The Mastodon origin: the emulator follows misskey-api.md §7, and a fill
//! from it writes every slot exactly, honours the rate-limit headers before
//! a 429 comes, and names the setting to change when the server refuses.
//! (Crash and fault guarantees: the shared cases of `crash.rs` and
//! `faults.rs`, run with a Mastodon origin.)

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::fediverse::Fixture;
use crate::support::mastodon::{
    MastodonConfig, MastodonEmulator, StatusSpec, Throttle, mixed_statuses,
};
use crate::support::origin::OriginKind;
use crate::support::seeded::{Origin, Place, as_strs, assert_consistent};
use crate::support::*;

/// A `GET` without a `User-Agent` (status, lowercased headers, body).
fn get(base: &str, path: &str, token: Option<&str>) -> (u16, BTreeMap<String, String>, String) {
    crate::support::fediverse::get(base, path, token, false)
}

fn ids(body: &str) -> Vec<u64> {
    let page: Vec<Value> = serde_json::from_str(body).unwrap();
    page.iter()
        .map(|s| s["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

const PATH: &str = "/api/v1/timelines/public";

#[test]
fn the_emulator_follows_section_7() {
    let e = MastodonEmulator::start(MastodonConfig {
        throttles: vec![Throttle {
            limit: 12,
            period_secs: 3600,
            paging_only: true,
        }],
        ..Default::default()
    });
    let t0 = AUG1_JST * 1000;
    e.add_statuses((0..60).map(|i| StatusSpec::local(t0 + i * 1000, &format!("s{i}"))));
    let late = e.add_status(StatusSpec::backdated(t0 + 30_000, "late"));
    e.add_status(StatusSpec::local(t0 + 5, "unlisted").visible("unlisted"));
    let base = e.base_url();

    // Ids are strings, `ms << 16 | tail`; a back-dated one is only second-accurate.
    let (status, headers, body) = get(&base, PATH, None);
    assert_eq!(status, 200);
    let page: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(page.len(), 20, "default limit");
    for s in &page {
        let id: u64 = s["id"].as_str().unwrap().parse().unwrap();
        let created = chrono::DateTime::parse_from_rfc3339(s["created_at"].as_str().unwrap());
        let ms = created.unwrap().timestamp_millis();
        if s["id"] == late.as_str() {
            assert_eq!((id >> 16) as i64 / 1000, ms / 1000);
        } else {
            assert_eq!((id >> 16) as i64, ms);
        }
    }
    assert!(ids(&body).windows(2).all(|w| w[0] > w[1]), "newest first");
    // Rate-limit headers on a request that is not paging: no throttle matches.
    assert!(!headers.contains_key("x-ratelimit-remaining"));

    // The limit is capped at 40; max_id is exclusive and pages newest first.
    let (_, headers, body) = get(
        &base,
        &format!("{PATH}?limit=100&max_id={}", ids(&body)[5]),
        None,
    );
    let page = ids(&body);
    assert_eq!(page.len(), 40);
    assert!(page.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(headers["x-ratelimit-limit"], "12");
    assert_eq!(headers["x-ratelimit-remaining"], "11");
    assert!(
        headers["x-ratelimit-reset"].ends_with("Z")
            && headers["x-ratelimit-reset"].contains(".000000")
    );
    // The Link header keeps the filters and the limit.
    let link = &headers["link"];
    assert!(
        link.contains(&format!("limit=100&max_id={}>; rel=\"next\"", page[39])),
        "{link}"
    );
    assert!(
        link.contains(&format!("min_id={}>; rel=\"prev\"", page[0])),
        "{link}"
    );

    // since_id: the newest page above it (a gap); min_id: the page right after it, reversed.
    let all: Vec<u64> = {
        let (_, _, body) = get(&base, &format!("{PATH}?limit=40&max_id={}", u64::MAX), None);
        let mut older = ids(&body);
        let (_, _, body) = get(
            &base,
            &format!("{PATH}?limit=40&max_id={}", older[39]),
            None,
        );
        older.extend(ids(&body));
        older
    };
    assert_eq!(
        all.len(),
        61,
        "public only: the unlisted status is not in the feed"
    );
    let floor = all[50];
    let (_, _, body) = get(&base, &format!("{PATH}?limit=5&since_id={floor}"), None);
    assert_eq!(ids(&body), all[..5].to_vec());
    let (_, _, body) = get(&base, &format!("{PATH}?limit=5&min_id={floor}"), None);
    assert_eq!(ids(&body), all[45..50].to_vec());
    let (_, _, body) = get(
        &base,
        &format!("{PATH}?limit=5&min_id={floor}&max_id={}", all[47]),
        None,
    );
    assert_eq!(ids(&body), all[48..50].to_vec());
    // No Link header on an empty page.
    let (_, headers, body) = get(&base, &format!("{PATH}?max_id={}", all[60]), None);
    assert_eq!((body.as_str(), headers.get("link")), ("[]", None));

    // The throttle: 12 paging requests a window, then 429 without Retry-After.
    let mut last = (0, BTreeMap::new(), String::new());
    for _ in 0..6 {
        last = get(&base, &format!("{PATH}?max_id={}", all[0]), None);
    }
    assert_eq!(last.0, 429);
    assert_eq!(last.2, r#"{"error":"Too many requests"}"#);
    assert_eq!(last.1["x-ratelimit-remaining"], "0");
    assert!(!last.1.contains_key("retry-after"));
    assert_eq!(e.throttled(), 1);
    // Not paging: not counted by the paging throttle.
    assert_eq!(get(&base, PATH, None).0, 200);
}

#[test]
fn the_emulator_refuses_anonymous_callers_and_bad_tokens_in_mastodons_shape() {
    let e = MastodonEmulator::start(MastodonConfig {
        require_token: true,
        auth_status: 422,
        tokens: vec!["good".into()],
        ..Default::default()
    });
    let (status, _, body) = get(&e.base_url(), PATH, None);
    assert_eq!(
        (status, body.as_str()),
        (
            422,
            r#"{"error":"This method requires an authenticated user"}"#
        )
    );
    let (status, _, body) = get(&e.base_url(), PATH, Some("bad"));
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"error":"The access token is invalid"}"#)
    );
    assert_eq!(get(&e.base_url(), PATH, Some("good")).0, 200);
}

#[test]
fn each_timeline_is_filled_exactly_across_slot_and_day_boundaries() {
    let e = MastodonEmulator::start(MastodonConfig::default());
    // Twelve slots across JST midnight, none in the primary.
    let first = AUG1_JST - 6 * SLOT;
    let last = first + 11 * SLOT;
    for i in 0..12 {
        let slot = first + i * SLOT;
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        e.add_statuses(mixed_statuses(
            start,
            end,
            [90, 0, 45, 1, 130, 39][i as usize % 6],
            i as u64,
        ));
        for ms in [start, start, end - 1, start + 77, start + 77] {
            e.add_status(StatusSpec::local(ms, &format!("edge {ms}")));
        }
        for ms in [start, end - 1000] {
            e.add_status(StatusSpec::backdated(ms, "back-dated on an edge second"));
            let mut remote = StatusSpec::backdated(ms, "remote, not back-dated");
            remote.backdated = false;
            e.add_status(remote);
        }
    }
    for (timeline, media) in [
        ("public", false),
        ("local", false),
        ("remote", false),
        ("public", true),
    ] {
        // No federation lag here: the call budget below is the statuses' own
        // pages (the lag's cost is measured in its own test).
        let lag = if timeline == "local" {
            ""
        } else {
            "federation_lag = \"0\"\n"
        };
        let extra = format!("{lag}{}", if media { "only_media = true\n" } else { "" });
        let f = Fixture::new(&e, timeline, &extra);
        f.run("run", first, last, &[]).ok();
        let (ws, complement) = (&f.ws, &f.complement);
        let mut written = 0;
        for i in 0..12 {
            let slot = first + i * SLOT;
            let want = match media {
                false => e.expected(timeline, slot * 1000, (slot + SLOT) * 1000),
                true => e.expected_media(timeline, slot * 1000, (slot + SLOT) * 1000),
            };
            let got = f.slot(slot).expect("every slot has its object");
            assert_eq!(got, want, "{timeline} {}", local_iso(slot));
            written += got.len();
            let meta = complement.metadata(&key_of(slot)).unwrap();
            let source = format!("mastodon:{}/api/v1/timelines/public", e.base_url());
            assert!(meta["source"].starts_with(&source), "{}", meta["source"]);
        }
        assert!(
            written > if media { 10 } else { 100 },
            "{timeline}: {written} statuses"
        );
        // Pages of 40, down to the first status before the slot: no slot costs
        // more than its statuses need (plus the widened seconds), but the
        // oldest, which nothing precedes: its last page is an empty one.
        let beyond = |n| {
            ws.query_i64(&format!(
                "SELECT COUNT(*) FROM fill_attempts WHERE origin_calls - (notes + 12) / 40 > {n}"
            ))
        };
        assert!(
            beyond(1) <= 1 && beyond(2) == 0,
            "{timeline}: calls beyond the statuses' pages"
        );
    }
    // Every page request sent limit 40 and an upper bound, never a lower one;
    // each run's probe also asked once for 2 statuses below the newest.
    let (probes, pages): (Vec<_>, Vec<_>) = e
        .requests()
        .into_iter()
        .filter(|q| q.contains_key("max_id"))
        .partition(|q| q["limit"] == "2");
    assert_eq!(probes.len(), 4, "{probes:?}");
    for q in &pages {
        assert_eq!(q["limit"], "40");
        assert!(
            !q.contains_key("since_id") && !q.contains_key("min_id"),
            "{q:?}"
        );
    }
    assert!(
        pages
            .iter()
            .any(|q| q.get("only_media").is_some_and(|v| v == "true"))
    );
}

#[test]
fn the_rate_limit_headers_are_honoured_before_the_429_comes() {
    let e = MastodonEmulator::start(MastodonConfig {
        throttles: vec![Throttle {
            limit: 8,
            period_secs: 2,
            paging_only: true,
        }],
        ..Default::default()
    });
    let first = AUG1_JST;
    let last = first + 3 * SLOT;
    for i in 0..4 {
        let slot = first + i * SLOT;
        e.add_statuses(mixed_statuses(
            slot * 1000,
            (slot + SLOT) * 1000,
            300,
            i as u64,
        ));
    }
    let f = Fixture::new(&e, "public", "");
    let out = f.fill(first, last, &["--concurrency", "1", "-v"]).ok();
    let paging = e
        .requests()
        .iter()
        .filter(|q| q.contains_key("max_id"))
        .count();
    assert!(
        paging > 16,
        "{paging} paging requests: too few to spend the limit twice"
    );
    assert_eq!(e.throttled(), 0, "a 429 came:\n{}", out.stderr);
    assert!(
        out.stderr.contains("origin rate limit spent"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("filled 4"), "{}", out.stdout);
}

#[test]
fn refusals_reach_the_user_as_one_line_naming_the_setting() {
    let e = MastodonEmulator::start(MastodonConfig {
        require_token: true,
        auth_status: 422,
        tokens: vec!["good-token".into()],
        ..Default::default()
    });
    let slot = AUG1_JST;
    e.add_statuses(mixed_statuses(slot * 1000, (slot + SLOT) * 1000, 20, 1));
    let mut f = Fixture::new(&e, "local", "token_env = \"MY_MASTODON\"\n");
    f.run("scan", slot, slot, &[]).ok();
    let out = f.run("fill", slot, slot, &[]).code(2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("slotfill: error: the Mastodon server requires a signed-in user for the local timeline (422: This method requires an authenticated user)")
            && out.stderr.contains("MY_MASTODON"),
        "{}",
        out.stderr
    );
    f.ws.set_env("MY_MASTODON", "wrong-token");
    let out = f.run("fill", slot, slot, &[]).code(2);
    assert!(
        out.stderr
            .contains("rejected the access token (401: The access token is invalid)")
            && !out.stderr.contains("wrong-token"),
        "{}",
        out.stderr
    );
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
    f.ws.env.clear();
    f.ws.set_env("MY_MASTODON", "good-token");
    f.run("fill", slot, slot, &[]).ok();
    assert!(
        e.seen_authorization_headers()
            .iter()
            .any(|h| h == "Bearer good-token")
    );

    // Settings of the wrong kind, or a scope the timeline cannot hold: refused
    // before the catalog is touched.
    for (extra, says) in [
        (
            "mode = \"search\"\n",
            "source key mode is a misskey setting; a mastodon source reads base_url, timeline",
        ),
        (
            "host = \"remote.example\"\n",
            "timeline \"local\" holds only the server's own statuses",
        ),
        ("visibility = [\"home\"]\n", "returns only public statuses"),
    ] {
        let f = Fixture::new(&e, "local", extra);
        let out = f.run("fill", slot, slot, &[]).code(2);
        assert!(out.stderr.contains(says), "{extra}: {}", out.stderr);
        assert!(!f.ws.catalog_path().exists());
    }
    let f = Fixture::new(&e, "federated", "");
    let out = f.run("fill", slot, slot, &[]).code(2);
    assert!(
        out.stderr
            .contains("unknown timeline \"federated\" (local, public, remote)"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_crash_fixture_fills_exactly_from_mastodon() {
    let o = Origin::of(OriginKind::Mastodon, 0x3a57, 12, (60, 120));
    let dirs = tempfile::tempdir().unwrap();
    let complement = Place::dir(dirs.path(), "complement");
    let ws = o.workspace(&Place::dir(dirs.path(), "primary"), &complement);
    ws.slotfill(&as_strs(&o.args("run", &[]))).ok();
    assert_consistent(&o, &ws, &complement);
    assert_eq!(complement.keys().len(), o.fillable().len());
}
