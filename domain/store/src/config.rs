//! Where a context's data lives and how much of the database it may use.

use std::{fmt, time::Duration};

/// Connections each context's PostgreSQL pool opens at most, per process, unless
/// configured. A fixed number, not one per core of the client: the database's
/// connection limit is shared by every process of a deployment, so what one
/// process opens must not grow with the machine it lands on.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// How long idempotency records are kept, unless configured: a retry within it
/// returns the first result; after it, the same key is a new command.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How long one statement may run before PostgreSQL cancels it (the caller
/// gets DEADLINE_EXCEEDED), unless configured.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a store waits for the database's first answer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A store URL (`postgres://…` or `sqlite://…`). It prints with its password
/// replaced by `***`, in `Display` and in `Debug`, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl StoreUrl {
    /// Wraps a URL as given.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, to connect with. Never log this.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it names PostgreSQL.
    #[must_use]
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    /// Whether it names a SQLite file.
    #[must_use]
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({:?})", redact(&self.0))
    }
}

/// `url` with every password replaced by `***`: the one in the user info
/// (`user:secret@host`, whatever the secret holds: `@`, `:`, `/`, `?`, `#`
/// unencoded included) and any `password=` query parameter. The user info
/// ends at the last `@`, so a secret can never be read as the host or the
/// path; a URL that puts an `@` in its query is redacted too much, never too
/// little.
#[must_use]
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    let after = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***@");
                }
                None => {
                    out.push_str(userinfo);
                    out.push('@');
                }
            }
            after
        }
        None => rest,
    };
    out.push_str(after);
    redact_password_params(&out)
}

/// `text` with the value of every `password=` parameter replaced by `***`.
fn redact_password_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let starts_param = at == 0 || matches!(rest.as_bytes()[at - 1], b'?' | b'&');
        let value = at + "password=".len();
        out.push_str(&rest[..value]);
        rest = &rest[value..];
        if starts_param {
            out.push_str("***");
            rest = rest.find('&').map_or("", |end| &rest[end..]);
        }
    }
    out.push_str(rest);
    out
}

/// Where a context's data lives and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite://…`.
    pub url: StoreUrl,
    /// Most connections the context's PostgreSQL pool opens in this process.
    pub max_connections: u32,
    /// How long idempotency records are kept.
    pub idempotency_retention: Duration,
    /// How long one PostgreSQL statement may run.
    pub statement_timeout: Duration,
    /// How long opening the store may wait for the database's first answer
    /// (a host that drops packets would otherwise hold the start for minutes).
    pub connect_timeout: Duration,
}

impl StoreConfig {
    /// The store at `url`, with default settings.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: StoreUrl::new(url),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idempotency_retention: DEFAULT_IDEMPOTENCY_RETENTION,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/shop",
                "postgres://app:***@db:5432/shop",
            ),
            ("postgres://app:p@ss@db/shop", "postgres://app:***@db/shop"),
            ("postgres://app:a:b@c@db", "postgres://app:***@db"),
            (
                "postgres://db/shop?user=app&password=s3cret&sslmode=require",
                "postgres://db/shop?user=app&password=***&sslmode=require",
            ),
            ("postgres://app@db/shop", "postgres://app@db/shop"),
            ("sqlite://var/catalog.db", "sqlite://var/catalog.db"),
            // Unencoded characters that end a URL's parts, in the password.
            ("postgres://app:s3/cret@db/shop", "postgres://app:***@db/shop"),
            ("postgres://app:s3?cret@db/shop", "postgres://app:***@db/shop"),
            (
                "postgres://app:s3#c/r?e@t@db:5432/shop?sslmode=require",
                "postgres://app:***@db:5432/shop?sslmode=require",
            ),
            (
                "postgres://db/shop?password=s3cret@x&user=app",
                "postgres://db/shop?password=***&user=app",
            ),
            (
                "postgres://db/shop?user=app&PASSWORD=s3cret",
                "postgres://db/shop?user=app&PASSWORD=***",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            let wrapped = StoreUrl::new(url);
            assert_eq!(wrapped.to_string(), shown);
            assert!(!format!("{wrapped:?}").contains("s3cret"));
            for piece in ["s3", "cret"] {
                assert!(!wrapped.to_string().contains(piece), "{url}: {wrapped}");
            }
            assert!(!format!("{:?}", StoreConfig::new(url)).contains("p@ss@"));
            // What connects keeps the password.
            assert_eq!(wrapped.expose(), url);
        }
    }

    #[test]
    fn the_url_names_its_backend() {
        for (url, postgres, sqlite) in [
            ("postgres://app@db/shop", true, false),
            ("postgresql://app@db/shop", true, false),
            ("sqlite://var/catalog.db", false, true),
            ("sqlite:var/catalog.db", false, true),
            ("mysql://app@db/shop", false, false),
            ("var/catalog.db", false, false),
        ] {
            let url = StoreUrl::new(url);
            assert_eq!(url.is_postgres(), postgres, "{url}");
            assert_eq!(url.is_sqlite(), sqlite, "{url}");
        }
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let config = StoreConfig::new("sqlite://var/catalog.db");
        assert_eq!(config.url.expose(), "sqlite://var/catalog.db");
        // README: a retry within 24 h returns the first result; a statement
        // may run for 30 s; a process opens at most 8 connections per context.
        assert_eq!(config.idempotency_retention, Duration::from_secs(86_400));
        assert_eq!(config.max_connections, 8);
        assert_eq!(config.statement_timeout, Duration::from_secs(30));
    }
}
