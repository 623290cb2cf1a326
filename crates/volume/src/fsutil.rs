//! Filesystem work that must not be fooled by a container's rootfs: paths are resolved
//! with `openat2(RESOLVE_IN_ROOT)` (a symlink `/evil -> /etc` in an image resolves to the
//! rootfs's own `/etc`, never the host's), trees are walked through directory fds without
//! following symlinks, and files are created with `O_EXCL|O_NOFOLLOW`.
//! Also: mounting `type`/`device` volumes, mountinfo lookups and directory sizes.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path; the fd is owned on success.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(dirfd, path, flags, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`: `path` is
/// resolved as if `dirfd` were `/` (absolute symlinks and `..` stay inside).
fn openat2_in_root(root: RawFd, path: &str, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let c = cstr(if rel.is_empty() { b"." } else { rel.as_bytes() })?;
    openat2(
        root,
        &c,
        flags,
        mode,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// openat2(2) with `O_CLOEXEC` added.
fn openat2(
    dirfd: RawFd,
    path: &std::ffi::CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data (non_exhaustive, so built from zeroes).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode as u64;
    how.resolve = resolve;
    // SAFETY: how is a valid open_how of the given size, path a valid C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Opens `path` inside `root` as the container would see it.
pub fn open_in_root(root: &Path, path: &str, flags: i32) -> io::Result<OwnedFd> {
    let r = open_dir(root)?;
    openat2_in_root(r.as_raw_fd(), path, flags, 0)
}

/// The host path an fd refers to.
fn fd_path(fd: &OwnedFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Resolves `path` inside `root` to the host path it names (all of it must exist), and
/// checks that the result is under `root`.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let fd = open_in_root(root, path, libc::O_PATH)?;
    let p = fd_path(&fd)?;
    let real_root = std::fs::canonicalize(root)?;
    if !p.starts_with(&real_root) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} resolves outside of the rootfs", path),
        ));
    }
    Ok(p)
}

/// Opens the symlink-free directory `rel` (components already checked) under the root.
fn open_beneath(root: RawFd, rel: &[String]) -> io::Result<OwnedFd> {
    let path = if rel.is_empty() {
        ".".to_string()
    } else {
        rel.join("/")
    };
    let c = cstr(path.as_bytes())?;
    openat2(
        root,
        &c,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// Creates the mount point `path` inside `root` (a directory, or an empty file when
/// `is_dir` is false) and returns the host path it is at. The path is walked one component
/// at a time as the container would resolve it: symlinks (even dangling ones) are followed
/// inside the root, `..` never leaves it, and missing components are created in the
/// directory they resolved to, opened without following symlinks.
pub fn mkdir_in_root(root: &Path, path: &str, is_dir: bool) -> io::Result<PathBuf> {
    let rootfd = open_dir(root)?;
    let real_root = std::fs::canonicalize(root)?;
    let comps = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect()
    };
    let mut queue: std::collections::VecDeque<String> = comps(path).into();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let last = queue.is_empty();
        let parent = open_beneath(rootfd.as_raw_fd(), &done)?;
        let name = cstr(c.as_bytes())?;
        match lstat_at(&parent, &name) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = readlink_at(&parent, &name)?;
                if target.starts_with('/') {
                    done.clear();
                }
                let mut t: std::collections::VecDeque<String> = comps(&target).into();
                t.extend(queue.drain(..));
                queue = t;
            }
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => done.push(c),
            Ok(_) if last && !is_dir => done.push(c),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if last && !is_dir {
                    drop(openat(
                        &parent,
                        &name,
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                        0o644,
                    )?);
                } else {
                    // SAFETY: valid fd and C string.
                    check(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) })?;
                }
                done.push(c);
            }
            Err(e) => return Err(e),
        }
    }
    let mut p = real_root;
    for c in &done {
        p.push(c);
    }
    Ok(p)
}

