//! Logging to stderr with tracing: text or JSON, level from -v/-q or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8, quiet: bool, json: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    // Dependencies stay at warn below -vvv: their debug output can echo request details.
    let default = if verbose >= 3 {
        format!("{level},aws_smithy_runtime=debug,hyper=info")
    } else {
        format!("warn,slotfill={level}")
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
