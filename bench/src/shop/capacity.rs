//! `strata-load capacity`: what the shop serves and what each request costs,
//! in closed loops at rising concurrency (`make loadtest`,
//! `scripts/loadtest.py`, runs it against each topology and writes the
//! report).
//!
//! Workloads, each a window per concurrency:
//! - `browse`: `GET /v1/products/{id}` through the storefront, anonymous, as a
//!   shopper's browser would;
//! - `direct-browse`: the same two calls the storefront makes for it
//!   (`GetProduct`, then `BatchGetStockItems`), straight to the data service
//!   over one plain gRPC channel: the reference the edge's overhead is
//!   measured against, in the same run;
//! - `checkout`: a one-line checkout (one unit) with an Idempotency-Key, by
//!   shoppers in turn. After the warm-up and after the window staff ship
//!   what was ordered, outside the measurement, so that every window starts
//!   with no open orders.
//!
//! Each window runs `--warmup` seconds, lets every request in flight finish,
//! reads the meters, runs `--seconds`, lets the requests in flight finish
//! again and reads the meters again: so what the meters counted is what the
//! window's requests caused (and the background: health checks, event
//! followers), and nothing of the next window. The meters:
//! - the CPU time of each process or container named with `--cpu`, and the
//!   load generator's own;
//! - each data service's `/metrics` (`--metrics`): gRPC calls by method, and
//!   each method's latency histogram as the data service saw it;
//! - PostgreSQL's `pg_stat_statements` (`--postgres`): statements executed,
//!   by database.
//!
//! Writes `<out>/<topology>.json`: per window the requests, their answers,
//! throughput, p50/p99/p99.9 as the client saw them, and per request the CPU
//! of each process, the gRPC calls by method with their server-side p50 and
//! p99, and the statements by database.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};
use strata_proto::{
    catalog::v1 as catalog, catalog::v1::product_service_client::ProductServiceClient,
    inventory::v1 as inventory, inventory::v1::stock_item_service_client::StockItemServiceClient,
};
use tokio::time::Instant;

use crate::{
    schedule::histogram,
    setup::{Product, Shopper, Target, begin, setup_products, setup_shoppers},
};

/// The capacity run's settings (`strata-load capacity --help`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Capacity {
    /// Where the shop is, and its staff account.
    #[command(flatten)]
    target: Target,
    /// What this topology is called in the report (and the file's name).
    #[arg(long, default_value = "shop")]
    topology: String,
    /// Workloads, in order: browse, direct-browse, checkout.
    #[arg(long, value_delimiter = ',', default_value = "browse,checkout")]
    workloads: Vec<Workload>,
    /// Concurrency levels (requests in flight, each a client waiting for its
    /// answer before it sends the next).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    concurrency: Vec<u32>,
    /// Seconds measured per window.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of warm-up before each window, not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Shoppers taking turns at checkout. Each checkout first lists the
    /// shopper's open orders (at most `--max-open-orders`), so a few
    /// shoppers with many open orders each would make it dearer than in a
    /// shop: with 200, each holds a handful by the end of a window.
    #[arg(long, default_value_t = 200)]
    shoppers: u32,
    /// Products on sale. A stock item keeps its open reservations in its
    /// row, so few skus bought often make each reservation dearer as the
    /// window goes on (the hot sku of `docs/SCALING.md`); 256 keep it to a
    /// handful each, as in a shop.
    #[arg(long, default_value_t = 256)]
    skus: u32,
    /// The data service holding catalog and inventory, for `direct-browse`.
    #[arg(long)]
    direct: Option<String>,
    /// The service token `direct-browse` presents, if the data service wants one.
    #[arg(long, env = "STRATA_LOAD_SERVICE_TOKEN", hide_env_values = true)]
    service_token: Option<String>,
    /// A process or container whose CPU time is measured:
    /// `NAME=pid:N` or `NAME=container:ID` (repeatable).
    #[arg(long = "cpu", value_parser = parse_cpu)]
    cpu: Vec<(String, CpuSource)>,
    /// A data service's or an edge's Prometheus endpoint: `NAME=URL`
    /// (repeatable).
    #[arg(long = "metrics", value_parser = parse_named)]
    metrics: Vec<(String, String)>,
    /// PostgreSQL, as a URL of a role that may read `pg_stat_statements`
    /// (the server must load it): statements counted per window.
    #[arg(long, env = "STRATA_LOAD_POSTGRES_URL", hide_env_values = true)]
    postgres: Option<String>,
    /// Where `<topology>.json` goes.
    #[arg(long, default_value = "target/loadtest")]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Workload {
    Browse,
    DirectBrowse,
    Checkout,
}

