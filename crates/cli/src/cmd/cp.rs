//! `cp`: files between a container and the local filesystem over the archive API, with
//! docker's rules (moby's pkg/archive copy.go): a directory copied to an existing
//! directory goes inside it, to a new path it takes that name; `SRC/.` copies a
//! directory's contents; `-` streams a tar; `-L` follows a source symlink.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;

use crate::args::CpArgs;
use crate::client::{daemon_error, q, CliError, CliResult, Client};

// Go's os.FileMode bits in the path-stat header's mode.
const MODE_DIR: u64 = 1 << 31;
const MODE_SYMLINK: u64 = 1 << 27;
const MODE_DEVICE: u64 = 1 << 26;
const MODE_IRREGULAR: u64 = 1 << 19;

/// Which side of `cp` a path argument is on.
#[derive(Debug, PartialEq, Eq)]
pub enum Loc {
    Local(String),
    Container(String, String),
}

/// docker's splitCpArg: "name:path" is a container path unless the part before the
/// colon looks like a local path (absolute or starting with ".").
pub fn parse_loc(arg: &str) -> Loc {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Loc::Local(arg.to_string());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => Loc::Container(c.to_string(), p.to_string()),
        _ => Loc::Local(arg.to_string()),
    }
}

fn err(msg: impl Into<String>) -> CliError {
    CliError::new(1, msg)
}

/// Go's error text for an I/O error on `path` ("lstat /x: no such file or directory").
fn go_err(op: &str, path: &str, e: &std::io::Error) -> CliError {
    err(crate::units::go_open_error(path, e).replacen("open", op, 1))
}

// ---- Go path semantics (path/filepath and moby's archive helpers) -------------------

/// filepath.Clean.
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let j = out.join("/");
    match (abs, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

/// filepath.Base.
pub fn base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// filepath.Dir.
pub fn dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => clean(&p[..=i]),
        None => ".".into(),
    }
}

fn specifies_current_dir(p: &str) -> bool {
    base(p) == "."
}

fn has_trailing_sep(p: &str) -> bool {
    p.ends_with('/')
}

fn asserts_directory(p: &str) -> bool {
    has_trailing_sep(p) || specifies_current_dir(p)
}

/// archive.PreserveTrailingDotOrSeparator.
fn preserve_trailing(cleaned: &str, original: &str) -> String {
    let mut out = cleaned.to_string();
    if specifies_current_dir(original) && !specifies_current_dir(&out) {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push('.');
    }
    if has_trailing_sep(original) && !has_trailing_sep(&out) {
        out.push('/');
    }
    out
}

/// archive.SplitPathDirEntry.
pub fn split_path_dir_entry(p: &str) -> (String, String) {
    let mut cleaned = clean(p);
    if specifies_current_dir(p) {
        cleaned = format!("{}/.", cleaned.trim_end_matches('/'));
    }
    (dir(&cleaned), base(&cleaned))
}

fn join(a: &str, b: &str) -> String {
    clean(&format!("{a}/{b}"))
}

/// The CLI's resolveLocalPath: absolute, keeping a trailing "/" or "/.".
fn resolve_local_path(p: &str) -> CliResult<String> {
    let abs = if p.starts_with('/') {
        clean(p)
    } else {
        let cwd = std::env::current_dir()?;
        join(&cwd.to_string_lossy(), p)
    };
    Ok(preserve_trailing(&abs, p))
}

/// archive.GetRebaseName: the followed path (with the original's trailing "/" or "/.")
/// and the name its archive entries must take.
fn get_rebase_name(path: &str, resolved: &str) -> (String, Option<String>) {
    let mut r = resolved.to_string();
    if specifies_current_dir(path) && !specifies_current_dir(&r) {
        r = format!("{}/.", r.trim_end_matches('/'));
    }
    if has_trailing_sep(path) && !has_trailing_sep(&r) {
        r.push('/');
    }
    let rebase = (base(path) != base(&r)).then(|| base(path));
    (r, rebase)
}

/// Go's strings.Replace(s, old, new, 1).
fn replace_once(s: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let pos = if old.is_empty() {
        Some(0)
    } else {
        s.windows(old.len()).position(|w| w == old)
    };
    match pos {
        Some(i) => [&s[..i], new, &s[i + old.len()..]].concat(),
        None => s.to_vec(),
    }
}

