//! Configuration: flags with environment equivalents, checked as a whole at
//! start so that a bad setting fails with one line that names it.
//!
//! Settings that exist once per context (its store URL, its pool size) are read
//! generically for every context of the registry ([`crate::CONTEXTS`]): the flag
//! `--database-url CONTEXT=URL` (repeatable) or the variable
//! `STRATA_<CONTEXT>_DATABASE_URL`, and likewise for the pool size.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use strata_rpc::telemetry::LogFormat;
use strata_store::{StoreConfig, StoreUrl, config::DEFAULT_MAX_CONNECTIONS};

use crate::CONTEXTS;

/// The flags, as given. [`Flags::resolve`] turns them into [`Settings`].
#[derive(Debug, Parser)]
#[command(
    name = "data-service",
    version,
    about = "Hosts Strata bounded contexts over gRPC."
)]
pub struct Flags {
    #[command(subcommand)]
    command: Option<Command>,

    /// Check the configuration and exit: 0 when every setting is usable, 2
    /// with one line naming the first that is not. Nothing is opened.
    #[arg(long)]
    check_config: bool,

    /// Address to listen on.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,

    /// Contexts to host, comma-separated (default: every context this build has).
    #[arg(long, env = "STRATA_CONTEXTS")]
    contexts: Option<String>,

    /// Directory of the embedded SQLite files, for contexts without a database URL.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./var")]
    data_dir: PathBuf,

    /// A context's store, CONTEXT=postgres://… or CONTEXT=sqlite://… (repeatable;
    /// or STRATA_<CONTEXT>_DATABASE_URL, or the file STRATA_<CONTEXT>_DATABASE_URL_FILE
    /// names, which keeps the password out of the environment). Default:
    /// SQLite in the data dir.
    #[arg(long = "database-url", value_name = "CONTEXT=URL")]
    database_urls: Vec<String>,

    /// Most connections a context's PostgreSQL pool opens in this process: N for
    /// every context, CONTEXT=N for one (repeatable; or STRATA_DB_MAX_CONNECTIONS
    /// and STRATA_<CONTEXT>_DB_MAX_CONNECTIONS). Default: 8.
    #[arg(long = "db-max-connections", value_name = "[CONTEXT=]N")]
    db_max_connections: Vec<String>,

    /// Seconds idempotency records are kept: a retry within it returns the
    /// first result.
    #[arg(long, env = "STRATA_IDEMPOTENCY_RETENTION_SECS", default_value = "86400")]
    idempotency_retention_secs: String,

    /// Seconds in-flight calls may take to finish after SIGTERM or SIGINT.
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECS", default_value = "10")]
    drain_timeout_secs: String,

