//! `pull` against Debian's reference registry (docker-registry) on loopback: plain and
//! digest pulls, run of a missing image, "up to date", docker's errors, htpasswd basic
//! auth through X-Registry-Auth, and the stock docker CLI rendering the progress.

use berth_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A docker-registry on 127.0.0.1:<free port> with its storage in a temp dir; killed and
/// removed on drop.
struct Registry {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Registry {
    /// `htpasswd`: Some((user, password)) turns on basic auth.
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        if let Some((u, p)) = htpasswd {
            let o = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .unwrap();
            assert!(o.status.success(), "htpasswd: {}", stderr(&o));
            std::fs::write(dir.join("htpasswd"), &o.stdout).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), yaml).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let reg = Registry { child, dir, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        reg
    }

    /// Pushes a docker-save archive as `<addr>/<repo>` with skopeo; returns the manifest
    /// digest the registry stored.
    fn push(&self, archive: &Path, repo: &str, creds: Option<&str>) -> String {
        let dest = format!("docker://{}/{repo}", self.addr);
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let digest_file = self.dir.join("digest");
        cmd.arg("--digestfile").arg(&digest_file);
        let o = cmd
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(&dest)
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo copy: {}", stderr(&o));
        std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The busybox test image as a docker-save archive (made by `berth save`).
fn busybox_archive(dir: &Path) -> PathBuf {
    let src = Daemon::start();
    src.busybox();
    let out = dir.join("busybox.tar");
    src.ok(&["save", "-o", out.to_str().unwrap(), "busybox:latest"]);
    out
}

#[test]
fn pull_run_digest_up_to_date_and_unknown_tag() {
    let reg = Registry::start(None);
    let archive = busybox_archive(&reg.dir);
    let digest = reg.push(&archive, "test/busybox:latest", None);
    let name = format!("{}/test/busybox:latest", reg.addr);

    let d = Daemon::start_with_config(&format!(
        r#"{{"insecure-registries": ["{}"], "max-concurrent-downloads": 2}}"#,
        reg.addr
    ));
    let out = d.ok(&["pull", &name]);
    for want in [
        "latest: Pulling from test/busybox",
        "Pulling fs layer",
        "Verifying Checksum",
        "Download complete",
        "Pull complete",
        &format!("Digest: {digest}"),
        &format!("Status: Downloaded newer image for {name}"),
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(out.lines().last(), Some(name.as_str()), "{out}");
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "pulled"]), "pulled");
    let digests = d.ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &name]);
    assert!(
        digests.contains(&format!("test/busybox@{digest}")),
        "{digests}"
    );

    // Nothing is fetched again.
    let again = d.ok(&["pull", &name]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}")),
        "{again}"
    );
    assert!(!again.contains("Pulling fs layer"), "{again}");

    // Unknown tag: docker's message, as an API error.
    let bad = format!("{}/test/busybox:nope", reg.addr);
    let o = d.berth(&["pull", &bad]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!(
            "manifest for {bad} not found: manifest unknown: manifest unknown"
        )),
        "{}",
        stderr(&o)
    );
    // Unknown repository.
    let o = d.berth(&["pull", &format!("{}/test/nothing", reg.addr)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));

    // A fresh daemon: `run` of a digest reference pulls it first; docker pulls too.
    let d2 = Daemon::start();
    let by_digest = format!("{}/test/busybox@{digest}", reg.addr);
    let o = d2.berth(&["run", "--rm", &by_digest, "echo", "by-digest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "by-digest");
    assert!(
        stderr(&o).contains("Unable to find image"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains(&format!("Status: Downloaded newer image for {by_digest}")),
        "{}",
        stderr(&o)
    );
    let o = d2.docker(&["pull", &name]);
    assert!(o.status.success(), "docker pull: {}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("Status: Downloaded newer image for {name}")),
        "{}",
        stdout(&o)
    );
    assert_eq!(d2.dok(&["run", "--rm", &name, "echo", "docker"]), "docker");
}

#[test]
fn pull_with_basic_auth() {
    let reg = Registry::start(Some(("berth", "s3cret")));
    let archive = busybox_archive(&reg.dir);
    reg.push(&archive, "private/busybox:v1", Some("berth:s3cret"));
    let d = Daemon::start();
    let name = format!("{}/private/busybox:v1", reg.addr);

    let o = d.berth(&["pull", &name]);
    assert!(!o.status.success());
    let want = format!(
        "pull access denied for {}/private/busybox, repository does not exist or may require 'docker login'",
        reg.addr
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));

    // X-Registry-Auth (base64 JSON, as the docker CLI sends it) gets through.
    let auth = |user: &str, pass: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                r#"printf '{{"username":"{user}","password":"{pass}"}}' | base64 -w0"#
            ))
            .output()
            .unwrap();
        stdout(&o)
    };
    let curl = |header: String| {
        let o = Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(&d.sock)
            .args(["-X", "POST", "-H"])
            .arg(format!("X-Registry-Auth: {header}"))
            .arg(format!(
                "http://berth/v1.47/images/create?fromImage={}/private/busybox&tag=v1",
                reg.addr
            ))
            .output()
            .unwrap();
        stdout(&o)
    };
    let denied = curl(auth("berth", "wrong"));
    assert!(denied.contains("pull access denied"), "{denied}");
    let out = curl(auth("berth", "s3cret"));
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "private"]), "private");
}

