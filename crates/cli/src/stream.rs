//! Hijacked-stream plumbing: raw terminal mode, stdin forwarding with detach keys,
//! output demultiplexing, terminal resize and signal proxying.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;

use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::{CliError, CliResult};

/// docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// The terminal settings to restore, shared with the signal handler task.
static SAVED_TERMIOS: std::sync::Mutex<Option<Termios>> = std::sync::Mutex::new(None);

fn restore_terminal() {
    let saved = SAVED_TERMIOS.lock().ok().and_then(|mut s| s.take());
    if let Some(orig) = saved {
        let stdin = std::io::stdin();
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &orig);
    }
}

/// Puts the local terminal into raw mode and restores it when dropped, or when we are
/// told to terminate (SIGTERM, SIGHUP) while it is raw.
pub struct RawGuard {
    on_signal: tokio::task::JoinHandle<()>,
}

impl RawGuard {
    /// Returns None when stdin is not a terminal.
    pub fn new() -> Option<RawGuard> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let orig = termios::tcgetattr(fd).ok()?;
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        *SAVED_TERMIOS.lock().ok()? = Some(orig);
        if termios::tcsetattr(fd, SetArg::TCSANOW, &raw).is_err() {
            restore_terminal();
            return None;
        }
        let on_signal = tokio::spawn(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            let code = tokio::select! {
                _ = term.recv() => 128 + libc::SIGTERM,
                _ = hup.recv() => 128 + libc::SIGHUP,
            };
            restore_terminal();
            std::process::exit(code);
        });
        Some(RawGuard { on_signal })
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        self.on_signal.abort();
        restore_terminal();
    }
}

pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false)
}

pub fn stdin_is_tty() -> bool {
    is_tty(std::io::stdin().as_fd())
}

pub fn stdout_is_tty() -> bool {
    is_tty(std::io::stdout().as_fd())
}

/// The local terminal's (height, width), from stdout or stdin.
pub fn tty_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass; fd is ours.
        let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
        if r == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Parses docker's `--detach-keys` ("ctrl-p,ctrl-q", "a,ctrl-@").
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let k = key.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b] if b.is_ascii_lowercase() => b - b'a' + 1,
                [b] if b.is_ascii_uppercase() => b - b'A' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("Unknown character: '{c}'")),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(format!("Unknown character: '{k}'"));
        }
    }
    Ok(out)
}

/// Watches stdin bytes for the detach sequence, holding back a partial match
/// (docker's term.EscapeProxy).
pub struct EscapeProxy {
    keys: Vec<u8>,
    matched: usize,
}

pub enum Escaped {
    Forward(Vec<u8>),
    Detach,
}

impl EscapeProxy {
    pub fn new(keys: Vec<u8>) -> EscapeProxy {
        EscapeProxy { keys, matched: 0 }
    }

    pub fn feed(&mut self, data: &[u8]) -> Escaped {
        if self.keys.is_empty() {
            return Escaped::Forward(data.to_vec());
        }
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return Escaped::Detach;
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        Escaped::Forward(out)
    }
}

/// Reads stdin on a plain thread (a blocking read cannot be cancelled; we exit the
/// process without joining it).
pub fn stdin_channel() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The daemon closed the output stream (the process ended or detached).
    Eof,
    /// The user typed the detach sequence.
    Detached,
}

pub type Output = Pin<Box<dyn AsyncRead + Send>>;
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Splits docker's multiplexed stream (8-byte headers: stream, 0,0,0, big-endian length).
#[derive(Default)]
pub struct Demux {
    buf: bytes::BytesMut,
}

fn frame_len(h: &[u8]) -> usize {
    u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize
}

