//! The data service: one process hosting any set of bounded contexts, chosen by
//! configuration, each on its own store, served over gRPC with health and
//! reflection.
//!
//! [`CONTEXTS`] is the registry of the contexts this build can host: adding a
//! context to the data service is one entry there. [`run`] takes the listener
//! and a shutdown future, so tests bind `127.0.0.1:0` and stop the service when
//! they are done; `main` adds flags and signals.

pub mod callers;
pub mod config;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use strata_store::StoreConfig;
use tokio::net::TcpListener;

pub use config::{Flags, Hosted, Settings};

/// A context's mount: host its service, on its store once the store can be
/// opened (see [`host_when_reachable`]).
pub type Mount = fn(
    strata_rpc::Server,
    StoreConfig,
) -> Pin<Box<dyn Future<Output = anyhow::Result<strata_rpc::Server>> + Send>>;

/// A context this build can host.
#[derive(Debug, Clone, Copy)]
pub struct Registered {
    /// Its name in `--contexts`, file names and environment variables.
    pub name: &'static str,
    /// How to host it.
    pub mount: Mount,
}

/// Every context this build can host, in start-up order. The default of
/// `--contexts` is all of them.
pub const CONTEXTS: &[Registered] = &[
    Registered {
        name: strata_catalog::CONTEXT,
        mount: |server, store| {
            Box::pin(host_when_reachable(
                server,
                strata_catalog::CONTEXT,
                store,
                strata_catalog::mount,
            ))
        },
    },
    Registered {
        name: strata_identity::CONTEXT,
        mount: |server, store| {
            Box::pin(host_when_reachable(
                server,
                strata_identity::CONTEXT,
                store,
                strata_identity::mount,
            ))
        },
    },
    Registered {
        name: strata_inventory::CONTEXT,
        mount: |server, store| {
            Box::pin(host_when_reachable(
                server,
                strata_inventory::CONTEXT,
                store,
                strata_inventory::mount,
            ))
        },
    },
    Registered {
        name: strata_ordering::CONTEXT,
        mount: |server, store| {
            Box::pin(host_when_reachable(
                server,
                strata_ordering::CONTEXT,
                store,
                strata_ordering::mount,
            ))
        },
    },
];

/// How long a context whose store could not be opened waits before trying
/// again, at most.
const REMOUNT_BACKOFF: Duration = Duration::from_secs(5);

/// Hosts `context`'s service, mounted by `mount` on `store`, with health
/// following the store ([`strata_store::reachable`]).
///
/// When the store cannot be reached (a database error, a refused or
/// unanswered connection), the service is hosted all the same, answering
/// UNAVAILABLE and reported NOT_SERVING, and the mount is tried again in the
/// background until it succeeds: the process serves its other contexts
/// meanwhile. Any other failure (a bad setting of the context) is returned,
/// and stops the process at start.
///
/// # Errors
/// A failure of the first mount that is not the store's.
pub async fn host_when_reachable<S, E, F, Fut>(
    server: strata_rpc::Server,
    context: &'static str,
    store: StoreConfig,
    mount: F,
) -> anyhow::Result<strata_rpc::Server>
where
    S: strata_rpc::Hostable,
    E: std::error::Error + Send + Sync + 'static,
    F: Fn(StoreConfig) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S, E>> + Send,
{
    let deferred = strata_rpc::deferred::Deferred::<S>::new(context);
    match mount(store.clone()).await.map_err(anyhow::Error::new) {
        Ok(service) => deferred.ready(service),
        Err(error) if error.chain().any(strata_store::is_store_failure) => {
            tracing::error!(
                context,
                store = %store.url,
                error = format!("{error:#}"),
                "cannot open the store; serving the other contexts, and trying again"
            );
            let waiting = deferred.clone();
            tokio::spawn(async move {
                let mut pause = Duration::from_millis(500);
                loop {
                    tokio::time::sleep(pause).await;
                    match mount(store.clone()).await {
                        Ok(service) => {
                            tracing::info!(context, "the store answers: the context serves");
                            waiting.ready(service);
                            return;
                        }
                        Err(error) => {
                            let error = anyhow::Error::new(error);
                            tracing::warn!(
                                context,
                                error = format!("{error:#}"),
                                "cannot open the store yet"
                            );
                            pause = (pause * 2).min(REMOUNT_BACKOFF);
                        }
                    }
                }
            });
        }
        Err(error) => return Err(error),
    }
    let ready = deferred.clone();
    let probe: strata_rpc::Probe = Arc::new(move || {
        let ready = ready.is_ready();
        Box::pin(async move { ready && strata_store::reachable(context, strata_rpc::HEALTH_PERIOD).await })
    });
    Ok(server.host(deferred).health_probe(S::NAME, probe))
}

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
    let registrar = registrar(&settings, listener.local_addr()?)?;
    mount(&settings)
        .await?
        .registrar(registrar)
        .serve(listener, shutdown)
        .await?;
    Ok(())
}

