//! `make bench`: Strata's catalog against the physical limit (pgbench running the
//! repository's own SQL), against the stack it replaces (a plain Python grpcio +
//! asyncpg service) and against the peer its users would otherwise pick (a
//! plain Go grpc-go + pgx service), side by side in one run on one PostgreSQL.
//!
//! Every point (workload × concurrency × contender) is measured in interleaved
//! rounds — pgbench, strata, python, go, then strata, python, go, pgbench, and
//! so on — and reported as the median of its rounds, so a noisy neighbour hurts
//! all contenders alike. Results go to
//! `target/bench/`: `report.md`, `report.json` and `chart.svg`.
//!
//! Adding a workload: a variant of [`model::Workload`], its call in
//! [`load::work`], its statements in [`pgbench::script`] and its method in the
//! Python and Go servers.

mod cpu;
mod load;
mod model;
mod pgbench;
mod report;
mod statements;
mod sys;

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sqlx::{Connection, PgConnection, Row};

use model::{Contender, Point, Workload};

/// Run settings, from the environment (`make bench` passes them through).
#[derive(Debug)]
struct Settings {
    /// Measuring time per point, split over the rounds (`BENCH_SECONDS`).
    seconds: f64,
    /// Interleaved rounds per point (`BENCH_ROUNDS`).
    rounds: u32,
    /// Concurrency levels (`BENCH_CONCURRENCY`, comma list).
    concurrency: Vec<u32>,
    /// Workloads (`BENCH_WORKLOADS`, comma list of get, update).
    workloads: Vec<Workload>,
    /// Contenders (`BENCH_CONTENDERS`, comma list of pgbench, strata, python, go).
    contenders: Vec<Contender>,
    /// Preloaded products (`BENCH_PRODUCTS`).
    products: u32,
    /// Warm-up before each measuring window.
    warmup: Duration,
    /// Record what each contender's statements cost the database
    /// (`BENCH_STATEMENTS=1`; see [`statements`]).
    statements: bool,
    /// Where the report goes.
    out: PathBuf,
}

