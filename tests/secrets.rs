//! Secrets (the origin token, the AWS secret key, a webhook URL) never reach
//! stdout, stderr or the catalog: not at any verbosity, not in JSON logs, not
//! when the origin or S3 fails, not when the token is rejected.

use std::collections::BTreeSet;

use crate::support::catalog_dump::dump;
use crate::support::misskey::{EmulatorConfig, Fault, MisskeyEmulator, mixed_notes};
use crate::support::s3::{S3Server, SECRET_KEY};
use crate::support::*;

/// The token the emulator accepts.
const TOKEN: &str = "tok-SECRET-5f3a9c1e7b2d";
/// A token the emulator rejects.
const WRONG_TOKEN: &str = "tok-WRONG-secret-88e1a0c4";
/// A wrong AWS secret key: signing with it fails at the server.
const WRONG_AWS_SECRET: &str = "aws-WRONG-secret-Zq81xVw3";
/// The secret part of a webhook URL (its path and query embed a token).
const WEBHOOK_SECRET: &str = "hook-SECRET-d9c0e41b";

/// How an error body that quoted the token reads once masked (see
/// `EmulatorConfig::echo_token_in_errors`).
const ECHO_MASKED: &str = "(query parameters: [\"***\"])";

/// Texts that must never appear anywhere.
const LONG_SECRETS: [&str; 4] = [TOKEN, WRONG_TOKEN, WRONG_AWS_SECRET, WEBHOOK_SECRET];

/// The words of a text: maximal runs of ASCII letters and digits.
fn words(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Panics if `text` shows a secret: one of the long secrets anywhere, the
/// test server's real (two-letter) secret key as a word, a request signature
/// or an Authorization header value.
#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in LONG_SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
    assert!(
        !words(text).contains(SECRET_KEY),
        "{what} shows the AWS secret key {SECRET_KEY:?}:\n{text}"
    );
    assert!(
        !text.contains("Bearer "),
        "{what} shows a bearer token:\n{text}"
    );
    let signatures = signature_values(text);
    assert!(
        signatures.is_empty(),
        "{what} shows request signatures {signatures:?}:\n{text}"
    );
}

