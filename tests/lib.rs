//! End-to-end test harness: each `Daemon` is a real berthd in its own temp root with its
//! own socket, so tests run in parallel and leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace's target directory (binaries are built by `cargo build` before the tests).
pub fn bin(name: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("..").join("target"));
    let profile = std::env::var("BERTH_PROFILE").unwrap_or_else(|_| "debug".into());
    let p = target.join(profile).join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A busybox rootfs tarball made from the host's busybox-static (offline).
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        // One file per busybox build, shared by every test process and reused across runs
        // (written to a temp name and renamed, so parallel builders never see half a file).
        let stamp = std::fs::metadata("/bin/busybox")
            .map(|m| {
                format!(
                    "{}-{}",
                    m.len(),
                    m.modified()
                        .map(|t| t
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0))
                        .unwrap_or(0)
                )
            })
            .unwrap_or_else(|_| "none".into());
        let tar = std::env::temp_dir().join(format!("berth-test-busybox-{stamp}.tar"));
        if tar.exists() {
            return tar;
        }
        let tmp = tar.with_extension(format!("{}.tmp", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/mkbusybox.sh");
        let st = Command::new("bash")
            .arg(script)
            .arg(&tmp)
            .status()
            .expect("mkbusybox");
        assert!(st.success(), "mkbusybox.sh failed");
        std::fs::rename(&tmp, &tar).expect("rename busybox tar");
        tar
    })
}

pub struct Daemon {
    pub root: PathBuf,
    pub exec_root: PathBuf,
    pub sock: PathBuf,
    child: Option<Child>,
    pub log: PathBuf,
    /// Run berthd in a private mount namespace that sees a cgroup2-only /sys/fs/cgroup.
    cgroup2: bool,
    /// This daemon's own parent cgroup, removed when the test ends.
    pub cgroup_parent: String,
    /// The default bridge's interface and its subnet's third octet (10.X.Y.0/24), unique per
    /// test daemon so tests run in parallel.
    pub bridge: String,
    pub bip: String,
    /// A daemon.json passed as --config-file.
    pub config_file: Option<PathBuf>,
}

static SUBNETS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A /24 no other test daemon of this run uses: 10.(200+pid%50).N.0/24.
pub fn unique_subnet() -> (u8, u8) {
    let n = SUBNETS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ((200 + std::process::id() % 50) as u8, (n % 250) as u8 + 1)
}

impl Daemon {
    /// A daemon that sees a pure cgroup v2 layout: in a private mount namespace, cgroup2 is
    /// mounted over /sys/fs/cgroup (on a v1/hybrid host that exercises the v2 code paths; a
    /// v2 host runs every test on v2 anyway).
    pub fn start_cgroup2() -> Daemon {
        let mut d = Daemon::start_stopped();
        d.cgroup2 = true;
        d.spawn();
        d
    }

    pub fn start() -> Daemon {
        let mut d = Daemon::start_stopped();
        d.spawn();
        d
    }

    /// A daemon started with `json` as its --config-file (daemon.json keys).
    pub fn start_with_config(json: &str) -> Daemon {
        let mut d = Daemon::start_stopped();
        let path = d.root.parent().unwrap().join("daemon.json");
        std::fs::write(&path, json).unwrap();
        d.config_file = Some(path);
        d.spawn();
        d
    }

