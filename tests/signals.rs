//! Honest signals (issue 13): confirmed-empty slots, the slot in progress, exit
//! codes a scheduler can trust, and the probes made before the first slot.

use crate::support::misskey::{EmulatorConfig, MisskeyEmulator, mixed_notes, parse_id_ms};
use crate::support::s3::S3Server;
use crate::support::*;

/// Notes at the origin for the six slots of the window; the first two slots
/// are in the primary, the others missing. Slots 3 and 5 are quiet.
const NOTES: [usize; 6] = [20, 20, 30, 0, 150, 0];

struct Quiet {
    ws: Workspace,
    emulator: MisskeyEmulator,
    complement: String,
    first: i64,
}

fn quiet_fixture(extra: &str) -> Quiet {
    let server = S3Server::shared();
    let (primary, complement) = (
        server.new_bucket("sig-primary"),
        server.new_bucket("sig-complement"),
    );
    let first = AUG1_JST + 30 * SLOT;
    let emulator = MisskeyEmulator::start(EmulatorConfig::default());
    for (i, n) in NOTES.iter().enumerate() {
        let slot = first + i as i64 * SLOT;
        if i < 2 {
            server.put(&primary, &format!("m/{}", key_of(slot)), &jsonl(10, 100));
        }
        emulator.add_notes(mixed_notes(slot * 1000, (slot + SLOT) * 1000, *n, i as u64));
    }
    let source = format!(
        "[datasets.jp.source]\nbase_url = \"{}\"\nmode = \"search\"\n{extra}",
        emulator.base_url()
    );
    let config = s3_config(
        &format!("s3://{primary}/m"),
        &[],
        Some(&format!("s3://{complement}/c")),
        &source,
    );
    Quiet {
        ws: Workspace::new(&config),
        emulator,
        complement,
        first,
    }
}

impl Quiet {
    fn slot(&self, i: i64) -> i64 {
        self.first + i * SLOT
    }

    /// `command` over the whole window.
    fn run(&self, command: &str, extra: &[&str]) -> Run {
        let (start, end) = (arg_time(self.slot(0)), arg_time(self.slot(5)));
        let mut args = vec![command, "-d", "jp", "--start", &start, "--end", &end];
        args.extend(extra);
        self.ws.slotfill(&args)
    }

    /// `command` from the first slot to `end` (a slot's argument, or `now`).
    fn run_until(&self, command: &str, end: &str) -> Run {
        let start = arg_time(self.slot(0));
        self.ws
            .slotfill(&[command, "-d", "jp", "--start", &start, "--end", end])
    }

    fn state(&self, i: i64) -> String {
        self.ws
            .catalog()
            .query_row(
                "SELECT state FROM slots WHERE slot_start = ?1",
                [self.slot(i)],
                |r| r.get(0),
            )
            .expect("slot state")
    }

    fn object(&self, i: i64) -> Option<Vec<u8>> {
        S3Server::shared().get(&self.complement, &format!("c/{}", key_of(self.slot(i))))
    }
}

