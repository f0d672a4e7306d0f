//! Fill against the Misskey emulator and the real S3 server.

use serde_json::Value;

use crate::support::misskey::{
    EmulatorConfig, Fault, IdScheme, MisskeyEmulator, NoteSpec, SearchEngine, mixed_notes,
};
use crate::support::s3::S3Server;
use crate::support::*;

/// Notes per slot of the fixture window; 0 makes an empty slot.
const NOTES: [usize; 8] = [130, 0, 100, 1, 257, 45, 99, 200];

struct Fixture {
    ws: Workspace,
    emulator: MisskeyEmulator,
    primary: String,
    complement: String,
    first: i64,
    last: i64,
    /// Slot starts the primary lacks.
    missing: Vec<i64>,
}

fn source_config(emulator: &MisskeyEmulator, extra: &str) -> String {
    format!(
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{}\"\nmode = \"search\"\nid_scheme = \"auto\"\n{extra}",
        emulator.base_url()
    )
}

/// A window of 12 slots across the JST day boundary: the first four are in
/// the primary, the last eight missing with `NOTES` notes each at the origin,
/// plus notes on and around every slot boundary.
fn fixture(config: EmulatorConfig) -> Fixture {
    let server = S3Server::shared();
    let (primary, complement) = (
        server.new_bucket("fill-primary"),
        server.new_bucket("fill-complement"),
    );
    let first = AUG1_JST - 6 * SLOT;
    let last = first + 11 * SLOT;
    let emulator = MisskeyEmulator::start(config);
    let mut missing = Vec::new();
    for i in 0..12 {
        let slot = first + i * SLOT;
        if i < 4 {
            server.put(
                &primary,
                &format!("misskey/{}", key_of(slot)),
                &jsonl(10, 100),
            );
        } else {
            missing.push(slot);
        }
        let count = if i < 4 { 20 } else { NOTES[(i - 4) as usize] };
        let (start_ms, end_ms) = (slot * 1000, (slot + SLOT) * 1000);
        emulator.add_notes(mixed_notes(start_ms, end_ms, count, i as u64));
        if count > 0 {
            // The edges: the first and last millisecond, and three notes sharing one.
            for ms in [
                start_ms,
                start_ms,
                end_ms - 1,
                end_ms - 1,
                start_ms + 77,
                start_ms + 77,
                start_ms + 77,
            ] {
                emulator.add_note(NoteSpec::public_local(ms, &format!("edge {ms}")));
            }
        }
    }
    let config = s3_config(
        &format!("s3://{primary}/misskey"),
        &[],
        Some(&format!("s3://{complement}/misskey_complement")),
        &source_config(&emulator, ""),
    );
    let ws = Workspace::new(&config);
    Fixture {
        ws,
        emulator,
        primary,
        complement,
        first,
        last,
        missing,
    }
}

impl Fixture {
    fn window(&self) -> [String; 4] {
        [
            "--start".into(),
            arg_time(self.first),
            "--end".into(),
            arg_time(self.last),
        ]
    }

    fn run(&self, command: &str, extra: &[&str]) -> Run {
        let window = self.window();
        let mut args = vec![command, "--dataset", "jp"];
        args.extend(window.iter().map(String::as_str));
        args.extend(extra);
        self.ws.slotfill(&args)
    }

    fn complement_lines(&self, slot: i64) -> Option<Vec<Value>> {
        let body = S3Server::shared().get(
            &self.complement,
            &format!("misskey_complement/{}", key_of(slot)),
        )?;
        let text = String::from_utf8(body).expect("utf-8");
        Some(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect(),
        )
    }

    fn expected(&self, slot: i64) -> Vec<Value> {
        self.emulator
            .expected("notes/search", slot * 1000, (slot + SLOT) * 1000)
    }

