//! What a fill costs at the origin when every range must end on proof (an empty
//! page, never a short one): at most ceil(n/100) + 1 calls for a slot of n notes
//! on SQL search (the +1 is the empty page), ceil(n/100) + 2 on millisecond
//! engines (Meilisearch, OpenSearch: the boundary re-read), counted by the
//! emulator, with every note still written.

use serde_json::Value;

use crate::support::misskey::{EmulatorConfig, IdScheme, MisskeyEmulator, NoteSpec, SearchEngine};
use crate::support::*;

/// Notes per slot: around the page size and its multiples, where an extra call hides.
const NOTES: [usize; 9] = [1, 99, 100, 101, 199, 200, 250, 299, 1000];

/// The budget of a slot of `notes` notes on `engine`.
fn pages(engine: SearchEngine, notes: usize) -> i64 {
    let proof = if engine == SearchEngine::Meilisearch {
        2
    } else {
        1
    };
    (notes as u64).div_ceil(100) as i64 + proof
}

#[test]
fn a_search_fill_costs_its_pages_plus_the_proof_of_its_end_on_both_engine_kinds() {
    for engine in [SearchEngine::SqlLike, SearchEngine::Meilisearch] {
        let emulator = MisskeyEmulator::start(EmulatorConfig {
            scheme: IdScheme::Aidx,
            search: engine,
            ..Default::default()
        });
        let first = AUG1_JST;
        for (i, n) in NOTES.iter().enumerate() {
            let start = (first + i as i64 * SLOT) * 1000;
            // Distinct milliseconds spread over the slot, the first and last included.
            let step = (SLOT * 1000 - 1) / (*n as i64 - 1).max(1);
            for k in 0..*n as i64 {
                emulator.add_note(NoteSpec::public_local(start + k * step, "ノート"));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[datasets.jp]\nprimary = \"file://{0}/p\"\ncomplement = \"file://{0}/c\"\n{RULES}\
             [datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{1}\"\nmode = \"search\"\n",
            dir.path().display(),
            emulator.base_url()
        );
        let ws = Workspace::new(&config);
        let last = first + (NOTES.len() as i64 - 1) * SLOT;
        let window = ["--start", &arg_time(first), "--end", &arg_time(last)];
        ws.slotfill(&[&["scan", "-d", "jp"][..], &window].concat())
            .ok();
        ws.slotfill(&[&["fill", "-d", "jp"][..], &window].concat())
            .ok();

        let mut budget = 0;
        let mut total = 0;
        for (i, n) in NOTES.iter().enumerate() {
            let slot = first + i as i64 * SLOT;
            let written = std::fs::read_to_string(dir.path().join("c").join(key_of(slot)))
                .unwrap_or_else(|e| panic!("{engine:?}: slot {i} not written: {e}"));
            let lines: Vec<Value> = written
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let expected = emulator.expected("notes/search", slot * 1000, (slot + SLOT) * 1000);
            assert_eq!(expected.len(), *n, "{engine:?}: the fixture");
            assert_eq!(lines, expected, "{engine:?}: slot {i}");
            let calls = ws.query_i64(&format!(
                "SELECT origin_calls FROM fill_attempts WHERE slot_start = {slot}"
            ));
            // One slot also carries the one-off probe of how the engine compares bounds.
            assert!(
                calls <= pages(engine, *n) + 1,
                "{engine:?}: {n} notes took {calls} calls"
            );
            budget += pages(engine, *n);
            total += calls;
        }
        // The bound-comparison probe is made once (search mode), inside a slot.
        assert!(
            total <= budget + 1,
            "{engine:?}: {total} calls for a budget of {budget}"
        );
        // Plus the id-scheme detection made before the first slot.
        assert!(
            emulator.calls() as i64 <= budget + 2,
            "{engine:?}: {} calls at the origin for a budget of {budget} + 2 probes",
            emulator.calls()
        );
    }
}
