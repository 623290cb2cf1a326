//! Containers: the record kept in the database, and the lifecycle (create, start, stop,
//! kill, pause, remove) built on the image store and the shim.

use crate::state::State;
use crate::util;
use berth_api::models::{self, ContainerConfig, ContainerCreateBody, HostConfig};
use berth_api::Error;
use berth_runtime::client::{self as shim, AttachOptions, ExitStatus, ShimClient, ShimConfig};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// What the database keeps of a container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Without the leading "/".
    pub name: String,
    pub created: DateTime<Utc>,
    pub image_id: String,
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: CState,
    #[serde(default)]
    pub restart_count: i64,
    #[serde(default)]
    pub has_started: bool,
    /// Endpoints by network name (docker's NetworkSettings.Networks).
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, crate::networks::Endpoint>,
    /// Stopped or killed by a user: restart policies leave it alone (docker's
    /// HasBeenManuallyStopped).
    #[serde(default)]
    pub manually_stopped: bool,
    /// Ports published while running, by "port/proto".
    #[serde(default)]
    pub published: std::collections::BTreeMap<String, Vec<crate::networks::Published>>,
    /// Volumes, binds and tmpfs mounts (docker's MountPoints), planned at create.
    #[serde(default)]
    pub mounts: Vec<berth_volume::MountPoint>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CState {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub health: Option<crate::health::Health>,
}

/// Counters watchers use to wait for exits and removal.
#[derive(Clone, Debug, Default)]
pub struct Events {
    pub exits: u64,
    pub last_exit: i64,
    pub removed: bool,
}

/// An attach session waiting for its container's shim (a start to come, or the HTTP upgrade).
pub struct PendingAttach {
    pub opts: AttachOptions,
    /// How the client's connection meets the shim; it arrives once the API's 101 has gone
    /// out, so a session registered before that (as it must, to see output from a start the
    /// client sends next) learns it late.
    pub conn: oneshot::Receiver<AttachConn>,
}

pub enum AttachConn {
    /// berthd relays: the shim's attach stream goes to this sender.
    Relay(oneshot::Sender<tokio::net::UnixStream>),
    /// The client's own connection goes to the shim (SCM_RIGHTS), which then writes the
    /// container's output to it directly: berthd leaves the data path.
    Handoff(std::os::unix::net::UnixStream),
}

/// How long a start waits for an attach's upgraded connection (normally microseconds: the
/// 101 is written before the client can send its start).
const HANDOFF_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects one attach session to the shim behind `client`.
async fn deliver_attach(client: &ShimClient, p: PendingAttach, id: &str) {
    let conn = match tokio::time::timeout(HANDOFF_WAIT, p.conn).await {
        Ok(Ok(conn)) => conn,
        // The client went away before its upgrade completed.
        _ => return,
    };
    let r = match conn {
        AttachConn::Relay(tx) => client.attach(p.opts).await.map(|s| {
            let _ = tx.send(s);
        }),
        AttachConn::Handoff(s) => client.attach_fd(p.opts, s.into()).await,
    };
    if let Err(e) = r {
        tracing::debug!(%id, "attach failed: {e}");
    }
}

/// A live container: its record (short read/write lock, never held across I/O), an
/// operation lock that serialises lifecycle changes, and its event channel.
pub struct Ctr {
    pub id: String,
    rec: RwLock<Record>,
    pub op: tokio::sync::Mutex<()>,
    pub events: watch::Sender<Events>,
    pub pending: std::sync::Mutex<Vec<PendingAttach>>,
    /// The restart manager's current back-off (ms): 100, doubled per restart, capped at a
    /// minute, back to 100 after a run of 10 s (docker's restartmanager).
    pub backoff_ms: std::sync::Mutex<u64>,
}

impl Ctr {
    pub fn new(rec: Record) -> Self {
        let ev = Events {
            last_exit: rec.state.exit_code,
            ..Default::default()
        };
        Ctr {
            id: rec.id.clone(),
            rec: RwLock::new(rec),
            op: tokio::sync::Mutex::new(()),
            events: watch::channel(ev).0,
            pending: std::sync::Mutex::new(Vec::new()),
            backoff_ms: std::sync::Mutex::new(0),
        }
    }
    pub fn rec(&self) -> Record {
        self.rec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn update<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        let mut g = self.rec.write().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.len() >= 2
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Docker's "explicitly empty" entrypoint: `--entrypoint ""` arrives as `[""]` or `[]`.
fn is_empty_cmd(v: &[String]) -> bool {
    v.is_empty() || (v.len() == 1 && v[0].is_empty())
}

fn merge_env(image: &[String], user: &[String]) -> Vec<String> {
    let mut out: Vec<String> = image.to_vec();
    for kv in user {
        let key = kv.split('=').next().unwrap_or("");
        if let Some(pos) = out.iter().position(|e| e.split('=').next() == Some(key)) {
            out[pos] = kv.clone();
        } else {
            out.push(kv.clone());
        }
    }
    out
}

fn ncpu() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1)
}

