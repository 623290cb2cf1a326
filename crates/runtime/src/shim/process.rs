//! The shim's process: create / start / pause / resume / delete through youki's libcontainer,
//! and the host ends of its stdio (pipes, or the PTY master received over the console socket).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use berth_runtime::proto::{CreateArgs, ExecArgs};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::fcntl::OFlag;

use berth_runtime::logfile::LogWriter;

const CONSOLE_SOCKET: &str = "console.sock";
const PROCESS_JSON: &str = "process.json";

/// The container ends of the stdio pipes, handed to libcontainer.
pub struct ChildIo {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// The shim's ends: non-blocking, close-on-exec.
#[derive(Default)]
pub struct HostIo {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    /// PTY master (output and input) when tty.
    pub pty: Option<File>,
}

pub enum Target {
    Init {
        container: Box<Container>,
        cgroups_path: Option<PathBuf>,
    },
    Exec {
        args: Box<ExecArgs>,
        child_io: Option<ChildIo>,
    },
}

pub struct Proc {
    pub target: Target,
    /// Host pid of the process (init: known once created; exec: once started).
    pub pid: Option<i32>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub io: HostIo,
    pub log: Option<LogWriter>,
    /// Exec only: pidfd of the container's init, readable once it has exited.
    pub container_watch: Option<OwnedFd>,
}

/// Compiling Docker's profile with libseccomp takes ~25 ms in every container's init, so the
/// BPF is compiled once per distinct profile, cached under `<state_root>/seccomp-cache`
/// (keyed by the sha256 of the profile, which is stored beside it and compared byte for byte),
/// and handed to our patched libcontainer, whose init loads it directly. Any failure here
/// just means the init compiles the profile itself, as before.
fn preload_seccomp(sc: &oci_spec::runtime::LinuxSeccomp, state_root: &Path) {
    use sha2::Digest;
    let Ok(json) = serde_json::to_vec(sc) else {
        return;
    };
    let key = hex::encode(sha2::Sha256::digest(&json));
    let dir = state_root.join("seccomp-cache");
    let (jpath, bpath) = (
        dir.join(format!("{key}.json")),
        dir.join(format!("{key}.bpf")),
    );
    let cached = match (std::fs::read(&jpath), std::fs::read(&bpath)) {
        (Ok(j), Ok(b)) if j == json && !b.is_empty() => Some(b),
        _ => None,
    };
    let bpf = match cached {
        Some(b) => b,
        None => {
            let Ok(b) = libcontainer::seccomp::export_bpf(sc) else {
                return;
            };
            // Best effort, atomic: a reader sees a whole pair or none (json is compared).
            let write = |p: &Path, data: &[u8]| -> std::io::Result<()> {
                let tmp = p.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, data)?;
                std::fs::rename(&tmp, p)
            };
            if std::fs::create_dir_all(&dir).is_ok() {
                let _ = write(&bpath, &b).and_then(|_| write(&jpath, &json));
            }
            b
        }
    };
    libcontainer::seccomp::preload(sc, bpf);
}

/// Creates the container (created, not started: its init waits on libcontainer's exec fifo).
pub fn create(args: CreateArgs) -> Result<Proc> {
    std::fs::create_dir_all(&args.state_root)
        .with_context(|| format!("create {}", args.state_root.display()))?;
    let log = LogWriter::open(&args.log_path, args.log_max_size, args.log_max_files)
        .with_context(|| format!("open log {}", args.log_path.display()))?;
    let spec = oci_spec::runtime::Spec::load(args.bundle.join("config.json")).ok();
    let cgroups_path = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref().and_then(|l| l.cgroups_path().clone()));
    if let Some(sc) = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.seccomp().as_ref())
    {
        preload_seccomp(sc, &args.state_root);
    }

    let (host, child) = if args.tty {
        (HostIo::default(), None)
    } else {
        let (h, c) = pipes(args.open_stdin)?;
        (h, Some(c))
    };
    let console = if args.tty {
        Some(console_listener(&args.dir)?)
    } else {
        None
    };

    let builder = base_builder(&args.id, &args.state_root, child, console.as_ref())?;
    let built = builder
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build();
    let container = match built {
        Ok(c) => c,
        Err(e) => {
            if let Some((_, path)) = &console {
                let _ = std::fs::remove_file(path);
            }
            // libcontainer may leave its state dir (and cgroup) behind on a failed create.
            if let Ok(mut c) = Container::load(args.state_root.join(&args.id)) {
                let _ = c.delete(true);
            }
            return Err(anyhow!(user_message(error_chain(&e))));
        }
    };
    let mut host = host;
    if let Some((listener, path)) = console {
        let pty = recv_pty(&listener);
        let _ = std::fs::remove_file(&path);
        host.pty = Some(pty?);
    }
    let pid = container.pid().map(|p| p.as_raw());
    Ok(Proc {
        target: Target::Init {
            container: Box::new(container),
            cgroups_path,
        },
        pid,
        tty: args.tty,
        open_stdin: args.open_stdin,
        stdin_once: args.stdin_once,
        io: host,
        log: Some(log),
        container_watch: None,
    })
}

