//! The repository contract, through the port (and the kernel's command
//! machinery) as the service uses it.

use std::sync::Arc;

use serde::Serialize;
use strata_kernel::{
    AggregateRoot, CommandMeta, OutboxMessage, RequestId, Version,
    execute::{Change, SaveError},
};
use strata_ordering::{
    domain::{
        BuyerId, CancelReason, LineSku, Money, NewLine, Order, OrderCommand, OrderEvent, OrderId, OrderLines,
        OrderStatus, ProductRef, Quantity,
    },
    repository::{OrderCursor, OrderQuery, OrderRepository},
    store,
};
use time::Duration;
use tokio_stream::StreamExt;

use crate::support::{Backend, TTL, at, unique};

type Repo = Arc<dyn OrderRepository>;

pub(crate) async fn contract(backend: &Backend) {
    let config = backend.fresh().await;
    let repo = store::open(&config).await.unwrap();
    round_trip(&repo).await;
    optimistic_versions(&repo).await;
    idempotency_records(&repo).await;
    listing(&repo).await;
    due_orders(backend).await;
    // Migrations run again on an existing store without complaint.
    store::open(&config).await.expect("migrations are idempotent");
}

fn meta(key: &str) -> CommandMeta {
    #[derive(Serialize)]
    struct Key<'a>(&'a str);
    CommandMeta::parse("Contract", key, None, &Key(key)).unwrap()
}

fn order_lines(n: usize) -> OrderLines {
    OrderLines::new(
        (0..n)
            .map(|i| NewLine {
                product: ProductRef::from_uuid(uuid::Uuid::now_v7()),
                sku: LineSku::parse(&format!("SKU-{i}")).unwrap(),
                quantity: Quantity::parse(i as u32 + 1).unwrap(),
                unit_price: Money::parse("EUR", 250).unwrap(),
            })
            .collect(),
    )
    .unwrap()
}

fn placed(buyer: BuyerId, seconds: i64) -> (Order, OrderEvent) {
    Order::place(OrderId::generate(), buyer, order_lines(3), TTL, at(seconds))
}

async fn save(
    repo: &Repo,
    order: &Order,
    replaces: Option<Version>,
    key: &str,
    events: &[OrderEvent],
) -> Result<(), SaveError> {
    let outbox = OutboxMessage::for_events(order, events, order.updated_at()).unwrap();
    repo.save(Change {
        aggregate: order,
        replaces,
        outbox: &outbox,
        meta: &meta(key),
        at: order.updated_at(),
    })
    .await
}

async fn insert(repo: &Repo, order: &Order) {
    save(repo, order, None, &unique("place"), &[]).await.unwrap();
}

async fn events_after(repo: &Repo, position: u64) -> Vec<strata_store::StoredEvent> {
    let events: Vec<_> = repo.events(position, false).await.unwrap().collect().await;
    events.into_iter().map(Result::unwrap).collect()
}

fn buyer() -> BuyerId {
    BuyerId::from_uuid(uuid::Uuid::now_v7())
}

async fn round_trip(repo: &Repo) {
    let (mut order, event) = placed(buyer(), 0);
    save(repo, &order, None, &unique("place"), &[event])
        .await
        .unwrap();
    let stored = repo.get(order.id()).await.unwrap().unwrap();
    assert_eq!(stored, order, "the order and its lines round-trip");
    assert_eq!(stored.lines().len(), 3);
    assert_eq!(stored.total().amount_minor(), 250 * (1 + 2 + 3));
    assert_eq!(
        stored.created_at().microsecond(),
        123_456,
        "sub-second precision is kept"
    );
    assert_eq!(stored.expires_at(), at(0) + TTL);
    assert_eq!(repo.get(OrderId::generate()).await.unwrap(), None);

    let events = events_after(repo, 0).await;
    assert_eq!(events.len(), 1, "the place wrote its event");
    assert_eq!(events[0].event_type, "ordering.order.placed");
    assert_eq!(events[0].payload["lines"].as_array().map(Vec::len), Some(3));
    assert_eq!(events[0].payload["total_minor"], 1500);

    let cancelled = order
        .handle(
            &OrderCommand::Cancel(CancelReason::parse("out of stock").unwrap()),
            at(5),
        )
        .unwrap();
    save(
        repo,
        &order,
        Some(Version::INITIAL),
        &unique("cancel"),
        &cancelled,
    )
    .await
    .unwrap();
    let stored = repo.get(order.id()).await.unwrap().unwrap();
    assert_eq!(stored, order, "the lines are kept when the status changes");
    assert_eq!(stored.status(), OrderStatus::Cancelled);
    let events = events_after(repo, events[0].position).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].aggregate_version, Version::new(2));
    assert_eq!(events[0].payload["reason"], "out of stock");
}

