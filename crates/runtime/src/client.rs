//! The daemon's side of the shim: spawn `berth-shim` processes and talk to them over
//! `<dir>/shim.sock` (protocol in [`crate::proto`]). Tokio-based; holds no state beyond the
//! directory, so a restarted daemon reconnects with [`ShimClient::new`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::proto::{
    self, CreateArgs, ErrorKind, ExecArgs, Ready, Request, Response, ShimArgs, EXIT_NAME, PID_NAME,
    SHIM_LOG_NAME, SOCKET_NAME,
};
pub use crate::proto::{ExitStatus, ShimState};
use crate::{Result, RuntimeError};

/// A previous shim in this dir may still be tearing down: it answers waiters before its
/// libcontainer delete and removes its pid file last. Wait (bounded) for that, so a restart
/// never races the old state dir and cgroup.
async fn wait_previous_shim(dir: &Path) {
    let pid_path = dir.join(PID_NAME);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(s) = tokio::fs::read_to_string(&pid_path).await {
        let alive = s
            .trim()
            .parse::<i32>()
            .map(process_running)
            .unwrap_or(false);
        if !alive || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// True while `pid` exists and is not a zombie (an exited shim can linger unreaped).
fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Everything the shim needs to create a container.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub id: String,
    /// Directory containing config.json (OCI spec; root.path = mounted rootfs).
    pub bundle: PathBuf,
    /// Per-container state dir: shim.sock, shim.pid, exit.json, shim.log live here.
    pub dir: PathBuf,
    /// libcontainer's state root (e.g. `<exec-root>/runtime`).
    pub state_root: PathBuf,
    /// json-file log, e.g. `<dir>/<id>-json.log`.
    pub log_path: PathBuf,
    /// Rotate at this many bytes (None = never).
    pub log_max_size: Option<u64>,
    /// Rotated files kept (>= 1).
    pub log_max_files: u32,
    pub tty: bool,
    /// Keep a stdin pipe to the container (docker -i).
    pub open_stdin: bool,
    /// Close container stdin when the first attached stdin client closes.
    pub stdin_once: bool,
    /// Path of the berth-shim binary.
    pub shim_binary: PathBuf,
}

/// Streams an `attach` wants.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Detach sequence; None = Docker's default ctrl-p,ctrl-q when stdin is attached;
    /// Some(empty) = no detach sequence.
    pub detach_keys: Option<Vec<u8>>,
}

/// An extra process in a running container (docker exec).
#[derive(Debug, Clone)]
pub struct ExecConfig {
    pub exec_id: String,
    /// The exec's own state dir (shim.sock, exit.json, ...), distinct from the container's.
    pub dir: PathBuf,
    pub process: oci_spec::runtime::Process,
    pub tty: bool,
    pub open_stdin: bool,
    pub shim_binary: PathBuf,
    pub state_root: PathBuf,
    pub container_id: String,
}

/// Spawns the shim for a container and returns once the container is created (not started)
/// and the shim accepts connections. Errors from libcontainer (e.g. executable not found) come
/// back as [`RuntimeError::StartFailed`] with its text.
pub async fn spawn(cfg: &ShimConfig) -> Result<ShimClient> {
    let args = ShimArgs::Create(CreateArgs {
        id: cfg.id.clone(),
        bundle: cfg.bundle.clone(),
        dir: cfg.dir.clone(),
        state_root: cfg.state_root.clone(),
        log_path: cfg.log_path.clone(),
        log_max_size: cfg.log_max_size,
        log_max_files: cfg.log_max_files.max(1),
        tty: cfg.tty,
        open_stdin: cfg.open_stdin,
        stdin_once: cfg.stdin_once,
    });
    spawn_shim(&cfg.shim_binary, "create", &cfg.id, &cfg.dir, &args).await
}

/// The exit status a shim left in `dir`, if any.
pub fn read_exit_status(dir: &Path) -> Option<ExitStatus> {
    proto::read_exit_status(dir)
}

