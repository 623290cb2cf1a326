//! Volumes and mounts end to end: named and anonymous volumes, copy-up from the image,
//! binds, tmpfs, --volumes-from, the volume commands and their filters, docker's errors on
//! bad input (with nothing left behind), symlinks in an image that point at host paths,
//! and the main scenario through the stock docker CLI.

use berth_tests::{stderr, stdout, Daemon};
use std::path::{Path, PathBuf};

fn start() -> Daemon {
    let d = Daemon::start();
    d.busybox();
    d
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(String::from)
        .filter(|l| !l.is_empty())
        .collect()
}

fn host_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.display().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

/// Runs a container that prepares the filesystem with `script`, and commits it as `tag`
/// (with docker `--change` lines).
fn commit_image(d: &Daemon, tag: &str, script: &str, changes: &[&str]) {
    let name = format!("mk-{}", tag.replace([':', '/'], "-"));
    d.ok(&["run", "--name", &name, "busybox", "sh", "-c", script]);
    let mut args = vec!["commit"];
    for c in changes {
        args.push("-c");
        args.push(c);
    }
    args.push(&name);
    args.push(tag);
    d.ok(&args);
    d.ok(&["rm", &name]);
}

#[test]
fn named_volume_survives_and_copy_up() {
    let d = start();
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "data1:/data",
        "busybox",
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "data1:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "hello"
    );
    let mp = d.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data1"]);
    assert_eq!(
        Path::new(&mp),
        d.root.join("volumes/data1/_data"),
        "mountpoint"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&mp).join("f")).unwrap(),
        "hello\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&d.ok(&["volume", "inspect", "data1"])).unwrap();
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(v[0]["Labels"], serde_json::Value::Null, "{v}");

    // Copy-up: a new volume over an image path starts with the image's files (and the
    // directory's owner and mode); a volume with content is left alone.
    commit_image(
        &d,
        "seeded",
        "mkdir -p /data/sub && echo seeded > /data/seed && chown 1234:99 /data && chmod 750 /data",
        &[],
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "newvol:/data",
            "seeded",
            "cat",
            "/data/seed"
        ]),
        "seeded"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "newvol:/data",
            "busybox",
            "stat",
            "-c",
            "%u:%g %a",
            "/data"
        ]),
        "1234:99 750"
    );
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "newvol:/data",
        "busybox",
        "sh",
        "-c",
        "echo changed > /data/seed",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "newvol:/data",
            "seeded",
            "cat",
            "/data/seed"
        ]),
        "changed",
        "copy-up into a volume that already has content"
    );
    // nocopy: nothing copied.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            "nc:/data:nocopy",
            "seeded",
            "ls",
            "/data"
        ]),
        ""
    );
    // An image VOLUME gets an anonymous volume filled from the image.
    commit_image(
        &d,
        "withvol",
        "mkdir -p /data && echo fromimage > /data/x",
        &["VOLUME /data"],
    );
    let before = lines(&d.ok(&["volume", "ls", "-q"])).len();
    d.ok(&["run", "--name", "wv", "withvol", "cat", "/data/x"]);
    assert_eq!(d.ok(&["logs", "wv"]), "fromimage");
    let vols = lines(&d.ok(&["volume", "ls", "-q"]));
    assert_eq!(vols.len(), before + 1);
    let m: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", "wv"])).unwrap();
    assert_eq!(m[0]["Type"], "volume");
    assert_eq!(m[0]["Destination"], "/data");
    assert_eq!(m[0]["Driver"], "local");
    assert_eq!(m[0]["RW"], true);
    assert_eq!(m[0]["Name"].as_str().unwrap().len(), 64);
    let anon = m[0]["Name"].as_str().unwrap().to_string();
    let labels = d.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon]);
    assert_eq!(labels, r#"{"com.docker.volume.anonymous":""}"#);
    // `rm -v` removes the anonymous volume, plain `rm` would keep it.
    d.ok(&["rm", "-v", "wv"]);
    assert!(!lines(&d.ok(&["volume", "ls", "-q"])).contains(&anon));
}

