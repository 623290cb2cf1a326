//! Tar writers for a directory tree: an overlay upper dir as an OCI layer (overlay
//! whiteouts become `.wh.` files, opaque dirs get `.wh..wh..opq`), or a plain rootfs
//! (`docker export`).

use berth_api::{Error, Result};
use std::collections::HashMap;
use std::ffi::CString;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn io_err(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("{what} {}: {e}", p.display()))
}

fn lgetxattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    let cp = CString::new(p.as_os_str().as_bytes()).ok()?;
    let ck = CString::new(key).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a live buffer of the given length.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), ck.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// xattrs worth carrying in a layer: file capabilities and user.* (not trusted.* or
/// security.selinux, which belong to the host).
fn portable_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(cp) = CString::new(p.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(cp.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    names
        .split(|b| *b == 0)
        .filter_map(|k| std::str::from_utf8(k).ok())
        .filter(|k| *k == "security.capability" || k.starts_with("user."))
        .filter_map(|k| lgetxattr(p, k).map(|v| (k.to_string(), v)))
        .collect()
}

/// A PAX extended header carrying xattrs for the next entry.
fn pax_xattrs<W: Write>(
    b: &mut tar::Builder<W>,
    xattrs: &[(String, Vec<u8>)],
) -> std::io::Result<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (k, v) in xattrs {
        let key = format!("SCHILY.xattr.{k}");
        // "LEN key=value\n", LEN counting itself.
        let rest = key.len() + v.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeader")?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &data[..])
}

fn base_header(md: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

struct Walker<W: Write> {
    b: tar::Builder<W>,
    overlay: bool,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walker<W> {
    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(|e| io_err("read", dir, e))?
            .collect::<std::io::Result<_>>()
            .map_err(|e| io_err("read", dir, e))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            // Names are bytes: non-UTF-8 names are archived as they are.
            let name = e.file_name();
            let relp = rel.join(&name);
            self.entry(&e.path(), &relp, &name, rel)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, relp: &Path, name: &OsStr, rel_dir: &Path) -> Result<()> {
        let md = fs::symlink_metadata(path).map_err(|e| io_err("stat", path, e))?;
        let ft = md.file_type();
        let werr = |e: std::io::Error| Error::internal(format!("writing layer: {e}"));
        if self.overlay && ft.is_char_device() && md.rdev() == 0 {
            let mut wh_name = OsString::from(".wh.");
            wh_name.push(name);
            let wh = rel_dir.join(wh_name);
            let mut h = base_header(&md, tar::EntryType::Regular);
            self.b
                .append_data(&mut h, wh, std::io::empty())
                .map_err(werr)?;
            return Ok(());
        }
        let xattrs = portable_xattrs(path);
        if ft.is_dir() {
            pax_xattrs(&mut self.b, &xattrs).map_err(werr)?;
            let mut h = base_header(&md, tar::EntryType::Directory);
            self.b
                .append_data(&mut h, relp, std::io::empty())
                .map_err(werr)?;
            if self.overlay && lgetxattr(path, OPAQUE_XATTR).as_deref() == Some(b"y") {
                let mut h = base_header(&md, tar::EntryType::Regular);
                h.set_mode(0o644);
                self.b
                    .append_data(&mut h, relp.join(".wh..wh..opq"), std::io::empty())
                    .map_err(werr)?;
            }
            return self.walk(path, relp);
        }
        if !ft.is_symlink() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                let mut h = base_header(&md, tar::EntryType::Link);
                self.b.append_link(&mut h, relp, first).map_err(werr)?;
                return Ok(());
            }
            self.links.insert(key, relp.to_path_buf());
        }
        pax_xattrs(&mut self.b, &xattrs).map_err(werr)?;
        if ft.is_file() {
            let mut h = base_header(&md, tar::EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(path).map_err(|e| io_err("open", path, e))?;
            self.b.append_data(&mut h, relp, f).map_err(werr)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| io_err("readlink", path, e))?;
            let mut h = base_header(&md, tar::EntryType::Symlink);
            self.b.append_link(&mut h, relp, target).map_err(werr)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            let mut h = base_header(&md, kind);
            if kind != tar::EntryType::Fifo {
                let rdev = md.rdev();
                h.set_device_major(libc::major(rdev)).map_err(werr)?;
                h.set_device_minor(libc::minor(rdev)).map_err(werr)?;
            }
            self.b
                .append_data(&mut h, relp, std::io::empty())
                .map_err(werr)?;
        }
        // Sockets are not archived (docker skips them too).
        Ok(())
    }
}

/// Writes `dir` as a tar. With `overlay`, `dir` is an overlayfs upper dir and its
/// whiteouts/opaque markers are converted to the OCI forms.
pub fn write_tree(dir: &Path, overlay: bool, w: &mut dyn Write) -> Result<()> {
    let mut walker = Walker {
        b: tar::Builder::new(w),
        overlay,
        links: HashMap::new(),
    };
    walker.walk(dir, Path::new(""))?;
    walker
        .b
        .finish()
        .map_err(|e| Error::internal(format!("writing layer: {e}")))?;
    Ok(())
}

/// Whether `rel` exists in the image's lower layers (top first), honouring whiteouts
/// and opaque directories of higher layers.
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for l in lowers {
        let p = l.join(rel);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_char_device() && md.rdev() == 0 => return false,
            Ok(_) => return true,
            Err(_) => {}
        }
        // An opaque ancestor in this layer hides everything below it.
        let mut anc = rel.parent();
        while let Some(a) = anc.filter(|a| !a.as_os_str().is_empty()) {
            if lgetxattr(&l.join(a), OPAQUE_XATTR).as_deref() == Some(b"y") {
                return false;
            }
            anc = a.parent();
        }
    }
    false
}

/// `docker diff`: the container's changes, from its overlay upper dir: whiteouts are
/// deletions, entries also present below are modifications, the rest additions.
pub fn changes(
    upper: &Path,
    lowers: &[PathBuf],
) -> Result<Vec<berth_api::models::FilesystemChange>> {
    use berth_api::models::{ChangeType, FilesystemChange};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let rd = fs::read_dir(&dir).map_err(|e| io_err("read", &dir, e))?;
        for e in rd {
            let e = e.map_err(|e| io_err("read", &dir, e))?;
            let r = rel.join(e.file_name());
            let md = fs::symlink_metadata(e.path()).map_err(|er| io_err("stat", &e.path(), er))?;
            let kind = if md.file_type().is_char_device() && md.rdev() == 0 {
                ChangeType::_2
            } else if in_lowers(lowers, &r) {
                ChangeType::_0
            } else {
                ChangeType::_1
            };
            if md.is_dir() {
                stack.push(r.clone());
            }
            out.push(FilesystemChange {
                path: format!("/{}", r.to_string_lossy()),
                kind,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