    /// How logs are written to stderr: text, or json (one object per line).
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "text")]
    log_format: String,

    /// Most calls in flight; past it, new calls are refused at once with
    /// RESOURCE_EXHAUSTED (health is never refused). 0: no limit.
    #[arg(long, env = "STRATA_MAX_CONCURRENT_CALLS", default_value = "1024")]
    max_concurrent_calls: String,

    /// The longest one call may run on this server before it is ended
    /// (CANCELLED): a call whose request never finishes arriving cannot hold
    /// its admission place for ever. Response streams (StreamEvents) are not
    /// bounded by it once their first answer is out. 0: no limit.
    #[arg(
        long,
        env = "STRATA_SERVER_CALL_TIMEOUT_MS",
        default_value = "30000",
        value_name = "MS"
    )]
    server_call_timeout_ms: String,

    /// The most calls one HTTP/2 connection may have open at once.
    #[arg(
        long,
        env = "STRATA_HTTP2_MAX_STREAMS",
        default_value = "200",
        value_name = "N"
    )]
    http2_max_streams: String,

    /// Seconds a caller's connection may live before the server ends it
    /// gracefully (GOAWAY, calls in flight finish), so that callers connect
    /// again and reach replicas started since, whatever balances them
    /// (kube-proxy balances connections, not calls). 0: for ever.
    #[arg(
        long,
        env = "STRATA_MAX_CONNECTION_AGE_SECS",
        default_value = "300",
        value_name = "SECONDS"
    )]
    max_connection_age_secs: String,

    /// Serve without any service credential (STRATA_SERVICE_TOKEN or
    /// --tls-client-ca) on an address other than loopback. Without this flag
    /// such a start is refused: anyone who can reach the port could call
    /// every method.
    #[arg(long, env = "STRATA_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,

    /// Health and reflection need the service credential too (by default they
    /// stay open to orchestrators). The credential itself is
    /// STRATA_SERVICE_TOKEN, or the file STRATA_SERVICE_TOKEN_FILE names.
    #[arg(long, env = "STRATA_PROTECT_HEALTH")]
    protect_health: bool,

    /// Milliseconds to keep serving, reporting NOT_SERVING, after SIGTERM or
    /// SIGINT and before draining, so that balancers watching health notice.
    #[arg(long, env = "STRATA_SHUTDOWN_GRACE_MS", default_value = "0")]
    shutdown_grace_ms: String,

    /// Where to serve Prometheus metrics (`GET /metrics`); none by default.
    #[arg(long, env = "STRATA_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,

    /// Register every hosted context in etcd, etcd://host:port[,host:port…],
    /// under a lease kept alive while the process lives. None by default
    /// (callers are given static addresses).
    #[arg(long, env = "STRATA_REGISTRY", value_name = "URL")]
    registry: Option<String>,

    /// The address callers reach this instance at, as registered:
    /// http://host:port. Default: the address listened on (required when that
    /// is a wildcard such as 0.0.0.0).
    #[arg(long, env = "STRATA_ADVERTISE", value_name = "URL")]
    advertise: Option<String>,

    /// Seconds a registration outlives a crashed process (its lease's TTL).
    #[arg(long, env = "STRATA_REGISTRY_TTL_SECS", default_value = "5")]
    registry_ttl_secs: String,

    /// Serve TLS only, with this certificate chain (PEM); with --tls-key.
    #[arg(long, env = "STRATA_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The key of --tls-cert (PEM).
    #[arg(long, env = "STRATA_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Mutual TLS: callers must present a certificate this CA (PEM) signed;
    /// a call without one is refused with UNAUTHENTICATED (health and
    /// reflection stay open unless --protect-health). Needs --tls-cert.
    #[arg(long, env = "STRATA_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
}

/// What to do instead of serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the data service running with these settings for its health (the
    /// gRPC health of every hosted context, on --listen, loopback for a
    /// wildcard address): exit 0 when SERVING, 1 otherwise. For a container's
    /// HEALTHCHECK, which has no shell.
    Health,
}

/// The files TLS is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The CA that signs callers' certificates, for mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// Where and how to register, when registering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The etcd cluster, `etcd://host:port[,host:port…]`.
    pub url: String,
    /// The address to register; `None`: the address listened on.
    pub advertise: Option<String>,
    /// The lease's TTL.
    pub ttl: Duration,
}

/// The shortest service token accepted.
pub const MIN_SERVICE_TOKEN_LEN: usize = 16;

/// One hosted context and where its data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    /// The context's name, as the registry has it.
    pub context: &'static str,
    /// Its store.
    pub store: StoreConfig,
}

/// Checked configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The contexts to host, each with its store.
    pub hosted: Vec<Hosted>,
    /// Directory of the embedded SQLite files.
    pub data_dir: PathBuf,
    /// Bound on draining at shutdown.
    pub drain_timeout: Duration,
    /// How logs are written.
    pub log_format: LogFormat,
    /// Who may call and how many at once.
    pub admission: strata_rpc::Admission,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How long to keep serving, NOT_SERVING, before draining.
    pub shutdown_grace: Duration,
    /// Where to register, if anywhere.
    pub registry: Option<Registry>,
    /// Serve TLS with these, if given.
    pub tls: Option<TlsFiles>,
}

impl Settings {
    /// Every context of the registry on its own SQLite file in `data_dir`, on
    /// `listen`: what `make run` starts.
    #[must_use]
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let hosted = CONTEXTS
            .iter()
            .map(|c| Hosted {
                context: c.name,
                store: StoreConfig::new(strata_store::embedded_url(&data_dir, c.name)),
            })
            .collect();
        Self {
            listen,
            hosted,
            data_dir,
            drain_timeout: Duration::from_secs(10),
            log_format: LogFormat::default(),
            admission: strata_rpc::Admission::default(),
            metrics_listen: None,
            shutdown_grace: Duration::ZERO,
            registry: None,
            tls: None,
        }
    }
}

