//! Putting an edge together and serving it: the service's own routes (with
//! their OpenAPI description, registered together so the document lists
//! exactly what is served), plus `/healthz`, `/readyz`, `/openapi.json` and
//! `/metrics` (Prometheus),
//! behind the shared layers (request id and log line, authentication, rate
//! limit, body size), with problem+json for unknown routes and methods.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;

use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{StatusCode, header};
use tokio::net::TcpListener;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::{self, Keys},
    config::EdgeFlags,
    connection::{self, HttpLimits},
    downstream::Downstream,
    problem::Problem,
    rate_limit::{self, Limiter},
    request::{self, Ctx},
    throttle::SignInThrottle,
};

/// What every edge holds: its settings, keys, limiter and data services.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The settings.
    pub flags: EdgeFlags,
    /// Signs and verifies tokens.
    pub keys: Arc<Keys>,
    /// Per-client rate limits.
    pub limiter: Limiter,
    /// The password-hashing routes' own budget.
    pub sign_in: SignInThrottle,
    /// Set once shutdown begins: `/readyz` then answers 503.
    stopping: Stopping,
    /// The data services.
    pub downstream: Downstream,
}

impl Edge {
    /// The edge `flags` describe, named `name` (`storefront`, `backoffice`):
    /// the audience its tokens are bound to.
    ///
    /// # Errors
    /// When the signing key cannot be loaded or an address is malformed.
    pub fn new(name: &str, flags: EdgeFlags) -> anyhow::Result<Self> {
        let keys = Keys::load(
            name,
            flags.jwt_secret_file.as_deref(),
            flags.jwt_previous_secret_file.as_deref(),
            flags.dev,
            &flags.data_dir,
            flags.token_ttl(),
        )?;
        let downstream = Downstream::new(&flags)?;
        let revocations = crate::revocation::Revocations::default();
        let keys = keys.revoking(revocations.clone());
        // One follower of identity's events per process; it ends with the runtime.
        tokio::spawn(crate::revocation::follow(
            downstream.clone(),
            revocations,
            keys.ttl(),
        ));
        let limiter = Limiter::new(
            flags.rate_limit_per_sec,
            flags.rate_limit_burst,
            flags.trusted_proxies.clone(),
        );
        let sign_in = SignInThrottle::new(flags.sign_in_per_minute);
        Ok(Self {
            flags,
            keys: Arc::new(keys),
            limiter,
            sign_in,
            stopping: Stopping::default(),
            downstream,
        })
    }

