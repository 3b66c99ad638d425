//! `strata-load flood`: a sign-in flood from many addresses against one
//! storefront, and what it costs catalog reads made through another.
//!
//! 1. Setup: `accounts` shoppers sign up through the reading storefront.
//! 2. Idle: catalog reads (`GET /v1/products?page_size=20`) at `read_rate`.
//! 3. Flood: the same reads, and beside them sign-ins at `rate` per second
//!    spread over `addresses` loopback source addresses and every account;
//!    one in four carries a wrong password.
//!
//! Both loads are open loops (see [`crate::schedule`]). The sign-ins' answers
//! are counted by status; an answer other than 200, 401, 429 and 503, or a
//! 429/503 that is not problem+json, is unclean and fails the run.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::schedule::{self, histogram, open_loop};

/// The flood's settings (`strata-load flood --help`).
#[derive(Debug, clap::Args)]
pub(crate) struct Flood {
    /// The flooded storefront.
    #[arg(long)]
    storefront: String,
    /// The storefront the catalog is read through (and the accounts made at).
    #[arg(long)]
    reader: String,
    /// Sign-ins per second.
    #[arg(long, default_value_t = 400.0)]
    rate: f64,
    /// Catalog reads per second, idle and under the flood.
    #[arg(long, default_value_t = 100.0)]
    read_rate: f64,
    /// Seconds of each phase.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Source addresses the sign-ins come from (127.0.1.1, 127.0.1.2, …).
    #[arg(long, default_value_t = 100)]
    addresses: u16,
    /// Accounts signed in to.
    #[arg(long, default_value_t = 40)]
    accounts: u32,
}

const PASSWORD: &str = "a flooding password";
/// A request still unanswered after this is counted as a timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_IN_FLIGHT: usize = 4096;

/// The client for one source address.
fn client(source: IpAddr) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .local_address(source)
        .timeout(CLIENT_TIMEOUT)
        .pool_max_idle_per_host(64)
        .build()
        .context("an HTTP client")
}

/// The nth source address of the flood, in 127.0.1.0/24 and on.
fn source(n: u16) -> IpAddr {
    let n = u32::from(n) + 256 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, (n & 0xff) as u8))
}

