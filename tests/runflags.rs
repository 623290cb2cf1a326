//! `run` flags end to end (CLI flag → HostConfig → spec → what the process sees): --init,
//! --stop-signal/--stop-timeout, --ulimit, --shm-size, --sysctl, --device, --cgroupns,
//! --ipc, --pid, --uts; through berth and the docker CLI.

use berth_tests::{stderr, Daemon};

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// The line of `ps -o pid,args` output for `pid`.
fn ps_line(out: &str, pid: &str) -> Option<String> {
    out.lines()
        .map(str::trim)
        .find(|l| l.split_whitespace().next() == Some(pid))
        .map(String::from)
}

#[test]
fn init_is_pid1_forwards_signals_reaps_and_passes_exit_codes() {
    let d = Daemon::start();
    d.busybox();

    // PID 1 is docker's init, the command its child; the same through the docker CLI.
    let out = d.ok(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"]);
    assert_eq!(
        ps_line(&out, "1").as_deref(),
        Some("1 /sbin/docker-init -- ps -o pid,args"),
        "{out}"
    );
    let out = d.dok(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"]);
    assert_eq!(
        ps_line(&out, "1").as_deref(),
        Some("1 /sbin/docker-init -- ps -o pid,args"),
        "{out}"
    );
    // Without --init the command is PID 1 itself.
    let out = d.ok(&["run", "--rm", "busybox", "ps", "-o", "pid,args"]);
    assert_eq!(ps_line(&out, "1").as_deref(), Some("1 ps -o pid,args"));
    // The init is read-only in the container.
    let o = d.berth(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "echo x > /sbin/docker-init",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );

    // Exit codes pass through: a status, and 128+N for a signal.
    let o = d.berth(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let o = d.berth(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(o.status.code(), Some(143), "{}", stderr(&o));
    let o = d.berth(&["run", "--rm", "--init", "busybox", "/no/such/cmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));

    // SIGTERM reaches the sleep through init: it dies of it (143). A bare `sleep` as
    // PID 1 ignores SIGTERM and would be killed after the timeout (137).
    d.ok(&[
        "run", "-d", "--init", "--name", "sl", "busybox", "sleep", "1000",
    ]);
    assert_eq!(d.field("sl", "{{.HostConfig.Init}}"), "true");
    assert_eq!(d.field("sl", "{{.Path}}"), "sleep");
    d.ok(&["stop", "sl"]);
    assert_eq!(d.field("sl", "{{.State.ExitCode}}"), "143");

    // An orphan is re-parented to init, which reaps it: no zombie is left behind.
    let script = r#"(sleep 0.2 &)
        i=0
        while [ $i -lt 400 ]; do
            if ! grep -qs '^Name:.sleep$' /proc/[0-9]*/status; then echo REAPED; exit 0; fi
            usleep 50000; i=$((i+1))
        done
        grep -s '^State' /proc/[0-9]*/status; echo ZOMBIE"#;
    let out = d.ok(&["run", "--rm", "--init", "busybox", "sh", "-c", script]);
    assert_eq!(out, "REAPED");
}

#[test]
fn stop_signal_and_stop_timeout() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 42' USR1; while true; do usleep 50000; done",
    ]);
    assert_eq!(d.field("usr1", "{{.Config.StopSignal}}"), "SIGUSR1");
    d.ok(&["stop", "usr1"]);
    assert_eq!(d.field("usr1", "{{.State.ExitCode}}"), "42");

    // The docker CLI sends the same fields.
    d.dok(&[
        "run",
        "-d",
        "--name",
        "dk",
        "--stop-signal=SIGUSR1",
        "--stop-timeout=3",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' USR1; while true; do usleep 50000; done",
    ]);
    assert_eq!(d.field("dk", "{{.Config.StopSignal}}"), "SIGUSR1");
    assert_eq!(d.field("dk", "{{.Config.StopTimeout}}"), "3");
    d.dok(&["stop", "dk"]);
    assert_eq!(d.field("dk", "{{.State.ExitCode}}"), "7");

    // A process that ignores SIGTERM is killed after --stop-timeout, not docker's 10 s.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; while true; do usleep 50000; done",
    ]);
    assert_eq!(d.field("stubborn", "{{.Config.StopTimeout}}"), "1");
    // (How long stop takes is not asserted: tests never assert on timing. stop_locked uses
    // Config.StopTimeout when the request has no `t`.)
    d.ok(&["stop", "stubborn"]);
    assert_eq!(d.field("stubborn", "{{.State.ExitCode}}"), "137");
}

#[test]
fn ulimit_shm_size_and_sysctl() {
    let d = Daemon::start();
    d.busybox();
    let out = d.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:2048",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out, "1024\n2048");
    let out = d.dok(&[
        "run",
        "--rm",
        "--ulimit",
        "nproc=512",
        "busybox",
        "sh",
        "-c",
        "ulimit -u; ulimit -Hu",
    ]);
    assert_eq!(out, "512\n512");

    let out = d.ok(&[
        "run",
        "--rm",
        "--shm-size",
        "16m",
        "busybox",
        "grep",
        " /dev/shm ",
        "/proc/mounts",
    ]);
    assert!(out.contains("size=16384k"), "{out}");
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        " /dev/shm ",
        "/proc/mounts",
    ]);
    assert!(out.contains("size=65536k"), "{out}");

    let out = d.ok(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.shmmax=123456789",
        "busybox",
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/shmmax",
    ]);
    assert_eq!(out, "1\n123456789");
    let o = d.berth(&[
        "run",
        "--rm",
        "--sysctl",
        "kernel.hostname=x",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("sysctl 'kernel.hostname=x' is not allowed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn devices() {
    if !std::path::Path::new("/dev/fuse").exists() {
        eprintln!("skipped: needs /dev/fuse");
        return;
    }
    let d = Daemon::start();
    d.busybox();
    // Not there by default (and not allowed by the device cgroup).
    let out = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "test -e /dev/fuse || echo ABSENT",
    ]);
    assert_eq!(out, "ABSENT");
    // Made in the container, usable.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/fuse",
        "busybox",
        "sh",
        "-c",
        "stat -c '%F %t:%T' /dev/fuse; exec 3<>/dev/fuse && echo OPEN",
    ]);
    assert_eq!(out, "character special file a:e5\nOPEN");
    // Renamed and read-only in the device cgroup: opening it for writing is refused.
    let out = d.ok(&[
        "run",
        "--rm",
        "--device",
        "/dev/fuse:/dev/myfuse:r",
        "busybox",
        "sh",
        "-c",
        "exec 3</dev/myfuse && echo READ; (exec 4>/dev/myfuse) 2>/dev/null || echo DENIED",
    ]);
    assert_eq!(out, "READ\nDENIED");
    // The docker CLI's mapping.
    let out = d.dok(&[
        "run",
        "--rm",
        "--device=/dev/fuse:/dev/f2",
        "busybox",
        "sh",
        "-c",
        "exec 3<>/dev/f2 && echo OPEN",
    ]);
    assert_eq!(out, "OPEN");

    // A missing host device: docker's error at start.
    for cli in ["berth", "docker"] {
        let args = [
            "run",
            "--rm",
            "--device",
            "/dev/berth-nope",
            "busybox",
            "true",
        ];
        let o = if cli == "berth" {
            d.berth(&args)
        } else {
            d.docker(&args)
        };
        // docker/cli turns a start error mentioning "no such file or directory" into 127.
        assert_eq!(o.status.code(), Some(127), "{cli}");
        assert!(
            stderr(&o).contains(
                "error gathering device information while adding custom device \"/dev/berth-nope\": no such file or directory"
            ),
            "{cli}: {}",
            stderr(&o)
        );
    }
    let o = d.berth(&[
        "run",
        "--rm",
        "--device",
        "/dev/fuse:rel",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("rel is not an absolute path"));
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

#[test]
fn cgroupns_uts_and_host_namespaces() {
    let d = Daemon::start();
    d.busybox();
    let ns_in = |args: &[&str], kind: &str| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        let link = format!("/proc/self/ns/{kind}");
        a.extend_from_slice(&["busybox", "readlink", &link]);
        d.ok(&a)
    };
    assert_eq!(ns_in(&["--cgroupns", "host"], "cgroup"), host_ns("cgroup"));
    assert_ne!(
        ns_in(&["--cgroupns", "private"], "cgroup"),
        host_ns("cgroup")
    );
    assert_eq!(ns_in(&["--ipc", "host"], "ipc"), host_ns("ipc"));
    assert_ne!(ns_in(&[], "ipc"), host_ns("ipc"));
    assert_eq!(ns_in(&["--pid", "host"], "pid"), host_ns("pid"));
    assert_ne!(ns_in(&[], "pid"), host_ns("pid"));
    assert_eq!(ns_in(&["--uts", "host"], "uts"), host_ns("uts"));
    // The docker CLI sends the same modes.
    let out = d.dok(&[
        "run",
        "--rm",
        "--ipc=host",
        "--cgroupns=host",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/ipc; readlink /proc/self/ns/cgroup",
    ]);
    assert_eq!(out, format!("{}\n{}", host_ns("ipc"), host_ns("cgroup")));

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        d.ok(&["run", "--rm", "--uts", "host", "busybox", "hostname"]),
        hostname.trim()
    );

    // Defaults as docker records them; the private cgroupns shows the container's root.
    d.ok(&["create", "--name", "cg", "busybox", "true"]);
    assert_eq!(d.field("cg", "{{.HostConfig.IpcMode}}"), "private");
    let cgns = d.field("cg", "{{.HostConfig.CgroupnsMode}}");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(cgns, if v2 { "private" } else { "host" });
    let out = d.ok(&[
        "run",
        "--rm",
        "--cgroupns",
        "private",
        "busybox",
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");

    // Invalid modes: the CLI's and the daemon's words.
    let o = d.berth(&["run", "--rm", "--pid", "bogus", "busybox", "true"]);
    assert!(
        stderr(&o).contains("--pid: invalid PID mode"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["run", "--rm", "--cgroupns", "bogus", "busybox", "true"]);
    assert!(
        stderr(&o).contains("--cgroupns: invalid CGROUP mode"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["run", "--rm", "--ipc", "bogus", "busybox", "true"]);
    assert!(
        stderr(&o).contains("invalid IPC mode: bogus"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["run", "--rm", "--uts", "private", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}

#[test]
fn ipc_and_pid_of_another_container() {
    let d = Daemon::start();
    d.busybox();
    // A shareable IPC namespace and /dev/shm.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sh",
        "-c",
        "echo shared > /dev/shm/token; exec sleep 1000",
    ]);
    d.eventually("the token", || {
        d.berth(&["exec", "donor", "cat", "/dev/shm/token"])
            .status
            .success()
    });
    let donor_ipc = d.ok(&["exec", "donor", "readlink", "/proc/self/ns/ipc"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--ipc",
        "container:donor",
        "busybox",
        "sh",
        "-c",
        "cat /dev/shm/token; readlink /proc/self/ns/ipc",
    ]);
    assert_eq!(out, format!("shared\n{donor_ipc}"));
    let out = d.dok(&[
        "run",
        "--rm",
        "--ipc=container:donor",
        "busybox",
        "cat",
        "/dev/shm/token",
    ]);
    assert_eq!(out, "shared");

    // The other container's processes.
    let out = d.ok(&[
        "run",
        "--rm",
        "--pid",
        "container:donor",
        "busybox",
        "ps",
        "-o",
        "pid,args",
    ]);
    assert_eq!(ps_line(&out, "1").as_deref(), Some("1 sleep 1000"), "{out}");
    let out = d.dok(&[
        "run",
        "--rm",
        "--pid=container:donor",
        "busybox",
        "ps",
        "-o",
        "args",
    ]);
    assert!(out.lines().any(|l| l.trim() == "sleep 1000"), "{out}");

    // Docker's refusals: a private IPC namespace, a stopped container.
    d.ok(&["run", "-d", "--name", "private", "busybox", "sleep", "1000"]);
    let o = d.berth(&[
        "run",
        "--rm",
        "--ipc",
        "container:private",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("non-shareable IPC"), "{}", stderr(&o));
    d.ok(&["create", "--name", "stopped", "busybox", "true"]);
    let o = d.berth(&[
        "run",
        "--rm",
        "--pid",
        "container:stopped",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("cannot join PID namespace of a non running container: stopped"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--ipc",
        "container:nosuch",
        "busybox",
        "true",
    ]);
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));

    // The shared /dev/shm is unmounted when the donor stops.
    let shm = d
        .root
        .join("containers")
        .join(d.field("donor", "{{.Id}}"))
        .join("shm");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", shm.display()))
    };
    assert!(mounted());
    d.ok(&["stop", "-t", "1", "donor"]);
    assert!(!mounted());
    let o = d.berth(&["start", "donor"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(mounted());
    d.ok(&["rm", "-f", "donor"]);
    assert!(!mounted());
}
