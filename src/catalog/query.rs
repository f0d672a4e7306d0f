//! Read-only statements: ad hoc SQL (`slotfill sql`) and the canned reports.
//! A statement that would write is refused before it runs, whatever the
//! connection allows.

use rusqlite::ToSql;
use rusqlite::types::ValueRef;
use serde_json::Value;

use super::Catalog;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("SQL error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("slotfill sql only reads: the statement would modify the catalog")]
    Writes,
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl Catalog {
    /// Runs one statement that only reads, binding those of `bindings` it names,
    /// and hands its column names and rows (JSON values in column order) to
    /// `emit`, which returns how many rows it wrote.
    pub fn read_query(
        &self,
        sql: &str,
        bindings: &[(&str, &dyn ToSql)],
        emit: impl FnOnce(&[String], &mut dyn Iterator<Item = Vec<Value>>) -> std::io::Result<u64>,
    ) -> Result<u64, QueryError> {
        let mut stmt = self.conn.prepare(sql)?;
        if !stmt.readonly() {
            return Err(QueryError::Writes);
        }
        for (name, value) in bindings {
            if let Some(index) = stmt.parameter_index(name)? {
                stmt.raw_bind_parameter(index, value)?;
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
            emit(&columns, &mut iter)?
        };
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(count),
        }
    }
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
