//! Containers' volumes and mounts, on top of berth-volume: the mount points planned at
//! create (docker's `registerMountPoints` and anonymous volumes for `Config.Volumes`), the
//! OCI mounts built at every start (volumes mounted, copy-up on the first start), which
//! containers use which volume, and `rm -v`.

use crate::containers::Record;
use crate::state::State;
use berth_api::models::{self, HostConfig};
use berth_api::Error;
use berth_volume::spec::{self, MountPoint, MountSpec};
use berth_volume::{fsutil, CreateRequest, VolumeError, ANONYMOUS_LABEL, LOCAL_DRIVER};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

fn random_volume_name() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The volume-create request behind a volume mount point (anonymous ones are labelled).
fn create_request(mp: &MountPoint) -> CreateRequest {
    let mut labels = mp.volume_labels.clone();
    if mp.anonymous {
        labels
            .get_or_insert_with(BTreeMap::new)
            .insert(ANONYMOUS_LABEL.into(), String::new());
    }
    CreateRequest {
        name: mp.name.clone(),
        driver: mp.driver.clone(),
        options: mp.volume_options.clone(),
        labels,
    }
}

/// Docker's `Mounts` of a container (inspect and ps).
pub fn api_mounts(r: &Record) -> Vec<models::MountPoint> {
    r.mounts.iter().map(MountPoint::to_api).collect()
}

impl State {
    /// Container ids using each volume, in any state (docker's volume references).
    pub fn volume_refs(&self) -> HashMap<String, Vec<String>> {
        let mut refs: HashMap<String, Vec<String>> = HashMap::new();
        for c in self.table_read().by_id.values() {
            for m in c.rec().mounts.iter().filter(|m| m.typ == "volume") {
                let ids = refs.entry(m.name.clone()).or_default();
                if !ids.contains(&c.id) {
                    ids.push(c.id.clone());
                }
            }
        }
        for ids in refs.values_mut() {
            ids.sort();
        }
        refs
    }

    pub fn volumes_in_use(&self) -> HashSet<String> {
        self.volume_refs().into_keys().collect()
    }

    /// Create time: every mount of the container, validated with docker's errors; nothing
    /// is created yet (see [`State::create_volumes`]), so a refused request changes nothing.
    pub fn plan_mounts(
        &self,
        hc: &HostConfig,
        config_volumes: &[String],
    ) -> Result<Vec<MountPoint>, Error> {
        let mut points: Vec<MountPoint> = Vec::new();
        let put = |points: &mut Vec<MountPoint>, mp: MountPoint| match points
            .iter()
            .position(|p| p.destination == mp.destination)
        {
            Some(i) => points[i] = mp,
            None => points.push(mp),
        };
        let tmpfs = hc.tmpfs.clone().unwrap_or_default();
        for (dest, data) in &tmpfs {
            spec::validate_tmpfs(dest, data)?;
        }
        // 1. --volumes-from: the other container's mount points, never copied up.
        for v in hc.volumes_from.iter().flatten() {
            let (id, mode) = spec::parse_volumes_from(v)?;
            let other = self
                .lookup(&id)
                .map_err(|e| Error::invalid(e.message))?
                .rec();
            for m in &other.mounts {
                let mut cp = m.clone();
                cp.rw = m.rw && spec::read_write(&mode);
                cp.copy_data = false;
                cp.mode = String::new();
                put(&mut points, cp);
            }
        }
        // 2. -v / Binds.
        let mut taken: HashSet<String> = HashSet::new();
        for b in hc.binds.iter().flatten() {
            let mut mp = spec::parse_bind(b)?;
            let dup = tmpfs.keys().any(|t| spec::clean_path(t) == mp.destination);
            if taken.contains(&mp.destination) || dup {
                return Err(Error::invalid(format!(
                    "Duplicate mount point: {}",
                    mp.destination
                )));
            }
            if mp.typ == "volume" {
                if let Some(d) = hc.volume_driver.as_deref().filter(|d| !d.is_empty()) {
                    mp.driver = d.to_string();
                }
                self.check_volume(&mut mp)?;
            }
            taken.insert(mp.destination.clone());
            put(&mut points, mp);
        }
        // 3. --mount / Mounts.
        for m in hc.mounts.iter().flatten() {
            let s = MountSpec::from(m);
            let mut mp = spec::parse_mount(&s)?;
            if taken.contains(&mp.destination) {
                return Err(Error::invalid(format!(
                    "Duplicate mount point: {}",
                    s.target
                )));
            }
            if mp.typ == "volume" {
                self.check_volume(&mut mp)?;
            }
            taken.insert(mp.destination.clone());
            put(&mut points, mp);
        }
        // 4. The image's VOLUMEs and `-v /path`: anonymous volumes where nothing else is.
        let mut seen = HashSet::new();
        for v in config_volumes {
            let mut mp = spec::anonymous_volume(v);
            if !seen.insert(mp.destination.clone()) {
                continue;
            }
            let covered = points.iter().any(|p| p.destination == mp.destination)
                || tmpfs.keys().any(|t| spec::clean_path(t) == mp.destination);
            if covered {
                continue;
            }
            if let Some(d) = hc.volume_driver.as_deref().filter(|d| !d.is_empty()) {
                mp.driver = d.to_string();
            }
            self.check_volume(&mut mp)?;
            points.push(mp);
        }
        Ok(points)
    }

