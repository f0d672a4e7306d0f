//! Crash safety: `fill` and `run` killed with SIGKILL at many instants end,
//! after plain reruns, exactly where an uninterrupted run ends (the single
//! writer, the lease, is in `leases`).
//!
//! The kill scenarios run against each origin, Misskey and Mastodon
//! (`mastodon_…`); their fixtures live in `support::seeded`.

use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use crate::support::misskey::Fault;
use crate::support::origin::OriginKind;
use crate::support::s3::{FaultRule, S3Fault, S3Op, S3Server};
use crate::support::seeded::*;
use crate::support::*;

/// When a kill fires, after the process started.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// This long after the spawn.
    After(Duration),
    /// Once the origin has received this many more calls.
    OriginCalls(u64),
    /// Once the primary's bucket has received this many more list requests.
    Lists(u64),
}

/// How one scheduled kill went.
#[derive(Debug)]
struct Killed {
    /// The process was still running when SIGKILL came.
    killed: bool,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// Spawns `args`, waits for `trigger` and then `extra`, and sends SIGKILL
/// unless the process ended by itself.
fn spawn_and_kill(
    ws: &Workspace,
    args: &[String],
    o: &Origin,
    primary: Option<&str>,
    trigger: Trigger,
    extra: Duration,
) -> Killed {
    let calls = o.emulator.calls();
    let lists = primary.map_or(0, |b| S3Server::shared().counts(b).list);
    let started = Instant::now();
    let mut child = spawn(ws, args);
    let fired = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        let reached = match trigger {
            Trigger::After(d) => started.elapsed() >= d,
            Trigger::OriginCalls(n) => o.emulator.calls() >= calls + n,
            Trigger::Lists(n) => S3Server::shared().counts(primary.unwrap()).list >= lists + n,
        };
        if reached {
            break true;
        }
        // Only paces the polling.
        std::thread::sleep(Duration::from_micros(500));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "trigger {trigger:?} never fired"
        );
    };
    if fired {
        std::thread::sleep(extra);
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let read = |r: Option<&mut dyn std::io::Read>| {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    };
    let stdout = read(child.stdout.as_mut().map(|s| s as &mut dyn std::io::Read));
    let stderr = read(child.stderr.as_mut().map(|s| s as &mut dyn std::io::Read));
    Killed {
        killed: status.signal() == Some(libc::SIGKILL),
        stdout,
        stderr,
        code: status.code(),
    }
}

/// The origin calls one process may waste when killed, with `concurrency`
/// slots in flight: its start-up calls (id-scheme detection and the engine
/// probe, each at most once per slot task) and every page of the slots in flight.
fn waste_bound(o: &Origin, concurrency: u64) -> u64 {
    let limit = o.emulator.page_limit();
    let pages = |notes: usize| (notes as u64 + 6).div_ceil(limit) + 1;
    let max_pages = o.missing.values().map(|n| pages(*n)).max().unwrap();
    concurrency * 2 + concurrency * max_pages
}

/// The reference: the same origin filled into a fresh dataset without kills.
struct Reference {
    ws: Workspace,
    complement: Place,
    calls: u64,
    duration: Duration,
}

fn reference(o: &Origin, primary: Place, complement: Place, command: &str) -> Reference {
    let ws = o.workspace(&primary, &complement);
    if command == "fill" {
        ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();
    }
    let (calls, requests) = (o.emulator.calls(), o.search_requests().len());
    let started = Instant::now();
    let out = ws.slotfill(&as_strs(&o.args(command, &[])));
    let duration = started.elapsed();
    assert!(
        out.code == 0 || (command == "run" && out.code == 3),
        "reference {command}: {out:?}"
    );
    assert_consistent(o, &ws, &complement);
    let all = o.search_requests();
    let requests = o.requests_per_slot(&all[requests..]);
    for slot in o.missing.keys() {
        assert!(
            requests.get(slot).copied().unwrap_or(0) >= 1,
            "reference: slot {} never requested",
            local_iso(*slot)
        );
    }
    Reference {
        calls: o.emulator.calls() - calls,
        ws,
        complement,
        duration,
    }
}

/// What the kill loop of a crash scenario measured.
struct CrashRun {
    kills: usize,
    /// What each killed process had printed: the phase of `run` it died in.
    phases: Vec<Phase>,
    calls: u64,
    /// Kills after which an object was written but not recorded in the catalog.
    written_unrecorded: usize,
    /// Kills that left attempts of the killed process started and not finished.
    in_flight: usize,
}

/// Where `run` was when it died, from what it had printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Scan,
    Fill,
    Verify,
}

impl Phase {
    fn of(stdout: &str) -> Phase {
        if stdout.contains("fill jp:") {
            Phase::Verify
        } else if stdout.contains("scanned jp") {
            Phase::Fill
        } else {
            Phase::Scan
        }
    }
}

