//! What the benchmark reads off the machine and drives through it: processes'
//! CPU time and peak memory from `/proc`, a container's CPU time from its
//! cgroup, and the PostgreSQL container itself.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

/// Resets the peak-RSS mark of a process (Linux `clear_refs`), so the next
/// [`peak_rss_mib`] covers only what follows. Best effort.
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The peak resident set size of a process (VmHWM), in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmHWM")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// A running container, removed when dropped.
#[derive(Debug)]
pub(crate) struct Container {
    pub(crate) id: String,
}

impl Container {
    /// Starts PostgreSQL from `image` with the given server settings on the host's
    /// network, listening on a free loopback port; returns it and that port.
    ///
    /// Host networking keeps Docker's userland proxy (whose CPU no one would
    /// account for) out of every round trip, for every contender alike.
    pub(crate) fn start_postgres(image: &str, settings: &[&str]) -> anyhow::Result<(Self, u16)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let port_setting = format!("port={port}");
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "host",
            "-e",
            "POSTGRES_PASSWORD=postgres",
            image,
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &port_setting,
        ];
        for setting in settings {
            args.extend(["-c", setting]);
        }
        let id = run("docker", &args)?;
        let container = Self { id };
        Ok((container, port))
    }

    /// CPU time the container has used so far, from its cgroup.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        crate::cpu::container(&self.id)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a command to completion; its trimmed stdout, or an error with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// A child process killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` and waits for a stdout line starting with `prefix`; returns
/// the server and the rest of that line.
pub(crate) fn start_server(mut command: Command, prefix: &str) -> anyhow::Result<(Server, String)> {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server { child };
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.strip_prefix(prefix) {
            let rest = rest.to_owned();
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Ok((server, rest));
        }
    }
    bail!("{command:?} exited before printing {prefix:?}")
}

/// The repository's root, from this crate's manifest directory.
pub(crate) fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