async fn spawn_shim(
    binary: &Path,
    mode: &str,
    id: &str,
    dir: &Path,
    args: &ShimArgs,
) -> Result<ShimClient> {
    tokio::fs::create_dir_all(dir).await?;
    wait_previous_shim(dir).await;
    let client = ShimClient::new(dir);
    if connect_unix(&client.socket()).await.is_ok() {
        return Err(RuntimeError::Conflict(format!(
            "a shim is already running in {}",
            dir.display()
        )));
    }
    // Leftovers of a previous run in this dir would be mistaken for this one's.
    for name in [EXIT_NAME, SOCKET_NAME, PID_NAME] {
        match tokio::fs::remove_file(dir.join(name)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(SHIM_LOG_NAME))?;
    let mut child = tokio::process::Command::new(binary)
        .arg(mode)
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| RuntimeError::Shim(format!("running {}: {e}", binary.display())))?;
    let input = serde_json::to_vec(args)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).await?;
        // Dropping closes the pipe: the shim reads to EOF.
    }
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line).await?;
    }
    // The shim stays our child for the container's life; dropping the handle hands it to
    // tokio's orphan reaper, which collects it whenever it exits.
    drop(child);
    let ready: Ready = match serde_json::from_str(line.trim()) {
        Ok(r) => r,
        Err(_) => {
            let tail = shim_log_tail(dir).await;
            return Err(RuntimeError::Shim(format!(
                "berth-shim exited without reporting readiness: {tail}"
            )));
        }
    };
    if let Some(err) = ready.error {
        return Err(RuntimeError::StartFailed(err));
    }
    // The socket is bound before readiness is reported; make sure it answers.
    connect_unix(&client.socket())
        .await
        .map_err(|e| RuntimeError::Shim(format!("shim socket: {e}")))?;
    Ok(client)
}

async fn shim_log_tail(dir: &Path) -> String {
    let text = tokio::fs::read_to_string(dir.join(SHIM_LOG_NAME))
        .await
        .unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim().to_string()
}

/// A handle on one shim (container or exec), by its state dir.
#[derive(Debug, Clone)]
pub struct ShimClient {
    dir: PathBuf,
}

