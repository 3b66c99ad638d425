//! The `data-service` binary as an operator runs it: configuration errors,
//! the address it prints, health, logs, and SIGTERM.
//!
//! No test here can hang: every read of the child's output has a timeout, and
//! the child is killed when its [`DataService`] guard is dropped (a failed
//! assertion included). The child gets none of the caller's `STRATA_*`
//! variables, so a developer's environment cannot change what is tested.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Instant};

use strata_testkit::process::{Process as DataService, TIMEOUT, TempDir};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_data-service");

/// Starts the binary with `args` and `env`, and nothing of the caller's `STRATA_*`.
fn start(args: &[&str], env: &[(&str, &str)]) -> DataService {
    DataService::start(Path::new(BIN), args, env)
}

/// `GET path` on `address` over plain HTTP/1.1: the whole answer, headers and body.
fn http_get(address: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The address from its first line, `data-service listening on <address> (…)`.
fn listening_address(service: &DataService) -> String {
    let line = service.stdout_line();
    line.strip_prefix("data-service listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned()
}

/// Asks health whether the catalog is served, on a runtime of its own that is
/// gone when this returns, with its connection: the tests block their thread
/// while they wait for the child, and a client left connected but never polled
/// would hold the child's drain until its timeout.
fn check_serving(address: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "strata.catalog.v1.ProductService".into(),
            })
            .await
            .unwrap()
    };
    let status = runtime.block_on(async { tokio::time::timeout(TIMEOUT, check).await.unwrap() });
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
}

#[test]
fn a_bad_setting_fails_at_start_with_one_line_naming_it() {
    // The arguments, the environment, and what the one line must name.
    type Env = &'static [(&'static str, &'static str)];
    let cases: [(&[&str], Env, &str); 5] = [
        (&[], &[("STRATA_LISTEN", "nowhere")], "STRATA_LISTEN"),
        (&[], &[("STRATA_CONTEXTS", "catalog,billing")], "STRATA_CONTEXTS"),
        (
            &[],
            &[("STRATA_CATALOG_DATABASE_URL", "mysql://db/shop")],
            "STRATA_CATALOG_DATABASE_URL",
        ),
        (
            &[],
            &[("STRATA_LOG_FORMAT", "yaml")],
            "--log-format (STRATA_LOG_FORMAT)",
        ),
        (&["--log-format", "JSON"], &[], "--log-format (STRATA_LOG_FORMAT)"),
    ];
    for (args, env, named) in cases {
        let (status, stderr) = start(args, env).exit();
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}");
        assert_eq!(stderr.len(), 1, "one line: {stderr:?}");
        assert!(stderr[0].contains(named), "{stderr:?}");
    }
}

/// `--check-config` checks what a start would, opens nothing, and says so by
/// its exit code; settings given as files are read.
#[test]
fn check_config_checks_without_starting() {
    let dir = TempDir::new("process");
    let token = dir.path().join("token");
    std::fs::write(&token, "a-service-token-from-a-file\n").unwrap();
    let token = token.to_str().unwrap().to_owned();
    let (ok, _) = start(
        &[
            "--check-config",
            "--listen",
            "0.0.0.0:50051",
            "--data-dir",
            dir.arg(),
        ],
        &[("STRATA_SERVICE_TOKEN_FILE", &token)],
    )
    .exit();
    assert!(ok.success(), "{ok:?}");
    assert!(!dir.path().join("catalog.db").exists(), "nothing is opened");
    for (env, named) in [
        (
            vec![("STRATA_SERVICE_TOKEN_FILE", "/nonexistent/token")],
            "STRATA_SERVICE_TOKEN_FILE",
        ),
        (
            vec![("STRATA_CATALOG_DATABASE_URL_FILE", "/nonexistent/url")],
            "STRATA_CATALOG_DATABASE_URL_FILE",
        ),
        (
            vec![("STRATA_HTTP2_MAX_STREAMS", "none")],
            "STRATA_HTTP2_MAX_STREAMS",
        ),
    ] {
        let (status, stderr) = start(&["--check-config", "--data-dir", dir.arg()], &env).exit();
        assert_eq!(status.code(), Some(2), "{env:?}");
        assert!(
            stderr.iter().any(|line| line.contains(named)),
            "{env:?}: {stderr:?}"
        );
    }
    // Beyond loopback without a credential (here, the file is the credential).
    let (open, stderr) = start(&["--check-config", "--listen", "0.0.0.0:50051"], &[]).exit();
    assert_eq!(open.code(), Some(2), "{stderr:?}");
}

