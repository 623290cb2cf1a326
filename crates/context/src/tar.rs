//! The build-context tar stream `docker build` sends for a local directory, as docker/cli
//! makes it: `ValidateContextDirectory` first (so unreadable files fail the build before
//! anything is sent), then `TrimBuildFilesFromExcludes` and moby's
//! `archive.TarWithOptions` with the owner forced to 0:0.
//!
//! Headers are written the way Go's `archive/tar` writes them (USTAR, with a PAX extended
//! header only when a name, link target, size or time does not fit), so the stream reads
//! the same in Go and Rust tar readers.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::ignore::{read_dockerignore, IgnoreError, MatchInfo, Matcher};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("error checking context: can't stat '{}'", .0.display())]
    CantStat(PathBuf),
    #[error("error checking context: file ('{}') not found or excluded by .dockerignore", .0.display())]
    NotFound(PathBuf),
    #[error("error checking context: no permission to read from '{}'", .0.display())]
    NoPermission(PathBuf),
    #[error("error checking context: {op} {}: {source}", .path.display())]
    Check {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("context must be a directory: {}", .0.display())]
    NotADirectory(PathBuf),
    #[error("error reading {}: {source}", .path.display())]
    ReadIgnore { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    #[error("can't add file {} to the build context: {source}", .path.display())]
    AddFile { path: PathBuf, source: io::Error },
    #[error("{} changed size while it was being added to the build context", .0.display())]
    Changed(PathBuf),
    #[error("writing the build context: {0}")]
    Write(io::Error),
}

/// Reads `<dir>/.dockerignore` (an empty matcher when there is none).
pub fn load_context_ignore(dir: &Path) -> Result<Matcher, ContextError> {
    let path = dir.join(".dockerignore");
    match fs::read(&path) {
        // Go reads the bytes as they are; invalid UTF-8 only matters for odd file names.
        Ok(bytes) => Ok(Matcher::new(&read_dockerignore(&String::from_utf8_lossy(
            &bytes,
        )))?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Matcher::default()),
        Err(source) => Err(ContextError::ReadIgnore { path, source }),
    }
}

/// Writes the build context of `dir` as an uncompressed tar to `w`.
///
/// `ignore` holds the `.dockerignore` patterns (see [`load_context_ignore`]);
/// `dockerfile_rel` is the Dockerfile's '/'-separated path relative to `dir`, or `None`
/// when the Dockerfile does not come from the context (stdin). The Dockerfile and
/// `.dockerignore` are sent even when the patterns exclude them.
///
/// Entries come in walk order (names sorted bytewise, a directory before its contents),
/// named relative to `dir` (directories end in '/'), owned by 0:0 without user/group
/// names, with mode bits and mtime (whole seconds) kept. Symlinks are stored, not followed;
/// further links to an inode already stored become hard links to the first name. Sockets,
/// fifos and device nodes are left out. Excluded directories are walked only when an
/// exception could re-include something below them.
pub fn write_context(
    dir: &Path,
    dockerfile_rel: Option<&str>,
    ignore: &Matcher,
    w: &mut dyn Write,
) -> Result<(), ContextError> {
    // docker resolves a symlinked context directory before walking it.
    let meta = fs::metadata(dir).map_err(|e| walk_error(dir, e, "stat"))?;
    if !meta.is_dir() {
        return Err(ContextError::NotADirectory(dir.to_path_buf()));
    }
    validate_dir(dir, &[], ignore)?;

    let matcher = ignore.keeping_build_files(dockerfile_rel)?;
    let mut walk = TarWalk {
        matcher: &matcher,
        w,
        seen: HashMap::new(),
    };
    walk.dir(dir, &[], None, false)?;
    // End of archive: two zero blocks.
    walk.w.write_all(&[0u8; 1024]).map_err(ContextError::Write)
}

