//! OCI runtime spec generation with Docker's defaults (moby `oci/defaults.go`,
//! `oci/caps/defaults.go`, `daemon/oci_linux.go`): mounts, devices, masked and read-only
//! paths, capabilities, seccomp, namespaces and cgroup resources.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Process, Spec};
use serde_json::{json, Value};

use crate::error::{Result, RuntimeError};
use crate::{seccomp, user};

/// Docker's default `PATH` (moby `oci.DefaultPathEnv`).
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set (moby `oci/caps/defaults.go`), in Docker's order.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, indexed by its kernel number.
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default masked paths (moby `oci/defaults.go`).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's default read-only paths (moby `oci/defaults.go`).
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
const DEFAULT_CPU_PERIOD: i64 = 100_000;

/// Everything the daemon knows about a container that shapes its runtime spec.
#[derive(Clone, Debug)]
pub struct SpecOptions {
    /// Entrypoint + cmd, already combined by the daemon.
    pub args: Vec<String>,
    /// `KEY=VALUE`; PATH, HOSTNAME and (with a TTY) TERM are added as Docker does.
    pub env: Vec<String>,
    /// `""` means `/`.
    pub cwd: String,
    /// docker `-u`: `""`, `uid`, `uid:gid`, `name`, `name:group`, ...
    pub user: String,
    pub group_add: Vec<String>,
    pub hostname: String,
    pub domainname: String,
    pub tty: bool,
    /// The mounted rootfs (absolute).
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
    pub oom_kill_disable: bool,
    pub network_mode: String,
    /// A network namespace to join (pinned by the daemon, or another container's).
    pub netns_path: Option<String>,
    /// `""`/`private`, `shareable`, `host`, `none` or `container:X` (the daemon then gives
    /// the namespace in `ipc_ns_path` and X's /dev/shm in `mounts`).
    pub ipc_mode: String,
    /// Another container's IPC namespace to join (`/proc/<pid>/ns/ipc`).
    pub ipc_ns_path: Option<String>,
    pub pid_mode: String,
    /// Another container's PID namespace to join (`--pid container:X`).
    pub pid_ns_path: Option<String>,
    pub uts_mode: String,
    /// `host`, `private`, or `""` for Docker's default (private on cgroup v2, host on v1).
    pub cgroupns_mode: String,
    /// `--device`: host device nodes (or directories of them) made in the container and
    /// allowed in its device cgroup.
    pub devices: Vec<DeviceMapping>,
    pub cgroups_path: String,
    /// Extra mounts from the daemon; one at the destination of a default mount replaces it.
    pub mounts: Vec<Mount>,
    pub sysctls: HashMap<String, String>,
    /// Bytes; 0 means Docker's default of 64 MiB.
    pub shm_size: i64,
    /// `(name, soft, hard)`, name as in `--ulimit` (`nofile`, `nproc`, ...).
    pub ulimits: Vec<(String, u64, u64)>,
    /// `None` means Docker's defaults.
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// The spec goes to youki's libcontainer 0.7 (the default runtime), which reads
    /// seccomp `SCMP_CMP_MASKED_EQ` arguments swapped: see
    /// [`seccomp::adapt_for_libcontainer`]. Default `true`; set `false` for runc/crun.
    /// Getting this wrong silently allows every `clone`, namespace flags included.
    pub libcontainer_quirks: bool,
}

impl Default for SpecOptions {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            cwd: String::new(),
            user: String::new(),
            group_add: Vec::new(),
            hostname: String::new(),
            domainname: String::new(),
            tty: false,
            rootfs: PathBuf::new(),
            readonly_rootfs: false,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            security_opt: Vec::new(),
            memory: 0,
            memory_swap: 0,
            memory_reservation: 0,
            nano_cpus: 0,
            cpu_shares: 0,
            cpu_quota: 0,
            cpu_period: 0,
            cpuset_cpus: String::new(),
            pids_limit: None,
            oom_kill_disable: false,
            network_mode: String::new(),
            netns_path: None,
            ipc_mode: String::new(),
            ipc_ns_path: None,
            pid_mode: String::new(),
            pid_ns_path: None,
            uts_mode: String::new(),
            cgroupns_mode: String::new(),
            devices: Vec::new(),
            cgroups_path: String::new(),
            mounts: Vec::new(),
            sysctls: HashMap::new(),
            shm_size: 0,
            ulimits: Vec::new(),
            masked_paths: None,
            readonly_paths: None,
            libcontainer_quirks: true,
        }
    }
}

/// One `--device` (Docker's HostConfig.Devices entry).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    /// Cgroup access, a combination of `r`, `w` and `m`; `""` means `rwm`.
    pub cgroup_permissions: String,
}

/// For `docker exec`: an extra process in a running container.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub tty: bool,
    pub privileged: bool,
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidArgument(msg.into())
}

/// `--security-opt` as Docker parses it (moby `daemon/create.go` parseSecurityOpt).
#[derive(Debug, Default)]
struct SecurityOpts {
    no_new_privileges: bool,
    /// `None`: Docker's default profile; `Some(None)`: unconfined; `Some(Some(json))`.
    seccomp: Option<Option<String>>,
    unconfined_systempaths: bool,
}

fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for opt in opts {
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .ok_or_else(|| invalid(format!("invalid --security-opt 1: {opt:?}")))?;
        match k {
            "label" | "apparmor" | "writable-cgroups" => {}
            "seccomp" => {
                out.seccomp = match v {
                    "unconfined" => Some(None),
                    "" | "builtin" => None,
                    // The docker CLI sends the file's content; a path is read here.
                    json if json.trim_start().starts_with('{') => Some(Some(json.to_string())),
                    path => Some(Some(std::fs::read_to_string(path).map_err(|e| {
                        invalid(format!("opening seccomp profile ({path}) failed: {e}"))
                    })?)),
                }
            }
            "no-new-privileges" => {
                out.no_new_privileges = parse_go_bool(v)
                    .ok_or_else(|| invalid(format!("invalid --security-opt 2: {opt:?}")))?;
            }
            "systempaths" if v == "unconfined" => out.unconfined_systempaths = true,
            _ => return Err(invalid(format!("invalid --security-opt 2: {opt:?}"))),
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The capabilities this process may hand out: Docker lists only those in its own
/// bounding set (here, e.g., CAP_SYS_RESOURCE is missing).
fn available_caps() -> Vec<&'static str> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// moby `caps.NormalizeLegacyCapabilities`.
fn normalize_caps(caps: &[String], available: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(caps.len());
    for c in caps {
        let mut c = c.to_ascii_uppercase();
        if c == "ALL" {
            out.push(c);
            continue;
        }
        if !c.starts_with("CAP_") {
            c = format!("CAP_{c}");
        }
        if !ALL_CAPS.contains(&c.as_str()) {
            return Err(invalid(format!("unknown capability: {c:?}")));
        }
        if !available.contains(&c.as_str()) {
            return Err(invalid(format!(
                "capability not supported by your kernel or not available in the current environment: {c:?}"
            )));
        }
        out.push(c);
    }
    Ok(out)
}

/// moby `caps.TweakCapabilities`: the container's capability set.
pub fn tweak_capabilities(
    cap_add: &[String],
    cap_drop: &[String],
    privileged: bool,
) -> Result<Vec<String>> {
    let available = available_caps();
    if privileged {
        return Ok(available.iter().map(|s| s.to_string()).collect());
    }
    let drop = normalize_caps(cap_drop, &available)?;
    let add = normalize_caps(cap_add, &available)?;
    let all = |v: &[String]| v.iter().any(|c| c == "ALL");
    let mut caps: Vec<String> = Vec::new();
    if all(&add) {
        caps.extend(
            available
                .iter()
                .filter(|c| !drop.iter().any(|d| d == *c))
                .map(|c| c.to_string()),
        );
    } else if all(&drop) {
        caps.extend(add.iter().filter(|c| *c != "ALL").cloned());
    } else {
        caps.extend(
            DEFAULT_CAPS
                .iter()
                .filter(|c| !drop.iter().any(|d| d == *c))
                .map(|c| c.to_string()),
        );
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    // A cap both added and dropped: Docker's add wins in the default case (handled above).
    caps.dedup();
    Ok(caps)
}

/// moby `container.ReplaceOrAppendEnvValues`: `KEY=V` replaces or appends, a bare `KEY`
/// removes the key.
pub fn replace_or_append_env(mut base: Vec<String>, overrides: &[String]) -> Vec<String> {
    for o in overrides {
        let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
        let pos = base
            .iter()
            .position(|b| b.split_once('=').map_or(b.as_str(), |(k, _)| k) == key);
        match (pos, o.contains('=')) {
            (Some(i), true) => base[i] = o.clone(),
            (Some(i), false) => {
                base.remove(i);
            }
            (None, true) => base.push(o.clone()),
            (None, false) => {}
        }
    }
    base
}

/// The container's environment as Docker builds it (moby `CreateDaemonEnvironment`).
fn container_env(opts: &SpecOptions) -> Vec<String> {
    let mut env = Vec::with_capacity(opts.env.len() + 3);
    if !opts.env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH_ENV}"));
    }
    env.push(format!("HOSTNAME={}", opts.hostname));
    if opts.tty {
        env.push("TERM=xterm".to_string());
    }
    replace_or_append_env(env, &opts.env)
}

/// Parses a size as docker's `-m`/`--shm-size` do (go-units `RAMInBytes`: binary units,
/// optional `b` suffix, decimals allowed).
pub fn parse_memory(s: &str) -> Result<i64> {
    let err = || invalid(format!("invalid size: '{s}'"));
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .map(|u| u.to_string())
        .unwrap_or(unit);
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(err()),
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > i64::MAX as f64 {
        return Err(err());
    }
    Ok(v as i64)
}

fn num_cpus() -> i64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n.max(1))
}

fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn swap_limit_supported() -> bool {
    cgroup_v2() || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}

