//! Scan and gaps against the real S3 server.

use crate::support::s3::S3Server;
use crate::support::*;

/// Objects of every status across primary and backup, around the JST day boundary.
struct Fixture {
    ws: Workspace,
    primary: String,
    backup: String,
    first: i64,
    last: i64,
}

fn fixture() -> Fixture {
    let server = S3Server::shared();
    let (primary, backup) = (
        server.new_bucket("scan-primary"),
        server.new_bucket("scan-backup"),
    );
    // 2025-07-31T23:00 .. 2025-08-01T00:50 JST: 12 slots over two local days.
    let first = AUG1_JST - 6 * SLOT;
    let last = AUG1_JST + 5 * SLOT;
    let p = |i: i64, body: &[u8]| {
        server.put(
            &primary,
            &format!("misskey/{}", key_of(first + i * SLOT)),
            body,
        )
    };
    p(0, &jsonl(10, 100)); // ok
    p(1, &jsonl(5, 10)); // too small: 5 lines of 24 bytes <= 200 bytes
    p(2, &jsonl(3, 100)); // too few lines (<= 3)
    p(3, &jsonl(45, 100)); // too many lines (>= 40)
    let mut bad = jsonl(10, 100);
    bad[50] = 0xff;
    p(4, &bad); // unreadable
    // 5: missing everywhere
    // 6: missing in primary, ok in backup (first slot of the new JST day)
    server.put(
        &backup,
        &format!("misskey/{}", key_of(first + 6 * SLOT)),
        &jsonl(10, 100),
    );
    let crlf = String::from_utf8(jsonl(10, 100))
        .unwrap()
        .replace('\n', "\r\n");
    p(7, crlf.as_bytes()); // ok with CRLF
    let mut unterminated = jsonl(10, 100);
    unterminated.pop();
    p(8, &unterminated); // ok without the trailing newline
    p(9, &jsonl(3, 100)); // too few in primary ...
    server.put(
        &backup,
        &format!("misskey/{}", key_of(first + 9 * SLOT)),
        &jsonl(45, 100),
    ); // ... too many in backup
    p(10, &jsonl(39, 100)); // ok: one below max_lines
    p(11, &jsonl(4, 100)); // ok: one above min_lines
    server.put(&primary, "misskey/2025/08/01/00/notes.txt", b"not a slot");
    let config = s3_config(
        &format!("s3://{primary}/misskey"),
        &[&format!("s3://{backup}/misskey")],
        None,
        "",
    );
    Fixture {
        ws: Workspace::new(&config),
        primary,
        backup,
        first,
        last,
    }
}

fn scan(f: &Fixture) -> Run {
    f.ws.slotfill(&[
        "scan",
        "--dataset",
        "jp",
        "--start",
        &arg_time(f.first),
        "--end",
        &arg_time(f.last),
    ])
    .ok()
}

#[test]
fn scan_derives_every_status_across_locations_and_the_day_boundary() {
    let f = fixture();
    let out = scan(&f);
    assert!(
        out.stdout.contains("slots: 12 total, 6 ok, 6 not ok"),
        "{}",
        out.stdout
    );
    let gaps =
        f.ws.slotfill(&["gaps", "--dataset", "jp", "--format", "csv"])
            .ok();
    let expected: Vec<(String, String)> = [
        (1, "too_small"),
        (2, "too_few_lines"),
        (3, "too_many_lines"),
        (4, "unreadable"),
        (5, "missing"),
        (9, "too_many_lines"),
    ]
    .iter()
    .map(|(i, s)| (local_iso(f.first + i * SLOT), s.to_string()))
    .collect();
    assert_eq!(gaps_csv(&gaps.stdout), expected);
    // The backup made slot 6 ok, and line counts are exact.
    let ws = &f.ws;
    let slot6 = f.first + 6 * SLOT;
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT ok_role = 'backup' FROM slots WHERE slot_start = {slot6}"
        )),
        1
    );
    for (i, lines) in [(7, 10), (8, 10), (10, 39), (11, 4)] {
        let key = key_of(f.first + i * SLOT);
        let counted = ws.query_i64(&format!("SELECT lines FROM objects WHERE key = '{key}'"));
        assert_eq!(counted, lines, "slot {i}");
    }
    assert_eq!(
        ws.query_i64(
            "SELECT unterminated FROM objects WHERE lines = 10 AND unterminated = 1 LIMIT 1"
        ),
        1
    );
    // Periods group contiguous slots.
    let table = ws.slotfill(&["gaps", "--dataset", "jp"]).ok();
    assert!(
        table.stdout.contains("6 slots not ok in 2 periods"),
        "{}",
        table.stdout
    );
    let json = ws
        .slotfill(&["gaps", "--dataset", "jp", "--format", "json"])
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    // Keys in their documented order, not sorted.
    let at = |key: &str| json.stdout.find(&format!("\"{key}\":")).unwrap();
    assert!(at("slots_not_ok") < at("periods"), "{}", json.stdout);
    assert!(
        at("start") < at("last_slot") && at("last_slot") < at("slots"),
        "{}",
        json.stdout
    );
    assert_eq!(doc["periods"][0]["slots"], 5);
    assert_eq!(doc["periods"][1]["reasons"]["too_many_lines"], 1);
}

