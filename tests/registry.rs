//! berth's built-in registry (`berth-registry serve`), each test with its own registry on
//! 127.0.0.1:<free port> in a temp dir: skopeo push/pull round trips, berthd pulling from it,
//! the blob upload protocol (chunks, ranges, digest checks), manifest rules, pagination,
//! htpasswd auth, token auth with its token server, pull-through caching, read-only mode, TLS
//! and gc.

use berth_tests::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A berth-registry process; killed and its directory removed on drop.
struct Reg {
    child: Option<Child>,
    dir: PathBuf,
    root: PathBuf,
    addr: String,
    log: PathBuf,
}

impl Reg {
    fn start(extra: &[&str]) -> Reg {
        let dir = tempfile::Builder::new()
            .prefix("berth-reg-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let root = dir.join("root");
        let mut r = Reg {
            child: None,
            log: dir.join("registry.log"),
            dir,
            root,
            addr: String::new(),
        };
        r.spawn(extra);
        r
    }

    /// (Re)starts the server on the same root with `extra` flags, waiting for its
    /// "listening on ADDR" line.
    fn spawn(&mut self, extra: &[&str]) {
        self.stop();
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(bin("berth-registry"))
            .args(["serve", "--addr", "127.0.0.1:0", "--root"])
            .arg(&self.root)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("listening on ")) {
                self.addr = line.trim_start_matches("listening on ").trim().to_string();
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("berth-registry exited ({st}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Pushes a docker-save archive with skopeo; returns the manifest digest.
    fn push(&self, archive: &Path, repo: &str, creds: Option<&str>) -> String {
        let digest_file = self.dir.join("digest");
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let o = cmd
            .arg("--digestfile")
            .arg(&digest_file)
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{}/{repo}", self.addr))
            .output()
            .unwrap();
        assert!(o.status.success(), "skopeo copy: {}", stderr(&o));
        std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_string()
    }

    fn gc(&self, args: &[&str]) -> String {
        let o = Command::new(bin("berth-registry"))
            .args(["gc", "--root"])
            .arg(&self.root)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "gc: {}", stderr(&o));
        stdout(&o)
    }
}

impl Drop for Reg {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP exchange through curl: status, lowercased headers, body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// `curl -X METHOD URL [-H h]... [--data-binary @body]`.
fn http(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>, extra: &[&str]) -> Resp {
    use std::io::Write;
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method]);
    // No `Expect: 100-continue` unless the caller asks for it (curl's first
    // Expect header wins).
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("expect:"))
    {
        cmd.args(["-H", "Expect:"]);
    }
    if method == "HEAD" {
        cmd.arg("-I");
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args(extra);
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("curl");
    let mut si = child.stdin.take().unwrap();
    let data = body.map(|b| b.to_vec());
    let writer = std::thread::spawn(move || {
        if let Some(d) = data {
            let _ = si.write_all(&d);
        }
    });
    let o = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(o.status.success(), "curl {method} {url}: {}", stderr(&o));
    let out = o.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(out.len());
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: out[split..].to_vec(),
    }
}

fn get(url: &str) -> Resp {
    http("GET", url, &[], None, &[])
}

fn sha256(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let o = c.wait_with_output().unwrap();
    format!("sha256:{}", stdout(&o).split_whitespace().next().unwrap())
}

