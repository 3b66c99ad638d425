//! Batched reads by key on both backends, against a real store: concurrent
//! callers (existing keys, missing ones, duplicates) each get their own row,
//! by UUID and by text; a failing statement reaches every caller; callers that
//! give up break nobody; idempotency records are looked up the same way.
//!
//! And the PostgreSQL connections statements pass on to each other
//! (`connections_on_postgres`): nothing a statement cut off, failed or rolled
//! back leaves behind reaches the next one; many callers share two
//! connections; kept connections count as idle.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use strata_kernel::{Fingerprint, RequestId};
use strata_store::{
    Batched, ContextSchema, LockedDecision, Migration, Param, ReadByKey, Sql, Store, StoreConfig, StoreError,
    Write, Written,
};
use strata_testkit::TestPostgres;
use tokio::sync::Barrier;
use uuid::Uuid;

/// How many times each race is run.
const ROUNDS: usize = 20;
/// How many contenders each round starts at once.
const CONTENDERS: usize = 32;
/// Bounds every wait on a caller: a caller left stranded fails the test.
const STRANDED: Duration = Duration::from_secs(10);
/// Items 1 to this exist; the id of item `i` is `Uuid::from_u128(i)`.
const ITEMS: u128 = 200;

const SCHEMA: ContextSchema = ContextSchema {
    name: "batching",
    postgres: &[Migration {
        version: 1,
        description: "items",
        sql: "create table item (id uuid primary key, name text not null unique); \
              insert into item select lpad(to_hex(i), 32, '0')::uuid, 'item ' || i \
              from generate_series(1, 200) as i;",
    }],
    sqlite: &[Migration {
        version: 1,
        description: "items",
        sql: "create table item (id blob primary key, name text not null unique) strict; \
              with recursive n(i) as (select 1 union all select i + 1 from n where i < 200) \
              insert into item select unhex(printf('%032x', i)), 'item ' || i from n;",
    }],
};

const BY_ID: ReadByKey = ReadByKey {
    statement: Sql {
        postgres: "select id, name from item where id = any($1)",
        sqlite: "select id, name from item where id in (select unhex(value) from json_each($1))",
    },
    key_column: 0,
};

const BY_NAME: ReadByKey = ReadByKey {
    statement: Sql {
        postgres: "select id, name from item where name = any($1)",
        sqlite: "select id, name from item where name in (select value from json_each($1))",
    },
    key_column: 1,
};

const FAILING: ReadByKey = ReadByKey {
    statement: Sql::same("select id, name from no_such_table where id = any($1)"),
    key_column: 0,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_reads_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("strata-batch-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(
        &SCHEMA,
        &StoreConfig::new(strata_store::embedded_url(&dir, SCHEMA.name)),
    )
    .await
    .unwrap();
    suite(&store).await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_reads_on_postgres() {
    let pg = TestPostgres::start().await.unwrap();
    let store = Store::open(&SCHEMA, &StoreConfig::new(pg.fresh_database().await.unwrap()))
        .await
        .unwrap();
    suite(&store).await;
}

async fn suite(store: &Store) {
    a_lone_read_finds_its_row(store).await;
    concurrent_reads_by_id_each_get_their_own_row(store).await;
    concurrent_reads_by_text_each_get_their_own_row(store).await;
    a_failing_statement_reaches_every_caller(store).await;
    callers_that_give_up_break_nobody(store).await;
    idempotency_records_are_looked_up_together(store).await;
}

/// What a contender's task returned, within [`STRANDED`].
async fn answered<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(STRANDED, task)
        .await
        .expect("every caller is answered")
        .unwrap()
}

/// One read of `item`, alone, within [`STRANDED`].
async fn lone(by_id: &Batched<Uuid>, item: u128) -> Option<String> {
    tokio::time::timeout(STRANDED, by_id.get(Uuid::from_u128(item), name_of))
        .await
        .expect("a lone read is answered")
        .unwrap()
}

fn name_of(row: &strata_store::Row) -> Result<String, StoreError> {
    row.text(1)
}

fn expected(item: u128) -> Option<String> {
    (1..=ITEMS).contains(&item).then(|| format!("item {item}"))
}

/// Item numbers for a round: some missing (0 and above `ITEMS`), several
/// contenders on the same item.
fn item_of(round: usize, contender: usize) -> u128 {
    u128::try_from((contender * 37 + round * 11) % 230).unwrap() / 2 * 2
}

async fn a_lone_read_finds_its_row(store: &Store) {
    let by_id: Batched<Uuid> = store.batched(BY_ID);
    for item in [1, 7, ITEMS, ITEMS + 1, 0] {
        assert_eq!(lone(&by_id, item).await, expected(item));
    }
}

