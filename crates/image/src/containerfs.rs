//! A container's filesystem as `docker cp` and the archive API see it: the rootfs with the
//! container's volumes, binds and /etc files laid over it.
//!
//! Those mounts exist only inside the container's mount namespace, so here each mount's
//! host source stands in for its destination, and paths are resolved in userspace one
//! component at a time: every step opens a single name below a directory fd with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, and a symlink met on the way is read
//! and resolved against the container's root (as `RESOLVE_IN_ROOT` would), never the
//! host's. Trees are read and written through fds only, so a container that swaps a
//! directory for a symlink while a copy runs cannot steer it outside (the
//! CVE-2018-15664 kind of race).

use berth_api::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Symlinks followed in one resolution before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

// Go's os.FileMode bits, as the path-stat header carries them.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

/// One volume, bind or container file as cp sees it: `destination` in the container is
/// `source` on the host.
#[derive(Debug, Clone)]
pub struct FsMount {
    pub destination: String,
    pub source: PathBuf,
    pub rw: bool,
    /// A user volume or bind: docker lets writes into one pass a read-only rootfs.
    pub volume: bool,
}

/// docker's ContainerPathStat (HEAD/GET /containers/{id}/archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go `os.FileMode` bits.
    pub mode: u32,
    /// RFC 3339.
    pub mtime: String,
    /// For a symlink: where it leads in the container, fully resolved.
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & GO_MODE_DIR != 0
    }

    /// The `X-Docker-Container-Path-Stat` header value: base64 of the JSON.
    pub fn header_value(&self) -> String {
        let json = serde_json::json!({
            "name": self.name,
            "size": self.size,
            "mode": self.mode,
            "mtime": self.mtime,
            "linkTarget": self.link_target,
        });
        base64(json.to_string().as_bytes())
    }
}

/// PUT /containers/{id}/archive options.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory or the other way round.
    pub no_overwrite_dir_non_dir: bool,
    /// Owner for every entry (`copyUIDGID` with a container user) instead of the archive's.
    pub chown: Option<(u32, u32)>,
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

type Comps = Vec<OsString>;

fn sys(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens one relative path below `dir`, refusing any symlink and anything outside `dir`.
fn open_beneath(dir: RawFd, rel: &OsStr, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    openat2(dir, rel, how).map(owned)
}

/// Reopens what an O_PATH fd refers to with real access flags (same inode, no lookup).
fn reopen(fd: &OwnedFd, flags: libc::c_int) -> io::Result<File> {
    let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path; the fd is owned on success.
    let r = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(owned(r)))
}

fn file_type(st: &FileStat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

fn join_comps(c: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, p) in c.iter().enumerate() {
        if i > 0 {
            out.push("/");
        }
        out.push(p);
    }
    out
}

/// "/a/b" for container components.
fn show(c: &[OsString]) -> String {
    format!("/{}", join_comps(c).to_string_lossy())
}

/// Lexical clean of a container path (Go's filepath.Clean of "/" + p): "." and empty
/// components dropped, ".." pops (never above the root).
fn clean_abs(p: &[u8]) -> Comps {
    let mut out: Comps = Vec::new();
    for c in p.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            n => out.push(OsString::from_vec(n.to_vec())),
        }
    }
    out
}

/// An archive entry name as components below the extraction point: a leading "/" is
/// the extraction point itself; ".." climbing above it is docker's breakout error.
fn clean_entry(name: &[u8], shown: &str, dest: &str) -> Result<Comps> {
    let abs = name.first() == Some(&b'/');
    let mut out: Comps = Vec::new();
    for c in name.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() && !abs {
                    return Err(Error::invalid(format!(
                        "invalid archive entry {shown:?}: it is outside of {dest:?}"
                    )));
                }
            }
            n => out.push(OsString::from_vec(n.to_vec())),
        }
    }
    Ok(out)
}

/// Go's filepath.Base of the absolute path the client asked for (trailing "/" ignored,
/// "." kept, "/" for the root).
fn go_base(path: &str) -> String {
    let abs = format!("/{path}");
    let t = abs.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    let t = if t.ends_with("/.") || t == "/." {
        "."
    } else {
        t
    };
    // Lexical clean of everything but a trailing "." (docker keeps it).
    if t == "." {
        return ".".into();
    }
    let comps = clean_abs(t.as_bytes());
    match comps.last() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => "/".into(),
    }
}

fn go_mode(st: &FileStat) -> u32 {
    let m = st.st_mode;
    let mut out = m & 0o777;
    if m & libc::S_ISUID != 0 {
        out |= GO_MODE_SETUID;
    }
    if m & libc::S_ISGID != 0 {
        out |= GO_MODE_SETGID;
    }
    if m & libc::S_ISVTX != 0 {
        out |= GO_MODE_STICKY;
    }
    out |= match m & libc::S_IFMT {
        libc::S_IFDIR => GO_MODE_DIR,
        libc::S_IFLNK => GO_MODE_SYMLINK,
        libc::S_IFBLK => GO_MODE_DEVICE,
        libc::S_IFCHR => GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        libc::S_IFIFO => GO_MODE_NAMED_PIPE,
        libc::S_IFSOCK => GO_MODE_SOCKET,
        _ => 0,
    };
    out
}

