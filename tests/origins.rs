//! Every Mastodon-API server kind is filled exactly, in its own id space,
//! within ceil(n/40) + 1 calls a slot: GoToSocial (ULIDs compared as strings,
//! filtering after its query), Akkoma (FlakeIds), a Sharkey layer (aidx),
//! and ids that carry no time (paged by created_at). Each test asserts the
//! ids in the bucket and the requests at the emulator.

use serde_json::Value;

use crate::support::fediverse::{Fixture, budget, get, ids, slots};
use crate::support::mastodon::{
    MastodonConfig, MastodonEmulator, ServerKind, StatusSpec, mixed_statuses,
};
use crate::support::*;

fn emulator(kind: ServerKind) -> MastodonEmulator {
    MastodonEmulator::start(MastodonConfig {
        kind,
        ..Default::default()
    })
}

/// Statuses the server keeps or drops in its query (no filtering after it).
fn plain(start_ms: i64, end_ms: i64, count: usize, seed: u64) -> Vec<StatusSpec> {
    let mut statuses = mixed_statuses(start_ms, end_ms, count, seed);
    for s in &mut statuses {
        (s.reply_to_other, s.suspended) = (false, false);
    }
    statuses
}

/// Fills `slots` of `timeline` and asserts each slot's object is exactly
/// `expected` (ids in order) within the call budget; returns every slot's
/// (statuses, calls).
fn assert_exact(
    f: &Fixture,
    e: &MastodonEmulator,
    timeline: &str,
    window: &[i64],
    expected: impl Fn(i64) -> Vec<Value>,
    served: impl Fn(i64) -> usize,
) -> Vec<(usize, i64)> {
    let (first, last) = (window[0], *window.last().unwrap());
    let before = e.calls();
    let out = f.fill(first, last, &[]).ok();
    // Every call the emulator saw is one the run counted, and no more.
    assert_eq!(e.calls() - before, f.fill_calls(), "{timeline}");
    let attempts = f.attempts();
    let mut seen = Vec::new();
    for &slot in window {
        let want = expected(slot);
        let got = f
            .slot(slot)
            .unwrap_or_else(|| panic!("no object for {}:\n{}", local_iso(slot), out.stderr));
        assert_eq!(ids(&got), ids(&want), "{timeline} {}", local_iso(slot));
        assert_eq!(got, want, "the statuses as served");
        let (outcome, notes, calls) = &attempts[&slot];
        let state = if want.is_empty() { "empty" } else { "filled" };
        assert_eq!((outcome.as_str(), *notes as usize), (state, want.len()));
        let n = served(slot);
        assert!(
            *calls <= budget(n),
            "{timeline} {}: {calls} calls for {n} statuses served",
            local_iso(slot),
        );
        seen.push((want.len(), *calls));
    }
    seen
}

