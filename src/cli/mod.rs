//! Command-line definitions (clap). Parsing only: every command calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use slotfill::commands::{
    self, FillCommand, GapsOptions, Global, PromoteCommand, ReportCommand, RunCommand, ScanCommand,
    VerifyCommand,
};

mod args;

pub use args::*;

#[derive(Debug, Parser)]
#[command(
    name = "slotfill",
    version,
    about = "Find, refetch and verify missing time slots of JSON Lines datasets on S3"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "slotfill.toml",
        env = "SLOTFILL_CONFIG"
    )]
    pub config: PathBuf,
    /// Catalog file (overrides the config file's `catalog`).
    #[arg(long, global = true, env = "SLOTFILL_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every location over a window, count new or changed objects, derive slot states.
    Scan {
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        scan: ScanArgs,
    },
    /// The non-ok slots, grouped into contiguous periods (catalog only, no network).
    Gaps {
        #[command(flatten)]
        window: OptionalWindowArgs,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Slots by state for each dataset (catalog only, no network).
    Status {
        #[arg(long, short = 'd')]
        dataset: Option<String>,
    },
    /// Complement the catalog's missing slots from the origin API.
    Fill {
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        fill: FillArgs,
    },
    /// Rescan every location (incrementally) and report what is still missing; exit 3 if any.
    Verify {
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        scan: ScanArgs,
        /// Post a summary to this Discord/Slack-style webhook.
        #[arg(long)]
        notify_webhook: Option<String>,
        /// Count slots confirmed empty at the origin as gaps (exit 3), as the
        /// dataset key `empty_is_gap`.
        #[arg(long)]
        empty_is_gap: bool,
    },
    /// Copy the slots that are ok only through the complement into the mirror
    /// (the primary by default), never clobbering an object already there.
    Promote {
        #[command(flatten)]
        window: WindowArgs,
        /// Where to copy: `primary`, `backup` (the only backup), or the URL of a
        /// configured primary or backup location.
        #[arg(long, value_name = "primary|LOCATION_URL")]
        into: Option<String>,
        /// Replace a target object the catalog knows to be invalid (too small, too
        /// few or too many lines, unreadable), only if it is still that object
        /// (If-Match on its recorded ETag). A valid object is never replaced.
        #[arg(long)]
        replace_invalid: bool,
        /// Copies made at once.
        #[arg(long, default_value_t = slotfill::defaults::FILL_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Show what would be copied; copy nothing.
        #[arg(long)]
        dry_run: bool,
        /// Show a progress bar even when stderr is not a terminal.
        #[arg(long)]
        progress: bool,
    },
    /// Canned reports from sql/*.sql, or the coverage heatmap (`report heatmap`).
    Report {
        /// Report name (see --list).
        name: Option<String>,
        /// List the reports.
        #[arg(long)]
        list: bool,
        #[arg(long, short = 'd')]
        dataset: Option<String>,
        #[arg(long, allow_hyphen_values = true, requires = "end")]
        start: Option<String>,
        #[arg(long, allow_hyphen_values = true, requires = "start")]
        end: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Output file of the heatmap.
        #[arg(long)]
        out: Option<PathBuf>,
        /// thin-coverage: seconds between slot start and earliest note (default 60).
        #[arg(long)]
        thin_seconds: Option<f64>,
    },
    /// Ad hoc read-only SQL on the catalog.
    Sql {
        query: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Generate a small dataset with every kind of gap and run the whole cycle on it.
    Demo {
        /// Where to put the demo dataset, config and catalog.
        #[arg(long, default_value = "slotfill-demo")]
        dir: PathBuf,
        /// Put the demo's locations on this S3 endpoint (buckets slotfill-demo and
        /// slotfill-demo-backup, created if missing) instead of local directories.
        #[arg(long)]
        endpoint_url: Option<String>,
    },
    /// The always-on mode: an HTTP API for runs and storage events, a freshness
    /// watch, schedules, a dashboard and Prometheus metrics (docs/serve.md).
    Serve {
        /// Address to listen on (overrides `[serve] listen`; default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
    },
    /// The nightly job: scan, fill, verify.
    Run {
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        fill: FillArgs,
        /// Days scanned at once, and S3 requests in flight (at most 32), while scanning.
        #[arg(long, default_value_t = slotfill::defaults::SCAN_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
        scan_concurrency: u16,
        /// Post a summary to this Discord/Slack-style webhook.
        #[arg(long)]
        notify_webhook: Option<String>,
        /// Count slots confirmed empty at the origin as gaps (exit 3), as the
        /// dataset key `empty_is_gap`.
        #[arg(long)]
        empty_is_gap: bool,
        /// Scans count every object of every location (as the dataset key
        /// `all_locations`), not only those that can still decide their slot.
        #[arg(long)]
        all_locations: bool,
    },
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli, global: Global) -> slotfill::error::Result<commands::Outcome> {
    match cli.command {
        Command::Scan { window, scan } => {
            let mut selection = window.selection();
            selection.overrides.all_locations = scan.all_locations;
            let cmd = ScanCommand {
                selection,
                concurrency: usize::from(scan.concurrency),
                progress: scan.progress,
            };
            commands::scan(&global, &cmd).await
        }
        Command::Gaps { window, format } => commands::gaps(
            &global,
            &GapsOptions {
                selection: window.selection(),
                format: format.into(),
            },
        ),
        Command::Status { dataset } => commands::status(&global, dataset.as_deref()),
        Command::Report {
            name,
            list,
            dataset,
            start,
            end,
            format,
            out,
            thin_seconds,
        } => commands::report(
            &global,
            &ReportCommand {
                name,
                list,
                dataset,
                start,
                end,
                format: format.into(),
                out,
                thin_seconds,
            },
        ),
        Command::Sql { query, format } => commands::sql(&global, &query, format.into()),
        Command::Demo { dir, endpoint_url } => {
            commands::demo::run(&dir, endpoint_url.as_deref()).await
        }
        Command::Fill { window, fill } => {
            let cmd = FillCommand {
                selection: window.selection(),
                settings: fill.settings(),
                origin: fill.origin(),
            };
            commands::fill(&global, &cmd).await
        }
        Command::Promote {
            window,
            into,
            replace_invalid,
            concurrency,
            dry_run,
            progress,
        } => {
            let cmd = PromoteCommand {
                selection: window.selection(),
                into,
                replace_invalid,
                concurrency: usize::from(concurrency),
                dry_run,
                progress,
            };
            commands::promote(&global, &cmd).await
        }
        Command::Verify {
            window,
            scan,
            notify_webhook,
            empty_is_gap,
        } => {
            let mut selection = window.selection();
            selection.overrides.empty_is_gap = empty_is_gap;
            selection.overrides.all_locations = scan.all_locations;
            let cmd = VerifyCommand {
                selection,
                concurrency: usize::from(scan.concurrency),
                progress: scan.progress,
                notify_webhook,
            };
            commands::verify(&global, &cmd).await
        }
        Command::Serve { listen } => {
            slotfill::serve::serve(&global, &slotfill::serve::ServeCommand { listen }).await
        }
        Command::Run {
            window,
            fill,
            scan_concurrency,
            notify_webhook,
            empty_is_gap,
            all_locations,
        } => {
            let mut selection = window.selection();
            selection.overrides.empty_is_gap = empty_is_gap;
            selection.overrides.all_locations = all_locations;
            let cmd = RunCommand {
                selection,
                fill: fill.settings(),
                origin: fill.origin(),
                scan_concurrency: usize::from(scan_concurrency),
                notify_webhook,
            };
            commands::run(&global, &cmd).await
        }
    }
}

#[cfg(test)]
mod tests;