/// One archive rename (archive.RebaseArchiveEntries): the first `old` in each name.
#[derive(Clone, Debug)]
struct Rebase {
    old: String,
    new: String,
}

impl Rebase {
    fn new(old: &str, new: &str) -> Rebase {
        // The root's archive names all start with "/": the new name goes in front.
        let old = if old == "/" { "" } else { old };
        Rebase {
            old: old.into(),
            new: new.into(),
        }
    }
    fn apply(&self, name: &[u8]) -> Vec<u8> {
        replace_once(name, self.old.as_bytes(), self.new.as_bytes())
    }
}

#[derive(Clone, Debug, Default)]
struct CopyInfo {
    path: String,
    exists: bool,
    is_dir: bool,
    rebase_name: Option<String>,
}

/// archive.PrepareArchiveCopy: the directory to extract into and the rename the archive
/// needs on the way.
fn prepare_archive_copy(src: &CopyInfo, dst: &CopyInfo) -> CliResult<(String, Option<Rebase>)> {
    let (dst_dir, dst_base) = split_path_dir_entry(&dst.path);
    let (_, src_base) = split_path_dir_entry(&src.path);
    let src_base = src.rebase_name.clone().unwrap_or(src_base);
    if dst.exists && dst.is_dir {
        return Ok((dst.path.clone(), None));
    }
    if dst.exists && src.is_dir {
        return Err(err("cannot copy directory"));
    }
    if !dst.exists && !src.is_dir && asserts_directory(&dst.path) {
        return Err(err("no such directory"));
    }
    Ok((dst_dir, Some(Rebase::new(&src_base, &dst_base))))
}

/// archive.CopyInfoDestinationPath for a local path: symlinks followed (up to 10), and a
/// missing path is fine if its parent directory exists.
fn local_destination_info(path: &str) -> CliResult<CopyInfo> {
    let mut path = path.to_string();
    let mut n = 0;
    loop {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                n += 1;
                if n > 10 {
                    return Err(err(format!("too many symlinks in {path}")));
                }
                let t = std::fs::read_link(&path)?.to_string_lossy().into_owned();
                path = if t.starts_with('/') {
                    t
                } else {
                    join(&split_path_dir_entry(&path).0, &t)
                };
            }
            Ok(m) => {
                return Ok(CopyInfo {
                    path,
                    exists: true,
                    is_dir: m.is_dir(),
                    rebase_name: None,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = split_path_dir_entry(&path).0;
                match std::fs::metadata(&parent) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(err("not a directory")),
                    Err(e) => return Err(go_err("stat", &parent, &e)),
                }
                return Ok(CopyInfo {
                    path,
                    ..Default::default()
                });
            }
            Err(e) => return Err(go_err("lstat", &path, &e)),
        }
    }
}

/// archive.CopyInfoSourcePath for a local path.
fn local_source_info(path: &str, follow: bool) -> CliResult<CopyInfo> {
    let canon = |p: &str| {
        std::fs::canonicalize(p)
            .map(|c| c.to_string_lossy().into_owned())
            .map_err(|e| go_err("lstat", p, &e))
    };
    let (resolved, rebase_name) = if follow {
        get_rebase_name(path, &canon(path)?)
    } else {
        // Only the directory part is followed.
        let (d, b) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("./", path),
        };
        let r = format!("{}/{b}", canon(d)?.trim_end_matches('/'));
        let rebase = (has_trailing_sep(path) && base(path) != base(&r)).then(|| base(path));
        (r, rebase)
    };
    let m = std::fs::symlink_metadata(&resolved).map_err(|e| go_err("lstat", path, &e))?;
    Ok(CopyInfo {
        path: resolved,
        exists: true,
        is_dir: m.is_dir(),
        rebase_name,
    })
}

/// The CLI's ValidateOutputPath.
fn validate_output_path(path: &str) -> CliResult<()> {
    let d = dir(&clean(path));
    if d != "." && !Path::new(&d).exists() {
        return Err(err(format!(
            "invalid output path: directory {d:?} does not exist"
        )));
    }
    if let Ok(m) = std::fs::metadata(path) {
        let ft = m.file_type();
        if ft.is_block_device() || ft.is_char_device() {
            return Err(err(format!(
                "invalid output path: {path:?} must be a directory or a regular file: got a device"
            )));
        }
    }
    Ok(())
}