#[test]
fn gotosocial_is_filled_exactly_in_its_string_ordered_ulid_space() {
    let e = emulator(ServerKind::GoToSocial);
    let window = slots(AUG1_JST - 3 * SLOT, 8);
    for (i, &slot) in window.iter().enumerate() {
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        e.add_statuses(plain(
            start,
            end,
            [0, 1, 45, 50, 60, 110, 170, 20][i],
            i as u64,
        ));
        for ms in [start, start, start + 1, end - 1] {
            e.add_status(StatusSpec::local(ms, &format!("edge {ms}")));
        }
    }
    // Local: GoToSocial honours local=true. Remote and only_media it ignores:
    // the client keeps the timeline's part and the media itself.
    // (No federation lag on the federated ones: its cost is measured in `federation`.)
    let lag = "federation_lag = \"0\"\n";
    for (timeline, extra) in [
        ("local", ""),
        ("remote", lag),
        ("public", &format!("{lag}only_media = true\n")),
    ] {
        let f = Fixture::new(&e, timeline, extra);
        let media = extra.contains("only_media");
        let range = |slot: i64| (slot * 1000, (slot + SLOT) * 1000);
        let expected = |slot| match media {
            true => e.expected_media(timeline, range(slot).0, range(slot).1),
            false => e.expected(timeline, range(slot).0, range(slot).1),
        };
        // What GoToSocial sends: for remote and only_media, the whole feed.
        let served = |slot| match timeline {
            "local" => e.expected("local", range(slot).0, range(slot).1).len(),
            _ => e.expected("public", range(slot).0, range(slot).1).len(),
        };
        let seen = assert_exact(&f, &e, timeline, &window, expected, served);
        let total: usize = seen.iter().map(|(n, _)| n).sum();
        assert!(
            total > if media { 15 } else { 40 },
            "{timeline}: {total} statuses"
        );
    }
    // Every page bound was an uppercase ULID of the server's own space (a
    // numeric or lowercase one sorts above every id and bounds nothing), only
    // max_id paged (min_id drops 5 statuses on GoToSocial), limit 40.
    let requests = e.requests();
    let bounded: Vec<_> = requests
        .iter()
        .filter(|q| q.contains_key("max_id"))
        .collect();
    assert!(bounded.len() > 20, "{}", bounded.len());
    for q in &bounded {
        let max_id = &q["max_id"];
        let ulid = max_id.len() == 26
            && max_id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        assert!(ulid, "{q:?}");
        assert!(
            !q.contains_key("min_id") && !q.contains_key("since_id"),
            "{q:?}"
        );
        assert!(q["limit"] == "40" || q["limit"] == "2", "{q:?}");
    }
}

#[test]
fn gotosocial_empty_pages_after_its_filter_are_not_taken_for_the_end() {
    let e = emulator(ServerKind::GoToSocial);
    let slot = AUG1_JST;
    let start = slot * 1000;
    // The slot's first minute holds 12 statuses; after them come 200 replies
    // to other accounts, which GoToSocial drops only after its query: three
    // reads of 45 find nothing to keep and it answers [] (with a Link).
    let kept: Vec<String> =
        e.add_statuses((0..12).map(|i| StatusSpec::local(start + i * 4000, "kept")));
    e.add_statuses(
        (0..200).map(|i| StatusSpec::reply_to_other(start + 60_000 + i * 2000, "reply")),
    );
    e.add_statuses(plain(start + SLOT * 1000, start + 2 * SLOT * 1000, 30, 7));
    let f = Fixture::new(&e, "local", "");
    let out = f.fill(slot, slot, &[]).ok();
    let got = f
        .slot(slot)
        .unwrap_or_else(|| panic!("no object:\n{}", out.stderr));
    assert_eq!(ids(&got), kept, "every status below the empty answers");
    assert_eq!(f.attempts()[&slot].0, "filled");
    // The server answered [] at least once, and the client went on below it
    // from where the Link said the server stopped reading.
    let requests = e.requests();
    assert!(
        requests.len() >= 4,
        "{} requests: the [] page was taken for the end",
        requests.len()
    );
}

#[test]
fn akkoma_flake_ids_and_late_deliveries_are_filled_exactly() {
    let e = emulator(ServerKind::Akkoma);
    let window = slots(AUG1_JST, 6);
    for (i, &slot) in window.iter().enumerate() {
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        e.add_statuses(plain(start, end, [70, 0, 35, 120, 41, 5][i], 40 + i as u64));
        // FlakeIds are minted on insert: a status delivered minutes late has
        // an id of its receipt, after its slot's end.
        for (at, delay) in [(end - 2000, 4 * 60_000), (start + 10, 90_000), (end - 1, 1)] {
            e.add_status(StatusSpec::delivered(at, delay, "late"));
        }
    }
    let f = Fixture::new(&e, "public", "");
    let expected = |slot| e.expected("public", slot * 1000, (slot + SLOT) * 1000);
    // Served: every id from a second before the slot to the default lag (10
    // minutes) and a second past its end.
    let served = |slot: i64| {
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        e.expected_by_receipt("public", start - 1000, end + 601_000)
            .len()
    };
    let seen = assert_exact(&f, &e, "public", &window, expected, served);
    assert!(seen.iter().map(|(n, _)| n).sum::<usize>() > 200);
    // Bounds are FlakeIds of the server's length (18 base62 characters).
    for q in e.requests().iter().filter(|q| q.contains_key("max_id")) {
        let id = &q["max_id"];
        assert!(
            id.len() == 18 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{q:?}"
        );
    }
}