pub(crate) async fn run(flood: Flood) -> anyhow::Result<()> {
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let emails: Vec<String> = (0..flood.accounts)
        .map(|n| format!("flood-{}-{n}@shop.test", &tag[20..]))
        .collect();
    // Sign-ups count against the per-address budget: each from its own address.
    for (n, email) in emails.iter().enumerate() {
        let response = client(IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1 + (n % 250) as u8)))?
            .post(format!("{}/v1/accounts", flood.reader))
            .json(&json!({"email": email, "password": PASSWORD, "display_name": "Flood"}))
            .send()
            .await?;
        if response.status() != 201 {
            bail!(
                "sign-up of {email}: {} {}",
                response.status(),
                response.text().await?
            );
        }
    }

    let reader = client(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    let seconds = Duration::from_secs_f64(flood.seconds);
    let idle = reads(&reader, &flood.reader, flood.read_rate, seconds).await?;

    let clients = (0..flood.addresses)
        .map(|n| client(source(n)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let answers = Arc::new(Mutex::new(Answers {
        by_status: BTreeMap::new(),
        timeouts: 0,
        failed: Vec::new(),
        unclean: Vec::new(),
        latency: histogram()?,
        by_status_latency: BTreeMap::new(),
    }));
    let sign_ins = {
        let answers = answers.clone();
        let url = format!("{}/v1/sessions", flood.storefront);
        let emails = emails.clone();
        open_loop(flood.rate, seconds, MAX_IN_FLIGHT, move |n, due| {
            let client = clients[n as usize % clients.len()].clone();
            let email = emails[(n / u64::from(flood.addresses)) as usize % emails.len()].clone();
            let password = if n % 4 == 3 { "not the password" } else { PASSWORD };
            let request = client
                .post(url.clone())
                .json(&json!({"email": email, "password": password}));
            let answers = answers.clone();
            async move {
                let answer = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let problem = response
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
                        let body = response.text().await.unwrap_or_default();
                        Answer::Status {
                            status,
                            problem,
                            body,
                        }
                    }
                    Err(e) if e.is_timeout() => Answer::Timeout,
                    Err(e) => Answer::Failed(e.to_string()),
                };
                answers
                    .lock()
                    .expect("answers")
                    .add(answer, schedule::since_us(due));
            }
        })
    };
    let (flooded, sign_in_run) =
        tokio::join!(reads(&reader, &flood.reader, flood.read_rate, seconds), sign_ins);
    let flooded = flooded?;
    let answers = Arc::try_unwrap(answers).map_err(|_| anyhow::anyhow!("answers still shared"))?;
    let answers = answers.into_inner().expect("answers");

    let ratio = flooded.value_at_quantile(0.99) as f64 / idle.value_at_quantile(0.99) as f64;
    let summary = json!({
        "sign_ins": {
            "rate": flood.rate, "seconds": flood.seconds, "addresses": flood.addresses,
            "accounts": flood.accounts, "started": sign_in_run.started, "skipped": sign_in_run.skipped,
            "by_status": answers.by_status, "timeouts": answers.timeouts, "failed": answers.failed.len(),
            "unclean": answers.unclean.len(),
            "p50_ms": ms(answers.latency.value_at_quantile(0.5)), "p99_ms": ms(answers.latency.value_at_quantile(0.99)), "max_ms": ms(answers.latency.max()),
            "latency_by_status": answers.by_status_latency.iter().map(|(status, h)| (status.to_string(), json!({
                "p50_ms": ms(h.value_at_quantile(0.5)), "p99_ms": ms(h.value_at_quantile(0.99)), "max_ms": ms(h.max()),
            }))).collect::<serde_json::Map<_, _>>(),
        },
        "catalog_reads": {
            "rate": flood.read_rate,
            "idle": {"count": idle.len(), "p50_ms": ms(idle.value_at_quantile(0.5)), "p99_ms": ms(idle.value_at_quantile(0.99))},
            "flood": {"count": flooded.len(), "p50_ms": ms(flooded.value_at_quantile(0.5)), "p99_ms": ms(flooded.value_at_quantile(0.99))},
            "p99_ratio": ratio,
        },
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(first) = answers.unclean.first().or(answers.failed.first()) {
        bail!(
            "{} unclean answers and {} failed requests; the first: {first}",
            answers.unclean.len(),
            answers.failed.len()
        );
    }
    if answers.timeouts > 0 {
        bail!(
            "{} sign-ins were not answered within {CLIENT_TIMEOUT:?}",
            answers.timeouts
        );
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Catalog reads at `rate` for `duration`: their latencies (µs). A read that
/// does not answer 200 fails the run.
async fn reads(
    client: &reqwest::Client,
    base: &str,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let latency = Arc::new(Mutex::new(histogram()?));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let url = format!("{base}/v1/products?page_size=20");
    let run = open_loop(rate, duration, MAX_IN_FLIGHT, |_, due| {
        let request = client.get(url.clone());
        let (latency, failures) = (latency.clone(), failures.clone());
        async move {
            match request.send().await {
                Ok(response) if response.status() == 200 => {
                    let _ = response.bytes().await;
                    latency
                        .lock()
                        .expect("latency")
                        .saturating_record(schedule::since_us(due));
                }
                Ok(response) => failures
                    .lock()
                    .expect("failures")
                    .push(response.status().to_string()),
                Err(e) => failures.lock().expect("failures").push(e.to_string()),
            }
        }
    })
    .await;
    let failures = failures.lock().expect("failures");
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} catalog reads failed; the first: {first}",
            failures.len(),
            run.started
        );
    }
    if run.skipped > 0 {
        bail!("{} catalog reads could not start (generator limit)", run.skipped);
    }
    let latency = latency.lock().expect("latency").clone();
    Ok(latency)
}

enum Answer {
    Status {
        status: u16,
        problem: bool,
        body: String,
    },
    Timeout,
    Failed(String),
}

#[derive(Debug)]
struct Answers {
    by_status: BTreeMap<u16, u64>,
    timeouts: u64,
    failed: Vec<String>,
    unclean: Vec<String>,
    latency: Histogram<u64>,
    by_status_latency: BTreeMap<u16, Histogram<u64>>,
}

impl Answers {
    fn add(&mut self, answer: Answer, latency_us: u64) {
        match answer {
            Answer::Status {
                status,
                problem,
                body,
            } => {
                *self.by_status.entry(status).or_default() += 1;
                let clean = match status {
                    200 | 401 => true,
                    429 | 503 => problem,
                    _ => false,
                };
                if !clean {
                    self.unclean.push(format!(
                        "{status}: {}",
                        body.chars().take(200).collect::<String>()
                    ));
                }
                self.latency.saturating_record(latency_us);
                if let Ok(fresh) = histogram() {
                    self.by_status_latency
                        .entry(status)
                        .or_insert(fresh)
                        .saturating_record(latency_us);
                }
            }
            Answer::Timeout => self.timeouts += 1,
            Answer::Failed(e) => self.failed.push(e),
        }
    }
}
