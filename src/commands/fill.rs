//! `slotfill fill`: complement the catalog's missing slots from the origin.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::RunSummary;
use crate::config::{Dataset, SourceKind};
use crate::error::{EXIT_FAILURE, Error, Result};
use crate::fill::{FillOptions, FillReport};
use crate::report::format::plural;
use crate::source::ids::IdScheme;
use crate::source::misskey::{Misskey, MisskeySettings, Mode};
use crate::source::{NoteFilter, NoteSource, SourceError};
use crate::store;

use super::{Global, Outcome, Selection, Session, require_window, resolve, until_interrupted};

/// Seconds a rate-limit answer without a wait of its own backs off at most.
pub const DEFAULT_RATE_LIMIT_WAIT_CAP: f64 = 60.0;

/// Origin settings given on the command line (they override the config).
#[derive(Debug, Clone, Default)]
pub struct SourceFlags {
    pub mode: Option<String>,
    pub token: Option<String>,
    pub host: Option<String>,
    pub base_url: Option<String>,
    pub sleep: Option<f64>,
    pub retry: Option<u32>,
    pub retry_wait: Option<f64>,
    pub timeout: Option<f64>,
    pub rate_limit_wait_cap: Option<f64>,
    pub keep_non_japanese: bool,
    pub max_pages: Option<u32>,
}

/// Fill options given on the command line.
#[derive(Debug, Clone, Default)]
pub struct FillFlags {
    pub max_slots: Option<u64>,
    pub newest_first: bool,
    pub concurrency: usize,
    pub overwrite: bool,
    pub retry_empty: bool,
    pub dry_run: bool,
    pub sub_slot_seconds: Option<u32>,
    pub early_coverage_seconds: Option<f64>,
    pub max_consecutive_failures: Option<u32>,
    pub progress: bool,
    pub source: SourceFlags,
}

#[derive(Debug, Clone, Default)]
pub struct FillCommand {
    pub selection: Selection,
    pub flags: FillFlags,
}

pub async fn fill(global: &Global, cmd: &FillCommand) -> Result<Outcome> {
    let resolved = resolve(global, &cmd.selection)?;
    let window = require_window(&resolved)?;
    require_complement(&resolved.ds)?;
    let session = Session::open(resolved).await?;
    let source = build_source(&session, &cmd.flags.source).await?;
    let run = session.start_run(global, "fill").await?;
    let options = fill_options(window, &cmd.flags, &session.resolved.ds);
    let result = until_interrupted(run_fill(&session, source, Some(run), &options)).await;
    let summary = match &result {
        Ok(report) => RunSummary {
            outcome: if report.stopped.is_some() {
                "stopped"
            } else {
                "ok"
            }
            .to_string(),
            missing_before: Some(report.candidates.len() as u64),
            filled: Some(report.completed()),
            origin_calls: Some(report.origin_calls),
            requests: Some(session.requests()),
            ..Default::default()
        },
        Err(_) => RunSummary::default(),
    };
    session.finish_run(run, &result, summary).await?;
    let report = result?;
    print!(
        "{}",
        describe(
            &session,
            &options,
            &report,
            cmd.flags.early_coverage_seconds
        )
    );
    Ok(Outcome {
        exit_code: if report.stopped.is_some() {
            EXIT_FAILURE
        } else {
            0
        },
    })
}

/// Refuses a dataset without a complement location before anything is opened or recorded.
pub fn require_complement(ds: &Dataset) -> Result<()> {
    match ds.complement() {
        Some(_) => Ok(()),
        None => Err(Error::Usage(
            crate::fill::FillError::NoComplement(ds.name.clone()).to_string(),
        )),
    }
}

pub fn fill_options(window: crate::slot::Window, flags: &FillFlags, ds: &Dataset) -> FillOptions {
    let japanese =
        ds.source.filter.as_deref() == Some("japanese") && !flags.source.keep_non_japanese;
    let mut options = FillOptions::new(window);
    options.max_slots = flags.max_slots;
    options.newest_first = flags.newest_first;
    options.concurrency = flags.concurrency.max(1);
    options.overwrite = flags.overwrite;
    options.retry_empty = flags.retry_empty;
    options.dry_run = flags.dry_run;
    options.sub_slot_seconds = flags.sub_slot_seconds;
    options.filter = if japanese {
        NoteFilter::Japanese
    } else {
        NoteFilter::All
    };
    options.progress = flags.progress;
    options.thin_coverage_seconds = flags.early_coverage_seconds;
    if let Some(k) = flags.max_consecutive_failures {
        options.max_consecutive_failures = k.max(1);
    }
    options
}

pub async fn run_fill(
    session: &Session,
    source: Arc<dyn NoteSource>,
    run: Option<crate::catalog::RunId>,
    options: &FillOptions,
) -> Result<FillReport> {
    crate::fill::fill(
        &session.db,
        &session.resolved.ds,
        &session.row,
        session.complement(),
        source,
        run,
        options,
    )
    .await
    .map_err(|e| match e {
        crate::fill::FillError::Catalog(e) => Error::Catalog(e),
        crate::fill::FillError::Source(e) => Error::Source(e),
        crate::fill::FillError::Store(e) => Error::Store(e),
        other => Error::Usage(other.to_string()),
    })
}