/// docker/cli's messages for a failing walk.
fn walk_error(path: &Path, e: io::Error, op: &'static str) -> ContextError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => ContextError::CantStat(path.to_path_buf()),
        io::ErrorKind::NotFound => ContextError::NotFound(path.to_path_buf()),
        _ => ContextError::Check {
            op,
            path: path.to_path_buf(),
            source: e,
        },
    }
}

fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        out.extend_from_slice(rel);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Directory entries sorted by name bytes, like Go's `os.ReadDir`.
fn read_sorted(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// `ValidateContextDirectory`: every path the original patterns keep must be stat-able and
/// every such regular file openable. Excluded directories are not entered.
fn validate_dir(dir: &Path, rel: &[u8], ignore: &Matcher) -> Result<(), ContextError> {
    let names = read_sorted(dir).map_err(|e| walk_error(dir, e, "open"))?;
    for name in names {
        let path = dir.join(&name);
        let child_rel = join_rel(rel, name.as_bytes());
        let meta = fs::symlink_metadata(&path).map_err(|e| walk_error(&path, e, "lstat"))?;
        if ignore.is_excluded(&String::from_utf8_lossy(&child_rel)) {
            continue;
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            validate_dir(&path, &child_rel, ignore)?;
        } else if ft.is_file() {
            // Only a permission problem is reported, as docker does.
            if let Err(e) = fs::File::open(&path) {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    return Err(ContextError::NoPermission(path));
                }
            }
        }
    }
    Ok(())
}

struct TarWalk<'a> {
    matcher: &'a Matcher,
    w: &'a mut dyn Write,
    /// First archived name of each multiply-linked inode.
    seen: HashMap<(u64, u64), Vec<u8>>,
}

