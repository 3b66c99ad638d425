//! End to end: the data service started on `127.0.0.1:0`, its catalog on
//! PostgreSQL in a container (or SQLite), driven through the generated client as
//! any gRPC caller would; (`shop`) the whole shop as real processes, driven
//! over HTTP; and (`trace`) the same shop's traces, exported to a collector
//! the test serves.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

#[path = "e2e/discovery.rs"]
mod discovery;
#[path = "e2e/shop.rs"]
mod shop;
#[path = "e2e/trace.rs"]
mod trace;

use std::{net::SocketAddr, time::Duration};

use strata_data_service::{Hosted, Settings};
use strata_proto::catalog::v1::{self as pb, product_service_client::ProductServiceClient};
use strata_store::StoreConfig;
use strata_testkit::{Partition, TestPostgres, server_address};
use tokio::{sync::oneshot, task::JoinHandle};
use tokio_stream::StreamExt;
use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};
use tonic_types::StatusExt;

/// A data service running in this test, stopped by [`Service::shutdown`].
struct Service {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// The catalog alone on `database_url`.
    async fn start(database_url: String, drain_timeout: Duration) -> Self {
        Self::hosting(&[strata_catalog::CONTEXT], &database_url, drain_timeout).await
    }

    /// These contexts, all on `database_url` (each in its own schema or file).
    async fn hosting(contexts: &[&'static str], database_url: &str, drain_timeout: Duration) -> Self {
        let hosted = contexts
            .iter()
            .map(|context| Hosted {
                context,
                store: StoreConfig::new(database_url.to_owned()),
            })
            .collect();
        let service = Self::serving(hosted, drain_timeout).await;
        // Wait on health, not on a sleep: the listener is bound, so this call is
        // answered as soon as the contexts are mounted.
        let status = tokio::time::timeout(
            Duration::from_secs(30),
            service.health().check(health_request("")),
        )
        .await
        .expect("health answers")
        .expect("health check succeeds");
        assert_eq!(status.into_inner().status(), ServingStatus::Serving);
        service
    }

    /// Serves `hosted`, answering as soon as the listener is bound.
    async fn serving(hosted: Vec<Hosted>, drain_timeout: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let settings = Settings {
            listen: address,
            hosted,
            data_dir: std::env::temp_dir(),
            drain_timeout,
            log_format: Default::default(),
            admission: Default::default(),
            metrics_listen: None,
            shutdown_grace: Duration::ZERO,
            registry: None,
            tls: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(strata_data_service::run(settings, listener, async {
            let _ = stopped.await;
        }));
        Self { address, stop, task }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn lazy_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect_lazy()
    }

    async fn products(&self) -> ProductServiceClient<Channel> {
        ProductServiceClient::new(self.channel().await)
    }

    fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.lazy_channel())
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

fn health_request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

fn key() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn eur(amount_minor: i64) -> Option<strata_proto::r#type::v1::Money> {
    Some(strata_proto::r#type::v1::Money {
        currency_code: "EUR".into(),
        amount_minor,
    })
}

fn create_request(sku: &str) -> pb::CreateProductRequest {
    pb::CreateProductRequest {
        request_id: key(),
        sku: sku.into(),
        name: "Mug".into(),
        description: "Stoneware, 350 ml".into(),
        price: eur(1290),
    }
}

async fn create(client: &mut ProductServiceClient<Channel>, sku: &str) -> pb::Product {
    client
        .create_product(create_request(sku))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap()
}

