//! The volume store: `local` driver volumes under `<root>/volumes/<name>/_data`, their
//! metadata in the daemon's database (kv table "volumes"), filters and prune.

use crate::fsutil;
use crate::{Result, VolumeError, ANONYMOUS_LABEL, LOCAL_DRIVER};
use berth_store::Db;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const TABLE: &str = "volumes";

/// What the database keeps of a volume. `None` and an empty map differ on the wire
/// (docker answers `null` for a volume created on demand, `{}` for `volume create`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels
            .as_ref()
            .map(|l| l.contains_key(ANONYMOUS_LABEL))
            .unwrap_or(false)
    }

    fn has_options(&self) -> bool {
        self.options
            .as_ref()
            .map(|o| !o.is_empty())
            .unwrap_or(false)
    }

    /// Mounted from `type`/`device` options rather than a plain directory.
    pub fn needs_mount(&self) -> bool {
        let o = self.options.as_ref();
        o.map(|o| o.contains_key("type") || o.contains_key("device"))
            .unwrap_or(false)
    }

    /// Docker's Volume object (`Mountpoint` is the data path).
    pub fn to_json(&self, mountpoint: &Path) -> serde_json::Value {
        serde_json::json!({
            "CreatedAt": self.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "Driver": self.driver,
            "Labels": self.labels,
            "Mountpoint": mountpoint.display().to_string(),
            "Name": self.name,
            "Options": self.options,
            "Scope": "local",
        })
    }
}

/// `POST /volumes/create` (and volumes created on demand by containers).
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    /// Empty: an anonymous volume with a random name.
    pub name: String,
    pub driver: String,
    pub options: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

pub struct VolumeStore {
    dir: PathBuf,
    db: Arc<Db>,
    /// Serialises create and remove (a name is created once; a removal never races a
    /// create of the same name).
    lock: Mutex<()>,
}

fn invalid(m: impl Into<String>) -> VolumeError {
    VolumeError::Invalid(m.into())
}

