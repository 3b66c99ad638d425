//! Prometheus metrics: one registry per process, served as text at `/metrics`.
//!
//! Every Strata server records, for each call, in the same layer that logs it:
//! - `strata_rpc_server_calls_total{service, method, code}`;
//! - `strata_rpc_server_call_duration_seconds{service, method}` (a histogram);
//! - `strata_rpc_server_calls_in_flight`;
//! - `strata_rpc_server_calls_shed_total` (refused past the concurrency limit).
//!
//! Other crates add their own families with [`register`] (the HTTP edges
//! count their requests the same way); [`render`] encodes them all and
//! [`serve`] answers `GET /metrics` on a listener of its own (the data
//! service's `--metrics-listen`).

use std::{
    future::Future,
    sync::{LazyLock, Mutex, PoisonError},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Metric, Registry},
};
use tokio::net::TcpListener;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::with_prefix("strata")));

/// Adds `metric` to the process's registry as `strata_<name>`.
pub fn register(name: &str, help: &str, metric: impl Metric) {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .register(name, help, metric);
}

/// Adds `collector`, asked for its figures at every scrape (for figures that
/// are read, not counted: a pool's connections), to the process's registry.
pub fn register_collector(collector: impl prometheus_client::collector::Collector) {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .register_collector(Box::new(collector));
}

/// Every registered metric, in Prometheus' text format.
#[must_use]
pub fn render() -> String {
    // Make sure the server's families exist even before the first call.
    LazyLock::force(&SERVER);
    let mut out = String::new();
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    out
}

/// Buckets for latencies: 0.1 ms to about 18 s, each √2 times the last, so
/// that a quantile read off them (interpolated within its bucket, as
/// Prometheus' `histogram_quantile` does) is close enough to tell a 0.3 ms
/// call from a 0.4 ms one: `make loadtest` adds the steps of a checkout up
/// from them. (Doubling from 0.5 ms put every fast call in the first bucket.)
#[must_use]
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001,
        std::f64::consts::SQRT_2,
        36,
    ))
}

/// A call's service and method, as labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub(crate) service: String,
    pub(crate) method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    method: String,
    code: &'static str,
}

/// The server's families.
pub(crate) struct ServerMetrics {
    calls: Family<CallLabels, Counter>,
    duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub(crate) in_flight: Gauge,
    pub(crate) shed: Counter,
}

pub(crate) static SERVER: LazyLock<ServerMetrics> = LazyLock::new(|| {
    let metrics = ServerMetrics {
        calls: Family::default(),
        duration: Family::new_with_constructor(latency_histogram),
        in_flight: Gauge::default(),
        shed: Counter::default(),
    };
    register(
        "rpc_server_calls",
        "gRPC calls served, by method and status code",
        metrics.calls.clone(),
    );
    register(
        "rpc_server_call_duration_seconds",
        "How long gRPC calls took to answer, by method",
        metrics.duration.clone(),
    );
    register(
        "rpc_server_calls_in_flight",
        "gRPC calls being served now",
        metrics.in_flight.clone(),
    );
    register(
        "rpc_server_calls_shed",
        "gRPC calls refused with RESOURCE_EXHAUSTED past the concurrency limit",
        metrics.shed.clone(),
    );
    metrics
});

impl MethodLabels {
    /// The labels of a call whose method is not known (or not to be trusted).
    pub(crate) fn unknown() -> Self {
        Self {
            service: "unknown".to_owned(),
            method: "unknown".to_owned(),
        }
    }
}

/// `/pkg.Service/Method` as (service, method); anything else as `unknown`.
pub(crate) fn method_labels(path: &str) -> MethodLabels {
    let parts = path.strip_prefix('/').and_then(|p| p.split_once('/'));
    match parts {
        Some((service, method)) if !service.is_empty() && !method.is_empty() && !method.contains('/') => {
            MethodLabels {
                service: service.to_owned(),
                method: method.to_owned(),
            }
        }
        _ => MethodLabels::unknown(),
    }
}

/// Records one call that ended with `code` after `took`.
pub(crate) fn record_call(mut labels: MethodLabels, code: &'static str, took: Duration) {
    // A method no service has is not a label value of its own: callers
    // could otherwise grow the metrics without bound.
    if code == "UNIMPLEMENTED" {
        labels = MethodLabels::unknown();
    }
    SERVER.duration.get_or_create(&labels).observe(took.as_secs_f64());
    SERVER
        .calls
        .get_or_create(&CallLabels {
            service: labels.service,
            method: labels.method,
            code,
        })
        .inc();
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                render(),
            )
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_bounded_labels() {
        let labels = method_labels("/strata.catalog.v1.ProductService/GetProduct");
        assert_eq!(
            (labels.service.as_str(), labels.method.as_str()),
            ("strata.catalog.v1.ProductService", "GetProduct")
        );
        for odd in ["", "/", "/x", "/a/b/c", "//m"] {
            assert_eq!(method_labels(odd).service, "unknown", "{odd}");
        }
    }

    #[test]
    fn a_recorded_call_is_rendered() {
        record_call(
            method_labels("/strata.test.Metrics/Probe"),
            "NOT_FOUND",
            Duration::from_millis(3),
        );
        let text = render();
        assert!(
            text.contains(r#"strata_rpc_server_calls_total{service="strata.test.Metrics",method="Probe",code="NOT_FOUND"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("strata_rpc_server_call_duration_seconds_bucket"),
            "{text}"
        );
        record_call(
            method_labels("/strata.test.Metrics/Nonsense123"),
            "UNIMPLEMENTED",
            Duration::ZERO,
        );
        assert!(!render().contains("Nonsense123"));
    }
}
