//! Origin and S3 faults: rate-limit storms and shared waits, 5xx answers,
//! HTML pages, truncated JSON, resets and timeouts at concurrency 8, from
//! each origin (Misskey, and Mastodon in the `mastodon_…` cases); S3
//! errors, resets and delays on list, get and put. Every run ends with each
//! fillable slot filled exactly or, where retries ran out, recorded failed and
//! left missing; nothing is ever written partial.

use std::time::{Duration, Instant};

use crate::support::misskey::Fault;
use crate::support::origin::OriginKind;
use crate::support::s3::{FaultRule, S3Fault, S3Op, S3Server};
use crate::support::seeded::{
    Origin, Place, Rng, as_strs, assert_consistent, assert_notes_exact, assert_same_end_state,
    end_state, finish, slot_states, spawn,
};
use crate::support::*;

/// An origin of `kind` with `slots` slots over local directories, scanned.
fn local(
    kind: OriginKind,
    seed: u64,
    slots: usize,
    notes: (u64, u64),
) -> (Origin, Workspace, Place, tempfile::TempDir) {
    let o = Origin::of(kind, seed, slots, notes);
    let dirs = tempfile::tempdir().unwrap();
    let complement = Place::dir(dirs.path(), "complement");
    let ws = o.workspace(&Place::dir(dirs.path(), "primary"), &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    (o, ws, complement, dirs)
}

/// Every fillable slot is either filled with exactly its notes, or has only
/// failed attempts, no object and is still missing. Returns (filled, failed).
#[track_caller]
fn assert_filled_or_failed(o: &Origin, ws: &Workspace, complement: &Place) -> (usize, usize) {
    assert_consistent(o, ws, complement);
    let keys = complement.keys();
    let states: std::collections::HashMap<i64, (String, Option<String>)> = slot_states(ws)
        .into_iter()
        .map(|(s, state, role)| (s, (state, role)))
        .collect();
    let (mut filled, mut failed) = (0, 0);
    for slot in o.fillable() {
        let (state, role) = &states[&slot];
        let outcomes = ws.query_i64(&format!(
            "SELECT COUNT(*) FROM fill_attempts WHERE slot_start = {slot} AND outcome = 'filled'"
        ));
        if role.as_deref() == Some("complement") {
            assert_eq!(outcomes, 1, "slot {}", local_iso(slot));
            filled += 1;
        } else {
            assert_eq!(state, "missing", "slot {}", local_iso(slot));
            assert!(
                !keys.contains(&key_of(slot)),
                "slot {} written",
                local_iso(slot)
            );
            let not_failed = ws.query_i64(&format!(
                "SELECT COUNT(*) FROM fill_attempts WHERE slot_start = {slot}
                 AND (outcome IS NULL OR outcome <> 'failed')"
            ));
            assert_eq!(
                not_failed,
                0,
                "slot {} neither filled nor failed",
                local_iso(slot)
            );
            assert!(
                ws.query_i64(&format!(
                    "SELECT COUNT(*) FROM fill_attempts WHERE slot_start = {slot}"
                )) >= 1,
                "slot {} never attempted",
                local_iso(slot)
            );
            failed += 1;
        }
    }
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'partial' OR finished_at IS NULL"
        ),
        0
    );
    (filled, failed)
}

#[test]
fn rate_limit_waits_are_shared_by_all_concurrent_slots() {
    rate_limit_waits_shared_case(OriginKind::Misskey);
}

#[test]
fn mastodon_rate_limit_waits_are_shared_by_all_concurrent_slots() {
    rate_limit_waits_shared_case(OriginKind::Mastodon);
}

fn rate_limit_waits_shared_case(kind: OriginKind) {
    let (o, ws, complement, _dirs) = local(kind, 0xfa01, 80, (150, 220));
    let e = &o.emulator;
    let mut fill = spawn(&ws, &o.args("fill", &["--concurrency", "8"]));
    let started = Instant::now();
    while e.calls() < 20 {
        assert!(fill.try_wait().unwrap().is_none(), "fill ended early");
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(1));
    }
    // One call answers 429 with Retry-After: 3. Until 3 s later only the calls
    // already in flight (one per other slot task) may reach the origin.
    let before = e.calls();
    e.fail_next([Fault::RateLimit {
        retry_after_secs: Some(3),
        with_info: true,
    }]);
    std::thread::sleep(Duration::from_millis(1500));
    let within = e.calls() - before;
    assert!(
        fill.try_wait().unwrap().is_none(),
        "fill ended within the wait"
    );
    let fill = finish(fill).ok();
    let after = e.calls() - before - within;
    eprintln!("{within} calls within the Retry-After window, {after} after it");
    assert!(
        within <= 2 * 8 + 2,
        "{within} calls reached the origin within its Retry-After window"
    );
    assert!(
        after >= 40,
        "only {after} calls after the window: too little left to prove the wait shared"
    );
    assert!(
        fill.stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        fill.stdout
    );
    assert_eq!(assert_filled_or_failed(&o, &ws, &complement).1, 0);
}

