//! Command-line definitions (clap). Parsing only: every command calls the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use slotfill::commands::{self, GapsOptions, Global, ScanCommand, Selection};
use slotfill::config::Overrides;
use slotfill::report::Format;

#[derive(Debug, Parser)]
#[command(name = "slotfill", version, about = "Find, refetch and verify missing time slots of JSON Lines datasets on S3")]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = "slotfill.toml", env = "SLOTFILL_CONFIG")]
    pub config: PathBuf,
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
    /// First slot: 2025-08-01T00:00 (dataset offset), RFC 3339, or relative (-3d, -12h).
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
    /// Day prefixes listed, and objects downloaded, at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Show a progress bar even when stderr is not a terminal.
    #[arg(long)]
    pub progress: bool,
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
            },
        }
    }
}

impl WindowArgs {
    pub fn selection(&self) -> Selection {
        self.dataset.selection(Some(self.start.clone()), Some(self.end.clone()))
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
            let cmd = ScanCommand {
                selection: window.selection(),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("slotfill").chain(args.iter().copied()))
    }

    #[test]
    fn command_lines() {
        let ok = [
            vec!["scan", "--dataset", "jp", "--start", "2025-08-01T00:00", "--end", "2025-08-07T23:50"],
            vec!["scan", "-d", "jp", "--start", "-3d", "--end", "-2d", "--concurrency", "16", "--progress"],
            vec!["gaps", "--dataset", "jp", "--format", "csv"],
            vec!["gaps", "--dataset", "jp", "--start", "-3d", "--end", "now"],
            vec!["--config", "x.toml", "status"],
            vec!["-vv", "--log-format", "json", "status", "--dataset", "jp"],
        ];
        for args in ok {
            assert!(parse(&args).is_ok(), "{args:?}: {}", parse(&args).unwrap_err());
        }
        let bad = [
            vec!["scan", "--dataset", "jp"],
            vec!["scan", "--dataset", "jp", "--start", "-3d", "--end", "-2d", "--concurrency", "0"],
            vec!["gaps", "--dataset", "jp", "--start", "-3d"],
            vec!["gaps", "--dataset", "jp", "--format", "xml"],
            vec!["-v", "-q", "status"],
            vec!["frobnicate"],
        ];
        for args in bad {
            assert!(parse(&args).is_err(), "{args:?} should be refused");
        }
    }
}
