//! What a benchmark run measures: one [`Point`] per workload × concurrency ×
//! contender, the median of its interleaved rounds.

use serde::Serialize;

/// Who served the requests of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Contender {
    /// `pgbench -M prepared` running the repository's own SQL: the limit.
    Pgbench,
    /// The Strata data service.
    Strata,
    /// The plain Python implementation (grpcio asyncio + asyncpg) Strata replaces.
    Python,
    /// The plain Go implementation (grpc-go + pgx's pool): the peer that
    /// go-zero and Kratos users run.
    Go,
    /// The same Strata data service, called through Strata's own client stack
    /// (`strata_rpc::client`: deadline and request id per call, retry policy,
    /// hedging, breakers, p2c balancing) instead of a bare tonic channel: what
    /// the stack adds to a caller's latency.
    Stack,
}

impl Contender {
    /// Every contender, in report order.
    pub(crate) const ALL: [Self; 5] = [Self::Pgbench, Self::Strata, Self::Python, Self::Go, Self::Stack];

    /// Its name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pgbench => "pgbench",
            Self::Strata => "strata",
            Self::Python => "python",
            Self::Go => "go",
            Self::Stack => "stack",
        }
    }
}

/// The operation a point measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Workload {
    /// `GetProduct` by random id (pgbench: the same single-row SELECT).
    Get,
    /// `ChangePrice` with `expected_version` and `request_id`: aggregate row,
    /// outbox row and idempotency record in one transaction.
    Update,
}

impl Workload {
    /// Its name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Update => "update",
        }
    }
}

/// One measured point; the field names are the report's JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Point {
    pub(crate) workload: Workload,
    pub(crate) concurrency: u32,
    pub(crate) contender: Contender,
    /// Completed requests (pgbench: transactions) per second.
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    /// CPU time of the serving process per 1 000 requests, in ms; `None` for
    /// pgbench, which has no serving process between client and database.
    pub(crate) cpu_ms_per_1k: Option<f64>,
    /// CPU time of the database server (its container's cgroup) per 1 000 requests, in ms.
    pub(crate) db_cpu_ms_per_1k: f64,
    /// Peak resident memory of the serving process during the point, in MiB;
    /// `None` for pgbench.
    pub(crate) peak_rss_mib: Option<f64>,
    /// Failed requests; must be zero.
    pub(crate) errors: u64,
}