#[test]
fn rate_limit_storms_with_and_without_retry_after_are_waited_out() {
    rate_limit_storms_case(OriginKind::Misskey);
}

#[test]
fn mastodon_rate_limit_storms_with_and_without_retry_after_are_waited_out() {
    rate_limit_storms_case(OriginKind::Mastodon);
}

fn rate_limit_storms_case(kind: OriginKind) {
    let (o, ws, complement, _dirs) = local(kind, 0xfa02, 30, (150, 220));
    let mut storm = Vec::new();
    for _ in 0..8 {
        storm.push(Fault::RateLimit {
            retry_after_secs: Some(1),
            with_info: true,
        });
    }
    for _ in 0..8 {
        // Before Misskey 2024.9.0: no Retry-After, no info.
        storm.push(Fault::RateLimit {
            retry_after_secs: None,
            with_info: false,
        });
    }
    for _ in 0..6 {
        // info.resetMs only.
        storm.push(Fault::RateLimit {
            retry_after_secs: None,
            with_info: true,
        });
    }
    storm.push(Fault::CloudflareRateLimit);
    storm.push(Fault::CloudflareRateLimit);
    let faults = storm.len() as i64;
    o.emulator.fail_next(storm);
    // The first call (the probe detecting the id scheme, before any slot) meets
    // the whole storm in a row: without a cap, the backoff of the 429s that name
    // no wait doubles to 51 s a try and this test took 8 minutes.
    let out = ws
        .slotfill(&as_strs(&o.args(
            "fill",
            &[
                "-v",
                "--concurrency",
                "8",
                "--retry-wait",
                "0.05",
                "--retry",
                "0",
                "--rate-limit-wait-cap",
                "0.2",
            ],
        )))
        .ok();
    assert!(
        out.stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        out.stdout
    );
    assert_eq!(assert_filled_or_failed(&o, &ws, &complement).1, 0);
    // Every 429 was waited out and retried: rate limits are not failures
    // (--retry 0 allows no retry of a failure at all).
    // (The storm hits the probe made before the first slot, which the run's summary
    // counts and no slot attempt does.)
    let retries = summary_number(&out.stdout, "retries: ");
    assert_eq!(retries, faults);
    // Every request the origin saw is one the fill accounts for: nothing hammered
    // it behind the counts' back.
    assert_eq!(
        ws.query_i64("SELECT origin_calls FROM runs WHERE command = 'fill'"),
        o.emulator.calls() as i64
    );
    // One wait per 429: the origin's own waits honoured (1 s), the others capped.
    let waits: Vec<u64> = out
        .stderr
        .lines()
        .filter(|l| l.contains("origin rate limit: waiting"))
        .map(|l| {
            let ms = l.split("wait_ms=").nth(1).expect("wait_ms");
            ms.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(waits.len() as i64, faults, "{}", out.stderr);
    assert_eq!(
        waits.iter().filter(|w| **w > 200).count(),
        8 + 6,
        "{waits:?}"
    );
    // Misskey names the wait (Retry-After: 1); Mastodon its end (X-RateLimit-Reset),
    // a few milliseconds of which have passed when the answer is read.
    let named = |w: &u64| match kind {
        OriginKind::Misskey => *w == 1000,
        OriginKind::Mastodon => (900..=1000).contains(w),
    };
    assert!(waits[..8].iter().all(named), "{waits:?}");
    assert!(waits[8..16].iter().all(|w| *w <= 200), "{waits:?}");
}

#[test]
fn errors_html_pages_truncated_json_resets_and_timeouts_at_concurrency_8() {
    transient_errors_case(OriginKind::Misskey);
}

#[test]
fn mastodon_errors_html_pages_truncated_json_resets_and_timeouts_at_concurrency_8() {
    transient_errors_case(OriginKind::Mastodon);
}

fn transient_errors_case(kind: OriginKind) {
    let (o, ws, complement, _dirs) = local(kind, 0xfa03, 80, (150, 220));
    let kinds = [
        Fault::Internal500,
        Fault::Html(502),
        Fault::Html(503),
        Fault::Html(504),
        Fault::TruncatedJson,
        Fault::ResetConnection,
        Fault::Slow(Duration::from_secs(2)),
    ];
    let mut rng = Rng::new(3);
    // 100 calls: 30% faulted; `Slow(0)` passes a call through unharmed.
    let queue: Vec<Fault> = (0..100)
        .map(|_| match rng.chance(0.3) {
            true => kinds[rng.range(0, kinds.len() as u64 - 1) as usize].clone(),
            false => Fault::Slow(Duration::ZERO),
        })
        .collect();
    let faulted = queue
        .iter()
        .filter(|f| **f != Fault::Slow(Duration::ZERO))
        .count();
    o.emulator.fail_next(queue);
    let calls = o.emulator.calls();
    let args = [
        "--concurrency",
        "8",
        "--timeout",
        "0.5",
        "--retry",
        "2",
        "--retry-wait",
        "0.05",
        "--max-failures",
        "1000",
    ];
    let out = ws.slotfill(&as_strs(&o.args("fill", &args))).ok();
    assert!(
        o.emulator.calls() - calls >= 100,
        "the fill made fewer calls than faults were queued"
    );
    let (filled, failed) = assert_filled_or_failed(&o, &ws, &complement);
    let retries = ws.query_i64("SELECT SUM(retries) FROM fill_attempts");
    eprintln!(
        "{faulted} faults: {filled} filled, {failed} failed after exhausting retries, {retries} retries"
    );
    assert!(
        out.stdout.contains(&format!("filled {filled} ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{failed} failed")),
        "{}",
        out.stdout
    );
    assert!(retries >= 1);
    let codes: Vec<String> = {
        let db = ws.catalog();
        let mut stmt = db
            .prepare("SELECT DISTINCT error_code FROM fill_attempts WHERE outcome = 'failed'")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let known = [
        // Misskey's 500 is JSON with its code; Mastodon's is Rails' HTML page.
        if kind == OriginKind::Misskey {
            "internal_error"
        } else {
            "http_500"
        },
        "http_502",
        "http_503",
        "http_504",
        "bad_json",
        "truncated",
        "network",
        "timeout",
        "id_scheme",
    ];
    for code in &codes {
        assert!(known.contains(&code.as_str()), "failed with {code}");
    }
    // Once the origin behaves, a plain rerun fills what failed.
    ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    let (filled, failed) = assert_filled_or_failed(&o, &ws, &complement);
    assert_eq!((filled, failed), (o.fillable().len(), 0));
}

/// Rewrites the workspace's config so the id scheme is configured, not detected.
fn configure_scheme(ws: &Workspace) {
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    ws.write_config(&config.replace("id_scheme = \"auto\"", "id_scheme = \"aidx\""));
}

#[test]
fn calls_slower_than_the_timeout_are_retried_and_exhausted_slots_stay_missing() {
    slow_calls_case(OriginKind::Misskey);
}

#[test]
fn mastodon_calls_slower_than_the_timeout_are_retried_and_exhausted_slots_stay_missing() {
    slow_calls_case(OriginKind::Mastodon);
}

fn slow_calls_case(kind: OriginKind) {
    let (o, ws, complement, _dirs) = local(kind, 0xfa04, 12, (150, 220));
    configure_scheme(&ws);
    let timeout = ["--timeout", "0.5", "--retry-wait", "0.05"];

    // Every call after the probe outlives the timeout: the first two slots fail,
    // the run stops.
    o.emulator
        .fail_next(vec![Fault::Slow(Duration::ZERO); o.emulator.probe_calls()]);
    o.emulator
        .fail_every(1, Fault::Slow(Duration::from_secs(2)));
    let mut args = timeout.to_vec();
    args.extend(["--retry", "1", "--max-failures", "2", "--concurrency", "1"]);
    let out = ws.slotfill(&as_strs(&o.args("fill", &args))).code(1);
    assert!(out.stdout.contains("stopped early"), "{}", out.stdout);
    assert!(complement.keys().is_empty(), "nothing written");
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'failed' AND error_code = 'timeout'"
        ),
        2
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 2);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM slots WHERE ok_role = 'complement'"),
        0
    );

    // Every third call outlives it: each is abandoned and retried, and the
    // fill completes (one slot at a time, so no retry is itself a third call).
    o.emulator
        .fail_every(3, Fault::Slow(Duration::from_secs(2)));
    let calls = o.emulator.calls();
    let mut args = timeout.to_vec();
    args.extend(["--retry", "1", "--concurrency", "1"]);
    let out = ws.slotfill(&as_strs(&o.args("fill", &args))).ok();
    let made = (o.emulator.calls() - calls) as i64;
    assert!(
        out.stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        out.stdout
    );
    assert_eq!(assert_filled_or_failed(&o, &ws, &complement).1, 0);
    // The run's retries: the slots' and the probe's (one of its calls may be a third).
    let retries = summary_number(&out.stdout, "retries: ");
    assert_eq!(retries, made / 3, "each timed-out call retried once");
    o.emulator.fail_every(0, Fault::Slow(Duration::ZERO));
}

