//! The `limit` profile (`bench/run.sh --profile limit`): slotfill against the limit, side by
//! side in one run, in a few minutes.
//!
//! - **The raw client.** curl (`-Z --parallel-max C --aws-sigv4`) downloads, to /dev/null, the
//!   very objects a default cold scan reads (objects over the line cap only up to the bytes the
//!   scan reads of them), straight from SeaweedFS. Rounds alternate curl and a cold scan at the
//!   same concurrency, also straight to SeaweedFS (the counting proxy would load the same 2
//!   cores); the figures are the ratio of the medians of wall time and the CPU per GB. The rounds
//!   run twice: on shared cores, then with SeaweedFS on CPU 0 and the clients on CPU 1.
//! - **Default and `--all-locations`**, through the counting proxy: GETs and bytes of each, and
//!   peak RSS at `--concurrency` 8, 32 and 64 with every copy read.
//! - **Local directories**: the same objects as files (in the page cache), scanned cold.
//! - **Calls per slot** of a fill: `bench/calls.rs` (the part `calls` of this profile).
//!
//! The dataset is real-sized: days of a primary and a backup drawn from the real distribution
//! (median 2 MB, a few over the line cap, up to 57 MB).

use std::path::Path;
use std::process::{Command, Stdio};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::s3::{self, S3Server};
use super::{
    ChildRun, MAX_LINES, Measure, Obj, Options, PinTo, Profile, Report, Rules, Workspace, body,
    config, date, exit_code, machine_cpu, realistic_location, record, run_slotfill, scan_plan,
    upload, window_args,
};

/// Rounds of curl and slotfill, alternating.
const ROUNDS: usize = 3;
/// Requests in flight for both clients.
const PARALLEL: usize = 16;