/// Monolithic blob upload (`POST ?digest=`); returns the digest.
fn put_blob(reg: &Reg, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = http(
        "POST",
        &reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")),
        &["Content-Type: application/octet-stream"],
        Some(data),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A small OCI image (config + one layer) pushed with curl: (manifest digest, bytes).
fn push_tiny_image(reg: &Reg, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    put_oci_image(
        reg,
        repo,
        tag,
        config,
        layer,
        "application/vnd.oci.image.layer.v1.tar",
    )
}

/// An OCI image (config + one layer of `layer_type`) pushed with curl: (digest, bytes).
fn put_oci_image(
    reg: &Reg,
    repo: &str,
    tag: &str,
    config: &[u8],
    layer: &[u8],
    layer_type: &str,
) -> (String, Vec<u8>) {
    let cd = put_blob(reg, repo, config);
    let ld = put_blob(reg, repo, layer);
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": layer_type, "digest": ld, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let r = http(
        "PUT",
        &reg.url(&format!("/v2/{repo}/manifests/{tag}")),
        &[&format!("Content-Type: {OCI_MANIFEST}")],
        Some(&m),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let d = sha256(&m);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    (d, m)
}

/// The busybox test image as a docker-save archive (made by `berth save`).
fn busybox_archive(dir: &Path) -> PathBuf {
    let src = Daemon::start();
    src.busybox();
    let out = dir.join("busybox.tar");
    src.ok(&["save", "-o", out.to_str().unwrap(), "busybox:latest"]);
    out
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn skopeo_round_trip_mount_and_berthd_pull() {
    let reg = Reg::start(&[]);
    let archive = busybox_archive(&reg.dir);
    let digest = reg.push(&archive, "x/y:v1", None);

    // The stored manifest is byte-identical to what skopeo pushed.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/x/y:v1", reg.addr),
    ]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    assert_eq!(sha256(&raw.stdout), digest);
    let r = http("HEAD", &reg.url("/v2/x/y/manifests/v1"), &[], None, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    // Registry to registry (cross-repository mounts), same digest.
    let o = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/x/y:v1", reg.addr),
        &format!("docker://{}/x/z:copy", reg.addr),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = http("HEAD", &reg.url("/v2/x/z/manifests/copy"), &[], None, &[]);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));

    // Out again into an OCI layout.
    let oci = reg.dir.join("oci");
    let o = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/x/y:v1", reg.addr),
        &format!("oci:{}:v1", oci.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().map(|a| a.len()), Some(1));

    let cat = get(&reg.url("/v2/_catalog")).json();
    assert_eq!(cat["repositories"], serde_json::json!(["x/y", "x/z"]));

    // berthd pulls from it and runs the image.
    let d = Daemon::start_with_config(&format!(r#"{{"insecure-registries": ["{}"]}}"#, reg.addr));
    let name = format!("{}/x/y:v1", reg.addr);
    let out = d.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", &name, "echo", "from-berth-registry"]),
        "from-berth-registry"
    );
    let o = d.berth(&["pull", &format!("{}/x/y:nope", reg.addr)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("manifest unknown"), "{}", stderr(&o));

    // berthd pushes the pulled image back under another name: same manifest digest, and
    // every blob is mounted or already there.
    let back = format!("{}/x/back:v1", reg.addr);
    d.ok(&["tag", &name, &back]);
    let out = d.ok(&["push", &back]);
    assert!(out.contains(&format!("v1: digest: {digest} ")), "{out}");
    let again = d.ok(&["push", &back]);
    assert!(again.contains("Layer already exists"), "{again}");
    // A locally built image (no kept manifest): a gzip layer made on the way.
    d.ok(&[
        "commit",
        "--change",
        "CMD [\"echo\", \"committed\"]",
        &d.ok(&["create", &name, "true"]),
        &format!("{}/x/built:v1", reg.addr),
    ]);
    let out = d.ok(&["push", &format!("{}/x/built:v1", reg.addr)]);
    assert!(
        out.contains(": Pushed")
            || out.contains("Layer already exists")
            || out.contains("Mounted from x/y"),
        "{out}"
    );
    let d2 = Daemon::start();
    d2.ok(&["pull", &format!("{}/x/built:v1", reg.addr)]);
    assert_eq!(
        d2.ok(&["run", "--rm", &format!("{}/x/built:v1", reg.addr)]),
        "committed"
    );
}

#[test]
fn blob_uploads_ranges_and_digest_checks() {
    let reg = Reg::start(&[]);
    let v2 = get(&reg.url("/v2/"));
    assert_eq!((v2.status, v2.text().as_str()), (200, "{}"));

    // Chunked upload: POST, two PATCHes with Content-Range, status, PUT ?digest.
    let r = http("POST", &reg.url("/v2/c/blobs/uploads/"), &[], None, &[]);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-0"));
    let uuid = r.header("docker-upload-uuid").unwrap().to_string();
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.ends_with(&uuid), "{loc}");
    let r = http(
        "PATCH",
        &reg.url(&loc),
        &[
            "Content-Range: 0-4",
            "Content-Type: application/octet-stream",
        ],
        Some(b"hello"),
        &[],
    );
    assert_eq!((r.status, r.header("range")), (202, Some("0-4")));
    // Out of order.
    let r = http(
        "PATCH",
        &reg.url(&loc),
        &["Content-Range: 3-7"],
        Some(b"xxxxx"),
        &[],
    );
    assert_eq!(r.status, 416, "{}", r.text());
    let r = http(
        "PATCH",
        &reg.url(&loc),
        &["Content-Range: 5-10"],
        Some(b" world"),
        &[],
    );
    assert_eq!((r.status, r.header("range")), (202, Some("0-10")));
    let r = get(&reg.url(&loc));
    assert_eq!((r.status, r.header("range")), (204, Some("0-10")));
    let d = sha256(b"hello world");
    let r = http(
        "PUT",
        &reg.url(&format!("{loc}?digest={d}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/c/blobs/{d}").as_str())
    );
    assert_eq!(get(&reg.url(&loc)).error_code(), "BLOB_UPLOAD_UNKNOWN");

    // Blob reads: whole, ranged, HEAD, unsatisfiable; other repositories do not have it.
    let blob = reg.url(&format!("/v2/c/blobs/{d}"));
    assert_eq!(get(&blob).body, b"hello world");
    let r = http("GET", &blob, &["Range: bytes=6-10"], None, &[]);
    assert_eq!((r.status, r.text().as_str()), (206, "world"));
    assert_eq!(r.header("content-range"), Some("bytes 6-10/11"));
    let r = http("HEAD", &blob, &[], None, &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("11")));
    assert_eq!(
        http("GET", &blob, &["Range: bytes=20-"], None, &[]).status,
        416
    );
    let other = get(&reg.url(&format!("/v2/other/blobs/{d}")));
    assert_eq!(
        (other.status, other.error_code().as_str()),
        (404, "BLOB_UNKNOWN")
    );

    // Cross-repository mount.
    let r = http(
        "POST",
        &reg.url(&format!("/v2/m/blobs/uploads/?mount={d}&from=c")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        get(&reg.url(&format!("/v2/m/blobs/{d}"))).body,
        b"hello world"
    );
    // Mount of something the source lacks: a plain upload starts instead.
    let missing = sha256(b"missing");
    let r = http(
        "POST",
        &reg.url(&format!("/v2/m/blobs/uploads/?mount={missing}&from=c")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 202);
    let r = http(
        "DELETE",
        &reg.url(r.header("location").unwrap()),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 204);

    // Digest mismatch: refused, nothing stored, the upload is gone.
    let bad = sha256(b"something else");
    let r = http(
        "POST",
        &reg.url(&format!("/v2/c/blobs/uploads/?digest={bad}")),
        &[],
        Some(b"payload"),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    let r = http("POST", &reg.url("/v2/c/blobs/uploads/"), &[], None, &[]);
    let loc = r.header("location").unwrap().to_string();
    let r = http(
        "PUT",
        &reg.url(&format!("{loc}?digest={bad}")),
        &[],
        Some(b"payload"),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    for digest in [bad, sha256(b"payload")] {
        let hex = digest.trim_start_matches("sha256:");
        assert!(!reg
            .root
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .exists());
        assert_eq!(get(&reg.url(&format!("/v2/c/blobs/{digest}"))).status, 404);
    }
    assert_eq!(get(&reg.url(&loc)).status, 404);

    // Validation: names, digests.
    let r = get(&reg.url("/v2/Bad_Name/tags/list"));
    assert_eq!((r.status, r.error_code().as_str()), (400, "NAME_INVALID"));
    let r = get(&reg.url("/v2/c/blobs/sha256:1234"));
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));

    // Blob delete.
    assert_eq!(http("DELETE", &blob, &[], None, &[]).status, 202);
    assert_eq!(get(&blob).error_code(), "BLOB_UNKNOWN");
}

#[test]
fn manifest_rules_referrers_and_delete() {
    let reg = Reg::start(&[]);
    let (digest, bytes) = push_tiny_image(&reg, "app", "v1", b"layer-1");
    let r = get(&reg.url("/v2/app/manifests/v1"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        get(&reg.url(&format!("/v2/app/manifests/{digest}"))).body,
        bytes
    );
    let r = get(&reg.url("/v2/app/manifests/nope"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = get(&reg.url("/v2/app/manifests/-bad"));
    assert_eq!((r.status, r.error_code().as_str()), (400, "TAG_INVALID"));

    let ct = format!("Content-Type: {OCI_MANIFEST}");
    // A layer the repository does not have.
    let unknown = sha256(b"not uploaded");
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": unknown, "size": 3},
        "layers": []})
    .to_string();
    let r = http(
        "PUT",
        &reg.url("/v2/app/manifests/v2"),
        &[&ct],
        Some(m.as_bytes()),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    // PUT by digest with the wrong digest.
    let r = http(
        "PUT",
        &reg.url(&format!("/v2/app/manifests/{unknown}")),
        &[&ct],
        Some(&bytes),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    // Not JSON.
    let r = http(
        "PUT",
        &reg.url("/v2/app/manifests/v2"),
        &[&ct],
        Some(b"nope"),
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    // Over 4 MiB.
    let mut big = br#"{"schemaVersion":2,"annotations":{"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 4 << 20));
    big.extend_from_slice(br#""}}"#);
    // The registry answers 413 from the declared length without reading the
    // body; waiting for `100 Continue` keeps curl from writing into a
    // connection the server has already closed (EPIPE on a loaded machine).
    let r = http(
        "PUT",
        &reg.url("/v2/app/manifests/big"),
        &[&ct, "Expect: 100-continue"],
        Some(&big),
        &["--expect100-timeout", "120"],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (413, "MANIFEST_INVALID")
    );
    assert_eq!(get(&reg.url("/v2/app/manifests/big")).status, 404);

    // An index over the image; its children must exist.
    let idx_type = "application/vnd.oci.image.index.v1+json";
    let idx = serde_json::json!({"schemaVersion": 2, "mediaType": idx_type,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len()}]})
    .to_string();
    let r = http(
        "PUT",
        &reg.url("/v2/app/manifests/multi"),
        &[&format!("Content-Type: {idx_type}")],
        Some(idx.as_bytes()),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let bad_idx = idx.replace(&digest, &unknown);
    let r = http(
        "PUT",
        &reg.url("/v2/app/manifests/multi2"),
        &[&format!("Content-Type: {idx_type}")],
        Some(bad_idx.as_bytes()),
        &[],
    );
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");

    // A referrer (signature-like artifact) with a subject.
    let empty = put_blob(&reg, "app", b"{}");
    let sig = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": bytes.len()},
        "annotations": {"k": "v"}})
    .to_string();
    let sig_digest = sha256(sig.as_bytes());
    let r = http(
        "PUT",
        &reg.url(&format!("/v2/app/manifests/{sig_digest}")),
        &[&ct],
        Some(sig.as_bytes()),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("oci-subject"), Some(digest.as_str()));
    let r = get(&reg.url(&format!("/v2/app/referrers/{digest}")));
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["manifests"][0]["digest"], sig_digest.as_str());
    assert_eq!(
        j["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    assert_eq!(j["manifests"][0]["annotations"]["k"], "v");
    let r = get(&reg.url(&format!("/v2/app/referrers/{digest}?artifactType=other")));
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"], serde_json::json!([]));

    // Deletes: by tag unsupported; by digest removes the tags too.
    let r = http("DELETE", &reg.url("/v2/app/manifests/v1"), &[], None, &[]);
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    let r = http(
        "DELETE",
        &reg.url(&format!("/v2/app/manifests/{sig_digest}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        get(&reg.url(&format!("/v2/app/referrers/{digest}"))).json()["manifests"],
        serde_json::json!([])
    );
    let r = http(
        "DELETE",
        &reg.url(&format!("/v2/app/manifests/{digest}")),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 202);
    assert_eq!(get(&reg.url("/v2/app/manifests/v1")).status, 404);
    assert_eq!(
        get(&reg.url("/v2/app/tags/list")).json()["tags"],
        serde_json::json!(["multi"])
    );
}

#[test]
fn catalog_and_tags_pagination() {
    let reg = Reg::start(&[]);
    for repo in ["a", "b/c", "d"] {
        push_tiny_image(&reg, repo, "t1", b"l");
    }
    for tag in ["t2", "t3", "t4"] {
        push_tiny_image(&reg, "a", tag, b"l");
    }
    let r = get(&reg.url("/v2/_catalog?n=2"));
    assert_eq!(r.json()["repositories"], serde_json::json!(["a", "b/c"]));
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/_catalog?last=b/c&n=2>; rel="next""#)
    );
    let r = get(&reg.url("/v2/_catalog?n=2&last=b/c"));
    assert_eq!(r.json()["repositories"], serde_json::json!(["d"]));
    assert_eq!(r.header("link"), None);

    let r = get(&reg.url("/v2/a/tags/list"));
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "a", "tags": ["t1", "t2", "t3", "t4"]})
    );
    let r = get(&reg.url("/v2/a/tags/list?n=3"));
    assert_eq!(r.json()["tags"], serde_json::json!(["t1", "t2", "t3"]));
    assert_eq!(
        r.header("link"),
        Some(r#"</v2/a/tags/list?last=t3&n=3>; rel="next""#)
    );
    let r = get(&reg.url("/v2/a/tags/list?n=3&last=t3"));
    assert_eq!(r.json()["tags"], serde_json::json!(["t4"]));
    let r = get(&reg.url("/v2/a/tags/list?n=x"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "PAGINATION_NUMBER_INVALID")
    );
    let r = get(&reg.url("/v2/nothing/tags/list"));
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
}

#[test]
fn htpasswd_basic_auth() {
    let mut reg = Reg::start(&[]);
    let o = Command::new("htpasswd")
        .args(["-Bbn", "berth", "s3cret"])
        .output()
        .unwrap();
    assert!(o.status.success(), "htpasswd: {}", stderr(&o));
    let pw = reg.dir.join("htpasswd");
    std::fs::write(&pw, &o.stdout).unwrap();
    reg.spawn(&["--htpasswd", pw.to_str().unwrap(), "--realm", "berth-test"]);

    let r = get(&reg.url("/v2/"));
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="berth-test""#)
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let r = http("GET", &reg.url("/v2/"), &[], None, &["-u", "berth:wrong"]);
    assert_eq!(r.status, 401);
    let r = http("GET", &reg.url("/v2/"), &[], None, &["-u", "berth:s3cret"]);
    assert_eq!(r.status, 200);

    let archive = busybox_archive(&reg.dir);
    let dest = format!("docker://{}/private/bb:v1", reg.addr);
    let o = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &dest,
    ]);
    assert!(!o.status.success(), "push without credentials succeeded");
    let digest = reg.push(&archive, "private/bb:v1", Some("berth:s3cret"));
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "berth:s3cret",
        &dest,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&o.stdout), digest);
}

#[test]
fn read_only_mode() {
    let mut reg = Reg::start(&[]);
    let (digest, bytes) = push_tiny_image(&reg, "ro", "v1", b"layer");
    reg.spawn(&["--read-only"]);
    assert_eq!(get(&reg.url("/v2/ro/manifests/v1")).body, bytes);
    for (method, path) in [
        ("POST", "/v2/ro/blobs/uploads/".to_string()),
        ("PUT", "/v2/ro/manifests/v2".to_string()),
        ("DELETE", format!("/v2/ro/manifests/{digest}")),
    ] {
        let r = http(method, &reg.url(&path), &[], Some(b"{}"), &[]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (405, "UNSUPPORTED"),
            "{method} {path}"
        );
    }
    assert_eq!(
        get(&reg.url(&format!("/v2/ro/manifests/{digest}"))).status,
        200
    );
}

#[test]
fn gc_sweeps_unreferenced_blobs() {
    let mut reg = Reg::start(&[]);
    let (digest, _) = push_tiny_image(&reg, "keep", "v1", b"kept layer");
    let (gone, _) = push_tiny_image(&reg, "drop", "v1", b"dropped layer");
    let orphan = put_blob(&reg, "keep", b"orphan blob");
    let dropped_layer = sha256(b"dropped layer");
    assert_eq!(
        http(
            "DELETE",
            &reg.url(&format!("/v2/drop/manifests/{gone}")),
            &[],
            None,
            &[]
        )
        .status,
        202
    );
    // A stale upload.
    let r = http("POST", &reg.url("/v2/keep/blobs/uploads/"), &[], None, &[]);
    let upload = r.header("location").unwrap().to_string();
    reg.stop();

    let blob_file = |d: &str| {
        let hex = d.trim_start_matches("sha256:").to_string();
        reg.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    };
    let dry = reg.gc(&["--dry-run"]);
    for d in [&orphan, &dropped_layer, &gone] {
        assert!(
            dry.contains(&format!("blob eligible for deletion: {d}")),
            "{dry}"
        );
        assert!(blob_file(d).exists());
    }
    assert!(!dry.contains(&digest), "{dry}");
    let out = reg.gc(&["--upload-max-age", "0s"]);
    for d in [&orphan, &dropped_layer, &gone] {
        assert!(out.contains(d.as_str()), "{out}");
        assert!(!blob_file(d).exists());
    }
    assert!(out.contains("stale upload"), "{out}");
    assert!(blob_file(&digest).exists());
    assert!(blob_file(&sha256(b"kept layer")).exists());

    reg.spawn(&[]);
    assert_eq!(get(&reg.url("/v2/keep/manifests/v1")).status, 200);
    assert_eq!(
        get(&reg.url(&format!("/v2/keep/blobs/{}", sha256(b"kept layer")))).body,
        b"kept layer"
    );
    assert_eq!(
        get(&reg.url(&format!("/v2/keep/blobs/{orphan}"))).status,
        404
    );
    assert_eq!(get(&reg.url(&upload)).status, 404);
}

#[test]
fn tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", stderr(&o));
    let reg = Reg::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://{}/v2/", reg.addr);
    let r = http(
        "GET",
        &url,
        &[],
        None,
        &["--cacert", cert.to_str().unwrap()],
    );
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    // skopeo verifying against the same CA.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
    let o = skopeo(&[
        "inspect",
        "--cert-dir",
        certs.to_str().unwrap(),
        &format!("docker://{}/none:v1", reg.addr),
    ]);
    assert!(stderr(&o).contains("manifest unknown"), "{}", stderr(&o));
}

