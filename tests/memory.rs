//! Memory stays flat whatever `--concurrency` says. Downloads are capped: a
//! scan never has more S3 requests in flight than `--concurrency`, and never
//! more than 32 (counted at the proxy); and a scan of two days of a primary
//! and a backup, with objects of half a megabyte and tens of megabytes, peaks
//! under 48 MiB at `--concurrency 64`, little above its peak at 8 (peak RSS
//! read by the kernel, see `support::rss`).

use std::time::Duration;

use crate::support::bodies::big_body;
use crate::support::rss::run_measured;
use crate::support::s3::{FaultRule, S3Fault, S3Op, S3Server};
use crate::support::*;

const MIB: usize = 1024 * 1024;
/// The ceiling of issue 12: 48 MiB for the whole process, at any concurrency.
/// Measured (debug build, 3 runs each): 43.4-44.2 MiB at `--concurrency 64`;
/// 49.4-51.2 MiB with the cap of 32 requests in flight removed.
const RSS_CEILING_KIB: u64 = 48 * 1024;
/// How much more `--concurrency 64` may take than 8: 24 more downloads in
/// flight (about 170 KiB each) plus slack. Measured: 3.5-4.0 MiB more; 9.3-10.9
/// MiB more with the cap removed.
const RSS_GROWTH_KIB: u64 = 6 * 1024;
/// Objects per location and day.
const PER_DAY: i64 = 64;
/// The most S3 requests a scan has in flight, whatever `--concurrency` says.
const CAP: u64 = 32;

/// `scan -d jp` over `first..=last` at `concurrency`, every copy counted.
fn scan_args(concurrency: &str, first: i64, last: i64) -> Vec<String> {
    let args = ["scan", "-d", "jp", "--all-locations", "--concurrency"];
    let mut args: Vec<String> = args.map(str::to_string).to_vec();
    args.push(concurrency.to_string());
    args.extend(["--start".into(), arg_time(first)]);
    args.extend(["--end".into(), arg_time(last)]);
    args
}

/// 72 slots of one day, each object held 250 ms at the proxy before it is
/// served, so downloads pile up as far as slotfill lets them: at most 2 at
/// `--concurrency 2`, at most 32 at 64 (and then exactly that many).
#[test]
fn a_scan_has_at_most_concurrency_and_never_more_than_32_requests_in_flight() {
    let server = S3Server::shared();
    let bucket = server.new_bucket("download-cap");
    let slots = 72;
    for i in 0..slots {
        let key = format!("misskey/{}", key_of(AUG1_JST + i * SLOT));
        server.put(&bucket, &key, &jsonl(10, 100));
    }
    let config = s3_config(&format!("s3://{bucket}/misskey"), &[], None, "");
    let held = FaultRule {
        op: S3Op::Get,
        fault: S3Fault::Delay(Duration::from_millis(250)),
        times: u64::MAX,
        skip: 0,
    };
    server.inject(&bucket, held);
    let mut peaks = Vec::new();
    for (concurrency, last) in [("2", 5), ("64", slots - 1)] {
        let ws = Workspace::new(&config);
        server.reset_counts(&bucket);
        let args = scan_args(concurrency, AUG1_JST, AUG1_JST + last * SLOT);
        let out = ws.slotfill(&as_str(&args)).ok();
        assert_eq!(
            server.counts(&bucket).get,
            last as u64 + 1,
            "{}",
            out.stdout
        );
        peaks.push(server.peak_in_flight(&bucket));
    }
    server.clear_faults(&bucket);
    eprintln!(
        "requests in flight at most: --concurrency 2 {}, 64 {}",
        peaks[0], peaks[1]
    );
    assert_eq!(peaks[0], 2, "at --concurrency 2");
    assert_eq!(peaks[1], CAP, "at --concurrency 64");
}

fn as_str(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Two days of a primary and a backup: 64 slots a day with an object of half
/// a MiB in each location, and a backup-only slot of 24 MiB. Every download
/// pauses halfway for 300 ms, so as many are open mid-body at once as slotfill
/// lets be in flight: the worst case for memory, and a regression (more in
/// flight than the cap) shows in the peak.
#[test]
fn a_scan_at_concurrency_64_stays_under_48_mib() {
    let server = S3Server::shared();
    // Both locations in one bucket: the proxy's peak of requests in flight covers both.
    let bucket = server.new_bucket("memory");
    let (medium, _) = big_body(MIB / 2);
    let (large, _) = big_body(24 * MIB);
    let days = [AUG1_JST, AUG1_JST + 86_400];
    for day in days {
        for i in 0..PER_DAY {
            let key = key_of(day + i * SLOT);
            server.put(&bucket, &format!("primary/{key}"), &medium);
            server.put(&bucket, &format!("backup/{key}"), &medium);
        }
        let key = key_of(day + PER_DAY * SLOT);
        server.put(&bucket, &format!("backup/{key}"), &large);
    }
    let config = s3_config(
        &format!("s3://{bucket}/primary"),
        &[&format!("s3://{bucket}/backup")],
        None,
        "",
    )
    .replace(
        RULES,
        "[datasets.jp.rules]\nmin_bytes = 0\nmin_lines = 0\nmax_lines = 1000000\n",
    );
    let pause = FaultRule {
        op: S3Op::Get,
        fault: S3Fault::PauseMidBody(Duration::from_millis(300)),
        times: u64::MAX,
        skip: 0,
    };
    server.inject(&bucket, pause);
    let (mut peaks, mut in_flight) = (Vec::new(), Vec::new());
    for concurrency in ["8", "64"] {
        let ws = Workspace::new(&config);
        server.reset_counts(&bucket);
        // Every copy is counted: both locations' downloads in flight at once.
        let args = scan_args(concurrency, days[0], days[1] + PER_DAY * SLOT);
        let (out, peak) = run_measured(&ws, &as_str(&args));
        let out = out.ok();
        let gets = server.counts(&bucket).get;
        assert_eq!(gets, 4 * PER_DAY as u64 + 2, "{}", out.stdout);
        in_flight.push(server.peak_in_flight(&bucket));
        peaks.push(peak);
    }
    server.clear_faults(&bucket);
    eprintln!(
        "peak RSS of a scan: --concurrency 8 {} KiB ({} requests in flight), 64 {} KiB ({})",
        peaks[0], in_flight[0], peaks[1], in_flight[1]
    );
    assert!(in_flight[0] <= 8 && in_flight[1] <= CAP, "{in_flight:?}");
    assert!(
        peaks[1] <= RSS_CEILING_KIB,
        "--concurrency 64 peaked at {} KiB",
        peaks[1]
    );
    assert!(
        peaks[1] <= peaks[0] + RSS_GROWTH_KIB,
        "--concurrency 64 took {} KiB more than 8",
        peaks[1] - peaks[0].min(peaks[1])
    );
}