/// A context's own settings are checked when it is mounted: a bad one stops the
/// service at start, naming the variable, before anything is served.
#[test]
fn a_bad_context_setting_fails_at_start_naming_it() {
    for (context, variable, value) in [
        ("ordering", "STRATA_ORDERING_MAX_LINES", "0"),
        ("ordering", "STRATA_ORDERING_PENDING_TTL_SECS", "soon"),
        ("ordering", "STRATA_ORDERING_SWEEP_PERIOD_SECS", "-1"),
        ("identity", "STRATA_IDENTITY_PASSWORD_MIN_LENGTH", "many"),
        ("identity", "STRATA_IDENTITY_ARGON2_MEMORY_KIB", "0"),
    ] {
        let dir = TempDir::new("process");
        let (status, stderr) = start(
            &[
                "--listen",
                "127.0.0.1:0",
                "--contexts",
                context,
                "--data-dir",
                dir.arg(),
            ],
            &[(variable, value), ("RUST_LOG", "off")],
        )
        .exit();
        assert_eq!(status.code(), Some(1), "{variable}={value}: {stderr:?}");
        assert!(
            stderr.iter().any(|line| line.contains(variable)),
            "{variable}={value}: {stderr:?}"
        );
    }
}

#[test]
fn serves_prints_its_address_and_stops_on_sigterm() {
    let dir = TempDir::new("process");
    let mut service = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.arg(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "info")],
    );
    let address = listening_address(&service);
    let metrics = service
        .wait_for_line("data-service metrics on http://")
        .trim_end_matches("/metrics")
        .to_owned();
    assert!(
        dir.path().join("catalog.db").exists(),
        "the catalog's SQLite file is in the data dir"
    );
    check_serving(&address);
    // The health check is counted on /metrics.
    let scraped = http_get(&metrics, "/metrics");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(
        scraped.contains(
            r#"strata_rpc_server_calls_total{service="grpc.health.v1.Health",method="Check",code="OK"} 1"#
        ),
        "{scraped}"
    );

    // The `health` subcommand (a container's HEALTHCHECK) asks the same
    // listener, with the same settings, and says so by its exit code.
    let port = address.rsplit(':').next().unwrap().to_owned();
    let wildcard = format!("0.0.0.0:{port}");
    let (healthy, _) = start(&["--listen", &wildcard, "--allow-unauthenticated", "health"], &[]).exit();
    assert!(healthy.success(), "health of a serving data service: {healthy:?}");

    service.terminate();
    let (status, stderr) = service.exit();
    assert!(status.success(), "a clean shutdown exits 0: {status:?}");
    let (gone, complaint) = start(&["--listen", &address, "health"], &[]).exit();
    assert_eq!(gone.code(), Some(1), "health of a stopped data service");
    assert!(
        complaint.iter().any(|line| line.contains("not healthy")),
        "{complaint:?}"
    );
    assert!(
        stderr.iter().any(|line| line.contains("call ended")),
        "the health check is logged: {stderr:#?}"
    );
    assert!(
        stderr.iter().all(|line| !line.contains('\u{1b}')),
        "no colours when stderr is not a terminal: {stderr:#?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = TempDir::new("process");
    let mut service = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.arg(),
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "info")],
    );
    let address = listening_address(&service);
    check_serving(&address);
    service.terminate();
    let (status, stderr) = service.exit();
    assert!(status.success(), "{status:?}");

    let lines: Vec<serde_json::Value> = stderr
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines.iter().any(|line| line["message"] == "call ended"
            && line["span"]["grpc.method"] == "/grpc.health.v1.Health/Check"
            && line["grpc.code"] == "OK"
            && line["latency_ms"].is_number()),
        "the health check's line: {lines:#?}"
    );
}

