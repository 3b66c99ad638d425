//! The PostgreSQL fixture every Strata test suite shares, and (under `tests/`)
//! the end-to-end and architecture tests.
//!
//! [`TestPostgres::start`] gives a server: the one named by
//! `STRATA_TEST_DATABASE_URL` when set, otherwise a fresh container started with
//! testcontainers from the image `docker/postgres/ensure-image.sh` chooses (the
//! image named by `STRATA_POSTGRES_IMAGE`, the official one where it can be
//! pulled, else one built locally from Debian packages, once). Each test asks it
//! for a fresh database. When neither Docker nor a URL is available the fixture
//! fails with one line saying so: PostgreSQL tests never skip silently.
//!
//! [`process`]: Strata binaries run for real, as operators run them.
//! [`tls`]: a CA and certificates for TLS tests.

pub mod process;
pub mod tls;

use std::{path::Path, process::Command, str::FromStr};

use anyhow::{Context as _, bail};
use sqlx::{ConnectOptions, Connection, Executor, postgres::PgConnectOptions};
use testcontainers_modules::{
    postgres::Postgres,
    testcontainers::{ContainerAsync, ImageExt, runners::AsyncRunner},
};

/// Where a test's PostgreSQL server comes from.
#[derive(Debug)]
pub struct TestPostgres {
    admin_url: String,
    // Dropping it stops and removes the container.
    _container: Option<ContainerAsync<Postgres>>,
}

impl TestPostgres {
    /// A PostgreSQL server for this test: `STRATA_TEST_DATABASE_URL`, or a new
    /// container (stopped and removed when this value is dropped).
    ///
    /// # Errors
    /// When no Docker engine answers and no URL is given, or the server does not start.
    pub async fn start() -> anyhow::Result<Self> {
        if let Ok(url) = std::env::var("STRATA_TEST_DATABASE_URL") {
            return Ok(Self {
                admin_url: url,
                _container: None,
            });
        }
        let image = tokio::task::spawn_blocking(postgres_image).await??;
        let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        let container = Postgres::default()
            .with_name(name)
            .with_tag(tag)
            .start()
            .await
            .with_context(|| format!("starting a PostgreSQL container from {image}"))?;
        let port = container.get_host_port_ipv4(5432).await?;
        Ok(Self {
            admin_url: format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
            _container: Some(container),
        })
    }

    /// Creates an empty database and returns its URL.
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn fresh_database(&self) -> anyhow::Result<String> {
        let admin = PgConnectOptions::from_str(&self.admin_url)?;
        let mut conn = admin
            .connect()
            .await
            .context("connecting to the test PostgreSQL server")?;
        let name = format!("strata_test_{}", uuid::Uuid::now_v7().simple());
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await?;
        conn.close().await?;
        Ok(admin.database(&name).to_url_lossy().to_string())
    }
}

/// A TCP proxy in front of a server, which a test can cut to make the server
/// unreachable the way a network partition would, and heal again — whatever the
/// server is, a container or `STRATA_TEST_DATABASE_URL`. Cut, connections are
/// reset (as when the peer's host is down); black-holed, nothing is refused and
/// nothing answers (as when packets are dropped on the way): open connections
/// stall and new ones are accepted but never answered.
#[derive(Debug)]
pub struct Partition {
    address: std::net::SocketAddr,
    state: tokio::sync::watch::Sender<Route>,
}

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Open,
    Cut,
    BlackHole,
    /// The port closed: connections dropped, new ones refused.
    Gone,
}

impl Partition {
    /// Listens on a loopback port and forwards every connection to `target`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(target: std::net::SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (state, state_rx) = tokio::sync::watch::channel(Route::Open);
        let mut gone = state_rx.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // The listener dropped with this task: the port refuses.
                    _ = gone.wait_for(|route| *route == Route::Gone) => return,
                };
                let Ok((mut inbound, _)) = accepted else { return };
                let mut path = state_rx.clone();
                tokio::spawn(async move {
                    let now = *path.borrow_and_update();
                    match now {
                        // Accepted and dropped at once: the client sees it reset.
                        Route::Cut | Route::Gone => return,
                        // Held, unanswered, until the path changes.
                        Route::BlackHole => {
                            let _ = path.changed().await;
                            return;
                        }
                        Route::Open => {}
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = path.wait_for(|path| *path != Route::Open) => {}
                    }
                    let now = *path.borrow();
                    if now == Route::BlackHole {
                        // Both ends kept open, nothing moves, until it changes.
                        let _ = path.changed().await;
                    }
                });
            }
        });
        Ok(Self { address, state })
    }

    /// Where the proxy listens.
    #[must_use]
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// `url` with its host and port replaced by this proxy's.
    ///
    /// # Errors
    /// When `url` is not a PostgreSQL URL.
    pub fn route(&self, url: &str) -> anyhow::Result<String> {
        let options = PgConnectOptions::from_str(url)?
            .host(&self.address.ip().to_string())
            .port(self.address.port());
        Ok(options.to_url_lossy().to_string())
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        let _ = self.state.send(Route::Cut);
    }

    /// Drops nothing and answers nothing: open connections stall, new ones
    /// are accepted and never answered.
    pub fn black_hole(&self) {
        let _ = self.state.send(Route::BlackHole);
    }

    /// As when the server's host is gone for good: every proxied connection
    /// dropped, and the port closed, so new ones are refused. (Not healed.)
    pub fn close(&self) {
        let _ = self.state.send(Route::Gone);
    }

    /// Forwards new connections again (the stalled ones are dropped).
    pub fn heal(&self) {
        let _ = self.state.send(Route::Open);
    }
}

/// The address of the server a PostgreSQL URL names.
///
/// # Errors
/// When the URL does not parse or its host does not resolve.
pub fn server_address(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let options = PgConnectOptions::from_str(url)?;
    std::net::ToSocketAddrs::to_socket_addrs(&(options.get_host(), options.get_port()))?
        .next()
        .context("the database host does not resolve")
}

/// The image reference `docker/postgres/ensure-image.sh` chooses (building it if needed).
fn postgres_image() -> anyhow::Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/postgres/ensure-image.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "PostgreSQL tests need a Docker engine (to run {}) or STRATA_TEST_DATABASE_URL; neither is available",
            script.display()
        );
    }
    let image = String::from_utf8(output.stdout)?.trim().to_owned();
    if image.is_empty() {
        bail!("{} printed no image name", script.display());
    }
    Ok(image)
}

/// How many tasks a contract suite's [`race`] starts.
pub const CONTENDERS: usize = 8;

/// Starts [`CONTENDERS`] tasks made by `contender` (given its number) on the
/// runtime, behind a barrier, so that they really race; their outcomes, in
/// their numbers' order. Panics when a task panicked.
pub async fn race<F, Fut, T>(contender: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CONTENDERS));
    let handles: Vec<_> = (0..CONTENDERS)
        .map(|n| {
            let barrier = barrier.clone();
            let work = contender(n);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(CONTENDERS);
    for handle in handles {
        out.push(handle.await.expect("a contender panicked"));
    }
    out
}

/// `prefix` made unique (a UUIDv7 after it), for names a test must not
/// share with another run on the same database.
#[must_use]
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}