fn rfc3339(secs: i64, nsec: i64) -> String {
    chrono::DateTime::from_timestamp(secs, nsec.clamp(0, 999_999_999) as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

struct Mnt {
    comps: Comps,
    /// O_PATH fd of the host source.
    fd: OwnedFd,
    is_dir: bool,
    rw: bool,
    volume: bool,
}

/// Where a container path lives: a mount (by index) or the rootfs, and the rest of the
/// path below it.
struct Located<'a> {
    mount: Option<usize>,
    rest: &'a [OsString],
}

/// A container's rootfs and mounts, opened for cp.
pub struct ContainerFs {
    root: OwnedFd,
    mounts: Vec<Mnt>,
    readonly_rootfs: bool,
}

impl ContainerFs {
    /// Opens the (mounted) `rootfs` with `mounts` laid over it. Mount destinations are
    /// resolved inside the container as the runtime resolved them (parents first); a
    /// mount whose source cannot be opened is left out.
    pub fn open(rootfs: &Path, mounts: &[FsMount], readonly_rootfs: bool) -> Result<Self> {
        let root = File::open(rootfs)
            .map_err(|e| sys(&format!("open {}", rootfs.display()), e))?
            .into();
        let mut fs = ContainerFs {
            root,
            mounts: Vec::new(),
            readonly_rootfs,
        };
        let mut sorted: Vec<(Comps, &FsMount)> = mounts
            .iter()
            .map(|m| (clean_abs(m.destination.as_bytes()), m))
            .filter(|(c, _)| !c.is_empty())
            .collect();
        sorted.sort_by_key(|(c, _)| c.len());
        for (lexical, m) in sorted {
            // O_PATH: a bind of a socket or an unreadable file is still a mount point.
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH)
                .open(&m.source);
            let src = match opened.and_then(|f| f.metadata().map(|md| (f, md.is_dir()))) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("cp: mount source {}: {e}", m.source.display());
                    continue;
                }
            };
            let comps = fs.walk(&lexical, true, false).unwrap_or(lexical);
            let mnt = Mnt {
                comps,
                fd: src.0.into(),
                is_dir: src.1,
                rw: m.rw,
                volume: m.volume,
            };
            // A later mount at the same place (a user bind over an /etc file) wins.
            match fs.mounts.iter().position(|x| x.comps == mnt.comps) {
                Some(i) => fs.mounts[i] = mnt,
                None => fs.mounts.push(mnt),
            }
        }
        Ok(fs)
    }

    fn locate<'a>(&self, comps: &'a [OsString]) -> Located<'a> {
        let mut best: Option<usize> = None;
        for (i, m) in self.mounts.iter().enumerate() {
            if comps.starts_with(&m.comps)
                && best.is_none_or(|b| self.mounts[b].comps.len() < m.comps.len())
            {
                best = Some(i);
            }
        }
        let n = best.map(|b| self.mounts[b].comps.len()).unwrap_or(0);
        Located {
            mount: best,
            rest: &comps[n..],
        }
    }

    fn mount_at(&self, comps: &[OsString]) -> Option<&Mnt> {
        self.mounts.iter().find(|m| m.comps == comps)
    }

    /// Opens a resolved container path (no symlinks in it but possibly the last
    /// component, which is never followed with O_NOFOLLOW|O_PATH).
    fn open_at(&self, comps: &[OsString], flags: OFlag) -> nix::Result<OwnedFd> {
        let loc = self.locate(comps);
        let (base, is_dir) = match loc.mount {
            Some(i) => (&self.mounts[i].fd, self.mounts[i].is_dir),
            None => (&self.root, true),
        };
        if loc.rest.is_empty() {
            if !is_dir {
                // A bind-mounted file: its O_PATH fd reopened.
                return reopen(base, flags.bits() & !libc::O_NOFOLLOW)
                    .map(OwnedFd::from)
                    .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)));
            }
            return open_beneath(base.as_raw_fd(), OsStr::new("."), flags, Mode::empty());
        }
        if !is_dir {
            return Err(Errno::ENOTDIR);
        }
        open_beneath(
            base.as_raw_fd(),
            &join_comps(loc.rest),
            flags,
            Mode::empty(),
        )
    }

    fn lstat(&self, comps: &[OsString]) -> nix::Result<(OwnedFd, FileStat)> {
        let fd = self.open_at(comps, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        let st = fstat(fd.as_raw_fd())?;
        Ok((fd, st))
    }

    /// Whether writing at `comps` (a resolved path) is allowed: docker's read-only
    /// rootfs and read-only volume checks.
    fn check_writable(&self, comps: &[OsString]) -> Result<()> {
        match self.locate(comps).mount.map(|i| &self.mounts[i]) {
            Some(m) if m.volume => {
                if m.rw {
                    Ok(())
                } else {
                    Err(Error::invalid("mounted volume is marked read-only"))
                }
            }
            Some(m) if !m.rw => Err(Error::invalid("container rootfs is marked read-only")),
            _ if self.readonly_rootfs => {
                Err(Error::invalid("container rootfs is marked read-only"))
            }
            _ => Ok(()),
        }
    }

    /// Resolves `input` (clean components from the container's root) following every
    /// symlink inside the container (the last one only with `follow_last`). Missing
    /// components are kept as they are, or made as directories with `create`.
    fn walk(&self, input: &[OsString], follow_last: bool, create: bool) -> Result<Comps> {
        let mut todo: Vec<OsString> = input.iter().rev().cloned().collect();
        let mut cur: Comps = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            match c.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(c);
            let last = todo.is_empty();
            if self.mount_at(&cur).is_some() || (last && !follow_last) {
                continue;
            }
            match self.lstat(&cur) {
                Ok((fd, st)) if file_type(&st) == libc::S_IFLNK => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::invalid(format!(
                            "{}: too many levels of symbolic links",
                            show(&cur)
                        )));
                    }
                    let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                        .map_err(|e| sys(&format!("readlink {}", show(&cur)), e))?;
                    cur.pop();
                    let t = target.as_bytes();
                    if t.first() == Some(&b'/') {
                        cur.clear();
                    }
                    for part in t.split(|b| *b == b'/').rev() {
                        todo.push(OsString::from_vec(part.to_vec()));
                    }
                }
                Ok((_, st)) if create && !last && file_type(&st) != libc::S_IFDIR => {
                    return Err(Error::invalid(format!("{}: not a directory", show(&cur))));
                }
                Ok(_) => {}
                Err(Errno::ENOENT) if create => self.mkdir(&cur)?,
                Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
                Err(e) => return Err(sys(&format!("lstat {}", show(&cur)), e)),
            }
        }
        Ok(cur)
    }

    /// mkdir of one resolved path whose parent exists.
    fn mkdir(&self, comps: &[OsString]) -> Result<()> {
        let Some((name, parent)) = comps.split_last() else {
            return Ok(());
        };
        self.check_writable(comps)?;
        let pfd = self
            .open_at(parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| sys(&format!("open {}", show(parent)), e))?;
        match mkdirat(
            Some(pfd.as_raw_fd()),
            name.as_os_str(),
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(sys(&format!("mkdir {}", show(comps)), e)),
        }
    }

    /// docker's ResolvePath: the object a client path names, with every symlink in its
    /// directory part followed and the last component followed only when the path ends
    /// in "/" or "/.". Returns (resolved components, name for the archive/stat).
    fn resolve_client_path(&self, path: &str) -> Result<(Comps, String)> {
        let comps = clean_abs(path.as_bytes());
        let follow_all = path.is_empty()
            || path.ends_with('/')
            || path.ends_with("/.")
            || path == "."
            || comps.is_empty();
        let resolved = if follow_all {
            self.walk(&comps, true, false)?
        } else {
            let (last, dir) = comps
                .split_last()
                .ok_or_else(|| Error::invalid("empty path"))?;
            let mut d = self.walk(dir, true, false)?;
            d.push(last.clone());
            d
        };
        Ok((resolved, go_base(path)))
    }

    /// Stats the object; not found is an `ErrorKind::NotFound` error.
    fn stat_resolved(
        &self,
        path: &str,
        comps: &[OsString],
        name: String,
    ) -> Result<(PathStat, OwnedFd, FileStat)> {
        let (fd, st) = match self.lstat(comps) {
            Ok(x) => x,
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {
                return Err(Error::not_found(format!("no such file: {path}")))
            }
            Err(e) => return Err(sys(&format!("lstat {path}"), e)),
        };
        let wants_dir = path.ends_with('/') || path.ends_with("/.");
        if wants_dir && file_type(&st) != libc::S_IFDIR {
            return Err(Error::invalid(format!("lstat {path}: not a directory")));
        }
        let mut link_target = String::new();
        if file_type(&st) == libc::S_IFLNK {
            link_target = show(&self.walk(comps, true, false)?);
        }
        let stat = PathStat {
            name,
            size: st.st_size,
            mode: go_mode(&st),
            mtime: rfc3339(st.st_mtime, st.st_mtime_nsec),
            link_target,
        };
        Ok((stat, fd, st))
    }

    /// HEAD /containers/{id}/archive.
    pub fn stat(&self, path: &str) -> Result<PathStat> {
        let (comps, name) = self.resolve_client_path(path)?;
        Ok(self.stat_resolved(path, &comps, name)?.0)
    }

    /// GET /containers/{id}/archive: stats `path`, calls `ready` with the stat (the
    /// response headers go out then; an error from `ready` stops here), and writes an
    /// uncompressed tar of the object to `w`. A directory's entries are rooted at its
    /// base name, at "." for "DIR/.", at "/" for the root.
    pub fn archive(
        &self,
        path: &str,
        ready: impl FnOnce(&PathStat) -> Result<()>,
        w: &mut dyn Write,
    ) -> Result<()> {
        let (comps, name) = self.resolve_client_path(path)?;
        let (stat, fd, st) = self.stat_resolved(path, &comps, name.clone())?;
        ready(&stat)?;
        let mut tw = TarWriter {
            fs: self,
            b: tar::Builder::new(w),
            links: HashMap::new(),
        };
        let arc_name = name.into_bytes();
        tw.add(fd, &st, &comps, arc_name)?;
        tw.b.finish().map_err(|e| sys("writing archive", e))?;
        Ok(())
    }

    /// PUT /containers/{id}/archive: extracts a (possibly compressed) tar into the
    /// directory `path` (followed if it is a symlink), entry by entry, every parent
    /// resolved inside the container.
    pub fn extract(&self, path: &str, r: &mut dyn Read, opts: &ExtractOptions) -> Result<()> {
        let dest = self.walk(&clean_abs(path.as_bytes()), true, false)?;
        match self.lstat(&dest) {
            Ok((_, st)) if file_type(&st) == libc::S_IFDIR => {}
            Ok(_) => return Err(Error::invalid("extraction point is not a directory")),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {
                return Err(Error::not_found(format!("no such directory: {path}")))
            }
            Err(e) => return Err(sys(&format!("lstat {path}"), e)),
        }
        self.check_writable(&dest)?;
        let mut input = crate::compress::decompress(r)?;
        Extractor {
            fs: self,
            dest,
            path,
            opts,
            cache: None,
            dir_times: Vec::new(),
        }
        .run(&mut input)
    }
}

