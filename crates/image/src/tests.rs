//! Store-level tests: import, tag/rmi, prune, overlay mounts, load/save.

use crate::*;
use berth_api::ErrorKind;
use berth_store::{BlobStore, Db};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

pub(crate) struct Env {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
}

pub(crate) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&dir.path().join("state.db")).unwrap());
    let blobs = Arc::new(BlobStore::open(dir.path()).unwrap());
    let store = ImageStore::open(dir.path(), db, blobs).unwrap();
    Env { dir, store }
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, data).unwrap();
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, &[][..]).unwrap();
}

fn add_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    b.append_link(&mut h, path, target).unwrap();
}

/// A busybox rootfs tar from the host's /bin/busybox.
pub(crate) fn busybox_tar() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "bin");
    add_file(&mut b, "bin/busybox", 0o755, &bb);
    add_symlink(&mut b, "bin/sh", "busybox");
    add_dir(&mut b, "etc");
    add_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
    );
    add_dir(&mut b, "tmp");
    b.into_inner().unwrap()
}

fn small_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, name, 0o644, data);
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn no_filters() -> HashMap<String, Vec<String>> {
    HashMap::new()
}

fn unused(_: &str) -> Option<String> {
    None
}

fn snapshot_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "empty")
        .count()
}

#[test]
fn import_busybox_with_changes() {
    let e = env();
    let changes = vec![
        "CMD echo hello".to_string(),
        "ENV PATH=/bin FOO=bar".to_string(),
        "WORKDIR /tmp".to_string(),
    ];
    let data = gzip(&busybox_tar());
    let id = e
        .store
        .import(
            &mut &data[..],
            &changes,
            Some("my import"),
            Some("busybox:latest"),
        )
        .unwrap();
    assert!(id.starts_with("sha256:"));
    let img = e.store.resolve("busybox").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, ["busybox:latest"]);
    assert_eq!(e.store.resolve(&id).unwrap().id, id);
    assert_eq!(e.store.resolve(&id[7..12]).unwrap().id, id);
    assert_eq!(img.diff_ids.len(), 1);
    // The diff id is the sha256 of the uncompressed tar.
    assert_eq!(img.diff_ids[0], berth_store::sha256_digest(&busybox_tar()));
    let cfg = e.store.config(&id).unwrap();
    assert_eq!(cfg.cmd.unwrap(), ["/bin/sh", "-c", "echo hello"]);
    assert_eq!(cfg.env.unwrap(), ["PATH=/bin", "FOO=bar"]);
    assert_eq!(cfg.working_dir.unwrap(), "/tmp");
    let ins = e.store.inspect("busybox:latest").unwrap();
    assert_eq!(ins.id.as_deref(), Some(id.as_str()));
    assert_eq!(ins.comment.as_deref(), Some("my import"));
    assert_eq!(ins.os.as_deref(), Some("linux"));
    assert!(ins.size.unwrap() > 100_000);
    let j = serde_json::to_value(&ins).unwrap();
    assert_eq!(j["RootFS"]["Type"], "layers");
    assert_eq!(j["Config"]["Cmd"][2], "echo hello");
    let hist = e.store.history("busybox").unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].id, id);
    assert_eq!(hist[0].comment, "my import");
    assert_eq!(hist[0].tags, ["busybox:latest"]);
    let list = e.store.list(false, &no_filters()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].repo_tags, ["busybox:latest"]);
    // The snapshot holds the unpacked rootfs.
    let snap = e.dir.path().join("snapshots").join(&img.chain_ids[0][7..]);
    assert!(snap.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(snap.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );

    // zstd and plain inputs work too; identical content gives the same layer.
    let z = zstd::encode_all(&busybox_tar()[..], 3).unwrap();
    let id2 = e.store.import(&mut &z[..], &[], None, None).unwrap();
    let img2 = e.store.resolve(&id2).unwrap();
    assert_eq!(img2.diff_ids, img.diff_ids);
    assert!(img2.repo_tags.is_empty());
    assert_eq!(e.store.history(&id2).unwrap()[0].comment, "Imported from -");

    let nf = e.store.resolve("nosuch").unwrap_err();
    assert_eq!(nf.kind, ErrorKind::NotFound);
    assert_eq!(nf.message, "No such image: nosuch:latest");
    // xz magic but not xz data: the xz tool's failure is an input error (or, on a host
    // without xz, "not implemented").
    let err = e
        .store
        .import(&mut &b"\xfd7zXZ\0rest"[..], &[], None, None)
        .unwrap_err();
    assert!(
        matches!(
            err.kind,
            ErrorKind::InvalidArgument | ErrorKind::NotImplemented
        ),
        "{err:?}"
    );
    assert!(e
        .store
        .import(&mut &busybox_tar()[..], &[], None, Some("Bad:tag"))
        .is_err());
}

