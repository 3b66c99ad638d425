//! `strata-load shop`: the whole shop under a steady open-loop load through
//! its edges, every request recorded, then the truth read back and checked.
//!
//! Shoppers sign up and in, browse (list and get products), and check out
//! one or two skus with an Idempotency-Key of their own; a checkout that gets
//! no answer, a 5xx or a 429 is retried with the same key, as a client
//! should, until its deadline. Staff receive stock (each receive with an
//! Idempotency-Key of its own) and ship acknowledged orders. The mix per 20 requests: 11 browse, 4 checkouts, 4 ships (a browse
//! when nothing waits to be shipped), 1 receive.
//!
//! At the end ([`verify`]), backoffice is asked for every order and every
//! sku's stock, and the invariants are checked: every acknowledged order
//! exists once with its lines and total; every order of the run's shoppers is
//! the one of a key they used (the order id is derived from the buyer and the
//! key, so a second order for one key cannot hide); no stock went negative
//! or was oversold; every confirmed order holds a firm reservation for each
//! line; no held reservation outlived its time to live; reserved units are
//! those of confirmed orders (exactly, after `--settle-secs`).
//! Lost and duplicated must be 0: the run fails otherwise.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    io::Write as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    schedule::{histogram, open_loop},
    setup::{Product, Shopper, Target, begin, setup_products, setup_shoppers},
};

/// The shop load's settings (`strata-load shop --help`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ShopLoad {
    /// Where the shop is, and its staff account.
    #[command(flatten)]
    target: Target,
    /// Requests per second (open loop).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Shoppers.
    #[arg(long, default_value_t = 20)]
    shoppers: u32,
    /// Skus on sale.
    #[arg(long, default_value_t = 8)]
    skus: u32,
    /// Units of each sku received before the load.
    #[arg(long, default_value_t = 100_000)]
    stock: u64,
    /// How long a request may take before the client gives up on it; a
    /// checkout retries with its key until this much has passed since it was due.
    #[arg(long, default_value_t = 15_000)]
    deadline_ms: u64,
    /// How long to wait at the end for reservations of unanswered checkouts
    /// to expire before the stock must match the orders exactly.
    #[arg(long, default_value_t = 0)]
    settle_secs: u64,
    /// Where `requests.jsonl` and `summary.json` go.
    #[arg(long, default_value = "target/load")]
    out: PathBuf,
}

/// One request, as sent and as answered.
#[derive(Debug, Clone, Serialize)]
struct Record {
    /// When it was due, ms since the epoch.
    due_ms: u64,
    kind: &'static str,
    /// The HTTP status; 0 when no answer came (connection refused, reset, timeout).
    status: u16,
    latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What the run knows it did.
#[derive(Debug, Default)]
struct Ledger {
    records: Vec<Record>,
    /// Per checkout key: buyer, lines (product index, quantity), and the order
    /// acknowledged (if any).
    checkouts: HashMap<String, Checkout>,
    /// Acknowledged orders waiting to be shipped.
    to_ship: VecDeque<String>,
    shipped: HashSet<String>,
    /// Units received per sku: acknowledged, and sent without an answer.
    received: HashMap<String, (u64, u64)>,
    /// Requests sent again because no connection could be made.
    reconnects: u64,
}

#[derive(Debug, Clone)]
struct Checkout {
    buyer: uuid::Uuid,
    lines: Vec<(usize, u32)>,
    order: Option<String>,
    /// The answers this key got, by order id: more than one is a duplicate.
    answered: HashSet<String>,
}

struct World {
    load: ShopLoad,
    http: reqwest::Client,
    staff: String,
    products: Vec<Product>,
    shoppers: Vec<Shopper>,
    ledger: Mutex<Ledger>,
    epoch: tokio::time::Instant,
    epoch_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl World {
    fn due_ms(&self, due: tokio::time::Instant) -> u64 {
        self.epoch_ms + due.duration_since(self.epoch).as_millis() as u64
    }

    fn record(&self, record: Record) {
        self.ledger.lock().expect("ledger").records.push(record);
    }

    /// Sends `request` and records its answer as `kind`; the status and
    /// body, when it answered.
    async fn send(
        &self,
        kind: &'static str,
        due: tokio::time::Instant,
        key: Option<&str>,
        request: reqwest::RequestBuilder,
    ) -> Option<(u16, Value)> {
        let sent = tokio::time::Instant::now();
        let give_up = sent + Duration::from_millis(self.load.deadline_ms);
        let request = request.timeout(Duration::from_millis(self.load.deadline_ms));
        let mut answer = request.try_clone().expect("no streamed bodies").send().await;
        // A request that never left (no connection: the one backoffice
        // restarting, say) is sent again, as any HTTP client would; the
        // resends are counted, not hidden.
        // Shipping is idempotent (shipping a shipped order answers it as it
        // is), and a receive carries an Idempotency-Key: one that got no
        // answer at all is sent again too, as when the connection it was
        // sent on was closed by a stopping backoffice at that instant.
        while let Err(e) = &answer {
            let resend = e.is_connect() || (matches!(kind, "ship" | "receive") && !e.is_timeout());
            if !resend || tokio::time::Instant::now() + Duration::from_millis(100) >= give_up {
                break;
            }
            self.ledger.lock().expect("ledger").reconnects += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = request.try_clone().expect("no streamed bodies").send().await;
        }
        let (status, body, error) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                // A failure's problem detail says why (a breaker, a deadline…).
                let detail = (status >= 500).then(|| body["detail"].as_str().unwrap_or_default().to_owned());
                (status, Some(body), detail)
            }
            Err(e) => (0, None, Some(e.to_string())),
        };
        let order = body
            .as_ref()
            .filter(|_| kind == "checkout" && status == 201)
            .and_then(|b| b["id"].as_str().map(str::to_owned));
        self.record(Record {
            due_ms: self.due_ms(sent.max(due)),
            kind,
            status,
            latency_us: sent.elapsed().as_micros() as u64,
            key: key.map(str::to_owned),
            order,
            error,
        });
        body.map(|b| (status, b))
    }
}