/// Prepares an exec: pipes now (so attach works before start), the process itself at start.
pub fn prepare_exec(args: ExecArgs) -> Result<Proc> {
    // Watch the container's init so an exec that is never started does not outlive it.
    let container = Container::load(args.state_root.join(&args.container_id))
        .map_err(|e| anyhow!("container {}: {}", args.container_id, error_chain(&e)))?;
    let init = container
        .pid()
        .ok_or_else(|| anyhow!("container {} is not running", args.container_id))?;
    let watch = pidfd_open(init.as_raw())
        .with_context(|| format!("container {} is not running", args.container_id))?;
    let mut process = args.process.clone();
    process.set_terminal(Some(args.tty));
    let json = serde_json::to_vec(&process)?;
    std::fs::write(args.dir.join(PROCESS_JSON), json).context("write process.json")?;
    let (host, child) = if args.tty {
        (HostIo::default(), None)
    } else {
        let (h, c) = pipes(args.open_stdin)?;
        (h, Some(c))
    };
    Ok(Proc {
        tty: args.tty,
        open_stdin: args.open_stdin,
        // Exec stdin is closed when the attached client's stdin ends, as Docker.
        stdin_once: true,
        target: Target::Exec {
            args: Box::new(args),
            child_io: child,
        },
        pid: None,
        io: host,
        log: None,
        container_watch: Some(watch),
    })
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor (pidfds are close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Proc {
    /// Starts the process; returns its host pid or libcontainer's error text.
    pub fn start(&mut self) -> Result<i32, String> {
        match &mut self.target {
            Target::Init { container, .. } => {
                container.start().map_err(|e| error_chain(&e))?;
                self.pid.ok_or_else(|| "container has no pid".to_string())
            }
            Target::Exec { args, child_io } => {
                let console = if self.tty {
                    Some(console_listener(&args.dir).map_err(|e| format!("{e:#}"))?)
                } else {
                    None
                };
                let builder = base_builder(
                    &args.container_id,
                    &args.state_root,
                    child_io.take(),
                    console.as_ref(),
                )
                .map_err(|e| format!("{e:#}"))?;
                let built = builder
                    .as_tenant()
                    .with_process(Some(args.dir.join(PROCESS_JSON)))
                    .with_detach(true)
                    .build();
                let pty = console.map(|(l, path)| {
                    let pty = if built.is_ok() {
                        recv_pty(&l).ok()
                    } else {
                        None
                    };
                    let _ = std::fs::remove_file(path);
                    pty
                });
                let pid = built.map_err(|e| user_message(error_chain(&e)))?.as_raw();
                if let Some(pty) = pty {
                    self.io.pty = Some(pty.ok_or_else(|| "no pty from exec".to_string())?);
                }
                self.pid = Some(pid);
                Ok(pid)
            }
        }
    }

    /// Records the terminal size of an exec that has no PTY yet: the exec's executor applies
    /// it before the program runs.
    pub fn set_console_size(&mut self, height: u16, width: u16) {
        if let Target::Exec { args, .. } = &mut self.target {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(height))
                .width(u64::from(width))
                .build()
                .ok();
            args.process.set_console_size(size);
            args.process.set_terminal(Some(self.tty));
            match serde_json::to_vec(&args.process) {
                Ok(json) => {
                    if let Err(e) = std::fs::write(args.dir.join(PROCESS_JSON), json) {
                        eprintln!("berth-shim: rewriting process.json: {e}");
                    }
                }
                Err(e) => eprintln!("berth-shim: process.json: {e}"),
            }
        }
    }

    pub fn pause(&mut self) -> Result<(), String> {
        match &mut self.target {
            Target::Init { container, .. } => container.pause().map_err(|e| error_chain(&e)),
            Target::Exec { .. } => Err("cannot pause an exec process".into()),
        }
    }

    pub fn resume(&mut self) -> Result<(), String> {
        match &mut self.target {
            Target::Init { container, .. } => container.resume().map_err(|e| error_chain(&e)),
            Target::Exec { .. } => Err("cannot resume an exec process".into()),
        }
    }

    pub fn is_exec(&self) -> bool {
        matches!(self.target, Target::Exec { .. })
    }

    /// Whether the kernel's OOM killer struck in the container's memory cgroup.
    pub fn oom_killed(&self) -> bool {
        match &self.target {
            Target::Init {
                container,
                cgroups_path,
            } => {
                let path = cgroups_path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!(":youki:{}", container.id())));
                oom_kill_count(&path).is_some_and(|n| n > 0)
            }
            Target::Exec { .. } => false,
        }
    }

    /// Removes libcontainer's state and the container's cgroup (init only).
    pub fn delete(&mut self) {
        if let Target::Init { container, .. } = &mut self.target {
            if let Err(e) = container.delete(true) {
                eprintln!("berth-shim: delete: {}", error_chain(&e));
            }
        }
        if let Target::Exec { args, .. } = &self.target {
            let _ = std::fs::remove_file(args.dir.join(PROCESS_JSON));
        }
    }
}

