//! The shim's single-threaded poll(2) loop: the listening socket, every client connection, the
//! container's stdout/stderr pipes or PTY master, the container's stdin, and a self-pipe woken
//! by SIGCHLD. Nothing here blocks on one peer: all fds are non-blocking, each client has a
//! bounded output buffer and is dropped when it falls further behind than that.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use berth_runtime::proto::{
    self, ErrorKind, ExitStatus, Request, Response, ShimState, DEFAULT_DETACH_KEYS, PID_NAME,
    SOCKET_NAME, STREAM_STDERR, STREAM_STDOUT,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::process::Proc;
use berth_runtime::logfile::Stream;

/// When an attached client has this much output queued we stop reading the container's
/// output (backpressure, as docker: a slow `docker run` slows the container; it never loses
/// output). A client that goes away releases the container.
const OUT_HIGH_WATER: usize = 1 << 20;
/// Hard cap on one client's queue; only reachable through non-output traffic gone wrong.
const MAX_CLIENT_BUF: usize = 64 << 20;
/// Client stdin buffered for the container; beyond it we stop reading clients (backpressure).
const MAX_STDIN_BUF: usize = 64 << 10;
const MAX_REQUEST: usize = 64 << 10;
/// One read from a container output (the pipes hold up to 1 MiB, see `process::pipes`).
const READ_CHUNK: usize = 128 << 10;
/// Once the process has exited, give remaining clients this long without progress.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long after start the shim gives back what creating the container needed (see
/// `trim.rs`); late enough that a short-lived container has already exited and never pays.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Coalescing of a streaming output. A container writing fast (say `yes | head`, 4 KiB per
/// write) woke the shim for every write: each round was a read, a log write, a write to each
/// attached client and a wake-up of that client -- ~30,000 rounds for 200 MiB, most of the
/// shim's and the CLI's time. When two reads of at least COALESCE_MIN_READ (but less than a
/// full READ_CHUNK, which means more is waiting anyway) come less than STREAM_GAP apart,
/// the next read of that output waits COALESCE_DELAY, so the pipe gathers ~10x more per
/// round. A first read after a quiet spell, and small reads (typing at a terminal, line-sized
/// replies), are never delayed.
const COALESCE_MIN_READ: usize = 4096;
const STREAM_GAP: std::time::Duration = std::time::Duration::from_millis(2);
const COALESCE_DELAY: std::time::Duration = std::time::Duration::from_micros(300);

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    // SAFETY: only async-signal-safe calls (errno save/restore, write).
    unsafe {
        let errno = *libc::__errno_location();
        let fd = WAKE_FD.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = 1u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// Installs the SIGCHLD handler; returns the read end of its self-pipe. A handler rather than
/// a blocked signal + signalfd, because libcontainer forks our container's processes and a
/// blocked SIGCHLD would be inherited by them across exec.
pub fn install_sigchld() -> Result<File> {
    use nix::fcntl::OFlag;
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).context("pipe")?;
    // The write end lives for the whole process.
    WAKE_FD.store(std::os::fd::IntoRawFd::into_raw_fd(w), Ordering::Relaxed);
    let act = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler is async-signal-safe.
    unsafe { sigaction(Signal::SIGCHLD, &act) }.context("sigaction")?;
    Ok(File::from(r))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Paused,
    Exited,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
        }
    }
}

struct Attach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    keys: Vec<u8>,
    matched: usize,
}

enum Phase {
    Request,
    Waiting,
    Attached(Attach),
}

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    phase: Phase,
    /// No more reading (request answered, stdin ended, or detached).
    read_done: bool,
    close_after_flush: bool,
    dead: bool,
    /// Descriptors that came with the request (SCM_RIGHTS), for `attach_fd`.
    fds: Vec<OwnedFd>,
}

impl Client {
    fn new(stream: UnixStream, phase: Phase) -> Self {
        Client {
            stream,
            inbuf: Vec::new(),
            out: VecDeque::new(),
            phase,
            read_done: false,
            close_after_flush: false,
            dead: false,
            fds: Vec::new(),
        }
    }

    fn queue(&mut self, data: &[u8]) {
        if self.out.len() + data.len() > MAX_CLIENT_BUF {
            eprintln!("berth-shim: dropping a client whose queue passed the hard cap");
            self.dead = true;
            return;
        }
        self.out.extend(data);
    }