/// The local driver's names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() == 1 {
        return Err(invalid(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        return Err(invalid(format!(
            "create {name}: {name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// The local driver's options (moby `validateOpts`), without quota support.
pub fn validate_options(name: &str, opts: &BTreeMap<String, String>) -> Result<()> {
    for k in opts.keys() {
        if !matches!(k.as_str(), "type" | "o" | "device" | "size") {
            return Err(invalid(format!("create {name}: invalid option: {k:?}")));
        }
    }
    if opts.contains_key("size") {
        return Err(invalid(format!(
            "create {name}: quota size requested but no quota support"
        )));
    }
    for (opt, req) in [
        ("device", &["type"][..]),
        ("type", &["device"][..]),
        ("o", &["device", "type"][..]),
    ] {
        if opts.contains_key(opt) {
            for r in req {
                if !opts.contains_key(*r) {
                    return Err(invalid(format!(
                        "create {name}: missing required option: {r:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Checks what `create` would refuse, without creating anything.
pub fn validate_request(req: &CreateRequest) -> Result<()> {
    let name = &req.name;
    if !name.is_empty() {
        validate_name(name)?;
    }
    if !req.driver.is_empty() && req.driver != LOCAL_DRIVER {
        return Err(VolumeError::NotFound(format!(
            "create {name}: error looking up volume plugin {}: plugin {:?} not found",
            req.driver, req.driver
        )));
    }
    if let Some(o) = &req.options {
        validate_options(name, o)?;
    }
    Ok(())
}

fn random_name() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl VolumeStore {
    /// Opens (creating) the store under `<root>/volumes`.
    pub fn open(root: &Path, db: Arc<Db>) -> Result<Self> {
        let dir = root.join("volumes");
        std::fs::create_dir_all(&dir)?;
        // Only root may traverse into volumes (their data dirs are 0755 inside).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o701))?;
        Ok(VolumeStore {
            dir,
            db,
            lock: Mutex::new(()),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `<root>/volumes/<name>/_data`.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates a volume, or returns the existing one of that name (docker's behaviour:
    /// creating an existing volume is not an error and changes nothing).
    pub fn create(&self, req: &CreateRequest) -> Result<Volume> {
        validate_request(req)?;
        let mut labels = req.labels.clone();
        let name = if req.name.is_empty() {
            labels
                .get_or_insert_with(BTreeMap::new)
                .insert(ANONYMOUS_LABEL.into(), String::new());
            random_name()
        } else {
            req.name.clone()
        };
        let _g = self.guard();
        if let Some(v) = self.db.get::<Volume>(TABLE, &name)? {
            return Ok(v);
        }
        let root = self.dir.join(&name);
        let data = root.join("_data");
        std::fs::create_dir_all(&data)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o701));
        let _ = std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755));
        let v = Volume {
            name: name.clone(),
            driver: LOCAL_DRIVER.into(),
            created_at: Utc::now(),
            labels,
            options: req.options.clone(),
        };
        if let Err(e) = self.db.put(TABLE, &name, &v) {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e.into());
        }
        Ok(v)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        self.db
            .get::<Volume>(TABLE, name)?
            .ok_or_else(|| VolumeError::NotFound(format!("get {name}: no such volume")))
    }

    /// All volumes, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        Ok(self
            .db
            .list::<Volume>(TABLE)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Removes a volume and its data (unmounting it first). The caller checks that no
    /// container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _g = self.guard();
        let v = self.get(name)?;
        let root = self.dir.join(&v.name);
        let data = root.join("_data");
        // Never delete through a mount: a bind-backed volume would lose its source's files.
        if fsutil::is_mounted(&data)? {
            fsutil::unmount(&data).map_err(|e| {
                VolumeError::Internal(format!("remove {name}: unmounting volume: {e}"))
            })?;
            if fsutil::is_mounted(&data)? {
                return Err(VolumeError::Internal(format!(
                    "remove {name}: volume is still mounted"
                )));
            }
        }
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(VolumeError::Internal(format!(
                    "remove {name}: error removing volume path '{}': {e}",
                    root.display()
                )))
            }
        }
        self.db.delete(TABLE, &v.name)?;
        Ok(())
    }

    /// Makes the volume's data path ready for a container: mounts `type`/`device`
    /// volumes (once; later users share the mount) and returns the path.
    pub fn mount(&self, v: &Volume) -> Result<PathBuf> {
        let data = self.data_path(&v.name);
        std::fs::create_dir_all(&data)?;
        if v.needs_mount() && !fsutil::is_mounted(&data)? {
            let o = v.options.clone().unwrap_or_default();
            let dev = o.get("device").cloned().unwrap_or_default();
            let typ = o.get("type").cloned().unwrap_or_default();
            let opts = o.get("o").cloned().unwrap_or_default();
            fsutil::mount_fs(&dev, &data, &typ, &opts).map_err(|e| {
                VolumeError::Internal(format!(
                    "error while mounting volume '{}': failed to mount local volume: mount {dev}:{} (type {typ}, opts {opts}): {e}",
                    data.display(),
                    data.display()
                ))
            })?;
        }
        Ok(data)
    }

    /// Unmounts a `type`/`device` volume (when its last user stopped).
    pub fn unmount(&self, v: &Volume) -> Result<()> {
        let data = self.data_path(&v.name);
        if v.needs_mount() && fsutil::is_mounted(&data)? {
            fsutil::unmount(&data)?;
        }
        Ok(())
    }

    /// Bytes used by the volume's files.
    pub fn size(&self, name: &str) -> u64 {
        fsutil::dir_size(&self.data_path(name))
    }

    /// Volumes matching `GET /volumes` filters; `in_use` names the volumes some container
    /// references.
    pub fn list_filtered(
        &self,
        f: &HashMap<String, Vec<String>>,
        in_use: &HashSet<String>,
    ) -> Result<Vec<Volume>> {
        for k in f.keys() {
            if !matches!(k.as_str(), "dangling" | "name" | "driver" | "label") {
                return Err(invalid(format!("invalid filter '{k}'")));
            }
        }
        let dangling = match f.get("dangling") {
            Some(v) => Some(!filter_bool("dangling", v)?),
            None => None,
        };
        let mut out = Vec::new();
        for v in self.list()? {
            if let Some(want_used) = dangling {
                if in_use.contains(&v.name) != want_used {
                    continue;
                }
            }
            if matches(&v, f)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// `POST /volumes/prune`: unused local volumes without mount options, only anonymous
    /// ones unless `all=true` (docker ≥ 23). Returns the names removed and bytes freed.
    pub fn prune(
        &self,
        f: &HashMap<String, Vec<String>>,
        in_use: &HashSet<String>,
    ) -> Result<(Vec<String>, u64)> {
        for k in f.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "all") {
                return Err(invalid(format!("invalid filter '{k}'")));
            }
        }
        let all = match f.get("all").map(|v| v.as_slice()) {
            None | Some([]) => false,
            Some([one]) => go_parse_bool(one).ok_or_else(|| {
                invalid(format!(
                    "invalid filter 'all': strconv.ParseBool: parsing {one:?}: invalid syntax"
                ))
            })?,
            Some(many) => {
                return Err(invalid(format!(
                    "invalid filter 'all=[{}]': only one value is expected",
                    many.join(" ")
                )))
            }
        };
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for v in self.list()? {
            if in_use.contains(&v.name) || v.driver != LOCAL_DRIVER || v.has_options() {
                continue;
            }
            if !all && !v.anonymous() {
                continue;
            }
            if !matches(&v, f)? {
                continue;
            }
            let size = self.size(&v.name);
            match self.remove(&v.name) {
                Ok(()) => {
                    reclaimed += size;
                    removed.push(v.name.clone());
                }
                Err(e) => tracing::warn!(volume = %v.name, "could not remove volume: {e}"),
            }
        }
        Ok((removed, reclaimed))
    }
}

fn go_parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker's `GetBoolOrDefault`: exactly one of the true or false spellings.
fn filter_bool(key: &str, vals: &[String]) -> Result<bool> {
    let t = vals.iter().any(|v| v == "1" || v == "true");
    let f = vals.iter().any(|v| v == "0" || v == "false");
    if t == f {
        return Err(invalid(format!(
            "invalid filter '{key}=[{}]'",
            vals.join(" ")
        )));
    }
    Ok(t)
}

fn label_match(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(want),
    }
}

/// name (exact or regular expression), driver, label (all must match), label! (none).
fn matches(v: &Volume, f: &HashMap<String, Vec<String>>) -> Result<bool> {
    let empty = BTreeMap::new();
    let labels = v.labels.as_ref().unwrap_or(&empty);
    if let Some(names) = f.get("name").filter(|n| !n.is_empty()) {
        let ok = names.iter().any(|n| {
            n == &v.name
                || regex::Regex::new(n)
                    .map(|r| r.is_match(&v.name))
                    .unwrap_or(false)
        });
        if !ok {
            return Ok(false);
        }
    }
    if let Some(d) = f.get("driver").filter(|d| !d.is_empty()) {
        if !d.iter().any(|d| d == &v.driver) {
            return Ok(false);
        }
    }
    if let Some(l) = f.get("label") {
        if !l.iter().all(|l| label_match(labels, l)) {
            return Ok(false);
        }
    }
    if let Some(l) = f.get("label!").filter(|l| !l.is_empty()) {
        if l.iter().all(|l| label_match(labels, l)) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let d = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&d.path().join("state.db")).unwrap());
        let s = VolumeStore::open(d.path(), db).unwrap();
        (d, s)
    }

    fn req(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.into(),
            ..Default::default()
        }
    }

    fn f(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn create_get_remove() {
        let (_d, s) = store();
        let v = s.create(&req("data")).unwrap();
        assert_eq!(v.driver, "local");
        assert!(s.data_path("data").is_dir());
        std::fs::write(s.data_path("data").join("f"), b"x").unwrap();
        // Creating again returns the same volume and keeps its data.
        assert_eq!(s.create(&req("data")).unwrap(), v);
        assert!(s.data_path("data").join("f").exists());
        assert_eq!(s.size("data"), 1);
        let j = v.to_json(&s.data_path("data"));
        assert_eq!(j["Labels"], serde_json::Value::Null);
        assert_eq!(j["Scope"], "local");
        let anon = s.create(&req("")).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(anon.anonymous());
        s.remove("data").unwrap();
        assert!(!s.dir.join("data").exists());
        assert_eq!(
            s.get("data").unwrap_err().to_string(),
            "get data: no such volume"
        );
        assert!(matches!(s.remove("data"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn validation() {
        let (_d, s) = store();
        assert_eq!(
            s.create(&req("a")).unwrap_err().to_string(),
            "create a: volume name is too short, names should be at least two alphanumeric characters"
        );
        assert!(s
            .create(&req("bad/name"))
            .unwrap_err()
            .to_string()
            .contains("includes invalid characters for a local volume name"));
        let mut r = req("v1");
        r.options = Some([("foo".to_string(), "x".to_string())].into());
        assert_eq!(
            s.create(&r).unwrap_err().to_string(),
            "create v1: invalid option: \"foo\""
        );
        r.options = Some([("type".to_string(), "tmpfs".to_string())].into());
        assert_eq!(
            s.create(&r).unwrap_err().to_string(),
            "create v1: missing required option: \"device\""
        );
        r.options = None;
        r.driver = "nfsplugin".into();
        assert!(matches!(s.create(&r), Err(VolumeError::NotFound(_))));
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn filters_and_prune() {
        let (_d, s) = store();
        let mut r = req("named1");
        r.labels = Some([("env".to_string(), "prod".to_string())].into());
        s.create(&r).unwrap();
        s.create(&req("named2")).unwrap();
        let anon = s.create(&req("")).unwrap();
        let used: HashSet<String> = ["named2".to_string()].into();
        let names = |v: Vec<Volume>| v.into_iter().map(|v| v.name).collect::<Vec<_>>();
        assert_eq!(
            names(
                s.list_filtered(&f(&[("label", "env=prod")]), &used)
                    .unwrap()
            ),
            vec!["named1"]
        );
        assert_eq!(
            names(s.list_filtered(&f(&[("name", "^named")]), &used).unwrap()),
            vec!["named1", "named2"]
        );
        assert_eq!(
            names(
                s.list_filtered(&f(&[("dangling", "false")]), &used)
                    .unwrap()
            ),
            vec!["named2"]
        );
        assert_eq!(
            s.list_filtered(&f(&[("dangling", "true")]), &used)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            s.list_filtered(&f(&[("dangling", "maybe")]), &used)
                .unwrap_err()
                .to_string(),
            "invalid filter 'dangling=[maybe]'"
        );
        assert_eq!(
            s.list_filtered(&f(&[("color", "x")]), &used)
                .unwrap_err()
                .to_string(),
            "invalid filter 'color'"
        );
        assert_eq!(
            s.list_filtered(&f(&[("driver", "local")]), &used)
                .unwrap()
                .len(),
            3
        );
        // Default prune: anonymous only.
        let (gone, _) = s.prune(&HashMap::new(), &used).unwrap();
        assert_eq!(gone, vec![anon.name]);
        // all=true with a label filter; in-use volumes stay.
        let (gone, _) = s
            .prune(&f(&[("all", "true"), ("label!", "env=prod")]), &used)
            .unwrap();
        assert!(gone.is_empty(), "{gone:?}");
        let (gone, _) = s.prune(&f(&[("all", "1")]), &used).unwrap();
        assert_eq!(gone, vec!["named1"]);
        assert_eq!(names(s.list().unwrap()), vec!["named2"]);
        assert!(s.prune(&f(&[("all", "x")]), &used).is_err());
    }
}
