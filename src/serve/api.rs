//! The HTTP listener: routes, the bearer token, the 1 MiB body limit.
//!
//! | path | |
//! |---|---|
//! | `GET /healthz` | `ok`, no token (probes) |
//! | `GET /` | the dashboard (HTML) |
//! | `GET /metrics` | Prometheus / OpenMetrics text (token) |
//! | `POST /api/datasets/{dataset}/runs` | start a run: 202 `{"run_id": N}`, 409 while one runs |
//! | `GET /api/runs/{id}` | a run record, with its progress while it runs |
//! | `GET /api/datasets/{dataset}/gaps` | as `gaps --format json` |
//! | `POST /api/events/s3` | S3 event notifications |
//!
//! Errors are JSON `{"error": "one line"}`. The token is compared in
//! constant time and never logged; a wrong or missing one is 401.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::report::Format;
use crate::slot::Window;

use super::AppState;
use super::runs::{RunRequest, StartError};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1 << 20;

pub fn router(state: Arc<AppState>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(super::metrics::metrics))
        .route("/api/datasets/{dataset}/runs", post(trigger_run))
        .route("/api/runs/{id}", get(run_record))
        .route("/api/datasets/{dataset}/gaps", get(gaps))
        .route("/api/events/s3", post(s3_events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(super::dashboard::dashboard))
        .merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// `{"error": "…"}` with a status.
pub fn error(status: StatusCode, message: &str) -> Response {
    let message = crate::redact::one_line(message);
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), "http");
    response
}

/// 401 unless the request carries the configured token (`Authorization:
/// Bearer T`, or Basic with T as the password, for senders such as SNS that
/// can only put credentials in the URL).
async fn require_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.settings.token.as_deref() else {
        return next.run(request).await;
    };
    if presented_token(&headers)
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
    {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API token (send Authorization: Bearer <token>)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"slotfill\""),
    );
    response
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = aws_smithy_types::base64::decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        return decoded
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    None
}

/// `POST /api/datasets/{dataset}/runs`: JSON body fields, or the query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    start: Option<String>,
    end: Option<String>,
    /// `YYYY-MM-DD`: the last day of the window (with `days`).
    date: Option<String>,
    days: Option<u32>,
    max_slots: Option<u64>,
    #[serde(default)]
    dry_run: bool,
}

async fn trigger_run(
    State(state): State<Arc<AppState>>,
    Path(dataset): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let Some(handle) = state.dataset(&dataset) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("unknown dataset {dataset:?}"),
        );
    };
    let request = match run_body(&query, &body).and_then(|b| window_of(&handle.ds.spec, b)) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let request = RunRequest {
        origin: format!(
            "slotfill serve: POST /api/datasets/{dataset}/runs ({} to {}{})",
            request
                .window
                .map(|w| handle.ds.spec.local_iso(w.first))
                .unwrap_or_default(),
            request
                .window
                .map(|w| handle.ds.spec.local_iso(w.last))
                .unwrap_or_default(),
            if request.dry_run { ", dry run" } else { "" }
        ),
        ..request
    };
    match super::runs::start(&state, &dataset, request).await {
        Ok(run_id) => {
            let mut response = (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "run_id": run_id })),
            )
                .into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/api/runs/{run_id}")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e @ StartError::UnknownDataset(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ StartError::Busy(_)) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e @ StartError::Invalid(_)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ StartError::Failed(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
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
            "days" => parsed.days = Some(number("days")? as u32),
            "max_slots" => parsed.max_slots = Some(number("max_slots")?),
            "dry_run" => parsed.dry_run = matches!(value.as_str(), "1" | "true" | "yes"),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(parsed)
}

fn window_of(spec: &crate::slot::SlotSpec, body: RunBody) -> Result<RunRequest, String> {
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
            let first_day = day - chrono::Days::new(u64::from(days - 1));
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
    if body.days.is_some() && body.date.is_none() {
        return Err("days goes with date".to_string());
    }
    Ok(RunRequest {
        window: Some(window),
        max_slots: body.max_slots,
        dry_run: body.dry_run,
        origin: String::new(),
    })
}

/// `GET /api/runs/{id}`
async fn run_record(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "a run id is a number");
    };
    let active = state.active_run(id);
    let found = state
        .read(move |c| {
            let record = c.run_record(id)?;
            let attempts = c.finished_attempts(id)?;
            Ok((record, attempts))
        })
        .await;
    let (record, attempts) = match found {
        Ok(found) => found,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let Some(record) = record else {
        return error(StatusCode::NOT_FOUND, &format!("no run {id}"));
    };
    let state_text = match (&record.finished_at, &active) {
        (Some(_), _) => "finished",
        (None, Some(_)) => "running",
        // Not finished and not running here: its process was killed.
        (None, None) => "abandoned",
    };
    let mut doc = serde_json::to_value(&record).unwrap_or_default();
    doc["state"] = json!(state_text);
    doc["exit_status"] = json!(record.exit_status());
    if let Some(run) = active {
        doc["progress"] = json!({
            "phase": run.progress.phase(),
            "slots_attempted": attempts,
        });
    }
    axum::Json(doc).into_response()
}

/// `GET /api/datasets/{dataset}/gaps?start=…&end=…`: the rows of `gaps --format json`.
async fn gaps(
    State(state): State<Arc<AppState>>,
    Path(dataset): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(handle) = state.dataset(&dataset) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("unknown dataset {dataset:?}"),
        );
    };
    let ds = handle.ds.clone();
    let window = match (query.get("start"), query.get("end")) {
        (Some(start), Some(end)) => {
            match Window::parse(&ds.spec, start, end, crate::clock::now()) {
                Ok(w) => Some(w),
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        (None, None) => None,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give both start and end, or neither",
            );
        }
    };
    let written = state
        .read(move |c| {
            let row = c.dataset_row_for(&ds)?;
            let range = match window {
                Some(w) => (w.first, w.last),
                None => c.slot_extent(row.id)?.unwrap_or((0, -1)),
            };
            let mut out = Vec::new();
            let states = crate::commands::gaps::included_states(&ds);
            crate::report::gaps::write_gaps(
                &mut out,
                c,
                row.id,
                &ds.spec,
                range,
                &states,
                Format::Json,
            )?;
            Ok(out)
        })
        .await;
    match written {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(crate::error::Error::Catalog(e @ crate::catalog::CatalogError::UnknownDataset(_))) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /api/events/s3`
async fn s3_events(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let records = match super::events::parse(&body) {
        Ok(records) => records,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    match super::events::apply(&state, &records).await {
        Ok(applied) => axum::Json(applied).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_as_bearer_or_as_the_basic_password() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc123"),
        );
        assert_eq!(presented_token(&headers).as_deref(), Some("abc123"));
        // "slotfill:abc123", as SNS sends credentials given in the URL.
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic c2xvdGZpbGw6YWJjMTIz"),
        );
        assert_eq!(presented_token(&headers).as_deref(), Some("abc123"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Token abc123"),
        );
        assert_eq!(presented_token(&headers), None);
    }

    #[test]
    fn run_windows_from_the_body_or_the_date_form() {
        let spec =
            crate::slot::SlotSpec::new(10, "+09:00", crate::config::DEFAULT_KEY_TEMPLATE).unwrap();
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