/// One crash scenario: runs `command` over and over, killing it on each of
/// `schedule`, then once to its end; checks after every process that no slot
/// already done is fetched again and the catalog agrees with the complement.
fn crash_loop(
    o: &Origin,
    ws: &Workspace,
    complement: &Place,
    primary_bucket: Option<&str>,
    command: &str,
    schedule: &[(Trigger, Duration)],
) -> CrashRun {
    let args = o.args(command, &[]);
    let calls = o.emulator.calls();
    let (mut kills, mut written_unrecorded, mut in_flight) = (0, 0, 0);
    let mut phases = Vec::new();
    for (i, (trigger, extra)) in schedule.iter().enumerate() {
        let done = done_slots(ws);
        let seen = o.search_requests().len();
        let k = spawn_and_kill(ws, &args, o, primary_bucket, *trigger, *extra);
        assert!(
            k.killed,
            "kill {i} ({trigger:?}) came after the process ended ({:?}): the schedule is too late\n{}\n{}",
            k.code, k.stdout, k.stderr
        );
        kills += 1;
        phases.push(Phase::of(&k.stdout));
        let refetched: Vec<i64> = o.search_requests()[seen..]
            .iter()
            .filter_map(|r| o.slot_of(r))
            .filter(|s| done.contains(s))
            .collect();
        assert!(
            refetched.is_empty(),
            "kill {i}: slots already done were fetched again: {refetched:?}"
        );
        assert_consistent(o, ws, complement);
        if !catalog_ready(ws) {
            continue;
        }
        let recorded = ws.query_i64("SELECT COUNT(*) FROM slots WHERE ok_role = 'complement'");
        written_unrecorded += usize::from(complement.keys().len() as i64 > recorded);
        in_flight += usize::from(
            ws.query_i64(
                "SELECT COUNT(*) FROM fill_attempts
                 WHERE finished_at IS NULL AND run_id = (SELECT MAX(id) FROM runs)",
            ) > 0,
        );
    }
    let done = done_slots(ws);
    let seen = o.search_requests().len();
    let last = ws.slotfill(&as_strs(&args));
    assert!(
        last.code == 0 || (command == "run" && last.code == 3),
        "final rerun: {last:?}"
    );
    let refetched: Vec<i64> = o.search_requests()[seen..]
        .iter()
        .filter_map(|r| o.slot_of(r))
        .filter(|s| done.contains(s))
        .collect();
    assert!(
        refetched.is_empty(),
        "final rerun fetched done slots again: {refetched:?}"
    );
    CrashRun {
        kills,
        phases,
        calls: o.emulator.calls() - calls,
        written_unrecorded,
        in_flight,
    }
}

/// 117 missing slots (115 with notes) filled into S3 by `fill`, killed with
/// SIGKILL 20 times and rerun: the end state equals that of an uninterrupted
/// fill of the same origin (into local directories) byte for byte; after
/// every kill the catalog and the complement agree, no object is partial and
/// no slot already done is fetched again; the origin calls the kills wasted
/// stay within what the processes in flight could have spent.
#[test]
fn fill_killed_at_twenty_instants_ends_like_an_uninterrupted_fill() {
    fill_killed_at_twenty_instants(OriginKind::Misskey);
}

#[test]
fn mastodon_fill_killed_at_twenty_instants_ends_like_an_uninterrupted_fill() {
    fill_killed_at_twenty_instants(OriginKind::Mastodon);
}

fn fill_killed_at_twenty_instants(kind: OriginKind) {
    let o = Origin::of(kind, 0x5107_f111, 130, (130, 300));
    assert!(o.fillable().len() >= 100, "{} fillable", o.fillable().len());
    let dirs = tempfile::tempdir().unwrap();
    // Every 9th origin call answers 150 ms late, so kills land with pages in flight.
    o.emulator
        .fail_every(9, Fault::Slow(Duration::from_millis(150)));
    let reference = reference(
        &o,
        Place::dir(dirs.path(), "ref-primary"),
        Place::dir(dirs.path(), "ref-complement"),
        "fill",
    );
    eprintln!(
        "reference fill: {} calls in {:?}",
        reference.calls, reference.duration
    );

    let complement = Place::bucket("crash-complement", "misskey_complement");
    let primary = Place::dir(dirs.path(), "primary");
    let ws = o.workspace(&primary, &complement);
    ws.slotfill(&as_strs(&o.args("scan", &[]))).ok();

    // 20 kills: four in the first 60 ms of a process (start-up, catalog,
    // lease, id-scheme detection), sixteen after a seeded number of origin
    // calls spread over the reference run, each plus a random delay so it
    // lands mid-page, mid-PUT or mid-commit.
    let mut rng = Rng::new(20);
    let per_kill = reference.calls / 24;
    let schedule: Vec<(Trigger, Duration)> = (0..20)
        .map(|i| {
            let extra = Duration::from_millis(rng.range(0, 25));
            if i % 5 == 0 {
                (
                    Trigger::After(Duration::from_millis(rng.range(0, 60))),
                    Duration::ZERO,
                )
            } else {
                (
                    Trigger::OriginCalls(rng.range(per_kill / 2, per_kill * 3 / 2).max(1)),
                    extra,
                )
            }
        })
        .collect();
    let crash = crash_loop(&o, &ws, &complement, None, "fill", &schedule);
    assert_eq!(crash.kills, 20);
    assert_consistent(&o, &ws, &complement);
    // Every interrupted attempt was closed by the slot's next attempt.
    assert_eq!(
        ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE finished_at IS NULL"),
        0
    );
    assert_same_end_state(
        &end_state(&ws, &complement),
        &end_state(&reference.ws, &reference.complement),
    );
    let wasted = crash.calls.saturating_sub(reference.calls);
    let bound = 21 * waste_bound(&o, 4);
    eprintln!(
        "fill killed {} times: {} origin calls against {} uninterrupted, {wasted} wasted (bound {bound}); \
         {} kills left attempts in flight, {} left an object written but not recorded",
        crash.kills, crash.calls, reference.calls, crash.in_flight, crash.written_unrecorded
    );
    assert!(
        wasted <= bound,
        "{wasted} origin calls wasted, bound {bound}"
    );
}

