//! `cp` and the archive API end to end: a tree with files, a symlink, an empty directory
//! and a 1 MiB random file round-trips host → container → host byte for byte (berth and
//! the stock docker CLI), to and from named volumes, stopped containers, through
//! container symlinks, `-` tar streams, and hostile input (missing paths, `../` entries,
//! container symlinks to host paths) that must leave the host untouched.

use berth_tests::{stderr, stdout, Daemon};
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

fn start() -> Daemon {
    let d = Daemon::start();
    d.busybox();
    d
}

fn have_docker() -> bool {
    std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_ok()
}

/// Deterministic pseudo-random bytes (xorshift), no dependency needed.
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The test tree: files with different modes, a nested directory, a relative symlink,
/// an empty directory and a 1 MiB random file.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("a.txt"), "hello\n").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::write(root.join("sub/secret"), "s3cret").unwrap();
    std::fs::write(root.join("sub/deeper/big.bin"), random_bytes(1 << 20, 42)).unwrap();
    symlink("sub/secret", root.join("link")).unwrap();
    for (p, m) in [
        ("a.txt", 0o640),
        ("run.sh", 0o755),
        ("sub/secret", 0o600),
        ("sub", 0o750),
        ("empty", 0o700),
        ("", 0o755),
    ] {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap();
    }
}

/// Every path below `root` with its kind, permission bits and content (or link target).
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, (char, u32, Vec<u8>)>) {
        let p = root.join(rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let key = rel.display().to_string();
        let mode = m.mode() & 0o7777;
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&p).unwrap();
            out.insert(key, ('l', 0, t.to_string_lossy().as_bytes().to_vec()));
        } else if m.is_dir() {
            out.insert(key, ('d', mode, Vec::new()));
            let mut kids: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            kids.sort();
            for k in kids {
                walk(root, &rel.join(k), out);
            }
        } else {
            out.insert(key, ('f', mode, std::fs::read(&p).unwrap()));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    assert_eq!(
        sa.keys().collect::<Vec<_>>(),
        sb.keys().collect::<Vec<_>>(),
        "{} vs {}",
        a.display(),
        b.display()
    );
    for (k, va) in &sa {
        let vb = &sb[k];
        assert_eq!(
            (va.0, va.1),
            (vb.0, vb.1),
            "kind/mode of {k:?} ({} vs {})",
            a.display(),
            b.display()
        );
        assert!(va.2 == vb.2, "content of {k:?} differs");
    }
}

