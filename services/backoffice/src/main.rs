//! `backoffice`: see the crate docs and `--help`.

use std::process::ExitCode;

use clap::Parser as _;
use strata_backoffice::Flags;

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    let check = || strata_backoffice::check(&flags);
    if let Some(code) =
        strata_edge::serve::instead_of_serving("backoffice", flags.listen, flags.command, &flags.edge, check)
            .await
    {
        return code;
    }
    let telemetry = match strata_rpc::telemetry::init("backoffice", flags.edge.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("backoffice: cannot set up logs and traces: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Installed before anything is served, so SIGTERM always shuts down cleanly.
    let shutdown = strata_rpc::shutdown_signal();
    let served = strata_backoffice::run(flags, shutdown).await;
    // The last spans, those of the requests drained at shutdown included.
    telemetry.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("backoffice: {error:#}");
            ExitCode::FAILURE
        }
    }
}
