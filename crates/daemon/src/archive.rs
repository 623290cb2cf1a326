//! The archive API behind `docker cp` (HEAD/GET/PUT /containers/{id}/archive): the
//! container's filesystem (berth-image's `ContainerFs`) opened with its volumes, binds and
//! /etc files, for running and stopped containers alike.

use crate::containers::{Ctr, Record};
use crate::state::State;
use berth_api::Error;
use berth_image::{ContainerFs, FsMount, ImageStore};
use std::path::Path;
use std::sync::Arc;

impl State {
    /// What cp sees mounted in the container: its volumes and binds (their host sources)
    /// and, once it has started, the /etc files the daemon bind-mounts. tmpfs mounts have
    /// no host side and are not seen.
    fn cp_mounts(&self, rec: &Record, dir: &Path) -> Vec<FsMount> {
        let ro = rec.host_config.readonly_rootfs.unwrap_or(false);
        let mut out = Vec::new();
        for (f, dest) in [
            ("resolv.conf", "/etc/resolv.conf"),
            ("hostname", "/etc/hostname"),
            ("hosts", "/etc/hosts"),
        ] {
            let source = dir.join(f);
            if rec.has_started && source.is_file() {
                out.push(FsMount {
                    destination: dest.into(),
                    source,
                    rw: !ro,
                    volume: false,
                });
            }
        }
        for m in &rec.mounts {
            let source = match m.typ.as_str() {
                "volume" if m.source.is_empty() => self.volumes.data_path(&m.name),
                "volume" | "bind" => m.source.clone().into(),
                _ => continue,
            };
            out.push(FsMount {
                destination: m.destination.clone(),
                source,
                rw: m.rw,
                volume: true,
            });
        }
        out
    }

    /// Runs `f` on the container's filesystem. Call from a blocking thread: it takes the
    /// container's operation lock for the whole run (as docker holds the container lock),
    /// so a stopped container's rootfs, mounted here, cannot be started, removed or
    /// unmounted under it; it is unmounted again afterwards.
    pub fn in_container_fs<T>(
        &self,
        c: &Arc<Ctr>,
        f: impl FnOnce(&ContainerFs, &Record) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _op = c.op.blocking_lock();
        let rec = c.rec();
        if rec.state.status == "removing" {
            return Err(Error::conflict(format!(
                "container {} is marked for removal and cannot be used",
                rec.id
            )));
        }
        if rec.state.dead {
            return Err(Error::conflict(format!("container {} is dead", rec.id)));
        }
        let dir = self.container_dir(&c.id);
        let running = rec.state.running;
        let rootfs = self.images.mount_rootfs(&rec.image_id, &dir)?;
        let r = ContainerFs::open(
            &rootfs,
            &self.cp_mounts(&rec, &dir),
            rec.host_config.readonly_rootfs.unwrap_or(false),
        )
        .and_then(|fs| f(&fs, &rec));
        if !running {
            if let Err(e) = ImageStore::unmount_rootfs(&dir) {
                tracing::warn!(id = %c.id, "cp: unmounting rootfs: {}", e.message);
            }
        }
        r
    }
}

/// docker's message for a path that is not there, naming the container as the client did.
pub fn file_not_found(e: Error, path: &str, container: &str) -> Error {
    if e.kind == berth_api::ErrorKind::NotFound {
        Error::not_found(format!(
            "Could not find the file {path} in container {container}"
        ))
    } else {
        e
    }
}