// ---- the daemon side -----------------------------------------------------------------

/// The decoded X-Docker-Container-Path-Stat header.
#[derive(Debug, Clone)]
struct PathStat {
    mode: u64,
    link_target: String,
}

impl PathStat {
    fn is_dir(&self) -> bool {
        self.mode & MODE_DIR != 0
    }
    fn is_symlink(&self) -> bool {
        self.mode & MODE_SYMLINK != 0
    }
}

fn path_stat(headers: &hyper::HeaderMap) -> Option<PathStat> {
    let raw = headers.get("X-Docker-Container-Path-Stat")?.to_str().ok()?;
    let json = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    Some(PathStat {
        mode: v["mode"].as_u64()?,
        link_target: v["linkTarget"].as_str().unwrap_or("").to_string(),
    })
}

fn archive_url(id: &str, path: &str) -> String {
    format!("/containers/{}/archive?path={}", q(id), q(path))
}

/// HEAD: the stat of a container path; like docker, any failure counts as "not there"
/// (the copy itself reports the real error).
async fn stat_in_container(c: &Client, id: &str, path: &str) -> Option<PathStat> {
    let resp = c
        .raw_stream(Method::HEAD, &archive_url(id, path), None, None)
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    path_stat(resp.headers())
}

/// Where a container symlink leads, as the CLI joins it.
fn link_target(path: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        join(&split_path_dir_entry(path).0, target)
    }
}

pub async fn cp(c: &Client, a: CpArgs) -> CliResult<()> {
    if a.src.is_empty() {
        return Err(err("source can not be empty"));
    }
    if a.dest.is_empty() {
        return Err(err("destination can not be empty"));
    }
    match (parse_loc(&a.src), parse_loc(&a.dest)) {
        (Loc::Container(id, path), Loc::Local(dest)) => {
            from_container(c, &a, &id, &path, &dest).await
        }
        (Loc::Local(src), Loc::Container(id, path)) => to_container(c, &a, &src, &id, &path).await,
        (Loc::Container(..), Loc::Container(..)) => {
            Err(err("copying between containers is not supported"))
        }
        (Loc::Local(..), Loc::Local(..)) => Err(err("must specify at least one container source")),
    }
}

fn progress(a: &CpArgs, size: u64, to: &str) {
    use std::io::IsTerminal;
    // Like docker, only for a person watching.
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {to}",
            crate::units::human_size(size as f64)
        );
    }
}

async fn from_container(c: &Client, a: &CpArgs, id: &str, src: &str, dest: &str) -> CliResult<()> {
    let dst_path = if dest == "-" {
        dest.to_string()
    } else {
        let p = resolve_local_path(dest)?;
        validate_output_path(&p)?;
        p
    };
    let mut src_path = src.to_string();
    let mut rebase_name = None;
    if a.follow_link {
        if let Some(st) = stat_in_container(c, id, src).await {
            if st.is_symlink() {
                let (p, r) = get_rebase_name(src, &link_target(src, &st.link_target));
                src_path = p;
                rebase_name = r;
            }
        }
    }
    let resp = c
        .raw_stream(Method::GET, &archive_url(id, &src_path), None, None)
        .await?;
    let status = resp.status();
    let stat = path_stat(resp.headers());
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(daemon_error(status, &body));
    }
    let mut body = resp.into_body();
    if dst_path == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| err(format!("error reading archive: {e}")))?;
            if let Some(d) = frame.data_ref() {
                out.write_all(d)?;
            }
        }
        return Ok(out.flush()?);
    }
    let src_info = CopyInfo {
        path: src_path.clone(),
        exists: true,
        is_dir: stat.as_ref().is_some_and(|s| s.is_dir()),
        rebase_name: rebase_name.clone(),
    };
    let mut rebases = Vec::new();
    if let Some(r) = &rebase_name {
        rebases.push(Rebase::new(&split_path_dir_entry(&src_path).1, r));
    }
    let dst_info = local_destination_info(&dst_path)?;
    let (dst_dir, rebase) = prepare_archive_copy(&src_info, &dst_info)?;
    rebases.extend(rebase);
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let n = tokio::task::spawn_blocking(move || untar(reader, Path::new(&dst_dir), &rebases))
        .await
        .map_err(|e| err(e.to_string()))??;
    progress(a, n, &dst_path);
    Ok(())
}

