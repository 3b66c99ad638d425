//! The data service: one process hosting any set of bounded contexts, chosen by
//! configuration, each on its own store, served over gRPC with health and
//! reflection.
//!
//! [`run`] takes the listener and a shutdown future, so tests bind `127.0.0.1:0`
//! and stop the service when they are done; `main` adds flags and signals.

pub mod config;

use std::future::Future;

use anyhow::Context as _;
use strata_catalog::store::StoreConfig;
use tokio::net::TcpListener;

pub use config::{Context, Flags, Hosted, Settings};

/// Opens every hosted context's store (running its migrations) and serves them
/// until `shutdown` completes, then drains.
///
/// # Errors
/// See [`mount`]; or serving fails.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    mount(&settings).await?.serve(listener, shutdown).await?;
    Ok(())
}

/// Opens every hosted context's store, running its migrations, and returns the
/// server hosting them, ready to serve.
///
/// # Errors
/// When a store cannot be opened or migrated; the message names the context and
/// its setting.
pub async fn mount(settings: &Settings) -> anyhow::Result<strata_rpc::Server> {
    if settings
        .hosted
        .iter()
        .any(|h| h.database_url.starts_with("sqlite:"))
    {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "--data-dir (STRATA_DATA_DIR): cannot create {}",
                settings.data_dir.display()
            )
        })?;
    }
    let mut server = strata_rpc::Server::new().drain_timeout(settings.drain_timeout);
    for hosted in &settings.hosted {
        let context = hosted.context;
        let store = config::redact(&hosted.database_url);
        tracing::info!(context = context.name(), %store, "opening store");
        let failed = || {
            format!(
                "context {} on {store} ({})",
                context.name(),
                context.database_url_var()
            )
        };
        server = match context {
            Context::Catalog => server.host(
                strata_catalog::mount(&StoreConfig {
                    url: hosted.database_url.clone(),
                    max_connections: settings.db_max_connections,
                })
                .await
                .with_context(failed)?,
            ),
        };
    }
    Ok(server)
}