/// Cgroup resources with Docker's validation (moby `verifyPlatformContainerResources`).
fn resources(opts: &SpecOptions) -> Result<Value> {
    let mut memory = serde_json::Map::new();
    if opts.memory != 0 && opts.memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if opts.memory == 0 && opts.memory_swap > 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if opts.memory > 0 && opts.memory_swap > 0 && opts.memory_swap < opts.memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if opts.memory_reservation != 0 && opts.memory_reservation < MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if opts.memory > 0 && opts.memory_reservation > 0 && opts.memory < opts.memory_reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if opts.memory > 0 {
        memory.insert("limit".into(), json!(opts.memory));
        // Docker: swap 0 means twice the memory; -1 unlimited. Dropped (as Docker does,
        // with a warning) when the kernel has no swap accounting.
        let swap = match opts.memory_swap {
            0 => opts.memory.saturating_mul(2),
            s => s,
        };
        if swap_limit_supported() {
            memory.insert("swap".into(), json!(swap));
        }
    }
    if opts.memory_reservation > 0 {
        memory.insert("reservation".into(), json!(opts.memory_reservation));
    }
    if opts.oom_kill_disable {
        memory.insert("disableOOMKiller".into(), json!(true));
    }

    let mut cpu = serde_json::Map::new();
    if opts.nano_cpus != 0 {
        if opts.cpu_period != 0 {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if opts.cpu_quota != 0 {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        let n = num_cpus();
        if opts.nano_cpus < 0 || opts.nano_cpus > n * 1_000_000_000 {
            return Err(invalid(format!(
                "Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )));
        }
        cpu.insert("period".into(), json!(DEFAULT_CPU_PERIOD));
        cpu.insert(
            "quota".into(),
            json!(opts.nano_cpus * DEFAULT_CPU_PERIOD / 1_000_000_000),
        );
    }
    if opts.cpu_period != 0 && !(1000..=1_000_000).contains(&opts.cpu_period) {
        return Err(invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if opts.cpu_quota > 0 && opts.cpu_quota < 1000 {
        return Err(invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    if opts.cpu_period > 0 {
        cpu.insert("period".into(), json!(opts.cpu_period));
    }
    if opts.cpu_quota != 0 {
        cpu.insert("quota".into(), json!(opts.cpu_quota));
    }
    if opts.cpu_shares < 0 {
        return Err(invalid("invalid CPU shares: must be a positive number"));
    }
    if opts.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(opts.cpu_shares));
    }
    if !opts.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(opts.cpuset_cpus));
    }

    let mut res = serde_json::Map::new();
    res.insert("devices".into(), default_device_rules(opts.privileged));
    if !memory.is_empty() {
        res.insert("memory".into(), Value::Object(memory));
    }
    if !cpu.is_empty() {
        res.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = opts.pids_limit.filter(|p| *p > 0) {
        res.insert("pids".into(), json!({ "limit": p }));
    }
    Ok(Value::Object(res))
}

/// Docker's deny-all device cgroup plus runc's allow-list (Docker relies on runc's), or
/// allow-all when privileged. No explicit fuse deny: deny-all covers it, and cgroup v1
/// cannot punch a hole into the `c *:* m` wildcard (runc refuses the spec).
fn default_device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{ "allow": true, "access": "rwm" }]);
    }
    let c = |major: i64, minor: Option<i64>, access: &str| json!({ "allow": true, "type": "c", "major": major, "minor": minor, "access": access });
    json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "c", "access": "m" },
        { "allow": true, "type": "b", "access": "m" },
        c(1, Some(3), "rwm"),   // null
        c(1, Some(8), "rwm"),   // random
        c(1, Some(7), "rwm"),   // full
        c(5, Some(0), "rwm"),   // tty
        c(1, Some(5), "rwm"),   // zero
        c(1, Some(9), "rwm"),   // urandom
        c(5, Some(1), "rwm"),   // console
        c(136, None, "rwm"),    // pts
        c(5, Some(2), "rwm"),   // ptmx
        c(10, Some(200), "rwm"), // tun
    ])
}

fn default_mounts(opts: &SpecOptions) -> Vec<Value> {
    let shm = if opts.shm_size > 0 {
        opts.shm_size
    } else {
        DEFAULT_SHM_SIZE
    };
    // Without its own network namespace sysfs cannot be mounted: bind the host's.
    let sys = if opts.network_mode == "host" {
        json!({"destination": "/sys", "type": "bind", "source": "/sys",
               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]})
    };
    // `--ipc host` sees the host's /dev/shm, `--ipc none` has none (moby `setupIpcDirs`).
    let shm = match opts.ipc_mode.as_str() {
        "host" => Some(
            json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
               "options": ["rbind", "rprivate"]}),
        ),
        "none" => None,
        _ => Some(
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
        ),
    };
    let mut v = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        sys,
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
    ];
    v.extend(shm);
    if opts.privileged {
        // Docker clears read-only on /sys and the cgroup mount for --privileged.
        for m in &mut v {
            if let Some(o) = m.get_mut("options").and_then(Value::as_array_mut) {
                o.retain(|x| x != "ro");
            }
        }
    }
    v
}

fn rlimits(ulimits: &[(String, u64, u64)]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(ulimits.len());
    for (name, soft, hard) in ulimits {
        let typ = format!("RLIMIT_{}", name.to_ascii_uppercase());
        if serde_json::from_value::<oci_spec::runtime::PosixRlimitType>(json!(typ)).is_err() {
            return Err(invalid(format!("invalid ulimit type: {name}")));
        }
        if soft > hard {
            return Err(invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        out.push(json!({"type": typ, "soft": soft, "hard": hard}));
    }
    Ok(out)
}

/// Go's wording of an errno ("no such file or directory"), as Docker's messages carry it.
fn go_errno(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or_default();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// containerd's `DeviceFromPath`: the node's type, numbers, mode and owner (without the
/// container path), or `None` when `p` is no device node.
fn device_from_path(p: &Path) -> std::io::Result<Option<Value>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(p)?;
    let ft = m.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Ok(None);
    };
    let rdev = m.rdev();
    Ok(Some(json!({
        "type": typ,
        "major": nix::sys::stat::major(rdev),
        "minor": nix::sys::stat::minor(rdev),
        "fileMode": m.mode() & 0o7777,
        "uid": m.uid(),
        "gid": m.gid(),
    })))
}

/// moby `devicesFromPath`: one `--device` as spec devices plus their cgroup rules. A
/// symlink is followed; a directory adds every device node below it.
fn devices_for(d: &DeviceMapping) -> Result<(Vec<Value>, Vec<Value>)> {
    let host = Path::new(&d.path_on_host);
    let resolved = match std::fs::symlink_metadata(host) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(host).unwrap_or_else(|_| host.to_path_buf())
        }
        _ => host.to_path_buf(),
    };
    let access = if d.cgroup_permissions.is_empty() {
        "rwm"
    } else {
        d.cgroup_permissions.as_str()
    };
    let rule = |dev: &Value| {
        json!({"allow": true, "type": dev["type"], "major": dev["major"],
               "minor": dev["minor"], "access": access})
    };
    let fail = |why: String| {
        invalid(format!(
            "error gathering device information while adding custom device {:?}: {why}",
            d.path_on_host
        ))
    };
    match device_from_path(&resolved) {
        Ok(Some(mut dev)) => {
            dev["path"] = json!(d.path_in_container);
            let r = rule(&dev);
            Ok((vec![dev], vec![r]))
        }
        Ok(None) => {
            let (mut devs, mut rules) = (Vec::new(), Vec::new());
            if resolved.is_dir() {
                let mut stack = vec![resolved.clone()];
                while let Some(dir) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                    entries.sort();
                    for p in entries {
                        match device_from_path(&p) {
                            Ok(Some(mut dev)) => {
                                let rel = p.strip_prefix(&resolved).unwrap_or(&p);
                                dev["path"] = json!(Path::new(&d.path_in_container).join(rel));
                                rules.push(rule(&dev));
                                devs.push(dev);
                            }
                            Ok(None) if p.is_dir() && !p.is_symlink() => stack.push(p),
                            _ => {}
                        }
                    }
                }
            }
            if devs.is_empty() {
                return Err(fail("not a device node".into()));
            }
            Ok((devs, rules))
        }
        Err(e) => Err(fail(go_errno(&e))),
    }
}

