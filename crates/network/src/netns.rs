//! Persistent network namespaces: created by the daemon before the container (so its veth,
//! addresses and routes are ready when the process starts), kept alive by a bind mount of the
//! namespace file, and entered from short-lived threads.
//!
//! A network namespace belongs to a thread, not to the process: `unshare`/`setns` on a fresh
//! thread changes only that thread, which then ends. The daemon's runtime threads never move.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Runs `f` on a new thread and returns its result.
fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(f)?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// Creates a new network namespace and pins it at `path` (a bind mount of the namespace).
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let p = path.to_path_buf();
    let r = on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(nix_io)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Unpins and removes a namespace created by [`create`]. Missing is fine. The namespace
/// itself (with the container's end of every veth) goes when its last user is gone.
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(nix_io(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned namespace (a mount of an nsfs file).
pub fn exists(path: &Path) -> bool {
    use nix::sys::statfs::statfs;
    // NSFS_MAGIC: the bind mount shows the namespace file system.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    statfs(path)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false)
}

/// Runs `f` inside the namespace at `path`, on a thread of its own.
pub fn run_in<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = File::open(path)?;
    on_thread(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
        f()
    })
}

/// The namespace file of a running process, for `--network container:NAME`.
pub fn of_pid(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_enter_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ns1");
        create(&p).unwrap();
        assert!(exists(&p));
        let host = std::fs::read_link("/proc/self/ns/net").unwrap();
        let inside = run_in(&p, || std::fs::read_link("/proc/thread-self/ns/net")).unwrap();
        assert_ne!(host, inside);
        // The caller's thread did not move.
        assert_eq!(std::fs::read_link("/proc/self/ns/net").unwrap(), host);
        // Sockets made inside stay inside: only lo exists there.
        let links = run_in(&p, || {
            Ok(std::fs::read_dir("/proc/thread-self/net/dev_snmp6")
                .map(|d| d.count())
                .unwrap_or(0))
        })
        .unwrap();
        assert!(links <= 1);
        remove(&p).unwrap();
        assert!(!p.exists());
        remove(&p).unwrap();
    }
}
