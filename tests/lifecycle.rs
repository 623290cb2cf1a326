//! Restart policies and events end to end.

use berth_tests::{stderr, stdout, Daemon};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn kill_container_process(d: &Daemon, name: &str) {
    let pid: i32 = d.field(name, "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn restart_policies() {
    let mut d = Daemon::start();
    d.busybox();
    // always: comes back when its process dies, with RestartCount counted.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "alw",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "600",
    ]);
    let pid1 = d.field("alw", "{{.State.Pid}}");
    kill_container_process(&d, "alw");
    d.eventually("always container restarted", || {
        d.field("alw", "{{.RestartCount}} {{.State.Running}}") == "1 true"
            && d.field("alw", "{{.State.Pid}}") != pid1
    });

    // on-failure:2 gives up after two restarts; a clean exit is not restarted.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "onf",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    d.eventually("on-failure gives up", || {
        d.field("onf", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        d.field("onf", "{{.RestartCount}} {{.State.ExitCode}}"),
        "2 3"
    );
    d.ok(&[
        "run",
        "-d",
        "--name",
        "clean",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    d.eventually("clean exit", || {
        d.field("clean", "{{.State.Status}}") == "exited"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.field("clean", "{{.RestartCount}}"), "0");

    // A manual stop is respected.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "uns",
        "--restart",
        "unless-stopped",
        "busybox",
        "sleep",
        "600",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "alw2",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "600",
    ]);
    d.ok(&["stop", "-t", "0", "uns", "alw2"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.field("uns", "{{.State.Running}}"), "false");
    assert_eq!(d.field("alw2", "{{.State.Running}}"), "false");

    // Across a daemon kill -9: a container that died meanwhile comes back, `always` comes
    // back even after a manual stop, `unless-stopped` stays stopped.
    let pid: i32 = d.field("alw", "{{.State.Pid}}").parse().unwrap();
    d.kill9();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    d.restart();
    d.eventually("always container back after daemon restart", || {
        d.field("alw", "{{.State.Running}} {{.RestartCount}}") == "true 2"
    });
    d.eventually(
        "manually stopped always container started by the daemon",
        || d.field("alw2", "{{.State.Running}}") == "true",
    );
    assert_eq!(d.field("uns", "{{.State.Running}}"), "false");
    d.ok(&["rm", "-f", "alw", "alw2", "uns", "onf", "clean"]);

    // The stock docker CLI sets the same policy.
    d.dok(&[
        "run",
        "-d",
        "--name",
        "dk",
        "--restart",
        "on-failure:1",
        "busybox",
        "sh",
        "-c",
        "exit 5",
    ]);
    d.eventually(
        "docker-created on-failure:1 container restarted once",
        || d.field("dk", "{{.RestartCount}} {{.State.Status}}") == "1 exited",
    );
    assert_eq!(
        d.dok(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", "dk"]),
        "on-failure"
    );
}

#[test]
fn events_show_the_lifecycle_in_order() {
    let d = Daemon::start();
    d.busybox();
    // Second resolution: let the import's second pass first.
    std::thread::sleep(Duration::from_millis(1100));
    let since = now_secs().to_string();
    let o = d.berth(&["run", "--name", "ev1", "busybox", "sh", "-c", "exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    d.ok(&["tag", "busybox", "busybox:evtag"]);
    d.ok(&["rm", "ev1"]);
    std::thread::sleep(Duration::from_millis(1100));
    let until = now_secs().to_string();
    let fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    let o = d.ok(&[
        "events", "--since", &since, "--until", &until, "--format", fmt,
    ]);
    let lines: Vec<&str> = o.lines().collect();
    let want = [
        "container create ev1",
        "container start ev1",
        "container die ev1",
        "image tag busybox:evtag",
        "container destroy ev1",
    ];
    let mut pos = 0;
    for w in want {
        match lines[pos..].iter().position(|l| *l == w) {
            Some(i) => pos += i + 1,
            None => panic!("{w:?} missing or out of order in:\n{o}"),
        }
    }
    let o = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(o, "4");
    let o = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=image",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(o, "tag");

    // Live: a subscriber sees events as they happen.
    let mut child = std::process::Command::new(berth_tests::bin("berth"))
        .env("BERTH_HOST", d.host())
        .args([
            "events",
            "--filter",
            "container=ev2",
            "--format",
            "{{.Action}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.ok(&["run", "--rm", "--name", "ev2", "busybox", "true"]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("create\n"), "{s}");
    assert!(
        s.contains("start\n") && s.contains("die\n") && s.contains("destroy\n"),
        "{s}"
    );

    // The stock docker CLI reads the same stream.
    let o = d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=ev1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = stdout(&o);
    assert!(
        t.contains("container create") && t.contains("container die"),
        "{t}"
    );
    assert!(t.contains("exitCode=4"), "{t}");
}

#[test]
fn health_checks() {
    let d = Daemon::start();
    d.busybox();
    let since = now_secs().to_string();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 600",
    ]);
    d.eventually("healthy", || {
        d.field("hc", "{{.State.Health.Status}}") == "healthy"
    });
    let out = d.field("hc", "{{(index .State.Health.Log 0).Output}}");
    assert_eq!(out.trim(), "fine");
    let ps = d.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.contains("(healthy)"), "{ps}");
    assert_eq!(
        d.ok(&["ps", "-q", "--filter", "health=healthy"])
            .lines()
            .count(),
        1
    );
    d.ok(&["exec", "hc", "rm", "/tmp/ok"]);
    d.eventually("unhealthy", || {
        d.field("hc", "{{.State.Health.Status}}") == "unhealthy"
    });
    let streak: i64 = d
        .field("hc", "{{.State.Health.FailingStreak}}")
        .parse()
        .unwrap();
    assert!(streak >= 2);
    // A probe over its timeout is a failure with docker's message.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    d.eventually("timed out probe", || {
        d.field("slow", "{{.State.Health.Status}}") == "unhealthy"
    });
    let out = d.field("slow", "{{(index .State.Health.Log 0).Output}}");
    assert!(out.contains("Health check exceeded timeout"), "{out}");
    // --no-healthcheck and no probe: no Health at all.
    let id = d.ok(&["run", "-d", "--no-healthcheck", "busybox", "sleep", "600"]);
    assert_eq!(
        d.dok(&["inspect", "-f", "{{json .State.Health}}", &id]),
        "null"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let until = now_secs().to_string();
    let ev = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=hc",
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.contains("health_status: healthy"), "{ev}");
    assert!(ev.contains("health_status: unhealthy"), "{ev}");
    // The docker CLI shows it too.
    let o = d.dok(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]);
    assert_eq!(o, "unhealthy");
}

#[test]
fn volume_events() {
    let d = Daemon::start();
    d.busybox();
    std::thread::sleep(Duration::from_millis(1100));
    let since = now_secs().to_string();
    d.ok(&["volume", "create", "evvol"]);
    d.ok(&["run", "--rm", "-v", "evvol:/data", "busybox", "true"]);
    d.ok(&["volume", "rm", "evvol"]);
    std::thread::sleep(Duration::from_millis(1100));
    let until = now_secs().to_string();
    let o = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(
        lines,
        vec![
            "create evvol",
            "mount evvol",
            "unmount evvol",
            "destroy evvol"
        ],
        "{o}"
    );
    let o = d.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "volume=evvol",
        "--filter",
        "event=mount",
        "--format",
        "{{index .Actor.Attributes \"destination\"}}",
    ]);
    assert_eq!(o, "/data");
}
