//! Backoffice: the application service staff call, over HTTP/JSON.
//!
//! It composes the data services and never calls another application
//! service: staff sign-in ([`session`], identity; only staff get a token),
//! products and prices ([`products`], catalog, with `If-Match` on every change),
//! stock ([`stock`], inventory), and orders ([`orders`]: listing by status,
//! shipping — commit the order's reservations in inventory, then mark it shipped
//! in ordering — and cancelling). The first staff account comes from
//! configuration ([`admin`]).
//!
//! Everything an edge does comes from `strata-edge`.

// `Problem` is every handler's error (see strata-edge).
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod orders;
pub mod products;
pub mod session;
pub mod stock;

use std::{future::Future, net::SocketAddr};

use anyhow::Context as _;
use clap::Parser;
use http::HeaderMap;
use strata_edge::{Edge, FieldError, Problem, config::EdgeFlags};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The backoffice's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "backoffice",
    version,
    about = "Strata's application service for staff (HTTP/JSON)"
)]
pub struct Flags {
    /// Where to listen for HTTP.
    #[arg(
        long,
        env = "STRATA_BACKOFFICE_LISTEN",
        default_value = "127.0.0.1:8081",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub edge: EdgeFlags,
    #[command(subcommand)]
    pub command: Option<strata_edge::config::Command>,
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct App {
    /// The edge: keys, limits, data services.
    pub edge: Edge,
}

/// The routes and their OpenAPI description.
pub fn api() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(session::sign_in))
        .routes(routes!(products::create, products::list))
        .routes(routes!(products::get, products::update))
        .routes(routes!(products::change_price))
        .routes(routes!(products::publish))
        .routes(routes!(products::retire))
        .routes(routes!(stock::get))
        .routes(routes!(stock::receive))
        .routes(routes!(stock::adjust))
        .routes(routes!(orders::list))
        .routes(routes!(orders::ship))
        .routes(routes!(orders::cancel))
}

/// Checks every setting as a start would, without serving: `--check-config`.
///
/// # Errors
/// The first unusable setting.
pub fn check(flags: &Flags) -> anyhow::Result<()> {
    Edge::new("backoffice", flags.edge.clone())?;
    admin::Admin::from_config(&flags.edge)?;
    Ok(())
}

/// Serves the backoffice until `shutdown` completes.
///
/// # Errors
/// When a setting is unusable or the listener fails.
pub async fn run(flags: Flags, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(flags.listen)
        .await
        .with_context(|| {
            format!(
                "--listen (STRATA_BACKOFFICE_LISTEN): cannot listen on {}",
                flags.listen
            )
        })?;
    let edge = Edge::new("backoffice", flags.edge.clone())?;
    let admin = admin::Admin::from_config(&flags.edge)?;
    let registering = admin.map(|admin| tokio::spawn(admin::register(edge.clone(), admin)));
    let router = edge.app("Strata backoffice", api(), App { edge: edge.clone() });
    let served = edge.serve("backoffice", router, listener, shutdown).await;
    if let Some(task) = registering {
        task.abort();
    }
    served.context("serving HTTP")
}

/// The request id of a staff command: from the `Idempotency-Key` header when
/// the client sent one (a retry then has no second effect), else a new one.
///
/// # Errors
/// 400 when the header is not 1 to 64 visible ASCII characters.
pub fn command_id(headers: &HeaderMap, operation: &str, staff: uuid::Uuid) -> Result<String, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(format!("{operation}/{}", uuid::Uuid::now_v7())),
        Some(key) => key
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 64)
            .map(|k| format!("{operation}/{staff}/{k}"))
            .ok_or_else(|| {
                Problem::malformed(
                    "the Idempotency-Key header is not usable",
                    vec![FieldError::new(
                        "Idempotency-Key",
                        "1 to 64 visible ASCII characters",
                    )],
                )
            }),
    }
}

/// The version an `If-Match: "<version>"` header asks for, if any.
///
/// # Errors
/// 400 when the header is not a quoted version.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .and_then(|v| v.strip_prefix('"')?.strip_suffix('"'))
        // Digits only, no leading zero: a version is 1 or more.
        .filter(|v| v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::malformed(
                "If-Match must be a version as an entity tag, e.g. \"3\"",
                vec![FieldError::new(
                    "If-Match",
                    "a quoted version, as in the ETag header",
                )],
            )
        })
}