/// A setting that cannot be used, named as the user would set it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The flag and its environment variable, e.g. `--listen (STRATA_LISTEN)`.
    pub setting: String,
    /// What is wrong with it.
    pub problem: String,
}

fn config_error(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

/// The environment variable of a per-context setting: `STRATA_CATALOG_DATABASE_URL`.
#[must_use]
pub fn context_var(context: &str, setting: &str) -> String {
    format!("STRATA_{}_{setting}", context.to_ascii_uppercase())
}

fn known_contexts() -> String {
    CONTEXTS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// Splits `CONTEXT=VALUE` and checks that the context exists.
fn per_context<'a>(setting: &str, raw: &'a str) -> Result<(&'static str, &'a str), ConfigError> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| config_error(setting, format!("{raw:?} is not CONTEXT=VALUE")))?;
    let context = CONTEXTS.iter().find(|c| c.name == name.trim()).ok_or_else(|| {
        config_error(
            setting,
            format!("unknown context {name:?}; known: {}", known_contexts()),
        )
    })?;
    Ok((context.name, value))
}

fn whole_seconds(setting: &str, raw: &str) -> Result<Duration, ConfigError> {
    raw.parse()
        .map(Duration::from_secs)
        .map_err(|_| config_error(setting, format!("{raw:?} is not a whole number of seconds")))
}

fn pool_size(setting: &str, raw: &str) -> Result<u32, ConfigError> {
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| config_error(setting, format!("{raw:?} is not a whole number of at least 1")))
}

/// `raw` as a whole number of `unit`s, 0 meaning none.
fn optional_duration(
    setting: &str,
    raw: &str,
    unit: fn(u64) -> Duration,
    units: &str,
) -> Result<Option<Duration>, ConfigError> {
    match raw.trim().parse::<u64>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(unit(n))),
        Err(_) => Err(config_error(
            setting,
            format!("{raw:?} is not a whole number of {units}"),
        )),
    }
}

impl Flags {
    /// What to do instead of serving, if anything.
    #[must_use]
    pub fn command(&self) -> Option<Command> {
        self.command
    }

    /// Whether only to check the configuration.
    #[must_use]
    pub fn check_config(&self) -> bool {
        self.check_config
    }

    /// Checks every setting, reading per-context variables from the process
    /// environment.
    ///
    /// # Errors
    /// The first unusable setting.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        self.resolve_with(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`Flags::resolve`] with the environment given as a lookup.
    ///
    /// # Errors
    /// The first unusable setting.
    pub fn resolve_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let listen = self.listen.parse().map_err(|_| {
            config_error(
                "--listen (STRATA_LISTEN)",
                format!("{:?} is not an address such as 127.0.0.1:50051", self.listen),
            )
        })?;
        let drain_timeout = whole_seconds(
            "--drain-timeout-secs (STRATA_DRAIN_TIMEOUT_SECS)",
            &self.drain_timeout_secs,
        )?;
        let log_format = self
            .log_format
            .parse::<LogFormat>()
            .map_err(|error| config_error("--log-format (STRATA_LOG_FORMAT)", error.to_string()))?;
        let retention_setting = "--idempotency-retention-secs (STRATA_IDEMPOTENCY_RETENTION_SECS)";
        let idempotency_retention = whole_seconds(retention_setting, &self.idempotency_retention_secs)?;
        if idempotency_retention.is_zero() {
            return Err(config_error(retention_setting, "must be at least 1"));
        }

