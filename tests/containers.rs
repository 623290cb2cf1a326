//! Containers end to end through the `berth` CLI.

use berth_tests::{stderr, stdout, Daemon};

#[test]
fn run_echo_and_exit_codes() {
    let d = Daemon::start();
    d.busybox();
    let o = d.berth(&["run", "--rm", "busybox", "echo", "hello from berth"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello from berth\n");
    assert_eq!(d.ok(&["ps", "-aq"]), "", "--rm left the container behind");

    let o = d.berth(&[
        "run",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");

    let o = d.berth(&["run", "--rm", "busybox", "/no/such/binary"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = d.berth(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let o = d.berth(&["run", "--rm", "nosuchimage", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("nosuchimage"), "{}", stderr(&o));

    // stdin with -i.
    let o = d.berth_stdin(
        &["run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z"],
        Some(b"abc\n"),
    );
    assert_eq!(stdout(&o), "ABC\n", "{}", stderr(&o));
}

#[test]
fn lifecycle() {
    let d = Daemon::start();
    d.busybox();
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "tier=front",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(id.len(), 64);
    assert_eq!(d.ok(&["ps", "-q"]), id[..12]);
    assert_eq!(d.field("web", "{{.State.Status}}"), "running");
    assert_eq!(d.field("web", "{{.Name}}"), "/web");
    assert_eq!(
        d.ok(&[
            "ps",
            "--filter",
            "label=tier=front",
            "--format",
            "{{.Names}}"
        ]),
        "web"
    );
    assert_eq!(d.ok(&["ps", "--filter", "label=tier=back", "-q"]), "");

    let top = d.ok(&["top", "web"]);
    assert!(top.contains("sleep 1000"), "{top}");

    // exec, with exit codes and env
    assert_eq!(d.ok(&["exec", "web", "echo", "hi"]), "hi");
    let o = d.berth(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(
        d.ok(&["exec", "-e", "FOO=bar", "web", "sh", "-c", "echo $FOO"]),
        "bar"
    );
    assert_eq!(d.ok(&["exec", "-u", "1000", "web", "id", "-u"]), "1000");

    d.ok(&["pause", "web"]);
    assert_eq!(d.field("web", "{{.State.Status}}"), "paused");
    let o = d.berth(&["exec", "web", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is paused"), "{}", stderr(&o));
    d.ok(&["unpause", "web"]);
    assert_eq!(d.field("web", "{{.State.Status}}"), "running");

    // busybox sleep as PID 1 ignores SIGTERM, so stop falls back to SIGKILL after -t.
    d.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(d.field("web", "{{.State.Status}}"), "exited");
    assert_eq!(d.field("web", "{{.State.ExitCode}}"), "137");
    assert_eq!(d.ok(&["ps", "-q"]), "");
    assert_eq!(d.ok(&["ps", "-aq"]), id[..12]);

    d.ok(&["start", "web"]);
    assert_eq!(d.field("web", "{{.State.Running}}"), "true");
    d.ok(&["restart", "-t", "0", "web"]);
    assert_eq!(d.field("web", "{{.State.Running}}"), "true");
    d.ok(&["rename", "web", "web2"]);
    assert_eq!(d.field(&id, "{{.Name}}"), "/web2");
    let o = d.berth(&["rm", "web2"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("container is running"),
        "{}",
        stderr(&o)
    );
    d.ok(&["kill", "web2"]);
    let code = d.ok(&["wait", "web2"]);
    assert_eq!(code, "137");
    d.ok(&["rm", "web2"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    let o = d.berth(&["inspect", "web2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("No such"), "{}", stderr(&o));

    // create + start -a
    d.ok(&[
        "create",
        "--name",
        "c1",
        "busybox",
        "echo",
        "created then started",
    ]);
    assert_eq!(d.field("c1", "{{.State.Status}}"), "created");
    assert_eq!(d.ok(&["start", "-a", "c1"]), "created then started");
    // start -a -i feeds stdin; ps -l / -n pick the newest
    let cat = d.ok(&["create", "-i", "--name", "cat1", "busybox", "cat"]);
    let o = d.berth_stdin(&["start", "-a", "-i", "cat1"], Some(b"through start\n"));
    assert_eq!(stdout(&o), "through start\n", "{}", stderr(&o));
    assert_eq!(d.ok(&["ps", "-l", "-q", "--no-trunc"]), cat);
    assert_eq!(d.ok(&["ps", "-n", "1", "-q", "--no-trunc"]), cat);
    assert_eq!(d.ok(&["ps", "-a", "-q"]).lines().count(), 2);
    // container prune
    let out = d.ok(&["container", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

#[test]
fn logs() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&[
        "run",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; done; echo oops >&2",
    ]);
    let o = d.berth(&["logs", "lg"]);
    assert_eq!(stdout(&o), "line1\nline2\nline3\n");
    assert_eq!(stderr(&o), "oops\n");
    assert_eq!(d.ok(&["logs", "--tail", "1", "lg"]), "");
    let o = d.berth(&["logs", "--tail", "2", "lg"]);
    assert_eq!(stdout(&o), "line3\n");
    assert_eq!(stderr(&o), "oops\n");
    let ts = d.ok(&["logs", "-t", "lg"]);
    let first = ts.lines().next().unwrap();
    assert!(first.contains('T') && first.ends_with(" line1"), "{first}");
    assert_eq!(d.ok(&["logs", "--until", "2000-01-01T00:00:00Z", "lg"]), "");
    assert_eq!(d.ok(&["logs", "--since", "1h", "lg"]).lines().count(), 3);

    // follow ends when the container exits
    d.ok(&[
        "run",
        "-d",
        "--name",
        "fl",
        "busybox",
        "sh",
        "-c",
        "echo a; sleep 1; echo b",
    ]);
    assert_eq!(d.ok(&["logs", "-f", "fl"]), "a\nb");
    // the on-disk format is docker's json-file
    let path = d.field("fl", "{{.LogPath}}");
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "a\n");
    assert_eq!(first["stream"], "stdout");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn security_profile_and_limits() {
    let d = Daemon::start();
    d.busybox();
    let status = d.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    let field = |s: &str, k: &str| -> String {
        s.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        field(&status, "CapEff:"),
        "00000000a80425fb",
        "docker's default capability set"
    );
    assert_eq!(field(&status, "Seccomp:"), "2");
    assert_eq!(field(&status, "NoNewPrivs:"), "0");
    // The profile really filters (the first run compiles it, later ones load the cached BPF):
    // docker's profile denies unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN, which needs no
    // capability otherwise.
    for _ in 0..2 {
        let o = d.berth(&["run", "--rm", "busybox", "unshare", "-U", "true"]);
        assert_ne!(
            o.status.code(),
            Some(0),
            "unshare allowed under the default profile"
        );
    }
    let o = d.berth(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "unshare",
        "-U",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let s = d.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&s, "CapEff:"), "0000000000000000");
    let s = d.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&s, "CapEff:"), "00000000a80435fb");
    let s = d.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&s, "NoNewPrivs:"), "1");
    let s = d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&s, "Seccomp:"), "0");
    assert_ne!(field(&s, "CapEff:"), "00000000a80425fb");

    // masked and read-only paths
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "wc -c < /proc/timer_list; ls /sys/firmware | wc -l"
        ]),
        "0\n0"
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /proc/sys/kernel/shm_rmid_forced",
    ]);
    assert!(!o.status.success());
    // a syscall blocked by the profile is EPERM (mount without CAP_SYS_ADMIN)
    let o = d.berth(&[
        "run", "--rm", "busybox", "mount", "-t", "tmpfs", "x", "/mnt",
    ]);
    assert!(!o.status.success());

    // read-only rootfs, users
    let o = d.berth(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(d
        .ok(&["run", "--rm", "-u", "1000:1001", "busybox", "id"])
        .starts_with("uid=1000 gid=1001"));
    assert_eq!(
        d.ok(&["run", "--rm", "-u", "daemon", "busybox", "id", "-u"]),
        "1"
    );
    let o = d.berth(&["run", "--rm", "-u", "nosuchuser", "busybox", "id"]);
    assert!(!o.status.success());
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-w",
            "/tmp",
            "-h",
            "box",
            "-e",
            "A=1",
            "busybox",
            "sh",
            "-c",
            "echo $PWD $(hostname) $A"
        ]),
        "/tmp box 1"
    );

    // cgroup limits land in the container's cgroup
    let id = d.ok(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(d.field(&id, "{{.HostConfig.Memory}}"), "67108864");
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").exists();
    let cg = &d.cgroup_parent;
    let read = |p: String| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .to_string()
    };
    if v1 {
        assert_eq!(
            read(format!(
                "/sys/fs/cgroup/memory/{cg}/{id}/memory.limit_in_bytes"
            )),
            "67108864"
        );
        assert_eq!(
            read(format!("/sys/fs/cgroup/pids/{cg}/{id}/pids.max")),
            "50"
        );
        assert_eq!(
            read(format!("/sys/fs/cgroup/cpu/{cg}/{id}/cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(
            read(format!("/sys/fs/cgroup/cpu/{cg}/{id}/cpu.shares")),
            "512"
        );
    } else {
        assert_eq!(
            read(format!("/sys/fs/cgroup/{cg}/{id}/memory.max")),
            "67108864"
        );
        assert_eq!(read(format!("/sys/fs/cgroup/{cg}/{id}/pids.max")), "50");
        assert_eq!(
            read(format!("/sys/fs/cgroup/{cg}/{id}/cpu.max")),
            "50000 100000"
        );
    }
    d.ok(&["rm", "-f", &id]);
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/{cg}/{id}")).exists());

    // bad limits are refused at create
    let o = d.berth(&["run", "--rm", "--memory", "1m", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn oom_killed() {
    let d = Daemon::start();
    d.busybox();
    // `tail` keeps a newline-free stream in memory, so it grows until the OOM killer fires.
    let o = d.berth(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "head -c 200m /dev/zero | tail",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_eq!(d.field("oom", "{{.State.OOMKilled}}"), "true");
}

#[test]
fn tty() {
    let d = Daemon::start();
    d.busybox();
    // `script` gives the CLI a real terminal.
    let cmd = format!(
        "{} -H {} run -it --rm busybox sh -c 'tty; stty size; exit 5'",
        berth_tests::bin("berth").display(),
        d.host()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .output()
        .expect("script (util-linux) is needed for the TTY test");
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert_eq!(o.status.code(), Some(5), "{out}");
}

#[test]
fn tty_detach_keys_and_reattach() {
    let d = Daemon::start();
    d.busybox();
    // ctrl-p ctrl-q detaches the client and leaves the shell running.
    let cmd = format!(
        "{} -H {} run -it --name shell busybox sh",
        berth_tests::bin("berth").display(),
        d.host()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        si.write_all(b"echo marker-$((40+2))\n").unwrap();
        d.eventually("the shell ran the command", || {
            d.berth(&["logs", "shell"])
                .stdout
                .windows(9)
                .any(|w| w == b"marker-42")
        });
        si.write_all(&[0x10, 0x11]).unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "detach should exit 0: {st}");
    }
    assert_eq!(d.field("shell", "{{.State.Running}}"), "true");
    assert_eq!(d.ok(&["exec", "shell", "echo", "alive"]), "alive");
}

#[test]
fn commit_diff_export() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&[
        "run",
        "--name",
        "src",
        "busybox",
        "sh",
        "-c",
        "echo data > /newfile; rm /bin/ls",
    ]);
    let diff = d.ok(&["diff", "src"]);
    assert!(diff.contains("A /newfile"), "{diff}");
    assert!(diff.contains("D /bin/ls"), "{diff}");
    let id = d.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/newfile\"]",
        "-m",
        "msg",
        "src",
        "committed:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(d.ok(&["run", "--rm", "committed:1"]), "data");
    let o = d.berth(&["run", "--rm", "committed:1", "ls"]);
    assert!(!o.status.success(), "the deletion was committed too");
    let o = d.berth(&["export", "src"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "newfile"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.trim_start_matches("./") == "bin/ls"));
}

#[test]
fn log_rotation_options() {
    let d = Daemon::start();
    d.busybox();
    // 3000 lines of ~60 bytes rotate a 10k log; only max-file files remain.
    d.ok(&[
        "run", "--name", "rot", "--log-opt", "max-size=10k", "--log-opt", "max-file=2",
        "busybox", "sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i-padding-padding-padding-padding; i=$((i+1)); done",
    ]);
    let path = d.field("rot", "{{.LogPath}}");
    assert!(
        std::path::Path::new(&format!("{path}.1")).exists(),
        "rotated file"
    );
    assert!(
        !std::path::Path::new(&format!("{path}.2")).exists(),
        "max-file=2 keeps 2 files"
    );
    let logs = d.ok(&["logs", "rot"]);
    assert!(
        logs.ends_with("line-2999-padding-padding-padding-padding"),
        "newest lines kept"
    );
    assert!(!logs.contains("line-0-"), "oldest lines rotated away");
    let o = d.berth(&["run", "--rm", "--log-opt", "max-file=0", "busybox", "true"]);
    assert!(
        stderr(&o).contains("max-file cannot be less than 1"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["run", "--rm", "--log-driver", "nope", "busybox", "true"]);
    assert!(
        stderr(&o).contains("no log driver named 'nope'"),
        "{}",
        stderr(&o)
    );
}

/// Attached output is never dropped, however fast the container writes (backpressure).
#[test]
fn attached_output_is_complete() {
    let d = Daemon::start();
    d.busybox();
    let cmd = "yes 0123456789012345678901234567890123456789012345678 | head -c 20000000";
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", cmd]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 20_000_000);
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", cmd]);
    assert_eq!(o.stdout.len(), 20_000_000, "{}", stderr(&o));
}

/// Starting a container again right after it exited never races its previous shim's teardown.
#[test]
fn restart_right_after_exit() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&["create", "--name", "again", "busybox", "echo", "round"]);
    for _ in 0..8 {
        assert_eq!(d.ok(&["start", "-a", "again"]), "round");
    }
    assert_eq!(d.ok(&["logs", "again"]).lines().count(), 8);
}

/// A second after start the shim gives back the memory creating the container needed
/// (berth_runtime::trim); containers that outlive that point keep every service: attached
/// output, logs, exec, stop.
#[test]
fn shim_keeps_working_after_giving_back_memory() {
    let d = Daemon::start();
    d.busybox();
    // Attached, output flowing across the trim.
    let o = d.berth(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "yes abc | head -c 1000000; sleep 1.5; yes abc | head -c 5000000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 6_000_000);
    // Detached, logging across the trim, then exec and stop.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "long",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 25 ]; do echo line$i; i=$((i+1)); sleep 0.1; done; exec sleep 60",
    ]);
    let mut logs = String::new();
    for _ in 0..300 {
        logs = d.ok(&["logs", "long"]);
        if logs.contains("line24") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs.lines().count(), 25, "{logs}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "long"]),
        "true"
    );
    assert_eq!(d.ok(&["exec", "long", "echo", "exec works"]), "exec works");
    d.ok(&["stop", "-t", "1", "long"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "long"]),
        "137"
    );
}
