//! The ordering suite, one test binary: the repository contract
//! ([`repository`]) and the context's behaviour through its gRPC adapter
//! ([`service`]), both run against the SQLite store and the PostgreSQL store (a
//! real server in a container per test), so both backends behave the same for
//! everything ordering relies on; [`sweep`] runs the spawned expiry sweep in a
//! server on `127.0.0.1:0` and checks that `mount` refuses a bad setting.
//!
//! Time is a `ManualClock` everywhere: expiry is tested by moving it, never by
//! sleeping; waits are on events, bounded by a timeout that only fails a test.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

mod repository;
mod service;
mod support;
mod sweep;

use strata_testkit::TestPostgres;

use support::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_keeps_the_contract() {
    let backend = Backend::sqlite();
    repository::contract(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_keeps_the_contract() {
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    strata_ordering::store::open(&strata_store::StoreConfig::new(url.clone()))
        .await
        .unwrap();
    repository::generic_plans_use_their_indexes(&url).await;
    let backend = Backend::postgres(pg);
    repository::contract(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_service_behaves() {
    let backend = Backend::sqlite();
    service::suite(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_service_behaves() {
    let backend = Backend::postgres(TestPostgres::start().await.unwrap());
    service::suite(&backend).await;
}
