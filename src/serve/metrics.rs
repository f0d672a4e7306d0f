//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format.
//!
//! Built afresh at each scrape (a registry per request, so no label set
//! outlives its facts): slot counts, last runs and slot attempts come from
//! the catalog, so they hold across restarts and include CLI runs; origin
//! calls, rate limits, events and watch checks are counted by this process
//! (counters start at 0 with it, as Prometheus expects).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::State as SlotState;

use super::AppState;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// What the catalog says, read in one blocking call.
struct CatalogFacts {
    slots: Vec<(String, SlotState, u64)>,
    newest_valid: Vec<(String, i64)>,
    last_runs: Vec<(String, String, String, f64)>,
    attempts: Vec<(String, String, u64)>,
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let names = state.dataset_names();
    let facts = state
        .read(move |c| {
            let mut slots = Vec::new();
            let mut newest_valid = Vec::new();
            for name in &names {
                let Some(id) = c.dataset_id(name)? else {
                    continue;
                };
                let counts = match c.slot_extent(id)? {
                    Some(extent) => c.slot_states(id, extent)?,
                    None => Default::default(),
                };
                for s in SlotState::ALL
                    .into_iter()
                    .filter(|s| *s != SlotState::Unchecked)
                {
                    slots.push((name.clone(), s, counts.get(s)));
                }
                if let Some(slot) = c.newest_ok_slot(id, false)? {
                    newest_valid.push((name.clone(), slot));
                }
            }
            Ok(CatalogFacts {
                slots,
                newest_valid,
                last_runs: c.last_runs()?,
                attempts: c.fill_attempt_counts()?,
            })
        })
        .await;
    let facts = match facts {
        Ok(facts) => facts,
        Err(e) => return super::api::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let mut registry = Registry::default();
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, FloatGauge>::default();
        registry.register(name, help, family.clone());
        family
    };
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let ds = |name: &str| vec![("dataset", name.to_string())];

    let slots = gauge(&mut registry, "slotfill_slots", "Catalogued slots by state");
    for (name, s, n) in &facts.slots {
        let mut labels = ds(name);
        labels.push(("state", s.as_str().to_string()));
        slots.get_or_create(&labels).set(*n as f64);
    }
    let newest = gauge(
        &mut registry,
        "slotfill_newest_valid_slot_timestamp_seconds",
        "Start of the newest slot that is ok (any location), Unix seconds",
    );
    for (name, slot) in &facts.newest_valid {
        newest.get_or_create(&ds(name)).set(*slot as f64);
    }
    let last_run = gauge(
        &mut registry,
        "slotfill_last_run_timestamp_seconds",
        "When the last run of each command ended with each outcome, Unix seconds",
    );
    for (name, command, outcome, at) in &facts.last_runs {
        let mut labels = ds(name);
        labels.push(("command", command.clone()));
        labels.push(("outcome", outcome.clone()));
        last_run.get_or_create(&labels).set(*at);
    }
    let attempts = counter(
        &mut registry,
        "slotfill_fill_attempts",
        "Slot fill attempts recorded in the catalog, by outcome",
    );
    for (name, outcome, n) in &facts.attempts {
        let mut labels = ds(name);
        labels.push(("outcome", outcome.clone()));
        attempts.get_or_create(&labels).inc_by(*n);
    }
    let calls = counter(
        &mut registry,
        "slotfill_origin_calls",
        "Origin API calls made by this process's fills",
    );
    let limited = counter(
        &mut registry,
        "slotfill_origin_rate_limited",
        "Rate-limit answers (429) the origin gave this process's fills",
    );
    let checks = counter(
        &mut registry,
        "slotfill_watch_checks",
        "Freshness checks made by this process",
    );
    let alerts = counter(
        &mut registry,
        "slotfill_watch_alerts",
        "Freshness incidents opened or closed (webhook messages) by this process",
    );
    let overdue = gauge(
        &mut registry,
        "slotfill_overdue_slots",
        "Gap slots past the freshness grace at the last check",
    );
    let running = gauge(
        &mut registry,
        "slotfill_run_in_progress",
        "1 while a run or a watch fill of the dataset is in progress",
    );
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    for name in state.dataset_names() {
        let Some(handle) = state.dataset(&name) else {
            continue;
        };
        let c = &handle.counters;
        calls
            .get_or_create(&ds(&name))
            .inc_by(load(&c.origin_calls));
        limited
            .get_or_create(&ds(&name))
            .inc_by(load(&c.rate_limited));
        if state.settings.watches.iter().any(|(w, _)| *w == name) {
            checks
                .get_or_create(&ds(&name))
                .inc_by(load(&c.watch_checks));
            alerts.get_or_create(&ds(&name)).inc_by(load(&c.alerts));
            overdue
                .get_or_create(&ds(&name))
                .set(load(&c.overdue) as f64);
        }
        let busy = state.active(&name).is_some();
        running
            .get_or_create(&ds(&name))
            .set(if busy { 1.0 } else { 0.0 });
    }
    let events = counter(
        &mut registry,
        "slotfill_s3_events",
        "S3 event records received, by what became of them",
    );
    for (outcome, n) in [
        ("applied", &state.events.applied),
        ("ignored", &state.events.ignored),
        ("unchanged", &state.events.unchanged),
    ] {
        events
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc_by(load(n));
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        return super::api::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
