//! CPU time used so far: a process's from `/proc`, a container's from its
//! cgroup. Shared by `strata-bench` and `strata-load` (each takes the file
//! with `mod cpu`).

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::Context as _;

/// CPU time (user + system) a process has used so far.
pub(crate) fn process(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces: fields are counted after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
}

pub(crate) fn clock_ticks_per_second() -> f64 {
    // `getconf CLK_TCK`; 100 on every Linux this runs on, read once.
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU time (user + system) the container `id` has used so far, from its cgroup.
pub(crate) fn container(id: &str) -> anyhow::Result<Duration> {
    let file = cgroup_cpu_file(id).context("no cgroup CPU accounting found for the container")?;
    let text = std::fs::read_to_string(&file)?;
    if file.ends_with("cpu.stat") {
        // cgroup v2: `usage_usec N`
        let usec: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .context("no usage_usec")?
            .trim()
            .parse()?;
        Ok(Duration::from_micros(usec))
    } else {
        // cgroup v1: cpuacct.usage in nanoseconds
        Ok(Duration::from_nanos(text.trim().parse()?))
    }
}

/// Where the kernel accounts a container's CPU: cgroup v1 (cgroupfs or systemd
/// driver) or v2.
fn cgroup_cpu_file(id: &str) -> Option<PathBuf> {
    [
        format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpuacct/system.slice/docker-{id}.scope/cpuacct.usage"),
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
        format!("/sys/fs/cgroup/docker/{id}/cpu.stat"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}
