//! `storefront`: see the crate docs and `--help`.

use std::process::ExitCode;

use clap::Parser as _;
use strata_storefront::Flags;

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    let check = || strata_storefront::check(&flags);
    if let Some(code) =
        strata_edge::serve::instead_of_serving("storefront", flags.listen, flags.command, &flags.edge, check)
            .await
    {
        return code;
    }
    let telemetry = match strata_rpc::telemetry::init("storefront", flags.edge.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("storefront: cannot set up logs and traces: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Installed before anything is served, so SIGTERM always shuts down cleanly.
    let shutdown = strata_rpc::shutdown_signal();
    let served = strata_storefront::run(flags, shutdown).await;
    // The last spans, those of the requests drained at shutdown included.
    telemetry.shutdown().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("storefront: {error:#}");
            ExitCode::FAILURE
        }
    }
}
