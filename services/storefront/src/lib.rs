//! Storefront: the application service shoppers call, over HTTP/JSON.
//!
//! It composes the data services and never calls another application
//! service: accounts and sign-in ([`accounts`], identity), browsing with
//! availability ([`products`], catalog and inventory, one call to each per
//! page), checkout as a saga and the shopper's orders ([`orders`], catalog,
//! ordering and inventory), and the follower of ordering's events that gives
//! back the stock of cancelled and expired orders ([`follower`]).
//!
//! Everything an edge does (authentication, rate limits, request ids,
//! problem+json, OpenAPI, serving) comes from `strata-edge`.

// `Problem` is every handler's error (see strata-edge).
#![allow(clippy::result_large_err)]

pub mod accounts;
pub mod follower;
pub mod orders;
pub mod products;

use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use strata_edge::{Edge, config::EdgeFlags};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The storefront's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "storefront",
    version,
    about = "Strata's application service for shoppers (HTTP/JSON)"
)]
pub struct Flags {
    /// Where to listen for HTTP.
    #[arg(
        long,
        env = "STRATA_STOREFRONT_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// How long a checkout's reservations are held before the order is
    /// confirmed; a checkout that dies halfway gives its stock back after this.
    #[arg(
        long,
        env = "STRATA_RESERVATION_TTL_SECS",
        default_value_t = 120,
        value_name = "SECONDS"
    )]
    pub reservation_ttl_secs: u64,
    /// The most units (the sum of the lines' quantities) one order may hold.
    #[arg(long, env = "STRATA_MAX_UNITS_PER_ORDER", default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_units_per_order: u32,
    /// The most orders one shopper may have open (confirmed, not yet shipped
    /// or cancelled); past it a checkout is refused (409).
    #[arg(long, env = "STRATA_MAX_OPEN_ORDERS", default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub max_open_orders: u32,
    /// Do not follow ordering's events (another storefront instance does).
    #[arg(long, env = "STRATA_STOREFRONT_NO_FOLLOWER")]
    pub no_follower: bool,
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
    /// See [`Flags::reservation_ttl_secs`].
    pub reservation_ttl: Duration,
    /// See [`Flags::max_units_per_order`].
    pub max_units_per_order: u32,
    /// See [`Flags::max_open_orders`].
    pub max_open_orders: u32,
}

/// The routes and their OpenAPI description.
pub fn api() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(accounts::sign_up))
        .routes(routes!(accounts::sign_in))
        .routes(routes!(products::list))
        .routes(routes!(products::get))
        .routes(routes!(orders::checkout, orders::list))
        .routes(routes!(orders::get))
        .routes(routes!(orders::cancel))
}

/// Checks every setting as a start would, without serving: `--check-config`.
///
/// # Errors
/// The first unusable setting.
pub fn check(flags: &Flags) -> anyhow::Result<()> {
    Edge::new("storefront", flags.edge.clone())?;
    Ok(())
}

/// Serves the storefront until `shutdown` completes.
///
/// # Errors
/// When a setting is unusable or the listener fails.
pub async fn run(flags: Flags, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(flags.listen)
        .await
        .with_context(|| {
            format!(
                "--listen (STRATA_STOREFRONT_LISTEN): cannot listen on {}",
                flags.listen
            )
        })?;
    let edge = Edge::new("storefront", flags.edge.clone())?;
    let app = App {
        edge: edge.clone(),
        reservation_ttl: Duration::from_secs(flags.reservation_ttl_secs),
        max_units_per_order: flags.max_units_per_order,
        max_open_orders: flags.max_open_orders,
    };
    let follower = (!flags.no_follower).then(|| tokio::spawn(follower::run(edge.clone())));
    let router = edge.app("Strata storefront", api(), app);
    let served = edge.serve("storefront", router, listener, shutdown).await;
    if let Some(follower) = follower {
        follower.abort();
    }
    served.context("serving HTTP")
}
