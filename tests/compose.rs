//! docker-compose (Python compose v1 from PyPI, installed by scripts/deps.sh into
//! /opt/berth-compose) drives berthd: two services, a named volume, a user network and a
//! healthcheck: up -d, ps, logs, down -v.

use berth_tests::{stderr, stdout, Daemon};
use std::path::Path;
use std::process::{Command, Output};

const COMPOSE: &str = "/opt/berth-compose/bin/docker-compose";

fn compose(d: &Daemon, args: &[&str]) -> Output {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose");
    Command::new(COMPOSE)
        .current_dir(&dir)
        .env("DOCKER_HOST", d.host())
        .env("COMPOSE_PROJECT_NAME", "bt")
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .args(args)
        .output()
        .expect("run docker-compose")
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = compose(d, args);
    assert!(
        o.status.success(),
        "docker-compose {args:?}: {}{}\n--- daemon ---\n{}",
        stdout(&o),
        stderr(&o),
        berth_tests::tail(&d.log_text(), 30)
    );
    stdout(&o)
}

#[test]
fn compose_up_ps_logs_down() {
    if !Path::new(COMPOSE).exists() {
        panic!("{COMPOSE} missing: run scripts/deps.sh");
    }
    let d = Daemon::start();
    d.busybox();
    ok(&d, &["up", "-d"]);
    let ps = ok(&d, &["ps"]);
    assert!(
        ps.contains("bt_web_1") && ps.contains("bt_client_1"),
        "{ps}"
    );
    assert!(ps.contains("(healthy)"), "{ps}");
    d.eventually("client fetched from web over the network by name", || {
        let logs = stdout(&compose(&d, &["logs", "--no-color", "client"]));
        logs.contains("client-done")
    });
    let logs = ok(&d, &["logs", "--no-color", "client"]);
    assert!(logs.contains("hello-compose"), "{logs}");
    assert!(d.ok(&["volume", "ls", "-q"]).contains("bt_webdata"));
    assert!(d.ok(&["network", "ls"]).contains("bt_appnet"));
    ok(&d, &["down", "-v"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert!(!d.ok(&["volume", "ls", "-q"]).contains("bt_webdata"));
    assert!(!d.ok(&["network", "ls"]).contains("bt_appnet"));
}