    /// The whole HTTP application: `api` (the service's routes and their
    /// description, titled `title`) with the shared routes and layers. The
    /// service's routes (and unknown ones) are authenticated and rate-limited;
    /// the probes, `/metrics` and `/openapi.json` are neither, so that a
    /// balancer's probes never get 429.
    pub fn app<S>(&self, title: &str, api: OpenApiRouter<S>, state: S) -> Router
    where
        S: Clone + Send + Sync + 'static,
    {
        let (router, mut openapi) = api.split_for_parts();
        let (probes, probes_doc) = OpenApiRouter::new()
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .split_for_parts();
        openapi.merge(probes_doc);
        openapi.info = utoipa::openapi::InfoBuilder::new()
            .title(title)
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Errors are RFC 9457 application/problem+json; authenticated routes take                  `Authorization: Bearer <token>`; every response carries X-Request-Id.",
            ))
            .build();
        SecurityAddon.modify(&mut openapi);
        CommonAnswers.modify(&mut openapi);
        openapi.merge(ProblemDoc::openapi());
        let document: Arc<str> = openapi.to_json().unwrap_or_default().into();
        request::register_metrics();
        let api = router
            .with_state(state)
            .fallback(|| async { Problem::not_found("no such route") })
            .method_not_allowed_fallback(|| async {
                Problem::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this route does not take that method",
                )
            })
            .layer(DefaultBodyLimit::max(self.flags.max_body_bytes))
            .layer(from_fn_with_state(self.limiter.clone(), rate_limit::layer))
            .layer(from_fn_with_state(self.keys.clone(), auth::layer));
        let mut probes = probes.route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document.to_string()) }),
        );
        if self.flags.metrics_listen.is_none() {
            probes = probes.route("/metrics", get(metrics));
        }
        api.merge(probes)
            .layer(from_fn_with_state(self.stopping.clone(), close_when_stopping))
            .layer(Extension(self.stopping.clone()))
            .layer(Extension(self.downstream.clone()))
            .layer(from_fn_with_state(self.flags.budget(), request::layer))
    }

    /// Serves `app` on `listener` within the flags' HTTP limits (and
    /// `/metrics` on `--metrics-listen`, if set) until `shutdown` completes;
    /// then `/readyz` answers 503 while it keeps serving for
    /// `--shutdown-grace-ms` (so that a balancer stops sending here before
    /// connections are refused), and requests in flight get at most
    /// `--drain-timeout-secs` to finish. Prints `<name> listening on
    /// http://…` once it accepts connections.
    ///
    /// # Errors
    /// When the metrics listener cannot be bound.
    pub async fn serve(
        &self,
        name: &str,
        app: Router,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let drain = Duration::from_secs(self.flags.drain_timeout_secs);
        let grace = Duration::from_millis(self.flags.shutdown_grace_ms);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics = match self.flags.metrics_listen {
            None => None,
            Some(address) => {
                let listener = TcpListener::bind(address).await.with_context(|| {
                    format!("--metrics-listen (STRATA_METRICS_LISTEN): cannot listen on {address}")
                })?;
                let metrics_app = Router::new().route("/metrics", get(metrics));
                let limits = HttpLimits {
                    max_connections: 64,
                    ..self.flags.http_limits()
                };
                Some(tokio::spawn(connection::serve(
                    listener,
                    metrics_app,
                    limits,
                    stop_rx.clone(),
                )))
            }
        };
        let address = listener.local_addr()?;
        let server = tokio::spawn(connection::serve(
            listener,
            app,
            self.flags.http_limits(),
            stop_rx,
        ));
        tracing::info!(%address, "serving");
        println!("{name} listening on http://{address}");
        shutdown.await;
        self.stopping.0.store(true, std::sync::atomic::Ordering::Release);
        if !grace.is_zero() {
            tracing::info!(
                ?grace,
                "shutting down: /readyz answers 503, still serving for the grace"
            );
            tokio::time::sleep(grace).await;
        }
        tracing::info!("shutting down: draining requests in flight");
        let _ = stop_tx.send(true);
        if tokio::time::timeout(drain, server).await.is_err() {
            tracing::warn!(?drain, "drain timed out; dropping the remaining requests");
        }
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        Ok(())
    }
}

/// What an edge binary does instead of serving, if its flags ask for it:
/// `health` (exit 0 when its `/readyz` answers 200, 1 otherwise) or
/// `--check-config` (`check`, then exit 0, or 2 with the first bad
/// setting). `None`: serve.
pub async fn instead_of_serving(
    name: &str,
    listen: std::net::SocketAddr,
    command: Option<crate::config::Command>,
    flags: &EdgeFlags,
    check: impl FnOnce() -> anyhow::Result<()>,
) -> Option<std::process::ExitCode> {
    use std::process::ExitCode;
    if command == Some(crate::config::Command::Health) {
        return Some(match health(listen).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{name}: not ready: {error:#}");
                ExitCode::FAILURE
            }
        });
    }
    if !flags.check_config {
        return None;
    }
    Some(match check() {
        Ok(()) => {
            println!("{name}: configuration ok");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{name}: invalid configuration: {error:#}");
            ExitCode::from(2)
        }
    })
}

