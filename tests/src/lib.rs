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
    container: Option<ContainerAsync<Postgres>>,
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
                container: None,
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
            container: Some(container),
        })
    }

    /// Stops the server, to test how clients see a store that went away.
    ///
    /// # Errors
    /// When the server is not a container of this fixture's, or does not stop.
    pub async fn stop(&self) -> anyhow::Result<()> {
        match &self.container {
            Some(container) => Ok(container.stop().await?),
            None => bail!("the server at STRATA_TEST_DATABASE_URL is not ours to stop"),
        }
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
