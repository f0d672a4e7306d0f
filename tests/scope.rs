//! What the archive may hold (issue 14): the visibility policy, scope settings
//! that are honoured or refused before anything runs, and a refused search
//! that says what to change. Against the Misskey emulator and the real S3 server.

use serde_json::{Value, json};

use crate::support::misskey::{Account, EmulatorConfig, MisskeyEmulator, NoteSpec, mixed_notes};
use crate::support::s3::S3Server;
use crate::support::*;

const TOKEN: &str = "alice-personal-token-0001";
/// The visibilities written by default.
const PUBLIC: [&str; 2] = ["public", "home"];

/// Three missing slots at the origin and a dataset filling them into a fresh complement bucket.
struct Fixture {
    ws: Workspace,
    emulator: MisskeyEmulator,
    complement: String,
    slots: [i64; 3],
}

fn fixture(config: EmulatorConfig, source: &str) -> Fixture {
    let emulator = MisskeyEmulator::start(config);
    let slots = [AUG1_JST, AUG1_JST + SLOT, AUG1_JST + 2 * SLOT];
    let ms = |slot: i64, offset: i64| slot * 1000 + offset;
    for (i, &slot) in slots[..2].iter().enumerate() {
        emulator.add_notes(mixed_notes(
            ms(slot, 0),
            ms(slot, SLOT * 1000),
            60,
            i as u64,
        ));
    }
    // What a personal token of alice, who follows bob, adds to a search (§2.7) …
    let text = |t: &str| format!("{t} ですよ");
    emulator.add_notes([
        NoteSpec::public_local(ms(slots[0], 1_000), &text("own followers"))
            .by("alice")
            .visible("followers"),
        NoteSpec::public_local(ms(slots[0], 2_000), &text("own direct"))
            .by("alice")
            .visible("specified"),
        NoteSpec::public_local(ms(slots[0], 3_000), &text("followed"))
            .by("bob")
            .visible("followers"),
        NoteSpec::public_local(ms(slots[1], 4_000), &text("followed"))
            .by("bob")
            .visible("followers"),
        // … and what it still does not see.
        NoteSpec::public_local(ms(slots[0], 5_000), &text("not followed"))
            .by("carol")
            .visible("followers"),
        NoteSpec::public_local(ms(slots[0], 6_000), &text("direct"))
            .by("dave")
            .visible("specified"),
        // A slot that holds nothing the default policy allows.
        NoteSpec::public_local(ms(slots[2], 7_000), &text("only followers"))
            .by("alice")
            .visible("followers"),
    ]);
    let ws = workspace(&emulator, source);
    let complement = complement_bucket(&ws);
    Fixture {
        ws,
        emulator,
        complement,
        slots,
    }
}

/// A workspace whose primary is an empty bucket and whose complement is another fresh bucket.
fn workspace(emulator: &MisskeyEmulator, source: &str) -> Workspace {
    let server = S3Server::shared();
    let (primary, complement) = (server.new_bucket("scope-p"), server.new_bucket("scope-c"));
    let source = format!(
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{}\"\nid_scheme = \"auto\"\n{source}",
        emulator.base_url()
    );
    let config = s3_config(
        &format!("s3://{primary}/misskey"),
        &[],
        Some(&format!("s3://{complement}/misskey_complement")),
        &source,
    );
    Workspace::new(&config)
}

fn complement_bucket(ws: &Workspace) -> String {
    let config = std::fs::read_to_string(ws.config_path()).unwrap();
    let start = config.find("complement = \"s3://").unwrap() + "complement = \"s3://".len();
    config[start..].split('/').next().unwrap().to_string()
}

impl Fixture {
    fn run(&self, ws: &Workspace, command: &str, extra: &[&str]) -> Run {
        let window = [
            "--start".to_string(),
            arg_time(self.slots[0]),
            "--end".to_string(),
            arg_time(self.slots[2]),
        ];
        let mut args = vec![command, "--dataset", "jp"];
        args.extend(window.iter().map(String::as_str));
        args.extend(extra);
        ws.slotfill(&args)
    }

    /// The notes a search as `token` returns for a slot, in file order.
    fn searched(&self, token: Option<&str>, slot: i64) -> Vec<Value> {
        let range = (slot * 1000, (slot + SLOT) * 1000);
        (self.emulator).expected_as(token, "notes/search", range.0, range.1, &json!({}))
    }
}