#[derive(Debug, Clone)]
enum CpuSource {
    Pid(u32),
    Container(String),
}

fn parse_named(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE"))
}

fn parse_cpu(text: &str) -> Result<(String, CpuSource), String> {
    let (name, source) = parse_named(text)?;
    let source = if let Some(pid) = source.strip_prefix("pid:") {
        CpuSource::Pid(pid.parse().map_err(|e| format!("{text:?}: {e}"))?)
    } else if let Some(id) = source.strip_prefix("container:") {
        CpuSource::Container(id.to_owned())
    } else {
        return Err(format!("{text:?}: expected NAME=pid:N or NAME=container:ID"));
    };
    Ok((name, source))
}

impl CpuSource {
    fn read(&self) -> anyhow::Result<Duration> {
        match self {
            Self::Pid(pid) => crate::cpu::process(*pid),
            Self::Container(id) => crate::cpu::container(id),
        }
    }
}

/// One window's figures.
#[derive(Debug, Serialize)]
struct Window {
    workload: Workload,
    concurrency: u32,
    seconds: f64,
    /// Requests completed in the window.
    requests: u64,
    /// Their answers, by HTTP status (`grpc:CODE` for direct calls, `0`: none).
    answers: BTreeMap<String, u64>,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    /// CPU milliseconds per request, by process.
    cpu_ms_per_request: BTreeMap<String, f64>,
    /// The whole machine's busy CPU milliseconds per request: the processes'
    /// and the kernel's work for none of them.
    machine_cpu_ms_per_request: f64,
    /// Cores busy on average during the window.
    busy_cores: f64,
    /// gRPC calls served per request, by `Service/Method` (health and
    /// reflection left out), with the latency the data services saw.
    grpc: BTreeMap<String, Step>,
    /// gRPC calls per request as the edges' clients waited for them
    /// (retries and hedges included), by `Service/Method`.
    grpc_client: BTreeMap<String, Step>,
    /// The edges' HTTP requests as the edges timed them, by `METHOD route`.
    http: BTreeMap<String, Step>,
    /// PostgreSQL statements per request, by database.
    statements_per_request: BTreeMap<String, f64>,
}

/// One gRPC method as the data services saw it during a window.
#[derive(Debug, Default, Serialize)]
struct Step {
    per_request: f64,
    p50_us: f64,
    p99_us: f64,
}

/// What the meters read at one instant.
#[derive(Debug, Default)]
struct Reading {
    cpu: BTreeMap<String, Duration>,
    machine: Duration,
    /// Calls by method, summed over data services.
    calls: BTreeMap<String, f64>,
    /// Latency buckets by method: upper bound (s) → cumulative count, summed
    /// over data services.
    buckets: BTreeMap<String, BTreeMap<OrderedBound, f64>>,
    /// The same for calls as the edges' clients waited for them
    /// (`strata_rpc_client_call_duration_seconds`), by method.
    client_buckets: BTreeMap<String, BTreeMap<OrderedBound, f64>>,
    /// The same for the edges' HTTP requests, by `METHOD route`.
    http_buckets: BTreeMap<String, BTreeMap<OrderedBound, f64>>,
    statements: BTreeMap<String, f64>,
}

/// A bucket's upper bound, ordered (`+Inf` last).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedBound(f64);
impl Eq for OrderedBound {}
impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct World {
    load: Capacity,
    http: reqwest::Client,
    staff: String,
    products: Vec<Product>,
    shoppers: Vec<Shopper>,
    direct: Option<(
        ProductServiceClient<tonic::transport::Channel>,
        StockItemServiceClient<tonic::transport::Channel>,
    )>,
    /// Orders acknowledged and not yet shipped.
    to_ship: Mutex<Vec<String>>,
    turn: AtomicU64,
}

