//! Hijacked connections and Docker's stream framing.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
pub const MUX_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// One frame of Docker's stdcopy format: [stream, 0, 0, 0, len(u32 BE)] + payload.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// The 101 response that tells the client the connection is now a raw stream.
pub fn upgrade_response(tty: bool) -> Response {
    let ct = if tty { RAW_STREAM } else { MUX_STREAM };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, ct)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Prepares a hijack: when the client sent `Upgrade: tcp` we answer 101 and get the raw
/// connection from hyper; otherwise (old clients) we answer 200 and stream output only.
pub enum Hijack {
    Upgrade(hyper::upgrade::OnUpgrade),
    Plain,
}

impl Hijack {
    pub fn from_request(req: &mut axum::extract::Request, headers: &HeaderMap) -> Hijack {
        if crate::http::wants_upgrade(headers) {
            Hijack::Upgrade(hyper::upgrade::on(req))
        } else {
            Hijack::Plain
        }
    }
}

/// Splices a client connection and a shim stream. When the shim side ends (the process
/// exited and its output was sent) the client connection is closed even if the client is
/// still sending stdin; when the client stops sending, stdin EOF goes to the shim.
/// `before_close` runs after the last output byte, before the client sees EOF (exec uses it
/// to record the exit code, so a client that inspects right after EOF sees it).
pub async fn splice<C, F>(client: C, shim: tokio::net::UnixStream, before_close: F)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = shim.into_split();
    let input = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    before_close.await;
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    input.abort();
}

/// A client connection after its upgrade.
pub enum ClientConn {
    /// Our own UNIX socket with nothing read past the request: can go to a shim as it is.
    Unix(std::os::unix::net::UnixStream),
    /// Anything else (bytes hyper read ahead, another transport): relayed by us.
    Other(Box<dyn Duplex>),
}

pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// Waits for the upgrade and takes the connection back from hyper.
pub async fn upgraded_conn(on: hyper::upgrade::OnUpgrade) -> Option<ClientConn> {
    let up = match on.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return None;
        }
    };
    // axum serves through hyper-util's auto builder, which wraps the socket in a private
    // type: its own downcast unwraps that.
    match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<tokio::net::UnixStream>>(up) {
        Ok(parts) => {
            let s = parts.io.into_inner();
            if parts.read_buf.is_empty() {
                s.into_std().ok().map(ClientConn::Unix)
            } else {
                let (r, w) = s.into_split();
                let r = std::io::Cursor::new(parts.read_buf).chain(r);
                Some(ClientConn::Other(Box::new(tokio::io::join(r, w))))
            }
        }
        Err(up) => Some(ClientConn::Other(Box::new(TokioIo::new(up)))),
    }
}

/// Waits for the upgrade and returns the raw client connection.
pub async fn upgraded(on: hyper::upgrade::OnUpgrade) -> Option<TokioIo<hyper::upgrade::Upgraded>> {
    match on.await {
        Ok(u) => Some(TokioIo::new(u)),
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            None
        }
    }
}
