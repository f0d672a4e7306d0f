//! `slotfill report` and `slotfill sql`: coverage answered from the catalog alone.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::config::{Config, Overrides};
use crate::error::{Error, Result};
use crate::report::Format;
use crate::report::heatmap::write_heatmap;
use crate::report::query::{CANNED, Params, canned, run_query};
use crate::text::plural;

use crate::run::{Global, Outcome, parse_window};

#[derive(Debug, Clone, Default)]
pub struct ReportCommand {
    /// A canned report name, or "heatmap".
    pub name: Option<String>,
    pub list: bool,
    pub dataset: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub format: Format,
    /// Where the heatmap goes.
    pub out: Option<PathBuf>,
    pub thin_seconds: Option<f64>,
}

pub fn report(global: &Global, cmd: &ReportCommand) -> Result<Outcome> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let name = match (&cmd.name, cmd.list) {
        (_, true) | (None, false) => {
            for c in CANNED {
                writeln!(out, "{:<16} {}", c.name, c.description()).map_err(io)?;
            }
            writeln!(
                out,
                "{:<16} SVG coverage map: days down, slots across (--out FILE)",
                "heatmap"
            )
            .map_err(io)?;
            return Ok(Outcome::OK);
        }
        (Some(name), false) => name.as_str(),
    };
    let mut params = Params {
        dataset: cmd.dataset.clone(),
        thin_seconds: cmd.thin_seconds,
        ..Default::default()
    };
    let window = match (&cmd.start, &cmd.dataset) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(Error::Usage(
                "--start/--end need --dataset (for its slots and offset)".to_string(),
            ));
        }
        (Some(_), Some(dataset)) => {
            let ds = Config::load(&global.config)?.dataset(dataset, &Overrides::default())?;
            let window = parse_window(&ds, cmd.start.as_deref(), cmd.end.as_deref())?
                .expect("a window: --start is given");
            params.first = Some(window.first);
            params.last = Some(window.last);
            Some((window, ds.spec))
        }
    };
    let catalog = Catalog::open_read_only(&global.catalog_path()?)?;
    if let Some(dataset) = &cmd.dataset {
        known_dataset(global, &catalog, dataset)?;
    }
    if name == "heatmap" {
        let dataset = cmd.dataset.as_deref().ok_or_else(|| {
            Error::Usage("the heatmap needs --dataset, --start and --end".to_string())
        })?;
        let (window, spec) = window
            .ok_or_else(|| Error::Usage("the heatmap needs --start and --end".to_string()))?;
        let path = cmd
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("coverage.svg"));
        let row = catalog.dataset_row(dataset)?;
        let cells = write_svg(&path, |w| {
            Ok(write_heatmap(w, &catalog, dataset, row.id, &spec, window)?)
        })?;
        let cells = plural(cells, "slot");
        writeln!(out, "wrote {} ({cells})", path.display()).map_err(io)?;
        return Ok(Outcome::OK);
    }
    let report = canned(name).ok_or_else(|| {
        let names: Vec<&str> = CANNED.iter().map(|c| c.name).chain(["heatmap"]).collect();
        Error::Usage(format!(
            "unknown report {name:?} (known: {})",
            names.join(", ")
        ))
    })?;
    run_query(&catalog, report.sql, &params, cmd.format, &mut out)?;
    Ok(Outcome::OK)
}

/// Refuses a dataset neither catalogued nor configured, with the usual message,
/// rather than answering an empty table.
fn known_dataset(global: &Global, catalog: &Catalog, name: &str) -> Result<()> {
    if catalog.dataset_row(name).is_ok() {
        return Ok(());
    }
    let config = Config::load(&global.config)?;
    if !config.datasets.contains_key(name) {
        config.dataset(name, &Overrides::default())?;
    }
    Ok(())
}

fn write_svg(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<u64>) -> Result<u64> {
    let file = std::fs::File::create(path)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", path.display())))?;
    let mut writer = std::io::BufWriter::new(file);
    let cells = write(&mut writer)?;
    writer.flush().map_err(io)?;
    Ok(cells)
}

/// Ad hoc read-only SQL on the catalog.
pub fn sql(global: &Global, query: &str, format: Format) -> Result<Outcome> {
    let catalog = Catalog::open_read_only(&global.catalog_path()?)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_query(&catalog, query, &Params::default(), format, &mut out)?;
    Ok(Outcome::OK)
}

fn io(e: std::io::Error) -> Error {
    Error::Runtime(format!("cannot write output: {e}"))
}
