//! `strata_rpc::Server` served on `127.0.0.1:0` and driven through generated
//! clients, as any gRPC caller would.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use prost::Message as _;
use strata_rpc::telemetry::{self, LogFormat};
use strata_testkit::tls::TestCa;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_stream::StreamExt as _;
use tonic::{Code, body::Body, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_prost::ProstCodec;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// A server running in this test, stopped by sending on `stop`.
struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), strata_rpc::ServeError>>,
}

async fn serve(server: strata_rpc::Server) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { address, stop, task }
}

fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect_lazy()
}

/// The file descriptors reflection answers `request` with.
async fn reflect(address: SocketAddr, request: MessageRequest) -> Vec<prost_types::FileDescriptorProto> {
    let mut reflection = ServerReflectionClient::new(channel(address));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let response = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .collect()
}

#[tokio::test]
async fn reflection_describes_the_google_rpc_error_details() {
    let (_logs, _) = capture_logs();
    let running = serve(strata_rpc::Server::new()).await;

    // What grpcurl asks when it meets an `ErrorInfo` in an error's details …
    let files = reflect(
        running.address,
        MessageRequest::FileContainingSymbol("google.rpc.ErrorInfo".into()),
    )
    .await;
    let file = files
        .iter()
        .find(|f| f.name() == "google/rpc/error_details.proto")
        .unwrap_or_else(|| panic!("no google/rpc/error_details.proto in {files:?}"));
    let messages: Vec<_> = file.message_type.iter().map(|m| m.name()).collect();
    for expected in ["ErrorInfo", "BadRequest", "PreconditionFailure", "RetryInfo"] {
        assert!(messages.contains(&expected), "{expected} in {messages:?}");
    }
    // … and then, to build the descriptor, every file it imports.
    for dependency in &file.dependency {
        let files = reflect(
            running.address,
            MessageRequest::FileByFilename(dependency.clone()),
        )
        .await;
        assert!(files.iter().any(|f| f.name() == dependency), "{dependency}");
    }
    let files = reflect(
        running.address,
        MessageRequest::FileContainingSymbol("google.rpc.Status".into()),
    )
    .await;
    assert!(
        files.iter().any(|f| f.name() == "google/rpc/status.proto"),
        "{files:?}"
    );

    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

/// Captures this test's logs as JSON lines, until the guard is dropped.
///
/// Every test in this binary calls it first. The subscriber is this thread's
/// only (the runtime of a `#[tokio::test]` runs the server, its connections and
/// the client on the test's thread), and tracing caches whether a log statement
/// is enabled from the subscriber of the thread that reaches it first: a test
/// without one would switch the call log off for the others.
fn capture_logs() -> (tracing::subscriber::DefaultGuard, Captured) {
    let captured = Captured::default();
    let writer = captured.clone();
    let guard = tracing::subscriber::set_default(telemetry::subscriber(
        LogFormat::Json,
        tracing_subscriber::EnvFilter::new("info"),
        false,
        move || writer.clone(),
    ));
    (guard, captured)
}

/// Log lines written to memory, for tests to read back.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line, parsed as JSON (a line that is not JSON fails the test).
    fn json_lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
            .collect()
    }
}

/// `strata.test.Gate`: its one unary method, `Pass`, records the request id
/// `"gate-request"`, says it has been entered, then waits until the gate opens.
/// It is written as tonic's generated servers are, with `tonic::server::Grpc`.
#[derive(Debug, Clone)]
struct Gate {
    entered: mpsc::UnboundedSender<()>,
    open: watch::Receiver<bool>,
}

/// The other end of a [`Gate`].
struct GateControl {
    entered: mpsc::UnboundedReceiver<()>,
    open: watch::Sender<bool>,
}

const GATE_PASS: &str = "/strata.test.Gate/Pass";

impl Gate {
    fn new() -> (Self, GateControl) {
        let (entered_tx, entered) = mpsc::unbounded_channel();
        let (open, open_rx) = watch::channel(false);
        (
            Self {
                entered: entered_tx,
                open: open_rx,
            },
            GateControl { entered, open },
        )
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tonic::server::NamedService for Gate {
    const NAME: &'static str = "strata.test.Gate";
}

impl tower_service::Service<http::Request<Body>> for Gate {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let gate = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(Pass(gate), request).await)
        })
    }
}

struct Pass(Gate);

impl tonic::server::UnaryService<()> for Pass {
    type Response = ();
    type Future = BoxFuture<Result<tonic::Response<()>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        let Gate { entered, mut open } = self.0.clone();
        Box::pin(async move {
            strata_rpc::record_request_id("gate-request");
            let _ = entered.send(());
            let _ = open.wait_for(|open| *open).await;
            Ok(tonic::Response::new(()))
        })
    }
}