async fn optimistic_versions(repo: &Repo) {
    let (mut order, _) = placed(buyer(), 0);
    insert(repo, &order).await;
    order.handle(&OrderCommand::Confirm, at(1)).unwrap();
    save(repo, &order, Some(Version::INITIAL), &unique("v2"), &[])
        .await
        .unwrap();

    let mut stale = order.clone();
    stale.handle(&OrderCommand::Ship, at(2)).unwrap();
    let refused = save(repo, &stale, Some(Version::INITIAL), &unique("stale"), &[]).await;
    assert!(
        matches!(refused, Err(SaveError::VersionConflict { current }) if current == Version::new(2)),
        "{refused:?}"
    );
    assert_eq!(
        repo.get(order.id()).await.unwrap().map(|o| o.status()),
        Some(OrderStatus::Confirmed)
    );

    let (ghost, _) = placed(buyer(), 0);
    let refused = save(repo, &ghost, Some(Version::INITIAL), &unique("ghost"), &[]).await;
    assert!(matches!(refused, Err(SaveError::NotFound)), "{refused:?}");
}

async fn idempotency_records(repo: &Repo) {
    let (mut order, _) = placed(buyer(), 0);
    insert(repo, &order).await;
    let key = unique("confirm");
    order.handle(&OrderCommand::Confirm, at(1)).unwrap();
    save(repo, &order, Some(Version::INITIAL), &key, &[])
        .await
        .unwrap();

    let id = RequestId::parse(&key).unwrap();
    let recorded = repo.recorded(&id).await.unwrap().expect("recorded");
    assert_eq!(recorded.fingerprint, meta(&key).fingerprint);
    assert_eq!(
        recorded.result, order,
        "the record keeps the order with its lines"
    );

    let mut again = order.clone();
    again.handle(&OrderCommand::Ship, at(2)).unwrap();
    let before = events_after(repo, 0).await.len();
    let refused = save(repo, &again, Some(Version::new(2)), &key, &[OrderEvent::Shipped]).await;
    assert!(
        matches!(refused, Err(SaveError::RequestAlreadyRecorded)),
        "{refused:?}"
    );
    assert_eq!(
        repo.get(order.id()).await.unwrap().as_ref(),
        Some(&order),
        "nothing half-written"
    );
    assert_eq!(
        events_after(repo, 0).await.len(),
        before,
        "no event of the refused write"
    );

    let (record, current) = repo.load_for_command(order.id(), &id).await.unwrap();
    assert_eq!(record.map(|r| r.result), Some(order.clone()));
    assert_eq!(current, Some(order));
}

