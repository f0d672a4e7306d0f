//! "Complete" and "empty" rest on proof (misskey-api.md §9): a range ends only on an
//! empty page, a note older than its start, or (millisecond engines) a page that brings
//! nothing new; and the origin's answers are calibrated against the archive before any
//! slot is sealed on them. Each test runs against an emulator that fails the way the
//! real server does, and asserts what reaches the bucket and the requests the origin saw.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::misskey::{
    EmulatorConfig, Fanout, MisskeyEmulator, NoteSpec, SearchEngine, Visitors, max_id_at,
    mixed_notes,
};
use crate::support::s3::S3Server;
use crate::support::*;

/// Archived (valid) slots before and after the gap, and the gap slots.
const BEFORE: i64 = 3;
const GAP: i64 = 8;

struct Bed {
    ws: Workspace,
    emulator: MisskeyEmulator,
    complement: String,
    first: i64,
    last: i64,
    gap: Vec<i64>,
}

/// A day with `BEFORE` archived slots, `GAP` missing slots and one archived slot after,
/// `notes` raw notes a slot at the origin; the primary holds what a collector archived.
/// `extra` is the dataset's source section; `dataset_keys` go into `[datasets.jp]`.
fn bed(config: EmulatorConfig, notes: usize, source: &str, dataset_keys: &str) -> Bed {
    let server = S3Server::shared();
    let (primary, complement) = (server.new_bucket("proof-p"), server.new_bucket("proof-c"));
    let emulator = MisskeyEmulator::start(config);
    let first = AUG1_JST + 6 * SLOT;
    let slots = BEFORE + GAP + 1;
    let mut gap = Vec::new();
    for i in 0..slots {
        let slot = first + i * SLOT;
        let (start_ms, end_ms) = (slot * 1000, (slot + SLOT) * 1000);
        emulator.add_notes(mixed_notes(start_ms, end_ms, notes, 7 + i as u64));
        // Notes on the edges: the first and last millisecond, and a crowded one.
        for ms in [
            start_ms,
            end_ms - 1,
            start_ms + 5,
            start_ms + 5,
            start_ms + 5,
        ] {
            emulator.add_note(NoteSpec::public_local(ms, &format!("edge {ms}")));
        }
        if i < BEFORE || i == slots - 1 {
            let body = emulator.archive(start_ms, end_ms);
            server.put(&primary, &format!("m/{}", key_of(slot)), &body);
        } else {
            gap.push(slot);
        }
    }
    let source = source.replace("BASE_URL", &emulator.base_url());
    let config = s3_config(
        &format!("s3://{primary}/m"),
        &[],
        Some(&format!("s3://{complement}/c")),
        &source,
    )
    .replace("max_lines = 40", "max_lines = 10000")
    .replace(
        "[datasets.jp.rules]",
        &format!("{dataset_keys}[datasets.jp.rules]"),
    );
    let ws = Workspace::new(&config);
    let last = first + (slots - 1) * SLOT;
    Bed {
        ws,
        emulator,
        complement,
        first,
        last,
        gap,
    }
}

impl Bed {
    fn window(&self) -> Vec<String> {
        let (start, end) = (arg_time(self.first), arg_time(self.last));
        ["-d", "jp", "--start", &start, "--end", &end]
            .map(String::from)
            .to_vec()
    }