/// Counts what passes through.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Where an entry goes below `root`: leading "/" and "." dropped; ".." is refused.
fn entry_rel(name: &[u8]) -> Option<PathBuf> {
    let p = Path::new(std::ffi::OsStr::from_bytes(name));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Makes the directories of `rel` below `root`, refusing to go through a symlink that
/// leads out of `root` (the archive comes from a container and may be hostile).
fn ensure_dirs(root: &Path, canon_root: &Path, rel: &Path) -> CliResult<PathBuf> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::canonicalize(&cur)
                    .map_err(|e| go_err("stat", &cur.to_string_lossy(), &e))?;
                if !t.starts_with(canon_root) || !t.is_dir() {
                    return Err(err(format!(
                        "invalid archive: {} leads outside {}",
                        cur.display(),
                        root.display()
                    )));
                }
            }
            Ok(_) => {
                return Err(err(format!("mkdir {}: not a directory", cur.display())));
            }
            Err(_) => std::fs::create_dir(&cur)
                .map_err(|e| go_err("mkdir", &cur.to_string_lossy(), &e))?,
        }
    }
    Ok(cur)
}

/// Extracts a tar from the daemon into `root` (docker's Untar with NoLchown and
/// NoOverwriteDirNonDir). Returns the bytes read.
fn untar(reader: impl Read, root: &Path, rebases: &[Rebase]) -> CliResult<u64> {
    let bad = |e: std::io::Error| err(format!("error reading archive: {e}"));
    let canon_root =
        std::fs::canonicalize(root).map_err(|e| go_err("stat", &root.to_string_lossy(), &e))?;
    let mut counting = Counting {
        inner: reader,
        n: 0,
    };
    let mut archive = tar::Archive::new(&mut counting);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        let mut name = entry.path_bytes().into_owned();
        for r in rebases {
            name = r.apply(&name);
        }
        let Some(rel) = entry_rel(&name) else {
            return Err(err(format!(
                "invalid archive entry {:?}: it is outside of {}",
                String::from_utf8_lossy(&name),
                root.display()
            )));
        };
        let Some(file) = rel.file_name().map(|f| f.to_os_string()) else {
            continue; // the destination itself
        };
        let parent = ensure_dirs(root, &canon_root, rel.parent().unwrap_or(Path::new("")))?;
        let out = parent.join(&file);
        let kind = entry.header().entry_type();
        if let Ok(m) = std::fs::symlink_metadata(&out) {
            let shown = out.display();
            if m.is_dir() && !kind.is_dir() {
                return Err(err(format!(
                    "cannot overwrite directory \"{shown}\" with non-directory \"{}\"",
                    root.display()
                )));
            }
            if !m.is_dir() && kind.is_dir() {
                return Err(err(format!(
                    "cannot overwrite non-directory \"{shown}\" with directory \"{}\"",
                    root.display()
                )));
            }
            if !m.is_dir() {
                std::fs::remove_file(&out).map_err(|e| go_err("remove", &shown.to_string(), &e))?;
            }
        }
        if kind == tar::EntryType::Link {
            // A hard link names another entry of this archive.
            let Some(target) = entry
                .link_name_bytes()
                .map(|l| rebases.iter().fold(l.into_owned(), |n, r| r.apply(&n)))
                .and_then(|l| entry_rel(&l))
            else {
                return Err(err("invalid hard link in archive"));
            };
            let tparent = ensure_dirs(root, &canon_root, target.parent().unwrap_or(Path::new("")))?;
            let t = tparent.join(target.file_name().unwrap_or_default());
            std::fs::hard_link(&t, &out).map_err(|e| go_err("link", &t.to_string_lossy(), &e))?;
            continue;
        }
        entry
            .unpack(&out)
            .map_err(|e| err(format!("error extracting {}: {e}", out.display())))?;
        if kind.is_dir() {
            dirs.push((out, entry.header().mtime().unwrap_or(0)));
        }
    }
    // Directory times last: extracting into them changed them.
    for (d, mtime) in dirs.iter().rev() {
        if let Ok(f) = std::fs::File::open(d) {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(*mtime);
            let _ = f.set_modified(t);
        }
    }
    Ok(counting.n)
}

