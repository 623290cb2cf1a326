//! overlayfs assembly of a container rootfs.

use berth_api::{Error, Result};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// True when something is mounted on `dir` (it sits on another device than `parent`).
pub fn is_mounted(dir: &Path, parent: &Path) -> Result<bool> {
    let a = std::fs::metadata(dir)?;
    let b = std::fs::metadata(parent)?;
    Ok(a.dev() != b.dev())
}

fn check(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::invalid(format!("non-UTF-8 path {}", p.display())))?;
    // ',' and ':' separate overlay options and lower dirs.
    if s.contains([',', ':']) {
        return Err(Error::invalid(format!(
            "path {s:?} cannot be used in an overlay mount"
        )));
    }
    Ok(s.to_string())
}

/// `lowers` top layer first.
pub fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let lower_strs = lowers
        .iter()
        .map(|p| check(p))
        .collect::<Result<Vec<_>>>()?;
    let (upper, work) = (check(upper)?, check(work)?);
    let data = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        lower_strs.join(":")
    );
    // mount(2) data is limited to one page; beyond that (many layers) use the new mount
    // API, which takes one "lowerdir+" per layer (Linux 6.8+).
    if data.len() >= 4000 {
        return mount_overlay_fsconfig(&lower_strs, &upper, &work, target);
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| Error::internal(format!("mount overlay on {}: {e}", target.display())))
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid("path contains a NUL byte"))
}

fn mount_overlay_fsconfig(lowers: &[String], upper: &str, work: &str, target: &Path) -> Result<()> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let fail = |what: &str| {
        Error::internal(format!(
            "mount overlay on {} ({} layers): {what}: {}",
            target.display(),
            lowers.len(),
            Errno::last()
        ))
    };
    let fstype = cstr("overlay")?;
    // SAFETY: plain syscalls with valid NUL-terminated strings; returned fds are owned below.
    let fsfd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if fsfd < 0 {
        return Err(fail("fsopen"));
    }
    // SAFETY: fsfd is a fresh fd we own.
    let fsfd = unsafe { OwnedFd::from_raw_fd(fsfd as i32) };
    let set = |key: &str, val: &str| -> Result<()> {
        let (k, v) = (cstr(key)?, cstr(val)?);
        // SAFETY: valid fd and strings.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fsfd.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        if r < 0 {
            return Err(fail(&format!("fsconfig {key}")));
        }
        Ok(())
    };
    for l in lowers {
        set("lowerdir+", l)?;
    }
    set("upperdir", upper)?;
    set("workdir", work)?;
    // SAFETY: valid fd; null key/value are what FSCONFIG_CMD_CREATE expects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fsfd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(fail("fsconfig create"));
    }
    // SAFETY: valid fd.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mfd < 0 {
        return Err(fail("fsmount"));
    }
    // SAFETY: mfd is a fresh fd we own.
    let mfd = unsafe { OwnedFd::from_raw_fd(mfd as i32) };
    let empty = cstr("")?;
    let tgt = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("path contains a NUL byte"))?;
    // SAFETY: valid fds and strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mfd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            tgt.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(fail("move_mount"));
    }
    Ok(())
}

pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::internal(format!(
            "unmount {}: {e}",
            target.display()
        ))),
    }
}
