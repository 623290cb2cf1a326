//! Daemon state: the stores, the container table, and the start-up recovery that reattaches
//! to every shim still running.

use crate::config::Config;
use crate::containers::{Ctr, Record};
use crate::exec::Exec;
use anyhow::Context;
use berth_api::Error;
use berth_image::ImageStore;
use berth_store::{BlobStore, Db};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub struct State {
    pub cfg: Config,
    pub root: PathBuf,
    pub containers_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub shim_binary: PathBuf,
    pub db: Arc<Db>,
    pub images: Arc<ImageStore>,
    pub table: RwLock<Table>,
    pub execs: RwLock<HashMap<String, Arc<Exec>>>,
    pub daemon_id: String,
    pub networks: crate::networks::Networks,
    pub volumes: Arc<berth_volume::VolumeStore>,
    pub events: crate::events::Bus,
}

/// Containers by id, plus the name index. One lock so a name is never claimed twice.
#[derive(Default)]
pub struct Table {
    pub by_id: HashMap<String, Arc<Ctr>>,
    pub by_name: HashMap<String, String>,
}

pub const CONTAINERS_TABLE: &str = "containers";

impl State {
    pub async fn open(cfg: Config, root: PathBuf, exec_root: PathBuf) -> anyhow::Result<Self> {
        let containers_dir = root.join("containers");
        std::fs::create_dir_all(&containers_dir)?;
        let runtime_root = exec_root.join("runtime");
        std::fs::create_dir_all(&runtime_root)?;
        crate::util::spread_subdirs(&containers_dir);
        crate::util::spread_subdirs(&runtime_root);
        let db = Arc::new(Db::open(&root.join("state.db")).context("opening state.db")?);
        crate::build::cleanup_stale(&root);
        let blobs = Arc::new(BlobStore::open(&root).context("opening blob store")?);
        let images = Arc::new(
            ImageStore::open(&root, db.clone(), blobs)
                .map_err(|e| anyhow::anyhow!("opening image store: {e}"))?,
        );
        let shim_binary = match &cfg.shim_path {
            Some(p) => p.clone(),
            None => {
                let exe = std::env::current_exe()?;
                exe.with_file_name("berth-shim")
            }
        };
        if !shim_binary.exists() {
            anyhow::bail!("shim binary not found at {}", shim_binary.display());
        }
        let daemon_id = match db.get::<String>("daemon", "id")? {
            Some(id) => id,
            None => {
                let id = crate::util::new_id();
                db.put("daemon", "id", &id)?;
                id
            }
        };
        let networks = crate::networks::Networks::open(
            db.clone(),
            &exec_root,
            cfg.bridge.as_deref(),
            cfg.bip.as_deref(),
        )
        .context("loading networks")?;
        let volumes = Arc::new(
            berth_volume::VolumeStore::open(&root, db.clone())
                .map_err(|e| anyhow::anyhow!("opening volume store: {e}"))?,
        );
        let mut table = Table::default();
        for (id, rec) in db.list::<Record>(CONTAINERS_TABLE)? {
            table.by_name.insert(rec.name.clone(), id.clone());
            table.by_id.insert(id, Arc::new(Ctr::new(rec)));
        }
        Ok(State {
            cfg,
            root,
            containers_dir,
            runtime_root,
            shim_binary,
            db,
            images,
            table: RwLock::new(table),
            execs: RwLock::new(HashMap::new()),
            daemon_id,
            networks,
            volumes,
            events: Default::default(),
        })
    }

    /// Reattaches to the shims of containers that were running when the daemon stopped,
    /// and records the exit of those that ended meanwhile.
    pub async fn recover(self: Arc<Self>) {
        let me = self.clone();
        let r = tokio::task::spawn_blocking(move || me.networks.init()).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("setting up networks: {}", e.message),
            Err(e) => tracing::error!("setting up networks: {e}"),
        }
        let all: Vec<Arc<Ctr>> = self.table_read().by_id.values().cloned().collect();
        for c in all {
            let running = c.rec().state.running;
            if running {
                self.clone().reattach(c).await;
            } else if c.rec().host_config.auto_remove.unwrap_or(false)
                && c.rec().state.status == "exited"
            {
                let _ = self.clone().remove_container(&c, true).await;
            } else if Self::should_restart(&c.rec(), true) {
                // Restart policies hold across daemon restarts (docker's restore).
                c.update(|r| r.state.restarting = false);
                if let Err(e) = self.start_container(&c).await {
                    tracing::warn!(id = %c.id, "restart policy: {}", e.message);
                }
            }
        }
        self.net_gc().await;
    }

    pub fn table_read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }
    pub fn table_write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds a container by full id, name (with or without the leading "/") or unique id
    /// prefix, with docker's messages.
    /// Registry settings from the daemon config, for pull, push and login.
    pub fn registry_options(&self) -> berth_distribution::RegistryOptions {
        berth_distribution::RegistryOptions {
            insecure_registries: self.cfg.insecure_registries.clone(),
            max_concurrent_downloads: self.cfg.max_concurrent_downloads.unwrap_or(3),
            max_concurrent_uploads: self.cfg.max_concurrent_uploads.unwrap_or(5),
            mirrors: self.cfg.registry_mirrors.clone(),
        }
    }

    pub fn lookup(&self, key: &str) -> Result<Arc<Ctr>, Error> {
        let t = self.table_read();
        if let Some(c) = t.by_id.get(key) {
            return Ok(c.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(id) = t.by_name.get(name) {
            if let Some(c) = t.by_id.get(id) {
                return Ok(c.clone());
            }
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<&Arc<Ctr>> = t
                .by_id
                .iter()
                .filter(|(id, _)| id.starts_with(key))
                .map(|(_, c)| c)
                .collect();
            if found.len() == 1 {
                return Ok(found.remove(0).clone());
            }
            if found.len() > 1 {
                return Err(Error::invalid(format!(
                    "multiple IDs found with provided prefix: {key}"
                )));
            }
        }
        Err(Error::not_found(format!("No such container: {key}")))
    }

    pub fn persist(&self, rec: &Record) -> Result<(), Error> {
        self.db
            .put(CONTAINERS_TABLE, &rec.id, rec)
            .map_err(Error::from)
    }

    /// The container's cgroup: `<cgroup-parent>/<id>` (dockerd's `--cgroup-parent`,
    /// default "/berth").
    pub fn cgroup_path(&self, id: &str) -> String {
        let parent = self.cfg.cgroup_parent.as_deref().unwrap_or("/berth");
        format!("/{}/{id}", parent.trim_matches('/'))
    }

    /// Publishes a container event with docker's attributes: image, name, the container's
    /// labels, and `extra` (exitCode, signal, ...).
    pub fn ctr_event(&self, rec: &Record, action: &str, extra: &[(&str, String)]) {
        let mut a: HashMap<String, String> = rec.config.labels.clone().unwrap_or_default();
        a.insert("image".into(), rec.config.image.clone().unwrap_or_default());
        a.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            a.insert(k.to_string(), v.clone());
        }
        self.events.publish("container", action, &rec.id, a);
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir.join(id)
    }

    /// Image ids in use by any container (for rmi/prune conflict checks).
    pub fn image_user(&self, image_id: &str) -> Option<String> {
        self.table_read()
            .by_id
            .values()
            .find(|c| c.rec().image_id == image_id)
            .map(|c| c.id.clone())
    }
}
