//! What every load needs before it starts: the shop's addresses and staff
//! account, a staff token, products on sale with stock, and signed-in
//! shoppers.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// Where the shop is, and its staff account.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// The storefront (or the balancer in front of the storefronts).
    #[arg(long)]
    pub(crate) storefront: String,
    /// Backoffice.
    #[arg(long)]
    pub(crate) backoffice: String,
    /// The staff account's email.
    #[arg(long, env = "STRATA_ADMIN_EMAIL")]
    pub(crate) staff_email: String,
    /// Its password.
    #[arg(long, env = "STRATA_ADMIN_PASSWORD", hide_env_values = true)]
    pub(crate) staff_password: String,
}

/// What every load starts from: an HTTP client keeping up to `idle_per_host`
/// connections, the staff's token, and a tag of its own (so that this run's
/// skus and shoppers never meet another's).
pub(crate) async fn begin(
    target: &Target,
    idle_per_host: usize,
) -> anyhow::Result<(reqwest::Client, String, String)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(idle_per_host)
        .build()
        .context("an HTTP client")?;
    let staff = staff_token(&http, target).await?;
    let tag = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    Ok((http, staff, tag))
}

/// A product on sale: its id, sku and price.
#[derive(Debug, Clone)]
pub(crate) struct Product {
    pub(crate) id: String,
    pub(crate) sku: String,
    pub(crate) price: i64,
}

/// A signed-in shopper.
#[derive(Debug, Clone)]
pub(crate) struct Shopper {
    pub(crate) id: uuid::Uuid,
    pub(crate) token: String,
}

/// Backoffice's staff token (backoffice registers its staff account in the
/// background at start, so 401 is waited out for a while).
pub(crate) async fn staff_token(http: &reqwest::Client, target: &Target) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http
            .post(format!("{}/v1/sessions", target.backoffice))
            .json(&json!({"email": target.staff_email, "password": target.staff_password}))
            .send()
            .await;
        if let Ok(response) = answer {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == 200 {
                return body["access_token"]
                    .as_str()
                    .map(str::to_owned)
                    .context("no access_token");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("staff sign-in: {status} {body}");
            }
        } else if tokio::time::Instant::now() > deadline {
            bail!(
                "staff sign-in: backoffice does not answer at {}",
                target.backoffice
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `POST url` with `body` and `token`, expecting `want`: the answer's body.
/// A 429 or 503 (an edge's limit on one client, a hashing queue full) is
/// waited out as its Retry-After says, for a minute at most.
pub(crate) async fn expect(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
    want: u16,
) -> anyhow::Result<Value> {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut request = http.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let wait = retry_after(&response);
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == want {
            return Ok(answer);
        }
        if !matches!(status, 429 | 503) || tokio::time::Instant::now() > give_up {
            bail!("POST {url}: {status} {answer}");
        }
        tokio::time::sleep(wait).await;
    }
}

/// How long an answer asks to be left alone (`Retry-After` seconds, 1 to
/// 10; 1 when it does not say).
pub(crate) fn retry_after(response: &reqwest::Response) -> Duration {
    let seconds = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds.clamp(1, 10))
}

/// `skus` products, created, published and given `stock` units each, their
/// skus tagged with `tag` so that runs never meet.
pub(crate) async fn setup_products(
    http: &reqwest::Client,
    target: &Target,
    staff: &str,
    tag: &str,
    skus: u32,
    stock: u64,
) -> anyhow::Result<Vec<Product>> {
    let mut products = Vec::new();
    for i in 0..skus {
        let sku = format!("LOAD-{tag}-{i}");
        let price = 100 + i64::from(i) * 10;
        let created = expect(
            http,
            format!("{}/v1/products", target.backoffice),
            Some(staff),
            json!({"sku": sku, "name": format!("Load {tag} {i}"), "description": "strata-load",
                   "price": {"currency": "EUR", "amount_minor": price}}),
            201,
        )
        .await?;
        let id = created["id"].as_str().context("no product id")?.to_owned();
        expect(
            http,
            format!("{}/v1/products/{id}/publish", target.backoffice),
            Some(staff),
            json!({}),
            200,
        )
        .await?;
        expect(
            http,
            format!("{}/v1/stock/{sku}/receive", target.backoffice),
            Some(staff),
            json!({"quantity": stock}),
            200,
        )
        .await?;
        products.push(Product { id, sku, price });
    }
    Ok(products)
}

/// `count` shoppers, signed up and in, eight at a time (each sign-up and
/// sign-in hashes a password).
pub(crate) async fn setup_shoppers(
    http: &reqwest::Client,
    target: &Target,
    tag: &str,
    count: u32,
) -> anyhow::Result<Vec<Shopper>> {
    let mut shoppers = Vec::with_capacity(count as usize);
    let mut next = 0;
    while next < count {
        let batch: Vec<_> = (next..count.min(next + 8))
            .map(|i| tokio::spawn(shopper(http.clone(), target.clone(), tag.to_owned(), i)))
            .collect();
        next = count.min(next + 8);
        for joined in batch {
            shoppers.push(joined.await??);
        }
    }
    Ok(shoppers)
}

async fn shopper(http: reqwest::Client, target: Target, tag: String, i: u32) -> anyhow::Result<Shopper> {
    let email = format!("load-{tag}-{i}@shop.test");
    let password = format!("load password {tag}");
    let account = expect(
        &http,
        format!("{}/v1/accounts", target.storefront),
        None,
        json!({"email": email, "password": password, "display_name": format!("Shopper {i}")}),
        201,
    )
    .await?;
    let session = expect(
        &http,
        format!("{}/v1/sessions", target.storefront),
        None,
        json!({"email": email, "password": password}),
        200,
    )
    .await?;
    Ok(Shopper {
        id: account["id"].as_str().context("no account id")?.parse()?,
        token: session["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned(),
    })
}
