//! `slotfill demo`: a small dataset with every kind of gap, on local
//! directories, and the whole cycle run on it — scan, gaps, fill in two
//! `--max-slots` chunks, verify, a report and the heatmap — printing each
//! command so it can be repeated by hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use crate::store::ObjectStore;

use crate::commands::{
    self, FillCommand, FillSettings, GapsOptions, Global, ReportCommand, ScanCommand, Selection,
    VerifyCommand,
};
use crate::error::{Error, Result};
use crate::report::Format;
use crate::source::ids::IdScheme;
use crate::text::plural;

const DATASET: &str = "demo";
const START: &str = "2025-08-01T00:00";
const END: &str = "2025-08-02T23:50";
/// 2025-08-01T00:00:00+09:00
const FIRST_SLOT: i64 = 1_753_974_000;
const SLOT_SECS: i64 = 600;
const SLOTS: i64 = 288;
const MARKER: &str = ".slotfill-demo";

/// What the collector left in each slot of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    None,
    /// Absent from the primary and the backup.
    Missing,
    /// Absent from the primary, present in the backup.
    BackupOnly,
    TooSmall,
    TooFewLines,
    TooManyLines,
    Unreadable,
}

fn damage(i: i64) -> Damage {
    match i {
        30..=35 | 142..=146 => Damage::Missing,
        60..=63 => Damage::BackupOnly,
        100 => Damage::TooSmall,
        120 => Damage::TooFewLines,
        180 => Damage::TooManyLines,
        220 => Damage::Unreadable,
        _ => Damage::None,
    }
}

/// A small deterministic generator (no need for cryptographic randomness here).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

const TEXTS: [&str; 6] = [
    "今日はいい天気ですね",
    "新しいノートを書きました",
    "good morning, fediverse",
    "コーヒーを飲みながら作業中",
    "release notes are out",
    "夜ご飯はカレーにしよう",
];

/// The notes of one slot, as Misskey would send them (createdAt order).
fn slot_notes(i: i64, rng: &mut Lcg) -> Vec<String> {
    let count = 120 + (rng.next() % 200) as i64;
    let start_ms = (FIRST_SLOT + i * SLOT_SECS) * 1000;
    let mut times: Vec<i64> = (0..count)
        .map(|_| start_ms + (rng.next() % (SLOT_SECS as u64 * 1000)) as i64)
        .collect();
    times.sort_unstable();
    times
        .iter()
        .enumerate()
        .map(|(n, ms)| {
            let id = format!("{}demo{:04}", IdScheme::Aidx.time_part(*ms), (i * 400 + n as i64) % 1_679_616);
            let created = chrono::DateTime::from_timestamp_millis(*ms)
                .expect("demo time")
                .format("%Y-%m-%dT%H:%M:%S%.3fZ");
            let user = rng.next() % 50;
            let text = TEXTS[(rng.next() % TEXTS.len() as u64) as usize];
            format!(
                r#"{{"id":"{id}","createdAt":"{created}","userId":"demouser{user:02}","user":{{"id":"demouser{user:02}","username":"user{user}","host":null,"name":"User {user}"}},"text":"{text} #{n}","cw":null,"visibility":"public","localOnly":false,"renoteCount":0,"repliesCount":0,"reactions":{{}},"fileIds":[],"files":[],"replyId":null,"renoteId":null}}"#
            )
        })
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("key has a directory"))?;
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(path, body)
}

fn key(i: i64) -> String {
    let local = chrono::DateTime::from_timestamp(FIRST_SLOT + i * SLOT_SECS + 9 * 3600, 0)
        .expect("demo time")
        .naive_utc();
    local.format("%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl").to_string()
}

