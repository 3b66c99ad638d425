//! The settings both application services share, as flags with environment
//! variables: where the data services are, the signing key, the request
//! budget, rate limits, body size, dev mode and the log format.

use std::{num::NonZeroU32, path::PathBuf, time::Duration};

use clap::Args;
use strata_rpc::telemetry::LogFormat;

/// The default address of every data service: `make run`'s one data service.
pub const DEFAULT_DATA_SERVICE: &str = "http://127.0.0.1:50051";

/// What an edge can do instead of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the edge running with these settings for its readiness (`GET
    /// /readyz` on its listener, loopback for a wildcard address): exit 0
    /// when ready, 1 otherwise. For a container's HEALTHCHECK, which has no
    /// shell.
    Health,
}

/// Flags every edge takes (flatten into a service's own).
#[derive(Debug, Clone, Args)]
pub struct EdgeFlags {
    /// Check the configuration and exit: 0 when every setting is usable, 1
    /// with the first that is not. Nothing is served.
    #[arg(long)]
    pub check_config: bool,

    /// The catalog context's data service.
    #[arg(long, env = "STRATA_CATALOG_ADDR", default_value = DEFAULT_DATA_SERVICE, value_name = "URL")]
    pub catalog_addr: String,
    /// The inventory context's data service.
    #[arg(long, env = "STRATA_INVENTORY_ADDR", default_value = DEFAULT_DATA_SERVICE, value_name = "URL")]
    pub inventory_addr: String,
    /// The ordering context's data service.
    #[arg(long, env = "STRATA_ORDERING_ADDR", default_value = DEFAULT_DATA_SERVICE, value_name = "URL")]
    pub ordering_addr: String,
    /// The identity context's data service.
    #[arg(long, env = "STRATA_IDENTITY_ADDR", default_value = DEFAULT_DATA_SERVICE, value_name = "URL")]
    pub identity_addr: String,

