//! The inventory contract: one suite, run against the SQLite store and the
//! PostgreSQL store (a real server in a container), through the use cases and
//! the kernel's locked command path exactly as the gRPC service runs them —
//! plus the service itself over gRPC on `127.0.0.1:0` (error details, the
//! batch limit, the spawned sweep).

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration as StdDuration, Instant},
};
use strata_testkit::CONTENDERS;

use serde::Serialize;
use strata_inventory::domain::{Reason, ReservationId, Sku, StockItem};
use strata_inventory::service::Inventory;
use strata_inventory::store;
use strata_kernel::{AggregateRoot, CommandMeta, Error, ManualClock, Version};
use strata_proto::inventory::v1 as pb;
use strata_store::StoreConfig;
use strata_testkit::TestPostgres;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;
use tokio_stream::StreamExt;

/// How many times the lost-update race is run.
const ROUNDS: usize = 20;
struct Fixture {
    inventory: Inventory,
    clock: Arc<ManualClock>,
    config: StoreConfig,
}

fn start_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap() + Duration::microseconds(123_456)
}

async fn fixture(config: &StoreConfig) -> Fixture {
    let items = store::open(config).await.unwrap();
    let clock = Arc::new(ManualClock::new(start_time()));
    Fixture {
        inventory: Inventory::with_clock(items, clock.clone()),
        clock,
        config: config.clone(),
    }
}

