//! Logging to stderr with tracing: text or JSON, level from -v/-q or `RUST_LOG`.
//!
//! Every line goes through [`crate::redact::scrub_log`] on its way out, so
//! neither slotfill nor a dependency can print a known secret, a request
//! signature or a bearer token, at any level, even with `RUST_LOG=trace`.
//!
//! Text logs are coloured only when stderr is a terminal and `NO_COLOR` is
//! unset or empty (<https://no-color.org>): a log file or a pipe gets plain text.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub fn init(verbose: u8, quiet: bool, json: bool) {
    crate::redact::register_process_secrets(std::env::args());
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // Dependencies stay at warn below -vvv: their debug output can echo request details.
    // At -vvv, aws-runtime stays at debug: its trace dumps whole request bodies.
    let default = if verbose >= 3 {
        format!("{level},aws_smithy_runtime=debug,aws_runtime=debug,hyper=info")
    } else {
        // aws-config warns once per credential provider that found nothing; the
        // error line that follows names the missing credentials in one line.
        format!("warn,aws_config=error,slotfill={level}")
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
        .with_ansi(use_color(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but "".
fn use_color(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Makes one [`ScrubbedLine`] per event.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedLine(Vec::new())
    }
}

/// Collects one formatted event; scrubs and writes it to stderr when dropped.
struct ScrubbedLine(Vec<u8>);

impl Write for ScrubbedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = crate::redact::scrub_log(&String::from_utf8_lossy(&self.0));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(use_color(true, None));
        assert!(use_color(true, empty));
        assert!(!use_color(true, set));
        assert!(!use_color(false, None));
        assert!(!use_color(false, empty));
    }
}
