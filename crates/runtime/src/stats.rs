//! Container resource statistics in Docker's `GET /containers/{id}/stats` shape, read from
//! the container's cgroup (v1 or v2) and /proc.
//!
//! Every reader takes its root (`/sys/fs/cgroup`, `/proc`) as an argument so the parsers are
//! tested against fake trees. Files that are missing or unreadable leave their fields at
//! zero, as dockerd does when a controller is not enabled: a partial sample beats an error.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Go's zero `time.Time`, which docker sends for an unset `read`/`preread`.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Linux reports cpuacct.stat and /proc/stat in USER_HZ ticks, fixed at 100 for userspace.
const CLOCK_TICKS: u64 = 100;
const NS_PER_SEC: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The container's cgroup is gone (the container stopped meanwhile).
    #[error("cgroup {0} not found")]
    NoCgroup(String),
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// One stats object (moby's `container.StatsResponse`, same field order and omitempty rules).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub read: String,
    pub preread: String,
    #[serde(default)]
    pub pids_stats: PidsStats,
    #[serde(default)]
    pub blkio_stats: BlkioStats,
    #[serde(default)]
    pub num_procs: u32,
    #[serde(default)]
    pub storage_stats: StorageStats,
    #[serde(default)]
    pub cpu_stats: CpuStats,
    #[serde(default)]
    pub precpu_stats: CpuStats,
    #[serde(default)]
    pub memory_stats: MemoryStats,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, NetworkStats>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            read: ZERO_TIME.into(),
            preread: ZERO_TIME.into(),
            pids_stats: PidsStats::default(),
            blkio_stats: BlkioStats::default(),
            num_procs: 0,
            storage_stats: StorageStats::default(),
            cpu_stats: CpuStats::default(),
            precpu_stats: CpuStats::default(),
            memory_stats: MemoryStats::default(),
            name: String::new(),
            id: String::new(),
            networks: BTreeMap::new(),
        }
    }
}

impl Stats {
    /// What docker sends for a container that is not running: names and zeroes.
    pub fn zeroed(name: &str, id: &str) -> Stats {
        Stats {
            name: name.to_string(),
            id: id.to_string(),
            ..Default::default()
        }
    }

    /// Makes `prev` this sample's previous one (precpu_stats and preread), as docker does
    /// between consecutive samples of a stream.
    pub fn follow(&mut self, prev: &Stats) {
        self.precpu_stats = prev.cpu_stats.clone();
        self.preread = prev.read.clone();
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PidsStats {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub current: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioStatEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// Go nil slices are `null`: v2 only fills io_service_bytes_recursive, v1 gives `[]`s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioStats {
    #[serde(default)]
    pub io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub io_time_recursive: Option<Vec<BlkioStatEntry>>,
    #[serde(default)]
    pub sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

/// Windows-only in docker; always `{}` on Linux.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageStats {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    pub total_usage: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_usage: Vec<u64>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    #[serde(default)]
    pub cpu_usage: CpuUsage,
    /// Host CPU time in ns since boot (all CPUs), from /proc/stat.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub system_cpu_usage: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub online_cpus: u32,
    #[serde(default)]
    pub throttling_data: ThrottlingData,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max_usage: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub failcnt: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Where the host's cgroup and proc filesystems are mounted.
#[derive(Clone, Debug)]
pub struct Host {
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            cgroup_root: "/sys/fs/cgroup".into(),
            proc_root: "/proc".into(),
        }
    }
}

/// A container's cgroup directories.
#[derive(Clone, Debug, PartialEq)]
pub enum Cgroup {
    /// One directory per v1 controller (None when that hierarchy is not mounted).
    V1 {
        memory: Option<PathBuf>,
        cpu: Option<PathBuf>,
        cpuacct: Option<PathBuf>,
        pids: Option<PathBuf>,
        blkio: Option<PathBuf>,
    },
    V2(PathBuf),
}

impl Cgroup {
    /// Finds the directories of `cgroup_path` ("/parent/id") under `root`: the unified
    /// hierarchy when `root` is a cgroup2 mount, else each v1 controller's hierarchy
    /// (cpu and cpuacct may be co-mounted as "cpu,cpuacct"). None when the cgroup is gone.
    pub fn locate(root: &Path, cgroup_path: &str) -> Option<Cgroup> {
        let rel = cgroup_path.trim_matches('/');
        if root.join("cgroup.controllers").exists() {
            let dir = root.join(rel);
            return dir.is_dir().then_some(Cgroup::V2(dir));
        }
        let find = |names: &[&str]| {
            names
                .iter()
                .map(|n| root.join(n).join(rel))
                .find(|p| p.is_dir())
        };
        let cg = Cgroup::V1 {
            memory: find(&["memory"]),
            cpu: find(&["cpu", "cpu,cpuacct", "cpuacct,cpu"]),
            cpuacct: find(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]),
            pids: find(&["pids"]),
            blkio: find(&["blkio"]),
        };
        match &cg {
            Cgroup::V1 {
                memory: None,
                cpu: None,
                cpuacct: None,
                pids: None,
                blkio: None,
            } => None,
            _ => Some(cg),
        }
    }
}

