//! The coverage heatmap: an SVG with one row per local day and one cell per
//! slot, coloured by state, so a quarter's health shows at a glance.

use crate::catalog::DatasetId;
use std::io::Write;

use super::{ReportError, Result};
use crate::catalog::{Catalog, SlotRow};
use crate::config::Role;
use crate::slot::{SlotSpec, Window};
use crate::state::State;

const CELL_W: usize = 6;
const CELL_H: usize = 12;
const LEFT: usize = 84;
const TOP: usize = 40;

/// The colour classes (class, colour, label), in legend order; the dashboard draws with them too.
pub const CLASSES: [(&str, &str, &str); 11] = [
    ("ok-primary", "#2e7d32", "ok (primary)"),
    ("ok-backup", "#81c784", "ok (backup)"),
    ("ok-complement", "#1e88e5", "filled (complement)"),
    ("empty", "#b3e5fc", "empty at the origin"),
    ("pending", "#fff9c4", "pending (not ended)"),
    ("missing", "#e53935", "missing"),
    ("too_small", "#fb8c00", "too small"),
    ("too_few_lines", "#fdd835", "too few lines"),
    ("too_many_lines", "#8e24aa", "too many lines"),
    ("unreadable", "#424242", "unreadable / incomplete"),
    ("unscanned", "#e0e0e0", "not scanned"),
];

pub fn class_of(row: &SlotRow) -> &'static str {
    match (row.state, row.ok_role) {
        (State::Ok, Some(Role::Backup)) => "ok-backup",
        (State::Ok, Some(Role::Complement)) => "ok-complement",
        (State::Ok, _) => "ok-primary",
        (State::Empty, _) => "empty",
        (State::Pending, _) => "pending",
        (State::Missing | State::Unchecked, _) => "missing",
        (State::TooSmall, _) => "too_small",
        (State::TooFewLines, _) => "too_few_lines",
        (State::TooManyLines, _) => "too_many_lines",
        (State::Unreadable | State::Incomplete, _) => "unreadable",
    }
}

/// Writes the heatmap of a window; returns the number of slot cells drawn.
pub fn write_heatmap(
    out: &mut dyn Write,
    catalog: &Catalog,
    dataset: &str,
    dataset_id: DatasetId,
    spec: &SlotSpec,
    window: Window,
) -> Result<u64> {
    let io = |source: std::io::Error| ReportError::Output {
        what: "the heatmap",
        source,
    };
    let days = window.days(spec);
    let per_day = (1440 / spec.minutes) as usize;
    let legend_width: usize = CLASSES.iter().map(|(_, _, label)| legend_step(label)).sum();
    let width = (LEFT + per_day * CELL_W + 20).max(LEFT + legend_width);
    let legend_y = TOP + days.len() * CELL_H + 20;
    let height = legend_y + 30;
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">"#
    )
    .map_err(io)?;
    let styles: String = CLASSES
        .iter()
        .map(|(c, colour, _)| format!(".{c}{{fill:{colour}}}"))
        .collect();
    writeln!(out, "<style>{styles}</style>").map_err(io)?;
    writeln!(
        out,
        r#"<text x="{LEFT}" y="14" font-size="12">{} — {} to {} ({}-minute slots, UTC{})</text>"#,
        escape(dataset),
        spec.local_iso(window.first),
        spec.local_iso(window.last),
        spec.minutes,
        spec.offset
    )
    .map_err(io)?;
    for hour in (0..24).step_by(3) {
        let x = LEFT + hour * 60 / spec.minutes as usize * CELL_W;
        writeln!(out, r#"<text x="{x}" y="{}">{hour:02}h</text>"#, TOP - 4).map_err(io)?;
    }
    for (row, day) in days.iter().enumerate() {
        writeln!(
            out,
            r#"<text x="4" y="{}">{day}</text>"#,
            TOP + row * CELL_H + CELL_H - 2
        )
        .map_err(io)?;
    }
    // Unscanned background, then one cell per catalogued slot.
    for (row, day) in days.iter().enumerate() {
        let (first, last) = spec.day_bounds(*day);
        let (first, last) = (first.max(window.first), last.min(window.last));
        let x = LEFT + ((first - spec.day_bounds(*day).0) / spec.width_secs()) as usize * CELL_W;
        let cells = ((last - first) / spec.width_secs() + 1) as usize;
        writeln!(
            out,
            r#"<rect class="unscanned" x="{x}" y="{}" width="{}" height="{}"/>"#,
            TOP + row * CELL_H,
            cells * CELL_W,
            CELL_H - 1
        )
        .map_err(io)?;
    }
    let first_day = days.first().copied();
    let mut drawn = 0u64;
    let mut write_error = None;
    catalog.visit_slots(dataset_id, (window.first, window.last), None, |slot| {
        let day = spec.day_of(slot.slot_start);
        let row = first_day.map(|f| (day - f).num_days() as usize).unwrap_or(0);
        let column = ((slot.slot_start - spec.day_bounds(day).0) / spec.width_secs()) as usize;
        let result = writeln!(
            out,
            r#"<rect class="slot {}" x="{}" y="{}" width="{}" height="{}"><title>{} {}</title></rect>"#,
            class_of(&slot),
            LEFT + column * CELL_W,
            TOP + row * CELL_H,
            CELL_W - 1,
            CELL_H - 1,
            slot.start_local,
            slot.state
        );
        if let Err(e) = result {
            write_error.get_or_insert(e);
        }
        drawn += 1;
        Ok(())
    })?;
    if let Some(e) = write_error {
        return Err(io(e));
    }
    let mut x = LEFT;
    for (class, _, label) in CLASSES {
        writeln!(
            out,
            r#"<rect class="{class}" x="{x}" y="{legend_y}" width="10" height="10"/><text x="{}" y="{}">{label}</text>"#,
            x + 14,
            legend_y + 9
        )
        .map_err(io)?;
        x += legend_step(label);
    }
    writeln!(out, "</svg>").map_err(io)?;
    Ok(drawn)
}

/// Horizontal room one legend entry takes.
fn legend_step(label: &str) -> usize {
    24 + label.len() * 6
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
