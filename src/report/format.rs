//! Output formats shared by `gaps`, `report` and `sql`: an aligned table, CSV or JSON.

use std::io::Write;

use serde_json::Value;

// The counted nouns and lists of the summaries, where the reports used to own them.
pub use crate::text::{name_some, plural};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// Quotes a CSV field when it needs it (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv_row(out: &mut dyn Write, fields: &[String]) -> std::io::Result<()> {
    let line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    writeln!(out, "{line}")
}

/// Renders a JSON scalar as a cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One row as a JSON object whose keys keep the column order (a
/// `serde_json::Map` would sort them).
pub struct OrderedRow<'a> {
    pub columns: &'a [String],
    pub values: &'a [Value],
}

impl serde::Serialize for OrderedRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.columns.iter().zip(self.values))
    }
}

/// Writes rows in the chosen format. Tables are aligned, so they are buffered;
/// CSV and JSON are written row by row.
pub fn write_rows(
    out: &mut dyn Write,
    format: Format,
    columns: &[String],
    rows: &mut dyn Iterator<Item = Vec<Value>>,
) -> std::io::Result<u64> {
    let mut count = 0;
    match format {
        Format::Csv => {
            csv_row(out, columns)?;
            for row in rows {
                csv_row(out, &row.iter().map(cell).collect::<Vec<_>>())?;
                count += 1;
            }
        }
        Format::Json => {
            write!(out, "[")?;
            for row in rows {
                let object = OrderedRow {
                    columns,
                    values: &row,
                };
                if count > 0 {
                    write!(out, ",")?;
                }
                write!(out, "\n  {}", serde_json::to_string(&object)?)?;
                count += 1;
            }
            writeln!(out, "{}]", if count > 0 { "\n" } else { "" })?;
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = rows.map(|r| r.iter().map(cell).collect()).collect();
            count = rows.len() as u64;
            let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            writeln!(out, "{}", line(columns))?;
            writeln!(
                out,
                "{}",
                line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>())
            )?;
            for row in &rows {
                writeln!(out, "{}", line(row))?;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_take_the_right_number() {
        assert_eq!(plural(1u64, "slot"), "1 slot");
        assert_eq!(plural(0u64, "slot"), "0 slots");
        assert_eq!(plural(2u32, "day prefix"), "2 day prefixes");
        assert_eq!(plural(1u32, "day prefix"), "1 day prefix");
    }

    #[test]
    fn formats_agree_on_content() {
        let columns = vec!["a".to_string(), "b".to_string()];
        let rows = || vec![vec![json!("x,y"), json!(1)], vec![json!(null), json!(2.5)]].into_iter();
        let mut csv = Vec::new();
        write_rows(&mut csv, Format::Csv, &columns, &mut rows()).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "a,b\n\"x,y\",1\n,2.5\n");
        let mut json = Vec::new();
        write_rows(&mut json, Format::Json, &columns, &mut rows()).unwrap();
        let parsed: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed[0]["a"], "x,y");
        // Keys keep the column order, not the alphabet's.
        let mut json = Vec::new();
        let unsorted = vec!["zeta".to_string(), "alpha".to_string()];
        let mut one = vec![vec![json!(1), json!(2)]].into_iter();
        write_rows(&mut json, Format::Json, &unsorted, &mut one).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "[\n  {\"zeta\":1,\"alpha\":2}\n]\n"
        );
        assert_eq!(parsed[1]["b"], 2.5);
        let mut table = Vec::new();
        assert_eq!(
            write_rows(&mut table, Format::Table, &columns, &mut rows()).unwrap(),
            2
        );
        assert!(String::from_utf8(table).unwrap().starts_with("a    b\n"));
    }
}
