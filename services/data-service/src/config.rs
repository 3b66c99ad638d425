//! Configuration: flags with environment equivalents, checked as a whole at
//! start so that a bad setting fails with one line that names it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

/// The bounded contexts this build can host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Products: `strata.catalog.v1.ProductService`.
    Catalog,
}

impl Context {
    /// Every context, in start-up order.
    pub const ALL: &[Self] = &[Self::Catalog];

    /// Its name in `--contexts`, file names and environment variables.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Catalog => strata_catalog::CONTEXT,
        }
    }

    /// The environment variable that names its store.
    #[must_use]
    pub fn database_url_var(self) -> String {
        format!("STRATA_{}_DATABASE_URL", self.name().to_ascii_uppercase())
    }
}

/// The flags, as given. [`Flags::resolve`] turns them into [`Settings`].
#[derive(Debug, Parser)]
#[command(
    name = "data-service",
    version,
    about = "Hosts Strata bounded contexts over gRPC."
)]
pub struct Flags {
    /// Address to listen on.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:50051")]
    listen: String,

    /// Contexts to host, comma-separated (default: all).
    #[arg(long, env = "STRATA_CONTEXTS", default_value = "catalog")]
    contexts: String,

    /// Directory of the embedded SQLite files, for contexts without a database URL.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./var")]
    data_dir: PathBuf,

    /// Store of the catalog context: postgres://… or sqlite://… (default: SQLite in the data dir).
    #[arg(long, env = "STRATA_CATALOG_DATABASE_URL")]
    catalog_database_url: Option<String>,

    /// Most connections each context's PostgreSQL pool opens (default: eight per core).
    #[arg(long, env = "STRATA_DB_MAX_CONNECTIONS")]
    db_max_connections: Option<String>,

    /// Seconds in-flight calls may take to finish after SIGTERM or SIGINT.
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECS", default_value = "10")]
    drain_timeout_secs: String,

    /// How logs are written to stderr: text, or json (one object per line).
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

/// One hosted context and where its data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    /// The context.
    pub context: Context,
    /// Its store's URL.
    pub database_url: String,
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
    /// Most connections per PostgreSQL pool; `None`: eight per core.
    pub db_max_connections: Option<u32>,
    /// How logs are written.
    pub log_format: strata_rpc::telemetry::LogFormat,
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

impl Flags {
    /// Checks every setting.
    ///
    /// # Errors
    /// The first unusable setting.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let listen = self.listen.parse().map_err(|_| {
            config_error(
                "--listen (STRATA_LISTEN)",
                format!("{:?} is not an address such as 127.0.0.1:50051", self.listen),
            )
        })?;
        let drain_timeout = self
            .drain_timeout_secs
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| {
                config_error(
                    "--drain-timeout-secs (STRATA_DRAIN_TIMEOUT_SECS)",
                    format!("{:?} is not a whole number of seconds", self.drain_timeout_secs),
                )
            })?;
        let db_max_connections = self
            .db_max_connections
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                raw.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    config_error(
                        "--db-max-connections (STRATA_DB_MAX_CONNECTIONS)",
                        format!("{raw:?} is not a whole number of at least 1"),
                    )
                })
            })
            .transpose()?;
        let log_format = self
            .log_format
            .parse::<strata_rpc::telemetry::LogFormat>()
            .map_err(|error| config_error("--log-format (STRATA_LOG_FORMAT)", error.to_string()))?;
        let mut hosted = Vec::new();
        for name in self.contexts.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let context = Context::ALL
                .iter()
                .copied()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    let known: Vec<_> = Context::ALL.iter().map(|c| c.name()).collect();
                    config_error(
                        "--contexts (STRATA_CONTEXTS)",
                        format!("unknown context {name:?}; known: {}", known.join(", ")),
                    )
                })?;
            if hosted.iter().any(|h: &Hosted| h.context == context) {
                continue;
            }
            let url = match context {
                Context::Catalog => self.catalog_database_url.clone(),
            };
            let database_url = match url.filter(|u| !u.is_empty()) {
                None => strata_catalog::store::embedded_url(&self.data_dir),
                Some(url)
                    if url.starts_with("postgres://")
                        || url.starts_with("postgresql://")
                        || url.starts_with("sqlite:") =>
                {
                    url
                }
                Some(_) => {
                    return Err(config_error(
                        &format!(
                            "--{}-database-url ({})",
                            context.name(),
                            context.database_url_var()
                        ),
                        "must start with postgres:// or sqlite://",
                    ));
                }
            };
            hosted.push(Hosted {
                context,
                database_url,
            });
        }
        if hosted.is_empty() {
            return Err(config_error("--contexts (STRATA_CONTEXTS)", "names no context"));
        }
        Ok(Settings {
            listen,
            hosted,
            data_dir: self.data_dir,
            drain_timeout,
            db_max_connections,
            log_format,
        })
    }
}

/// `url` with any password replaced by `***`, for logs and error messages.
#[must_use]
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("data-service").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_host_every_context_on_sqlite_in_the_data_dir() {
        let settings = flags(&["--data-dir", "/tmp/x"]).resolve().unwrap();
        assert_eq!(settings.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(
            settings.hosted,
            vec![Hosted {
                context: Context::Catalog,
                database_url: "sqlite:///tmp/x/catalog.db".into()
            }]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = flags(&["--listen", "nowhere"]).resolve().unwrap_err();
        assert_eq!(err.setting, "--listen (STRATA_LISTEN)");
        let err = flags(&["--contexts", "catalog,billing"]).resolve().unwrap_err();
        assert!(err.problem.contains("\"billing\""), "{err}");
        let err = flags(&["--catalog-database-url", "mysql://x"])
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.setting,
            "--catalog-database-url (STRATA_CATALOG_DATABASE_URL)"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/shop"),
            "postgres://app:***@db:5432/shop"
        );
        assert_eq!(redact("sqlite://var/catalog.db"), "sqlite://var/catalog.db");
    }
}