fn sqlite_config() -> (StoreConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("strata-inventory-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    (
        StoreConfig::new(strata_store::embedded_url(&dir, store::CONTEXT)),
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_contract() {
    let (config, dir) = sqlite_config();
    contract(&fixture(&config).await).await;
    store::open(&config)
        .await
        .expect("migrations run again on an existing file");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_keeps_the_contract() {
    let pg = TestPostgres::start().await.unwrap();
    let config = StoreConfig::new(pg.fresh_database().await.unwrap());
    contract(&fixture(&config).await).await;
    store::open(&config).await.expect("migrations are idempotent");
}

async fn contract(f: &Fixture) {
    receipts_create_and_round_trip(f).await;
    batch_get_answers_what_exists(f).await;
    concurrent_gets_each_get_their_own_item(f).await;
    no_oversell_under_contention(f).await;
    no_lost_update_with_the_same_expected_version(f).await;
    idempotency_by_request_id(f).await;
    racing_retries_all_get_the_first_answer(f).await;
    idempotency_by_reservation_id(f).await;
    expired_reservations_release_themselves(f).await;
    events_in_commit_order_resume_and_follow(f).await;
    concurrent_locked_writers_are_read_without_gaps(f).await;
}

fn meta(operation: &str, expected: Option<u64>) -> CommandMeta {
    meta_keyed(operation, &key(), expected)
}

fn meta_keyed(operation: &str, key: &str, expected: Option<u64>) -> CommandMeta {
    #[derive(Serialize)]
    struct Op<'a>(&'a str);
    CommandMeta::parse(operation, key, expected, &Op(operation)).unwrap()
}

fn key() -> String {
    format!("k-{}", uuid::Uuid::now_v7().simple())
}

fn new_sku(prefix: &str) -> Sku {
    Sku::parse(&format!("{prefix}-{}", uuid::Uuid::now_v7().simple())).unwrap()
}

fn rid(id: &str) -> ReservationId {
    ReservationId::parse(id).unwrap()
}

fn reason() -> Reason {
    Reason::parse("cycle count").unwrap()
}

async fn received(f: &Fixture, on_hand: u64) -> Sku {
    let sku = new_sku("SKU");
    f.inventory
        .receive(&meta("ReceiveStock", None), &sku, on_hand)
        .await
        .unwrap();
    sku
}

async fn last_position(f: &Fixture) -> u64 {
    let events: Vec<_> = f.inventory.events(0, false).await.unwrap().collect().await;
    events.last().map_or(0, |e| e.as_ref().unwrap().position)
}

async fn events_after(f: &Fixture, position: u64) -> Vec<strata_store::StoredEvent> {
    let events: Vec<_> = f.inventory.events(position, false).await.unwrap().collect().await;
    events.into_iter().map(Result::unwrap).collect()
}

fn assert_adds_up(item: &StockItem) {
    let open: u64 = item.open_reservations().map(|r| r.quantity()).sum();
    assert_eq!(item.reserved(), open);
    assert_eq!(item.available() + item.reserved(), item.on_hand());
}

async fn receipts_create_and_round_trip(f: &Fixture) {
    let before = last_position(f).await;
    let sku = new_sku("RT");
    let unknown = f.inventory.get(&sku).await.unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::NotFound {
                kind: "stock_item",
                ..
            }
        ),
        "{unknown:?}"
    );
    let created = f
        .inventory
        .receive(&meta("ReceiveStock", None), &sku, 10)
        .await
        .unwrap();
    assert_eq!((created.on_hand(), created.version()), (10, Version::INITIAL));
    assert_eq!(created.id(), StockItem::id_of(&sku));
    let item = f
        .inventory
        .reserve(
            &meta("Reserve", Some(1)),
            &sku,
            &rid("r1"),
            3,
            Duration::minutes(15),
        )
        .await
        .unwrap();
    let stored = f.inventory.get(&sku).await.unwrap();
    assert_eq!(stored, item, "every field round-trips, reservations included");
    assert_eq!(stored.created_at().microsecond(), 123_456);
    assert_eq!(
        (stored.on_hand(), stored.reserved(), stored.available()),
        (10, 3, 7)
    );
    let refused = f
        .inventory
        .adjust(&meta("AdjustStock", None), &sku, -8, &reason())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::FailedPrecondition {
                reason: "BELOW_RESERVED",
                ..
            }
        ),
        "{refused:?}"
    );
    let item = f
        .inventory
        .adjust(&meta("AdjustStock", None), &sku, -7, &reason())
        .await
        .unwrap();
    assert_eq!(
        (item.on_hand(), item.available(), item.version()),
        (3, 0, Version::new(3))
    );
    let events = events_after(f, before).await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "inventory.stock_item.received",
            "inventory.stock_item.reserved",
            "inventory.stock_item.adjusted"
        ],
        "one event per change, none for the refusal"
    );
    assert!(events.iter().all(|e| e.aggregate_id == item.id().as_uuid()));
    assert_eq!(events[2].payload["on_hand"], 3);
    let missing = f
        .inventory
        .reserve(
            &meta("Reserve", None),
            &new_sku("NONE"),
            &rid("r"),
            1,
            Duration::minutes(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
}

async fn batch_get_answers_what_exists(f: &Fixture) {
    let a = received(f, 1).await;
    let b = received(f, 2).await;
    let skus = vec![b.clone(), new_sku("UNKNOWN"), a.clone()];
    let items = f.inventory.batch_get(&skus).await.unwrap();
    let found: Vec<_> = items.iter().map(|i| (i.sku().clone(), i.on_hand())).collect();
    let mut expected = vec![(a, 1), (b, 2)];
    expected.sort();
    assert_eq!(found, expected, "unknown skus are absent; sku order");
    assert!(f.inventory.batch_get(&[]).await.unwrap().is_empty());
}

/// Gets started together share statements (batched by sku): every caller
/// gets its own item, several callers the same one, unknown skus not found.
async fn concurrent_gets_each_get_their_own_item(f: &Fixture) {
    let mut skus = Vec::new();
    for on_hand in 1..=4 {
        skus.push((received(f, on_hand).await, Some(on_hand)));
    }
    skus.push((new_sku("UNKNOWN"), None));
    skus.push((new_sku("UNKNOWN"), None));
    let contenders = CONTENDERS * 4;
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(contenders));
        let tasks: Vec<_> = (0..contenders)
            .map(|n| {
                let (sku, on_hand) = skus[(n * 5 + round) % skus.len()].clone();
                let (barrier, inventory) = (barrier.clone(), f.inventory.clone());
                let task = tokio::spawn(async move {
                    barrier.wait().await;
                    inventory.get(&sku).await
                });
                (on_hand, task)
            })
            .collect();
        for (on_hand, task) in tasks {
            match (task.await.unwrap(), on_hand) {
                (Ok(item), Some(on_hand)) => assert_eq!(item.on_hand(), on_hand),
                (Err(Error::NotFound { .. }), None) => {}
                (answer, on_hand) => panic!("round {round}: expected {on_hand:?}, got {answer:?}"),
            }
        }
    }
}