    /// Every missing slot with notes holds exactly its notes; empty slots have no object.
    #[track_caller]
    fn assert_complement_exact(&self) {
        for &slot in &self.missing {
            let expected = self.expected(slot);
            match self.complement_lines(slot) {
                Some(lines) => assert_eq!(lines, expected, "slot {}", local_iso(slot)),
                None => assert!(expected.is_empty(), "slot {} not written", local_iso(slot)),
            }
        }
    }
}

fn pages(notes: usize) -> u64 {
    (notes as u64).div_ceil(100) + 1
}

#[test]
fn fill_writes_exactly_the_origin_notes_of_each_slot() {
    let f = fixture(EmulatorConfig::default());
    f.run("scan", &[]).ok();
    let out = f.run("fill", &[]).ok();
    assert!(out.stdout.contains("filled 7"), "{}", out.stdout);
    assert!(out.stdout.contains("1 confirmed empty"), "{}", out.stdout);
    f.assert_complement_exact();

    // Metadata describes the object.
    let slot = f.missing[0];
    let meta = S3Server::shared()
        .head_metadata(
            &f.complement,
            &format!("misskey_complement/{}", key_of(slot)),
        )
        .expect("object written");
    let expected = f.expected(slot);
    assert_eq!(meta["note-count"], expected.len().to_string());
    assert_eq!(meta["complete"], "true");
    assert_eq!(meta["slot"], local_iso(slot));
    assert_eq!(meta["earliest"], expected[0]["createdAt"].as_str().unwrap());
    assert_eq!(
        meta["latest"],
        expected.last().unwrap()["createdAt"].as_str().unwrap()
    );

    // Origin calls stay within ceil(notes/100)+1 per slot, plus the one-time
    // id-scheme detection and engine probe.
    let budget: u64 = f
        .missing
        .iter()
        .map(|s| pages(f.expected(*s).len()))
        .sum::<u64>()
        + 2;
    assert!(
        f.emulator.calls() <= budget,
        "{} calls, budget {budget}",
        f.emulator.calls()
    );
    // Every page request carried both bounds and the maximum limit.
    for body in f
        .emulator
        .requests_to("notes/search")
        .iter()
        .filter(|b| b.get("untilId").is_some())
    {
        assert!(body.get("sinceId").is_some(), "{body}");
        assert_eq!(body["limit"], 100);
    }

    // Verify agrees and a second fill has nothing to do.
    f.run("scan", &[]).ok();
    let calls = f.emulator.calls();
    let again = f.run("fill", &[]).ok();
    assert!(
        again.stdout.contains("0 slots to fill"),
        "the empty slot waits: {}",
        again.stdout
    );
    assert_eq!(
        f.emulator.calls(),
        calls,
        "the empty slot is not retried before its wait"
    );
    f.run("fill", &["--retry-empty"]).ok();
    assert!(f.emulator.calls() > calls);
}

#[test]
fn max_slots_chunks_add_up_and_nothing_is_fetched_twice() {
    let f = fixture(EmulatorConfig::default());
    f.run("scan", &[]).ok();
    for _ in 0..3 {
        f.run("fill", &["--max-slots", "3", "--order", "newest"])
            .ok();
    }
    f.assert_complement_exact();
    let attempts = f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts");
    assert_eq!(attempts, 8, "one attempt per missing slot");
    let twice = f.ws.query_i64(
        "SELECT COUNT(*) FROM (SELECT slot_start FROM fill_attempts GROUP BY slot_start HAVING COUNT(*) > 1)",
    );
    assert_eq!(twice, 0);
    // Newest first: the first chunk took the last three slots.
    let first_run_oldest = f.ws.query_i64("SELECT MIN(slot_start) FROM fill_attempts WHERE run_id = (SELECT MIN(run_id) FROM fill_attempts)");
    assert_eq!(first_run_oldest, f.last - 2 * SLOT);
}