#[test]
fn tag_and_rmi_semantics() {
    let e = env();
    let s = &e.store;
    let id = s
        .import(
            &mut &small_tar("a", b"1")[..],
            &[],
            None,
            Some("one:latest"),
        )
        .unwrap();
    s.tag("one", "two", Some("v1")).unwrap();
    s.tag(&id, "localhost:5000/three", None).unwrap();
    // Sorted by full reference, as docker's reference store does.
    assert_eq!(
        s.resolve(&id).unwrap().repo_tags,
        ["one:latest", "two:v1", "localhost:5000/three:latest"]
    );
    assert!(s.tag("one", "Two", None).is_err());
    // A separate tag replaces one given in repo (docker's RepoTagReference).
    s.tag("one", "four:x", Some("y")).unwrap();
    assert_eq!(s.resolve("four:y").unwrap().id, id);
    assert!(s.resolve("four:x").is_err());
    s.remove("four:y", false, false, &unused).unwrap();
    assert_eq!(
        s.tag("one", "two", Some("-bad")).unwrap_err().message,
        "invalid tag format"
    );
    assert_eq!(
        s.tag("nosuch", "x", None).unwrap_err().kind,
        ErrorKind::NotFound
    );

    // By id with several tags: conflict unless forced.
    let err = s.remove(&id, false, false, &unused).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", &id[7..19])
    );
    // By name: untag only while other tags remain.
    let r = s.remove("two:v1", false, false, &unused).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].untagged.as_deref(), Some("two:v1"));

    // Used by a container: untag by name leaves a dangling image; by id is a conflict.
    let used = |_: &str| Some("0123456789abcdef0123".to_string());
    s.remove("localhost:5000/three", false, false, &used)
        .unwrap();
    let err = s.remove("one", false, false, &used).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("conflict: unable to remove repository reference \"one\" (must force) - container 0123456789ab is using its referenced image {}", &id[7..19])
    );
    let r = s.remove("one", true, false, &used).unwrap();
    assert_eq!(r.len(), 1);
    assert!(s.resolve(&id).unwrap().repo_tags.is_empty());
    let err = s.remove(&id, false, false, &used).unwrap_err();
    assert_eq!(
        err.message,
        format!("conflict: unable to delete {} (must be forced) - image is being used by stopped container 0123456789ab", &id[7..19])
    );
    // Forced while in use: untag only, the image stays.
    s.tag(&id, "one", None).unwrap();
    let r = s.remove(&id, true, false, &used).unwrap();
    assert_eq!(
        r,
        vec![berth_api::models::ImageDeleteResponseItem {
            untagged: Some("one:latest".into()),
            deleted: None
        }]
    );
    assert!(s.resolve(&id).is_ok());

    // Unused: by id deletes image and layer.
    s.tag(&id, "one", None).unwrap();
    let r = s.remove(&id[7..], false, false, &unused).unwrap();
    assert_eq!(r[0].untagged.as_deref(), Some("one:latest"));
    assert_eq!(r[1].deleted.as_deref(), Some(id.as_str()));
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(s.resolve(&id).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(snapshot_count(e.dir.path()), 0);
    assert!(s.list(true, &no_filters()).unwrap().is_empty());

    // Forced removal of a multi-tagged image untags everything.
    let id = s
        .import(&mut &small_tar("b", b"2")[..], &[], None, Some("x:1"))
        .unwrap();
    s.tag(&id, "y", Some("2")).unwrap();
    let r = s.remove(&id, true, false, &unused).unwrap();
    assert_eq!(r.iter().filter(|x| x.untagged.is_some()).count(), 2);
    assert!(s.resolve("x:1").is_err());
}