    /// Names an anonymous volume, validates what creating the volume would refuse, and
    /// points the mount at the volume's data path.
    fn check_volume(&self, mp: &mut MountPoint) -> Result<(), Error> {
        if mp.name.is_empty() {
            mp.name = random_volume_name();
        }
        if self.volumes.get(&mp.name).is_err() {
            berth_volume::store::validate_request(&create_request(mp))?;
        }
        mp.driver = LOCAL_DRIVER.into();
        mp.source = self.volumes.data_path(&mp.name).display().to_string();
        Ok(())
    }

    /// Creates the volumes a new container's mounts name (named ones on demand, like
    /// docker's create).
    pub fn create_volumes(&self, mounts: &[MountPoint]) -> Result<(), Error> {
        for mp in mounts.iter().filter(|m| m.typ == "volume") {
            self.volumes.create(&create_request(mp))?;
        }
        Ok(())
    }

    /// Start time: the OCI mounts of the container's volumes, binds and tmpfs, added to
    /// `mounts` (the etc files); a user mount replaces an etc file at the same place, and
    /// everything is ordered so a parent is mounted before what is mounted inside it.
    /// Volumes are mounted if their options say so and, on the first start, an empty new
    /// volume is filled from the image (copy-up).
    pub async fn setup_mounts(
        self: &Arc<Self>,
        rec: &Record,
        rootfs: &Path,
        mounts: &mut Vec<oci_spec::runtime::Mount>,
    ) -> Result<(), Error> {
        let tmpfs = rec.host_config.tmpfs.clone().unwrap_or_default();
        if rec.mounts.is_empty() && tmpfs.is_empty() {
            return Ok(());
        }
        let me = self.clone();
        let points = rec.mounts.clone();
        let first = !rec.has_started;
        let rootfs = rootfs.to_path_buf();
        let user = tokio::task::spawn_blocking(move || {
            let mut all = points;
            for (dest, data) in &tmpfs {
                all.push(MountPoint {
                    typ: "tmpfs".into(),
                    destination: spec::clean_path(dest),
                    data: data.clone(),
                    rw: true,
                    ..Default::default()
                });
            }
            let dests: Vec<String> = all.iter().map(|m| m.destination.clone()).collect();
            let mut out = Vec::new();
            for mp in &all {
                let m = me.mount_point(mp, &rootfs, first)?;
                // Mount points on the rootfs are made here, resolved inside it (a symlink in
                // the image, even a dangling one, never leads out); those inside another
                // mount are left to the runtime, which resolves them the same way.
                let nested = dests
                    .iter()
                    .any(|d| d != &mp.destination && Path::new(&mp.destination).starts_with(d));
                if !nested {
                    let is_dir = mp.typ != "bind"
                        || std::fs::metadata(&mp.source)
                            .map(|m| m.is_dir())
                            .unwrap_or(true);
                    fsutil::mkdir_in_root(&rootfs, &mp.destination, is_dir).map_err(|e| {
                        Error::invalid(format!(
                            "error creating mount point {}: {e}",
                            mp.destination
                        ))
                    })?;
                }
                out.push(m);
            }
            Ok::<_, Error>(out)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let dests: HashSet<&Path> = user.iter().map(|m| m.destination().as_path()).collect();
        mounts.retain(|m| !dests.contains(m.destination().as_path()));
        mounts.extend(user);
        mounts.sort_by_key(|m| spec::depth(&m.destination().to_string_lossy()));
        Ok(())
    }

    fn mount_point(
        &self,
        mp: &MountPoint,
        rootfs: &Path,
        first_start: bool,
    ) -> Result<oci_spec::runtime::Mount, Error> {
        match mp.typ.as_str() {
            "volume" => {
                let v = match self.volumes.get(&mp.name) {
                    Ok(v) => v,
                    // Removed while this container was being created: make it again.
                    Err(VolumeError::NotFound(_)) => self.volumes.create(&create_request(mp))?,
                    Err(e) => return Err(e.into()),
                };
                let path = self.volumes.mount(&v)?;
                if mp.copy_data && first_start {
                    fsutil::copy_up(rootfs, &mp.destination, &path).map_err(|e| {
                        Error::internal(format!(
                            "failed to populate volume {}: copying {}: {e}",
                            mp.name, mp.destination
                        ))
                    })?;
                }
                Ok(spec::oci_mount(mp, &path)?)
            }
            "bind" => {
                let src = Path::new(&mp.source);
                if std::fs::symlink_metadata(src).is_err() {
                    if !mp.create_source {
                        return Err(Error::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            mp.source
                        )));
                    }
                    // `-v /host:/dst` makes a missing host directory, as docker does.
                    std::fs::create_dir_all(src).map_err(|e| {
                        Error::internal(format!(
                            "error while creating mount source path '{}': {e}",
                            mp.source
                        ))
                    })?;
                }
                Ok(spec::oci_mount(mp, src)?)
            }
            _ => Ok(spec::oci_mount(mp, Path::new("tmpfs"))?),
        }
    }

