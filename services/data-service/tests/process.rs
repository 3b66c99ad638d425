//! The `data-service` binary as an operator runs it: configuration errors,
//! the address it prints, health, logs, and SIGTERM.
//!
//! No test here can hang: every read of the child's output has a timeout, and
//! the child is killed when its [`DataService`] guard is dropped (a failed
//! assertion included). The child gets none of the caller's `STRATA_*`
//! variables, so a developer's environment cannot change what is tested.

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const BIN: &str = env!("CARGO_BIN_EXE_data-service");

/// The longest any read of the child's output, or its exit, may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `data-service`, killed and reaped when dropped.
struct DataService {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl DataService {
    /// Starts the binary with `args` and `env`, and nothing of the caller's
    /// `STRATA_*` environment.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("STRATA_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line it prints on stdout.
    fn stdout_line(&self) -> String {
        match self.stdout.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no line on stdout within {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("stdout closed before a line"),
        }
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Waits for it to exit, then returns how, with every line it printed on
    /// stderr.
    fn exit(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        // std has no wait with a timeout; the child is polled, for a bounded time.
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running after {TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = Vec::new();
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => stderr.push(line),
                Err(RecvTimeoutError::Disconnected) => break (status, stderr),
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open after {TIMEOUT:?}"),
            }
        }
    }
}

impl Drop for DataService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines read from `pipe` by a thread of their own, so that a read can time
/// out; the receiver disconnects when the pipe closes.
fn lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A fresh directory for the embedded stores, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self(std::env::temp_dir().join(format!("strata-process-{}-{unique}", std::process::id())))
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The address from its first line, `data-service listening on <address> (…)`.
fn listening_address(service: &DataService) -> String {
    let line = service.stdout_line();
    line.strip_prefix("data-service listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned()
}

/// Asks health whether the catalog is served, on a runtime of its own that is
/// gone when this returns, with its connection: the tests block their thread
/// while they wait for the child, and a client left connected but never polled
/// would hold the child's drain until its timeout.
fn check_serving(address: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "strata.catalog.v1.ProductService".into(),
            })
            .await
            .unwrap()
    };
    let status = runtime.block_on(async { tokio::time::timeout(TIMEOUT, check).await.unwrap() });
    assert_eq!(status.into_inner().status(), ServingStatus::Serving);
}

#[test]
fn a_bad_setting_fails_at_start_with_one_line_naming_it() {
    // The arguments, the environment, and what the one line must name.
    type Env = &'static [(&'static str, &'static str)];
    let cases: [(&[&str], Env, &str); 5] = [
        (&[], &[("STRATA_LISTEN", "nowhere")], "STRATA_LISTEN"),
        (&[], &[("STRATA_CONTEXTS", "catalog,billing")], "STRATA_CONTEXTS"),
        (
            &[],
            &[("STRATA_CATALOG_DATABASE_URL", "mysql://db/shop")],
            "STRATA_CATALOG_DATABASE_URL",
        ),
        (
            &[],
            &[("STRATA_LOG_FORMAT", "yaml")],
            "--log-format (STRATA_LOG_FORMAT)",
        ),
        (&["--log-format", "JSON"], &[], "--log-format (STRATA_LOG_FORMAT)"),
    ];
    for (args, env, named) in cases {
        let (status, stderr) = DataService::start(args, env).exit();
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}");
        assert_eq!(stderr.len(), 1, "one line: {stderr:?}");
        assert!(stderr[0].contains(named), "{stderr:?}");
    }
}

#[test]
fn serves_prints_its_address_and_stops_on_sigterm() {
    let dir = DataDir::new();
    let mut service = DataService::start(
        &["--listen", "127.0.0.1:0", "--data-dir", dir.arg()],
        &[("RUST_LOG", "info")],
    );
    let address = listening_address(&service);
    assert!(
        dir.0.join("catalog.db").exists(),
        "the catalog's SQLite file is in the data dir"
    );
    check_serving(&address);

    service.terminate();
    let (status, stderr) = service.exit();
    assert!(status.success(), "a clean shutdown exits 0: {status:?}");
    assert!(
        stderr.iter().any(|line| line.contains("call ended")),
        "the health check is logged: {stderr:#?}"
    );
    assert!(
        stderr.iter().all(|line| !line.contains('\u{1b}')),
        "no colours when stderr is not a terminal: {stderr:#?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = DataDir::new();
    let mut service = DataService::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.arg(),
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "info")],
    );
    let address = listening_address(&service);
    check_serving(&address);
    service.terminate();
    let (status, stderr) = service.exit();
    assert!(status.success(), "{status:?}");

    let lines: Vec<serde_json::Value> = stderr
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines.iter().any(|line| line["message"] == "call ended"
            && line["span"]["grpc.method"] == "/grpc.health.v1.Health/Check"
            && line["grpc.code"] == "OK"
            && line["latency_ms"].is_number()),
        "the health check's line: {lines:#?}"
    );
}
