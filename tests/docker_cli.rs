//! The same scenarios driven by the stock `docker` CLI pointed at berthd.

use berth_tests::{busybox_tar, stderr, stdout, Daemon};

fn have_docker() -> bool {
    std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn docker_cli_containers() {
    if !have_docker() {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let d = Daemon::start();
    let tar = std::fs::read(busybox_tar()).unwrap();
    let o = d.docker_stdin(
        &["import", "-c", "CMD [\"sh\"]", "-", "busybox:latest"],
        Some(&tar),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d
        .dok(&["version", "--format", "{{.Server.APIVersion}}"])
        .starts_with("1.4"));
    d.dok(&["info"]);

    let o = d.docker(&["run", "--rm", "busybox", "echo", "hello from docker"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello from docker\n");
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo e >&2; exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(stderr(&o), "e\n");
    let o = d.docker(&["run", "--rm", "busybox", "/nope"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = d.docker_stdin(&["run", "-i", "--rm", "busybox", "cat"], Some(b"piped\n"));
    assert_eq!(stdout(&o), "piped\n", "{}", stderr(&o));

    let id = d.dok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"]);
    assert_eq!(d.dok(&["ps", "-q", "--no-trunc"]), id);
    assert_eq!(
        d.dok(&["ps", "--format", "{{.Names}} {{.Image}} {{.Command}}"]),
        "web busybox \"sleep 1000\""
    );
    assert_eq!(
        d.dok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.Config.Image}}",
            "web"
        ]),
        "running busybox"
    );
    assert!(d.dok(&["top", "web"]).contains("sleep 1000"));
    assert_eq!(d.dok(&["exec", "web", "echo", "in"]), "in");
    let o = d.docker(&["exec", "web", "sh", "-c", "exit 9"]);
    assert_eq!(o.status.code(), Some(9));
    d.dok(&["pause", "web"]);
    assert_eq!(
        d.dok(&["inspect", "-f", "{{.State.Status}}", "web"]),
        "paused"
    );
    d.dok(&["unpause", "web"]);
    d.dok(&["rename", "web", "web2"]);
    d.dok(&["restart", "-t", "0", "web2"]);
    d.dok(&["stop", "-t", "1", "web2"]);
    assert_eq!(d.dok(&["wait", "web2"]), "137");
    d.dok(&["start", "web2"]);
    d.dok(&["kill", "web2"]);
    d.dok(&["rm", "web2"]);
    let o = d.docker(&["inspect", "web2"]);
    assert!(!o.status.success());

    d.dok(&[
        "run",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two",
    ]);
    assert_eq!(d.dok(&["logs", "--tail", "1", "lg"]), "two");
    assert!(d
        .dok(&["logs", "-t", "lg"])
        .lines()
        .all(|l| l.contains('Z')));
    d.dok(&["create", "--name", "cc", "busybox", "echo", "started"]);
    assert_eq!(d.dok(&["start", "-a", "cc"]), "started");
    assert!(d
        .dok(&["container", "prune", "-f"])
        .contains("Total reclaimed space"));
    assert_eq!(d.dok(&["ps", "-aq"]), "");
}

#[test]
fn docker_cli_images() {
    if !have_docker() {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let d = Daemon::start();
    d.busybox();
    d.dok(&["tag", "busybox", "mine:1"]);
    let imgs = d.dok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        imgs.contains("busybox:latest") && imgs.contains("mine:1"),
        "{imgs}"
    );
    assert!(d.dok(&["images"]).starts_with("REPOSITORY"));
    assert!(d.dok(&["history", "busybox"]).contains("IMAGE"));
    assert!(d
        .dok(&["image", "inspect", "-f", "{{.Os}}", "busybox"])
        .contains("linux"));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("s.tar");
    d.dok(&["save", "-o", tar.to_str().unwrap(), "mine:1"]);
    d.dok(&["rmi", "mine:1"]);
    assert!(d
        .dok(&["load", "-i", tar.to_str().unwrap()])
        .contains("mine:1"));
    assert_eq!(
        d.dok(&["run", "--rm", "mine:1", "echo", "loaded"]),
        "loaded"
    );
    d.dok(&["rmi", "mine:1"]);
    d.dok(&["image", "prune", "-f"]);
}
