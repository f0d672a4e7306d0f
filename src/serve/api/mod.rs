//! The HTTP listener: the routes of [`routes::ROUTES`], the bearer token, the
//! 1 MiB body limit, and one shape for every error.
//!
//! Errors are JSON `{"error": "one line"}` ([`super::ApiError`]); whatever a
//! layer or extractor refuses on its own (a body over the limit, a wrong
//! method, a malformed query) is turned into that shape too, and into an
//! HTML page for a browser asking for one of the dashboard's pages. The token
//! is compared in constant time and never logged; a wrong or missing one is
//! 401.

pub mod openapi;
pub mod routes;
pub mod runs;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use subtle::ConstantTimeEq;

use crate::report::Format;

use super::error::{ApiError, ErrorMessage};
use super::params::{known_params, optional_window};
use super::state::AppState;
use routes::{Handler, Method, ROUTES};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1 << 20;
/// How much of a body without our error shape is read to name the problem.
const DETAIL_LIMIT: usize = 4096;

pub fn router(state: Arc<AppState>) -> Router {
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for route in ROUTES {
        let handler = method_router(route.handler, route.method);
        if route.token {
            guarded = guarded.route(route.path, handler);
        } else {
            open = open.route(route.path, handler);
        }
    }
    let guarded = guarded.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    open.merge(guarded)
        .fallback(|| async { ApiError::NotFound("no such path".to_string()) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(middleware::from_fn(error_bodies))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

fn method_router(handler: Handler, method: Method) -> MethodRouter<Arc<AppState>> {
    let filter = match method {
        Method::Get => MethodFilter::GET,
        Method::Post => MethodFilter::POST,
    };
    use super::dashboard as page;
    match handler {
        Handler::Health => on(filter, || async { "ok" }),
        Handler::Overview => on(filter, page::overview),
        Handler::DatasetPage => on(filter, page::dataset_page),
        Handler::SlotsPage => on(filter, page::slots_page),
        Handler::RunPage => on(filter, page::run_page),
        Handler::Metrics => on(filter, super::metrics::metrics),
        Handler::OpenApi => on(filter, openapi::document),
        Handler::StartRun => on(filter, runs::start_run),
        Handler::RunRecord => on(filter, runs::run_record),
        Handler::Gaps => on(filter, gaps),
        Handler::S3Events => on(filter, s3_events),
    }
}

async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), "http");
    response
}

/// Gives every error answer one shape: `{"error": "…"}`, or an HTML page for a
/// browser that asked for one.
async fn error_bodies(request: Request, next: Next) -> Response {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let ours = response.extensions().get::<ErrorMessage>().cloned();
    let message = match ours {
        Some(_) if !wants_html => return response,
        Some(ErrorMessage(message)) => message,
        None => {
            let (_, body) = response.into_parts();
            let text = axum::body::to_bytes(body, DETAIL_LIMIT)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let error = ApiError::for_status(status, &text);
            if !wants_html {
                return error.into_response();
            }
            crate::redact::one_line(&error.to_string())
        }
    };
    let page = super::dashboard::error_page(status, &message);
    (status, Html(page)).into_response()
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
    ApiError::Unauthorized.into_response()
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

/// `GET /api/datasets/{dataset}/gaps?start=…&end=…`: the rows of `gaps --format json`.
async fn gaps(
    State(state): State<Arc<AppState>>,
    Path(dataset): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let handle = state
        .dataset(&dataset)
        .ok_or_else(|| ApiError::unknown_dataset(&dataset))?;
    known_params(&query, &["start", "end"])?;
    let ds = handle.ds.clone();
    let window = optional_window(&ds.spec, &query)?;
    let json = state
        .read(move |c| {
            let row = c.dataset_row_for(&ds)?;
            let range = match window {
                Some(w) => (w.first, w.last),
                None => c.slot_extent(row.id)?.unwrap_or((0, -1)),
            };
            let mut out = Vec::new();
            let states = ds.gap_states();
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
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// `POST /api/events/s3`
async fn s3_events(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<axum::Json<super::events::Applied>, ApiError> {
    let records = super::events::parse(&body).map_err(ApiError::BadRequest)?;
    let applied = super::events::apply(&state, &records).await?;
    Ok(axum::Json(applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
}
