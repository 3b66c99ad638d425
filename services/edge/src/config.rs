//! The settings both application services share, as flags with environment
//! variables: where the data services are, the signing key, the request
//! budget, rate limits, body size, dev mode and the log format.

use std::{num::NonZeroU32, path::PathBuf, time::Duration};

use clap::Args;
use strata_rpc::telemetry::LogFormat;

/// The default address of every data service: `make run`'s one data service.
pub const DEFAULT_DATA_SERVICE: &str = "http://127.0.0.1:50051";

/// Flags every edge takes (flatten into a service's own).
#[derive(Debug, Clone, Args)]
pub struct EdgeFlags {
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

    /// How long tokens live.
    #[must_use]
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
    }
}