fn readlink_at(dir: &OwnedFd, name: &CStr) -> io::Result<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buf is writable for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Copies the image's content at `dest` (resolved inside `rootfs`) into the volume data
/// directory `vol`, if that directory is empty and the image has a directory there:
/// docker's copy-up. Returns whether anything was copied. Ownership, modes, times,
/// symlinks, hard links and device nodes are kept; the volume root takes the owner and
/// mode of the image directory.
pub fn copy_up(rootfs: &Path, dest: &str, vol: &Path) -> io::Result<bool> {
    let src = match open_in_root(rootfs, dest, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    if std::fs::read_dir(vol)?.next().is_some() {
        return Ok(false);
    }
    let c = cstr(vol.as_os_str().as_bytes())?;
    // SAFETY: valid C string; the fd is owned on success.
    let dst = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by open.
    let dst = unsafe { OwnedFd::from_raw_fd(dst) };
    let mut links = HashMap::new();
    copy_dir(&src, &dst, &mut links)?;
    let st = fstat(&src)?;
    set_meta_fd(&dst, &st)?;
    Ok(true)
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: st is written by fstat before use.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

fn lstat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: st is written by fstatat before use.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

fn openat(dir: &OwnedFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and C string; the fd is owned on success.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    })?;
    // SAFETY: fd was just returned by openat.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn times(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

fn set_meta_fd(fd: &OwnedFd, st: &libc::stat) -> io::Result<()> {
    // SAFETY: plain syscalls on an owned fd.
    unsafe {
        check(libc::fchown(fd.as_raw_fd(), st.st_uid, st.st_gid))?;
        // After chown, which clears set-id bits.
        check(libc::fchmod(fd.as_raw_fd(), st.st_mode & 0o7777))?;
        check(libc::futimens(fd.as_raw_fd(), times(st).as_ptr()))?;
    }
    Ok(())
}

/// Owner and times of an entry that cannot be opened (symlinks, devices, fifos).
fn set_meta_at(dir: &OwnedFd, name: &CStr, st: &libc::stat, chmod: bool) -> io::Result<()> {
    // SAFETY: plain *at syscalls on an owned fd and a valid C string.
    unsafe {
        check(libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ))?;
        if chmod {
            check(libc::fchmodat(
                dir.as_raw_fd(),
                name.as_ptr(),
                st.st_mode & 0o7777,
                0,
            ))?;
        }
        check(libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times(st).as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        ))?;
    }
    Ok(())
}

fn dir_entries(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    // Read through a fresh fd: fdopendir takes ownership of the one it is given.
    let dup = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = std::mem::ManuallyDrop::new(dup).as_raw_fd();
    // SAFETY: raw is a valid directory fd whose ownership passes to the DIR stream.
    let d = unsafe { libc::fdopendir(raw) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: d is a valid DIR stream until closedir.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the dirent.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            out.push(name.to_owned());
        }
    }
    // SAFETY: d is valid and closed once.
    unsafe { libc::closedir(d) };
    Ok(out)
}

