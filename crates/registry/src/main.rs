//! `berth-registry serve|gc`: the registry server and its offline garbage collector.

use anyhow::{bail, Context};
use berth_registry::{load_tls, serve, Registry, ServerConfig, Storage};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "berth-registry",
    version,
    about = "berth's OCI distribution registry"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the registry API.
    Serve {
        /// HOST:PORT to listen on (port 0 picks a free one).
        #[arg(long, default_value = "0.0.0.0:5000")]
        addr: String,
        /// Storage directory.
        #[arg(long)]
        root: PathBuf,
        /// htpasswd file with bcrypt entries (`htpasswd -B`): turns on basic auth.
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// Realm of the basic-auth challenge.
        #[arg(long, default_value = "berth-registry")]
        realm: String,
        /// PEM certificate chain (with --tls-key: serve HTTPS).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Refuse every write (405 UNSUPPORTED).
        #[arg(long)]
        read_only: bool,
        /// error, warn, info, debug or trace.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Delete blobs no manifest references, and stale uploads. Run it with the registry
    /// stopped or read-only (an upload in flight is not referenced yet).
    Gc {
        #[arg(long)]
        root: PathBuf,
        /// Only print what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Uploads older than this are stale (e.g. 168h, 30m, 0s).
        #[arg(long, default_value = "168h", value_parser = parse_duration)]
        upload_max_age: Duration,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("invalid duration unit in {s:?} (s, m, h, d)")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            addr,
            root,
            htpasswd,
            realm,
            tls_cert,
            tls_key,
            read_only,
            log_level,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_new(&log_level)
                        .with_context(|| format!("--log-level {log_level}"))?,
                )
                .init();
            let reg = Registry::new(&ServerConfig {
                root,
                htpasswd,
                realm,
                read_only,
            })?;
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(load_tls(&c, &k)?),
                (None, None) => None,
                _ => bail!("--tls-cert and --tls-key go together"),
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?;
                eprintln!("listening on {}", listener.local_addr()?);
                let app = reg.router();
                tokio::select! {
                    r = serve(listener, app, tls) => r?,
                    _ = shutdown() => {}
                }
                Ok(())
            })
        }
        Cmd::Gc {
            root,
            dry_run,
            upload_max_age,
        } => {
            let s = Storage::open(&root).with_context(|| format!("opening {}", root.display()))?;
            let r = s.gc(dry_run, upload_max_age)?;
            for d in &r.deleted {
                println!("blob eligible for deletion: {d}");
            }
            for u in &r.uploads {
                println!("stale upload: {}", u.display());
            }
            println!(
                "{} blobs marked, {} blobs {}",
                r.kept,
                r.deleted.len(),
                if dry_run {
                    "eligible for deletion"
                } else {
                    "deleted"
                }
            );
            Ok(())
        }
    }
}

/// SIGINT or SIGTERM: stop accepting and exit.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
