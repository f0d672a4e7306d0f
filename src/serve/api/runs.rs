//! `POST /api/datasets/{dataset}/runs` and `GET /api/runs/{id}`: runs started
//! over HTTP and their records.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::catalog::{CalibrationRecord, ProvenanceSummary, RunRecord};
use crate::slot::{SlotSpec, Window};

use super::super::error::ApiError;
use super::super::params::{in_range, parse_run_id};
use super::super::runs::RunRequest;
use super::super::state::AppState;

/// The JSON body of `POST /api/datasets/{dataset}/runs`; the query's
/// parameters of the same names override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    pub start: Option<String>,
    pub end: Option<String>,
    /// `YYYY-MM-DD`: the last day of the window (with `days`).
    pub date: Option<String>,
    pub days: Option<u32>,
    pub max_slots: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// 202's body.
#[derive(Debug, Serialize)]
pub struct RunStarted {
    pub run_id: i64,
}

pub async fn start_run(
    State(state): State<Arc<AppState>>,
    Path(dataset): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let handle = state
        .dataset(&dataset)
        .ok_or_else(|| ApiError::unknown_dataset(&dataset))?;
    let spec = &handle.ds.spec;
    let body = run_body(&query, &body).map_err(ApiError::BadRequest)?;
    let mut request = window_of(spec, body).map_err(ApiError::BadRequest)?;
    request.origin = format!(
        "slotfill serve: POST /api/datasets/{dataset}/runs ({} to {}{})",
        request
            .window
            .map(|w| spec.local_iso(w.first))
            .unwrap_or_default(),
        request
            .window
            .map(|w| spec.local_iso(w.last))
            .unwrap_or_default(),
        if request.dry_run { ", dry run" } else { "" }
    );
    let run_id = super::super::runs::start(&state, &dataset, request).await?;
    let mut response = (StatusCode::ACCEPTED, Json(RunStarted { run_id })).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/runs/{run_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn run_body(query: &HashMap<String, String>, body: &[u8]) -> Result<RunBody, String> {
    let mut parsed = if body.iter().all(u8::is_ascii_whitespace) {
        RunBody::default()
    } else {
        serde_json::from_slice::<RunBody>(body).map_err(|e| {
            format!(
                "the body is not a run request ({}); send {{\"start\": \"-3d\", \"end\": \"-1d\"}} or ?date=YYYY-MM-DD&days=N",
                crate::redact::one_line(&e.to_string())
            )
        })?
    };
    for (key, value) in query {
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what} must be a whole number (got {value:?})"))
        };
        match key.as_str() {
            "start" => parsed.start = Some(value.clone()),
            "end" => parsed.end = Some(value.clone()),
            "date" => parsed.date = Some(value.clone()),
            "days" => {
                let days = number("days")?;
                parsed.days =
                    Some(u32::try_from(days).map_err(|_| "days is too large".to_string())?);
            }
            "max_slots" => parsed.max_slots = Some(number("max_slots")?),
            "dry_run" => {
                parsed.dry_run = match value.as_str() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("dry_run is true or false (got {value:?})")),
                }
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(parsed)
}

fn window_of(spec: &SlotSpec, body: RunBody) -> Result<RunRequest, String> {
    if body.days.is_some() && body.date.is_none() {
        return Err("days goes with date".to_string());
    }
    let window = match (&body.start, &body.end, &body.date) {
        (Some(start), Some(end), None) => {
            Window::parse(spec, start, end, crate::clock::now()).map_err(|e| e.to_string())?
        }
        (None, None, Some(date)) => {
            let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| format!("date must look like 2025-08-14 (got {date:?})"))?;
            let days = body.days.unwrap_or(1);
            if !(1..=crate::slot::MAX_WINDOW_DAYS as u32).contains(&days) {
                return Err(format!(
                    "days must be between 1 and {}",
                    crate::slot::MAX_WINDOW_DAYS
                ));
            }
            let first_day = day
                .checked_sub_days(chrono::Days::new(u64::from(days - 1)))
                .ok_or_else(|| format!("date {date} minus {days} days is out of range"))?;
            Window {
                first: spec.day_bounds(first_day).0,
                last: spec.day_bounds(day).1,
            }
        }
        (None, None, None) => {
            return Err(
                "give a window: {\"start\": \"-3d\", \"end\": \"-1d\"} or ?date=YYYY-MM-DD&days=N"
                    .to_string(),
            );
        }
        _ => {
            return Err("give start and end, or date (with days), not a mix".to_string());
        }
    };
    Ok(RunRequest {
        window: Some(in_range(window)?),
        max_slots: body.max_slots,
        dry_run: body.dry_run,
        origin: String::new(),
    })
}