struct TarWriter<'a, W: Write> {
    fs: &'a ContainerFs,
    b: tar::Builder<W>,
    /// First archive name of each multiply-linked inode.
    links: HashMap<(u64, u64), Vec<u8>>,
}

fn werr(e: io::Error) -> Error {
    sys("writing archive", e)
}

/// Writes a raw name into a header field, spilling into a GNU long-name entry first when
/// it does not fit (names are bytes as they are: "./x" and "/x" must survive).
fn put_name<W: Write>(
    b: &mut tar::Builder<W>,
    field: &mut [u8; 100],
    name: &[u8],
    long_kind: u8,
) -> io::Result<()> {
    field.fill(0);
    if name.len() > field.len() {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::new(long_kind));
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(name.len() as u64 + 1);
        h.set_cksum();
        let mut data = name.to_vec();
        data.push(0);
        b.append(&h, &data[..])?;
        let n = field.len();
        field.copy_from_slice(&name[..n]);
    } else {
        field[..name.len()].copy_from_slice(name);
    }
    Ok(())
}

fn append_named<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    if let Some(l) = link {
        let mut field = h.as_old().linkname;
        put_name(b, &mut field, l, b'K')?;
        h.as_old_mut().linkname = field;
    }
    let mut field = h.as_old().name;
    put_name(b, &mut field, name, b'L')?;
    h.as_old_mut().name = field;
    h.set_cksum();
    b.append(&h, data)
}