/// Appends `path` (not followed) and, for a directory, everything below it, named
/// `name` and `name/...`.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, path: &Path, name: &str) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(path)?;
    if m.is_dir() {
        b.append_dir(name, path)?;
        let mut kids: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        kids.sort_by_key(|e| e.file_name());
        for k in kids {
            let child = format!(
                "{}/{}",
                name.trim_end_matches('/'),
                k.file_name().to_string_lossy()
            );
            append_tree(b, &k.path(), &child)?;
        }
        Ok(())
    } else if m.file_type().is_socket() {
        Ok(()) // docker skips sockets too
    } else {
        b.append_path_with_name(path, name)
    }
}

/// The archive of `src` (TarResourceRebase plus PrepareArchiveCopy's rename), its top
/// entry named `top`.
pub fn build_tar(src: &Path, top: &str, w: impl Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    append_tree(&mut b, src, top)?;
    b.into_inner()?.flush()
}

async fn to_container(c: &Client, a: &CpArgs, src: &str, id: &str, dest: &str) -> CliResult<()> {
    let src_path = if src == "-" {
        src.to_string()
    } else {
        resolve_local_path(src)?
    };
    let mut dst_info = CopyInfo {
        path: dest.to_string(),
        ..Default::default()
    };
    let mut st = stat_in_container(c, id, dest).await;
    if let Some(s) = &st {
        if s.is_symlink() {
            dst_info.path = link_target(dest, &s.link_target);
            st = stat_in_container(c, id, &dst_info.path).await;
        }
    }
    if let Some(s) = &st {
        if s.mode & MODE_DEVICE != 0 || s.mode & MODE_IRREGULAR != 0 {
            return Err(err(format!(
                "destination \"{id}:{dest}\" must be a directory or a regular file: got a {}",
                if s.mode & MODE_DEVICE != 0 {
                    "device"
                } else {
                    "irregular file"
                }
            )));
        }
        dst_info.exists = true;
        dst_info.is_dir = s.is_dir();
    }
    let (dst_dir, body, builder) = if src_path == "-" {
        if !dst_info.is_dir {
            return Err(err(format!(
                "destination \"{id}:{dest}\" must be a directory"
            )));
        }
        // A tar stream on stdin goes to the directory as it is.
        let (r, mut w) = tokio::io::duplex(1 << 16);
        let h = tokio::spawn(async move {
            tokio::io::copy(&mut tokio::io::stdin(), &mut w)
                .await
                .map_err(|e| err(format!("reading stdin: {e}")))
        });
        (dst_info.path.clone(), r, h)
    } else {
        let src_info = local_source_info(&src_path, a.follow_link)?;
        let (dst_dir, rebase) = prepare_archive_copy(&src_info, &dst_info)?;
        let (_, src_base) = split_path_dir_entry(&src_info.path);
        let top = rebase
            .map(|r| r.new)
            .or(src_info.rebase_name.clone())
            .unwrap_or(src_base);
        let (r, w) = tokio::io::duplex(1 << 16);
        let w = tokio_util::io::SyncIoBridge::new(w);
        let path = PathBuf::from(&src_info.path);
        let h = tokio::spawn(async move {
            tokio::task::spawn_blocking(move || {
                let mut w = CountingWriter { inner: w, n: 0 };
                build_tar(&path, &top, &mut w)
                    .map_err(|e| err(format!("error building archive: {e}")))?;
                w.inner.shutdown().map_err(|e| err(e.to_string()))?;
                Ok(w.n)
            })
            .await
            .map_err(|e| err(e.to_string()))?
        });
        (dst_dir, r, h)
    };
    let url = format!(
        "{}&noOverwriteDirNonDir=true&copyUIDGID={}",
        archive_url(id, &dst_dir),
        a.archive
    );
    let stream = tokio_util::io::ReaderStream::new(body).map(|r| r.map(Frame::data));
    let body = BodyExt::boxed(StreamBody::new(stream));
    let put = c
        .raw(Method::PUT, &url, Some(body), Some("application/x-tar"))
        .await;
    let built = builder.await.map_err(|e| err(e.to_string()))?;
    let (status, resp) = put?;
    if !status.is_success() {
        return Err(daemon_error(status, &resp));
    }
    let n = built?;
    progress(a, n, &format!("{id}:{dest}"));
    Ok(())
}

