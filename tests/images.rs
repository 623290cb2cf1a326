//! Images end to end: import, tag, inspect, history, rmi, save/load, prune.

use berth_tests::{busybox_tar, stderr, stdout, Daemon};

#[test]
fn import_tag_inspect_rmi() {
    let d = Daemon::start();
    let tar = std::fs::read(busybox_tar()).unwrap();
    let o = d.berth_stdin(
        &[
            "import",
            "-c",
            "CMD [\"echo\", \"from-cmd\"]",
            "-c",
            "ENV FOO=bar",
            "-c",
            "WORKDIR /tmp",
            "-c",
            "LABEL a=b",
            "-m",
            "test import",
            "-",
            "bb:1",
        ],
        Some(&tar),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(d.ok(&["run", "--rm", "bb:1"]), "from-cmd");
    assert_eq!(
        d.ok(&["run", "--rm", "bb:1", "sh", "-c", "echo $FOO $PWD"]),
        "bar /tmp"
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Config.Labels}}", "bb:1"]),
        "map[a:b]"
    );
    assert_eq!(d.ok(&["image", "inspect", "-f", "{{.Id}}", "bb:1"]), id);

    let images = d.ok(&["images"]);
    let mut lines = images.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY") && header.contains("IMAGE ID"),
        "{header}"
    );
    assert!(lines.next().unwrap().starts_with("bb "), "{images}");

    d.ok(&["tag", "bb:1", "example.com/team/bb:2"]);
    let repos = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        repos.contains("bb:1") && repos.contains("example.com/team/bb:2"),
        "{repos}"
    );
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 2);
    assert_eq!(
        d.ok(&["images", "--filter", "reference=bb", "--format", "{{.Tag}}"]),
        "1"
    );

    let hist = d.ok(&["history", "bb:1"]);
    assert!(hist.contains("test import"), "{hist}");

    // rmi of an image in use by a container is a conflict unless forced
    d.ok(&["create", "--name", "user", "bb:1"]);
    d.ok(&["rmi", "example.com/team/bb:2"]);
    let o = d.berth(&["rmi", "bb:1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("conflict"), "{}", stderr(&o));
    d.ok(&["rm", "user"]);
    let out = d.ok(&["rmi", "bb:1"]);
    assert!(
        out.contains("Untagged: bb:1") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    let o = d.berth(&["rmi", "bb:1"]);
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));
}

#[test]
fn save_load_roundtrip_and_prune() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&["tag", "busybox", "other:tag"]);
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("images.tar");
    d.ok(&["save", "-o", out.to_str().unwrap(), "busybox", "other:tag"]);
    // docker-save and OCI layout in one archive
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&out)
        .output()
        .unwrap();
    let names = stdout(&listing);
    assert!(
        names.contains("manifest.json")
            && names.contains("index.json")
            && names.contains("oci-layout"),
        "{names}"
    );

    d.ok(&["rmi", "busybox", "other:tag"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    let loaded = d.ok(&["load", "-i", out.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "other:tag"]),
        id
    );
    assert_eq!(d.ok(&["run", "--rm", "other:tag", "echo", "ok"]), "ok");

    // save to stdout, load from stdin
    let o = d.berth(&["save", "busybox"]);
    assert!(o.status.success());
    d.ok(&["rmi", "-f", "busybox", "other:tag"]);
    let o = d.berth_stdin(&["load"], Some(&o.stdout));
    assert!(o.status.success(), "{}", stderr(&o));

    // dangling image prune
    let tar = std::fs::read(busybox_tar()).unwrap();
    let o = d.berth_stdin(&["import", "-c", "LABEL x=1", "-"], Some(&tar));
    assert!(o.status.success());
    assert_eq!(
        d.ok(&["images", "--filter", "dangling=true", "-q"])
            .lines()
            .count(),
        1
    );
    let pr = d.ok(&["image", "prune", "-f"]);
    assert!(
        pr.contains("Deleted") && pr.contains("Total reclaimed space"),
        "{pr}"
    );
    assert_eq!(d.ok(&["images", "--filter", "dangling=true", "-q"]), "");
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
}

/// A layer tar with a hostile entry is rejected or contained: nothing lands outside.
#[test]
fn hostile_layers_are_contained() {
    let d = Daemon::start();
    let sentinel_dir = tempfile::tempdir().unwrap();
    let sentinel = sentinel_dir.path().join("pwned");
    let target = sentinel.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            make_tar(|b| add_file(b, &format!("../../../../../../..{target}"), b"x")),
        ),
        (
            "symlink-parent",
            make_tar(|b| {
                add_symlink(b, "escape", sentinel_dir.path().to_str().unwrap());
                add_file(b, "escape/pwned", b"x");
            }),
        ),
        (
            "hardlink-out",
            make_tar(|b| add_hardlink(b, "h", &format!("../../../../..{target}"))),
        ),
    ];
    for (name, tar) in cases {
        let o = d.berth_stdin(&["import", "-", &format!("evil:{name}")], Some(&tar));
        if o.status.success() {
            // contained: running it must not have written outside either
            let _ = d.berth(&["run", "--rm", &format!("evil:{name}"), "true"]);
        }
        assert!(!sentinel.exists(), "{name}: wrote outside the rootfs");
    }
}

fn make_tar(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    // a usable rootfs beside the hostile entry
    let bb = std::fs::read("/bin/busybox").unwrap();
    add_file_mode(&mut b, "bin/true", &bb, 0o755);
    f(&mut b);
    b.into_inner().unwrap()
}

fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    // bypass the tar crate's own path sanitising: hostile names are the point
    let name = path.as_bytes();
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    h
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    add_file_mode(b, path, data, 0o644)
}

fn add_file_mode(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
    let h = header(path, tar::EntryType::Regular, data.len() as u64, mode);
    b.append(&h, data).unwrap();
}

fn add_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = header(path, tar::EntryType::Symlink, 0, 0o777);
    h.set_link_name(target).unwrap();
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}

fn add_hardlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = header(path, tar::EntryType::Link, 0, 0o644);
    let t = target.as_bytes();
    h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}