#[test]
fn list_filters_and_prune() {
    let e = env();
    let s = &e.store;
    let a = s
        .import(
            &mut &small_tar("a", b"1")[..],
            &["LABEL k=v".into()],
            None,
            Some("alpha:1"),
        )
        .unwrap();
    let b = s
        .import(&mut &small_tar("b", b"2")[..], &[], None, Some("beta/x:2"))
        .unwrap();
    let c = s
        .import(&mut &small_tar("c", b"3")[..], &[], None, None)
        .unwrap();
    let f = |k: &str, v: &str| HashMap::from([(k.to_string(), vec![v.to_string()])]);
    let ids = |v: Vec<berth_api::models::ImageSummary>| {
        let mut x: Vec<String> = v.into_iter().map(|i| i.id).collect();
        x.sort();
        x
    };
    assert_eq!(
        ids(s.list(false, &f("dangling", "true")).unwrap()),
        [c.as_str()]
    );
    assert_eq!(s.list(false, &f("dangling", "false")).unwrap().len(), 2);
    assert_eq!(
        ids(s.list(false, &f("label", "k=v")).unwrap()),
        [a.as_str()]
    );
    assert_eq!(ids(s.list(false, &f("label", "k")).unwrap()), [a.as_str()]);
    assert_eq!(
        ids(s.list(false, &f("reference", "alp*")).unwrap()),
        [a.as_str()]
    );
    assert_eq!(
        ids(s.list(false, &f("reference", "beta/*:2")).unwrap()),
        [b.as_str()]
    );
    assert_eq!(
        s.list(false, &f("bogus", "1")).unwrap_err().message,
        "invalid filter 'bogus'"
    );

    // Dangling prune removes only the untagged image.
    let r = s.prune(true, &no_filters(), &unused).unwrap();
    let del = r.images_deleted.unwrap();
    assert!(del.iter().any(|d| d.deleted.as_deref() == Some(c.as_str())));
    assert!(r.space_reclaimed.unwrap() > 0);
    // Prune all skips images in use.
    let used_b = |id: &str| (id == b).then(|| "c1".to_string());
    let r = s.prune(false, &no_filters(), &used_b).unwrap();
    let del = r.images_deleted.unwrap();
    assert!(del.iter().any(|d| d.untagged.as_deref() == Some("alpha:1")));
    assert!(del.iter().any(|d| d.deleted.as_deref() == Some(a.as_str())));
    assert_eq!(ids(s.list(true, &no_filters()).unwrap()), [b.as_str()]);
}

/// Unmounts on drop so a failed assertion never leaves a mount behind.
struct MountGuard<'a>(&'a Path);
impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        let _ = ImageStore::unmount_rootfs(self.0);
    }
}

