//! Origin calls per slot, and what reaches the bucket when pages are thinned (part `calls` of
//! `bench/run.sh --profile limit`).
//!
//! A fill of `FILL_SLOTS` slots holding 1,000, 250, 99 and 101 notes in turn, in distinct
//! milliseconds, on SQL search and on a millisecond-granular engine (Meilisearch, OpenSearch):
//! the calls at the emulator against the budget of a range that ends only on proof,
//! ceil(n/100) + 1 on SQL (the empty page) and ceil(n/100) + 2 on millisecond engines (the
//! boundary re-read). Then the millisecond engine again with 2% of the notes deleted after
//! indexing, so pages are thinned after the limit (misskey.io's case): the notes written
//! against the notes the server can return, and the calls that cost.

use serde_json::json;

use super::super::misskey::{EmulatorConfig, MisskeyEmulator, NoteSpec, SearchEngine, sample_text};
use super::{Options, Report, Workspace, date, record, round3, run_slotfill};

/// Slots per engine, and their note counts in turn.
const FILL_SLOTS: usize = 40;
const FILL_NOTES: [usize; 4] = [1_000, 250, 99, 101];
/// One note in this many is deleted after indexing in the thinned run (2%).
const THIN_EVERY: usize = 50;

pub fn calls_part(opts: &Options, report: &mut Report) {
    for engine in [SearchEngine::SqlLike, SearchEngine::Meilisearch] {
        calls_per_slot(opts, report, engine, false);
    }
    calls_per_slot(opts, report, SearchEngine::Meilisearch, true);
}

/// The budget of a slot of `n` notes on `engine` when no page is thinned.
fn budget(engine: SearchEngine, n: usize) -> u64 {
    let proof = if engine == SearchEngine::Meilisearch {
        2
    } else {
        1
    };
    n.div_ceil(100) as u64 + proof
}

/// Fills `FILL_SLOTS` slots on one kind of search engine; records the origin calls per slot
/// and, when `thinned`, the share of the server's notes written.
fn calls_per_slot(opts: &Options, report: &mut Report, engine: SearchEngine, thinned: bool) {
    let emulator = MisskeyEmulator::start(EmulatorConfig {
        search: engine,
        ..Default::default()
    });
    // 2025-09-01T00:00+09:00
    let first_slot = date(2025, 9, 1)
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp()
        - 9 * 3600;
    let (mut planned, mut seed, mut ids) = (0u64, 0u64, Vec::new());
    for s in 0..FILL_SLOTS {
        let n = FILL_NOTES[s % FILL_NOTES.len()];
        planned += budget(engine, n);
        let start_ms = (first_slot + s as i64 * 600) * 1000;
        // Distinct milliseconds: a note sharing the millisecond of a page's last costs a call
        // more on a millisecond-granular engine, whatever the client does.
        let step = 600_000 / n as i64;
        ids.extend(emulator.add_notes((0..n as i64).map(|k| {
            seed += 1;
            NoteSpec::public_local(
                start_ms + k * step + (seed as i64 % step),
                &sample_text(seed),
            )
        })));
    }
    if thinned {
        let deleted: Vec<String> = ids.iter().step_by(THIN_EVERY).cloned().collect();
        emulator.delete_since_indexed(&deleted);
    }
    let last_slot = first_slot + (FILL_SLOTS as i64 - 1) * 600;
    let server_holds = emulator
        .expected("notes/search", first_slot * 1000, (last_slot + 600) * 1000)
        .len();
    let local = |slot: i64| {
        chrono::DateTime::from_timestamp(slot + 9 * 3600, 0)
            .expect("time")
            .naive_utc()
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = format!(
        "catalog = \"slotfill.db\"\n[datasets.jp]\nprimary = \"file://{0}/p\"\n\
         complement = \"file://{0}/c\"\n[datasets.jp.source]\nkind = \"misskey\"\n\
         base_url = \"{1}\"\nmode = \"search\"\n",
        dir.path().display(),
        emulator.base_url()
    );
    let ws = Workspace::new(&cfg);
    let window = [
        "--start".to_string(),
        local(first_slot),
        "--end".into(),
        local(last_slot),
    ];
    let mut scan = vec!["scan".to_string(), "-d".into(), "jp".into()];
    scan.extend(window.iter().cloned());
    let out = run_slotfill(opts, &ws, &[], "calls: scan first", &scan, None);
    report.check(out.code == 0, format!("calls: scan exit code {}", out.code));
    let mut fill = vec!["fill".to_string(), "-d".into(), "jp".into()];
    fill.extend(window.iter().cloned());
    let name = match thinned {
        false => format!("fill {FILL_SLOTS} slots, {engine:?}"),
        true => format!("fill {FILL_SLOTS} slots, {engine:?}, 2% thinned"),
    };
    let mut out = run_slotfill(opts, &ws, &[], &name, &fill, None);
    let calls = emulator.calls();
    let written = ws.query_i64("SELECT COALESCE(SUM(notes), 0) FROM fill_attempts") as u64;
    out.measure.extra.extend([
        ("origin_calls".to_string(), json!(calls)),
        (
            "calls_per_slot".into(),
            json!(round3(calls as f64 / FILL_SLOTS as f64)),
        ),
        ("budget".into(), json!(planned)),
        ("notes_written".into(), json!(written)),
        ("notes_the_server_holds".into(), json!(server_holds)),
    ]);
    record(report, opts, &out, 0);
    report.check(
        written == server_holds as u64,
        format!("{name}: {written} of the {server_holds} notes the server holds written"),
    );
    if !thinned {
        report.check(
            calls <= planned + 2,
            format!("{name}: {calls} origin calls <= budget {planned} + 2 probes"),
        );
    }
}