#[test]
fn a_sharkey_layer_with_aidx_ids_is_filled_exactly_and_its_401_named() {
    let e = emulator(ServerKind::Sharkey);
    let window = slots(AUG1_JST, 5);
    for (i, &slot) in window.iter().enumerate() {
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        e.add_statuses(mixed_statuses(
            start,
            end,
            [90, 3, 0, 140, 40][i],
            80 + i as u64,
        ));
    }
    let f = Fixture::new(&e, "local", "");
    let expected = |slot| e.expected("local", slot * 1000, (slot + SLOT) * 1000);
    assert_exact(&f, &e, "local", &window, expected, |slot| {
        expected(slot).len()
    });
    for q in e.requests().iter().filter(|q| q.contains_key("max_id")) {
        let id = &q["max_id"];
        assert!(
            id.len() == 16
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
            "{q:?}"
        );
    }

    // Sharkey answers its errors as 401: a token it does not know is named.
    let e = MastodonEmulator::start(MastodonConfig {
        kind: ServerKind::Sharkey,
        tokens: vec!["good".into()],
        ..Default::default()
    });
    let mut f = Fixture::new(&e, "local", "");
    f.ws.set_env("MASTODON_TOKEN", "stale-token");
    f.run("scan", window[0], window[0], &[]).ok();
    let out = f.run("fill", window[0], window[0], &[]).code(2);
    assert!(
        out.stderr.contains("rejected the access token (401")
            && !out.stderr.contains("stale-token"),
        "{}",
        out.stderr
    );
}

#[test]
fn ids_without_time_are_paged_by_created_at_and_never_sealed_on_an_unbounded_answer() {
    let e = emulator(ServerKind::Opaque);
    let window = slots(AUG1_JST, 6);
    for (i, &slot) in window.iter().enumerate() {
        let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
        e.add_statuses(plain(
            start,
            end,
            [60, 0, 90, 0, 45, 120][i],
            120 + i as u64,
        ));
    }
    // Newer statuses above the window: the first range is paged down through them.
    let above = (window[5] + SLOT) * 1000;
    e.add_statuses(plain(above, above + 3 * SLOT * 1000, 200, 9));
    let f = Fixture::new(&e, "local", "");
    let (first, last) = (window[0], window[5]);
    let out = f.fill(first, last, &["--concurrency", "1"]).ok();
    assert!(out.stderr.contains("ids carry no time"), "{}", out.stderr);
    let attempts = f.attempts();
    for &slot in &window {
        let want = e.expected("local", slot * 1000, (slot + SLOT) * 1000);
        assert_eq!(
            ids(&f.slot(slot).expect("object")),
            ids(&want),
            "{}",
            local_iso(slot)
        );
        let state = if want.is_empty() { "empty" } else { "filled" };
        assert_eq!(attempts[&slot].0, state);
    }
    // Only the first range read from the newest status down; the others
    // started at a landmark the pages before them left.
    let requests = e.requests();
    let unbounded = requests
        .iter()
        .filter(|q| !q.contains_key("max_id"))
        .count();
    assert_eq!(
        unbounded, 2,
        "the probe's and the first range's: {requests:?}"
    );
    let calls: i64 = attempts.values().map(|(_, _, c)| c).sum();
    assert!(calls < 40, "{calls} calls for 6 slots");

    // The receipt rule needs ids with time: refused at the probe.
    let f = Fixture::new(&e, "public", "slot_by = \"receipt\"\n");
    f.run("scan", first, first, &[]).ok();
    let out = f.run("fill", first, first, &[]).code(2);
    assert!(
        out.stderr
            .contains("slot_by = \"receipt\" needs ids that carry the time"),
        "{}",
        out.stderr
    );
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
}