fn field_names(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn catalog_on_postgres_end_to_end() {
    let pg = TestPostgres::start().await.unwrap();
    // The service reaches PostgreSQL through a proxy the test can cut.
    let url = pg.fresh_database().await.unwrap();
    let partition = Partition::start(server_address(&url).unwrap()).await.unwrap();
    let service = Service::start(partition.route(&url).unwrap(), Duration::from_secs(5)).await;
    let mut client = service.products().await;

    // create → get → change price with a stale expected_version: ABORTED with the current version.
    let created = create(&mut client, "MUG-1").await;
    assert_eq!(created.version, 1);
    assert_eq!(created.status(), pb::ProductStatus::Draft);
    let got = client
        .get_product(pb::GetProductRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(got, created, "what was created is what is read back");
    let changed = client
        .change_price(pb::ChangePriceRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: Some(1),
            price: eur(1490),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!((changed.version, changed.price.clone()), (2, eur(1490)));
    let stale = client
        .change_price(pb::ChangePriceRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: Some(1),
            price: eur(999),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let info = stale.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("current_version").map(String::as_str),
        Some("2")
    );

    // Malformed requests name every field at fault.
    let bad = client
        .create_product(pb::CreateProductRequest {
            request_id: key(),
            sku: "no spaces allowed".into(),
            name: " ".into(),
            description: String::new(),
            price: Some(strata_proto::r#type::v1::Money {
                currency_code: "euro".into(),
                amount_minor: 0,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        field_names(&bad),
        ["sku", "name", "price.currency_code", "price.amount_minor"]
    );
    let bad = client
        .create_product(pb::CreateProductRequest {
            price: None,
            ..create_request("X")
        })
        .await
        .unwrap_err();
    assert_eq!(field_names(&bad), ["price"]);
    let bad = client
        .get_product(pb::GetProductRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (bad.code(), field_names(&bad)),
        (Code::InvalidArgument, vec!["id".to_owned()])
    );
    let bad = client
        .publish_product(pb::PublishProductRequest {
            id: created.id.clone(),
            request_id: String::new(),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(field_names(&bad), ["request_id"]);

    // Unknown id.
    let missing = client
        .get_product(pb::GetProductRequest {
            id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Duplicate sku.
    let dup = client.create_product(create_request("MUG-1")).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    // The same request again: the first result, no second effect.
    let publish = pb::PublishProductRequest {
        id: created.id.clone(),
        request_id: key(),
        expected_version: Some(2),
    };
    let first = client
        .publish_product(publish.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client
        .publish_product(publish.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    assert_eq!(first.product.as_ref().unwrap().version, 3);
    let now = client
        .get_product(pb::GetProductRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.product.unwrap().version, 3, "the retry had no second effect");
    let retry = create_request("MUG-RETRY");
    let one = client.create_product(retry.clone()).await.unwrap().into_inner();
    let two = client.create_product(retry.clone()).await.unwrap().into_inner();
    assert_eq!(
        one, two,
        "a retried create returns the same product, not a duplicate"
    );

    // The same command retried concurrently: every caller gets the first result,
    // and it took effect once.
    let racing = pb::ChangePriceRequest {
        id: created.id.clone(),
        request_id: key(),
        expected_version: Some(3),
        price: eur(2490),
    };
    let calls = (0..8).map(|_| {
        let mut client = client.clone();
        let request = racing.clone();
        tokio::spawn(async move { client.change_price(request).await.map(|r| r.into_inner()) })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap().expect("every concurrent retry succeeds"));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].product.as_ref().unwrap().version, 4);
    let now = client
        .get_product(pb::GetProductRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        now.product.unwrap().version,
        4,
        "the racing retries took effect once"
    );

    // The same request_id with a different request.
    let reused = client
        .retire_product(pb::RetireProductRequest {
            id: created.id.clone(),
            request_id: publish.request_id.clone(),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(field_names(&reused), ["request_id"]);

    // Illegal transitions.
    let retired = client
        .retire_product(pb::RetireProductRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: None,
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        (retired.status(), retired.version),
        (pb::ProductStatus::Retired, 5)
    );
    let illegal = client
        .publish_product(pb::PublishProductRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(illegal.code(), Code::FailedPrecondition, "{illegal:?}");

    // Listing: pages in creation order, filtered by status.
    for n in 0..3 {
        create(&mut client, &format!("PAGE-{n}")).await;
    }
    let mut skus = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_products(pb::ListProductsRequest {
                page_size: 2,
                page_token: token,
                status: pb::ProductStatus::Draft.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.products.len() <= 2);
        skus.extend(page.products.into_iter().map(|p| p.sku));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(skus, ["MUG-RETRY", "PAGE-0", "PAGE-1", "PAGE-2"]);
    let bad = client
        .list_products(pb::ListProductsRequest {
            page_size: -1,
            page_token: "garbage".into(),
            status: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(field_names(&bad), ["page_size", "page_token"]);

    // The store goes away: reads and writes are UNAVAILABLE (retry later), not
    // INTERNAL, and nothing is half-written.
    let created = create(&mut client, "MUG-PARTITION").await;
    partition.cut();
    let get = pb::GetProductRequest {
        id: created.id.clone(),
    };
    let down = client.get_product(get.clone()).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    let during = pb::ChangePriceRequest {
        id: created.id.clone(),
        request_id: key(),
        expected_version: None,
        price: eur(4242),
    };
    let down = client.change_price(during.clone()).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");

    // The partition heals: the service recovers by itself. A client retries an
    // UNAVAILABLE call, as it was told to (bounded: a broken pooled connection
    // fails once, then is replaced).
    partition.heal();
    let mut recovered = None;
    for _ in 0..20 {
        match client.change_price(during.clone()).await {
            Ok(answer) => {
                recovered = Some(answer.into_inner());
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
    }
    let recovered = recovered.expect("writes succeed again once the partition heals");
    let after = client
        .get_product(get)
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(after.price, eur(4242));
    assert_eq!(
        Some(after.version),
        recovered.product.map(|p| p.version),
        "the write made during the partition took effect once, when retried"
    );

    service.shutdown().await.unwrap();
}

/// What a client of the catalog notices of the field rules and the event
/// stream, against PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_field_rules_and_event_stream_on_postgres() {
    let pg = TestPostgres::start().await.unwrap();
    let service = Service::start(pg.fresh_database().await.unwrap(), Duration::from_secs(5)).await;
    let mut client = service.products().await;

    // A control character is a client mistake naming the field, on PostgreSQL
    // too (whose text type refuses U+0000), never INTERNAL.
    let mut nul = create_request("NUL-1");
    nul.name = "Mug\u{0}".into();
    let bad = client.create_product(nul).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert_eq!(field_names(&bad), ["name"]);

    // Only the details named change: omitting the description keeps it.
    let created = create(&mut client, "EV-1").await;
    let renamed = client
        .update_product_details(pb::UpdateProductDetailsRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: Some(1),
            name: Some("Big mug".into()),
            description: None,
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.description.as_str()),
        ("Big mug", "Stoneware, 350 ml")
    );

    // A page token is bound to the filter it was issued for; a page size above
    // the maximum is served at the maximum.
    create(&mut client, "EV-2").await;
    let page = client
        .list_products(pb::ListProductsRequest {
            page_size: 1,
            page_token: String::new(),
            status: pb::ProductStatus::Draft.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!page.next_page_token.is_empty());
    let other_filter = client
        .list_products(pb::ListProductsRequest {
            page_size: 1,
            page_token: page.next_page_token.clone(),
            status: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(field_names(&other_filter), ["page_token"]);
    let capped = client
        .list_products(pb::ListProductsRequest {
            page_size: 100_000,
            page_token: String::new(),
            status: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.products.len(), 2);

    // A batch read: one call, the order asked, unknown ids left out, every
    // bad id named.
    let second = capped.products[1].clone();
    let batch = client
        .batch_get_products(pb::BatchGetProductsRequest {
            ids: vec![
                second.id.clone(),
                uuid::Uuid::now_v7().to_string(),
                created.id.clone(),
                second.id.clone(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = batch.products.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str(), created.id.as_str()]);
    let bad = client
        .batch_get_products(pb::BatchGetProductsRequest {
            ids: vec![created.id.clone(), "nope".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(field_names(&bad), ["ids[1]"]);
    let too_many = client
        .batch_get_products(pb::BatchGetProductsRequest {
            ids: vec![created.id.clone(); 101],
        })
        .await
        .unwrap_err();
    assert_eq!(field_names(&too_many), ["ids"]);

    // The event stream from position 0: create, rename, create, in order.
    let price = client
        .change_price(pb::ChangePriceRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: Some(2),
            price: eur(1990),
        })
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    let events: Vec<_> = client
        .stream_events(pb::StreamEventsRequest {
            after_position: 0,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    use pb::stream_events_response::Event;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e.event.as_ref().unwrap() {
            Event::ProductCreated(c) => format!("created {}", c.sku),
            Event::ProductDetailsUpdated(d) => format!("renamed {}", d.name),
            Event::ProductPriceChanged(p) => format!("price {}", p.price.as_ref().unwrap().amount_minor),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["created EV-1", "renamed Big mug", "created EV-2", "price 1990"]
    );
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(events[3].aggregate_version, price.version);
    assert_eq!(events[3].aggregate_id, created.id);

    // Resuming after a position gives what follows it, no more, no less.
    let rest: Vec<_> = client
        .stream_events(pb::StreamEventsRequest {
            after_position: events[1].position,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(rest, events[2..]);

    // A follower receives a change made after it opened.
    let mut follower = client
        .stream_events(pb::StreamEventsRequest {
            after_position: events[3].position,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut other = service.products().await;
    other
        .publish_product(pb::PublishProductRequest {
            id: created.id.clone(),
            request_id: key(),
            expected_version: None,
        })
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), follower.next())
        .await
        .expect("the follower is woken by the commit")
        .unwrap()
        .unwrap();
    assert!(matches!(next.event, Some(Event::ProductPublished(_))), "{next:?}");

    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn reflection_shows_exactly_the_hosted_services_and_shutdown_drains() {
    use sqlx::Connection as _;
    use std::time::Instant;

    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    // Far longer than the test may take: shutdown must not wait for it.
    let drain_timeout = Duration::from_secs(60);
    let service = Service::start(url.clone(), drain_timeout).await;

    let mut reflection = ServerReflectionClient::new(service.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "strata.catalog.v1.ProductService"
        ]
    );

    // A client that knows only reflection can resolve the service's methods,
    // and the error details its errors carry.
    for symbol in ["strata.catalog.v1.ProductService", "google.rpc.ErrorInfo"] {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
        };
        let mut responses = reflection
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        let response = responses.next().await.unwrap().unwrap();
        assert!(
            matches!(response.message_response, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
            "{symbol}: {response:?}"
        );
    }

    let mut health = service.health();
    let serving = health
        .check(health_request("strata.catalog.v1.ProductService"))
        .await
        .unwrap();
    assert_eq!(serving.into_inner().status(), ServingStatus::Serving);

    // A unary call in flight across the shutdown signal: a ChangePrice waiting
    // on the row lock this test holds.
    let mut client = service.products().await;
    let product = create(&mut client, "DRAIN-1").await;
    let mut locker = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("select 1 from catalog.product where id = $1 for update")
        .bind(uuid::Uuid::parse_str(&product.id).unwrap())
        .execute(&mut *lock)
        .await
        .unwrap();
    let change = tokio::spawn(async move {
        client
            .change_price(pb::ChangePriceRequest {
                id: product.id,
                request_id: key(),
                expected_version: Some(1),
                price: eur(1490),
            })
            .await
    });
    wait_for_a_lock_wait(&url).await;

    // And a stream that never ends by itself.
    let mut watch = health
        .watch(health_request("strata.catalog.v1.ProductService"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    // Shutdown: health turns NOT_SERVING first (the watcher sees it), then the
    // watch ends and no new connection is accepted …
    let shutdown = Instant::now();
    let _ = service.stop.send(());
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch ends at shutdown, not at the drain timeout");
    match end {
        None => {}
        Some(Err(status)) if status.code() == Code::Unavailable => {}
        other => panic!("the watch ends, or ends UNAVAILABLE: {other:?}"),
    }
    let refused = tokio::net::TcpStream::connect(service.address)
        .await
        .expect_err("a new connection after shutdown began");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");

    // … while the call in flight completes, OK, once the lock is gone.
    lock.rollback().await.unwrap();
    let changed = change
        .await
        .unwrap()
        .expect("the call in flight at shutdown succeeds")
        .into_inner()
        .product
        .unwrap();
    assert_eq!((changed.version, changed.price), (2, eur(1490)));
    tokio::time::timeout(Duration::from_secs(10), service.task)
        .await
        .expect("the drain ends with the last call, not at its timeout")
        .unwrap()
        .unwrap();
    assert!(shutdown.elapsed() < drain_timeout / 6, "{:?}", shutdown.elapsed());
}

/// Returns once a session of the database at `url` waits on a lock (polled, for
/// at most ten seconds: PostgreSQL has no notification for it).
async fn wait_for_a_lock_wait(url: &str) {
    use sqlx::Connection as _;
    use std::time::Instant;

    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no session waits on a lock after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client retrying a command while its first attempt still runs, from
/// separate connections: every attempt gets the same successful answer and the
/// command takes effect once — on both stores, round after round.
async fn racing_retries_over_separate_channels(database_url: String) {
    const ROUNDS: usize = 10;
    const CONTENDERS: usize = 8;
    let service = Service::start(database_url, Duration::from_secs(5)).await;
    let mut client = service.products().await;
    for round in 0..ROUNDS {
        let product = create(&mut client, &format!("RACE-{round}")).await;
        let request = pb::ChangePriceRequest {
            id: product.id.clone(),
            request_id: key(),
            // Half the rounds with optimistic concurrency, half without.
            expected_version: (round % 2 == 0).then_some(1),
            price: eur(1000 + round as i64),
        };
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let mut calls = Vec::new();
        for _ in 0..CONTENDERS {
            // Each contender on its own connection, connected before the start.
            let mut client = service.products().await;
            let (barrier, request) = (barrier.clone(), request.clone());
            calls.push(tokio::spawn(async move {
                barrier.wait().await;
                client.change_price(request).await.map(|r| r.into_inner())
            }));
        }
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        let first = answers[0]
            .as_ref()
            .unwrap_or_else(|status| panic!("round {round}: {status:?}"));
        assert!(
            answers.iter().all(|a| a.as_ref().ok() == Some(first)),
            "round {round}: every attempt gets the first answer: {answers:?}"
        );
        let now = client
            .get_product(pb::GetProductRequest { id: product.id })
            .await
            .unwrap()
            .into_inner()
            .product
            .unwrap();
        assert_eq!(now.version, 2, "round {round}: one effect");
    }
    service.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_on_postgres() {
    let pg = TestPostgres::start().await.unwrap();
    racing_retries_over_separate_channels(pg.fresh_database().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("strata-e2e-race-{}", uuid::Uuid::now_v7()));
    racing_retries_over_separate_channels(strata_catalog_url(&dir)).await;
    let _ = std::fs::remove_dir_all(dir);
}

fn strata_catalog_url(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    format!("sqlite://{}", dir.join("catalog.db").display())
}

/// What a client that knows only reflection finds at `service`: the services
/// listed, and for each `strata.*` service whether it has `StreamEvents`.
async fn discovered(service: &Service) -> Vec<(String, bool)> {
    use prost::Message as _;
    let mut reflection = ServerReflectionClient::new(service.channel().await);
    let ask = |request| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::once(ask(MessageRequest::ListServices(
            String::new(),
        ))))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("reflection did not list the services");
    };
    let mut found = Vec::new();
    for name in list.service.into_iter().map(|s| s.name) {
        let mut streams = false;
        if name.starts_with("strata.") {
            let mut answers = reflection
                .server_reflection_info(tokio_stream::once(ask(MessageRequest::FileContainingSymbol(
                    name.clone(),
                ))))
                .await
                .unwrap()
                .into_inner();
            let Some(MessageResponse::FileDescriptorResponse(files)) =
                answers.next().await.unwrap().unwrap().message_response
            else {
                panic!("reflection did not describe {name}");
            };
            let short = name.rsplit('.').next().unwrap();
            streams = files.file_descriptor_proto.iter().any(|bytes| {
                prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .unwrap()
                    .service
                    .iter()
                    .filter(|s| s.name() == short)
                    .any(|s| {
                        s.method
                            .iter()
                            .any(|m| m.name() == "StreamEvents" && m.server_streaming())
                    })
            });
        }
        found.push((name, streams));
    }
    found.sort();
    found
}

/// The four contexts in one process, then split over two processes by
/// configuration alone, on one PostgreSQL database (a schema each): a client
/// that knows only reflection sees exactly the hosted root services, each with
/// `StreamEvents`, plus health and reflection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_are_hosted_together_or_apart_by_configuration() {
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    let root = |service: &str| (service.to_owned(), service.starts_with("strata."));
    let plumbing = [
        root("grpc.health.v1.Health"),
        root("grpc.reflection.v1.ServerReflection"),
    ];
    let expect = |services: &[&str]| {
        let mut all: Vec<_> = services.iter().map(|s| root(s)).chain(plumbing.clone()).collect();
        all.sort();
        all
    };
    let registered: Vec<_> = strata_data_service::CONTEXTS.iter().map(|c| c.name).collect();
    assert_eq!(registered, ["catalog", "identity", "inventory", "ordering"]);

    let all = Service::hosting(
        &["catalog", "identity", "inventory", "ordering"],
        &url,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        discovered(&all).await,
        expect(&[
            "strata.catalog.v1.ProductService",
            "strata.identity.v1.AccountService",
            "strata.inventory.v1.StockItemService",
            "strata.ordering.v1.OrderService",
        ])
    );
    all.shutdown().await.unwrap();

    let one = Service::hosting(&["catalog", "inventory"], &url, Duration::from_secs(5)).await;
    let other = Service::hosting(&["identity", "ordering"], &url, Duration::from_secs(5)).await;
    assert_eq!(
        discovered(&one).await,
        expect(&[
            "strata.catalog.v1.ProductService",
            "strata.inventory.v1.StockItemService"
        ])
    );
    assert_eq!(
        discovered(&other).await,
        expect(&[
            "strata.identity.v1.AccountService",
            "strata.ordering.v1.OrderService"
        ])
    );
    // Both processes serve from the same database: what one writes in its
    // context, it serves; the other does not host that context at all.
    let mut products = one.products().await;
    let created = create(&mut products, "SPLIT-1").await;
    assert_eq!(created.version, 1);
    let missing = ProductServiceClient::new(other.channel().await)
        .get_product(pb::GetProductRequest { id: created.id })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented, "{missing:?}");
    one.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

/// Waits, on health's own `Watch` stream, until `service` reports `want`; how
/// long that took.
async fn wait_for_status(service: &Service, name: &str, want: ServingStatus) -> Duration {
    let started = std::time::Instant::now();
    let mut updates = service
        .health()
        .watch(health_request(name))
        .await
        .unwrap()
        .into_inner();
    loop {
        let update = tokio::time::timeout(Duration::from_secs(30), updates.next())
            .await
            .unwrap_or_else(|_| panic!("{name:?} never reported {want:?}"))
            .expect("the watch stream stays open")
            .unwrap();
        if update.status() == want {
            return started.elapsed();
        }
    }
}

/// A context's health follows its store. The data service starts with the
/// catalog's PostgreSQL unreachable and serves inventory (on SQLite)
/// meanwhile, the catalog answering UNAVAILABLE; the catalog serves by itself
/// once its database answers. Then the database's path is black-holed (no
/// connection refused, nothing answers): the catalog is NOT_SERVING within
/// seconds, a call ends at its deadline, and it serves again once the path
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contexts_health_follows_its_store_from_start_to_end() {
    use strata_proto::inventory::v1::{
        GetStockItemRequest, stock_item_service_client::StockItemServiceClient,
    };
    const CATALOG: &str = "strata.catalog.v1.ProductService";
    const INVENTORY: &str = "strata.inventory.v1.StockItemService";
    let pg = TestPostgres::start().await.unwrap();
    let url = pg.fresh_database().await.unwrap();
    let partition = Partition::start(server_address(&url).unwrap()).await.unwrap();
    partition.cut();
    let dir = std::env::temp_dir().join(format!("strata-health-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosted = vec![
        Hosted {
            context: strata_catalog::CONTEXT,
            store: StoreConfig::new(partition.route(&url).unwrap()),
        },
        Hosted {
            context: "inventory",
            store: StoreConfig::new(strata_store::embedded_url(&dir, "inventory")),
        },
    ];
    let service = Service::serving(hosted, Duration::from_secs(5)).await;
    wait_for_status(&service, INVENTORY, ServingStatus::Serving).await;
    wait_for_status(&service, CATALOG, ServingStatus::NotServing).await;
    wait_for_status(&service, "", ServingStatus::NotServing).await;
    // Inventory serves; the catalog answers at once, and retryably.
    let mut stock = StockItemServiceClient::new(service.channel().await);
    let missing = stock
        .get_stock_item(GetStockItemRequest {
            sku: "NOTHING-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "inventory serves: {missing:?}");
    let mut client = service.products().await;
    let down = client.create_product(create_request("DOWN-1")).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");

    // The database answers again: the catalog mounts and serves by itself.
    partition.heal();
    wait_for_status(&service, CATALOG, ServingStatus::Serving).await;
    wait_for_status(&service, "", ServingStatus::Serving).await;
    let created = create(&mut client, "UP-1").await;

    // Black-holed: found out within a few seconds, and no call waits past
    // its deadline.
    partition.black_hole();
    let detected = wait_for_status(&service, CATALOG, ServingStatus::NotServing).await;
    println!("a black-holed store was reported NOT_SERVING after {detected:?}");
    assert!(detected < Duration::from_secs(10), "{detected:?}");
    let mut request = tonic::Request::new(pb::GetProductRequest {
        id: created.id.clone(),
    });
    request.set_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let stalled = client.get_product(request).await.unwrap_err();
    assert!(
        matches!(
            stalled.code(),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable
        ),
        "{stalled:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // The path returns: serving again, by itself.
    partition.heal();
    wait_for_status(&service, CATALOG, ServingStatus::Serving).await;
    let mut read = None;
    for _ in 0..20 {
        // A connection that stalled in the black hole fails once and is dropped.
        match client
            .get_product(pb::GetProductRequest {
                id: created.id.clone(),
            })
            .await
        {
            Ok(found) => {
                read = found.into_inner().product;
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
    }
    assert_eq!(read.map(|p| p.id), Some(created.id));
    service.shutdown().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
