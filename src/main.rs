//! The `slotfill` binary: parse arguments, set up logging, run, map the result to an exit code.

mod cli;

use clap::Parser;

use slotfill::commands::Global;
use slotfill::error::{EXIT_FAILURE, EXIT_USAGE};

fn main() {
    restore_sigpipe();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    slotfill::logging::init(
        cli.verbose,
        cli.quiet,
        cli.log_format == cli::LogFormat::Json,
    );
    let global = Global {
        config: cli.config.clone(),
        catalog: cli.catalog.clone(),
        args: slotfill::redact::command_line(std::env::args()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("slotfill: error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(cli::dispatch(cli, global));
    // Don't wait for lingering blocking tasks (e.g. a stuck stdin read) on exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(outcome) => std::process::exit(outcome.exit_code),
        Err(e) => {
            eprintln!(
                "slotfill: error: {}",
                slotfill::redact::one_line(&e.to_string())
            );
            std::process::exit(e.exit_code());
        }
    }
}

/// `slotfill gaps | head` should end quietly, as other Unix tools do, rather
/// than fail on a closed pipe (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
