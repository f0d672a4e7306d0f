//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format.
//!
//! Built afresh at each scrape (a registry per request, so no label set
//! outlives its facts): slot counts, last runs, slot attempts, the latest
//! calibration and the watch's state come from the catalog, so they hold
//! across restarts and include CLI runs; origin calls, rate limits, the
//! budgets origins announced, events and watch checks are known to this
//! process (counters start at 0 with it, as Prometheus expects).
//!
//! Adding a metric: read its facts in [`CatalogFacts::read`] (or take them
//! from the process's counters) and register it in one of the `*_metrics`
//! functions with [`Families::gauge`] or [`Families::counter`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::catalog::{Catalog, LatestCalibration};
use crate::state::State as SlotState;

use super::counters::load;
use super::error::{ApiError, ServeError};
use super::state::AppState;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The registry being filled, with helpers to register one family each.
struct Families {
    registry: Registry,
}

impl Families {
    fn gauge(&mut self, name: &str, help: &str) -> Family<Labels, FloatGauge> {
        let family = Family::<Labels, FloatGauge>::default();
        self.registry.register(name, help, family.clone());
        family
    }

    /// Registered without `_total`; the encoder appends it.
    fn counter(&mut self, name: &str, help: &str) -> Family<Labels, Counter> {
        let family = Family::<Labels, Counter>::default();
        self.registry.register(name, help, family.clone());
        family
    }
}

fn dataset(name: &str) -> Labels {
    vec![("dataset", name.to_string())]
}

fn with(mut labels: Labels, key: &'static str, value: &str) -> Labels {
    labels.push((key, value.to_string()));
    labels
}

/// What the catalog says, read in one blocking call.
#[derive(Default)]
struct CatalogFacts {
    slots: Vec<(String, SlotState, u64)>,
    newest_valid: Vec<(String, i64)>,
    last_runs: Vec<(String, String, String, f64)>,
    attempts: Vec<(String, String, u64)>,
    /// (dataset, last check as Unix seconds, an incident is open)
    watches: Vec<(String, Option<f64>, bool)>,
    /// Each configured dataset's latest conclusive calibration.
    calibrations: Vec<LatestCalibration>,
}

