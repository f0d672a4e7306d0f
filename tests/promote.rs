//! `promote`: complement objects copied into the primary on the real S3
//! server, never clobbering what a collector wrote, recorded once, and
//! finished by a rerun after SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::bodies::big_body;
use crate::support::rss::run_measured;
use crate::support::s3::{FaultRule, Gate, S3Fault, S3Op, S3Server};
use crate::support::seeded::{Origin, Place, Rng, as_strs, finish, spawn};
use crate::support::*;

/// An origin of `slots` slots (the first in the primary, the rest missing),
/// filled into the complement by `run`.
fn filled(seed: u64, slots: usize, primary: &Place, complement: &Place) -> (Origin, Workspace) {
    let o = Origin::new(seed, slots, (4, 12));
    let ws = o.workspace(primary, complement);
    ws.slotfill(&as_strs(&o.args("run", &[]))).ok();
    (o, ws)
}

fn promotions(ws: &Workspace) -> BTreeMap<i64, (i64, String)> {
    let db = ws.catalog();
    let mut stmt = db
        .prepare("SELECT slot_start, COUNT(*), MIN(method) FROM promotions GROUP BY slot_start")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn ok_role(ws: &Workspace, slot: i64) -> String {
    ws.catalog()
        .query_row(
            "SELECT COALESCE(ok_role, state) FROM slots WHERE slot_start = ?1",
            [slot],
            |r| r.get(0),
        )
        .unwrap()
}

/// Every fillable slot's primary object is its complement object, byte for
/// byte, with the complement's metadata plus `promoted-from`.
#[track_caller]
fn assert_promoted(o: &Origin, primary: &Place, complement: &Place) {
    for slot in o.fillable() {
        let key = key_of(slot);
        let want = complement.get(&key).expect("complement object");
        assert!(primary.get(&key) == Some(want), "{key}: bytes differ");
        let (got, source) = (
            primary.metadata(&key).unwrap(),
            complement.metadata(&key).unwrap(),
        );
        for (k, v) in &source {
            assert_eq!(got.get(k), Some(v), "{key}: metadata {k}");
        }
        assert_eq!(
            got.get("promoted-from"),
            Some(&format!("{}/{key}", complement.url())),
            "{key}"
        );
    }
}

#[test]
fn promote_after_a_fill_copies_server_side_and_a_rerun_does_nothing() {
    let server = S3Server::shared();
    let primary = Place::bucket("promote-primary", "misskey");
    let complement = Place::bucket("promote-complement", "misskey_complement");
    let (o, ws) = filled(0x9201, 14, &primary, &complement);
    let present = primary.contents();
    let n = o.fillable().len();

    let dry = ws
        .slotfill(&as_strs(&o.args("promote", &["--dry-run"])))
        .ok();
    assert!(
        dry.stdout.contains(&format!("{n} slots would be promoted")),
        "{}",
        dry.stdout
    );
    assert_eq!(primary.contents(), present, "a dry run copies nothing");

    server.reset_counts(primary.bucket_name());
    server.reset_counts(complement.bucket_name());
    let out = ws.slotfill(&as_strs(&o.args("promote", &[]))).ok();
    assert!(
        out.stdout.contains(&format!(
            "promoted {n} slots ({n} copied server-side, 0 streamed"
        )),
        "{}",
        out.stdout
    );
    assert_promoted(&o, &primary, &complement);
    // CopyObject only: no byte of the objects went through slotfill.
    let (p, c) = (
        server.counts(primary.bucket_name()),
        server.counts(complement.bucket_name()),
    );
    assert_eq!((p.put, p.get, c.get), (n as u64, 0, 0), "{p:?} {c:?}");
    // The collector's own objects are untouched.
    for (key, body) in &present {
        assert_eq!(primary.get(key).as_ref(), Some(body), "{key}");
    }
    // The slots are ok through the primary at once, each promoted once.
    let recorded = promotions(&ws);
    for slot in o.fillable() {
        assert_eq!(ok_role(&ws, slot), "primary", "{}", local_iso(slot));
        assert_eq!(recorded[&slot], (1, "copy".to_string()));
    }
    // A rescan judges the copies by their metadata: they hold more lines than the
    // collector rules allow (max_lines 40 here), and are valid all the same.
    ws.slotfill(&as_strs(&o.args("verify", &[]))).ok();
    for slot in o.fillable() {
        assert_eq!(ok_role(&ws, slot), "primary", "{}", local_iso(slot));
    }
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM objects o JOIN locations l ON l.id = o.location_id
                      WHERE l.role = 'primary' AND o.status <> 'ok'"
        ),
        0
    );

    server.reset_counts(primary.bucket_name());
    let again = ws.slotfill(&as_strs(&o.args("promote", &[]))).ok();
    assert!(
        again
            .stdout
            .contains("0 slots ok only through the complement"),
        "{}",
        again.stdout
    );
    assert_eq!(server.counts(primary.bucket_name()).put, 0);
    assert_eq!(promotions(&ws), recorded);
    assert_eq!(
        ws.query_i64("SELECT filled FROM runs WHERE command = 'promote' ORDER BY id DESC LIMIT 1"),
        0
    );
}