async fn pass(address: SocketAddr) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel(address));
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(()),
        http::uri::PathAndQuery::from_static(GATE_PASS),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn each_call_is_logged_once_when_it_ends() {
    let (_logs, captured) = capture_logs();
    let (gate, mut control) = Gate::new();
    let running = serve(strata_rpc::Server::new().host(gate)).await;

    let mut health = HealthClient::new(channel(running.address));
    // OK: the status comes in the trailers, after the message.
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    // An error: tonic answers Trailers-Only, the status in the headers.
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // A handler records its request id; the call is logged when it ends.
    let call = tokio::spawn(pass(running.address));
    control.entered.recv().await.unwrap();
    let _ = control.open.send(true);
    call.await.unwrap().unwrap();
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();

    let lines = captured.json_lines();
    let calls: Vec<_> = lines
        .iter()
        .filter(|line| line["message"] == "call ended")
        .map(|line| {
            assert_eq!(line["target"], "strata_rpc::call_log", "{line}");
            assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
            (
                line["span"]["grpc.method"].as_str().unwrap_or_default(),
                line["grpc.code"].as_str().unwrap_or_default(),
                line["span"]["request_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("/grpc.health.v1.Health/Check", "OK", None),
            ("/grpc.health.v1.Health/Check", "NOT_FOUND", None),
            (GATE_PASS, "OK", Some("gate-request")),
        ],
        "one line per call, when it ends: {lines:#?}"
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_lets_unary_calls_finish() {
    let (_logs, captured) = capture_logs();
    let (gate, mut control) = Gate::new();
    // Far longer than the test may take: only ending the watch lets it finish.
    let drain_timeout = Duration::from_secs(60);
    let running = serve(strata_rpc::Server::new().host(gate).drain_timeout(drain_timeout)).await;

    // A unary call in flight, its handler waiting on the gate …
    let call = tokio::spawn(pass(running.address));
    control.entered.recv().await.unwrap();
    // … and a stream that never ends by itself.
    let mut watch = HealthClient::new(channel(running.address))
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    let started = Instant::now();
    let _ = running.stop.send(());
    // The watcher learns first that the server is going, then the stream ends.
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
    // By then the server accepts no connection.
    let refused = tokio::net::TcpStream::connect(running.address).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused, "{refused}");

    // The unary call still completes, OK.
    let _ = control.open.send(true);
    call.await
        .unwrap()
        .expect("the call in flight at shutdown succeeds");
    tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("the drain ends with the last call, not at its timeout")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < drain_timeout / 6, "{:?}", started.elapsed());

    let codes: Vec<_> = captured
        .json_lines()
        .into_iter()
        .filter(|line| line["message"] == "call ended")
        .map(|line| {
            (
                line["span"]["grpc.method"].to_string(),
                line["grpc.code"].to_string(),
            )
        })
        .collect();
    assert!(
        codes.contains(&(
            r#""/grpc.health.v1.Health/Watch""#.into(),
            r#""UNAVAILABLE""#.into()
        )),
        "{codes:?}"
    );
    assert!(
        codes.contains(&(format!("{GATE_PASS:?}"), r#""OK""#.into())),
        "{codes:?}"
    );
}

/// `Pass` through a channel that presents `token` (none: no credential).
async fn pass_with(address: SocketAddr, token: Option<&str>) -> Result<(), tonic::Status> {
    let token = strata_rpc::client::ServiceToken::new(token).unwrap();
    let channel = strata_rpc::client::channel("gate", &format!("http://{address}"), token).unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(()),
        http::uri::PathAndQuery::from_static(GATE_PASS),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn health_status(address: SocketAddr) -> Result<i32, tonic::Status> {
    HealthClient::new(channel(address))
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

const TOKEN: &str = "a-service-token-of-some-length";

#[tokio::test]
async fn calls_need_the_service_credential_and_health_stays_open() {
    let (gate, control) = Gate::new();
    let _ = control.open.send(true);
    let admission = strata_rpc::Admission {
        service_token: Some(TOKEN.to_owned()),
        ..strata_rpc::Admission::default()
    };
    let running = serve(
        strata_rpc::Server::new()
            .host(gate.clone())
            .admission(admission.clone()),
    )
    .await;
    let missing = pass_with(running.address, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    assert!(missing.message().contains("service credential"), "{missing:?}");
    let wrong = pass_with(running.address, Some("a-service-token-of-some-lengtH"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    let prefix = pass_with(running.address, Some("a-service-token"))
        .await
        .unwrap_err();
    assert_eq!(
        prefix.code(),
        Code::Unauthenticated,
        "a prefix of the token is not the token"
    );
    pass_with(running.address, Some(TOKEN)).await.unwrap();
    assert_eq!(
        health_status(running.address).await.unwrap(),
        ServingStatus::Serving as i32
    );
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();

    // Told to, it protects health too.
    let protected = strata_rpc::Admission {
        protect_health: true,
        ..admission
    };
    let running = serve(strata_rpc::Server::new().host(gate).admission(protected)).await;
    assert_eq!(
        health_status(running.address).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

/// Contenders behind a barrier against a limit of `LIMIT` calls in flight, the
/// gate closed so that the first ones stay in: exactly `LIMIT` get in, the rest
/// are refused at once with RESOURCE_EXHAUSTED while health answers; once the
/// gate opens the admitted ones finish and the places are free again. Rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_limit_calls_are_refused_at_once_and_health_still_answers() {
    const LIMIT: usize = 4;
    const CONTENDERS: usize = 12;
    for round in 0..5 {
        let (gate, mut control) = Gate::new();
        let admission = strata_rpc::Admission {
            max_concurrent_calls: Some(LIMIT),
            ..strata_rpc::Admission::default()
        };
        let running = serve(strata_rpc::Server::new().host(gate).admission(admission)).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let (done_tx, mut done) = mpsc::unbounded_channel();
        for _ in 0..CONTENDERS {
            let (barrier, address, done_tx) = (barrier.clone(), running.address, done_tx.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let _ = done_tx.send(pass(address).await);
            });
        }
        // While the admitted wait at the gate, every other call ends, refused.
        for _ in 0..LIMIT {
            control.entered.recv().await.unwrap();
        }
        for _ in 0..CONTENDERS - LIMIT {
            let status = done.recv().await.unwrap().unwrap_err();
            assert_eq!(
                status.code(),
                Code::ResourceExhausted,
                "round {round}: {status:?}"
            );
            assert!(status.message().contains("overloaded"), "{status:?}");
        }
        assert!(
            control.entered.try_recv().is_err(),
            "round {round}: no more than {LIMIT} got in"
        );
        assert!(
            done.try_recv().is_err(),
            "round {round}: the admitted ones are still in"
        );
        assert_eq!(
            health_status(running.address).await.unwrap(),
            ServingStatus::Serving as i32,
            "health is never shed"
        );
        let _ = control.open.send(true);
        for _ in 0..LIMIT {
            done.recv().await.unwrap().unwrap();
        }
        pass(running.address).await.unwrap();
        let _ = running.stop.send(());
        running.task.await.unwrap().unwrap();
    }
    // Every refusal is counted, as shed and as a call with its code, under
    // no method (a refused path was never checked against what is hosted;
    // this test has its own process, so its own registry).
    let refusals = 5 * (CONTENDERS - LIMIT);
    let text = strata_rpc::metrics::render();
    assert!(
        text.contains(&format!("strata_rpc_server_calls_shed_total {refusals}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "strata_rpc_server_calls_total{{service=\"unknown\",method=\"unknown\",code=\"RESOURCE_EXHAUSTED\"}} {refusals}\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "strata_rpc_server_calls_total{{service=\"strata.test.Gate\",method=\"Pass\",code=\"OK\"}} {}\n",
            5 * (LIMIT + 1)
        )),
        "{text}"
    );
    assert!(text.contains("strata_rpc_server_calls_in_flight 0\n"), "{text}");
}

/// `strata.test.Flaky`: every method answers UNAVAILABLE to its first
/// `fail_first` calls, then OK; it counts the calls it gets. When `hang_every`
/// is N > 0, every Nth call (by its count) never answers.
#[derive(Debug, Clone, Default)]
struct Flaky {
    fail_first: usize,
    /// Every call gets its headers and the start of its message, then
    /// nothing more (`stalled` is told): a replica that dies then cuts the
    /// answer off.
    stall: Option<Arc<tokio::sync::Notify>>,
    calls: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    hang_every: Arc<std::sync::atomic::AtomicUsize>,
}

impl Flaky {
    /// How many calls of `path` (`/strata.test.Flaky/GetThing`) it was given.
    fn served(&self, path: &str) -> usize {
        self.calls.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl tonic::server::NamedService for Flaky {
    const NAME: &'static str = "strata.test.Flaky";
}

impl tower_service::Service<http::Request<Body>> for Flaky {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let seen = {
            let mut calls = self.calls.lock().unwrap();
            let count = calls.entry(request.uri().path().to_owned()).or_default();
            *count += 1;
            *count
        };
        let fail = seen <= self.fail_first;
        let stall = self.stall.clone();
        let hang_every = self.hang_every.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if let Some(stalled) = stall {
                // A gRPC frame's header announcing 5 bytes, and none of them.
                let start = http_body::Frame::data(bytes::Bytes::from_static(&[0, 0, 0, 0, 5]));
                let rest = futures_util::stream::once(async move {
                    stalled.notify_one();
                    std::future::pending::<Result<http_body::Frame<bytes::Bytes>, io::Error>>().await
                });
                let body = futures_util::stream::iter([Ok(start)]).chain(rest);
                return Ok(http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(Body::new(http_body_util::StreamBody::new(body)))
                    .unwrap());
            }
            if hang_every > 0 && seen % hang_every == 0 {
                std::future::pending::<()>().await;
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<(), ()>::default());
            Ok(grpc.unary(FlakyAnswer(fail), request).await)
        })
    }
}

struct FlakyAnswer(bool);

impl tonic::server::UnaryService<()> for FlakyAnswer {
    type Response = ();
    type Future = BoxFuture<Result<tonic::Response<()>, tonic::Status>>;

    fn call(&mut self, _request: tonic::Request<()>) -> Self::Future {
        let fail = self.0;
        Box::pin(async move {
            if fail {
                Err(tonic::Status::unavailable("not yet"))
            } else {
                Ok(tonic::Response::new(()))
            }
        })
    }
}

/// A query whose answer is cut off after its headers (its replica dies
/// between its headers and its message) is a transport failure like any
/// other: sent again, and answered by the other replica. (It used to
/// surface as "error reading a body from connection" once the caller read
/// the body, past the point where calls are retried.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_after_its_headers_is_sent_again() {
    let stalled = Arc::new(tokio::sync::Notify::new());
    let a = serve(strata_rpc::Server::new().host(Flaky {
        stall: Some(stalled.clone()),
        ..Flaky::default()
    }))
    .await;
    let healthy = Flaky::default();
    let b = serve(strata_rpc::Server::new().host(healthy.clone())).await;
    let hole = strata_testkit::Partition::start(a.address).await.unwrap();
    let addresses = format!("http://{},http://{}", hole.address(), b.address);
    let balanced =
        strata_rpc::client::channel("cut", &addresses, strata_rpc::client::ServiceToken::default()).unwrap();
    let read = || tokio::spawn(call_on(balanced.clone(), GET_THING, Duration::from_secs(5), None));
    // Reads until one is left hanging by A, the start of its answer sent.
    let stuck = loop {
        let mut query = read();
        tokio::select! {
            () = stalled.notified() => break query,
            answered = &mut query => { answered.unwrap().unwrap(); }
        }
    };
    let before = healthy.served("/strata.test.Flaky/GetThing");
    // The answer's start was handed to A's connection; a moment for it to
    // reach the caller, so that the cut comes after the headers (else the
    // query fails before them, the older path, which is retried anyway: this
    // wait decides only how often the new path is the one tested, never
    // whether the test passes).
    tokio::time::sleep(Duration::from_millis(50)).await;
    hole.close();
    let answer = tokio::time::timeout(Duration::from_secs(5), stuck)
        .await
        .unwrap()
        .unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    let after = healthy.served("/strata.test.Flaky/GetThing");
    assert_eq!(after, before + 1, "answered by B");
}

/// Calls `method` (an empty request and answer) on `channel` with `timeout`,
/// and with `key` as its idempotency key when given.
async fn call_on(
    channel: strata_rpc::client::RpcChannel,
    method: &'static str,
    timeout: Duration,
    key: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let mut request = tonic::Request::new(());
    request.set_timeout(timeout);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert(strata_rpc::client::IDEMPOTENCY_KEY, key.parse().unwrap());
    }
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(method),
        ProstCodec::<(), ()>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

const GET_THING: &str = "/strata.test.Flaky/GetThing";

/// Calls `method` of Flaky through the client stack, with an idempotency key when given.
async fn flaky(
    address: SocketAddr,
    method: &'static str,
    key: Option<&'static str>,
) -> Result<(), tonic::Status> {
    let channel = strata_rpc::client::channel(
        "flaky",
        &format!("http://{address}"),
        strata_rpc::client::ServiceToken::default(),
    )
    .unwrap();
    call_on(channel, method, Duration::from_secs(5), key).await
}

#[tokio::test]
async fn queries_and_keyed_commands_are_retried_and_other_commands_are_not() {
    let calls = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let running = serve(strata_rpc::Server::new().host(Flaky {
        fail_first: 2,
        calls: calls.clone(),
        ..Flaky::default()
    }))
    .await;
    let count = |method: &str| calls.lock().unwrap().get(method).copied().unwrap_or(0);

    flaky(running.address, "/strata.test.Flaky/GetThing", None)
        .await
        .unwrap();
    assert_eq!(
        count("/strata.test.Flaky/GetThing"),
        3,
        "a query: retried until it succeeds"
    );

    let refused = flaky(running.address, "/strata.test.Flaky/DoThing", None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        count("/strata.test.Flaky/DoThing"),
        1,
        "a command without a key: sent once"
    );

    flaky(running.address, "/strata.test.Flaky/DoOtherThing", Some("r-1"))
        .await
        .unwrap();
    assert_eq!(
        count("/strata.test.Flaky/DoOtherThing"),
        3,
        "a command with its key: retried"
    );
    let text = strata_rpc::metrics::render();
    assert!(
        text.contains(
            "strata_rpc_client_retries_total{service=\"strata.test.Flaky\",method=\"GetThing\"} 2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("method=\"DoThing\",code=\"UNAVAILABLE\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("method=\"DoOtherThing\",code=\"OK\"} 1\n"),
        "{text}"
    );
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();

    // A downstream that never recovers: the caller gets its failure after a
    // bounded number of attempts, within its deadline.
    let calls = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let running = serve(strata_rpc::Server::new().host(Flaky {
        fail_first: usize::MAX,
        calls: calls.clone(),
        ..Flaky::default()
    }))
    .await;
    let started = Instant::now();
    let failed = flaky(running.address, "/strata.test.Flaky/GetThing", None)
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable);
    let attempts = calls.lock().unwrap()["/strata.test.Flaky/GetThing"];
    assert_eq!(attempts, strata_rpc::retry::MAX_ATTEMPTS as usize);
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_or_keyed_command_slower_than_usual_is_hedged_and_an_unkeyed_command_never_is() {
    let flaky = Flaky::default();
    let running = serve(strata_rpc::Server::new().host(flaky.clone())).await;
    let channel = strata_rpc::client::channel(
        "flaky",
        &format!("http://{}", running.address),
        strata_rpc::client::ServiceToken::default(),
    )
    .unwrap();
    let keyed_call = |path: &'static str, timeout: Duration, key: Option<String>| {
        let channel = channel.clone();
        async move { call_on(channel, path, timeout, key.as_deref()).await }
    };
    let call = |path: &'static str, timeout: Duration| keyed_call(path, timeout, None);
    // The method's usual latency, learned from its answers.
    for _ in 0..strata_rpc::retry::MIN_SAMPLES {
        call("/strata.test.Flaky/GetThing", Duration::from_secs(5))
            .await
            .unwrap();
    }
    // From now on every other call hangs: each read whose first attempt hangs
    // is answered by its hedge, long before its deadline.
    flaky.hang_every.store(2, std::sync::atomic::Ordering::SeqCst);
    for i in 0..10 {
        let started = Instant::now();
        call("/strata.test.Flaky/GetThing", Duration::from_secs(2))
            .await
            .unwrap_or_else(|status| panic!("read {i}: {status:?}"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "read {i} took {:?}",
            started.elapsed()
        );
    }
    let text = strata_rpc::metrics::render();
    let hedges: u64 = text
        .lines()
        .find(|l| {
            l.starts_with("strata_rpc_client_hedges_total{service=\"strata.test.Flaky\",method=\"GetThing\"}")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0);
    // Every read whose first attempt hangs is hedged at least once; a read
    // whose hedge is itself slower than the learned p95 (a loaded machine)
    // gets one more, up to MAX_HEDGED attempts in all.
    let most = 10 * (strata_rpc::retry::MAX_HEDGED as u64 - 1);
    assert!((5..=most).contains(&hedges), "hedges counted: {hedges}\n{text}");
    // A command with an idempotency key is hedged the same way (a second
    // attempt has no second effect: the context replays the first answer).
    flaky.hang_every.store(0, std::sync::atomic::Ordering::SeqCst);
    for i in 0..strata_rpc::retry::MIN_SAMPLES {
        keyed_call(
            "/strata.test.Flaky/DoKeyedThing",
            Duration::from_secs(5),
            Some(format!("learn-{i}")),
        )
        .await
        .unwrap();
    }
    flaky.hang_every.store(2, std::sync::atomic::Ordering::SeqCst);
    for i in 0..10 {
        let started = Instant::now();
        keyed_call(
            "/strata.test.Flaky/DoKeyedThing",
            Duration::from_secs(2),
            Some(format!("key-{i}")),
        )
        .await
        .unwrap_or_else(|status| panic!("keyed command {i}: {status:?}"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "keyed command {i} took {:?}",
            started.elapsed()
        );
    }
    // A command without a key is never sent twice: the one that hangs costs its deadline.
    // (Whichever side's timer fires first answers: the client's says
    // DEADLINE_EXCEEDED, tonic's server CANCELLED "Timeout expired".)
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        outcomes.push(call("/strata.test.Flaky/DoThing", Duration::from_millis(300)).await);
    }
    assert!(
        outcomes.iter().any(|o| o
            .as_ref()
            .is_err_and(|s| matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled))),
        "{outcomes:?}"
    );
    assert_eq!(
        flaky.served("/strata.test.Flaky/DoThing"),
        2,
        "each command sent once"
    );
    let _ = running.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), running.task).await;
}

#[tokio::test]
async fn past_its_own_rate_limit_a_caller_refuses_calls_without_sending_them() {
    let flaky = Flaky::default();
    let running = serve(strata_rpc::Server::new().host(flaky.clone())).await;
    let channel = strata_rpc::client::channel(
        "limited",
        &format!("http://{}", running.address),
        strata_rpc::client::ServiceToken::default(),
    )
    .unwrap()
    .rate_limited("limited", std::num::NonZeroU32::new(2).unwrap());
    // Six calls at once: two fit in the limit (two a second), four are refused.
    let calls = (0..6).map(|_| {
        let channel = channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await?;
            grpc.unary(
                tonic::Request::new(()),
                http::uri::PathAndQuery::from_static("/strata.test.Flaky/GetThing"),
                ProstCodec::<(), ()>::default(),
            )
            .await
        }
    });
    let outcomes = futures_util::future::join_all(calls).await;
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(refused.len(), 4, "{outcomes:?}");
    for status in refused {
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "client rate limit for limited: 2 calls/s");
    }
    assert_eq!(
        flaky.served("/strata.test.Flaky/GetThing"),
        2,
        "the refused were never sent"
    );
    let text = strata_rpc::metrics::render();
    assert!(
        text.contains("strata_rpc_client_rate_limited_total{downstream=\"limited\"} 4\n"),
        "{text}"
    );
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_hanging_downstream_costs_its_deadline_then_the_breaker_opens_and_closes_again() {
    let (gate, mut control) = Gate::new();
    let running = serve(strata_rpc::Server::new().host(gate)).await;
    let endpoint = format!("http://{}", running.address);
    let channel =
        strata_rpc::client::channel("gate", &endpoint, strata_rpc::client::ServiceToken::default()).unwrap();
    let call = |timeout: Duration| {
        let channel = channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            let mut request = tonic::Request::new(());
            request.set_timeout(timeout);
            grpc.unary(
                request,
                http::uri::PathAndQuery::from_static(GATE_PASS),
                ProstCodec::<(), ()>::default(),
            )
            .await
            .map(tonic::Response::into_inner)
        }
    };
    // The downstream hangs: each call ends at its deadline.
    for _ in 0..strata_rpc::breaker::FAILURES_TO_OPEN {
        let started = Instant::now();
        let status = call(Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the deadline holds: {:?}",
            started.elapsed()
        );
        control.entered.recv().await.unwrap();
    }
    // Then the breaker is open: refused at once, saying why.
    let started = Instant::now();
    let refused = call(Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused
            .message()
            .starts_with(&format!("breaker open for gate@{endpoint} since "))
            && refused.message().ends_with("after 5 failures"),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500));
    let state =
        |value: u8| format!("strata_rpc_client_breaker_state{{endpoint=\"gate@{endpoint}\"}} {value}\n");
    assert!(
        strata_rpc::metrics::render().contains(&state(1)),
        "{}",
        strata_rpc::metrics::render()
    );

    // The downstream recovers; a probe finds it and the breaker closes.
    let _ = control.open.send(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call(Duration::from_secs(2)).await {
            Ok(()) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "the breaker never closed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    call(Duration::from_secs(2)).await.unwrap();
    assert!(strata_rpc::metrics::render().contains(&state(0)));
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

/// Two replicas behind one client: the load is spread over both; one dies
/// abruptly under a steady stream of queries and no query fails (retried on
/// the other, whose breaker-free path the balancer then keeps to).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_spread_over_replicas_and_survive_one_dying() {
    let counts = [
        Arc::new(Mutex::new(std::collections::HashMap::new())),
        Arc::new(Mutex::new(std::collections::HashMap::new())),
    ];
    let a = serve(strata_rpc::Server::new().host(Flaky {
        fail_first: 0,
        calls: counts[0].clone(),
        ..Flaky::default()
    }))
    .await;
    let b = serve(strata_rpc::Server::new().host(Flaky {
        fail_first: 0,
        calls: counts[1].clone(),
        ..Flaky::default()
    }))
    .await;
    let addresses = format!("http://{},http://{}", a.address, b.address);
    let channel =
        strata_rpc::client::channel("flaky", &addresses, strata_rpc::client::ServiceToken::default())
            .unwrap();
    let query = |channel| call_on(channel, GET_THING, Duration::from_secs(5), None);
    let served = |i: usize| {
        counts[i]
            .lock()
            .unwrap()
            .get("/strata.test.Flaky/GetThing")
            .copied()
            .unwrap_or(0)
    };

    // Eight callers at once, 25 queries each.
    let run = |rounds: usize| {
        let channel = channel.clone();
        async move {
            let callers: Vec<_> = (0..8)
                .map(|_| {
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        let mut failed = Vec::new();
                        for _ in 0..rounds {
                            if let Err(status) = query(channel.clone()).await {
                                failed.push(status);
                            }
                        }
                        failed
                    })
                })
                .collect();
            let mut failed = Vec::new();
            for caller in callers {
                failed.extend(caller.await.unwrap());
            }
            failed
        }
    };
    assert!(run(25).await.is_empty());
    let (on_a, on_b) = (served(0), served(1));
    // A read slower than the 95th percentile is hedged: a few more calls.
    assert!((200..=240).contains(&(on_a + on_b)), "{on_a} + {on_b}");
    assert!(
        on_a >= 40 && on_b >= 40,
        "each replica takes a share: {on_a} and {on_b}"
    );

    // A dies abruptly while the queries go on: none of them fails.
    let stream = tokio::spawn(run(50));
    tokio::task::yield_now().await;
    a.task.abort();
    let failed = stream.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} queries failed: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(served(1) > on_b, "the survivor took the rest");
    let _ = b.stop.send(());
    b.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn during_the_shutdown_grace_health_says_not_serving_and_calls_are_still_served() {
    let (gate, control) = Gate::new();
    let _ = control.open.send(true);
    let running = serve(
        strata_rpc::Server::new()
            .host(gate)
            .shutdown_grace(Duration::from_secs(2)),
    )
    .await;
    pass(running.address).await.unwrap();
    let _ = running.stop.send(());
    let deadline = Instant::now() + Duration::from_secs(2);
    while health_status(running.address).await.unwrap() != ServingStatus::NotServing as i32 {
        assert!(Instant::now() < deadline, "health never turned NOT_SERVING");
        tokio::task::yield_now().await;
    }
    // A new connection, and a call on it, are still served.
    pass(running.address).await.unwrap();
    // Then it stops by itself.
    tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A replica shutting down answers health NOT_SERVING, marked
/// `x-strata-not-serving`, while it stays registered (etcd down): a caller
/// balancing over it and a serving replica gets that answer at most once
/// before its breaker passes the replica over, so asking again reaches the
/// serving one; with both shutting down, the breakers refuse at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_serving_health_answer_moves_callers_to_another_replica() {
    let grace = Duration::from_secs(30);
    let a = serve(
        strata_rpc::Server::new()
            .host(Flaky::default())
            .shutdown_grace(grace),
    )
    .await;
    let b = serve(
        strata_rpc::Server::new()
            .host(Flaky::default())
            .shutdown_grace(grace),
    )
    .await;
    let addresses = format!("http://{},http://{}", a.address, b.address);
    let balanced =
        strata_rpc::client::channel("flaky", &addresses, strata_rpc::client::ServiceToken::default())
            .unwrap();
    let check = || {
        let balanced = balanced.clone();
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(Duration::from_secs(2));
            HealthClient::new(balanced).check(request).await
        }
    };
    let not_serving_soon = |address: SocketAddr| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        while health_status(address).await.unwrap() != ServingStatus::NotServing as i32 {
            assert!(Instant::now() < deadline, "health never turned NOT_SERVING");
            tokio::task::yield_now().await;
        }
    };

    let _ = a.stop.send(());
    not_serving_soon(a.address).await;
    let marked = HealthClient::new(channel(a.address))
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        marked.metadata().get(strata_rpc::admission::NOT_SERVING).unwrap(),
        "1"
    );

    let mut answers = std::collections::BTreeMap::<i32, usize>::new();
    for _ in 0..60 {
        *answers
            .entry(check().await.unwrap().into_inner().status)
            .or_default() += 1;
    }
    let not_serving = answers
        .get(&(ServingStatus::NotServing as i32))
        .copied()
        .unwrap_or(0);
    let serving = answers
        .get(&(ServingStatus::Serving as i32))
        .copied()
        .unwrap_or(0);
    // At most one answer per pause of a's breaker (its probe), the rest from b.
    assert!(not_serving <= 2 && serving + not_serving == 60, "{answers:?}");

    let _ = b.stop.send(());
    not_serving_soon(b.address).await;
    let mut refused = None;
    for _ in 0..4 {
        match check().await {
            Ok(_) => {}
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("with every replica NOT_SERVING, the breakers refuse");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("breaker open"), "{refused:?}");
}

/// A replica black-holed behind the balancer (packets dropped, nothing
/// refused): every read that goes there is answered by its hedge, and the
/// attempt that lost runs on until its deadline, so the replica's breaker
/// sees its failures and opens within a few deadlines, not when HTTP/2
/// keep-alive gives the connection up (15 s), and no read fails meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_black_holed_replica_is_passed_over_though_its_hedges_answer() {
    let a = serve(strata_rpc::Server::new().host(Flaky::default())).await;
    let b = serve(strata_rpc::Server::new().host(Flaky::default())).await;
    let hole = strata_testkit::Partition::start(a.address).await.unwrap();
    let addresses = format!("http://{},http://{}", hole.address(), b.address);
    let balanced =
        strata_rpc::client::channel("holed", &addresses, strata_rpc::client::ServiceToken::default())
            .unwrap();
    let read = |timeout: Duration| call_on(balanced.clone(), GET_THING, timeout, None);
    let breaker = format!(
        "strata_rpc_client_breaker_state{{endpoint=\"holed@http://{}\"}}",
        hole.address()
    );
    let state = || {
        strata_rpc::metrics::render()
            .lines()
            .find(|l| l.starts_with(&breaker))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u8>().ok())
    };
    // Both replicas answer; the reads' usual latency is learned.
    for _ in 0..2 * strata_rpc::retry::MIN_SAMPLES {
        read(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(state(), Some(0));

    hole.black_hole();
    let cut = Instant::now();
    let mut failed = Vec::new();
    while state() != Some(1) {
        assert!(
            cut.elapsed() < Duration::from_secs(6),
            "the breaker of the black-holed replica did not open within 6 s ({} reads failed)",
            failed.len()
        );
        let batch: Vec<_> = (0..4)
            .map(|_| tokio::spawn(read(Duration::from_secs(1))))
            .collect();
        for joined in batch {
            if let Err(status) = joined.await.unwrap() {
                failed.push(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        failed.is_empty(),
        "{} reads failed: {:?}",
        failed.len(),
        failed.first()
    );
    // With the breaker open, reads go to the other replica alone, at once.
    for _ in 0..20 {
        let started = Instant::now();
        read(Duration::from_secs(1)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }
}

/// `dns://name:port`: the endpoints are what the name resolves to. Here
/// `localhost`, which may resolve to ::1 too, where nothing listens: that
/// endpoint's breaker opens at once and the calls go to 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_is_resolved_into_endpoints() {
    let calls = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let running = serve(strata_rpc::Server::new().host(Flaky {
        fail_first: 0,
        calls: calls.clone(),
        ..Flaky::default()
    }))
    .await;
    let channel = strata_rpc::client::channel(
        "flaky",
        &format!("dns://localhost:{}", running.address.port()),
        strata_rpc::client::ServiceToken::default(),
    )
    .unwrap();
    for _ in 0..20 {
        call_on(channel.clone(), GET_THING, Duration::from_secs(5), None)
            .await
            .unwrap();
    }
    assert_eq!(calls.lock().unwrap()["/strata.test.Flaky/GetThing"], 20);
    let text = strata_rpc::metrics::render();
    assert!(
        text.contains(&format!(
            "endpoint=\"flaky@http://127.0.0.1:{}\"",
            running.address.port()
        )),
        "{text}"
    );
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

/// `Pass`, then health, through the client stack at `address` with `tls`.
async fn pass_and_health(
    address: &str,
    tls: Option<strata_rpc::tls::ClientTls>,
) -> (Result<(), tonic::Status>, Result<i32, tonic::Status>) {
    let credentials = strata_rpc::client::Credentials {
        token: strata_rpc::client::ServiceToken::default(),
        tls,
    };
    let channel = strata_rpc::client::channel("gate", address, credentials).unwrap();
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let passed = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static(GATE_PASS),
            ProstCodec::<(), ()>::default(),
        )
        .await
        .map(tonic::Response::into_inner);
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status);
    (passed, health)
}

#[tokio::test]
async fn with_mutual_tls_only_callers_with_a_certificate_from_the_client_ca_get_in() {
    let ca = TestCa::new("strata test CA");
    let other = TestCa::new("someone else's CA");
    let (server_cert, server_key) = ca.sign(&["localhost"]);
    let (client_cert, client_key) = ca.sign(&["storefront"]);
    let (rogue_cert, rogue_key) = other.sign(&["storefront"]);
    let (gate, control) = Gate::new();
    let _ = control.open.send(true);
    let tls = strata_rpc::tls::ServerTls::from_pem(
        server_cert.as_bytes(),
        server_key.as_bytes(),
        Some(ca.pem.as_bytes()),
    )
    .unwrap();
    assert!(tls.verifies_clients());
    let running = serve(strata_rpc::Server::new().host(gate).tls(Some(tls))).await;
    let https = format!("https://localhost:{}", running.address.port());
    let client = |ca: &str, identity: Option<(&str, &str)>| {
        strata_rpc::tls::ClientTls::from_pem(
            ca.as_bytes(),
            identity.map(|(c, k)| (c.as_bytes(), k.as_bytes())),
        )
        .unwrap()
    };

    // With a certificate the client CA signed: served.
    let (passed, health) =
        pass_and_health(&https, Some(client(&ca.pem, Some((&client_cert, &client_key))))).await;
    passed.unwrap();
    assert_eq!(health.unwrap(), ServingStatus::Serving as i32);

    // Without one: refused with UNAUTHENTICATED, saying why; health still answers.
    let (passed, health) = pass_and_health(&https, Some(client(&ca.pem, None))).await;
    let refused = passed.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("client certificate"), "{refused:?}");
    assert_eq!(health.unwrap(), ServingStatus::Serving as i32);

    // With one another CA signed: the handshake fails, nothing is served.
    let (passed, health) =
        pass_and_health(&https, Some(client(&ca.pem, Some((&rogue_cert, &rogue_key))))).await;
    let refused = passed.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // The cause reaches the caller, not just "transport error".
    assert!(refused.message().contains("UnknownCA"), "{refused:?}");
    assert_eq!(health.unwrap_err().code(), Code::Unavailable);

    // A caller that does not trust the server's CA does not talk to it.
    let (passed, _) = pass_and_health(
        &https,
        Some(client(&other.pem, Some((&client_cert, &client_key)))),
    )
    .await;
    let refused = passed.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("invalid peer certificate"),
        "{refused:?}"
    );

    // Plain text to a TLS server: nothing is served.
    let (passed, health) = pass_and_health(&format!("http://{}", running.address), None).await;
    assert_eq!(passed.unwrap_err().code(), Code::Unavailable);
    assert_eq!(health.unwrap_err().code(), Code::Unavailable);

    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_settings_that_cannot_work_are_refused_before_any_call() {
    let ca = TestCa::new("strata test CA");
    let (cert, key) = ca.sign(&["localhost"]);
    // An https:// address needs a CA to verify it with.
    let error = strata_rpc::client::channel(
        "gate",
        "https://localhost:1",
        strata_rpc::client::ServiceToken::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("STRATA_TLS_CA"), "{error}");
    // Malformed PEM, a key that is not the certificate's, a missing file.
    assert!(strata_rpc::tls::ServerTls::from_pem(b"not pem", key.as_bytes(), None).is_err());
    let (_, other_key) = ca.sign(&["localhost"]);
    assert!(strata_rpc::tls::ServerTls::from_pem(cert.as_bytes(), other_key.as_bytes(), None).is_err());
    strata_rpc::tls::ServerTls::from_pem(cert.as_bytes(), key.as_bytes(), None).unwrap();
    assert!(strata_rpc::tls::ClientTls::from_pem(b"not pem", None).is_err());
    let missing = std::path::Path::new("/nonexistent/strata-ca.pem");
    let error = strata_rpc::tls::ClientTls::from_files(missing, None, None).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/strata-ca.pem"),
        "{error}"
    );
    let error = strata_rpc::tls::ClientTls::from_files(missing, Some(missing), None).unwrap_err();
    assert!(matches!(error, strata_rpc::tls::TlsError::Unpaired), "{error}");
}

/// A raw HTTP/2 connection to `address`, as a client that means harm opens one.
async fn raw_h2(address: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client.ready().await.unwrap()
}

fn raw_call(address: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// A request whose body never finishes holds its admission place only until
/// the server's call timeout ends it (CANCELLED); then the place is free.
/// Each connection may open only the configured number of streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_finishes_is_ended_at_the_call_timeout_and_frees_its_place() {
    let (gate, control) = Gate::new();
    let _ = control.open.send(true);
    let admission = strata_rpc::Admission {
        max_concurrent_calls: Some(1),
        call_timeout: Some(Duration::from_millis(500)),
        max_streams: 3,
        ..strata_rpc::Admission::default()
    };
    let running = serve(strata_rpc::Server::new().host(gate).admission(admission)).await;
    pass(running.address).await.unwrap();

    let mut client = raw_h2(running.address).await;
    let (response, mut body) = client
        .send_request(raw_call(running.address, GATE_PASS), false)
        .unwrap();
    // A message header announcing 5 bytes, then one of them, then nothing.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 5, 1]), false)
        .unwrap();
    let started = Instant::now();
    // While it hangs, it holds the one place.
    loop {
        match pass(running.address).await {
            Err(status) if status.code() == Code::ResourceExhausted => break,
            Ok(()) if started.elapsed() < Duration::from_millis(400) => tokio::task::yield_now().await,
            other => panic!("the hanging call should hold the place: {other:?}"),
        }
    }
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("the server should end the call at its timeout")
        .unwrap();
    assert_eq!(
        response.headers().get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("1"),
        "CANCELLED: {response:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    pass(running.address).await.unwrap();
    assert_eq!(client.current_max_send_streams(), 3, "the server's stream limit");
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

/// A refused call's path is the caller's to invent: it is no label value.
#[tokio::test]
async fn refused_calls_add_no_metric_series_of_their_own() {
    let (gate, control) = Gate::new();
    let _ = control.open.send(true);
    let admission = strata_rpc::Admission {
        service_token: Some(TOKEN.to_owned()),
        ..strata_rpc::Admission::default()
    };
    let running = serve(strata_rpc::Server::new().host(gate).admission(admission)).await;
    for i in 0..20 {
        let path = format!("/strata.test.Gate/Invented{i}");
        let mut grpc = tonic::client::Grpc::new(channel(running.address));
        grpc.ready().await.unwrap();
        let refused = grpc
            .unary(
                tonic::Request::new(()),
                http::uri::PathAndQuery::try_from(path).unwrap(),
                ProstCodec::<(), ()>::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    pass_with(running.address, Some(TOKEN)).await.unwrap();
    let text = strata_rpc::metrics::render();
    assert!(!text.contains("Invented"), "{text}");
    assert!(
        text.contains(
            r#"strata_rpc_server_calls_total{service="unknown",method="unknown",code="UNAUTHENTICATED"} 20"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"strata_rpc_server_calls_total{service="strata.test.Gate",method="Pass",code="OK"} 1"#
        ),
        "{text}"
    );
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}

/// Past its maximum age a connection is ended by the server (GOAWAY), so a
/// caller connects again and reaches replicas added since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_its_maximum_age_is_ended_by_the_server() {
    let (gate, control) = Gate::new();
    let _ = control.open.send(true);
    let admission = strata_rpc::Admission {
        max_connection_age: Some(Duration::from_millis(500)),
        ..strata_rpc::Admission::default()
    };
    let running = serve(strata_rpc::Server::new().host(gate).admission(admission)).await;
    let tcp = tokio::net::TcpStream::connect(running.address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let ended = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // One whole call: an empty message, answered.
    let (response, mut body) = client
        .send_request(raw_call(running.address, GATE_PASS), false)
        .unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the server should end an old connection")
        .unwrap()
        .ok();
    println!("ended {:?} after the first call", started.elapsed());
    // A new connection is served as ever.
    pass(running.address).await.unwrap();
    let _ = running.stop.send(());
    running.task.await.unwrap().unwrap();
}
