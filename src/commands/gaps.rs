//! `slotfill gaps` and `slotfill status`: answers from the catalog alone, no network.

use crate::catalog::Catalog;
use crate::error::Result;
use crate::report::{Format, gaps::write_gaps};
use crate::state::State;
use crate::text::plural;

use crate::run::{Global, Outcome, Selection, resolve};

#[derive(Debug, Clone, Default)]
pub struct GapsOptions {
    pub selection: Selection,
    pub format: Format,
}

pub fn gaps(global: &Global, opts: &GapsOptions) -> Result<Outcome> {
    let resolved = resolve(global, &opts.selection)?;
    let catalog = Catalog::open_read_only(&resolved.config.catalog)?;
    // The slot width (and offset, template) must be the catalogued ones, as for
    // every command: `--slot-minutes` cannot regroup slots catalogued at another width.
    let row = catalog.dataset_row_for(&resolved.ds)?;
    let range = match resolved.window {
        Some(w) => (w.first, w.last),
        None => catalog.slot_extent(row.id)?.unwrap_or((0, -1)),
    };
    if let Some(w) = resolved.window {
        let known = catalog.slot_states(row.id, (w.first, w.last))?.total();
        let expected = w.slot_count(&resolved.ds.spec) as u64;
        if known < expected {
            tracing::warn!(
                "{} of {} in the window {} never scanned; run `slotfill scan` over it",
                expected - known,
                plural(expected, "slot"),
                if expected - known == 1 { "was" } else { "were" }
            );
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write_gaps(
        &mut out,
        &catalog,
        row.id,
        &resolved.ds.spec,
        range,
        &resolved.ds.gap_states(),
        opts.format,
    )?;
    Ok(Outcome::OK)
}

/// A short summary per dataset: slots by state.
pub fn status(global: &Global, dataset: Option<&str>) -> Result<Outcome> {
    let config = global.load_config()?;
    let catalog = Catalog::open_read_only(&config.catalog)?;
    let names: Vec<String> = match dataset {
        Some(name) => vec![name.to_string()],
        None => config.datasets.keys().cloned().collect(),
    };
    for name in names {
        let row = match catalog.dataset_row(&name) {
            Ok(row) => row,
            Err(crate::catalog::CatalogError::UnknownDataset(_)) if dataset.is_none() => {
                println!("{name}: not scanned yet");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(extent) = catalog.slot_extent(row.id)? else {
            println!("{name}: not scanned yet");
            continue;
        };
        let states = catalog.slot_states(row.id, extent)?;
        let spec = config.dataset(&name, &Default::default())?.spec;
        println!(
            "{name}: {} slots from {} to {}: {} ok, {} empty at the origin, {} pending, {} gaps",
            states.total(),
            spec.local_iso(extent.0),
            spec.local_iso(extent.1),
            states.get(State::Ok),
            states.get(State::Empty),
            states.get(State::Pending),
            states.gaps()
        );
        for state in State::ALL.into_iter().filter(|s| *s != State::Ok) {
            let n = states.get(state);
            if n > 0 {
                println!("  {state:<15} {n}");
            }
        }
    }
    Ok(Outcome::OK)
}
