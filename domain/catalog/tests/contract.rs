//! The repository contract: one suite, run against the SQLite store and the
//! PostgreSQL store (a real server in a container), so both behave the same for
//! everything the catalog relies on — through the same port and command
//! machinery the service uses.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};
use strata_testkit::{CONTENDERS, race, unique};

use serde::Serialize;
use strata_catalog::domain::{Description, Money, Product, ProductId, ProductName, ProductStatus, Sku};
use strata_catalog::repository::{ProductQuery, ProductRepository};
use strata_catalog::store::{self, SCHEMA};
use strata_kernel::{
    AggregateRoot, CommandMeta, Error, ManualClock, OutboxMessage, RequestId, Version,
    execute::{self, Change, SaveError},
};
use strata_store::{Store, StoreConfig};
use strata_testkit::TestPostgres;
use time::OffsetDateTime;
use tokio::sync::Barrier;
use tokio_stream::StreamExt;

type Repo = Arc<dyn ProductRepository>;

/// How many times each race is run.
const ROUNDS: usize = 20;
fn sqlite_config() -> (StoreConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("strata-contract-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    (
        StoreConfig::new(strata_store::embedded_url(&dir, store::CONTEXT)),
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_contract() {
    let (config, dir) = sqlite_config();
    let repo = store::open(&config).await.unwrap();
    contract(&repo, &config).await;
    // Migrations run again on an existing file without complaint.
    store::open(&config).await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_keeps_the_contract() {
    let pg = TestPostgres::start().await.unwrap();
    let config = StoreConfig::new(pg.fresh_database().await.unwrap());
    let repo = store::open(&config).await.unwrap();
    contract(&repo, &config).await;
    store::open(&config).await.expect("migrations are idempotent");
}

async fn contract(repo: &Repo, config: &StoreConfig) {
    round_trip(repo).await;
    unique_sku_and_atomicity(repo).await;
    optimistic_versions(repo).await;
    idempotency_records(repo).await;
    listing(repo).await;
    batch_reads(repo).await;
    concurrent_gets_each_get_their_own_product(repo).await;
    use_cases_read_back(repo).await;
    concurrent_writers(repo).await;
    racing_retries_all_get_the_first_answer(repo).await;
    concurrent_events_are_read_in_order_without_gaps(repo).await;
    a_follower_receives_events_as_they_commit(repo).await;
    expired_idempotency_records_are_purged(repo, config).await;
}

/// A time with microseconds, what both stores keep.
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).unwrap()
        + time::Duration::microseconds(123_456)
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

fn meta(key: &str) -> CommandMeta {
    #[derive(Serialize)]
    struct Key<'a>(&'a str);
    CommandMeta::parse("Contract", key, None, &Key(key)).unwrap()
}

async fn save(repo: &Repo, product: &Product, replaces: Option<Version>, key: &str) -> Result<(), SaveError> {
    save_with_events(repo, product, replaces, key, &[]).await
}

async fn save_with_events(
    repo: &Repo,
    product: &Product,
    replaces: Option<Version>,
    key: &str,
    events: &[strata_catalog::domain::ProductEvent],
) -> Result<(), SaveError> {
    let outbox = OutboxMessage::for_events(product, events, product.updated_at()).unwrap();
    repo.save(Change {
        aggregate: product,
        replaces,
        outbox: &outbox,
        meta: &meta(key),
        at: product.updated_at(),
    })
    .await
}

async fn insert(repo: &Repo, product: &Product) -> Result<(), SaveError> {
    save(repo, product, None, &unique("create")).await
}

async fn last_position(repo: &Repo) -> u64 {
    let events: Vec<_> = repo.events(0, false).await.unwrap().collect().await;
    events.last().map_or(0, |e| e.as_ref().unwrap().position)
}

async fn events_after(repo: &Repo, position: u64) -> Vec<strata_store::StoredEvent> {
    let events: Vec<_> = repo.events(position, false).await.unwrap().collect().await;
    events.into_iter().map(Result::unwrap).collect()
}

async fn round_trip(repo: &Repo) {
    let before = last_position(repo).await;
    let (mut product, created) = Product::create(
        ProductId::generate(),
        Sku::parse(&unique("RT")).unwrap(),
        ProductName::parse("Mug").unwrap(),
        Description::parse("Stoneware").unwrap(),
        Money::parse("EUR", 1290).unwrap(),
        at(0),
    );
    save_with_events(repo, &product, None, &unique("create"), &[created])
        .await
        .unwrap();
    let stored = repo.get(product.id()).await.unwrap().unwrap();
    assert_eq!(stored, product, "every field round-trips");
    assert_eq!(
        stored.created_at().microsecond(),
        123_456,
        "sub-second precision is kept"
    );
    assert_eq!(repo.get(ProductId::generate()).await.unwrap(), None);

    let created = events_after(repo, before).await;
    assert_eq!(created.len(), 1, "the create wrote its event");
    assert_eq!(created[0].event_type, "catalog.product.created");
    assert_eq!(created[0].aggregate_version, Version::INITIAL);
    assert_eq!(created[0].occurred_at, at(0));
    assert_eq!(created[0].payload["sku"], product.sku().as_str());

    product.publish(at(5)).unwrap();
    let event = product
        .change_price(Money::parse("USD", 999).unwrap(), at(6))
        .unwrap();
    save_with_events(repo, &product, Some(Version::INITIAL), &unique("price"), &[event])
        .await
        .unwrap();
    assert_eq!(repo.get(product.id()).await.unwrap().as_ref(), Some(&product));

    let events = events_after(repo, created[0].position).await;
    assert_eq!(
        events.len(),
        1,
        "one outbox row per event, written with the change"
    );
    assert_eq!(events[0].aggregate_id, product.id().as_uuid());
    assert_eq!(events[0].aggregate_version, Version::new(3));
    assert_eq!(events[0].event_type, "catalog.product.price_changed");
    assert_eq!(events[0].payload["price_minor"], 999);
    assert_ne!(events[0].event_id, created[0].event_id);
}

async fn unique_sku_and_atomicity(repo: &Repo) {
    let sku = unique("DUP");
    insert(repo, &new_product(&sku, 0)).await.unwrap();
    let twin = new_product(&sku, 1);
    let key = unique("twin");
    let before = last_position(repo).await;
    let refused = save_with_events(
        repo,
        &twin,
        None,
        &key,
        &[strata_catalog::domain::ProductEvent::Published],
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(SaveError::Refused(Error::AlreadyExists { field: "sku", .. }))
        ),
        "{refused:?}"
    );
    // Nothing of the refused change was written: no product, no record, no event.
    assert_eq!(repo.get(twin.id()).await.unwrap(), None);
    assert!(
        repo.recorded(&RequestId::parse(&key).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(last_position(repo).await, before);
}

async fn optimistic_versions(repo: &Repo) {
    let mut product = new_product(&unique("VER"), 0);
    insert(repo, &product).await.unwrap();
    product.publish(at(1)).unwrap();
    save(repo, &product, Some(Version::INITIAL), &unique("v2"))
        .await
        .unwrap();

    let mut stale = product.clone();
    stale.retire(at(2)).unwrap();
    let refused = save(repo, &stale, Some(Version::INITIAL), &unique("stale")).await;
    assert!(
        matches!(refused, Err(SaveError::VersionConflict { current }) if current == Version::new(2)),
        "{refused:?}"
    );
    assert_eq!(
        repo.get(product.id()).await.unwrap().map(|p| p.status()),
        Some(ProductStatus::Published)
    );

    let ghost = new_product(&unique("GHOST"), 0);
    let refused = save(repo, &ghost, Some(Version::INITIAL), &unique("ghost")).await;
    assert!(matches!(refused, Err(SaveError::NotFound)), "{refused:?}");
}

async fn idempotency_records(repo: &Repo) {
    let mut product = new_product(&unique("IDEM"), 0);
    insert(repo, &product).await.unwrap();
    let key = unique("publish");
    product.publish(at(1)).unwrap();
    save(repo, &product, Some(Version::INITIAL), &key).await.unwrap();

    let recorded = repo
        .recorded(&RequestId::parse(&key).unwrap())
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(recorded.fingerprint, meta(&key).fingerprint);
    assert_eq!(
        recorded.result, product,
        "the record keeps the result of the command"
    );

    // The same key again is refused, and the product keeps the first change only.
    let mut again = product.clone();
    again.retire(at(2)).unwrap();
    let refused = save(repo, &again, Some(Version::new(2)), &key).await;
    assert!(
        matches!(refused, Err(SaveError::RequestAlreadyRecorded)),
        "{refused:?}"
    );
    assert_eq!(repo.get(product.id()).await.unwrap().as_ref(), Some(&product));

    // One consistent read gives the record and the product together.
    let (record, current) = repo
        .load_for_command(product.id(), &RequestId::parse(&key).unwrap())
        .await
        .unwrap();
    assert_eq!(record.map(|r| r.result), Some(product.clone()));
    assert_eq!(current, Some(product.clone()));
    let (record, missing) = repo
        .load_for_command(
            ProductId::generate(),
            &RequestId::parse(&unique("never")).unwrap(),
        )
        .await
        .unwrap();
    assert!(record.is_none() && missing.is_none());
}

async fn listing(repo: &Repo) {
    // Products from earlier steps exist too: follow the pages to the end.
    let mut created = Vec::new();
    for n in 0..5 {
        let mut product = new_product(&unique(&format!("LIST{n}")), n);
        insert(repo, &product).await.unwrap();
        if n % 2 == 0 {
            product.publish(at(10)).unwrap();
            save(repo, &product, Some(Version::INITIAL), &unique("pub"))
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

async fn batch_reads(repo: &Repo) {
    let products: Vec<_> = (0..3)
        .map(|n| new_product(&unique(&format!("BATCH{n}")), n))
        .collect();
    for product in &products {
        insert(repo, product).await.unwrap();
    }
    let mut ids: Vec<_> = products.iter().map(AggregateRoot::id).collect();
    ids.push(ProductId::generate());
    let mut found = repo.get_many(&ids).await.unwrap();
    found.sort_by_key(AggregateRoot::id);
    assert_eq!(
        found, products,
        "every existing product once; unknown ids left out"
    );
    assert!(repo.get_many(&[ProductId::generate()]).await.unwrap().is_empty());
}

/// Gets started together share statements (batched by id): every caller gets
/// its own product, several callers the same one, unknown ids none.
async fn concurrent_gets_each_get_their_own_product(repo: &Repo) {
    let mut products: Vec<_> = (0..4)
        .map(|n| Some(new_product(&unique(&format!("GET{n}")), n)))
        .collect();
    for product in products.iter().flatten() {
        insert(repo, product).await.unwrap();
    }
    products.extend([None, None]);
    let ids: Vec<_> = products
        .iter()
        .map(|product| {
            product
                .as_ref()
                .map_or_else(ProductId::generate, AggregateRoot::id)
        })
        .collect();
    let contenders = CONTENDERS * 4;
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(contenders));
        let tasks: Vec<_> = (0..contenders)
            .map(|n| {
                let which = (n * 5 + round) % ids.len();
                let (id, barrier, repo) = (ids[which], barrier.clone(), repo.clone());
                let task = tokio::spawn(async move {
                    barrier.wait().await;
                    repo.get(id).await
                });
                (which, task)
            })
            .collect();
        for (which, task) in tasks {
            assert_eq!(task.await.unwrap().unwrap(), products[which], "round {round}");
        }
    }
}

/// The use cases over this store: a batch read in the order asked, each product
/// once; a listing page of exactly the page size says no more follow, one of
/// fewer than the rest says more do.
async fn use_cases_read_back(repo: &Repo) {
    use strata_catalog::service::Catalog;
    let catalog = Catalog::new(repo.clone());
    let products: Vec<_> = (0..3)
        .map(|n| new_product(&unique(&format!("UC{n}")), n))
        .collect();
    for product in &products {
        insert(repo, product).await.unwrap();
    }
    let ids: Vec<_> = products.iter().map(AggregateRoot::id).collect();
    let asked = [ids[2], ProductId::generate(), ids[0], ids[2]];
    let got: Vec<_> = catalog
        .get_many(&asked)
        .await
        .unwrap()
        .iter()
        .map(AggregateRoot::id)
        .collect();
    assert_eq!(got, [ids[2], ids[0]]);

    // Drafts after the first of these three: exactly two of them remain.
    let after = Some(ids[0]);
    let page = |limit| ProductQuery {
        status: Some(ProductStatus::Draft),
        after,
        limit,
    };
    let remaining: Vec<_> = catalog.list(page(1000)).await.unwrap().products;
    let n = u32::try_from(remaining.len()).unwrap();
    assert!(n >= 2);
    let exact = catalog.list(page(n)).await.unwrap();
    assert_eq!(exact.products.len(), remaining.len());
    assert_eq!(
        exact.next_after, None,
        "a page holding the rest says no more follow"
    );
    let short = catalog.list(page(n - 1)).await.unwrap();
    assert_eq!(short.products.len(), remaining.len() - 1);
    assert_eq!(
        short.next_after,
        short.products.last().map(AggregateRoot::id),
        "more follow"
    );
}

async fn concurrent_writers(repo: &Repo) {
    for round in 0..ROUNDS {
        let product = new_product(&unique(&format!("RACE{round}")), 0);
        insert(repo, &product).await.unwrap();
        let results = race(|n| {
            let repo = repo.clone();
            let mut mine = product.clone();
            async move {
                mine.change_price(Money::parse("EUR", 100 + n as i64).unwrap(), at(1))
                    .unwrap();
                save(&repo, &mine, Some(Version::INITIAL), &unique("race")).await
            }
        })
        .await;
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one writer of version 1 wins: {results:?}"
        );
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, SaveError::VersionConflict { current } if *current == Version::new(2))),
            "round {round}: {results:?}"
        );
    }
}

