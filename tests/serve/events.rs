//! Storage events through a real socket: each shape the stores send (the
//! fixtures of tests/fixtures/s3-events, rewritten for the test's buckets)
//! changes exactly the slot it names, reading only that object; replays read
//! nothing; and of two deliveries racing for one object, what the bucket
//! holds last wins.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::s3::{FaultRule, S3Fault, S3Op, S3Server};
use crate::support::serve::{Serve, ServeFixture, TOKEN};
use crate::support::*;

/// A fixture with its bucket and key replaced.
fn fixture(name: &str, bucket: &str, key: &str, etag: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/s3-events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let fixture_key = "misskey/2025/08/14/00/2025-08-14_00-20.jsonl";
    let text = text
        .replace("miyazawa1s3", bucket)
        .replace(fixture_key, key)
        .replace(&fixture_key.replace('/', "%2F"), &key.replace('/', "%2F"))
        .replace("d41d8cd98f00b204e9800998ecf8427e", etag)
        .replace("9b2cf535f27731c974343645a3985328", etag)
        .replace("2048123", &jsonl(10, 100).len().to_string());
    serde_json::from_str(&text).unwrap()
}

/// Builds an event of one shape for (bucket, key, ETag).
type Shape = fn(&str, &str, &str) -> Value;

/// The SNS fixture's message holds the AWS event as text: rewrite it too.
fn sns(bucket: &str, key: &str, etag: &str) -> Value {
    let mut outer = fixture("sns-notification.json", bucket, key, etag);
    let inner = fixture("aws-put.json", bucket, key, etag);
    outer["Message"] = json!(inner.to_string());
    outer
}

#[test]
fn every_event_shape_turns_its_slot_and_only_reads_that_object() {
    let f = ServeFixture::new("", "");
    let s3 = S3Server::shared();
    let slot = |i: i64| AUG1_JST + 13 * 86_400 + i * SLOT;
    for i in 0..4 {
        f.put_primary(slot(i));
    }
    f.ws.slotfill(&[
        "scan",
        "-d",
        "jp",
        "--start",
        &arg_time(slot(0)),
        "--end",
        &arg_time(slot(9)),
    ])
    .ok();
    let serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_API_TOKEN", TOKEN),
            ("SLOTFILL_NOW", "2025-08-14T12:00:00+09:00"),
        ],
    );
    let post = |body: &Value| {
        let reply = serve.post("/api/events/s3", Some(TOKEN), body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    };
    let key = |i: i64| format!("m/{}", key_of(slot(i)));

    // Created, in each shape: one HEAD and one GET of that object, no listing.
    let shapes: [(&str, Shape); 4] = [
        ("aws", |b, k, e| fixture("aws-put.json", b, k, e)),
        ("minio", |b, k, e| fixture("minio-put.json", b, k, e)),
        ("sns", sns),
        ("eventbridge", |b, k, e| {
            fixture("eventbridge-created.json", b, k, e)
        }),
    ];
    for (n, (shape, event)) in shapes.iter().enumerate() {
        let i = 4 + n as i64;
        assert_eq!(f.state(slot(i)).as_deref(), Some("missing"), "{shape}");
        f.put_primary(slot(i));
        let etag = s3.etag(&f.primary, &key(i)).unwrap();
        let body = event(&f.primary, &key(i), etag.trim_matches('"'));
        s3.reset_counts(&f.primary);
        assert_eq!(
            post(&body),
            json!({"applied": 1, "ignored": 0, "unchanged": 0}),
            "{shape}"
        );
        assert_eq!(f.state(slot(i)).as_deref(), Some("ok"), "{shape}");
        let counts = s3.counts(&f.primary);
        assert_eq!(
            (counts.list, counts.head, counts.get),
            (0, 1, 1),
            "{shape}: {counts:?}"
        );
        // A replay changes nothing and reads nothing: the ETag is known.
        assert_eq!(
            post(&body),
            json!({"applied": 1, "ignored": 0, "unchanged": 1}),
            "{shape}"
        );
        assert_eq!(
            s3.counts(&f.primary),
            counts,
            "{shape}: a replay reads nothing"
        );
    }

    // Removed: MinIO's shape (slashes encoded) and EventBridge's turn a slot red
    // at once, once a HEAD confirms the object is gone.
    for (i, name) in [(0, "minio-delete.json"), (1, "eventbridge-deleted.json")] {
        s3.delete(&f.primary, &key(i));
        let body = fixture(name, &f.primary, &key(i), "");
        assert_eq!(
            post(&body),
            json!({"applied": 1, "ignored": 0, "unchanged": 0}),
            "{name}"
        );
        assert_eq!(f.state(slot(i)).as_deref(), Some("missing"), "{name}");
    }
    // Other buckets, keys that are not slots, test events and subscription
    // confirmations are ignored; what is not an event is 400.
    let foreign = fixture("aws-put.json", "someone-elses-bucket", &key(2), "x");
    let readme = fixture("aws-put.json", &f.primary, "m/README.txt", "x");
    assert_eq!(post(&foreign)["ignored"], 1);
    assert_eq!(post(&readme)["ignored"], 1);
    let quiet = fixture("aws-test-event.json", &f.primary, &key(2), "x");
    assert_eq!(
        post(&quiet),
        json!({"applied": 0, "ignored": 0, "unchanged": 0})
    );
    let confirm = fixture(
        "sns-subscription-confirmation.json",
        &f.primary,
        &key(2),
        "x",
    );
    assert_eq!(post(&confirm)["applied"], 0);
    let not_event = serve.post("/api/events/s3", Some(TOKEN), &json!({"hello": "world"}));
    assert_eq!(not_event.status, 400);
    assert!(
        not_event.json()["error"]
            .as_str()
            .unwrap()
            .contains("S3 event")
    );
    assert!(
        serve
            .get("/metrics", Some(TOKEN))
            .body
            .contains("slotfill_s3_events_total{outcome=\"ignored\"} 2")
    );
}