fn header(st: &FileStat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn child_name(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = parent.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

impl<W: Write> TarWriter<'_, W> {
    /// Archives the object behind `fd` (O_PATH, not followed) as `name`.
    fn add(&mut self, fd: OwnedFd, st: &FileStat, comps: &[OsString], name: Vec<u8>) -> Result<()> {
        let kind = file_type(st);
        if kind != libc::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key) {
                let h = header(st, tar::EntryType::Link);
                return append_named(&mut self.b, h, &name, Some(first), io::empty()).map_err(werr);
            }
            self.links.insert(key, name.clone());
        }
        match kind {
            libc::S_IFDIR => {
                let mut dname = name.clone();
                if !dname.ends_with(b"/") {
                    dname.push(b'/');
                }
                let h = header(st, tar::EntryType::Directory);
                append_named(&mut self.b, h, &dname, None, io::empty()).map_err(werr)?;
                let rd = open_beneath(
                    fd.as_raw_fd(),
                    OsStr::new("."),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                )
                .map_err(|e| sys(&format!("open {}", show(comps)), e))?;
                let mut dir = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(rd))
                    .map_err(|e| sys(&format!("opendir {}", show(comps)), e))?;
                let mut names: Vec<OsString> = Vec::new();
                for e in dir.iter() {
                    let e = e.map_err(|e| sys(&format!("readdir {}", show(comps)), e))?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(OsString::from_vec(n.to_vec()));
                    }
                }
                drop(dir);
                names.sort();
                for n in names {
                    let mut cc = comps.to_vec();
                    cc.push(n.clone());
                    // A mount below: its source stands in for what the rootfs has there.
                    let cfd = match self.fs.mount_at(&cc) {
                        Some(m) => m.fd.try_clone().map_err(|e| sys("dup", e))?,
                        None => match open_beneath(
                            fd.as_raw_fd(),
                            &n,
                            OFlag::O_PATH | OFlag::O_NOFOLLOW,
                            Mode::empty(),
                        ) {
                            Ok(f) => f,
                            // Gone since the listing (a running container).
                            Err(Errno::ENOENT) => continue,
                            Err(e) => return Err(sys(&format!("open {}", show(&cc)), e)),
                        },
                    };
                    let cst = fstat(cfd.as_raw_fd()).map_err(|e| sys("fstat", e))?;
                    let cname = child_name(&name, n.as_bytes());
                    self.add(cfd, &cst, &cc, cname)?;
                }
                Ok(())
            }
            libc::S_IFREG => {
                // O_NONBLOCK: should the inode have become a FIFO, do not hang on it.
                let f = reopen(&fd, libc::O_RDONLY | libc::O_NONBLOCK)
                    .map_err(|e| sys(&format!("open {}", show(comps)), e))?;
                let fst = fstat(f.as_raw_fd()).map_err(|e| sys("fstat", e))?;
                if file_type(&fst) != libc::S_IFREG {
                    return Ok(());
                }
                let size = fst.st_size.max(0) as u64;
                let mut h = header(&fst, tar::EntryType::Regular);
                h.set_size(size);
                // Exactly `size` bytes even if the file changes meanwhile.
                let data = f.take(size).chain(io::repeat(0)).take(size);
                append_named(&mut self.b, h, &name, None, data).map_err(werr)
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")
                    .map_err(|e| sys(&format!("readlink {}", show(comps)), e))?;
                let h = header(st, tar::EntryType::Symlink);
                append_named(&mut self.b, h, &name, Some(target.as_bytes()), io::empty())
                    .map_err(werr)
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let kind = match kind {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = header(st, kind);
                if kind != tar::EntryType::Fifo {
                    h.set_device_major(libc::major(st.st_rdev)).map_err(werr)?;
                    h.set_device_minor(libc::minor(st.st_rdev)).map_err(werr)?;
                }
                append_named(&mut self.b, h, &name, None, io::empty()).map_err(werr)
            }
            // Sockets are not archived (docker skips them too).
            _ => Ok(()),
        }
    }
}