fn settings() -> anyhow::Result<Settings> {
    fn var(name: &str, default: &str) -> String {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }
    fn list<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> anyhow::Result<Vec<T>> {
        var(name, default)
            .split(',')
            .map(|item| parse(item.trim()).with_context(|| format!("{name}: unknown value {item:?}")))
            .collect()
    }
    Ok(Settings {
        seconds: var("BENCH_SECONDS", "10")
            .parse()
            .context("BENCH_SECONDS: not a number")?,
        rounds: var("BENCH_ROUNDS", "3")
            .parse()
            .context("BENCH_ROUNDS: not a whole number")?,
        concurrency: list("BENCH_CONCURRENCY", "1,4,16,64", |s| {
            s.parse().ok().filter(|c| *c > 0)
        })?,
        workloads: list("BENCH_WORKLOADS", "get,update", |s| match s {
            "get" => Some(Workload::Get),
            "update" => Some(Workload::Update),
            _ => None,
        })?,
        contenders: list("BENCH_CONTENDERS", "pgbench,strata,python,go,stack", |s| {
            Contender::ALL.into_iter().find(|c| c.name() == s)
        })?,
        products: var("BENCH_PRODUCTS", "10000")
            .parse()
            .context("BENCH_PRODUCTS: not a whole number")?,
        warmup: Duration::from_millis(500),
        statements: var("BENCH_STATEMENTS", "0") == "1",
        out: sys::repo_root().join("target/bench"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = settings()?;
    if settings.rounds == 0 || settings.seconds <= 0.0 {
        bail!("BENCH_ROUNDS and BENCH_SECONDS must be positive");
    }
    std::fs::create_dir_all(&settings.out)?;
    let began = Instant::now();
    let started = sys::run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])?;

    eprintln!("bench: starting PostgreSQL");
    let image = sys::run(
        "bash",
        &[&sys::repo_root()
            .join("docker/postgres/ensure-image.sh")
            .to_string_lossy()],
    )?;
    // Same server for every contender; durable commits (fsync on), as in production.
    let mut postgres_settings = vec!["max_connections=200", "shared_buffers=256MB"];
    if settings.statements {
        postgres_settings.extend(statements::SETTINGS);
    }
    let (db, port) = sys::Container::start_postgres(&image, &postgres_settings)?;
    let url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
    wait_for_postgres(&url).await?;

    eprintln!("bench: starting the data service");
    let data_service = std::env::current_exe()?.with_file_name("data-service");
    let mut command = Command::new(&data_service);
    command
        .args(["--listen", "127.0.0.1:0", "--contexts", "catalog"])
        .env("STRATA_CATALOG_DATABASE_URL", &url)
        .env("RUST_LOG", "warn");
    let (strata, line) = sys::start_server(command, "data-service listening on ")
        .with_context(|| format!("starting {} (build it with --release)", data_service.display()))?;
    let strata_address = line.split_whitespace().next().context("no address")?.to_owned();

    eprintln!("bench: preloading {} products", settings.products);
    preload(&url, settings.products).await?;
    let mut statements = if settings.statements {
        Some(statements::Recorder::new(&url, &settings.out).await?)
    } else {
        None
    };

    let (mut targets, mut peers) = (Vec::new(), Vec::new());
    for contender in &settings.contenders {
        match contender {
            Contender::Pgbench => {}
            Contender::Strata => {
                targets.push((*contender, strata.pid(), load::connect(&strata_address).await?))
            }
            Contender::Stack => {
                targets.push((*contender, strata.pid(), load::connect_stack(&strata_address)?))
            }
            Contender::Python | Contender::Go => {
                eprintln!("bench: preparing the {} service", contender.name());
                let (server, address) = start_peer(*contender, &url)?;
                targets.push((*contender, server.pid(), load::connect(&address).await?));
                peers.push(server);
            }
        }
    }

    let round = Duration::from_secs_f64(settings.seconds / f64::from(settings.rounds));
    let mut points = Vec::new();
    for &workload in &settings.workloads {
        for &concurrency in &settings.concurrency {
            let mut samples: Vec<(Contender, Vec<Measured>)> =
                settings.contenders.iter().map(|c| (*c, Vec::new())).collect();
            for r in 0..settings.rounds {
                // Each round starts one contender later, so that no contender
                // always follows the same one (whose after-effects, such as
                // the autovacuum of a write-heavy round, would land on it).
                samples.rotate_left(usize::from(r > 0));
                for (contender, rounds) in &mut samples {
                    let load = load::Load {
                        workload,
                        concurrency,
                        products: settings.products,
                        versions: if workload == Workload::Update && *contender != Contender::Pgbench {
                            versions(&url, settings.products).await?
                        } else {
                            Vec::new()
                        },
                        tag: format!("bench-{}-{}-{r}", contender.name(), uuid::Uuid::now_v7().simple()),
                    };
                    if let Some(statements) = &mut statements {
                        statements.reset().await?;
                    }
                    let measured = if *contender == Contender::Pgbench {
                        let mut marks = Marks::new(&db, None);
                        let warmup = settings.warmup.max(Duration::from_secs(1));
                        let sample =
                            pgbench::run(&settings.out, &url, &load, warmup, round, || marks.mark())?;
                        marks.finish(sample)?
                    } else {
                        let (_, pid, channels) = targets
                            .iter()
                            .find(|(c, _, _)| c == contender)
                            .context("no target")?;
                        sys::reset_peak_rss(*pid);
                        let mut marks = Marks::new(&db, Some(*pid));
                        let sample =
                            load::run(channels, &load, settings.warmup, round, || marks.mark()).await?;
                        marks.finish(sample)?
                    };
                    eprintln!(
                        "bench: {:<6} c={:<3} {:<7} round {}: {:>8.0} req/s, p99 {:>6.2} ms, errors {}",
                        workload.name(),
                        concurrency,
                        contender.name(),
                        r + 1,
                        measured.rps,
                        measured.p99_ms,
                        measured.errors
                    );
                    if let Some(statements) = &mut statements {
                        let point = format!(
                            "{} c={concurrency} {} round {}",
                            workload.name(),
                            contender.name(),
                            r + 1
                        );
                        statements.record(&point).await?;
                    }
                    rounds.push(measured);
                }
            }
            samples.sort_by_key(|(contender, _)| *contender);
            for (contender, rounds) in samples {
                points.push(median(workload, concurrency, contender, rounds));
            }
        }
    }

    let info = report::RunInfo {
        seconds_per_point: settings.seconds,
        rounds: settings.rounds,
        products: settings.products,
        machine: format!(
            "{} cores, {} {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
        started,
    };
    let table = report::write_all(&settings.out, &info, &points)?;
    println!("{table}");
    eprintln!(
        "bench: done in {:.0} s; report in {}",
        began.elapsed().as_secs_f64(),
        settings.out.join("report.md").display()
    );
    drop(targets);
    drop(peers);
    drop(strata);
    drop(db);
    Ok(())
}

/// One round of one point, reduced to figures.
#[derive(Debug, Clone)]
struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    cpu_ms_per_1k: Option<f64>,
    db_cpu_ms_per_1k: f64,
    peak_rss_mib: Option<f64>,
    errors: u64,
}

/// CPU counters of the database and the serving process, read at the start and
/// the end of a measuring window.
struct Marks<'a> {
    db: &'a sys::Container,
    pid: Option<u32>,
    readings: Vec<(Duration, Option<Duration>)>,
    error: Option<anyhow::Error>,
}

impl<'a> Marks<'a> {
    fn new(db: &'a sys::Container, pid: Option<u32>) -> Self {
        Self {
            db,
            pid,
            readings: Vec::new(),
            error: None,
        }
    }

    fn mark(&mut self) {
        let reading = self
            .db
            .cpu()
            .and_then(|db| Ok((db, self.pid.map(cpu::process).transpose()?)));
        match reading {
            Ok(reading) => self.readings.push(reading),
            Err(error) => self.error = Some(error),
        }
    }