    /// Writes `parts` at once when nothing is queued (no copy, no extra poll round); what the
    /// socket does not take is queued for POLLOUT.
    /// At most two parts (stdcopy header and payload): the slices live on the stack, as this
    /// runs for every read of a container's output.
    fn send(&mut self, parts: &[&[u8]]) {
        let mut written = 0;
        if self.out.is_empty() && !self.dead {
            let mut iov = [std::io::IoSlice::new(&[]); 2];
            let n = parts.len().min(iov.len());
            for (slot, p) in iov.iter_mut().zip(parts) {
                *slot = std::io::IoSlice::new(p);
            }
            match (&self.stream).write_vectored(&iov[..n]) {
                Ok(n) => written = n,
                Err(e)
                    if e.kind() == IoErrorKind::WouldBlock
                        || e.kind() == IoErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        for p in parts {
            if written >= p.len() {
                written -= p.len();
                continue;
            }
            self.queue(&p[written..]);
            written = 0;
        }
    }

    /// Ends the connection: EOF to the peer, then what it sent and nobody will read is
    /// discarded, so closing does not turn into ECONNRESET on its side (a UNIX socket closed
    /// with unread data resets its peer, which then may miss that it got everything).
    fn close(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let mut buf = [0u8; 4096];
        for _ in 0..256 {
            match (&self.stream).read(&mut buf) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }

    fn respond(&mut self, resp: &Response) {
        let mut line = serde_json::to_vec(resp).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        self.queue(&line);
    }

    fn wants_read(&self, stdin_full: bool) -> bool {
        if self.read_done || self.close_after_flush || self.dead {
            return false;
        }
        match &self.phase {
            Phase::Request => true,
            Phase::Waiting => false,
            Phase::Attached(a) => !(a.stdin && stdin_full),
        }
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Wake,
    Listener,
    Output(Stream),
    Pty,
    Stdin,
    Watch,
    Client(usize),
}

pub struct EventLoop {
    proc: Proc,
    listener: Option<UnixListener>,
    wake: File,
    dir: PathBuf,
    status: Status,
    exit: Option<ExitStatus>,
    /// The init's wait status, reaped but not yet processed.
    reaped: Option<i32>,
    stdin_buf: Vec<u8>,
    stdin_close_pending: bool,
    clients: Vec<Client>,
    buf: Vec<u8>,
    log_failed: bool,
    /// Log data written since the last flush (the writer buffers; `docker logs -f` readers
    /// only see what was flushed).
    log_dirty: bool,
    /// When to trim memory (set at start, cleared once done).
    trim_at: Option<std::time::Instant>,
    /// The last output read of at least COALESCE_MIN_READ.
    last_big_read: Option<std::time::Instant>,
    /// Outputs are not read before this (see COALESCE_DELAY).
    hold_output_until: Option<std::time::Instant>,
}

impl EventLoop {
    pub fn new(proc: Proc, listener: UnixListener, wake: File, dir: PathBuf) -> Self {
        let status = Status::Created;
        Self {
            proc,
            listener: Some(listener),
            wake,
            dir,
            status,
            exit: None,
            reaped: None,
            stdin_buf: Vec::new(),
            stdin_close_pending: false,
            clients: Vec::new(),
            buf: vec![0; READ_CHUNK],
            log_failed: false,
            log_dirty: false,
            trim_at: None,
            last_big_read: None,
            hold_output_until: None,
        }
    }

    pub fn run(&mut self) {
        // A child may have died before the handler existed (e.g. killed while being created).
        self.reap();
        // Kept across rounds: an idle shim's round then calls no allocator (see `round`).
        let mut slots = Vec::with_capacity(16);
        let mut fds = Vec::with_capacity(16);
        loop {
            if self.status == Status::Exited && self.clients.is_empty() {
                return;
            }
            slots.clear();
            fds.clear();
            if !self.round(&mut slots, &mut fds) {
                return;
            }
        }
    }

    /// One poll round; false when the shim is done. An idle container's shim runs exactly
    /// one round after it gave its memory back (`trim`), so this path touches as little code
    /// as it can: no allocation, and no clock read unless a timer is pending (each distinct
    /// 64 KiB of libc or of our code it executes is faulted back in whole).
    fn round(&mut self, slots: &mut Vec<Slot>, fds: &mut Vec<libc::pollfd>) -> bool {
        let mut add = |slot: Slot, fd: RawFd, events: libc::c_short| {
            slots.push(slot);
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        };
        add(Slot::Wake, self.wake.as_raw_fd(), libc::POLLIN);
        if let Some(l) = &self.listener {
            add(Slot::Listener, l.as_raw_fd(), libc::POLLIN);
        }
        let timers = self.status == Status::Exited
            || self.trim_at.is_some()
            || self.hold_output_until.is_some();
        let now = timers.then(std::time::Instant::now);
        if let (Some(t), Some(now)) = (self.hold_output_until, now) {
            if now >= t {
                self.hold_output_until = None;
            }
        }
        // Outputs wait while a client is too far behind (backpressure) or while coalescing.
        let hold_outputs = self.hold_output_until.is_some()
            || self.clients.iter().any(|c| {
                matches!(c.phase, Phase::Attached(_)) && !c.dead && c.out.len() >= OUT_HIGH_WATER
            });
        if !hold_outputs {
            if let Some(f) = &self.proc.io.stdout {
                add(Slot::Output(Stream::Stdout), f.as_raw_fd(), libc::POLLIN);
            }
            if let Some(f) = &self.proc.io.stderr {
                add(Slot::Output(Stream::Stderr), f.as_raw_fd(), libc::POLLIN);
            }
        }
        if let Some(f) = &self.proc.io.pty {
            let mut ev = if hold_outputs { 0 } else { libc::POLLIN };
            if !self.stdin_buf.is_empty() {
                ev |= libc::POLLOUT;
            }
            // Not even for hang-ups while held back: poll would report one at once.
            if ev != 0 || self.hold_output_until.is_none() {
                add(Slot::Pty, f.as_raw_fd(), ev);
            }
        }
        if let Some(f) = &self.proc.io.stdin {
            if !self.stdin_buf.is_empty() {
                add(Slot::Stdin, f.as_raw_fd(), libc::POLLOUT);
            }
        }
        if let Some(w) = &self.proc.container_watch {
            add(Slot::Watch, w.as_raw_fd(), libc::POLLIN);
        }
        let stdin_full = self.stdin_buf.len() >= MAX_STDIN_BUF;
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = 0;
            if c.wants_read(stdin_full) {
                ev |= libc::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(Slot::Client(i), c.stream.as_raw_fd(), ev);
        }
        let deadline = if self.status == Status::Exited {
            now.map(|now| now + EXIT_GRACE)
        } else {
            [self.trim_at, self.hold_output_until]
                .into_iter()
                .flatten()
                .min()
        };
        let timeout = deadline.zip(now).map(|(d, now)| {
            let left = d.saturating_duration_since(now);
            libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let tp = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: fds is a valid array of pollfd of the given length; tp is null or
        // points at a timespec that outlives the call; no signal mask is changed.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                tp,
                std::ptr::null(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == IoErrorKind::Interrupted {
                return true;
            }
            eprintln!("berth-shim: poll: {e}");
            return false;
        }
        if n == 0 && self.status == Status::Exited {
            // Exited and no client made progress for the grace period.
            return false;
        }
        if self
            .trim_at
            .is_some_and(|at| std::time::Instant::now() >= at)
        {
            self.trim_at = None;
            if self.status != Status::Exited {
                berth_runtime::trim::trim();
            }
        }
        if n == 0 {
            // A timer (poll may wake a little early; the next round waits again).
            return true;
        }
        for (slot, pfd) in slots.iter().zip(fds.iter()) {
            if pfd.revents == 0 {
                continue;
            }
            match *slot {
                Slot::Wake => {
                    let mut b = [0u8; 64];
                    while matches!((&self.wake).read(&mut b), Ok(n) if n > 0) {}
                    self.reap();
                }
                Slot::Listener => self.accept(),
                Slot::Output(s) => self.read_output(s),
                Slot::Pty => {
                    if pfd.revents & libc::POLLOUT != 0 {
                        self.write_stdin();
                    }
                    if pfd.revents & !libc::POLLOUT != 0 && !hold_outputs {
                        self.read_output(Stream::Stdout);
                    }
                }
                Slot::Stdin => self.write_stdin(),
                Slot::Watch => {
                    self.proc.container_watch = None;
                    if self.status == Status::Created {
                        // The container is gone and this exec never ran: nothing can
                        // start it any more (as Docker's 126: could not execute).
                        eprintln!("berth-shim: container exited before the exec started");
                        self.finish(126);
                    }
                }
                Slot::Client(i) => {
                    if pfd.revents & libc::POLLOUT != 0 {
                        self.flush_client(i);
                    }
                    if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                        self.read_client(i, pfd.revents);
                    }
                }
            }
        }
        if let Some(ws) = self.reaped.take() {
            self.finish(ws);
        }
        if self.log_dirty {
            self.log_dirty = false;
            if let Some(log) = &mut self.proc.log {
                self.log_failed |= log.flush().is_err();
            }
        }
        self.clients.retain_mut(|c| {
            let done = c.dead || (c.close_after_flush && c.out.is_empty());
            // Request connections carried one line each way: nothing is left unread on them.
            if done && !c.dead && matches!(c.phase, Phase::Attached(_)) {
                c.close();
            }
            !done
        });
        true
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(ws) => {
                    let code = match ws {
                        WaitStatus::Exited(_, c) => c,
                        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
                        _ => continue,
                    };
                    if ws.pid().map(|p| p.as_raw()) == self.proc.pid
                        && self.status != Status::Exited
                    {
                        self.reaped = Some(code);
                    }
                }
            }
        }
    }

    /// The process exited: drain its output, record the status, release everything, answer
    /// waiters and let attached clients drain.
    fn finish(&mut self, exit_code: i32) {
        for s in [Stream::Stdout, Stream::Stderr] {
            self.drain_output(s);
        }
        self.proc.io = Default::default();
        self.stdin_buf = Vec::new();
        if let Some(log) = &mut self.proc.log {
            // Ends pending partial lines, as Docker when the streams close.
            if let Err(e) = log.finish() {
                eprintln!("berth-shim: log: {e}");
            }
        }
        self.log_dirty = false;
        self.hold_output_until = None;
        let oom_killed = self.proc.oom_killed();
        let exit = ExitStatus {
            exit_code,
            oom_killed,
            finished_at: proto::now_rfc3339(),
        };
        if let Err(e) = proto::write_exit_status(&self.dir, &exit) {
            eprintln!("berth-shim: writing exit status: {e}");
        }
        self.status = Status::Exited;
        self.exit = Some(exit.clone());
        // Waiters hear of the exit first: libcontainer's delete below costs ~20 ms on cgroup v1
        // (the first rmdir waits for an RCU grace period) and sat on every `run --rm`.
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            match c.phase {
                Phase::Waiting => {
                    c.respond(&Response {
                        exit: Some(exit.clone()),
                        ..Response::ok()
                    });
                    c.close_after_flush = true;
                    self.flush_client(i);
                }
                Phase::Attached(_) => c.close_after_flush = true,
                Phase::Request => {}
            }
        }
        self.proc.delete();
        // The pid file goes last: the daemon waits for it to vanish before it creates a
        // container with the same id again (the state dir and cgroup are gone by then).
        let _ = std::fs::remove_file(self.dir.join(SOCKET_NAME));
        let _ = std::fs::remove_file(self.dir.join(PID_NAME));
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Client::new(stream, Phase::Request));
                }
                Err(e) if e.kind() == IoErrorKind::WouldBlock => return,
                Err(e) if e.kind() == IoErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("berth-shim: accept: {e}");
                    return;
                }
            }
        }
    }

    fn output_fd(&self, s: Stream) -> Option<&File> {
        if self.proc.tty {
            return if s == Stream::Stdout {
                self.proc.io.pty.as_ref()
            } else {
                None
            };
        }
        match s {
            Stream::Stdout => self.proc.io.stdout.as_ref(),
            Stream::Stderr => self.proc.io.stderr.as_ref(),
        }
    }

    fn close_output(&mut self, s: Stream) {
        if self.proc.tty {
            // EOF/EIO on a PTY master means no slave is open any more: nothing can be read
            // or written through it again, and keeping it would make poll report HUP forever.
            self.proc.io.pty = None;
        } else {
            match s {
                Stream::Stdout => self.proc.io.stdout = None,
                Stream::Stderr => self.proc.io.stderr = None,
            }
        }
        if let Some(log) = &mut self.proc.log {
            let _ = log.finish_stream(s);
            self.log_dirty = true;
        }
    }

    /// One read from an output; returns false at EOF / would-block.
    fn read_output_once(&mut self, s: Stream) -> bool {
        let Some(fd) = self.output_fd(s).map(|f| f.as_raw_fd()) else {
            return false;
        };
        let mut buf = std::mem::take(&mut self.buf);
        let r = fd_read(fd, &mut buf);
        let more = match r {
            Ok(0) => {
                self.close_output(s);
                false
            }
            Ok(n) => {
                if n >= COALESCE_MIN_READ && n < buf.len() {
                    let now = std::time::Instant::now();
                    if self.last_big_read.is_some_and(|t| now - t < STREAM_GAP) {
                        self.hold_output_until = Some(now + COALESCE_DELAY);
                    }
                    self.last_big_read = Some(now);
                }
                self.dispatch(s, &buf[..n]);
                true
            }
            Err(e) if e.kind() == IoErrorKind::WouldBlock => false,
            Err(e) if e.kind() == IoErrorKind::Interrupted => true,
            Err(_) => {
                // EIO on a PTY master = no slave open.
                self.close_output(s);
                false
            }
        };
        self.buf = buf;
        more
    }

    fn read_output(&mut self, s: Stream) {
        self.read_output_once(s);
    }

    fn drain_output(&mut self, s: Stream) {
        while self.read_output_once(s) {}
    }

    fn dispatch(&mut self, s: Stream, data: &[u8]) {
        if let Some(log) = &mut self.proc.log {
            self.log_dirty = true;
            if let Err(e) = log.write(s, data) {
                if !self.log_failed {
                    eprintln!("berth-shim: log write: {e}");
                    self.log_failed = true;
                }
            }
        }
        let tty = self.proc.tty;
        let id = match s {
            Stream::Stdout => STREAM_STDOUT,
            Stream::Stderr => STREAM_STDERR,
        };
        for c in &mut self.clients {
            let Phase::Attached(a) = &c.phase else {
                continue;
            };
            let wanted = match s {
                Stream::Stdout => a.stdout,
                Stream::Stderr => a.stderr,
            };
            if !wanted || c.dead {
                continue;
            }
            if tty {
                c.send(&[data]);
            } else {
                c.send(&[&proto::stdcopy_header(id, data.len()), data]);
            }
        }
    }

    fn stdin_target(&self) -> Option<&File> {
        if self.proc.tty {
            self.proc.io.pty.as_ref()
        } else {
            self.proc.io.stdin.as_ref()
        }
    }

    /// Whether client stdin can still reach the process. Before start, an exec's PTY does not
    /// exist yet: buffer for it.
    fn stdin_open(&self) -> bool {
        self.proc.open_stdin
            && !self.stdin_close_pending
            && (self.stdin_target().is_some() || self.status == Status::Created)
    }

    fn write_stdin(&mut self) {
        let Some(fd) = self.stdin_target().map(|f| f.as_raw_fd()) else {
            if self.status != Status::Created {
                self.stdin_buf.clear();
            }
            return;
        };
        while !self.stdin_buf.is_empty() {
            match fd_write(fd, &self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == IoErrorKind::WouldBlock => return,
                Err(e) if e.kind() == IoErrorKind::Interrupted => {}
                Err(_) => {
                    // The container closed its stdin (EPIPE) or the terminal is gone.
                    self.stdin_buf.clear();
                    if !self.proc.tty {
                        self.proc.io.stdin = None;
                    }
                    return;
                }
            }
        }
        self.maybe_close_stdin();
    }

    fn maybe_close_stdin(&mut self) {
        if self.stdin_close_pending && self.stdin_buf.is_empty() && !self.proc.tty {
            self.proc.io.stdin = None;
        }
    }

    fn close_container_stdin(&mut self) {
        if !self.proc.tty {
            self.stdin_close_pending = true;
            self.maybe_close_stdin();
        }
    }

    fn flush_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            match (&c.stream).write(a) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == IoErrorKind::WouldBlock => return,
                Err(e) if e.kind() == IoErrorKind::Interrupted => {}
                Err(_) => {
                    c.dead = true;
                    return;
                }
            }
        }
        if c.out.capacity() > 64 << 10 {
            c.out.shrink_to(4 << 10);
        }
    }

    fn read_client(&mut self, i: usize, revents: libc::c_short) {
        let stdin_full = self.stdin_buf.len() >= MAX_STDIN_BUF;
        if !self.clients[i].wants_read(stdin_full) {
            // Woken by a hang-up (always reported): the peer closed both directions, so
            // nothing more can be delivered to it.
            if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.clients[i].dead = true;
            }
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let c = &mut self.clients[i];
        let r = if matches!(c.phase, Phase::Request) {
            // A request line may carry a descriptor (attach_fd).
            recv_with_fds(c.stream.as_raw_fd(), &mut buf, &mut c.fds)
        } else {
            (&c.stream).read(&mut buf)
        };
        match r {
            Ok(0) => self.client_eof(i),
            Ok(n) => self.client_data(i, &buf[..n]),
            Err(e)
                if e.kind() == IoErrorKind::WouldBlock || e.kind() == IoErrorKind::Interrupted => {}
            Err(_) => self.clients[i].dead = true,
        }
        self.buf = buf;
    }

    fn client_eof(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.read_done = true;
        match &c.phase {
            Phase::Request => c.dead = true,
            Phase::Waiting => {}
            Phase::Attached(a) => {
                if !a.stdin {
                    return;
                }
                if self.proc.stdin_once && !self.proc.tty {
                    self.close_container_stdin();
                } else {
                    // Docker quirk (moby container/stream/attach.go): when an attached stdin
                    // ends and the container is not stdin_once (or is a TTY), that attach
                    // session's output ends too.
                    c.close_after_flush = true;
                }
            }
        }
    }

    fn client_data(&mut self, i: usize, data: &[u8]) {
        match self.clients[i].phase {
            Phase::Request => {
                let c = &mut self.clients[i];
                c.inbuf.extend_from_slice(data);
                let Some(nl) = c.inbuf.iter().position(|b| *b == b'\n') else {
                    if c.inbuf.len() > MAX_REQUEST {
                        c.dead = true;
                    }
                    return;
                };
                let rest = c.inbuf.split_off(nl + 1);
                let line = std::mem::take(&mut c.inbuf);
                match serde_json::from_slice::<Request>(&line[..nl]) {
                    Ok(req) => self.handle(i, req),
                    Err(e) => {
                        let c = &mut self.clients[i];
                        c.respond(&Response::err(
                            ErrorKind::InvalidArgument,
                            format!("bad request: {e}"),
                        ));
                        c.close_after_flush = true;
                    }
                }
                if !rest.is_empty() && matches!(self.clients[i].phase, Phase::Attached(_)) {
                    self.client_data(i, &rest);
                }
            }
            Phase::Waiting => {}
            Phase::Attached(_) => self.attach_input(i, data),
        }
    }

    fn attach_input(&mut self, i: usize, data: &[u8]) {
        let stdin_open = self.stdin_open();
        let Phase::Attached(a) = &mut self.clients[i].phase else {
            return;
        };
        if !a.stdin {
            return;
        }
        let mut fwd = Vec::with_capacity(data.len());
        let detach = scan_detach(&a.keys, &mut a.matched, data, &mut fwd);
        if stdin_open {
            self.stdin_buf.extend_from_slice(&fwd);
            self.write_stdin();
        }
        if detach {
            let c = &mut self.clients[i];
            c.read_done = true;
            c.close_after_flush = true;
            // Docker closes a stdin_once container's stdin when its attached stdin ends,
            // detach included.
            if self.proc.stdin_once {
                self.close_container_stdin();
            }
        }
    }

    fn state(&self) -> ShimState {
        ShimState {
            pid: self.proc.pid.map(|p| p as u32).unwrap_or(0),
            status: self.status.as_str().to_string(),
            exit: self.exit.clone(),
        }
    }

    fn not_running(&self) -> Response {
        Response::err(
            ErrorKind::Conflict,
            format!("process is not running (status {})", self.status.as_str()),
        )
    }

    fn handle(&mut self, i: usize, req: Request) {
        let resp = match req {
            Request::State => Response {
                state: Some(self.state()),
                ..Response::ok()
            },
            Request::Wait => {
                if let Some(exit) = &self.exit {
                    Response {
                        exit: Some(exit.clone()),
                        ..Response::ok()
                    }
                } else {
                    let c = &mut self.clients[i];
                    c.phase = Phase::Waiting;
                    c.read_done = true;
                    return;
                }
            }
            Request::Start => self.start(),
            Request::Kill { signal } => self.kill(signal),
            Request::Pause => match self.status {
                Status::Running => match self.proc.pause() {
                    Ok(()) => {
                        self.status = Status::Paused;
                        Response::ok()
                    }
                    Err(e) => Response::err(ErrorKind::Internal, e),
                },
                Status::Paused => Response::err(ErrorKind::Conflict, "already paused"),
                _ => self.not_running(),
            },
            Request::Resume => match self.status {
                Status::Paused => match self.proc.resume() {
                    Ok(()) => {
                        self.status = Status::Running;
                        Response::ok()
                    }
                    Err(e) => Response::err(ErrorKind::Internal, e),
                },
                _ => Response::err(ErrorKind::Conflict, "not paused"),
            },
            Request::Resize { height, width } => self.resize(height, width),
            Request::Attach {
                stdin,
                stdout,
                stderr,
                detach_keys,
            } => {
                if self.status == Status::Exited {
                    self.not_running()
                } else {
                    let a = self.attach_session(stdin, stdout, stderr, detach_keys);
                    let c = &mut self.clients[i];
                    c.respond(&Response::ok());
                    c.phase = Phase::Attached(a);
                    return;
                }
            }
            Request::AttachFd {
                stdin,
                stdout,
                stderr,
                detach_keys,
            } => match self.clients[i].fds.pop() {
                _ if self.status == Status::Exited => self.not_running(),
                None => Response::err(
                    ErrorKind::InvalidArgument,
                    "attach_fd: no descriptor came with the request",
                ),
                Some(fd) => {
                    let stream = UnixStream::from(fd);
                    match stream.set_nonblocking(true) {
                        Ok(()) => {
                            let a = self.attach_session(stdin, stdout, stderr, detach_keys);
                            self.clients.push(Client::new(stream, Phase::Attached(a)));
                            Response::ok()
                        }
                        Err(e) => Response::err(ErrorKind::Internal, format!("attach_fd: {e}")),
                    }
                }
            },
        };
        let c = &mut self.clients[i];
        c.respond(&resp);
        c.read_done = true;
        c.close_after_flush = true;
    }

    fn attach_session(
        &self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        detach_keys: Option<Vec<u8>>,
    ) -> Attach {
        // As Docker, stdin is only attached when the container keeps one open.
        let stdin = stdin && self.stdin_open();
        let keys = match detach_keys {
            Some(k) => k,
            None if stdin => DEFAULT_DETACH_KEYS.to_vec(),
            None => Vec::new(),
        };
        Attach {
            stdin,
            stdout,
            stderr,
            keys,
            matched: 0,
        }
    }

    fn start(&mut self) -> Response {
        if self.status != Status::Created {
            return Response::err(
                ErrorKind::Conflict,
                format!("cannot start: process is {}", self.status.as_str()),
            );
        }
        match self.proc.start() {
            Ok(pid) => {
                self.status = Status::Running;
                self.trim_at = Some(std::time::Instant::now() + TRIM_AFTER);
                self.write_stdin();
                Response {
                    pid: Some(pid as u32),
                    ..Response::ok()
                }
            }
            Err(e) => {
                if self.proc.is_exec() {
                    // The exec never ran: record it as failed so waiters and the daemon see
                    // an exit code, as Docker (126 cannot execute, 127 not found).
                    let code = if e.contains("executable file not found")
                        || e.contains("no such file or directory")
                    {
                        127
                    } else {
                        126
                    };
                    self.finish(code);
                } else if let Some(pid) = self.proc.pid {
                    // The init is stuck before exec; take it down so the shim can finish.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Response::err(ErrorKind::StartFailed, e)
            }
        }
    }

    fn kill(&mut self, signal: i32) -> Response {
        if self.proc.is_exec() && self.status == Status::Created {
            // An exec that was never started: killing it ends the shim, so the daemon can
            // drop execs that were created but never run.
            self.finish(128 + signal);
            return Response::ok();
        }
        let Some(pid) = self.proc.pid else {
            return self.not_running();
        };
        if self.status == Status::Exited || self.reaped.is_some() {
            return self.not_running();
        }
        let sig = match nix::sys::signal::Signal::try_from(signal) {
            Ok(s) => Some(s),
            Err(_) if signal == 0 => None,
            Err(_) => {
                return Response::err(
                    ErrorKind::InvalidArgument,
                    format!("invalid signal {signal}"),
                )
            }
        };
        // We are the init's parent and have not reaped it, so the pid cannot have been reused.
        if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            return Response::err(ErrorKind::Internal, format!("kill: {e}"));
        }
        // A frozen (cgroup v1) task only dies once thawed, as runc does.
        if self.status == Status::Paused
            && sig == Some(nix::sys::signal::Signal::SIGKILL)
            && self.proc.resume().is_ok()
        {
            self.status = Status::Running;
        }
        Response::ok()
    }

    fn resize(&mut self, height: u16, width: u16) -> Response {
        let Some(pty) = &self.proc.io.pty else {
            if self.proc.tty && self.status == Status::Created {
                // A TTY exec before start: its PTY appears only once the program runs.
                self.proc.set_console_size(height, width);
            }
            // Without a terminal there is nothing to resize (a no-op, not an error).
            return Response::ok();
        };
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
        let r = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r != 0 {
            return Response::err(
                ErrorKind::Internal,
                format!("resize: {}", std::io::Error::last_os_error()),
            );
        }
        Response::ok()
    }
}