struct Extractor<'a> {
    fs: &'a ContainerFs,
    /// The resolved extraction point.
    dest: Comps,
    /// As the client gave it, for messages.
    path: &'a str,
    opts: &'a ExtractOptions,
    /// The parent of the previous entry (lexical key, resolved path, fd): tars list
    /// siblings together.
    cache: Option<(Comps, Comps, OwnedFd)>,
    dir_times: Vec<(Comps, u64)>,
}

fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Ok(k) = ext.key() {
                if let Some(x) = k.strip_prefix("SCHILY.xattr.") {
                    // The container must not steer overlayfs itself.
                    if !x.starts_with("trusted.overlay.") {
                        out.push((x.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    out
}

fn fsetxattrs(fd: RawFd, xattrs: &[(String, Vec<u8>)]) {
    for (k, v) in xattrs {
        let Ok(kc) = CString::new(k.as_str()) else {
            continue;
        };
        // SAFETY: valid fd, NUL-terminated key and a live buffer of the given length.
        let r = unsafe { libc::fsetxattr(fd, kc.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if r < 0 {
            // Like docker, a filesystem without xattr support is not fatal.
            tracing::debug!("cp: xattr {k}: {}", io::Error::last_os_error());
        }
    }
}

/// Removes whatever is at (dir, name), recursively for a directory, never following a
/// symlink.
fn remove_existing(dir: RawFd, name: &OsStr, is_dir: bool) -> Result<()> {
    if is_dir {
        // std's remove_dir_all is symlink-safe (openat/unlinkat based); the parent is
        // reached through our own fd's magic link.
        let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
        p.extend_from_slice(name.as_bytes());
        std::fs::remove_dir_all(Path::new(OsStr::from_bytes(&p))).map_err(|e| sys("remove", e))
    } else {
        unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir).map_err(|e| sys("unlink", e))
    }
}

impl Extractor<'_> {
    fn bad(&self, shown: &str, e: impl std::fmt::Display) -> Error {
        Error::invalid(format!("error extracting {shown:?} to {}: {e}", self.path))
    }

    /// The directory an entry goes into, made if missing: (resolved path, O_PATH fd).
    fn parent(&mut self, rel: &[OsString]) -> Result<(Comps, OwnedFd)> {
        let mut key = self.dest.clone();
        key.extend_from_slice(rel);
        if let Some((k, r, fd)) = &self.cache {
            if *k == key {
                let fd = fd.try_clone().map_err(|e| sys("dup", e))?;
                return Ok((r.clone(), fd));
            }
        }
        let resolved = self.fs.walk(&key, true, true)?;
        let fd = self
            .fs
            .open_at(&resolved, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| match e {
                Errno::ENOTDIR | Errno::ELOOP => {
                    Error::invalid(format!("{}: not a directory", show(&resolved)))
                }
                e => sys(&format!("open {}", show(&resolved)), e),
            })?;
        let mine = fd.try_clone().map_err(|e| sys("dup", e))?;
        self.cache = Some((key, resolved.clone(), fd));
        Ok((resolved, mine))
    }

    fn run(mut self, r: &mut dyn Read) -> Result<()> {
        let mut archive = tar::Archive::new(r);
        let entries = archive
            .entries()
            .map_err(|e| Error::invalid(format!("invalid tar archive: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| Error::invalid(format!("invalid tar archive: {e}")))?;
            self.entry(&mut entry)?;
        }
        drop(self.cache.take());
        // Directory mtimes last: creating children changed them.
        for (comps, mtime) in self.dir_times.iter().rev() {
            if let Ok(fd) = self.fs.open_at(comps, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                let t = TimeSpec::new(*mtime as i64, 0);
                let _ = nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t);
            }
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_entry(&raw, &shown, self.path)?;
        let Some((name, parent_rel)) = rel.split_last() else {
            return Ok(()); // "." is the extraction point itself
        };
        let hdr = entry.header().clone();
        let kind = hdr.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let (pcomps, parent_fd) = self.parent(parent_rel)?;
        let pfd = parent_fd.as_raw_fd();
        let mut target = pcomps;
        target.push(name.clone());
        self.fs.check_writable(&target)?;
        if let Some(m) = self.fs.mount_at(&target) {
            return self.onto_mount(m, entry, &target);
        }
        let is_dir_entry = kind.is_dir();
        let existing = fstatat(Some(pfd), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
        if let Ok(st) = &existing {
            let exists_dir = file_type(st) == libc::S_IFDIR;
            if self.opts.no_overwrite_dir_non_dir && exists_dir && !is_dir_entry {
                return Err(Error::invalid(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    show(&target),
                    self.path
                )));
            }
            if self.opts.no_overwrite_dir_non_dir && !exists_dir && is_dir_entry {
                return Err(Error::invalid(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    show(&target),
                    self.path
                )));
            }
            if !(exists_dir && is_dir_entry) {
                remove_existing(pfd, name, exists_dir)?;
                // A cached parent may have been below what went.
                self.cache = None;
            }
        }
        let mode = Mode::from_bits_truncate(hdr.mode().map_err(|e| self.bad(&shown, e))? & 0o7777);
        let (uid, gid) = match self.opts.chown {
            Some(ids) => ids,
            None => (
                hdr.uid().map_err(|e| self.bad(&shown, e))? as u32,
                hdr.gid().map_err(|e| self.bad(&shown, e))? as u32,
            ),
        };
        let mtime = hdr.mtime().unwrap_or(0);
        let xattrs = xattrs_of(entry);
        let t = TimeSpec::new(mtime as i64, 0);
        let chown_at = |pfd: RawFd| {
            fchownat(
                Some(pfd),
                name.as_os_str(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| sys(&format!("chown {}", show(&target)), e))
        };
        match kind {
            tar::EntryType::Directory => {
                match mkdirat(Some(pfd), name.as_os_str(), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys(&format!("mkdir {}", show(&target)), e)),
                }
                let d = open_beneath(
                    pfd,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| sys(&format!("open {}", show(&target)), e))?;
                chown_at(pfd)?;
                nix::sys::stat::fchmod(d.as_raw_fd(), mode)
                    .map_err(|e| sys(&format!("chmod {}", show(&target)), e))?;
                fsetxattrs(d.as_raw_fd(), &xattrs);
                self.dir_times.push((target, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = open_beneath(
                    pfd,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| sys(&format!("create {}", show(&target)), e))?;
                let mut f = File::from(fd);
                io::copy(entry, &mut f).map_err(|e| self.bad(&shown, e))?;
                chown_at(pfd)?;
                // chmod after chown (chown clears setuid bits).
                nix::sys::stat::fchmod(f.as_raw_fd(), mode)
                    .map_err(|e| sys(&format!("chmod {}", show(&target)), e))?;
                fsetxattrs(f.as_raw_fd(), &xattrs);
                let _ = nix::sys::stat::futimens(f.as_raw_fd(), &t, &t);
            }
            tar::EntryType::Symlink => {
                let link = link
                    .as_deref()
                    .ok_or_else(|| self.bad(&shown, "symlink without target"))?;
                // Any target is fine: it is only ever resolved inside the container.
                symlinkat(OsStr::from_bytes(link), Some(pfd), name.as_os_str())
                    .map_err(|e| sys(&format!("symlink {}", show(&target)), e))?;
                chown_at(pfd)?;
                let _ = nix::sys::stat::utimensat(
                    Some(pfd),
                    name.as_os_str(),
                    &t,
                    &t,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
                // A later entry may go through it.
                self.cache = None;
            }
            tar::EntryType::Link => {
                let link = link
                    .as_deref()
                    .ok_or_else(|| self.bad(&shown, "hardlink without target"))?;
                let lshown = String::from_utf8_lossy(link).into_owned();
                let lrel = clean_entry(link, &lshown, self.path)?;
                let (lname, lparent) = lrel
                    .split_last()
                    .ok_or_else(|| self.bad(&shown, "hardlink to the extraction point"))?;
                let mut lp = self.dest.clone();
                lp.extend_from_slice(lparent);
                let lp = self.fs.walk(&lp, true, false)?;
                let ldir = self
                    .fs
                    .open_at(&lp, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| self.bad(&shown, format!("hardlink target: {e}")))?;
                linkat(
                    Some(ldir.as_raw_fd()),
                    lname.as_os_str(),
                    Some(pfd),
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| self.bad(&shown, format!("hardlink: {e}")))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                crate::unpack::mknod_entry(pfd, name.as_os_str(), kind, &hdr)
                    .map_err(|e| sys(&format!("mknod {}", show(&target)), e))?;
                chown_at(pfd)?;
                let o = open_beneath(pfd, name, OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty())
                    .map_err(|e| sys(&format!("open {}", show(&target)), e))?;
                let p = CString::new(format!("/proc/self/fd/{}", o.as_raw_fd()))
                    .map_err(|e| sys("path", e))?;
                // SAFETY: valid NUL-terminated path (the magic link of our own O_PATH fd).
                let r = unsafe { libc::chmod(p.as_ptr(), mode.bits()) };
                Errno::result(r).map_err(|e| sys(&format!("chmod {}", show(&target)), e))?;
                let _ = nix::sys::stat::utimensat(
                    Some(pfd),
                    name.as_os_str(),
                    &t,
                    &t,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                );
            }
            // PAX/GNU headers are consumed by the tar crate; anything else is skipped.
            _ => {}
        }
        Ok(())
    }

    /// An entry landing exactly on a mount point: a directory merges into a mounted
    /// directory, a file's content replaces a bind-mounted file's; anything else would
    /// have to replace the mount.
    fn onto_mount<R: Read>(
        &self,
        m: &Mnt,
        entry: &mut tar::Entry<'_, R>,
        target: &[OsString],
    ) -> Result<()> {
        let kind = entry.header().entry_type();
        if m.is_dir && kind.is_dir() {
            return Ok(());
        }
        if !m.is_dir && kind.is_file() {
            let mut f = reopen(&m.fd, libc::O_WRONLY | libc::O_TRUNC)
                .map_err(|e| sys(&format!("open {}", show(target)), e))?;
            io::copy(entry, &mut f).map_err(|e| sys(&format!("write {}", show(target)), e))?;
            return Ok(());
        }
        Err(Error::invalid(format!(
            "cannot overwrite mount point {}",
            show(target)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::ErrorKind;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn is_not_found(e: &Error) -> bool {
        e.kind == ErrorKind::NotFound
    }

    struct Fx {
        tmp: tempfile::TempDir,
    }

    impl Fx {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            for d in ["rootfs/etc", "rootfs/tmp", "vol", "outside"] {
                std::fs::create_dir_all(tmp.path().join(d)).unwrap();
            }
            std::fs::write(tmp.path().join("outside/sentinel"), "orig").unwrap();
            Fx { tmp }
        }
        fn p(&self, rel: &str) -> PathBuf {
            self.tmp.path().join(rel)
        }
        fn fs(&self, mounts: &[(&str, &str, bool)], ro: bool) -> ContainerFs {
            let m: Vec<FsMount> = mounts
                .iter()
                .map(|(d, s, rw)| FsMount {
                    destination: d.to_string(),
                    source: self.p(s),
                    rw: *rw,
                    volume: true,
                })
                .collect();
            ContainerFs::open(&self.p("rootfs"), &m, ro).unwrap()
        }
        fn outside_untouched(&self) {
            let o = self.p("outside");
            assert_eq!(std::fs::read_to_string(o.join("sentinel")).unwrap(), "orig");
            assert_eq!(std::fs::read_dir(&o).unwrap().count(), 1, "wrote outside");
        }
    }

    fn entries(tar: &[u8]) -> Vec<String> {
        tar::Archive::new(tar)
            .entries()
            .unwrap()
            .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
            .collect()
    }

    fn new_header() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(0);
        h
    }

    fn raw_file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = new_header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        append_named(b, h, name.as_bytes(), None, data).unwrap();
    }

    fn raw_symlink(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
        let mut h = new_header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        append_named(b, h, name.as_bytes(), Some(target.as_bytes()), io::empty()).unwrap();
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn names_follow_go_base() {
        assert_eq!(go_base("/a/b"), "b");
        assert_eq!(go_base("/a/b/"), "b");
        assert_eq!(go_base("/a/b/."), ".");
        assert_eq!(go_base("/"), "/");
        assert_eq!(go_base(""), "/");
        assert_eq!(go_base("a/../b"), "b");
    }

    #[test]
    fn stat_follows_the_last_symlink_only_with_a_trailing_slash() {
        let f = Fx::new();
        std::fs::create_dir(f.p("rootfs/real")).unwrap();
        std::fs::write(f.p("rootfs/real/x"), "hi").unwrap();
        symlink("/real", f.p("rootfs/link")).unwrap();
        let fs = f.fs(&[], false);
        let s = fs.stat("/link").unwrap();
        assert_eq!(s.mode & GO_MODE_SYMLINK, GO_MODE_SYMLINK);
        assert_eq!(s.link_target, "/real");
        assert_eq!(s.name, "link");
        let s = fs.stat("/link/").unwrap();
        assert!(s.is_dir());
        assert_eq!(s.name, "link");
        let s = fs.stat("/link/x").unwrap();
        assert_eq!(s.size, 2);
        assert!(is_not_found(&fs.stat("/nope").unwrap_err()));
    }

    #[test]
    fn archive_names_and_host_symlinks_stay_inside() {
        let f = Fx::new();
        std::fs::create_dir_all(f.p("rootfs/d/sub")).unwrap();
        std::fs::write(f.p("rootfs/d/f"), "data").unwrap();
        // /evil -> the host's outside dir; inside the container it is /outside (missing).
        symlink(f.p("outside"), f.p("rootfs/evil")).unwrap();
        let fs = f.fs(&[], false);
        let mut out = Vec::new();
        fs.archive("/d", |_| Ok(()), &mut out).unwrap();
        assert_eq!(entries(&out), ["d/", "d/f", "d/sub/"]);
        let mut out = Vec::new();
        fs.archive("/d/.", |_| Ok(()), &mut out).unwrap();
        assert_eq!(entries(&out), ["./", "./f", "./sub/"]);
        let mut out = Vec::new();
        assert!(is_not_found(
            &fs.archive("/evil/", |_| Ok(()), &mut out).unwrap_err()
        ));
        assert!(is_not_found(&fs.stat("/evil/sentinel").unwrap_err()));
    }

    #[test]
    fn extract_refuses_escapes_and_stays_in_the_root() {
        let f = Fx::new();
        // The container's /etc is a symlink to a host path: it must resolve to the
        // rootfs's own /outside-like path, never the host's.
        std::fs::remove_dir(f.p("rootfs/etc")).unwrap();
        symlink(f.p("outside"), f.p("rootfs/etc")).unwrap();
        let fs = f.fs(&[], false);
        let mut b = tar::Builder::new(Vec::new());
        raw_file(&mut b, "../escape", b"pwned");
        let data = b.into_inner().unwrap();
        assert!(fs
            .extract("/tmp", &mut &data[..], &ExtractOptions::default())
            .is_err());
        // Through the container symlink: lands inside the rootfs.
        let mut b = tar::Builder::new(Vec::new());
        raw_file(&mut b, "etc/sentinel", b"pwned");
        raw_file(&mut b, "/abs", b"ok");
        raw_symlink(&mut b, "l", "../../..");
        raw_file(&mut b, "l/through", b"pwned");
        let data = b.into_inner().unwrap();
        fs.extract("/", &mut &data[..], &ExtractOptions::default())
            .unwrap();
        f.outside_untouched();
        let inside = f
            .p("rootfs")
            .join(f.p("outside").strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(inside.join("sentinel")).unwrap(), b"pwned");
        assert_eq!(std::fs::read(f.p("rootfs/abs")).unwrap(), b"ok");
        assert_eq!(std::fs::read(f.p("rootfs/through")).unwrap(), b"pwned");
        // The extraction point itself through the host symlink.
        let mut b = tar::Builder::new(Vec::new());
        raw_file(&mut b, "x", b"pwned");
        let data = b.into_inner().unwrap();
        fs.extract("/etc", &mut &data[..], &ExtractOptions::default())
            .unwrap();
        f.outside_untouched();
    }

    #[test]
    fn volumes_are_their_sources_and_read_only_is_enforced() {
        let f = Fx::new();
        std::fs::write(f.p("vol/v"), "vol").unwrap();
        let fs = f.fs(&[("/data", "vol", true)], true);
        assert_eq!(fs.stat("/data/v").unwrap().size, 3);
        let mut b = tar::Builder::new(Vec::new());
        raw_file(&mut b, "new", b"n");
        let data = b.into_inner().unwrap();
        fs.extract("/data", &mut &data[..], &ExtractOptions::default())
            .unwrap();
        assert_eq!(std::fs::read(f.p("vol/new")).unwrap(), b"n");
        let e = fs
            .extract("/tmp", &mut &data[..], &ExtractOptions::default())
            .unwrap_err();
        assert_eq!(e.message, "container rootfs is marked read-only");
        // Into the volume through the root: allowed; anywhere else: refused.
        let mut b = tar::Builder::new(Vec::new());
        raw_file(&mut b, "data/deep", b"d");
        let data = b.into_inner().unwrap();
        let fs = f.fs(&[("/data", "vol", false)], false);
        let e = fs
            .extract("/", &mut &data[..], &ExtractOptions::default())
            .unwrap_err();
        assert_eq!(e.message, "mounted volume is marked read-only");
        assert!(!f.p("vol/deep").exists());
    }

    #[test]
    fn round_trip_keeps_content_modes_and_links() {
        let f = Fx::new();
        let src = f.p("rootfs/src");
        std::fs::create_dir_all(src.join("empty")).unwrap();
        std::fs::write(src.join("f"), "x".repeat(70_000)).unwrap();
        std::fs::set_permissions(src.join("f"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        symlink("f", src.join("l")).unwrap();
        let long = "n".repeat(150);
        std::fs::write(src.join(&long), "long").unwrap();
        std::fs::hard_link(src.join("f"), src.join("hl")).unwrap();
        let fs = f.fs(&[], false);
        let mut out = Vec::new();
        fs.archive("/src", |_| Ok(()), &mut out).unwrap();
        std::fs::create_dir(f.p("rootfs/dst")).unwrap();
        fs.extract("/dst", &mut &out[..], &ExtractOptions::default())
            .unwrap();
        let d = f.p("rootfs/dst/src");
        assert_eq!(std::fs::read(d.join("f")).unwrap().len(), 70_000);
        let m = std::fs::metadata(d.join("f")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4750);
        assert_eq!(m.nlink(), 2);
        assert_eq!(std::fs::read_link(d.join("l")).unwrap(), Path::new("f"));
        assert_eq!(std::fs::read(d.join(&long)).unwrap(), b"long");
        assert!(d.join("empty").is_dir());
        // no-overwrite: a file where a directory is.
        let mut b = tar::Builder::new(Vec::new());
        raw_file(&mut b, "src/empty", b"x");
        let data = b.into_inner().unwrap();
        let opts = ExtractOptions {
            no_overwrite_dir_non_dir: true,
            ..Default::default()
        };
        assert!(fs.extract("/dst", &mut &data[..], &opts).is_err());
        assert!(d.join("empty").is_dir());
    }
}
