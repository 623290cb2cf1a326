//! berthd: serves the Docker Engine API on a UNIX socket.

mod archive;
mod build;
mod config;
mod containers;
mod error;
mod events;
mod exec;
mod handlers;
mod health;
mod http;
mod idle;
mod networks;
mod runopts;
mod state;
mod stream;
mod util;
mod volumes;

use anyhow::{bail, Context};
use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "berth daemon: a Docker-compatible container engine"
)]
struct Args {
    /// Root of persistent state (images, containers, volumes)
    #[arg(long, default_value = "/var/lib/berth")]
    root: PathBuf,
    /// Root of runtime state (sockets, runtime state); lost on reboot
    #[arg(long = "exec-root", default_value = "/run/berth")]
    exec_root: PathBuf,
    /// Socket to listen on (unix://PATH)
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Log level: debug, info, warn, error, fatal
    #[arg(short = 'l', long = "log-level")]
    log_level: Option<String>,
    /// Path of the pid file
    #[arg(short = 'p', long)]
    pidfile: Option<PathBuf>,
    /// Daemon configuration file (JSON, like docker's daemon.json)
    #[arg(long = "config-file")]
    config_file: Option<PathBuf>,
    /// Parent cgroup for all containers
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// Enable debug logging
    #[arg(short = 'D', long)]
    debug: bool,
    /// Interface of the default bridge network (created if missing; default berth0)
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// Address and subnet of the default bridge, CIDR (e.g. 172.30.0.1/16)
    #[arg(long)]
    bip: Option<String>,
}

fn main() -> anyhow::Result<()> {
    // glibc gives each thread that allocates its own arena; with tokio's workers and the
    // blocking pool that fragments the daemon's memory after bursts (idle RSS grew from 11 to
    // 19 MiB over the benchmarks). Two arenas are plenty for a daemon that mostly waits.
    // SAFETY: mallopt only tunes the allocator and is called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let args = Args::parse();
    let mut cfg = match &args.config_file {
        Some(p) => config::Config::load(p)?,
        None => config::Config::default(),
    };
    // Command-line flags win over the config file, as with dockerd.
    if let Some(l) = &args.log_level {
        cfg.log_level = Some(l.clone());
    }
    if args.debug {
        cfg.debug = true;
    }
    if !args.host.is_empty() {
        cfg.hosts = args.host.clone();
    }
    if args.root.as_path() != std::path::Path::new("/var/lib/berth") || cfg.data_root.is_none() {
        cfg.data_root = Some(args.root.clone());
    }
    if args.exec_root.as_path() != std::path::Path::new("/run/berth") || cfg.exec_root.is_none() {
        cfg.exec_root = Some(args.exec_root.clone());
    }
    if args.cgroup_parent.is_some() {
        cfg.cgroup_parent = args.cgroup_parent.clone();
    }
    if args.pidfile.is_some() {
        cfg.pidfile = args.pidfile.clone();
    }
    if args.bridge.is_some() {
        cfg.bridge = args.bridge.clone();
    }
    if args.bip.is_some() {
        cfg.bip = args.bip.clone();
    }

    let level = if cfg.debug {
        "debug".to_string()
    } else {
        match cfg.log_level.as_deref().unwrap_or("info") {
            "fatal" => "error".to_string(),
            l @ ("debug" | "info" | "warn" | "error" | "trace") => l.to_string(),
            other => bail!("invalid log level: {other}"),
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "berthd={level},berth_daemon={level},berth_image={level},berth_runtime={level}"
        )))
        .with_writer(std::io::stderr)
        .init();

    if let Some(d) = cfg.log_driver.as_deref() {
        if d != "json-file" && d != "local" {
            bail!("log driver {d:?} is not supported (json-file is)");
        }
    }
    let root = cfg
        .data_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
    let exec_root = cfg
        .exec_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/run/berth"));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::create_dir_all(&exec_root)
        .with_context(|| format!("creating {}", exec_root.display()))?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;

    // One daemon per root: an exclusive flock held for the life of the process.
    let lock = util::lock_root(&root)?;

    let socket = match cfg.hosts.first() {
        Some(h) => match h.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None if h.starts_with('/') => PathBuf::from(h),
            None => bail!("unsupported host {h:?}: only unix:// sockets are supported"),
        },
        None => exec_root.join("berth.sock"),
    };
    let pidfile = cfg
        .pidfile
        .clone()
        .unwrap_or_else(|| exec_root.join("berthd.pid"));
    std::fs::write(&pidfile, format!("{}", std::process::id()))
        .with_context(|| format!("writing pid file {}", pidfile.display()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    let res = rt.block_on(run(cfg, root, exec_root, socket.clone()));
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    let _ = std::fs::remove_file(&pidfile);
    let _ = std::fs::remove_file(&socket);
    drop(lock);
    res
}

async fn run(
    cfg: config::Config,
    root: PathBuf,
    exec_root: PathBuf,
    socket: PathBuf,
) -> anyhow::Result<()> {
    let state = state::State::open(cfg, root.clone(), exec_root).await?;
    let state = Arc::new(state);
    state.clone().recover().await;

    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    util::secure_socket(&socket)?;
    tracing::info!(socket = %socket.display(), root = %root.display(), "berthd listening");

    let (tx, rx) = tokio::sync::watch::channel(false);
    let shutdown = {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let server = tokio::spawn(http::serve(listener, state, shutdown));
    tokio::spawn(idle::trimmer());
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
    tracing::info!("shutting down; running containers keep running");
    let _ = tx.send(true);
    // Hijacked streams (attach, logs -f) would hold a graceful shutdown open forever: give
    // requests a moment to finish, then go. Containers live on in their shims.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    Ok(())
}
