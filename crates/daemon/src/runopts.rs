//! Run options that need the daemon, not just the spec: `--init` (berth-init bind-mounted
//! at /sbin/docker-init), IPC and PID namespaces shared between containers
//! (`--ipc shareable`, `--ipc container:X`, `--pid container:X`) and `--device`.

use crate::containers::Record;
use crate::state::State;
use berth_api::models::{HostConfig, HostConfigCgroupnsModeEnum};
use berth_api::Error;
use berth_runtime::spec::DeviceMapping;
use berth_volume::fsutil;
use oci_spec::runtime::Mount;
use std::path::{Path, PathBuf};

/// Where docker mounts its init in the container.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Docker's default /dev/shm size.
const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// What a container's start adds to its spec beyond the HostConfig fields.
#[derive(Debug, Default)]
pub struct RunPlan {
    /// The process's argv (the init in front with `--init`).
    pub args: Vec<String>,
    pub mounts: Vec<Mount>,
    /// The IPC mode the spec sees (`container:X` of a `host` donor reads as `host`).
    pub ipc_mode: String,
    pub ipc_ns_path: Option<String>,
    pub pid_mode: String,
    pub pid_ns_path: Option<String>,
    pub devices: Vec<DeviceMapping>,
}

/// Docker's create-time checks of the namespace modes (moby `verifyPlatformContainerSettings`).
pub fn validate_modes(hc: &HostConfig) -> Result<(), Error> {
    let container_ref = |m: &str| m.strip_prefix("container:").is_some_and(|c| !c.is_empty());
    let ipc = hc.ipc_mode.as_deref().unwrap_or("");
    if !(matches!(ipc, "" | "private" | "shareable" | "host" | "none") || container_ref(ipc)) {
        return Err(Error::invalid(format!("invalid IPC mode: {ipc}")));
    }
    let pid = hc.pid_mode.as_deref().unwrap_or("");
    if !(matches!(pid, "" | "host") || container_ref(pid)) {
        return Err(Error::invalid(format!("invalid PID mode: {pid}")));
    }
    let uts = hc.uts_mode.as_deref().unwrap_or("");
    if !matches!(uts, "" | "host") {
        return Err(Error::invalid(format!("invalid UTS mode: {uts}")));
    }
    for d in hc.devices.iter().flatten() {
        let dst = d.path_in_container.as_deref().unwrap_or("");
        if d.path_on_host.as_deref().unwrap_or("").is_empty() || !dst.starts_with('/') {
            return Err(Error::invalid(format!(
                "invalid device mapping: {:?} -> {dst:?}",
                d.path_on_host.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

/// Docker's defaults, recorded at create as `inspect` shows them: IpcMode "private",
/// CgroupnsMode "private" on cgroup v2 and "host" on v1.
pub fn apply_defaults(hc: &mut HostConfig) {
    if hc.ipc_mode.as_deref().unwrap_or("").is_empty() {
        hc.ipc_mode = Some("private".into());
    }
    if matches!(
        hc.cgroupns_mode,
        None | Some(HostConfigCgroupnsModeEnum::EMPTY)
    ) {
        hc.cgroupns_mode = Some(if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            HostConfigCgroupnsModeEnum::PRIVATE
        } else {
            HostConfigCgroupnsModeEnum::HOST
        });
    }
}

/// The spec's cgroupns mode string for a HostConfig.
pub fn cgroupns_mode(hc: &HostConfig) -> String {
    match hc.cgroupns_mode {
        Some(HostConfigCgroupnsModeEnum::HOST) => "host".into(),
        Some(HostConfigCgroupnsModeEnum::PRIVATE) => "private".into(),
        _ => String::new(),
    }
}

fn bind(src: &Path, dst: &str, options: &[&str]) -> Result<Mount, Error> {
    serde_json::from_value(serde_json::json!({
        "destination": dst, "type": "bind", "source": src, "options": options,
    }))
    .map_err(|e| Error::internal(format!("mount {dst}: {e}")))
}

/// A container's shared /dev/shm on the host (`--ipc shareable`).
pub fn shm_dir(container_dir: &Path) -> PathBuf {
    container_dir.join("shm")
}

impl State {
    /// berth-init: daemon.json's `init-path`, else next to berthd.
    fn init_binary(&self) -> Result<PathBuf, Error> {
        let p = match &self.cfg.init_path {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| Error::internal(e.to_string()))?
                .with_file_name("berth-init"),
        };
        if !p.exists() {
            // Docker's words when its docker-init is missing.
            return Err(Error::internal(format!(
                "exec: \"docker-init\": executable file not found in $PATH ({})",
                p.display()
            )));
        }
        Ok(p)
    }

    /// A running donor for `container:X`, or docker's error naming what was asked.
    fn donor(&self, what: &str, name: &str) -> Result<Record, Error> {
        let o = self.lookup(name)?.rec();
        if o.state.restarting {
            return Err(Error::conflict(format!(
                "container {} is restarting, wait until the container is running",
                o.id
            )));
        }
        if !o.state.running || o.state.pid <= 0 {
            return Err(Error::conflict(format!(
                "cannot join {what} of a non running container: {name}"
            )));
        }
        Ok(o)
    }

    /// Everything `start` needs for init, shared namespaces and devices. Mount points are
    /// made in `rootfs`; a shareable /dev/shm is mounted under `dir` (undone by
    /// [`release_run_plan`]).
    pub fn run_plan(
        &self,
        rec: &Record,
        rootfs: &Path,
        dir: &Path,
        args: Vec<String>,
    ) -> Result<RunPlan, Error> {
        let hc = &rec.host_config;
        let mut plan = RunPlan {
            args,
            ipc_mode: hc.ipc_mode.clone().unwrap_or_default(),
            pid_mode: hc.pid_mode.clone().unwrap_or_default(),
            ..Default::default()
        };

        if hc.init.unwrap_or(self.cfg.init) {
            let bin = self.init_binary()?;
            fsutil::mkdir_in_root(rootfs, INIT_PATH, false).map_err(|e| {
                Error::internal(format!("error creating mount point {INIT_PATH}: {e}"))
            })?;
            plan.mounts.push(bind(&bin, INIT_PATH, &["bind", "ro"])?);
            let mut args = vec![INIT_PATH.to_string(), "--".to_string()];
            args.append(&mut plan.args);
            plan.args = args;
        }

        let ipc = plan.ipc_mode.clone();
        if ipc == "shareable" {
            let shm = shm_dir(dir);
            if !fsutil::is_mounted(&shm).unwrap_or(false) {
                std::fs::create_dir_all(&shm)?;
                let size = hc.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE);
                fsutil::mount_fs(
                    "shm",
                    &shm,
                    "tmpfs",
                    &format!("nosuid,nodev,noexec,mode=1777,size={size}"),
                )
                .map_err(|e| Error::internal(format!("mounting shm tmpfs: {e}")))?;
            }
            plan.mounts
                .push(bind(&shm, "/dev/shm", &["rbind", "rprivate"])?);
        } else if let Some(name) = ipc.strip_prefix("container:") {
            let o = self.donor("IPC", name)?;
            match o.host_config.ipc_mode.as_deref().unwrap_or("") {
                "host" => plan.ipc_mode = "host".into(),
                "shareable" => {
                    plan.ipc_ns_path = Some(format!("/proc/{}/ns/ipc", o.state.pid));
                    let shm = shm_dir(&self.container_dir(&o.id));
                    plan.mounts
                        .push(bind(&shm, "/dev/shm", &["rbind", "rprivate"])?);
                }
                _ => {
                    return Err(Error::invalid(
                        "non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
                    ))
                }
            }
        }

        if let Some(name) = plan.pid_mode.clone().strip_prefix("container:") {
            let o = self.donor("PID namespace", name)?;
            if o.host_config.pid_mode.as_deref() == Some("host") {
                plan.pid_mode = "host".into();
            } else {
                plan.pid_ns_path = Some(format!("/proc/{}/ns/pid", o.state.pid));
            }
        }

        plan.devices = hc
            .devices
            .iter()
            .flatten()
            .map(|d| DeviceMapping {
                path_on_host: d.path_on_host.clone().unwrap_or_default(),
                path_in_container: d.path_in_container.clone().unwrap_or_default(),
                cgroup_permissions: d.cgroup_permissions.clone().unwrap_or_default(),
            })
            .collect();
        Ok(plan)
    }
}

/// After the container stopped (or failed to start): unmount its shareable /dev/shm.
pub fn release_run_plan(dir: &Path) {
    let shm = shm_dir(dir);
    if fsutil::is_mounted(&shm).unwrap_or(false) {
        if let Err(e) = fsutil::unmount(&shm) {
            tracing::warn!(path = %shm.display(), "unmounting shm: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_validation_like_docker() {
        let hc = |ipc: &str, pid: &str, uts: &str| HostConfig {
            ipc_mode: Some(ipc.into()),
            pid_mode: Some(pid.into()),
            uts_mode: Some(uts.into()),
            ..Default::default()
        };
        for ok in [
            hc("", "", ""),
            hc("shareable", "host", "host"),
            hc("container:a", "container:b", ""),
            hc("none", "", ""),
        ] {
            assert!(validate_modes(&ok).is_ok());
        }
        let msg = |h: HostConfig| validate_modes(&h).unwrap_err().message;
        assert_eq!(msg(hc("bogus", "", "")), "invalid IPC mode: bogus");
        assert_eq!(
            msg(hc("container:", "", "")),
            "invalid IPC mode: container:"
        );
        assert_eq!(msg(hc("", "private", "")), "invalid PID mode: private");
        assert_eq!(msg(hc("", "", "private")), "invalid UTS mode: private");
    }

    #[test]
    fn defaults_recorded() {
        let mut h = HostConfig::default();
        apply_defaults(&mut h);
        assert_eq!(h.ipc_mode.as_deref(), Some("private"));
        assert!(matches!(
            h.cgroupns_mode,
            Some(HostConfigCgroupnsModeEnum::HOST | HostConfigCgroupnsModeEnum::PRIVATE)
        ));
        h.ipc_mode = Some("host".into());
        h.cgroupns_mode = Some(HostConfigCgroupnsModeEnum::HOST);
        apply_defaults(&mut h);
        assert_eq!(h.ipc_mode.as_deref(), Some("host"));
        assert_eq!(cgroupns_mode(&h), "host");
    }
}
