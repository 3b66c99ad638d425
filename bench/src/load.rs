//! The load generator: a closed loop at fixed concurrency over several HTTP/2
//! channels, latency in an HDR histogram. Calls started before the measuring
//! window (the warm-up) or finished after it are not counted.

use std::time::Duration;

use hdrhistogram::Histogram;
use strata_proto::catalog::v1::{self as pb, product_service_client::ProductServiceClient};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::model::Workload;

/// How many HTTP/2 connections the load is spread over.
pub(crate) const CHANNELS: usize = 4;

/// What one closed-loop run measured.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) completed: u64,
    pub(crate) errors: u64,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) window: Duration,
}

/// The id of preloaded product `n` (1-based): deterministic, so pgbench can
/// compute it too.
pub(crate) fn product_id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

/// How the load generator reaches a server.
pub(crate) enum Channels {
    /// `CHANNELS` bare tonic channels: what a plain gRPC client sends.
    Bare(Vec<Channel>),
    /// `CHANNELS` channels of Strata's client stack, each call made as the
    /// application services make theirs (`Call::request`, `Call::run`).
    Stack(Vec<strata_rpc::client::RpcChannel>),
}

/// Connects `CHANNELS` HTTP/2 channels to a gRPC server.
pub(crate) async fn connect(address: &str) -> anyhow::Result<Channels> {
    let mut channels = Vec::with_capacity(CHANNELS);
    for _ in 0..CHANNELS {
        let channel = Endpoint::from_shared(format!("http://{address}"))?
            .tcp_nodelay(true)
            .connect()
            .await?;
        channels.push(channel);
    }
    Ok(Channels::Bare(channels))
}

/// `CHANNELS` channels of Strata's client stack to a gRPC server (each
/// connects on its first call, during the warm-up).
pub(crate) fn connect_stack(address: &str) -> anyhow::Result<Channels> {
    let token = strata_rpc::client::ServiceToken::default();
    let channels = (0..CHANNELS)
        .map(|_| strata_rpc::client::channel("catalog", &format!("http://{address}"), token.clone()))
        .collect::<Result<_, _>>()?;
    Ok(Channels::Stack(channels))
}

/// One point of load.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) workload: Workload,
    pub(crate) concurrency: u32,
    /// Products 1..=products exist.
    pub(crate) products: u32,
    /// For updates: the current version of product n at index n - 1.
    pub(crate) versions: Vec<u64>,
    /// Distinguishes this run's request ids from every other run's.
    pub(crate) tag: String,
}

/// Runs `load` against `channels`: `warmup`, then the measuring window, calling
/// `mark` at its start and its end (to read CPU counters at the same instants).
pub(crate) async fn run(
    channels: &Channels,
    load: &Load,
    warmup: Duration,
    window: Duration,
    mut mark: impl FnMut(),
) -> anyhow::Result<Sample> {
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut workers = Vec::new();
    for worker in 0..load.concurrency {
        let i = worker as usize % CHANNELS;
        workers.push(match channels {
            Channels::Bare(channels) => {
                let client = ProductServiceClient::new(channels[i % channels.len()].clone());
                tokio::spawn(work(client, Plain, load.clone(), worker, start, end))
            }
            Channels::Stack(channels) => {
                let client = ProductServiceClient::new(channels[i % channels.len()].clone());
                tokio::spawn(work(client, Stacked, load.clone(), worker, start, end))
            }
        });
    }
    tokio::time::sleep_until(start).await;
    mark();
    tokio::time::sleep_until(end).await;
    mark();
    let mut sample = Sample {
        completed: 0,
        errors: 0,
        latency_us: Histogram::new(3)?,
        window,
    };
    for worker in workers {
        let (completed, errors, histogram) = worker.await??;
        sample.completed += completed;
        sample.errors += errors;
        sample.latency_us.add(histogram)?;
    }
    Ok(sample)
}

/// How a worker makes a request of a message.
trait Requests: Send + 'static {
    fn request<T: Send + 'static>(&self, message: T) -> tonic::Request<T>;
}

/// A bare request, as a plain gRPC client sends it.
struct Plain;

impl Requests for Plain {
    fn request<T: Send + 'static>(&self, message: T) -> tonic::Request<T> {
        tonic::Request::new(message)
    }
}

/// A request as the application services make theirs: a request id, a
/// deadline, and a command's idempotency key (which makes it retryable).
struct Stacked;

impl Requests for Stacked {
    fn request<T: Send + 'static>(&self, message: T) -> tonic::Request<T> {
        let call = strata_rpc::client::Call::new("bench", Duration::from_secs(10), Duration::from_secs(3));
        call.request(message)
    }
}

/// One closed-loop worker: the next call as soon as the last one returns.
/// For updates, worker `w` owns the products n with (n - 1) % concurrency == w,
/// so no two workers race on a version and `expected_version` is always current.
async fn work<C, R>(
    mut client: ProductServiceClient<C>,
    requests: R,
    load: Load,
    worker: u32,
    start: Instant,
    end: Instant,
) -> anyhow::Result<(u64, u64, Histogram<u64>)>
where
    C: tonic::client::GrpcService<tonic::body::Body> + Send + 'static,
    C::Future: Send,
    C::Error: Into<tonic::codegen::StdError>,
    C::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <C::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
    R: Requests,
{
    let mut histogram = Histogram::<u64>::new(3)?;
    let (mut completed, mut errors) = (0, 0);
    let mut rng = fastrand::Rng::with_seed(u64::from(worker) * 7919 + 1);
    let owned: Vec<u32> = (1..=load.products)
        .filter(|n| (n - 1) % load.concurrency == worker)
        .collect();
    let mut versions: Vec<u64> = owned
        .iter()
        .map(|n| load.versions.get(*n as usize - 1).copied().unwrap_or(1))
        .collect();
    let mut seq = 0u64;
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let ok = match load.workload {
            Workload::Get => {
                let id = product_id(rng.u32(1..=load.products));
                client
                    .get_product(requests.request(pb::GetProductRequest { id }))
                    .await
                    .is_ok()
            }
            Workload::Update => {
                if owned.is_empty() {
                    break;
                }
                let k = rng.usize(..owned.len());
                seq += 1;
                let request = pb::ChangePriceRequest {
                    id: product_id(owned[k]),
                    request_id: format!("{}-{worker}-{seq}", load.tag),
                    expected_version: Some(versions[k]),
                    price: Some(strata_proto::r#type::v1::Money {
                        currency_code: "EUR".into(),
                        amount_minor: rng.i64(100..100_000),
                    }),
                };
                match client.change_price(requests.request(request)).await {
                    Ok(response) => {
                        versions[k] = response
                            .into_inner()
                            .product
                            .map_or(versions[k] + 1, |p| p.version);
                        true
                    }
                    Err(_) => {
                        // Re-read the version so one failure does not become many.
                        let id = product_id(owned[k]);
                        if let Ok(r) = client
                            .get_product(requests.request(pb::GetProductRequest { id }))
                            .await
                        {
                            versions[k] = r.into_inner().product.map_or(versions[k], |p| p.version);
                        }
                        false
                    }
                }
            }
        };
        let finished = Instant::now();
        if began >= start && finished <= end {
            if ok {
                completed += 1;
                histogram
                    .record(u64::try_from(finished.duration_since(began).as_micros()).unwrap_or(u64::MAX))?;
            } else {
                errors += 1;
            }
        }
    }
    Ok((completed, errors, histogram))
}
