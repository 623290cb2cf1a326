//! The image store: metadata in SQLite (images, refs, layers), configs and uncompressed
//! layer tars in the blob store, unpacked layers under `<root>/snapshots/<chain-id-hex>/`.

use crate::changes::apply_changes;
use crate::reference::{
    parse_normalized_named, parse_reference, path_match, validate_tag, Reference,
};
use crate::unpack::unpack_layer;
use berth_api::models;
use berth_api::{Error, Result};
use berth_store::{BlobStore, Db};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    created_unix INTEGER NOT NULL,
    size INTEGER NOT NULL,
    diff_ids TEXT NOT NULL,
    last_tag_time TEXT,
    added_unix INTEGER NOT NULL,
    parent TEXT
);
CREATE TABLE IF NOT EXISTS image_refs (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS image_refs_by_image ON image_refs(image_id);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,
    diff_id TEXT NOT NULL,
    parent TEXT,
    size INTEGER NOT NULL
);
"#;

fn db_err(e: rusqlite::Error) -> Error {
    Error::internal(format!("image database: {e}"))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::internal(e.to_string())
}

/// An image as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// "sha256:<hex>" of the config bytes.
    pub id: String,
    /// Familiar "repo:tag" strings, sorted.
    pub repo_tags: Vec<String>,
    /// Familiar "repo@sha256:..." strings, sorted.
    pub repo_digests: Vec<String>,
    /// RFC 3339 creation time from the config ("" if absent).
    pub created: String,
    pub created_unix: i64,
    /// Sum of the unpacked layer sizes.
    pub size: i64,
    pub diff_ids: Vec<String>,
    pub chain_ids: Vec<String>,
    pub last_tag_time: Option<String>,
    /// The image this one was committed on top of ("" if none), as docker's classic store.
    pub parent: String,
}

/// The subset of an image config (docker image JSON / OCI config) the store reads.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default, rename = "os.version")]
    pub os_version: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub config: Option<models::ImageConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
    #[serde(default)]
    pub history: Option<Vec<History>>,
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct History {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub empty_layer: bool,
}

pub(crate) fn parse_config(bytes: &[u8]) -> Result<ConfigFile> {
    let mut c: ConfigFile = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("invalid image config: {e}")))?;
    if let Some(cfg) = c.config.as_mut() {
        // The model's map deserializer turns `null` into an empty list; keep docker's null.
        if cfg.volumes.as_ref().is_some_and(|v| v.is_empty()) {
            cfg.volumes = None;
        }
        if cfg.exposed_ports.as_ref().is_some_and(|v| v.is_empty()) {
            cfg.exposed_ports = None;
        }
        if let Some(p) = cfg.exposed_ports.as_mut() {
            p.sort();
        }
        if let Some(v) = cfg.volumes.as_mut() {
            v.sort();
        }
    }
    Ok(c)
}

fn rfc3339_unix(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]) (OCI ChainID).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(p) => berth_store::sha256_digest(format!("{p} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// How a name resolved: through a reference (tag or digest) or by id.
pub(crate) struct Resolved {
    pub image: Image,
    pub via: Option<Reference>,
}

/// Images, tags and layers. Every mutation holds `lock` so that check-then-change
/// sequences (rmi, prune, load) are atomic with respect to each other.
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) db: Arc<Db>,
    pub(crate) blobs: Arc<BlobStore>,
    lock: Mutex<()>,
}