/// sha256 of a registry manifest as served (skopeo inspect --raw).
fn served_digest(addr: &str, repo: &str) -> String {
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{addr}/{repo}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo inspect: {}", stderr(&o));
    let o2 = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&o.stdout)?;
            c.wait_with_output()
        })
        .unwrap();
    format!("sha256:{}", stdout(&o2).split_whitespace().next().unwrap())
}

#[test]
fn push_skips_present_blobs_and_keeps_digests() {
    let reg = Registry::start(None);
    let d = Daemon::start();
    d.busybox();
    let name = format!("{}/team/bb:v1", reg.addr);
    d.ok(&["tag", "busybox", &name]);
    let out = d.ok(&["push", &name]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/team/bb]",
            reg.addr
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let line = out.lines().last().unwrap();
    assert!(line.starts_with("v1: digest: sha256:"), "{out}");
    let pushed = line.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(served_digest(&reg.addr, "team/bb:v1"), pushed);
    // RepoDigests now names the pushed manifest.
    let digests = d.field(&name, "{{json .RepoDigests}}");
    assert!(digests.contains(&pushed), "{digests}");

    // Again: every blob is there already, and the manifest is the same bytes.
    let again = d.ok(&["push", &name]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains(": Pushed"), "{again}");
    assert!(again.ends_with(&format!(
        "v1: digest: {pushed} size: {}",
        again.rsplit(' ').next().unwrap()
    )));

    // A pulled image pushed elsewhere keeps its manifest digest (the kept bytes go out).
    let d2 = Daemon::start();
    d2.ok(&["pull", &name]);
    let copy = format!("{}/other/copy:v1", reg.addr);
    d2.ok(&["tag", &name, &copy]);
    let out = d2.ok(&["push", &copy]);
    // The layer came from team/bb on the same registry: mounted, not uploaded.
    assert!(out.contains("Mounted from team/bb"), "{out}");
    assert!(out.ends_with(&format!("size: {}", out.rsplit(' ').next().unwrap())));
    assert!(out.contains(&format!("v1: digest: {pushed}")), "{out}");
    assert_eq!(served_digest(&reg.addr, "other/copy:v1"), pushed);
    assert_eq!(
        d2.ok(&["run", "--rm", &copy, "echo", "pushed and pulled"]),
        "pushed and pulled"
    );
    // A pulled layer keeps only its compressed bytes; save rebuilds the exact tar from them.
    let saved = tempfile::tempdir().unwrap();
    let tarfile = saved.path().join("pulled.tar");
    d2.ok(&["save", "-o", tarfile.to_str().unwrap(), &copy]);
    let d3 = Daemon::start();
    d3.ok(&["load", "-i", tarfile.to_str().unwrap()]);
    assert_eq!(d3.ok(&["run", "--rm", &copy, "echo", "saved"]), "saved");
    assert_eq!(d3.field(&copy, "{{.Id}}"), d2.field(&copy, "{{.Id}}"));
    // rmi of the last image takes every blob along: config, tar, kept gzip, manifest.
    d2.ok(&["rmi", &name, &copy]);
    let left: Vec<_> = std::fs::read_dir(d2.root.join("blobs/sha256"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "blobs left after rmi: {left:?}");

    // The stock docker CLI pushes through berthd and renders the messages.
    if Command::new("docker").arg("--version").output().is_ok() {
        let dk = format!("{}/team/bydocker:v1", reg.addr);
        d.ok(&["tag", "busybox", &dk]);
        let out = d.dok(&["push", &dk]);
        assert!(
            out.contains("Layer already exists") || out.contains("Pushed"),
            "{out}"
        );
        assert!(out.contains(&format!("v1: digest: {pushed}")), "{out}");
    }

    // docker's errors: an unknown image, a registry that is not there.
    let o = d.berth(&["push", &format!("{}/team/none:v1", reg.addr)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("An image does not exist locally with the tag"),
        "{}",
        stderr(&o)
    );
    d.ok(&["tag", "busybox", "127.0.0.1:9/x:y"]);
    let o = d.berth(&["push", "127.0.0.1:9/x:y"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("127.0.0.1:9"), "{}", stderr(&o));
}

#[test]
fn login_logout_and_authenticated_push_pull() {
    let reg = Registry::start(Some(("alice", "s3cret")));
    let d = Daemon::start();
    d.busybox();
    let name = format!("{}/private/bb:v1", reg.addr);
    d.ok(&["tag", "busybox", &name]);
    // Not logged in: docker's refusal.
    let o = d.berth(&["push", &name]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unauthorized") || stderr(&o).contains("authentication required"),
        "{}",
        stderr(&o)
    );

    // Wrong password: the daemon asks the registry, nothing is stored.
    let o = d.berth_stdin(
        &["login", "-u", "alice", "--password-stdin", &reg.addr],
        Some(b"nope\n"),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("401 Unauthorized"), "{}", stderr(&o));
    let cfg = d.root.join(".docker-cli/config.json");
    assert!(!cfg.exists() || !std::fs::read_to_string(&cfg).unwrap().contains(&reg.addr));

    let o = d.berth_stdin(
        &["login", "-u", "alice", "--password-stdin", &reg.addr],
        Some(b"s3cret\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "Login Succeeded");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    // docker's config.json shape: base64 "user:password" under the server's key.
    assert_eq!(saved["auths"][&reg.addr]["auth"], "YWxpY2U6czNjcmV0");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = d.ok(&["push", &name]);
    assert!(out.contains("v1: digest: sha256:"), "{out}");
    d.ok(&["rmi", &name]);
    d.ok(&["pull", &name]);
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "authed"]), "authed");
    // The stock docker CLI reads the same config.json.
    if Command::new("docker").arg("--version").output().is_ok() {
        d.ok(&["rmi", &name]);
        d.dok(&["pull", &name]);
    }

    assert_eq!(
        d.ok(&["logout", &reg.addr]),
        format!("Removing login credentials for {}", reg.addr)
    );
    assert_eq!(
        d.ok(&["logout", &reg.addr]),
        format!("Not logged in to {}", reg.addr)
    );
    d.ok(&["rmi", &name]);
    let o = d.berth(&["pull", &name]);
    assert!(!o.status.success());
}

#[test]
fn pull_all_tags_and_platform() {
    let reg = Registry::start(None);
    let d = Daemon::start();
    d.busybox();
    for t in ["v1", "v2"] {
        let n = format!("{}/multi/bb:{t}", reg.addr);
        d.ok(&["tag", "busybox", &n]);
        d.ok(&["push", &n]);
    }
    let d2 = Daemon::start();
    let out = d2.ok(&["pull", "-a", &format!("{}/multi/bb", reg.addr)]);
    assert!(out.ends_with(&format!("{}/multi/bb", reg.addr)), "{out}");
    let tags = d2.ok(&[
        "images",
        "--format",
        "{{.Tag}}",
        &format!("{}/multi/bb", reg.addr),
    ]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(tags, vec!["v1", "v2"]);
    let o = d2.berth(&["pull", "-a", &format!("{}/multi/bb:v1", reg.addr)]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("tag can't be used with --all-tags/-a"),
        "{}",
        stderr(&o)
    );

    // --platform: the image is linux/amd64 (this host's); asking for another fails clearly.
    let arch = d.field("busybox", "{{.Architecture}}");
    let n = format!("{}/multi/bb:v1", reg.addr);
    d2.ok(&["pull", "--platform", &format!("linux/{arch}"), &n]);
    let other = if arch == "arm64" { "amd64" } else { "arm64" };
    let o = d2.berth(&["pull", "--platform", &format!("linux/{other}"), &n]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not match the specified platform"),
        "{}",
        stderr(&o)
    );
    let o = d2.berth(&["pull", "--platform", "windows/amd64", &n]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("operating system is not supported"),
        "{}",
        stderr(&o)
    );
}

/// A TCP proxy in front of a registry that, while armed, cuts a blob download after
/// `cut` bytes of the response (a registry dying mid-pull), and records the requests.
struct CutProxy {
    addr: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    requests: std::sync::Arc<std::sync::Mutex<String>>,
}

impl CutProxy {
    fn start(upstream: &str, cut: usize) -> CutProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (a2, r2, up) = (armed.clone(), requests.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut client) = c else { break };
                let Ok(mut server) = std::net::TcpStream::connect(&up) else {
                    continue;
                };
                let (armed, requests) = (a2.clone(), r2.clone());
                // The last request on this connection was a blob GET: cut its answer.
                let blob_get = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (mut c2, mut s2, bg) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    blob_get.clone(),
                );
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c2.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        if text.starts_with("GET ") {
                            bg.store(text.contains("/blobs/sha256:"), Ordering::SeqCst);
                        }
                        requests.lock().unwrap().push_str(&text);
                        if s2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s2.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    let mut sent = 0usize;
                    while let Ok(n) = server.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let cutting =
                            armed.load(Ordering::SeqCst) && blob_get.load(Ordering::SeqCst);
                        if cutting && sent + n > cut {
                            let _ = client.write_all(&buf[..cut.saturating_sub(sent)]);
                            armed.store(false, Ordering::SeqCst);
                            break;
                        }
                        sent += n;
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CutProxy {
            addr,
            armed,
            requests,
        }
    }
}

#[test]
fn faults_cut_download_resumes_corrupt_blob_big_manifest() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let archive = busybox_archive(tmp.path());
    reg.push(&archive, "fault/bb:v1", None);

    // The connection dies mid-layer (and keeps dying for the retries of this pull, since
    // the proxy re-arms): a clear error, no image, nothing half-stored; the next pull
    // resumes with a Range request.
    let proxy = CutProxy::start(&reg.addr, 200_000);
    let d = Daemon::start();
    let name = format!("{}/fault/bb:v1", proxy.addr);
    let o = {
        // Re-arm while the pull retries, so every attempt of this pull is cut.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (armed, s2) = (proxy.armed.clone(), stop.clone());
        let t = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                armed.store(true, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        let o = d.berth(&["pull", &name]);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        t.join().unwrap();
        o
    };
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("failed to fetch blob"),
        "{}",
        stderr(&o)
    );
    assert!(!d.berth(&["image", "inspect", &name]).status.success());
    proxy
        .armed
        .store(false, std::sync::atomic::Ordering::SeqCst);
    proxy.requests.lock().unwrap().clear();
    d.ok(&["pull", &name]);
    let reqs = proxy.requests.lock().unwrap().clone();
    assert!(
        reqs.to_lowercase().contains("range: bytes="),
        "no resume:\n{reqs}"
    );
    assert_eq!(d.ok(&["run", "--rm", &name, "echo", "resumed"]), "resumed");

    // A blob whose bytes do not match its digest: refused, nothing stored.
    let reg2 = Registry::start(None);
    reg2.push(&archive, "fault/bad:v1", None);
    let blobs = reg2.dir.join("data/docker/registry/v2/blobs/sha256");
    let mut biggest: Option<(u64, std::path::PathBuf)> = None;
    for a in std::fs::read_dir(&blobs).unwrap().flatten() {
        for b in std::fs::read_dir(a.path()).unwrap().flatten() {
            let data = b.path().join("data");
            let len = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, data));
            }
        }
    }
    let (_, layer) = biggest.unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let d2 = Daemon::start();
    let bad = format!("{}/fault/bad:v1", reg2.addr);
    let o = d2.berth(&["pull", &bad]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("verification failed"), "{}", stderr(&o));
    assert!(!d2.berth(&["image", "inspect", &bad]).status.success());
    assert_eq!(d2.ok(&["images", "-q"]), "");

    // A manifest over 4 MiB (served by a fake registry) is refused before it is read.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for c in l.incoming().take(4) {
            let Ok(mut c) = c else { break };
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            if req.starts_with("GET /v2/ ") {
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
                continue;
            }
            let body = vec![b' '; (4 << 20) + 10];
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.distribution.manifest.v2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(&body);
        }
    });
    let o = d2.berth(&["pull", &format!("{fake}/huge/manifest:v1")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("larger than the 4 MiB limit"),
        "{}",
        stderr(&o)
    );
}