/// `GET /api/runs/{id}`: the record, its state, the exit status the CLI
/// would have ended with, its progress while it runs, its calibrations and
/// how its attempts obtained their notes.
#[derive(Debug, Serialize)]
pub struct RunDocument {
    #[serde(flatten)]
    pub record: RunRecord,
    pub state: &'static str,
    pub exit_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    pub calibrations: Vec<CalibrationRecord>,
    pub provenance: Vec<ProvenanceSummary>,
}

#[derive(Debug, Serialize)]
pub struct Progress {
    pub phase: &'static str,
    pub slots_attempted: u64,
}

pub async fn run_record(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<RunDocument>, ApiError> {
    let id = parse_run_id(&id)?;
    let active = state.active_run(id);
    let (record, attempts, calibrations, provenance) = state
        .read(move |c| {
            Ok((
                c.run_record(id)?,
                c.finished_attempts(id)?,
                c.run_calibrations(id)?,
                c.run_provenance(id)?,
            ))
        })
        .await?;
    let record = record.ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    let state_text = match (&record.finished_at, &active) {
        (Some(_), _) => "finished",
        (None, Some(_)) => "running",
        // Not finished and not running here: its process was killed.
        (None, None) => "abandoned",
    };
    Ok(Json(RunDocument {
        exit_status: record.outcome.map(crate::error::exit_code),
        state: state_text,
        progress: active.map(|run| Progress {
            phase: run.progress.phase(),
            slots_attempted: attempts,
        }),
        record,
        calibrations,
        provenance,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_windows_from_the_body_or_the_date_form() {
        let spec = SlotSpec::new(10, "+09:00", crate::config::DEFAULT_KEY_TEMPLATE).unwrap();
        let query = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let body = run_body(&query(&[("date", "2025-08-14"), ("days", "3")]), b"").unwrap();
        let window = window_of(&spec, body).unwrap().window.unwrap();
        assert_eq!(spec.local_iso(window.first), "2025-08-12T00:00:00+09:00");
        assert_eq!(spec.local_iso(window.last), "2025-08-14T23:50:00+09:00");
        let body = run_body(
            &query(&[]),
            br#"{"start": "2025-08-01T00:00", "end": "2025-08-01T00:50", "max_slots": 3}"#,
        )
        .unwrap();
        let request = window_of(&spec, body).unwrap();
        assert_eq!(request.window.unwrap().slot_count(&spec), 6);
        assert_eq!(request.max_slots, Some(3));
        for (pairs, body) in [
            (vec![("days", "3")], &b""[..]),
            (vec![("date", "14/08/2025")], b""),
            (vec![("date", "2025-08-14"), ("days", "0")], b""),
            (vec![("date", "2025-08-14"), ("days", "99999999999")], b""),
            (vec![("date", "1970-01-01"), ("days", "3")], b""),
            (vec![("date", "+99999-01-01")], b""),
            (vec![("dry_run", "perhaps"), ("date", "2025-08-14")], b""),
            (vec![("colour", "red")], b""),
            (vec![], br#"{"start": "-1d"}"#),
            (vec![], b"{"),
            (vec![], b""),
        ] {
            let parsed = run_body(&query(&pairs), body).and_then(|b| window_of(&spec, b));
            assert!(parsed.is_err(), "{pairs:?} {body:?}");
        }
    }
}
