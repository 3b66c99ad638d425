//! The limit: `pgbench -M prepared` running the statements the catalog's
//! repository issues for the same operation, in the same transaction, against the
//! same database, at the same concurrency.

use std::{
    path::Path,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;

use crate::load::{Load, Sample};
use crate::model::Workload;

/// The id of product `:n` in SQL, as `load::product_id` builds it.
const ID: &str = "('00000000-0000-7000-8000-' || lpad(:n::text, 12, '0'))::uuid";

/// The columns the catalog selects for a product.
const COLUMNS: &str =
    "id, sku, name, description, price_minor, currency, status, version, created_at, updated_at";

/// The pgbench script of a workload: exactly the statements the data service
/// sends for one request (`domain/catalog/src/store.rs` over
/// `domain/store/src/postgres.rs`), with the values a request would bind.
pub(crate) fn script(workload: Workload, products: u32) -> String {
    match workload {
        // ProductRepository::get: one statement, the store's batched read by
        // id as a lone caller sends it (a batch of one; under load Strata's
        // batches carry more ids, which pgbench cannot).
        Workload::Get => format!(
            "\\set n random(1, {products})\n\
             select {COLUMNS} from product where id = any(array[{ID}]);\n"
        ),
        // ChangePrice with expected_version, two round trips:
        // 1. Store::load_for_command: the product and the idempotency record of
        //    the (fresh) request id, bound as a parameter like the service's, in
        //    one statement; the version read is the one the write checks (`\gset`).
        // 2. Store::write: the version-checked update, the idempotency record
        //    and the outbox row in one statement of CTEs, the event's position
        //    derived from the transaction id. Every value the service binds is
        //    bound here too (the `-D` variables of [`variables`], sent as
        //    parameters under `-M prepared`), so that PostgreSQL parses the
        //    recorded result, the fingerprint and the event's payload on every
        //    execution, as it does for the service. As literals they would be
        //    parsed once, when the plan is cached.
        Workload::Update => format!(
            "\\set n random(1, {products})\n\
             \\set price random(100, 99999)\n\
             \\set rid random(1, 2000000000)\n\
             select a.*, i.fingerprint, i.result from (select 1) as one \
             left join (select {COLUMNS} from product where id = {ID}) as a on true \
             left join idempotency as i on i.request_id = :rid \\gset p_\n\
             \\set next :p_version + 1\n\
             with changed as (update product set name = :name, description = :description, \
             price_minor = :price, currency = :currency, status = :status, version = :next, \
             updated_at = :at::timestamptz where id = {ID} and version = :p_version returning 1), \
             recorded as (insert into idempotency (request_id, fingerprint, result, created_at) \
             select gen_random_uuid()::text, :fingerprint::bytea, :result::jsonb, :at::timestamptz from changed), \
             events as (insert into outbox (position, event_id, aggregate_id, aggregate_version, event_type, payload, \
             occurred_at) select pg_current_xact_id()::text::int8 * 1024 + e.n, e.event_id, e.aggregate_id, \
             e.aggregate_version, e.event_type, e.payload::jsonb, e.occurred_at \
             from changed, unnest(array[gen_random_uuid()], array[{ID}], array[:next]::int8[], \
             array[:event_type]::text[], array[:payload]::text[], array[:at]::timestamptz[]) \
             with ordinality as e(event_id, aggregate_id, aggregate_version, event_type, payload, occurred_at, n)) \
             select count(*) from changed;\n"
        ),
    }
}

/// The values a workload's script binds (`pgbench -D name=value`), with the
/// sizes of what the service binds.
pub(crate) fn variables(workload: Workload) -> Vec<(&'static str, String)> {
    match workload {
        Workload::Get => Vec::new(),
        Workload::Update => vec![
            ("name", "Product".to_owned()),
            ("description", "A product for benchmarking".to_owned()),
            ("currency", "EUR".to_owned()),
            ("status", "published".to_owned()),
            ("at", "2026-11-24 06:00:00.123456+00".to_owned()),
            ("fingerprint", format!("\\x{}", "4368616e67655072696365".repeat(8))),
            (
                "result",
                "{\"v\":\"1\",\"product\":{\"id\":\"00000000-0000-7000-8000-000000000001\",\"sku\":\"BENCH-1\",\
                 \"name\":\"Product 1\",\"description\":\"A product for benchmarking\",\"price_minor\":1234,\
                 \"currency\":\"EUR\",\"status\":\"published\",\"version\":2,\
                 \"created_at\":\"2026-11-24T06:00:00.123456Z\",\"updated_at\":\"2026-11-24T06:00:00.123456Z\"}}"
                    .to_owned(),
            ),
            ("event_type", "catalog.product.price_changed".to_owned()),
            (
                "payload",
                "{\"type\":\"price_changed\",\"price_minor\":1234,\"currency\":\"EUR\"}".to_owned(),
            ),
        ],
    }
}

/// Runs pgbench with `load.concurrency` clients for `warmup` + `window` (+ a second of
/// tail), counting only transactions inside the window; `mark` is called at the
/// window's start and end.
pub(crate) fn run(
    dir: &Path,
    url: &str,
    load: &Load,
    warmup: Duration,
    window: Duration,
    mut mark: impl FnMut(),
) -> anyhow::Result<Sample> {
    let (workload, concurrency) = (load.workload, load.concurrency);
    let script_file = dir.join(format!("pgbench-{}.sql", workload.name()));
    std::fs::write(&script_file, script(workload, load.products))?;
    let logs = dir.join("pgbench-log");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let seconds = (warmup + window).as_secs_f64().ceil() as u64 + 1;
    let threads = concurrency.min(2);
    let started = SystemTime::now();
    let child = Command::new("pgbench")
        .env("PGOPTIONS", "-c search_path=catalog")
        .args(["-n", "-M", "prepared", "-l"])
        .args(
            variables(workload)
                .into_iter()
                .flat_map(|(name, value)| ["-D".to_owned(), format!("{name}={value}")]),
        )
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .args([
            "-c",
            &concurrency.to_string(),
            "-j",
            &threads.to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script_file)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run pgbench (install postgresql-client)")?;
    let start = started + warmup;
    let end = start + window;
    std::thread::sleep(start.duration_since(SystemTime::now()).unwrap_or_default());
    mark();
    std::thread::sleep(end.duration_since(SystemTime::now()).unwrap_or_default());
    mark();
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let failed: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);

    let (start_us, end_us) = (micros(start)?, micros(end)?);
    let mut sample = Sample {
        completed: 0,
        errors: failed,
        latency_us: Histogram::new(3)?,
        window,
    };
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            // client_id transaction_no latency_us script_no epoch_s epoch_us …
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(latency), Some(secs), Some(us)) = (fields.get(2), fields.get(4), fields.get(5)) else {
                continue;
            };
            // Failed transactions log a word instead of a latency; they are counted above.
            let (Ok(latency), Ok(secs), Ok(us)) =
                (latency.parse::<u64>(), secs.parse::<u64>(), us.parse::<u64>())
            else {
                continue;
            };
            let finished = secs * 1_000_000 + us;
            if finished <= end_us && finished.saturating_sub(latency) >= start_us {
                sample.completed += 1;
                sample.latency_us.record(latency)?;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
    Ok(sample)
}

fn micros(at: SystemTime) -> anyhow::Result<u64> {
    Ok(u64::try_from(at.duration_since(UNIX_EPOCH)?.as_micros())?)
}