impl CatalogFacts {
    fn read(c: &Catalog, names: &[String]) -> Result<CatalogFacts, ServeError> {
        let mut facts = CatalogFacts {
            last_runs: c.last_runs()?,
            attempts: c.fill_attempt_counts()?,
            calibrations: c.latest_calibrations()?,
            ..CatalogFacts::default()
        };
        facts.calibrations.retain(|l| names.contains(&l.dataset));
        for name in names {
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
                facts.slots.push((name.clone(), s, counts.get(s)));
            }
            if let Some(slot) = c.newest_ok_slot(id, false)? {
                facts.newest_valid.push((name.clone(), slot));
            }
            let checked = c
                .watch_check(id)?
                .and_then(|w| chrono::DateTime::parse_from_rfc3339(&w.checked_at).ok())
                .map(|t| t.timestamp_millis() as f64 / 1000.0);
            let open = c.open_incident(id)?.is_some();
            facts.watches.push((name.clone(), checked, open));
        }
        Ok(facts)
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let names = state.dataset_names();
    let facts = state
        .read(move |c| CatalogFacts::read(c, &names))
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let mut families = Families {
        registry: Registry::default(),
    };
    catalog_metrics(&mut families, &facts, &state);
    calibration_metrics(&mut families, &facts.calibrations);
    process_metrics(&mut families, &state);
    budget_metrics(&mut families);
    event_metrics(&mut families, &state);
    let mut body = String::new();
    encode(&mut body, &families.registry)
        .map_err(|e| ApiError::Internal(format!("cannot encode the metrics: {e}")))?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn catalog_metrics(m: &mut Families, facts: &CatalogFacts, state: &AppState) {
    let slots = m.gauge("slotfill_slots", "Catalogued slots by state");
    for (name, s, n) in &facts.slots {
        let labels = with(dataset(name), "state", s.as_str());
        slots.get_or_create(&labels).set(*n as f64);
    }
    let newest = m.gauge(
        "slotfill_newest_valid_slot_timestamp_seconds",
        "Start of the newest slot that is ok (any location), Unix seconds",
    );
    for (name, slot) in &facts.newest_valid {
        newest.get_or_create(&dataset(name)).set(*slot as f64);
    }
    let last_run = m.gauge(
        "slotfill_last_run_timestamp_seconds",
        "When the last run of each command ended with each outcome, Unix seconds",
    );
    for (name, command, outcome, at) in &facts.last_runs {
        let labels = with(with(dataset(name), "command", command), "outcome", outcome);
        last_run.get_or_create(&labels).set(*at);
    }
    let attempts = m.counter(
        "slotfill_fill_attempts",
        "Slot fill attempts recorded in the catalog, by outcome",
    );
    for (name, outcome, n) in &facts.attempts {
        let labels = with(dataset(name), "outcome", outcome);
        attempts.get_or_create(&labels).inc_by(*n);
    }
    let watched = |name: &str| state.settings.watches.iter().any(|(w, _)| w == name);
    let last_check = m.gauge(
        "slotfill_watch_last_check_timestamp_seconds",
        "When the freshness watch last checked (any serve process), Unix seconds",
    );
    let incident = m.gauge(
        "slotfill_watch_incident_open",
        "1 while a freshness incident of the dataset is open",
    );
    for (name, checked, open) in facts.watches.iter().filter(|(n, ..)| watched(n)) {
        if let Some(at) = checked {
            last_check.get_or_create(&dataset(name)).set(*at);
        }
        incident
            .get_or_create(&dataset(name))
            .set(if *open { 1.0 } else { 0.0 });
    }
}

fn calibration_metrics(m: &mut Families, latest: &[LatestCalibration]) {
    let recall = m.gauge(
        "slotfill_calibration_recall",
        "Share (0-1) of the archived notes the origin returned at the latest conclusive calibration",
    );
    let blind = m.gauge(
        "slotfill_calibration_blind",
        "1 when the latest conclusive calibration found the origin blind to the archived notes",
    );
    let at = m.gauge(
        "slotfill_calibration_timestamp_seconds",
        "When the latest conclusive calibration was made, Unix seconds",
    );
    for l in latest {
        let labels = dataset(&l.dataset);
        if let Some(r) = l.recall {
            recall.get_or_create(&labels).set(r);
        }
        let is_blind = l.verdict == "blind";
        blind
            .get_or_create(&labels)
            .set(if is_blind { 1.0 } else { 0.0 });
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&l.calibrated_at) {
            at.get_or_create(&labels)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
    }
}

/// The rate-limit budget each origin last announced to this process.
fn budget_metrics(m: &mut Families) {
    let remaining = m.gauge(
        "slotfill_origin_ratelimit_remaining",
        "Calls left in the origin's rate-limit window, as it last announced",
    );
    let limit = m.gauge(
        "slotfill_origin_ratelimit_limit",
        "Calls the origin's rate-limit window allows, when announced",
    );
    let reset = m.gauge(
        "slotfill_origin_ratelimit_reset_seconds",
        "Seconds until the origin's announced rate-limit window resets (0 once past)",
    );
    let now = crate::clock::now();
    for (origin, budget) in crate::source::pacer::budgets() {
        let labels = vec![("origin", origin)];
        remaining
            .get_or_create(&labels)
            .set(budget.remaining as f64);
        if let Some(n) = budget.limit {
            limit.get_or_create(&labels).set(n as f64);
        }
        let left = (budget.resets_at - now).num_milliseconds().max(0);
        reset.get_or_create(&labels).set(left as f64 / 1000.0);
    }
}

fn process_metrics(m: &mut Families, state: &AppState) {
    let calls = m.counter(
        "slotfill_origin_calls",
        "Origin API calls made by this process's fills",
    );
    let limited = m.counter(
        "slotfill_origin_rate_limited",
        "Rate-limit answers (429) the origin gave this process's fills",
    );
    let checks = m.counter(
        "slotfill_watch_checks",
        "Freshness checks made by this process",
    );
    let alerts = m.counter(
        "slotfill_watch_alerts",
        "Freshness incidents opened or closed (webhook messages) by this process",
    );
    let overdue = m.gauge(
        "slotfill_overdue_slots",
        "Gap slots past the freshness grace at the last check",
    );
    let running = m.gauge(
        "slotfill_run_in_progress",
        "1 while a run or a watch fill of the dataset is in progress",
    );
    for name in state.dataset_names() {
        let Some(handle) = state.dataset(&name) else {
            continue;
        };
        let (c, labels) = (&handle.counters, dataset(&name));
        calls.get_or_create(&labels).inc_by(load(&c.origin_calls));
        limited.get_or_create(&labels).inc_by(load(&c.rate_limited));
        if state.settings.watches.iter().any(|(w, _)| *w == name) {
            checks.get_or_create(&labels).inc_by(load(&c.watch_checks));
            alerts.get_or_create(&labels).inc_by(load(&c.alerts));
            overdue.get_or_create(&labels).set(load(&c.overdue) as f64);
        }
        let busy = state.active(&name).is_some();
        running
            .get_or_create(&labels)
            .set(if busy { 1.0 } else { 0.0 });
    }
}

fn event_metrics(m: &mut Families, state: &AppState) {
    let events = m.counter(
        "slotfill_s3_events",
        "S3 event records received, by what became of them",
    );
    let e = &state.events;
    for (outcome, n) in [
        ("applied", &e.applied),
        ("ignored", &e.ignored),
        ("unchanged", &e.unchanged),
        ("failed", &e.failed),
    ] {
        let labels = vec![("outcome", outcome.to_string())];
        events.get_or_create(&labels).inc_by(load(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blind_calibration_is_1_and_one_without_a_recall_has_no_recall() {
        let latest = [
            LatestCalibration {
                dataset: "jp".into(),
                verdict: "blind".into(),
                recall: Some(0.0),
                calibrated_at: "2025-08-14T00:00:00.000Z".into(),
            },
            LatestCalibration {
                dataset: "eu".into(),
                verdict: "ok".into(),
                recall: None,
                calibrated_at: "2025-08-14T00:00:01.500Z".into(),
            },
        ];
        let mut families = Families {
            registry: Registry::default(),
        };
        calibration_metrics(&mut families, &latest);
        let mut body = String::new();
        encode(&mut body, &families.registry).unwrap();
        for line in [
            "slotfill_calibration_blind{dataset=\"jp\"} 1.0",
            "slotfill_calibration_recall{dataset=\"jp\"} 0.0",
            "slotfill_calibration_blind{dataset=\"eu\"} 0.0",
            "slotfill_calibration_timestamp_seconds{dataset=\"eu\"} 1755129601.5",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
        }
        assert!(!body.contains("slotfill_calibration_recall{dataset=\"eu\"}"));
    }
}
