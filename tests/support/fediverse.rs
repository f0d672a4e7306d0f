//! A dataset over local directories filled from one [`MastodonEmulator`],
//! and what the tests read back: each slot's object (its ids, in order),
//! each attempt's calls, and the requests the emulator saw.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;

use super::http;
use super::mastodon::MastodonEmulator;
use super::seeded::{Place, as_strs};
use super::{RULES, Run, SLOT, Workspace, arg_time, key_of};

/// Dataset `jp` on local directories reading `timeline` of `e`, plus `extra`
/// source settings.
pub struct Fixture {
    pub ws: Workspace,
    /// Empty unless a test archives slots there.
    pub primary: Place,
    pub complement: Place,
    _dirs: tempfile::TempDir,
}

impl Fixture {
    pub fn new(e: &MastodonEmulator, timeline: &str, extra: &str) -> Fixture {
        let dirs = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "catalog = \"slotfill.db\"\n[datasets.jp]\nprimary = \"file://{0}/primary\"\ncomplement = \"file://{0}/complement\"\n{RULES}\
             [datasets.jp.source]\nkind = \"mastodon\"\nbase_url = \"{1}\"\ntimeline = \"{timeline}\"\n{extra}",
            dirs.path().display(),
            e.base_url()
        );
        Fixture {
            ws: Workspace::new(&config),
            primary: Place::dir(dirs.path(), "primary"),
            complement: Place::dir(dirs.path(), "complement"),
            _dirs: dirs,
        }
    }

    /// `COMMAND -d jp --start FIRST --end LAST EXTRA…`
    pub fn run(&self, command: &str, first: i64, last: i64, extra: &[&str]) -> Run {
        let mut args = vec![command.to_string(), "-d".into(), "jp".into()];
        args.extend([
            "--start".into(),
            arg_time(first),
            "--end".into(),
            arg_time(last),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.ws.slotfill(&as_strs(&args))
    }

    /// Scans the window (nothing is in the primary), then fills it.
    pub fn fill(&self, first: i64, last: i64, extra: &[&str]) -> Run {
        self.run("scan", first, last, &[]).ok();
        self.run("fill", first, last, extra)
    }

    /// The statuses a slot's object holds, in order; None without an object.
    pub fn slot(&self, slot: i64) -> Option<Vec<Value>> {
        let body = self.complement.get(&key_of(slot))?;
        let text = String::from_utf8(body).expect("utf-8 object");
        Some(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect(),
        )
    }

    /// The origin calls the last fill counted (probe included).
    pub fn fill_calls(&self) -> u64 {
        let sql = "SELECT origin_calls FROM runs WHERE command = 'fill' ORDER BY id DESC LIMIT 1";
        self.ws.query_i64(sql) as u64
    }

    /// Per slot start (s): (outcome, notes, origin calls) of its last attempt.
    pub fn attempts(&self) -> BTreeMap<i64, (String, i64, i64)> {
        let db = self.ws.catalog();
        let mut stmt = db
            .prepare("SELECT slot_start, outcome, COALESCE(notes, 0), origin_calls FROM fill_attempts ORDER BY id")
            .expect("query");
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
            })
            .expect("rows");
        rows.map(|r| r.expect("row")).collect()
    }
}

/// The ids of statuses, in order.
pub fn ids(statuses: &[Value]) -> Vec<String> {
    statuses
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// Slot starts (s) of `count` slots from `first`.
pub fn slots(first: i64, count: i64) -> Vec<i64> {
    (0..count).map(|i| first + i * SLOT).collect()
}

/// `ceil(n / 40) + 1`: the calls a slot of n statuses may cost.
pub fn budget(n: usize) -> i64 {
    n.div_ceil(40) as i64 + 1
}

/// A `GET` (status, lowercased headers, body), with a `User-Agent` or not.
pub fn get(
    base: &str,
    path: &str,
    token: Option<&str>,
    agent: bool,
) -> (u16, BTreeMap<String, String>, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    headers.extend(auth.as_deref().map(|a| ("Authorization", a)));
    headers.extend(agent.then_some(("User-Agent", "test/1")));
    let reply = http::get(base, path, &headers);
    (reply.status, reply.headers(), reply.body)
}