impl ImageStore {
    /// Opens the store under the daemon root; creates tables and removes unpack leftovers.
    pub fn open(root: &Path, db: Arc<Db>, blobs: Arc<BlobStore>) -> Result<Self> {
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps)?;
        fs::create_dir_all(root.join("tmp").join("image"))?;
        // A crash mid-unpack leaves tmp-* directories; they were never published.
        for e in fs::read_dir(&snaps)?.flatten() {
            if e.file_name().to_string_lossy().starts_with("tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        // Likewise an init layer being made (`<hex>.tmp`).
        let inits = root.join("init-layers");
        fs::create_dir_all(&inits)?;
        for e in fs::read_dir(&inits)?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        if let Ok(rd) = fs::read_dir(root.join("tmp").join("image")) {
            for e in rd.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        db.conn().execute_batch(SCHEMA).map_err(db_err)?;
        {
            // Databases created before parent tracking lack the column.
            let conn = db.conn();
            let has_parent: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('images') WHERE name = 'parent'")
                .and_then(|mut st| st.exists([]))
                .map_err(db_err)?;
            if !has_parent {
                conn.execute_batch("ALTER TABLE images ADD COLUMN parent TEXT")
                    .map_err(db_err)?;
            }
            conn.execute_batch("CREATE INDEX IF NOT EXISTS images_by_parent ON images(parent)")
                .map_err(db_err)?;
        }
        let store = ImageStore {
            root: root.to_path_buf(),
            db,
            blobs,
            lock: Mutex::new(()),
        };
        store.remove_orphan_layers()?;
        Ok(store)
    }

    /// Layers unpacked for an image whose registration never committed (a crash
    /// mid-load) are garbage: drop their snapshots, rows and layer blobs.
    fn remove_orphan_layers(&self) -> Result<()> {
        let (used_chains, used_diffs) = self.used_layers()?;
        let rows: Vec<(String, String)> = {
            let conn = self.db.conn();
            let mut st = conn
                .prepare("SELECT chain_id, diff_id FROM layers")
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?
                .collect::<std::result::Result<_, _>>()
                .map_err(db_err)?;
            rows
        };
        for (chain, diff) in rows {
            if used_chains.contains(&chain) {
                continue;
            }
            self.remove_snapshot(&chain)?;
            self.db
                .conn()
                .execute("DELETE FROM layers WHERE chain_id = ?1", [&chain])
                .map_err(db_err)?;
            if !used_diffs.contains(&diff) {
                self.delete_layer_blobs(&diff);
            }
        }
        Ok(())
    }

    pub(crate) fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp").join("image")
    }

    pub(crate) fn snapshot_path(&self, chain_id: &str) -> Result<PathBuf> {
        let hex = berth_store::digest_hex(chain_id).map_err(Error::from)?;
        Ok(self.root.join("snapshots").join(hex))
    }

    /// Records a layer's snapshot (its size as unpacked), replacing the size of one already
    /// known.
    fn record_layer(
        &self,
        chain: &str,
        diff_id: &str,
        parent: Option<&str>,
        size: i64,
    ) -> Result<()> {
        self.db
            .conn()
            .execute(
                "INSERT INTO layers (chain_id, diff_id, parent, size) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(chain_id) DO UPDATE SET size = excluded.size",
                params![chain, diff_id, parent, size],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// The init layer of the layer stack ending in `top` (see `make_init_layer`). What it
    /// holds depends only on the image's layers, so every container of the image shares one,
    /// read-only: docker makes one per container, which cost every `run` ~8 file creations
    /// and as many deletions.
    fn init_layer_path(&self, top: Option<&str>) -> Result<PathBuf> {
        let name = match top {
            Some(c) => berth_store::digest_hex(c).map_err(Error::from)?.to_string(),
            None => "empty".to_string(),
        };
        Ok(self.root.join("init-layers").join(name))
    }

    /// Removes a snapshot and the init layer of the stack it tops, if any.
    fn remove_snapshot(&self, chain_id: &str) -> Result<()> {
        if let Ok(p) = self.snapshot_path(chain_id) {
            if p.exists() {
                fs::remove_dir_all(&p)
                    .map_err(|e| internal(format!("remove {}: {e}", p.display())))?;
            }
        }
        if let Ok(p) = self.init_layer_path(Some(chain_id)) {
            if p.exists() {
                fs::remove_dir_all(&p)
                    .map_err(|e| internal(format!("remove {}: {e}", p.display())))?;
            }
        }
        Ok(())
    }

    // ---- reads -------------------------------------------------------------------

    fn load_image(&self, id: &str) -> Result<Option<Image>> {
        let conn = self.db.conn();
        let row = conn
            .query_row(
                "SELECT id, created, created_unix, size, diff_ids, last_tag_time, parent FROM images WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<String>>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err)?;
        let Some((id, created, created_unix, size, diff_json, last_tag_time, parent)) = row else {
            return Ok(None);
        };
        let mut st = conn
            .prepare("SELECT ref FROM image_refs WHERE image_id = ?1 ORDER BY ref")
            .map_err(db_err)?;
        let refs: Vec<String> = st
            .query_map([&id], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        let diff_ids: Vec<String> = serde_json::from_str(&diff_json).map_err(internal)?;
        let (mut tags, mut digests) = (Vec::new(), Vec::new());
        for r in refs {
            if let Ok(p) = parse_normalized_named(&r) {
                if p.digest.is_some() {
                    digests.push(p.familiar_string());
                } else {
                    tags.push(p.familiar_string());
                }
            }
        }
        Ok(Some(Image {
            chain_ids: chain_ids(&diff_ids),
            id,
            repo_tags: tags,
            repo_digests: digests,
            created,
            created_unix,
            size,
            diff_ids,
            last_tag_time,
            parent: parent.unwrap_or_default(),
        }))
    }

    fn children(&self, id: &str) -> Result<Vec<String>> {
        let conn = self.db.conn();
        let mut st = conn
            .prepare("SELECT id FROM images WHERE parent = ?1")
            .map_err(db_err)?;
        let ids = st
            .query_map([id], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        Ok(ids)
    }

    fn all_ids(&self) -> Result<Vec<String>> {
        let conn = self.db.conn();
        let mut st = conn
            .prepare("SELECT id FROM images ORDER BY created_unix DESC, id")
            .map_err(db_err)?;
        let ids = st
            .query_map([], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        Ok(ids)
    }

    pub(crate) fn resolve_full(&self, name_or_id: &str) -> Result<Resolved> {
        let not_found = |shown: String| Error::not_found(format!("No such image: {shown}"));
        // A full id.
        if let Some(hex) = name_or_id.strip_prefix("sha256:") {
            if hex.len() == 64 {
                return match self.load_image(name_or_id)? {
                    Some(image) => Ok(Resolved { image, via: None }),
                    None => Err(not_found(name_or_id.to_string())),
                };
            }
            return self
                .by_prefix(hex)
                .ok_or_else(|| not_found(name_or_id.to_string()));
        }
        let is_hex = !name_or_id.is_empty()
            && name_or_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if name_or_id.len() == 64 && is_hex {
            let id = format!("sha256:{name_or_id}");
            if let Some(image) = self.load_image(&id)? {
                return Ok(Resolved { image, via: None });
            }
            return Err(not_found(name_or_id.to_string()));
        }
        let named = parse_reference(name_or_id)?;
        let id: Option<String> = self
            .db
            .conn()
            .query_row(
                "SELECT image_id FROM image_refs WHERE ref = ?1",
                [named.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if let Some(id) = id {
            if let Some(image) = self.load_image(&id)? {
                return Ok(Resolved {
                    image,
                    via: Some(named),
                });
            }
        }
        // Docker looks an id prefix up after references.
        if is_hex {
            if let Some(r) = self.by_prefix(name_or_id) {
                return Ok(r);
            }
        }
        Err(not_found(named.familiar_string()))
    }

    fn by_prefix(&self, hex: &str) -> Option<Resolved> {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let like = format!("sha256:{}%", hex.to_ascii_lowercase());
        let ids: Vec<String> = {
            let conn = self.db.conn();
            let mut st = conn
                .prepare("SELECT id FROM images WHERE id LIKE ?1 LIMIT 2")
                .ok()?;
            let rows = st.query_map([like], |r| r.get(0)).ok()?;
            rows.flatten().collect()
        };
        // An ambiguous prefix names no image.
        if ids.len() != 1 {
            return None;
        }
        self.load_image(&ids[0])
            .ok()
            .flatten()
            .map(|image| Resolved { image, via: None })
    }

    /// Resolves a name, a full id or a unique id prefix.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image> {
        Ok(self.resolve_full(name_or_id)?.image)
    }

    /// The image config exactly as stored (its sha256 is the image id).
    pub fn config_bytes(&self, id: &str) -> Result<Vec<u8>> {
        self.blobs.read(id).map_err(Error::from)
    }

    /// The image's container config section (Cmd, Env, ...); empty if the image has none.
    pub fn config(&self, image_id: &str) -> Result<models::ImageConfig> {
        let img = self.resolve(image_id)?;
        Ok(parse_config(&self.config_bytes(&img.id)?)?
            .config
            .unwrap_or_default())
    }

    fn layer_sizes(&self, chains: &[String]) -> Result<Vec<i64>> {
        let conn = self.db.conn();
        let mut out = Vec::new();
        for c in chains {
            let s: Option<i64> = conn
                .query_row("SELECT size FROM layers WHERE chain_id = ?1", [c], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err)?;
            out.push(s.unwrap_or(0));
        }
        Ok(out)
    }

    pub fn inspect(&self, name_or_id: &str) -> Result<models::ImageInspect> {
        let img = self.resolve(name_or_id)?;
        let cfg = parse_config(&self.config_bytes(&img.id)?)?;
        let snaps: Vec<String> = img
            .chain_ids
            .iter()
            .rev()
            .filter_map(|c| self.snapshot_path(c).ok())
            .map(|p| p.display().to_string())
            .collect();
        let mut data = HashMap::new();
        if let Some((top, lower)) = snaps.split_first() {
            data.insert("UpperDir".to_string(), top.clone());
            if !lower.is_empty() {
                data.insert("LowerDir".to_string(), lower.join(":"));
            }
        }
        let parse_time = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&chrono::Utc))
        };
        Ok(models::ImageInspect {
            id: Some(img.id.clone()),
            repo_tags: Some(img.repo_tags.clone()),
            repo_digests: Some(img.repo_digests.clone()),
            comment: Some(cfg.comment.clone().unwrap_or_default()),
            created: parse_time(&img.created),
            author: Some(cfg.author.clone().unwrap_or_default()),
            config: Some(cfg.config.clone().unwrap_or_default()),
            architecture: Some(cfg.architecture.clone().unwrap_or_default()),
            variant: cfg.variant.clone(),
            os: Some(cfg.os.clone().unwrap_or_default()),
            os_version: cfg.os_version.clone(),
            size: Some(img.size),
            graph_driver: Some(models::DriverData {
                name: "overlay2".into(),
                data,
            }),
            root_fs: Some(models::ImageInspectRootFs {
                typ: "layers".into(),
                layers: Some(img.diff_ids.clone()),
            }),
            metadata: Some(models::ImageInspectMetadata {
                // Docker reports the zero time for never-tagged images.
                last_tag_time: img
                    .last_tag_time
                    .as_deref()
                    .and_then(parse_time)
                    .or_else(|| {
                        chrono::DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
                            .ok()
                            .map(|d| d.with_timezone(&chrono::Utc))
                    }),
            }),
            ..Default::default()
        })
    }

    pub fn history(&self, name_or_id: &str) -> Result<Vec<models::ImageHistoryResponseItem>> {
        let img = self.resolve(name_or_id)?;
        let cfg = parse_config(&self.config_bytes(&img.id)?)?;
        let sizes = self.layer_sizes(&img.chain_ids)?;
        let mut out = Vec::new();
        let mut layer = 0usize;
        for h in cfg.history.unwrap_or_default() {
            let mut size = 0;
            if !h.empty_layer {
                size = sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
            }
            out.push(models::ImageHistoryResponseItem {
                id: "<missing>".into(),
                created: h.created.as_deref().map(rfc3339_unix).unwrap_or(0),
                created_by: h.created_by.unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.unwrap_or_default(),
            });
        }
        out.reverse();
        // Newest entries belong to the image, older ones to its ancestors (docker walks
        // the parent chain the same way).
        let mut cur = Some(img);
        for item in out.iter_mut() {
            let Some(i) = cur.take() else { break };
            item.id = i.id.clone();
            item.tags = i.repo_tags.clone();
            if !i.parent.is_empty() {
                cur = self.load_image(&i.parent)?;
            }
        }
        Ok(out)
    }

    fn labels_of(&self, id: &str) -> HashMap<String, String> {
        self.config_bytes(id)
            .ok()
            .and_then(|b| parse_config(&b).ok())
            .and_then(|c| c.config)
            .and_then(|c| c.labels)
            .unwrap_or_default()
    }

    pub fn list(
        &self,
        all: bool,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<models::ImageSummary>> {
        // Every image here is top-level (no parent chains), so `all` changes nothing.
        let _ = all;
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "dangling" | "label" | "reference" | "before" | "since" | "until"
            ) {
                return Err(Error::invalid(format!("invalid filter '{k}'")));
            }
        }
        let dangling = match filters.get("dangling").map(|v| v.as_slice()) {
            None | Some([]) => None,
            Some(vals) => Some(parse_bool_filter("dangling", vals)?),
        };
        let before = match filters.get("before").and_then(|v| v.first()) {
            Some(r) => Some(self.resolve(r)?.created_unix),
            None => None,
        };
        let since = match filters.get("since").and_then(|v| v.first()) {
            Some(r) => Some(self.resolve(r)?.created_unix),
            None => None,
        };
        let until = match filters.get("until").and_then(|v| v.first()) {
            Some(s) => Some(parse_until(s)?),
            None => None,
        };
        let mut out = Vec::new();
        for id in self.all_ids()? {
            let Some(img) = self.load_image(&id)? else {
                continue;
            };
            let untagged = img.repo_tags.is_empty() && img.repo_digests.is_empty();
            let has_children = untagged && !self.children(&id)?.is_empty();
            // Untagged images with children are intermediate layers of a commit chain:
            // hidden unless `all`, and never "dangling".
            if untagged && has_children && (!all || dangling.is_some()) {
                continue;
            }
            if let Some(d) = dangling {
                if d != untagged {
                    continue;
                }
            }
            if before.is_some_and(|b| img.created_unix >= b)
                || since.is_some_and(|s| img.created_unix <= s)
            {
                continue;
            }
            if until.is_some_and(|u| img.created_unix >= u) {
                continue;
            }
            let labels = self.labels_of(&img.id);
            if let Some(want) = filters.get("label") {
                if !want.iter().all(|w| label_matches(&labels, w)) {
                    continue;
                }
            }
            let mut tags = img.repo_tags.clone();
            if let Some(pats) = filters.get("reference").filter(|p| !p.is_empty()) {
                tags.retain(|t| {
                    let name = t.rsplit_once(':').map(|(n, _)| n).unwrap_or(t);
                    pats.iter().any(|p| path_match(p, t) || path_match(p, name))
                });
                if tags.is_empty() {
                    continue;
                }
            }
            out.push(models::ImageSummary {
                id: img.id.clone(),
                parent_id: img.parent.clone(),
                repo_tags: tags,
                repo_digests: img.repo_digests.clone(),
                created: img.created_unix,
                size: img.size,
                shared_size: -1,
                labels,
                containers: -1,
                manifests: None,
                descriptor: None,
            });
        }
        Ok(out)
    }

    // ---- tags ----------------------------------------------------------------------

    /// `docker tag SOURCE REPO[:TAG]` (the API's `repo` + `tag` parameters; a tag given
    /// separately replaces one in `repo`, as docker's `RepoTagReference` does).
    pub fn tag(&self, source: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let target = repo_tag_reference(repo, tag)?;
        let _g = self.guard();
        let img = self.resolve(source)?;
        let mut conn = self.db.conn();
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT INTO image_refs (ref, image_id) VALUES (?1, ?2)
             ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id",
            params![target.to_string(), img.id],
        )
        .map_err(db_err)?;
        tx.execute(
            "UPDATE images SET last_tag_time = ?1 WHERE id = ?2",
            params![now_rfc3339(), img.id],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(())
    }

    fn refs_of(&self, id: &str) -> Result<Vec<Reference>> {
        let conn = self.db.conn();
        let mut st = conn
            .prepare("SELECT ref FROM image_refs WHERE image_id = ?1 ORDER BY ref")
            .map_err(db_err)?;
        let refs: Vec<String> = st
            .query_map([id], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        Ok(refs
            .iter()
            .filter_map(|r| parse_normalized_named(r).ok())
            .collect())
    }

    /// Every tag of repository `name` ("docker.io/library/busybox") with its image id.
    pub(crate) fn repo_tags(&self, name: &str) -> Result<Vec<(Reference, String)>> {
        let conn = self.db.conn();
        let mut st = conn
            .prepare("SELECT ref, image_id FROM image_refs ORDER BY ref")
            .map_err(db_err)?;
        let rows: Vec<(String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(r, id)| parse_normalized_named(&r).ok().map(|r| (r, id)))
            .filter(|(r, _)| r.name() == name && r.tag.is_some() && r.digest.is_none())
            .collect())
    }

    fn delete_ref(&self, r: &Reference) -> Result<()> {
        self.db
            .conn()
            .execute("DELETE FROM image_refs WHERE ref = ?1", [r.to_string()])
            .map_err(db_err)?;
        Ok(())
    }

    fn untag_all(
        &self,
        id: &str,
        records: &mut Vec<models::ImageDeleteResponseItem>,
    ) -> Result<()> {
        for r in self.refs_of(id)? {
            self.delete_ref(&r)?;
            records.push(untagged(&r));
        }
        Ok(())
    }

    // ---- deletion ------------------------------------------------------------------

    /// Docker's rmi semantics (daemon/images/image_delete.go).
    pub fn remove(
        &self,
        name_or_id: &str,
        force: bool,
        noprune: bool,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<models::ImageDeleteResponseItem>> {
        // Images here have no parent chain, so there is nothing for prune to walk to.
        let _ = noprune;
        let _g = self.guard();
        let Resolved { image, via } = self.resolve_full(name_or_id)?;
        let id = image.id.clone();
        let mut records = Vec::new();
        let mut quiet = false;
        let conflict = |msg: String| {
            Error::conflict(format!(
                "conflict: unable to delete {} (must be forced) - {msg}",
                short_id(&id)
            ))
        };
        if let Some(r) = via {
            // Removing the only reference of an image a container uses would leave it
            // dangling: docker wants force for that.
            if !force && is_single_reference(&self.refs_of(&id)?) {
                if let Some(c) = in_use(&id) {
                    return Err(Error::conflict(format!(
                        "conflict: unable to remove repository reference {name_or_id:?} (must force) - container {} is using its referenced image {}",
                        short_id(&c),
                        short_id(&id)
                    )));
                }
            }
            self.delete_ref(&r)?;
            records.push(untagged(&r));
            // Untagging the last tag of a repository drops that repository's digests too.
            if r.digest.is_none() {
                let refs = self.refs_of(&id)?;
                let name = r.name();
                if !refs.iter().any(|x| x.name() == name && x.digest.is_none()) {
                    for d in refs
                        .iter()
                        .filter(|x| x.name() == name && x.digest.is_some())
                    {
                        self.delete_ref(d)?;
                        records.push(untagged(d));
                    }
                }
            }
            if !self.refs_of(&id)?.is_empty() {
                return Ok(records);
            }
            quiet = true;
        } else {
            let refs = self.refs_of(&id)?;
            if is_single_reference(&refs) {
                if !self.children(&id)?.is_empty() {
                    return Err(Error::conflict(format!(
                        "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
                        short_id(&id)
                    )));
                }
                if let Some(c) = in_use(&id) {
                    if !force {
                        return Err(conflict(format!(
                            "image is being used by stopped container {}",
                            short_id(&c)
                        )));
                    }
                }
                for r in refs {
                    self.delete_ref(&r)?;
                    records.push(untagged(&r));
                }
            }
        }
        self.delete_helper(&id, force, !noprune, quiet, in_use, &mut records)?;
        Ok(records)
    }

    /// docker's imageDeleteHelper: refuses on conflicts (children always; references and
    /// container use unless `force`), then untags and deletes the image and, with `prune`,
    /// its untagged parents. `quiet` (after untagging by name) turns a conflict on a
    /// non-dangling or used image into "keep it". Returns the bytes reclaimed.
    fn delete_helper(
        &self,
        id: &str,
        force: bool,
        prune: bool,
        quiet: bool,
        in_use: &dyn Fn(&str) -> Option<String>,
        records: &mut Vec<models::ImageDeleteResponseItem>,
    ) -> Result<i64> {
        let Some(image) = self.load_image(id)? else {
            return Ok(0);
        };
        let children = self.children(id)?;
        let refs = self.refs_of(id)?;
        let user = in_use(id);
        let conflict: Option<(bool, String, bool)> = if !children.is_empty() {
            Some((true, "image has dependent child images".into(), false))
        } else if !force && !refs.is_empty() {
            Some((
                false,
                "image is referenced in multiple repositories".into(),
                false,
            ))
        } else if let (false, Some(c)) = (force, &user) {
            Some((
                false,
                format!("image is being used by stopped container {}", short_id(c)),
                true,
            ))
        } else {
            None
        };
        if let Some((hard, msg, used)) = conflict {
            let dangling = refs.is_empty() && children.is_empty();
            if quiet && (!dangling || used) {
                return Ok(0);
            }
            let how = if hard {
                "cannot be forced"
            } else {
                "must be forced"
            };
            return Err(Error::conflict(format!(
                "conflict: unable to delete {} ({how}) - {msg}",
                short_id(id)
            )));
        }
        self.untag_all(id, records)?;
        if user.is_some() {
            // Forced while a container uses it: untag only; the container keeps its image.
            return Ok(0);
        }
        let mut reclaimed = self.delete_image(&image, records)?;
        if prune && !image.parent.is_empty() {
            reclaimed += self.delete_helper(&image.parent, false, true, true, in_use, records)?;
        }
        Ok(reclaimed)
    }

    /// Deletes the image row, its config blob and every layer no other image uses.
    /// Returns the bytes reclaimed. Caller holds the lock.
    fn delete_image(
        &self,
        image: &Image,
        records: &mut Vec<models::ImageDeleteResponseItem>,
    ) -> Result<i64> {
        {
            let mut conn = self.db.conn();
            let tx = conn.transaction().map_err(db_err)?;
            tx.execute("DELETE FROM image_refs WHERE image_id = ?1", [&image.id])
                .map_err(db_err)?;
            tx.execute("DELETE FROM images WHERE id = ?1", [&image.id])
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
        }
        records.push(models::ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(image.id.clone()),
        });
        // Other images may share the config blob only if they are the same image.
        let _ = self.blobs.delete(&image.id);
        // The registry manifests kept for it.
        if let Ok(list) = self.manifests(&image.id) {
            for m in list {
                let _ = self.blobs.delete(&m.digest);
            }
        }
        let _ = self.db.delete(IMAGE_MANIFESTS, &image.id);
        let used = self.used_layers()?;
        let mut reclaimed = 0;
        let sizes = self.layer_sizes(&image.chain_ids)?;
        for (i, chain) in image.chain_ids.iter().enumerate().rev() {
            if used.0.contains(chain) {
                continue;
            }
            self.remove_snapshot(chain)?;
            self.db
                .conn()
                .execute("DELETE FROM layers WHERE chain_id = ?1", [chain])
                .map_err(db_err)?;
            if let Some(d) = image.diff_ids.get(i) {
                if !used.1.contains(d) {
                    self.delete_layer_blobs(d);
                }
            }
            reclaimed += sizes.get(i).copied().unwrap_or(0);
            records.push(models::ImageDeleteResponseItem {
                untagged: None,
                deleted: Some(chain.clone()),
            });
        }
        Ok(reclaimed)
    }

    /// (chain ids, diff ids) used by any remaining image.
    fn used_layers(&self) -> Result<(HashSet<String>, HashSet<String>)> {
        let conn = self.db.conn();
        let mut st = conn
            .prepare("SELECT diff_ids FROM images")
            .map_err(db_err)?;
        let rows: Vec<String> = st
            .query_map([], |r| r.get(0))
            .map_err(db_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err)?;
        let (mut chains, mut diffs) = (HashSet::new(), HashSet::new());
        for r in rows {
            let d: Vec<String> = serde_json::from_str(&r).unwrap_or_default();
            chains.extend(chain_ids(&d));
            diffs.extend(d);
        }
        Ok((chains, diffs))
    }

    /// `system df`'s image part: every image (as `images` lists them) with its SharedSize
    /// (the bytes of its layers that other images use too), and LayersSize, the bytes of
    /// all layers, each counted once. `Containers` is left at -1 for the daemon to fill.
    pub fn disk_usage(&self) -> Result<(i64, Vec<models::ImageSummary>)> {
        let mut refs: HashMap<String, usize> = HashMap::new();
        let mut chains_of: HashMap<String, Vec<String>> = HashMap::new();
        for id in self.all_ids()? {
            if let Some(img) = self.load_image(&id)? {
                let mut uniq = img.chain_ids.clone();
                uniq.sort();
                uniq.dedup();
                for c in &uniq {
                    *refs.entry(c.clone()).or_default() += 1;
                }
                chains_of.insert(id, uniq);
            }
        }
        let mut chains: Vec<String> = refs.keys().cloned().collect();
        chains.sort();
        let size_of: HashMap<String, i64> = chains
            .iter()
            .cloned()
            .zip(self.layer_sizes(&chains)?)
            .collect();
        let layers_size = size_of.values().sum();
        let mut images = self.list(false, &HashMap::new())?;
        for img in &mut images {
            img.shared_size = chains_of
                .get(&img.id)
                .map(|cs| {
                    cs.iter()
                        .filter(|c| refs.get(*c).copied().unwrap_or(0) > 1)
                        .map(|c| size_of.get(c).copied().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0);
        }
        Ok((layers_size, images))
    }

    pub fn prune(
        &self,
        dangling_only: bool,
        filters: &HashMap<String, Vec<String>>,
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<models::ImagePruneResponse> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "dangling" | "label" | "label!" | "until") {
                return Err(Error::invalid(format!("invalid filter '{k}'")));
            }
        }
        let dangling_only = match filters.get("dangling").map(|v| v.as_slice()) {
            None | Some([]) => dangling_only,
            Some(vals) => parse_bool_filter("dangling", vals)?,
        };
        let until = match filters.get("until").and_then(|v| v.first()) {
            Some(s) => Some(parse_until(s)?),
            None => None,
        };
        let _g = self.guard();
        let mut records = Vec::new();
        let mut reclaimed = 0;
        for id in self.all_ids()? {
            let Some(img) = self.load_image(&id)? else {
                continue;
            };
            let tagged = !img.repo_tags.is_empty() || !img.repo_digests.is_empty();
            // Only chain heads: untagged parents go with their last child below.
            if (dangling_only && tagged) || in_use(&id).is_some() || !self.children(&id)?.is_empty()
            {
                continue;
            }
            if until.is_some_and(|u| img.created_unix >= u) {
                continue;
            }
            let labels = self.labels_of(&id);
            if let Some(want) = filters.get("label") {
                if !want.iter().all(|w| label_matches(&labels, w)) {
                    continue;
                }
            }
            if let Some(not) = filters.get("label!") {
                if not.iter().any(|w| label_matches(&labels, w)) {
                    continue;
                }
            }
            self.untag_all(&id, &mut records)?;
            reclaimed += self.delete_helper(&id, false, true, false, in_use, &mut records)?;
        }
        Ok(models::ImagePruneResponse {
            images_deleted: if records.is_empty() {
                None
            } else {
                Some(records)
            },
            space_reclaimed: Some(reclaimed),
        })
    }

    /// `builder prune`: removes the given build-cache images that are untagged, unused
    /// and childless, with their untagged parents. Returns the bytes reclaimed.
    pub fn prune_untagged(
        &self,
        ids: &[String],
        in_use: &dyn Fn(&str) -> Option<String>,
    ) -> Result<i64> {
        let _g = self.guard();
        let mut records = Vec::new();
        let mut reclaimed = 0;
        loop {
            let mut progress = false;
            for id in ids {
                let Some(img) = self.load_image(id)? else {
                    continue;
                };
                if !img.repo_tags.is_empty()
                    || !img.repo_digests.is_empty()
                    || in_use(id).is_some()
                    || !self.children(id)?.is_empty()
                {
                    continue;
                }
                reclaimed += self.delete_helper(id, false, true, false, in_use, &mut records)?;
                progress = true;
            }
            if !progress {
                return Ok(reclaimed);
            }
        }
    }

    // ---- creation ------------------------------------------------------------------

    /// Makes sure snapshots/<chain> exists, unpacking the layer blob into a temp dir and
    /// renaming it into place when complete. Returns the layer's content size.
    pub(crate) fn ensure_snapshot(
        &self,
        chain: &str,
        parent: Option<&str>,
        diff_id: &str,
    ) -> Result<i64> {
        let dest = self.snapshot_path(chain)?;
        let known: Option<i64> = self
            .db
            .conn()
            .query_row(
                "SELECT size FROM layers WHERE chain_id = ?1",
                [chain],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if dest.is_dir() {
            if let Some(s) = known {
                return Ok(s);
            }
        }
        let tmp = self.root.join("snapshots").join(format!(
            "tmp-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        fs::create_dir(&tmp)?;
        let res = (|| -> Result<i64> {
            let (mut f, _) = self.open_layer_tar(diff_id)?;
            let size = unpack_layer(&mut f, &tmp)?;
            if dest.exists() {
                fs::remove_dir_all(&dest)?;
            }
            fs::rename(&tmp, &dest)?;
            Ok(size)
        })();
        let size = match res {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        self.record_layer(chain, diff_id, parent, size)?;
        Ok(size)
    }

    /// Makes `<container_dir>/upper` the snapshot of `chain` by rename, when it is one:
    /// an overlay upper is already in snapshot format (overlay whiteouts, opaque dirs),
    /// and it is exactly what unpacking the layer just written from it would create, so
    /// the second copy of every file is skipped. Declines (and the usual unpack follows)
    /// when the snapshot exists, the rootfs is still mounted, the upper carries overlay
    /// state other than opaque markers (redirects, metacopy, xattr whiteouts), or the
    /// rename crosses filesystems. Caller holds the lock.
    fn adopt_snapshot(
        &self,
        chain: &str,
        parent: Option<&str>,
        diff_id: &str,
        container_dir: &Path,
    ) {
        let upper = container_dir.join("upper");
        let Ok(dest) = self.snapshot_path(chain) else {
            return;
        };
        if dest.exists()
            || crate::mount::is_mounted(&container_dir.join("rootfs"), container_dir)
                .unwrap_or(true)
        {
            return;
        }
        let size = match overlay_tree_size(&upper) {
            Some(s) => s,
            None => {
                tracing::debug!(chain, "commit: upper not adoptable; unpacking the layer");
                return;
            }
        };
        if fs::rename(&upper, &dest).is_err() {
            return;
        }
        let r = self.record_layer(chain, diff_id, parent, size);
        if r.is_err() {
            // Put it back; ensure_snapshot will unpack as usual.
            let _ = fs::rename(&dest, &upper);
        } else {
            tracing::debug!(chain, "commit: upper adopted as the layer's snapshot");
        }
    }

    /// Registers an image whose config blob and layer blobs are stored: unpacks missing
    /// snapshots, then inserts the image and its tags in one transaction. Returns, for
    /// each tag, the id of the image it was moved away from (if any). Caller holds the lock.
    pub(crate) fn register(
        &self,
        config_bytes: &[u8],
        tags: &[Reference],
    ) -> Result<(String, Vec<Option<String>>)> {
        let cfg = parse_config(config_bytes)?;
        let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        for d in &diff_ids {
            berth_store::digest_hex(d)
                .map_err(|_| Error::invalid(format!("invalid diff id {d:?} in image config")))?;
        }
        let chains = chain_ids(&diff_ids);
        let mut size = 0;
        for (i, c) in chains.iter().enumerate() {
            let parent = if i == 0 {
                None
            } else {
                Some(chains[i - 1].as_str())
            };
            size += self.ensure_snapshot(c, parent, &diff_ids[i])?;
        }
        let id = self.blobs.put(config_bytes).map_err(Error::from)?;
        let created = cfg.created.unwrap_or_default();
        // A parent link is kept only to an image we have (a loaded child of an unknown
        // image is a plain image).
        let parent: Option<String> = match cfg.parent.filter(|p| !p.is_empty()) {
            Some(p) if self.load_image(&p)?.is_some() => Some(p),
            _ => None,
        };
        let mut conn = self.db.conn();
        let tx = conn.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT INTO images (id, created, created_unix, size, diff_ids, last_tag_time, added_unix, parent)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7) ON CONFLICT(id) DO NOTHING",
            params![
                id,
                created,
                rfc3339_unix(&created),
                size,
                serde_json::to_string(&diff_ids).map_err(internal)?,
                chrono::Utc::now().timestamp(),
                parent
            ],
        )
        .map_err(db_err)?;
        let mut moved = Vec::new();
        for t in tags {
            let old: Option<String> = tx
                .query_row(
                    "SELECT image_id FROM image_refs WHERE ref = ?1",
                    [t.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            moved.push(old.filter(|o| *o != id));
            tx.execute(
                "INSERT INTO image_refs (ref, image_id) VALUES (?1, ?2)
                 ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id",
                params![t.to_string(), id],
            )
            .map_err(db_err)?;
        }
        if !tags.is_empty() {
            tx.execute(
                "UPDATE images SET last_tag_time = ?1 WHERE id = ?2",
                params![now_rfc3339(), id],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok((id, moved))
    }

    /// Streams a (possibly compressed) layer into the blob store as an uncompressed tar;
    /// returns its diff id. `expected` is verified when given.
    pub(crate) fn store_layer(
        &self,
        reader: &mut dyn Read,
        expected: Option<&str>,
    ) -> Result<String> {
        let mut r = crate::compress::decompress(reader)?;
        let mut w = self.blobs.writer().map_err(Error::from)?;
        std::io::copy(&mut r, &mut w).map_err(|e| Error::invalid(format!("reading layer: {e}")))?;
        w.flush()?;
        w.commit(expected).map_err(|e| match e {
            berth_store::StoreError::DigestMismatch { expected, actual } => Error::invalid(
                format!("layer digest mismatch: expected {expected}, got {actual}"),
            ),
            e => e.into(),
        })
    }

    /// A pulled layer in one pass as it streams in: decompressed, written to the blob
    /// store (verified against `diff_id`) and unpacked into the snapshot of `chain` at
    /// the same time. `verified` is asked once the stream ended: the caller's check of
    /// the compressed digest; nothing is published unless it says yes. Layers are
    /// independent snapshot dirs, so several can run at once.
    pub fn add_layer_streaming(
        &self,
        reader: &mut dyn Read,
        diff_id: &str,
        chain: &str,
        parent: Option<&str>,
        verified: &dyn Fn() -> bool,
    ) -> Result<(i64, u64)> {
        struct Tee<'a, W: Write> {
            r: Box<dyn Read + 'a>,
            w: &'a mut W,
        }
        impl<W: Write> Read for Tee<'_, W> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.r.read(buf)?;
                self.w.write_all(&buf[..n])?;
                Ok(n)
            }
        }
        // Only the tar's digest is needed: the compressed bytes are what is kept.
        struct Hashing {
            h: Sha256,
            n: u64,
            compressed: std::rc::Rc<std::cell::Cell<u64>>,
            dir: PathBuf,
        }
        impl Write for Hashing {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.h.update(b);
                self.n += b.len() as u64;
                if is_bomb(self.n, self.compressed.get()) {
                    return Err(std::io::Error::other(format!(
                        "layer expands more than {BOMB_RATIO} times its compressed size: refused as a decompression bomb"
                    )));
                }
                // Every 64 MiB: stop before the layer fills the disk.
                if self.n >> 26 != (self.n - b.len() as u64) >> 26 && disk_nearly_full(&self.dir) {
                    return Err(std::io::Error::other(
                        "unpacking the layer would fill the disk: refused (a decompression bomb?)",
                    ));
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let tmp = self.root.join("snapshots").join(format!(
            "tmp-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        fs::create_dir(&tmp)?;
        // Compressed bytes read so far, for the decompression-bomb check in `Hashing`.
        struct Counting<'a> {
            r: &'a mut dyn Read,
            n: std::rc::Rc<std::cell::Cell<u64>>,
        }
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let k = self.r.read(buf)?;
                self.n.set(self.n.get() + k as u64);
                Ok(k)
            }
        }
        let compressed = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let mut w = Hashing {
            h: Sha256::new(),
            n: 0,
            compressed: compressed.clone(),
            dir: tmp.clone(),
        };
        let res = (|| -> Result<i64> {
            let mut counting = Counting {
                r: reader,
                n: compressed.clone(),
            };
            let r = crate::compress::decompress(&mut counting)?;
            let mut tee = Tee { r, w: &mut w };
            let size = unpack_layer(&mut tee, &tmp)?;
            // The tar's end blocks and padding count in its digest too.
            std::io::copy(&mut tee, &mut std::io::sink())
                .map_err(|e| Error::invalid(format!("reading layer: {e}")))?;
            Ok(size)
        })();
        let size = match res {
            Ok(s) if verified() => s,
            Ok(_) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(Error::invalid("layer download was not verified"));
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let actual = format!("sha256:{}", hex::encode(w.h.finalize()));
        if actual != diff_id {
            let _ = fs::remove_dir_all(&tmp);
            return Err(Error::invalid(format!(
                "layer digest mismatch: expected {diff_id}, got {actual}"
            )));
        }
        let tar_size = w.n;
        let _g = self.guard();
        let dest = self.snapshot_path(chain)?;
        if dest.is_dir() {
            let _ = fs::remove_dir_all(&tmp);
        } else {
            fs::rename(&tmp, &dest)?;
        }
        self.record_layer(chain, diff_id, parent, size)?;
        Ok((size, tar_size))
    }

    /// `docker import`.
    pub fn import(
        &self,
        reader: &mut dyn Read,
        changes: &[String],
        message: Option<&str>,
        repo_tag: Option<&str>,
    ) -> Result<String> {
        let tag = match repo_tag.filter(|s| !s.is_empty()) {
            Some(t) => Some(repo_tag_reference(t, None)?),
            None => None,
        };
        let mut cfg = models::ImageConfig::default();
        apply_changes(&mut cfg, changes)?;
        let diff_id = self.store_layer(reader, None)?;
        let msg = message
            .filter(|m| !m.is_empty())
            .unwrap_or("Imported from -")
            .to_string();
        let created = now_rfc3339();
        let config = serde_json::json!({
            "architecture": go_arch(),
            "comment": msg,
            "config": container_config_json(&cfg)?,
            "created": created,
            "history": [{"created": created, "comment": msg}],
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let bytes = serde_json::to_vec(&config).map_err(internal)?;
        let _g = self.guard();
        let tags: Vec<Reference> = tag.into_iter().collect();
        match self.register(&bytes, &tags) {
            Ok((id, _)) => Ok(id),
            Err(e) => {
                self.drop_unused_blob(&diff_id);
                Err(e)
            }
        }
    }

    /// Removes a layer blob no image references (after a failed import/load).
    pub(crate) fn drop_unused_blob(&self, diff_id: &str) {
        if let Ok((_, diffs)) = self.used_layers() {
            if !diffs.contains(diff_id) {
                self.delete_layer_blobs(diff_id);
            }
        }
    }

    /// A layer no image uses: its tar and the compressed form kept for pushes.
    fn delete_layer_blobs(&self, diff_id: &str) {
        let _ = self.blobs.delete(diff_id);
        if let Ok(Some(lb)) = self.db.get::<LayerBlob>(LAYER_BLOBS, diff_id) {
            let _ = self.blobs.delete(&lb.digest);
            let _ = self.db.delete(LAYER_BLOBS, diff_id);
        }
    }

    /// `docker commit`: the container's overlay upper dir becomes a new layer on top of
    /// `image_id` ("" for scratch). The caller pauses the container first, as docker does.
    pub fn commit(
        &self,
        image_id: &str,
        container_dir: &Path,
        opts: &CommitOptions,
    ) -> Result<String> {
        let tag = match opts.repo_tag.as_deref().filter(|s| !s.is_empty()) {
            Some(t) => Some(repo_tag_reference(t, None)?),
            None => None,
        };
        let mut parent = None;
        let mut base: serde_json::Map<String, serde_json::Value> = if image_id.is_empty() {
            let mut m = serde_json::Map::new();
            m.insert("architecture".into(), go_arch().into());
            m.insert("os".into(), "linux".into());
            m
        } else {
            let img = self.resolve(image_id)?;
            parent = Some(img.id.clone());
            serde_json::from_slice(&self.config_bytes(&img.id)?)
                .map_err(|e| Error::invalid(format!("invalid image config: {e}")))?
        };
        for k in [
            "id",
            "parent",
            "container",
            "container_config",
            "docker_version",
            "comment",
            "author",
        ] {
            base.remove(k);
        }
        let mut cfg = opts.config.clone();
        apply_changes(&mut cfg, &opts.changes)?;

        let mut w = self.blobs.writer().map_err(Error::from)?;
        // A container that never started has no rw layer yet: an empty diff (docker
        // commits those too).
        fs::create_dir_all(container_dir.join("upper"))?;
        crate::diff::write_tree(&container_dir.join("upper"), true, &mut w)?;
        w.flush()?;
        let diff_id = w.commit(None).map_err(Error::from)?;
        let empty_layer = diff_id == EMPTY_TAR_DIGEST;

        let created = now_rfc3339();
        let mut diff_ids: Vec<serde_json::Value> = base
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(|d| d.as_array())
            .cloned()
            .unwrap_or_default();
        if !empty_layer {
            diff_ids.push(diff_id.clone().into());
        }
        let mut hist = serde_json::Map::new();
        hist.insert("created".into(), created.clone().into());
        if let Some(a) = opts.author.as_deref().filter(|a| !a.is_empty()) {
            hist.insert("author".into(), a.into());
            base.insert("author".into(), a.into());
        }
        let created_by = opts
            .created_by
            .clone()
            .unwrap_or_else(|| opts.config.cmd.clone().unwrap_or_default().join(" "));
        hist.insert("created_by".into(), created_by.into());
        if let Some(c) = opts.comment.as_deref().filter(|c| !c.is_empty()) {
            hist.insert("comment".into(), c.into());
            base.insert("comment".into(), c.into());
        }
        if empty_layer {
            hist.insert("empty_layer".into(), true.into());
        }
        let mut history = base
            .get("history")
            .and_then(|h| h.as_array())
            .cloned()
            .unwrap_or_default();
        history.push(serde_json::Value::Object(hist));
        base.insert("config".into(), container_config_json(&cfg)?);
        // Like docker's classic store, a commit names its parent in the config.
        if let Some(p) = parent {
            base.insert("parent".into(), p.into());
        }
        base.insert("created".into(), created.into());
        base.insert("history".into(), history.into());
        base.insert(
            "rootfs".into(),
            serde_json::json!({"type": "layers", "diff_ids": diff_ids}),
        );
        let bytes = serde_json::to_vec(&base).map_err(internal)?;
        let _g = self.guard();
        if opts.consume_upper && !empty_layer {
            let ids: Vec<String> = diff_ids
                .iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect();
            let chains = chain_ids(&ids);
            if let Some(chain) = chains.last() {
                let parent = chains.len().checked_sub(2).map(|i| chains[i].as_str());
                self.adopt_snapshot(chain, parent, &diff_id, container_dir);
            }
        }
        let tags: Vec<Reference> = tag.into_iter().collect();
        match self.register(&bytes, &tags) {
            Ok((id, _)) => {
                if empty_layer {
                    self.drop_unused_blob(&diff_id);
                }
                Ok(id)
            }
            Err(e) => {
                self.drop_unused_blob(&diff_id);
                Err(e)
            }
        }
    }

    /// `docker diff` (GET /containers/{id}/changes) for a container of `image_id` whose
    /// rw layer is `<container_dir>/upper`.
    pub fn changes(
        &self,
        image_id: &str,
        container_dir: &Path,
    ) -> Result<Vec<models::FilesystemChange>> {
        let img = self.resolve(image_id)?;
        let lowers = img
            .chain_ids
            .iter()
            .rev()
            .map(|c| self.snapshot_path(c))
            .collect::<Result<Vec<_>>>()?;
        crate::diff::changes(&container_dir.join("upper"), &lowers)
    }

    /// `docker export`: a tar of a (mounted) container rootfs.
    pub fn export_rootfs(rootfs: &Path, writer: &mut dyn Write) -> Result<()> {
        crate::diff::write_tree(rootfs, false, writer)
    }

    /// Stores a layer (plain, gzip or zstd tar) for a later `create_image`, verifying
    /// the uncompressed digest when given (for pull).
    pub fn add_layer(
        &self,
        reader: &mut dyn Read,
        expected_diff_id: Option<&str>,
    ) -> Result<String> {
        self.store_layer(reader, expected_diff_id)
    }

    /// True when the uncompressed layer `diff_id` is stored (pull can skip it).
    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.blobs.has(diff_id) || self.kept_compressed(diff_id).is_some()
    }

    /// The compressed form of a layer kept instead of its tar (a pulled layer).
    fn kept_compressed(&self, diff_id: &str) -> Option<LayerBlob> {
        self.db
            .get::<LayerBlob>(LAYER_BLOBS, diff_id)
            .ok()
            .flatten()
            .filter(|lb| lb.tar_size > 0 && self.blobs.has(&lb.digest))
    }

    /// A layer's uncompressed tar and its size: the stored tar, or (for a pulled layer,
    /// which keeps only the compressed bytes as they came) those decompressed.
    pub fn open_layer_tar(&self, diff_id: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        if self.blobs.has(diff_id) {
            let size = self.blobs.size(diff_id).map_err(Error::from)?;
            let f = self.blobs.open_blob(diff_id).map_err(Error::from)?;
            return Ok((Box::new(std::io::BufReader::new(f)), size));
        }
        let lb = self
            .kept_compressed(diff_id)
            .ok_or_else(|| Error::not_found(format!("layer {diff_id} is not stored")))?;
        let f = self.blobs.open_blob(&lb.digest).map_err(Error::from)?;
        let r = crate::compress::decompress_owned(Box::new(std::io::BufReader::new(f)))?;
        Ok((r, lb.tar_size))
    }

    /// Creates an image from config bytes whose layers were added with `add_layer`;
    /// `refs` may be tags or digest references (shown as RepoDigests).
    pub fn create_image(&self, config_bytes: &[u8], refs: &[Reference]) -> Result<String> {
        let _g = self.guard();
        Ok(self.register(config_bytes, refs)?.0)
    }

    // ---- distribution blobs ----------------------------------------------------------

    /// Stores the compressed form of layer `diff_id` as pulled (verified against
    /// `digest`), so a push sends the same bytes and the manifest keeps its digest.
    pub fn add_compressed_layer(
        &self,
        diff_id: &str,
        src: CompressedSource<'_>,
        digest: &str,
        media_type: &str,
        tar_size: u64,
        source: &str,
    ) -> Result<()> {
        match src {
            CompressedSource::Verified(path) => {
                self.blobs.adopt(path, digest).map_err(Error::from)?
            }
            CompressedSource::Reader(r) if !self.blobs.has(digest) => {
                let mut w = self.blobs.writer().map_err(Error::from)?;
                std::io::copy(r, &mut w)?;
                w.commit(Some(digest)).map_err(Error::from)?;
            }
            CompressedSource::Reader(_) => {}
        }
        let size = self.blobs.size(digest).map_err(Error::from)?;
        let lb = LayerBlob {
            digest: digest.to_string(),
            size,
            media_type: media_type.to_string(),
            tar_size,
            source: source.to_string(),
        };
        self.db.put(LAYER_BLOBS, diff_id, &lb).map_err(Error::from)
    }

    /// The compressed blob of a layer for a push: the one pulled, else a gzip made now
    /// (deterministic: no name, mtime 0) and remembered.
    pub fn compressed_layer(&self, diff_id: &str) -> Result<LayerBlob> {
        if let Some(lb) = self
            .db
            .get::<LayerBlob>(LAYER_BLOBS, diff_id)
            .map_err(Error::from)?
        {
            if self.blobs.has(&lb.digest) {
                return Ok(lb);
            }
        }
        let (mut src, _) = self.open_layer_tar(diff_id)?;
        let w = self.blobs.writer().map_err(Error::from)?;
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(w, flate2::Compression::default());
        std::io::copy(&mut src, &mut gz)?;
        let w = gz.finish()?;
        let size = w.size();
        let digest = w.commit(None).map_err(Error::from)?;
        let lb = LayerBlob {
            digest,
            size,
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
            tar_size: self.blobs.size(diff_id).unwrap_or(0),
            source: String::new(),
        };
        self.db
            .put(LAYER_BLOBS, diff_id, &lb)
            .map_err(Error::from)?;
        Ok(lb)
    }

    /// The kept compressed blob with this digest, if a layer has one (for push mounts).
    pub fn layer_blob_by_digest(&self, digest: &str) -> Option<LayerBlob> {
        self.db
            .list::<LayerBlob>(LAYER_BLOBS)
            .ok()?
            .into_iter()
            .map(|(_, lb)| lb)
            .find(|lb| lb.digest == digest)
    }

    /// Keeps a registry manifest of image `image_id` (bytes as served) for later pushes.
    pub fn add_manifest(&self, image_id: &str, bytes: &[u8], media_type: &str) -> Result<String> {
        let digest = self.blobs.put(bytes).map_err(Error::from)?;
        let mut list: Vec<StoredManifest> = self
            .db
            .get(IMAGE_MANIFESTS, image_id)
            .map_err(Error::from)?
            .unwrap_or_default();
        if !list.iter().any(|m| m.digest == digest) {
            list.push(StoredManifest {
                digest: digest.clone(),
                media_type: media_type.to_string(),
            });
            self.db
                .put(IMAGE_MANIFESTS, image_id, &list)
                .map_err(Error::from)?;
        }
        Ok(digest)
    }

    /// Manifests kept for an image (as pulled or pushed), oldest first.
    pub fn manifests(&self, image_id: &str) -> Result<Vec<StoredManifest>> {
        Ok(self
            .db
            .get(IMAGE_MANIFESTS, image_id)
            .map_err(Error::from)?
            .unwrap_or_default())
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blobs.has(digest)
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.blobs.read(digest).map_err(Error::from)
    }

    pub fn open_blob(&self, digest: &str) -> Result<fs::File> {
        self.blobs.open_blob(digest).map_err(Error::from)
    }

    /// Adds a digest reference (RepoDigests) to an image after a push.
    pub fn add_reference(&self, image_id: &str, r: &Reference) -> Result<()> {
        let cfg = self.config_bytes(image_id)?;
        self.create_image(&cfg, std::slice::from_ref(r)).map(|_| ())
    }

    // ---- rootfs --------------------------------------------------------------------

    /// Mounts the image's layers as an overlay at `<container_dir>/rootfs`.
    pub fn mount_rootfs(&self, image_id: &str, container_dir: &Path) -> Result<PathBuf> {
        let img = self.resolve(image_id)?;
        let rootfs = container_dir.join("rootfs");
        let upper = container_dir.join("upper");
        let work = container_dir.join("work");
        for d in [&rootfs, &upper, &work] {
            fs::create_dir_all(d)?;
        }
        if crate::mount::is_mounted(&rootfs, container_dir)? {
            return Ok(rootfs);
        }
        let mut lowers = Vec::new();
        {
            let _g = self.guard();
            for (i, c) in img.chain_ids.iter().enumerate() {
                let parent = if i == 0 {
                    None
                } else {
                    Some(img.chain_ids[i - 1].as_str())
                };
                self.ensure_snapshot(c, parent, &img.diff_ids[i])?;
                lowers.push(self.snapshot_path(c)?);
            }
            if lowers.is_empty() {
                // overlayfs needs a lower layer; an image without layers gets an empty one.
                let empty = self.root.join("snapshots").join("empty");
                fs::create_dir_all(&empty)?;
                lowers.push(empty);
            }
            // Under the guard: containers of one image share its init layer.
            let init = self.init_layer_path(img.chain_ids.last().map(String::as_str))?;
            make_init_layer(&init, &lowers)?;
            lowers.push(init);
        }
        lowers.reverse();
        crate::mount::mount_overlay(&lowers, &upper, &work, &rootfs)?;
        Ok(rootfs)
    }

    /// Lazily unmounts `<container_dir>/rootfs`; fine if it is not mounted.
    pub fn unmount_rootfs(container_dir: &Path) -> Result<()> {
        crate::mount::unmount(&container_dir.join("rootfs"))
    }
}

/// sha256 of an empty tar (two zero blocks): a commit that changed nothing.
const EMPTY_TAR_DIGEST: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// What `commit` records besides the filesystem diff.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The container's config (Cmd, Env, ...) to store in the image.
    pub config: models::ImageConfig,
    /// `--change` lines applied on top of `config`.
    pub changes: Vec<String>,
    pub author: Option<String>,
    /// `--message`: history comment.
    pub comment: Option<String>,
    /// History "created_by" (default: the config's Cmd joined by spaces).
    pub created_by: Option<String>,
    pub repo_tag: Option<String>,
    /// The caller is done with `<container_dir>/upper` (a build step whose container is
    /// removed next): it may become the new layer's snapshot by rename instead of the
    /// layer being unpacked again.
    pub consume_upper: bool,
}

/// docker's `httputils.RepoTagReference`.
fn repo_tag_reference(repo: &str, tag: Option<&str>) -> Result<Reference> {
    let r = parse_normalized_named(repo)?;
    if r.digest.is_some() {
        return Err(Error::invalid("cannot import digest reference"));
    }
    match tag.filter(|t| !t.is_empty()) {
        Some(t) => {
            validate_tag(t)?;
            Ok(r.with_tag(t))
        }
        None => Ok(r.with_tag(r.tag.as_deref().unwrap_or("latest"))),
    }
}

fn untagged(r: &Reference) -> models::ImageDeleteResponseItem {
    models::ImageDeleteResponseItem {
        untagged: Some(r.familiar_string()),
        deleted: None,
    }
}

/// docker's isSingleReference: at most one tag, and every ref in the same repository.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let tags = refs.iter().filter(|r| r.digest.is_none()).count();
    if tags > 1 {
        return false;
    }
    let name = refs[0].name();
    refs.iter().all(|r| r.name() == name)
}

fn label_matches(labels: &HashMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

fn parse_bool_filter(name: &str, vals: &[String]) -> Result<bool> {
    let mut out = None;
    for v in vals {
        let b = match v.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(Error::invalid(format!("invalid filter '{name}={v}'"))),
        };
        out = Some(b);
    }
    Ok(out.unwrap_or(false))
}

/// `until=`: a unix timestamp, an RFC 3339 time or a Go duration before now.
fn parse_until(s: &str) -> Result<i64> {
    if let Ok(n) = s.split('.').next().unwrap_or(s).parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    let secs = {
        let mut total = 0i64;
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: i64 = num
                .parse()
                .map_err(|_| Error::invalid(format!("invalid until filter {s:?}")))?;
            num.clear();
            total += n * match c {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                _ => return Err(Error::invalid(format!("invalid until filter {s:?}"))),
            };
        }
        if !num.is_empty() {
            return Err(Error::invalid(format!("invalid until filter {s:?}")));
        }
        total
    };
    Ok(chrono::Utc::now().timestamp() - secs)
}

pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Docker's `container.Config` JSON shape (every non-omitempty field present).
fn container_config_json(cfg: &models::ImageConfig) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(cfg).map_err(internal)?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| internal("config is not an object"))?;
    let defaults = serde_json::json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
        "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": null,
        "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
        "OnBuild": null, "Labels": null
    });
    if let Some(d) = defaults.as_object() {
        for (k, val) in d {
            obj.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    Ok(v)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{t:x}-{n}")
}

/// Sum of regular file sizes below an overlay upper dir (a layer's "size"), after removing
/// the overlay bookkeeping xattrs (`origin`, `impure`, `nlink`, `uuid`) that only mean something
/// to the mount that wrote them. None when the tree has overlay state a lower layer cannot
/// carry (redirects, metacopy, xattr whiteouts, anything else unknown).
fn overlay_tree_size(dir: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    fn xattrs_ok(path: &Path) -> bool {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        let mut buf = vec![0u8; 4096];
        // SAFETY: c is a valid C string and buf a writable buffer of the given length.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTSUP);
        }
        for name in buf[..n as usize]
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
        {
            let Some(rest) = name.strip_prefix(b"trusted.overlay.") else {
                continue;
            };
            match rest {
                b"opaque" => {
                    let mut v = [0u8; 4];
                    // SAFETY: valid C strings and a 4-byte buffer.
                    let k = std::ffi::CString::new(name).unwrap_or_default();
                    let m = unsafe {
                        libc::lgetxattr(c.as_ptr(), k.as_ptr(), v.as_mut_ptr().cast(), v.len())
                    };
                    if m != 1 || v[0] != b'y' {
                        return false;
                    }
                }
                b"origin" | b"impure" | b"nlink" | b"uuid" => {
                    let k = std::ffi::CString::new(name).unwrap_or_default();
                    // SAFETY: valid C strings.
                    if unsafe { libc::lremovexattr(c.as_ptr(), k.as_ptr()) } != 0 {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        true
    }
    let mut size = 0i64;
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if !xattrs_ok(&d) {
            return None;
        }
        for e in fs::read_dir(&d).ok()? {
            let e = e.ok()?;
            let md = e.metadata().ok()?;
            let p = e.path();
            if md.is_dir() {
                todo.push(p);
                continue;
            }
            if !xattrs_ok(&p) {
                return None;
            }
            // A hard-linked file counts once, as in the layer tar.
            if md.is_file() && (md.nlink() < 2 || seen.insert((md.dev(), md.ino()))) {
                size += md.size() as i64;
            }
        }
    }
    Some(size)
}

/// Mount points the runtime needs in every container (docker's init layer, trimmed to
/// what berth mounts): directories, then files.
const INIT_DIRS: &[&str] = &["proc", "sys", "dev/pts", "dev/shm"];
const INIT_FILES: &[&str] = &["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// docker's init layer: a read-only layer between the image and the container's rw layer
/// holding the mount points the image lacks, so creating them never lands in the upper
/// (`diff`, `commit` and build steps then see only what the process changed). Made once
/// per layer stack, under the store's guard; `lowers` are the image's snapshots.
fn make_init_layer(init: &Path, lowers: &[PathBuf]) -> Result<()> {
    if init.is_dir() {
        return Ok(());
    }
    let tmp = init.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    let in_image = |p: &str| lowers.iter().any(|l| l.join(p).symlink_metadata().is_ok());
    for d in INIT_DIRS {
        if !in_image(d) {
            fs::create_dir_all(tmp.join(d))?;
        }
    }
    for f in INIT_FILES {
        if !in_image(f) {
            let p = tmp.join(f);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::File::create(&p)?;
        }
    }
    fs::rename(&tmp, init)?;
    Ok(())
}

const LAYER_BLOBS: &str = "layer_blobs";
const IMAGE_MANIFESTS: &str = "image_manifests";

/// A layer's compressed blob in the blob store (as pulled, or made for a push).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// Size of the uncompressed tar (when only the compressed form is stored).
    #[serde(default)]
    pub tar_size: u64,
    /// The repository it was pulled from ("registry/path"): a push to another repository
    /// of that registry mounts it instead of uploading it.
    #[serde(default)]
    pub source: String,
}

/// A registry manifest kept for an image.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredManifest {
    pub digest: String,
    pub media_type: String,
}

/// Where a pulled layer's compressed bytes come from.
pub enum CompressedSource<'a> {
    /// A file on the store's filesystem whose digest was verified while it downloaded:
    /// renamed into the blob store.
    Verified(&'a Path),
    /// Bytes to copy in and verify.
    Reader(&'a mut dyn Read),
}

/// A pulled layer may not expand more than this many times its compressed size once past
/// `BOMB_FLOOR`. Deflate cannot exceed ~1032:1, so no gzip layer is ever refused; this
/// catches zstd (or other) bombs that would (a legitimate layer that compresses that well
/// is essentially a file of zeros).
const BOMB_RATIO: u64 = 1100;
const BOMB_FLOOR: u64 = 64 << 20;

/// Less than 2% (and less than 512 MiB) left on the filesystem of `dir`.
fn disk_nearly_full(dir: &Path) -> bool {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(v) => {
            let avail = v.blocks_available() * v.fragment_size();
            let total = v.blocks() * v.fragment_size();
            avail < (512 << 20) && avail < total / 50
        }
        Err(_) => false,
    }
}

fn is_bomb(tar_bytes: u64, compressed_bytes: u64) -> bool {
    tar_bytes > BOMB_FLOOR && tar_bytes > compressed_bytes.saturating_mul(BOMB_RATIO)
}

#[cfg(test)]
mod bomb_tests {
    use super::*;

    #[test]
    fn bomb_rule() {
        // Under the floor: anything goes.
        assert!(!is_bomb(60 << 20, 1));
        // Past the floor: gzip's best ratio (~1032:1) passes, more does not.
        assert!(!is_bomb(2 << 30, (2 << 30) / 1032));
        assert!(is_bomb(2 << 30, (2 << 30) / 5000));
    }
}
