//! One writer per dataset: a second fill or run is refused while another
//! holds the dataset's lease, fills started together never fill at once, a
//! killed holder's lease is taken over (at once on the same host, once
//! expired from another), and scans running alongside a fill neither fail nor
//! undo what it filled.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::misskey::Fault;
use crate::support::s3::{FaultRule, S3Fault, S3Op, S3Server};
use crate::support::seeded::*;
use crate::support::*;

/// A small dataset on local directories whose every origin call answers
/// after `slow`, so a fill holds its lease for a while.
fn slow_dataset(seed: u64, slow: Duration) -> (Origin, Workspace, Place, tempfile::TempDir) {
    let o = Origin::new(seed, 12, (120, 180));
    o.emulator.fail_every(1, Fault::Slow(slow));
    let dirs = tempfile::tempdir().unwrap();
    let complement = Place::dir(dirs.path(), "complement");
    let ws = o.workspace(&Place::dir(dirs.path(), "primary"), &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    (o, ws, complement, dirs)
}

/// Waits until a process holds the dataset's lease; returns the holder's pid.
fn wait_for_lease(ws: &Workspace, child: &mut Child) -> i64 {
    let started = Instant::now();
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fill ended before taking the lease"
        );
        let pid = ws
            .catalog()
            .query_row("SELECT pid FROM leases", [], |r| r.get::<_, i64>(0))
            .ok();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no lease taken"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Every fillable slot was filled by exactly one attempt, and nothing else was attempted.
#[track_caller]
fn assert_filled_once(o: &Origin, ws: &Workspace) {
    let fillable = o.fillable().len() as i64;
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'filled'"),
        fillable
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(DISTINCT slot_start) FROM fill_attempts WHERE outcome = 'filled'"
        ),
        fillable
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome IN ('exists', 'failed', 'partial') OR outcome IS NULL"),
        0,
        "an attempt other than filled or empty"
    );
}

#[test]
fn a_second_fill_or_run_is_refused_while_another_holds_the_lease() {
    let (o, ws, complement, _dirs) = slow_dataset(0x1ea5e, Duration::from_millis(250));
    let mut first = spawn(&ws, &o.args("fill", &[]));
    let pid = wait_for_lease(&ws, &mut first);
    assert_eq!(pid, i64::from(first.id()));
    for command in ["fill", "run"] {
        let second = ws.slotfill(&as_strs(&o.args(command, &[]))).code(1);
        let message = second.stderr.trim();
        assert_eq!(message.lines().count(), 1, "{command}: {message}");
        assert!(
            message.contains("being filled by another slotfill")
                && message.contains(&format!("pid {pid} on {}", this_host())),
            "{command}: {message}"
        );
        assert!(first.try_wait().unwrap().is_none(), "the holder still runs");
    }
    let first = finish(first).ok();
    assert!(
        first
            .stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        first.stdout
    );
    assert_filled_once(&o, &ws);
    assert_consistent(&o, &ws, &complement);
    // The refused commands are recorded as failed runs that attempted nothing.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM runs WHERE outcome = 'failed' AND error LIKE '%being filled by another%'"),
        2
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM leases"),
        0,
        "lease released"
    );
}

#[test]
fn fills_started_together_never_fill_at_once() {
    let (o, ws, complement, _dirs) = slow_dataset(0x1ea5f, Duration::from_millis(100));
    let args = o.args("fill", &["--max-slots", "3"]);
    let mut refused = 0;
    for _round in 0..4 {
        let (a, b) = (spawn(&ws, &args), spawn(&ws, &args));
        for out in [finish(a), finish(b)] {
            match out.code {
                0 => {}
                1 => {
                    assert!(
                        out.stderr.contains("being filled by another slotfill"),
                        "{out:?}"
                    );
                    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");
                    refused += 1;
                }
                _ => panic!("{out:?}"),
            }
        }
    }
    ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert_filled_once(&o, &ws);
    assert_consistent(&o, &ws, &complement);
    // The attempts of two fills never interleave in time.
    let db = ws.catalog();
    let mut stmt = db
        .prepare(
            "SELECT run_id, MIN(started_at), MAX(finished_at) FROM fill_attempts GROUP BY run_id ORDER BY 2",
        )
        .unwrap();
    let spans: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for pair in spans.windows(2) {
        assert!(pair[0].2 <= pair[1].1, "two fills at once: {pair:?}");
    }
    eprintln!("{refused} of 4 concurrent second fills were refused; fill spans {spans:?}");
    assert!(refused >= 1, "two fills started together both ran");
}

#[test]
fn a_killed_holders_lease_is_taken_over_at_once_on_the_same_host() {
    let (o, ws, complement, _dirs) = slow_dataset(0x1ea60, Duration::from_millis(200));
    let mut first = spawn(&ws, &o.args("fill", &[]));
    let pid = wait_for_lease(&ws, &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        ws.query_i64("SELECT pid FROM leases"),
        pid,
        "the killed process left its lease"
    );
    o.emulator.fail_every(0, Fault::Slow(Duration::ZERO));
    let rerun = ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert!(
        rerun.stderr.contains("taking over a stale lease"),
        "{}",
        rerun.stderr
    );
    assert_filled_once_after_kill(&o, &ws);
    assert_consistent(&o, &ws, &complement);
    assert_eq!(ws.query_i64("SELECT COUNT(*) FROM leases"), 0);
}

/// After a kill, a slot may also have an interrupted attempt (recorded failed).
#[track_caller]
fn assert_filled_once_after_kill(o: &Origin, ws: &Workspace) {
    assert_eq!(
        ws.query_i64("SELECT COUNT(DISTINCT slot_start) FROM slots WHERE ok_role = 'complement'"),
        o.fillable().len() as i64
    );
    assert_eq!(
        ws.query_i64(
            "SELECT COUNT(*) FROM (SELECT slot_start FROM fill_attempts WHERE outcome IN ('filled', 'exists')
                                   GROUP BY slot_start HAVING COUNT(*) > 1)"
        ),
        0
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE finished_at IS NULL"),
        0
    );
}

