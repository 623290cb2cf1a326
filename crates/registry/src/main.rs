//! `berth-registry serve|gc|token-server`: the registry server, its offline garbage collector
//! and a token server for the registry's token auth.

use anyhow::{bail, Context};
use berth_registry::auth::Htpasswd;
use berth_registry::token::{Issuer, Policy, Rule};
use berth_registry::{
    load_tls, serve, Registry, ServerConfig, Storage, TokenConfig, UpstreamConfig,
};
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
        /// Token auth: the token server's URL clients are sent to (Bearer challenge realm).
        #[arg(long, conflicts_with = "htpasswd",
              requires_all = ["token_service", "token_issuer", "token_key"])]
        token_realm: Option<String>,
        /// Token auth: this registry's service name (the tokens' audience).
        #[arg(long, requires = "token_realm")]
        token_service: Option<String>,
        /// Token auth: the issuer tokens must name.
        #[arg(long, requires = "token_realm")]
        token_issuer: Option<String>,
        /// Token auth: the token server's public key (PEM, EC P-256 or RSA).
        #[arg(long, requires = "token_realm")]
        token_key: Option<PathBuf>,
        /// Pull-through cache of this registry (https://host[:port]; http:// for loopback
        /// or with --upstream-insecure). Writes are refused.
        #[arg(long)]
        upstream: Option<String>,
        #[arg(long, requires = "upstream")]
        upstream_username: Option<String>,
        #[arg(
            long,
            requires = "upstream_username",
            env = "BERTH_REGISTRY_UPSTREAM_PASSWORD"
        )]
        upstream_password: Option<String>,
        /// Allow plain http to a non-loopback upstream and skip its certificate checks.
        #[arg(long, requires = "upstream")]
        upstream_insecure: bool,
        /// error, warn, info, debug or trace.
        #[arg(long, default_value = "info")]
        log_level: String,
    },
    /// Issue registry tokens (docker's token endpoint, `GET /token?service=&scope=`).
    /// Anonymous clients get what --allow grants; htpasswd users get pull, push and delete
    /// on every repository and the catalog.
    TokenServer {
        /// HOST:PORT to listen on (port 0 picks a free one).
        #[arg(long, default_value = "0.0.0.0:5001")]
        addr: String,
        /// Private key that signs tokens (PEM: EC P-256 PKCS#8 for ES256, or RSA for RS256).
        #[arg(long)]
        key: PathBuf,
        /// The tokens' issuer (the registry's --token-issuer).
        #[arg(long)]
        issuer: String,
        /// htpasswd file with bcrypt entries: who may log in.
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// REPO_GLOB=ACTIONS granted to everyone, anonymous included (e.g. 'public/*=pull');
        /// repeatable. `*` in the glob matches across '/'.
        #[arg(long = "allow")]
        allow: Vec<Rule>,
        /// Token lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        expiry: u64,
        /// PEM certificate chain (with --tls-key: serve HTTPS).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
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

fn init_logging(log_level: &str) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(log_level)
                .with_context(|| format!("--log-level {log_level}"))?,
        )
        .init();
    Ok(())
}

fn tls_of(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(load_tls(&c, &k)?)),
        (None, None) => Ok(None),
        _ => bail!("--tls-cert and --tls-key go together"),
    }
}

/// Binds `addr`, prints "listening on ADDR" (tests and scripts wait for it) and serves until
/// SIGINT/SIGTERM.
fn run(
    addr: String,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!("listening on {}", listener.local_addr()?);
        tokio::select! {
            r = serve(listener, app, tls) => r?,
            _ = shutdown() => {}
        }
        Ok(())
    })
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
            token_realm,
            token_service,
            token_issuer,
            token_key,
            upstream,
            upstream_username,
            upstream_password,
            upstream_insecure,
            log_level,
        } => {
            init_logging(&log_level)?;
            let token = match (token_realm, token_service, token_issuer, token_key) {
                (Some(realm), Some(service), Some(issuer), Some(key)) => Some(TokenConfig {
                    realm,
                    service,
                    issuer,
                    key,
                }),
                (None, None, None, None) => None,
                _ => bail!(
                    "--token-realm, --token-service, --token-issuer and --token-key go together"
                ),
            };
            let upstream = upstream.map(|url| UpstreamConfig {
                url,
                username: upstream_username,
                password: upstream_password,
                insecure: upstream_insecure,
            });
            let reg = Registry::new(&ServerConfig {
                root,
                htpasswd,
                realm,
                read_only,
                token,
                upstream,
            })?;
            let tls = tls_of(tls_cert, tls_key)?;
            run(addr, reg.router(), tls)
        }
        Cmd::TokenServer {
            addr,
            key,
            issuer,
            htpasswd,
            allow,
            expiry,
            tls_cert,
            tls_key,
            log_level,
        } => {
            init_logging(&log_level)?;
            let htpasswd = match htpasswd {
                Some(p) => Some(Htpasswd::load(&p)?),
                None => None,
            };
            let issuer = Issuer::new(&key, &issuer, expiry, htpasswd, Policy { rules: allow })?;
            let tls = tls_of(tls_cert, tls_key)?;
            run(addr, issuer.router(), tls)
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
