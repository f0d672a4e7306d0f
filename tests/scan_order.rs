//! Scans read only what decides a slot: a backup object is downloaded only when
//! the primary holds no valid object for its slot (GETs counted at the proxy, per
//! bucket), and `--all-locations` (or the dataset key) counts every copy.

use serde_json::Value;

use crate::support::s3::S3Server;
use crate::support::*;

/// Twelve slots over the JST day boundary. Primary: ok except slot 8 (too few
/// lines), slot 9 (too small by size) and slot 10 (absent). Backup: every slot ok.
struct Fixture {
    ws: Workspace,
    primary: String,
    backup: String,
    first: i64,
    last: i64,
}

const PRIMARY_OK: [i64; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 11];

/// `all_locations`: set the dataset key.
fn fixture(all_locations: bool) -> Fixture {
    let server = S3Server::shared();
    let (primary, backup) = (
        server.new_bucket("order-primary"),
        server.new_bucket("order-backup"),
    );
    let first = AUG1_JST - 6 * SLOT;
    let last = first + 11 * SLOT;
    for i in 0..12 {
        let key = format!("misskey/{}", key_of(first + i * SLOT));
        match i {
            8 => server.put(&primary, &key, &jsonl(3, 100)),
            9 => server.put(&primary, &key, &jsonl(5, 10)),
            10 => {}
            _ => server.put(&primary, &key, &jsonl(10, 100)),
        }
        server.put(&backup, &key, &jsonl(12, 100));
    }
    let mut config = s3_config(
        &format!("s3://{primary}/misskey"),
        &[&format!("s3://{backup}/misskey")],
        None,
        "",
    );
    if all_locations {
        config = config.replace(
            "[datasets.jp.rules]",
            "all_locations = true\n[datasets.jp.rules]",
        );
    }
    Fixture {
        ws: Workspace::new(&config),
        primary,
        backup,
        first,
        last,
    }
}

impl Fixture {
    fn run(&self, command: &str, extra: &[&str]) -> Run {
        let (start, end) = (arg_time(self.first), arg_time(self.last));
        let mut args = vec![command, "-d", "jp", "--start", &start, "--end", &end];
        args.extend(extra);
        self.ws.slotfill(&args)
    }

    fn gets(&self) -> (u64, u64) {
        let server = S3Server::shared();
        let gets = (
            server.counts(&self.primary).get,
            server.counts(&self.backup).get,
        );
        server.reset_counts(&self.primary);
        server.reset_counts(&self.backup);
        gets
    }

