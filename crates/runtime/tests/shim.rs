//! Real end-to-end tests of `berth-shim` + `client` (root, real namespaces and cgroups).
//! Each test builds its own busybox bundle in a temp dir and cleans up after itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_runtime::client::{self, AttachOptions, ExecConfig, ShimClient, ShimConfig};
use berth_runtime::RuntimeError;
use oci_spec::runtime::{
    LinuxMemoryBuilder, LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "yes", "head", "tty", "stty",
];

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The shim under test; `BERTH_SHIM_BINARY` may point at another build (e.g. release, to
/// measure its memory).
fn shim_binary() -> PathBuf {
    std::env::var_os("BERTH_SHIM_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SHIM))
}

fn can_run() -> bool {
    // SAFETY: trivial libc getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipped: needs /bin/busybox (busybox-static)");
        return false;
    }
    true
}

struct Fixture {
    _tmp: tempfile::TempDir,
    id: String,
    cgroup: String,
    bundle: PathBuf,
    dir: PathBuf,
    state_root: PathBuf,
}

impl Fixture {
    fn new(args: &[&str], tty: bool) -> Self {
        Self::with_memory(args, tty, None)
    }

    fn with_memory(args: &[&str], tty: bool, memory_limit: Option<i64>) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("berth-shim-")
            .tempdir()
            .unwrap();
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("shimtest-{}-{n}", std::process::id());
        let cgroup = format!("/berth-test-{id}");
        let bundle = tmp.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        let mut spec = Spec::default();
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .terminal(tty)
            .env(vec!["PATH=/bin".to_string(), "TERM=xterm".to_string()])
            .cwd("/")
            .build()
            .unwrap();
        spec.set_process(Some(process));
        spec.set_root(Some(
            RootBuilder::default()
                .path(&rootfs)
                .readonly(false)
                .build()
                .unwrap(),
        ));
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some(PathBuf::from(&cgroup)));
        if let Some(limit) = memory_limit {
            linux.set_resources(Some(
                LinuxResourcesBuilder::default()
                    .memory(LinuxMemoryBuilder::default().limit(limit).build().unwrap())
                    .build()
                    .unwrap(),
            ));
        }
        spec.set_linux(Some(linux));
        spec.save(bundle.join("config.json")).unwrap();
        let dir = tmp.path().join("c");
        let state_root = tmp.path().join("runtime");
        std::fs::create_dir_all(&dir).unwrap();
        Fixture {
            _tmp: tmp,
            id,
            cgroup,
            bundle,
            dir,
            state_root,
        }
    }

    fn config(&self, tty: bool, open_stdin: bool) -> ShimConfig {
        ShimConfig {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            dir: self.dir.clone(),
            state_root: self.state_root.clone(),
            log_path: self.dir.join(format!("{}-json.log", self.id)),
            log_max_size: None,
            log_max_files: 1,
            tty,
            open_stdin,
            stdin_once: open_stdin,
            shim_binary: shim_binary(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}-json.log", self.id))).unwrap_or_default()
    }
}