/// Hard-linked files already copied: (dev, ino) of the source → (dir fd, name) of the copy.
type Links = HashMap<(u64, u64), (std::rc::Rc<OwnedFd>, CString)>;

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, links: &mut Links) -> io::Result<()> {
    let dst_rc = std::rc::Rc::new(openat(dst, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?);
    for name in dir_entries(src)? {
        let st = lstat_at(src, &name)?;
        let fmt = st.st_mode & libc::S_IFMT;
        match fmt {
            libc::S_IFDIR => {
                let s = openat(src, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                // SAFETY: valid fd and C string.
                check(unsafe { libc::mkdirat(dst.as_raw_fd(), name.as_ptr(), 0o700) })?;
                let d = openat(dst, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                copy_dir(&s, &d, links)?;
                set_meta_fd(&d, &st)?;
            }
            libc::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some((ldir, lname)) = links.get(&key) {
                        // SAFETY: valid fds and C strings; no symlink following.
                        check(unsafe {
                            libc::linkat(
                                ldir.as_raw_fd(),
                                lname.as_ptr(),
                                dst.as_raw_fd(),
                                name.as_ptr(),
                                0,
                            )
                        })?;
                        continue;
                    }
                }
                let s = openat(src, &name, libc::O_RDONLY, 0)?;
                let d = openat(
                    dst,
                    &name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                let mut sf = std::fs::File::from(s);
                let mut df = std::fs::File::from(d);
                io::copy(&mut sf, &mut df)?;
                let d = OwnedFd::from(df);
                set_meta_fd(&d, &st)?;
                if st.st_nlink > 1 {
                    links.insert(key, (dst_rc.clone(), name.clone()));
                }
            }
            libc::S_IFLNK => {
                let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
                // SAFETY: buf is writable for its length.
                let n = unsafe {
                    libc::readlinkat(
                        src.as_raw_fd(),
                        name.as_ptr(),
                        buf.as_mut_ptr() as *mut libc::c_char,
                        buf.len(),
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                buf.truncate(n as usize);
                let target = cstr(&buf)?;
                // SAFETY: valid C strings and fd.
                check(unsafe { libc::symlinkat(target.as_ptr(), dst.as_raw_fd(), name.as_ptr()) })?;
                set_meta_at(dst, &name, &st, false)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                // SAFETY: valid fd and C string.
                check(unsafe {
                    libc::mknodat(dst.as_raw_fd(), name.as_ptr(), st.st_mode, st.st_rdev)
                })?;
                set_meta_at(dst, &name, &st, true)?;
            }
            // Sockets are not copied (docker's copy skips them too).
            _ => {}
        }
    }
    Ok(())
}

/// Unescapes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point in the daemon's mount namespace.
pub fn is_mounted(path: &Path) -> io::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let p = path.display().to_string();
    Ok(info
        .lines()
        .any(|l| l.split(' ').nth(4).map(unescape).as_deref() == Some(p.as_str())))
}

/// The mount `path` lives on (its mount point) and whether that mount is shared and/or a
/// slave (mountinfo's `shared:N` and `master:N` tags), for docker's propagation checks.
pub fn mount_propagation(path: &Path) -> io::Result<(PathBuf, bool, bool)> {
    let real = std::fs::canonicalize(path)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut best: Option<(PathBuf, bool, bool)> = None;
    for l in info.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(mp) = f.get(4).map(|m| PathBuf::from(unescape(m))) else {
            continue;
        };
        if !real.starts_with(&mp) {
            continue;
        }
        let tags: Vec<&str> = f
            .iter()
            .skip(6)
            .take_while(|t| **t != "-")
            .copied()
            .collect();
        let shared = tags.iter().any(|t| t.starts_with("shared:"));
        let slave = tags.iter().any(|t| t.starts_with("master:"));
        // Later lines are later mounts: on the same mount point they win.
        if best
            .as_ref()
            .map(|(b, _, _)| mp.as_os_str().len() >= b.as_os_str().len())
            .unwrap_or(true)
        {
            best = Some((mp, shared, slave));
        }
    }
    best.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no mount found"))
}

/// Detaches the mount at `path`.
pub fn unmount(path: &Path) -> io::Result<()> {
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

/// Mount flags and data from a mount(8)-style option string.
fn parse_mount_options(opts: &str) -> (libc::c_ulong, Vec<String>) {
    let mut flags: libc::c_ulong = 0;
    let mut data = Vec::new();
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match o {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "defaults" => (0, 0),
            _ => {
                data.push(o.to_string());
                (0, 0)
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data)
}

/// `mount -t TYP -o OPTS DEVICE TARGET` (moby's `mount.Mount`: a read-only bind is
/// remounted read-only, which a single bind mount call ignores).
pub fn mount_fs(device: &str, target: &Path, typ: &str, opts: &str) -> io::Result<()> {
    let (flags, data) = parse_mount_options(opts);
    let dev = cstr(device.as_bytes())?;
    let tgt = cstr(target.as_os_str().as_bytes())?;
    let fstype = cstr(typ.as_bytes())?;
    let data = cstr(data.join(",").as_bytes())?;
    let bind = flags & libc::MS_BIND != 0;
    // SAFETY: valid C strings.
    check(unsafe {
        libc::mount(
            dev.as_ptr(),
            tgt.as_ptr(),
            if bind {
                std::ptr::null()
            } else {
                fstype.as_ptr()
            },
            flags,
            if bind {
                std::ptr::null()
            } else {
                data.as_ptr() as *const libc::c_void
            },
        )
    })?;
    if bind && flags & libc::MS_RDONLY != 0 {
        // SAFETY: valid C string.
        let r = check(unsafe {
            libc::mount(
                std::ptr::null(),
                tgt.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            )
        });
        if let Err(e) = r {
            let _ = unmount(target);
            return Err(e);
        }
    }
    Ok(())
}

/// Bytes of the regular files under `path` (hard links counted once, symlinks not
/// followed), as docker's prune reports them.
pub fn dir_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn resolution_stays_in_root() {
        let host = tempfile::tempdir().unwrap();
        let outside = host.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host").unwrap();
        let root = host.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), b"ctr").unwrap();
        // Absolute and relative escapes both land inside the root.
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etclink")).unwrap();
        let real_root = std::fs::canonicalize(&root).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/etclink/passwd").unwrap(),
            real_root.join("etc/passwd")
        );
        assert!(resolve_in_root(&root, "/evil/secret").is_err());
        assert!(resolve_in_root(&root, "/rel/secret").is_err());
        // Mount points are created inside the root, through the symlink's in-root target.
        let p = mkdir_in_root(&root, "/evil/sub", true).unwrap();
        assert!(p.starts_with(&real_root), "{p:?}");
        assert!(!outside.join("sub").exists());
        assert!(real_root
            .join(outside.strip_prefix("/").unwrap())
            .join("sub")
            .is_dir());
        let f = mkdir_in_root(&root, "/etclink/newfile", false).unwrap();
        assert_eq!(f, real_root.join("etc/newfile"));
        assert!(f.is_file());
        // Existing paths resolve to themselves.
        assert_eq!(
            mkdir_in_root(&root, "/etc", true).unwrap(),
            real_root.join("etc")
        );
    }

    #[test]
    fn copy_up_keeps_metadata_and_never_leaves_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("rootfs");
        let data = root.join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("a"), b"hello").unwrap();
        std::fs::set_permissions(data.join("a"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::hard_link(data.join("a"), data.join("sub/hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", data.join("link")).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::chown(data.join("sub"), Some(1234), Some(4321)).unwrap();
        let vol = host.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        assert!(copy_up(&root, "/data", &vol).unwrap());
        assert_eq!(std::fs::read(vol.join("a")).unwrap(), b"hello");
        let m = std::fs::metadata(vol.join("a")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.nlink(), 2);
        assert_eq!(
            std::fs::metadata(vol.join("sub/hard")).unwrap().ino(),
            m.ino()
        );
        assert_eq!(
            std::fs::read_link(vol.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let s = std::fs::metadata(vol.join("sub")).unwrap();
        assert_eq!((s.uid(), s.gid()), (1234, 4321));
        assert_eq!(std::fs::metadata(&vol).unwrap().mode() & 0o7777, 0o1777);
        // A non-empty volume is left alone; a missing path copies nothing.
        assert!(!copy_up(&root, "/data", &vol).unwrap());
        let vol2 = host.path().join("vol2");
        std::fs::create_dir(&vol2).unwrap();
        assert!(!copy_up(&root, "/nope", &vol2).unwrap());
        // A symlink pointing at a host directory copies the rootfs's own target.
        let secret = host.path().join("hostdir");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("secret"), b"host").unwrap();
        std::os::unix::fs::symlink(&secret, root.join("evil")).unwrap();
        assert!(!copy_up(&root, "/evil", &vol2).unwrap());
        assert_eq!(std::fs::read_dir(&vol2).unwrap().count(), 0);
        std::os::unix::fs::symlink("/data", root.join("good")).unwrap();
        assert!(copy_up(&root, "/good", &vol2).unwrap());
        assert!(vol2.join("a").exists());
        assert_eq!(dir_size(&vol2), 5);
    }

    #[test]
    fn mount_options_and_mountinfo() {
        let (f, d) = parse_mount_options("bind,ro,size=10m,noexec");
        assert_eq!(f, libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOEXEC);
        assert_eq!(d, vec!["size=10m"]);
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert!(is_mounted(Path::new("/proc")).unwrap());
        let t = tempfile::tempdir().unwrap();
        assert!(!is_mounted(t.path()).unwrap());
        if unsafe { libc::geteuid() } == 0 {
            mount_fs("tmpfs", t.path(), "tmpfs", "size=1m").unwrap();
            assert!(is_mounted(t.path()).unwrap());
            unmount(t.path()).unwrap();
            assert!(!is_mounted(t.path()).unwrap());
        }
    }
}
