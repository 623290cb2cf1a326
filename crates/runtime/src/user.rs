//! Resolution of docker's `-u user[:group]` and `--group-add` against the container's
//! own `/etc/passwd` and `/etc/group` (moby/sys/user `GetExecUser` semantics). The files
//! are opened with `openat2(RESOLVE_IN_ROOT)`, so a symlink in the image cannot make us
//! read the host's files.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Result, RuntimeError};

/// The resolved user of a container process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From the passwd entry, `/` when there is none (runc's default).
    pub home: String,
}

/// `(uid, gid, additional gids)` for docker's `-u` value and `--group-add` list.
pub fn resolve_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<(u32, u32, Vec<u32>)> {
    let u = resolve_exec_user(rootfs, user, group_add)?;
    Ok((u.uid, u.gid, u.additional_gids))
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(s: &str) -> Vec<PasswdEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(s: &str) -> Vec<GroupEntry> {
    s.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// `struct open_how` (libc's is non-exhaustive, so it cannot be built here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Reads `rel` (relative to `rootfs`) with every path component resolved inside
/// `rootfs`. A missing file is `Ok(None)`.
pub fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>> {
    let root = File::open(rootfs)?;
    let rel_c = CString::new(rel.trim_start_matches('/').as_bytes())
        .map_err(|_| RuntimeError::InvalidArgument(format!("invalid path {rel:?}")))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: valid fd, NUL-terminated path and a properly sized open_how.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&root),
            rel_c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let file = if fd < 0 {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => return Ok(None),
            // Kernels before 5.6: refuse symlinks altogether instead.
            Some(libc::ENOSYS) => match open_nofollow(rootfs, rel)? {
                Some(f) => f,
                None => return Ok(None),
            },
            _ => return Err(err.into()),
        }
    } else {
        // SAFETY: openat2 returned a fresh descriptor that we now own.
        File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    };
    let mut s = String::new();
    // Lossy: a stray non-UTF-8 byte in a gecos field must not hide the whole file.
    let mut buf = Vec::new();
    (&file).read_to_end(&mut buf)?;
    s.push_str(&String::from_utf8_lossy(&buf));
    Ok(Some(s))
}

fn open_nofollow(rootfs: &Path, rel: &str) -> Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut p = rootfs.to_path_buf();
    for comp in Path::new(rel.trim_start_matches('/')).components() {
        p.push(comp.as_os_str());
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RuntimeError::InvalidArgument(format!(
                    "{} is a symlink, refusing to follow it",
                    Path::new(std::ffi::OsStr::from_bytes(rel.as_bytes())).display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)?,
    ))
}

fn no_user(name: &str) -> RuntimeError {
    RuntimeError::InvalidArgument(format!(
        "unable to find user {name}: no matching entries in passwd file"
    ))
}

fn no_group(name: &str) -> RuntimeError {
    RuntimeError::InvalidArgument(format!(
        "unable to find group {name}: no matching entries in group file"
    ))
}

/// Full resolution (moby/sys/user `GetExecUser` + `GetAdditionalGroups`).
pub fn resolve_exec_user(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ExecUser> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd")?
        .map(|s| parse_passwd(&s))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "etc/group")?
        .map(|s| parse_group(&s))
        .unwrap_or_default();

    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
    };
    // The default user is root, looked up like any other so root's entry gives its home
    // and its supplementary groups.
    let lookup = if user_arg.is_empty() {
        "root"
    } else {
        user_arg
    };
    let matched = passwd
        .iter()
        .find(|e| e.name == lookup || e.uid.to_string() == lookup);
    let mut matched_name = None;
    match matched {
        Some(e) => {
            out.uid = e.uid;
            out.gid = e.gid;
            out.home = if e.home.is_empty() {
                "/".into()
            } else {
                e.home.clone()
            };
            matched_name = Some(e.name.clone());
        }
        None if user_arg.is_empty() => {}
        None => {
            out.uid = user_arg.parse().map_err(|_| no_user(user_arg))?;
        }
    }

    match group_arg {
        Some(g) if !g.is_empty() => {
            // First match wins, even if there is more than one entry.
            if let Some(e) = groups
                .iter()
                .find(|e| e.name == g || e.gid.to_string() == g)
            {
                out.gid = e.gid;
            } else {
                out.gid = g.parse().map_err(|_| no_group(g))?;
            }
        }
        _ => {
            // Supplementary groups only in the implicit form.
            if let Some(name) = &matched_name {
                out.additional_gids = groups
                    .iter()
                    .filter(|e| e.members.iter().any(|m| m == name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }

    for g in group_add {
        let gid = match groups
            .iter()
            .find(|e| &e.name == g || &e.gid.to_string() == g)
        {
            Some(e) => e.gid,
            None => g.parse().map_err(|_| no_group(g))?,
        };
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             app:x:1000:1000:App,,,:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\napp:x:1000:\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn resolves_like_docker() {
        let r = rootfs();
        let p = r.path();
        assert_eq!(resolve_user(p, "", &[]).unwrap(), (0, 0, vec![10]));
        assert_eq!(
            resolve_user(p, "app", &[]).unwrap(),
            (1000, 1000, vec![10, 50])
        );
        assert_eq!(
            resolve_user(p, "1000", &[]).unwrap(),
            (1000, 1000, vec![10, 50])
        );
        // Numeric ids need no entry.
        assert_eq!(resolve_user(p, "4242", &[]).unwrap(), (4242, 0, vec![]));
        assert_eq!(
            resolve_user(p, "4242:4343", &[]).unwrap(),
            (4242, 4343, vec![])
        );
        // Explicit group: no supplementary groups.
        assert_eq!(
            resolve_user(p, "app:staff", &[]).unwrap(),
            (1000, 50, vec![])
        );
        assert_eq!(resolve_user(p, "1:wheel", &[]).unwrap(), (1, 10, vec![]));
        assert_eq!(
            resolve_user(p, "daemon", &["staff".into(), "77".into()]).unwrap(),
            (1, 1, vec![50, 77])
        );
        assert_eq!(resolve_exec_user(p, "app", &[]).unwrap().home, "/home/app");
    }

    #[test]
    fn errors_match_docker() {
        let r = rootfs();
        let p = r.path();
        assert_eq!(
            resolve_user(p, "nosuch", &[]).unwrap_err().to_string(),
            "unable to find user nosuch: no matching entries in passwd file"
        );
        assert_eq!(
            resolve_user(p, "app:nogroup", &[]).unwrap_err().to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        assert!(resolve_user(p, "", &["nogroup".into()]).is_err());
    }

    #[test]
    fn missing_files_and_symlink_escape() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve_user(empty.path(), "", &[]).unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve_user(empty.path(), "5:6", &[]).unwrap(),
            (5, 6, vec![])
        );
        assert!(resolve_user(empty.path(), "root", &[]).is_err());

        // /etc/passwd -> /etc/hostpasswd must resolve inside the rootfs, not the host.
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path().join("passwd"), r.path().join("etc/passwd"))
            .unwrap();
        assert!(resolve_user(r.path(), "evil", &[]).is_err());
        // Same with a relative ../../ escape.
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        let rel = format!(
            "../../../../../../../..{}",
            host.path().join("passwd").display()
        );
        std::os::unix::fs::symlink(rel, r.path().join("etc/passwd")).unwrap();
        assert!(resolve_user(r.path(), "evil", &[]).is_err());
    }
}