fn rule(op: S3Op, fault: S3Fault, skip: u64) -> FaultRule {
    FaultRule {
        op,
        fault,
        times: 1,
        skip,
    }
}

#[test]
fn s3_errors_resets_and_delays_on_list_get_and_put_end_like_a_clean_run() {
    let o = Origin::new(0xfa05, 30, (101, 160));
    let server = S3Server::shared();
    let clean = (
        Place::bucket("clean-primary", "misskey"),
        Place::bucket("clean-complement", "misskey_complement"),
    );
    let faulty = (
        Place::bucket("faulty-primary", "misskey"),
        Place::bucket("faulty-complement", "misskey_complement"),
    );
    let clean_ws = o.workspace(&clean.0, &clean.1);
    let ws = o.workspace(&faulty.0, &faulty.1);
    // One slot is empty at the origin: confirmed, it is resolved, and the run exits 0.
    let run = |ws: &Workspace| ws.slotfill(&as_strs(&o.args("run", &[]))).ok();
    run(&clean_ws);
    let (p, c) = (faulty.0.bucket_name(), faulty.1.bucket_name());
    for (bucket, op) in [
        (p, S3Op::List),
        (p, S3Op::Get),
        (c, S3Op::List),
        (c, S3Op::Put),
    ] {
        // At most four on one request (the SDK makes six attempts), spread by `skip`.
        server.inject(bucket, rule(op, S3Fault::SlowDown503, 0));
        server.inject(bucket, rule(op, S3Fault::InternalError500, 0));
        server.inject(bucket, rule(op, S3Fault::ResetConnection, 1));
        server.inject(bucket, rule(op, S3Fault::ResetMidBody, 1));
        server.inject(
            bucket,
            rule(op, S3Fault::Delay(Duration::from_millis(300)), 0),
        );
    }
    let out = run(&ws);
    server.clear_faults(p);
    server.clear_faults(c);
    assert!(out.stdout.contains("still not ok"), "{}", out.stdout);
    assert_consistent(&o, &ws, &faulty.1);
    assert_consistent(&o, &clean_ws, &clean.1);
    assert_same_end_state(&end_state(&ws, &faulty.1), &end_state(&clean_ws, &clean.1));
    // The same objects were counted and judged alike.
    let objects = |ws: &Workspace| -> Vec<(String, i64, i64, String)> {
        let db = ws.catalog();
        let mut stmt = db
            .prepare(
                "SELECT o.key, o.size, o.lines, o.status FROM objects o JOIN locations l ON l.id = o.location_id
                 WHERE o.gone_at IS NULL ORDER BY l.role, o.key",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(objects(&ws), objects(&clean_ws));
    // Every complement object is whole (the PUTs that were reset were redone).
    for slot in o.fillable() {
        let body = faulty.1.get(&key_of(slot)).expect("filled");
        assert_notes_exact(&o, slot, &key_of(slot), &body);
    }
    // The faults hit: each error or reset cost a request more than the clean run.
    let (fp, fc) = (server.counts(p), server.counts(c));
    let (cp, cc) = (
        server.counts(clean.0.bucket_name()),
        server.counts(clean.1.bucket_name()),
    );
    // (A list or get cut mid-body is retried too; a put cut mid-body had succeeded.)
    let more = |f: u64, c: u64, n: u64, what: &str| {
        assert!(f >= c + n, "{what}: {f} requests with faults, {c} without");
    };
    more(fp.list, cp.list, 4, "primary list");
    more(fp.get, cp.get, 4, "primary get");
    more(fc.list, cc.list, 4, "complement list");
    more(fc.put, cc.put, 3, "complement put");
    eprintln!(
        "with faults: primary {fp:?}, complement {fc:?}\nclean: primary {cp:?}, complement {cc:?}"
    );
}