fn base_builder(
    id: &str,
    state_root: &Path,
    child: Option<ChildIo>,
    console: Option<&(UnixListener, PathBuf)>,
) -> Result<ContainerBuilder> {
    let mut b = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(ShimExecutor)
        .with_root_path(state_root)
        .map_err(|e| anyhow!(error_chain(&e)))?;
    if let Some((_, path)) = console {
        b = b.with_console_socket(Some(path));
    }
    // Explicit stdio, or the init would inherit ours (see HOST-NOTES).
    if let Some(c) = child {
        b = b
            .with_stdin(c.stdin)
            .with_stdout(c.stdout)
            .with_stderr(c.stderr);
    }
    Ok(b)
}

/// libcontainer's default executor, after putting every signal back to its default action.
/// Ignored signals survive execve: without this the container would inherit the shim's
/// ignored SIGPIPE (Rust's runtime sets it) and e.g. `yes | head` would never end.
#[derive(Clone)]
struct ShimExecutor;

impl Executor for ShimExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        use nix::sys::signal::{signal, SigHandler, Signal};
        for sig in Signal::iterator() {
            if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
                // SAFETY: resetting to SIG_DFL in the single-threaded init just before exec.
                let _ = unsafe { signal(sig, SigHandler::SigDfl) };
            }
        }
        // libcontainer ignores process.consoleSize; apply it here, on the terminal that is
        // our stdin by now, so the program sees its size from its first instruction.
        if let Some(p) = spec.process() {
            if let (Some(true), Some(size)) = (p.terminal(), p.console_size()) {
                let ws = libc::winsize {
                    ws_row: u16::try_from(size.height()).unwrap_or(u16::MAX),
                    ws_col: u16::try_from(size.width()).unwrap_or(u16::MAX),
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
                unsafe { libc::ioctl(0, libc::TIOCSWINSZ, &ws) };
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    /// Finds the executable as runc does and fails with runc's wording: Docker's CLI picks
    /// its exit code (127 / 126) by matching these texts.
    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        let process = spec.process().as_ref();
        let args = process.and_then(|p| p.args().as_ref());
        let Some(name) = args.and_then(|a| a.first()) else {
            return Err(ExecutorValidationError::ArgValidationError(
                "args must not be empty".into(),
            ));
        };
        let path_var = process
            .and_then(|p| p.env().as_ref())
            .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or("");
        check_executable(name, path_var).map_err(ExecutorValidationError::ArgValidationError)
    }
}

/// runc's lookup: a name with a slash is used as is, others are searched in PATH.
fn check_executable(name: &str, path_var: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let path = if name.contains('/') {
        let p = PathBuf::from(name);
        if let Err(e) = std::fs::metadata(&p) {
            let e = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT));
            return Err(format!(
                "exec: \"{name}\": stat {name}: {}",
                e.desc().to_lowercase()
            ));
        }
        p
    } else {
        let found = path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            });
        match found {
            Some(p) => p,
            None => {
                return Err(format!(
                    "exec: \"{name}\": executable file not found in $PATH"
                ))
            }
        }
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Err(format!("exec: \"{name}\": is a directory")),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(format!("exec: \"{name}\": permission denied"))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("exec: \"{name}\": {e}")),
    }
}