/// Hex values following a `signature` (any case): `Signature=…` of an
/// Authorization header, `chunk-signature=…` and `x-amz-trailer-signature:…`
/// of a streamed upload. Colour codes and quotes between name and value are skipped.
fn signature_values(text: &str) -> Vec<String> {
    let plain = strip_ansi(text);
    let lower = plain.to_ascii_lowercase();
    let mut found = Vec::new();
    for (at, _) in lower.match_indices("signature") {
        let rest = plain[at + "signature".len()..].trim_start_matches(['=', ':', ' ', '"', '\\']);
        let value: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        if value.len() >= 16 {
            found.push(value);
        }
    }
    found
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

struct Fixture {
    ws: Workspace,
    emulator: MisskeyEmulator,
    bucket: String,
    first: i64,
    last: i64,
    /// Every command run so far, for the final report.
    runs: usize,
}

/// Six slots: the first three in the primary, the last three missing, with
/// notes at an origin that demands `TOKEN`.
fn fixture() -> Fixture {
    let server = S3Server::shared();
    let bucket = server.new_bucket("secrets");
    let first = AUG1_JST;
    let last = first + 5 * SLOT;
    // Every error body the origin sends repeats the caller's token.
    let emulator = MisskeyEmulator::start(EmulatorConfig {
        required_token: Some(TOKEN.into()),
        echo_token_in_errors: true,
        ..Default::default()
    });
    for i in 0..6 {
        let slot = first + i * SLOT;
        if i < 3 {
            server.put(
                &bucket,
                &format!("misskey/{}", key_of(slot)),
                &jsonl(10, 100),
            );
        }
        emulator.add_notes(mixed_notes(
            slot * 1000,
            (slot + SLOT) * 1000,
            30 + i as usize,
            i as u64,
        ));
    }
    let source = format!(
        "[datasets.jp.source]\nkind = \"misskey\"\nbase_url = \"{}\"\nmode = \"search\"\n",
        emulator.base_url()
    );
    let config = s3_config(
        &format!("s3://{bucket}/misskey"),
        &[],
        Some(&format!("s3://{bucket}/misskey_complement")),
        &source,
    );
    let mut ws = Workspace::new(&config);
    ws.set_env("MISSKEY_TOKEN", TOKEN);
    Fixture {
        ws,
        emulator,
        bucket,
        first,
        last,
        runs: 0,
    }
}

impl Fixture {
    /// Runs `args` (the window is added after `--dataset jp` for windowed
    /// commands), checks the exit code and that nothing secret was printed.
    #[track_caller]
    fn run(&mut self, args: &[&str], code: i32) -> Run {
        let window = [
            "--dataset".to_string(),
            "jp".to_string(),
            "--start".to_string(),
            arg_time(self.first),
            "--end".to_string(),
            arg_time(self.last),
        ];
        let mut full: Vec<&str> = Vec::new();
        for arg in args {
            full.push(arg);
            if ["scan", "fill", "verify", "run"].contains(arg) {
                full.extend(window.iter().map(String::as_str));
            }
        }
        let out = self.ws.slotfill(&full).code(code);
        self.runs += 1;
        let what = format!("`slotfill {}`", full.join(" "));
        assert_no_secret(&format!("stdout of {what}"), &out.stdout);
        assert_no_secret(&format!("stderr of {what}"), &out.stderr);
        out
    }

    fn set_aws_secret(&mut self, secret: Option<&str>) {
        self.ws.env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
        if let Some(secret) = secret {
            self.ws.set_env("AWS_SECRET_ACCESS_KEY", secret);
        }
    }

    fn set_token_env(&mut self, token: &str) {
        self.ws.env.retain(|(k, _)| k != "MISSKEY_TOKEN");
        self.ws.set_env("MISSKEY_TOKEN", token);
    }

    fn ok_slots(&self) -> i64 {
        self.ws
            .query_i64("SELECT COUNT(*) FROM slots WHERE state = 'ok'")
    }

    /// The catalog file, its WAL and shared-memory files: no secret in any byte,
    /// and no secret in any cell of any table.
    #[track_caller]
    fn assert_catalog_clean(&self) {
        let db = self.ws.catalog_path();
        let mut files = 0;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = format!("{}{suffix}", db.display());
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            files += 1;
            for secret in LONG_SECRETS {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{path} holds {secret}"
                );
            }
        }
        assert!(files >= 1, "no catalog file");
        for (table, rows) in dump(&db) {
            for row in rows {
                assert_no_secret(&format!("catalog table {table}"), &row);
            }
        }
    }

    /// Every object in the bucket (collector's and filled) and its metadata: no secret.
    #[track_caller]
    fn assert_bucket_clean(&self) {
        let server = S3Server::shared();
        let keys = server.list_keys(&self.bucket, "");
        let filled = keys.iter().filter(|k| k.starts_with("misskey_complement/"));
        assert!(filled.count() >= 3, "{keys:?}");
        for key in &keys {
            let body = server.get(&self.bucket, key).unwrap();
            for secret in LONG_SECRETS {
                let found = body.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "object {key} holds {secret}");
            }
            let metadata = server.head_metadata(&self.bucket, key).unwrap();
            assert_no_secret(&format!("metadata of {key}"), &format!("{metadata:?}"));
        }
    }
}