pub(crate) async fn run(load: Capacity) -> anyhow::Result<()> {
    std::fs::create_dir_all(&load.out).with_context(|| format!("creating {}", load.out.display()))?;
    let (http, staff, tag) = begin(&load.target, 1024).await?;
    let tag = tag.as_str();
    let products = setup_products(&http, &load.target, &staff, tag, load.skus, 1_000_000).await?;
    let shoppers = if load.workloads.contains(&Workload::Checkout) {
        setup_shoppers(&http, &load.target, tag, load.shoppers).await?
    } else {
        Vec::new()
    };
    let direct = match (&load.direct, load.workloads.contains(&Workload::DirectBrowse)) {
        (Some(address), true) => {
            let channel = tonic::transport::Endpoint::from_shared(address.clone())
                .context("--direct")?
                .tcp_nodelay(true)
                .connect()
                .await
                .with_context(|| format!("connecting to {address}"))?;
            Some((
                ProductServiceClient::new(channel.clone()),
                StockItemServiceClient::new(channel),
            ))
        }
        (None, true) => bail!("direct-browse needs --direct"),
        _ => None,
    };
    let world = Arc::new(World {
        load: load.clone(),
        http,
        staff,
        products,
        shoppers,
        direct,
        to_ship: Mutex::new(Vec::new()),
        turn: AtomicU64::new(0),
    });
    let postgres = match &load.postgres {
        Some(url) => Some(Statements::connect(url).await?),
        None => None,
    };
    let mut windows = Vec::new();
    for &workload in &load.workloads {
        for &concurrency in &load.concurrency {
            let window = measure(&world, postgres.as_ref(), workload, concurrency).await?;
            eprintln!(
                "strata-load capacity {}: {:?} c={concurrency}: {:.0}/s, p50 {} µs, p99 {} µs, answers {:?}",
                load.topology, workload, window.per_sec, window.p50_us, window.p99_us, window.answers
            );
            windows.push(window);
            if workload == Workload::Checkout {
                world.ship_all().await?;
            }
        }
    }
    let report = json!({
        "topology": load.topology,
        "seconds": load.seconds,
        "warmup": load.warmup,
        "windows": windows,
    });
    let file = load.out.join(format!("{}.json", load.topology));
    std::fs::write(&file, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("strata-load capacity: wrote {}", file.display());
    Ok(())
}

/// One window: warm-up, then the measured run between two readings.
async fn measure(
    world: &Arc<World>,
    postgres: Option<&Statements>,
    workload: Workload,
    concurrency: u32,
) -> anyhow::Result<Window> {
    closed_loop(
        world,
        workload,
        concurrency,
        Duration::from_secs_f64(world.load.warmup),
    )
    .await?;
    if workload == Workload::Checkout {
        world.ship_all().await?;
    }
    let before = world.read(postgres).await?;
    let run = closed_loop(
        world,
        workload,
        concurrency,
        Duration::from_secs_f64(world.load.seconds),
    )
    .await?;
    let after = world.read(postgres).await?;
    let requests = run.latencies.len();
    let per = |value: f64| {
        if requests == 0 {
            0.0
        } else {
            value / requests as f64
        }
    };
    let cpu_ms_per_request = after
        .cpu
        .iter()
        .map(|(name, used)| {
            let was = before.cpu.get(name).copied().unwrap_or_default();
            (name.clone(), per(used.saturating_sub(was).as_secs_f64() * 1000.0))
        })
        .collect();
    let machine = after.machine.saturating_sub(before.machine);
    let mut grpc = BTreeMap::new();
    for (method, calls) in &after.calls {
        let calls = calls - before.calls.get(method).copied().unwrap_or(0.0);
        if calls <= 0.0 {
            continue;
        }
        let buckets = delta_buckets(before.buckets.get(method), after.buckets.get(method));
        grpc.insert(
            method.clone(),
            Step {
                per_request: per(calls),
                p50_us: quantile(&buckets, 0.5) * 1e6,
                p99_us: quantile(&buckets, 0.99) * 1e6,
            },
        );
    }
    let steps = |before: &BTreeMap<String, BTreeMap<OrderedBound, f64>>,
                 after: &BTreeMap<String, BTreeMap<OrderedBound, f64>>| {
        after
            .iter()
            .filter_map(|(key, buckets)| {
                let buckets = delta_buckets(before.get(key), Some(buckets));
                let count = buckets.last().map_or(0.0, |&(_, n)| n);
                (count > 0.0).then(|| {
                    (
                        key.clone(),
                        Step {
                            per_request: per(count),
                            p50_us: quantile(&buckets, 0.5) * 1e6,
                            p99_us: quantile(&buckets, 0.99) * 1e6,
                        },
                    )
                })
            })
            .collect::<BTreeMap<_, _>>()
    };
    let grpc_client = steps(&before.client_buckets, &after.client_buckets);
    let http = steps(&before.http_buckets, &after.http_buckets);
    let statements_per_request = after
        .statements
        .iter()
        .map(|(db, n)| {
            (
                db.clone(),
                per(n - before.statements.get(db).copied().unwrap_or(0.0)),
            )
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    Ok(Window {
        workload,
        concurrency,
        seconds: run.elapsed.as_secs_f64(),
        requests: requests as u64,
        answers: run.answers,
        per_sec: requests as f64 / run.elapsed.as_secs_f64(),
        p50_us: run.latencies.value_at_quantile(0.5),
        p99_us: run.latencies.value_at_quantile(0.99),
        p999_us: run.latencies.value_at_quantile(0.999),
        cpu_ms_per_request,
        machine_cpu_ms_per_request: per(machine.as_secs_f64() * 1000.0),
        busy_cores: machine.as_secs_f64() / run.elapsed.as_secs_f64(),
        grpc,
        grpc_client,
        http,
        statements_per_request,
    })
}

/// What a closed loop did.
struct Run {
    latencies: hdrhistogram::Histogram<u64>,
    answers: BTreeMap<String, u64>,
    /// From the start to the last answer.
    elapsed: Duration,
}

/// `concurrency` clients, started together, each sending its next request
/// when the last one is answered, until `duration` has passed; returns when
/// every request is answered.
async fn closed_loop(
    world: &Arc<World>,
    workload: Workload,
    concurrency: u32,
    duration: Duration,
) -> anyhow::Result<Run> {
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency as usize));
    let start = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let world = world.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let mut latencies = histogram()?;
                let mut answers = BTreeMap::<String, u64>::new();
                barrier.wait().await;
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    let sent = Instant::now();
                    let answer = world.once(workload).await;
                    latencies.record(sent.elapsed().as_micros().max(1) as u64)?;
                    *answers.entry(answer).or_default() += 1;
                }
                anyhow::Ok((latencies, answers))
            })
        })
        .collect();
    let mut run = Run {
        latencies: histogram()?,
        answers: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    for client in clients {
        let (latencies, answers) = client.await??;
        run.latencies.add(latencies)?;
        for (answer, n) in answers {
            *run.answers.entry(answer).or_default() += n;
        }
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

impl World {
    /// One request of `workload`: its answer (HTTP status, or a gRPC code).
    async fn once(&self, workload: Workload) -> String {
        let product = &self.products[fastrand::usize(..self.products.len())];
        match workload {
            Workload::Browse => {
                let url = format!("{}/v1/products/{}", self.load.target.storefront, product.id);
                match self.http.get(url).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // The body read to the end, as a browser would.
                        let _ = response.bytes().await;
                        status.to_string()
                    }
                    Err(_) => "0".to_owned(),
                }
            }
            Workload::DirectBrowse => {
                let Some((products, stock)) = &self.direct else {
                    return "no --direct".to_owned();
                };
                let got = products
                    .clone()
                    .get_product(self.grpc_request(catalog::GetProductRequest {
                        id: product.id.clone(),
                    }))
                    .await;
                let got = match got {
                    Ok(got) => got.into_inner(),
                    Err(status) => return format!("grpc:{:?}", status.code()),
                };
                let sku = got.product.map(|p| p.sku).unwrap_or_default();
                match stock
                    .clone()
                    .batch_get_stock_items(
                        self.grpc_request(inventory::BatchGetStockItemsRequest { skus: vec![sku] }),
                    )
                    .await
                {
                    Ok(_) => "grpc:Ok".to_owned(),
                    Err(status) => format!("grpc:{:?}", status.code()),
                }
            }
            Workload::Checkout => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) as usize;
                let shopper = &self.shoppers[turn % self.shoppers.len()];
                let body = json!({"lines": [{"product_id": product.id, "quantity": 1}]});
                let answer = self
                    .http
                    .post(format!("{}/v1/orders", self.load.target.storefront))
                    .bearer_auth(&shopper.token)
                    .header("idempotency-key", uuid::Uuid::now_v7().to_string())
                    .json(&body)
                    .send()
                    .await;
                match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        if status == 201
                            && let Some(id) = body["id"].as_str()
                        {
                            self.to_ship.lock().expect("to_ship").push(id.to_owned());
                        }
                        status.to_string()
                    }
                    Err(_) => "0".to_owned(),
                }
            }
        }
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(Duration::from_secs(5));
        if let Some(token) = &self.load.service_token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// Ships every order acknowledged so far, 16 at a time (not measured).
    async fn ship_all(self: &Arc<Self>) -> anyhow::Result<()> {
        let orders = std::mem::take(&mut *self.to_ship.lock().expect("to_ship"));
        let queue = Arc::new(Mutex::new(orders));
        let shippers: Vec<_> = (0..16)
            .map(|_| {
                let world = self.clone();
                let queue = queue.clone();
                tokio::spawn(async move {
                    loop {
                        let Some(order) = queue.lock().expect("queue").pop() else {
                            return anyhow::Ok(());
                        };
                        let url = format!("{}/v1/orders/{order}/ship", world.load.target.backoffice);
                        let give_up = Instant::now() + Duration::from_secs(60);
                        loop {
                            let response = world.http.post(&url).bearer_auth(&world.staff).send().await?;
                            let status = response.status().as_u16();
                            if status == 200 {
                                break;
                            }
                            // Backoffice's own limit on one client: wait as it says.
                            if !matches!(status, 429 | 503) || Instant::now() > give_up {
                                bail!("POST {url}: {status}");
                            }
                            tokio::time::sleep(crate::setup::retry_after(&response)).await;
                        }
                    }
                })
            })
            .collect();
        for shipper in shippers {
            shipper.await??;
        }
        Ok(())
    }

    /// Every meter, now.
    async fn read(&self, postgres: Option<&Statements>) -> anyhow::Result<Reading> {
        let mut reading = Reading {
            machine: machine_cpu()?,
            ..Reading::default()
        };
        // The load generator's own, on the same machine's cores.
        reading
            .cpu
            .insert("strata-load".to_owned(), crate::cpu::process(std::process::id())?);
        for (name, source) in &self.load.cpu {
            reading.cpu.insert(
                name.clone(),
                source.read().with_context(|| format!("CPU of {name}"))?,
            );
        }
        for (name, url) in &self.load.metrics {
            let text = self
                .http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("metrics of {name} at {url}"))?
                .text()
                .await?;
            add_metrics(&mut reading, &text);
        }
        if let Some(postgres) = postgres {
            reading.statements = postgres.count().await?;
        }
        Ok(reading)
    }
}