#[test]
fn a_crash_between_put_and_commit_is_reconciled_without_refetching() {
    let f = fixture(EmulatorConfig::default());
    f.run("scan", &[]).ok();
    f.run("fill", &[]).ok();
    // Rewind the catalog to the instant after the PUTs and before the commits.
    f.ws.catalog()
        .execute_batch(
            "UPDATE fill_attempts SET finished_at = NULL, outcome = NULL, object_id = NULL;
             UPDATE slots SET state = 'missing', ok_role = NULL, object_id = NULL
                 WHERE ok_role = 'complement' OR state = 'empty';
             DELETE FROM objects WHERE location_id IN (SELECT id FROM locations WHERE role = 'complement');",
        )
        .unwrap();
    let calls = f.emulator.calls();
    let out = f.run("fill", &["--retry-empty"]).ok();
    assert!(
        out.stdout.contains("found 8 already written"),
        "{}",
        out.stdout
    );
    // No slot is fetched again, the empty one included (its zero-line object is
    // found); at most the one-off probes reach the origin.
    let refetched = f.emulator.calls() - calls;
    assert!(refetched <= 2, "{refetched} calls");
    let ok =
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'ok'");
    assert_eq!(ok, 11);
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'empty'"),
        1
    );
    f.assert_complement_exact();
}

#[test]
fn existing_complement_objects_are_never_clobbered() {
    let f = fixture(EmulatorConfig::default());
    let server = S3Server::shared();
    let key = format!("misskey_complement/{}", key_of(f.missing[0]));
    server.put(&f.complement, &key, b"{\"sentinel\":true}\n");
    f.run("scan", &[]).ok();
    f.run("fill", &[]).ok();
    assert_eq!(
        server.get(&f.complement, &key).unwrap(),
        b"{\"sentinel\":true}\n"
    );
    let exists =
        f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'exists'");
    assert_eq!(exists, 1);
    // --overwrite replaces it.
    f.run("fill", &["--overwrite"]).ok();
    assert_eq!(
        f.complement_lines(f.missing[0]).unwrap(),
        f.expected(f.missing[0])
    );
}

#[test]
fn every_id_scheme_and_search_engine_gets_the_boundaries_right() {
    for scheme in IdScheme::ALL {
        for engine in [SearchEngine::SqlLike, SearchEngine::Meilisearch] {
            let emulator = MisskeyEmulator::start(EmulatorConfig {
                scheme,
                search: engine,
                ..Default::default()
            });
            let dir = tempfile::tempdir().unwrap();
            let slot = AUG1_JST;
            let (start, end) = (slot * 1000, (slot + SLOT) * 1000);
            // objectid ids have second precision: its notes sit on whole seconds.
            let step = if scheme == IdScheme::ObjectId {
                1000
            } else {
                1
            };
            for ms in [
                start - step,
                start,
                start,
                start + step,
                end - step,
                end - step,
                end,
            ] {
                emulator.add_note(NoteSpec::public_local(ms, "境界"));
            }
            let mut specs = mixed_notes(start, end, 230, 7);
            for spec in &mut specs {
                spec.created_at_ms -= spec.created_at_ms % step;
            }
            emulator.add_notes(specs);
            let config = format!(
                "[datasets.jp]\nprimary = \"file://{0}/p\"\ncomplement = \"file://{0}/c\"\n{RULES}{1}",
                dir.path().display(),
                source_config(&emulator, "")
            );
            let ws = Workspace::new(&config);
            let window = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T00:00"];
            ws.slotfill(&[&["scan", "-d", "jp"][..], &window].concat())
                .ok();
            ws.slotfill(&[&["fill", "-d", "jp"][..], &window].concat())
                .ok();
            let written = std::fs::read_to_string(dir.path().join("c").join(key_of(slot))).unwrap();
            let lines: Vec<Value> = written
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let expected = emulator.expected("notes/search", start, end);
            assert_eq!(lines.len(), expected.len(), "{scheme:?} {engine:?}");
            assert_eq!(lines, expected, "{scheme:?} {engine:?}");
        }
    }
}

