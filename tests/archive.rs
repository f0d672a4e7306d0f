//! The archive source: a dump of JSON Lines files standing in for the origin.

use crate::support::s3::S3Server;
use crate::support::*;

/// One note line created at `ms`.
fn note(n: usize, ms: i64) -> String {
    let created = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!(r#"{{"id":"a{n:07}","createdAt":"{created}","text":"note {n}","visibility":"public"}}"#)
}

#[test]
fn concurrent_slots_share_one_index_of_the_archive() {
    let server = S3Server::shared();
    let bucket = server.new_bucket("archive-fill");
    let dump = server.new_bucket("archive-dump");
    // Four hourly files; the window is the first eight slots (hours 0 and 1).
    let mut n = 0;
    for hour in 0..4 {
        let mut body = String::new();
        for slot in 0..6 {
            let start = AUG1_JST + (hour * 6 + slot) * SLOT;
            for offset in [30, 300] {
                n += 1;
                body.push_str(&note(n, (start + offset) * 1000));
                body.push('\n');
            }
        }
        server.put(
            &dump,
            &format!("dump/notes-{hour:03}.jsonl"),
            body.as_bytes(),
        );
    }
    let source =
        format!("[datasets.jp.source]\nkind = \"archive\"\nlocation = \"s3://{dump}/dump\"\n");
    let ws = Workspace::new(&s3_config(
        &format!("s3://{bucket}/misskey"),
        &[],
        Some(&format!("s3://{bucket}/misskey_complement")),
        &source,
    ));
    let window = [
        "-d",
        "jp",
        "--start",
        &arg_time(AUG1_JST),
        "--end",
        &arg_time(AUG1_JST + 7 * SLOT),
    ];
    ws.slotfill(&[&["scan"][..], &window].concat()).ok();
    server.reset_counts(&dump);
    let out = ws
        .slotfill(&[&["fill"][..], &window, &["--concurrency", "4"]].concat())
        .ok();
    assert!(out.stdout.contains("filled 8 (16 notes)"), "{}", out.stdout);
    // Indexed once before the first slot (one listing, each file read once), then
    // one file read per slot.
    let counts = server.counts(&dump);
    assert_eq!(counts.list, 1, "{counts:?}");
    assert_eq!(counts.get, 4 + 8, "{counts:?}");
    assert!(
        out.stdout
            .contains("origin calls: 12 (4 before the first slot, 1.0 per slot)"),
        "{}",
        out.stdout
    );
    assert_eq!(server.list_keys(&bucket, "misskey_complement/").len(), 8);
}
