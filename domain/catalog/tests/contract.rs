//! The repository contract: one suite, run against the SQLite adapter and the
//! PostgreSQL adapter (a real server in a container), so both stores behave the
//! same for everything the catalog relies on.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use strata_catalog::domain::{Description, Money, Product, ProductId, ProductName, ProductStatus, Sku};
use strata_catalog::repository::{ProductChange, ProductQuery, ProductRepository, StoreError};
use strata_catalog::store::{self, StoreConfig};
use strata_kernel::{AggregateRoot, Fingerprint, OutboxMessage, RequestId, Version};
use strata_testkit::TestPostgres;
use time::OffsetDateTime;

type Repo = Arc<dyn ProductRepository>;

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    let dir = std::env::temp_dir().join(format!("strata-contract-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let repo = store::open(&StoreConfig::new(store::embedded_url(&dir)))
        .await
        .unwrap();
    contract(repo).await;
    // Migrations run again on an existing file without complaint.
    store::open(&StoreConfig::new(store::embedded_url(&dir)))
        .await
        .unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn postgres_store_keeps_the_contract() {
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    let repo = store::open(&StoreConfig::new(url.clone())).await.unwrap();
    contract(repo).await;
    store::open(&StoreConfig::new(url.clone()))
        .await
        .expect("migrations are idempotent");
}

async fn contract(repo: Repo) {
    round_trip(&repo).await;
    unique_sku_and_atomicity(&repo).await;
    optimistic_versions(&repo).await;
    idempotency_records(&repo).await;
    listing(&repo).await;
    concurrent_writers(&repo).await;
}

fn at(seconds: i64) -> OffsetDateTime {
    // Microseconds: what both stores keep.
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
}

fn new_product(sku: &str, seconds: i64) -> Product {
    Product::create(
        ProductId::generate(),
        Sku::parse(sku).unwrap(),
        ProductName::parse("Mug").unwrap(),
        Description::parse("Stoneware, 350 ml").unwrap(),
        Money::parse("EUR", 1290).unwrap(),
        at(seconds),
    )
    .0
}

fn request(key: &str) -> (RequestId, Fingerprint) {
    (
        RequestId::parse(key).unwrap(),
        Fingerprint::new(key.as_bytes().to_vec()),
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

async fn insert(repo: &Repo, product: &Product) -> Result<(), StoreError> {
    let (request_id, fingerprint) = request(&unique("create"));
    let outbox = OutboxMessage::for_events(product, &[], at(0)).unwrap();
    repo.save(ProductChange {
        product,
        replaces: None,
        outbox: &outbox,
        request_id: &request_id,
        fingerprint: &fingerprint,
    })
    .await
}

async fn update(repo: &Repo, product: &Product, replaces: Version, key: &str) -> Result<(), StoreError> {
    let (request_id, fingerprint) = request(key);
    repo.save(ProductChange {
        product,
        replaces: Some(replaces),
        outbox: &[],
        request_id: &request_id,
        fingerprint: &fingerprint,
    })
    .await
}

async fn round_trip(repo: &Repo) {
    let mut product = new_product(&unique("RT"), 0);
    insert(repo, &product).await.unwrap();
    assert_eq!(repo.get(product.id()).await.unwrap().as_ref(), Some(&product));
    assert_eq!(repo.get(ProductId::generate()).await.unwrap(), None);

    product.publish(at(5)).unwrap();
    let event = product
        .change_price(Money::parse("USD", 999).unwrap(), at(6))
        .unwrap();
    let (request_id, fingerprint) = request(&unique("price"));
    let outbox = OutboxMessage::for_events(&product, &[event], at(6)).unwrap();
    let before = last_position(repo).await;
    repo.save(ProductChange {
        product: &product,
        replaces: Some(Version::INITIAL),
        outbox: &outbox,
        request_id: &request_id,
        fingerprint: &fingerprint,
    })
    .await
    .unwrap();
    assert_eq!(repo.get(product.id()).await.unwrap().as_ref(), Some(&product));

    let events = repo.events_after(before, 10).await.unwrap();
    assert_eq!(
        events.len(),
        1,
        "one outbox row per event, written with the change"
    );
    assert_eq!(events[0].aggregate_id, product.id().as_uuid());
    assert_eq!(events[0].aggregate_version, Version::new(3));
    assert_eq!(events[0].event_type, "catalog.product.price_changed");
    assert_eq!(events[0].payload["price_minor"], 999);
}

async fn last_position(repo: &Repo) -> i64 {
    let mut position = 0;
    loop {
        let page = repo.events_after(position, 500).await.unwrap();
        match page.last() {
            Some(last) => position = last.position,
            None => return position,
        }
    }
}

async fn unique_sku_and_atomicity(repo: &Repo) {
    let sku = unique("DUP");
    insert(repo, &new_product(&sku, 0)).await.unwrap();
    let twin = new_product(&sku, 1);
    let (request_id, fingerprint) = request(&unique("twin"));
    let before = last_position(repo).await;
    let event = strata_catalog::domain::ProductEvent::Published;
    let outbox = OutboxMessage::for_events(&twin, &[event], at(1)).unwrap();
    let refused = repo
        .save(ProductChange {
            product: &twin,
            replaces: None,
            outbox: &outbox,
            request_id: &request_id,
            fingerprint: &fingerprint,
        })
        .await;
    assert!(matches!(refused, Err(StoreError::DuplicateSku)), "{refused:?}");
    // Nothing of the refused change was written: no product, no record, no event.
    assert_eq!(repo.get(twin.id()).await.unwrap(), None);
    assert_eq!(repo.recorded(&request_id).await.unwrap(), None);
    assert_eq!(last_position(repo).await, before);
}

async fn optimistic_versions(repo: &Repo) {
    let mut product = new_product(&unique("VER"), 0);
    insert(repo, &product).await.unwrap();
    product.publish(at(1)).unwrap();
    update(repo, &product, Version::INITIAL, &unique("v2"))
        .await
        .unwrap();

    let mut stale = product.clone();
    stale.retire(at(2)).unwrap();
    let refused = update(repo, &stale, Version::INITIAL, &unique("stale")).await;
    assert!(
        matches!(refused, Err(StoreError::VersionConflict { current }) if current == Version::new(2)),
        "{refused:?}"
    );
    assert_eq!(
        repo.get(product.id()).await.unwrap().map(|p| p.status()),
        Some(ProductStatus::Published)
    );

    let ghost = new_product(&unique("GHOST"), 0);
    let refused = update(repo, &ghost, Version::INITIAL, &unique("ghost")).await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
}

async fn idempotency_records(repo: &Repo) {
    let mut product = new_product(&unique("IDEM"), 0);
    insert(repo, &product).await.unwrap();
    let key = unique("publish");
    product.publish(at(1)).unwrap();
    update(repo, &product, Version::INITIAL, &key).await.unwrap();

    let (request_id, fingerprint) = request(&key);
    let recorded = repo.recorded(&request_id).await.unwrap().expect("recorded");
    assert_eq!(recorded.fingerprint, fingerprint);
    assert_eq!(
        recorded.product, product,
        "the record keeps the result of the command"
    );

    // The same key again is refused, and the product keeps the first change only.
    let mut again = product.clone();
    again.retire(at(2)).unwrap();
    let refused = update(repo, &again, Version::new(2), &key).await;
    assert!(
        matches!(refused, Err(StoreError::RequestAlreadyRecorded)),
        "{refused:?}"
    );
    assert_eq!(repo.get(product.id()).await.unwrap().as_ref(), Some(&product));
    assert_eq!(
        repo.recorded(&RequestId::parse(&unique("never")).unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn listing(repo: &Repo) {
    // Products from earlier steps exist too: follow the pages to the end.
    let mut created = Vec::new();
    for n in 0..5 {
        let mut product = new_product(&unique(&format!("LIST{n}")), n);
        insert(repo, &product).await.unwrap();
        if n % 2 == 0 {
            product.publish(at(10)).unwrap();
            update(repo, &product, Version::INITIAL, &unique("pub"))
                .await
                .unwrap();
        }
        created.push(product);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = repo
            .list(&ProductQuery {
                status: Some(ProductStatus::Published),
                after,
                limit: 2,
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        assert!(page.iter().all(|p| p.status() == ProductStatus::Published));
        let Some(last) = page.last() else { break };
        after = Some(last.id());
        seen.extend(page.iter().map(AggregateRoot::id));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages come in id order");
    for product in &created {
        let published = product.status() == ProductStatus::Published;
        assert_eq!(seen.contains(&product.id()), published);
    }
    let all = repo
        .list(&ProductQuery {
            status: None,
            after: None,
            limit: 1000,
        })
        .await
        .unwrap();
    assert!(created.iter().all(|p| all.iter().any(|q| q.id() == p.id())));
}

async fn concurrent_writers(repo: &Repo) {
    let product = new_product(&unique("RACE"), 0);
    insert(repo, &product).await.unwrap();
    let writers = (0..8).map(|n| {
        let repo = repo.clone();
        let mut mine = product.clone();
        async move {
            mine.change_price(Money::parse("EUR", 100 + n).unwrap(), at(n))
                .unwrap();
            update(&repo, &mine, Version::INITIAL, &unique("race")).await
        }
    });
    let results = futures_join_all(writers).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one writer of version 1 wins: {results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::VersionConflict { current } if *current == Version::new(2)))
    );
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