#[test]
fn disabled_search_names_the_way_out_and_timelines_work() {
    let f = fixture(EmulatorConfig {
        search: SearchEngine::Disabled,
        ..Default::default()
    });
    f.run("scan", &[]).ok();
    let out = f.run("fill", &[]).code(2);
    assert!(out.stderr.contains("local-timeline"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'ok'"),
        4
    );

    f.run("fill", &["--mode", "local-timeline"]).ok();
    for &slot in &f.missing {
        let params = serde_json::json!({"withReplies": true, "withRenotes": true});
        let expected = f.emulator.expected_with(
            "notes/local-timeline",
            slot * 1000,
            (slot + SLOT) * 1000,
            &params,
        );
        assert_eq!(
            f.complement_lines(slot).unwrap_or_default(),
            expected,
            "slot {}",
            local_iso(slot)
        );
    }
    for body in f.emulator.requests_to("notes/local-timeline") {
        assert_eq!(body["allowPartial"], false, "{body}");
    }
}

#[test]
fn rate_limits_and_transient_faults_are_waited_out() {
    let f = fixture(EmulatorConfig::default());
    f.run("scan", &[]).ok();
    f.emulator.fail_next([
        Fault::RateLimit {
            retry_after_secs: Some(1),
            with_info: true,
        },
        Fault::Html(502),
        Fault::TruncatedJson,
        Fault::Internal500,
        Fault::ResetConnection,
        Fault::RateLimit {
            retry_after_secs: None,
            with_info: false,
        },
        Fault::CloudflareRateLimit,
        Fault::Html(504),
    ]);
    let out = f
        .run("fill", &["--retry-wait", "0.05", "--concurrency", "2"])
        .ok();
    assert!(out.stdout.contains("filled 7"), "{}", out.stdout);
    f.assert_complement_exact();
    // The faults reached the origin and were waited out (some by the probe before
    // the first slot, which no attempt records).
    let retries = summary_number(&out.stdout, "retries: ");
    assert!(retries >= 6, "{retries} retries");
}

#[test]
fn exhausted_retries_leave_slots_missing_and_unwritten() {
    let f = fixture(EmulatorConfig::default());
    f.run("scan", &[]).ok();
    // The origin answers the probe, then fails every call.
    f.emulator
        .fail_next([Fault::Slow(std::time::Duration::ZERO)]);
    f.emulator.fail_every(1, Fault::Html(503));
    let out = f
        .run(
            "fill",
            &[
                "--retry",
                "1",
                "--retry-wait",
                "0.01",
                "--max-failures",
                "3",
            ],
        )
        .code(1);
    assert!(out.stdout.contains("stopped early"), "{}", out.stdout);
    assert!(
        S3Server::shared().list_keys(&f.complement, "").is_empty(),
        "nothing written"
    );
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'ok'"),
        4
    );
    let failed =
        f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts WHERE outcome = 'failed'");
    assert!(failed >= 1, "{failed}");
    // Once the origin recovers, a plain rerun completes the job.
    f.emulator.fail_every(0, Fault::Html(503));
    f.run("fill", &[]).ok();
    f.assert_complement_exact();
}

#[test]
fn a_rejected_token_is_a_configuration_error_and_never_shown() {
    let mut f = fixture(EmulatorConfig {
        required_token: Some("the-right-token-123".into()),
        ..Default::default()
    });
    f.run("scan", &[]).ok();
    let secret = "wrong-token-SECRET-987";
    let out = f.run("fill", &["--token", secret, "-vv"]).code(2);
    assert!(
        out.stderr.contains("rejected the API token"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));
    let catalog = std::fs::read(f.ws.catalog_path()).unwrap();
    assert!(
        !String::from_utf8_lossy(&catalog).contains(secret),
        "token in the catalog"
    );
    // The token from the environment works, and is sent as a Bearer header.
    f.ws.set_env("MISSKEY_TOKEN", "the-right-token-123");
    f.run("fill", &[]).ok();
    f.assert_complement_exact();
    assert!(
        f.emulator
            .seen_authorization_headers()
            .iter()
            .any(|h| h == "Bearer the-right-token-123")
    );
    let _ = &f.primary;
}