/// Runs `read` for every contender of every round at once (behind a barrier)
/// and checks each answer against `expected`.
async fn race<F, Fut>(read: F)
where
    F: Fn(u128) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Option<String>, StoreError>> + Send,
{
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                let item = item_of(round, contender);
                let (barrier, read) = (Arc::clone(&barrier), read.clone());
                let task = tokio::spawn(async move {
                    barrier.wait().await;
                    read(item).await
                });
                (item, task)
            })
            .collect();
        for (item, task) in tasks {
            assert_eq!(
                answered(task).await.unwrap(),
                expected(item),
                "round {round}, item {item}"
            );
        }
    }
}

async fn concurrent_reads_by_id_each_get_their_own_row(store: &Store) {
    let by_id: Batched<Uuid> = store.batched(BY_ID);
    race(move |item| {
        let by_id = by_id.clone();
        async move { by_id.get(Uuid::from_u128(item), name_of).await }
    })
    .await;
}

async fn concurrent_reads_by_text_each_get_their_own_row(store: &Store) {
    let by_name: Batched<String> = store.batched(BY_NAME);
    race(move |item| {
        let by_name = by_name.clone();
        async move { by_name.get(format!("item {item}"), name_of).await }
    })
    .await;
}

async fn a_failing_statement_reaches_every_caller(store: &Store) {
    let failing: Batched<Uuid> = store.batched(FAILING);
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                let (barrier, failing) = (Arc::clone(&barrier), failing.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let item = item_of(round, contender);
                    failing.get(Uuid::from_u128(item), name_of).await
                })
            })
            .collect();
        for task in tasks {
            let error = answered(task).await.unwrap_err();
            // Alone or shared, it is the statement's own failure.
            let error = match &error {
                StoreError::Shared(shared) => shared.as_ref(),
                error => error,
            };
            assert!(matches!(error, StoreError::Other(_)), "{error:?}");
        }
    }
    // The other reads of the store are not affected.
    let by_id: Batched<Uuid> = store.batched(BY_ID);
    assert_eq!(lone(&by_id, 3).await, expected(3));
}

async fn callers_that_give_up_break_nobody(store: &Store) {
    let by_id: Batched<Uuid> = store.batched(BY_ID);
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                let item = item_of(round, contender);
                let (barrier, by_id) = (Arc::clone(&barrier), by_id.clone());
                let gives_up = contender % 3 == 0;
                let task = tokio::spawn(async move {
                    barrier.wait().await;
                    let read = by_id.get(Uuid::from_u128(item), name_of);
                    if gives_up {
                        // Polled once (queued, or its statement sent), then dropped.
                        tokio::select! {
                            biased;
                            _ = read => {}
                            () = std::future::ready(()) => {}
                        }
                        None
                    } else {
                        Some(read.await)
                    }
                });
                (item, task)
            })
            .collect();
        for (item, task) in tasks {
            let answer = answered(task).await;
            if let Some(answer) = answer {
                assert_eq!(answer.unwrap(), expected(item), "round {round}, item {item}");
            }
        }
        // And the read goes on.
        assert_eq!(lone(&by_id, 5).await, expected(5));
    }
}