/// The hard part, in process: 200 reservations of 1 against 50 on hand, all at
/// once on a multi-thread runtime.
async fn no_oversell_under_contention(f: &Fixture) {
    const ON_HAND: u64 = 50;
    const BUYERS: usize = 200;
    let sku = received(f, ON_HAND).await;
    let barrier = Arc::new(Barrier::new(BUYERS));
    let started = Instant::now();
    let tasks: Vec<_> = (0..BUYERS)
        .map(|n| {
            let inventory = f.inventory.clone();
            let barrier = barrier.clone();
            let sku = sku.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                inventory
                    .reserve(
                        &meta("Reserve", None),
                        &sku,
                        &rid(&format!("buyer-{n}")),
                        1,
                        Duration::minutes(15),
                    )
                    .await
            })
        })
        .collect();
    let (mut won, mut sold_out) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::FailedPrecondition {
                reason: "INSUFFICIENT_STOCK",
                metadata,
                ..
            }) => {
                assert!(metadata.contains(&("available", "0".to_owned())), "{metadata:?}");
                sold_out += 1;
            }
            Err(other) => panic!("neither a reservation nor INSUFFICIENT_STOCK: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "no oversell: {BUYERS} buyers of {ON_HAND}: {won} reserved, {sold_out} sold out, in {elapsed:?}"
    );
    assert_eq!((won, sold_out), (50, 150));
    let item = f.inventory.get(&sku).await.unwrap();
    assert_eq!((item.on_hand(), item.reserved(), item.available()), (50, 50, 0));
    assert_eq!(item.open_reservations().count(), 50);
    assert_adds_up(&item);
}

