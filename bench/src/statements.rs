//! `BENCH_STATEMENTS=1`: what each contender's statements cost the database,
//! from `pg_stat_statements` (with planning tracked), reset before each round
//! of each contender and read after it, into `target/bench/statements.md`.
//! It answers "the same statements, why more database time": how often each
//! statement is planned as well as executed, and what each costs. Off by
//! default: tracking costs the database a little for every contender.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection, Row as _};

/// The server settings it needs.
pub(crate) const SETTINGS: [&str; 3] = [
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track_planning=on",
    "pg_stat_statements.max=1000",
];

/// Reads and resets the statistics on a connection of its own.
pub(crate) struct Recorder {
    conn: PgConnection,
    file: PathBuf,
    text: String,
}

impl Recorder {
    pub(crate) async fn new(url: &str, out: &std::path::Path) -> anyhow::Result<Self> {
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query("create extension if not exists pg_stat_statements")
            .execute(&mut conn)
            .await
            .context("pg_stat_statements (BENCH_STATEMENTS=1)")?;
        Ok(Self {
            conn,
            file: out.join("statements.md"),
            text: String::from(
                "# Statements per contender (pg_stat_statements; warm-up included)\n\n\
                 Per statement: calls, plans, mean planning and execution time in µs, \
                 and total (planning + execution) in ms.\n",
            ),
        })
    }

    pub(crate) async fn reset(&mut self) -> anyhow::Result<()> {
        sqlx::query("select pg_stat_statements_reset()")
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Appends what ran since the last reset under `point`, and writes the file.
    pub(crate) async fn record(&mut self, point: &str) -> anyhow::Result<()> {
        let rows = sqlx::query(
            "select calls, plans, total_plan_time, total_exec_time, \
                    left(regexp_replace(query, '\\s+', ' ', 'g'), 160) \
             from pg_stat_statements \
             where calls > 100 and query not like '%pg_stat_statements%' \
             order by total_plan_time + total_exec_time desc limit 8",
        )
        .fetch_all(&mut self.conn)
        .await?;
        let _ = write!(
            self.text,
            "\n## {point}\n\n| calls | plans | plan µs | exec µs | total ms | statement |\n|---|---|---|---|---|---|\n"
        );
        for row in rows {
            let calls: i64 = row.try_get(0)?;
            let plans: i64 = row.try_get(1)?;
            let (plan, exec): (f64, f64) = (row.try_get(2)?, row.try_get(3)?);
            let query: String = row.try_get(4)?;
            let _ = writeln!(
                self.text,
                "| {calls} | {plans} | {:.1} | {:.1} | {:.0} | `{}` |",
                plan * 1000.0 / plans.max(1) as f64,
                exec * 1000.0 / calls.max(1) as f64,
                plan + exec,
                query.replace('|', "\\|"),
            );
        }
        std::fs::write(&self.file, &self.text)?;
        Ok(())
    }
}
