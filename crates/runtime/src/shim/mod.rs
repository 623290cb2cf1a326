//! `berth-shim`: one small, single-threaded process per container (and per exec).
//!
//! Included by the `berth-shim` binary with `#[path]`; it is not part of the library because
//! only the shim may call libcontainer (it changes process-wide state and forks).
//!
//! Startup: read [`ShimArgs`] from stdin, setsid so the shim is not in the daemon's session,
//! become a child subreaper, create the container (created,
//! not started), bind `<dir>/shim.sock`, write `<dir>/shim.pid`, then print one [`Ready`] line on
//! stdout. Any failure before that is reported on the same line.

mod event_loop;
mod process;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

use anyhow::{bail, Context, Result};
use berth_runtime::proto::{Ready, ShimArgs, PID_NAME, SOCKET_NAME};

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            // Before readiness stdout is the spawner's pipe: report there. After, it is
            // /dev/null and stderr (shim.log) is the only witness.
            let msg = format!("{e:#}");
            report(&Ready {
                shim_pid: None,
                error: Some(msg.clone()),
            });
            eprintln!("berth-shim: {msg}");
            1
        }
    }
}

fn report(ready: &Ready) {
    if let Ok(line) = serde_json::to_string(ready) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn run() -> Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode != "create" && mode != "exec" {
        bail!("usage: berth-shim create|exec ID  (arguments as JSON on stdin)");
    }
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading arguments")?;
    let args: ShimArgs = serde_json::from_slice(&input).context("parsing arguments")?;
    input = Vec::new();
    drop(input);

    daemonize()?;

    let dir = match &args {
        ShimArgs::Create(c) => c.dir.clone(),
        ShimArgs::Exec(e) => e.dir.clone(),
    };
    // Children (libcontainer's intermediate process, orphans of the container) are reaped by us
    // rather than by the host's init.
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
    }
    let wake = event_loop::install_sigchld()?;

    let server = match args {
        ShimArgs::Create(c) => process::create(c),
        ShimArgs::Exec(e) => process::prepare_exec(*e),
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            reap_children();
            return Err(e);
        }
    };

    let sock = dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&sock);
    let listener = bind_unix(&sock)?;
    listener.set_nonblocking(true)?;
    let pid = std::process::id();
    write_atomic(&dir.join(PID_NAME), pid.to_string().as_bytes())?;

    report(&Ready {
        shim_pid: Some(pid),
        error: None,
    });
    // The spawner reads one line; from now on stdout must not keep its pipe open.
    redirect_to_null(1)?;

    let mut ev = event_loop::EventLoop::new(server, listener, wake, dir);
    ev.run();
    Ok(())
}

/// Binds a listening socket; a path too long for sun_path is bound relative to its directory
/// (we are single-threaded, so the brief chdir is safe).
pub(crate) fn bind_unix(path: &Path) -> Result<UnixListener> {
    use berth_runtime::proto::MAX_SOCKET_PATH;
    let ctx = || format!("bind {}", path.display());
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return UnixListener::bind(path).with_context(ctx);
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("bad socket path {}", path.display());
    };
    std::env::set_current_dir(parent).with_context(ctx)?;
    let l = UnixListener::bind(name);
    std::env::set_current_dir("/").context("chdir /")?;
    l.with_context(ctx)
}

/// After a failed create, libcontainer's intermediate and init processes are still exiting;
/// they are our children (CLONE_PARENT), so reap them rather than leave zombies to the host's
/// init. Bounded: gives up after about two seconds.
fn reap_children() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    for _ in 0..200 {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Ok(_) => {}
            Err(_) => return, // ECHILD: none left
        }
    }
}

/// Detach from the spawner's session: a new session (no controlling terminal, none of the
/// spawner's job-control signals), cwd `/`, stdin from /dev/null, no inherited descriptors.
///
/// No double fork: the shim stays the spawner's child, which reaps it when it ends (tokio's
/// orphan queue in berthd) and, if berthd goes first, it is reparented like any orphan. The
/// two forks and exits a classic daemonize costs were ~4% of all CPU when 50 containers start
/// at once (perf). The spawner never makes us a process-group leader, so setsid succeeds.
fn daemonize() -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    std::env::set_current_dir("/").context("chdir /")?;
    redirect_to_null(0)?;
    close_inherited_fds();
    Ok(())
}

/// Closes every descriptor above stderr. The spawner may leak some without close-on-exec
/// (e.g. a build tool's jobserver pipe); a long-lived shim holding a pipe's write end would
/// keep its reader from ever seeing EOF, and would pass it on to the container.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // SAFETY: nothing in this process owns descriptors above 2 yet (the directory
        // iterator's own descriptor is already closed, so closing it again fails harmlessly).
        unsafe { libc::close(fd) };
    }
}

fn redirect_to_null(fd: i32) -> Result<()> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("open /dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), fd).context("dup2")?;
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(data)?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}
