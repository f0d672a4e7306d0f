//! The argument groups commands share (dataset and window, fill and scan
//! options), and their conversion into the library's types.

use clap::{Args, ValueEnum};

use slotfill::commands::{FillSettings, Selection, SourceFlags};
use slotfill::config::Overrides;
use slotfill::defaults;
use slotfill::report::Format;
use slotfill::source::misskey::Mode;

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

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Search => Mode::Search,
            ModeArg::LocalTimeline | ModeArg::Timeline => Mode::LocalTimeline,
            ModeArg::GlobalTimeline => Mode::GlobalTimeline,
            ModeArg::Notes => Mode::Notes,
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
    /// Misskey endpoint (overrides the config's source mode; default search). A Mastodon
    /// source reads the timeline of its config instead.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// API token (else the variable named by the source's token_env: MISSKEY_TOKEN, or
    /// MASTODON_TOKEN for a Mastodon source, by default).
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
    #[arg(long, default_value_t = defaults::FILL_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
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
    pub fn settings(&self) -> FillSettings {
        FillSettings {
            max_slots: self.max_slots,
            newest_first: self.order == Order::Newest,
            concurrency: usize::from(self.concurrency),
            overwrite: self.overwrite,
            retry_empty: self.retry_empty,
            dry_run: self.dry_run,
            sub_slot_seconds: self.sub_slot_seconds,
            thin_coverage_seconds: self.early_coverage_seconds,
            max_consecutive_failures: self
                .max_failures
                .unwrap_or(defaults::MAX_CONSECUTIVE_FAILURES),
            progress: self.progress,
        }
    }

    /// The flags that override the origin's settings.
    pub fn origin(&self) -> SourceFlags {
        SourceFlags {
            mode: self.mode.map(Mode::from),
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
    #[arg(long, default_value_t = defaults::SCAN_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
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
