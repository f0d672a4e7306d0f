//! The parameters the API and the dashboard's pages share: windows given as
//! `start` and `end`, run ids, and the refusal of parameters a route does not
//! know.

use crate::catalog::RunId;
use std::collections::HashMap;

use crate::slot::{SlotSpec, Window};

use super::error::ApiError;

/// The slots a request may name: 1970 to 9999 (beyond, time arithmetic
/// would leave the calendar).
pub fn in_range(window: Window) -> Result<Window, String> {
    const LAST: i64 = 253_402_214_400; // 9999-12-31T00:00:00Z
    if window.first < 0 || window.last > LAST {
        return Err("the window must lie between 1970 and 9999".to_string());
    }
    Ok(window)
}

/// A window from `start` and `end` given together, or none.
pub fn optional_window(
    spec: &SlotSpec,
    query: &HashMap<String, String>,
) -> Result<Option<Window>, ApiError> {
    match (query.get("start"), query.get("end")) {
        (Some(start), Some(end)) => Window::parse(spec, start, end, crate::clock::now())
            .map_err(|e| e.to_string())
            .and_then(in_range)
            .map(Some)
            .map_err(ApiError::BadRequest),
        (None, None) => Ok(None),
        _ => Err(ApiError::BadRequest(
            "give both start and end, or neither".to_string(),
        )),
    }
}

/// Refuses query parameters the route does not know.
pub fn known_params(query: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match query.keys().find(|k| !known.contains(&k.as_str())) {
        Some(other) => Err(ApiError::BadRequest(format!(
            "unknown parameter {other:?} (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// A run id: a positive whole number.
pub fn parse_run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(RunId)
        .ok_or_else(|| ApiError::BadRequest("a run id is a positive whole number".to_string()))
}