    fn slotfill(&self, command: &str) -> Run {
        let mut args = vec![command.to_string()];
        args.extend(self.window());
        self.ws
            .slotfill(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn object(&self, slot: i64) -> Option<Vec<Value>> {
        let body = S3Server::shared().get(&self.complement, &format!("c/{}", key_of(slot)))?;
        let text = String::from_utf8(body).expect("utf-8");
        Some(
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    }

    fn metadata(&self, slot: i64) -> std::collections::HashMap<String, String> {
        S3Server::shared()
            .head_metadata(&self.complement, &format!("c/{}", key_of(slot)))
            .expect("object written")
    }

    /// Page requests of `slot` (every page of a slot carries its lower bound).
    fn pages_of(&self, endpoint: &str, slot: i64) -> usize {
        let since = max_id_at(self.emulator.scheme(), slot * 1000 - 1);
        let requests = self.emulator.requests_to(endpoint);
        requests
            .iter()
            .filter(|r| r["sinceId"] == since.as_str())
            .count()
    }

    fn calibrations(&self) -> Vec<BTreeMap<String, String>> {
        let db = self.ws.catalog();
        let mut stmt = db
            .prepare(
                "SELECT verdict, COALESCE(recall, -1), COALESCE(blind_to, ''), message, origin_calls
                 FROM calibrations ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let mut row = BTreeMap::new();
            row.insert("verdict".into(), r.get::<_, String>(0)?);
            row.insert("recall".into(), r.get::<_, f64>(1)?.to_string());
            row.insert("blind_to".into(), r.get::<_, String>(2)?);
            row.insert("message".into(), r.get::<_, String>(3)?);
            row.insert("calls".into(), r.get::<_, i64>(4)?.to_string());
            Ok(row)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    #[track_caller]
    fn assert_nothing_sealed(&self) {
        for &slot in &self.gap {
            assert!(
                self.object(slot).is_none(),
                "slot {} written",
                local_iso(slot)
            );
        }
        let sealed = self.ws.query_i64(
            "SELECT COUNT(*) FROM slots WHERE state IN ('empty') OR ok_role = 'complement'",
        );
        assert_eq!(sealed, 0, "a slot was sealed on answers that cannot see it");
        let attempts = self.ws.query_i64("SELECT COUNT(*) FROM fill_attempts");
        assert_eq!(attempts, 0, "a gap slot was fetched from a blind origin");
    }
}

const SEARCH_LOCAL: &str = "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"BASE_URL\"\n\
    mode = \"search\"\nhost = \".\"\n";

/// misskey.io's case: Meilisearch asks for `limit` hits, then drops notes deleted since
/// they were indexed and suspended authors, so pages come back short while more notes lie
/// below. Every note the server can return must still be written.
#[test]
fn thinned_search_pages_are_paged_to_proof_and_every_note_is_written() {
    let b = bed(
        EmulatorConfig {
            search: SearchEngine::Meilisearch,
            ..Default::default()
        },
        300,
        SEARCH_LOCAL,
        "",
    );
    // 2% of every slot's notes deleted since indexing (the archived slots' too), and
    // one author suspended: pages of 100 hits come back with ~80 notes.
    let all = b.emulator.archive(b.first * 1000, (b.last + SLOT) * 1000);
    let ids: Vec<String> = String::from_utf8(all)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .enumerate()
        .filter(|(i, _)| i % 50 == 7)
        .map(|(_, id)| id)
        .collect();
    b.emulator.delete_since_indexed(&ids);
    b.emulator.suspend("info_bot");

    b.slotfill("scan").ok();
    let out = b.slotfill("fill").ok();
    for &slot in &b.gap {
        let expected = b
            .emulator
            .expected("notes/search", slot * 1000, (slot + SLOT) * 1000);
        assert!(
            expected.len() > 150,
            "the fixture: {} notes",
            expected.len()
        );
        let written = b.object(slot).expect("gap slot written");
        let ids = |notes: &[Value]| -> Vec<String> {
            notes.iter().map(|n| n["id"].to_string()).collect()
        };
        assert_eq!(ids(&written), ids(&expected), "slot {}", local_iso(slot));
        assert!(
            written == expected,
            "slot {}: notes differ",
            local_iso(slot)
        );
        let meta = b.metadata(slot);
        assert_eq!(meta["complete"], "true");
        assert_eq!(meta["engine"], "millisecond");
        assert_eq!(meta["mode"], "search");
        assert_eq!(meta["token"], "anonymous");
        assert_eq!(meta["host"], ".");
        assert_eq!(meta["visibility"], "public,home");
        assert!(
            ["no-new-note", "empty-page"].contains(&meta["range-end"].as_str()),
            "{meta:?}"
        );
        assert!(
            meta["calibration"].starts_with("partial recall=0."),
            "{meta:?}"
        );
        // Thinned pages came back short, and the fill asked on below each of them.
        let pages = b.pages_of("notes/search", slot);
        assert!(pages > expected.len().div_ceil(100), "{pages} pages");
    }
    // One calibration for the day: partial (the archive holds notes deleted since), filling on.
    let calibrations = b.calibrations();
    assert_eq!(calibrations.len(), 1, "{calibrations:?}");
    assert_eq!(calibrations[0]["verdict"], "partial");
    let recall: f64 = calibrations[0]["recall"].parse().unwrap();
    assert!(recall > 0.7 && recall < 1.0, "{calibrations:?}");
    assert!(
        out.stdout.contains("calibration: partial:"),
        "{}",
        out.stdout
    );
    let recorded = b.ws.query_i64(
        "SELECT COUNT(*) FROM fill_attempts WHERE calibration_id IS NOT NULL
           AND range_end IS NOT NULL AND provenance LIKE '%\"engine\":\"millisecond\"%'",
    );
    assert_eq!(recorded, GAP);
    b.slotfill("verify").ok();
}

/// `min_recall` turns a low recall into a failed run that seals nothing.
#[test]
fn a_recall_below_min_recall_fails_the_run_and_fills_nothing() {
    let b = bed(
        EmulatorConfig {
            search: SearchEngine::Meilisearch,
            ..Default::default()
        },
        60,
        SEARCH_LOCAL,
        "min_recall = 0.95\n",
    );
    b.emulator.suspend("alice");
    b.slotfill("scan").ok();
    let out = b.slotfill("fill").code(1);
    assert!(
        out.stderr.contains("below min_recall = 0.95"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    b.assert_nothing_sealed();
    assert_eq!(b.calibrations()[0]["verdict"], "low_recall");
}

/// A fanout timeline without database fallback answers `[]` for every window older than
/// its Redis list: no gap slot may be sealed empty on that.
#[test]
fn a_fanout_timeline_without_fallback_is_found_blind_and_nothing_is_sealed() {
    let b = bed(
        EmulatorConfig {
            fanout: Some(Fanout {
                cached: 40,
                db_fallback: false,
            }),
            ..Default::default()
        },
        40,
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"BASE_URL\"\nmode = \"local-timeline\"\n",
        "",
    );
    // Recent notes, long after the window: what the Redis list holds.
    let now = (b.last + 30 * 86_400) * 1000;
    b.emulator
        .add_notes((0..60).map(|i| NoteSpec::public_local(now + i * 1000, "recent")));
    b.slotfill("scan").ok();
    let out = b.slotfill("fill").code(1);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.starts_with("slotfill: error: "), "{line}");
    assert!(
        line.contains("enableFanoutTimelineDbFallback") && line.contains("mode = \"search\""),
        "{line}"
    );
    b.assert_nothing_sealed();
    let calibrations = b.calibrations();
    assert_eq!(calibrations[0]["verdict"], "blind");
    assert_eq!(calibrations[0]["blind_to"], "all");
    assert_eq!(
        calibrations[0]["calls"], "2",
        "the window, then the newest page"
    );
    // The origin saw the probe, the archived slot's window and the newest page; no gap slot.
    for &slot in &b.gap {
        assert_eq!(b.pages_of("notes/local-timeline", slot), 0);
    }
    // `run` fails the same way, and `verify` still counts every gap.
    b.slotfill("run").code(1);
    let verify = b.slotfill("verify").code(3);
    assert!(
        verify.stdout.contains(&format!("{GAP} ")),
        "{}",
        verify.stdout
    );
}

/// The same with an empty Redis list and no id_scheme: the probe learns nothing from the
/// origin, the archive teaches the id scheme, and the cause named is the blind timeline,
/// not the id scheme.
#[test]
fn an_origin_that_answers_nothing_learns_its_ids_from_the_archive_and_is_found_blind() {
    let b = bed(
        EmulatorConfig {
            fanout: Some(Fanout {
                cached: 0,
                db_fallback: false,
            }),
            ..Default::default()
        },
        30,
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"BASE_URL\"\nmode = \"local-timeline\"\nid_scheme = \"auto\"\n",
        "",
    );
    b.slotfill("scan").ok();
    let out = b.slotfill("fill").code(1);
    assert!(!out.stderr.contains("id scheme"), "{}", out.stderr);
    assert!(
        out.stderr.contains("returned none of the") && out.stderr.contains("fanout cache"),
        "{}",
        out.stderr
    );
    b.assert_nothing_sealed();
}

/// Visitors who see only local notes (a fork applying `ugcVisibilityForVisitor` to
/// search): an anonymous fill would write every slot without its remote notes.
#[test]
fn visitors_who_see_only_local_notes_are_found_blind_to_remote_notes() {
    let search =
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"BASE_URL\"\nmode = \"search\"\n";
    let b = bed(
        EmulatorConfig {
            visitors: Visitors::Local,
            ..Default::default()
        },
        60,
        search,
        "",
    );
    b.slotfill("scan").ok();
    let out = b.slotfill("fill").code(1);
    assert!(
        out.stderr.contains("remote notes") && out.stderr.contains("MISSKEY_TOKEN"),
        "{}",
        out.stderr
    );
    b.assert_nothing_sealed();
    assert_eq!(b.calibrations()[0]["blind_to"], "remote");

    // Archiving local notes only is what such an origin can prove: exact, exit 0.
    let config = std::fs::read_to_string(b.ws.config_path()).unwrap();
    b.ws.write_config(&config.replace("mode = \"search\"", "mode = \"search\"\nhost = \".\""));
    b.slotfill("fill").ok();
    for &slot in &b.gap {
        let mut expected = b
            .emulator
            .expected("notes/search", slot * 1000, (slot + SLOT) * 1000);
        expected.retain(|n| n["user"]["host"].is_null());
        assert_eq!(b.object(slot).expect("written"), expected);
    }
}

/// Visitors who see nothing: every answer is `[]`, and none may seal a slot empty.
#[test]
fn visitors_who_see_nothing_are_found_blind_and_told_to_use_a_token() {
    let b = bed(
        EmulatorConfig {
            visitors: Visitors::None,
            ..Default::default()
        },
        30,
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"BASE_URL\"\nmode = \"notes\"\nid_scheme = \"aidx\"\n",
        "",
    );
    b.slotfill("scan").ok();
    let out = b.slotfill("fill").code(1);
    assert!(
        out.stderr.contains("ugcVisibilityForVisitor") && out.stderr.contains("--token"),
        "{}",
        out.stderr
    );
    b.assert_nothing_sealed();
}

/// On a server that answers honestly, calibration costs one call and says ok; notes the
/// host filter drops are counted like those the visibility policy leaves out.
#[test]
fn an_honest_origin_calibrates_ok_and_host_filter_drops_are_counted() {
    let b = bed(
        EmulatorConfig::default(),
        80,
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"BASE_URL\"\nmode = \"global-timeline\"\nhost = \".\"\n",
        "",
    );
    b.slotfill("scan").ok();
    let out = b.slotfill("fill").ok();
    let calibrations = b.calibrations();
    assert_eq!(calibrations[0]["verdict"], "ok", "{calibrations:?}");
    assert_eq!(calibrations[0]["calls"], "1");
    let dropped =
        b.ws.query_i64("SELECT SUM(out_of_scope) FROM fill_attempts");
    let remote: usize = b
        .gap
        .iter()
        .map(|&slot| {
            let all =
                b.emulator
                    .expected("notes/global-timeline", slot * 1000, (slot + SLOT) * 1000);
            all.iter().filter(|n| !n["user"]["host"].is_null()).count()
        })
        .sum();
    assert!(remote > 0, "the fixture has remote notes");
    assert_eq!(dropped, remote as i64);
    assert!(
        out.stdout.contains(&format!(
            "{remote} notes left out by the host or text filter"
        )),
        "{}",
        out.stdout
    );
    for &slot in &b.gap {
        let meta = b.metadata(slot);
        assert_eq!(meta["range-end"], "empty-page");
        assert!(
            meta["calibration"].starts_with("ok recall=1.000"),
            "{meta:?}"
        );
    }
}

/// A Mastodon-API feed disabled for the caller answers a signed-in caller 200 `[]`
/// (Mastodon 4.5). Where the instance does not say so, calibration must: the archived
/// statuses do not come back, no slot is sealed empty, and the run fails naming the feed.
#[test]
fn a_mastodon_feed_that_answers_nothing_is_found_blind_by_calibration() {
    use crate::support::fediverse::Fixture;
    use crate::support::mastodon::{FeedAccess, MastodonConfig, MastodonEmulator, mixed_statuses};
    let e = MastodonEmulator::start(MastodonConfig {
        feed_access: Some(FeedAccess {
            local: "disabled",
            remote: "public",
        }),
        hide_feed_settings: true,
        tokens: vec!["user-token".into()],
        ..Default::default()
    });
    let first = AUG1_JST;
    for i in 0..6 {
        let slot = first + i * SLOT;
        e.add_statuses(mixed_statuses(
            slot * 1000,
            (slot + SLOT) * 1000,
            30,
            i as u64,
        ));
    }
    let mut f = Fixture::new(&e, "local", "");
    f.ws.set_env("MASTODON_TOKEN", "user-token");
    // The collector archived the first two slots: what the public timeline held then.
    for slot in [first, first + SLOT] {
        let statuses = e.expected("public", slot * 1000, (slot + SLOT) * 1000);
        let mut body = Vec::new();
        for s in statuses.iter().take(35) {
            serde_json::to_writer(&mut body, s).unwrap();
            body.push(b'\n');
        }
        f.primary.put(&key_of(slot), &body);
    }
    let last = first + 5 * SLOT;
    f.run("scan", first, last, &[]).ok();
    let out = f.run("fill", first, last, &[]).code(1);
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("returned none of the") && line.contains("timelines_access"),
        "{line}"
    );
    assert!(f.complement.keys().is_empty(), "nothing written");
    let sealed =
        f.ws.query_i64("SELECT COUNT(*) FROM slots WHERE state = 'empty'");
    assert_eq!(
        sealed, 0,
        "no slot sealed empty on a feed that answers nothing"
    );
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
    let verdict =
        f.ws.query_i64("SELECT COUNT(*) FROM calibrations WHERE verdict = 'blind'");
    assert_eq!(verdict, 1);
}