async fn listing(repo: &Repo) {
    // Two buyers; some orders placed at the same instant, so that the id
    // breaks the tie; every other order confirmed.
    let (alice, bob) = (buyer(), buyer());
    let mut created = Vec::new();
    for n in 0..9_i64 {
        let who = if n % 3 == 0 { bob } else { alice };
        let (mut order, _) = placed(who, 100 + n / 2);
        insert(repo, &order).await;
        if n % 2 == 0 {
            order.handle(&OrderCommand::Confirm, at(200)).unwrap();
            save(repo, &order, Some(Version::INITIAL), &unique("confirm"), &[])
                .await
                .unwrap();
        }
        created.push(order);
    }
    let newest_first = |orders: &mut Vec<Order>| {
        orders.sort_by_key(|o| std::cmp::Reverse((o.created_at(), o.id())));
    };
    for (buyer, status) in [
        (None, None),
        (Some(alice), None),
        (None, Some(OrderStatus::Confirmed)),
        (Some(alice), Some(OrderStatus::Pending)),
        (Some(bob), Some(OrderStatus::Confirmed)),
    ] {
        let mut seen: Vec<Order> = Vec::new();
        let mut after = None;
        for pages in 0.. {
            // A cursor that does not advance would page forever.
            assert!(pages < 100, "{buyer:?} {status:?}: the pages never end");
            let page = repo
                .list(&OrderQuery {
                    buyer,
                    status,
                    after,
                    limit: 2,
                })
                .await
                .unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(OrderCursor {
                created_at: last.created_at(),
                id: last.id(),
            });
            seen.extend(page);
        }
        let mut expected: Vec<Order> = created
            .iter()
            .filter(|o| buyer.is_none_or(|b| o.buyer() == b))
            .filter(|o| status.is_none_or(|s| o.status() == s))
            .cloned()
            .collect();
        newest_first(&mut expected);
        // Orders from earlier steps exist too (no buyer filter): keep ours.
        let ours: Vec<_> = seen
            .into_iter()
            .filter(|o| created.iter().any(|c| c.id() == o.id()))
            .collect();
        assert_eq!(
            ours, expected,
            "{buyer:?} {status:?}: pages come newest first, each order once"
        );
    }
}

async fn due_orders(backend: &Backend) {
    // A store of its own, so that only these orders can be due.
    let repo = store::open(&backend.fresh().await).await.unwrap();
    let (early, _) = placed(buyer(), 0);
    let (late, _) = placed(buyer(), 60);
    let (mut confirmed, _) = placed(buyer(), 0);
    for order in [&late, &early, &confirmed] {
        insert(&repo, order).await;
    }
    confirmed.handle(&OrderCommand::Confirm, at(1)).unwrap();
    save(&repo, &confirmed, Some(Version::INITIAL), &unique("confirm"), &[])
        .await
        .unwrap();

    let deadline = at(0) + TTL;
    assert_eq!(
        repo.due(deadline - Duration::microseconds(1), 10).await.unwrap(),
        []
    );
    assert_eq!(
        repo.due(deadline, 10).await.unwrap(),
        [early.id()],
        "due at the deadline itself"
    );
    assert_eq!(
        repo.due(deadline + Duration::hours(1), 10).await.unwrap(),
        [early.id(), late.id()],
        "earliest deadline first; confirmed orders never fall due"
    );
    assert_eq!(
        repo.due(deadline + Duration::hours(1), 1).await.unwrap(),
        [early.id()]
    );
}

/// PostgreSQL: the generic plan of every listing statement and of the sweep's
/// uses the index it is written for (sequential scans disabled, so that the
/// plan shows which index can serve it, whatever the table's size).
pub(crate) async fn generic_plans_use_their_indexes(url: &str) {
    use sqlx::{Connection, Executor, Row};

    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute(
        "set search_path to ordering; set plan_cache_mode = force_generic_plan; set enable_seqscan = off",
    )
    .await
    .unwrap();
    let (time, id, buyer) = (
        "'2026-01-01 00:00:00+00'::timestamptz",
        "'00000000-0000-0000-0000-000000000000'::uuid",
        "'00000000-0000-0000-0000-000000000001'::uuid",
    );
    for query in store::INDEXED_QUERIES {
        let args = match query.name {
            "list" => format!("{time}, {id}, 10"),
            "list by buyer" => format!("{buyer}, {time}, {id}, 10"),
            "list by status" => format!("'pending', {time}, {id}, 10"),
            "list by buyer and status" => format!("{buyer}, 'pending', {time}, {id}, 10"),
            "due" => format!("{time}, 10"),
            other => panic!("no arguments for {other}"),
        };
        conn.execute(sqlx::AssertSqlSafe(format!(
            "prepare q as {}",
            query.sql.postgres
        )))
        .await
        .unwrap();
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("explain execute q({args})")))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        conn.execute("deallocate q").await.unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains(query.index),
            "{}: not planned on {}:\n{plan}",
            query.name,
            query.index
        );
        assert!(
            !plan.contains("Sort"),
            "{}: the index gives the order:\n{plan}",
            query.name
        );
    }
}