#[test]
fn a_quiet_slot_is_confirmed_empty_in_the_bucket_and_the_catalog_and_verify_exits_0() {
    let q = quiet_fixture("");
    let run = q.run("run", &[]).ok();
    assert!(
        run.stdout.contains(&format!(
            "2 slots confirmed empty at the origin (resolved; --empty-is-gap counts them as gaps): {}, {}",
            local_iso(q.slot(3)),
            local_iso(q.slot(5))
        )),
        "{}",
        run.stdout
    );
    assert_eq!(q.state(3), "empty");
    assert_eq!(q.state(5), "empty");
    assert_eq!(q.state(4), "ok");
    // The fact lives in the bucket: a zero-line object with the usual metadata.
    assert_eq!(q.object(3).expect("zero-line object"), b"");
    let meta = S3Server::shared()
        .head_metadata(&q.complement, &format!("c/{}", key_of(q.slot(3))))
        .unwrap();
    assert_eq!(meta.get("note-count").map(String::as_str), Some("0"));
    assert_eq!(meta.get("complete").map(String::as_str), Some("true"));
    assert_eq!(
        meta.get("slot").map(String::as_str),
        Some(local_iso(q.slot(3)).as_str())
    );

    // verify agrees, and says which slots are empty; --empty-is-gap restores exit 3.
    let verify = q.run("verify", &[]).ok();
    assert!(
        verify.stdout.contains("0 still not ok"),
        "{}",
        verify.stdout
    );
    let strict = q.run("verify", &["--empty-is-gap"]).code(3);
    assert!(
        strict.stdout.contains("2 still not ok"),
        "{}",
        strict.stdout
    );
    let gaps = q.run("gaps", &[]).ok();
    assert!(
        gaps.stdout
            .contains("2 slots confirmed empty at the origin (not gaps)"),
        "{}",
        gaps.stdout
    );

    // A nightly rerun makes no origin call for them (not due for a re-check).
    let calls = q.emulator.calls();
    q.run("run", &[]).ok();
    assert_eq!(q.emulator.calls(), calls, "no origin call on a rerun");

    // A catalog rebuilt from the buckets alone recovers the fact.
    std::fs::remove_file(q.ws.catalog_path()).unwrap();
    q.run("scan", &[]).ok();
    assert_eq!(q.state(3), "empty");
    assert_eq!(q.state(5), "empty");
    q.run("verify", &[]).ok();
}

#[test]
fn empty_is_gap_in_the_dataset_config_makes_verify_exit_3() {
    let q = quiet_fixture("");
    q.run("run", &[]).ok();
    let config = std::fs::read_to_string(q.ws.config_path()).unwrap();
    q.ws.write_config(&config.replace(
        "[datasets.jp.rules]",
        "empty_is_gap = true\n[datasets.jp.rules]",
    ));
    q.run("verify", &[]).code(3);
}

#[test]
fn a_recheck_that_finds_notes_replaces_only_the_zero_line_object_slotfill_wrote() {
    let q = quiet_fixture("");
    q.run("run", &[]).ok();
    // Late federation: both quiet slots now hold notes at the origin.
    for i in [3, 5] {
        let slot = q.slot(i);
        q.emulator.add_notes(mixed_notes(
            slot * 1000,
            (slot + SLOT) * 1000,
            12,
            90 + i as u64,
        ));
    }
    // Someone else replaced slot 5's zero-line object meanwhile.
    let foreign_key = format!("c/{}", key_of(q.slot(5)));
    S3Server::shared().put(&q.complement, &foreign_key, b"{\"written\":\"by hand\"}\n");

    // Not due yet: nothing happens without --retry-empty.
    let calls = q.emulator.calls();
    q.run("fill", &[]).ok();
    assert_eq!(q.emulator.calls(), calls);

    q.run("fill", &["--retry-empty"]).ok();
    let expected = q
        .emulator
        .expected("notes/search", q.slot(3) * 1000, q.slot(4) * 1000);
    assert!(!expected.is_empty());
    let written = String::from_utf8(q.object(3).unwrap()).unwrap();
    assert_eq!(written.lines().count(), expected.len(), "slot 3 refilled");
    assert_eq!(q.state(3), "ok");
    assert_eq!(
        q.object(5).unwrap(),
        b"{\"written\":\"by hand\"}\n",
        "an object slotfill did not write is never replaced"
    );
}

#[test]
fn the_slot_in_progress_is_pending_never_fetched_and_never_a_gap() {
    let mut q = quiet_fixture("");
    // Four minutes into slot 4.
    let now = q.slot(4) + 240;
    let iso = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339();
    q.ws.set_env("SLOTFILL_NOW", &iso(now));
    let run = q.run_until("run", "now").ok();
    assert_eq!(q.state(4), "pending");
    assert!(q.object(4).is_none(), "the unfinished slot is not written");
    // Slot 3 ended 4 minutes ago: still within the settle delay (5 minutes).
    assert_eq!(q.state(3), "pending");
    assert_eq!(q.state(2), "ok");
    assert!(run.stdout.contains("2 slots pending"), "{}", run.stdout);
    // No page request reached into the pending slots.
    for body in q.emulator.requests_to("notes/search") {
        if let Some(until) = body.get("untilId").and_then(|v| v.as_str()) {
            let ms = parse_id_ms(q.emulator.scheme(), until).unwrap();
            assert!(ms <= q.slot(3) * 1000, "fetched a pending slot: {body}");
        }
    }
    // Once it has ended plus the settle delay, the same command fills it.
    q.ws.env.retain(|(k, _)| k != "SLOTFILL_NOW");
    q.ws.set_env("SLOTFILL_NOW", &iso(q.slot(5) + 300));
    q.run_until("run", &arg_time(q.slot(4))).ok();
    assert_eq!(q.state(4), "ok");
    assert_eq!(q.state(3), "empty");
}