pub fn limit_part(profile: &Profile, opts: &Options, report: &mut Report) {
    // Waiting up to 2 minutes per measurement for an idle machine would take too long on a
    // shared one: each measurement waits at most 15 s, and records the other CPU it saw.
    let opts = &Options {
        wait_for_quiet: false,
        ..opts.clone()
    };
    let server = S3Server::shared();
    let rules = Rules::scaled(1);
    let mut rng = StdRng::seed_from_u64(20250601);
    let first = date(2025, 6, 1);
    let (primary, backup) = (
        server.new_bucket("limit-primary"),
        server.new_bucket("limit-backup"),
    );
    let p = realistic_location(&mut rng, first, profile.days, 1, rules);
    let b = realistic_location(&mut rng, first, profile.days, 1, rules);
    let (t1, bytes1) = upload(server, &primary, &p, profile.upload_threads);
    let (t2, bytes2) = upload(server, &backup, &b, profile.upload_threads);
    let (plan, statuses) = scan_plan(&p, &b, rules);
    let buckets = [primary.as_str(), backup.as_str()];
    // What a scan reads of each object: up to the line cap (every line is `width` bytes).
    let plan_bytes: u64 = plan
        .iter()
        .map(|(_, o)| (o.lines as u64).min(MAX_LINES) * o.width as u64)
        .sum();
    let largest = p.iter().chain(&b).map(Obj::size).max().unwrap_or(0);
    report.note(
        opts.verbose,
        format!(
            "limit dataset: {} days x 144 slots x 2 locations, {} objects, {:.0} MB (largest \
             {:.1} MB), uploaded in {:.0} s; a default cold scan reads {} objects, {:.0} MB; \
             expected statuses {statuses:?}",
            profile.days,
            p.len() + b.len(),
            (bytes1 + bytes2) as f64 / 1e6,
            largest as f64 / 1e6,
            t1 + t2,
            plan.len(),
            plan_bytes as f64 / 1e6,
        ),
    );
    let window = window_args(first, profile.days);
    let scan_args = |c: usize, extra: &[&str]| {
        let mut a = vec!["scan".to_string(), "--dataset".into(), "jp".into()];
        a.extend(window.iter().cloned());
        a.extend(["--concurrency".to_string(), c.to_string()]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let proxied = config(&primary, Some(&backup), None, &rules.toml());
    let direct = proxied.replace(&server.endpoint(), &server.direct_endpoint());

    // 1. The raw client and the cold scan, alternating, straight to SeaweedFS: first on the
    //    cores they share, then with the server on CPU 0 and the clients on CPU 1, as when the
    //    server is another machine and only the network copy is on the client's cores.
    let list = curl_config(&server.direct_endpoint(), &buckets, &plan);
    let side_by_side = SideBySide {
        list: &list,
        plan_objects: plan.len() as u64,
        plan_bytes,
        config: &direct,
        scan_args: scan_args(PARALLEL, &[]),
    };
    side_by_side.run(opts, report, None);
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        pin_threads(server.weed_pid(), Some(SERVER_CPU));
        side_by_side.run(opts, report, Some(CLIENT_CPU));
        pin_threads(server.weed_pid(), None);
    }

    // 2. Default and --all-locations through the counting proxy; peak RSS at 8, 32, 64.
    let ws = Workspace::new(&proxied);
    settle();
    let out = run_slotfill(
        opts,
        &ws,
        &buckets,
        "cold scan c=8 default",
        &scan_args(8, &[]),
        None,
    );
    record(report, opts, &out, 0);
    report.check(
        out.measure.counts.get == plan.len() as u64,
        format!(
            "default cold scan: {} GETs = the {} objects that can decide their slot",
            out.measure.counts.get,
            plan.len()
        ),
    );
    report.check(
        ws.statuses() == statuses,
        format!("default cold scan: statuses {:?}", ws.statuses()),
    );
    let every: u64 = p
        .iter()
        .chain(&b)
        .filter(|o| o.size() > rules.min_bytes)
        .count() as u64;
    for c in [8, 32, 64] {
        settle();
        let ws = Workspace::new(&proxied);
        let out = run_slotfill(
            opts,
            &ws,
            &buckets,
            &format!("cold scan c={c} --all-locations"),
            &scan_args(c, &["--all-locations"]),
            None,
        );
        record(report, opts, &out, 0);
        report.check(
            out.measure.counts.get == every,
            format!(
                "--all-locations c={c}: {} GETs = every one of the {every} objects above min_bytes",
                out.measure.counts.get
            ),
        );
        report.check(
            out.measure.max_rss_kib <= 48 * 1024 || opts.launcher.is_none(),
            format!(
                "--all-locations c={c}: peak RSS {:.1} MiB <= 48 MiB",
                out.measure.max_rss_kib as f64 / 1024.0
            ),
        );
    }

    // 3. The same objects in local directories (just written, so in the page cache).
    let files = tempfile::Builder::new()
        .prefix("slotfill-limit-files-")
        .tempdir()
        .expect("temp dir");
    let written = write_files(files.path(), &[("p", &p), ("b", &b)]);
    let local = format!(
        "catalog = \"slotfill.db\"\n[datasets.jp]\nslot_minutes = 10\nutc_offset = \"+09:00\"\n\
         key_template = \"%Y/%m/%d/%H/%Y-%m-%d_%H-%M.jsonl\"\n\
         primary = \"file://{0}/p/misskey\"\nbackup = [\"file://{0}/b/misskey\"]\n{1}",
        files.path().display(),
        rules.toml()
    );
    let mut local_runs = Vec::new();
    for round in 0..ROUNDS {
        settle();
        let ws = Workspace::new(&local);
        let mut out = run_slotfill(
            opts,
            &ws,
            &[],
            &format!("file:// cold scan c=8 --all-locations #{round}"),
            &scan_args(8, &["--all-locations"]),
            None,
        );
        out.measure.counts.get = ws.query_i64("SELECT downloads FROM runs") as u64;
        out.measure.counts.bytes_out = ws.query_i64("SELECT bytes_read FROM runs") as u64;
        record(report, opts, &out, 0);
        local_runs.push(out.measure);
    }
    let local_wall = median(&local_runs, &wall);
    report.note(
        opts.verbose,
        format!(
            "file:// cold scan (median of {ROUNDS}, {:.0} MB of {:.0} MB written): {:.2} GB/s",
            local_runs[0].counts.bytes_out as f64 / 1e6,
            written as f64 / 1e6,
            local_runs[0].counts.bytes_out as f64 / 1e9 / local_wall
        ),
    );
    drop(files);
}

/// Waits until the machine is nearly idle for a second, at most 15 s.
fn settle() {
    for _ in 0..15 {
        let before = machine_cpu();
        std::thread::sleep(std::time::Duration::from_secs(1));
        if machine_cpu() - before < 0.25 {
            break;
        }
    }
}

/// A curl config file downloading `plan` (object over the line cap up to the cap) to /dev/null,
/// signed with SigV4.
fn curl_config(
    endpoint: &str,
    buckets: &[&str],
    plan: &[(usize, &Obj)],
) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().expect("curl config");
    for (i, (location, o)) in plan.iter().enumerate() {
        // `next` separates transfers; one after the last would start an empty one.
        let mut entry = if i == 0 {
            String::new()
        } else {
            "next\n".to_string()
        };
        entry.push_str(&format!(
            "url = \"{endpoint}/{}/{}\"\noutput = \"/dev/null\"\nfail\n\
             aws-sigv4 = \"aws:amz:{}:s3\"\nuser = \"{}:{}\"\n",
            buckets[*location],
            o.key,
            s3::REGION,
            s3::ACCESS_KEY,
            s3::SECRET_KEY
        ));
        if o.lines as u64 >= MAX_LINES {
            entry.push_str(&format!(
                "range = \"0-{}\"\n",
                MAX_LINES * o.width as u64 - 1
            ));
        }
        file.write_all(entry.as_bytes()).expect("write curl config");
    }
    file.flush().expect("flush curl config");
    file
}

/// Where the pinned side-by-side runs put the server and the clients.
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;