#[test]
fn overlay_mount_with_whiteouts() {
    let e = env();
    let s = &e.store;
    // Layer 1: files and a populated dir; layer 2 deletes one file and makes the dir opaque.
    let mut l1 = tar::Builder::new(Vec::new());
    add_file(&mut l1, "keep", 0o644, b"keep");
    add_file(&mut l1, "gone", 0o644, b"gone");
    add_dir(&mut l1, "d");
    add_file(&mut l1, "d/old", 0o644, b"old");
    let l1 = l1.into_inner().unwrap();
    let mut l2 = tar::Builder::new(Vec::new());
    add_file(&mut l2, ".wh.gone", 0o644, b"");
    add_dir(&mut l2, "d");
    add_file(&mut l2, "d/.wh..wh..opq", 0o644, b"");
    add_file(&mut l2, "d/new", 0o644, b"new");
    let l2 = l2.into_inner().unwrap();
    let d1 = s.store_layer(&mut &l1[..], None).unwrap();
    let d2 = s.store_layer(&mut &gzip(&l2)[..], None).unwrap();
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [d1, d2]},
        "history": [{"created_by": "l1"}, {"created_by": "l2"}]
    });
    let id = {
        let _g = s.guard();
        s.register(&serde_json::to_vec(&cfg).unwrap(), &[])
            .unwrap()
            .0
    };
    assert_eq!(s.history(&id).unwrap()[0].created_by, "l2");
    let cdir = e.dir.path().join("containers/c1");
    std::fs::create_dir_all(&cdir).unwrap();
    let _guard = MountGuard(&cdir);
    let rootfs = s.mount_rootfs(&id, &cdir).unwrap();
    // Idempotent.
    assert_eq!(s.mount_rootfs(&id, &cdir).unwrap(), rootfs);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("keep")).unwrap(),
        "keep"
    );
    assert!(!rootfs.join("gone").exists());
    assert!(rootfs.join("d/new").exists());
    assert!(!rootfs.join("d/old").exists());
    std::fs::write(rootfs.join("written"), "x").unwrap();
    assert!(cdir.join("upper/written").exists());
    ImageStore::unmount_rootfs(&cdir).unwrap();
    assert!(!rootfs.join("keep").exists());
    ImageStore::unmount_rootfs(&cdir).unwrap();
}

#[test]
fn store_is_send_sync_and_drops_orphans_on_open() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ImageStore>();
    let e = env();
    let id = e
        .store
        .import(&mut &small_tar("a", b"1")[..], &[], None, None)
        .unwrap();
    let img = e.store.resolve(&id).unwrap();
    // Simulate a crash between unpacking a layer and registering its image.
    let orphan = e
        .store
        .store_layer(&mut &small_tar("o", b"2")[..], None)
        .unwrap();
    e.store.ensure_snapshot(&orphan, None, &orphan).unwrap();
    assert_eq!(snapshot_count(e.dir.path()), 2);
    let db = e.store.db.clone();
    let blobs = e.store.blobs.clone();
    let reopened = ImageStore::open(e.dir.path(), db, blobs).unwrap();
    let names: Vec<_> = std::fs::read_dir(e.dir.path().join("snapshots"))
        .unwrap()
        .map(|x| x.unwrap().file_name())
        .collect();
    assert_eq!(
        snapshot_count(e.dir.path()),
        1,
        "{names:?} {orphan} {:?}",
        img.chain_ids
    );
    assert!(!reopened.blobs.has(&orphan));
    assert!(reopened.blobs.has(&img.diff_ids[0]));
    assert_eq!(reopened.resolve(&id).unwrap().id, id);
}

