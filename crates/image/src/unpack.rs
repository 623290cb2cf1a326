//! Hostile-input-safe layer unpacking into one snapshot directory.
//!
//! Every entry's parent is resolved one component at a time with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a symlink anywhere in a parent path (for
//! example `a -> /etc` followed by `a/passwd`) is refused instead of followed; the final
//! component is created with `*at()` calls relative to that directory fd and never
//! followed. OCI whiteouts become overlayfs whiteouts.

use berth_api::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn bad_entry(name: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid layer tar entry {name:?}: {why}"))
}

fn sys(what: &str, e: Errno) -> Error {
    Error::internal(format!("unpack: {what}: {e}"))
}

/// Splits an archive path into clean components: leading "/" and "." dropped, ".."
/// resolved lexically; a ".." that would leave the layer is an error (docker's
/// breakout check).
fn clean_components(p: &Path, shown: &str) -> Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(bad_entry(shown, "path escapes the layer directory"));
                }
            }
        }
    }
    Ok(out)
}

fn open_how(flags: OFlag) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    )
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens (optionally creating) the directory `comps` below `root`, never following a
/// symlink. Returns ENOENT/ELOOP/ENOTDIR as errors.
fn open_dir(root: RawFd, comps: &[OsString], create: bool) -> std::result::Result<OwnedFd, Errno> {
    let mut cur = owned(openat2(
        root,
        ".",
        open_how(OFlag::O_PATH | OFlag::O_DIRECTORY),
    )?);
    for c in comps {
        let how = open_how(OFlag::O_PATH | OFlag::O_DIRECTORY);
        let fd = match openat2(cur.as_raw_fd(), c.as_os_str(), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(
                    Some(cur.as_raw_fd()),
                    c.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                openat2(cur.as_raw_fd(), c.as_os_str(), how)?
            }
            Err(e) => return Err(e),
        };
        cur = owned(fd);
    }
    Ok(cur)
}

fn proc_path(fd: RawFd, name: Option<&OsStr>) -> Result<CString> {
    let mut v = format!("/proc/self/fd/{fd}").into_bytes();
    if let Some(n) = name {
        v.push(b'/');
        v.extend_from_slice(n.as_bytes());
    }
    CString::new(v).map_err(|_| Error::invalid("path contains a NUL byte"))
}

fn lsetxattr(path: &CString, key: &str, value: &[u8]) -> std::result::Result<(), Errno> {
    let k = CString::new(key).map_err(|_| Errno::EINVAL)?;
    // SAFETY: valid NUL-terminated strings and a live buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Removes whatever is at (dir, name), recursively for directories, without following
/// symlinks. Missing is fine.
fn remove_existing(dir: RawFd, name: &OsStr) -> Result<()> {
    match fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(sys("stat", e)),
        Ok(st) => {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                // std's remove_dir_all is symlink-safe (openat/unlinkat based); the parent is
                // reached through our own fd's magic link.
                let p = proc_path(dir, Some(name))?;
                let p = Path::new(OsStr::from_bytes(p.as_bytes()));
                std::fs::remove_dir_all(p)
                    .map_err(|e| Error::internal(format!("unpack: remove: {e}")))
            } else {
                unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir).map_err(|e| sys("unlink", e))
            }
        }
    }
}

fn is_dir_at(dir: RawFd, name: &OsStr) -> bool {
    fstatat(Some(dir), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false)
}

