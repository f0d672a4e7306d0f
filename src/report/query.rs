//! Running SQL on the catalog: the canned reports of `sql/*.sql` (embedded in
//! the binary) and ad hoc read-only queries.

use std::io::Write;

use rusqlite::ToSql;

use super::format::{Format, write_rows};
use super::{ReportError, Result};
use crate::catalog::{Catalog, QueryError};

/// A canned query: its name, what it shows, and its SQL.
pub struct Canned {
    pub name: &'static str,
    pub sql: &'static str,
}

impl Canned {
    /// The first comment line of the file.
    pub fn description(&self) -> &'static str {
        self.sql
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- "))
            .unwrap_or("")
    }
}

pub const CANNED: &[Canned] = &[
    Canned {
        name: "coverage-by-day",
        sql: include_str!("../../sql/coverage-by-day.sql"),
    },
    Canned {
        name: "gaps",
        sql: include_str!("../../sql/gaps.sql"),
    },
    Canned {
        name: "fill-attempts",
        sql: include_str!("../../sql/fill-attempts.sql"),
    },
    Canned {
        name: "runs",
        sql: include_str!("../../sql/runs.sql"),
    },
    Canned {
        name: "thin-coverage",
        sql: include_str!("../../sql/thin-coverage.sql"),
    },
    Canned {
        name: "states",
        sql: include_str!("../../sql/states.sql"),
    },
    Canned {
        name: "redundancy",
        sql: include_str!("../../sql/redundancy.sql"),
    },
    Canned {
        name: "calibrations",
        sql: include_str!("../../sql/calibrations.sql"),
    },
];

pub fn canned(name: &str) -> Option<&'static Canned> {
    CANNED.iter().find(|c| c.name == name)
}

/// Values for the named parameters the canned queries use.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub dataset: Option<String>,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub thin_seconds: Option<f64>,
}

/// Runs one read-only statement on the catalog and writes its rows; returns the row count.
pub fn run_query(
    catalog: &Catalog,
    sql: &str,
    params: &Params,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let bindings: [(&str, &dyn ToSql); 4] = [
        (":dataset", &params.dataset),
        (":first", &params.first),
        (":last", &params.last),
        (":thin_seconds", &params.thin_seconds),
    ];
    catalog
        .read_query(sql, &bindings, |columns, rows| {
            write_rows(out, format, columns, rows)
        })
        .map_err(|e| match e {
            QueryError::Output(source) => ReportError::Output {
                what: "output",
                source,
            },
            e => ReportError::Query(e),
        })
}

#[cfg(test)]
mod every_canned_query {
    use super::*;
    use crate::catalog::tests::dataset;

    /// A catalog with one of everything the reports read: an ok slot, a filled
    /// slot whose earliest note is late, a missing slot, an attempt and a run.
    fn populated() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut catalog = Catalog::open(&path).unwrap();
        let row = catalog.ensure_dataset(&dataset()).unwrap();
        let (primary, complement) = (row.locations[0].id, row.locations[2].id);
        let t0 = 1_753_974_000; // 2025-08-01T00:00:00+09:00
        catalog
            .connection()
            .execute_batch(&format!(
                "INSERT INTO objects (id, location_id, key, slot_start, size, lines, status, seen_at)
                     VALUES (1, {primary}, 'a', {t0}, 200000, 500, 'ok', 'x');
                 INSERT INTO objects (id, location_id, key, slot_start, size, lines, complete, note_count,
                                      earliest, status, seen_at)
                     VALUES (2, {complement}, 'b', {t0} + 600, 900, 3, 1, 3,
                             '2025-07-31T15:12:00.000Z', 'ok', 'x');
                 INSERT INTO slots VALUES (1, {t0}, '2025-08-01T00:00:00+09:00', '2025-08-01', 'ok', 'primary', 1, 'x', NULL);
                 INSERT INTO slots VALUES (1, {t0} + 600, '2025-08-01T00:10:00+09:00', '2025-08-01', 'ok', 'complement', 2, 'x', NULL);
                 INSERT INTO slots VALUES (1, {t0} + 1200, '2025-08-01T00:20:00+09:00', '2025-08-01', 'missing', NULL, NULL, 'x', NULL);
                 INSERT INTO fill_attempts (dataset_id, slot_start, started_at, finished_at, outcome, notes, object_id)
                     VALUES (1, {t0} + 600, 'x', 'y', 'filled', 3, 2);
                 INSERT INTO runs (dataset_id, command, args, started_at, outcome)
                     VALUES (1, 'fill', 'slotfill fill', 'x', 'ok');
                 INSERT INTO calibrations (dataset_id, run_id, scope_first, scope_last, reference_slot,
                                           source, expected, found, recall, verdict, calibrated_at)
                     VALUES (1, 1, {t0} + 1200, {t0} + 1200, {t0}, 'x', 98, 96, 0.98, 'partial', 'x');",
            ))
            .unwrap();
        (dir, catalog)
    }

    #[test]
    fn every_sql_file_answers_rows_on_a_populated_catalog() {
        let (_dir, catalog) = populated();
        let params = Params {
            dataset: Some("jp".to_string()),
            ..Default::default()
        };
        for report in CANNED {
            let mut out = Vec::new();
            let rows = run_query(&catalog, report.sql, &params, Format::Json, &mut out)
                .unwrap_or_else(|e| panic!("{}: {e}", report.name));
            assert!(rows > 0, "{} answered no row", report.name);
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed.as_array().unwrap().len() as u64, rows);
        }
    }

    #[test]
    fn gaps_and_coverage_agree_with_the_views() {
        let (_dir, catalog) = populated();
        let rows = |sql: &str| {
            let mut out = Vec::new();
            run_query(&catalog, sql, &Params::default(), Format::Json, &mut out).unwrap();
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        let report = rows(canned("gaps").unwrap().sql);
        let view = rows("SELECT first_local AS first_slot, slots FROM gaps");
        assert_eq!(report[0]["first_slot"], view[0]["first_slot"]);
        assert_eq!(report.as_array().unwrap().len(), 1);
        let by_day = rows(canned("coverage-by-day").unwrap().sql);
        let view = rows("SELECT coverage_pct FROM coverage_by_day");
        // Two covered slots of the day's 144: against expected slots, not catalogued ones.
        assert_eq!(by_day[0]["coverage_pct"], 1.39);
        assert_eq!(view[0]["coverage_pct"], 1.39);
        // Ad hoc SQL that writes is refused before it runs.
        let err = run_query(
            &catalog,
            "DELETE FROM runs",
            &Params::default(),
            Format::Csv,
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("only reads"), "{err}");
    }
}