/// N identical commands at once (a client retrying while its first attempt is
/// still running): every one gets the first, successful answer; one effect.
async fn racing_retries_all_get_the_first_answer(repo: &Repo) {
    let clock = Arc::new(ManualClock::new(at(100)));
    for round in 0..ROUNDS {
        let product = new_product(&unique(&format!("RETRY{round}")), 0);
        insert(repo, &product).await.unwrap();
        let key = unique("retry");
        let expected = if round % 2 == 0 { Some(1) } else { None };
        let results = race(|_| {
            let repo = repo.clone();
            let clock = clock.clone();
            let meta = CommandMeta::parse("ChangePrice", &key, expected, &"EUR 777").unwrap();
            let id = product.id();
            async move {
                execute::modify(&*repo, &*clock, &meta, id, |p: &mut Product, now| {
                    p.change_price(Money::parse("EUR", 777).unwrap(), now)
                        .map(|e| vec![e])
                })
                .await
            }
        })
        .await;
        let first = results[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        for result in &results {
            assert_eq!(result.as_ref().ok(), Some(first), "round {round}: {results:?}");
        }
        let stored = repo.get(product.id()).await.unwrap().unwrap();
        assert_eq!(stored.version(), Version::new(2), "round {round}: one effect");
    }
}

/// Writers commit concurrently while a reader follows the stream: the reader
/// sees every event exactly once, in position order.
async fn concurrent_events_are_read_in_order_without_gaps(repo: &Repo) {
    let start = last_position(repo).await;
    let products: Vec<_> = (0..CONTENDERS)
        .map(|n| new_product(&unique(&format!("EV{n}")), 0))
        .collect();
    for product in &products {
        insert(repo, product).await.unwrap();
    }
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let repo = repo.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut position = start;
            loop {
                let done = !writing.load(std::sync::atomic::Ordering::SeqCst);
                for event in events_after(&repo, position).await {
                    position = event.position;
                    seen.push(event.position);
                }
                if done {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for round in 0..ROUNDS {
        race(|n| {
            let repo = repo.clone();
            let mut product = products[n].clone();
            async move {
                let before = repo.get(product.id()).await.unwrap().unwrap().version();
                product = repo.get(product.id()).await.unwrap().unwrap();
                let event = product
                    .change_price(Money::parse("EUR", 1000 + round as i64).unwrap(), at(2))
                    .unwrap();
                save_with_events(&repo, &product, Some(before), &unique("ev"), &[event])
                    .await
                    .unwrap();
            }
        })
        .await;
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<u64> = events_after(repo, start)
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(all.len(), ROUNDS * CONTENDERS);
    assert_eq!(seen, all, "the follower saw every event once, in order");
}

async fn a_follower_receives_events_as_they_commit(repo: &Repo) {
    let mut product = new_product(&unique("FOLLOW"), 0);
    insert(repo, &product).await.unwrap();
    let position = last_position(repo).await;
    let mut stream = repo.events(position, true).await.unwrap();
    let event = product.publish(at(3)).unwrap();
    save_with_events(repo, &product, Some(Version::INITIAL), &unique("pub"), &[event])
        .await
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the follower is woken by the commit")
        .unwrap()
        .unwrap();
    assert_eq!(received.aggregate_id, product.id().as_uuid());
    assert_eq!(received.event_type, "catalog.product.published");
}

async fn expired_idempotency_records_are_purged(repo: &Repo, config: &StoreConfig) {
    // A record written "long ago" (at(0) is in 2023) and one written now.
    let mut old = new_product(&unique("OLD"), 0);
    insert(repo, &old).await.unwrap();
    let old_key = unique("old");
    old.publish(at(1)).unwrap();
    save(repo, &old, Some(Version::INITIAL), &old_key).await.unwrap();
    let fresh_key = unique("fresh");
    let mut fresh = new_product(&unique("FRESH"), 0);
    fresh = Product::restore({
        let mut s = fresh.snapshot();
        s.updated_at = strata_kernel::clock::truncate_to_micros(OffsetDateTime::now_utc());
        s
    })
    .unwrap();
    save(repo, &fresh, None, &fresh_key).await.unwrap();
    let recorded = |key: &str| {
        let repo = repo.clone();
        let key = RequestId::parse(key).unwrap();
        async move { repo.recorded(&key).await.unwrap().is_some() }
    };
    assert!(recorded(&old_key).await && recorded(&fresh_key).await);

    // A store whose retention is five seconds purges in the background (each
    // second, from a second after it opens): the old record goes, the fresh
    // one stays.
    let mut short = config.clone();
    short.idempotency_retention = Duration::from_secs(5);
    let purging = Store::open(&SCHEMA, &short).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while recorded(&old_key).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old record is purged within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(purging);
    // The default window keeps today's record.
    let kept = Store::open(&SCHEMA, config).await.unwrap();
    let deleted = kept
        .purge_idempotency(OffsetDateTime::now_utc() - Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    assert!(recorded(&fresh_key).await, "a record inside the window is kept");
}

/// PostgreSQL only: a writer that has taken its event position but not yet
/// committed, and a second writer that would take the next position and commit
/// first. A reader must never see the second event before the first exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_positions_are_never_skipped_by_a_reader() {
    use sqlx::{Connection, Executor};

    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    let repo = store::open(&StoreConfig::new(url.clone())).await.unwrap();
    let mut slow = new_product(&unique("SLOW"), 0);
    let mut fast = new_product(&unique("FAST"), 0);
    insert(&repo, &slow).await.unwrap();
    insert(&repo, &fast).await.unwrap();
    let start = last_position(&repo).await;

    // A gate the first writer's outbox insert waits at (after it has taken its
    // position), held by this test's own transaction.
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "create table catalog.gate (id int primary key); insert into catalog.gate values (1); \
             create function catalog.wait_at_gate() returns trigger language plpgsql as \
               $$ begin perform 1 from catalog.gate where id = 1 for update; return new; end $$; \
             create trigger wait_at_gate after insert on catalog.outbox for each row \
               when (new.aggregate_id = '{}') execute function catalog.wait_at_gate();",
            slow.id()
        )))
        .await
        .unwrap();
    let mut gate = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = gate.begin().await.unwrap();
    held.execute("select 1 from catalog.gate where id = 1 for update")
        .await
        .unwrap();

    // Statements waiting for a lock, polled (bounded) until `enough` says so.
    let mut probe = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut wait_until = async |enough: &dyn Fn(i64) -> bool, what: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let blocked: i64 = sqlx::query_scalar("select count(*) from pg_locks where not granted")
                .fetch_one(&mut probe)
                .await
                .unwrap();
            if enough(blocked) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    // A follower, open before either writer starts.
    let mut follower = repo.events(start, true).await.unwrap();

    let first = {
        let repo = repo.clone();
        let event = slow.change_price(Money::parse("EUR", 1).unwrap(), at(1)).unwrap();
        let slow = slow.clone();
        tokio::spawn(async move {
            save_with_events(&repo, &slow, Some(Version::INITIAL), &unique("slow"), &[event]).await
        })
    };
    wait_until(&|blocked| blocked >= 1, "the first writer waits at the gate").await;
    let second = {
        let repo = repo.clone();
        let event = fast.change_price(Money::parse("EUR", 2).unwrap(), at(1)).unwrap();
        let fast = fast.clone();
        tokio::spawn(async move {
            save_with_events(&repo, &fast, Some(Version::INITIAL), &unique("fast"), &[event]).await
        })
    };
    // The second writer commits while the first is still in flight (or, with
    // a design that serializes writers, waits for it): give it the chance.
    wait_until(
        &|blocked| blocked >= 2 || second.is_finished(),
        "the second writer neither commits nor waits",
    )
    .await;

    let seen_early = events_after(&repo, start).await;
    held.rollback().await.unwrap();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let resume = seen_early.last().map_or(start, |e| e.position);
    let seen: Vec<_> = seen_early
        .iter()
        .chain(events_after(&repo, resume).await.iter())
        .map(|e| (e.position, e.aggregate_id))
        .collect();
    let ids: Vec<_> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        ids,
        [slow.id().as_uuid(), fast.id().as_uuid()],
        "a reader resuming from what it saw gets both events, once each, in position order: {seen:?}"
    );
    let mut followed = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .expect("the follower gets both events once the first writer commits")
            .unwrap()
            .unwrap();
        followed.push(event.aggregate_id);
    }
    assert_eq!(followed, ids, "the follower too, in position order");
}