#[test]
fn anonymous_volumes_rm_v_and_prune() {
    let d = start();
    d.ok(&["create", "--name", "a1", "-v", "/x", "busybox", "true"]);
    let anon1 = d.field("a1", "{{(index .Mounts 0).Name}}");
    assert_eq!(d.field("a1", "{{(index .Mounts 0).Destination}}"), "/x");
    assert!(lines(&d.ok(&["volume", "ls", "-q"])).contains(&anon1));
    d.ok(&["rm", "-v", "a1"]);
    assert!(!lines(&d.ok(&["volume", "ls", "-q"])).contains(&anon1));

    d.ok(&[
        "create",
        "--name",
        "a2",
        "-v",
        "/y",
        "-v",
        "named2:/n",
        "busybox",
        "true",
    ]);
    let anon2 = d.field(
        "a2",
        "{{range .Mounts}}{{if eq .Destination \"/y\"}}{{.Name}}{{end}}{{end}}",
    );
    d.ok(&["rm", "a2"]);
    assert!(lines(&d.ok(&["volume", "ls", "-q"])).contains(&anon2));

    // --rm takes anonymous volumes along, never named ones.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "/z",
        "-v",
        "keepme:/k",
        "busybox",
        "true",
    ]);
    let all = lines(&d.ok(&["volume", "ls", "-q"]));
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.contains(&"keepme".to_string()));

    // Default prune: unused anonymous volumes only.
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(out.contains(&anon2), "{out}");
    assert!(out.contains("Total reclaimed space"), "{out}");
    let mut left = lines(&d.ok(&["volume", "ls", "-q"]));
    left.sort();
    assert_eq!(left, vec!["keepme", "named2"]);
    // A volume in use survives prune --all.
    d.ok(&[
        "create",
        "--name",
        "user",
        "-v",
        "keepme:/k",
        "busybox",
        "true",
    ]);
    d.ok(&["volume", "prune", "-f", "--all"]);
    assert_eq!(lines(&d.ok(&["volume", "ls", "-q"])), vec!["keepme"]);
}

#[test]
fn binds_tmpfs_and_read_only() {
    let d = start();
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("src");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("file"), "from host").unwrap();
    let dirs = dir.display().to_string();

    // --mount bind, read-only: readable, not writable.
    let mnt = format!("type=bind,src={dirs},dst=/b,readonly");
    assert_eq!(
        d.ok(&["run", "--rm", "--mount", &mnt, "busybox", "cat", "/b/file"]),
        "from host"
    );
    let o = d.berth(&["run", "--rm", "--mount", &mnt, "busybox", "touch", "/b/new"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("new").exists());

    // -v bind, read-write: writes land on the host.
    d.ok(&[
        "run",
        "--name",
        "bw",
        "-v",
        &format!("{dirs}:/b2"),
        "busybox",
        "sh",
        "-c",
        "echo back > /b2/out",
    ]);
    assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "back\n");
    let m: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", "bw"])).unwrap();
    assert_eq!(
        m,
        serde_json::json!([{"Type": "bind", "Source": dirs, "Destination": "/b2", "Mode": "",
                            "RW": true, "Propagation": "rprivate"}])
    );
    // -v with a missing host directory creates it, as docker does.
    let made = host.path().join("made/here");
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/m", made.display()),
        "busybox",
        "true",
    ]);
    assert!(made.is_dir());

    // --tmpfs and --mount type=tmpfs.
    let mounts = d.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m",
        "--mount",
        "type=tmpfs,dst=/t2,tmpfs-size=2m",
        "busybox",
        "cat",
        "/proc/mounts",
    ]);
    let t = mounts.lines().find(|l| l.contains(" /t ")).unwrap_or("");
    assert!(
        t.starts_with("tmpfs /t tmpfs") && t.contains("size=1024k") && t.contains("noexec"),
        "{mounts}"
    );
    let t2 = mounts.lines().find(|l| l.contains(" /t2 ")).unwrap_or("");
    assert!(t2.contains("size=2048k"), "{mounts}");

    // A read-only container still writes to its volumes and tmpfs.
    d.ok(&[
        "run",
        "--rm",
        "--read-only",
        "-v",
        "rwvol:/data",
        "--tmpfs",
        "/run",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f && echo y > /run/f && ! touch /etc/nope 2>/dev/null",
    ]);

    // A user mount at an etc file's place replaces it.
    let hosts = host.path().join("hosts");
    std::fs::write(&hosts, "10.9.9.9 custom\n").unwrap();
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/etc/hosts:ro", hosts.display()),
            "busybox",
            "cat",
            "/etc/hosts",
        ]),
        "10.9.9.9 custom"
    );
}

