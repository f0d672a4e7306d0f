//! Awkward objects on the real S3 server are counted exactly, and counting
//! streams: a single 5 MB line, a missing final newline, CRLF, empty objects,
//! stray and cut-off UTF-8 sequences, and a 60 MB object, with the peak memory
//! (RSS) of the `slotfill` process measured by the kernel (`support::rss`).

use crate::support::bodies::{big_body, mixed_line, mixed_lines};
use crate::support::rss::run_measured;
use crate::support::s3::S3Server;
use crate::support::*;

/// Rules under which every object's lines matter: nothing is too small by
/// size except an empty object, nothing has too few lines, and no count is
/// capped below a million lines.
const OPEN_RULES: &str = "[datasets.jp.rules]\nmin_bytes = 0\nmin_lines = 0\nmax_lines = 1000000\n";

const MIB: usize = 1024 * 1024;
/// The ceiling for the whole process while counting a 60 MB object.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// How much more a 60 MB object may cost than a 1 MB one.
const RSS_GROWTH_KIB: u64 = 6 * 1024;

/// What the catalog must say about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    lines: Option<i64>,
    utf8_valid: Option<i64>,
    unterminated: Option<i64>,
    status: &'static str,
}

fn expect(lines: i64, utf8_valid: bool, unterminated: bool, status: &'static str) -> Expect {
    Expect {
        lines: Some(lines),
        utf8_valid: Some(i64::from(utf8_valid)),
        unterminated: Some(i64::from(unterminated)),
        status,
    }
}