/// The parts of a sample that come from the cgroup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// A limit file: a number, or "max" (v2) for none, reported as 0.
fn read_limit(dir: &Path, file: &str) -> u64 {
    read(dir, file)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .map(|s| parse_flat_keyed(&s))
        .unwrap_or_default()
}

/// v1 blkio.throttle.* files: "MAJ:MIN Op value" lines; the closing "Total N" is skipped.
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioStatEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 {
                return None;
            }
            let (maj, min) = f[0].split_once(':')?;
            Some(BlkioStatEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// v2 io.stat: "MAJ:MIN rbytes=.. wbytes=.. ..." lines, as docker's read/write entries.
pub fn parse_io_stat_v2(text: &str) -> Vec<BlkioStatEntry> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        let kv: BTreeMap<&str, u64> = it
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        for (op, key) in [("read", "rbytes"), ("write", "wbytes")] {
            out.push(BlkioStatEntry {
                major,
                minor,
                op: op.into(),
                value: kv.get(key).copied().unwrap_or(0),
            });
        }
    }
    out
}

/// Counts the processes in a cgroup: the pids count when the pids controller is absent.
fn count_procs(dir: &Path) -> u64 {
    read(dir, "cgroup.procs")
        .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Caps an unlimited (or larger than the host) memory limit at the host's memory, as docker
/// reports it.
fn cap_limit(limit: u64, machine_memory: u64) -> u64 {
    if machine_memory > 0 && (limit == 0 || limit > machine_memory) {
        machine_memory
    } else {
        limit
    }
}

/// Reads a v1 cgroup's counters.
pub fn read_v1(
    memory: Option<&Path>,
    cpu: Option<&Path>,
    cpuacct: Option<&Path>,
    pids: Option<&Path>,
    blkio: Option<&Path>,
    machine_memory: u64,
) -> CgroupStats {
    let mut s = CgroupStats::default();
    if let Some(d) = cpuacct {
        s.cpu.cpu_usage.total_usage = read_u64(d, "cpuacct.usage").unwrap_or(0);
        s.cpu.cpu_usage.percpu_usage = read(d, "cpuacct.usage_percpu")
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let st = keyed(d, "cpuacct.stat");
        let ns = |k: &str| st.get(k).copied().unwrap_or(0) * NS_PER_SEC / CLOCK_TICKS;
        s.cpu.cpu_usage.usage_in_usermode = ns("user");
        s.cpu.cpu_usage.usage_in_kernelmode = ns("system");
    }
    if let Some(d) = cpu {
        let st = keyed(d, "cpu.stat");
        let g = |k: &str| st.get(k).copied().unwrap_or(0);
        s.cpu.throttling_data = ThrottlingData {
            periods: g("nr_periods"),
            throttled_periods: g("nr_throttled"),
            throttled_time: g("throttled_time"),
        };
    }
    if let Some(d) = memory {
        s.memory = MemoryStats {
            usage: read_u64(d, "memory.usage_in_bytes").unwrap_or(0),
            max_usage: read_u64(d, "memory.max_usage_in_bytes").unwrap_or(0),
            stats: keyed(d, "memory.stat"),
            failcnt: read_u64(d, "memory.failcnt").unwrap_or(0),
            limit: cap_limit(read_limit(d, "memory.limit_in_bytes"), machine_memory),
        };
    }
    match pids {
        Some(d) => {
            s.pids = PidsStats {
                current: read_u64(d, "pids.current").unwrap_or(0),
                limit: read_limit(d, "pids.max"),
            }
        }
        None => {
            if let Some(d) = memory.or(cpuacct) {
                s.pids.current = count_procs(d);
            }
        }
    }
    // containerd (hence docker) reports the throttle counters, and empty lists (not null)
    // for the CFQ-only ones.
    let empty = Some(Vec::new());
    s.blkio = BlkioStats {
        io_service_bytes_recursive: empty.clone(),
        io_serviced_recursive: empty.clone(),
        io_queue_recursive: empty.clone(),
        io_service_time_recursive: empty.clone(),
        io_wait_time_recursive: empty.clone(),
        io_merged_recursive: empty.clone(),
        io_time_recursive: empty.clone(),
        sectors_recursive: empty,
    };
    if let Some(d) = blkio {
        let entries = |f: &str| read(d, f).map(|t| parse_blkio_v1(&t)).unwrap_or_default();
        s.blkio.io_service_bytes_recursive = Some(entries("blkio.throttle.io_service_bytes"));
        s.blkio.io_serviced_recursive = Some(entries("blkio.throttle.io_serviced"));
    }
    s
}

/// Reads a v2 cgroup's counters (controllers that are not enabled leave their part empty).
pub fn read_v2(dir: &Path, machine_memory: u64) -> CgroupStats {
    let mut s = CgroupStats::default();
    let cpu = keyed(dir, "cpu.stat");
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    s.cpu.cpu_usage = CpuUsage {
        total_usage: us("usage_usec"),
        percpu_usage: Vec::new(),
        usage_in_kernelmode: us("system_usec"),
        usage_in_usermode: us("user_usec"),
    };
    s.cpu.throttling_data = ThrottlingData {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    if let Some(usage) = read_u64(dir, "memory.current") {
        s.memory = MemoryStats {
            usage,
            max_usage: 0,
            stats: keyed(dir, "memory.stat"),
            failcnt: keyed(dir, "memory.events").get("oom").copied().unwrap_or(0),
            limit: cap_limit(read_limit(dir, "memory.max"), machine_memory),
        };
    }
    s.pids = match read_u64(dir, "pids.current") {
        Some(current) => PidsStats {
            current,
            limit: read_limit(dir, "pids.max"),
        },
        None => PidsStats {
            current: count_procs(dir),
            limit: 0,
        },
    };
    if let Some(t) = read(dir, "io.stat") {
        let e = parse_io_stat_v2(&t);
        // docker leaves the list nil (null) when there is no device line.
        s.blkio.io_service_bytes_recursive = (!e.is_empty()).then_some(e);
    }
    s
}

/// Reads whichever layout `cg` is.
pub fn read_cgroup(cg: &Cgroup, machine_memory: u64) -> CgroupStats {
    match cg {
        Cgroup::V1 {
            memory,
            cpu,
            cpuacct,
            pids,
            blkio,
        } => read_v1(
            memory.as_deref(),
            cpu.as_deref(),
            cpuacct.as_deref(),
            pids.as_deref(),
            blkio.as_deref(),
            machine_memory,
        ),
        Cgroup::V2(d) => read_v2(d, machine_memory),
    }
}

/// /proc/stat: the host's CPU time in ns (user..softirq, as docker sums it) and the number
/// of online CPUs (the "cpuN" lines).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    let mut total = None;
    let mut cpus = 0u32;
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("cpu") else {
            break;
        };
        if rest.starts_with(' ') {
            let f: Vec<u64> = rest
                .split_whitespace()
                .take(7)
                .map(|v| v.parse().ok())
                .collect::<Option<Vec<u64>>>()?;
            if f.len() < 7 {
                return None;
            }
            let ticks: u64 = f.iter().sum();
            total = Some(ticks.saturating_mul(NS_PER_SEC) / CLOCK_TICKS);
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            cpus += 1;
        }
    }
    Some((total?, cpus))
}

