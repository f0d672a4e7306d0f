//! Running SQL on the catalog: the canned reports of `sql/*.sql` (embedded in
//! the binary) and ad hoc read-only queries.

use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ToSql};
use serde_json::Value;

use super::format::{Format, write_rows};
use crate::error::{Error, Result};

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

fn json_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(format!("<{} bytes>", b.len())),
    }
}

/// Runs one read-only statement and writes its rows; returns the row count.
pub fn run_query(
    conn: &Connection,
    sql: &str,
    params: &Params,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64> {
    let sql_error = |e: rusqlite::Error| Error::Usage(format!("SQL error: {e}"));
    let mut stmt = conn.prepare(sql).map_err(sql_error)?;
    if !stmt.readonly() {
        return Err(Error::Usage(
            "slotfill sql only reads: the statement would modify the catalog".to_string(),
        ));
    }
    let bindings: [(&str, &dyn ToSql); 4] = [
        (":dataset", &params.dataset),
        (":first", &params.first),
        (":last", &params.last),
        (":thin_seconds", &params.thin_seconds),
    ];
    for (name, value) in bindings {
        if let Some(index) = stmt.parameter_index(name).map_err(sql_error)? {
            stmt.raw_bind_parameter(index, value).map_err(sql_error)?;
        }
    }
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let width = columns.len();
    let mut rows = stmt.raw_query();
    let mut failure = None;
    let count = {
        let mut iter = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(
                (0..width)
                    .map(|i| row.get_ref(i).map(json_of).unwrap_or(Value::Null))
                    .collect(),
            ),
            Ok(None) => None,
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        write_rows(out, format, &columns, &mut iter)
            .map_err(|e| Error::Runtime(format!("cannot write output: {e}")))?
    };
    if let Some(e) = failure {
        return Err(sql_error(e));
    }
    Ok(count)
}