/// CPU time the whole machine has been busy so far, summed over its cores
/// (every state of `/proc/stat`'s `cpu` line but idle and iowait): what the
/// processes used and what the kernel did for no process in particular
/// (softirq work for packets between containers, say).
fn machine_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Ok(Duration::from_secs_f64(
        busy as f64 / crate::cpu::clock_ticks_per_second(),
    ))
}

/// Adds what a data service's or an edge's `/metrics` says of its calls to
/// `reading`.
fn add_metrics(reading: &mut Reading, text: &str) {
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(labels) = series.strip_prefix("strata_rpc_server_calls_total{") {
            let labels = parse_labels(labels);
            let Some(method) = method_of(&labels) else {
                continue;
            };
            *reading.calls.entry(method).or_default() += value;
        } else if let Some(labels) = series.strip_prefix("strata_rpc_server_call_duration_seconds_bucket{") {
            let labels = parse_labels(labels);
            if let Some(method) = method_of(&labels) {
                add_bucket(&mut reading.buckets, method, &labels, value);
            }
        } else if let Some(labels) = series.strip_prefix("strata_rpc_client_call_duration_seconds_bucket{") {
            let labels = parse_labels(labels);
            if let Some(method) = method_of(&labels) {
                add_bucket(&mut reading.client_buckets, method, &labels, value);
            }
        } else if let Some(labels) = series.strip_prefix("strata_http_request_duration_seconds_bucket{") {
            let labels = parse_labels(labels);
            if let (Some(method), Some(route)) = (labels.get("method"), labels.get("route")) {
                let key = format!("{method} {route}");
                add_bucket(&mut reading.http_buckets, key, &labels, value);
            }
        }
    }
}