#[test]
fn commit_upper_dir_and_export() {
    let e = env();
    let s = &e.store;
    let mut base = tar::Builder::new(Vec::new());
    add_dir(&mut base, "etc");
    add_file(&mut base, "etc/passwd", 0o644, b"root");
    add_dir(&mut base, "d");
    add_file(&mut base, "d/old", 0o644, b"old");
    add_file(&mut base, "keep", 0o755, b"keep");
    let base = base.into_inner().unwrap();
    let base_id = s.import(&mut &base[..], &[], None, Some("base")).unwrap();

    let c1 = e.dir.path().join("containers/c1");
    std::fs::create_dir_all(&c1).unwrap();
    let g1 = MountGuard(&c1);
    let r1 = s.mount_rootfs(&base_id, &c1).unwrap();
    std::fs::write(r1.join("new"), "new").unwrap();
    std::fs::hard_link(r1.join("new"), r1.join("new-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", r1.join("sym")).unwrap();
    std::fs::remove_file(r1.join("etc/passwd")).unwrap();
    std::fs::remove_dir_all(r1.join("d")).unwrap();
    std::fs::create_dir(r1.join("d")).unwrap();
    std::fs::write(r1.join("d/fresh"), "fresh").unwrap();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    std::fs::write(r1.join(latin1), "bytes").unwrap();
    drop(g1);

    let ch: Vec<(String, i32)> = s
        .changes(&base_id, &c1)
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind as i32))
        .collect();
    let want = [
        ("/caf\u{fffd}", 1),
        ("/d", 0),
        ("/d/fresh", 1),
        ("/etc", 0),
        ("/etc/passwd", 2),
        ("/new", 1),
        ("/new-link", 1),
        ("/sym", 1),
    ];
    assert_eq!(
        ch,
        want.iter()
            .map(|(p, k)| (p.to_string(), *k))
            .collect::<Vec<_>>()
    );
    let opts = CommitOptions {
        config: berth_api::models::ImageConfig {
            cmd: Some(vec!["sh".into()]),
            ..Default::default()
        },
        changes: vec!["ENV X=1".into()],
        author: Some("me".into()),
        comment: Some("snapshot".into()),
        repo_tag: Some("committed:1".into()),
        ..Default::default()
    };
    let id = s.commit(&base_id, &c1, &opts).unwrap();
    let img = s.resolve("committed:1").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.diff_ids.len(), 2);
    let cfg = s.config(&id).unwrap();
    assert_eq!(cfg.cmd.unwrap(), ["sh"]);
    assert_eq!(cfg.env.unwrap(), ["X=1"]);
    let h = s.history(&id).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].comment.as_str(), h[0].created_by.as_str()),
        ("snapshot", "sh")
    );
    assert_eq!(s.inspect(&id).unwrap().author.as_deref(), Some("me"));

    let c2 = e.dir.path().join("containers/c2");
    std::fs::create_dir_all(&c2).unwrap();
    let g2 = MountGuard(&c2);
    let r2 = s.mount_rootfs(&id, &c2).unwrap();
    assert_eq!(std::fs::read_to_string(r2.join("new")).unwrap(), "new");
    assert_eq!(std::fs::read_to_string(r2.join(latin1)).unwrap(), "bytes");
    assert!(!r2.join("etc/passwd").exists());
    assert!(r2.join("etc").is_dir());
    assert!(!r2.join("d/old").exists());
    assert!(r2.join("d/fresh").exists());
    assert_eq!(std::fs::read_to_string(r2.join("keep")).unwrap(), "keep");
    assert_eq!(
        std::fs::read_link(r2.join("sym")).unwrap(),
        Path::new("/etc/passwd")
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(r2.join("new-link")).unwrap().nlink(), 2);

    let mut out = Vec::new();
    ImageStore::export_rootfs(&r2, &mut out).unwrap();
    drop(g2);
    let mut ar = tar::Archive::new(&out[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|x| x.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"new".to_string()), "{names:?}");
    assert!(names.contains(&"d/fresh".to_string()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains(".wh.") || n == "etc/passwd"),
        "{names:?}"
    );

    // Nothing changed: an empty layer is not added, only a history entry.
    let c3 = e.dir.path().join("containers/c3");
    std::fs::create_dir_all(&c3).unwrap();
    let g3 = MountGuard(&c3);
    s.mount_rootfs(&base_id, &c3).unwrap();
    drop(g3);
    let id3 = s.commit(&base_id, &c3, &CommitOptions::default()).unwrap();
    assert_eq!(s.resolve(&id3).unwrap().diff_ids.len(), 1);
    assert_eq!(s.history(&id3).unwrap().len(), 2);
}