#[test]
fn a_collector_object_written_between_plan_and_copy_is_not_clobbered() {
    let server = S3Server::shared();
    let primary = Place::bucket("promote-race-primary", "misskey");
    let complement = Place::bucket("promote-race-complement", "misskey_complement");
    let (o, ws) = filled(0x9202, 6, &primary, &complement);
    // The first copy is held back 1.5 s on its way to the server; meanwhile the
    // collector writes that very slot.
    server.inject(
        primary.bucket_name(),
        FaultRule {
            op: S3Op::Put,
            fault: S3Fault::Delay(Duration::from_millis(1500)),
            times: 1,
            skip: 0,
        },
    );
    server.reset_counts(primary.bucket_name());
    let child = spawn(&ws, &o.args("promote", &["--concurrency", "1"]));
    let started = Instant::now();
    while server.counts(primary.bucket_name()).put == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no copy came");
        std::thread::sleep(Duration::from_millis(5));
    }
    let raced = o.fillable()[0];
    let collector = jsonl(12, 100);
    primary.put(&key_of(raced), &collector);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "{}: the target was written meanwhile",
            local_iso(raced)
        )),
        "{}",
        out.stdout
    );
    assert_eq!(primary.get(&key_of(raced)), Some(collector));
    assert!(!promotions(&ws).contains_key(&raced));
    for slot in &o.fillable()[1..] {
        assert_eq!(ok_role(&ws, *slot), "primary");
        let key = key_of(*slot);
        assert_eq!(primary.get(&key), complement.get(&key));
    }
    // A scan catalogues the collector's object: its slot is ok through the primary.
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    assert_eq!(ok_role(&ws, raced), "primary");
}

/// Another process takes the lease (a row written from another connection to
/// the catalog file) while the first copy is under way: that copy finishes
/// and is recorded, and promote copies nothing more, exits 1 naming the lost
/// lease, and leaves the new holder's lease in place.
#[test]
fn promote_stops_when_another_process_takes_its_lease() {
    let server = S3Server::shared();
    let primary = Place::bucket("promote-lease-primary", "misskey");
    let complement = Place::bucket("promote-lease-complement", "misskey_complement");
    let (o, ws) = filled(0x9205, 8, &primary, &complement);
    let present = primary.contents();
    let gate = Gate::new();
    server.inject(
        primary.bucket_name(),
        FaultRule {
            op: S3Op::Put,
            fault: S3Fault::Hold(gate.clone()),
            times: 1,
            skip: 0,
        },
    );
    server.reset_counts(primary.bucket_name());
    let child = spawn(&ws, &o.args("promote", &["--concurrency", "1"]));
    let started = Instant::now();
    while server.counts(primary.bucket_name()).put == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "no copy came");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The first copy is held at the proxy: now another process takes the lease.
    let taken = ws
        .catalog()
        .execute(
            "UPDATE leases SET holder = 'elsewhere:7:x', host = 'elsewhere.example', pid = 7",
            [],
        )
        .unwrap();
    assert_eq!(taken, 1, "promote held no lease");
    gate.open();
    let out = finish(child);
    assert_eq!(out.code, 1, "{out:?}");
    let fillable = o.fillable();
    let rest = fillable.len() - 1;
    assert_eq!(
        out.stderr.trim(),
        format!(
            "slotfill: error: lost the lease on dataset jp to another process; stopping \
             ({rest} slots not promoted; promote again once the other process is done)"
        ),
        "{}",
        out.stderr
    );
    // The copy under way was made and recorded; no other copy was even tried.
    assert_eq!(server.counts(primary.bucket_name()).put, 1);
    let first = fillable[0];
    assert_eq!(
        promotions(&ws).keys().copied().collect::<Vec<_>>(),
        vec![first]
    );
    assert_eq!(ok_role(&ws, first), "primary");
    assert_eq!(primary.get(&key_of(first)), complement.get(&key_of(first)));
    for slot in &fillable[1..] {
        assert_eq!(primary.get(&key_of(*slot)), None, "{}", local_iso(*slot));
        assert_eq!(ok_role(&ws, *slot), "complement");
    }
    assert_eq!(primary.keys().len(), present.len() + 1);
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM runs WHERE command = 'promote' AND outcome = 'stopped'
                    AND error LIKE 'lost the lease%'"
        ),
        1
    );
    let holder: String = ws
        .catalog()
        .query_row("SELECT holder FROM leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(holder, "elsewhere:7:x", "the new holder's lease is kept");
}