async fn idempotency_records_are_looked_up_together(store: &Store) {
    const RECORDED: usize = 20;
    let request = |n: usize| RequestId::parse(&format!("batch-test-{n}")).unwrap();
    let fingerprint = |n: usize| Fingerprint::new(format!("fingerprint {n}").into_bytes());
    for n in 0..RECORDED {
        let written = store
            .write(Write {
                statement: Sql::same("insert into item (id, name) values ($1, $2)"),
                params: vec![Param::Uuid(Uuid::now_v7()), Param::Text(format!("recorded {n}"))],
                request_id: &request(n),
                fingerprint: &fingerprint(n),
                result: serde_json::json!({ "n": n }),
                outbox: &[],
                at: time::OffsetDateTime::now_utc(),
            })
            .await
            .unwrap();
        assert_eq!(written, Written::Applied);
    }
    for _ in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                // Half of them unknown, the rest with duplicates.
                let n = contender % (RECORDED * 2);
                let (barrier, store) = (Arc::clone(&barrier), store.clone());
                let task = tokio::spawn(async move {
                    barrier.wait().await;
                    store.recorded(&request(n)).await
                });
                (n, task)
            })
            .collect();
        for (n, task) in tasks {
            let recorded = answered(task).await.unwrap();
            if n < RECORDED {
                let recorded = recorded.expect("a recorded command");
                assert_eq!(recorded.fingerprint, fingerprint(n));
                assert_eq!(recorded.result, serde_json::json!({ "n": n }));
            } else {
                assert_eq!(recorded, None);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_on_postgres() {
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    let with = |max_connections| StoreConfig {
        max_connections,
        ..StoreConfig::new(url.clone())
    };
    // One connection: whatever a statement leaves on it, the next one finds.
    let one = Store::open(&SCHEMA, &with(1)).await.unwrap();
    a_statement_cut_off_leaves_nothing_behind(&one).await;
    a_failed_statement_leaves_nothing_behind(&one).await;
    a_failed_locked_command_leaves_nothing_behind(&one).await;
    assert_eq!(usage(1), (1, 1), "(open, idle) once the statements ended");
    let two = Store::open(&SCHEMA, &with(2)).await.unwrap();
    many_callers_share_two_connections(&two).await;
    // Connections of callers that gave up mid-statement come back once the
    // server has answered their statement; /metrics then shows them all idle.
    let settled = async {
        loop {
            let (open, idle) = usage(2);
            assert!(open <= 2, "{open} connections open, at most 2 allowed");
            if idle == open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(STRANDED, settled)
        .await
        .expect("every connection is idle once the callers are answered");
}

/// (open, idle) connections of this test's store with `max` connections.
fn usage(max: u32) -> (u32, u32) {
    let usage = strata_store::pool_usage();
    let mine = usage
        .iter()
        .find(|u| u.context == SCHEMA.name && u.max == max)
        .expect("the store's pool is reported");
    (mine.open, mine.idle)
}

/// One row, one text column, from `sql`.
async fn text(store: &Store, sql: &'static str) -> Result<String, StoreError> {
    let row = store.fetch_optional(Sql::same(sql), Vec::new()).await?;
    row.expect("one row").text(0)
}

async fn a_statement_cut_off_leaves_nothing_behind(one: &Store) {
    let by_id: Batched<Uuid> = one.batched(BY_ID);
    for round in 0..3 {
        // Sent, then given up while the server still runs it: its answer
        // arrives on the connection after the caller has gone.
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            text(one, "select 'the late answer' from pg_sleep(0.3)"),
        )
        .await;
        assert!(cut.is_err(), "round {round}: the statement was cut off");
        assert_eq!(
            tokio::time::timeout(STRANDED, text(one, "select 'the next answer'"))
                .await
                .expect("the next statement is answered")
                .unwrap(),
            "the next answer",
            "round {round}"
        );
        assert_eq!(lone(&by_id, 9).await, expected(9), "round {round}");
    }
}

async fn a_failed_statement_leaves_nothing_behind(one: &Store) {
    for round in 0..3 {
        let error = text(one, "select (1 / 0)::text").await.unwrap_err();
        assert!(matches!(error, StoreError::Other(_)), "round {round}: {error:?}");
        assert_eq!(
            text(one, "select 'after'").await.unwrap(),
            "after",
            "round {round}"
        );
    }
}

async fn a_failed_locked_command_leaves_nothing_behind(one: &Store) {
    let request = RequestId::parse("locked-and-failed").unwrap();
    for round in 0..3 {
        // Fails after taking the aggregate's lock, inside the transaction.
        let failed = one
            .write_locked(
                Sql::same("select id, name from item where id = $1"),
                vec![Param::Uuid(Uuid::from_u128(4))],
                &request,
                |_, row| -> Result<LockedDecision<()>, StoreError> {
                    assert!(row.is_some(), "the locked read found item 4");
                    Err(StoreError::Corrupt("decided to fail".into()))
                },
            )
            .await;
        assert!(
            matches!(failed, Err(StoreError::Corrupt(_))),
            "round {round}: {failed:?}"
        );
        // The next statement runs outside that transaction: the aggregate's
        // lock, held until the transaction ends, is gone.
        assert_eq!(
            text(
                one,
                "select count(*)::text from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
            )
            .await
            .unwrap(),
            "0",
            "round {round}"
        );
    }
}

async fn many_callers_share_two_connections(two: &Store) {
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                let (barrier, two) = (Arc::clone(&barrier), two.clone());
                let n = i64::try_from(round * CONTENDERS + contender).unwrap();
                let gives_up = contender % 4 == 0;
                tokio::spawn(async move {
                    barrier.wait().await;
                    let statement = two.fetch_optional(Sql::same("select $1::int8 * 2"), vec![Param::Int(n)]);
                    if gives_up {
                        // Polled once (waiting, or its statement sent), then dropped.
                        tokio::select! {
                            biased;
                            _ = statement => {}
                            () = std::future::ready(()) => {}
                        }
                        None
                    } else {
                        Some((n, statement.await.unwrap().expect("one row").int(0).unwrap()))
                    }
                })
            })
            .collect();
        for task in tasks {
            if let Some((n, doubled)) = answered(task).await {
                assert_eq!(doubled, n * 2, "round {round}");
            }
        }
    }
}