impl Demux {
    /// Feeds bytes; calls `f` with each complete (stream, payload) frame. Frames wholly
    /// inside `data` are passed from it without a copy; only a frame cut by the end of a
    /// read waits in our buffer.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut f: impl FnMut(u8, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        while !self.buf.is_empty() && !data.is_empty() {
            let want = if self.buf.len() < 8 {
                8
            } else {
                8 + frame_len(&self.buf)
            };
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() >= 8 && self.buf.len() == 8 + frame_len(&self.buf) {
                f(self.buf[0], &self.buf[8..])?;
                self.buf.clear();
            }
        }
        while data.len() >= 8 && data.len() >= 8 + frame_len(data) {
            let end = 8 + frame_len(data);
            f(data[0], &data[8..end])?;
            data = &data[end..];
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
}

/// Writes bytes to our stdout (stream 0/1) or stderr (stream 2): straight to the
/// descriptor, after whatever std still buffers for it (its line buffering would cut a
/// payload that ends mid-line into two writes).
pub fn write_out(kind: u8, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    let fd = if kind == 2 {
        std::io::stderr().lock().flush()?;
        libc::STDERR_FILENO
    } else {
        std::io::stdout().lock().flush()?;
        libc::STDOUT_FILENO
    };
    // SAFETY: fd 1/2 stay open for the process's life; ManuallyDrop never closes it.
    let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    f.write_all(data)
}

/// Pumps a hijacked stream: output to our fds (raw for a TTY, demultiplexed
/// otherwise), stdin (if wanted) to the container. Returns when the output ends or
/// the user detaches.
pub async fn pump(
    mut output: Output,
    mut input: Input,
    tty: bool,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
    detach_keys: Option<Vec<u8>>,
) -> CliResult<StreamEnd> {
    let (det_tx, mut det_rx) = mpsc::channel::<()>(1);
    if let Some(mut rx) = stdin {
        let mut proxy = detach_keys.map(EscapeProxy::new);
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let data = match proxy.as_mut().map(|p| p.feed(&chunk)) {
                    Some(Escaped::Detach) => {
                        let _ = det_tx.send(()).await;
                        return;
                    }
                    Some(Escaped::Forward(d)) => d,
                    None => chunk,
                };
                if input.write_all(&data).await.is_err() || input.flush().await.is_err() {
                    return;
                }
            }
            // stdin EOF: close our write half so the container sees EOF too.
            let _ = input.shutdown().await;
            // Keep the detach channel open so EOF does not look like a detach.
            std::future::pending::<()>().await;
        });
    } else {
        // Not forwarding stdin: keep the write half open (closing it could end the
        // attach on some daemons) until the output ends.
        tokio::spawn(async move {
            let _keep = input;
            let _keep_tx = det_tx;
            std::future::pending::<()>().await;
        });
    }
    let mut demux = Demux::default();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        tokio::select! {
            n = output.read(&mut buf) => match n {
                Ok(0) => return Ok(StreamEnd::Eof),
                Ok(n) if tty => write_out(1, &buf[..n])?,
                Ok(n) => demux.feed(&buf[..n], write_out)?,
                // A reset after the container ended is the end of the stream too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(StreamEnd::Eof),
                Err(e) => return Err(CliError::new(1, format!("error reading stream: {e}"))),
            },
            Some(()) = det_rx.recv() => return Ok(StreamEnd::Detached),
        }
    }
}

/// Signals the CLI forwards to the container (docker proxies all but a few).
const PROXIED: &[(libc::c_int, &str)] = &[
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
];

/// Forwards our signals to the container with the kill API until dropped.
pub fn proxy_signals(docker: bollard::Docker, id: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, mut rx) = mpsc::channel::<&'static str>(8);
        for &(num, name) in PROXIED {
            let Ok(mut s) = signal(SignalKind::from_raw(num)) else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        while let Some(name) = rx.recv().await {
            let opts = bollard::query_parameters::KillContainerOptions {
                signal: name.to_string(),
            };
            let _ = docker.kill_container(&id, Some(opts)).await;
        }
    })
}