fn scan_args(first: i64, last: i64) -> Vec<String> {
    [
        "scan",
        "--dataset",
        "jp",
        "--start",
        &arg_time(first),
        "--end",
        &arg_time(last),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The catalog's facts about the object at `key` of the location whose URL ends with `suffix`.
fn facts(ws: &Workspace, suffix: &str, key: &str) -> Expect {
    let conn = ws.catalog();
    let (lines, utf8_valid, unterminated, status): (Option<i64>, Option<i64>, Option<i64>, String) =
        conn.query_row(
            "SELECT o.lines, o.utf8_valid, o.unterminated, o.status FROM objects o
             JOIN locations l ON l.id = o.location_id
             WHERE o.key = ?1 AND l.url LIKE '%' || ?2",
            [key, suffix],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("{key} in {suffix}: {e}"));
    let status: &'static str = Box::leak(status.into_boxed_str());
    Expect {
        lines,
        utf8_valid,
        unterminated,
        status,
    }
}

fn slot_state(ws: &Workspace, slot: i64) -> String {
    ws.catalog()
        .query_row(
            "SELECT state FROM slots WHERE slot_start = ?1",
            [slot],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn awkward_objects_are_counted_exactly_with_flat_memory() {
    let server = S3Server::shared();
    let bucket = server.new_bucket("objects");
    let first = AUG1_JST;
    let slot = |i: i64| first + i * SLOT;

    let huge_line = {
        let mut line = mixed_line(0, 5 * MIB);
        line.push('\n');
        line.into_bytes()
    };
    let mut huge_unterminated = mixed_line(1, 5 * MIB).into_bytes();
    huge_unterminated.extend_from_slice("最後の行".as_bytes());
    let mut unterminated = mixed_lines(10, 300, "\n");
    unterminated.pop();
    let crlf = mixed_lines(12, 300, "\r\n");
    let mut crlf_unterminated = mixed_lines(7, 300, "\r\n");
    crlf_unterminated.truncate(crlf_unterminated.len() - 2);
    let mut stray_byte = mixed_lines(9, 300, "\n");
    stray_byte.insert(1000, 0xff);
    // The object ends in the middle of a three-byte character (no newline).
    let mut cut_at_end = mixed_lines(6, 300, "\n");
    cut_at_end.extend_from_slice(&"日本".as_bytes()[..5]);
    // A character cut short before the newline, inside the object.
    let mut cut_inside = mixed_lines(5, 300, "\n");
    cut_inside.extend_from_slice(&"語".as_bytes()[..2]);
    cut_inside.extend_from_slice(b"\n");
    cut_inside.extend_from_slice(&mixed_lines(3, 300, "\n"));
    // Encoded surrogates and overlong forms are not UTF-8 either.
    let mut surrogate = mixed_lines(4, 300, "\n");
    surrogate.extend_from_slice(b"{\"t\":\"\xed\xa0\x80\"}\n{\"t\":\"\xc0\xaf\"}\n");
    // About 1.2 MB of multi-byte text: reads split characters everywhere.
    let (japanese, japanese_lines) = big_body(MIB + MIB / 5);

    let objects: Vec<(i64, Vec<u8>, Expect)> = vec![
        (0, huge_line, expect(1, true, false, "ok")),
        (1, huge_unterminated, expect(1, true, true, "ok")),
        (2, unterminated, expect(10, true, true, "ok")),
        (3, crlf, expect(12, true, false, "ok")),
        (4, crlf_unterminated, expect(7, true, true, "ok")),
        (
            5,
            Vec::new(),
            Expect {
                lines: None,
                utf8_valid: None,
                unterminated: None,
                status: "too_small",
            },
        ),
        (6, stray_byte, expect(9, false, false, "unreadable")),
        (7, cut_at_end, expect(7, false, true, "unreadable")),
        (8, cut_inside, expect(9, false, false, "unreadable")),
        (9, surrogate, expect(6, false, false, "unreadable")),
        (10, japanese, expect(japanese_lines, true, false, "ok")),
        (11, b"x".to_vec(), expect(1, true, true, "ok")),
    ];
    let last = slot(11);
    for (i, body, _) in &objects {
        server.put(&bucket, &format!("misskey/{}", key_of(slot(*i))), body);
    }
    // An empty complement object is read (complement objects are always counted).
    server.put(
        &bucket,
        &format!("misskey_complement/{}", key_of(slot(5))),
        b"",
    );
    let config = s3_config(
        &format!("s3://{bucket}/misskey"),
        &[],
        Some(&format!("s3://{bucket}/misskey_complement")),
        "",
    )
    .replace(RULES, OPEN_RULES);
    assert!(config.contains(OPEN_RULES));
    let ws = Workspace::new(&config);

    let args = scan_args(first, last);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, rss_awkward) = run_measured(&ws, &args);
    let out = out.ok();
    assert!(
        out.stdout.contains("slots: 12 total, 7 ok, 5 not ok"),
        "{}",
        out.stdout
    );
    for (i, _, expected) in &objects {
        let key = key_of(slot(*i));
        assert_eq!(
            facts(&ws, "/misskey", &key),
            *expected,
            "object {i} ({key})"
        );
        assert_eq!(slot_state(&ws, slot(*i)), expected.status, "slot {i}");
    }
    assert_eq!(
        facts(&ws, "/misskey_complement", &key_of(slot(5))),
        expect(0, true, false, "too_small"),
        "the empty complement object, counted"
    );
    let counts = server.counts(&bucket);
    // Every object is read once, except the empty primary object (too small by
    // its listed size); the empty complement object is read.
    assert_eq!(counts.get, 11 + 1, "{counts:?}");
    assert!(
        rss_awkward < RSS_LIMIT_KIB,
        "two 5 MB lines took {rss_awkward} KiB"
    );

    // One object of 1.2 MB, then one of 60 MiB, each alone in a fresh catalog.
    let (small, small_lines) = big_body(MIB + MIB / 5);
    let (large, large_lines) = big_body(60 * MIB);
    let day2 = AUG1_JST + 86_400;
    let day3 = AUG1_JST + 2 * 86_400;
    server.put(&bucket, &format!("misskey/{}", key_of(day2)), &small);
    server.put(&bucket, &format!("misskey/{}", key_of(day3)), &large);
    let large_len = large.len() as u64;
    drop((small, large));

    let mut measured = Vec::new();
    for (slot, lines, bytes) in [
        (day2, small_lines, MIB as u64),
        (day3, large_lines, large_len),
    ] {
        let ws = Workspace::new(&config);
        server.reset_counts(&bucket);
        let args = scan_args(slot, slot);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, rss) = run_measured(&ws, &args);
        out.ok();
        assert_eq!(
            facts(&ws, "/misskey", &key_of(slot)),
            expect(lines, true, false, "ok"),
            "{bytes} bytes"
        );
        let counts = server.counts(&bucket);
        assert_eq!(counts.get, 1, "{counts:?}");
        assert!(counts.bytes_out >= bytes, "read whole: {counts:?}");
        measured.push(rss);
    }
    let (rss_small, rss_large) = (measured[0], measured[1]);
    eprintln!(
        "peak RSS of slotfill scan: two 5 MB lines {rss_awkward} KiB, 1.2 MB object {rss_small} KiB, 60 MiB object {rss_large} KiB"
    );
    assert!(
        rss_large < RSS_LIMIT_KIB,
        "counting 60 MiB took {rss_large} KiB"
    );
    assert!(
        rss_large <= rss_small + RSS_GROWTH_KIB,
        "memory grew with the object: {rss_small} KiB for 1.2 MB, {rss_large} KiB for 60 MiB"
    );
}