/// Asks the data service running with `settings` for its health: the gRPC
/// health of the server as a whole (every hosted context) on its listener,
/// within 3 s. Served over TLS, only that the port accepts connections.
///
/// # Errors
/// Why it is not healthy.
pub async fn health(settings: &Settings) -> anyhow::Result<()> {
    const WITHIN: Duration = Duration::from_secs(3);
    let address = strata_rpc::local_address(settings.listen);
    if settings.tls.is_some() {
        tokio::time::timeout(WITHIN, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| anyhow::anyhow!("{address} did not accept a connection within {WITHIN:?}"))?
            .with_context(|| format!("cannot connect to {address}"))?;
        return Ok(());
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(WITHIN)
        .timeout(WITHIN)
        .connect_lazy();
    let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = &settings.admission.service_token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    let answer = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| anyhow::anyhow!("{address}: {}: {}", status.code(), status.message()))?;
    let status = answer.into_inner().status();
    anyhow::ensure!(
        status == tonic_health::ServingStatus::Serving.into(),
        "{address}: {}",
        status.as_str_name()
    );
    Ok(())
}

/// What to register in etcd when `settings` name a registry: every hosted
/// context at the advertised address, by default the address `listener`
/// is bound to.
///
/// # Errors
/// When the registry cannot be used.
pub fn registrar(
    settings: &Settings,
    bound: std::net::SocketAddr,
) -> anyhow::Result<Option<strata_rpc::registry::Registrar>> {
    let Some(registry) = &settings.registry else {
        return Ok(None);
    };
    let etcd = strata_rpc::registry::Etcd::new(&registry.url).context("--registry (STRATA_REGISTRY)")?;
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    let address = registry
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{bound}"));
    let contexts: Vec<&str> = settings.hosted.iter().map(|h| h.context).collect();
    Ok(Some(strata_rpc::registry::Registrar::new(
        etcd,
        registry.ttl,
        &contexts,
        &address,
    )))
}

/// Opens every hosted context's store, running its migrations, and returns the
/// server hosting them, ready to serve.
///
/// # Errors
/// When a store cannot be opened or migrated; the message names the context and
/// its setting (never its password).
pub async fn mount(settings: &Settings) -> anyhow::Result<strata_rpc::Server> {
    static POOL_METRICS: std::sync::Once = std::sync::Once::new();
    POOL_METRICS.call_once(|| strata_rpc::metrics::register_collector(PoolMetrics));
    if settings.hosted.iter().any(|h| h.store.url.is_sqlite()) {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "--data-dir (STRATA_DATA_DIR): cannot create {}",
                settings.data_dir.display()
            )
        })?;
    }
    let tls = match &settings.tls {
        None => None,
        Some(files) => Some(
            strata_rpc::tls::ServerTls::from_files(&files.cert, &files.key, files.client_ca.as_deref())
                .context("--tls-cert / --tls-key / --tls-client-ca (STRATA_TLS_*)")?,
        ),
    };
    let mut server = strata_rpc::Server::new()
        .drain_timeout(settings.drain_timeout)
        .shutdown_grace(settings.shutdown_grace)
        .admission(settings.admission.clone())
        .tls(tls);
    for hosted in &settings.hosted {
        let registered = CONTEXTS
            .iter()
            .find(|c| c.name == hosted.context)
            .with_context(|| format!("context {} is not in this build", hosted.context))?;
        let store = &hosted.store.url;
        tracing::info!(context = hosted.context, %store, pool = hosted.store.max_connections, "opening store");
        server = (registered.mount)(server, hosted.store.clone())
            .await
            .with_context(|| {
                format!(
                    "context {} on {store} ({})",
                    hosted.context,
                    config::context_var(hosted.context, "DATABASE_URL")
                )
            })?;
    }
    Ok(server)
}

/// `/metrics` figures of the stores' connection pools, read at each scrape:
/// `strata_store_pool_connections{context, state="idle"|"in_use"}` and
/// `strata_store_pool_max_connections{context}`.
#[derive(Debug)]
struct PoolMetrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct PoolLabels {
    context: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ContextLabels {
    context: &'static str,
}

impl prometheus_client::collector::Collector for PoolMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>) -> std::fmt::Result {
        use prometheus_client::{
            encoding::EncodeMetric as _,
            metrics::{family::Family, gauge::Gauge},
        };
        let connections = Family::<PoolLabels, Gauge>::default();
        let max = Family::<ContextLabels, Gauge>::default();
        for usage in strata_store::pool_usage() {
            let in_use = usage.open.saturating_sub(usage.idle);
            for (state, n) in [("idle", usage.idle), ("in_use", in_use)] {
                connections
                    .get_or_create(&PoolLabels {
                        context: usage.context,
                        state,
                    })
                    .inc_by(i64::from(n));
            }
            max.get_or_create(&ContextLabels {
                context: usage.context,
            })
            .inc_by(i64::from(usage.max));
        }
        connections.encode(encoder.encode_descriptor(
            "store_pool_connections",
            "Connections of each context's pool, idle or in use",
            None,
            connections.metric_type(),
        )?)?;
        max.encode(encoder.encode_descriptor(
            "store_pool_max_connections",
            "The most connections each context's pool may open",
            None,
            max.metric_type(),
        )?)
    }
}