/// Waits until health says `service` is served at `address`, on the caller's
/// runtime (each check bounded; no fixed sleep).
async fn wait_serving(address: &str, service: &str) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = tokio::time::timeout(
        TIMEOUT,
        HealthClient::new(channel).check(HealthCheckRequest {
            service: service.into(),
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
}

/// The hard part of inventory across processes: 200 buyers at once, each
/// reserving 1 of the 50 on hand through gRPC, spread over every process in
/// `addresses` and over four channels per process. Exactly 50 reservations and
/// 150 INSUFFICIENT_STOCK (never ABORTED, never an oversell); the item adds up
/// afterwards and its event stream holds exactly the 50 reservations.
async fn no_oversell_through(addresses: &[String], what: &str) {
    use strata_proto::inventory::v1::{self as pb, stock_item_service_client::StockItemServiceClient};
    use tonic_types::StatusExt;

    const ON_HAND: u64 = 50;
    const BUYERS: usize = 200;
    const CHANNELS_PER_PROCESS: usize = 4;
    const SERVICE: &str = "strata.inventory.v1.StockItemService";

    let mut clients = Vec::new();
    for address in addresses {
        wait_serving(address, SERVICE).await;
        for _ in 0..CHANNELS_PER_PROCESS {
            // Each channel its own connection, connected before the start.
            let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            clients.push(StockItemServiceClient::new(channel));
        }
    }
    let sku = format!("LAST-MUGS-{}", std::process::id());
    let key = |what: &str, n: usize| format!("{what}-{n}-{}", std::process::id());
    clients[0]
        .clone()
        .receive_stock(pb::ReceiveStockRequest {
            request_id: key("receive", 0),
            sku: sku.clone(),
            quantity: ON_HAND,
            ..Default::default()
        })
        .await
        .unwrap();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(BUYERS));
    let started = Instant::now();
    let buyers: Vec<_> = (0..BUYERS)
        .map(|n| {
            let mut client = clients[n % clients.len()].clone();
            let barrier = barrier.clone();
            let request = pb::ReserveRequest {
                request_id: key("reserve", n),
                sku: sku.clone(),
                reservation_id: format!("buyer-{n}"),
                quantity: 1,
                time_to_live: Some(prost_types::Duration {
                    seconds: 900,
                    nanos: 0,
                }),
                expected_version: None,
            };
            tokio::spawn(async move {
                barrier.wait().await;
                client.reserve(request).await
            })
        })
        .collect();
    let (mut reserved, mut sold_out) = (0, 0);
    for buyer in buyers {
        match buyer.await.unwrap() {
            Ok(_) => reserved += 1,
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                let info = status.get_details_error_info().unwrap();
                assert_eq!(info.reason, "INSUFFICIENT_STOCK", "{status:?}");
                assert_eq!(info.metadata.get("available").map(String::as_str), Some("0"));
                sold_out += 1;
            }
            Err(status) => panic!("neither a reservation nor INSUFFICIENT_STOCK: {status:?}"),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{what}: {BUYERS} buyers of {ON_HAND} over {} channels: {reserved} reserved, {sold_out} sold out, in {elapsed:?}",
        clients.len()
    );
    assert_eq!((reserved, sold_out), (50, 150));

    // Read back through the other process: it adds up.
    let mut reader = clients[clients.len() - 1].clone();
    let item = reader
        .get_stock_item(pb::GetStockItemRequest { sku: sku.clone() })
        .await
        .unwrap()
        .into_inner()
        .stock_item
        .unwrap();
    assert_eq!((item.on_hand, item.reserved, item.available), (50, 50, 0));
    assert_eq!(item.reservations.len(), 50);
    assert_eq!(item.version, 51, "one change per reservation, none lost");
    let events = reader
        .stream_events(pb::StreamEventsRequest {
            after_position: 0,
            follow: false,
        })
        .await
        .unwrap()
        .into_inner();
    let events: Vec<_> = tokio::time::timeout(TIMEOUT, tokio_stream_collect(events))
        .await
        .unwrap();
    let reservations = events
        .iter()
        .filter(|e| matches!(e.event, Some(pb::stream_events_response::Event::StockReserved(_))))
        .count();
    assert_eq!(reservations, 50, "the outbox holds exactly the winners");
    let versions: Vec<_> = events.iter().map(|e| e.aggregate_version).collect();
    assert_eq!(versions, (1..=51).collect::<Vec<_>>(), "in commit order");
}

async fn tokio_stream_collect<T>(mut stream: tonic::Streaming<T>) -> Vec<T> {
    let mut all = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        all.push(item);
    }
    all
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn inventory_does_not_oversell_across_two_processes_on_postgres() {
    let runtime = multi_thread_runtime();
    // The container is removed on drop, which needs the runtime entered.
    let _entered = runtime.enter();
    let pg = runtime.block_on(strata_testkit::TestPostgres::start()).unwrap();
    let url = runtime.block_on(pg.fresh_database()).unwrap();
    let env = [("STRATA_INVENTORY_DATABASE_URL", url.as_str())];
    let args = ["--listen", "127.0.0.1:0", "--contexts", "inventory"];
    let first = start(&args, &env);
    let second = start(&args, &env);
    let addresses = [listening_address(&first), listening_address(&second)];
    runtime.block_on(no_oversell_through(&addresses, "two processes on PostgreSQL"));
    drop((first, second));
}

#[test]
fn inventory_does_not_oversell_in_one_process_on_sqlite() {
    let runtime = multi_thread_runtime();
    let dir = TempDir::new("process");
    let service = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--contexts",
            "inventory",
            "--data-dir",
            dir.arg(),
        ],
        &[],
    );
    let address = listening_address(&service);
    runtime.block_on(no_oversell_through(&[address], "one process on SQLite"));
}