    /// After a container stopped: unmount its `type`/`device` volumes that no other
    /// running container uses (a tmpfs volume loses its content then, as with docker).
    pub fn release_volumes(&self, rec: &Record) {
        for m in rec.mounts.iter().filter(|m| m.typ == "volume") {
            self.events.publish(
                "volume",
                "unmount",
                &m.name,
                std::collections::HashMap::from([
                    ("container".to_string(), rec.id.clone()),
                    ("driver".to_string(), m.driver.clone()),
                ]),
            );
        }
        let names: Vec<&str> = rec
            .mounts
            .iter()
            .filter(|m| m.typ == "volume")
            .map(|m| m.name.as_str())
            .collect();
        if names.is_empty() {
            return;
        }
        let busy: HashSet<String> = self
            .table_read()
            .by_id
            .values()
            .filter(|c| c.id != rec.id)
            .map(|c| c.rec())
            .filter(|r| r.state.running)
            .flat_map(|r| r.mounts.into_iter().map(|m| m.name))
            .collect();
        for n in names {
            if busy.contains(n) {
                continue;
            }
            if let Ok(v) = self.volumes.get(n) {
                if let Err(e) = self.volumes.unmount(&v) {
                    tracing::warn!(volume = n, "unmounting volume: {e}");
                }
            }
        }
    }

    /// `rm -v` (and `--rm`): the container's anonymous volumes that no other container
    /// uses. Failures are logged, as docker does.
    pub fn remove_anonymous_volumes(&self, rec: &Record) {
        let refs = self.volume_refs();
        for m in rec
            .mounts
            .iter()
            .filter(|m| m.typ == "volume" && m.anonymous)
        {
            let others = refs
                .get(&m.name)
                .map(|ids| ids.iter().any(|i| i != &rec.id))
                .unwrap_or(false);
            if others {
                continue;
            }
            match self.volumes.remove(&m.name) {
                Ok(()) | Err(VolumeError::NotFound(_)) => {}
                Err(e) => tracing::warn!(volume = %m.name, "removing volume: {e}"),
            }
        }
    }

    /// DELETE /volumes/{name}: refused while any container references it.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<(), Error> {
        if let Some(ids) = self.volume_refs().get(name) {
            return Err(Error::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(", ")
            )));
        }
        match self.volumes.remove(name) {
            Err(VolumeError::NotFound(_)) if force => Ok(()),
            r => Ok(r?),
        }
    }
}

const PROPAGATIONS: &[&str] = &["shared", "rshared", "slave", "rslave"];

fn mount_binary() -> Result<&'static str, Error> {
    ["/usr/bin/mount", "/bin/mount"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| Error::internal("bind propagation needs mount(8) on the host"))
}

