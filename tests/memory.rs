//! Memory stays flat whatever `--concurrency` says: a scan of two days of a
//! primary and a backup, with objects of megabytes and tens of megabytes, peaks
//! under the same ceiling at `--concurrency 64` as at 8 (peak RSS read by the
//! kernel, see `support::rss`).

use crate::support::bodies::big_body;
use crate::support::rss::run_measured;
use crate::support::s3::S3Server;
use crate::support::*;

const MIB: usize = 1024 * 1024;
/// The ceiling of issue 12: 48 MiB for the whole process, at any concurrency.
const RSS_CEILING_KIB: u64 = 48 * 1024;
/// Objects per location and day.
const PER_DAY: i64 = 24;

#[test]
fn a_scan_at_concurrency_64_stays_under_48_mib() {
    let server = S3Server::shared();
    let (primary, backup) = (
        server.new_bucket("memory-primary"),
        server.new_bucket("memory-backup"),
    );
    let (medium, _) = big_body(3 * MIB);
    let (large, _) = big_body(24 * MIB);
    let days = [AUG1_JST, AUG1_JST + 86_400];
    for day in days {
        for i in 0..PER_DAY {
            let key = format!("misskey/{}", key_of(day + i * SLOT));
            server.put(&primary, &key, &medium);
            server.put(&backup, &key, &medium);
        }
        // Backup-only slots holding the largest objects.
        let key = format!("misskey/{}", key_of(day + PER_DAY * SLOT));
        server.put(&backup, &key, &large);
    }
    let config = s3_config(
        &format!("s3://{primary}/misskey"),
        &[&format!("s3://{backup}/misskey")],
        None,
        "",
    )
    .replace(
        RULES,
        "[datasets.jp.rules]\nmin_bytes = 0\nmin_lines = 0\nmax_lines = 1000000\n",
    );
    let window = [
        "--start".to_string(),
        arg_time(days[0]),
        "--end".to_string(),
        arg_time(days[1] + PER_DAY * SLOT),
    ];
    let mut peaks = Vec::new();
    for concurrency in ["8", "64"] {
        let ws = Workspace::new(&config);
        server.reset_counts(&primary);
        server.reset_counts(&backup);
        // Every copy is counted: both locations' downloads in flight at once.
        let mut args = vec![
            "scan",
            "-d",
            "jp",
            "--all-locations",
            "--concurrency",
            concurrency,
        ];
        args.extend(window.iter().map(String::as_str));
        let (out, peak) = run_measured(&ws, &args);
        let out = out.ok();
        let gets = server.counts(&primary).get + server.counts(&backup).get;
        assert_eq!(gets, 4 * PER_DAY as u64 + 2, "{}", out.stdout);
        peaks.push(peak);
    }
    eprintln!(
        "peak RSS of a scan: --concurrency 8 {} KiB, 64 {} KiB",
        peaks[0], peaks[1]
    );
    assert!(
        peaks[1] <= RSS_CEILING_KIB,
        "--concurrency 64 peaked at {} KiB",
        peaks[1]
    );
}
