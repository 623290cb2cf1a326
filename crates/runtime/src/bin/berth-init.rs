//! berth-init: the tiny init of `docker run --init` (docker ships tini), bind-mounted
//! read-only at /sbin/docker-init and run as the container's PID 1:
//! `docker-init [--] PROGRAM [ARGS...]`.
//!
//! It forks PROGRAM, forwards every signal it receives to it (SIGTERM, SIGINT, SIGHUP,
//! SIGQUIT, SIGUSR1/2, SIGWINCH, ...), reaps every child (orphans are re-parented to
//! PID 1, and nobody else would wait for them), and exits with PROGRAM's status, or
//! 128+N when signal N killed it. It behaves like tini without options.
//!
//! build.rs links it statically where the toolchain allows, so it runs in any image,
//! with or without a libc of its own.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

/// Signals left unblocked: the synchronous ones (a fault of init itself must kill it,
/// not wait in a queue) and the terminal ones, which init ignores.
const NOT_WAITED: [libc::c_int; 9] = [
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

fn die(msg: &str) -> ! {
    eprintln!("docker-init: {msg}");
    std::process::exit(1);
}

/// The shell's convention for a status: the exit code, or 128+signal.
fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        die("usage: docker-init [--] PROGRAM [ARGS...]");
    }
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| die("argument contains a NUL byte"));
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(ptr::null());

    // SAFETY: plain libc calls on locals; the process is single-threaded, so fork is safe
    // and the child may allocate before exec.
    unsafe {
        // Rust's runtime ignores SIGPIPE; an ignored signal stays ignored across exec, and
        // the command must see the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);

        let mut waited: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut waited);
        for s in NOT_WAITED {
            libc::sigdelset(&mut waited, s);
        }
        // Blocked signals are queued even for a PID 1 without handlers (the kernel drops
        // unhandled signals to a namespace's init only when they are not blocked).
        let mut old_mask: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_SETMASK, &waited, &mut old_mask) != 0 {
            die(&format!("sigprocmask: {}", std::io::Error::last_os_error()));
        }
        // Ignored so that the child can take the terminal from a background group.
        let mut ignore: libc::sigaction = std::mem::zeroed();
        ignore.sa_sigaction = libc::SIG_IGN;
        let mut old_ttin: libc::sigaction = std::mem::zeroed();
        let mut old_ttou: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGTTIN, &ignore, &mut old_ttin);
        libc::sigaction(libc::SIGTTOU, &ignore, &mut old_ttou);

        // Not PID 1 (`--pid host`, `--pid container:X`): still be the orphans' reaper.
        if libc::getpid() != 1 {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }

        let child = libc::fork();
        if child < 0 {
            die(&format!("fork: {}", std::io::Error::last_os_error()));
        }
        if child == 0 {
            // Its own process group, in the foreground of the terminal if there is one
            // (as tini does; errors such as ENOTTY are expected and ignored).
            libc::setpgid(0, 0);
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
            libc::sigaction(libc::SIGTTIN, &old_ttin, ptr::null_mut());
            libc::sigaction(libc::SIGTTOU, &old_ttou, ptr::null_mut());
            libc::sigprocmask(libc::SIG_SETMASK, &old_mask, ptr::null_mut());
            libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr());
            let err = std::io::Error::last_os_error();
            // The shell's codes, as tini uses them: 127 not found, 126 not executable.
            let code = match err.raw_os_error() {
                Some(libc::ENOENT) => 127,
                Some(libc::EACCES) => 126,
                _ => 1,
            };
            // strerror's words, without Rust's " (os error N)".
            let msg = err.to_string();
            let msg = msg.split(" (os error").next().unwrap_or_default();
            eprintln!(
                "docker-init: exec {} failed: {msg}",
                args[0].to_string_lossy()
            );
            libc::_exit(code);
        }

        loop {
            // A timeout, so that reaping never depends on a SIGCHLD alone (several exits
            // may collapse into one pending signal).
            let timeout = libc::timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigtimedwait(&waited, &mut info, &timeout);
            if sig > 0 && sig != libc::SIGCHLD {
                // ESRCH (the child is gone already) is fine: its exit is reaped below.
                libc::kill(child, sig);
            }
            let mut child_status = None;
            loop {
                let mut status: libc::c_int = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    child_status = Some(exit_code(status));
                }
            }
            if let Some(code) = child_status {
                std::process::exit(code);
            }
        }
    }
}
