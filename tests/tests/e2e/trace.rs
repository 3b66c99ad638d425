//! Traces end to end: the shop's processes export their spans over OTLP to a
//! collector this test runs in memory (opentelemetry-proto's `TraceService`,
//! served by tonic on `127.0.0.1:0`), so what is checked is what a real
//! collector would receive.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    trace::v1::{Span, span::SpanKind},
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Notify;

use super::shop::{Setup, Shop};

/// How long spans may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(30);

/// One span as the collector received it, with the resource it came from.
#[derive(Debug, Clone)]
struct Received {
    /// `service.name` of the process that sent it.
    service: String,
    /// `process.pid` of the process that sent it.
    pid: i64,
    span: Span,
}

/// An OTLP/gRPC trace collector keeping every span it receives.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.unwrap_or_default().attributes;
            let service = string(&resource, "service.name").unwrap_or_default();
            let pid = int(&resource, "process.pid").unwrap_or_default();
            for scope in resource_spans.scope_spans {
                received.extend(scope.spans.into_iter().map(|span| Received {
                    service: service.clone(),
                    pid,
                    span,
                }));
            }
        }
        self.spans.lock().unwrap().extend(received);
        self.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Serves on a port of its own: returns its endpoint (`http://127.0.0.1:…`).
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        format!("http://{address}")
    }

    /// The spans received so far of the trace `trace_id` (`None`: of every trace).
    fn received(&self, trace_id: Option<&[u8]>) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|r| trace_id.is_none_or(|id| r.span.trace_id == id))
            .cloned()
            .collect()
    }

    /// Waits until the spans of `trace_id` (`None`: of every trace) satisfy
    /// `done` (bounded by [`ARRIVAL`]), woken by each export rather than polling.
    async fn wait_for(
        &self,
        trace_id: Option<&[u8]>,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + ARRIVAL;
        loop {
            // Made before looking, so that an export in between still wakes it.
            let arrived = self.arrived.notified();
            let spans = self.received(trace_id);
            if done(&spans) {
                return spans;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "{what}: not within {ARRIVAL:?}; received {:#?}",
                    spans
                        .iter()
                        .map(|r| (&r.service, &r.span.name))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

fn string(attributes: &[KeyValue], key: &str) -> Option<String> {
    match value(attributes, key)? {
        Any::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value(attributes, key)? {
        Any::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What every process is told: export to the collector, in batches at most
/// `delay_ms` apart.
fn otel_env(endpoint: &str, delay_ms: u64) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_string()),
    ]
}

/// One checkout through storefront, sent with the caller's `traceparent`, is
/// one trace: storefront's request span, a child of the caller's span, and
/// under it a span of every gRPC call the saga made, each served by the data
/// service that hosts the context: catalog and ordering in one process,
/// inventory in another. The data services export within a tenth of a second;
/// storefront's batch waits an hour, so its span arrives only because
/// storefront sends what it holds when it stops (SIGTERM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_checkout_is_one_trace_across_storefront_and_the_data_services() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let mut shop = Shop::start(Setup {
        split_inventory: true,
        data_env: otel_env(&endpoint, 100),
        storefront_env: otel_env(&endpoint, 3_600_000),
        ..Setup::default()
    })
    .await;
    let staff = shop.staff_token().await;
    let (product, _) = shop.product(&staff, 1250, 5).await;
    let (_, shopper) = shop.shopper().await;

    // Unique enough for a test: a UUIDv7's bytes, and the random half of another.
    let trace_id = *uuid::Uuid::now_v7().as_bytes();
    let caller_span = uuid::Uuid::now_v7().as_bytes()[8..].to_vec();
    let traceparent = format!("00-{}-{}-01", hex(&trace_id), hex(&caller_span));
    let order = shop
        .call(
            Method::POST,
            format!("{}/v1/orders", shop.sf),
            Some(&shopper),
            Some(json!({"lines": [{"product_id": product, "quantity": 2}]})),
            &[
                ("idempotency-key", "trace-1"),
                ("traceparent", traceparent.as_str()),
            ],
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(order["status"], "confirmed", "{order}");

    // The saga's calls, by the context that served them, with their codes
    // (no earlier attempt: the first look for the order finds none).
    let calls: [(&str, &str, i64); 6] = [
        ("ordering", "strata.ordering.v1.OrderService/GetOrder", 5),
        ("catalog", "strata.catalog.v1.ProductService/BatchGetProducts", 0),
        ("ordering", "strata.ordering.v1.OrderService/PlaceOrder", 0),
        ("inventory", "strata.inventory.v1.StockItemService/Reserve", 0),
        (
            "inventory",
            "strata.inventory.v1.StockItemService/ConfirmReservation",
            0,
        ),
        ("ordering", "strata.ordering.v1.OrderService/ConfirmOrder", 0),
    ];
    let served = collector
        .wait_for(
            Some(&trace_id),
            "the data services' spans of the checkout",
            |spans| {
                calls
                    .iter()
                    .all(|(_, name, _)| spans.iter().any(|r| r.span.name == *name))
            },
        )
        .await;
    assert!(
        served.iter().all(|r| r.service == "data-service"),
        "storefront's batch is not due for an hour: {served:#?}"
    );

    shop.stop_storefront();
    let trace = collector
        .wait_for(
            Some(&trace_id),
            "storefront's span, sent as it stopped",
            |spans| spans.iter().any(|r| r.service == "storefront"),
        )
        .await;

    let request: Vec<_> = trace.iter().filter(|r| r.service == "storefront").collect();
    assert_eq!(request.len(), 1, "one span of storefront: {request:#?}");
    let request = &request[0].span;
    assert_eq!(request.name, "POST /v1/orders");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(
        request.parent_span_id, caller_span,
        "the caller's span is its parent"
    );
    assert_eq!(int(&request.attributes, "http.response.status_code"), Some(201));

    let mut process_of: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    for (context, name, code) in calls {
        let call = trace
            .iter()
            .find(|r| r.span.name == name)
            .unwrap_or_else(|| panic!("no span of {name}"));
        assert_eq!(call.service, "data-service", "{call:#?}");
        assert_eq!(call.span.kind, SpanKind::Server as i32, "{name}");
        assert_eq!(
            call.span.parent_span_id, request.span_id,
            "{name}: a child of storefront's request span"
        );
        assert_eq!(
            int(&call.span.attributes, "rpc.grpc.status_code"),
            Some(code),
            "{name}"
        );
        process_of.entry(context).or_default().insert(call.pid);
    }
    let one = |context: &str| {
        let pids = &process_of[context];
        assert_eq!(pids.len(), 1, "{context} is served by one process: {pids:?}");
        *pids.first().unwrap()
    };
    let storefront = trace.iter().find(|r| r.service == "storefront").unwrap().pid;
    assert_eq!(
        one("catalog"),
        one("ordering"),
        "catalog and ordering share a process"
    );
    let processes: BTreeSet<i64> = [storefront, one("catalog"), one("inventory")].into();
    assert_eq!(processes.len(), 3, "three processes in one trace: {processes:?}");
    assert!(
        trace
            .iter()
            .all(|r| r.span.parent_span_id == request.span_id || r.span.span_id == request.span_id),
        "nothing else in the trace: {trace:#?}"
    );
}

/// A request that comes without a `traceparent` starts a trace at the edge:
/// backoffice's span of a product's creation is a root, and catalog's span of
/// `CreateProduct`, in the data service, is its child in the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_traceparent_starts_a_trace_at_the_edge() {
    const CREATE: &str = "strata.catalog.v1.ProductService/CreateProduct";
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let shop = Shop::start(Setup {
        data_env: otel_env(&endpoint, 100),
        backoffice_env: otel_env(&endpoint, 100),
        ..Setup::default()
    })
    .await;
    let staff = shop.staff_token().await;
    shop.product(&staff, 990, 0).await;

    let created_under = |spans: &[Received], parent: &Span| {
        spans
            .iter()
            .find(|r| r.span.name == CREATE && r.span.parent_span_id == parent.span_id)
            .cloned()
    };
    let is_creation = |r: &Received| r.service == "backoffice" && r.span.name == "POST /v1/products";
    let spans = collector
        .wait_for(
            None,
            "backoffice's span of the creation, and catalog's under it",
            |spans| {
                spans
                    .iter()
                    .filter(|r| is_creation(r))
                    .any(|r| created_under(spans, &r.span).is_some())
            },
        )
        .await;
    let request = spans.iter().find(|r| is_creation(r)).unwrap();
    assert!(request.span.parent_span_id.is_empty(), "a root: {request:#?}");
    assert_eq!(request.span.kind, SpanKind::Server as i32);
    assert_eq!(
        int(&request.span.attributes, "http.response.status_code"),
        Some(201)
    );
    let create = created_under(&spans, &request.span).unwrap();
    assert_eq!(create.service, "data-service");
    assert_eq!(create.span.trace_id, request.span.trace_id);
    assert_ne!(create.pid, request.pid, "two processes");
}
