//! A scripted Docker API server on a UNIX socket, for testing the CLI's request
//! sequences (create → wait → attach → start) without a real daemon.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// How the fake container behaves.
#[derive(Clone)]
pub struct Script {
    /// Error message for `start` (status 400), or None to start fine.
    pub start_error: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i64,
}

pub struct FakeDaemon {
    pub host: String,
    /// "METHOD path" of every request, in arrival order.
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    script: Script,
    log: Arc<Mutex<Vec<String>>>,
    started: watch::Sender<bool>,
    exited: watch::Sender<bool>,
}

impl FakeDaemon {
    pub fn start(script: Script) -> std::io::Result<FakeDaemon> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("d.sock");
        let listener = UnixListener::bind(&path)?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            script,
            log: log.clone(),
            started: watch::channel(false).0,
            exited: watch::channel(false).0,
        });
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, shared).await;
                });
            }
        });
        Ok(FakeDaemon {
            host: format!("unix://{}", path.display()),
            log,
            _dir: dir,
            task,
        })
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut f = vec![kind, 0, 0, 0];
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

async fn reply(conn: &mut UnixStream, status: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(msg.as_bytes()).await?;
    conn.shutdown().await
}

async fn serve(mut conn: UnixStream, sh: Arc<Shared>) -> std::io::Result<()> {
    // Read the request head (bodies here are small and not needed).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let first = text.lines().next().unwrap_or_default().to_string();
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let len: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    if let Ok(mut l) = sh.log.lock() {
        l.push(format!("{method} {path}"));
    }
    let route = path.split('?').next().unwrap_or_default();
    match (method.as_str(), route) {
        ("POST", "/containers/create") => {
            reply(&mut conn, "201 Created", r#"{"Id":"c0ffee","Warnings":[]}"#).await
        }
        ("POST", "/containers/c0ffee/wait") => {
            // Headers at once, the status when the container has exited.
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
            )
            .await?;
            let mut exited = sh.exited.subscribe();
            let _ = exited.wait_for(|e| *e).await;
            let body = format!(r#"{{"StatusCode":{},"Error":null}}"#, sh.script.exit_code);
            conn.write_all(body.as_bytes()).await?;
            conn.shutdown().await
        }
        ("POST", "/containers/c0ffee/attach") => {
            conn.write_all(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n").await?;
            let mut started = sh.started.subscribe();
            let _ = started.wait_for(|s| *s).await;
            conn.write_all(&frame(1, &sh.script.stdout)).await?;
            conn.write_all(&frame(2, &sh.script.stderr)).await?;
            conn.flush().await?;
            let _ = sh.exited.send(true);
            conn.shutdown().await
        }
        ("POST", "/containers/c0ffee/start") => match &sh.script.start_error {
            Some(e) => {
                let body = serde_json::json!({ "message": e }).to_string();
                reply(&mut conn, "400 Bad Request", &body).await
            }
            None => {
                let _ = sh.started.send(true);
                conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await?;
                conn.shutdown().await
            }
        },
        ("DELETE", "/containers/c0ffee") => {
            conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                .await?;
            conn.shutdown().await
        }
        _ => {
            reply(
                &mut conn,
                "404 Not Found",
                &serde_json::json!({ "message": format!("page not found: {route}") }).to_string(),
            )
            .await
        }
    }
}