/// What to resize: a container's TTY or an exec's.
#[derive(Clone)]
pub enum ResizeTarget {
    Container(String),
    Exec(String),
}

async fn resize_once(docker: &bollard::Docker, target: &ResizeTarget) -> bool {
    let Some((h, w)) = tty_size() else {
        return true;
    };
    match target {
        ResizeTarget::Container(id) => docker
            .resize_container_tty(
                id,
                bollard::query_parameters::ResizeContainerTTYOptions {
                    h: h as i32,
                    w: w as i32,
                },
            )
            .await
            .is_ok(),
        ResizeTarget::Exec(id) => docker
            .resize_exec(
                id,
                bollard::query_parameters::ResizeExecOptions {
                    h: h as i32,
                    w: w as i32,
                },
            )
            .await
            .is_ok(),
    }
}

/// Initial resize (retried a few times, as docker does, since the process may not be
/// up yet) and then one resize per SIGWINCH.
pub fn monitor_tty_size(
    docker: bollard::Docker,
    target: ResizeTarget,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..5 {
            if resize_once(&docker, &target).await {
                break;
            }
            tokio::time::sleep(crate::client::POLL).await;
        }
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            resize_once(&docker, &target).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_splits_frames_across_reads() {
        fn feed(d: &mut Demux, data: &[u8]) -> Vec<(u8, Vec<u8>)> {
            let mut out = Vec::new();
            d.feed(data, |k, p| {
                out.push((k, p.to_vec()));
                Ok(())
            })
            .unwrap();
            out
        }
        let mut d = Demux::default();
        let mut data = vec![1, 0, 0, 0, 0, 0, 0, 3];
        data.extend_from_slice(b"out");
        data.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        data.extend_from_slice(b"er");
        let frames = feed(&mut d, &data);
        assert_eq!(frames, vec![(1, b"out".to_vec())]);
        let frames = feed(&mut d, b"r\n");
        assert_eq!(frames, vec![(2, b"err\n".to_vec())]);
        assert!(feed(&mut d, &[]).is_empty());
        // Byte by byte, an empty frame, and two frames in one read.
        let mut all = vec![1, 0, 0, 0, 0, 0, 0, 2, b'a', b'b', 2, 0, 0, 0, 0, 0, 0, 0];
        all.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 1, b'c']);
        let mut got = Vec::new();
        for b in &all {
            got.extend(feed(&mut d, std::slice::from_ref(b)));
        }
        let want = vec![(1, b"ab".to_vec()), (2, vec![]), (1, b"c".to_vec())];
        assert_eq!(got, want);
        assert_eq!(feed(&mut d, &all), want);
    }

    #[test]
    fn detach_keys_parse() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q"), Ok(vec![16, 17]));
        assert_eq!(parse_detach_keys("a,ctrl-@,ctrl-["), Ok(vec![b'a', 0, 27]));
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("abc").is_err());
    }

    fn fwd(e: Escaped) -> Option<Vec<u8>> {
        match e {
            Escaped::Forward(v) => Some(v),
            Escaped::Detach => None,
        }
    }

    #[test]
    fn escape_proxy_detects_and_forwards() {
        let mut p = EscapeProxy::new(vec![16, 17]);
        assert_eq!(fwd(p.feed(b"ls\n")), Some(b"ls\n".to_vec()));
        // Partial match is held back, then released on mismatch.
        assert_eq!(fwd(p.feed(&[16])), Some(vec![]));
        assert_eq!(fwd(p.feed(b"x")), Some(vec![16, b'x']));
        // Split across reads.
        assert_eq!(fwd(p.feed(&[b'a', 16])), Some(vec![b'a']));
        assert!(fwd(p.feed(&[17])).is_none());
        // Repeated first key.
        let mut p = EscapeProxy::new(vec![16, 17]);
        assert_eq!(fwd(p.feed(&[16, 16])), Some(vec![16]));
        assert!(fwd(p.feed(&[17])).is_none());
    }
}