/// Builds the dataset's origin source from its config and the flags.
pub async fn build_source(session: &Session, flags: &SourceFlags) -> Result<Arc<dyn NoteSource>> {
    let ds = &session.resolved.ds;
    let config = &ds.source;
    let bad = |m: String| Error::Source(SourceError::Config(format!("dataset {}: {m}", ds.name)));
    match config.kind {
        SourceKind::Archive => {
            let location = config
                .location
                .as_deref()
                .ok_or_else(|| bad("source kind \"archive\" needs location".to_string()))?;
            let location = crate::config::normalize_location(location).map_err(bad)?;
            let archive = store::open(&location, &session.resolved.config.s3).await?;
            Ok(Arc::new(crate::source::archive::Archive::new(archive)))
        }
        SourceKind::Misskey => {
            let base_url = flags
                .base_url
                .clone()
                .or_else(|| config.base_url.clone())
                .ok_or_else(|| bad("no source base_url configured".to_string()))?;
            let mode: Mode = flags
                .mode
                .as_deref()
                .or(config.mode.as_deref())
                .unwrap_or("search")
                .parse()
                .map_err(bad)?;
            let id_scheme = match config.id_scheme.as_deref() {
                None | Some("auto") => None,
                Some(name) => Some(name.parse::<IdScheme>().map_err(bad)?),
            };
            let token_env = config.token_env.as_deref().unwrap_or("MISSKEY_TOKEN");
            let token = flags
                .token
                .clone()
                .or_else(|| std::env::var(token_env).ok())
                .filter(|t| !t.is_empty());
            if let Some(token) = &token {
                crate::redact::register_secret(token);
            }
            let seconds = |v: Option<f64>, default: f64| {
                Duration::from_secs_f64(v.unwrap_or(default).max(0.0))
            };
            let cap = flags
                .rate_limit_wait_cap
                .or(config.rate_limit_wait_cap)
                .unwrap_or(DEFAULT_RATE_LIMIT_WAIT_CAP);
            if !(cap.is_finite() && cap >= 0.0) {
                return Err(bad(format!(
                    "rate_limit_wait_cap must be a number of seconds, 0 or more (got {cap})"
                )));
            }
            let settings = MisskeySettings {
                base_url,
                mode,
                token,
                id_scheme,
                host: flags.host.clone().or_else(|| config.host.clone()),
                sleep: seconds(flags.sleep, 0.0),
                retries: flags.retry.unwrap_or(5),
                retry_wait: seconds(flags.retry_wait, 2.0),
                timeout: seconds(flags.timeout, 60.0),
                rate_limit_wait_cap: Duration::from_secs_f64(cap),
                max_pages: flags.max_pages.unwrap_or(2000),
            };
            Ok(Arc::new(Misskey::new(settings)?))
        }
    }
}

/// What the fill did, for people.
pub fn describe(
    session: &Session,
    options: &FillOptions,
    r: &FillReport,
    thin_after: Option<f64>,
) -> String {
    let ds = &session.resolved.ds;
    let mut out = String::new();
    let order = if options.newest_first {
        "newest first"
    } else {
        "oldest first"
    };
    let limit = options
        .max_slots
        .map(|n| format!(", at most {n}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "fill {}: {} to fill from {} to {} ({order}{limit})\n",
        ds.name,
        plural(r.candidates.len() as u64, "slot"),
        ds.spec.local_iso(options.window.first),
        ds.spec.local_iso(options.window.last),
    ));
    if options.dry_run {
        for c in r.candidates.iter().take(20) {
            out.push_str(&format!("  {} {}\n", c.start_local, c.state));
        }
        if r.candidates.len() > 20 {
            out.push_str(&format!("  … and {} more\n", r.candidates.len() - 20));
        }
        out.push_str(&format!(
            "dry run: nothing fetched; estimated origin calls: about {}\n",
            r.estimated_calls
        ));
        return out;
    }
    out.push_str(&format!(
        "filled {} ({}), found {} already written, {} partial, {} empty, {} failed\n",
        r.filled,
        plural(r.notes, "note"),
        r.exists,
        r.partial,
        r.empty,
        r.failed
    ));
    let attempted = r.attempted().max(1);
    out.push_str(&format!(
        "origin calls: {} ({:.1} per slot), retries: {}\n",
        r.origin_calls,
        r.origin_calls as f64 / attempted as f64,
        r.retries
    ));
    if r.filled > 0 {
        out.push_str(&format!(
            "coverage: earliest note on average {:.1} s after the slot start\n",
            r.coverage_seconds_total / r.filled as f64
        ));
    }
    if let Some(limit) = thin_after {
        out.push_str(&format!(
            "thin coverage: {} {} more than {limit} s after the slot start\n",
            plural(r.thin, "filled slot"),
            if r.thin == 1 { "starts" } else { "start" }
        ));
    }
    if let Some(stopped) = &r.stopped {
        out.push_str(&format!("stopped early: {stopped}\n"));
    }
    out
}
