//! Putting an edge together and serving it: the service's own routes (with
//! their OpenAPI description, registered together so the document lists
//! exactly what is served), plus `/healthz`, `/readyz`, `/openapi.json` and
//! `/metrics` (Prometheus),
//! behind the shared layers (request id and log line, authentication, rate
//! limit, body size), with problem+json for unknown routes and methods.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

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
    downstream::Downstream,
    problem::Problem,
    rate_limit::{self, Limiter},
    request::{self, Ctx},
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
    /// The data services.
    pub downstream: Downstream,
}

impl Edge {
    /// The edge `flags` describe.
    ///
    /// # Errors
    /// When the signing key cannot be loaded or an address is malformed.
    pub fn new(flags: EdgeFlags) -> anyhow::Result<Self> {
        let keys = Keys::load(
            flags.jwt_secret_file.as_deref(),
            flags.dev,
            &flags.data_dir,
            flags.token_ttl(),
        )?;
        let downstream = Downstream::new(&flags)?;
        let limiter = Limiter::new(flags.rate_limit_per_sec, flags.rate_limit_burst);
        Ok(Self {
            flags,
            keys: Arc::new(keys),
            limiter,
            downstream,
        })
    }

    /// The whole HTTP application: `api` (the service's routes and their
    /// description, titled `title`) with the shared routes and layers.
    pub fn app<S>(&self, title: &str, api: OpenApiRouter<S>, state: S) -> Router
    where
        S: Clone + Send + Sync + 'static,
    {
        let (router, mut openapi) = api
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .split_for_parts();
        openapi.info = utoipa::openapi::InfoBuilder::new()
            .title(title)
            .version(env!("CARGO_PKG_VERSION"))
            .description(Some(
                "Errors are RFC 9457 application/problem+json; authenticated routes take                  `Authorization: Bearer <token>`; every response carries X-Request-Id.",
            ))
            .build();
        SecurityAddon.modify(&mut openapi);
        openapi.merge(ProblemDoc::openapi());
        let document: Arc<str> = openapi.to_json().unwrap_or_default().into();
        request::register_metrics();
        router
            .with_state(state)
            .route(
                "/openapi.json",
                get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document.to_string()) }),
            )
            .route(
                "/metrics",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        strata_rpc::metrics::render(),
                    )
                }),
            )
            .fallback(|| async { Problem::not_found("no such route") })
            .method_not_allowed_fallback(|| async {
                Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
            })
            .layer(Extension(self.downstream.clone()))
            .layer(DefaultBodyLimit::max(self.flags.max_body_bytes))
            .layer(from_fn_with_state(self.limiter.clone(), rate_limit::layer))
            .layer(from_fn_with_state(self.keys.clone(), auth::layer))
            .layer(from_fn_with_state(self.flags.budget(), request::layer))
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in
/// flight finish for at most `drain`. Prints `<name> listening on http://…`
/// once it accepts connections.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    name: &str,
    app: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            let mut stop_rx = stop_rx;
            let _ = stop_rx.wait_for(|stop| *stop).await;
        });
    let server = tokio::spawn(async move { server.await });
    tracing::info!(%address, "serving");
    println!("{name} listening on http://{address}");
    shutdown.await;
    tracing::info!("shutting down: draining requests in flight");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(drain, server).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(std::io::Error::other(join)),
        Err(_) => {
            tracing::warn!(?drain, "drain timed out; dropping the remaining requests");
            Ok(())
        }
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every data service this edge needs answers its health check.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Every data service is serving"),
    (status = 503, description = "Some data service is not serving", body = Problem, content_type = "application/problem+json"),
))]
async fn readyz(ctx: Ctx, Extension(downstream): Extension<Downstream>) -> Response {
    let down = downstream.not_ready(&ctx.call).await;
    if down.is_empty() {
        "ready".into_response()
    } else {
        Problem::unavailable(format!("not serving: {}", down.join(", ")), 1)
            .with("not_serving", down)
            .into_response()
    }
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

/// The error body every route may answer.
#[derive(OpenApi)]
#[openapi(components(schemas(Problem, crate::problem::FieldError)))]
struct ProblemDoc;