/// A writer that counts, for the progress line.
struct CountingWriter<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_like_docker() {
        assert_eq!(
            parse_loc("web:/etc/hosts"),
            Loc::Container("web".into(), "/etc/hosts".into())
        );
        assert_eq!(parse_loc("/tmp/a:b"), Loc::Local("/tmp/a:b".into()));
        assert_eq!(parse_loc("./x:y"), Loc::Local("./x:y".into()));
        assert_eq!(parse_loc("file"), Loc::Local("file".into()));
        assert_eq!(parse_loc("-"), Loc::Local("-".into()));
    }

    #[test]
    fn go_path_helpers() {
        assert_eq!(clean("/a/../b/./c/"), "/b/c");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("/"), "/");
        assert_eq!(dir("/a/b"), "/a");
        assert_eq!(dir("/a"), "/");
        assert_eq!(split_path_dir_entry("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split_path_dir_entry("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(preserve_trailing("/x/d", "d/."), "/x/d/.");
        assert_eq!(preserve_trailing("/x/d", "d/"), "/x/d/");
        assert_eq!(
            get_rebase_name("/l/", "/real"),
            ("/real/".into(), Some("l".into()))
        );
        assert_eq!(replace_once(b"./f", b".", b"new"), b"new/f");
        assert_eq!(Rebase::new("/", "x").apply(b"/bin"), b"x/bin");
    }

    #[test]
    fn docker_destination_rules() {
        let dir_src = CopyInfo {
            path: "/h/src".into(),
            exists: true,
            is_dir: true,
            rebase_name: None,
        };
        let file_src = CopyInfo {
            is_dir: false,
            ..dir_src.clone()
        };
        let existing_dir = CopyInfo {
            path: "/c/dst".into(),
            exists: true,
            is_dir: true,
            rebase_name: None,
        };
        let (d, r) = prepare_archive_copy(&dir_src, &existing_dir).unwrap();
        assert_eq!(d, "/c/dst");
        assert!(r.is_none());
        let new = CopyInfo {
            path: "/c/new".into(),
            ..Default::default()
        };
        let (d, r) = prepare_archive_copy(&dir_src, &new).unwrap();
        assert_eq!(d, "/c");
        assert_eq!(r.unwrap().new, "new");
        let existing_file = CopyInfo {
            path: "/c/f".into(),
            exists: true,
            is_dir: false,
            rebase_name: None,
        };
        assert!(prepare_archive_copy(&dir_src, &existing_file).is_err());
        let new_dir = CopyInfo {
            path: "/c/nope/".into(),
            ..Default::default()
        };
        assert_eq!(
            prepare_archive_copy(&file_src, &new_dir)
                .unwrap_err()
                .to_string(),
            "no such directory"
        );
    }

    #[test]
    fn tar_round_trip_of_a_directory() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("d"))?;
        std::fs::write(dir.path().join("d/f"), b"hi")?;
        let mut tar = Vec::new();
        build_tar(&dir.path().join("d"), "renamed", &mut tar)?;
        let names: Vec<String> = tar::Archive::new(std::io::Cursor::new(&tar))
            .entries()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.path().ok().map(|p| p.display().to_string()))
            .collect();
        assert_eq!(names, vec!["renamed", "renamed/f"]);
        let out = tempfile::tempdir()?;
        untar(&tar[..], out.path(), &[]).unwrap();
        assert_eq!(std::fs::read(out.path().join("renamed/f"))?, b"hi");
        Ok(())
    }

    #[test]
    fn untar_refuses_to_write_through_an_escaping_symlink() -> std::io::Result<()> {
        let outside = tempfile::tempdir()?;
        let out = tempfile::tempdir()?;
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "l", outside.path())?;
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "l/pwned", &b"x"[..])?;
        let tar = b.into_inner()?;
        assert!(untar(&tar[..], out.path(), &[]).is_err());
        assert!(!outside.path().join("pwned").exists());
        Ok(())
    }
}