/// `run` on S3 (primary and complement) killed while listing day prefixes,
/// while filling and while verifying, then rerun: it ends exactly as a clean
/// `run` of the same origin does.
#[test]
fn run_killed_while_listing_filling_and_verifying_on_s3_ends_like_a_clean_run() {
    run_killed_while_listing_filling_and_verifying(OriginKind::Misskey);
}

#[test]
fn mastodon_run_killed_while_listing_filling_and_verifying_on_s3_ends_like_a_clean_run() {
    run_killed_while_listing_filling_and_verifying(OriginKind::Mastodon);
}

fn run_killed_while_listing_filling_and_verifying(kind: OriginKind) {
    let o = Origin::of(kind, 0x5107_f112, 60, (130, 260));
    let reference = reference(
        &o,
        Place::bucket("crash-ref-primary", "misskey"),
        Place::bucket("crash-ref-complement", "misskey_complement"),
        "run",
    );
    eprintln!(
        "reference run: {} calls in {:?}",
        reference.calls, reference.duration
    );
    let primary = Place::bucket("crash-primary", "misskey");
    let complement = Place::bucket("crash-complement", "misskey_complement");
    let ws = o.workspace(&primary, &complement);
    // Every listing of the primary is held 500 ms: kills land while day prefixes are listed.
    S3Server::shared().inject(
        primary.bucket_name(),
        FaultRule {
            op: S3Op::List,
            fault: S3Fault::Delay(Duration::from_millis(500)),
            times: u64::MAX,
            skip: 0,
        },
    );
    // The window spans two JST days: a scan lists two day prefixes of the primary.
    let lists_per_scan = 2;
    let mut rng = Rng::new(21);
    let per_kill = reference.calls / 8;
    let listing = |rng: &mut Rng| (Trigger::Lists(1), Duration::from_millis(rng.range(0, 200)));
    let filling = |rng: &mut Rng| {
        (
            Trigger::OriginCalls(rng.range(per_kill / 2, per_kill * 3 / 2).max(1)),
            Duration::from_millis(rng.range(0, 25)),
        )
    };
    let verifying = |rng: &mut Rng| {
        (
            Trigger::Lists(lists_per_scan + 1),
            Duration::from_millis(rng.range(0, 200)),
        )
    };
    let schedule = vec![
        listing(&mut rng),
        filling(&mut rng),
        listing(&mut rng),
        filling(&mut rng),
        filling(&mut rng),
        listing(&mut rng),
        filling(&mut rng),
        filling(&mut rng),
        verifying(&mut rng),
        verifying(&mut rng),
    ];
    let crash = crash_loop(
        &o,
        &ws,
        &complement,
        Some(primary.bucket_name()),
        "run",
        &schedule,
    );
    S3Server::shared().clear_faults(primary.bucket_name());
    assert_consistent(&o, &ws, &complement);
    assert_same_end_state(
        &end_state(&ws, &complement),
        &end_state(&reference.ws, &reference.complement),
    );
    for phase in [Phase::Scan, Phase::Fill, Phase::Verify] {
        assert!(
            crash.phases.contains(&phase),
            "no kill landed in the {phase:?} phase: {:?}",
            crash.phases
        );
    }
    let wasted = crash.calls.saturating_sub(reference.calls);
    let bound = (crash.kills as u64 + 1) * waste_bound(&o, 4);
    eprintln!(
        "run killed {} times ({:?}): {} origin calls against {} uninterrupted, {wasted} wasted (bound {bound}); \
         {} kills left attempts in flight, {} left an object written but not recorded",
        crash.kills,
        crash.phases,
        crash.calls,
        reference.calls,
        crash.in_flight,
        crash.written_unrecorded
    );
    assert!(
        wasted <= bound,
        "{wasted} origin calls wasted, bound {bound}"
    );
}
