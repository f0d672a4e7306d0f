//! The built-in cron, on a clock that runs 60 times faster than real time.

use crate::support::serve::{Serve, ServeFixture, wait_for};
use crate::support::*;

#[test]
fn a_schedule_fires_once_per_due_time_in_the_datasets_offset() {
    // The clock starts at 03:13 JST and runs 60 times faster than real time:
    // the due times 03:15, 03:18 and 03:21 come 2, 5 and 8 seconds later. In
    // UTC the same cron would be due at 12:15 JST, long after the test.
    let f = ServeFixture::new(
        "",
        "[[serve.schedule]]\ndataset = \"jp\"\ncron = \"15,18,21 3 * * *\"\nstart = \"-1h\"\nend = \"-40m\"\n",
    );
    let morning = AUG1_JST + 13 * 86_400 + 2 * 3600;
    for i in 0..7 {
        f.put_primary(morning + i * SLOT);
    }
    let mut serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_NOW", "2025-08-14T03:13:00+09:00"),
            ("SLOTFILL_CLOCK_SPEED", "60"),
        ],
    );
    let finished = || {
        f.ws.query_i64(
            "SELECT COUNT(*) FROM runs WHERE args LIKE '%schedule%' AND finished_at IS NOT NULL",
        )
    };
    wait_for("three scheduled runs", || finished() >= 3);
    assert_eq!(serve.terminate(), 0, "{}", serve.logs());
    let runs: Vec<(String, String, String, String)> = {
        let c = f.ws.catalog();
        let mut stmt = c
            .prepare("SELECT args, started_at, window_start, outcome FROM runs WHERE args LIKE '%schedule%' ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let dues: Vec<&str> = runs
        .iter()
        .map(|(args, ..)| args.rsplit("due ").next().unwrap())
        .collect();
    assert_eq!(
        dues,
        [
            "2025-08-14T03:15:00+09:00",
            "2025-08-14T03:18:00+09:00",
            "2025-08-14T03:21:00+09:00"
        ],
        "{}",
        serve.logs()
    );
    for ((_, started, window_start, outcome), due) in runs.iter().zip(dues) {
        assert_eq!(outcome, "ok");
        // Each run starts after its due time, its window relative to it.
        let due = chrono::DateTime::parse_from_rfc3339(due).unwrap();
        let started = chrono::DateTime::parse_from_rfc3339(started).unwrap();
        assert!(started >= due, "{started} before {due}");
        let expected = due - chrono::Duration::hours(1);
        let expected =
            chrono::DateTime::from_timestamp(expected.timestamp() / SLOT * SLOT, 0).unwrap();
        assert_eq!(window_start, &local_iso(expected.timestamp()));
    }
}

#[test]
fn processes_started_with_the_same_clock_origin_share_one_running_clock() {
    // SLOTFILL_CLOCK_SINCE names the real instant at which the clock read
    // SLOTFILL_NOW: a process started later finds the clock already moved on.
    let f = ServeFixture::new("", "");
    let ten_seconds_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 10_000;
    let run =
        f.ws.command(&[
            "scan",
            "-d",
            "jp",
            "--start",
            "2025-08-14T00:00",
            "--end",
            "2025-08-14T00:00",
        ])
        .env("SLOTFILL_NOW", "2025-08-14T03:00:00+09:00")
        .env("SLOTFILL_CLOCK_SPEED", "60")
        .env("SLOTFILL_CLOCK_SINCE", ten_seconds_ago.to_string())
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let started: String =
        f.ws.catalog()
            .query_row(
                "SELECT started_at FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(&started).unwrap();
    let pinned = chrono::DateTime::parse_from_rfc3339("2025-08-14T03:00:00+09:00").unwrap();
    let moved = (t - pinned).num_seconds();
    assert!(
        (600..700).contains(&moved),
        "ten real seconds at 60x are ten minutes: {moved} s"
    );
}

#[test]
fn a_due_time_missed_while_serve_was_down_runs_when_it_comes_back() {
    let f = ServeFixture::new(
        "",
        "[[serve.schedule]]\ndataset = \"jp\"\ncron = \"15 3 * * *\"\nstart = \"-1h\"\nend = \"-40m\"\n",
    );
    let scheduled = |f: &ServeFixture| -> Vec<String> {
        let c = f.ws.catalog();
        let mut stmt = c
            .prepare("SELECT args FROM runs WHERE args LIKE '%schedule%' AND finished_at IS NOT NULL ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|a| a.unwrap().rsplit("due ").next().unwrap().to_string())
            .collect()
    };
    // A first start on a new catalog, after today's due time: nothing to catch up.
    let mut serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", "2025-08-13T09:00:00+09:00")]);
    assert_eq!(serve.terminate(), 0);
    assert!(scheduled(&f).is_empty(), "{:?}", scheduled(&f));
    // The 14th's run happens.
    let mut serve = Serve::start(
        &f.ws,
        &[
            ("SLOTFILL_NOW", "2025-08-14T03:14:00+09:00"),
            ("SLOTFILL_CLOCK_SPEED", "60"),
        ],
    );
    wait_for("the 03:15 run", || !scheduled(&f).is_empty());
    assert_eq!(serve.terminate(), 0);
    // Down from before 03:15 on the 15th to 09:00: that due time runs at start, once.
    for now in ["2025-08-15T09:00:00+09:00", "2025-08-15T09:30:00+09:00"] {
        let mut serve = Serve::start(&f.ws, &[("SLOTFILL_NOW", now)]);
        // The schedule looks for a missed due time before it waits for the next.
        wait_for("the schedule to wait", || {
            serve.logs().contains("next due time")
        });
        wait_for("the missed run", || scheduled(&f).len() >= 2);
        assert_eq!(serve.terminate(), 0, "{}", serve.logs());
    }
    assert_eq!(
        scheduled(&f),
        ["2025-08-14T03:15:00+09:00", "2025-08-15T03:15:00+09:00"]
    );
}
