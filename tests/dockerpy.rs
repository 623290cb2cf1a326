//! docker-py (from PyPI) drives berthd unmodified.

use berth_tests::{stderr, stdout, Daemon};

#[test]
fn docker_py_smoke() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import docker"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        if std::env::var_os("CI").is_some() {
            panic!("docker-py is not installed (scripts/deps.sh installs it)");
        }
        eprintln!("SKIP: python3 -m pip install docker");
        return;
    }
    let d = Daemon::start();
    d.busybox();
    d.ok(&["tag", "busybox", "pybox:latest"]);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("pybox.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "pybox:latest"]);
    d.ok(&["rmi", "pybox:latest"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/smoke.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .arg(&tar)
        .env("DOCKER_HOST", d.host())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker-py failed:\n{}\n{}\n--- daemon ---\n{}",
        stdout(&o),
        stderr(&o),
        berth_tests::tail(&d.log_text(), 40)
    );
    assert!(stdout(&o).contains("docker-py smoke: ok"));
}