    fn ok_role(&self, i: i64) -> String {
        let slot = self.first + i * SLOT;
        self.ws
            .catalog()
            .query_row(
                &format!("SELECT COALESCE(ok_role, state) FROM slots WHERE slot_start = {slot}"),
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn backup_status(&self, i: i64) -> String {
        let key = key_of(self.first + i * SLOT);
        self.ws
            .catalog()
            .query_row(
                "SELECT o.status FROM objects o JOIN locations l ON l.id = o.location_id
                 WHERE l.role = 'backup' AND o.key = ?1 AND o.gone_at IS NULL",
                [&key],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn redundancy(&self) -> Vec<Value> {
        let out = self
            .ws
            .slotfill(&["report", "redundancy", "-d", "jp", "--format", "json"])
            .ok();
        serde_json::from_str(&out.stdout).expect("json rows")
    }
}

#[test]
fn a_cold_scan_downloads_a_backup_object_only_where_the_primary_cannot_decide() {
    let f = fixture(false);
    let out = f.run("scan", &[]).ok();
    // Primary: every object but the one too small by size. Backup: slots 8, 9, 10 only.
    assert_eq!(f.gets(), (10, 3), "{}", out.stdout);
    assert!(
        out.stdout.contains("slots: 12 total, 12 ok"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("not checked: 9 objects"),
        "{}",
        out.stdout
    );
    for i in PRIMARY_OK {
        assert_eq!(f.ok_role(i), "primary", "slot {i}");
        assert_eq!(f.backup_status(i), "unchecked", "slot {i}");
    }
    for i in [8, 9, 10] {
        assert_eq!(f.ok_role(i), "backup", "slot {i}");
        assert_eq!(f.backup_status(i), "ok", "slot {i}");
    }
    // What was not downloaded has no facts, and reports say so: never "ok".
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM objects WHERE status = 'unchecked' AND lines IS NULL"),
        9
    );
    let rows = f.redundancy();
    let backup: Vec<&Value> = rows.iter().filter(|r| r["role"] == "backup").collect();
    let sum = |rows: &[&Value], column: &str| -> i64 {
        rows.iter().map(|r| r[column].as_i64().unwrap_or(0)).sum()
    };
    assert_eq!(sum(&backup, "ok"), 3, "{rows:?}");
    assert_eq!(sum(&backup, "not_checked"), 9, "{rows:?}");
    let primary: Vec<&Value> = rows.iter().filter(|r| r["role"] == "primary").collect();
    assert_eq!(
        (
            sum(&primary, "ok"),
            sum(&primary, "not_ok"),
            sum(&primary, "absent")
        ),
        (9, 2, 1),
        "{rows:?}"
    );

    // A warm rescan reads nothing, and leaves the backup objects unchecked.
    f.run("scan", &[]).ok();
    assert_eq!(f.gets(), (0, 0));
    assert_eq!(f.backup_status(0), "unchecked");
}

#[test]
fn a_primary_that_turns_invalid_or_vanishes_gets_its_backup_counted_on_the_next_scan() {
    let f = fixture(false);
    let server = S3Server::shared();
    f.run("scan", &[]).ok();
    f.gets();

    let key = |i: i64| format!("misskey/{}", key_of(f.first + i * SLOT));
    server.put(&f.primary, &key(0), &jsonl(3, 100)); // now too few lines
    server.delete(&f.primary, &key(1)); // gone
    server.put(&f.backup, &key(2), &jsonl(15, 100)); // a changed backup copy of a valid primary
    let out = f.run("scan", &[]).ok();
    assert_eq!(f.gets(), (1, 2), "{}", out.stdout);
    assert_eq!(f.ok_role(0), "backup");
    assert_eq!(f.ok_role(1), "backup");
    assert_eq!(f.ok_role(2), "primary");
    assert_eq!(f.backup_status(0), "ok");
    assert_eq!(f.backup_status(1), "ok");
    assert_eq!(f.backup_status(2), "unchecked");

    // Counted now, the backup copies are not read again; nor is anything else.
    f.run("scan", &[]).ok();
    assert_eq!(f.gets(), (0, 0));
}

#[test]
fn all_locations_counts_every_copy_from_the_flag_or_the_dataset_key() {
    let f = fixture(false);
    f.run("scan", &["--all-locations"]).ok();
    assert_eq!(f.gets(), (10, 12));
    assert_eq!(f.backup_status(0), "ok");
    assert_eq!(
        f.ws.query_i64("SELECT COUNT(*) FROM objects WHERE status = 'unchecked'"),
        0
    );
    // A default scan afterwards keeps the facts of every copy and reads nothing.
    f.run("scan", &[]).ok();
    assert_eq!(f.gets(), (0, 0));
    assert_eq!(f.backup_status(0), "ok");

    // verify --all-locations counts what a default scan left unchecked.
    let g = fixture(false);
    g.run("scan", &[]).ok();
    g.gets();
    g.run("verify", &["--all-locations"]).ok();
    assert_eq!(g.gets(), (0, 9));
    assert_eq!(
        g.ws.query_i64("SELECT COUNT(*) FROM objects WHERE status = 'unchecked'"),
        0
    );

    // The dataset key does the same for every command.
    let h = fixture(true);
    h.run("scan", &[]).ok();
    assert_eq!(h.gets(), (10, 12));
}
