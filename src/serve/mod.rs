//! `slotfill serve`: the always-on mode, one more front end over the library.
//!
//! One process, one tokio runtime, one catalog (WAL: the dashboard reads while
//! a fill writes). Everything here calls the pieces the CLI calls:
//!
//! - [`api`]: the HTTP listener: `/healthz`, the dashboard pages, `/metrics`,
//!   `/api/openapi.json` and `/api/…` (bearer token, bodies up to 1 MiB), all
//!   from one route table that the OpenAPI document is generated from;
//! - [`runs`]: triggered and scheduled runs, each `slotfill run`'s pipeline
//!   inside the one run lifecycle (`Session::record`): a run record, the
//!   notification, one run per dataset at a time;
//! - [`events`]: S3 event notifications keep the catalog current without a scan;
//! - [`watch`]: the freshness watch lists the newest day prefixes, alerts once
//!   per incident (incidents and alerts live in the catalog, so a restart
//!   does not alert again) and fills overdue slots;
//! - [`schedule`]: the built-in cron;
//! - [`dashboard`] and [`metrics`]: read-only views of the catalog;
//! - [`state`]: what the handlers and tasks share, built on the leaves
//!   [`counters`], [`progress`] and [`locks`]; [`params`]: the parameters the
//!   API and the pages share; [`error`]: serve's errors and the HTTP error
//!   answer.
//!
//! Imports run one way: the entry and [`api`] over the handlers (runs,
//! events, watch, schedule, metrics, dashboard) over [`state`] over the
//! leaves.
//!
//! Every timer reads the injectable clock ([`crate::clock`]), so a test clock
//! that runs fast shrinks check intervals, schedules and waits alike.
//!
//! On SIGINT or SIGTERM the listener stops accepting, runs in flight are
//! abandoned the way an interrupted `slotfill run` is (recorded as
//! `interrupted`; what was committed stays), and the process exits 0.

pub mod api;
pub mod counters;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod locks;
pub mod metrics;
pub mod params;
pub mod progress;
pub mod runs;
pub mod schedule;
pub mod state;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use crate::run::{Global, Outcome};

pub use crate::config::serve::Settings;
pub use error::{ApiError, ServeError};
pub use state::AppState;

/// `slotfill serve` as the command line gives it.
#[derive(Debug, Clone, Default)]
pub struct ServeCommand {
    pub listen: Option<String>,
}

/// How long runs in flight get to record that they were interrupted (real time).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(global: &Global, cmd: &ServeCommand) -> crate::error::Result<Outcome> {
    Ok(run(global, cmd).await?)
}

async fn run(global: &Global, cmd: &ServeCommand) -> Result<Outcome, ServeError> {
    let config = global.load_config()?;
    let settings = Settings::check(&config, cmd.listen.as_deref())?;
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(settings.listen.as_str())
        .await
        .map_err(|e| ServeError::ListenAddress {
            addr: settings.listen.clone(),
            message: e.to_string(),
        })?
        .collect();
    settings.check_exposure(&addrs)?;
    let state = AppState::open(config, global.clone(), settings).await?;
    let bind_error = |e: std::io::Error| ServeError::Bind {
        addr: state.settings.listen.clone(),
        message: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(addrs.as_slice())
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let background = start_background(&state);
    // Installed before the line below: a signal sent as soon as it is read is handled.
    let signal = crate::run::stop_signal();
    // People and tests read this line to find the port (`--listen 127.0.0.1:0`).
    println!(
        "slotfill serve: listening on http://{local} ({} datasets, {} schedules, {} watches, API token {})",
        state.datasets.len(),
        state.settings.schedules.len(),
        state.settings.watches.len(),
        if state.settings.token.is_some() {
            "required"
        } else {
            "not configured"
        }
    );
    let stopper = state.shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        println!(
            "slotfill serve: stopping; work in flight is abandoned and recorded as interrupted"
        );
        stopper.trigger();
    });
    let app = api::router(state.clone());
    let graceful = state.shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { graceful.wait().await })
        .await;
    state.shutdown.trigger();
    let tasks = state.take_tasks();
    let wait_all = async {
        for task in tasks.into_iter().chain(background) {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, wait_all)
        .await
        .is_err()
    {
        tracing::warn!("some work did not stop in time; a rerun resumes it");
    }
    served.map_err(|e| ServeError::Task(format!("the listener failed: {e}")))?;
    println!("slotfill serve: stopped");
    Ok(Outcome::OK)
}

/// Starts the watches and the schedules.
fn start_background(state: &Arc<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut background = Vec::new();
    for (name, freshness) in &state.settings.watches {
        let task = watch::watch(state.clone(), name.clone(), freshness.clone());
        background.push(tokio::spawn(task));
    }
    for entry in &state.settings.schedules {
        background.push(tokio::spawn(schedule::schedule(
            state.clone(),
            entry.clone(),
        )));
    }
    background
}
