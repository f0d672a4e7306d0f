//! The dashboard's heatmap: one row per local day, slots coloured as `report
//! heatmap` colours them, but drawn compactly (consecutive slots of one
//! colour are one rectangle) and with every run of gap slots a link to its
//! slots' detail page. Its size follows the number of changes of colour, not
//! the number of slots: a fortnight of 5-minute slots with few gaps is a few
//! kilobytes.

use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::catalog::{Catalog, DatasetId, SlotRow};
use crate::report::heatmap::{CLASSES, class_of};
use crate::slot::{SlotSpec, SlotStart, Window};

use super::html::{escape, slots_link};

/// Width of one day's row, whatever the slot width.
const DAY_WIDTH: usize = 864;
const ROW_H: usize = 14;
const LEFT: usize = 84;
const TOP: usize = 22;

/// Consecutive slots of one colour on one day.
struct Run {
    day_row: usize,
    first_column: usize,
    first: SlotStart,
    last: SlotStart,
    slots: usize,
    class: &'static str,
    gap: bool,
}

/// Draws the window's days; returns the SVG and the slots drawn.
pub fn draw(
    c: &Catalog,
    dataset: &str,
    id: DatasetId,
    spec: &SlotSpec,
    window: Window,
) -> crate::catalog::Result<(String, u64)> {
    let days = window.days(spec);
    let per_day = (1440 / spec.minutes) as usize;
    let cell = DAY_WIDTH as f64 / per_day as f64;
    let height = TOP + days.len() * ROW_H + 30;
    let width = LEFT + DAY_WIDTH + 10;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10" role="img" aria-label="coverage of {} from {} to {}">"#,
        escape(dataset),
        days.first().map(ToString::to_string).unwrap_or_default(),
        days.last().map(ToString::to_string).unwrap_or_default(),
    );
    let styles: String = CLASSES
        .iter()
        .map(|(c, colour, _)| format!(".{c}{{fill:{colour}}}"))
        .collect();
    let _ = write!(svg, "<style>{styles}</style>");
    for hour in (0..24).step_by(3) {
        let x = LEFT + hour * DAY_WIDTH / 24;
        let _ = write!(svg, r#"<text x="{x}" y="{}">{hour:02}h</text>"#, TOP - 6);
    }
    for (row, day) in days.iter().enumerate() {
        day_background(&mut svg, dataset, spec, window, (row, *day), cell);
    }
    let first_day = days.first().copied();
    let mut current: Option<Run> = None;
    let mut drawn = 0u64;
    c.visit_slots(id, (window.first, window.last), None, |slot| {
        drawn += 1;
        let day = spec.day_of(slot.slot_start);
        let day_row = first_day
            .map(|f| (day - f).num_days() as usize)
            .unwrap_or(0);
        let column = ((slot.slot_start - spec.day_bounds(day).0) / spec.width_secs()) as usize;
        match &mut current {
            Some(run) if continues(run, &slot, day_row, spec) => {
                run.last = slot.slot_start;
                run.slots += 1;
            }
            _ => {
                if let Some(done) = current.take() {
                    draw_run(&mut svg, &done, dataset, spec, cell);
                }
                current = Some(Run {
                    day_row,
                    first_column: column,
                    first: slot.slot_start,
                    last: slot.slot_start,
                    slots: 1,
                    class: class_of(&slot),
                    gap: slot.state.is_gap(),
                });
            }
        }
        Ok(())
    })?;
    if let Some(done) = current {
        draw_run(&mut svg, &done, dataset, spec, cell);
    }
    legend(&mut svg, TOP + days.len() * ROW_H + 10);
    svg.push_str("</svg>");
    Ok((svg, drawn))
}

fn continues(run: &Run, slot: &SlotRow, day_row: usize, spec: &SlotSpec) -> bool {
    run.day_row == day_row
        && run.last + spec.width_secs() == slot.slot_start
        && run.class == class_of(slot)
}

/// The grey "not scanned" background of a day's part of the window, and the
/// day's label, a link to its slots.
fn day_background(
    svg: &mut String,
    dataset: &str,
    spec: &SlotSpec,
    window: Window,
    (row, day): (usize, NaiveDate),
    cell: f64,
) {
    let (day_first, day_last) = spec.day_bounds(day);
    let (first, last) = (day_first.max(window.first), day_last.min(window.last));
    let column = (first - day_first) / spec.width_secs();
    let cells = (last - first) / spec.width_secs() + 1;
    let y = TOP + row * ROW_H;
    let _ = write!(
        svg,
        r#"<a href="{link}"><text x="4" y="{ty}">{day}</text></a><rect class="unscanned" x="{x:.1}" y="{y}" width="{w:.1}" height="{h}"/>"#,
        link = slots_link(dataset, spec, first, last),
        ty = y + ROW_H - 4,
        x = LEFT as f64 + column as f64 * cell,
        w = cells as f64 * cell,
        h = ROW_H - 2,
    );
}

fn draw_run(svg: &mut String, run: &Run, dataset: &str, spec: &SlotSpec, cell: f64) {
    let x = LEFT as f64 + run.first_column as f64 * cell;
    let y = TOP + run.day_row * ROW_H;
    let title = if run.slots == 1 {
        format!("{} {}", spec.local_iso(run.first), run.class)
    } else {
        format!(
            "{} to {}: {} ({} slots)",
            spec.local_iso(run.first),
            spec.local_iso(run.last),
            run.class,
            run.slots
        )
    };
    let rect = format!(
        r#"<rect class="slot {class}" data-slots="{n}" x="{x:.1}" y="{y}" width="{w:.1}" height="{h}"><title>{title}</title></rect>"#,
        class = run.class,
        n = run.slots,
        w = run.slots as f64 * cell,
        h = ROW_H - 2,
        title = escape(&title),
    );
    if run.gap {
        let link = slots_link(dataset, spec, run.first, run.last);
        let _ = write!(svg, r#"<a href="{link}">{rect}</a>"#);
    } else {
        svg.push_str(&rect);
    }
}

fn legend(svg: &mut String, y: usize) {
    let mut x = LEFT;
    for (class, _, label) in CLASSES {
        let _ = write!(
            svg,
            r#"<rect class="{class}" x="{x}" y="{y}" width="10" height="10"/><text x="{}" y="{}">{label}</text>"#,
            x + 14,
            y + 9
        );
        x += 24 + label.len() * 6;
    }
}