        // Pool sizes: a default for every context, then per-context overrides;
        // flags over the environment.
        let pool_setting = "--db-max-connections (STRATA_DB_MAX_CONNECTIONS)";
        let mut default_pool = match env("STRATA_DB_MAX_CONNECTIONS") {
            Some(raw) => pool_size(pool_setting, &raw)?,
            None => DEFAULT_MAX_CONNECTIONS,
        };
        let mut pool_flags = Vec::new();
        for raw in &self.db_max_connections {
            if raw.contains('=') {
                let (context, n) = per_context("--db-max-connections", raw)?;
                pool_flags.push((context, pool_size("--db-max-connections", n)?));
            } else {
                default_pool = pool_size(pool_setting, raw)?;
            }
        }
        let mut url_flags = Vec::new();
        for raw in &self.database_urls {
            url_flags.push(per_context("--database-url", raw)?);
        }

        let names: Vec<&str> = match &self.contexts {
            Some(list) => list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect(),
            None => CONTEXTS.iter().map(|c| c.name).collect(),
        };
        let mut hosted: Vec<Hosted> = Vec::new();
        for name in names {
            let context = CONTEXTS.iter().find(|c| c.name == name).ok_or_else(|| {
                config_error(
                    "--contexts (STRATA_CONTEXTS)",
                    format!("unknown context {name:?}; known: {}", known_contexts()),
                )
            })?;
            if hosted.iter().any(|h| h.context == context.name) {
                continue;
            }
            let url_var = context_var(context.name, "DATABASE_URL");
            let url_setting = format!("--database-url {}=… ({url_var})", context.name);
            let url = match url_flags.iter().rev().find(|(c, _)| *c == context.name) {
                Some((_, url)) => Some((*url).to_owned()),
                None => strata_rpc::client::setting_or_file(&url_var, &env)
                    .map_err(|problem| config_error(&format!("{url_var}_FILE"), problem))?,
            };
            let url = match url {
                None => StoreUrl::new(strata_store::embedded_url(&self.data_dir, context.name)),
                Some(url) => {
                    let url = StoreUrl::new(url);
                    if !url.is_postgres() && !url.is_sqlite() {
                        return Err(config_error(
                            &url_setting,
                            "must start with postgres:// or sqlite://",
                        ));
                    }
                    url
                }
            };
            let pool_var = context_var(context.name, "DB_MAX_CONNECTIONS");
            let max_connections = match pool_flags.iter().rev().find(|(c, _)| *c == context.name) {
                Some((_, n)) => *n,
                None => match env(&pool_var) {
                    Some(raw) => pool_size(&pool_var, &raw)?,
                    None => default_pool,
                },
            };
            let mut store = StoreConfig::new(String::new());
            store.url = url;
            store.max_connections = max_connections;
            store.idempotency_retention = idempotency_retention;
            hosted.push(Hosted {
                context: context.name,
                store,
            });
        }
        if hosted.is_empty() {
            return Err(config_error("--contexts (STRATA_CONTEXTS)", "names no context"));
        }
        let calls_setting = "--max-concurrent-calls (STRATA_MAX_CONCURRENT_CALLS)";
        let max_concurrent_calls = match self.max_concurrent_calls.trim().parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => {
                return Err(config_error(
                    calls_setting,
                    format!(
                        "{:?} is not a whole number (0: no limit)",
                        self.max_concurrent_calls
                    ),
                ));
            }
        };
        let shutdown_grace = self
            .shutdown_grace_ms
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| {
                config_error(
                    "--shutdown-grace-ms (STRATA_SHUTDOWN_GRACE_MS)",
                    format!(
                        "{:?} is not a whole number of milliseconds",
                        self.shutdown_grace_ms
                    ),
                )
            })?;
        let metrics_listen = match &self.metrics_listen {
            None => None,
            Some(raw) => Some(raw.parse().map_err(|_| {
                config_error(
                    "--metrics-listen (STRATA_METRICS_LISTEN)",
                    format!("{raw:?} is not an address such as 127.0.0.1:9090"),
                )
            })?),
        };
        let call_timeout = optional_duration(
            "--server-call-timeout-ms (STRATA_SERVER_CALL_TIMEOUT_MS)",
            &self.server_call_timeout_ms,
            Duration::from_millis,
            "milliseconds (0: no limit)",
        )?;
        let max_streams = match self.http2_max_streams.trim().parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(config_error(
                    "--http2-max-streams (STRATA_HTTP2_MAX_STREAMS)",
                    format!("{:?} is not a whole number above 0", self.http2_max_streams),
                ));
            }
        };
        let max_connection_age = optional_duration(
            "--max-connection-age-secs (STRATA_MAX_CONNECTION_AGE_SECS)",
            &self.max_connection_age_secs,
            Duration::from_secs,
            "seconds (0: for ever)",
        )?;
        let tls = self.tls()?;
        let registry = self.registry(listen, tls.is_some())?;
        let service_token = strata_rpc::client::setting_or_file(strata_rpc::client::SERVICE_TOKEN_VAR, &env)
            .map_err(|problem| config_error("STRATA_SERVICE_TOKEN_FILE", problem))?;
        if service_token
            .as_ref()
            .is_some_and(|t| t.len() < MIN_SERVICE_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(config_error(
                strata_rpc::client::SERVICE_TOKEN_VAR,
                format!("must be at least {MIN_SERVICE_TOKEN_LEN} printable ASCII characters without spaces"),
            ));
        }
        let mut callers = Vec::new();
        for policy in crate::callers::CALLERS {
            let var = crate::callers::token_var(policy.name);
            let token = strata_rpc::client::setting_or_file(&var, &env)
                .map_err(|problem| config_error(&format!("{var}_FILE"), problem))?;
            if let Some(token) = token {
                if token.len() < MIN_SERVICE_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(config_error(
                        &var,
                        format!(
                            "must be at least {MIN_SERVICE_TOKEN_LEN} printable ASCII characters without spaces"
                        ),
                    ));
                }
                callers.push(strata_rpc::admission::Caller::new(
                    policy.name,
                    &token,
                    policy.scope,
                ));
            }
        }
        let credential = service_token.is_some()
            || !callers.is_empty()
            || tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if !credential && !listen.ip().is_loopback() && !self.allow_unauthenticated {
            return Err(config_error(
                "--listen (STRATA_LISTEN)",
                format!(
                    "{listen} is reachable beyond this machine, and no service credential is set: set \
                     STRATA_SERVICE_TOKEN (or --tls-client-ca), or pass --allow-unauthenticated \
                     (STRATA_ALLOW_UNAUTHENTICATED) to serve anyone who can reach the port"
                ),
            ));
        }
        Ok(Settings {
            listen,
            hosted,
            data_dir: self.data_dir,
            drain_timeout,
            log_format,
            admission: strata_rpc::Admission {
                service_token,
                callers,
                protect_health: self.protect_health,
                max_concurrent_calls,
                call_timeout,
                max_streams,
                max_connection_age,
            },
            metrics_listen,
            shutdown_grace,
            registry,
            tls,
        })
    }

    /// The TLS files, checked together (read when the server is mounted).
    fn tls(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        match (
            path(&self.tls_cert),
            path(&self.tls_key),
            path(&self.tls_client_ca),
        ) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), client_ca) => Ok(Some(TlsFiles { cert, key, client_ca })),
            (None, None, Some(_)) => Err(config_error(
                "--tls-client-ca (STRATA_TLS_CLIENT_CA)",
                "needs --tls-cert and --tls-key: mutual TLS is TLS first",
            )),
            (Some(_), None, _) => Err(config_error(
                "--tls-key (STRATA_TLS_KEY)",
                "is needed with --tls-cert",
            )),
            (None, Some(_), _) => Err(config_error(
                "--tls-cert (STRATA_TLS_CERT)",
                "is needed with --tls-key",
            )),
        }
    }

    /// The registry settings, checked together: an advertised address is
    /// needed when listening on a wildcard address, and says `https://` when
    /// serving TLS (the scheme is optional).
    fn registry(&self, listen: SocketAddr, tls: bool) -> Result<Option<Registry>, ConfigError> {
        let scheme = if tls { "https" } else { "http" };
        let advertise_setting = "--advertise (STRATA_ADVERTISE)";
        let advertise = match self.advertise.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            None => None,
            Some(raw) => {
                let url = if raw.contains("://") {
                    raw.to_owned()
                } else {
                    format!("{scheme}://{raw}")
                };
                let uri: Result<http::Uri, _> = url.parse();
                let usable = uri.as_ref().is_ok_and(|uri| {
                    matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.port_u16().is_some()
                        && uri.path() == "/"
                        && uri.host().is_some_and(|h| !h.is_empty())
                });
                if !usable {
                    return Err(config_error(
                        advertise_setting,
                        format!("{raw:?} is not an address such as {scheme}://10.0.0.3:50051"),
                    ));
                }
                if url.starts_with("https://") != tls {
                    return Err(config_error(
                        advertise_setting,
                        if tls {
                            format!("{raw:?} must be https:// when serving TLS (--tls-cert)")
                        } else {
                            format!("{raw:?} is https:// but TLS is not served (no --tls-cert)")
                        },
                    ));
                }
                Some(url.trim_end_matches('/').to_owned())
            }
        };
        let Some(url) = self.registry.as_deref().map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        strata_rpc::registry::members(url)
            .map_err(|error| config_error("--registry (STRATA_REGISTRY)", error.to_string()))?;
        let ttl_setting = "--registry-ttl-secs (STRATA_REGISTRY_TTL_SECS)";
        let ttl = whole_seconds(ttl_setting, self.registry_ttl_secs.trim())?;
        if ttl.is_zero() {
            return Err(config_error(ttl_setting, "must be at least 1"));
        }
        if advertise.is_none() && listen.ip().is_unspecified() {
            return Err(config_error(
                advertise_setting,
                format!(
                    "is needed with --registry when listening on {listen}: the address callers reach this instance at"
                ),
            ));
        }
        Ok(Some(Registry {
            url: url.to_owned(),
            advertise,
            ttl,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Flags::try_parse_from(std::iter::once("data-service").chain(args.iter().copied()))
            .unwrap()
            .resolve_with(|name| env.get(name).cloned())
    }

    #[test]
    fn defaults_host_every_registered_context_on_sqlite_in_the_data_dir() {
        let settings = resolve(&["--data-dir", "/tmp/x"], &[]).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:50051".parse().unwrap());
        let names: Vec<_> = settings.hosted.iter().map(|h| h.context).collect();
        let registered: Vec<_> = CONTEXTS.iter().map(|c| c.name).collect();
        assert_eq!(names, registered);
        let catalog = &settings.hosted[0];
        assert_eq!(catalog.store.url.expose(), "sqlite:///tmp/x/catalog.db");
        assert_eq!(catalog.store.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn store_urls_and_pool_sizes_are_read_per_context() {
        let from_env = resolve(
            &[],
            &[
                ("STRATA_CATALOG_DATABASE_URL", "postgres://app:pw@db/shop"),
                ("STRATA_DB_MAX_CONNECTIONS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(from_env.hosted[0].store.url.expose(), "postgres://app:pw@db/shop");
        assert_eq!(from_env.hosted[0].store.max_connections, 3);

        let flags_win = resolve(
            &[
                "--database-url",
                "catalog=sqlite:///tmp/c.db",
                "--db-max-connections",
                "catalog=5",
            ],
            &[
                ("STRATA_CATALOG_DATABASE_URL", "postgres://db/shop"),
                ("STRATA_CATALOG_DB_MAX_CONNECTIONS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(flags_win.hosted[0].store.url.expose(), "sqlite:///tmp/c.db");
        assert_eq!(flags_win.hosted[0].store.max_connections, 5);

        let per_context_env = resolve(&[], &[("STRATA_CATALOG_DB_MAX_CONNECTIONS", "9")]).unwrap();
        assert_eq!(per_context_env.hosted[0].store.max_connections, 9);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = resolve(&["--listen", "nowhere"], &[]).unwrap_err();
        assert_eq!(err.setting, "--listen (STRATA_LISTEN)");
        let err = resolve(&["--contexts", "catalog,billing"], &[]).unwrap_err();
        assert!(err.problem.contains("\"billing\""), "{err}");
        let err = resolve(&[], &[("STRATA_CATALOG_DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(
            err.setting,
            "--database-url catalog=… (STRATA_CATALOG_DATABASE_URL)"
        );
        let err = resolve(&["--database-url", "billing=postgres://x"], &[]).unwrap_err();
        assert!(err.problem.contains("unknown context"), "{err}");
        let err = resolve(&["--db-max-connections", "catalog=0"], &[]).unwrap_err();
        assert_eq!(err.setting, "--db-max-connections");
        let err = resolve(&["--idempotency-retention-secs", "0"], &[]).unwrap_err();
        assert!(err.setting.contains("STRATA_IDEMPOTENCY_RETENTION_SECS"), "{err}");
        let err = resolve(&["--max-concurrent-calls", "lots"], &[]).unwrap_err();
        assert!(err.setting.contains("STRATA_MAX_CONCURRENT_CALLS"), "{err}");
        let err = resolve(&[], &[("STRATA_SERVICE_TOKEN", "short")]).unwrap_err();
        assert_eq!(err.setting, "STRATA_SERVICE_TOKEN");
    }

    #[test]
    fn admission_settings() {
        let defaults = resolve(&[], &[]).unwrap().admission;
        assert_eq!(defaults, strata_rpc::Admission::default());
        let set = resolve(
            &["--max-concurrent-calls", "0", "--protect-health"],
            &[("STRATA_SERVICE_TOKEN", "0123456789abcdef")],
        )
        .unwrap();
        assert_eq!(set.admission.max_concurrent_calls, None, "0 is no limit");
        assert!(set.admission.protect_health);
        assert_eq!(set.admission.service_token.as_deref(), Some("0123456789abcdef"));
        assert!(
            !format!("{set:?}").contains("0123456789abcdef"),
            "the token is never printed"
        );
    }

    #[test]
    fn registry_settings() {
        assert_eq!(
            resolve(&[], &[]).unwrap().registry,
            None,
            "static addresses by default"
        );
        let set = resolve(
            &[
                "--registry",
                "etcd://10.0.0.1:2379,10.0.0.2:2379",
                "--advertise",
                "10.0.0.3:50051",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            set.registry,
            Some(Registry {
                url: "etcd://10.0.0.1:2379,10.0.0.2:2379".to_owned(),
                advertise: Some("http://10.0.0.3:50051".to_owned()),
                ttl: Duration::from_secs(5),
            })
        );
        let ttl = resolve(&["--registry", "etcd://e:2379", "--registry-ttl-secs", "2"], &[]).unwrap();
        assert_eq!(ttl.registry.unwrap().ttl, Duration::from_secs(2));

        let err = resolve(&["--registry", "e:2379"], &[]).unwrap_err();
        assert_eq!(err.setting, "--registry (STRATA_REGISTRY)");
        let err = resolve(&["--registry", "etcd://e:2379", "--registry-ttl-secs", "0"], &[]).unwrap_err();
        assert_eq!(err.setting, "--registry-ttl-secs (STRATA_REGISTRY_TTL_SECS)");
        let err = resolve(&["--advertise", "http://h"], &[]).unwrap_err();
        assert_eq!(err.setting, "--advertise (STRATA_ADVERTISE)");
        let err = resolve(&["--advertise", "ftp://h:1"], &[]).unwrap_err();
        assert_eq!(err.setting, "--advertise (STRATA_ADVERTISE)");
        let err = resolve(&["--registry", "etcd://e:2379", "--listen", "0.0.0.0:50051"], &[]).unwrap_err();
        assert_eq!(
            err.setting, "--advertise (STRATA_ADVERTISE)",
            "a wildcard cannot be advertised"
        );
        assert!(err.problem.contains("0.0.0.0:50051"), "{err}");
    }

    #[test]
    fn beyond_loopback_a_credential_is_required_unless_waived() {
        let open = ["--listen", "0.0.0.0:50051"];
        let err = resolve(&open, &[]).unwrap_err();
        assert_eq!(err.setting, "--listen (STRATA_LISTEN)");
        assert!(err.problem.contains("--allow-unauthenticated"), "{err}");
        assert!(resolve(&["--listen", "192.0.2.1:50051"], &[]).is_err());
        assert!(resolve(&["--listen", "[::]:50051"], &[]).is_err());
        // Loopback, a token, a client CA, or the explicit waiver.
        assert!(resolve(&["--listen", "127.0.0.1:50051"], &[]).is_ok());
        assert!(resolve(&["--listen", "[::1]:50051"], &[]).is_ok());
        assert!(resolve(&open, &[("STRATA_SERVICE_TOKEN", "a-token-long-enough")]).is_ok());
        let mtls = [
            "--listen",
            "0.0.0.0:50051",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ];
        assert!(resolve(&mtls, &[]).is_ok());
        assert!(resolve(&["--listen", "0.0.0.0:50051", "--allow-unauthenticated"], &[]).is_ok());
    }

    #[test]
    fn server_call_timeout_and_stream_limit() {
        let set = resolve(&[], &[]).unwrap();
        assert_eq!(set.admission.call_timeout, Some(Duration::from_secs(30)));
        assert_eq!(set.admission.max_streams, 200);
        let set = resolve(
            &["--server-call-timeout-ms", "0", "--http2-max-streams", "8"],
            &[],
        )
        .unwrap();
        assert_eq!((set.admission.call_timeout, set.admission.max_streams), (None, 8));
        let err = resolve(&["--server-call-timeout-ms", "soon"], &[]).unwrap_err();
        assert_eq!(
            err.setting,
            "--server-call-timeout-ms (STRATA_SERVER_CALL_TIMEOUT_MS)"
        );
        assert_eq!(
            resolve(&["--max-connection-age-secs", "0"], &[])
                .unwrap()
                .admission
                .max_connection_age,
            None
        );
        let err = resolve(&["--max-connection-age-secs", "soon"], &[]).unwrap_err();
        assert_eq!(
            err.setting,
            "--max-connection-age-secs (STRATA_MAX_CONNECTION_AGE_SECS)"
        );
        let err = resolve(&["--http2-max-streams", "0"], &[]).unwrap_err();
        assert_eq!(err.setting, "--http2-max-streams (STRATA_HTTP2_MAX_STREAMS)");
    }

    #[test]
    fn tls_settings() {
        assert_eq!(resolve(&[], &[]).unwrap().tls, None, "plain text by default");
        let set = resolve(
            &[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-client-ca",
                "ca.pem",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            set.tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                client_ca: Some("ca.pem".into()),
            })
        );
        let tls = ["--tls-cert", "c.pem", "--tls-key", "k.pem"];
        assert_eq!(resolve(&tls, &[]).unwrap().tls.unwrap().client_ca, None);
        let err = resolve(&["--tls-cert", "c.pem"], &[]).unwrap_err();
        assert_eq!(err.setting, "--tls-key (STRATA_TLS_KEY)");
        let err = resolve(&["--tls-key", "k.pem"], &[]).unwrap_err();
        assert_eq!(err.setting, "--tls-cert (STRATA_TLS_CERT)");
        let err = resolve(&["--tls-client-ca", "ca.pem"], &[]).unwrap_err();
        assert_eq!(err.setting, "--tls-client-ca (STRATA_TLS_CLIENT_CA)");

        // Registered as https://, with or without the scheme given.
        let registered = |extra: &[&str]| {
            let mut args = vec!["--registry", "etcd://e:2379"];
            args.extend_from_slice(extra);
            resolve(&args, &[])
        };
        let with_tls = |advertise: &'static str| {
            let mut args = tls.to_vec();
            args.extend(["--advertise", advertise]);
            registered(&args)
        };
        assert_eq!(
            with_tls("10.0.0.3:50051")
                .unwrap()
                .registry
                .unwrap()
                .advertise
                .as_deref(),
            Some("https://10.0.0.3:50051")
        );
        assert!(with_tls("https://10.0.0.3:50051").is_ok());
        let err = with_tls("http://10.0.0.3:50051").unwrap_err();
        assert_eq!(err.setting, "--advertise (STRATA_ADVERTISE)");
        assert!(err.problem.contains("https"), "{err}");
        let err = registered(&["--advertise", "https://10.0.0.3:50051"]).unwrap_err();
        assert_eq!(err.setting, "--advertise (STRATA_ADVERTISE)");
    }

    #[test]
    fn settings_never_print_a_password() {
        let settings = resolve(&["--database-url", "catalog=postgres://app:p@ss@db/shop"], &[]).unwrap();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("p@ss"), "{printed}");
        assert!(printed.contains("app:***@db/shop"), "{printed}");
    }
}