/// Docker's create-time validation of HostConfig.
fn validate_host_config(hc: &HostConfig) -> Result<(), Error> {
    let mem = hc.memory.unwrap_or(0);
    if mem != 0 && mem < 6 * 1024 * 1024 {
        return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
    }
    if let Some(swap) = hc.memory_swap {
        if swap > 0 && mem > 0 && swap < mem {
            return Err(Error::invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
        if swap > 0 && mem == 0 {
            return Err(Error::invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
    }
    let nano = hc.nano_cpus.unwrap_or(0);
    if nano != 0 {
        if hc.cpu_quota.unwrap_or(0) > 0 || hc.cpu_period.unwrap_or(0) > 0 {
            return Err(Error::invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        let n = ncpu();
        if nano < 0 || nano > n * 1_000_000_000 {
            return Err(Error::invalid(format!(
                "Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )));
        }
    }
    if hc.cpu_shares.unwrap_or(0) < 0 {
        return Err(Error::invalid("invalid CPU shares: must be non-negative"));
    }
    if let Some(rp) = &hc.restart_policy {
        use models::RestartPolicyNameEnum as R;
        let name = rp.name.unwrap_or(R::EMPTY);
        if hc.auto_remove.unwrap_or(false) && !matches!(name, R::EMPTY | R::NO) {
            return Err(Error::invalid(
                "can't create 'AutoRemove' container with restart policy",
            ));
        }
        if rp.maximum_retry_count.unwrap_or(0) != 0 && name != R::ON_FAILURE {
            return Err(Error::invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ));
        }
    }
    if let Some(lc) = &hc.log_config {
        match lc.typ.as_deref().unwrap_or("") {
            "" | "json-file" | "local" => {}
            d => {
                return Err(Error::invalid(format!(
                    "logger: no log driver named '{d}' is registered"
                )))
            }
        }
        for (k, v) in lc.config.iter().flatten() {
            match k.as_str() {
                "max-size" => {
                    berth_runtime::spec::parse_memory(v).map_err(|_| {
                        Error::invalid(format!("invalid value for log opt max-size: {v}"))
                    })?;
                }
                "max-file" => {
                    if v.parse::<u32>().map(|n| n < 1).unwrap_or(true) {
                        return Err(Error::invalid("max-file cannot be less than 1"));
                    }
                }
                "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag" => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "unknown log opt '{k}' for json-file log driver"
                    )))
                }
            }
        }
    }
    if let Some(pb) = &hc.port_bindings {
        crate::networks::validate_port_bindings(pb)?;
    }
    for h in hc.extra_hosts.iter().flatten() {
        let ok = h
            .split_once(':')
            .map(|(n, ip)| {
                !n.is_empty() && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok())
            })
            .unwrap_or(false);
        if !ok {
            return Err(Error::invalid(format!(
                "invalid IP address in add-host: \"{h}\""
            )));
        }
    }
    for d in hc.dns.iter().flatten() {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::invalid(format!("{d} is not an ip address")));
        }
    }
    crate::runopts::validate_modes(hc)?;
    Ok(())
}

impl State {
    /// POST /containers/create
    pub async fn create_container(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<String, Error> {
        if let Some(n) = &name {
            let n2 = n.strip_prefix('/').unwrap_or(n);
            if !valid_name(n2) {
                return Err(Error::invalid(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        let image_ref = body.image.clone().unwrap_or_default();
        if image_ref.is_empty() {
            return Err(Error::invalid(
                "config cannot be empty in order to create a container",
            ));
        }
        let images = self.images.clone();
        let r = image_ref.clone();
        let (image, icfg) = tokio::task::spawn_blocking(move || {
            let img = images.resolve(&r)?;
            let cfg = images.config(&img.id)?;
            Ok::<_, Error>((img, cfg))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;

        let mut hc = body.host_config.clone().unwrap_or_default();
        validate_host_config(&hc)?;
        crate::runopts::apply_defaults(&mut hc);
        if matches!(
            hc.network_mode.as_deref(),
            None | Some("") | Some("default")
        ) {
            hc.network_mode = Some("bridge".into());
        }
        let networks = self.plan_endpoints(&mut hc, body.networking_config.as_ref())?;
        match &mut hc.log_config {
            None => {
                hc.log_config = Some(models::HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::new()),
                })
            }
            Some(lc) if lc.typ.as_deref().unwrap_or("").is_empty() => {
                lc.typ = Some("json-file".into())
            }
            Some(_) => {}
        }
        if hc.restart_policy.is_none() {
            hc.restart_policy = Some(models::RestartPolicy {
                name: Some(models::RestartPolicyNameEnum::NO),
                maximum_retry_count: Some(0),
            });
        }

        // Merge the image's config under the user's, as docker's daemon does.
        let user_ep = body.entrypoint.clone();
        let user_cmd = body.cmd.clone().unwrap_or_default();
        let mut entrypoint: Vec<String> = match &user_ep {
            Some(ep) if is_empty_cmd(ep) => vec![],
            Some(ep) => ep.clone(),
            None => icfg.entrypoint.clone().unwrap_or_default(),
        };
        let cmd: Vec<String> = if !user_cmd.is_empty() {
            user_cmd
        } else if user_ep.as_ref().map(|e| !is_empty_cmd(e)).unwrap_or(false) {
            // A new entrypoint resets the image's CMD (docker quirk kept).
            vec![]
        } else {
            icfg.cmd.clone().unwrap_or_default()
        };
        let mut argv = entrypoint.clone();
        argv.extend(cmd.iter().cloned());
        if argv.is_empty() {
            return Err(Error::invalid("no command specified"));
        }
        let path = argv.remove(0);

        let id = util::new_id();
        let env = merge_env(
            icfg.env.as_deref().unwrap_or(&[]),
            body.env.as_deref().unwrap_or(&[]),
        );
        let mut labels = icfg.labels.clone().unwrap_or_default();
        labels.extend(body.labels.clone().unwrap_or_default());
        let mut exposed = icfg.exposed_ports.clone().unwrap_or_default();
        exposed.extend(body.exposed_ports.clone().unwrap_or_default());
        let mut volumes = icfg.volumes.clone().unwrap_or_default();
        volumes.extend(body.volumes.clone().unwrap_or_default());
        let mounts = self.plan_mounts(&hc, &volumes)?;
        let hostname = match body.hostname.as_deref() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ if hc.network_mode.as_deref() == Some("host") => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            _ => id[..12].to_string(),
        };
        if user_ep.is_some() && entrypoint.is_empty() {
            entrypoint = vec![];
        }
        let config = ContainerConfig {
            hostname: Some(hostname),
            domainname: Some(body.domainname.clone().unwrap_or_default()),
            user: Some(
                body.user
                    .clone()
                    .filter(|u| !u.is_empty())
                    .or(icfg.user.clone())
                    .unwrap_or_default(),
            ),
            attach_stdin: Some(body.attach_stdin.unwrap_or(false)),
            attach_stdout: Some(body.attach_stdout.unwrap_or(false)),
            attach_stderr: Some(body.attach_stderr.unwrap_or(false)),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            tty: Some(body.tty.unwrap_or(false)),
            open_stdin: Some(body.open_stdin.unwrap_or(false)),
            stdin_once: Some(body.stdin_once.unwrap_or(false)),
            env: Some(env),
            cmd: (!cmd.is_empty()).then_some(cmd),
            // Docker merges field by field: `--health-interval` alone keeps the image's test.
            healthcheck: match (body.healthcheck.clone(), icfg.healthcheck.clone()) {
                (Some(mut u), Some(i)) => {
                    if u.test.as_ref().map(|t| t.is_empty()).unwrap_or(true) {
                        u.test = i.test;
                    }
                    u.interval = u.interval.filter(|v| *v != 0).or(i.interval);
                    u.timeout = u.timeout.filter(|v| *v != 0).or(i.timeout);
                    u.start_period = u.start_period.filter(|v| *v != 0).or(i.start_period);
                    u.start_interval = u.start_interval.filter(|v| *v != 0).or(i.start_interval);
                    u.retries = u.retries.filter(|v| *v != 0).or(i.retries);
                    Some(u)
                }
                (u, i) => u.or(i),
            },
            args_escaped: None,
            image: Some(image_ref.clone()),
            volumes: (!volumes.is_empty()).then_some(volumes),
            working_dir: Some(
                body.working_dir
                    .clone()
                    .filter(|w| !w.is_empty())
                    .or(icfg.working_dir.clone())
                    .unwrap_or_default(),
            ),
            entrypoint: (!entrypoint.is_empty()).then_some(entrypoint),
            network_disabled: body.network_disabled,
            on_build: icfg.on_build.clone(),
            labels: Some(labels),
            stop_signal: body.stop_signal.clone().or(icfg.stop_signal.clone()),
            stop_timeout: body.stop_timeout,
            shell: body.shell.clone().or(icfg.shell.clone()),
        };
        if let Some(w) = config.working_dir.as_deref() {
            if !w.is_empty() && !w.starts_with('/') {
                return Err(Error::invalid(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
        }

        let rec_base = |name: String| Record {
            id: id.clone(),
            name,
            created: Utc::now(),
            image_id: image.id.clone(),
            path: path.clone(),
            args: argv.clone(),
            config: config.clone(),
            host_config: hc.clone(),
            state: CState {
                status: "created".into(),
                ..Default::default()
            },
            restart_count: 0,
            has_started: false,
            networks: networks.clone(),
            published: Default::default(),
            manually_stopped: false,
            mounts: mounts.clone(),
        };

        let dir = self.container_dir(&id);
        std::fs::create_dir_all(&dir)?;
        // Claim the name and insert under one lock.
        let ctr = {
            let mut t = self.table_write();
            let name = match &name {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n).to_string();
                    if let Some(other) = t.by_name.get(&n) {
                        let _ = std::fs::remove_dir_all(&dir);
                        return Err(Error::conflict(format!(
                            "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    n
                }
                None => {
                    let mut i = 0;
                    loop {
                        let n = util::random_name(i);
                        if !t.by_name.contains_key(&n) {
                            break n;
                        }
                        i += 1;
                    }
                }
            };
            let rec = rec_base(name.clone());
            if let Err(e) = self.persist(&rec) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
            t.by_name.insert(name, id.clone());
            let c = Arc::new(Ctr::new(rec));
            t.by_id.insert(id.clone(), c.clone());
            c
        };
        if let Err(e) = self.create_volumes(&mounts) {
            let _ = self.remove_container(&ctr, true).await;
            return Err(e);
        }
        self.ctr_event(&ctr.rec(), "create", &[]);
        Ok(id)
    }

    /// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the container and returns
    /// the bind mounts for them.
    fn etc_files(
        &self,
        rec: &Record,
        dir: &Path,
        net: &crate::networks::NetSetup,
    ) -> Result<Vec<oci_spec::runtime::Mount>, Error> {
        // `--network container:<name>` shares the other container's files, as docker does.
        let src = net
            .share_etc_from
            .clone()
            .unwrap_or_else(|| dir.to_path_buf());
        if net.share_etc_from.is_none() {
            self.write_etc_files(rec, dir, net)?;
        }
        let dir = &src;
        let ro = rec.host_config.readonly_rootfs.unwrap_or(false);
        let mut mounts = Vec::new();
        for (f, dest) in [
            ("resolv.conf", "/etc/resolv.conf"),
            ("hostname", "/etc/hostname"),
            ("hosts", "/etc/hosts"),
        ] {
            let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
            if ro {
                opts.push("ro".into());
            }
            let m = oci_spec::runtime::MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(dir.join(f))
                .options(opts)
                .build()
                .map_err(|e| Error::internal(e.to_string()))?;
            mounts.push(m);
        }
        Ok(mounts)
    }

    fn write_etc_files(
        &self,
        rec: &Record,
        dir: &Path,
        net: &crate::networks::NetSetup,
    ) -> Result<(), Error> {
        let hc = &rec.host_config;
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let host_net = hc.network_mode.as_deref() == Some("host");
        std::fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
        let mut hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
        };
        for h in hc.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = h.split_once(':') {
                let ip = if ip == "host-gateway" {
                    self.networks
                        .find("bridge")
                        .ok()
                        .and_then(|n| n.rec.gateway.clone())
                        .unwrap_or_default()
                } else {
                    ip.to_string()
                };
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        if !host_net {
            if net.hosts.is_empty() {
                hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
            }
            for (ip, names) in &net.hosts {
                hosts.push_str(&format!("{ip}\t{names}\n"));
            }
        }
        std::fs::write(dir.join("hosts"), hosts)?;

        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut ns: Vec<String> = Vec::new();
        let mut search: Vec<String> = Vec::new();
        let mut options: Vec<String> = Vec::new();
        for l in host_resolv.lines() {
            let mut f = l.split_whitespace();
            match f.next() {
                Some("nameserver") => ns.extend(f.next().map(String::from)),
                Some("search") | Some("domain") => search = f.map(String::from).collect(),
                Some("options") => options.extend(f.map(String::from)),
                _ => {}
            }
        }
        if !host_net {
            // Loopback resolvers are unreachable from a private network namespace (docker
            // filters them the same way, and falls back to Google's when none is left).
            ns.retain(|n| !(n.starts_with("127.") || n == "::1"));
            if ns.is_empty() {
                ns = vec!["8.8.8.8".into(), "8.8.4.4".into()];
            }
        }
        if let Some(d) = hc.dns.as_ref().filter(|d| !d.is_empty()) {
            ns = d.clone();
        }
        if let Some(d) = hc.dns_search.as_ref().filter(|d| !d.is_empty()) {
            search = d.iter().filter(|s| s.as_str() != ".").cloned().collect();
        }
        if let Some(o) = hc.dns_options.as_ref().filter(|d| !d.is_empty()) {
            options = o.clone();
        }
        if net.embedded_dns {
            // The embedded server forwards to the real ones (docker's 127.0.0.11).
            ns = vec!["127.0.0.11".into()];
            if hc
                .dns_options
                .as_ref()
                .map(|o| o.is_empty())
                .unwrap_or(true)
            {
                options = vec!["ndots:0".into()];
            }
        }
        let mut resolv = String::new();
        for n in &ns {
            resolv.push_str(&format!("nameserver {n}\n"));
        }
        if !search.is_empty() {
            resolv.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !options.is_empty() {
            resolv.push_str(&format!("options {}\n", options.join(" ")));
        }
        std::fs::write(dir.join("resolv.conf"), resolv)?;
        Ok(())
    }

    fn log_opts(&self, rec: &Record) -> (Option<u64>, u32) {
        let mut opts = self.cfg.log_opts.clone();
        if let Some(lc) = &rec.host_config.log_config {
            if let Some(c) = &lc.config {
                opts.extend(c.clone());
            }
        }
        // Rotated by default (like docker's `local` driver: 20 MiB × 5 files).
        let size = opts
            .get("max-size")
            .map(|s| {
                berth_runtime::spec::parse_memory(s)
                    .ok()
                    .filter(|v| *v > 0)
                    .map(|v| v as u64)
            })
            .unwrap_or(Some(20 << 20));
        let files = opts
            .get("max-file")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(5)
            .max(1);
        (size, files)
    }

    /// POST /containers/{id}/start
    pub async fn start_container(self: &Arc<Self>, c: &Arc<Ctr>) -> Result<(), Error> {
        let _op = c.op.lock().await;
        let rec = c.rec();
        if rec.state.running {
            return Err(Error::not_modified("container already started"));
        }
        if rec.state.status == "removing" || rec.state.dead {
            return Err(Error::conflict(format!(
                "container {} is marked for removal and cannot be started",
                rec.id
            )));
        }
        let dir = self.container_dir(&rec.id);
        match self.start_inner(c, &rec, &dir).await {
            Ok(()) => Ok(()),
            Err(mut e) => {
                e.message = docker_start_error(&e.message);
                // Docker records the failure on the container: exit code 127 for a missing
                // executable, 126 when it cannot be run, else 128.
                let msg = e.message.clone();
                let code = if msg.contains("executable file not found")
                    || msg.contains("no such file or directory")
                    || msg.contains("No such file or directory")
                {
                    127
                } else if msg.contains("permission denied") || msg.contains("Permission denied") {
                    126
                } else {
                    128
                };
                let mut nrec = c.rec();
                self.net_teardown(&mut nrec, true).await;
                c.update(|r| {
                    r.networks = nrec.networks.clone();
                    r.published = nrec.published.clone();
                    r.state.status = if r.has_started {
                        "exited".into()
                    } else {
                        "created".into()
                    };
                    r.state.exit_code = code;
                    r.state.error = msg.clone();
                    r.state.running = false;
                    r.state.pid = 0;
                });
                let _ = self.persist(&c.rec());
                // Wake pending attaches (they get EOF).
                c.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let d = dir.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    crate::runopts::release_run_plan(&d);
                    berth_image::ImageStore::unmount_rootfs(&d)
                })
                .await;
                // Like docker: a container that was to be auto-removed goes away when its
                // start fails (`run --rm` waits for that removal).
                if rec.host_config.auto_remove.unwrap_or(false) {
                    let me = self.clone();
                    let c2 = c.clone();
                    tokio::spawn(async move {
                        let _ = me.remove_container(&c2, true).await;
                    });
                }
                Err(e)
            }
        }
    }

    async fn start_inner(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        rec: &Record,
        dir: &Path,
    ) -> Result<(), Error> {
        let images = self.images.clone();
        let image_id = rec.image_id.clone();
        let d = dir.to_path_buf();
        let t0 = std::time::Instant::now();
        let rootfs = tokio::task::spawn_blocking(move || images.mount_rootfs(&image_id, &d))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        let mut nrec = rec.clone();
        let net = self.net_setup(&mut nrec).await;
        c.update(|r| {
            r.networks = nrec.networks.clone();
            r.published = nrec.published.clone();
        });
        let net = net?;
        let rec = &nrec;
        let mut mounts = self.etc_files(rec, dir, &net)?;
        self.setup_mounts(rec, &rootfs, &mut mounts).await?;
        // docker's volume `mount` events, one per volume the container uses.
        for m in rec.mounts.iter().filter(|m| m.typ == "volume") {
            self.events.publish(
                "volume",
                "mount",
                &m.name,
                HashMap::from([
                    ("container".to_string(), rec.id.clone()),
                    ("destination".to_string(), m.destination.clone()),
                    ("driver".to_string(), m.driver.clone()),
                    ("propagation".to_string(), m.propagation.clone()),
                    ("read/write".to_string(), m.rw.to_string()),
                ]),
            );
        }
        let hc = &rec.host_config;
        let cfg = &rec.config;
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        // --init, namespaces of other containers, devices.
        let plan = self.run_plan(rec, &rootfs, dir, args)?;
        mounts.extend(plan.mounts);
        mounts.sort_by_key(|m| berth_volume::spec::depth(&m.destination().to_string_lossy()));
        let mut env = cfg.env.clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.insert(
                0,
                format!("HOSTNAME={}", cfg.hostname.clone().unwrap_or_default()),
            );
        }
        let opts = berth_runtime::spec::SpecOptions {
            args: plan.args,
            env,
            cwd: cfg.working_dir.clone().unwrap_or_default(),
            user: cfg.user.clone().unwrap_or_default(),
            group_add: hc.group_add.clone().unwrap_or_default(),
            hostname: cfg.hostname.clone().unwrap_or_default(),
            domainname: cfg.domainname.clone().unwrap_or_default(),
            tty: cfg.tty.unwrap_or(false),
            rootfs: rootfs.clone(),
            readonly_rootfs: hc.readonly_rootfs.unwrap_or(false),
            privileged: hc.privileged.unwrap_or(false),
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            security_opt: hc.security_opt.clone().unwrap_or_default(),
            memory: hc.memory.unwrap_or(0),
            memory_swap: hc.memory_swap.unwrap_or(0),
            memory_reservation: hc.memory_reservation.unwrap_or(0),
            nano_cpus: hc.nano_cpus.unwrap_or(0),
            cpu_shares: hc.cpu_shares.unwrap_or(0),
            cpu_quota: hc.cpu_quota.unwrap_or(0),
            cpu_period: hc.cpu_period.unwrap_or(0),
            cpuset_cpus: hc.cpuset_cpus.clone().unwrap_or_default(),
            pids_limit: hc.pids_limit,
            oom_kill_disable: hc.oom_kill_disable.unwrap_or(false),
            network_mode: hc.network_mode.clone().unwrap_or_default(),
            netns_path: net.netns.as_ref().map(|p| p.display().to_string()),
            ipc_mode: plan.ipc_mode,
            ipc_ns_path: plan.ipc_ns_path,
            pid_mode: plan.pid_mode,
            pid_ns_path: plan.pid_ns_path,
            uts_mode: hc.uts_mode.clone().unwrap_or_default(),
            cgroupns_mode: crate::runopts::cgroupns_mode(hc),
            devices: plan.devices,
            cgroups_path: self.cgroup_path(&rec.id),
            mounts,
            sysctls: hc.sysctls.clone().unwrap_or_default(),
            shm_size: hc.shm_size.unwrap_or(0),
            ulimits: hc
                .ulimits
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|u| Some((u.name?, u.soft? as u64, u.hard? as u64)))
                .collect(),
            ..Default::default()
        };
        let t_mount = t0.elapsed();
        let spec_path = dir.join("config.json");
        let spec = tokio::task::spawn_blocking(move || {
            let mut spec = berth_runtime::spec::generate(&opts)?;
            crate::volumes::apply_propagation(&mut spec, &opts.rootfs)?;
            spec.save(&spec_path)
                .map_err(|e| Error::internal(format!("writing config.json: {e}")))?;
            Ok::<_, Error>(())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()));
        spec??;

        let (log_max_size, log_max_files) = self.log_opts(rec);
        let sc = ShimConfig {
            id: rec.id.clone(),
            bundle: dir.to_path_buf(),
            dir: dir.to_path_buf(),
            state_root: self.runtime_root.clone(),
            log_path: log_path(dir, &rec.id),
            log_max_size,
            log_max_files,
            tty: cfg.tty.unwrap_or(false),
            open_stdin: cfg.open_stdin.unwrap_or(false),
            stdin_once: cfg.stdin_once.unwrap_or(false),
            shim_binary: self.shim_binary.clone(),
        };
        let t_spec = t0.elapsed();
        let client = shim::spawn(&sc)
            .await
            .map_err(|e| Error::invalid(e.to_string()))?;
        let t_spawned = t0.elapsed();
        // Attach everyone who asked before start, so they see output from the first byte.
        let pending: Vec<PendingAttach> =
            std::mem::take(&mut *c.pending.lock().unwrap_or_else(|p| p.into_inner()));
        for p in pending {
            deliver_attach(&client, p, &rec.id).await;
        }
        let t_created = t0.elapsed();
        let pid = match client.start().await {
            Ok(pid) => pid,
            Err(e) => {
                let _ = client.kill(libc::SIGKILL).await;
                return Err(Error::invalid(e.to_string()));
            }
        };
        let rec = c.update(|r| {
            r.state = CState {
                status: "running".into(),
                running: true,
                pid: pid as i64,
                started_at: Some(Utc::now()),
                finished_at: r.state.finished_at,
                ..Default::default()
            };
            r.has_started = true;
            r.manually_stopped = false;
            r.clone()
        });
        self.persist(&rec)?;
        self.ctr_event(&rec, "start", &[]);
        tracing::debug!(
            id = %rec.id,
            mount_ms = t_mount.as_secs_f64() * 1e3,
            spec_ms = (t_spec - t_mount).as_secs_f64() * 1e3,
            create_ms = (t_spawned - t_spec).as_secs_f64() * 1e3,
            attach_ms = (t_created - t_spawned).as_secs_f64() * 1e3,
            start_ms = (t0.elapsed() - t_created).as_secs_f64() * 1e3,
            "container started"
        );
        let me = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move { me.monitor(c2, client).await });
        self.start_health(c);
        Ok(())
    }

    /// Waits for the container's exit through its shim and records it.
    pub async fn monitor(self: Arc<Self>, c: Arc<Ctr>, client: ShimClient) {
        let dir = self.container_dir(&c.id);
        let st = match client.wait().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(id = %c.id, "lost the shim: {e}");
                shim::read_exit_status(&dir).unwrap_or(ExitStatus {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                })
            }
        };
        self.on_exit(&c, st).await;
    }

    async fn on_exit(self: &Arc<Self>, c: &Arc<Ctr>, st: ExitStatus) {
        let finished = DateTime::parse_from_rfc3339(&st.finished_at)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        let mut nrec = c.rec();
        self.net_teardown(&mut nrec, false).await;
        let rec = c.update(|r| {
            r.networks = nrec.networks.clone();
            r.published = nrec.published.clone();
            r.state.running = false;
            r.state.paused = false;
            r.state.pid = 0;
            r.state.exit_code = st.exit_code as i64;
            r.state.oom_killed = st.oom_killed;
            r.state.finished_at = Some(finished);
            r.state.status = "exited".into();
            r.clone()
        });
        if let Err(e) = self.persist(&rec) {
            tracing::error!(id = %c.id, "persisting exit: {}", e.message);
        }
        if st.oom_killed {
            self.ctr_event(&rec, "oom", &[]);
        }
        self.ctr_event(&rec, "die", &[("exitCode", st.exit_code.to_string())]);
        let d = self.container_dir(&c.id);
        let _ = tokio::task::spawn_blocking(move || {
            crate::runopts::release_run_plan(&d);
            berth_image::ImageStore::unmount_rootfs(&d)
        })
        .await;
        self.release_volumes(&rec);
        c.events.send_modify(|e| {
            e.exits += 1;
            e.last_exit = st.exit_code as i64;
        });
        if rec.host_config.auto_remove.unwrap_or(false) {
            let me = self.clone();
            let c2 = c.clone();
            tokio::spawn(async move {
                if let Err(e) = me.remove_container(&c2, true).await {
                    tracing::warn!(id = %c2.id, "auto-remove: {}", e.message);
                }
            });
        } else if Self::should_restart(&rec, false) {
            self.schedule_restart(c, &rec);
        }
    }

    /// Docker's restart manager decision. `daemon_start`: the daemon is starting up, where
    /// `always` revives even a manually stopped container.
    pub fn should_restart(rec: &Record, daemon_start: bool) -> bool {
        use models::RestartPolicyNameEnum as R;
        if rec.host_config.auto_remove.unwrap_or(false)
            || rec.state.status == "removing"
            || !rec.has_started
        {
            return false;
        }
        let Some(rp) = &rec.host_config.restart_policy else {
            return false;
        };
        match rp.name.unwrap_or(R::EMPTY) {
            R::ALWAYS => daemon_start || !rec.manually_stopped,
            R::UNLESS_STOPPED => !rec.manually_stopped,
            R::ON_FAILURE => {
                let max = rp.maximum_retry_count.unwrap_or(0);
                !rec.manually_stopped
                    && rec.state.exit_code != 0
                    && (max == 0 || rec.restart_count < max)
            }
            _ => false,
        }
    }

    /// Restarts the container after the back-off, unless it is stopped or removed meanwhile.
    fn schedule_restart(self: &Arc<Self>, c: &Arc<Ctr>, rec: &Record) {
        let ran = match (rec.state.started_at, rec.state.finished_at) {
            (Some(s), Some(f)) => (f - s).num_milliseconds(),
            _ => 0,
        };
        let delay = {
            let mut b = c.backoff_ms.lock().unwrap_or_else(|p| p.into_inner());
            *b = if *b == 0 || ran >= 10_000 {
                100
            } else {
                (*b * 2).min(60_000)
            };
            *b
        };
        let rec = c.update(|r| {
            r.state.restarting = true;
            r.state.status = "restarting".into();
            r.clone()
        });
        let _ = self.persist(&rec);
        let me = self.clone();
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let go = {
                let _op = c.op.lock().await;
                let r = c.rec();
                let alive = me.table_read().by_id.contains_key(&c.id);
                if alive && r.state.restarting && !r.manually_stopped {
                    let rec = c.update(|r| {
                        r.state.restarting = false;
                        r.restart_count += 1;
                        r.clone()
                    });
                    let _ = me.persist(&rec);
                    true
                } else {
                    false
                }
            };
            if go {
                if let Err(e) = me.start_container(&c).await {
                    tracing::warn!(id = %c.id, "restart: {}", e.message);
                } else {
                    me.ctr_event(&c.rec(), "restart", &[]);
                }
            }
        });
    }

    /// After a daemon restart: reconnect to a container's shim, or record its exit.
    pub async fn reattach(self: Arc<Self>, c: Arc<Ctr>) {
        let dir = self.container_dir(&c.id);
        let client = ShimClient::new(&dir);
        let alive = tokio::time::timeout(Duration::from_secs(5), client.state()).await;
        match alive {
            Ok(Ok(st)) if st.status == "running" || st.status == "paused" => {
                c.update(|r| {
                    r.state.pid = st.pid as i64;
                    r.state.paused = st.status == "paused";
                    r.state.status = st.status.clone();
                });
                tracing::info!(id = %c.id, "reattached to running container");
                self.net_recover(&c.rec()).await;
                tokio::spawn(async move { self.monitor(c, client).await });
            }
            Ok(Ok(st)) if st.exit.is_some() => {
                if let Some(e) = st.exit {
                    self.on_exit(&c, e).await;
                }
            }
            _ => {
                let st = shim::read_exit_status(&dir).unwrap_or(ExitStatus {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                });
                self.on_exit(&c, st).await;
            }
        }
    }

    /// Waits until the container's exit counter passes `seen`.
    pub async fn wait_exit_after(c: &Ctr, seen: u64, timeout: Option<Duration>) -> bool {
        let mut rx = c.events.subscribe();
        let fut = async {
            loop {
                if rx.borrow_and_update().exits > seen {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or(false),
            None => fut.await,
        }
    }

    /// SIGKILL (thawing a paused container so the signal is delivered) and wait, bounded,
    /// for the exit after `seen`. False if no exit came.
    async fn sigkill_and_wait(c: &Ctr, client: &ShimClient, paused: bool, seen: u64) -> bool {
        let _ = client.kill(libc::SIGKILL).await;
        if paused {
            let _ = client.resume().await;
        }
        Self::wait_exit_after(c, seen, Some(Duration::from_secs(30))).await
    }

    /// POST /containers/{id}/stop (also used by restart and rm -f).
    pub async fn stop_container(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        timeout: Option<i64>,
        signal: Option<i32>,
    ) -> Result<(), Error> {
        let _op = c.op.lock().await;
        self.stop_locked(c, timeout, signal).await
    }

    async fn stop_locked(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        timeout: Option<i64>,
        signal: Option<i32>,
    ) -> Result<(), Error> {
        let rec = c.update(|r| {
            r.manually_stopped = true;
            if r.state.restarting {
                r.state.restarting = false;
                r.state.status = "exited".into();
            }
            r.clone()
        });
        let _ = self.persist(&rec);
        if !rec.state.running {
            return Err(Error::not_modified("container already stopped"));
        }
        let seen = c.events.borrow().exits;
        let client = ShimClient::new(&self.container_dir(&c.id));
        let sig = signal
            .or_else(|| {
                rec.config
                    .stop_signal
                    .as_deref()
                    .and_then(util::parse_signal)
            })
            .unwrap_or(libc::SIGTERM);
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        if sig != libc::SIGKILL {
            let _ = client.kill(sig).await;
            if rec.state.paused {
                let _ = client.resume().await;
            }
            let t = (secs >= 0).then(|| Duration::from_secs(secs as u64));
            if Self::wait_exit_after(c, seen, t).await {
                self.ctr_event(&c.rec(), "stop", &[]);
                return Ok(());
            }
        }
        if !Self::sigkill_and_wait(c, &client, rec.state.paused, seen).await {
            return Err(Error::internal(
                "tried to kill container, but did not receive an exit event",
            ));
        }
        self.ctr_event(&c.rec(), "stop", &[]);
        Ok(())
    }

    pub async fn restart_container(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        timeout: Option<i64>,
        signal: Option<i32>,
    ) -> Result<(), Error> {
        {
            let _op = c.op.lock().await;
            match self.stop_locked(c, timeout, signal).await {
                Ok(()) => {}
                Err(e) if e.kind == berth_api::ErrorKind::NotModified => {}
                Err(e) => return Err(e),
            }
        }
        let r = match self.start_container(c).await {
            Err(e) if e.kind == berth_api::ErrorKind::NotModified => Ok(()),
            r => r,
        };
        if r.is_ok() {
            self.ctr_event(&c.rec(), "restart", &[]);
        }
        r
    }

    pub async fn kill_container(&self, c: &Arc<Ctr>, sig: i32) -> Result<(), Error> {
        let rec = c.rec();
        if !rec.state.running {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let rec = c.update(|r| {
            r.manually_stopped = true;
            r.clone()
        });
        let _ = self.persist(&rec);
        let client = ShimClient::new(&self.container_dir(&c.id));
        client.kill(sig).await.map_err(Error::from)?;
        if sig == libc::SIGKILL && rec.state.paused {
            let _ = client.resume().await;
        }
        self.ctr_event(&rec, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    pub async fn pause_container(&self, c: &Arc<Ctr>, pause: bool) -> Result<(), Error> {
        let _op = c.op.lock().await;
        let rec = c.rec();
        if !rec.state.running {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        if pause && rec.state.paused {
            return Err(Error::conflict(format!(
                "Container {} is already paused",
                c.id
            )));
        }
        if !pause && !rec.state.paused {
            return Err(Error::conflict(format!("Container {} is not paused", c.id)));
        }
        let client = ShimClient::new(&self.container_dir(&c.id));
        if pause {
            client.pause().await.map_err(Error::from)?;
        } else {
            client.resume().await.map_err(Error::from)?;
        }
        let rec = c.update(|r| {
            r.state.paused = pause;
            r.state.status = if pause {
                "paused".into()
            } else {
                "running".into()
            };
            r.clone()
        });
        self.persist(&rec)?;
        self.ctr_event(&rec, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    pub async fn rename_container(&self, c: &Arc<Ctr>, new: &str) -> Result<(), Error> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if !valid_name(new) {
            return Err(Error::invalid(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let mut t = self.table_write();
        let old = c.rec().name;
        if old == new {
            return Err(Error::invalid(
                "Renaming a container with the same name as its current name",
            ));
        }
        if let Some(other) = t.by_name.get(new) {
            return Err(Error::conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let rec = c.update(|r| {
            r.name = new.to_string();
            r.clone()
        });
        self.persist(&rec)?;
        t.by_name.remove(&old);
        t.by_name.insert(new.to_string(), c.id.clone());
        self.ctr_event(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// Removes a container; an auto-removed (`--rm`) one takes its anonymous volumes along.
    pub async fn remove_container(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        force: bool,
    ) -> Result<(), Error> {
        let v = c.rec().host_config.auto_remove.unwrap_or(false);
        self.remove_container_v(c, force, v).await
    }

    /// DELETE /containers/{id}; `remove_volumes` is `rm -v` (anonymous volumes go too).
    pub async fn remove_container_v(
        self: &Arc<Self>,
        c: &Arc<Ctr>,
        force: bool,
        remove_volumes: bool,
    ) -> Result<(), Error> {
        let _op = c.op.lock().await;
        let rec = c.rec();
        if !self.table_read().by_id.contains_key(&c.id) {
            return Ok(());
        }
        if rec.state.running {
            if !force {
                let what = if rec.state.paused {
                    "paused"
                } else {
                    "running"
                };
                return Err(Error::conflict(format!(
                    "cannot remove container \"/{}\": container is {what}: {} before removing or force remove",
                    rec.name,
                    if rec.state.paused { "unpause and then stop the container" } else { "stop the container" }
                )));
            }
            c.update(|r| r.manually_stopped = true);
            let seen = c.events.borrow().exits;
            let client = ShimClient::new(&self.container_dir(&c.id));
            if !Self::sigkill_and_wait(c, &client, rec.state.paused, seen).await {
                return Err(Error::internal(
                    "could not kill running container, cannot remove",
                ));
            }
        }
        c.update(|r| r.state.status = "removing".into());
        let dir = self.container_dir(&c.id);
        let d = dir.clone();
        tokio::task::spawn_blocking(move || {
            crate::runopts::release_run_plan(&d);
            let _ = berth_image::ImageStore::unmount_rootfs(&d);
            std::fs::remove_dir_all(&d)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        self.db.delete(crate::state::CONTAINERS_TABLE, &c.id)?;
        {
            let mut t = self.table_write();
            t.by_id.remove(&c.id);
            let name = c.rec().name;
            if t.by_name.get(&name) == Some(&c.id) {
                t.by_name.remove(&name);
            }
        }
        if remove_volumes {
            self.remove_anonymous_volumes(&rec);
        }
        let exec_ids: Vec<String> = self
            .execs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, e)| e.container_id == c.id)
            .map(|(k, _)| k.clone())
            .collect();
        {
            let mut ex = self.execs.write().unwrap_or_else(|p| p.into_inner());
            for k in exec_ids {
                ex.remove(&k);
            }
        }
        c.events.send_modify(|e| e.removed = true);
        self.ctr_event(&rec, "destroy", &[]);
        Ok(())
    }

    /// Attaches a client: now if running, or queued until the next start.
    pub async fn attach_stream(
        &self,
        c: &Arc<Ctr>,
        opts: AttachOptions,
    ) -> Result<oneshot::Receiver<tokio::net::UnixStream>, Error> {
        let (tx, rx) = oneshot::channel();
        // Hold the op lock so a start in progress either sees this attach or is already done.
        let _op = c.op.lock().await;
        if c.rec().state.running {
            let client = ShimClient::new(&self.container_dir(&c.id));
            let s = client.attach(opts).await.map_err(Error::from)?;
            let _ = tx.send(s);
        } else {
            let (ctx, crx) = oneshot::channel();
            let _ = ctx.send(AttachConn::Relay(tx));
            c.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(PendingAttach { opts, conn: crx });
        }
        Ok(rx)
    }

    /// An attach whose client connection comes later through `conn` (after the 101): joined
    /// to the shim at once when the container runs, else at its next start.
    pub async fn attach_later(
        &self,
        c: &Arc<Ctr>,
        opts: AttachOptions,
        conn: oneshot::Receiver<AttachConn>,
    ) {
        let p = PendingAttach { opts, conn };
        let _op = c.op.lock().await;
        if c.rec().state.running {
            let client = ShimClient::new(&self.container_dir(&c.id));
            let id = c.id.clone();
            tokio::spawn(async move { deliver_attach(&client, p, &id).await });
        } else {
            c.pending.lock().unwrap_or_else(|p| p.into_inner()).push(p);
        }
    }

    /// POST /commit, pausing a running container while its upper dir is archived.
    pub async fn commit_container(
        &self,
        c: &Arc<Ctr>,
        pause: bool,
        opts: berth_image::CommitOptions,
    ) -> Result<String, Error> {
        let _op = c.op.lock().await;
        let rec = c.rec();
        let client = ShimClient::new(&self.container_dir(&c.id));
        let paused_here = pause && rec.state.running && !rec.state.paused;
        if paused_here {
            client.pause().await.map_err(Error::from)?;
        }
        let images = self.images.clone();
        let image_id = rec.image_id.clone();
        let dir = self.container_dir(&c.id);
        let r = tokio::task::spawn_blocking(move || images.commit(&image_id, &dir, &opts))
            .await
            .map_err(|e| Error::internal(e.to_string()))
            .and_then(|r| r);
        if paused_here {
            let _ = client.resume().await;
        }
        r
    }

    /// GET /containers/{id}/top
    pub async fn top(
        &self,
        c: &Arc<Ctr>,
        ps_args: &str,
    ) -> Result<models::ContainerTopResponse, Error> {
        if !c.rec().state.running {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let pids = cgroup_pids(&self.cgroup_path(&c.id));
        let args: Vec<String> = ps_args.split_whitespace().map(String::from).collect();
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| Error::internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

/// Rewrites libcontainer's start errors into runc's wording, which docker clients parse to
/// choose their exit code (127 "executable file not found"/"no such file or directory",
/// 126 "permission denied").
fn docker_start_error(msg: &str) -> String {
    let quoted = |m: &str| -> Option<String> {
        let start = m.find("executable '")? + "executable '".len();
        let end = m[start..].find('\'')? + start;
        Some(m[start..end].to_string())
    };
    let detail = if msg.contains("not found in $PATH") {
        quoted(msg).map(|x| {
            if x.contains('/') {
                format!("exec: \"{x}\": stat {x}: no such file or directory")
            } else {
                format!("exec: \"{x}\": executable file not found in $PATH")
            }
        })
    } else if msg.contains("does not have correct permissions") {
        quoted(msg).map(|x| format!("exec: \"{x}\": permission denied"))
    } else {
        None
    };
    match detail {
        Some(d) => format!(
            "failed to create task for container: OCI runtime create failed: unable to start container process: {d}: unknown"
        ),
        None => msg.to_string(),
    }
}

/// The pids in the container's cgroup (v2 unified, else the v1 pids/memory/cpu hierarchies).
pub fn cgroup_pids(path: &str) -> Vec<i64> {
    let rel = path.trim_start_matches('/');
    let candidates = [
        format!("/sys/fs/cgroup/{rel}/cgroup.procs"),
        format!("/sys/fs/cgroup/pids/{rel}/cgroup.procs"),
        format!("/sys/fs/cgroup/memory/{rel}/cgroup.procs"),
        format!("/sys/fs/cgroup/cpu/{rel}/cgroup.procs"),
        format!("/sys/fs/cgroup/unified/{rel}/cgroup.procs"),
    ];
    for p in candidates {
        if let Ok(s) = std::fs::read_to_string(&p) {
            let v: Vec<i64> = s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if !v.is_empty() {
                return v;
            }
        }
    }
    Vec::new()
}

/// Filters `ps` output to the container's pids, as docker's `top` does.
fn parse_ps(out: &str, pids: &[i64]) -> Result<models::ContainerTopResponse, Error> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
    let pid_idx = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::invalid("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.len() <= pid_idx {
            continue;
        }
        let Ok(pid) = fields[pid_idx].parse::<i64>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) may contain spaces.
        let n = titles.len();
        let mut row: Vec<String> = fields[..n.min(fields.len()).saturating_sub(1)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if fields.len() >= n {
            row.push(fields[n - 1..].join(" "));
        }
        procs.push(row);
    }
    Ok(models::ContainerTopResponse {
        titles: Some(titles),
        processes: Some(procs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ps_filter() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n";
        let r = parse_ps(out, &[42]).unwrap();
        let p = r.processes.unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0][7], "sleep 100");
    }
    #[test]
    fn start_errors_in_runc_words() {
        let m = docker_start_error("exec process failed: executable 'nope' not found in $PATH");
        assert!(
            m.contains("exec: \"nope\": executable file not found in $PATH"),
            "{m}"
        );
        let m = docker_start_error("executable '/x/y' not found in $PATH");
        assert!(m.contains("stat /x/y: no such file or directory"), "{m}");
        let m = docker_start_error(
            "executable '/tmp' at path '\"/tmp\"' does not have correct permissions",
        );
        assert!(m.contains("exec: \"/tmp\": permission denied"), "{m}");
    }
    #[test]
    fn names_and_env() {
        assert!(valid_name("web-1"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        let e = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
        );
        assert_eq!(e, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