/// A dead origin (nothing listens) is told at the probe after one retry, not after the
/// whole backoff (`--retry 5` by default), with the same one line and exit 1. An origin
/// that answers, even with a 502, keeps every retry (see the fault tests).
#[test]
fn a_dead_origin_fails_the_probe_after_one_retry() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let q = quiet_fixture("");
    q.run("scan", &[]).ok();
    let config = std::fs::read_to_string(q.ws.config_path()).unwrap();
    q.ws.write_config(&config.replace(&q.emulator.base_url(), &format!("http://127.0.0.1:{port}")));
    let run = q.run("fill", &["--retry-wait", "0.05"]).code(1);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("slotfill: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("connection refused") && errors[0].contains("gave up after 2 tries"),
        "{}",
        errors[0]
    );
    assert_eq!(q.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
}

#[test]
fn an_unreachable_origin_fails_the_run_with_the_real_cause_and_records_no_attempt() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let q = quiet_fixture("");
    let config = std::fs::read_to_string(q.ws.config_path()).unwrap();
    q.ws.write_config(&config.replace(&q.emulator.base_url(), &format!("http://127.0.0.1:{port}")));
    let run = q
        .run("run", &["--retry", "1", "--retry-wait", "0.01"])
        .code(1);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("slotfill: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("connection refused")
            && errors[0].contains(&format!("127.0.0.1:{port}")),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains("id scheme"), "{}", errors[0]);
    assert_eq!(q.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
    assert_eq!(
        q.ws.query_i64("SELECT COUNT(*) FROM runs WHERE command = 'run' AND outcome = 'failed'"),
        1
    );
}

