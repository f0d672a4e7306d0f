//! The end-to-end benchmark. Run it through `bench/run.sh`, which builds the release binary and
//! this program, installs SeaweedFS and keeps the generated data in a temporary directory:
//!
//! ```text
//! bench/run.sh --profile smoke|full [--only scan,sample,fill,year] [--json FILE] [--perf DIR]
//! bench/run.sh --profile soak [--days N] [--speed X] [--seed N]   # a month of serve (bench/soak.rs)
//! bench/run.sh --profile events [--events N] [--senders N]        # a storm of S3 events (bench/events.rs)
//! bench/run.sh --profile dashboard [--requests N]                 # serve's pages: time and size
//! ```
//!
//! Direct use: `bench --slotfill target/release/slotfill --profile smoke`. Exits 1 when a check
//! of the request counts fails (see `bench/harness.rs`).

#[path = "../tests/support/http/mod.rs"]
mod http;
#[path = "../tests/support/misskey/mod.rs"]
mod misskey;
#[path = "../tests/support/s3/mod.rs"]
mod s3;

#[path = "../bench/harness.rs"]
mod harness;

#[path = "../bench/serve_proc.rs"]
mod serve_proc;

#[path = "../bench/soak.rs"]
mod soak;

#[path = "../bench/events.rs"]
mod events;

#[path = "../bench/dashboard.rs"]
mod dashboard;

use std::io::Write as _;
use std::path::PathBuf;

const USAGE: &str = "usage: bench --slotfill PATH [--profile smoke|full] [--only PARTS] \
    [--json FILE] [--perf DIR] [--scale N] [--days N] [--serve DIR]\n\
    PARTS: comma-separated of scan, sample, fill, year (the limit profile: limit, calls)\n\
    --serve DIR: generate the scan dataset, write DIR/slotfill.toml, wait until DIR/stop exists\n\
    or: bench --slotfill PATH --profile soak [--days N] [--speed X] [--seed N]\n\
    or: bench --slotfill PATH --profile events [--events N] [--senders N]\n\
    or: bench --slotfill PATH --profile dashboard [--requests N]";

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--launch") && argv.len() > 3 {
        // Re-executed as the launcher of one slotfill run (see harness::launch).
        std::process::exit(harness::launch(std::path::Path::new(&argv[2]), &argv[3..]));
    }
    if let Some(i) = argv.iter().position(|a| a == "--profile")
        && matches!(
            argv.get(i + 1).map(String::as_str),
            Some("soak" | "events" | "dashboard")
        )
    {
        serve_profile(&argv[1..]);
        return;
    }
    let mut args = std::env::args().skip(1);
    let (mut profile, mut slotfill, mut only) = (harness::Profile::smoke(), None, Vec::new());
    let (mut json, mut perf, mut serve) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{arg} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--profile" => {
                let name = value();
                profile = harness::Profile::by_name(&name).unwrap_or_else(|| {
                    eprintln!("unknown profile {name}\n{USAGE}");
                    std::process::exit(2)
                });
            }
            "--slotfill" => slotfill = Some(PathBuf::from(value())),
            "--only" => only = value().split(',').map(str::to_string).collect(),
            "--json" => json = Some(PathBuf::from(value())),
            "--perf" => perf = Some(std::path::absolute(value()).expect("--perf DIR")),
            "--serve" => serve = Some(std::path::absolute(value()).expect("--serve DIR")),
            "--scale" => profile.scale = value().parse().expect("--scale N"),
            "--days" => profile.days = value().parse().expect("--days N"),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => {
                eprintln!("unknown argument {arg}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    let Some(slotfill) = slotfill else {
        eprintln!("--slotfill is required\n{USAGE}");
        std::process::exit(2)
    };
    // The runs happen in their own directories: make the path absolute.
    let slotfill = std::fs::canonicalize(&slotfill).unwrap_or_else(|e| {
        eprintln!("--slotfill {}: {e}", slotfill.display());
        std::process::exit(2)
    });
    let options = harness::Options {
        slotfill,
        only,
        verbose: true,
        perf_dir: perf,
        launcher: Some(std::env::current_exe().expect("the bench program's path")),
        wait_for_quiet: true,
        client_cpu: None,
    };
    if let Some(dir) = serve {
        std::fs::create_dir_all(&dir).expect("create --serve DIR");
        harness::serve(&profile, &dir);
        return;
    }
    let report = harness::run(&profile, &options);
    if let Some(path) = json {
        let mut file = std::fs::File::create(&path).expect("create --json file");
        for note in &report.notes {
            let line = serde_json::json!({ "note": note });
            writeln!(file, "{line}").expect("write --json file");
        }
        for m in &report.measures {
            writeln!(file, "{}", m.to_json()).expect("write --json file");
        }
        eprintln!("measurements written to {}", path.display());
    }
    if report.failures.is_empty() {
        eprintln!("all {} checks passed", profile.name);
    } else {
        eprintln!("{} check(s) failed:", report.failures.len());
        for f in &report.failures {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
}

/// `--profile soak`, `events` and `dashboard`: `slotfill serve` under load.
/// Their last line is one JSON object (for soak and events a contract:
/// scripts read it).
fn serve_profile(args: &[String]) {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |name: &str, default: f64| -> f64 {
        value(name).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("{name} needs a number, got {v}");
                std::process::exit(2)
            })
        })
    };
    let Some(slotfill) = value("--slotfill") else {
        eprintln!("--slotfill is required\n{USAGE}");
        std::process::exit(2)
    };
    let slotfill = std::fs::canonicalize(&slotfill).unwrap_or_else(|e| {
        eprintln!("--slotfill {slotfill}: {e}");
        std::process::exit(2)
    });
    let result = match value("--profile").as_deref() {
        Some("soak") => soak::run(&soak::SoakOptions {
            slotfill,
            days: number("--days", 30.0),
            speed: number("--speed", 5000.0),
            seed: number("--seed", 21.0) as u64,
        }),
        Some("dashboard") => dashboard::run(&dashboard::DashboardOptions {
            slotfill,
            requests: number("--requests", 20.0) as usize,
        }),
        _ => events::run(&events::EventsOptions {
            slotfill,
            events: number("--events", 10_000.0) as usize,
            senders: number("--senders", 32.0) as usize,
        }),
    };
    // Everything else went to stderr before: this is the last line.
    use std::io::Write as _;
    let _ = std::io::stderr().flush();
    println!("{result}");
}
