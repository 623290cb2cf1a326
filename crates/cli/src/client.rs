//! Daemon connection: host selection, the bollard client, a small raw HTTP client
//! for what bollard reshapes (raw inspect JSON, repeated query params, hijacked
//! attach/exec streams, wait responses whose headers must arrive first), and the
//! mapping of errors to docker's one-line messages and exit codes.

use std::io;
use std::time::Duration;

use bollard::Docker;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// An error to print as one line on stderr, and the exit code to leave with.
#[derive(Debug)]
pub struct CliError {
    pub msg: String,
    pub code: i32,
}

impl CliError {
    pub fn new(code: i32, msg: impl Into<String>) -> CliError {
        CliError {
            msg: msg.into(),
            code,
        }
    }

    /// A silent exit with a status (e.g. a container's exit code).
    pub fn status(code: i32) -> CliError {
        CliError {
            msg: String::new(),
            code,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for CliError {}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> CliError {
        CliError::new(1, e.to_string())
    }
}

impl From<crate::tmpl::TemplateError> for CliError {
    fn from(e: crate::tmpl::TemplateError) -> CliError {
        CliError::new(1, e.0)
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// Picks the daemon address: -H, then BERTH_HOST, then DOCKER_HOST, then the default.
pub fn resolve_host(flag: Option<&str>) -> String {
    if let Some(h) = flag.filter(|h| !h.is_empty()) {
        return h.to_string();
    }
    for var in ["BERTH_HOST", "DOCKER_HOST"] {
        if let Ok(h) = std::env::var(var) {
            if !h.is_empty() {
                return h;
            }
        }
    }
    DEFAULT_HOST.to_string()
}

/// Everything a command needs to talk to the daemon.
#[derive(Clone)]
pub struct Client {
    pub host: String,
    pub docker: Docker,
    /// The socket did not exist when we started: every bollard call reports
    /// "Cannot connect", as docker does, after commands had a chance to print
    /// their client-side part (`version`, `info`).
    socket_missing: bool,
}

// Long-running calls (attach, wait, logs -f) must not time out; bollard's default is 2 minutes.
const NO_TIMEOUT: u64 = 10 * 365 * 24 * 3600;

impl Client {
    pub fn new(host: &str) -> CliResult<Client> {
        let version = bollard::API_DEFAULT_VERSION;
        let mut socket_missing = false;
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            // bollard refuses a missing socket up front; build the client on a path that
            // exists (connecting to it fails) and report "Cannot connect" per request.
            socket_missing = !std::path::Path::new(path).exists();
            let path = if socket_missing { "/" } else { path };
            Docker::connect_with_unix(path, NO_TIMEOUT, version)
                .map_err(|_| cannot_connect(host))?
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            let addr = host.replacen("tcp://", "http://", 1);
            Docker::connect_with_http(&addr, NO_TIMEOUT, version)
                .map_err(|e| CliError::new(1, format!("invalid host {host}: {e}")))?
        } else {
            return Err(CliError::new(
                125,
                format!("unable to parse docker host `{host}`"),
            ));
        };
        Ok(Client {
            host: host.to_string(),
            docker,
            socket_missing,
        })
    }

    /// Maps a bollard error to docker's message and exit code 1.
    pub fn err(&self, e: bollard::errors::Error) -> CliError {
        use bollard::errors::Error as E;
        if self.socket_missing {
            return cannot_connect(&self.host);
        }
        match e {
            E::DockerResponseServerError { message, .. } => {
                CliError::new(1, format!("Error response from daemon: {message}"))
            }
            E::DockerStreamError { error } => CliError::new(1, error),
            E::SocketNotFoundError(_) => cannot_connect(&self.host),
            other => {
                if is_connect_error(&other) {
                    cannot_connect(&self.host)
                } else {
                    CliError::new(1, other.to_string())
                }
            }
        }
    }

    /// A raw request; returns status and the full body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<BoxBody<Bytes, io::Error>>,
        content_type: Option<&str>,
    ) -> CliResult<(StatusCode, Bytes)> {
        let resp = self.raw_stream(method, path, body, content_type).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::new(1, format!("error reading response: {e}")))?
            .to_bytes();
        Ok((status, bytes))
    }

    /// A raw request returning the streaming response.
    pub async fn raw_stream(
        &self,
        method: Method,
        path: &str,
        body: Option<BoxBody<Bytes, io::Error>>,
        content_type: Option<&str>,
    ) -> CliResult<hyper::Response<hyper::body::Incoming>> {
        self.raw_stream_with(method, path, body, content_type, &[])
            .await
    }

    /// `raw_stream` with extra request headers (X-Registry-Auth).
    pub async fn raw_stream_with(
        &self,
        method: Method,
        path: &str,
        body: Option<BoxBody<Bytes, io::Error>>,
        content_type: Option<&str>,
        headers: &[(&str, String)],
    ) -> CliResult<hyper::Response<hyper::body::Incoming>> {
        let body = body.unwrap_or_else(|| {
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed()
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "berth")
            .header(
                "User-Agent",
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(body)
            .map_err(|e| CliError::new(1, e.to_string()))?;
        let io_err = |_e: io::Error| cannot_connect(&self.host);
        let resp = if let Some(path) = self.host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(io_err)?;
            send(stream, req).await?
        } else {
            let addr = self
                .host
                .trim_start_matches("tcp://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(io_err)?;
            send(stream, req).await?
        };
        Ok(resp)
    }

    /// A hijacked request (attach, exec start): the raw byte stream both ways after
    /// the daemon's "101 UPGRADED". Done by hand rather than through bollard, whose
    /// attach decoder guesses stream headers from the first byte and eats TTY output
    /// that starts with \x00-\x02.
    pub async fn hijack(&self, path: &str, json_body: Option<String>) -> CliResult<Hijacked> {
        let body = Full::new(Bytes::from(json_body.clone().unwrap_or_default()))
            .map_err(|never| match never {})
            .boxed();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("Host", "berth")
            .header(
                "User-Agent",
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            )
            .header("Connection", "Upgrade")
            .header("Upgrade", "tcp");
        if json_body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        let req = req
            .body(body)
            .map_err(|e| CliError::new(1, e.to_string()))?;
        let io_err = |_e: io::Error| cannot_connect(&self.host);
        let resp = if let Some(p) = self.host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(p).await.map_err(io_err)?;
            send_upgradable(stream, req).await?
        } else {
            let addr = self
                .host
                .trim_start_matches("tcp://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let stream = tokio::net::TcpStream::connect(addr).await.map_err(io_err)?;
            send_upgradable(stream, req).await?
        };
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            if status.is_success() {
                return Err(CliError::new(
                    1,
                    "the daemon did not upgrade the connection",
                ));
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(daemon_error(status, &body));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| CliError::new(1, format!("error upgrading connection: {e}")))?;
        let (r, w) = tokio::io::split(TokioIo::new(upgraded));
        Ok(Hijacked {
            output: Box::pin(r),
            input: Box::pin(w),
        })
    }

    /// GET returning parsed JSON, or docker's error line for a non-2xx answer.
    pub async fn get_json(&self, path: &str) -> CliResult<serde_json::Value> {
        let (status, body) = self.raw(Method::GET, path, None, None).await?;
        if !status.is_success() {
            return Err(daemon_error(status, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| CliError::new(1, format!("error decoding response: {e}")))
    }
}

/// The two halves of a hijacked connection.
pub struct Hijacked {
    pub output: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

async fn send_upgradable<S>(
    stream: S,
    req: Request<BoxBody<Bytes, io::Error>>,
) -> CliResult<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CliError::new(1, e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| CliError::new(1, format!("error during connect: {e}")))
}

/// A plain request: the same connection setup as a hijack (serving upgrades costs nothing
/// when none happens).
async fn send<S>(
    stream: S,
    req: Request<BoxBody<Bytes, io::Error>>,
) -> CliResult<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    send_upgradable(stream, req).await
}

/// Docker's line for a non-2xx answer: "Error response from daemon: <message>".
pub fn daemon_error(status: StatusCode, body: &[u8]) -> CliError {
    let msg = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| {
            let t = String::from_utf8_lossy(body).trim().to_string();
            if t.is_empty() {
                status.to_string()
            } else {
                t
            }
        });
    CliError::new(1, format!("Error response from daemon: {msg}"))
}

pub fn cannot_connect(host: &str) -> CliError {
    CliError::new(
        1,
        format!("Cannot connect to the berth daemon at {host}. Is the berth daemon running?"),
    )
}

fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ioe) = err.downcast_ref::<io::Error>() {
            if matches!(
                ioe.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::PermissionDenied
            ) {
                return true;
            }
        }
        let text = err.to_string();
        if text.contains("client error (Connect)") || text.contains("Connection refused") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Waits between polls; kept here so nothing else sleeps ad hoc.
pub const POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_resolution_order() {
        assert_eq!(resolve_host(Some("unix:///x.sock")), "unix:///x.sock");
        // Env is process-wide; only check the flag path and the fallback shape here.
        let h = resolve_host(None);
        assert!(h.contains("://"));
    }

    #[test]
    fn daemon_errors_are_one_line() {
        let e = daemon_error(
            StatusCode::NOT_FOUND,
            br#"{"message":"No such container: x"}"#,
        );
        assert_eq!(e.msg, "Error response from daemon: No such container: x");
        assert_eq!(e.code, 1);
        let e = daemon_error(StatusCode::INTERNAL_SERVER_ERROR, b"boom\n");
        assert_eq!(e.msg, "Error response from daemon: boom");
    }

    #[test]
    fn query_encoding() {
        assert_eq!(q("a b/c:d"), "a%20b%2Fc%3Ad");
        assert_eq!(q("ENV A=1"), "ENV%20A%3D1");
    }

    #[tokio::test]
    async fn missing_socket_says_cannot_connect() {
        let dir = std::env::temp_dir().join(format!("berth-cli-test-{}", std::process::id()));
        let host = format!("unix://{}/nope.sock", dir.display());
        match Client::new(&host) {
            Err(e) => assert!(e
                .msg
                .starts_with("Cannot connect to the berth daemon at unix://")),
            Ok(c) => {
                let e = c.docker.ping().await.map_err(|e| c.err(e));
                assert!(e.is_err_and(|e| e.msg.starts_with("Cannot connect")));
            }
        }
    }
}
