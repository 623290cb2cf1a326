//! `cp`: files between a container and the local filesystem, over the archive API,
//! with docker's destination rules (copy into an existing directory, otherwise
//! create or replace the named path; `SRC/.` copies a directory's contents).

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;

use crate::args::CpArgs;
use crate::client::{daemon_error, q, CliError, CliResult, Client};

/// Go's os.ModeDir and os.ModeSymlink bits in the path-stat header's mode.
const MODE_DIR: u64 = 1 << 31;
const MODE_SYMLINK: u64 = 1 << 27;

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

/// The decoded X-Docker-Container-Path-Stat header: (is_dir, is_symlink).
fn path_stat(headers: &hyper::HeaderMap) -> Option<(bool, bool)> {
    let raw = headers.get("X-Docker-Container-Path-Stat")?.to_str().ok()?;
    let json = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let mode = v["mode"].as_u64()?;
    Some((mode & MODE_DIR != 0, mode & MODE_SYMLINK != 0))
}

/// The last path element, ignoring trailing slashes and "/.".
fn base_name(p: &str) -> String {
    let t = p.trim_end_matches("/.").trim_end_matches('/');
    Path::new(t)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| ".".into())
}

/// Where an archive entry lands: the archive's root element is replaced by `target`.
/// Entries that would climb out (`..`) are refused.
pub fn rebase(entry: &Path, target: &Path) -> Option<PathBuf> {
    let mut comps = entry.components().peekable();
    // An archive of "DIR/." is rooted at "." (its entries are the contents);
    // otherwise the first element is the copied file or directory itself.
    if comps.peek() == Some(&Component::CurDir) {
        comps.next();
    } else {
        comps.next()?;
    }
    let mut out = target.to_path_buf();
    for c in comps {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

pub async fn cp(c: &Client, a: CpArgs) -> CliResult<()> {
    match (parse_loc(&a.src), parse_loc(&a.dest)) {
        (Loc::Container(id, path), Loc::Local(dest)) => from_container(c, &id, &path, &dest).await,
        (Loc::Local(src), Loc::Container(id, path)) => {
            to_container(c, &src, &id, &path, a.follow_link).await
        }
        (Loc::Container(..), Loc::Container(..)) => {
            Err(err("copying between containers is not supported"))
        }
        (Loc::Local(..), Loc::Local(..)) => Err(err("must specify at least one container source")),
    }
}

async fn from_container(c: &Client, id: &str, src: &str, dest: &str) -> CliResult<()> {
    let path = format!("/containers/{}/archive?path={}", q(id), q(src));
    let resp = c.raw_stream(Method::GET, &path, None, None).await?;
    let status = resp.status();
    let stat = path_stat(resp.headers());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| err(format!("error reading archive: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(&body)?;
        return Ok(out.flush()?);
    }
    let src_is_dir = stat.is_some_and(|(d, _)| d);
    let dest_path = Path::new(dest);
    let target = match std::fs::metadata(dest_path) {
        Ok(m) if m.is_dir() => {
            if src_is_dir && (src.ends_with("/.") || src == ".") {
                dest_path.to_path_buf()
            } else {
                dest_path.join(base_name(src))
            }
        }
        Ok(_) if src_is_dir => return Err(err("cannot copy directory")),
        Ok(_) => dest_path.to_path_buf(),
        // docker's wording for both missing-directory cases.
        Err(_) if dest.ends_with('/') => return Err(err("no such directory")),
        Err(_) => {
            let parent = dest_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(err("no such directory"));
            }
            dest_path.to_path_buf()
        }
    };
    let mut archive = tar::Archive::new(std::io::Cursor::new(body));
    archive.set_preserve_permissions(true);
    let entries = archive
        .entries()
        .map_err(|e| err(format!("error reading archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err(format!("error reading archive: {e}")))?;
        let p = entry
            .path()
            .map_err(|e| err(format!("error reading archive: {e}")))?
            .into_owned();
        let Some(out) = rebase(&p, &target) else {
            continue;
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                err(crate::units::go_open_error(
                    &parent.display().to_string(),
                    &e,
                ))
            })?;
        }
        entry
            .unpack(&out)
            .map_err(|e| err(format!("error extracting {}: {e}", out.display())))?;
    }
    Ok(())
}

/// Stats a path in the container: Some((is_dir, is_symlink)), or None if absent.
async fn stat_in_container(c: &Client, id: &str, path: &str) -> CliResult<Option<(bool, bool)>> {
    let p = format!("/containers/{}/archive?path={}", q(id), q(path));
    let resp = c.raw_stream(Method::HEAD, &p, None, None).await?;
    let status = resp.status();
    if status == hyper::StatusCode::NOT_FOUND {
        // A missing container is an error; a missing path is not.
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if body.is_empty() || !String::from_utf8_lossy(&body).contains("No such container") {
            return Ok(None);
        }
        return Err(daemon_error(status, &body));
    }
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(daemon_error(status, &body));
    }
    Ok(path_stat(resp.headers()))
}

/// Builds the tar to upload: `src` stored under `root` ("." for a directory's contents).
pub fn build_tar(src: &Path, root: &str, follow: bool) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(follow);
    let meta = if follow {
        std::fs::metadata(src)?
    } else {
        std::fs::symlink_metadata(src)?
    };
    if meta.is_dir() {
        b.append_dir_all(root, src)?;
    } else {
        b.append_path_with_name(src, root)?;
    }
    b.into_inner()
}