/// Makes a directory a shared mount of its own (this host's `/` is private), undone on drop.
struct SharedMount(PathBuf);

impl SharedMount {
    fn new(dir: &Path) -> SharedMount {
        use nix::mount::{mount, MsFlags};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
        let g = SharedMount(dir.to_path_buf());
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        g
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        // Lazy: takes everything mounted below along.
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn bind_propagation() {
    let d = start();
    let host = tempfile::tempdir().unwrap();
    let dir = host.path().join("src");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let dirs = dir.display().to_string();
    let prop = |spec: &str| -> String {
        let info = d.ok(&[
            "run",
            "--rm",
            "-v",
            spec,
            "busybox",
            "cat",
            "/proc/self/mountinfo",
        ]);
        info.lines()
            .find(|l| l.split(' ').nth(4) == Some("/p"))
            .unwrap_or_else(|| panic!("no /p in {info}"))
            .to_string()
    };
    // Default rprivate.
    let private = prop(&format!("{dirs}:/p"));
    assert!(
        !private.contains("shared:") && !private.contains("master:"),
        "{private}"
    );
    // Docker's checks: the source's mount must be shared (or slave, for slave binds).
    let o = d.berth(&[
        "run",
        "--rm",
        "-v",
        &format!("{dirs}:/p:rshared"),
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("is not a shared mount"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "-v",
        &format!("{dirs}:/p:rslave"),
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("is not a shared or slave mount"),
        "{}",
        stderr(&o)
    );

    let _shared = SharedMount::new(&dir);
    let shared = prop(&format!("{dirs}:/p:rshared"));
    assert!(shared.contains("shared:"), "{shared}");
    let slave = prop(&format!("{dirs}:/p:rslave"));
    assert!(slave.contains("master:"), "{slave}");
    // rshared: a mount made in the container shows on the host...
    d.ok(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &format!("{dirs}:/p:rshared"),
        "busybox",
        "mount",
        "-t",
        "tmpfs",
        "none",
        "/p/in",
    ]);
    assert!(host_mounted(&dir.join("in")), "not propagated to the host");
    let _ = nix::mount::umount2(&dir.join("in"), nix::mount::MntFlags::MNT_DETACH);
    // ...and rslave: a mount made on the host shows in the running container, read-only
    // binds stay read-only.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "sl",
        "-v",
        &format!("{dirs}:/p:ro,rslave"),
        "busybox",
        "sleep",
        "1000",
    ]);
    nix::mount::mount(
        Some("tmpfs"),
        &dir.join("out"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let info = d.ok(&["exec", "sl", "cat", "/proc/self/mountinfo"]);
    assert!(
        info.lines().any(|l| l.split(' ').nth(4) == Some("/p/out")),
        "{info}"
    );
    let o = d.berth(&["exec", "sl", "touch", "/p/x"]);
    assert!(!o.status.success(), "read-only bind was writable");
    let _ = nix::mount::umount2(&dir.join("out"), nix::mount::MntFlags::MNT_DETACH);
    d.ok(&["rm", "-f", "sl"]);
}

#[test]
fn volumes_from() {
    let d = start();
    d.ok(&[
        "create",
        "--name",
        "store",
        "-v",
        "shared:/data",
        "-v",
        "/anon",
        "busybox",
        "true",
    ]);
    d.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "store",
        "busybox",
        "sh",
        "-c",
        "echo one > /data/f && echo two > /anon/g",
    ]);
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "store:ro",
            "busybox",
            "cat",
            "/data/f",
            "/anon/g"
        ]),
        "one\ntwo"
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--volumes-from",
        "store:ro",
        "busybox",
        "touch",
        "/data/new",
    ]);
    assert!(!o.status.success(), "read-only volumes-from");
    let o = d.berth(&["run", "--rm", "--volumes-from", "nosuch", "busybox", "true"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn volume_commands_and_filters() {
    let d = start();
    assert_eq!(
        d.ok(&["volume", "create", "--label", "env=prod", "--label", "tier", "v1"]),
        "v1"
    );
    d.ok(&["volume", "create", "v2"]);
    // Creating an existing volume is fine and changes nothing.
    d.ok(&["volume", "create", "v2"]);
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["volume", "inspect", "v1"])).unwrap();
    assert_eq!(
        v[0]["Labels"],
        serde_json::json!({"env": "prod", "tier": ""})
    );
    assert_eq!(v[0]["Options"], serde_json::json!({}));
    assert!(v[0]["CreatedAt"].as_str().unwrap().ends_with('Z'));
    let q = |f: &[&str]| -> Vec<String> {
        let mut args = vec!["volume", "ls", "-q"];
        for x in f {
            args.push("--filter");
            args.push(x);
        }
        lines(&d.ok(&args))
    };
    assert_eq!(q(&["label=env=prod"]), vec!["v1"]);
    assert_eq!(q(&["label=tier"]), vec!["v1"]);
    assert_eq!(q(&["name=v2"]), vec!["v2"]);
    assert_eq!(q(&["name=^v"]), vec!["v1", "v2"]);
    assert_eq!(q(&["driver=local"]).len(), 2);
    d.ok(&[
        "create", "--name", "user1", "-v", "v2:/x", "busybox", "true",
    ]);
    assert_eq!(q(&["dangling=true"]), vec!["v1"]);
    assert_eq!(q(&["dangling=false"]), vec!["v2"]);
    let o = d.berth(&["volume", "ls", "--filter", "color=red"]);
    assert!(
        stderr(&o).contains("invalid filter 'color'"),
        "{}",
        stderr(&o)
    );
    let table = d.ok(&["volume", "ls"]);
    assert!(table.starts_with("DRIVER    VOLUME NAME"), "{table}");

    // In use: docker's 409 with the container's id; nothing removed.
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "user1"]);
    let o = d.berth(&["volume", "rm", "v2"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("remove v2: volume is in use - [{id}]")),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["volume", "rm", "-f", "v2"]);
    assert!(!o.status.success(), "force does not remove a volume in use");
    d.ok(&["rm", "user1"]);
    d.ok(&["volume", "rm", "v2"]);
    let o = d.berth(&["volume", "rm", "v2"]);
    assert!(stderr(&o).contains("no such volume"), "{}", stderr(&o));
    d.ok(&["volume", "rm", "-f", "v2"]);
    let o = d.berth(&["volume", "inspect", "nope"]);
    assert!(
        stderr(&o).contains("get nope: no such volume"),
        "{}",
        stderr(&o)
    );

    // A tmpfs-backed volume (docker's local driver options): mounted while in use.
    d.ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=1m",
        "tv",
    ]);
    let opts = d.ok(&["volume", "inspect", "-f", "{{json .Options}}", "tv"]);
    assert_eq!(opts, r#"{"device":"tmpfs","o":"size=1m","type":"tmpfs"}"#);
    let mounts = d.ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/t",
        "busybox",
        "sh",
        "-c",
        "echo x > /t/f; cat /proc/mounts",
    ]);
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("tmpfs /t tmpfs") && l.contains("size=1024k")),
        "{mounts}"
    );
    let data = d.root.join("volumes/tv/_data");
    d.eventually("the tmpfs volume to be unmounted", || !host_mounted(&data));
    // Volumes with options are never pruned.
    d.ok(&["volume", "prune", "-af"]);
    assert_eq!(q(&[]), vec!["tv"]);
    d.ok(&["volume", "rm", "tv"]);
    assert!(!data.exists());

    // A bind-backed volume: writes land in the device directory, which survives `volume rm`
    // (the volume is unmounted before its data path is deleted).
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("keep"), "k").unwrap();
    let dev = format!("device={}", host.path().display());
    d.ok(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        &dev,
        "--opt",
        "o=bind",
        "bv",
    ]);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "bvc",
        "-v",
        "bv:/b",
        "busybox",
        "sh",
        "-c",
        "cat /b/keep > /b/copy; sleep 1000",
    ]);
    d.eventually("the copy through the bind-backed volume", || {
        host.path().join("copy").exists()
    });
    let bdata = d.root.join("volumes/bv/_data");
    assert!(host_mounted(&bdata));
    d.ok(&["rm", "-f", "bvc"]);
    d.ok(&["volume", "rm", "bv"]);
    assert!(!host_mounted(&bdata));
    assert_eq!(
        std::fs::read_to_string(host.path().join("keep")).unwrap(),
        "k"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("copy")).unwrap(),
        "k"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let d = start();
    let host = tempfile::tempdir().unwrap();
    let missing = host.path().join("missing").display().to_string();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--mount".into(), format!("type=bind,src={missing},dst=/x")],
            format!("invalid mount config for type \"bind\": bind source path does not exist: {missing}"),
        ),
        (
            vec!["-v".into(), "a:b:c:d".into()],
            "invalid volume specification: 'a:b:c:d'".into(),
        ),
        (
            vec!["-v".into(), "/a:/b:ro:x".into()],
            "invalid spec: /a:/b:ro:x: too many colons".into(),
        ),
        (
            vec!["-v".into(), "vol:rel".into()],
            "invalid volume specification: 'vol:rel': invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute".into(),
        ),
        (
            vec!["--mount".into(), "type=nosuch,dst=/x".into()],
            "invalid mount config for type \"nosuch\": mount type unknown".into(),
        ),
        (
            vec!["-v".into(), "x$y:/x".into()],
            "includes invalid characters for a local volume name".into(),
        ),
        (
            vec!["-v".into(), "v1:/x".into(), "-v".into(), "v2:/x".into()],
            "Duplicate mount point: /x".into(),
        ),
        (
            vec!["--tmpfs".into(), "/t:bogus".into()],
            "invalid tmpfs option [\"bogus\"]".into(),
        ),
        (
            vec!["--volumes-from".into(), "nosuch".into()],
            "No such container: nosuch".into(),
        ),
    ];
    for (flags, want) in cases {
        let mut args: Vec<&str> = vec!["run", "--rm"];
        args.extend(flags.iter().map(|s| s.as_str()));
        args.extend(["-v", "shouldnotexist:/s", "-v", "/anon", "busybox", "true"]);
        let o = d.berth(&args);
        assert_eq!(o.status.code(), Some(125), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&want), "{flags:?}: {}", stderr(&o));
        assert_eq!(d.ok(&["ps", "-aq"]), "", "{flags:?} left a container");
        assert_eq!(d.ok(&["volume", "ls", "-q"]), "", "{flags:?} left a volume");
    }
    assert!(!Path::new(&missing).exists());
    let o = d.berth(&["volume", "create", "a"]);
    assert!(
        stderr(&o).contains(
            "volume name is too short, names should be at least two alphanumeric characters"
        ),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["volume", "create", "-o", "bogus=1", "vv"]);
    assert!(
        stderr(&o).contains("invalid option: \"bogus\""),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["volume", "create", "-d", "nfsplugin", "vv"]);
    assert!(!o.status.success());
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn symlinks_in_the_image_never_reach_the_host() {
    let d = start();
    // Host paths the image's symlinks point at.
    let host = tempfile::tempdir().unwrap();
    let target = host.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("canary"), "host secret").unwrap();
    let t = target.display().to_string();
    let target2 = host.path().join("target2");
    std::fs::create_dir(&target2).unwrap();
    let rel = format!("../../../../../../../../..{}", target2.display());
    commit_image(
        &d,
        "evil",
        &format!("ln -s {t} /evil && ln -s /etc /etclink && ln -s {rel} /rel"),
        &[],
    );
    // A volume over /evil: mounted inside the rootfs, copy-up copies nothing from the host.
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        "ev:/evil",
        "-v",
        "ev2:/rel",
        "-v",
        "et:/etclink",
        "evil",
        "sh",
        "-c",
        "ls /evil; echo written > /evil/new; echo r > /rel/new; ls /etclink",
    ]);
    assert!(!out.contains("canary"), "{out}");
    assert!(
        out.contains("passwd"),
        "the image's own /etc was copied up: {out}"
    );
    let names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["canary"], "the host directory was written to");
    assert_eq!(std::fs::read_dir(&target2).unwrap().count(), 0);
    assert!(!host_mounted(&target) && !host_mounted(&target2));
    assert_eq!(
        std::fs::read_to_string(d.root.join("volumes/ev2/_data/new")).unwrap(),
        "r\n"
    );
    let ev = d.root.join("volumes/ev/_data");
    assert_eq!(
        std::fs::read_to_string(ev.join("new")).unwrap(),
        "written\n"
    );
    assert!(!ev.join("canary").exists());
    let et = d.root.join("volumes/et/_data");
    assert!(et.join("passwd").exists());
    assert!(
        !et.join("os-release").exists(),
        "host /etc copied into the volume"
    );
    // A bind at /evil and a tmpfs at /rel land inside the container too.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("mine"), "ok").unwrap();
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/evil", src.path().display()),
        "--tmpfs",
        "/rel",
        "evil",
        "sh",
        "-c",
        "cat /evil/mine; touch /rel/x",
    ]);
    assert_eq!(out, "ok");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    assert!(!host_mounted(&target));
}