impl ShimClient {
    /// Reconnect to the shim of `dir` (no I/O until a call).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET_NAME)
    }

    /// Pid of the shim process, from shim.pid (None once it has exited).
    pub fn shim_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(PID_NAME))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    async fn connect(&self) -> Result<UnixStream> {
        connect_unix(&self.socket()).await.map_err(|e| {
            if proto::read_exit_status(&self.dir).is_some() {
                RuntimeError::Conflict("container is not running".into())
            } else {
                RuntimeError::Shim(format!(
                    "cannot reach shim at {}: {e}",
                    self.socket().display()
                ))
            }
        })
    }

    /// Sends one request on a fresh connection and reads the one-line answer; returns the
    /// connection (positioned just after the answer) for `attach`.
    async fn call(&self, req: &Request) -> Result<(Response, UnixStream)> {
        let mut s = self.connect().await?;
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        s.write_all(&line).await?;
        let resp = read_line(&mut s).await?;
        let resp: Response = serde_json::from_slice(&resp)?;
        if let Some(msg) = resp.error {
            return Err(error_of(resp.kind, msg));
        }
        Ok((resp, s))
    }

    async fn simple(&self, req: Request) -> Result<Response> {
        Ok(self.call(&req).await?.0)
    }

    /// Starts the created process; returns its host pid.
    pub async fn start(&self) -> Result<u32> {
        let resp = self.simple(Request::Start).await?;
        resp.pid
            .ok_or_else(|| RuntimeError::Shim("start: no pid in answer".into()))
    }

    /// The process's state. Once the shim is gone (or going), answers "exited" from exit.json.
    pub async fn state(&self) -> Result<ShimState> {
        match self.simple(Request::State).await {
            Ok(resp) => resp
                .state
                .ok_or_else(|| RuntimeError::Shim("state: no state in answer".into())),
            Err(e @ (RuntimeError::Io(_) | RuntimeError::Shim(_) | RuntimeError::Conflict(_))) => {
                match proto::read_exit_status(&self.dir) {
                    Some(exit) => Ok(ShimState {
                        pid: 0,
                        status: "exited".into(),
                        exit: Some(exit),
                    }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Blocks until the process exits. When the shim is already gone, answers from exit.json;
    /// when neither is there, an error.
    pub async fn wait(&self) -> Result<ExitStatus> {
        match self.call(&Request::Wait).await {
            Ok((resp, _)) => resp
                .exit
                .ok_or_else(|| RuntimeError::Shim("wait: no exit status in answer".into())),
            Err(e @ (RuntimeError::Io(_) | RuntimeError::Json(_) | RuntimeError::Shim(_))) => {
                // The shim exited (or died) between our connect and its answer, or was gone
                // already: exit.json is the record.
                proto::read_exit_status(&self.dir).ok_or(e)
            }
            Err(RuntimeError::Conflict(_)) => proto::read_exit_status(&self.dir)
                .ok_or_else(|| RuntimeError::Shim("shim gone without exit status".into())),
            Err(e) => Err(e),
        }
    }

    pub async fn kill(&self, signal: i32) -> Result<()> {
        self.simple(Request::Kill { signal }).await.map(|_| ())
    }

    pub async fn pause(&self) -> Result<()> {
        self.simple(Request::Pause).await.map(|_| ())
    }

    pub async fn resume(&self) -> Result<()> {
        self.simple(Request::Resume).await.map(|_| ())
    }

    pub async fn resize(&self, height: u16, width: u16) -> Result<()> {
        self.simple(Request::Resize { height, width })
            .await
            .map(|_| ())
    }

    /// After the handshake the returned stream carries: from shim → client the container
    /// output, in Docker's stdcopy multiplexed format when !tty (8-byte header
    /// [stream(1=stdout,2=stderr),0,0,0,len u32 BE] + payload) and raw bytes when tty; from
    /// client → shim raw stdin bytes. The client's write-half shutdown means stdin EOF. The
    /// shim closes the stream when the container has exited and all output was sent, or when
    /// the detach key sequence is seen on stdin.
    pub async fn attach(&self, opts: AttachOptions) -> Result<UnixStream> {
        let req = Request::Attach {
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
            detach_keys: opts.detach_keys,
        };
        Ok(self.call(&req).await?.1)
    }

    /// Hands an API client's connection (already past its HTTP upgrade) to the shim, which
    /// then writes the container's output to it and reads its stdin directly: the daemon
    /// leaves the data path. `conn` is closed here once the shim holds its copy.
    pub async fn attach_fd(&self, opts: AttachOptions, conn: std::os::fd::OwnedFd) -> Result<()> {
        let req = Request::AttachFd {
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
            detach_keys: opts.detach_keys,
        };
        let mut s = self.connect().await?;
        let mut line = serde_json::to_vec(&req)?;
        line.push(b'\n');
        let sent = send_with_fd(&s, &line, &conn).await?;
        drop(conn);
        s.write_all(&line[sent..]).await?;
        let resp: Response = serde_json::from_slice(&read_line(&mut s).await?)?;
        match resp.error {
            Some(msg) => Err(error_of(resp.kind, msg)),
            None => Ok(()),
        }
    }

    /// Prepares an extra process in this (running) container: spawns an exec shim with its
    /// own dir and socket. The process is created-not-started: attach, then `start()`.
    pub async fn exec(&self, cfg: &ExecConfig) -> Result<ShimClient> {
        let st = self.state().await?;
        if st.status != "running" {
            return Err(RuntimeError::Conflict(format!(
                "container {} is not running",
                cfg.container_id
            )));
        }
        let args = ShimArgs::Exec(Box::new(ExecArgs {
            exec_id: cfg.exec_id.clone(),
            container_id: cfg.container_id.clone(),
            dir: cfg.dir.clone(),
            state_root: cfg.state_root.clone(),
            process: cfg.process.clone(),
            tty: cfg.tty,
            open_stdin: cfg.open_stdin,
        }));
        spawn_shim(&cfg.shim_binary, "exec", &cfg.exec_id, &cfg.dir, &args).await
    }
}

/// Connects to a UNIX socket; a path too long for sun_path is reached through an open
/// descriptor of its directory (`/proc/self/fd/N/name`), as the daemon's state dirs can be deep.
async fn connect_unix(path: &Path) -> std::io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() <= proto::MAX_SOCKET_PATH {
        return UnixStream::connect(path).await;
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "bad socket path",
        ));
    };
    let dir = std::fs::File::open(parent)?;
    let short = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    let r = UnixStream::connect(&short).await;
    drop(dir);
    r
}

/// Reads one `\n`-terminated line byte by byte, so nothing after it (attach stream data) is
/// consumed.
fn error_of(kind: Option<ErrorKind>, msg: String) -> RuntimeError {
    match kind {
        Some(ErrorKind::Conflict) => RuntimeError::Conflict(msg),
        Some(ErrorKind::InvalidArgument) => RuntimeError::InvalidArgument(msg),
        Some(ErrorKind::StartFailed) => RuntimeError::StartFailed(msg),
        _ => RuntimeError::Shim(msg),
    }
}

/// Sends (the start of) `data` with `fd` attached as SCM_RIGHTS; returns how many bytes went.
/// The descriptor rides on the first byte, so it arrives with the request line.
async fn send_with_fd(s: &UnixStream, data: &[u8], fd: &std::os::fd::OwnedFd) -> Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    loop {
        s.writable().await?;
        let r = s.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg::<()>(
                s.as_raw_fd(),
                &[std::io::IoSlice::new(data)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match r {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn read_line(s: &mut UnixStream) -> Result<Vec<u8>> {
    let mut line = Vec::with_capacity(128);
    loop {
        let mut b = [0u8; 1];
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(RuntimeError::Shim(
                "shim closed the connection without answering".into(),
            ));
        }
        if b[0] == b'\n' {
            return Ok(line);
        }
        line.push(b[0]);
        if line.len() > 1 << 20 {
            return Err(RuntimeError::Shim("answer line too long".into()));
        }
    }
}