/// Asks the edge listening on `listen` whether it is ready: `GET /readyz`
/// (on loopback for a wildcard address), within 3 s.
///
/// # Errors
/// Why it is not ready.
pub async fn health(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const WITHIN: Duration = Duration::from_secs(3);
    let address = strata_rpc::local_address(listen);
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(WITHIN, ask)
        .await
        .map_err(|_| anyhow::anyhow!("{address} did not answer within {WITHIN:?}"))?
        .with_context(|| format!("cannot ask {address}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status_line.starts_with("HTTP/1.1 200"),
        "{address}/readyz: {}",
        answer.rsplit("\r\n\r\n").next().unwrap_or(status_line)
    );
    Ok(())
}

/// Prometheus metrics, text format.
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        strata_rpc::metrics::render(),
    )
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every data service this edge needs answers its health check.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Every data service is serving"),
    (status = 503, description = "Some data service is not serving, or this edge is shutting down", body = Problem, content_type = "application/problem+json"),
))]
async fn readyz(
    ctx: Ctx,
    Extension(downstream): Extension<Downstream>,
    Extension(stopping): Extension<Stopping>,
) -> Response {
    if stopping.0.load(std::sync::atomic::Ordering::Acquire) {
        return Problem::unavailable("shutting down", 1).into_response();
    }
    let down = downstream.not_ready(&ctx.call).await;
    if down.is_empty() {
        "ready".into_response()
    } else {
        Problem::unavailable(format!("not serving: {}", down.join(", ")), 1)
            .with("not_serving", down)
            .into_response()
    }
}

/// Whether the edge is shutting down.
#[derive(Debug, Clone, Default)]
struct Stopping(Arc<std::sync::atomic::AtomicBool>);

/// Through the shutdown grace, every HTTP/1.1 answer says `Connection:
/// close`: a client does not keep the connection for its next request, so
/// that when the server stops, few kept-alive connections remain for a
/// client to send on at the instant they are closed (a request lost in that
/// race was seen when backoffice, one replica, rolled under load). HTTP/2
/// clients get GOAWAY when the grace ends.
async fn close_when_stopping(
    axum::extract::State(stopping): axum::extract::State<Stopping>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let http1 = request.version() <= http::Version::HTTP_11;
    let mut response = next.run(request).await;
    if http1 && stopping.0.load(std::sync::atomic::Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// Bearer tokens, as the sign-in routes issue them.
struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers the shared layers may give on any route of the service's own
/// (`/v1/…`), documented on each operation that does not document them
/// itself, so that the document lists every status a client can get: 400 (a
/// malformed query or path), 401 (a token that is not valid, sent to any
/// route), 429 (the rate limit), 503 and 504 (a data service unavailable or
/// too slow); on operations with parameters or a body, 422 (a value out of
/// its bounds); and on operations with a body, 408 (the body too slow), 413
/// (too large) and 415 (not JSON).
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            Content, Ref, RefOr,
            response::{Response, ResponseBuilder},
        };
        let problem = |description: &str| -> RefOr<Response> {
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::problem::PROBLEM_JSON,
                    Content::new(Some(Ref::from_schema_name("Problem"))),
                )
                .into()
        };
        let every: [(&str, &str); 5] = [
            ("400", "Malformed request (a query or path parameter, a header)"),
            (
                "401",
                "The bearer token is not valid (expired, forged, revoked, or another service's)",
            ),
            ("429", "Too many requests from this client; see Retry-After"),
            (
                "503",
                "A data service is unavailable, or busy; retry after Retry-After",
            ),
            ("504", "A data service did not answer in time; retry"),
        ];
        let with_input: [(&str, &str); 1] = [("422", "Invalid fields (each named in errors)")];
        let with_body: [(&str, &str); 3] = [
            ("408", "The body did not arrive in time"),
            ("413", "The body is larger than this service accepts"),
            ("415", "The body is not JSON (Content-Type: application/json)"),
        ];
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/v1/") {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let has_body = operation.request_body.is_some();
                let has_input = has_body || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let answers = &mut operation.responses.responses;
                let fitting = every
                    .iter()
                    .chain(with_input.iter().filter(|_| has_input))
                    .chain(with_body.iter().filter(|_| has_body));
                for (status, description) in fitting {
                    answers
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem(description));
                }
            }
        }
    }
}

/// The error body every route may answer.
#[derive(OpenApi)]
#[openapi(components(schemas(Problem, crate::problem::FieldError)))]
struct ProblemDoc;
