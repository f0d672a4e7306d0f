//! Command-line definitions (clap). Parsing only: every command calls the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use slotfill::commands::{
    self, FillCommand, FillFlags, GapsOptions, Global, ReportCommand, RunCommand, ScanCommand,
    Selection, SourceFlags, VerifyCommand,
};
use slotfill::config::Overrides;
use slotfill::report::Format;

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
        #[arg(long)]
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
    /// The nightly job: scan, fill, verify.
    Run {
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        fill: FillArgs,
        /// Days scanned at once, and S3 requests in flight (at most 32), while scanning.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
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

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Order {
    Oldest,
    Newest,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    /// notes/search (query ""): notes with text, local and remote, channel notes; needs search enabled.
    Search,
    /// notes/local-timeline: public local notes, replies; no channel or remote notes.
    LocalTimeline,
    /// notes/global-timeline: public local and remote notes, replies, renotes.
    GlobalTimeline,
    /// notes: public local and remote notes, replies, renotes; no local-only notes.
    Notes,
    /// Another name for local-timeline (notes/local-timeline).
    Timeline,
}

impl ModeArg {
    fn name(self) -> &'static str {
        match self {
            ModeArg::Search => "search",
            ModeArg::LocalTimeline | ModeArg::Timeline => "local-timeline",
            ModeArg::GlobalTimeline => "global-timeline",
            ModeArg::Notes => "notes",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct FillArgs {
    /// Fill at most this many slots in this run.
    #[arg(long)]
    pub max_slots: Option<u64>,
    /// Which slots first.
    #[arg(long, value_enum, default_value_t = Order::Oldest)]
    pub order: Order,
    /// Origin endpoint (overrides the config's source mode; default search).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// API token (else the variable named by the source's token_env, MISSKEY_TOKEN by default).
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// Only notes of this host ("." = local): sent to notes/search and notes, applied to the notes in every mode.
    #[arg(long)]
    pub host: Option<String>,
    /// Origin base URL (overrides the config).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Seconds between origin calls, across all concurrent slots [default: 0].
    #[arg(long, value_name = "S")]
    pub sleep: Option<f64>,
    /// Retries of a failed origin call (5xx, HTML pages, truncated JSON, resets, timeouts) [default: 5].
    #[arg(long, value_name = "N")]
    pub retry: Option<u32>,
    /// Base seconds of the exponential backoff between retries [default: 2].
    #[arg(long, value_name = "S")]
    pub retry_wait: Option<f64>,
    /// Seconds before an origin call times out [default: 60].
    #[arg(long, value_name = "S")]
    pub timeout: Option<f64>,
    /// Longest wait, in seconds, after a 429 that names no wait of its own (no Retry-After);
    /// overrides the source's rate_limit_wait_cap [default: 60].
    #[arg(long, value_name = "S")]
    pub rate_limit_wait_cap: Option<f64>,
    /// Slots fetched at once (they share one pacer).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Replace existing complement objects.
    #[arg(long)]
    pub overwrite: bool,
    /// Keep notes without Japanese text even when the source filter is "japanese".
    #[arg(long)]
    pub keep_non_japanese: bool,
    /// Re-check slots confirmed empty at the origin now, before their re-check
    /// time (the dataset's empty_recheck_after, 7d by default).
    #[arg(long)]
    pub retry_empty: bool,
    /// Show the plan and an estimate of origin calls; fetch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Fetch each slot in windows of this many seconds.
    #[arg(long)]
    pub sub_slot_seconds: Option<u32>,
    /// Report filled slots whose earliest note is more than this many seconds after the slot start.
    #[arg(long)]
    pub early_coverage_seconds: Option<f64>,
    /// Stop the run after this many failed slots in a row (default 5).
    #[arg(long)]
    pub max_failures: Option<u32>,
    /// Pages one slot may take before its fetch counts as partial (default 2000).
    #[arg(long)]
    pub max_pages: Option<u32>,
    /// Show a progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

impl FillArgs {
    fn flags(&self) -> FillFlags {
        FillFlags {
            max_slots: self.max_slots,
            newest_first: self.order == Order::Newest,
            concurrency: usize::from(self.concurrency),
            overwrite: self.overwrite,
            retry_empty: self.retry_empty,
            dry_run: self.dry_run,
            sub_slot_seconds: self.sub_slot_seconds,
            early_coverage_seconds: self.early_coverage_seconds,
            max_consecutive_failures: self.max_failures,
            progress: self.progress,
            source: SourceFlags {
                mode: self.mode.map(|m| m.name().to_string()),
                token: self.token.clone(),
                host: self.host.clone(),
                base_url: self.base_url.clone(),
                sleep: self.sleep,
                retry: self.retry,
                retry_wait: self.retry_wait,
                timeout: self.timeout,
                rate_limit_wait_cap: self.rate_limit_wait_cap,
                keep_non_japanese: self.keep_non_japanese,
                max_pages: self.max_pages,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

impl From<OutputFormat> for Format {
    fn from(f: OutputFormat) -> Format {
        match f {
            OutputFormat::Table => Format::Table,
            OutputFormat::Csv => Format::Csv,
            OutputFormat::Json => Format::Json,
        }
    }
}

/// Dataset selection and location overrides.
#[derive(Debug, Clone, Args)]
pub struct DatasetArgs {
    /// Dataset name from the config file.
    #[arg(long, short = 'd')]
    pub dataset: String,
    /// Override the primary location (s3://bucket/prefix or file:///dir).
    #[arg(long)]
    pub primary: Option<String>,
    /// Override the backup locations (repeat for several).
    #[arg(long)]
    pub backup: Vec<String>,
    /// Override the complement location.
    #[arg(long)]
    pub complement: Option<String>,
    /// Override the slot width in minutes.
    #[arg(long)]
    pub slot_minutes: Option<u32>,
}

/// A required window.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// First slot: 2025-08-01T00:00 (dataset offset), 2025-08-01T00:00+09:00 or …Z, or relative (-3d, -12h).
    #[arg(long, allow_hyphen_values = true)]
    pub start: String,
    /// Last slot, inclusive: 2025-08-07T23:50, or relative (-2d).
    #[arg(long, allow_hyphen_values = true)]
    pub end: String,
}

/// An optional window (defaults to everything catalogued).
#[derive(Debug, Clone, Args)]
pub struct OptionalWindowArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    #[arg(long, allow_hyphen_values = true, requires = "end")]
    pub start: Option<String>,
    #[arg(long, allow_hyphen_values = true, requires = "start")]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ScanArgs {
    /// Days scanned at once, and S3 requests (listings, downloads) in flight (at most 32).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Show a progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Count every object of every location (as the dataset key `all_locations`),
    /// not only those that can still decide their slot.
    #[arg(long)]
    pub all_locations: bool,
}

impl DatasetArgs {
    fn selection(&self, start: Option<String>, end: Option<String>) -> Selection {
        Selection {
            dataset: self.dataset.clone(),
            start,
            end,
            overrides: Overrides {
                primary: self.primary.clone(),
                backup: (!self.backup.is_empty()).then(|| self.backup.clone()),
                complement: self.complement.clone(),
                slot_minutes: self.slot_minutes,
                empty_is_gap: false,
                all_locations: false,
            },
        }
    }
}

impl WindowArgs {
    pub fn selection(&self) -> Selection {
        self.dataset
            .selection(Some(self.start.clone()), Some(self.end.clone()))
    }
}

impl OptionalWindowArgs {
    pub fn selection(&self) -> Selection {
        self.dataset.selection(self.start.clone(), self.end.clone())
    }
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
            slotfill::demo::run(&dir, endpoint_url.as_deref()).await
        }
        Command::Fill { window, fill } => {
            let cmd = FillCommand {
                selection: window.selection(),
                flags: fill.flags(),
            };
            commands::fill(&global, &cmd).await
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
                fill: fill.flags(),
                scan_concurrency: usize::from(scan_concurrency),
                notify_webhook,
            };
            commands::run(&global, &cmd).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("slotfill").chain(args.iter().copied()))
    }

    #[test]
    fn help_shows_defaults_and_what_each_mode_reads() {
        use clap::CommandFactory;
        for command in ["fill", "run"] {
            let help = Cli::command()
                .find_subcommand_mut(command)
                .expect("subcommand")
                .render_long_help()
                .to_string();
            for expected in [
                "[default: 0]",
                "[default: 5]",
                "[default: 2]",
                "[default: 60]",
                "--rate-limit-wait-cap",
                "notes/search",
                "notes/local-timeline",
                "notes/global-timeline",
            ] {
                assert!(
                    help.contains(expected),
                    "{command}: {expected:?} in\n{help}"
                );
            }
            assert!(!help.contains("seed"), "{command}:\n{help}");
        }
    }

    #[test]
    fn command_lines() {
        let ok = [
            vec![
                "scan",
                "--dataset",
                "jp",
                "--start",
                "2025-08-01T00:00",
                "--end",
                "2025-08-07T23:50",
            ],
            vec![
                "scan",
                "-d",
                "jp",
                "--start",
                "-3d",
                "--end",
                "-2d",
                "--concurrency",
                "16",
                "--progress",
            ],
            vec!["gaps", "--dataset", "jp", "--format", "csv"],
            vec!["gaps", "--dataset", "jp", "--start", "-3d", "--end", "now"],
            vec!["--config", "x.toml", "status"],
            vec!["-vv", "--log-format", "json", "status", "--dataset", "jp"],
            vec![
                "fill",
                "-d",
                "jp",
                "--start",
                "-3d",
                "--end",
                "-2d",
                "--max-slots",
                "5",
                "--order",
                "newest",
            ],
            vec![
                "fill",
                "-d",
                "jp",
                "--start",
                "-3d",
                "--end",
                "-2d",
                "--mode",
                "timeline",
                "--sleep",
                "0.5",
                "--dry-run",
            ],
            vec![
                "verify",
                "-d",
                "jp",
                "--start",
                "2025-08-01",
                "--end",
                "2025-08-02",
            ],
            vec![
                "run",
                "-d",
                "jp",
                "--start",
                "-3d",
                "--end",
                "-2d",
                "--dry-run",
                "--token",
                "x",
                "--retry",
                "3",
            ],
        ];
        for args in ok {
            assert!(
                parse(&args).is_ok(),
                "{args:?}: {}",
                parse(&args).unwrap_err()
            );
        }
        let bad = [
            vec!["scan", "--dataset", "jp"],
            vec![
                "scan",
                "--dataset",
                "jp",
                "--start",
                "-3d",
                "--end",
                "-2d",
                "--concurrency",
                "0",
            ],
            vec!["gaps", "--dataset", "jp", "--start", "-3d"],
            vec!["gaps", "--dataset", "jp", "--format", "xml"],
            vec!["-v", "-q", "status"],
            vec!["frobnicate"],
            vec![
                "fill", "-d", "jp", "--start", "-3d", "--end", "-2d", "--mode", "hybrid",
            ],
            vec![
                "fill", "-d", "jp", "--start", "-3d", "--end", "-2d", "--order", "random",
            ],
            vec![
                "run",
                "-d",
                "jp",
                "--start",
                "-3d",
                "--end",
                "-2d",
                "--concurrency",
                "0",
            ],
        ];
        for args in bad {
            assert!(parse(&args).is_err(), "{args:?} should be refused");
        }
    }
}