/// Served with `--tls-cert`, `--tls-key` and `--tls-client-ca`: the service
/// speaks TLS only; health answers any caller that trusts its CA, a caller
/// without a client certificate is refused with UNAUTHENTICATED, one with a
/// certificate the client CA signed is served. A certificate file that is not
/// one stops it at start, naming the setting.
#[test]
fn serves_mutual_tls_when_given_certificates() {
    use strata_proto::catalog::v1::{ListProductsRequest, product_service_client::ProductServiceClient};
    use strata_rpc::{client, tls::ClientTls};

    let dir = TempDir::new("process-tls");
    let ca = strata_testkit::tls::TestCa::new("strata test CA");
    let (ca_pem, server_cert, server_key) = ca.write(dir.path(), "server", &["localhost"]);
    let (_, client_cert, client_key) = ca.write(dir.path(), "client", &["storefront"]);
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let (cert_arg, key_arg, ca_arg) = (path(&server_cert), path(&server_key), path(&ca_pem));
    let mut service = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.arg(),
            "--contexts",
            "catalog",
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
            "--tls-client-ca",
            &ca_arg,
        ],
        &[],
    );
    let address = listening_address(&service);
    let port = address.rsplit_once(':').unwrap().1;
    let https = format!("https://localhost:{port}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let list = |tls: ClientTls| {
        let credentials = client::Credentials {
            token: client::ServiceToken::default(),
            tls: Some(tls),
        };
        let channel = client::channel("catalog", &https, credentials).unwrap();
        async move {
            let health = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: "strata.catalog.v1.ProductService".into(),
                })
                .await
                .map(|r| r.into_inner().status());
            let listed = ProductServiceClient::new(channel)
                .list_products(ListProductsRequest::default())
                .await
                .map(|r| r.into_inner().products.len());
            (health, listed)
        }
    };
    let anonymous = ClientTls::from_files(&ca_pem, None, None).unwrap();
    let (health, listed) =
        runtime.block_on(async { tokio::time::timeout(TIMEOUT, list(anonymous)).await.unwrap() });
    assert_eq!(health.unwrap(), ServingStatus::Serving);
    let refused = listed.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let known = ClientTls::from_files(&ca_pem, Some(&client_cert), Some(&client_key)).unwrap();
    let (health, listed) =
        runtime.block_on(async { tokio::time::timeout(TIMEOUT, list(known)).await.unwrap() });
    assert_eq!(health.unwrap(), ServingStatus::Serving);
    assert_eq!(listed.unwrap(), 0, "an empty catalog, listed");
    drop(runtime);
    service.terminate();
    let (status, _) = service.exit();
    assert!(status.success(), "{status:?}");

    // A key given as the certificate: it stops at start, naming the settings.
    let (status, stderr) = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.arg(),
            "--tls-cert",
            &key_arg,
            "--tls-key",
            &key_arg,
        ],
        &[],
    )
    .exit();
    assert!(!status.success(), "{status:?}");
    assert!(stderr.iter().any(|l| l.contains("--tls-cert")), "{stderr:?}");
}