impl TarWalk<'_> {
    /// `speculative`: we are below an excluded directory, walked only for exceptions. Those
    /// paths were not validated, and docker skips what it cannot read there.
    fn dir(
        &mut self,
        dir: &Path,
        rel: &[u8],
        parent: Option<&MatchInfo>,
        speculative: bool,
    ) -> Result<(), ContextError> {
        let names = match read_sorted(dir) {
            Ok(n) => n,
            Err(_) if speculative => return Ok(()),
            Err(source) => {
                return Err(ContextError::AddFile {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let root_info = MatchInfo::default();
        for name in names {
            let path = dir.join(&name);
            let child_rel = join_rel(rel, name.as_bytes());
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) if speculative => continue,
                Err(source) => return Err(ContextError::AddFile { path, source }),
            };
            let rel_str = String::from_utf8_lossy(&child_rel);
            let (skip, info) = self
                .matcher
                .matches_using_parent_results(&rel_str, parent.unwrap_or(&root_info));
            if skip {
                if meta.is_dir() && self.matcher.may_contain_exceptions(&rel_str) {
                    self.dir(&path, &child_rel, Some(&info), true)?;
                }
                continue;
            }
            self.add(&path, &child_rel, &meta, speculative)?;
            if meta.is_dir() {
                self.dir(&path, &child_rel, Some(&info), speculative)?;
            }
        }
        Ok(())
    }

    /// moby's `addTarFile`.
    fn add(
        &mut self,
        path: &Path,
        rel: &[u8],
        meta: &fs::Metadata,
        speculative: bool,
    ) -> Result<(), ContextError> {
        let ft = meta.file_type();
        let mut name = rel.to_vec();
        let mut link = Vec::new();
        let mut size = 0;
        let mut typeflag = if ft.is_dir() {
            name.push(b'/');
            b'5'
        } else if ft.is_file() {
            size = meta.len();
            b'0'
        } else if ft.is_symlink() {
            match fs::read_link(path) {
                Ok(target) => link = target.as_os_str().as_bytes().to_vec(),
                Err(_) if speculative => return Ok(()),
                Err(source) => {
                    return Err(ContextError::AddFile {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
            b'2'
        } else {
            // Sockets cannot be archived (docker skips them too); fifos and devices have no
            // business in a build context.
            debug_assert!(
                ft.is_socket() || ft.is_fifo() || ft.is_block_device() || ft.is_char_device()
            );
            return Ok(());
        };
        if !ft.is_dir() && meta.nlink() > 1 {
            match self.seen.get(&(meta.dev(), meta.ino())) {
                Some(first) => {
                    typeflag = b'1';
                    link = first.clone();
                    size = 0;
                }
                None => {
                    self.seen.insert((meta.dev(), meta.ino()), name.clone());
                }
            }
        }
        // Open before writing the header: a header without its data would corrupt the stream.
        let file = if typeflag == b'0' && size > 0 {
            match fs::File::open(path) {
                Ok(f) => Some(f),
                Err(_) if speculative => return Ok(()),
                Err(source) => {
                    return Err(ContextError::AddFile {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        } else {
            None
        };
        let entry = Entry {
            name: &name,
            link: &link,
            typeflag,
            mode: meta.mode() & 0o7777,
            size,
            mtime: meta.mtime(),
        };
        entry.write_header(self.w).map_err(ContextError::Write)?;
        if let Some(file) = file {
            let copied = copy_data(file, size, self.w).map_err(|e| match e {
                CopyError::Read(source) => ContextError::AddFile {
                    path: path.to_path_buf(),
                    source,
                },
                CopyError::Write(e) => ContextError::Write(e),
            })?;
            if copied != size {
                return Err(ContextError::Changed(path.to_path_buf()));
            }
            pad(self.w, size).map_err(ContextError::Write)?;
        }
        Ok(())
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies at most `size` bytes (a file that grew is cut at its stat size, as Go's tar writer
/// would refuse the rest); returns how many were copied.
fn copy_data(file: fs::File, size: u64, w: &mut dyn Write) -> Result<u64, CopyError> {
    let mut src = file.take(size);
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        copied += n as u64;
    }
}

/// Zero padding up to the next 512-byte block.
fn pad(w: &mut dyn Write, size: u64) -> io::Result<()> {
    let rem = (size % 512) as usize;
    if rem != 0 {
        w.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

const BLOCK: usize = 512;
/// Largest value of an 11-digit octal field (size, mtime).
const MAX_OCTAL_11: u64 = 0o77777777777;

/// One archive member's header fields.
struct Entry<'a> {
    name: &'a [u8],
    link: &'a [u8],
    typeflag: u8,
    mode: u32,
    size: u64,
    mtime: i64,
}

impl Entry<'_> {
    /// Go's `tar.Writer.WriteHeader` for a header with Format PAX, uid/gid 0 and no
    /// user/group names: plain USTAR when everything fits, else a PAX 'x' header first.
    fn write_header(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut ustar_ok = true;
        let mut split = None;
        if !self.name.is_ascii() || self.name.len() > 100 {
            pax.push(("path", self.name.to_vec()));
            split = split_ustar_path(self.name);
            if split.is_none() {
                ustar_ok = false;
            }
        }
        if !self.link.is_ascii() || self.link.len() > 100 {
            pax.push(("linkpath", self.link.to_vec()));
            ustar_ok = false;
        }
        if self.size > MAX_OCTAL_11 {
            pax.push(("size", self.size.to_string().into_bytes()));
            ustar_ok = false;
        }
        if self.mtime < 0 || self.mtime as u64 > MAX_OCTAL_11 {
            pax.push(("mtime", self.mtime.to_string().into_bytes()));
            ustar_ok = false;
        }

        let mut blk = [0u8; BLOCK];
        if ustar_ok {
            let (prefix, name) = split.unwrap_or((&[][..], self.name));
            put_str(&mut blk[0..100], name);
            put_str(&mut blk[157..257], self.link);
            put_str(&mut blk[345..500], prefix);
        } else {
            pax.sort_by(|a, b| a.0.cmp(b.0));
            let mut data = Vec::new();
            for (k, v) in &pax {
                data.extend_from_slice(&pax_record(k, v));
            }
            write_pax_header(w, self.name, &data)?;
            // The plain fields carry what fits; readers use the PAX records.
            put_str(&mut blk[0..100], &to_ascii(self.name));
            put_str(&mut blk[157..257], &to_ascii(self.link));
        }
        blk[156] = self.typeflag;
        put_octal(&mut blk[100..108], u64::from(self.mode));
        put_octal(&mut blk[108..116], 0);
        put_octal(&mut blk[116..124], 0);
        put_octal(&mut blk[124..136], self.size);
        put_octal(&mut blk[136..148], u64::try_from(self.mtime).unwrap_or(0));
        put_octal(&mut blk[329..337], 0);
        put_octal(&mut blk[337..345], 0);
        finish_block(&mut blk);
        w.write_all(&blk)
    }
}

/// Go's `splitUSTARPath`: (prefix, name) when an ASCII name longer than 100 bytes can be
/// split at a '/' into the 155-byte prefix and 100-byte name fields.
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut length = name.len();
    if length <= 100 || !name.is_ascii() {
        return None;
    } else if length > 155 + 1 {
        length = 155 + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&b| b == b'/')?;
    let nlen = name.len() - i - 1;
    if i == 0 || nlen > 100 || nlen == 0 || i > 155 {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Go's `formatPAXRecord`: "<len> <key>=<value>\n", where len counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut size = base + base.to_string().len();
    if size.to_string().len() + base != size {
        size = base + size.to_string().len();
    }
    let mut rec = format!("{size} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

/// Go's `writeRawFile` for the 'x' header: named `<dir>/PaxHeaders.0/<base>`.
fn write_pax_header(w: &mut dyn Write, real_name: &[u8], data: &[u8]) -> io::Result<()> {
    let cut = real_name
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    let (dir, file) = real_name.split_at(cut);
    let mut name = dir.to_vec();
    name.extend_from_slice(b"PaxHeaders.0");
    if !file.is_empty() {
        name.push(b'/');
        name.extend_from_slice(file);
    }
    let mut name = to_ascii(&name);
    name.truncate(100);
    while name.last() == Some(&b'/') {
        name.pop();
    }
    let mut blk = [0u8; BLOCK];
    put_str(&mut blk[0..100], &name);
    blk[156] = b'x';
    put_octal(&mut blk[100..108], 0);
    put_octal(&mut blk[108..116], 0);
    put_octal(&mut blk[116..124], 0);
    put_octal(&mut blk[124..136], data.len() as u64);
    put_octal(&mut blk[136..148], 0);
    finish_block(&mut blk);
    w.write_all(&blk)?;
    w.write_all(data)?;
    pad(w, data.len() as u64)
}

/// Go's `toASCII`: drops non-ASCII bytes and NULs.
fn to_ascii(s: &[u8]) -> Vec<u8> {
    s.iter().copied().filter(|&b| b != 0 && b < 0x80).collect()
}

/// Copies a string into a field, truncating, NUL-terminated when shorter.
fn put_str(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
}

/// Zero-padded octal with a trailing NUL; 0 when it does not fit (Go's last resort).
fn put_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let mut s = format!("{v:0digits$o}");
    if s.len() > digits {
        s = "0".repeat(digits);
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// USTAR magic and version, then the checksum ("%06o\0 " over the block with the checksum
/// field counted as spaces).
fn finish_block(blk: &mut [u8; BLOCK]) {
    blk[257..263].copy_from_slice(b"ustar\0");
    blk[263..265].copy_from_slice(b"00");
    blk[148..156].copy_from_slice(b"        ");
    let sum: u64 = blk.iter().map(|&b| u64::from(b)).sum();
    put_octal(&mut blk[148..155], sum);
    blk[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::time::{Duration, SystemTime};

    /// One archive member as read back: (name, type, link target, content).
    #[derive(Debug, PartialEq)]
    struct Member {
        name: String,
        kind: char,
        link: String,
        data: Vec<u8>,
        mode: u32,
        mtime: u64,
    }

    fn members(tar_bytes: &[u8]) -> Vec<Member> {
        let mut out = Vec::new();
        let mut ar = ::tar::Archive::new(tar_bytes);
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            assert_eq!(h.uid().expect("uid"), 0);
            assert_eq!(h.gid().expect("gid"), 0);
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            assert!(h.as_ustar().is_some(), "ustar header");
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            let kind = match h.entry_type() {
                ::tar::EntryType::Regular => 'f',
                ::tar::EntryType::Directory => 'd',
                ::tar::EntryType::Symlink => 'l',
                ::tar::EntryType::Link => 'h',
                other => panic!("unexpected entry type {other:?}"),
            };
            out.push(Member {
                name,
                kind,
                link,
                data,
                mode: h.mode().expect("mode"),
                mtime: h.mtime().expect("mtime"),
            });
        }
        out
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        members(tar_bytes).into_iter().map(|m| m.name).collect()
    }

    fn write(dir: &Path, rel: &str, content: &str) {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(p, content).expect("write");
    }

    fn build(dir: &Path, dockerfile: Option<&str>) -> Result<Vec<u8>, ContextError> {
        let ignore = load_context_ignore(dir)?;
        let mut out = Vec::new();
        write_context(dir, dockerfile, &ignore, &mut out)?;
        Ok(out)
    }

    #[test]
    fn entries_exceptions_and_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(
            d,
            ".dockerignore",
            "# docs\n*.md\n!README.md\n**/*.log\ndir\n!dir/keep\n",
        );
        write(d, "Dockerfile", "FROM scratch\n");
        write(d, "README.md", "readme");
        write(d, "CHANGES.md", "changes");
        write(d, "a.log", "");
        write(d, "src/main.rs", "fn main() {}\n");
        write(d, "src/debug.log", "");
        write(d, "src/deep/x.log", "");
        write(d, "src/deep/y.txt", "y");
        write(d, "src/notes.md", "nested md is kept: * does not cross /");
        write(d, "dir/other", "");
        write(d, "dir/keep", "kept");
        symlink("src/main.rs", d.join("link")).expect("symlink");
        symlink("/nowhere/at/all", d.join("dangling")).expect("symlink");
        symlink("src", d.join("srclink")).expect("symlink");

        let tar = build(d, Some("Dockerfile")).expect("context");
        assert_eq!(
            names(&tar),
            [
                ".dockerignore",
                "Dockerfile",
                "README.md",
                "dangling",
                "dir/keep",
                "link",
                "src/",
                "src/deep/",
                "src/deep/y.txt",
                "src/main.rs",
                "src/notes.md",
                "srclink",
            ]
        );
        let all = members(&tar);
        let get = |n: &str| all.iter().find(|m| m.name == n).expect(n);
        assert_eq!(get("link").kind, 'l');
        assert_eq!(get("link").link, "src/main.rs");
        assert_eq!(get("dangling").link, "/nowhere/at/all");
        assert_eq!(get("srclink").kind, 'l', "symlinked dirs are not followed");
        assert_eq!(get("src/").kind, 'd');
        assert_eq!(get("dir/keep").data, b"kept");
        assert_eq!(get("Dockerfile").data, b"FROM scratch\n");
        // The archive ends with two zero blocks and is block aligned.
        assert_eq!(tar.len() % 512, 0);
        assert!(tar[tar.len() - 1024..].iter().all(|&b| b == 0));
    }

    #[test]
    fn modes_and_mtimes_are_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(d, "bin/tool", "#!/bin/sh\n");
        write(d, "secret", "s");
        fs::set_permissions(d.join("bin/tool"), fs::Permissions::from_mode(0o4755)).expect("chmod");
        fs::set_permissions(d.join("secret"), fs::Permissions::from_mode(0o640)).expect("chmod");
        fs::set_permissions(d.join("bin"), fs::Permissions::from_mode(0o1750)).expect("chmod");
        let when = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 987_654_321);
        fs::File::options()
            .write(true)
            .open(d.join("secret"))
            .and_then(|f| f.set_modified(when))
            .expect("set mtime");

        let tar = build(d, None).expect("context");
        let all = members(&tar);
        let get = |n: &str| all.iter().find(|m| m.name == n).expect(n);
        assert_eq!(get("bin/tool").mode, 0o4755);
        assert_eq!(get("bin/").mode, 0o1750);
        assert_eq!(get("secret").mode, 0o640);
        assert_eq!(get("secret").mtime, 1_600_000_000, "whole seconds");
    }

    #[test]
    fn dockerfile_and_dockerignore_are_always_sent() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(
            d,
            ".dockerignore",
            "Dockerfile\n.dockerignore\n*.txt\nbuild\n",
        );
        write(d, "Dockerfile", "FROM scratch\n");
        write(d, "a.txt", "");
        write(d, "build/Dockerfile", "FROM scratch\n");
        write(d, "build/other", "");
        write(d, "keep.rs", "");

        assert_eq!(
            names(&build(d, Some("Dockerfile")).expect("ctx")),
            [".dockerignore", "Dockerfile", "keep.rs"]
        );
        // A Dockerfile inside an excluded directory: only the file, not its directory.
        assert_eq!(
            names(&build(d, Some("build/Dockerfile")).expect("ctx")),
            [".dockerignore", "build/Dockerfile", "keep.rs"]
        );
        // Dockerfile from stdin: the context's Dockerfile stays excluded.
        assert_eq!(
            names(&build(d, None).expect("ctx")),
            [".dockerignore", "keep.rs"]
        );
    }

    #[test]
    fn excluded_dirs_are_entered_only_for_exceptions() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(
            d,
            ".dockerignore",
            "vendor\n!vendor/keep\nnode_modules\n!**/keep.js\n",
        );
        write(d, "vendor/keep/a", "");
        write(d, "vendor/drop/b", "");
        write(d, "node_modules/keep.js", "");
        write(d, "x", "");
        // "!**/keep.js" does not start with "node_modules/", so docker never looks inside.
        assert_eq!(
            names(&build(d, None).expect("ctx")),
            [".dockerignore", "vendor/keep/", "vendor/keep/a", "x"]
        );
    }

    #[test]
    fn hardlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(d, "a", "same inode");
        fs::hard_link(d.join("a"), d.join("b")).expect("link");
        fs::create_dir(d.join("sub")).expect("mkdir");
        fs::hard_link(d.join("a"), d.join("sub/c")).expect("link");

        let all = members(&build(d, None).expect("ctx"));
        let view: Vec<(&str, char, &str)> = all
            .iter()
            .map(|m| (m.name.as_str(), m.kind, m.link.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                ("a", 'f', ""),
                ("b", 'h', "a"),
                ("sub/", 'd', ""),
                ("sub/c", 'h', "a")
            ]
        );
        assert_eq!(all[0].data, b"same inode");

        // When the first name is excluded, the next one carries the data.
        write(d, ".dockerignore", "a\n");
        let all = members(&build(d, None).expect("ctx"));
        let view: Vec<(&str, char, &str)> = all
            .iter()
            .map(|m| (m.name.as_str(), m.kind, m.link.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                (".dockerignore", 'f', ""),
                ("b", 'f', ""),
                ("sub/", 'd', ""),
                ("sub/c", 'h', "b")
            ]
        );
    }

    #[test]
    fn special_files_are_skipped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(d, "file", "");
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).expect("bind");
        let fifo = std::process::Command::new("mkfifo")
            .arg(d.join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(fifo.success());
        assert_eq!(names(&build(d, None).expect("ctx")), ["file"]);
    }

    #[test]
    fn long_and_non_ascii_names() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        // 150 bytes: fits USTAR's prefix/name split.
        let mid = format!("{}/{}", "p".repeat(60), "n".repeat(89));
        // Longer than 255: needs a PAX path record.
        let long = format!(
            "{}/{}/{}",
            "a".repeat(100),
            "b".repeat(100),
            "c".repeat(100)
        );
        write(d, &mid, "mid");
        write(d, &long, "long");
        write(d, "héllo", "utf8");
        let target = "t".repeat(150);
        symlink(&target, d.join("longlink")).expect("symlink");

        let tar = build(d, None).expect("ctx");
        let all = members(&tar);
        let get = |n: &str| {
            all.iter()
                .find(|m| m.name == n)
                .unwrap_or_else(|| panic!("{n} in {all:?}"))
        };
        assert_eq!(get(&mid).data, b"mid");
        assert_eq!(get(&long).data, b"long");
        assert_eq!(get("héllo").data, b"utf8");
        assert_eq!(get("longlink").link, target);
        assert_eq!(get(&format!("{}/", "a".repeat(100))).kind, 'd');

        // The 150-byte name went into prefix + name, without PAX.
        let mut ar = ::tar::Archive::new(&tar[..]);
        let mut saw_split = false;
        for e in ar.entries().expect("entries") {
            let e = e.expect("entry");
            let h = e.header();
            if let Some(u) = h.as_ustar() {
                if u.prefix[0] != 0 && e.path_bytes().as_ref() == mid.as_bytes() {
                    saw_split = true;
                }
            }
        }
        assert!(saw_split);
    }

    #[test]
    fn header_bytes_match_go() {
        // What Go's archive/tar writes for a small file owned by 0:0 (checked by hand
        // against the USTAR layout).
        let entry = Entry {
            name: b"hello.txt",
            link: b"",
            typeflag: b'0',
            mode: 0o644,
            size: 5,
            mtime: 1_700_000_000,
        };
        let mut out = Vec::new();
        entry.write_header(&mut out).expect("write");
        assert_eq!(out.len(), 512);
        assert_eq!(&out[..9], b"hello.txt");
        assert_eq!(&out[100..108], b"0000644\0");
        assert_eq!(&out[108..116], b"0000000\0");
        assert_eq!(&out[124..136], b"00000000005\0");
        assert_eq!(
            &out[136..148],
            format!("{:011o}\0", 1_700_000_000).as_bytes()
        );
        assert_eq!(out[156], b'0');
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[329..345], b"0000000\x000000000\x00");
        let sum: u64 = out
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        assert_eq!(&out[148..156], format!("{sum:06o}\0 ").as_bytes());

        assert_eq!(pax_record("path", b"abc"), b"12 path=abc\n");
        // Length crossing a digit boundary: "100 ..." counts its own third digit.
        let rec = pax_record("path", &[b'x'; 91]);
        assert_eq!(rec.len(), 101);
        assert!(rec.starts_with(b"101 path="));
        assert_eq!(pax_record("path", &[b'x'; 89]).len(), 98);
        assert_eq!(split_ustar_path(b"short"), None);
    }

    #[test]
    fn errors_name_the_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("missing");
        let err = build_with_empty_ignore(&missing).expect_err("missing dir");
        assert_eq!(
            err.to_string(),
            format!(
                "error checking context: file ('{}') not found or excluded by .dockerignore",
                missing.display()
            )
        );
        let file = tmp.path().join("file");
        fs::write(&file, "").expect("write");
        let err = build_with_empty_ignore(&file).expect_err("file");
        assert!(matches!(err, ContextError::NotADirectory(_)), "{err}");

        write(tmp.path(), "ctx/.dockerignore", "ok\nbad[\n");
        let err = load_context_ignore(&tmp.path().join("ctx")).expect_err("bad pattern");
        assert_eq!(err.to_string(), "syntax error in pattern: bad[");
        assert!(load_context_ignore(tmp.path())
            .expect("no file")
            .patterns()
            .is_empty());
    }

    fn build_with_empty_ignore(dir: &Path) -> Result<Vec<u8>, ContextError> {
        let mut out = Vec::new();
        write_context(dir, Some("Dockerfile"), &Matcher::default(), &mut out)?;
        Ok(out)
    }
}