/// The lines of a slot's complement object, if written.
fn lines(bucket: &str, slot: i64) -> Option<Vec<Value>> {
    let body = S3Server::shared().get(bucket, &format!("misskey_complement/{}", key_of(slot)))?;
    let text = String::from_utf8(body).unwrap();
    Some(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

fn visibility(note: &Value) -> &str {
    note["visibility"].as_str().unwrap()
}

#[test]
fn signed_in_search_writes_only_what_the_visibility_policy_allows() {
    let account = Account::new(TOKEN, "alice").following(&["bob"]);
    let mut f = fixture(
        EmulatorConfig {
            accounts: vec![account],
            ..Default::default()
        },
        "mode = \"search\"\n",
    );
    f.ws.set_env("MISSKEY_TOKEN", TOKEN);
    f.run(&f.ws, "scan", &[]).ok();
    let out = f.run(&f.ws, "fill", &[]).ok();

    let mut left_out_total = 0;
    for (i, &slot) in f.slots.iter().enumerate() {
        let searched = f.searched(Some(TOKEN), slot);
        let allowed: Vec<Value> = searched
            .iter()
            .filter(|n| PUBLIC.contains(&visibility(n)))
            .cloned()
            .collect();
        let left_out = (searched.len() - allowed.len()) as i64;
        // The origin did hand over what a public archive must not hold.
        assert!(left_out >= 1, "slot {i} has nothing to leave out");
        left_out_total += left_out;
        let attempt = format!("SELECT left_out FROM fill_attempts WHERE slot_start = {slot}");
        assert_eq!(f.ws.query_i64(&attempt), left_out, "slot {i}");
        match lines(&f.complement, slot) {
            Some(lines) => assert_eq!(lines, allowed, "slot {i}"),
            None => assert!(allowed.is_empty(), "slot {i} not written"),
        }
    }
    // Beyond the public view: own followers and specified notes, followed users' followers notes.
    let anonymous = f.searched(None, f.slots[0]).len() as i64;
    let signed_in = f.searched(Some(TOKEN), f.slots[0]).len() as i64;
    assert!(signed_in >= anonymous + 3, "{signed_in} vs {anonymous}");
    assert!(
        out.stdout.contains(&format!(
            "{left_out_total} notes left out by the visibility policy"
        )),
        "{}",
        out.stdout
    );
    let report =
        f.ws.slotfill(&["report", "fill-attempts", "-d", "jp", "--format", "json"])
            .ok();
    let rows: Vec<Value> = serde_json::from_str(&report.stdout).unwrap();
    let reported: i64 = rows.iter().map(|r| r["left_out"].as_i64().unwrap()).sum();
    assert_eq!(reported, left_out_total, "{}", report.stdout);
    // A slot with only left-out notes is a complete fetch with no notes: confirmed
    // empty, a zero-line object records it.
    let last = format!(
        "SELECT outcome = 'empty' FROM fill_attempts WHERE slot_start = {}",
        f.slots[2]
    );
    assert_eq!(f.ws.query_i64(&last), 1);
    assert!(lines(&f.complement, f.slots[2]).is_some_and(|l| l.is_empty()));
    assert!(
        f.emulator
            .seen_authorization_headers()
            .iter()
            .all(|h| h == &format!("Bearer {TOKEN}"))
    );

    // Listing every visibility writes everything the token may read.
    let mut all = workspace(
        &f.emulator,
        "mode = \"search\"\nvisibility = [\"public\", \"home\", \"followers\", \"specified\"]\n",
    );
    all.set_env("MISSKEY_TOKEN", TOKEN);
    let complement = complement_bucket(&all);
    f.run(&all, "scan", &[]).ok();
    let out = f.run(&all, "fill", &[]).ok();
    for &slot in &f.slots {
        assert_eq!(
            lines(&complement, slot).unwrap(),
            f.searched(Some(TOKEN), slot)
        );
    }
    let written: Vec<String> = f
        .slots
        .iter()
        .flat_map(|s| lines(&complement, *s).unwrap())
        .map(|n| visibility(&n).to_string())
        .collect();
    assert!(written.iter().any(|v| v == "followers"));
    assert!(written.iter().any(|v| v == "specified"));
    assert_eq!(all.query_i64("SELECT SUM(left_out) FROM fill_attempts"), 0);
    assert!(!out.stdout.contains("left out"), "{}", out.stdout);
}

#[test]
fn global_timeline_with_host_dot_writes_only_local_notes() {
    let f = fixture(
        EmulatorConfig::default(),
        "mode = \"global-timeline\"\nhost = \".\"\n",
    );
    f.run(&f.ws, "scan", &[]).ok();
    f.run(&f.ws, "fill", &[]).ok();
    let mut remote_seen = 0;
    for &slot in &f.slots[..2] {
        let range = (slot * 1000, (slot + SLOT) * 1000);
        let timeline = f
            .emulator
            .expected("notes/global-timeline", range.0, range.1);
        let local: Vec<Value> = timeline
            .iter()
            .filter(|n| n["user"]["host"].is_null())
            .cloned()
            .collect();
        remote_seen += timeline.len() - local.len();
        assert_eq!(lines(&f.complement, slot).unwrap(), local);
    }
    assert!(remote_seen > 0, "the timeline held remote notes");
    // The endpoint has no host parameter: none was sent, the notes were filtered.
    for body in f.emulator.requests_to("notes/global-timeline") {
        assert!(body.get("host").is_none(), "{body}");
    }
}

#[test]
fn a_host_the_mode_cannot_honour_is_refused_before_anything_runs() {
    let f = fixture(
        EmulatorConfig::default(),
        "mode = \"local-timeline\"\nhost = \"mastodon.example\"\n",
    );
    f.run(&f.ws, "scan", &[]).ok();
    for command in ["fill", "run"] {
        let out = f.run(&f.ws, command, &[]).code(2);
        let stderr = out.stderr.trim();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("slotfill: error: "), "{stderr}");
        assert!(stderr.contains("only local notes"), "{stderr}");
    }
    assert_eq!(f.emulator.calls(), 0);
    let recorded =
        f.ws.query_i64("SELECT COUNT(*) FROM runs WHERE command <> 'scan'");
    assert_eq!(recorded, 0, "nothing recorded in the catalog");
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
}

#[test]
fn search_refused_for_the_tokens_role_names_both_causes_and_the_other_modes() {
    let mut f = fixture(
        EmulatorConfig {
            accounts: vec![
                Account::new(TOKEN, "alice"),
                Account::new("bob-token-without-search", "bob").without_search(),
            ],
            ..Default::default()
        },
        "mode = \"search\"\n",
    );
    f.run(&f.ws, "scan", &[]).ok();
    f.ws.set_env("MISSKEY_TOKEN", "bob-token-without-search");
    let calls = f.emulator.calls();
    let out = f.run(&f.ws, "fill", &[]).code(2);
    // Refused once, by the probe before the first slot: one call, no slot attempt.
    assert_eq!(f.emulator.calls() - calls, 1, "one origin call");
    assert_eq!(f.ws.query_i64("SELECT COUNT(*) FROM fill_attempts"), 0);
    let stderr = out.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("slotfill: error: "), "{stderr}");
    for needle in [
        "disabled on this instance",
        "this token's role",
        "\"local-timeline\"",
        "\"global-timeline\"",
        "\"notes\"",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!stderr.contains("bob-token-without-search"), "{stderr}");
    // Search is enabled on the instance: another role may search.
    f.ws.set_env("MISSKEY_TOKEN", TOKEN);
    f.run(&f.ws, "fill", &[]).ok();
    assert!(lines(&f.complement, f.slots[0]).is_some());
}