#[test]
fn replace_invalid_replaces_a_too_small_object_but_never_a_valid_one() {
    let primary = Place::bucket("promote-invalid-primary", "misskey");
    let complement = Place::bucket("promote-invalid-complement", "misskey_complement");
    let o = Origin::new(0x9203, 5, (4, 12));
    let (small, later) = (o.fillable()[0], o.fillable()[1]);
    let tiny = b"{\"id\":\"x\"}\n".to_vec();
    primary.put(&key_of(small), &tiny);
    primary.put(&key_of(later), &tiny);
    let ws = o.workspace(&primary, &complement);
    ws.slotfill(&as_strs(&o.args("run", &[]))).ok();
    assert_eq!(ok_role(&ws, small), "complement");
    // After the scan, the collector rewrote one of the two with a valid object.
    let valid = jsonl(12, 100);
    primary.put(&key_of(later), &valid);

    let out = ws.slotfill(&as_strs(&o.args("promote", &[]))).ok();
    for slot in [small, later] {
        assert!(
            out.stdout.contains(&format!(
                "{}: the target holds a too_small object; --replace-invalid replaces it",
                local_iso(slot)
            )),
            "{}",
            out.stdout
        );
    }
    assert_eq!(primary.get(&key_of(small)), Some(tiny.clone()));

    let catalogued: String = ws
        .catalog()
        .query_row(
            "SELECT o.etag FROM objects o JOIN locations l ON l.id = o.location_id
             WHERE l.role = 'primary' AND o.slot_start = ?1",
            [small],
            |r| r.get(0),
        )
        .unwrap();
    let out = ws
        .slotfill(&as_strs(&o.args("promote", &["--replace-invalid"])))
        .ok();
    assert!(
        out.stdout.contains("1 replaced an invalid object"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "{}: the target was written meanwhile",
            local_iso(later)
        )),
        "{}",
        out.stdout
    );
    assert_eq!(primary.get(&key_of(small)), complement.get(&key_of(small)));
    assert_eq!(primary.get(&key_of(later)), Some(valid));
    assert_eq!(ok_role(&ws, small), "primary");
    let replaced: Option<String> = ws
        .catalog()
        .query_row(
            "SELECT replaced_etag FROM promotions WHERE slot_start = ?1",
            [small],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(replaced, Some(catalogued));
}

#[test]
fn a_57_mb_object_is_copied_server_side_and_streamed_with_flat_memory() {
    let (body, lines) = big_body(57 * 1024 * 1024);
    let slot = AUG1_JST;
    let key = key_of(slot);
    let complement = Place::bucket("promote-big", "misskey_complement");
    S3Server::shared().put_with_metadata(
        complement.bucket_name(),
        &format!("misskey_complement/{key}"),
        &body,
        &[("complete", "true"), ("note-count", &lines.to_string())],
    );
    let dirs = tempfile::tempdir().unwrap();
    let window = ["--start", &arg_time(slot), "--end", &arg_time(slot)].map(str::to_string);
    let run = |primary: &Place| {
        let config = s3_config(&primary.url(), &[], Some(&complement.url()), "");
        let ws = Workspace::new(&config);
        let mut args = vec!["verify".to_string(), "-d".into(), "jp".into()];
        args.extend(window.iter().cloned());
        ws.slotfill(&as_strs(&args)).ok();
        args[0] = "promote".into();
        let (out, peak_kib) = run_measured(&ws, &as_strs(&args));
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(ok_role(&ws, slot), "primary");
        (out.stdout, peak_kib)
    };
    let to_s3 = Place::bucket("promote-big-primary", "misskey");
    let (server_side, _) = run(&to_s3);
    assert!(
        server_side.contains("1 copied server-side"),
        "{server_side}"
    );
    assert!(
        to_s3.get(&key) == Some(body.clone()),
        "server-side copy differs"
    );
    let to_dir = Place::dir(dirs.path(), "primary");
    let (streamed, peak_kib) = run(&to_dir);
    assert!(streamed.contains("1 streamed"), "{streamed}");
    assert!(to_dir.get(&key) == Some(body), "streamed copy differs");
    eprintln!("streaming 57 MiB peaked at {peak_kib} KiB");
    assert!(peak_kib < 48 * 1024, "peak {peak_kib} KiB");
}