impl Drop for Fixture {
    /// Best effort, for failed tests: kill whatever is left in the cgroup, the shim, and remove
    /// the cgroup dirs and libcontainer state. A passing test leaves nothing for this to do.
    fn drop(&mut self) {
        let rel = self.cgroup.trim_start_matches('/');
        let procs = Path::new("/sys/fs/cgroup/pids")
            .join(rel)
            .join("cgroup.procs");
        if let Ok(text) = std::fs::read_to_string(&procs) {
            for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(pid) = ShimClient::new(&self.dir).shim_pid() {
            // SAFETY: plain kill of the shim we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let p = e.path().join(rel);
                for _ in 0..100 {
                    if !p.exists() || std::fs::remove_dir(&p).is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.state_root.join(&self.id));
    }
}

fn cgroup_gone(cgroup: &str) -> bool {
    let rel = cgroup.trim_start_matches('/');
    !Path::new("/sys/fs/cgroup/memory").join(rel).exists()
        && !Path::new("/sys/fs/cgroup/pids").join(rel).exists()
}

/// Splits a stdcopy stream into (stdout, stderr).
fn demux(mut data: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while data.len() >= 8 {
        let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let payload = &data[8..8 + len];
        match data[0] {
            1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            s => panic!("bad stream id {s}"),
        }
        data = &data[8 + len..];
    }
    assert!(data.is_empty(), "trailing partial frame");
    (out, err)
}

fn assert_cleaned(f: &Fixture) {
    assert!(!f.dir.join("shim.sock").exists(), "socket left behind");
    assert!(
        !f.state_root.join(&f.id).exists(),
        "libcontainer state left"
    );
    assert!(cgroup_gone(&f.cgroup), "cgroup left behind");
}

/// Waits until the shim process is gone (it exits right after its last client).
async fn shim_gone(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    for _ in 0..500 {
        // Gone, or a zombie awaiting the host's init (which reaps orphans when it likes).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        match stat.rsplit_once(')') {
            None => return,
            Some((_, rest)) if rest.trim_start().starts_with('Z') => return,
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("shim {pid} did not exit");
}

#[tokio::test]
async fn echo_is_logged_and_exits_zero() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["echo", "hi"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    assert!(shim_pid.is_some());
    assert_eq!(shim.state().await.unwrap().status, "created");
    let pid = shim.start().await.unwrap();
    assert!(pid > 0);
    let exit = shim.wait().await.unwrap();
    assert_eq!(exit.exit_code, 0);
    assert!(!exit.oom_killed);
    assert!(exit.finished_at.ends_with('Z'));
    let log = f.log();
    assert!(
        log.contains(r#""log":"hi\n","stream":"stdout""#),
        "log: {log}"
    );
    assert_eq!(client::read_exit_status(&f.dir), Some(exit.clone()));
    shim_gone(shim_pid).await;
    // Shim gone: a fresh client still gets the status from exit.json.
    assert_eq!(ShimClient::new(&f.dir).wait().await.unwrap(), exit);
    let st = ShimClient::new(&f.dir).state().await.unwrap();
    assert_eq!((st.status.as_str(), st.exit), ("exited", Some(exit)));
    assert_cleaned(&f);
}

#[tokio::test]
async fn exit_code_is_reported() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sh", "-c", "exit 3"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.start().await.unwrap();
    assert_eq!(shim.wait().await.unwrap().exit_code, 3);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn missing_executable_fails_at_create() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["/no/such/binary"], false);
    let err = client::spawn(&f.config(false, false)).await.unwrap_err();
    match &err {
        // runc's words, which Docker's CLI maps to exit status 127.
        RuntimeError::StartFailed(msg) => assert!(
            msg.contains(
                r#"exec: "/no/such/binary": stat /no/such/binary: no such file or directory"#
            ),
            "{msg}"
        ),
        other => panic!("unexpected error {other:?}"),
    }
    eprintln!("create error text: {err}");
    assert!(!f.state_root.join(&f.id).exists());
}

#[tokio::test]
async fn attach_before_start_gets_all_output_multiplexed() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sh", "-c", "echo out1; echo err1 >&2; echo out2"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    let mut stream = shim
        .attach(AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    shim.start().await.unwrap();
    let mut data = Vec::new();
    stream.read_to_end(&mut data).await.unwrap();
    let (out, err) = demux(&data);
    assert_eq!(out, b"out1\nout2\n");
    assert_eq!(err, b"err1\n");
    assert_eq!(shim.wait().await.unwrap().exit_code, 0);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn stdin_is_forwarded_and_eof_closes_it() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["cat"], false);
    let shim = client::spawn(&f.config(false, true)).await.unwrap();
    let shim_pid = shim.shim_pid();
    let stream = shim
        .attach(AttachOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    shim.start().await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"hello\nworld\n").await.unwrap();
    wr.shutdown().await.unwrap();
    let mut data = Vec::new();
    rd.read_to_end(&mut data).await.unwrap();
    let (out, err) = demux(&data);
    assert_eq!(out, b"hello\nworld\n");
    assert!(err.is_empty());
    assert_eq!(shim.wait().await.unwrap().exit_code, 0);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn detach_keys_end_the_attach_only() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["cat"], false);
    let mut cfg = f.config(false, true);
    cfg.stdin_once = false;
    let shim = client::spawn(&cfg).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.start().await.unwrap();
    let mut s = shim
        .attach(AttachOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            detach_keys: None,
        })
        .await
        .unwrap();
    s.write_all(b"one\n").await.unwrap();
    let mut frame = [0u8; 12];
    s.read_exact(&mut frame).await.unwrap();
    assert_eq!(&frame[8..], b"one\n");
    s.write_all(&[16, 17]).await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(shim.state().await.unwrap().status, "running");
    shim.kill(9).await.unwrap();
    assert_eq!(shim.wait().await.unwrap().exit_code, 137);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn tty_container_echoes_through_the_pty() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sh", "-c", "read x; echo got:$x"], true);
    let shim = client::spawn(&f.config(true, true)).await.unwrap();
    let shim_pid = shim.shim_pid();
    let mut s = shim
        .attach(AttachOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    shim.resize(24, 80).await.unwrap();
    shim.start().await.unwrap();
    s.write_all(b"abc\r").await.unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).await.unwrap();
    let text = String::from_utf8_lossy(&data);
    // Raw bytes (no stdcopy headers), with the terminal's own echo and CRLF.
    assert!(text.contains("got:abc\r\n"), "tty output: {text:?}");
    assert_eq!(shim.wait().await.unwrap().exit_code, 0);
    assert!(f.log().contains("got:abc"));
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn sigkill_reports_137_and_pause_resume_work() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sleep", "1000"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    let pid = shim.start().await.unwrap();
    let st = shim.state().await.unwrap();
    assert_eq!((st.pid, st.status.as_str()), (pid, "running"));
    shim.pause().await.unwrap();
    assert_eq!(shim.state().await.unwrap().status, "paused");
    shim.resume().await.unwrap();
    assert_eq!(shim.state().await.unwrap().status, "running");
    shim.pause().await.unwrap();
    // SIGKILL on a paused (frozen) container still kills it.
    shim.kill(9).await.unwrap();
    let exit = shim.wait().await.unwrap();
    assert_eq!(exit.exit_code, 137);
    assert!(!exit.oom_killed);
    shim_gone(shim_pid).await;
    match ShimClient::new(&f.dir).kill(9).await {
        Err(RuntimeError::Conflict(_)) => {}
        other => panic!("kill after exit: {other:?}"),
    }
    assert_cleaned(&f);
}

