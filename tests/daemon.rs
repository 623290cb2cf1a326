//! The daemon process: live restore across kill -9, the root lock, SIGTERM, the socket.

use berth_tests::{bin, stderr, Daemon};
use std::os::unix::fs::PermissionsExt;

#[test]
fn kill9_restart_keeps_containers() {
    let mut d = Daemon::start();
    d.busybox();
    let mut ids = Vec::new();
    for i in 0..3 {
        let name = format!("c{i}");
        ids.push(d.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done",
        ]));
    }
    // one interactive container to attach to after the restart
    d.ok(&["run", "-d", "-i", "--name", "cat", "busybox", "cat"]);
    let pids: Vec<String> = ids.iter().map(|id| d.field(id, "{{.State.Pid}}")).collect();

    d.restart(); // SIGKILL, then a new berthd on the same root

    for (id, pid) in ids.iter().zip(&pids) {
        assert_eq!(d.field(id, "{{.State.Running}}"), "true");
        assert_eq!(
            &d.field(id, "{{.State.Pid}}"),
            pid,
            "the same process survived"
        );
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    assert_eq!(d.ok(&["ps", "-q"]).lines().count(), 4);
    // logs keep growing (the shim kept writing while the daemon was gone)
    d.eventually("log output after restart", || {
        d.ok(&["logs", "c0"]).lines().count() > 3
    });
    // exec works
    assert_eq!(d.ok(&["exec", "c1", "echo", "still here"]), "still here");
    // attach works: send a line to cat, read it back with logs (docker attach keeps
    // running after stdin EOF until the container exits, so the client is killed after)
    let mut att = std::process::Command::new(berth_tests::bin("berth"))
        .args(["-H", &d.host(), "attach", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut si = att.stdin.take().unwrap();
        si.write_all(b"through attach\n").unwrap();
        d.eventually("attach stdin reached the container", || {
            d.ok(&["logs", "cat"]).contains("through attach")
        });
    }
    let _ = att.kill();
    let _ = att.wait();
    // stop and wait work
    d.ok(&["stop", "-t", "1", "c0"]);
    assert_eq!(d.field("c0", "{{.State.Status}}"), "exited");
    d.ok(&["kill", "c1"]);
    assert_eq!(d.ok(&["wait", "c1"]), "137");

    // a container that exits while the daemon is down gets its exit code recorded
    d.ok(&["exec", "c2", "sh", "-c", "true"]);
    d.kill9();
    let pid2: i32 = pids[2].parse().unwrap();
    unsafe { libc::kill(pid2, libc::SIGKILL) };
    d.restart();
    d.eventually("exit recorded", || {
        d.field("c2", "{{.State.Status}}") == "exited"
    });
    assert_eq!(d.field("c2", "{{.State.ExitCode}}"), "137");
}

#[test]
fn lock_sigterm_and_socket() {
    let mut d = Daemon::start();
    d.busybox();
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // a second daemon on the same root refuses to start, with a clear message
    let o = std::process::Command::new(bin("berthd"))
        .arg("--root")
        .arg(&d.root)
        .arg("--exec-root")
        .arg(d.exec_root.join("second"))
        .arg("-H")
        .arg(format!(
            "unix://{}",
            d.exec_root.join("second.sock").display()
        ))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already running"), "{}", stderr(&o));

    let id = d.ok(&["run", "-d", "busybox", "sleep", "1000"]);
    let pid = d.field(&id, "{{.State.Pid}}");
    let st = d.term();
    assert!(st.success(), "SIGTERM exit: {st}");
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with the daemon"
    );
    assert!(!d.sock.exists(), "socket left behind");

    // no daemon: one line naming the socket, exit 1 or 125 like docker
    let o = d.berth(&["ps"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(d.sock.to_str().unwrap()), "{err}");

    d.restart();
    assert_eq!(d.field(&id, "{{.State.Running}}"), "true");
}

#[test]
fn config_file_and_version() {
    let d = Daemon::start();
    let v = d.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(v, "1.47");
    let info = d.ok(&["info", "--format", "{{.Driver}} {{.OSType}}"]);
    assert_eq!(info, "overlay2 linux");
    // a bad config file is a clear startup error
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("daemon.json");
    std::fs::write(&cfg, "{not json").unwrap();
    let o = std::process::Command::new(bin("berthd"))
        .arg("--config-file")
        .arg(&cfg)
        .arg("--root")
        .arg(dir.path().join("root"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("config file"), "{}", stderr(&o));
}

#[test]
fn cgroup_v2_layout() {
    let d = Daemon::start_cgroup2();
    d.busybox();
    assert_eq!(
        d.ok(&["info", "--format", "{{.CgroupVersion}}"]),
        "2",
        "the daemon sees the v2 layout"
    );
    let o = d.ok(&["run", "--rm", "busybox", "sh", "-c", "echo v2; exit 0"]);
    assert_eq!(o, "v2");
    let id = d.ok(&["run", "-d", "busybox", "sleep", "100"]);
    assert!(d.ok(&["top", &id]).contains("sleep 100"));
    d.ok(&["stop", "-t", "1", &id]);
    assert_eq!(d.field(&id, "{{.State.ExitCode}}"), "137");
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
}

/// On ext4, the directories that get one subdirectory per container carry the Orlov "top
/// directory" flag (`chattr +T`), so containers' files spread over block groups.
#[test]
fn container_dirs_spread_over_block_groups() {
    use std::os::fd::AsRawFd;
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let d = Daemon::start();
    for dir in [d.root.join("containers"), d.exec_root.join("runtime")] {
        let f = std::fs::File::open(&dir).unwrap();
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) }, 0);
        if st.f_type as i64 != EXT4_SUPER_MAGIC {
            eprintln!("{} is not on ext4: nothing to check", dir.display());
            continue;
        }
        let mut flags: libc::c_int = 0;
        assert_eq!(
            unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) },
            0
        );
        assert_ne!(flags & FS_TOPDIR_FL, 0, "{} lacks +T", dir.display());
    }
}
