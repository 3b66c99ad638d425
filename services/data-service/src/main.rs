//! `data-service`: see the crate docs and `--help`.

use std::process::ExitCode;

use clap::Parser;
use strata_data_service::{Flags, mount};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    let settings = match Flags::parse().resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("data-service: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "data-service: --listen (STRATA_LISTEN): cannot listen on {}: {error}",
                settings.listen
            );
            return ExitCode::from(2);
        }
    };
    let server = match mount(&settings).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("data-service: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let contexts: Vec<_> = settings.hosted.iter().map(|h| h.context).collect();
    match listener.local_addr() {
        Ok(address) => println!(
            "data-service listening on {address} (contexts: {})",
            contexts.join(", ")
        ),
        Err(error) => eprintln!("data-service: cannot read the bound address: {error}"),
    }
    match server.serve(listener, strata_rpc::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("data-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}