/// Adds a histogram bucket's count (its bound in `labels["le"]`) under `key`.
fn add_bucket(
    into: &mut BTreeMap<String, BTreeMap<OrderedBound, f64>>,
    key: String,
    labels: &BTreeMap<String, String>,
    value: f64,
) {
    let Some(le) = labels.get("le") else { return };
    let bound = if le == "+Inf" {
        f64::INFINITY
    } else {
        le.parse().unwrap_or(f64::INFINITY)
    };
    *into
        .entry(key)
        .or_default()
        .entry(OrderedBound(bound))
        .or_default() += value;
}

/// `Service/Method`, unless it is health or reflection.
fn method_of(labels: &BTreeMap<String, String>) -> Option<String> {
    let service = labels.get("service")?;
    if service.starts_with("grpc.") {
        return None;
    }
    let short = service.rsplit('.').next().unwrap_or(service);
    Some(format!("{short}/{}", labels.get("method")?))
}

/// `a="x",b="y"}` as a map (values hold no quotes or commas here).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.trim_end_matches('}')
        .split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

fn delta_buckets(
    before: Option<&BTreeMap<OrderedBound, f64>>,
    after: Option<&BTreeMap<OrderedBound, f64>>,
) -> Vec<(f64, f64)> {
    after
        .into_iter()
        .flatten()
        .map(|(bound, n)| {
            let was = before.and_then(|b| b.get(bound)).copied().unwrap_or(0.0);
            (bound.0, n - was)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated linearly within its
/// bucket (as Prometheus' `histogram_quantile` does); seconds.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(upper, cumulative) in buckets {
        if cumulative >= rank {
            if upper.is_infinite() {
                return lower;
            }
            let inside = cumulative - below;
            return if inside > 0.0 {
                lower + (upper - lower) * (rank - below) / inside
            } else {
                upper
            };
        }
        (lower, below) = (upper, cumulative);
    }
    lower
}

/// `pg_stat_statements`, read on a connection of its own.
struct Statements(tokio::sync::Mutex<sqlx::PgConnection>);

impl Statements {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await.context("--postgres")?;
        sqlx::query("create extension if not exists pg_stat_statements")
            .execute(&mut conn)
            .await
            .context("pg_stat_statements (the server must load it: shared_preload_libraries)")?;
        Ok(Self(tokio::sync::Mutex::new(conn)))
    }

    /// Statements executed so far, by database (this reader's own left out).
    async fn count(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        use sqlx::Row as _;
        let mut conn = self.0.lock().await;
        let rows = sqlx::query(
            "select d.datname, sum(s.calls)::float8 from pg_stat_statements s \
             join pg_database d on d.oid = s.dbid \
             where s.query not ilike '%pg_stat_statements%' group by d.datname",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<String, _>(0), row.get::<f64, _>(1)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_interpolated_within_its_bucket() {
        // 10 calls at most 1 ms, 10 more at most 2 ms, none slower.
        let buckets = [(0.001, 10.0), (0.002, 20.0), (f64::INFINITY, 20.0)];
        assert!((quantile(&buckets, 0.5) - 0.001).abs() < 1e-9);
        assert!((quantile(&buckets, 0.75) - 0.0015).abs() < 1e-9);
        assert!((quantile(&buckets, 0.25) - 0.0005).abs() < 1e-9);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn calls_and_buckets_are_read_per_method_and_health_is_left_out() {
        let text = "\
strata_rpc_server_calls_total{service=\"strata.catalog.v1.ProductService\",method=\"GetProduct\",code=\"OK\"} 7
strata_rpc_server_calls_total{service=\"strata.catalog.v1.ProductService\",method=\"GetProduct\",code=\"NOT_FOUND\"} 1
strata_rpc_server_calls_total{service=\"grpc.health.v1.Health\",method=\"Check\",code=\"OK\"} 99
strata_rpc_server_call_duration_seconds_bucket{le=\"0.001\",service=\"strata.catalog.v1.ProductService\",method=\"GetProduct\"} 8
strata_rpc_server_call_duration_seconds_bucket{le=\"+Inf\",service=\"strata.catalog.v1.ProductService\",method=\"GetProduct\"} 8
";
        let mut reading = Reading::default();
        add_metrics(&mut reading, text);
        add_metrics(&mut reading, text);
        assert_eq!(reading.calls.len(), 1, "{:?}", reading.calls);
        assert_eq!(reading.calls["ProductService/GetProduct"], 16.0);
        let buckets = &reading.buckets["ProductService/GetProduct"];
        assert_eq!(buckets[&OrderedBound(0.001)], 16.0);
        assert_eq!(buckets[&OrderedBound(f64::INFINITY)], 16.0);
    }
}