/// `read` that also collects descriptors passed with the data (SCM_RIGHTS) into `fds`.
fn recv_with_fds(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: the kernel just installed these descriptors in our table; we own them.
            fds.extend(got.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
        }
    }
    Ok(msg.bytes)
}

fn fd_read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes; fd is open for the duration of the call.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn fd_write(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: as fd_read.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Feeds `data` through the detach-key matcher: bytes that are not part of a (possible) key
/// sequence go to `out`; a partial match is held back across calls in `matched`, and released
/// if the sequence breaks. Returns true when the whole sequence was typed (the rest of `data`
/// is dropped, as Docker does on detach).
fn scan_detach(keys: &[u8], matched: &mut usize, data: &[u8], out: &mut Vec<u8>) -> bool {
    if keys.is_empty() {
        out.extend_from_slice(data);
        return false;
    }
    for &b in data {
        if b == keys[*matched] {
            *matched += 1;
            if *matched == keys.len() {
                *matched = 0;
                return true;
            }
            continue;
        }
        out.extend_from_slice(&keys[..*matched]);
        *matched = 0;
        if b == keys[0] {
            *matched = 1;
            if keys.len() == 1 {
                *matched = 0;
                return true;
            }
        } else {
            out.push(b);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::scan_detach;

    #[test]
    fn descriptor_arrives_with_the_request_line() {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (passed, mut kept) = std::os::unix::net::UnixStream::pair().unwrap();
        let line = b"{\"op\":\"attach_fd\"}\n";
        sendmsg::<()>(
            a.as_raw_fd(),
            &[std::io::IoSlice::new(line)],
            &[ControlMessage::ScmRights(&[passed.as_raw_fd()])],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = super::recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], line);
        assert_eq!(fds.len(), 1);
        // The received descriptor is the same socket: what goes in at the far end of the
        // original comes out of it.
        let got = std::os::unix::net::UnixStream::from(fds.pop().unwrap());
        kept.write_all(b"hi").unwrap();
        let mut two = [0u8; 2];
        (&got).read_exact(&mut two).unwrap();
        assert_eq!(&two, b"hi");
        // A plain read on the request connection brings no descriptor.
        (&a).write_all(b"x").unwrap();
        assert_eq!(
            super::recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds).unwrap(),
            1
        );
        assert!(fds.is_empty());
    }

    fn run(keys: &[u8], chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut m = 0;
        let mut out = Vec::new();
        for c in chunks {
            if scan_detach(keys, &mut m, c, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn detach_sequence_split_across_reads() {
        assert_eq!(
            run(&[16, 17], &[b"ab\x10", b"\x11zz"]),
            (b"ab".to_vec(), true)
        );
    }

    #[test]
    fn broken_sequence_is_released() {
        assert_eq!(run(&[16, 17], &[b"a\x10b"]), (b"a\x10b".to_vec(), false));
        assert_eq!(run(&[16, 17], &[b"\x10\x10\x11"]), (b"\x10".to_vec(), true));
    }

    #[test]
    fn no_keys_passes_everything() {
        assert_eq!(run(&[], &[b"\x10\x11"]), (b"\x10\x11".to_vec(), false));
    }
}