#[test]
fn shim_survives_its_spawner_and_a_fresh_client_reconnects() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sleep", "1000"], false);
    let cfg = f.config(false, false);
    // Spawn from a runtime that is then shut down, as a daemon that dies.
    let shim_pid = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pid = rt.block_on(async {
            let shim = client::spawn(&cfg).await.unwrap();
            shim.start().await.unwrap();
            shim.shim_pid().unwrap()
        });
        drop(rt);
        pid
    };
    let status = std::fs::read_to_string(format!("/proc/{shim_pid}/stat")).unwrap();
    // Fields after the ")" : state ppid pgrp session.
    let fields: Vec<&str> = status
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // The shim stays the spawner's child (no double fork; the spawner's reaper collects it
    // when it ends), but in a session of its own, so nothing aimed at the spawner's session
    // or terminal reaches it.
    let sid: u32 = fields[3].parse().unwrap();
    assert_eq!(sid, shim_pid, "the shim leads its own session");
    // SAFETY: trivial libc getter.
    assert_ne!(
        sid,
        unsafe { libc::getsid(0) } as u32,
        "shim in the spawner's session"
    );

    // Informative (not asserted): the shim's resident memory while its container runs.
    if let Ok(st) = std::fs::read_to_string(format!("/proc/{shim_pid}/status")) {
        for l in st
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("RssAnon"))
        {
            eprintln!("running shim {l}");
        }
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let shim = ShimClient::new(&f.dir);
        assert_eq!(shim.state().await.unwrap().status, "running");
        let waiter = {
            let shim = shim.clone();
            tokio::spawn(async move { shim.wait().await })
        };
        shim.kill(9).await.unwrap();
        let exit = waiter.await.unwrap().unwrap();
        assert_eq!(exit.exit_code, 137);
        shim_gone(Some(shim_pid)).await;
        assert_eq!(ShimClient::new(&f.dir).wait().await.unwrap(), exit);
    });
    assert_cleaned(&f);
}