#[test]
fn docker_cli_volumes() {
    let d = start();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("file"), "bound").unwrap();
    assert_eq!(d.dok(&["volume", "create", "--label", "k=v", "dv"]), "dv");
    d.dok(&[
        "run",
        "--rm",
        "-v",
        "dv:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/f",
    ]);
    assert_eq!(
        d.dok(&["run", "--rm", "-v", "dv:/data", "busybox", "cat", "/data/f"]),
        "hi"
    );
    assert_eq!(
        d.dok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels.k}}",
            "dv"
        ]),
        "dv local v"
    );
    assert_eq!(
        d.dok(&["volume", "ls", "--filter", "label=k=v", "-q"]),
        "dv"
    );
    let mnt = format!("type=bind,src={},dst=/b,readonly", host.path().display());
    assert_eq!(
        d.dok(&["run", "--rm", "--mount", &mnt, "busybox", "cat", "/b/file"]),
        "bound"
    );
    d.dok(&[
        "create", "--name", "c1", "-v", "dv:/data", "--tmpfs", "/t", "busybox", "true",
    ]);
    let m = d.dok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.Mode}} {{.RW}}{{end}}",
        "c1",
    ]);
    assert_eq!(m, "volume dv /data z true");
    let o = d.docker(&["volume", "rm", "dv"]);
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=nosuch,dst=/x",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("invalid mount config for type \"nosuch\": mount type unknown"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["run", "--rm", "-v", "a:b:c:d", "busybox", "true"]);
    assert!(
        stderr(&o).contains("invalid volume specification: 'a:b:c:d'"),
        "{}",
        stderr(&o)
    );
    d.dok(&["rm", "-v", "c1"]);
    d.dok(&["run", "--rm", "-v", "/anon", "busybox", "true"]);
    d.dok(&["create", "--name", "c2", "-v", "/anon2", "busybox", "true"]);
    d.dok(&["rm", "c2"]);
    let out = d.dok(&["volume", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(d.dok(&["volume", "ls", "-q"]), "dv");
    d.dok(&["volume", "rm", "dv"]);
    assert_eq!(stdout(&d.docker(&["volume", "ls", "-q"])), "");
}