#[test]
fn promote_killed_at_random_instants_ends_with_every_slot_promoted_once() {
    let server = S3Server::shared();
    let primary = Place::bucket("promote-kill-primary", "misskey");
    let complement = Place::bucket("promote-kill-complement", "misskey_complement");
    let (o, ws) = filled(0x9204, 31, &primary, &complement);
    let present = primary.contents();
    // Every copy takes 60 ms on its way to the server: kills land before, during
    // and after copies, some between a copy and its record.
    server.inject(
        primary.bucket_name(),
        FaultRule {
            op: S3Op::Put,
            fault: S3Fault::Delay(Duration::from_millis(60)),
            times: u64::MAX,
            skip: 0,
        },
    );
    let mut rng = Rng::new(0x9204);
    let args = o.args("promote", &["--concurrency", "3"]);
    let mut kills = 0;
    for _ in 0..6 {
        let puts = server.counts(primary.bucket_name()).put;
        let mut child = spawn(&ws, &args);
        let wanted = puts + rng.range(1, 5);
        let started = Instant::now();
        while server.counts(primary.bucket_name()).put < wanted
            && child.try_wait().unwrap().is_none()
        {
            assert!(started.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(rng.range(0, 80)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 3, "only {kills} kills landed");
    // A killed process's delayed copies may still reach the server: let them land.
    std::thread::sleep(Duration::from_millis(300));
    let last = ws.slotfill(&as_strs(&args)).ok();
    server.clear_faults(primary.bucket_name());
    eprintln!("after {kills} kills: {}", last.stdout);
    let recorded = promotions(&ws);
    let fillable: BTreeSet<i64> = o.fillable().into_iter().collect();
    assert_eq!(recorded.keys().copied().collect::<BTreeSet<_>>(), fillable);
    for (slot, (count, _)) in &recorded {
        assert_eq!(
            *count,
            1,
            "slot {} promoted {count} times",
            local_iso(*slot)
        );
        assert_eq!(ok_role(&ws, *slot), "primary");
    }
    assert_promoted(&o, &primary, &complement);
    for (key, body) in &present {
        assert_eq!(primary.get(key).as_ref(), Some(body), "{key}");
    }
    assert_eq!(
        primary.keys().len(),
        present.len() + fillable.len(),
        "nothing else written"
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE command = 'promote' AND outcome IS NULL"),
        kills as i64
    );
}

#[test]
fn promote_refuses_a_target_outside_the_mirror_before_opening_the_catalog() {
    let dirs = tempfile::tempdir().unwrap();
    let (primary, complement) = (
        Place::dir(dirs.path(), "primary"),
        Place::dir(dirs.path(), "complement"),
    );
    let config = format!(
        "[datasets.jp]\nprimary = \"{}\"\ncomplement = \"{}\"\n",
        primary.url(),
        complement.url()
    );
    let ws = Workspace::new(&config);
    let window = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T01:00"];
    for into in [
        complement.url(),
        "s3://elsewhere/mirror".to_string(),
        "backup".to_string(),
    ] {
        let mut args = vec!["promote", "-d", "jp", "--into", &into];
        args.extend(window);
        let out = ws.slotfill(&args).code(2);
        assert!(
            out.stderr.starts_with("slotfill: error: --into")
                && out.stderr.contains(&format!("primary {}", primary.url())),
            "{}",
            out.stderr
        );
    }
    assert!(!ws.catalog_path().exists());
    let mut args = vec!["promote", "-d", "jp"];
    args.extend(window);
    let out = ws.slotfill(&args).code(2);
    assert!(
        out.stderr.contains("slotfill verify --dataset jp"),
        "{}",
        out.stderr
    );
}