fn hook(path: &str, args: &[&str]) -> Result<oci_spec::runtime::Hook, Error> {
    oci_spec::runtime::HookBuilder::default()
        .path(path)
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| Error::internal(e.to_string()))
}

/// Bind propagation other than private. The default runtime (libcontainer 0.7) ignores a
/// mount's propagation option, so such binds are made by createContainer hooks instead:
/// mount(8) in the container's mount namespace before pivot_root binds the source at the
/// mount point (created and resolved inside the rootfs first), sets the propagation, then
/// read-only; the root is made shared when a bind is shared (docker's rootfs propagation).
/// Docker's checks apply: a shared bind needs a shared source mount, a slave one a shared
/// or slave source.
pub fn apply_propagation(spec: &mut oci_spec::runtime::Spec, rootfs: &Path) -> Result<(), Error> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let special: Vec<usize> = mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| {
            m.typ().as_deref() == Some("bind")
                && m.options()
                    .iter()
                    .flatten()
                    .any(|o| PROPAGATIONS.contains(&o.as_str()))
        })
        .map(|(i, _)| i)
        .collect();
    if special.is_empty() {
        return Ok(());
    }
    let mount = mount_binary()?;
    let mut hooks = Vec::new();
    let mut any_shared = false;
    for &i in &special {
        let m = &mounts[i];
        let dest = m.destination().clone();
        let src = m.source().clone().unwrap_or_default();
        let opts = m.options().clone().unwrap_or_default();
        let prop = opts
            .iter()
            .find(|o| PROPAGATIONS.contains(&o.as_str()))
            .cloned()
            .unwrap_or_default();
        let shared = prop.ends_with("shared");
        let (mp, is_shared, is_slave) = fsutil::mount_propagation(&src)
            .map_err(|e| Error::invalid(format!("{}: {e}", src.display())))?;
        if shared && !is_shared {
            return Err(Error::invalid(format!(
                "path {} is mounted on {} but it is not a shared mount",
                src.display(),
                mp.display()
            )));
        }
        if !shared && !is_shared && !is_slave {
            return Err(Error::invalid(format!(
                "path {} is mounted on {} but it is not a shared or slave mount",
                src.display(),
                mp.display()
            )));
        }
        any_shared |= shared;
        // Hooks run after every other mount: one nested in another is not supported.
        let nested = mounts.iter().enumerate().any(|(j, o)| {
            j != i
                && (dest.starts_with(o.destination()) || o.destination().starts_with(&dest))
                && o.destination() != Path::new("/")
                && !matches!(
                    o.destination().to_str(),
                    Some("/proc" | "/dev" | "/sys" | "/dev/pts" | "/dev/shm" | "/dev/mqueue")
                        | Some("/sys/fs/cgroup")
                )
        });
        if nested {
            return Err(Error::invalid(format!(
                "bind propagation {prop} on {}: not supported together with a mount inside or around it",
                dest.display()
            )));
        }
        let is_dir = std::fs::metadata(&src).map(|m| m.is_dir()).unwrap_or(true);
        let target =
            fsutil::mkdir_in_root(rootfs, &dest.to_string_lossy(), is_dir).map_err(|e| {
                Error::internal(format!("creating mount point {}: {e}", dest.display()))
            })?;
        let (s, t) = (src.to_string_lossy(), target.to_string_lossy());
        let bind = if opts.iter().any(|o| o == "bind") {
            "--bind"
        } else {
            "--rbind"
        };
        hooks.push(hook(mount, &["mount", bind, "--", &s, &t])?);
        hooks.push(hook(mount, &["mount", &format!("--make-{prop}"), &t])?);
        if opts.iter().any(|o| o == "ro") {
            hooks.push(hook(mount, &["mount", "-o", "remount,bind,ro", &t])?);
        }
    }
    for i in special.into_iter().rev() {
        mounts.remove(i);
    }
    spec.set_mounts(Some(mounts));
    let mut h = spec.hooks().clone().unwrap_or_default();
    let mut cc = h.create_container().clone().unwrap_or_default();
    cc.extend(hooks);
    h.set_create_container(Some(cc));
    spec.set_hooks(Some(h));
    if any_shared {
        if let Some(l) = spec.linux_mut() {
            l.set_rootfs_propagation(Some("shared".into()));
        }
    }
    Ok(())
}
