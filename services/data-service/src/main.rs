//! `data-service`: see the crate docs and `--help`.

use std::process::ExitCode;

use clap::Parser;
use strata_data_service::{Flags, Settings, config::Command, mount, registrar};
use strata_rpc::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    // Before logging is set up (its format is a setting): one plain line.
    let flags = Flags::parse();
    let (command, check_config) = (flags.command(), flags.check_config());
    let settings = match flags.resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("data-service: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if check_config {
        println!("data-service: configuration ok");
        return ExitCode::SUCCESS;
    }
    if command == Some(Command::Health) {
        return match strata_data_service::health(&settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("data-service: not healthy: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let telemetry = match telemetry::init("data-service", settings.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("data-service: cannot set up logs and traces: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = serve(settings).await;
    // The last spans, those of the calls drained at shutdown included.
    telemetry.shutdown().await;
    code
}

/// Serves until SIGTERM or SIGINT, or until something fails.
async fn serve(settings: Settings) -> ExitCode {
    let format = settings.log_format;
    // Installed before anything is served, so SIGTERM always shuts down cleanly;
    // the gRPC server and the metrics listener both stop on it.
    let signal = strata_rpc::shutdown_signal();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = stop.send(true);
    });
    let on_stop = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let shutdown = on_stop();
    let metrics = match settings.metrics_listen {
        None => None,
        Some(address) => match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                fatal(
                    format,
                    &format!("--metrics-listen (STRATA_METRICS_LISTEN): cannot listen on {address}: {error}"),
                );
                return ExitCode::from(2);
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            fatal(
                format,
                &format!(
                    "--listen (STRATA_LISTEN): cannot listen on {}: {error}",
                    settings.listen
                ),
            );
            return ExitCode::from(2);
        }
    };
    let registrar = match listener
        .local_addr()
        .map_err(anyhow::Error::from)
        .and_then(|bound| registrar(&settings, bound))
    {
        Ok(registrar) => registrar,
        Err(error) => {
            fatal(format, &format!("{error:#}"));
            return ExitCode::from(2);
        }
    };
    let server = match mount(&settings).await {
        Ok(server) => server.registrar(registrar),
        Err(error) => {
            fatal(format, &format!("{error:#}"));
            return ExitCode::FAILURE;
        }
    };
    let contexts: Vec<_> = settings.hosted.iter().map(|h| h.context).collect();
    match listener.local_addr() {
        Ok(address) => println!(
            "data-service listening on {address} (contexts: {})",
            contexts.join(", ")
        ),
        Err(error) => fatal(format, &format!("cannot read the bound address: {error}")),
    }
    if let Some(listener) = metrics {
        match listener.local_addr() {
            Ok(bound) => println!("data-service metrics on http://{bound}/metrics"),
            Err(error) => fatal(format, &format!("cannot read the metrics address: {error}")),
        }
        tokio::spawn(strata_rpc::metrics::serve(listener, on_stop()));
    }
    match server.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            fatal(format, &format!("{error:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Reports why the service stops: one plain line, or with JSON logs an ERROR
/// event, so that every line on stderr is a JSON object.
fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("data-service: {message}"),
        LogFormat::Json => tracing::error!("{message}"),
    }
}
