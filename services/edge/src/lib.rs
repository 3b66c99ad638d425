//! What both application services (storefront, backoffice) share, so that each
//! is its routes and its use cases only.
//!
//! The HTTP edge, doing what the gateway did in the story:
//! - [`auth`]: JWTs issued after identity verified the credentials, verified on
//!   every request; [`auth::Principal`] and [`auth::Staff`] extractors (401/403);
//! - [`rate_limit`]: per client (account, else address), 429 with `Retry-After`;
//!   [`client`]: who the client is behind trusted proxies; [`throttle`]: the
//!   password-hashing routes' own budget, per address and per account;
//! - [`request`]: `X-Request-Id` in and out, one log line per request, and the
//!   request's budget for its downstream calls ([`request::Ctx`]);
//! - [`problem`]: RFC 9457 problem+json for every error, and the one mapping
//!   from a data service's gRPC status to HTTP;
//! - [`json`]: body and query extractors whose failures name the field;
//! - [`connection`]: the HTTP server and its limits (header, body and idle
//!   timeouts, a connection cap, HTTP/2 streams);
//! - [`serve`]: the app with `/healthz`, `/readyz`, `/openapi.json` and the
//!   layers, and graceful serving;
//! - [`revocation`]: tokens of suspended accounts, or issued before a
//!   password change, refused, from identity's events;
//! - [`session`]: signing in (identity verifies, the edge issues the token);
//! - [`config`]: the shared flags; [`dev`]: what dev mode generates and keeps.
//!
//! And the application layer's view of the data services: [`downstream`] (a
//! client per context, made through `strata_rpc::client`), [`model`] (the JSON
//! of money and orders) and [`shop`] (the conventions across contexts: how a
//! reservation is named from its order line, how an order's stock is given
//! back).

// `Problem` is every handler's error: the answer itself, built once per failing
// request, off the hot path; boxing it everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod client;
pub mod config;
pub mod connection;
pub mod dev;
pub mod downstream;
pub mod json;
pub mod model;
pub mod problem;
pub mod rate_limit;
pub mod request;
pub mod revocation;
pub mod serve;
pub mod session;
pub mod shop;
pub mod throttle;

pub use json::{Json, Query};
pub use problem::{FieldError, Problem};
pub use request::Ctx;
pub use serve::Edge;