#[test]
fn mount_many_layers() {
    // More layers than fit in one page of mount(2) options.
    let e = env();
    let s = &e.store;
    let mut diffs = Vec::new();
    for i in 0..70 {
        let t = small_tar(&format!("f{i}"), format!("{i}").as_bytes());
        diffs.push(s.store_layer(&mut &t[..], None).unwrap());
    }
    let cfg = serde_json::json!({"os": "linux", "rootfs": {"type": "layers", "diff_ids": diffs}});
    let id = s
        .create_image(&serde_json::to_vec(&cfg).unwrap(), &[])
        .unwrap();
    let c = e.dir.path().join("containers/many");
    std::fs::create_dir_all(&c).unwrap();
    let _g = MountGuard(&c);
    let r = s.mount_rootfs(&id, &c).unwrap();
    for i in [0, 35, 69] {
        assert_eq!(
            std::fs::read_to_string(r.join(format!("f{i}"))).unwrap(),
            i.to_string()
        );
    }
}

/// Commits on top of an image: a one-file change in a fresh container dir.
fn commit_child(e: &Env, parent: &str, name: &str, tag: Option<&str>) -> String {
    let c = e.dir.path().join("containers").join(name);
    std::fs::create_dir_all(&c).unwrap();
    let g = MountGuard(&c);
    let r = e.store.mount_rootfs(parent, &c).unwrap();
    std::fs::write(r.join(name), name).unwrap();
    drop(g);
    let opts = CommitOptions {
        repo_tag: tag.map(String::from),
        ..Default::default()
    };
    e.store.commit(parent, &c, &opts).unwrap()
}

#[test]
fn parent_chains_like_docker_classic_store() {
    let e = env();
    let s = &e.store;
    let base = s
        .import(&mut &small_tar("a", b"1")[..], &[], None, Some("base"))
        .unwrap();
    let child = commit_child(&e, &base, "c1", Some("child:1"));
    assert_eq!(s.resolve(&child).unwrap().parent, base);
    let h = s.history("child:1").unwrap();
    assert_eq!(
        (h[0].id.as_str(), h[1].id.as_str()),
        (child.as_str(), base.as_str())
    );
    assert_eq!(h[1].tags, ["base:latest"]);
    let l = s.list(false, &no_filters()).unwrap();
    assert_eq!(l.iter().find(|i| i.id == child).unwrap().parent_id, base);

    for force in [false, true] {
        let err = s.remove(&base, force, false, &unused).unwrap_err();
        assert_eq!(
            err.message,
            format!("conflict: unable to delete {} (cannot be forced) - image has dependent child images", &base[7..19])
        );
    }
    // Untagging the parent keeps it as an intermediate image, hidden without `all`.
    let r = s.remove("base", false, false, &unused).unwrap();
    assert_eq!(r.len(), 1);
    assert!(s
        .list(false, &no_filters())
        .unwrap()
        .iter()
        .all(|i| i.id != base));
    assert!(s
        .list(true, &no_filters())
        .unwrap()
        .iter()
        .any(|i| i.id == base));
    let f = HashMap::from([("dangling".to_string(), vec!["true".to_string()])]);
    assert!(s.list(true, &f).unwrap().is_empty());

    // noprune keeps the untagged parent; without it the parent goes too.
    let r = s.remove("child:1", false, true, &unused).unwrap();
    assert!(r
        .iter()
        .any(|x| x.deleted.as_deref() == Some(child.as_str())));
    assert!(s.resolve(&base).is_ok());
    let child2 = commit_child(&e, &base, "c2", Some("child:2"));
    let r = s.remove("child:2", false, false, &unused).unwrap();
    let deleted: Vec<&str> = r.iter().filter_map(|x| x.deleted.as_deref()).collect();
    assert!(
        deleted.contains(&child2.as_str()) && deleted.contains(&base.as_str()),
        "{r:?}"
    );
    assert!(s.list(true, &no_filters()).unwrap().is_empty());
    assert_eq!(snapshot_count(e.dir.path()), 0);

    // Dangling prune takes an untagged head and its untagged parents.
    let base = s
        .import(&mut &small_tar("b", b"2")[..], &[], None, None)
        .unwrap();
    let head = commit_child(&e, &base, "c3", None);
    let r = s.prune(true, &no_filters(), &unused).unwrap();
    let deleted: Vec<String> = r
        .images_deleted
        .unwrap()
        .into_iter()
        .filter_map(|x| x.deleted)
        .collect();
    assert!(
        deleted.contains(&head) && deleted.contains(&base),
        "{deleted:?}"
    );
    assert!(s.list(true, &no_filters()).unwrap().is_empty());
}