    fn finish(self, sample: load::Sample) -> anyhow::Result<Measured> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let [(db0, p0), (db1, p1)] = self.readings[..] else {
            bail!("the measuring window was not marked twice");
        };
        let per_1k = |cpu: Duration| cpu.as_secs_f64() * 1000.0 / (sample.completed.max(1) as f64 / 1000.0);
        let ms = |q: f64| sample.latency_us.value_at_quantile(q) as f64 / 1000.0;
        Ok(Measured {
            rps: sample.completed as f64 / sample.window.as_secs_f64(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            cpu_ms_per_1k: p0.zip(p1).map(|(a, b)| per_1k(b.saturating_sub(a))),
            db_cpu_ms_per_1k: per_1k(db1.saturating_sub(db0)),
            peak_rss_mib: self.pid.map(sys::peak_rss_mib).transpose()?,
            errors: sample.errors,
        })
    }
}

/// The median of each figure over the rounds (errors: the sum).
fn median(workload: Workload, concurrency: u32, contender: Contender, rounds: Vec<Measured>) -> Point {
    fn med(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        match values.len() {
            0 => 0.0,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }
    let of = |f: fn(&Measured) -> f64| med(rounds.iter().map(f).collect());
    let of_opt = |f: fn(&Measured) -> Option<f64>| {
        let values: Vec<f64> = rounds.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| med(values))
    };
    Point {
        workload,
        concurrency,
        contender,
        rps: of(|m| m.rps),
        p50_ms: of(|m| m.p50_ms),
        p99_ms: of(|m| m.p99_ms),
        p999_ms: of(|m| m.p999_ms),
        cpu_ms_per_1k: of_opt(|m| m.cpu_ms_per_1k),
        db_cpu_ms_per_1k: of(|m| m.db_cpu_ms_per_1k),
        // Peak memory: the highest of the rounds, not the median.
        peak_rss_mib: rounds.iter().filter_map(|m| m.peak_rss_mib).reduce(f64::max),
        errors: rounds.iter().map(|m| m.errors).sum(),
    }
}

async fn wait_for_postgres(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match PgConnection::connect(url).await {
            Ok(conn) => return Ok(conn.close().await?),
            Err(error) if Instant::now() > deadline => return Err(error).context("PostgreSQL did not start"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Inserts products 1..=n with the ids `load::product_id` gives, published at version 1.
async fn preload(url: &str, products: u32) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(
        "insert into catalog.product (id, sku, name, description, price_minor, currency, status, version, \
         created_at, updated_at) \
         select ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid, 'BENCH-' || n, 'Product ' || n, \
         'A product for benchmarking', 1000 + n, 'EUR', 'published', 1, now(), now() \
         from generate_series(1, $1) as n",
    )
    .bind(i64::from(products))
    .execute(&mut conn)
    .await?;
    sqlx::query("vacuum analyze catalog.product")
        .execute(&mut conn)
        .await?;
    Ok(conn.close().await?)
}

/// The current version of every preloaded product, by index n - 1.
async fn versions(url: &str, products: u32) -> anyhow::Result<Vec<u64>> {
    let mut conn = PgConnection::connect(url).await?;
    let rows = sqlx::query(
        "select n, p.version from generate_series(1, $1) as n \
         join catalog.product p on p.id = ('00000000-0000-7000-8000-' || lpad(n::text, 12, '0'))::uuid order by n",
    )
    .bind(i64::from(products))
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    rows.iter()
        .map(|row| Ok(u64::try_from(row.try_get::<i64, _>(1)?)?))
        .collect()
}

/// Prepares a service the bench compares Strata with (python: a venv under
/// target/bench; go: a GOPATH and a build under target/bench) and starts it on a
/// free port; returns it and its address.
fn start_peer(peer: Contender, url: &str) -> anyhow::Result<(sys::Server, String)> {
    let root = sys::repo_root();
    let mut command = match peer {
        Contender::Python => {
            let venv = root.join("target/bench/venv");
            let setup = root.join("bench/python/setup.sh");
            sys::run("bash", &[&setup.to_string_lossy(), &venv.to_string_lossy()])?;
            let mut command = Command::new(venv.join("bin/python"));
            command
                .arg(root.join("bench/python/server.py"))
                .arg("--gen")
                .arg(venv.join("gen"));
            command
        }
        Contender::Go => {
            let gopath = root.join("target/bench/go");
            let build = root.join("bench/go/build.sh");
            sys::run("bash", &[&build.to_string_lossy(), &gopath.to_string_lossy()])?;
            Command::new(gopath.join("bin/catalog-server"))
        }
        Contender::Pgbench | Contender::Strata | Contender::Stack => {
            bail!("{} is not a peer service", peer.name())
        }
    };
    command.args(["--listen", "127.0.0.1:0", "--dsn", url]);
    let (server, line) = sys::start_server(command, "listening on ")?;
    let address = line.split_whitespace().next().context("no address")?.to_owned();
    Ok((server, address))
}
