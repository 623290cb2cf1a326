//! Wire protocol between `berth-shim` and its client (`crate::client`), plus the on-disk files
//! both sides agree on.
//!
//! Every connection to `<dir>/shim.sock` starts with one JSON [`Request`] line from the client,
//! answered by one JSON [`Response`] line. After a successful `attach` answer the connection
//! switches to the raw attach stream (see `ShimClient::attach`). `attach_fd` carries an API
//! client's own connection as SCM_RIGHTS on its request line: that connection becomes the attach
//! stream and the request's connection ends with the answer (see `ShimClient::attach_fd`).
//! `wait` is answered only when the container has exited.
//!
//! The spawner hands the shim its [`ShimArgs`] as one JSON document on stdin; the shim answers
//! with one [`Ready`] line on stdout once its socket accepts connections (or with the error).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Socket the shim listens on, inside the container's state dir.
pub const SOCKET_NAME: &str = "shim.sock";
/// The shim's pid (decimal, no newline), written once the socket is bound.
pub const PID_NAME: &str = "shim.pid";
/// The container's exit status ([`ExitStatus`] as JSON), written atomically before the shim exits.
pub const EXIT_NAME: &str = "exit.json";
/// The shim's own diagnostics (its stderr).
pub const SHIM_LOG_NAME: &str = "shim.log";

/// Longest path `bind`/`connect` take directly (sun_path is 108 bytes with its NUL); longer
/// ones are reached through their directory (chdir in the shim, /proc/self/fd in the client).
pub const MAX_SOCKET_PATH: usize = 107;

/// Default detach sequence (ctrl-p, ctrl-q), as Docker.
pub const DEFAULT_DETACH_KEYS: [u8; 2] = [16, 17];

/// How a container (or exec) process ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitStatus {
    /// The exit code; 128+signal when killed by a signal (shell convention, as Docker).
    pub exit_code: i32,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
}

/// What the shim reports about its process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShimState {
    /// Host pid of the container's init (0 while an exec has not been started).
    pub pid: u32,
    /// "created" | "running" | "paused" | "exited"
    pub status: String,
    pub exit: Option<ExitStatus>,
}

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Start,
    State,
    Wait,
    Kill {
        signal: i32,
    },
    Pause,
    Resume,
    Resize {
        height: u16,
        width: u16,
    },
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        detach_keys: Option<Vec<u8>>,
    },
    /// As `Attach`, on the descriptor passed with this request line (SCM_RIGHTS).
    AttachFd {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        detach_keys: Option<Vec<u8>>,
    },
}

/// Classifies an error answer so the client can map it onto `RuntimeError`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Wrong state for the operation (e.g. kill of an exited container).
    Conflict,
    InvalidArgument,
    /// libcontainer refused to start the process.
    StartFailed,
    Internal,
}

/// One response line; exactly one of the optional fields is set on success, `error` on failure.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ShimState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

impl Response {
    pub fn ok() -> Self {
        Self::default()
    }

    pub fn err(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Self {
            error: Some(msg.into()),
            kind: Some(kind),
            ..Self::default()
        }
    }
}

/// What the shim is asked to run (JSON on its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ShimArgs {
    /// Create the container from an OCI bundle (created, not started).
    Create(CreateArgs),
    /// Run an extra process in a running container, once `start` is asked.
    Exec(Box<ExecArgs>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub dir: PathBuf,
    pub state_root: PathBuf,
    pub log_path: PathBuf,
    pub log_max_size: Option<u64>,
    pub log_max_files: u32,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecArgs {
    pub exec_id: String,
    pub container_id: String,
    pub dir: PathBuf,
    pub state_root: PathBuf,
    pub process: oci_spec::runtime::Process,
    pub tty: bool,
    pub open_stdin: bool,
}

/// The shim's readiness line on its stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ready {
    /// Pid of the long-lived shim process; absent on error.
    pub shim_pid: Option<u32>,
    pub error: Option<String>,
}

/// Docker's stdcopy stream ids.
pub const STREAM_STDOUT: u8 = 1;
pub const STREAM_STDERR: u8 = 2;

/// Header of one stdcopy frame: `[stream, 0, 0, 0, len as u32 big-endian]`.
pub fn stdcopy_header(stream: u8, len: usize) -> [u8; 8] {
    // Frames are cut from reads of at most a few KiB, so the length always fits.
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream, 0, 0, 0, len[0], len[1], len[2], len[3]]
}

/// The exit status a shim left in `dir`, if any (missing or unreadable file = None).
pub fn read_exit_status(dir: &Path) -> Option<ExitStatus> {
    let data = std::fs::read(dir.join(EXIT_NAME)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Writes `<dir>/exit.json` atomically (temp file + fsync + rename), so a reader never sees half
/// a file even if the shim dies mid-write.
pub fn write_exit_status(dir: &Path, status: &ExitStatus) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{EXIT_NAME}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(status)?)?;
    // No fsync: it sat on every container exit's critical path (~5-15 ms here) and only
    // guards against a host crash, after which the container is gone anyway and a missing
    // file reads as "exit unknown". tmp + rename still keeps it whole across process crashes.
    std::fs::rename(&tmp, dir.join(EXIT_NAME))
}

/// Current time as Docker prints it (RFC 3339, nanoseconds, `Z`).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":9}"#).unwrap();
        assert_eq!(r, Request::Kill { signal: 9 });
        assert_eq!(
            serde_json::to_string(&Request::Wait).unwrap(),
            r#"{"op":"wait"}"#
        );
        let a = Request::Attach {
            stdin: true,
            stdout: true,
            stderr: false,
            detach_keys: None,
        };
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), a);
    }

    #[test]
    fn response_omits_unset_fields() {
        assert_eq!(serde_json::to_string(&Response::ok()).unwrap(), "{}");
        let e = Response::err(ErrorKind::Conflict, "not running");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"not running","kind":"conflict"}"#
        );
    }

    #[test]
    fn stdcopy_header_layout() {
        assert_eq!(stdcopy_header(STREAM_STDERR, 258), [2, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn exit_status_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit_status(dir.path()), None);
        let st = ExitStatus {
            exit_code: 137,
            oom_killed: true,
            finished_at: now_rfc3339(),
        };
        write_exit_status(dir.path(), &st).unwrap();
        assert_eq!(read_exit_status(dir.path()), Some(st));
        assert!(!dir.path().join(".exit.json.tmp").exists());
    }
}