/// Rounds of curl and a cold scan reading the same objects, alternating.
struct SideBySide<'a> {
    list: &'a tempfile::NamedTempFile,
    plan_objects: u64,
    plan_bytes: u64,
    config: &'a str,
    scan_args: Vec<String>,
}

impl SideBySide<'_> {
    /// Runs the rounds (the clients on `client_cpu` if given) and notes the ratio of medians.
    fn run(&self, opts: &Options, report: &mut Report, client_cpu: Option<usize>) {
        let opts = &Options {
            client_cpu,
            ..opts.clone()
        };
        let label = match client_cpu {
            Some(cpu) => format!(" (server on CPU {SERVER_CPU}, client on CPU {cpu})"),
            None => String::new(),
        };
        let mut curl_runs = Vec::new();
        let mut scan_runs = Vec::new();
        for round in 0..ROUNDS {
            let mut m = run_curl(
                &format!("curl -Z --parallel-max {PARALLEL}{label} #{round}"),
                self.list,
                client_cpu,
            );
            m.counts.get = self.plan_objects;
            m.counts.bytes_out = self.plan_bytes;
            if opts.verbose {
                println!("{}", m.line());
            }
            report.check(
                m.extra.iter().any(|(k, v)| k == "exit" && v == &json!(0)),
                format!("curl round {round}: exit 0 ({:?})", m.extra),
            );
            report.measures.push(m.clone());
            curl_runs.push(m);

            settle();
            let ws = Workspace::new(self.config);
            let mut out = run_slotfill(
                opts,
                &ws,
                &[],
                &format!("cold scan c={PARALLEL} direct{label} #{round}"),
                &self.scan_args,
                None,
            );
            out.measure.counts.get = ws.query_i64("SELECT downloads FROM runs") as u64;
            out.measure.counts.bytes_out = ws.query_i64("SELECT bytes_read FROM runs") as u64;
            record(report, opts, &out, 0);
            report.check(
                out.measure.counts.get == self.plan_objects,
                format!(
                    "direct cold scan{label} #{round}: {} downloads = the {} objects curl read",
                    out.measure.counts.get, self.plan_objects
                ),
            );
            scan_runs.push(out.measure);
        }
        let cpu_per_gb = |m: &Measure| (m.user + m.sys) / (m.counts.bytes_out as f64 / 1e9);
        let (curl_wall, scan_wall) = (median(&curl_runs, &wall), median(&scan_runs, &wall));
        let (curl_cpu, scan_cpu) = (
            median(&curl_runs, &cpu_per_gb),
            median(&scan_runs, &cpu_per_gb),
        );
        let mb = self.plan_bytes as f64 / 1e6;
        report.note(
            opts.verbose,
            format!(
                "raw client vs cold scan{label} (medians of {ROUNDS}): curl {curl_wall:.2} s, \
                 {:.0} MB/s, {curl_cpu:.2} CPU-s/GB; slotfill {scan_wall:.2} s, {:.0} MB/s, \
                 {scan_cpu:.2} CPU-s/GB; throughput {:.1}% of curl's, CPU per GB {:.2}x curl's",
                mb / curl_wall,
                mb / scan_wall,
                100.0 * curl_wall / scan_wall,
                scan_cpu / curl_cpu
            ),
        );
    }
}

/// The median of `f` over runs.
fn median(runs: &[Measure], f: &dyn Fn(&Measure) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn wall(m: &Measure) -> f64 {
    m.wall
}

/// Pins every thread of a running process to one CPU, or back to all of them. Threads it
/// starts later inherit the mask of the thread that starts them.
fn pin_threads(pid: u32, cpu: Option<usize>) {
    let mask = super::cpu_mask(cpu);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("threads of the server");
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // SAFETY: sets the affinity of a thread of our own child from a valid mask.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&mask), &mask) };
    }
}

/// Runs curl over a config file, measuring its wall and CPU time (wait4) and what SeaweedFS,
/// this process and the rest of the machine used meanwhile.
fn run_curl(name: &str, list: &tempfile::NamedTempFile, cpu: Option<usize>) -> Measure {
    settle();
    let mut command = Command::new("curl");
    command
        .args([
            "-Z",
            "--parallel-max",
            &PARALLEL.to_string(),
            "-s",
            "-S",
            "-K",
        ])
        .arg(list.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .pin_to(cpu);
    let run = ChildRun::run(&mut command, "curl");
    Measure {
        extra: vec![("exit".into(), json!(exit_code(run.status)))],
        ..run.measure(name, run.cpu(), run.max_rss_kib())
    }
}

/// Writes the objects of each location under `dir/NAME/`; returns the bytes written.
fn write_files(dir: &Path, locations: &[(&str, &[Obj])]) -> u64 {
    let mut bytes = 0;
    for (name, objects) in locations {
        for o in *objects {
            let path = dir.join(name).join(&o.key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let data = body(o.lines, o.width, o.seed);
            bytes += data.len() as u64;
            std::fs::write(&path, data).expect("write object file");
        }
    }
    bytes
}