async fn no_lost_update_with_the_same_expected_version(f: &Fixture) {
    let sku = received(f, 0).await;
    let started = Instant::now();
    let (mut winners, mut conflicts) = (0, 0);
    for round in 0..ROUNDS {
        let version = f.inventory.get(&sku).await.unwrap().version().get();
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|_| {
                let inventory = f.inventory.clone();
                let barrier = barrier.clone();
                let sku = sku.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    inventory
                        .receive(&meta("ReceiveStock", Some(version)), &sku, 1)
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => won += 1,
                Err(Error::VersionConflict {
                    expected, current, ..
                }) => {
                    assert_eq!(expected, Some(Version::new(version)));
                    assert_eq!(current, Version::new(version + 1));
                    conflicts += 1;
                }
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(won, 1, "round {round}: exactly one winner");
        winners += won;
    }
    println!(
        "no lost update: {ROUNDS} rounds of {CONTENDERS}: {winners} winners, {conflicts} conflicts, in {:?}",
        started.elapsed()
    );
    assert_eq!(conflicts, ROUNDS * (CONTENDERS - 1));
    let item = f.inventory.get(&sku).await.unwrap();
    assert_eq!(item.on_hand(), ROUNDS as u64, "every winner's receipt, no other");
    assert_eq!(item.version(), Version::new(1 + ROUNDS as u64));
}

async fn idempotency_by_request_id(f: &Fixture) {
    let sku = received(f, 5).await;
    let before = last_position(f).await;
    let command = meta("ReceiveStock", None);
    let first = f.inventory.receive(&command, &sku, 2).await.unwrap();
    // Something else happens in between; the retry still answers the first result.
    f.inventory
        .receive(&meta("ReceiveStock", None), &sku, 1)
        .await
        .unwrap();
    let again = f.inventory.receive(&command, &sku, 2).await.unwrap();
    assert_eq!(again, first, "the first answer");
    assert_eq!(f.inventory.get(&sku).await.unwrap().on_hand(), 8, "one effect");
    assert_eq!(events_after(f, before).await.len(), 2);

    // The same key with another command (here: another quantity, so another
    // fingerprint) is refused.
    #[derive(Serialize)]
    struct Other(u64);
    let reused = CommandMeta::parse("ReceiveStock", command.request_id.as_str(), None, &Other(3)).unwrap();
    let error = f.inventory.receive(&reused, &sku, 3).await.unwrap_err();
    assert!(matches!(error, Error::RequestIdReused { .. }), "{error:?}");
    let status = strata_kernel::grpc::to_status(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

async fn racing_retries_all_get_the_first_answer(f: &Fixture) {
    let sku = received(f, 100).await;
    for round in 0..ROUNDS {
        let command = meta("Reserve", None);
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|_| {
                let (inventory, barrier, sku, command) =
                    (f.inventory.clone(), barrier.clone(), sku.clone(), command.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    inventory
                        .reserve(
                            &command,
                            &sku,
                            &rid(&format!("retried-{round}")),
                            1,
                            Duration::hours(1),
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "round {round}: one answer"
        );
    }
    let item = f.inventory.get(&sku).await.unwrap();
    assert_eq!(item.reserved(), ROUNDS as u64, "one effect per command");
    assert_eq!(item.version(), Version::new(1 + ROUNDS as u64));
}

async fn idempotency_by_reservation_id(f: &Fixture) {
    let sku = received(f, 10).await;
    let ttl = Duration::minutes(15);
    let first = f
        .inventory
        .reserve(&meta("Reserve", None), &sku, &rid("line-1"), 4, ttl)
        .await
        .unwrap();
    let again = f
        .inventory
        .reserve(&meta("Reserve", None), &sku, &rid("line-1"), 4, ttl)
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "the same reservation again: a no-op, the same answer"
    );
    let mismatch = f
        .inventory
        .reserve(&meta("Reserve", None), &sku, &rid("line-1"), 5, ttl)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &mismatch,
            Error::FailedPrecondition {
                reason: "RESERVATION_MISMATCH",
                ..
            }
        ),
        "{mismatch:?}"
    );
    let released = f
        .inventory
        .release(&meta("ReleaseReservation", None), &sku, &rid("line-1"))
        .await
        .unwrap();
    let released_again = f
        .inventory
        .release(&meta("ReleaseReservation", None), &sku, &rid("line-1"))
        .await
        .unwrap();
    assert_eq!(released_again, released);
    assert_eq!(released.available(), 10);
    let late = f
        .inventory
        .commit(&meta("CommitReservation", None), &sku, &rid("line-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &late,
            Error::FailedPrecondition {
                reason: "RESERVATION_RELEASED",
                ..
            }
        ),
        "{late:?}"
    );

    f.inventory
        .reserve(&meta("Reserve", None), &sku, &rid("line-2"), 3, ttl)
        .await
        .unwrap();
    f.inventory
        .confirm(&meta("ConfirmReservation", None), &sku, &rid("line-2"))
        .await
        .unwrap();
    let committed = f
        .inventory
        .commit(&meta("CommitReservation", None), &sku, &rid("line-2"))
        .await
        .unwrap();
    let committed_again = f
        .inventory
        .commit(&meta("CommitReservation", None), &sku, &rid("line-2"))
        .await
        .unwrap();
    assert_eq!(committed_again, committed);
    assert_eq!(
        (committed.on_hand(), committed.reserved(), committed.available()),
        (7, 0, 7)
    );
    let unknown = f
        .inventory
        .confirm(&meta("ConfirmReservation", None), &sku, &rid("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            unknown,
            Error::NotFound {
                kind: "reservation",
                ..
            }
        ),
        "{unknown:?}"
    );
}

async fn expired_reservations_release_themselves(f: &Fixture) {
    // Lazily: the next command on the item records the release in its write.
    let touched = received(f, 5).await;
    f.inventory
        .reserve(
            &meta("Reserve", None),
            &touched,
            &rid("held"),
            2,
            Duration::minutes(10),
        )
        .await
        .unwrap();
    let before = last_position(f).await;
    f.clock.advance(Duration::minutes(10));
    let shown = f.inventory.get(&touched).await.unwrap();
    assert_eq!(shown.available(), 5, "a read shows it released at once");
    let item = f
        .inventory
        .receive(&meta("ReceiveStock", None), &touched, 1)
        .await
        .unwrap();
    assert_eq!((item.on_hand(), item.reserved()), (6, 0));
    let events = events_after(f, before).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].event_type, "inventory.stock_item.reservation_released");
    assert_eq!(events[0].payload["cause"], "expired");
    assert_eq!(events[1].event_type, "inventory.stock_item.received");
    assert!(
        events.iter().all(|e| e.aggregate_version == item.version()),
        "one write"
    );
    let late = f
        .inventory
        .commit(&meta("CommitReservation", None), &touched, &rid("held"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &late,
            Error::FailedPrecondition {
                reason: "RESERVATION_EXPIRED",
                ..
            }
        ),
        "{late:?}"
    );

    // By the sweep, when nobody touches the item; a firm reservation stays.
    let untouched = received(f, 5).await;
    f.inventory
        .reserve(
            &meta("Reserve", None),
            &untouched,
            &rid("held"),
            2,
            Duration::minutes(10),
        )
        .await
        .unwrap();
    f.inventory
        .reserve(
            &meta("Reserve", None),
            &untouched,
            &rid("firm"),
            1,
            Duration::minutes(10),
        )
        .await
        .unwrap();
    f.inventory
        .confirm(&meta("ConfirmReservation", None), &untouched, &rid("firm"))
        .await
        .unwrap();
    let version = f.inventory.get(&untouched).await.unwrap().version();
    let id = StockItem::id_of(&untouched).as_uuid();
    // Other items of the suite hold reservations too: each sweep is drained,
    // and only this item's events are looked at.
    let sweep = || async {
        let mut changed = 0;
        loop {
            match f.inventory.sweep_expired().await.unwrap() {
                0 => return changed,
                n => changed += n,
            }
        }
    };
    f.clock.advance(Duration::minutes(9));
    let before = last_position(f).await;
    sweep().await;
    let mine = |events: Vec<strata_store::StoredEvent>| -> Vec<_> {
        events.into_iter().filter(|e| e.aggregate_id == id).collect()
    };
    assert!(mine(events_after(f, before).await).is_empty(), "not yet");
    let raw = strata_inventory::store::open(&f.config).await.unwrap();
    assert_eq!(
        raw.get(&untouched).await.unwrap().unwrap().version(),
        version,
        "unchanged"
    );
    f.clock.advance(Duration::minutes(1));
    assert!(sweep().await >= 1);
    assert_eq!(
        f.inventory.sweep_expired().await.unwrap(),
        0,
        "nothing left to release"
    );
    let events = mine(events_after(f, before).await);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].payload["cause"], "expired");
    assert_eq!(events[0].payload["reservation_id"], "held");
    assert_eq!(events[0].aggregate_version, version.next());
    let stored = raw.get(&untouched).await.unwrap().unwrap();
    assert_eq!(stored.version(), version.next(), "the sweep wrote it");
    let item = f.inventory.get(&untouched).await.unwrap();
    assert_eq!((item.reserved(), item.available()), (1, 4));
    assert_adds_up(&item);
}

