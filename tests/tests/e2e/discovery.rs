//! Registration and discovery on a real etcd (Debian's `etcd-server`, started
//! here on loopback), with real data-service processes killed and stopped for
//! real under a steady stream of queries from a client that knows only etcd.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use strata_proto::catalog::v1::{self as pb, product_service_client::ProductServiceClient};
use strata_rpc::{
    client::{Call, RpcChannel, ServiceToken},
    registry::{self, Etcd},
};
use strata_testkit::{
    TestPostgres,
    process::{Process, TempDir},
};
use tokio::sync::{Mutex, mpsc};

use super::shop::{SERVICE_TOKEN, start_data_service};

/// The lease TTL the data services register with: the default. (With 2 s,
/// a machine loaded by the rest of the suite delayed keep-alives enough for
/// leases to expire and registrations to flap.)
const TTL: Duration = Duration::from_secs(5);

/// An etcd server of its own on loopback, with its data in a temporary
/// directory; killed when dropped.
struct EtcdServer {
    process: Option<Process>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdServer {
    fn start() -> Self {
        let mut etcd = Self {
            process: None,
            dir: TempDir::new("etcd"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.run();
        etcd
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd and returns once it serves clients.
    fn run(&mut self) {
        let bin = std::path::Path::new("/usr/bin/etcd");
        let bin = if bin.exists() {
            bin.to_path_buf()
        } else {
            // Wherever PATH has it (`make test` installs Debian's package).
            std::path::PathBuf::from("etcd")
        };
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let cluster = format!("strata-test={peer}");
        let data = self.dir.path().join("data");
        let process = Process::start(
            &bin,
            &[
                "--name",
                "strata-test",
                "--data-dir",
                data.to_str().unwrap(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &cluster,
            ],
            &[],
        );
        process.wait_for_stderr("ready to serve client requests");
        self.process = Some(process);
    }

    /// `kill -9`, its data wiped (every lease and key lost), and started
    /// again on the same ports.
    fn restart_empty(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        std::fs::remove_dir_all(self.dir.path().join("data")).unwrap();
        self.run();
    }
}

/// A data service hosting the catalog, registered in `etcd`: its process,
/// address and `/metrics` URL.
struct Replica {
    process: Process,
    address: String,
    metrics: String,
}

fn replica(database_url: &str, etcd: &EtcdServer) -> Replica {
    let (process, address) = start_data_service(
        database_url,
        "catalog",
        &[
            ("STRATA_REGISTRY", etcd.url()),
            ("STRATA_REGISTRY_TTL_SECS", TTL.as_secs().to_string()),
            ("STRATA_METRICS_LISTEN", "127.0.0.1:0".to_owned()),
            ("STRATA_SHUTDOWN_GRACE_MS", "1000".to_owned()),
        ],
    );
    let metrics = process.wait_for_line("data-service metrics on ");
    Replica {
        process,
        address,
        metrics,
    }
}

impl Replica {
    async fn metrics_text(&self) -> String {
        reqwest::get(&self.metrics).await.unwrap().text().await.unwrap()
    }

    /// GetProduct calls it answered OK, from its own `/metrics`.
    async fn gets_served(&self) -> u64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| {
                l.starts_with("strata_rpc_server_calls_total{")
                    && l.contains("method=\"GetProduct\"")
                    && l.contains("code=\"OK\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// What the registry says about the catalog, as a caller's discovery sees it.
struct Watcher {
    sets: mpsc::Receiver<BTreeSet<String>>,
    last: BTreeSet<String>,
}

impl Watcher {
    fn new(etcd: &EtcdServer) -> Self {
        Self {
            sets: registry::discover(Etcd::new(&etcd.url()).unwrap(), "catalog"),
            last: BTreeSet::new(),
        }
    }

    /// Waits (at most `within`) until the registered set is `want`; returns
    /// how long it took.
    async fn until(&mut self, want: &[&str], within: Duration) -> Duration {
        let want: BTreeSet<String> = want.iter().map(|a| (*a).to_owned()).collect();
        let start = Instant::now();
        while self.last != want {
            match tokio::time::timeout(within.saturating_sub(start.elapsed()), self.sets.recv()).await {
                Ok(Some(set)) => self.last = set,
                Ok(None) => panic!("discovery stopped"),
                Err(_) => panic!("registered: {:?}, not {want:?}, after {within:?}", self.last),
            }
        }
        start.elapsed()
    }
}

/// Queries running without pause from four callers over one client, counting
/// what succeeded and keeping what failed.
struct Stream {
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<tonic::Status>>>,
    stop: Arc<AtomicBool>,
    callers: Vec<tokio::task::JoinHandle<()>>,
}

impl Stream {
    fn start(client: &ProductServiceClient<RpcChannel>, id: &str) -> Self {
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let callers = (0..4)
            .map(|_| {
                let (mut client, id) = (client.clone(), id.to_owned());
                let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match get(&mut client, &id).await {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(status) => {
                                failed.lock().await.push(status);
                                0
                            }
                        };
                    }
                })
            })
            .collect();
        Self {
            ok,
            failed,
            stop,
            callers,
        }
    }

    /// Returns once `more` further queries have succeeded (bounded).
    async fn more(&self, more: usize) {
        let target = self.ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "queries stalled");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn failures(&self) -> Vec<tonic::Status> {
        self.failed.lock().await.clone()
    }

    async fn stop(self) -> (usize, Vec<tonic::Status>) {
        self.stop.store(true, Ordering::Relaxed);
        for caller in self.callers {
            caller.await.unwrap();
        }
        let failed = self.failed.lock().await.clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

async fn get(client: &mut ProductServiceClient<RpcChannel>, id: &str) -> Result<pb::Product, tonic::Status> {
    let call = Call::new("discovery-test", Duration::from_secs(5), Duration::from_secs(5));
    let request = call.request(pb::GetProductRequest { id: id.to_owned() });
    call.run(client.get_product(request))
        .await
        .map(|r| r.product.unwrap())
}

fn client_of(etcd: &EtcdServer) -> ProductServiceClient<RpcChannel> {
    let token = ServiceToken::new(Some(SERVICE_TOKEN)).unwrap();
    ProductServiceClient::new(strata_rpc::client::channel("catalog", &etcd.url(), token).unwrap())
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_found_in_etcd_survive_a_crash_a_rolling_restart_and_etcd_losing_everything() {
    let pg = TestPostgres::start().await.unwrap();
    let database_url = pg.fresh_database().await.unwrap();
    let mut etcd = block(EtcdServer::start);
    let mut watcher = Watcher::new(&etcd);

    // Two replicas register; a client that knows only etcd sees both.
    let mut a = block(|| replica(&database_url, &etcd));
    let b = block(|| replica(&database_url, &etcd));
    watcher
        .until(&[&a.address, &b.address], Duration::from_secs(10))
        .await;
    let mut client = client_of(&etcd);
    let created = {
        let call = Call::new("discovery-test", Duration::from_secs(10), Duration::from_secs(10));
        let request = call.request(pb::CreateProductRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            sku: "DISCO-1".into(),
            name: "Mirror ball".into(),
            description: "Spins".into(),
            price: Some(strata_proto::r#type::v1::Money {
                currency_code: "EUR".into(),
                amount_minor: 4200,
            }),
        });
        call.run(client.create_product(request))
            .await
            .unwrap()
            .product
            .unwrap()
    };

    // Each keeps the one lease it was granted, beat after beat, past two
    // TTLs (a keep-alive that never got going lost the lease every few
    // seconds, and a new one was granted each time).
    tokio::time::sleep(TTL * 2).await;
    for replica in [&a, &b] {
        let text = replica.metrics_text().await;
        assert!(
            text.contains("strata_registry_registrations_total 1\n"),
            "one registration per replica: {}",
            text.lines()
                .filter(|l| l.contains("registr"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // Each replica takes a share of the queries.
    for _ in 0..200 {
        get(&mut client, &created.id).await.unwrap();
    }
    let (on_a, on_b) = (a.gets_served().await, b.gets_served().await);
    // A read slower than the 95th percentile is hedged: a few more calls.
    assert!((200..=240).contains(&(on_a + on_b)), "{on_a} + {on_b}");
    assert!(
        on_a >= 40 && on_b >= 40,
        "each replica takes a share: {on_a} and {on_b}"
    );

    // A is killed (-9) under a steady stream of queries: none fails, and its
    // registration vanishes within the lease's TTL.
    let stream = Stream::start(&client, &created.id);
    stream.more(100).await;
    let killed = Instant::now();
    block(|| a.process.kill());
    let gone = watcher.until(&[&b.address], TTL * 2).await;
    let vanished = killed.elapsed();
    stream.more(200).await;
    let failed = stream.failures().await;
    if !failed.is_empty() {
        let text = strata_rpc::metrics::render();
        eprintln!("A={} B={}", a.address, b.address);
        for line in text
            .lines()
            .filter(|l| l.contains("breaker") || l.contains("client_calls"))
        {
            eprintln!("{line}");
        }
    }
    assert!(
        failed.is_empty(),
        "{} queries failed at the crash: {:?}",
        failed.len(),
        failed
            .iter()
            .map(|s| s.message().to_owned())
            .collect::<std::collections::BTreeSet<_>>(),
    );
    assert!(
        vanished <= TTL + Duration::from_secs(2),
        "the crashed replica's keys vanished after {vanished:?} (TTL {TTL:?}; seen after {gone:?})"
    );
    eprintln!("crash: registration gone after {vanished:?}");

    // Rolling restart: C starts, then B is stopped (SIGTERM): it deregisters
    // first and serves what was already sent to it. No query fails.
    let c = block(|| replica(&database_url, &etcd));
    watcher
        .until(&[&b.address, &c.address], Duration::from_secs(10))
        .await;
    stream.more(100).await;
    let served_by_c = c.gets_served().await;
    b.process.terminate();
    let deregistered = watcher.until(&[&c.address], TTL + Duration::from_secs(2)).await;
    eprintln!("rolling restart: B out of the registry {deregistered:?} after SIGTERM");
    let (status, _) = block(|| {
        let mut process = b.process;
        process.exit()
    });
    assert!(status.success(), "B stopped cleanly: {status:?}");
    stream.more(200).await;
    let failed = stream.failures().await;
    assert!(
        failed.is_empty(),
        "{} queries failed in the rolling restart: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(c.gets_served().await > served_by_c, "C took over");

    // A client started now finds C through etcd alone.
    let mut late = client_of(&etcd);
    assert_eq!(get(&mut late, &created.id).await.unwrap().id, created.id);

    // etcd is killed and comes back empty: the queries go on with the
    // endpoints known, and C registers again by itself.
    block(|| etcd.restart_empty());
    let mut after = Watcher::new(&etcd);
    let back = after.until(&[&c.address], Duration::from_secs(15)).await;
    eprintln!("etcd restarted empty: registration back after {back:?}");
    stream.more(100).await;
    let (ok, failed) = stream.stop().await;
    assert!(
        failed.is_empty(),
        "{} of {} queries failed: {:?}",
        failed.len(),
        ok + failed.len(),
        failed.first()
    );
    eprintln!("{ok} queries, none failed, through a crash, a rolling restart and an etcd restart");

    // A replica added after the restart is found by the old client too (its
    // watch was re-established).
    let d = block(|| replica(&database_url, &etcd));
    after
        .until(&[&c.address, &d.address], Duration::from_secs(10))
        .await;
    let before = d.gets_served().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.gets_served().await == before {
        assert!(
            Instant::now() < deadline,
            "the first client never sent a query to D"
        );
        for _ in 0..20 {
            get(&mut client, &created.id).await.unwrap();
        }
    }
}