#[test]
fn of_two_deliveries_racing_for_one_object_the_later_write_wins() {
    let f = ServeFixture::new("", "");
    let s3 = S3Server::shared();
    let slot = AUG1_JST + 13 * 86_400;
    let key = format!("m/{}", key_of(slot));
    // Version 1 has too few lines; version 2 is valid.
    s3.put(&f.primary, &key, &jsonl(2, 150));
    let etag1 = s3.etag(&f.primary, &key).unwrap();
    let serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_API_TOKEN", TOKEN),
            ("SLOTFILL_NOW", "2025-08-14T12:00:00+09:00"),
        ],
    );
    let event = |etag: &str| fixture("aws-put.json", &f.primary, &key, etag.trim_matches('"'));
    // The first delivery reads version 1's head, then its download is slow;
    // meanwhile version 2 is written and its event delivered.
    s3.inject(
        &f.primary,
        FaultRule {
            op: S3Op::Get,
            fault: S3Fault::Delay(Duration::from_millis(1500)),
            times: 1,
            skip: 0,
        },
    );
    std::thread::scope(|scope| {
        let first = scope.spawn(|| serve.post("/api/events/s3", Some(TOKEN), &event(&etag1)));
        std::thread::sleep(Duration::from_millis(400));
        s3.put(&f.primary, &key, &jsonl(10, 100));
        let etag2 = s3.etag(&f.primary, &key).unwrap();
        let second = serve.post("/api/events/s3", Some(TOKEN), &event(&etag2));
        assert_eq!(second.status, 200, "{}", second.body);
        assert_eq!(first.join().unwrap().status, 200);
    });
    s3.clear_faults(&f.primary);
    let etag2 = s3.etag(&f.primary, &key).unwrap();
    let (etag, lines, state): (String, i64, String) =
        f.ws.catalog()
            .query_row(
                "SELECT o.etag, o.lines, s.state FROM objects o JOIN slots s ON s.object_id = o.id
             WHERE o.key = ?1 AND o.gone_at IS NULL",
                [key_of(slot)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
    assert_eq!(
        (etag.trim_matches('"'), lines, state.as_str()),
        (etag2.trim_matches('"'), 10, "ok"),
        "the catalog holds what the bucket holds"
    );
}

#[test]
fn a_deleted_primary_lets_the_backup_copy_a_scan_did_not_read_decide() {
    let server = S3Server::shared();
    let (primary, backup) = (
        server.new_bucket("serve-primary"),
        server.new_bucket("serve-backup"),
    );
    let ws = Workspace::new(&s3_config(
        &format!("s3://{primary}/m"),
        &[&format!("s3://{backup}/m")],
        None,
        "",
    ));
    let slot = AUG1_JST + 13 * 86_400;
    let key = format!("m/{}", key_of(slot));
    server.put(&primary, &key, &jsonl(10, 100));
    server.put(&backup, &key, &jsonl(12, 100));
    let window = arg_time(slot);
    ws.slotfill(&["scan", "-d", "jp", "--start", &window, "--end", &window])
        .ok();
    let status = |bucket: &str| -> String {
        ws.catalog()
            .query_row(
                "SELECT o.status FROM objects o JOIN locations l ON l.id = o.location_id
                 WHERE l.url LIKE ?1 AND o.gone_at IS NULL",
                [format!("s3://{bucket}/%")],
                |r| r.get(0),
            )
            .unwrap_or_else(|_| "gone".to_string())
    };
    assert_eq!(
        status(&backup),
        "unchecked",
        "the scan did not read the backup"
    );
    let serve = Serve::start(
        &ws,
        &[
            ("SLOTFILL_API_TOKEN", TOKEN),
            ("SLOTFILL_NOW", "2025-08-14T12:00:00+09:00"),
        ],
    );
    server.delete(&primary, &key);
    server.reset_counts(&backup);
    let removed = fixture("minio-delete.json", &primary, &key, "");
    let reply = serve.post("/api/events/s3", Some(TOKEN), &removed);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The backup's copy was read (once) and now decides the slot, as a scan would have it.
    assert_eq!(status(&backup), "ok");
    assert_eq!(server.counts(&backup).get, 1);
    let (state, role): (String, String) = ws
        .catalog()
        .query_row(
            "SELECT state, ok_role FROM slots WHERE slot_start = ?1",
            [slot],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), role.as_str()), ("ok", "backup"));
}
