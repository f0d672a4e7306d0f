//! The dashboard: server-rendered HTML pages, no script (every link is a
//! plain link, the overview reloads itself every 30 seconds). It shows no
//! secret: run records hold command lines with secrets already removed, and
//! webhook URLs and tokens are never rendered.
//!
//! - `GET /`: every dataset's [`section`]: the run in progress and how far it
//!   got, slot counts by state, the heatmap of the fortnight ending with the
//!   newest catalogued slot (the data, not the wall clock, decides the
//!   window), the open gap periods, the watch and its incidents, the recent
//!   runs;
//! - `GET /datasets/{dataset}?end=YYYY-MM-DD`: one dataset's section with the
//!   fortnight ending on `end`, and links to the previous and next fortnight;
//! - [`detail`]: `GET /datasets/{dataset}/slots?start=…&end=…` (a period's
//!   slots, their attempts, outcomes and last errors) and `GET /runs/{id}`
//!   (the record, its calibrations and provenance ([`proof`]), its attempts).

mod detail;
mod heatmap;
mod html;
mod proof;
mod section;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;

use crate::config::Dataset;

use super::error::ApiError;
use super::params::known_params;
use super::state::AppState;
pub use detail::{run_page, slots_page};
pub use html::error_page;
pub use section::HEATMAP_DAYS;
use section::{Section, WatchView};

/// `GET /`
pub async fn overview(State(state): State<Arc<AppState>>) -> Result<Html<String>, ApiError> {
    let datasets = state.settings.datasets.clone();
    let sections = sections(&state, datasets, None).await?;
    let mut body = meta_line();
    if sections.is_empty() {
        body.push_str("<p>No dataset is configured.</p>");
    }
    for s in &sections {
        section::render(&mut body, s);
    }
    Ok(Html(html::page("slotfill", &body, true)))
}

/// `GET /datasets/{dataset}?end=YYYY-MM-DD`
pub async fn dataset_page(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, ApiError> {
    known_params(&query, &["end"])?;
    let handle = state
        .dataset(&name)
        .ok_or_else(|| ApiError::unknown_dataset(&name))?;
    let end = query
        .get("end")
        .map(|text| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                ApiError::BadRequest(format!("end is a date like 2025-08-14 (got {text:?})"))
            })
        })
        .transpose()?;
    let sections = sections(&state, vec![handle.ds.clone()], end).await?;
    let mut body = meta_line();
    for s in &sections {
        section::render(&mut body, s);
    }
    Ok(Html(html::page(
        &format!("slotfill: {name}"),
        &body,
        end.is_none(),
    )))
}

fn meta_line() -> String {
    format!(
        "<p class=\"meta\">As of {} · <a href=\"/metrics\">metrics</a> · <a href=\"/api/openapi.json\">API</a></p>",
        html::escape(&crate::clock::timestamp_text(crate::clock::now()))
    )
}

/// Reads the sections of `datasets` from the catalog in one blocking call.
async fn sections(
    state: &AppState,
    datasets: Vec<Dataset>,
    end: Option<chrono::NaiveDate>,
) -> Result<Vec<Section>, ApiError> {
    let inputs: Vec<_> = datasets
        .into_iter()
        .map(|ds| {
            let active = state.active(&ds.name);
            let watch = watch_view(state, &ds.name);
            (ds, active, watch)
        })
        .collect();
    let sections = state
        .read(move |c| {
            inputs
                .into_iter()
                .map(|(ds, active, watch)| section::read(c, &ds, active, watch, end))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| ApiError::Unavailable(format!("the catalog cannot be read: {e}")))?;
    Ok(sections)
}

/// The watch's settings and this process's counters, if the dataset has one.
fn watch_view(state: &AppState, name: &str) -> Option<WatchView> {
    let (_, freshness) = state.settings.watches.iter().find(|(n, _)| n == name)?;
    let handle = state.dataset(name)?;
    Some(WatchView {
        freshness: freshness.clone(),
        checks_here: super::counters::load(&handle.counters.watch_checks),
    })
}
