//! overlayfs assembly of a container rootfs.

use berth_api::{Error, Result};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
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
    let lower = lowers
        .iter()
        .map(|p| check(p))
        .collect::<Result<Vec<_>>>()?
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        check(upper)?,
        check(work)?
    );
    // The mount data is limited to one page.
    if data.len() >= 4096 {
        return Err(Error::not_implemented(format!(
            "image has too many layers for one overlay mount ({} layers)",
            lowers.len()
        )));
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

pub fn unmount(target: &Path) -> Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::internal(format!(
            "unmount {}: {e}",
            target.display()
        ))),
    }
}