    fn start_stopped() -> Daemon {
        let base = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir_in("/tmp")
            .expect("tempdir")
            .keep();
        let root = base.join("root");
        let exec_root = base.join("run");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&exec_root).unwrap();
        let sock = exec_root.join("berth.sock");
        let log = base.join("berthd.log");
        let cgroup_parent = format!(
            "berth-e2e-{}",
            base.file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("berth-e2e-")
        );
        let suffix = base
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("berth-e2e-")
            .to_string();
        let (a, b) = unique_subnet();
        Daemon {
            root,
            exec_root,
            sock,
            child: None,
            log,
            cgroup_parent,
            cgroup2: false,
            bridge: format!("bt-{}", &suffix[..suffix.len().min(10)]),
            bip: format!("10.{a}.{b}.1/24"),
            config_file: None,
        }
    }

    fn spawn(&mut self) {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = if self.cgroup2 {
            let mut c = Command::new("unshare");
            c.args(["-m", "--propagation", "private", "sh", "-c"])
                .arg("mount -t cgroup2 none /sys/fs/cgroup && exec \"$0\" \"$@\"")
                .arg(bin("berthd"));
            c
        } else {
            Command::new(bin("berthd"))
        };
        if let Some(c) = &self.config_file {
            cmd.arg("--config-file").arg(c);
        }
        let child = cmd
            .arg("--root")
            .arg(&self.root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--log-level")
            .arg("debug")
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--bip")
            .arg(&self.bip)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                break;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("berthd exited early ({st}): {}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not come up: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Runs `berth ARGS` against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_stdin(args, None)
    }

    pub fn berth_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(
            Command::new(bin("berth"))
                .env("BERTH_HOST", self.host())
                .env_remove("DOCKER_HOST")
                // The client config (login credentials) of this test only, shared with
                // the docker CLI runs of the same daemon.
                .env("DOCKER_CONFIG", self.root.join(".docker-cli"))
                .args(args),
            stdin,
        )
    }

    /// Runs the stock docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_stdin(args, None)
    }

    pub fn docker_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_with_stdin(
            Command::new("docker")
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.root.join(".docker-cli"))
                .env("DOCKER_BUILDKIT", "0")
                .args(args),
            stdin,
        )
    }

    /// `berth ARGS`, asserting success; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(
            o.status.success(),
            "berth {:?} failed ({}): {}{}\n--- daemon log tail ---\n{}",
            args,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log_text(), 40)
        );
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    /// `docker ARGS`, asserting success; returns trimmed stdout.
    pub fn dok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {:?} failed ({}): {}{}\n--- daemon log tail ---\n{}",
            args,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log_text(), 40)
        );
        String::from_utf8_lossy(&o.stdout).trim_end().to_string()
    }

    /// Imports the busybox test image as `busybox:latest`.
    pub fn busybox(&self) {
        let tar = std::fs::read(busybox_tar()).unwrap();
        let o = self.berth_stdin(&["import", "-", "busybox:latest"], Some(&tar));
        assert!(
            o.status.success(),
            "import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Kills the daemon with SIGKILL (containers keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn term(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon not running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Polls `f` until it returns true (bounded; tests never assert on timing).
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Inspects a container field with a Go template.
    pub fn field(&self, id: &str, tmpl: &str) -> String {
        self.ok(&["inspect", "-f", tmpl, id])
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("spawn client");
    if let Some(data) = stdin {
        let mut si = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    child.wait_with_output().unwrap()
}

/// rmdir of a cgroup and the ones below it, deepest first, retried for up to ~3 s.
fn remove_cgroup_tree(root: &Path) {
    fn subdirs(p: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    subdirs(&e.path(), out);
                    out.push(e.path());
                }
            }
        }
    }
    for _ in 0..30 {
        let mut dirs = Vec::new();
        subdirs(root, &mut dirs);
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir(root);
        if !root.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Remove every container through the API while the daemon is up (kills shims,
        // unmounts rootfs, deletes cgroups).
        if self.child.is_none() {
            self.spawn();
        }
        let ids = self.berth(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        let _ = self.berth(&["network", "prune", "-f"]);
        let _ = self.term_quiet();
        // The default bridge and this daemon's nftables table (berthd leaves both for the
        // next start, like docker0).
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &format!("berth-{}", self.bridge)])
            .stderr(Stdio::null())
            .status();
        if let Ok(rd) = std::fs::read_dir(self.exec_root.join("netns")) {
            for e in rd.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // Belt and braces: kill leftover shims and unmount anything under the root.
        if let Ok(rd) = std::fs::read_dir(self.root.join("containers")) {
            for e in rd.flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path().join("shim.pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                let _ =
                    nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // Volumes with a tmpfs or bind backing that are still mounted (a test that failed
        // halfway): unmount before the root goes.
        if let Ok(rd) = std::fs::read_dir(self.root.join("volumes")) {
            for e in rd.flatten() {
                let _ =
                    nix::mount::umount2(&e.path().join("_data"), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        // The daemon's parent cgroup, in every hierarchy (v1) or the unified one (v2),
        // with any container cgroup a killed shim did not get to delete (empty once its
        // processes are gone; retried briefly while the last ones exit).
        let mut parents = vec![Path::new("/sys/fs/cgroup").join(&self.cgroup_parent)];
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in rd.flatten() {
                parents.push(h.path().join(&self.cgroup_parent));
            }
        }
        for p in parents.iter().filter(|p| p.is_dir()) {
            remove_cgroup_tree(p);
        }
        if std::env::var_os("BERTH_KEEP_TEST_ROOT").is_none() {
            if let Some(base) = self.root.parent() {
                let _ = std::fs::remove_dir_all(base);
            }
        }
    }
}

impl Daemon {
    fn term_quiet(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().ok()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