#[test]
fn a_missing_complement_bucket_is_found_before_any_origin_call() {
    let q = quiet_fixture("");
    q.run("scan", &[]).ok();
    let fill = q
        .run("fill", &["--complement", "s3://slotfill-no-such-bucket/c"])
        .code(2);
    assert!(
        fill.stderr.contains("slotfill-no-such-bucket"),
        "{}",
        fill.stderr
    );
    assert_eq!(
        q.emulator.calls(),
        0,
        "no origin call for a run that cannot write"
    );
    assert_eq!(q.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
}

#[test]
fn a_fill_whose_every_slot_fails_exits_1_naming_the_cause() {
    let q = quiet_fixture("");
    q.run("scan", &[]).ok();
    // One page per slot cannot hold slot 4's 150 notes; the others are the only
    // candidates left after the first fill.
    q.run("fill", &[]).ok();
    q.ws.catalog()
        .execute(
            "UPDATE slots SET state = 'missing', ok_role = NULL, object_id = NULL WHERE slot_start = ?1",
            [q.slot(4)],
        )
        .unwrap();
    let fill = q.run("fill", &["--max-pages", "1"]).code(1);
    let error = fill
        .stderr
        .lines()
        .find(|l| l.starts_with("slotfill: error:"))
        .unwrap_or_else(|| panic!("{}", fill.stderr));
    assert!(
        error.contains("1 slot failed and none was filled") && error.contains("page budget"),
        "{error}"
    );
}

#[test]
fn fill_on_a_window_never_scanned_says_how_to_scan_it() {
    let q = quiet_fixture("");
    let fill = q.run("fill", &[]).code(2);
    assert!(
        fill.stderr.contains("was ever scanned")
            && fill.stderr.contains("slotfill scan --dataset jp"),
        "{}",
        fill.stderr
    );
    assert_eq!(q.emulator.calls(), 0);
    // Half scanned: the rest is named, the scanned part is filled.
    q.run_until("scan", &arg_time(q.slot(2))).ok();
    let fill = q.run("fill", &[]).ok();
    assert!(
        fill.stdout
            .contains("note: 3 slots of the window never scanned"),
        "{}",
        fill.stdout
    );
    assert_eq!(q.state(2), "ok");
}

#[test]
fn most_slots_empty_beside_full_neighbours_warns_of_a_misconfigured_origin() {
    let server = S3Server::shared();
    let (primary, complement) = (server.new_bucket("sig-p"), server.new_bucket("sig-c"));
    let first = AUG1_JST + 60 * SLOT;
    // The collector holds every other slot; the origin (wrong host) holds nothing.
    for i in (0..8).step_by(2) {
        server.put(
            &primary,
            &format!("m/{}", key_of(first + i * SLOT)),
            &jsonl(30, 100),
        );
    }
    let emulator = MisskeyEmulator::start(EmulatorConfig::default());
    let month_before = (first - 30 * 86_400) * 1000;
    emulator.add_notes(mixed_notes(month_before, month_before + 1000, 5, 1));
    let source = format!(
        "[datasets.jp.source]\nbase_url = \"{}\"\nmode = \"search\"\n",
        emulator.base_url()
    );
    let ws = Workspace::new(&s3_config(
        &format!("s3://{primary}/m"),
        &[],
        Some(&format!("s3://{complement}/c")),
        &source,
    ));
    let run = ws
        .slotfill(&[
            "run",
            "-d",
            "jp",
            "--start",
            &arg_time(first),
            "--end",
            &arg_time(first + 7 * SLOT),
        ])
        .ok();
    assert!(
        run.stdout.contains(
            "warning: 4 of 4 slots came back empty while their neighbours hold about 30 notes each"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_dry_run_estimates_a_lower_bound_from_the_neighbours_and_each_slots_own_object() {
    let server = S3Server::shared();
    let (primary, complement) = (server.new_bucket("sig-dp"), server.new_bucket("sig-dc"));
    let first = AUG1_JST + 90 * SLOT;
    // Neighbours of 350 lines: a gap slot costs at least 4 pages and the empty page.
    for i in [0, 2, 4] {
        server.put(
            &primary,
            &format!("m/{}", key_of(first + i * SLOT)),
            &jsonl(350, 40),
        );
    }
    // A heavy slot its neighbours cannot show: its own object was counted to max_lines.
    server.put(
        &primary,
        &format!("m/{}", key_of(first + 3 * SLOT)),
        &jsonl(12_000, 40),
    );
    let emulator = MisskeyEmulator::start(EmulatorConfig::default());
    for i in [1, 3] {
        let slot = first + i * SLOT;
        emulator.add_notes(mixed_notes(
            slot * 1000,
            (slot + SLOT) * 1000,
            350,
            i as u64,
        ));
    }
    let source = format!(
        "[datasets.jp.source]\nbase_url = \"{}\"\nmode = \"search\"\nid_scheme = \"aidx\"\n",
        emulator.base_url()
    );
    let config = s3_config(
        &format!("s3://{primary}/m"),
        &[],
        Some(&format!("s3://{complement}/c")),
        &source,
    )
    .replace("max_lines = 40", "max_lines = 10000");
    let ws = Workspace::new(&config);
    let window = [
        "-d",
        "jp",
        "--start",
        &arg_time(first),
        "--end",
        &arg_time(first + 4 * SLOT),
    ];
    ws.slotfill(&[&["scan"][..], &window].concat()).ok();
    let dry = ws
        .slotfill(&[&["fill", "--dry-run", "--sleep", "2"][..], &window].concat())
        .ok();
    assert!(
        dry.stdout.contains(
            "expected at least 10350 notes in at least 106 origin calls, about 4 min at --sleep 2 s"
        ),
        "{}",
        dry.stdout
    );
    assert_eq!(emulator.calls(), 0, "a dry run fetches nothing");
}