fn failed(o: &std::process::Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure: {}{}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

fn host_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        // Raw names: the tar crate would refuse "../" itself.
        let n = &mut h.as_old_mut().name;
        n[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn tar_names(data: &[u8]) -> Vec<String> {
    tar::Archive::new(data)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

#[test]
fn round_trip_and_docker_naming_rules() {
    let d = start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    d.ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]);
    let s = src.to_str().unwrap();

    // A directory to an existing directory goes inside it.
    d.ok(&["cp", s, "c1:/tmp"]);
    assert_eq!(d.ok(&["exec", "c1", "cat", "/tmp/src/a.txt"]), "hello");
    assert_eq!(
        d.ok(&[
            "exec",
            "c1",
            "stat",
            "-c",
            "%a %s",
            "/tmp/src/sub/deeper/big.bin"
        ]),
        "644 1048576"
    );
    assert_eq!(
        d.ok(&["exec", "c1", "readlink", "/tmp/src/link"]),
        "sub/secret"
    );
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    d.ok(&["cp", "c1:/tmp/src", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));

    // To a new path: renamed. "DIR/." copies the contents.
    d.ok(&["cp", s, "c1:/tmp/renamed"]);
    d.ok(&["cp", &format!("{s}/."), "c1:/tmp/src"]);
    let back = tmp.path().join("back");
    d.ok(&["cp", "c1:/tmp/renamed", back.to_str().unwrap()]);
    assert_same_tree(&src, &back);
    let contents = tmp.path().join("contents");
    std::fs::create_dir(&contents).unwrap();
    d.ok(&["cp", "c1:/tmp/renamed/.", contents.to_str().unwrap()]);
    assert_same_tree(&src, &contents);

    // Files: into a directory, to a new name, over an existing file.
    let a = src.join("a.txt");
    d.ok(&["cp", a.to_str().unwrap(), "c1:/tmp/"]);
    d.ok(&["cp", a.to_str().unwrap(), "c1:/tmp/b.txt"]);
    d.ok(&["cp", src.join("run.sh").to_str().unwrap(), "c1:/tmp/b.txt"]);
    assert_eq!(d.ok(&["exec", "c1", "cat", "/tmp/a.txt"]), "hello");
    assert_eq!(
        d.ok(&["exec", "c1", "stat", "-c", "%a", "/tmp/b.txt"]),
        "755"
    );
    let f = tmp.path().join("f.txt");
    d.ok(&["cp", "c1:/tmp/a.txt", f.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hello\n");
    assert_eq!(
        std::fs::metadata(&f).unwrap().mode() & 0o777,
        0o640,
        "mode kept"
    );

    // docker's errors.
    let o = d.berth(&["cp", "c1:/nope", out.to_str().unwrap()]);
    assert!(
        failed(&o)
            .contains("Error response from daemon: Could not find the file /nope in container c1"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["cp", a.to_str().unwrap(), "c1:/nope/dir/"]);
    assert!(failed(&o).contains("no such directory"), "{}", stderr(&o));
    let o = d.berth(&["cp", a.to_str().unwrap(), "c1:/nope/x"]);
    assert!(
        failed(&o).contains("Could not find the file /nope in container c1"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["cp", s, "c1:/tmp/a.txt"]);
    assert!(
        failed(&o).contains("cannot copy directory"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["cp", "c1:/tmp/a.txt", "/nonexistent-dir/x"]);
    assert!(
        failed(&o).contains("invalid output path: directory \"/nonexistent-dir\" does not exist"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["cp", "nosuch:/x", out.to_str().unwrap()]);
    assert!(
        failed(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );

    // The API directly: HEAD's stat header.
    let o = std::process::Command::new("curl")
        .args([
            "-sSI",
            "--unix-socket",
            d.sock.to_str().unwrap(),
            "http://x/v1.47/containers/c1/archive?path=/tmp/src/link",
        ])
        .output();
    if let Ok(o) = o {
        let head = stdout(&o);
        let line = head
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with("x-docker-container-path-stat")
            })
            .unwrap_or_else(|| panic!("no stat header: {head}"));
        let b64 = line.split_once(':').unwrap().1.trim();
        let json = std::process::Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b64.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["name"], "link");
        assert_eq!(v["linkTarget"], "/tmp/src/sub/secret");
        assert_eq!(v["mode"].as_u64().unwrap() & (1 << 27), 1 << 27, "{v}");
    }
}

#[test]
fn tar_streams_volumes_and_stopped_containers() {
    let d = start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let s = src.to_str().unwrap();

    // `-`: a tar on stdout, and a tar from stdin into a directory.
    d.ok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]);
    d.ok(&["cp", s, "c1:/tmp"]);
    let o = d.berth(&["cp", "c1:/tmp/src/sub", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        tar_names(&o.stdout),
        ["sub/", "sub/deeper/", "sub/deeper/big.bin", "sub/secret"]
    );
    let t = tar_of(&[("streamed/x", b"from stdin")]);
    let o = d.berth_stdin(&["cp", "-", "c1:/tmp"], Some(&t));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        d.ok(&["exec", "c1", "cat", "/tmp/streamed/x"]),
        "from stdin"
    );
    let o = d.berth_stdin(&["cp", "-", "c1:/tmp/streamed/x"], Some(&t));
    assert!(
        failed(&o).contains("destination \"c1:/tmp/streamed/x\" must be a directory"),
        "{}",
        stderr(&o)
    );

    // A named volume: cp writes to and reads from the volume's own directory.
    d.ok(&["volume", "create", "v1"]);
    d.ok(&[
        "run", "-d", "--name", "cv", "-v", "v1:/data", "busybox", "sleep", "1000",
    ]);
    d.ok(&["cp", s, "cv:/data/"]);
    let vdata = d.root.join("volumes/v1/_data");
    assert_same_tree(&src, &vdata.join("src"));
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "v1:/v",
            "busybox",
            "cat",
            "/v/src/a.txt"
        ]),
        "hello"
    );
    let vout = tmp.path().join("vout");
    d.ok(&["cp", "cv:/data/src", vout.to_str().unwrap()]);
    assert_same_tree(&src, &vout);

    // A stopped container: its rootfs is mounted for the copy and unmounted after; a
    // created one with a volume it never mounted reaches the volume too.
    d.ok(&[
        "run",
        "--name",
        "stopped",
        "busybox",
        "sh",
        "-c",
        "echo was here > /x",
    ]);
    let sout = tmp.path().join("x");
    d.ok(&["cp", "stopped:/x", sout.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&sout).unwrap(), "was here\n");
    d.ok(&["cp", s, "stopped:/"]);
    let sback = tmp.path().join("sback");
    d.ok(&["cp", "stopped:/src", sback.to_str().unwrap()]);
    assert_same_tree(&src, &sback);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "stopped"]);
    assert!(!host_mounted(
        &d.root.join("containers").join(&id).join("rootfs")
    ));
    d.ok(&["start", "stopped"]);
    d.eventually("stopped exits", || {
        d.ok(&["inspect", "-f", "{{.State.Running}}", "stopped"]) == "false"
    });
    d.ok(&[
        "create", "--name", "created", "-v", "v1:/data", "busybox", "true",
    ]);
    d.ok(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        "created:/data/from-created",
    ]);
    assert_eq!(
        std::fs::read_to_string(vdata.join("from-created")).unwrap(),
        "hello\n"
    );

    // Read-only: the rootfs of a --read-only container, a :ro volume.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "ro",
        "--read-only",
        "-v",
        "v1:/data",
        "-v",
        "v1:/rodata:ro",
        "busybox",
        "sleep",
        "1000",
    ]);
    let a = src.join("a.txt");
    let o = d.berth(&["cp", a.to_str().unwrap(), "ro:/tmp/"]);
    assert!(
        failed(&o).contains("container rootfs is marked read-only"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["cp", a.to_str().unwrap(), "ro:/rodata/"]);
    assert!(
        failed(&o).contains("mounted volume is marked read-only"),
        "{}",
        stderr(&o)
    );
    d.ok(&["cp", a.to_str().unwrap(), "ro:/data/into-ro-ctr"]);
    assert!(vdata.join("into-ro-ctr").exists());
}