#[test]
fn a_server_that_cannot_be_paged_stops_at_the_probe_naming_what_it_saw() {
    let e = MastodonEmulator::start(MastodonConfig {
        kind: ServerKind::Opaque,
        ignore_max_id: true,
        ..Default::default()
    });
    let slot = AUG1_JST;
    e.add_statuses(plain(slot * 1000, (slot + SLOT) * 1000, 60, 3));
    let f = Fixture::new(&e, "local", "");
    f.run("scan", slot, slot, &[]).ok();
    let out = f.run("fill", slot, slot, &[]).code(2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot be paged: asked for the statuses below")
            && out.stderr.contains("ignores max_id"),
        "{}",
        out.stderr
    );
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
    assert!(f.complement.keys().is_empty());
}

#[test]
fn the_emulator_follows_gotosocial_0_19_2() {
    let e = emulator(ServerKind::GoToSocial);
    let t0 = AUG1_JST * 1000;
    e.add_statuses((0..60).map(|i| StatusSpec::local(t0 + i * 1000, &format!("s{i}"))));
    let base = e.base_url();
    const PATH: &str = "/api/v1/timelines/public";
    let page_ids = |body: &str| -> Vec<String> {
        let page: Vec<Value> = serde_json::from_str(body).unwrap();
        ids(&page)
    };
    // No User-Agent: 418.
    assert_eq!(get(&base, PATH, None, false).0, 418);
    // ULIDs, newest first; the limit clamped to 40 without an error.
    let (status, headers, body) = get(&base, &format!("{PATH}?limit=100"), None, true);
    assert_eq!(status, 200);
    let all = page_ids(&body);
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0] > w[1]) && all.iter().all(|id| id.len() == 26));
    // The Link names the configured host and the last status read.
    let link = &headers["link"];
    assert!(
        link.starts_with(&format!(
            "<https://{}/api/v1/timelines/public?limit=40&max_id={}&local=false>; rel=\"next\"",
            crate::support::mastodon::GTS_HOST,
            all[39]
        )),
        "{link}"
    );
    // A numeric max_id sorts after every ULID: it bounds nothing.
    let (_, _, body) = get(
        &base,
        &format!("{PATH}?limit=5&max_id=114948597350400000"),
        None,
        true,
    );
    assert_eq!(page_ids(&body), all[..5].to_vec());
    // Paging up from min_id drops the 5 statuses right after it.
    let (_, _, body) = get(
        &base,
        &format!("{PATH}?limit=3&min_id={}", all[20]),
        None,
        true,
    );
    assert_eq!(page_ids(&body), all[12..15].to_vec());
    // remote=true and only_media=true are not read.
    let (_, _, body) = get(
        &base,
        &format!("{PATH}?limit=40&remote=true&only_media=true"),
        None,
        true,
    );
    assert_eq!(page_ids(&body), all);
    // A limit that is not a number is a 400.
    assert_eq!(get(&base, &format!("{PATH}?limit=many"), None, true).0, 400);
    // Filtered after the query: three reads of 45 keep nothing, so [] comes
    // back with a Link to go on from, while statuses lie below.
    let e = emulator(ServerKind::GoToSocial);
    e.add_statuses((0..10).map(|i| StatusSpec::local(t0 + i * 1000, "kept")));
    e.add_statuses((0..150).map(|i| StatusSpec::reply_to_other(t0 + 20_000 + i * 100, "reply")));
    let (_, headers, body) = get(&e.base_url(), &format!("{PATH}?limit=40"), None, true);
    assert_eq!(body, "[]");
    let next = headers["link"]
        .split("max_id=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let (_, _, body) = get(
        &e.base_url(),
        &format!("{PATH}?limit=40&max_id={next}"),
        None,
        true,
    );
    assert_eq!(page_ids(&body).len(), 10);
    // Nothing left to read at all: [] without a Link.
    let floor = "00000000000000000000000000";
    let (_, headers, body) = get(
        &e.base_url(),
        &format!("{PATH}?limit=40&max_id={floor}"),
        None,
        true,
    );
    assert_eq!((body.as_str(), headers.get("link")), ("[]", None));
}