#[test]
fn an_unknown_visibility_is_a_config_error_naming_the_accepted_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[datasets.jp]\nprimary = \"file://{0}/p\"\ncomplement = \"file://{0}/c\"\n{RULES}\
         [datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"http://127.0.0.1:9\"\n\
         visibility = [\"public\", \"unlisted\"]\n",
        dir.path().display()
    );
    let ws = Workspace::new(&config);
    let out = ws
        .slotfill(&["fill", "-d", "jp", "--start", "-1h", "--end", "-1h"])
        .code(2);
    let stderr = out.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("slotfill: error: "), "{stderr}");
    for name in ["unlisted", "public", "home", "followers", "specified"] {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    assert!(!ws.catalog_path().exists(), "no catalog was created");
}

#[test]
fn the_archive_source_obeys_the_policy_too() {
    let dir = tempfile::tempdir().unwrap();
    let slot = AUG1_JST;
    let note = |i: i64, visibility: Option<&str>| {
        let at = chrono::DateTime::from_timestamp_millis(slot * 1000 + i * 1000).unwrap();
        let mut n = json!({"id": format!("9gz{i:05}"), "user": {"host": null},
            "createdAt": at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), "text": "x"});
        if let Some(v) = visibility {
            n["visibility"] = v.into();
        }
        n
    };
    let notes = [
        note(1, Some("public")),
        note(2, Some("home")),
        note(3, Some("followers")),
        note(4, Some("specified")),
        note(5, None),
        note(6, Some("limited")),
    ];
    let dump: String = notes.iter().map(|n| format!("{n}\n")).collect();
    std::fs::create_dir_all(dir.path().join("dump")).unwrap();
    std::fs::write(dir.path().join("dump/all.jsonl"), dump).unwrap();
    let config = format!(
        "[datasets.jp]\nprimary = \"file://{0}/p\"\ncomplement = \"file://{0}/c\"\n{RULES}\
         [datasets.jp.source]\nkind = \"archive\"\nlocation = \"file://{0}/dump\"\n",
        dir.path().display()
    );
    let ws = Workspace::new(&config);
    let window = ["--start", "2025-08-01T00:00", "--end", "2025-08-01T00:00"];
    ws.slotfill(&[&["scan", "-d", "jp"][..], &window].concat())
        .ok();
    let out = ws
        .slotfill(&[&["fill", "-d", "jp"][..], &window].concat())
        .ok();
    let written = std::fs::read_to_string(dir.path().join("c").join(key_of(slot))).unwrap();
    let written: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(written, notes[..2]);
    // Followers, specified, missing and unknown: left out, never guessed.
    assert_eq!(ws.query_i64("SELECT left_out FROM fill_attempts"), 4);
    assert!(
        out.stdout
            .contains("4 notes left out by the visibility policy"),
        "{}",
        out.stdout
    );
}