#[test]
fn no_command_shows_a_secret_at_any_verbosity_or_failure() {
    let mut f = fixture();

    // Catalog-only commands and scans, text and JSON logs.
    f.run(&["-vv", "scan"], 0);
    f.run(&["--log-format", "json", "-vvv", "scan"], 0);
    f.run(&["-vv", "gaps", "--dataset", "jp"], 0);
    f.run(&["-vv", "--log-format", "json", "status"], 0);
    f.run(&["-vv", "sql", "SELECT * FROM runs"], 0);

    // S3 refuses a wrong secret key: every command that touches S3 fails
    // with a configuration error and never shows the key.
    f.set_aws_secret(Some(WRONG_AWS_SECRET));
    let denied = f.run(&["-vvv", "scan"], 2);
    assert!(denied.stderr.contains("access denied"), "{}", denied.stderr);
    f.run(&["--log-format", "json", "-vvv", "verify"], 2);
    f.run(&["-vv", "run", "--token", TOKEN], 2);
    // fill reaches the origin (the token is right), is refused by S3, and stops.
    let fill = f.run(&["-vvv", "fill", "--token", TOKEN], 2);
    assert!(fill.stderr.contains("access denied"), "{}", fill.stderr);
    assert_eq!(f.ok_slots(), 3, "nothing was written with a wrong key");
    f.set_aws_secret(None);

    // The origin fails transiently, then for good.
    f.emulator.fail_next([
        Fault::Html(502),
        Fault::TruncatedJson,
        Fault::Internal500,
        Fault::ResetConnection,
    ]);
    f.run(
        &[
            "-vvv",
            "fill",
            "--token",
            TOKEN,
            "--max-slots",
            "1",
            "--retry-wait",
            "0.01",
        ],
        0,
    );
    assert_eq!(f.ok_slots(), 4, "one slot filled through the faults");
    f.emulator.fail_every(1, Fault::Internal500);
    let failing = f.run(
        &[
            "--log-format",
            "json",
            "-vvv",
            "fill",
            "--retry",
            "1",
            "--retry-wait",
            "0.01",
            "--max-failures",
            "1",
        ],
        1,
    );
    // The origin's error body quoted the token: the message shows where it was, masked.
    assert!(
        failing.stderr.contains(ECHO_MASKED),
        "the echoed token reached the error, masked:\n{}",
        failing.stderr
    );
    f.emulator.fail_every(0, Fault::Internal500);

    // The origin rejects the token, given either way.
    let rejected = f.run(&["-vvv", "fill", "--token", WRONG_TOKEN], 2);
    assert!(
        rejected.stderr.contains("rejected the API token"),
        "{}",
        rejected.stderr
    );
    f.set_token_env(WRONG_TOKEN);
    f.run(&["--log-format", "json", "-vv", "fill"], 2);
    f.run(&["-vv", "run"], 2);
    // Dependencies' own trace logs (RUST_LOG) do not show it either.
    f.ws.set_env("RUST_LOG", "trace");
    f.run(&["fill"], 2);
    // A fill that uploads: the SDK's trace of the signed upload stream is
    // there, its chunk signatures masked.
    f.set_token_env(TOKEN);
    let traced = f.run(&["fill", "--max-slots", "1"], 0);
    assert!(
        traced.stderr.contains("chunk-signature=***"),
        "the upload was traced and masked:\n{}",
        traced.stderr
    );
    f.ws.env.retain(|(k, _)| k != "RUST_LOG");
    assert_eq!(f.ok_slots(), 5);

    // Success: the nightly job with the token on the command line and a
    // webhook whose URL embeds a token (nothing listens there).
    let webhook = format!("http://127.0.0.1:9/{WEBHOOK_SECRET}?token={WEBHOOK_SECRET}");
    let run = f.run(
        &[
            "--log-format",
            "json",
            "-vvv",
            "run",
            "--token",
            TOKEN,
            "--notify-webhook",
            &webhook,
        ],
        0,
    );
    assert!(run.stdout.contains("0 still not ok"), "{}", run.stdout);
    f.run(
        &["-vv", "verify", &format!("--notify-webhook={webhook}")],
        0,
    );
    let emulator_saw_token = f
        .emulator
        .seen_authorization_headers()
        .iter()
        .any(|h| h == &format!("Bearer {TOKEN}"));
    assert!(emulator_saw_token, "the token was actually used");

    // Every report and the raw tables (the recorded command lines included).
    for report in [
        "coverage-by-day",
        "gaps",
        "fill-attempts",
        "runs",
        "thin-coverage",
        "states",
    ] {
        f.run(&["-vv", "report", report, "--format", "json"], 0);
    }
    let args = f.run(&["sql", "SELECT args FROM runs", "--format", "csv"], 0);
    assert!(
        args.stdout.contains("--token ***"),
        "token flags are recorded, redacted:\n{}",
        args.stdout
    );
    assert!(
        args.stdout.contains("--notify-webhook=***"),
        "{}",
        args.stdout
    );
    let failures = f.run(
        &["sql", "SELECT error FROM runs WHERE error IS NOT NULL"],
        0,
    );
    assert!(
        failures.stdout.contains("rejected the API token")
            && failures.stdout.contains("access denied")
            && failures.stdout.contains(ECHO_MASKED),
        "failures are recorded with their messages:\n{}",
        failures.stdout
    );
    f.assert_catalog_clean();
    f.assert_bucket_clean();
    assert!(f.runs >= 25, "{} runs", f.runs);
}