#[test]
fn a_lease_from_another_host_is_taken_over_only_once_expired() {
    let (o, mut ws, complement, _dirs) = slow_dataset(0x1ea61, Duration::from_millis(200));
    let mut first = spawn(&ws, &o.args("fill", &[]));
    let pid = wait_for_lease(&ws, &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    // As if the killed process had run on another machine: its pid says nothing here.
    ws.catalog()
        .execute("UPDATE leases SET host = 'elsewhere.example'", [])
        .unwrap();
    let expires: String = ws
        .catalog()
        .query_row("SELECT expires_at FROM leases", [], |r| r.get(0))
        .unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    o.emulator.fail_every(0, Fault::Slow(Duration::ZERO));
    o.settle();
    let (calls, attempts) = (
        o.emulator.calls(),
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts"),
    );
    let held = |ws: &Workspace| {
        let out = ws.slotfill(&as_strs(&o.args("fill", &[]))).code(1);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("pid {pid} on elsewhere.example")),
            "{}",
            out.stderr
        );
    };
    held(&ws);
    ws.set_env(
        "SLOTFILL_NOW",
        &(expires - chrono::Duration::seconds(1)).to_rfc3339(),
    );
    held(&ws);
    assert_eq!(o.emulator.calls(), calls, "a refused fill calls nobody");
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts"),
        attempts,
        "a refused fill attempts nothing"
    );
    ws.env.clear();
    ws.set_env(
        "SLOTFILL_NOW",
        &(expires + chrono::Duration::seconds(1)).to_rfc3339(),
    );
    let taken = ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert!(
        taken.stderr.contains("taking over a stale lease"),
        "{}",
        taken.stderr
    );
    assert_filled_once_after_kill(&o, &ws);
    assert_consistent(&o, &ws, &complement);
}

/// `scan` (and so the scan of a `run` that will then be refused the lease)
/// may run while a fill commits: it neither fails on the busy catalog nor
/// loses a slot the fill recorded.
#[test]
fn scans_alongside_a_fill_neither_fail_nor_undo_what_it_filled() {
    let o = Origin::new(0x5ca1, 130, (101, 140));
    let dirs = tempfile::tempdir().unwrap();
    let complement = Place::dir(dirs.path(), "complement");
    let ws = o.workspace(&Place::dir(dirs.path(), "primary"), &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    let mut fill = spawn(&ws, &o.args("fill", &[]));
    let mut scans = 0;
    while fill.try_wait().unwrap().is_none() {
        ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
        scans += 1;
    }
    let fill = finish(fill).ok();
    assert!(
        scans >= 1,
        "the fill ended before a scan could run alongside"
    );
    assert!(
        fill.stdout
            .contains(&format!("filled {}", o.fillable().len())),
        "{}",
        fill.stdout
    );
    assert_consistent(&o, &ws, &complement);
    // The catalog still knows every filled slot: a fill right after fetches nothing.
    let calls = o.emulator.calls();
    let again = ws.slotfill(&as_strs(&o.args("fill", &[]))).ok();
    assert!(
        again.stdout.contains("0 slots to fill"),
        "after {scans} scans: {}",
        again.stdout
    );
    assert_eq!(o.emulator.calls(), calls);
    assert_filled_once(&o, &ws);
    eprintln!("{scans} scans ran alongside the fill");
}

/// A scan whose listing of the complement began before a concurrent fill
/// wrote and recorded an object must not mark that object gone.
#[test]
fn a_scan_listing_while_a_fill_commits_keeps_the_filled_slot() {
    // A one-day window whose complement day prefix takes two listing pages:
    // 1001 foreign keys sort after the slot keys.
    let o = Origin::new(0x9a9e, 12, (101, 130));
    let primary = Place::bucket("race-primary", "misskey");
    let complement = Place::bucket("race-complement", "misskey_complement");
    let ws = o.workspace(&primary, &complement);
    let day = &key_of(o.first)[..11];
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (complement, day) = (&complement, day);
            scope.spawn(move || {
                for i in (t..1001).step_by(8) {
                    complement.put(&format!("{day}zz-foreign/{i:04}"), b"x\n");
                }
            });
        }
    });
    let server = S3Server::shared();
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    let bucket = complement.bucket_name();
    let lists = server.counts(bucket).list;
    // The second page of the next listing is held 3 s ...
    server.inject(
        bucket,
        FaultRule {
            op: S3Op::List,
            fault: S3Fault::Delay(Duration::from_secs(3)),
            times: 1,
            skip: 1,
        },
    );
    let scan = spawn(&ws, &o.args("scan", &[]));
    let started = Instant::now();
    while server.counts(bucket).list < lists + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no second page"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // ... while a fill writes and records the first missing slot.
    let slot = o.fillable()[0];
    ws.slotfill(&as_strs(&o.args("fill", &["--max-slots", "1"])))
        .ok();
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT ok_role = 'complement' FROM slots WHERE slot_start = {slot}"
        )),
        1
    );
    finish(scan).ok();
    server.clear_faults(bucket);
    assert_eq!(
        ws.query_i64(&format!(
            "SELECT COUNT(*) FROM slots WHERE slot_start = {slot} AND ok_role = 'complement'"
        )),
        1,
        "the scan undid the fill of {}",
        local_iso(slot)
    );
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM objects WHERE gone_at IS NOT NULL"),
        0,
        "an object written during the listing was marked gone"
    );
}