#[test]
fn parallel_uploads() {
    let reg = Reg::start(&[]);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let url = reg.url("");
            std::thread::spawn(move || {
                // Half push the same content, half their own, interleaving chunked uploads.
                let data = if i % 2 == 0 {
                    b"shared content".to_vec()
                } else {
                    format!("own content {i}").into_bytes()
                };
                let d = sha256(&data);
                let r = http(
                    "POST",
                    &format!("{url}/v2/par/blobs/uploads/"),
                    &[],
                    None,
                    &[],
                );
                assert_eq!(r.status, 202);
                let loc = format!("{url}{}", r.header("location").unwrap());
                let (a, b) = data.split_at(data.len() / 2);
                let r = http("PATCH", &loc, &[], Some(a), &[]);
                assert_eq!(r.status, 202, "{}", r.text());
                let r = http("PUT", &format!("{loc}?digest={d}"), &[], Some(b), &[]);
                assert_eq!(r.status, 201, "{}", r.text());
                (d, data)
            })
        })
        .collect();
    for t in threads {
        let (d, data) = t.join().unwrap();
        assert_eq!(get(&reg.url(&format!("/v2/par/blobs/{d}"))).body, data);
    }
    // Nothing left in flight.
    let uploads = reg.root.join("repositories/par/_uploads");
    assert_eq!(std::fs::read_dir(uploads).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(reg.root.join("tmp")).unwrap().count(), 0);
}