#[test]
fn opens_a_database_from_before_parent_tracking() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(&dir.path().join("state.db")).unwrap());
    db.conn()
        .execute_batch(
            "CREATE TABLE images (id TEXT PRIMARY KEY, created TEXT NOT NULL, created_unix INTEGER NOT NULL,
             size INTEGER NOT NULL, diff_ids TEXT NOT NULL, last_tag_time TEXT, added_unix INTEGER NOT NULL)",
        )
        .unwrap();
    let blobs = Arc::new(BlobStore::open(dir.path()).unwrap());
    let s = ImageStore::open(dir.path(), db, blobs).unwrap();
    let id = s
        .import(&mut &small_tar("a", b"1")[..], &[], None, Some("x"))
        .unwrap();
    assert_eq!(s.resolve("x").unwrap().id, id);
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs").join("sha256"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Layers are shared by reference: `system df` counts each once and reports what is
/// shared; removing an image never takes a layer another image uses, and removing the
/// last user leaves no snapshot and no blob behind.
#[test]
fn shared_layers_are_counted_once_and_outlive_one_user() {
    let e = env();
    let s = &e.store;
    let base = s
        .import(
            &mut &small_tar("a", b"base layer")[..],
            &[],
            None,
            Some("base"),
        )
        .unwrap();
    let c1 = commit_child(&e, &base, "c1", Some("one"));
    let c2 = commit_child(&e, &base, "c2", Some("two"));
    let base_layer = s.resolve(&base).unwrap().chain_ids[0].clone();
    let base_size = s.resolve(&base).unwrap().size;
    assert!(base_size > 0);

    let (layers, images) = s.disk_usage().unwrap();
    let img = |id: &str| images.iter().find(|i| i.id == id).unwrap().clone();
    let sizes: i64 = [&base, &c1, &c2].iter().map(|id| img(id).size).sum::<i64>() - 2 * base_size;
    assert_eq!(layers, sizes, "each layer once");
    assert_eq!(img(&c1).shared_size, base_size);
    assert_eq!(img(&c2).shared_size, base_size);
    assert_eq!(img(&base).shared_size, base_size);
    assert_eq!(snapshot_count(e.dir.path()), 3);

    // The base stays as the untagged parent of two; removing one child keeps its layers.
    s.remove("base", false, false, &unused).unwrap();
    s.remove("one", false, false, &unused).unwrap();
    assert!(s.snapshot_path(&base_layer).unwrap().is_dir());
    assert_eq!(snapshot_count(e.dir.path()), 2);
    let (_, images) = s.disk_usage().unwrap();
    assert_eq!(images.len(), 1, "only the tagged child is listed");
    assert_eq!(images[0].shared_size, base_size);

    // The last user goes: its untagged parent with it, every snapshot and blob too.
    let r = s.remove("two", false, false, &unused).unwrap();
    let deleted: Vec<&str> = r.iter().filter_map(|x| x.deleted.as_deref()).collect();
    assert!(deleted.contains(&c2.as_str()) && deleted.contains(&base.as_str()));
    assert!(s.resolve(&c1).is_err());
    assert_eq!(snapshot_count(e.dir.path()), 0);
    assert_eq!(blob_count(e.dir.path()), 0);
    assert_eq!(s.disk_usage().unwrap(), (0, Vec::new()));
}
