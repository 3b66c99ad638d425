//! `backoffice`: see the crate docs and `--help`.

use std::process::ExitCode;

use clap::Parser as _;
use strata_backoffice::Flags;

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Err(error) = strata_rpc::telemetry::init(flags.edge.log_format) {
        eprintln!("backoffice: cannot set up logging: {error}");
        return ExitCode::FAILURE;
    }
    // Installed before anything is served, so SIGTERM always shuts down cleanly.
    let shutdown = strata_rpc::shutdown_signal();
    match strata_backoffice::run(flags, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("backoffice: {error:#}");
            ExitCode::FAILURE
        }
    }
}