#[tokio::test]
async fn long_state_dirs_beyond_sun_path_work() {
    if !can_run() {
        return;
    }
    let mut f = Fixture::new(&["sleep", "1000"], false);
    // Deeper than the 108 bytes a socket address holds, like the daemon's exec dirs.
    f.dir = f.dir.join("d".repeat(60)).join("e".repeat(60));
    std::fs::create_dir_all(&f.dir).unwrap();
    assert!(f.dir.join("shim.sock").as_os_str().len() > 108);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.start().await.unwrap();
    let mut ecfg = exec_config(&f, "x", &["echo", "deep"], true);
    ecfg.dir = f.dir.join("exec").join("f".repeat(70));
    let ex = shim.exec(&ecfg).await.unwrap();
    let mut s = ex
        .attach(AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    ex.start().await.unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).await.unwrap();
    assert_eq!(data, b"deep\r\n");
    assert_eq!(ex.wait().await.unwrap().exit_code, 0);
    // (SIGTERM would be ignored: `sleep` is pid 1 of its namespace, with no handler.)
    shim.kill(9).await.unwrap();
    assert_eq!(shim.wait().await.unwrap().exit_code, 137);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn killing_a_created_container_cleans_up() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["echo", "never"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.kill(9).await.unwrap();
    assert_eq!(shim.wait().await.unwrap().exit_code, 137);
    shim_gone(shim_pid).await;
    assert!(!f.log().contains("never"));
    assert_cleaned(&f);
}

#[tokio::test]
async fn a_slow_attach_client_gets_everything_and_a_gone_one_releases_the_container() {
    if !can_run() {
        return;
    }
    // ~4 MB of output: far more than the 1 MiB queue plus socket buffers.
    let cmd = [
        "sh",
        "-c",
        "yes 0123456789012345678901234567890123456789 | head -c 4000000",
    ];
    let f = Fixture::new(&cmd, false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    let mut slow = shim
        .attach(AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    shim.start().await.unwrap();
    // The client reads late: backpressure holds the container, nothing is lost.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut got = Vec::new();
    slow.read_to_end(&mut got).await.unwrap();
    let payload: usize = demux_len(&got);
    assert_eq!(payload, 4_000_000, "a slow client must get every byte");
    assert_eq!(shim.wait().await.unwrap().exit_code, 0);
    assert_eq!(f.log().lines().count(), 4_000_000 / 41 + 1);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);

    // A client that stops reading and goes away releases the container.
    let f = Fixture::new(&cmd, false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    let stuck = shim
        .attach(AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    shim.start().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(stuck);
    assert_eq!(shim.wait().await.unwrap().exit_code, 0);
    assert_eq!(f.log().lines().count(), 4_000_000 / 41 + 1);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

/// Payload bytes of a stdcopy stream.
fn demux_len(mut b: &[u8]) -> usize {
    let mut n = 0;
    while b.len() >= 8 {
        let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        n += len.min(b.len() - 8);
        b = &b[(8 + len).min(b.len())..];
    }
    n
}

/// Run by `shim_outlives_a_spawner_killed_with_sigkill` in a child process: spawns and starts
/// the shim described by the environment, says so, then waits to be killed like a daemon.
#[test]
#[ignore = "helper process, run by shim_outlives_a_spawner_killed_with_sigkill"]
fn spawner_helper_process() {
    let Some(dir) = std::env::var_os("BERTH_TEST_SPAWN_DIR") else {
        return;
    };
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let cfg = ShimConfig {
        id: std::env::var("BERTH_TEST_SPAWN_ID").unwrap(),
        bundle: var("BERTH_TEST_SPAWN_BUNDLE"),
        dir: PathBuf::from(dir),
        state_root: var("BERTH_TEST_SPAWN_STATE"),
        log_path: var("BERTH_TEST_SPAWN_LOG"),
        log_max_size: None,
        log_max_files: 1,
        tty: false,
        open_stdin: false,
        stdin_once: false,
        shim_binary: shim_binary(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let shim = client::spawn(&cfg).await.unwrap();
        shim.start().await.unwrap();
    });
    println!("SPAWNED");
    loop {
        std::thread::park();
    }
}

#[tokio::test]
async fn shim_outlives_a_spawner_killed_with_sigkill() {
    if !can_run() {
        return;
    }
    use tokio::io::AsyncBufReadExt;
    let f = Fixture::new(&["sleep", "1000"], false);
    let cfg = f.config(false, false);
    let mut helper = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spawner_helper_process",
            "--ignored",
            "--nocapture",
        ])
        .env("BERTH_TEST_SPAWN_DIR", &cfg.dir)
        .env("BERTH_TEST_SPAWN_ID", &cfg.id)
        .env("BERTH_TEST_SPAWN_BUNDLE", &cfg.bundle)
        .env("BERTH_TEST_SPAWN_STATE", &cfg.state_root)
        .env("BERTH_TEST_SPAWN_LOG", &cfg.log_path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let mut spawned = false;
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.contains("SPAWNED") {
            spawned = true;
            break;
        }
    }
    assert!(spawned, "helper did not spawn the shim");
    helper.start_kill().unwrap();
    helper.wait().await.unwrap();

    // The "daemon" is dead; a new one reconnects by directory.
    let shim = ShimClient::new(&f.dir);
    let shim_pid = shim.shim_pid();
    assert_eq!(shim.state().await.unwrap().status, "running");
    shim.kill(9).await.unwrap();
    assert_eq!(shim.wait().await.unwrap().exit_code, 137);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

fn exec_config(f: &Fixture, n: &str, args: &[&str], tty: bool) -> ExecConfig {
    let process = ProcessBuilder::default()
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .unwrap();
    ExecConfig {
        exec_id: format!("{}-{n}", f.id),
        dir: f.dir.join("exec").join(n),
        process,
        tty,
        open_stdin: false,
        shim_binary: shim_binary(),
        state_root: f.state_root.clone(),
        container_id: f.id.clone(),
    }
}

#[tokio::test]
async fn exec_runs_in_the_container_and_reports_its_exit_code() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sleep", "1000"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.start().await.unwrap();

    let ex = shim
        .exec(&exec_config(
            &f,
            "e1",
            &["sh", "-c", "echo from-exec; echo $$; exit 5"],
            false,
        ))
        .await
        .unwrap();
    let ex_pid = ex.shim_pid();
    assert!(ex_pid.is_some());
    assert_eq!(ex.state().await.unwrap().status, "created");
    let mut s = ex
        .attach(AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    ex.start().await.unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).await.unwrap();
    let (out, _) = demux(&data);
    let out = String::from_utf8(out).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from-exec"));
    // Inside the container's pid namespace: a small pid, not a host one.
    let inner_pid: u32 = lines.next().unwrap().parse().unwrap();
    assert!(inner_pid < 100, "exec pid {inner_pid} not in the container");
    assert_eq!(ex.wait().await.unwrap().exit_code, 5);
    // Exec output is not logged.
    assert!(!f.log().contains("from-exec"));

    // An exec of a missing binary fails at start and records 126/127.
    let bad = shim
        .exec(&exec_config(&f, "e2", &["/nope"], false))
        .await
        .unwrap();
    match bad.start().await {
        Err(RuntimeError::StartFailed(msg)) => assert!(msg.contains("no such file"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(bad.wait().await.unwrap().exit_code, 127);

    // Created-not-started execs: one is killed, one outlived by its container; neither
    // shim lingers.
    let killed = shim
        .exec(&exec_config(&f, "e3", &["true"], false))
        .await
        .unwrap();
    let orphan = shim
        .exec(&exec_config(&f, "e4", &["true"], false))
        .await
        .unwrap();
    let (killed_pid, orphan_pid) = (killed.shim_pid(), orphan.shim_pid());
    killed.kill(9).await.unwrap();
    assert_eq!(killed.wait().await.unwrap().exit_code, 137);

    shim.kill(9).await.unwrap();
    assert_eq!(shim.wait().await.unwrap().exit_code, 137);
    assert_eq!(orphan.wait().await.unwrap().exit_code, 126);
    for pid in [shim_pid, ex_pid, killed_pid, orphan_pid] {
        shim_gone(pid).await;
    }
    assert_cleaned(&f);
}

#[tokio::test]
async fn tty_exec() {
    if !can_run() {
        return;
    }
    let f = Fixture::new(&["sleep", "1000"], false);
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.start().await.unwrap();
    let ex = shim
        .exec(&exec_config(
            &f,
            "t1",
            &["sh", "-c", "tty; stty size; echo done"],
            true,
        ))
        .await
        .unwrap();
    // Before start there is no PTY yet: the size is applied when it appears.
    ex.resize(33, 111).await.unwrap();
    let mut s = ex
        .attach(AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: None,
        })
        .await
        .unwrap();
    ex.start().await.unwrap();
    let mut data = Vec::new();
    s.read_to_end(&mut data).await.unwrap();
    let text = String::from_utf8_lossy(&data);
    assert!(text.contains("/dev/pts/"), "tty exec output: {text:?}");
    assert!(text.contains("33 111\r\n"), "tty exec output: {text:?}");
    assert!(text.contains("done\r\n"), "tty exec output: {text:?}");
    assert_eq!(ex.wait().await.unwrap().exit_code, 0);
    shim.kill(9).await.unwrap();
    shim.wait().await.unwrap();
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}

#[tokio::test]
async fn oom_kill_is_reported() {
    if !can_run() {
        return;
    }
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !unified && !Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists() {
        eprintln!("skipped: no memory cgroup controller");
        return;
    }
    // Doubles a shell string until the 16 MiB limit is hit.
    let f = Fixture::with_memory(
        &["sh", "-c", "x=xxxxxxxx; while true; do x=$x$x; done"],
        false,
        Some(16 << 20),
    );
    let shim = client::spawn(&f.config(false, false)).await.unwrap();
    let shim_pid = shim.shim_pid();
    shim.start().await.unwrap();
    let exit = shim.wait().await.unwrap();
    if !exit.oom_killed {
        eprintln!(
            "note: no OOM kill observed (exit {}); swap may absorb it",
            exit.exit_code
        );
    }
    assert!(exit.oom_killed, "exit {exit:?}");
    assert_eq!(exit.exit_code, 137);
    shim_gone(shim_pid).await;
    assert_cleaned(&f);
}