/// Unpacks an uncompressed layer tar into `dest` (an existing, empty directory) without
/// ever writing outside it. Returns the layer's content size (sum of regular file sizes).
pub fn unpack_layer(reader: &mut dyn Read, dest: &Path) -> Result<i64> {
    let root =
        File::open(dest).map_err(|e| Error::internal(format!("open {}: {e}", dest.display())))?;
    let rootfd = root.as_raw_fd();
    let mut archive = tar::Archive::new(reader);
    let mut size: i64 = 0;
    let mut dir_times: Vec<(Vec<OsString>, u64)> = Vec::new();
    // The parent of the previous entry: tars list siblings together.
    let mut cache: Option<(Vec<OsString>, OwnedFd)> = None;

    let entries = archive
        .entries()
        .map_err(|e| Error::invalid(format!("invalid layer tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::invalid(format!("invalid layer tar: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| Error::invalid(format!("invalid layer tar: {e}")))?
            .into_owned();
        let shown = raw_path.to_string_lossy().into_owned();
        let mut comps = clean_components(&raw_path, &shown)?;
        let Some(name) = comps.pop() else {
            continue; // the layer root itself
        };
        let parent_comps = comps;
        let name_str = name.to_string_lossy().into_owned();

        let parent = match &cache {
            Some((p, fd)) if *p == parent_comps => {
                fd.try_clone().map_err(|e| Error::internal(e.to_string()))?
            }
            _ => {
                let fd = open_dir(rootfd, &parent_comps, true).map_err(|e| match e {
                    Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV => bad_entry(
                        &shown,
                        "parent path goes through a symlink or a non-directory",
                    ),
                    e => sys("open parent", e),
                })?;
                cache = Some((
                    parent_comps.clone(),
                    fd.try_clone().map_err(|e| Error::internal(e.to_string()))?,
                ));
                fd
            }
        };
        let pfd = parent.as_raw_fd();

        // Whiteouts.
        if name_str == WHITEOUT_OPAQUE {
            let d = File::from(owned(
                openat2(pfd, ".", open_how(OFlag::O_RDONLY | OFlag::O_DIRECTORY))
                    .map_err(|e| sys("open dir", e))?,
            ));
            let k = CString::new(OPAQUE_XATTR).map_err(|_| Error::internal("xattr name"))?;
            // SAFETY: valid fd, NUL-terminated key, 1-byte value.
            let r =
                unsafe { libc::fsetxattr(d.as_raw_fd(), k.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
            Errno::result(r).map_err(|e| sys("set opaque xattr", e))?;
            continue;
        }
        if name_str.starts_with(WHITEOUT_META_PREFIX) {
            continue; // aufs metadata (.wh..wh.plnk etc.) has no overlay meaning
        }
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty() || target == "." || target == ".." {
                return Err(bad_entry(&shown, "invalid whiteout"));
            }
            let t = OsStr::new(target);
            remove_existing(pfd, t)?;
            cache = None;
            mknodat(Some(pfd), t, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| sys("whiteout mknod", e))?;
            continue;
        }

        let hdr = entry.header().clone();
        let kind = hdr.entry_type();
        let mode = Mode::from_bits_truncate(hdr.mode().map_err(|e| bad_entry(&shown, e))? & 0o7777);
        let uid = hdr.uid().map_err(|e| bad_entry(&shown, e))?;
        let gid = hdr.gid().map_err(|e| bad_entry(&shown, e))?;
        let mtime = hdr.mtime().unwrap_or(0);
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Ok(k) = ext.key() {
                    if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                        // An image must not steer overlayfs itself.
                        if !x.starts_with("trusted.overlay.") {
                            xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }

        let is_dir = kind.is_dir();
        if !(is_dir && is_dir_at(pfd, &name)) {
            if is_dir_at(pfd, &name) {
                cache = None;
            }
            remove_existing(pfd, &name)?;
        }

        match kind {
            tar::EntryType::Directory => {
                match mkdirat(Some(pfd), name.as_os_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys("mkdir", e)),
                }
                let mut p = parent_comps.clone();
                p.push(name.clone());
                dir_times.push((p, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = openat2(
                    pfd,
                    name.as_os_str(),
                    open_how(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW)
                        .mode(Mode::from_bits_truncate(0o600)),
                )
                .map_err(|e| sys("create file", e))?;
                let mut f = File::from(owned(fd));
                let n = std::io::copy(&mut entry, &mut f).map_err(|e| bad_entry(&shown, e))?;
                size += n as i64;
            }
            tar::EntryType::Symlink => {
                let target = hdr
                    .link_name()
                    .map_err(|e| bad_entry(&shown, e))?
                    .ok_or_else(|| bad_entry(&shown, "symlink without target"))?;
                // The target may be anything: it is resolved inside the container later.
                // Counted like docker's directory.Size (lstat size of the link).
                size += target.as_os_str().len() as i64;
                symlinkat(target.as_os_str(), Some(pfd), name.as_os_str())
                    .map_err(|e| sys("symlink", e))?;
            }
            tar::EntryType::Link => {
                let target = hdr
                    .link_name()
                    .map_err(|e| bad_entry(&shown, e))?
                    .ok_or_else(|| bad_entry(&shown, "hardlink without target"))?;
                let mut tcomps = clean_components(&target, &shown)?;
                let tname = tcomps
                    .pop()
                    .ok_or_else(|| bad_entry(&shown, "hardlink to the layer root"))?;
                let tdir = open_dir(rootfd, &tcomps, false)
                    .map_err(|_| bad_entry(&shown, "hardlink target is not inside the layer"))?;
                linkat(
                    Some(tdir.as_raw_fd()),
                    tname.as_os_str(),
                    Some(pfd),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|e| bad_entry(&shown, format!("hardlink target not in layer: {e}")))?;
                // A hardlink shares the target's inode: its metadata is already right.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                mknod_entry(pfd, name.as_os_str(), kind, &hdr).map_err(|e| sys("mknod", e))?;
            }
            // PAX/GNU headers are consumed by the tar crate; anything else is skipped.
            _ => continue,
        }

        fchownat(
            Some(pfd),
            name.as_os_str(),
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| sys("chown", e))?;
        let target_path = proc_path(pfd, Some(&name))?;
        if kind != tar::EntryType::Symlink {
            // chmod after chown (chown clears setuid bits). Through an O_PATH fd of the
            // final component opened without following it.
            let fd = owned(
                openat2(
                    pfd,
                    name.as_os_str(),
                    open_how(OFlag::O_PATH | OFlag::O_NOFOLLOW),
                )
                .map_err(|e| sys("open", e))?,
            );
            let p = proc_path(fd.as_raw_fd(), None)?;
            // SAFETY: valid NUL-terminated path.
            let r = unsafe { libc::chmod(p.as_ptr(), mode.bits()) };
            Errno::result(r).map_err(|e| sys("chmod", e))?;
        }
        for (k, v) in &xattrs {
            if let Err(e) = lsetxattr(&target_path, k, v) {
                // Like docker, a filesystem without xattr support is not fatal.
                tracing::debug!("xattr {k} on {shown}: {e}");
            }
        }
        if !is_dir {
            let t = TimeSpec::new(mtime as i64, 0);
            let _ = utimensat(
                Some(pfd),
                name.as_os_str(),
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            );
        }
    }
    drop(cache);
    // Directory mtimes last: creating children changed them.
    for (comps, mtime) in dir_times.iter().rev() {
        if let Some((last, parent)) = comps.split_last() {
            if let Ok(pfd) = open_dir(rootfd, parent, false) {
                let t = TimeSpec::new(*mtime as i64, 0);
                let _ = utimensat(
                    Some(pfd.as_raw_fd()),
                    last.as_os_str(),
                    &t,
                    &t,
                    UtimensatFlags::NoFollowSymlink,
                );
            }
        }
    }
    Ok(size)
}

/// Creates the device node or FIFO a tar entry describes, mode 0600 (the caller sets the
/// real mode and owner afterwards). Shared by layer unpacking and `cp` into containers.
pub(crate) fn mknod_entry(
    pfd: std::os::fd::RawFd,
    name: &std::ffi::OsStr,
    kind: tar::EntryType,
    hdr: &tar::Header,
) -> nix::Result<()> {
    let (sflag, dev) = match kind {
        tar::EntryType::Char | tar::EntryType::Block => {
            let major = hdr.device_major().ok().flatten().unwrap_or(0);
            let minor = hdr.device_minor().ok().flatten().unwrap_or(0);
            let f = if kind == tar::EntryType::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            (f, libc::makedev(major, minor))
        }
        _ => (SFlag::S_IFIFO, 0),
    };
    mknodat(Some(pfd), name, sflag, Mode::from_bits_truncate(0o600), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn hdr(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Writes a raw header name (bypassing the tar crate's own ".." checks).
    fn raw_name(h: &mut tar::Header, name: &str) {
        let n = &mut h.as_old_mut().name;
        n.fill(0);
        n[..name.len()].copy_from_slice(name.as_bytes());
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = hdr(tar::EntryType::Regular, data.len() as u64);
        raw_name(&mut h, name);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = hdr(kind, 0);
        raw_name(&mut h, name);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str) {
        let mut h = hdr(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        raw_name(&mut h, name);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    /// A temp dir with `layer/` to unpack into and `outside/` holding a sentinel.
    struct Fixture {
        tmp: tempfile::TempDir,
    }
    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir(tmp.path().join("layer")).unwrap();
            std::fs::create_dir(tmp.path().join("outside")).unwrap();
            std::fs::write(tmp.path().join("outside/sentinel"), "orig").unwrap();
            Fixture { tmp }
        }
        fn layer(&self) -> std::path::PathBuf {
            self.tmp.path().join("layer")
        }
        fn unpack(&self, data: Vec<u8>) -> Result<i64> {
            unpack_layer(&mut &data[..], &self.layer())
        }
        fn outside_untouched(&self) {
            let o = self.tmp.path().join("outside");
            assert_eq!(std::fs::read_to_string(o.join("sentinel")).unwrap(), "orig");
            assert_eq!(
                std::fs::read_dir(&o).unwrap().count(),
                1,
                "something landed outside"
            );
            assert!(!self.tmp.path().join("evil").exists());
        }
    }

    #[test]
    fn dotdot_escape_is_refused() {
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "../outside/sentinel", b"pwned");
        file(&mut b, "a/../../evil", b"pwned");
        assert!(f.unpack(b.into_inner().unwrap()).is_err());
        f.outside_untouched();
    }

    #[test]
    fn absolute_paths_are_stripped() {
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "/etc/passwd", b"root");
        f.unpack(b.into_inner().unwrap()).unwrap();
        assert_eq!(
            std::fs::read(f.layer().join("etc/passwd")).unwrap(),
            b"root"
        );
        f.outside_untouched();
    }

    #[test]
    fn write_through_symlink_parent_is_refused() {
        let f = Fixture::new();
        let outside = f.tmp.path().join("outside");
        let mut b = tar::Builder::new(Vec::new());
        link(
            &mut b,
            tar::EntryType::Symlink,
            "a",
            outside.to_str().unwrap(),
        );
        file(&mut b, "a/sentinel", b"pwned");
        assert!(f.unpack(b.into_inner().unwrap()).is_err());
        f.outside_untouched();
        // Relative escape through a symlink too.
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Symlink, "b", "../outside");
        file(&mut b, "b/new", b"pwned");
        assert!(f.unpack(b.into_inner().unwrap()).is_err());
        f.outside_untouched();
    }

    #[test]
    fn whiteouts_through_symlinks_are_refused() {
        for entry in ["a/.wh.sentinel", "a/.wh..wh..opq"] {
            let f = Fixture::new();
            let outside = f.tmp.path().join("outside");
            let mut b = tar::Builder::new(Vec::new());
            link(
                &mut b,
                tar::EntryType::Symlink,
                "a",
                outside.to_str().unwrap(),
            );
            file(&mut b, entry, b"");
            assert!(f.unpack(b.into_inner().unwrap()).is_err(), "{entry}");
            f.outside_untouched();
            let p = CString::new(outside.as_os_str().as_bytes()).unwrap();
            let k = CString::new(OPAQUE_XATTR).unwrap();
            let mut buf = [0u8; 4];
            // SAFETY: valid strings and buffer.
            let n = unsafe {
                libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            assert!(n < 0, "opaque xattr set outside the layer");
        }
    }

    #[test]
    fn gnu_sparse_files_are_unpacked() {
        use std::io::{Seek, SeekFrom, Write};
        let f = Fixture::new();
        let src = f.tmp.path().join("sparse-src");
        let mut file = File::create(&src).unwrap();
        file.seek(SeekFrom::Start(1 << 20)).unwrap();
        file.write_all(b"tail").unwrap();
        drop(file);
        let mut b = tar::Builder::new(Vec::new());
        b.sparse(true);
        b.append_path_with_name(&src, "s").unwrap();
        let data = b.into_inner().unwrap();
        let kinds: Vec<_> = tar::Archive::new(&data[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds, [tar::EntryType::GNUSparse]);
        f.unpack(data).unwrap();
        let got = std::fs::read(f.layer().join("s")).unwrap();
        assert_eq!(got.len(), (1 << 20) + 4);
        assert!(got.ends_with(b"tail") && got[..1 << 20].iter().all(|b| *b == 0));
    }

    #[test]
    fn final_symlink_is_replaced_not_followed() {
        let f = Fixture::new();
        let outside = f.tmp.path().join("outside/sentinel");
        let mut b = tar::Builder::new(Vec::new());
        link(
            &mut b,
            tar::EntryType::Symlink,
            "x",
            outside.to_str().unwrap(),
        );
        file(&mut b, "x", b"pwned");
        f.unpack(b.into_inner().unwrap()).unwrap();
        f.outside_untouched();
        let m = std::fs::symlink_metadata(f.layer().join("x")).unwrap();
        assert!(m.is_file());
    }

    #[test]
    fn hardlink_outside_is_refused() {
        let f = Fixture::new();
        let outside = f.tmp.path().join("outside/sentinel");
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Link, "h", "../outside/sentinel");
        assert!(f.unpack(b.into_inner().unwrap()).is_err());
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        link(&mut b, tar::EntryType::Link, "h", outside.to_str().unwrap());
        assert!(f.unpack(b.into_inner().unwrap()).is_err());
        // Through a symlink inside the layer.
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        link(
            &mut b,
            tar::EntryType::Symlink,
            "s",
            f.tmp.path().join("outside").to_str().unwrap(),
        );
        link(&mut b, tar::EntryType::Link, "h", "s/sentinel");
        assert!(f.unpack(b.into_inner().unwrap()).is_err());
        f.outside_untouched();
        assert_eq!(std::fs::metadata(&outside).unwrap().nlink(), 1);
    }

    #[test]
    fn preserves_metadata_links_devices_and_whiteouts() {
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        dir(&mut b, "d");
        let mut h = hdr(tar::EntryType::Regular, 2);
        raw_name(&mut h, "d/f");
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        link(&mut b, tar::EntryType::Link, "d/hl", "d/f");
        link(
            &mut b,
            tar::EntryType::Symlink,
            "sl",
            "/nonexistent/anywhere",
        );
        let mut h = hdr(tar::EntryType::Char, 0);
        raw_name(&mut h, "null");
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        file(&mut b, "gone/.wh.file", b"");
        file(&mut b, "opq/.wh..wh..opq", b"");
        let size = f.unpack(b.into_inner().unwrap()).unwrap();
        // 2 bytes of file + the symlink's target length, like docker's size.
        assert_eq!(size, 2 + "/nonexistent/anywhere".len() as i64);
        let l = f.layer();
        let m = std::fs::metadata(l.join("d/f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!((m.uid(), m.gid()), (1000, 1001));
        assert_eq!(m.mtime(), 1_000_000);
        assert_eq!(m.nlink(), 2);
        assert_eq!(std::fs::metadata(l.join("d")).unwrap().mtime(), 1_000_000);
        assert_eq!(
            std::fs::read_link(l.join("sl")).unwrap(),
            Path::new("/nonexistent/anywhere")
        );
        let n = std::fs::metadata(l.join("null")).unwrap();
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), libc::makedev(1, 3));
        let w = std::fs::symlink_metadata(l.join("gone/file")).unwrap();
        assert!(w.file_type().is_char_device());
        assert_eq!(w.rdev(), 0);
        assert!(!l.join("gone/.wh.file").exists());
        let p = CString::new(l.join("opq").as_os_str().as_bytes()).unwrap();
        let mut buf = [0u8; 8];
        let k = CString::new(OPAQUE_XATTR).unwrap();
        // SAFETY: valid strings and buffer.
        let n =
            unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, 1);
        assert_eq!(buf[0], b'y');
        f.outside_untouched();
    }
}