/// libcontainer wraps the init's error in its own layers ("failed to create container: exec
/// process failed with error error in executing process : ..."); show what runc would.
pub fn user_message(chain: String) -> String {
    const MARK: &str = "error in executing process : ";
    match chain.find(MARK) {
        Some(i) => format!(
            "unable to start container process: {}",
            &chain[i + MARK.len()..]
        ),
        None => chain,
    }
}

/// Capacity of the container's stdout/stderr pipes. The default 64 KiB makes a chatty
/// container and the shim take turns every 64 KiB (a wakeup and a context switch each way);
/// with 1 MiB the shim drains in larger reads and the writer blocks less. Pages are only
/// allocated while data sits in the pipe.
const OUTPUT_PIPE_SIZE: libc::c_int = 1 << 20;

fn pipes(open_stdin: bool) -> Result<(HostIo, ChildIo)> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    for fd in [&out_r, &err_r] {
        // Best effort: above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE it fails,
        // and the default size still works.
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, OUTPUT_PIPE_SIZE) };
    }
    let (stdin_host, stdin_child) = if open_stdin {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        (Some(nonblocking(w)?), r)
    } else {
        let null = File::open("/dev/null").context("open /dev/null")?;
        (None, OwnedFd::from(null))
    };
    Ok((
        HostIo {
            stdin: stdin_host,
            stdout: Some(nonblocking(out_r)?),
            stderr: Some(nonblocking(err_r)?),
            pty: None,
        },
        ChildIo {
            stdin: stdin_child,
            stdout: out_w,
            stderr: err_w,
        },
    ))
}

fn nonblocking(fd: OwnedFd) -> Result<File> {
    use nix::fcntl::{fcntl, FcntlArg};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

fn console_listener(dir: &Path) -> Result<(UnixListener, PathBuf)> {
    let path = dir.join(CONSOLE_SOCKET);
    let _ = std::fs::remove_file(&path);
    let l = super::bind_unix(&path)?;
    Ok((l, path))
}

/// Receives the PTY master libcontainer's init sent over the console socket. By the time the
/// builder returned, the init has connected and sent it, so the blocking calls return at once.
fn recv_pty(listener: &UnixListener) -> Result<File> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::IoSliceMut;
    use std::os::fd::FromRawFd;

    let (conn, _) = listener.accept().context("accept console socket")?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("recvmsg console socket")?;
    for c in msg.cmsgs().context("cmsgs")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; we own it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                for extra in fds.iter().skip(1) {
                    // SAFETY: likewise ours; unexpected extras are closed.
                    drop(unsafe { OwnedFd::from_raw_fd(*extra) });
                }
                return nonblocking(owned);
            }
        }
    }
    Err(anyhow!("no PTY master received on the console socket"))
}

/// `oom_kill N` of the cgroup's memory controller: v2 `memory.events`, v1 `memory.oom_control`.
fn oom_kill_count(cgroups_path: &Path) -> Option<u64> {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let file = if unified {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events")
    } else {
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control")
    };
    let text = std::fs::read_to_string(file).ok()?;
    parse_oom_kill(&text)
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        match (it.next(), it.next()) {
            (Some("oom_kill"), Some(n)) => n.parse().ok(),
            _ => None,
        }
    })
}

/// libcontainer's error with its sources ("a: b: c"); its top-level messages alone are often
/// too vague to show a user (e.g. the missing executable is only named in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_checks_use_runcs_words() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().display().to_string();
        let exe = tmp.path().join("run");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let plain = tmp.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();

        assert_eq!(check_executable("run", &dir), Ok(()));
        assert_eq!(check_executable(&exe.display().to_string(), ""), Ok(()));
        assert_eq!(
            check_executable("nope", &dir),
            Err("exec: \"nope\": executable file not found in $PATH".into())
        );
        assert_eq!(
            check_executable("/no/such", &dir),
            Err("exec: \"/no/such\": stat /no/such: no such file or directory".into())
        );
        let p = plain.display().to_string();
        assert_eq!(
            check_executable(&p, ""),
            Err(format!("exec: \"{p}\": permission denied"))
        );
        assert_eq!(
            check_executable(&dir, ""),
            Err(format!("exec: \"{dir}\": is a directory"))
        );
        assert_eq!(
            user_message("failed: x error in executing process : exec: \"a\": boom".into()),
            "unable to start container process: exec: \"a\": boom"
        );
    }

    #[test]
    fn parses_oom_kill_v1_and_v2() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kill(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom 3\n"), None);
    }
}