/// A second berth-registry process (the token server) printing "listening on ADDR"; killed
/// on drop.
struct Listener {
    child: Child,
    addr: String,
}

impl Listener {
    fn spawn(args: &[&str], log: &Path) -> Listener {
        let child = Command::new(bin("berth-registry"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn berth-registry");
        let mut l = Listener {
            child,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("listening on ")) {
                l.addr = line.trim_start_matches("listening on ").trim().to_string();
                return l;
            }
            if let Ok(Some(st)) = l.child.try_wait() {
                panic!("berth-registry exited ({st}): {text}");
            }
            assert!(Instant::now() < deadline, "did not come up: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
    o.stdout
}

/// An htpasswd file with berth:s3cret in `dir`.
fn htpasswd_file(dir: &Path) -> PathBuf {
    let out = run_ok(Command::new("htpasswd").args(["-Bbn", "berth", "s3cret"]));
    let pw = dir.join("htpasswd");
    std::fs::write(&pw, out).unwrap();
    pw
}

fn b64url(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("basenc")
        .args(["--base64url", "-w0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let o = c.wait_with_output().unwrap();
    stdout(&o).trim().trim_end_matches('=').to_string()
}

/// An RS256 JWT made with openssl alone (not with the code under test).
fn rs256_jwt(key: &Path, claims: &serde_json::Value) -> String {
    use std::io::Write;
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let mut c = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    format!("{input}.{}", b64url(&o.stdout))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn token_auth_and_token_server() {
    let mut reg = Reg::start(&[]);
    let dir = reg.dir.clone();
    let (key, public, other) = (
        dir.join("key.pem"),
        dir.join("pub.pem"),
        dir.join("other.pem"),
    );
    for k in [&key, &other] {
        run_ok(
            Command::new("openssl")
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                ])
                .arg(k),
        );
    }
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public),
    );
    let pw = htpasswd_file(&dir);
    let ts = Listener::spawn(
        &[
            "token-server",
            "--addr",
            "127.0.0.1:0",
            "--key",
            key.to_str().unwrap(),
            "--issuer",
            "berth-ts",
            "--htpasswd",
            pw.to_str().unwrap(),
            "--allow",
            "public/*=pull",
        ],
        &dir.join("token-server.log"),
    );
    let realm = format!("http://{}/token", ts.addr);
    reg.spawn(&[
        "--token-realm",
        &realm,
        "--token-service",
        "berth-test",
        "--token-issuer",
        "berth-ts",
        "--token-key",
        public.to_str().unwrap(),
    ]);

    // Challenges name the scope each request needs.
    let challenge = |method: &str, path: &str| {
        let r = http(method, &reg.url(path), &[], None, &[]);
        assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
        r.header("www-authenticate").unwrap_or("").to_string()
    };
    let base = format!(r#"Bearer realm="{realm}",service="berth-test""#);
    assert_eq!(challenge("GET", "/v2/"), base);
    assert_eq!(
        challenge("GET", "/v2/a/b/manifests/v1"),
        format!(r#"{base},scope="repository:a/b:pull""#)
    );
    assert_eq!(
        challenge("POST", "/v2/a/blobs/uploads/"),
        format!(r#"{base},scope="repository:a:pull,push""#)
    );
    assert_eq!(
        challenge("GET", "/v2/_catalog"),
        format!(r#"{base},scope="registry:catalog:*""#)
    );

    // skopeo runs the token flow: refused without credentials, allowed with them.
    let archive = busybox_archive(&dir);
    let o = skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{}/public/bb:v1", reg.addr),
    ]);
    assert!(!o.status.success(), "anonymous push succeeded");
    let digest = reg.push(&archive, "public/bb:v1", Some("berth:s3cret"));
    assert_eq!(
        reg.push(&archive, "private/bb:v1", Some("berth:s3cret")),
        digest
    );

    // The token endpoint itself.
    let token = |scopes: &[&str], creds: Option<&str>| -> Resp {
        let q: Vec<String> = scopes.iter().map(|s| format!("&scope={s}")).collect();
        let url = format!("http://{}/token?service=berth-test{}", ts.addr, q.concat());
        let extra: Vec<&str> = creds.map(|c| vec!["-u", c]).unwrap_or_default();
        http("GET", &url, &[], None, &extra)
    };
    let bearer = |r: &Resp| {
        let j = r.json();
        assert_eq!(j["token"], j["access_token"]);
        assert_eq!(j["expires_in"], 300);
        assert!(j["issued_at"].as_str().unwrap_or("").ends_with('Z'), "{j}");
        format!("Authorization: Bearer {}", j["token"].as_str().unwrap())
    };
    let anon_public = bearer(&token(&["repository:public/bb:pull,push"], None));
    let r = http(
        "GET",
        &reg.url("/v2/public/bb/manifests/v1"),
        &[&anon_public],
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sha256(&r.body), digest);
    // The anonymous token holds pull only: no push, nothing on private/.
    let r = http(
        "POST",
        &reg.url("/v2/public/bb/blobs/uploads/"),
        &[&anon_public],
        None,
        &[],
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains(r#"error="insufficient_scope""#));
    let anon_private = bearer(&token(&["repository:private/bb:pull"], None));
    let r = http(
        "GET",
        &reg.url("/v2/private/bb/manifests/v1"),
        &[&anon_private],
        None,
        &[],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        token(&["repository:x:pull"], Some("berth:wrong")).status,
        401
    );
    let user = bearer(&token(
        &["repository:private/bb:pull", "registry:catalog:*"],
        Some("berth:s3cret"),
    ));
    let r = http(
        "GET",
        &reg.url("/v2/private/bb/manifests/v1"),
        &[&user],
        None,
        &[],
    );
    assert_eq!(r.status, 200);
    let r = http("GET", &reg.url("/v2/_catalog"), &[&user], None, &[]);
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["private/bb", "public/bb"])
    );

    // Tokens made with openssl: a good one passes; forged, expired, for another service or
    // from another issuer are refused.
    let now = unix_now();
    let claims = |iss: &str, aud: &str, nbf: u64, exp: u64| {
        serde_json::json!({
            "iss": iss, "sub": "", "aud": aud, "nbf": nbf, "iat": nbf, "exp": exp,
            "access": [{"type": "repository", "name": "private/bb", "actions": ["pull"]}],
        })
    };
    let url = reg.url("/v2/private/bb/manifests/v1");
    let with = |jwt: String| {
        http(
            "GET",
            &url,
            &[&format!("Authorization: Bearer {jwt}")],
            None,
            &[],
        )
    };
    assert_eq!(
        with(rs256_jwt(
            &key,
            &claims("berth-ts", "berth-test", now - 10, now + 600)
        ))
        .status,
        200
    );
    for (what, jwt) in [
        (
            "forged",
            rs256_jwt(
                &other,
                &claims("berth-ts", "berth-test", now - 10, now + 600),
            ),
        ),
        (
            "expired",
            rs256_jwt(
                &key,
                &claims("berth-ts", "berth-test", now - 7200, now - 3600),
            ),
        ),
        (
            "not yet valid",
            rs256_jwt(
                &key,
                &claims("berth-ts", "berth-test", now + 3600, now + 7200),
            ),
        ),
        (
            "other service",
            rs256_jwt(&key, &claims("berth-ts", "elsewhere", now - 10, now + 600)),
        ),
        (
            "other issuer",
            rs256_jwt(&key, &claims("mallory", "berth-test", now - 10, now + 600)),
        ),
    ] {
        let r = with(jwt);
        assert_eq!(r.status, 401, "{what}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains(r#"error="invalid_token""#),
            "{what}"
        );
    }

    // berthd: anonymous pull of an allowed repository, a clear refusal for a private one.
    let d = Daemon::start_with_config(&format!(r#"{{"insecure-registries": ["{}"]}}"#, reg.addr));
    let out = d.ok(&["pull", &format!("{}/public/bb:v1", reg.addr)]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let o = d.berth(&["pull", &format!("{}/private/bb:v1", reg.addr)]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("pull access denied"), "{err}");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            &format!("{}/public/bb:v1", reg.addr),
            "echo",
            "tokened"
        ]),
        "tokened"
    );

    // A pull-through cache in front of the token-auth registry answers its bearer challenges.
    let proxy = Reg::start(&[
        "--upstream",
        &format!("http://{}", reg.addr),
        "--upstream-username",
        "berth",
        "--upstream-password",
        "s3cret",
    ]);
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/private/bb:v1", proxy.addr),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&o.stdout), digest);
}

#[test]
fn pull_through_cache() {
    let mut upstream = Reg::start(&[]);
    let pw = htpasswd_file(&upstream.dir);
    upstream.spawn(&["--htpasswd", pw.to_str().unwrap()]);
    let archive = busybox_archive(&upstream.dir);
    let digest = upstream.push(&archive, "lib/bb:v1", Some("berth:s3cret"));

    let proxy = Reg::start(&[
        "--upstream",
        &format!("http://{}", upstream.addr),
        "--upstream-username",
        "berth",
        "--upstream-password",
        "s3cret",
    ]);
    let image = format!("{}/lib/bb:v1", proxy.addr);
    let inspect = |reference: &str| {
        let o = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        sha256(&o.stdout)
    };
    assert_eq!(inspect(&image), digest);
    let copy_out = |to: &str| {
        let o = skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("oci:{}:v1", proxy.dir.join(to).display()),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    copy_out("oci1");
    let d = Daemon::start_with_config(&format!(r#"{{"insecure-registries": ["{}"]}}"#, proxy.addr));
    let out = d.ok(&["pull", &image]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    let r = get(&proxy.url("/v2/lib/bb/tags/list"));
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
    // Writes are refused, as in distribution's proxy mode.
    let r = http(
        "POST",
        &proxy.url("/v2/lib/bb/blobs/uploads/"),
        &[],
        None,
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    let r = http(
        "GET",
        &proxy.url("/v2/lib/nothing/manifests/v1"),
        &[],
        None,
        &[],
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );

    // With the upstream gone, everything pulled before comes from the cache.
    upstream.stop();
    assert_eq!(inspect(&image), digest);
    assert_eq!(inspect(&format!("{}/lib/bb@{digest}", proxy.addr)), digest);
    copy_out("oci2");
    let d2 =
        Daemon::start_with_config(&format!(r#"{{"insecure-registries": ["{}"]}}"#, proxy.addr));
    let out = d2.ok(&["pull", &image]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(d2.ok(&["run", "--rm", &image, "echo", "cached"]), "cached");
    let r = get(&proxy.url("/v2/lib/bb/tags/list"));
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
    // What was never pulled: the upstream's failure, not a made-up "unknown".
    let r = http(
        "GET",
        &proxy.url("/v2/lib/other/manifests/v1"),
        &[],
        None,
        &[],
    );
    assert_eq!(r.status, 502, "{}", r.text());
}

/// daemon.json `registry-mirrors` apply to any registry: a pull of `<origin>/x/y` is
/// served by the mirror (here a berth pull-through cache) even with the origin gone.
#[test]
fn registry_mirrors_apply_to_any_registry() {
    let mut origin = Reg::start(&[]);
    let archive = busybox_archive(&origin.dir);
    let digest = origin.push(&archive, "team/app:v1", None);
    let mirror = Reg::start(&["--upstream", &format!("http://{}", origin.addr)]);
    // Warm the mirror, then take the origin away.
    let o = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/app:v1", mirror.addr),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d0 = Daemon::start_with_config(&format!(
        r#"{{"registry-mirrors": ["http://{}"]}}"#,
        mirror.addr
    ));
    d0.ok(&["pull", &format!("{}/team/app:v1", mirror.addr)]);
    origin.stop();
    let d = Daemon::start_with_config(&format!(
        r#"{{"registry-mirrors": ["http://{}"], "max-concurrent-uploads": 2}}"#,
        mirror.addr
    ));
    let name = format!("{}/team/app:v1", origin.addr);
    let out = d.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(
        d.ok(&["run", "--rm", &name, "echo", "via-mirror"]),
        "via-mirror"
    );
    // Without a mirror the origin's absence shows.
    let d2 = Daemon::start();
    assert!(!d2.berth(&["pull", &name]).status.success());
}

/// Pulls of the same image with its layer uncompressed, gzip and zstd (OCI media types),
/// each pushed by hand to the berth registry; berthd runs all three.
#[test]
fn pull_uncompressed_gzip_and_zstd_layers() {
    let reg = Reg::start(&[]);
    let archive = busybox_archive(&reg.dir);
    // The layer tar and config out of the docker-save archive.
    let mut files = std::collections::HashMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(name, data);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = files[manifest[0]["Config"].as_str().unwrap()].clone();
    let layer = files[manifest[0]["Layers"][0].as_str().unwrap()].clone();
    let compress = |prog: &str| -> Vec<u8> {
        let mut c = Command::new(prog)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let data = layer.clone();
        let t = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
        let out = c.wait_with_output().unwrap();
        t.join().unwrap();
        out.stdout
    };
    let mut variants = vec![
        (
            "plain",
            "application/vnd.oci.image.layer.v1.tar",
            layer.clone(),
        ),
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            compress("gzip"),
        ),
    ];
    if Command::new("zstd").arg("--version").output().is_ok() {
        variants.push((
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            compress("zstd"),
        ));
    }
    let d = Daemon::start();
    for (tag, media_type, blob) in &variants {
        put_oci_image(&reg, "multi/bb", tag, &config, blob, media_type);
        let name = format!("{}/multi/bb:{tag}", reg.addr);
        d.ok(&["pull", &name]);
        assert_eq!(d.ok(&["run", "--rm", &name, "echo", tag]), *tag);
        // Removed, so the next variant downloads and unpacks its own blob.
        d.ok(&["rmi", &name]);
    }
}

/// A zstd "bomb" (100 MiB of zeros in a few KiB) is refused while it unpacks, and leaves
/// no image, layer or blob behind; the same content gzip-compressed (deflate cannot go past
/// ~1032:1) is a normal layer.
#[test]
fn decompression_bomb_refused() {
    let reg = Reg::start(&[]);
    let dir = reg.dir.join("bomb");
    std::fs::create_dir_all(&dir).unwrap();
    // A layer tar holding one 100 MiB file of zeros.
    let layer_path = dir.join("layer.tar");
    {
        let f = std::fs::File::create(&layer_path).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(100 << 20);
        b.append_data(
            &mut h,
            "zeros",
            std::io::Read::take(std::io::repeat(0), 100 << 20),
        )
        .unwrap();
        b.finish().unwrap();
    }
    let diff_id = {
        let o = Command::new("sha256sum").arg(&layer_path).output().unwrap();
        format!("sha256:{}", stdout(&o).split_whitespace().next().unwrap())
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string()
    .into_bytes();
    let d = Daemon::start();
    for (tag, prog, media_type) in [
        (
            "zstd",
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            "gzip",
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
    ] {
        let o = Command::new(prog)
            .args(["-c", "-9"])
            .arg(&layer_path)
            .output()
            .unwrap();
        assert!(o.status.success());
        put_oci_image(&reg, "bomb/x", tag, &config, &o.stdout, media_type);
        let name = format!("{}/bomb/x:{tag}", reg.addr);
        let o = d.berth(&["pull", &name]);
        if tag == "zstd" {
            assert!(!o.status.success(), "{}", stdout(&o));
            assert!(stderr(&o).contains("decompression bomb"), "{}", stderr(&o));
            assert!(!d.berth(&["image", "inspect", &name]).status.success());
            let snaps = std::fs::read_dir(d.root.join("snapshots"))
                .map(|r| r.flatten().filter(|e| e.file_name() != "empty").count())
                .unwrap_or(0);
            assert_eq!(snaps, 0, "a refused layer left a snapshot");
        } else {
            assert!(o.status.success(), "{}", stderr(&o));
        }
    }
}