#[test]
fn container_symlinks_and_hostile_input() {
    let d = start();
    let tmp = tempfile::tempdir().unwrap();
    // A host directory a hostile container points at.
    let host = tmp.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("sentinel"), "host data").unwrap();
    let h = host.to_str().unwrap();
    let script = format!(
        "mkdir -p /tmp/real && echo inside > /tmp/real/f && ln -s /tmp/real /linkdir && ln -s {h} /hostlink && ln -s {h}/sentinel /hostfile && sleep 1000"
    );
    d.ok(&["run", "-d", "--name", "c1", "busybox", "sh", "-c", &script]);
    d.eventually("symlinks made", || {
        d.berth(&["exec", "c1", "test", "-L", "/hostfile"])
            .status
            .success()
    });
    let host_untouched = || {
        let names: Vec<_> = std::fs::read_dir(&host)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sentinel"], "something was written to the host");
        assert_eq!(
            std::fs::read_to_string(host.join("sentinel")).unwrap(),
            "host data"
        );
    };
    let file = tmp.path().join("file");
    std::fs::write(&file, "payload").unwrap();
    let f = file.to_str().unwrap();

    // Through a symlink in the container: into the directory it names.
    d.ok(&["cp", f, "c1:/linkdir/"]);
    assert_eq!(d.ok(&["exec", "c1", "cat", "/tmp/real/file"]), "payload");
    // From it: the link itself, its directory with "/", its target with -L.
    let l1 = tmp.path().join("l1");
    d.ok(&["cp", "c1:/linkdir", l1.to_str().unwrap()]);
    assert_eq!(std::fs::read_link(&l1).unwrap(), Path::new("/tmp/real"));
    let l2 = tmp.path().join("l2");
    d.ok(&["cp", "c1:/linkdir/", l2.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(l2.join("f")).unwrap(), "inside\n");
    let l3 = tmp.path().join("l3");
    d.ok(&["cp", "-L", "c1:/linkdir", l3.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(l3.join("file")).unwrap(), "payload");

    // Symlinks to host paths resolve inside the container: nothing is read or written
    // on the host.
    let o = d.berth(&[
        "cp",
        "c1:/hostlink/sentinel",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert!(
        failed(&o).contains("Could not find the file /hostlink/sentinel in container c1"),
        "{}",
        stderr(&o)
    );
    failed(&d.berth(&[
        "cp",
        "-L",
        "c1:/hostfile",
        tmp.path().join("y").to_str().unwrap(),
    ]));
    failed(&d.berth(&[
        "cp",
        "c1:/hostlink/",
        tmp.path().join("z").to_str().unwrap(),
    ]));
    failed(&d.berth(&["cp", f, "c1:/hostlink/"]));
    failed(&d.berth(&["cp", f, "c1:/hostfile"]));
    host_untouched();
    // Once the container has that path itself, the copies go there.
    d.ok(&["exec", "c1", "mkdir", "-p", h]);
    d.ok(&["cp", f, "c1:/hostlink/"]);
    d.ok(&["cp", f, "c1:/hostfile"]);
    host_untouched();
    assert_eq!(d.ok(&["exec", "c1", "cat", "/hostfile"]), "payload");
    assert_eq!(
        d.ok(&["exec", "c1", "cat", &format!("{h}/file")]),
        "payload"
    );
    // A tar whose entries go through the container's symlinks lands in the container.
    let t = tar_of(&[("hostlink/pwned", b"x"), ("linkdir/ok", b"fine")]);
    let o = d.berth_stdin(&["cp", "-", "c1:/"], Some(&t));
    assert!(o.status.success(), "{}", stderr(&o));
    host_untouched();
    assert_eq!(d.ok(&["exec", "c1", "cat", &format!("{h}/pwned")]), "x");
    assert_eq!(d.ok(&["exec", "c1", "cat", "/tmp/real/ok"]), "fine");

    // `../` entries are refused; nothing lands next to the extraction point's parent.
    let t = tar_of(&[("../escape", b"x"), ("a/../../escape2", b"x")]);
    let o = d.berth_stdin(&["cp", "-", "c1:/tmp/real"], Some(&t));
    let e = failed(&o);
    assert!(e.contains("outside of"), "{e}");
    for p in ["/tmp/escape", "/tmp/escape2", "/escape"] {
        assert!(
            !d.berth(&["exec", "c1", "test", "-e", p]).status.success(),
            "{p}"
        );
    }
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "c1"]);
    let cdir = d.root.join("containers").join(&id);
    assert!(!cdir.join("escape").exists() && !d.root.join("escape").exists());
    host_untouched();
}

#[test]
fn docker_cli_round_trip() {
    if !have_docker() {
        eprintln!("SKIP: docker CLI not installed");
        return;
    }
    let d = start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let s = src.to_str().unwrap();
    d.dok(&["run", "-d", "--name", "c1", "busybox", "sleep", "1000"]);
    d.dok(&["cp", s, "c1:/tmp"]);
    assert_eq!(d.dok(&["exec", "c1", "cat", "/tmp/src/a.txt"]), "hello");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    d.dok(&["cp", "c1:/tmp/src", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
    // Rename both ways, contents with "/.", and a file.
    d.dok(&["cp", s, "c1:/tmp/renamed"]);
    let back = tmp.path().join("back");
    d.dok(&["cp", "c1:/tmp/renamed", back.to_str().unwrap()]);
    assert_same_tree(&src, &back);
    let contents = tmp.path().join("contents");
    d.dok(&["cp", "c1:/tmp/renamed/.", contents.to_str().unwrap()]);
    assert_same_tree(&src, &contents);
    let f = tmp.path().join("f");
    d.dok(&["cp", "c1:/tmp/src/sub/deeper/big.bin", f.to_str().unwrap()]);
    assert!(std::fs::read(&f).unwrap() == random_bytes(1 << 20, 42));
    // Tar streams.
    let o = d.docker(&["cp", "c1:/tmp/src/sub", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(tar_names(&o.stdout).contains(&"sub/secret".to_string()));
    let t = tar_of(&[("streamed", b"via docker")]);
    let o = d.docker_stdin(&["cp", "-", "c1:/tmp"], Some(&t));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.dok(&["exec", "c1", "cat", "/tmp/streamed"]), "via docker");
    // A volume and a stopped container.
    d.dok(&["run", "--name", "vc", "-v", "dv:/data", "busybox", "true"]);
    d.dok(&["cp", s, "vc:/data/"]);
    assert_same_tree(&src, &d.root.join("volumes/dv/_data/src"));
    // Errors as docker prints them.
    let o = d.docker(&["cp", "c1:/nope", out.to_str().unwrap()]);
    assert!(
        failed(&o)
            .contains("Error response from daemon: Could not find the file /nope in container c1"),
        "{}",
        stderr(&o)
    );
}