/// Writes the demo dataset as local directories.
fn generate(dir: &Path) -> std::io::Result<()> {
    let mut rng = Lcg(20250801);
    // The archive is a dump in hourly files, as a collector of full dumps would write it.
    let mut archive: Vec<Vec<String>> = vec![Vec::new(); (SLOTS / 6) as usize];
    for i in 0..SLOTS {
        let notes = slot_notes(i, &mut rng);
        archive[(i / 6) as usize].extend(notes.iter().cloned());
        let primary = dir.join("primary").join(key(i));
        match damage(i) {
            Damage::None => write_lines(&primary, &notes)?,
            Damage::Missing => {}
            Damage::BackupOnly => write_lines(&dir.join("backup").join(key(i)), &notes)?,
            Damage::TooSmall => write_lines(&primary, &notes[..20])?,
            Damage::TooFewLines => {
                let padded: Vec<String> = notes[..40]
                    .iter()
                    .map(|n| n.replace("\"cw\":null", &format!("\"cw\":\"{}\"", "x".repeat(900))))
                    .collect();
                write_lines(&primary, &padded)?
            }
            Damage::TooManyLines => {
                let repeated: Vec<String> = notes.iter().cycle().take(2100).cloned().collect();
                write_lines(&primary, &repeated)?
            }
            Damage::Unreadable => {
                write_lines(&primary, &notes)?;
                let mut bytes = std::fs::read(&primary)?;
                bytes[100] = 0xff;
                std::fs::write(&primary, bytes)?;
            }
        }
    }
    for (hour, notes) in archive.iter().enumerate() {
        let name = format!("notes-{:03}.jsonl", hour);
        write_lines(&dir.join("archive").join(name), notes)?;
    }
    std::fs::write(
        dir.join(MARKER),
        "generated by slotfill demo; safe to delete\n",
    )?;
    Ok(())
}

/// Where the demo's locations are: local directories, or buckets on an S3 endpoint.
struct Locations {
    s3_endpoint: Option<String>,
    primary: String,
    backup: String,
    complement: String,
    archive: String,
}

impl Locations {
    fn local(dir: &Path) -> Locations {
        let d = dir.display();
        Locations {
            s3_endpoint: None,
            primary: format!("file://{d}/primary"),
            backup: format!("file://{d}/backup"),
            complement: format!("file://{d}/complement"),
            archive: format!("file://{d}/archive"),
        }
    }

    /// Fresh prefixes per demo run, so an earlier run's objects never count.
    fn s3(endpoint: &str) -> Locations {
        let run = crate::clock::now().format("%Y%m%d-%H%M%S");
        Locations {
            s3_endpoint: Some(endpoint.to_string()),
            primary: format!("s3://slotfill-demo/{run}/misskey"),
            backup: format!("s3://slotfill-demo-backup/{run}/misskey"),
            complement: format!("s3://slotfill-demo/{run}/misskey_complement"),
            archive: format!("s3://slotfill-demo/{run}/archive"),
        }
    }
}

fn write_config(dir: &Path, at: &Locations) -> std::io::Result<PathBuf> {
    let s3 = match &at.s3_endpoint {
        Some(endpoint) => {
            format!("\n[s3]\nendpoint_url = \"{endpoint}\"\nforce_path_style = true\n")
        }
        None => String::new(),
    };
    let mut config = String::new();
    let _ = write!(
        config,
        r#"# slotfill demo: locations laid out like the reference bucket.
catalog = "slotfill.db"
{s3}
[datasets.demo]
slot_minutes = 10
utc_offset = "+09:00"
key_template = "%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl"
primary = "{}"
backup = ["{}"]
complement = "{}"

[datasets.demo.rules]
min_bytes = 20000
min_lines = 50
max_lines = 2000

# The origin for the demo: a dump of every note, assigned to slots by createdAt.
[datasets.demo.source]
kind = "archive"
location = "{}"
"#,
        at.primary, at.backup, at.complement, at.archive
    );
    let path = dir.join("slotfill.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Copies a generated directory to an S3 location (creating the bucket if needed).
async fn upload(from: &Path, to: &str, settings: &crate::config::S3Settings) -> Result<u64> {
    let rest = to.strip_prefix("s3://").expect("an s3 location");
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let store = crate::store::S3Store::connect(to, bucket, prefix, settings).await?;
    store.ensure_bucket().await?;
    let mut files = Vec::new();
    collect_files(from, from, &mut files).map_err(|e| Error::Runtime(format!("demo: {e}")))?;
    let request = crate::store::PutRequest {
        content_type: "application/x-ndjson".into(),
        metadata: Vec::new(),
        condition: crate::store::WriteCondition::Always,
    };
    futures::stream::iter(files.iter())
        .map(|(key, path)| store.put_file(key, path, &request))
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(files.len() as u64)
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(key) = path.strip_prefix(root) {
            out.push((key.to_string_lossy().into_owned(), path.clone()));
        }
    }
    Ok(())
}

/// Prepares the directory: refuses one that is not empty and not an earlier demo.
fn prepare(dir: &Path) -> Result<PathBuf> {
    let fail = |e: std::io::Error| Error::Usage(format!("demo directory {}: {e}", dir.display()));
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(fail)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(Error::Usage(format!(
                "{} exists and is not a slotfill demo; pass --dir with a new or empty directory",
                dir.display()
            )));
        }
        std::fs::remove_dir_all(dir).map_err(fail)?;
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    dir.canonicalize().map_err(fail)
}