#[test]
fn rescans_download_only_what_changed() {
    let f = fixture();
    let server = S3Server::shared();
    scan(&f);
    let cold = server.counts(&f.primary);
    // Too-small objects are judged from the listing; the foreign key is never read.
    assert_eq!(cold.get, 9, "{cold:?}");
    assert_eq!(cold.list, 2, "one listing per day prefix");

    server.reset_counts(&f.primary);
    server.reset_counts(&f.backup);
    let warm = scan(&f);
    assert_eq!(server.counts(&f.primary).get, 0);
    assert_eq!(server.counts(&f.backup).get, 0);
    assert_eq!(server.counts(&f.primary).list, 2);
    assert!(warm.stdout.contains("0 counted"), "{}", warm.stdout);

    // One object changes (new ETag): exactly that one is downloaded again.
    let changed = format!("misskey/{}", key_of(f.first + 2 * SLOT));
    server.put(&f.primary, &changed, &jsonl(20, 100));
    server.reset_counts(&f.primary);
    scan(&f);
    assert_eq!(server.counts(&f.primary).get, 1);
    let slot2 = f.first + 2 * SLOT;
    assert_eq!(
        f.ws.query_i64(&format!(
            "SELECT state = 'ok' FROM slots WHERE slot_start = {slot2}"
        )),
        1
    );

    // A deleted object is marked gone and its slot goes missing.
    server.delete(&f.primary, &changed);
    scan(&f);
    assert_eq!(
        f.ws.query_i64(&format!(
            "SELECT state = 'missing' FROM slots WHERE slot_start = {slot2}"
        )),
        1
    );
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM objects WHERE gone_at IS NOT NULL"),
        1
    );
}

/// An object rewritten with the same byte count but other lines is a new
/// object (its ETag says so): the next scan downloads exactly it, once, and
/// records what it holds now.
#[test]
fn an_object_rewritten_with_the_same_size_is_counted_again() {
    let f = fixture();
    let server = S3Server::shared();
    scan(&f);
    let slot = f.first + 10 * SLOT;
    let key = format!("misskey/{}", key_of(slot));
    let before = server.get(&f.primary, &key).unwrap();
    let etag = server.etag(&f.primary, &key).unwrap();
    let lines_of = |f: &Fixture| {
        f.ws.query_i64(&format!(
            "SELECT lines FROM objects WHERE key = '{}'",
            key_of(slot)
        ))
    };
    assert_eq!(lines_of(&f), 39);

    // Two lines now, padded to the same size: too few lines.
    let rewritten = jsonl_of_size(2, before.len());
    server.put(&f.primary, &key, &rewritten);
    assert_ne!(server.etag(&f.primary, &key).unwrap(), etag);
    server.reset_counts(&f.primary);
    server.reset_counts(&f.backup);
    scan(&f);
    let (primary, backup) = (server.counts(&f.primary), server.counts(&f.backup));
    assert_eq!((primary.get, backup.get), (1, 0), "{primary:?} {backup:?}");
    assert_eq!(primary.bytes_out, before.len() as u64, "{primary:?}");
    assert_eq!(lines_of(&f), 2);
    let state: String =
        f.ws.catalog()
            .query_row(
                "SELECT state FROM slots WHERE slot_start = ?1",
                [slot],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(state, "too_few_lines");
}

#[test]
fn local_directory_locations_scan_like_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("primary");
    for i in 0..6 {
        let path = root.join(key_of(AUG1_JST + i * SLOT));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if i != 3 {
            std::fs::write(&path, jsonl(10, 100)).unwrap();
        }
    }
    let config = format!(
        "[datasets.jp]\nprimary = \"file://{}\"\n{RULES}",
        root.display()
    );
    let ws = Workspace::new(&config);
    let range = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T00:50"];
    let out = ws
        .slotfill(&[&["scan", "-d", "jp"][..], &range].concat())
        .ok();
    assert!(
        out.stdout.contains("slots: 6 total, 5 ok, 1 not ok"),
        "{}",
        out.stdout
    );
    // The same window with explicit offsets.
    let offsets = [
        "--start",
        "2025-08-01T00:00+09:00",
        "--end",
        "2025-07-31T15:50Z",
    ];
    let again = ws
        .slotfill(&[&["scan", "-d", "jp"][..], &offsets].concat())
        .ok();
    assert!(again.stdout.contains("0 counted"), "{}", again.stdout);
    assert!(
        again.stdout.contains("slots: 6 total, 5 ok, 1 not ok"),
        "{}",
        again.stdout
    );
    let gaps = ws.slotfill(&["gaps", "-d", "jp", "--format", "csv"]).ok();
    assert_eq!(
        gaps_csv(&gaps.stdout),
        vec![(local_iso(AUG1_JST + 3 * SLOT), "missing".to_string())]
    );
}