async fn events_in_commit_order_resume_and_follow(f: &Fixture) {
    let start = last_position(f).await;
    let sku = received(f, 1).await;
    for _ in 0..5 {
        f.inventory
            .receive(&meta("ReceiveStock", None), &sku, 1)
            .await
            .unwrap();
    }
    let all = events_after(f, start).await;
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let versions: Vec<_> = all.iter().map(|e| e.aggregate_version.get()).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6], "commit order");
    let resumed = events_after(f, all[2].position).await;
    assert_eq!(resumed, all[3..], "resuming skips nothing, repeats nothing");

    let mut follower = f.inventory.events(all[5].position, true).await.unwrap();
    f.inventory
        .receive(&meta("ReceiveStock", None), &sku, 1)
        .await
        .unwrap();
    let next = tokio::time::timeout(StdDuration::from_secs(10), follower.next())
        .await
        .expect("the follower is woken")
        .unwrap()
        .unwrap();
    assert_eq!(next.aggregate_version, Version::new(7));
    assert!(next.position > all[5].position);
}

/// Locked writers on several items at once, and a reader polling the stream
/// meanwhile: it sees every event once, in position order — positions are
/// handed out in commit order on the locked path too.
async fn concurrent_locked_writers_are_read_without_gaps(f: &Fixture) {
    let start = last_position(f).await;
    let mut skus = Vec::new();
    for _ in 0..CONTENDERS {
        skus.push(received(f, 1).await);
    }
    let from = last_position(f).await;
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let inventory = f.inventory.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut position = from;
            loop {
                let done = !writing.load(std::sync::atomic::Ordering::SeqCst);
                let events: Vec<_> = inventory.events(position, false).await.unwrap().collect().await;
                for event in events {
                    let event = event.unwrap();
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
    for _ in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS * 2));
        let tasks: Vec<_> = (0..CONTENDERS * 2)
            .map(|n| {
                let (inventory, barrier) = (f.inventory.clone(), barrier.clone());
                // Two writers per item: they queue on its row.
                let sku = skus[n % CONTENDERS].clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    inventory
                        .receive(&meta("ReceiveStock", None), &sku, 1)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all: Vec<u64> = events_after(f, from).await.iter().map(|e| e.position).collect();
    assert_eq!(all.len(), ROUNDS * CONTENDERS * 2);
    assert_eq!(seen, all, "the reader saw every event once, in order");
    assert!(start < from);
    for sku in &skus {
        assert_eq!(
            f.inventory.get(sku).await.unwrap().on_hand(),
            1 + 2 * ROUNDS as u64
        );
    }
}

/// The gRPC service on `127.0.0.1:0` over SQLite, with a manual clock and a
/// fast sweep: validation, the error details a client acts on, and the sweep
/// `mount` spawns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_service_answers_and_its_sweep_runs() {
    use pb::stock_item_service_client::StockItemServiceClient;
    use tonic_types::StatusExt;

    let (config, dir) = sqlite_config();
    let clock = Arc::new(ManualClock::new(start_time()));
    let service = strata_inventory::mount_with(
        config,
        strata_inventory::Options {
            sweep_period: StdDuration::from_millis(20),
            clock: clock.clone(),
        },
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = StockItemServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();

    let item = client
        .receive_stock(pb::ReceiveStockRequest {
            request_id: key(),
            sku: "MUG-1".into(),
            quantity: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .stock_item
        .unwrap();
    assert_eq!((item.on_hand, item.available, item.version), (3, 3, 1));

    let reserve = |reservation_id: &str, quantity| pb::ReserveRequest {
        request_id: key(),
        sku: "MUG-1".into(),
        reservation_id: reservation_id.into(),
        quantity,
        time_to_live: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    };
    let status = client.reserve(reserve("too-many", 4)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "INSUFFICIENT_STOCK");
    assert_eq!(info.metadata.get("available").map(String::as_str), Some("3"));

    let status = client
        .reserve(pb::ReserveRequest {
            request_id: String::new(),
            sku: "bad sku".into(),
            reservation_id: String::new(),
            quantity: 0,
            time_to_live: None,
            expected_version: Some(0),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let mut fields: Vec<_> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "expected_version",
            "quantity",
            "request_id",
            "reservation_id",
            "sku",
            "time_to_live"
        ]
    );

    let status = client
        .batch_get_stock_items(pb::BatchGetStockItemsRequest {
            skus: (0..101).map(|n| format!("S{n}")).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let batch = client
        .batch_get_stock_items(pb::BatchGetStockItemsRequest {
            skus: vec!["MUG-1".into(), "NOPE".into(), "MUG-1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.stock_items.len(), 1);

    // The spawned sweep: a held reservation, the clock past its expiry, and the
    // release event arrives on a followed stream without any call touching the item.
    client.reserve(reserve("held", 2)).await.unwrap();
    let mut events = client
        .stream_events(pb::StreamEventsRequest {
            after_position: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    clock.advance(Duration::seconds(60));
    let released = tokio::time::timeout(StdDuration::from_secs(10), async {
        loop {
            let event = events.next().await.unwrap().unwrap();
            if let Some(pb::stream_events_response::Event::ReservationReleased(released)) = event.event {
                return released;
            }
        }
    })
    .await
    .expect("the sweep released the reservation");
    assert_eq!(released.reservation_id, "held");
    assert_eq!(released.cause(), pb::ReleaseCause::Expired);
    let item = client
        .get_stock_item(pb::GetStockItemRequest { sku: "MUG-1".into() })
        .await
        .unwrap()
        .into_inner()
        .stock_item
        .unwrap();
    assert_eq!((item.reserved, item.available, item.version), (0, 3, 3));
    std::fs::remove_dir_all(dir).unwrap();
}
