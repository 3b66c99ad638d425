//! A Strata binary run as an operator runs it, for tests: its output read line
//! by line with timeouts, signals sent for real, and the child killed and
//! reaped when the guard is dropped (a failed assertion included), so no test
//! can hang or leave a process behind. The child gets none of the caller's
//! `STRATA_*` variables, so a developer's environment cannot change what is
//! tested.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Mutex,
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

/// The longest any read of the child's output, or its exit, may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A running binary, killed and reaped when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    // Behind locks so that a test can share the guard between tasks.
    stdout: Mutex<Receiver<String>>,
    stderr: Mutex<Receiver<String>>,
}

impl Process {
    /// Starts `bin` with `args` and `env`, and nothing of the caller's
    /// `STRATA_*` or `OTEL_*` environment (a developer's collector gets no
    /// test's spans).
    ///
    /// # Panics
    /// When it cannot be started.
    #[must_use]
    pub fn start(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin);
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("STRATA_") || name_text.starts_with("OTEL_") {
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
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = lines(child.stdout.take().expect("piped stdout"));
        let stderr = lines(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            stdout: Mutex::new(stdout),
            stderr: Mutex::new(stderr),
        }
    }

    /// The next line it prints on stdout.
    ///
    /// # Panics
    /// When none comes within [`TIMEOUT`].
    #[must_use]
    pub fn stdout_line(&self) -> String {
        match lock(&self.stdout).recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no line on stdout within {TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "stdout closed before a line; stderr:\n{}",
                    self.stderr_so_far().join("\n")
                )
            }
        }
    }

    /// What follows `prefix` on the first stdout line that starts with it
    /// (earlier lines are skipped).
    ///
    /// # Panics
    /// When no such line comes within [`TIMEOUT`].
    #[must_use]
    pub fn wait_for_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match lock(&self.stdout).recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(_) => panic!(
                    "no stdout line starting with {prefix:?} within {TIMEOUT:?}; stderr:\n{}",
                    self.stderr_so_far().join("\n")
                ),
            }
        }
    }

    /// Returns once it prints a stderr line containing `text` (earlier lines
    /// are skipped).
    ///
    /// # Panics
    /// When no such line comes within [`TIMEOUT`].
    pub fn wait_for_stderr(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match lock(&self.stderr).recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("no stderr line containing {text:?} within {TIMEOUT:?}"),
            }
        }
    }

    /// The lines it printed on stderr since the last call.
    #[must_use]
    pub fn stderr_so_far(&self) -> Vec<String> {
        lock(&self.stderr).try_iter().collect()
    }

    /// Its process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`…).
    ///
    /// # Panics
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Kills it (SIGKILL: no clean-up of any kind) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit, then returns how, with every line it printed on
    /// stderr (since the last [`Process::stderr_so_far`]).
    ///
    /// # Panics
    /// When it does not exit within [`TIMEOUT`].
    pub fn exit(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        // std has no wait with a timeout; the child is polled, for a bounded time.
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                break status;
            }
            assert!(Instant::now() < deadline, "still running after {TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = Vec::new();
        loop {
            match lock(&self.stderr).recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => stderr.push(line),
                Err(RecvTimeoutError::Disconnected) => break (status, stderr),
                Err(RecvTimeoutError::Timeout) => panic!("stderr still open after {TIMEOUT:?}"),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// A binary of the workspace, built beside the running test (in the same
/// target directory and profile): `make test` builds every binary first.
///
/// # Panics
/// When it has not been built.
#[must_use]
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --bins` first (`make test` does)",
        bin.display()
    );
    bin
}

/// A fresh directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    ///
    /// # Panics
    /// When it cannot be created.
    #[must_use]
    pub fn new(purpose: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("strata-{purpose}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        Self(dir)
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Its path as a command-line argument.
    #[must_use]
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