/// /proc/meminfo's MemTotal in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("MemTotal:")?;
        let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// /proc/<pid>/net/dev: counters by interface, without the loopback (docker reports the
/// sandbox's interfaces only).
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    let mut out = BTreeMap::new();
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" || name.is_empty() {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            NetworkStats {
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            },
        );
    }
    out
}

/// Takes one sample of the container in cgroup `cgroup_path`. `net_pid` is a process in
/// the container's own network namespace, when it has one. `name`, `id`, `preread` and
/// `precpu_stats` are the caller's (see [`Stats::follow`]).
pub fn sample(host: &Host, cgroup_path: &str, net_pid: Option<i32>) -> Result<Stats, StatsError> {
    let cg = Cgroup::locate(&host.cgroup_root, cgroup_path)
        .ok_or_else(|| StatsError::NoCgroup(cgroup_path.to_string()))?;
    let machine_memory = read(&host.proc_root, "meminfo")
        .and_then(|t| parse_meminfo_total(&t))
        .unwrap_or(0);
    let read_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let c = read_cgroup(&cg, machine_memory);
    // Sampled right after the container's usage so the two deltas cover the same interval.
    let (system, online) = read(&host.proc_root, "stat")
        .and_then(|t| parse_proc_stat(&t))
        .unwrap_or((0, 0));
    let mut cpu = c.cpu;
    cpu.system_cpu_usage = system;
    cpu.online_cpus = online;
    let networks = match net_pid {
        Some(pid) if pid > 0 => read(&host.proc_root.join(pid.to_string()), "net/dev")
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    Ok(Stats {
        read: read_at,
        pids_stats: c.pids,
        blkio_stats: c.blkio,
        cpu_stats: cpu,
        memory_stats: c.memory,
        networks,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (f, t) in files {
            fs::write(dir.join(f), t).unwrap();
        }
    }

    const MEMINFO: &str = "MemTotal:        8000000 kB\nMemFree:         1000 kB\n";
    const PROC_STAT: &str = "cpu  200 0 100 600 50 0 50 7 0 0\ncpu0 100 0 50 300 25 0 25 0 0 0\n\
cpu1 100 0 50 300 25 0 25 7 0 0\nintr 1 2 3\nctxt 99\n";
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   90367     926    0    0    0     0          0         0    90367     926    0    0    0     0       0          0
  eth0:    1296      16    1    2    0     0          0         0      796      10    3    4    0     0       0          0
";

    fn proc_tree(root: &Path) {
        write(root, &[("meminfo", MEMINFO), ("stat", PROC_STAT)]);
        write(&root.join("42/net"), &[("dev", NET_DEV)]);
    }

    #[test]
    fn proc_parsers() {
        // (200+0+100+600+50+0+50) ticks of 10 ms each.
        assert_eq!(parse_proc_stat(PROC_STAT), Some((10_000_000_000, 2)));
        assert_eq!(parse_proc_stat("cpu 1 2\n"), None);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_meminfo_total(MEMINFO), Some(8_192_000_000));
        let n = parse_net_dev(NET_DEV);
        assert_eq!(n.len(), 1, "lo is left out");
        assert_eq!(
            n["eth0"],
            NetworkStats {
                rx_bytes: 1296,
                rx_packets: 16,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 796,
                tx_packets: 10,
                tx_errors: 3,
                tx_dropped: 4
            }
        );
    }

    #[test]
    fn blkio_parsers() {
        let v1 = "8:0 Read 4096\n8:0 Write 1000\n8:0 Sync 1\n8:0 Async 2\n8:0 Discard 0\n8:0 Total 5096\nTotal 5096\n";
        let e = parse_blkio_v1(v1);
        assert_eq!(e.len(), 6);
        assert_eq!(
            e[0],
            BlkioStatEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        let v2 = "253:0 rbytes=8192 wbytes=4096 rios=2 wios=1 dbytes=0 dios=0\nbogus\n";
        let e = parse_io_stat_v2(v2);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].op.as_str(), e[0].value), ("read", 8192));
        assert_eq!(
            (e[1].op.as_str(), e[1].value, e[1].major),
            ("write", 4096, 253)
        );
    }

    #[test]
    fn v1_layout_and_counters() {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path().join("cgroup");
        let rel = "berth/abc";
        write(
            &cg.join("memory").join(rel),
            &[
                ("memory.usage_in_bytes", "73400320\n"),
                ("memory.max_usage_in_bytes", "80000000\n"),
                ("memory.failcnt", "0\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "cache 67108864\nrss 1000000\ninactive_file 4096\ntotal_inactive_file 8192\nshmem 67108864\n",
                ),
                ("cgroup.procs", "1\n2\n"),
            ],
        );
        // cpu and cpuacct co-mounted, as on most v1 hosts.
        write(
            &cg.join("cpu,cpuacct").join(rel),
            &[
                ("cpuacct.usage", "123456789\n"),
                ("cpuacct.usage_percpu", "100000000 23456789 \n"),
                ("cpuacct.stat", "user 7\nsystem 3\n"),
                (
                    "cpu.stat",
                    "nr_periods 5\nnr_throttled 1\nthrottled_time 999\n",
                ),
            ],
        );
        write(
            &cg.join("pids").join(rel),
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        write(
            &cg.join("blkio").join(rel),
            &[
                (
                    "blkio.throttle.io_service_bytes",
                    "8:0 Read 4096\n8:0 Write 512\nTotal 4608\n",
                ),
                (
                    "blkio.throttle.io_serviced",
                    "8:0 Read 1\n8:0 Write 1\nTotal 2\n",
                ),
            ],
        );
        let located = Cgroup::locate(&cg, "/berth/abc/").unwrap();
        assert!(
            matches!(&located, Cgroup::V1 { cpu: Some(c), cpuacct: Some(a), .. } if c == a),
            "{located:?}"
        );
        assert_eq!(Cgroup::locate(&cg, "/berth/nope"), None);

        let proc_root = t.path().join("proc");
        proc_tree(&proc_root);
        let host = Host {
            cgroup_root: cg.clone(),
            proc_root,
        };
        let s = sample(&host, "/berth/abc", Some(42)).unwrap();
        let u = &s.cpu_stats.cpu_usage;
        assert_eq!(u.total_usage, 123_456_789);
        assert_eq!(u.percpu_usage, vec![100_000_000, 23_456_789]);
        assert_eq!(u.usage_in_usermode, 70_000_000);
        assert_eq!(u.usage_in_kernelmode, 30_000_000);
        assert_eq!(s.cpu_stats.throttling_data.throttled_time, 999);
        assert_eq!(s.cpu_stats.system_cpu_usage, 10_000_000_000);
        assert_eq!(s.cpu_stats.online_cpus, 2);
        let m = &s.memory_stats;
        assert_eq!((m.usage, m.max_usage), (73_400_320, 80_000_000));
        assert_eq!(m.limit, 8_192_000_000, "unlimited is capped at host memory");
        assert_eq!(m.stats["total_inactive_file"], 8192);
        assert_eq!(m.stats["cache"], 67_108_864);
        assert_eq!(
            s.pids_stats,
            PidsStats {
                current: 3,
                limit: 0
            }
        );
        let b = &s.blkio_stats;
        assert_eq!(b.io_service_bytes_recursive.as_ref().unwrap().len(), 2);
        assert_eq!(b.io_serviced_recursive.as_ref().unwrap().len(), 2);
        assert_eq!(b.sectors_recursive, Some(vec![]));
        assert_eq!(s.networks["eth0"].rx_bytes, 1296);
        assert_ne!(s.read, ZERO_TIME);

        // Without a pids hierarchy, the processes are counted instead.
        fs::remove_dir_all(cg.join("pids")).unwrap();
        let s = sample(&host, "/berth/abc", None).unwrap();
        assert_eq!(s.pids_stats.current, 2);
        assert!(s.networks.is_empty());
    }

    #[test]
    fn v2_layout_and_counters() {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path().join("cgroup");
        write(&cg, &[("cgroup.controllers", "cpu io memory pids\n")]);
        let dir = cg.join("berth/abc");
        write(
            &dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 2\nthrottled_usec 30\n",
                ),
                ("memory.current", "70000000\n"),
                ("memory.max", "104857600\n"),
                (
                    "memory.stat",
                    "anon 2000000\nfile 67108864\nshmem 67108864\ninactive_file 4096\n",
                ),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
                ("pids.current", "2\n"),
                ("pids.max", "100\n"),
                ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
            ],
        );
        assert_eq!(
            Cgroup::locate(&cg, "/berth/abc"),
            Some(Cgroup::V2(dir.clone()))
        );
        let proc_root = t.path().join("proc");
        proc_tree(&proc_root);
        let host = Host {
            cgroup_root: cg.clone(),
            proc_root,
        };
        let s = sample(&host, "/berth/abc", Some(42)).unwrap();
        let u = &s.cpu_stats.cpu_usage;
        assert_eq!(
            (u.total_usage, u.usage_in_usermode, u.usage_in_kernelmode),
            (1_500_000, 1_000_000, 500_000)
        );
        assert!(u.percpu_usage.is_empty());
        assert_eq!(
            s.cpu_stats.throttling_data,
            ThrottlingData {
                periods: 4,
                throttled_periods: 2,
                throttled_time: 30_000
            }
        );
        let m = &s.memory_stats;
        assert_eq!(
            (m.usage, m.limit, m.failcnt, m.max_usage),
            (70_000_000, 104_857_600, 1, 0)
        );
        assert_eq!(m.stats["inactive_file"], 4096);
        assert_eq!(
            s.pids_stats,
            PidsStats {
                current: 2,
                limit: 100
            }
        );
        let io = s.blkio_stats.io_service_bytes_recursive.as_ref().unwrap();
        assert_eq!(io.len(), 2);
        assert_eq!(s.blkio_stats.io_serviced_recursive, None);

        // Unlimited memory reads as the host's; a cgroup without controllers (a hybrid
        // host's unified tree) still gives CPU time and a process count.
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(
            sample(&host, "/berth/abc", None)
                .unwrap()
                .memory_stats
                .limit,
            8_192_000_000
        );
        for f in [
            "memory.current",
            "memory.max",
            "memory.stat",
            "pids.current",
            "pids.max",
            "io.stat",
        ] {
            fs::remove_file(dir.join(f)).unwrap();
        }
        fs::write(dir.join("cgroup.procs"), "7\n").unwrap();
        let s = sample(&host, "/berth/abc", None).unwrap();
        assert_eq!(s.memory_stats, MemoryStats::default());
        assert_eq!(s.pids_stats.current, 1);
        assert_eq!(s.cpu_stats.cpu_usage.total_usage, 1_500_000);
        assert_eq!(s.blkio_stats.io_service_bytes_recursive, None);
    }

    #[test]
    fn json_shape_like_docker() {
        let z = Stats::zeroed("/web", "abc");
        let v = serde_json::to_value(&z).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "read": ZERO_TIME, "preread": ZERO_TIME,
                "pids_stats": {},
                "blkio_stats": {
                    "io_service_bytes_recursive": null, "io_serviced_recursive": null,
                    "io_queue_recursive": null, "io_service_time_recursive": null,
                    "io_wait_time_recursive": null, "io_merged_recursive": null,
                    "io_time_recursive": null, "sectors_recursive": null
                },
                "num_procs": 0,
                "storage_stats": {},
                "cpu_stats": {
                    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
                },
                "precpu_stats": {
                    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
                },
                "memory_stats": {},
                "name": "/web", "id": "abc"
            })
        );
        let mut a = Stats::zeroed("/web", "abc");
        a.read = "2024-01-01T00:00:00Z".into();
        a.cpu_stats.cpu_usage.total_usage = 5;
        let mut b = Stats::zeroed("/web", "abc");
        b.follow(&a);
        assert_eq!(b.preread, "2024-01-01T00:00:00Z");
        assert_eq!(b.precpu_stats.cpu_usage.total_usage, 5);
        let back: Stats = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }
}