fn banner(config: &Path, args: &str) -> Global {
    let line = format!("slotfill --config {} {args}", config.display());
    println!("\n$ {line}");
    Global {
        config: config.to_path_buf(),
        args: line,
        catalog: None,
    }
}

/// Runs the demo in `dir`, on local directories or, with `s3_endpoint`, on buckets there.
pub async fn run(dir: &Path, s3_endpoint: Option<&str>) -> Result<commands::Outcome> {
    let dir = prepare(dir)?;
    let write_error =
        |e: std::io::Error| Error::Runtime(format!("cannot write the demo dataset: {e}"));
    generate(&dir).map_err(write_error)?;
    let locations = match s3_endpoint {
        None => Locations::local(&dir),
        Some(endpoint) => {
            let at = Locations::s3(endpoint);
            let settings = crate::config::S3Settings {
                endpoint_url: Some(endpoint.to_string()),
                region: None,
                force_path_style: true,
            };
            let mut uploaded = 0;
            for (from, to) in [
                ("primary", &at.primary),
                ("backup", &at.backup),
                ("archive", &at.archive),
            ] {
                uploaded += upload(&dir.join(from), to, &settings).await?;
            }
            println!("uploaded {} to {endpoint}", plural(uploaded, "object"));
            at
        }
    };
    let config = write_config(&dir, &locations).map_err(write_error)?;
    println!(
        "slotfill demo: 2 days of 10-minute slots in {}, with missing, too small, too few lines,\n\
         too many lines and unreadable slots; an archive of every note stands in for the origin.",
        dir.display()
    );
    let window = format!("--dataset {DATASET} --start {START} --end {END}");
    let selection = Selection {
        dataset: DATASET.to_string(),
        start: Some(START.to_string()),
        end: Some(END.to_string()),
        overrides: Default::default(),
    };
    let scan = ScanCommand {
        selection: selection.clone(),
        concurrency: crate::defaults::SCAN_CONCURRENCY,
        progress: false,
    };
    let global = banner(&config, &format!("scan {window}"));
    commands::scan(&global, &scan).await?;
    println!("\n# Scanning again: nothing changed, so nothing is downloaded.");
    let global = banner(&config, &format!("scan {window}"));
    commands::scan(&global, &scan).await?;

    let global = banner(&config, &format!("gaps --dataset {DATASET}"));
    commands::gaps(
        &global,
        &GapsOptions {
            selection: Selection {
                start: None,
                end: None,
                ..selection.clone()
            },
            format: Format::Table,
        },
    )?;

    for chunk in [Some(8), None] {
        let limit = chunk
            .map(|n| format!(" --max-slots {n}"))
            .unwrap_or_default();
        let global = banner(&config, &format!("fill {window}{limit}"));
        let settings = FillSettings {
            max_slots: chunk,
            ..Default::default()
        };
        commands::fill(
            &global,
            &FillCommand {
                selection: selection.clone(),
                settings,
                origin: Default::default(),
            },
        )
        .await?;
    }

    let global = banner(&config, &format!("verify {window}"));
    let verified = commands::verify(
        &global,
        &VerifyCommand {
            selection: selection.clone(),
            concurrency: crate::defaults::SCAN_CONCURRENCY,
            progress: false,
            notify_webhook: None,
        },
    )
    .await?;

    let global = banner(
        &config,
        &format!("report coverage-by-day --dataset {DATASET}"),
    );
    let report = ReportCommand {
        name: Some("coverage-by-day".into()),
        dataset: Some(DATASET.into()),
        ..Default::default()
    };
    commands::report(&global, &report)?;

    let svg = dir.join("coverage.svg");
    let global = banner(
        &config,
        &format!("report heatmap {window} --out {}", svg.display()),
    );
    let heatmap = ReportCommand {
        name: Some("heatmap".into()),
        dataset: Some(DATASET.into()),
        start: Some(START.into()),
        end: Some(END.into()),
        out: Some(svg),
        ..Default::default()
    };
    commands::report(&global, &heatmap)?;

    println!(
        "\nDone{}. Everything is in {}: the config, the catalog (slotfill.db; try `sqlite3 {}/slotfill.db .tables`)\n\
         and the complement objects slotfill wrote.",
        if verified.exit_code == 0 {
            ": no gaps remain"
        } else {
            ", but gaps remain"
        },
        dir.display(),
        dir.display()
    );
    Ok(verified)
}