/// Generates the OCI runtime spec for a container, Docker's way.
pub fn generate(opts: &SpecOptions) -> Result<Spec> {
    if opts.args.is_empty() {
        return Err(invalid("no command specified"));
    }
    let sec = parse_security_opts(&opts.security_opt)?;
    let caps = tweak_capabilities(&opts.cap_add, &opts.cap_drop, opts.privileged)?;
    let u = user::resolve_exec_user(&opts.rootfs, &opts.user, &opts.group_add)?;

    let mut namespaces = vec![json!({"type": "mount"})];
    if opts.network_mode != "host" {
        match &opts.netns_path {
            Some(p) => namespaces.push(json!({"type": "network", "path": p})),
            None => namespaces.push(json!({"type": "network"})),
        }
    }
    // A namespace of its own, another container's (by path), or none (the host's).
    let mut ns = |typ: &str, host: bool, path: &Option<String>| {
        if host {
            return;
        }
        match path {
            Some(p) => namespaces.push(json!({"type": typ, "path": p})),
            None => namespaces.push(json!({"type": typ})),
        }
    };
    ns("ipc", opts.ipc_mode == "host", &opts.ipc_ns_path);
    ns("pid", opts.pid_mode == "host", &opts.pid_ns_path);
    let own_uts = opts.uts_mode != "host";
    ns("uts", !own_uts, &None);
    // Docker's default cgroupns mode: private on cgroup v2, host on v1.
    let private_cgroupns = match opts.cgroupns_mode.as_str() {
        "host" => false,
        "private" => true,
        "" => cgroup_v2(),
        m => return Err(invalid(format!("invalid cgroup namespace mode: {m}"))),
    };
    ns("cgroup", !private_cgroupns, &None);
    let (devices, device_rules) = if opts.privileged {
        // Privileged containers may use every device already (allow-all rule).
        (Vec::new(), Vec::new())
    } else {
        let mut devs = Vec::new();
        let mut rules = Vec::new();
        for d in &opts.devices {
            let (ds, rs) = devices_for(d)?;
            devs.extend(ds);
            rules.extend(rs);
        }
        (devs, rules)
    };

    let mut mounts = default_mounts(opts);
    let extra: Vec<Value> = opts
        .mounts
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()?;
    mounts.retain(|m| {
        !extra
            .iter()
            .any(|e| e.get("destination") == m.get("destination"))
    });
    mounts.extend(extra);

    let (masked, readonly) = if opts.privileged || sec.unconfined_systempaths {
        (Vec::new(), Vec::new())
    } else {
        (
            opts.masked_paths
                .clone()
                .unwrap_or_else(|| DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()),
            opts.readonly_paths.clone().unwrap_or_else(|| {
                DEFAULT_READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            }),
        )
    };

    let mut seccomp = if opts.privileged {
        None
    } else {
        match &sec.seccomp {
            Some(None) => None,
            Some(Some(profile)) => Some(seccomp::load_profile(profile, &caps)?),
            None => Some(seccomp::default_profile(&caps)?),
        }
    };
    if opts.libcontainer_quirks {
        if let Some(sc) = seccomp.as_mut() {
            seccomp::adapt_for_libcontainer(sc);
        }
    }

    let cwd = if opts.cwd.is_empty() { "/" } else { &opts.cwd };
    if !cwd.starts_with('/') {
        return Err(invalid(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }

    let mut process = json!({
        "terminal": opts.tty,
        "user": { "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids },
        "args": opts.args,
        "env": container_env(opts),
        "cwd": cwd,
        "capabilities": capabilities_for(u.uid, &caps),
    });
    // Only when true, as Docker's omitempty does: libcontainer 0.7 decides when to load
    // seccomp by the field's presence, and `false` makes it load the filter after
    // dropping CAP_SYS_ADMIN without no_new_privs, which the kernel refuses.
    if sec.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    let rl = rlimits(&opts.ulimits)?;
    if !rl.is_empty() {
        process["rlimits"] = Value::Array(rl);
    }

    let mut res = resources(opts)?;
    if let Some(rules) = res.get_mut("devices").and_then(Value::as_array_mut) {
        rules.extend(device_rules);
    }
    let mut linux = json!({
        "resources": res,
        "namespaces": namespaces,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
    });
    if !opts.cgroups_path.is_empty() {
        linux["cgroupsPath"] = json!(opts.cgroups_path);
    }
    if !devices.is_empty() {
        linux["devices"] = Value::Array(devices);
    }
    let mut sysctls = opts.sysctls.clone();
    // Docker (20.10+) lets unprivileged processes bind low ports and ping in a
    // container's own network namespace (moby `WithSysctls`).
    if opts.network_mode != "host" && !opts.network_mode.starts_with("container:") {
        sysctls
            .entry("net.ipv4.ip_unprivileged_port_start".into())
            .or_insert_with(|| "0".into());
        sysctls
            .entry("net.ipv4.ping_group_range".into())
            .or_insert_with(|| "0 2147483647".into());
    }
    if !sysctls.is_empty() {
        linux["sysctl"] = json!(sysctls);
    }
    if let Some(s) = seccomp {
        linux["seccomp"] = serde_json::to_value(s)?;
    }

    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": { "path": opts.rootfs, "readonly": opts.readonly_rootfs },
        "mounts": mounts,
        "linux": linux,
    });
    if own_uts {
        if !opts.hostname.is_empty() {
            spec["hostname"] = json!(opts.hostname);
        }
        if !opts.domainname.is_empty() {
            spec["domainname"] = json!(opts.domainname);
        }
    }
    Ok(serde_json::from_value(spec)?)
}

/// The process of `docker exec`: the container's process settings (env, cwd, user,
/// capabilities, AppArmor, no-new-privileges, rlimits) overridden by `opts`.
pub fn exec_process(container: &Spec, rootfs: &Path, opts: &ExecOptions) -> Result<Process> {
    if opts.args.is_empty() {
        return Err(invalid("No exec command specified"));
    }
    let mut p = container.process().clone().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    // See `generate`: libcontainer reads a present `false` as "set".
    if p.no_new_privileges() == Some(false) {
        p.set_no_new_privileges(None);
    }
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    if opts.tty {
        env = replace_or_append_env(env, &["TERM=xterm".to_string()]);
    }
    p.set_env(Some(replace_or_append_env(env, &opts.env)));
    if !opts.cwd.is_empty() {
        p.set_cwd(PathBuf::from(&opts.cwd));
    }
    if !opts.user.is_empty() {
        let u = user::resolve_exec_user(rootfs, &opts.user, &[])?;
        let mut pu = p.user().clone();
        pu.set_uid(u.uid);
        pu.set_gid(u.gid);
        pu.set_additional_gids(Some(u.additional_gids));
        p.set_user(pu);
    }
    // The capability set is the container's bounding set (or all with --privileged),
    // given as effective/permitted only to root, as for the container itself.
    let set: Vec<String> = if opts.privileged {
        tweak_capabilities(&[], &[], true)?
    } else {
        let bounding = p.capabilities().as_ref().and_then(|c| c.bounding().clone());
        let v = serde_json::to_value(bounding.unwrap_or_default())?;
        serde_json::from_value(v)?
    };
    let caps = serde_json::from_value(capabilities_for(p.user().uid(), &set))?;
    p.set_capabilities(Some(caps));
    Ok(p)
}

/// moby `oci.SetCapabilities`: effective and permitted only for uid 0 ("to match what
/// execve does"); other users get the bounding set alone.
fn capabilities_for(uid: u32, caps: &[String]) -> Value {
    if uid == 0 {
        json!({ "bounding": caps, "effective": caps, "permitted": caps })
    } else {
        json!({ "bounding": caps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability, LinuxNamespaceType};

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nwheel:x:10:root\n").unwrap();
        d
    }

    fn opts(root: &Path) -> SpecOptions {
        SpecOptions {
            args: vec!["sh".into()],
            rootfs: root.to_path_buf(),
            hostname: "abc".into(),
            ..Default::default()
        }
    }

    fn ns(spec: &Spec) -> Vec<LinuxNamespaceType> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn defaults_match_docker() {
        let r = rootfs();
        let s = generate(&opts(r.path())).unwrap();
        let p = s.process().as_ref().unwrap();
        let caps = p.capabilities().as_ref().unwrap();
        let eff = caps.effective().as_ref().unwrap();
        assert_eq!(eff.len(), 14);
        assert!(eff.contains(&Capability::NetRaw));
        assert!(!eff.contains(&Capability::SysAdmin));
        assert_eq!(caps.bounding(), caps.permitted());
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
        assert_eq!(
            p.env().as_ref().unwrap(),
            &vec![
                format!("PATH={DEFAULT_PATH_ENV}"),
                "HOSTNAME=abc".to_string()
            ]
        );
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(p.user().uid(), 0);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[10u32][..]));
        assert!(p.rlimits().is_none());
        let l = s.linux().as_ref().unwrap();
        assert_eq!(l.masked_paths().as_ref().unwrap().len(), 11);
        assert!(l
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));
        assert!(l.seccomp().is_some());
        let n = ns(&s);
        for t in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Uts,
        ] {
            assert!(n.contains(&t), "{t:?}");
        }
        let dests: Vec<_> = s
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ]
        );
        let shm = &s.mounts().as_ref().unwrap()[6];
        assert!(shm
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=67108864".to_string()));
        assert_eq!(s.hostname().as_deref(), Some("abc"));
        let sysctl = l.sysctl().clone().unwrap();
        assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");
        assert_eq!(sysctl["net.ipv4.ping_group_range"], "0 2147483647");
        // Round-trips through JSON as the shim will read it.
        let j = serde_json::to_string(&s).unwrap();
        let _: Spec = serde_json::from_str(&j).unwrap();
    }

    #[test]
    fn non_root_user_gets_bounding_caps_only() {
        let r = rootfs();
        let mut o = opts(r.path());
        o.user = "nobody".into();
        let s = generate(&o).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (65534, 65534));
        let caps = p.capabilities().clone().unwrap();
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(14));
        assert!(caps.effective().is_none() && caps.permitted().is_none());
        // exec as root in that container: effective again.
        let e = exec_process(
            &s,
            r.path(),
            &ExecOptions {
                args: vec!["id".into()],
                user: "0".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let caps = e.capabilities().clone().unwrap();
        assert_eq!(caps.effective().as_ref().map(|b| b.len()), Some(14));
    }

    #[test]
    fn host_modes_and_tty_env() {
        let r = rootfs();
        let mut o = opts(r.path());
        o.network_mode = "host".into();
        o.ipc_mode = "host".into();
        o.pid_mode = "host".into();
        o.uts_mode = "host".into();
        o.tty = true;
        o.env = vec!["PATH=/bin".into(), "HOSTNAME=override".into(), "A=1".into()];
        let s = generate(&o).unwrap();
        assert_eq!(ns(&s), vec![LinuxNamespaceType::Mount]);
        assert!(s.linux().as_ref().unwrap().sysctl().is_none());
        assert!(s.hostname().is_none());
        assert_eq!(
            s.process().as_ref().unwrap().env().as_ref().unwrap(),
            &vec![
                "HOSTNAME=override".to_string(),
                "TERM=xterm".into(),
                "PATH=/bin".into(),
                "A=1".into()
            ]
        );
        let sys = &s.mounts().as_ref().unwrap()[3];
        assert_eq!(sys.typ().as_deref(), Some("bind"));

        o.network_mode = "none".into();
        let s = generate(&o).unwrap();
        assert!(ns(&s).contains(&LinuxNamespaceType::Network));
    }

    #[test]
    fn joined_namespaces_cgroupns_and_shm() {
        let r = rootfs();
        let mut o = opts(r.path());
        o.ipc_mode = "container:other".into();
        o.ipc_ns_path = Some("/proc/42/ns/ipc".into());
        o.pid_mode = "container:other".into();
        o.pid_ns_path = Some("/proc/42/ns/pid".into());
        o.cgroupns_mode = "private".into();
        let s = generate(&o).unwrap();
        let path_of = |s: &Spec, t: LinuxNamespaceType| {
            s.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .iter()
                .flatten()
                .find(|n| n.typ() == t)
                .map(|n| n.path().as_ref().map(|p| p.display().to_string()))
        };
        assert_eq!(
            path_of(&s, LinuxNamespaceType::Ipc),
            Some(Some("/proc/42/ns/ipc".into()))
        );
        assert_eq!(
            path_of(&s, LinuxNamespaceType::Pid),
            Some(Some("/proc/42/ns/pid".into()))
        );
        assert_eq!(path_of(&s, LinuxNamespaceType::Cgroup), Some(None));
        o.cgroupns_mode = "host".into();
        assert!(!ns(&generate(&o).unwrap()).contains(&LinuxNamespaceType::Cgroup));
        o.cgroupns_mode = "bogus".into();
        assert_eq!(
            generate(&o).unwrap_err().to_string(),
            "invalid cgroup namespace mode: bogus"
        );
        o.cgroupns_mode.clear();

        let shm = |s: &Spec| {
            s.mounts()
                .iter()
                .flatten()
                .find(|m| m.destination() == Path::new("/dev/shm"))
                .cloned()
        };
        o.ipc_ns_path = None;
        o.ipc_mode = "host".into();
        let s = generate(&o).unwrap();
        assert!(!ns(&s).contains(&LinuxNamespaceType::Ipc));
        let m = shm(&s).unwrap();
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.source().as_deref(), Some(Path::new("/dev/shm")));
        o.ipc_mode = "none".into();
        let s = generate(&o).unwrap();
        assert!(ns(&s).contains(&LinuxNamespaceType::Ipc));
        assert!(shm(&s).is_none());
        o.ipc_mode = "shareable".into();
        o.shm_size = 1 << 20;
        let m = shm(&generate(&o).unwrap()).unwrap();
        assert!(m
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1048576".to_string()));
    }

    #[test]
    fn devices_and_their_cgroup_rules() {
        let r = rootfs();
        let mut o = opts(r.path());
        let dev = |host: &str, ctr: &str, perms: &str| DeviceMapping {
            path_on_host: host.into(),
            path_in_container: ctr.into(),
            cgroup_permissions: perms.into(),
        };
        o.devices = vec![dev("/dev/null", "/dev/mynull", "rw")];
        let s = generate(&o).unwrap();
        let l = s.linux().as_ref().unwrap();
        let d = &l.devices().as_ref().unwrap()[0];
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        assert_eq!((d.major(), d.minor()), (1, 3));
        assert_eq!(d.typ(), oci_spec::runtime::LinuxDeviceType::C);
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        let last = rules.last().unwrap();
        assert!(last.allow());
        assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
        assert_eq!(last.access().as_deref(), Some("rw"));

        o.devices = vec![dev("/dev/berth-nonexistent", "/dev/x", "rwm")];
        assert_eq!(
            generate(&o).unwrap_err().to_string(),
            "error gathering device information while adding custom device \"/dev/berth-nonexistent\": no such file or directory"
        );
        let passwd = r.path().join("etc/passwd").display().to_string();
        o.devices = vec![dev(&passwd, "/dev/x", "rwm")];
        assert!(generate(&o)
            .unwrap_err()
            .to_string()
            .ends_with(": not a device node"));
        // A directory brings every device node below it, at the same relative path.
        if nix::unistd::geteuid().is_root() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("sub")).unwrap();
            for (name, minor) in [("a", 3), ("sub/b", 5)] {
                nix::sys::stat::mknod(
                    &dir.path().join(name),
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::from_bits_truncate(0o666),
                    nix::sys::stat::makedev(1, minor),
                )
                .unwrap();
            }
            o.devices = vec![dev(&dir.path().display().to_string(), "/dev/grp", "r")];
            let s = generate(&o).unwrap();
            let mut paths: Vec<String> = s
                .linux()
                .as_ref()
                .unwrap()
                .devices()
                .iter()
                .flatten()
                .map(|d| d.path().display().to_string())
                .collect();
            paths.sort();
            assert_eq!(paths, ["/dev/grp/a", "/dev/grp/sub/b"]);
        }
        // Privileged: every device is allowed already; nothing is added.
        o.devices = vec![dev("/dev/berth-nonexistent", "/dev/x", "rwm")];
        o.privileged = true;
        assert!(generate(&o).is_ok());
    }

    #[test]
    fn resources_convert() {
        let r = rootfs();
        let mut o = opts(r.path());
        o.nano_cpus = 1_500_000_000;
        o.memory = parse_memory("512m").unwrap();
        o.pids_limit = Some(100);
        o.cpu_shares = 512;
        o.cpuset_cpus = "0".into();
        let s = generate(&o).unwrap();
        let res = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(150000), Some(100000)));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        let mem = res.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(512 << 20));
        assert_eq!(mem.swap(), Some(1024 << 20)); // 0 => twice the memory
        assert_eq!(res.pids().as_ref().unwrap().limit(), 100);

        o.memory_swap = -1;
        let s = generate(&o).unwrap();
        let mem = *s
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .memory();
        assert_eq!(mem.unwrap().swap(), Some(-1));

        o.pids_limit = Some(-1);
        let s = generate(&o).unwrap();
        assert!(s
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .pids()
            .is_none());
    }

    #[test]
    fn resource_validation_messages() {
        let r = rootfs();
        let e = |f: &dyn Fn(&mut SpecOptions)| {
            let mut o = opts(r.path());
            f(&mut o);
            generate(&o).unwrap_err().to_string()
        };
        assert_eq!(
            e(&|o| o.memory = 1 << 20),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            e(&|o| o.memory_swap = 100 << 20),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        assert_eq!(
            e(&|o| {
                o.memory = 100 << 20;
                o.memory_swap = 50 << 20
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            e(&|o| {
                o.nano_cpus = 1_000_000_000;
                o.cpu_quota = 50000
            }),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert!(e(&|o| o.nano_cpus = 1_000_000_000_000).starts_with("Range of CPUs is from 0.01"));
        assert_eq!(
            e(&|o| o.ulimits = vec![("bogus".into(), 1, 1)]),
            "invalid ulimit type: bogus"
        );
    }

    #[test]
    fn cap_add_drop() {
        let c = |add: &[&str], drop: &[&str]| {
            let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
            let drop: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
            tweak_capabilities(&add, &drop, false)
        };
        let v = c(&["net_admin"], &["CAP_CHOWN"]).unwrap();
        assert!(v.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!v.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(v.len(), 14);
        assert_eq!(
            c(&["CHOWN"], &["all"]).unwrap(),
            vec!["CAP_CHOWN".to_string()]
        );
        let all = c(&["ALL"], &["NET_RAW"]).unwrap();
        assert!(all.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!all.contains(&"CAP_NET_RAW".to_string()));
        let err = c(&["FOO"], &[]).unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidArgument(_)));
        assert_eq!(err.to_string(), "unknown capability: \"CAP_FOO\"");
        assert!(c(&[], &["bar"]).is_err());
        // Privileged: every cap this process holds, no seccomp, no masked paths, rw /sys.
        let r = rootfs();
        let mut o = opts(r.path());
        o.privileged = true;
        let s = generate(&o).unwrap();
        let l = s.linux().as_ref().unwrap();
        assert!(l.seccomp().is_none());
        assert!(l.masked_paths().as_ref().unwrap().is_empty());
        let sys = &s.mounts().as_ref().unwrap()[3];
        assert!(!sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert!(caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
    }

    #[test]
    fn masked_eq_form_follows_the_runtime() {
        let r = rootfs();
        let clone_allow = |quirks: bool| {
            let mut o = opts(r.path());
            o.libcontainer_quirks = quirks;
            let s = generate(&o).unwrap();
            let sc = s.linux().as_ref().unwrap().seccomp().clone().unwrap();
            let rule = sc
                .syscalls()
                .iter()
                .flatten()
                .find(|r| {
                    r.names().iter().any(|n| n == "clone")
                        && r.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
                })
                .cloned()
                .unwrap();
            let a = rule.args().as_ref().unwrap()[0];
            (a.value(), a.value_two())
        };
        assert_eq!(clone_allow(true), (0, Some(0x7E02_0000)));
        assert_eq!(clone_allow(false), (0x7E02_0000, None));
    }

    #[test]
    fn security_opts() {
        let r = rootfs();
        let mut o = opts(r.path());
        o.security_opt = vec![
            "no-new-privileges".into(),
            "seccomp=unconfined".into(),
            "label=disable".into(),
        ];
        let s = generate(&o).unwrap();
        assert_eq!(
            s.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
        assert!(s.linux().as_ref().unwrap().seccomp().is_none());
        o.security_opt = vec!["no-new-privileges:false".into()];
        let s = generate(&o).unwrap();
        assert_eq!(s.process().as_ref().unwrap().no_new_privileges(), None);
        o.security_opt = vec!["bogus=1".into()];
        assert!(generate(&o).is_err());
        // A profile file path.
        let p = r.path().join("profile.json");
        std::fs::write(&p, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        o.security_opt = vec![format!("seccomp={}", p.display())];
        let s = generate(&o).unwrap();
        let sc = s.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(
            sc.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
        );
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert_eq!(parse_memory("100k").unwrap(), 102400);
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5GB").unwrap(), 3 << 29);
        assert_eq!(parse_memory("2MiB").unwrap(), 2 << 20);
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("").is_err());
    }

    #[test]
    fn exec_inherits_and_overrides() {
        let r = rootfs();
        let mut o = opts(r.path());
        o.env = vec!["A=1".into()];
        o.cwd = "/srv".into();
        o.security_opt = vec!["no-new-privileges".into()];
        let s = generate(&o).unwrap();
        let p = exec_process(
            &s,
            r.path(),
            &ExecOptions {
                args: vec!["ls".into()],
                env: vec!["B=2".into(), "A=3".into()],
                user: "nobody".into(),
                tty: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.args().as_deref(), Some(&["ls".to_string()][..]));
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!((p.user().uid(), p.user().gid()), (65534, 65534));
        let caps = p.capabilities().clone().unwrap();
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(14));
        assert!(caps.effective().is_none() && caps.permitted().is_none());
        assert_eq!(p.no_new_privileges(), Some(true));
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"A=3".to_string()) && env.contains(&"B=2".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert_eq!(p.terminal(), Some(true));
        assert!(exec_process(&s, r.path(), &ExecOptions::default()).is_err());
    }

    const PROBE: &str = "busybox cat /proc/self/status; echo HOST=$(busybox hostname); \
         echo MEM=$(busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes); \
         busybox mount -t tmpfs none /tmp 2>/dev/null || echo MOUNT=denied; \
         echo TIMERS=$(busybox wc -c < /proc/timer_list); \
         echo 1 > /proc/sys/kernel/domainname || echo PROCSYS=ro; \
         echo PORT=$(busybox cat /proc/sys/net/ipv4/ip_unprivileged_port_start)";

    /// A busybox bundle whose spec (Docker defaults, 64 MiB memory) runs [`PROBE`].
    fn probe_bundle(quirks: bool) -> Option<(tempfile::TempDir, String)> {
        probe_bundle_with(quirks, "", |_| {})
    }

    fn probe_bundle_with(
        quirks: bool,
        tag: &str,
        customize: impl FnOnce(&mut SpecOptions),
    ) -> Option<(tempfile::TempDir, String)> {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() || !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root and /bin/busybox");
            return None;
        }
        let bundle = rootfs();
        let root = bundle.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::rename(bundle.path().join("etc"), root.join("etc")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let id = format!("berth-spec-test-{}-{quirks}{tag}", std::process::id());
        let mut o = opts(&root);
        o.args = vec![
            "/bin/busybox".into(),
            "sh".into(),
            "-c".into(),
            PROBE.into(),
        ];
        o.hostname = "berthy".into();
        o.memory = 64 << 20;
        o.libcontainer_quirks = quirks;
        o.cgroups_path = format!("/{id}");
        customize(&mut o);
        let spec = generate(&o).unwrap();
        std::fs::write(
            bundle.path().join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        Some((bundle, id))
    }

    fn remove_cgroups(id: &str) {
        for ctrl in [
            "memory", "pids", "cpu", "cpuset", "devices", "freezer", "blkio", "cpuacct", "systemd",
            "unified",
        ] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(ctrl).join(id));
        }
    }

    fn check_probe(stdout: &str) {
        let field = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{k} missing in {stdout}"))
                .to_string()
        };
        assert_eq!(field("CapEff:"), "00000000a80425fb"); // Docker's default set
        assert_eq!(field("CapBnd:"), "00000000a80425fb");
        assert_eq!(field("CapInh:"), "0000000000000000");
        assert_eq!(field("Seccomp:"), "2");
        assert_eq!(field("NoNewPrivs:"), "0");
        assert_eq!(field("HOST="), "berthy");
        if Path::new("/sys/fs/cgroup/memory").exists() {
            assert_eq!(field("MEM="), (64u64 << 20).to_string());
        }
        assert_eq!(field("MOUNT="), "denied");
        assert_eq!(field("TIMERS="), "0"); // masked with /dev/null
        assert_eq!(field("PROCSYS="), "ro");
        assert_eq!(field("PORT="), "0");
    }

    /// Runs a generated spec with runc (if installed) on a busybox rootfs.
    #[test]
    fn runs_under_runc_with_docker_defaults() {
        let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            eprintln!("skipped: needs runc");
            return;
        };
        // runc reads MASKED_EQ as the runtime spec says.
        let Some((bundle, id)) = probe_bundle(false) else {
            return;
        };
        let state = bundle.path().join("state");
        let out = std::process::Command::new(runc)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        // Best effort: runc run already deleted the container and its cgroups.
        let _ = std::process::Command::new(runc)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &id])
            .output();
        remove_cgroups(&id);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_probe(&stdout);
    }

    const LC_CHILD_ENV: &str = "BERTH_LIBCONTAINER_BUNDLE";

    /// Runs in a child of the test binary only: libcontainer changes process-wide state
    /// and must not run inside the multi-threaded test harness process.
    #[test]
    #[ignore = "helper run by runs_under_libcontainer_with_docker_defaults"]
    fn libcontainer_child() {
        use libcontainer::container::builder::ContainerBuilder;
        use libcontainer::syscall::syscall::SyscallType;
        use libcontainer::workload::default::DefaultExecutor;
        let Ok(bundle) = std::env::var(LC_CHILD_ENV) else {
            return;
        };
        let bundle = PathBuf::from(bundle);
        let id = std::env::var("BERTH_LIBCONTAINER_ID").unwrap();
        let out = std::fs::File::create(bundle.join("out.txt")).unwrap();
        let err = std::fs::File::create(bundle.join("err.txt")).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let mut c = ContainerBuilder::new(id, SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_root_path(bundle.join("state"))
            .unwrap()
            .with_stdin(null)
            .with_stdout(out)
            .with_stderr(err)
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .unwrap();
        c.start().unwrap();
        let pid = c.pid().unwrap();
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        let _ = c.refresh_status();
        c.delete(true).unwrap();
        println!("EXIT {status:?}");
    }

    /// Runs a probe bundle through libcontainer in a child; returns the container's stdout.
    fn run_libcontainer(bundle: &tempfile::TempDir, id: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "spec::tests::libcontainer_child",
                "--ignored",
                "--nocapture",
            ])
            .env(LC_CHILD_ENV, bundle.path())
            .env("BERTH_LIBCONTAINER_ID", id)
            .output()
            .unwrap();
        remove_cgroups(id);
        let stdout = std::fs::read_to_string(bundle.path().join("out.txt")).unwrap_or_default();
        let stderr = std::fs::read_to_string(bundle.path().join("err.txt")).unwrap_or_default();
        assert!(
            out.status.success(),
            "{}\n{}\n{stdout}\n{stderr}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The default runtime: the same probe through youki's libcontainer.
    #[test]
    fn runs_under_libcontainer_with_docker_defaults() {
        let Some((bundle, id)) = probe_bundle(true) else {
            return;
        };
        check_probe(&run_libcontainer(&bundle, &id));
    }

    /// `-u nobody --security-opt no-new-privileges`: no effective caps, NNP set, and the
    /// filter still loads (late, under no_new_privs).
    #[test]
    fn runs_under_libcontainer_as_non_root_with_nnp() {
        let Some((bundle, id)) = probe_bundle_with(true, "-nnp", |o| {
            o.user = "nobody".into();
            o.security_opt = vec!["no-new-privileges".into()];
        }) else {
            return;
        };
        let out = run_libcontainer(&bundle, &id);
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{k} missing in {out}"))
                .to_string()
        };
        assert_eq!(field("Uid:").split_whitespace().next(), Some("65534"));
        assert_eq!(field("CapEff:"), "0000000000000000");
        assert_eq!(field("CapBnd:"), "00000000a80425fb");
        assert_eq!(field("NoNewPrivs:"), "1");
        assert_eq!(field("Seccomp:"), "2");
    }
}