async fn to_container(c: &Client, src: &str, id: &str, dest: &str, follow: bool) -> CliResult<()> {
    let put = |dir: String, body: Bytes| async move {
        let p = format!(
            "/containers/{}/archive?path={}&noOverwriteDirNonDir=true",
            q(id),
            q(&dir)
        );
        let body = Full::new(body).map_err(|never| match never {}).boxed();
        let (status, resp) = c
            .raw(Method::PUT, &p, Some(body), Some("application/x-tar"))
            .await?;
        if !status.is_success() {
            return Err(daemon_error(status, &resp));
        }
        Ok(())
    };
    if src == "-" {
        // A tar stream on stdin is extracted into the destination directory as is.
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
        return put(dest.to_string(), Bytes::from(data)).await;
    }
    let src_path = Path::new(src);
    let src_meta = std::fs::symlink_metadata(src_path)
        .map_err(|e| err(crate::units::go_open_error(src, &e).replacen("open ", "lstat ", 1)))?;
    let src_is_dir = src_meta.is_dir();
    let (dir, root) = match stat_in_container(c, id, dest).await? {
        Some((true, _)) => {
            let root = if src_is_dir && (src.ends_with("/.") || src == ".") {
                ".".to_string()
            } else {
                base_name(src)
            };
            (dest.to_string(), root)
        }
        Some(_) if src_is_dir => return Err(err("cannot copy directory")),
        // docker's wording: the destination's directory must exist.
        _ if dest.ends_with('/') => return Err(err("no such directory")),
        _ => {
            let parent = Path::new(dest)
                .parent()
                .map(|p| p.display().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            (parent, base_name(dest))
        }
    };
    let tar = build_tar(src_path, &root, follow)
        .map_err(|e| err(format!("error building archive: {e}")))?;
    put(dir, Bytes::from(tar)).await
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
    fn archive_entries_are_rebased_and_never_escape() {
        let t = Path::new("/out/dst");
        assert_eq!(rebase(Path::new("bin"), t), Some(PathBuf::from("/out/dst")));
        assert_eq!(
            rebase(Path::new("bin/sh"), t),
            Some(PathBuf::from("/out/dst/sh"))
        );
        // "DIR/." archives are rooted at ".": entries keep their whole path.
        assert_eq!(
            rebase(Path::new("./bin/sh"), t),
            Some(PathBuf::from("/out/dst/bin/sh"))
        );
        assert_eq!(rebase(Path::new("./"), t), Some(PathBuf::from("/out/dst")));
        assert_eq!(rebase(Path::new("bin/../../x"), t), None);
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(base_name("/a/b/."), "b");
    }

    #[test]
    fn tar_round_trip_of_a_directory() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("d"))?;
        std::fs::write(dir.path().join("d/f"), b"hi")?;
        let tar = build_tar(&dir.path().join("d"), "renamed", false)?;
        let mut names: Vec<String> = tar::Archive::new(std::io::Cursor::new(tar))
            .entries()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.path().ok().map(|p| p.display().to_string()))
            .collect();
        names.sort();
        assert_eq!(names, vec!["renamed/", "renamed/f"]);
        Ok(())
    }
}