#[test]
fn a_one_hour_scan_downloads_only_the_hour_of_a_full_day() {
    let server = S3Server::shared();
    let primary = server.new_bucket("scan-hour");
    // Six hours of one day, 36 objects; the scans below take one hour at a time.
    for i in 0..36 {
        server.put(
            &primary,
            &format!("misskey/{}", key_of(AUG1_JST + i * SLOT)),
            &jsonl(10, 100),
        );
    }
    let ws = Workspace::new(&s3_config(
        &format!("s3://{primary}/misskey"),
        &[],
        None,
        "",
    ));
    let scan_hour = |hour: i64| {
        let first = AUG1_JST + hour * 6 * SLOT;
        ws.slotfill(&[
            "scan",
            "-d",
            "jp",
            "--start",
            &arg_time(first),
            "--end",
            &arg_time(first + 5 * SLOT),
        ])
        .ok()
    };
    let lines_of = |slot: i64| {
        ws.query_i64(&format!(
            "SELECT COALESCE(lines, -1) FROM objects WHERE slot_start = {slot} AND gone_at IS NULL"
        ))
    };

    let out = scan_hour(2);
    let counts = server.counts(&primary);
    assert_eq!(
        counts.get, 6,
        "only the hour's objects are read: {counts:?}"
    );
    assert_eq!(counts.list, 1, "{counts:?}");
    assert!(
        out.stdout.contains("slots: 6 total, 6 ok"),
        "{}",
        out.stdout
    );
    // The rest of the day is recorded as listed but not counted, and decides no slot.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM objects WHERE status = 'unchecked' AND lines IS NULL"),
        30
    );
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM slots"), 6);

    // Another hour: its objects, unchecked so far, are counted now; the hour counted
    // before keeps its facts and is neither degraded nor marked gone.
    server.reset_counts(&primary);
    scan_hour(4);
    assert_eq!(server.counts(&primary).get, 6);
    assert_eq!(lines_of(AUG1_JST + 4 * 6 * SLOT), 10);
    assert_eq!(lines_of(AUG1_JST + 2 * 6 * SLOT), 10);
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM objects WHERE status = 'ok' AND lines = 10"),
        12
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM objects WHERE gone_at IS NOT NULL"),
        0
    );

    // Rescanning a counted hour downloads nothing.
    server.reset_counts(&primary);
    scan_hour(2);
    assert_eq!(server.counts(&primary).get, 0);
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("primary");
    let path = root.join(key_of(AUG1_JST));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, jsonl(10, 100)).unwrap();
    let config = format!(
        "[datasets.jp]\nprimary = \"file://{}\"\n{RULES}",
        root.display()
    );
    let ws = Workspace::new(&config);
    let slot = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T00:00"];
    ws.slotfill(&[&["scan", "-d", "jp"][..], &slot].concat())
        .ok();
    // A window scanned only in part: gaps warns, on stderr, which is a pipe here.
    let out = ws
        .slotfill(&[
            "-v",
            "gaps",
            "-d",
            "jp",
            "--start",
            "2025-08-01T00:00",
            "--end",
            "2025-08-01T00:50",
        ])
        .ok();
    assert!(out.stderr.contains("never scanned"), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
}