pub(crate) async fn run(load: ShopLoad) -> anyhow::Result<()> {
    std::fs::create_dir_all(&load.out).with_context(|| format!("creating {}", load.out.display()))?;
    for stale in ["started", "summary.json", "requests.jsonl"] {
        let _ = std::fs::remove_file(load.out.join(stale));
    }
    let (http, staff, tag) = begin(&load.target, 256).await?;
    let tag = tag.as_str();
    let products = setup_products(&http, &load.target, &staff, tag, load.skus, load.stock).await?;
    let shoppers = setup_shoppers(&http, &load.target, tag, load.shoppers).await?;
    eprintln!(
        "strata-load shop: {} products, {} shoppers; {} requests/s for {} s",
        products.len(),
        shoppers.len(),
        load.rate,
        load.seconds
    );
    let mut ledger = Ledger::default();
    for product in &products {
        ledger.received.insert(product.sku.clone(), (load.stock, 0));
    }
    let world = Arc::new(World {
        load: load.clone(),
        http,
        staff,
        products,
        shoppers,
        ledger: Mutex::new(ledger),
        epoch: tokio::time::Instant::now(),
        epoch_ms: now_ms(),
    });
    // For a harness timing faults against the load: the load begins now.
    std::fs::write(load.out.join("started"), now_ms().to_string())?;
    let run = open_loop(
        load.rate,
        Duration::from_secs_f64(load.seconds),
        8192,
        |n, due| {
            let world = world.clone();
            async move { world.step(n, due).await }
        },
    )
    .await;
    if load.settle_secs > 0 {
        tokio::time::sleep(Duration::from_secs(load.settle_secs)).await;
    }
    let verdict = verify(&world).await?;
    let ledger = world.ledger.lock().expect("ledger");
    let mut file = std::io::BufWriter::new(std::fs::File::create(load.out.join("requests.jsonl"))?);
    for record in &ledger.records {
        serde_json::to_writer(&mut file, record)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    let mut summary = summarize(&ledger.records, run.skipped, &verdict)?;
    summary["resent_for_want_of_a_connection"] = json!(ledger.reconnects);
    std::fs::write(
        load.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if verdict.lost > 0 || verdict.duplicated > 0 || !verdict.violations.is_empty() {
        bail!(
            "{} lost, {} duplicated, {} invariant violations; the first: {:?}",
            verdict.lost,
            verdict.duplicated,
            verdict.violations.len(),
            verdict.violations.first()
        );
    }
    Ok(())
}

impl World {
    async fn step(&self, n: u64, due: tokio::time::Instant) {
        match n % 20 {
            0..=10 => self.browse(n, due).await,
            11..=14 => self.checkout(due).await,
            15..=18 => {
                let next = self.ledger.lock().expect("ledger").to_ship.pop_front();
                match next {
                    Some(order) => self.ship(order, due).await,
                    None => self.browse(n, due).await,
                }
            }
            _ => self.receive(due).await,
        }
    }

    async fn browse(&self, n: u64, due: tokio::time::Instant) {
        let shopper = &self.shoppers[fastrand::usize(..self.shoppers.len())];
        let url = if n.is_multiple_of(2) {
            format!("{}/v1/products?page_size=20", self.load.target.storefront)
        } else {
            let product = &self.products[fastrand::usize(..self.products.len())];
            format!("{}/v1/products/{}", self.load.target.storefront, product.id)
        };
        self.send(
            "browse",
            due,
            None,
            self.http.get(url).bearer_auth(&shopper.token),
        )
        .await;
    }

    async fn checkout(&self, due: tokio::time::Instant) {
        let shopper = self.shoppers[fastrand::usize(..self.shoppers.len())].clone();
        let first = fastrand::usize(..self.products.len());
        let mut lines = vec![(first, fastrand::u32(1..=3))];
        if fastrand::bool() && self.products.len() > 1 {
            let second = (first + 1 + fastrand::usize(..self.products.len() - 1)) % self.products.len();
            lines.push((second, fastrand::u32(1..=3)));
        }
        let key = uuid::Uuid::now_v7().to_string();
        self.ledger.lock().expect("ledger").checkouts.insert(
            key.clone(),
            Checkout {
                buyer: shopper.id,
                lines: lines.clone(),
                order: None,
                answered: HashSet::new(),
            },
        );
        let body = json!({"lines": lines.iter().map(|(p, q)| json!({"product_id": self.products[*p].id, "quantity": q})).collect::<Vec<_>>()});
        let give_up = due + Duration::from_millis(self.load.deadline_ms);
        let mut attempt_due = due;
        loop {
            let request = self
                .http
                .post(format!("{}/v1/orders", self.load.target.storefront))
                .bearer_auth(&shopper.token)
                .header("idempotency-key", &key)
                .json(&body);
            let answer = self.send("checkout", attempt_due, Some(&key), request).await;
            match answer {
                Some((201, order)) => {
                    let id = order["id"].as_str().unwrap_or_default().to_owned();
                    let mut ledger = self.ledger.lock().expect("ledger");
                    let checkout = ledger.checkouts.get_mut(&key).expect("the key was noted");
                    checkout.answered.insert(id.clone());
                    if checkout.order.is_none() {
                        checkout.order = Some(id.clone());
                        ledger.to_ship.push_back(id);
                    }
                    // One in ten acknowledged checkouts is sent again, as a
                    // client that missed the answer would: same key, same order.
                    if fastrand::u8(..10) != 0 {
                        return;
                    }
                }
                // Refused for a reason that a retry does not change (stock, bounds, validation).
                Some((status, _)) if (400..500).contains(&status) && status != 429 && status != 408 => return,
                _ => {}
            }
            if tokio::time::Instant::now() + Duration::from_millis(200) >= give_up {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            attempt_due = tokio::time::Instant::now();
        }
    }

    async fn ship(&self, order: String, due: tokio::time::Instant) {
        let request = self
            .http
            .post(format!("{}/v1/orders/{order}/ship", self.load.target.backoffice))
            .bearer_auth(&self.staff);
        let answer = self.send("ship", due, None, request).await;
        let mut ledger = self.ledger.lock().expect("ledger");
        match answer {
            Some((200, _)) => {
                ledger.shipped.insert(order);
            }
            // Not shipped (yet): another ship will try it again later.
            _ => ledger.to_ship.push_back(order),
        }
    }

    async fn receive(&self, due: tokio::time::Instant) {
        let product = &self.products[fastrand::usize(..self.products.len())];
        let request = self
            .http
            .post(format!(
                "{}/v1/stock/{}/receive",
                self.load.target.backoffice, product.sku
            ))
            .bearer_auth(&self.staff)
            .header("idempotency-key", uuid::Uuid::now_v7().simple().to_string())
            .json(&json!({"quantity": 10}));
        let answer = self.send("receive", due, None, request).await;
        let mut ledger = self.ledger.lock().expect("ledger");
        let received = ledger.received.entry(product.sku.clone()).or_default();
        match answer {
            Some((200, _)) => received.0 += 10,
            Some((status, _)) if (400..500).contains(&status) => {}
            _ => received.1 += 10,
        }
    }
}

/// What the final read found.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Verdict {
    /// Acknowledged orders missing, or not as acknowledged.
    lost: u64,
    /// Orders no key explains, or keys answered with two orders.
    duplicated: u64,
    /// Orders of the run's shoppers found, by status.
    orders_by_status: BTreeMap<String, u64>,
    /// Every invariant broken, in words.
    violations: Vec<String>,
}

/// Reads every order and every sku's stock through backoffice and checks
/// them against the ledger.
async fn verify(world: &World) -> anyhow::Result<Verdict> {
    let http = &world.http;
    let bo = &world.load.target.backoffice;
    let mut orders: HashMap<String, Value> = HashMap::new();
    let mut token = String::new();
    loop {
        let mut url = format!("{bo}/v1/orders?page_size=100");
        if !token.is_empty() {
            url.push_str(&format!("&page_token={token}"));
        }
        let page: Value = read(http, &url, &world.staff).await?;
        for order in page["orders"].as_array().into_iter().flatten() {
            let id = order["id"].as_str().unwrap_or_default().to_owned();
            if orders.insert(id.clone(), order.clone()).is_some() {
                bail!("order {id} listed twice");
            }
        }
        token = page["next_page_token"].as_str().unwrap_or_default().to_owned();
        if token.is_empty() {
            break;
        }
    }
    let read_at = time::OffsetDateTime::now_utc();
    let mut stocks = Vec::with_capacity(world.products.len());
    for product in &world.products {
        stocks.push(read(http, &format!("{bo}/v1/stock/{}", product.sku), &world.staff).await?);
    }
    let ledger = world.ledger.lock().expect("ledger");
    let mut verdict = Verdict::default();
    let buyers: HashSet<uuid::Uuid> = world.shoppers.iter().map(|s| s.id).collect();
    // The order each key would place, to tell a key's order from one no key explains.
    let mut by_derived: HashMap<uuid::Uuid, &str> = HashMap::new();
    for (key, checkout) in &ledger.checkouts {
        by_derived.insert(
            strata_storefront::orders::checkout_order_id(checkout.buyer, key),
            key,
        );
        if checkout.answered.len() > 1 {
            verdict.duplicated += 1;
            verdict.violations.push(format!(
                "key {key} was answered with orders {:?}",
                checkout.answered
            ));
        }
        let Some(id) = &checkout.order else { continue };
        let Some(found) = orders.get(id) else {
            verdict.lost += 1;
            verdict
                .violations
                .push(format!("acknowledged order {id} (key {key}) is missing"));
            continue;
        };
        let mut want: Vec<(String, u64)> = checkout
            .lines
            .iter()
            .map(|(p, q)| (world.products[*p].id.clone(), u64::from(*q)))
            .collect();
        want.sort();
        let mut got: Vec<(String, u64)> = found["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l["product_id"].as_str().unwrap_or_default().to_owned(),
                    l["quantity"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        got.sort();
        let total: i64 = checkout
            .lines
            .iter()
            .map(|(p, q)| world.products[*p].price * i64::from(*q))
            .sum();
        if got != want || found["total"]["amount_minor"].as_i64() != Some(total) {
            verdict.lost += 1;
            verdict
                .violations
                .push(format!("order {id} is not as acknowledged: {found}"));
        }
        if found["status"] != "confirmed" && found["status"] != "shipped" {
            verdict.lost += 1;
            verdict
                .violations
                .push(format!("acknowledged order {id} is {}", found["status"]));
        }
    }
    // Per sku: units held by confirmed orders and units shipped.
    let mut confirmed_orders: Vec<&Value> = Vec::new();
    let mut confirmed_units: HashMap<&str, u64> = HashMap::new();
    let mut shipped_units: HashMap<&str, u64> = HashMap::new();
    for order in orders.values() {
        let Some(buyer) = order["buyer_id"]
            .as_str()
            .and_then(|b| b.parse::<uuid::Uuid>().ok())
        else {
            continue;
        };
        if !buyers.contains(&buyer) {
            continue;
        }
        let status = order["status"].as_str().unwrap_or_default();
        *verdict.orders_by_status.entry(status.to_owned()).or_default() += 1;
        let id: uuid::Uuid = order["id"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .unwrap_or_default();
        if !by_derived.contains_key(&id) {
            verdict.duplicated += 1;
            verdict.violations.push(format!(
                "order {id} of a shopper of this run matches none of its keys"
            ));
        }
        if status == "confirmed" {
            confirmed_orders.push(order);
        }
        let units = match status {
            "confirmed" => &mut confirmed_units,
            "shipped" => &mut shipped_units,
            _ => continue,
        };
        for line in order["lines"].as_array().into_iter().flatten() {
            let sku = world
                .products
                .iter()
                .find(|p| line["product_id"] == p.id.as_str())
                .map(|p| p.sku.as_str());
            if let Some(sku) = sku {
                *units.entry(sku).or_default() += line["quantity"].as_u64().unwrap_or(0);
            }
        }
    }
    held_and_firm(world, &stocks, &confirmed_orders, read_at, &mut verdict);
    for (product, stock) in world.products.iter().zip(&stocks) {
        let (on_hand, reserved, available) = (
            stock["on_hand"].as_i64().unwrap_or(-1),
            stock["reserved"].as_i64().unwrap_or(-1),
            stock["available"].as_i64().unwrap_or(-1),
        );
        let sku = product.sku.as_str();
        if on_hand - reserved != available || available < 0 || reserved < 0 {
            verdict.violations.push(format!(
                "{sku}: on hand {on_hand} - reserved {reserved} != available {available}, or negative"
            ));
        }
        let (acked, unknown) = ledger.received.get(sku).copied().unwrap_or_default();
        let shipped = shipped_units.get(sku).copied().unwrap_or(0) as i64;
        let received = on_hand + shipped;
        if received < acked as i64 || received > (acked + unknown) as i64 {
            verdict.violations.push(format!(
                "{sku}: on hand {on_hand} + shipped {shipped} = {received}, but {acked} units were received (and {unknown} unanswered)"
            ));
        }
        let confirmed = confirmed_units.get(sku).copied().unwrap_or(0) as i64;
        if reserved < confirmed || (world.load.settle_secs > 0 && reserved != confirmed) {
            verdict.violations.push(format!(
                "{sku}: {reserved} reserved, but confirmed orders hold {confirmed}"
            ));
        }
    }
    Ok(verdict)
}

/// How long past its expiry a held reservation may still be found: the
/// inventory sweep runs every second, and the clocks of this machine and the
/// data service's may differ a little.
const SWEEP_SLACK: time::Duration = time::Duration::seconds(5);

/// Two invariants of the reservations: no held reservation outlives its
/// time to live (the sweep releases it), and every confirmed order holds a
/// firm reservation for each of its lines (`<order id>/<product id>`).
fn held_and_firm(
    world: &World,
    stocks: &[Value],
    confirmed_orders: &[&Value],
    read_at: time::OffsetDateTime,
    verdict: &mut Verdict,
) {
    let mut firm = HashSet::new();
    for stock in stocks {
        for reservation in stock["reservations"].as_array().into_iter().flatten() {
            let id = reservation["reservation_id"].as_str().unwrap_or_default();
            if reservation["state"] == "firm" {
                firm.insert(id.to_owned());
                continue;
            }
            let expires = reservation["expire_time"].as_str().and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            });
            match expires {
                Some(expires) if expires + SWEEP_SLACK >= read_at => {}
                _ => verdict.violations.push(format!(
                    "{}: reservation {id} held past its time to live ({}), read at {read_at}",
                    stock["sku"], reservation["expire_time"]
                )),
            }
        }
    }
    for order in confirmed_orders {
        let id = order["id"].as_str().unwrap_or_default();
        for line in order["lines"].as_array().into_iter().flatten() {
            let product = line["product_id"].as_str().unwrap_or_default();
            if world.products.iter().any(|p| p.id == product) && !firm.contains(&format!("{id}/{product}")) {
                verdict.violations.push(format!(
                    "confirmed order {id} holds no firm reservation for {product}"
                ));
            }
        }
    }
}

async fn read(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != 200 {
        bail!("GET {url}: {status} {body}");
    }
    Ok(body)
}

/// The run's figures: requests by kind and status, latencies, the verdict.
fn summarize(records: &[Record], skipped: u64, verdict: &Verdict) -> anyhow::Result<Value> {
    let mut kinds: BTreeMap<&str, (BTreeMap<u16, u64>, hdrhistogram::Histogram<u64>)> = BTreeMap::new();
    for record in records {
        let (statuses, latency) = match kinds.entry(record.kind) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert((BTreeMap::new(), histogram()?)),
        };
        *statuses.entry(record.status).or_default() += 1;
        latency.saturating_record(record.latency_us.max(1));
    }
    let failed = records
        .iter()
        .filter(|r| r.status == 0 || r.status >= 500 || r.status == 429)
        .count();
    let acknowledged = records.iter().filter(|r| (200..300).contains(&r.status)).count();
    Ok(json!({
        "sent": records.len(),
        "acknowledged": acknowledged,
        "failed": failed,
        "skipped_by_the_generator": skipped,
        "lost": verdict.lost,
        "duplicated": verdict.duplicated,
        "orders_by_status": verdict.orders_by_status,
        "violations": verdict.violations,
        "by_kind": kinds.iter().map(|(kind, (statuses, latency))| (kind.to_string(), json!({
            "by_status": statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "p50_ms": latency.value_at_quantile(0.5) as f64 / 1000.0,
            "p99_ms": latency.value_at_quantile(0.99) as f64 / 1000.0,
            "p999_ms": latency.value_at_quantile(0.999) as f64 / 1000.0,
        }))).collect::<serde_json::Map<_, _>>(),
    }))
}