    /// Dev mode: a signing secret and a staff account are generated once and
    /// kept under --data-dir (never in production).
    #[arg(long, env = "STRATA_DEV")]
    pub dev: bool,
    /// Where dev mode keeps what it generates (and storefront its event positions).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "var", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// A file holding the JWT signing secret (at least 32 bytes); the secret
    /// itself can be given as STRATA_JWT_SECRET, which wins.
    #[arg(long, env = "STRATA_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// A file holding the previous JWT secret, still accepted (never used to
    /// sign) while tokens it signed may live: how keys rotate without signing
    /// everyone out. STRATA_JWT_PREVIOUS_SECRET, the secret itself, wins.
    #[arg(long, env = "STRATA_JWT_PREVIOUS_SECRET_FILE", value_name = "FILE")]
    pub jwt_previous_secret_file: Option<PathBuf>,
    /// How long an access token is valid.
    #[arg(
        long,
        env = "STRATA_TOKEN_TTL_SECS",
        default_value_t = 3600,
        value_name = "SECONDS"
    )]
    pub token_ttl_secs: u64,

    /// The most a request may take in all, its downstream calls included.
    #[arg(
        long,
        env = "STRATA_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub request_timeout_ms: u64,
    /// The most one downstream call may take.
    #[arg(
        long,
        env = "STRATA_CALL_TIMEOUT_MS",
        default_value_t = 3_000,
        value_name = "MS"
    )]
    pub call_timeout_ms: u64,
    /// Requests a second allowed per client (per account, else per address).
    #[arg(long, env = "STRATA_RATE_LIMIT_PER_SEC", default_value_t = NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN), value_name = "N")]
    pub rate_limit_per_sec: NonZeroU32,
    /// The burst a client may make above its rate.
    #[arg(long, env = "STRATA_RATE_LIMIT_BURST", default_value_t = NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN), value_name = "N")]
    pub rate_limit_burst: NonZeroU32,
    /// Sign-in and sign-up attempts a minute per client address (each hashes
    /// a password downstream), whatever token the request carries.
    #[arg(long, env = "STRATA_SIGN_IN_PER_MINUTE", default_value_t = NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN), value_name = "N")]
    pub sign_in_per_minute: NonZeroU32,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed
    /// (addresses and CIDR blocks, comma-separated), such as the load
    /// balancer in front of the edges. Empty: the peer is the client.
    #[arg(long, env = "STRATA_TRUSTED_PROXIES", default_value = "", value_name = "LIST", value_parser = parse_proxies)]
    pub trusted_proxies: crate::client::TrustedProxies,
    /// Calls a second this process may make to each data service (0: no
    /// limit); past it a call is refused at once and the request gets 503.
    #[arg(
        long,
        env = "STRATA_DOWNSTREAM_CALLS_PER_SEC",
        default_value_t = 0,
        value_name = "N"
    )]
    pub downstream_calls_per_sec: u32,
    /// The largest request body accepted (larger: 413).
    #[arg(long, env = "STRATA_MAX_BODY_BYTES", default_value_t = 64 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// How long a client has to send a request's head (on HTTP/1.1 also how
    /// long a kept-alive connection may wait for its next request).
    #[arg(long, env = "STRATA_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,
    /// How long a client has to send a request's whole body (too slow: 408).
    #[arg(long, env = "STRATA_HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_body_timeout_ms: u64,
    /// How long a connection may sit with no request in flight and no byte
    /// moving before it is closed.
    #[arg(long, env = "STRATA_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_idle_timeout_ms: u64,
    /// The most connections open at once; more wait in the listen backlog
    /// (keep it under the process's file descriptor limit).
    #[arg(long, env = "STRATA_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// The most requests one HTTP/2 connection may have in flight.
    #[arg(long, env = "STRATA_HTTP2_MAX_STREAMS", default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_streams: u32,
    /// The largest HTTP/2 header list accepted (HTTP/1.1: at most 100 headers).
    #[arg(long, env = "STRATA_HTTP2_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1024..))]
    pub http2_max_header_bytes: u32,
    /// At SIGTERM/SIGINT, keep serving this long while `/readyz` answers 503,
    /// so that a balancer watching it stops sending here before connections
    /// are refused; then drain.
    #[arg(
        long,
        env = "STRATA_SHUTDOWN_GRACE_MS",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub shutdown_grace_ms: u64,
    /// The most requests in flight may take to finish once shutdown drains.
    #[arg(
        long,
        env = "STRATA_DRAIN_TIMEOUT_SECS",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub drain_timeout_secs: u64,
    /// Serve `/metrics` on this address instead of the public listener (which
    /// then answers it 404): the metrics name internal addresses.
    #[arg(long, env = "STRATA_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The CA (PEM) that signed the data services' certificates: with it,
    /// `https://` addresses are called over TLS (and `dns://` names too).
    #[arg(long, env = "STRATA_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This service's certificate (PEM), for data services that ask callers
    /// for one (mutual TLS); with --tls-client-key and --tls-ca.
    #[arg(long, env = "STRATA_TLS_CLIENT_CERT", value_name = "FILE", requires_all = ["tls_client_key", "tls_ca"])]
    pub tls_client_cert: Option<PathBuf>,
    /// The key of --tls-client-cert (PEM).
    #[arg(
        long,
        env = "STRATA_TLS_CLIENT_KEY",
        value_name = "FILE",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
    /// How logs are written: text for people, json for a collector.
    #[arg(
        long,
        env = "STRATA_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

fn parse_proxies(list: &str) -> Result<crate::client::TrustedProxies, String> {
    crate::client::TrustedProxies::parse(list)
}

impl EdgeFlags {
    /// The request budget.
    #[must_use]
    pub fn budget(&self) -> crate::request::Budget {
        crate::request::Budget {
            request: Duration::from_millis(self.request_timeout_ms),
            call: Duration::from_millis(self.call_timeout_ms),
        }
    }

    /// The TLS settings for calls to the data services, if any.
    ///
    /// # Errors
    /// When a file cannot be read or does not hold a certificate (or key).
    pub fn client_tls(&self) -> anyhow::Result<Option<strata_rpc::tls::ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        strata_rpc::tls::ClientTls::from_files(
            ca,
            self.tls_client_cert.as_deref(),
            self.tls_client_key.as_deref(),
        )
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--tls-ca / --tls-client-cert / --tls-client-key (STRATA_TLS_*): {e}"))
    }

    /// The HTTP server's limits.
    #[must_use]
    pub fn http_limits(&self) -> crate::connection::HttpLimits {
        crate::connection::HttpLimits {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: Duration::from_millis(self.http_body_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
            max_connections: self.http_max_connections as usize,
            h2_max_concurrent_streams: self.http2_max_streams,
            max_header_bytes: self.http2_max_header_bytes,
        }
    }

    /// How long tokens live.
    #[must_use]
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}
