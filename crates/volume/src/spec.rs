//! Docker's mount syntax and validation (moby `volume/mounts/linux_parser.go`), with the
//! same error messages, and the OCI mounts built from it.

use crate::{Result, VolumeError, LOCAL_DRIVER};
use berth_api::models;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A container's mount as recorded at create time (docker's `MountPoint`): what inspect
/// shows under `Mounts` and what the daemon mounts at every start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPoint {
    /// "bind", "volume" or "tmpfs".
    pub typ: String,
    /// Host path of a bind; for a volume its data path (filled when planned).
    #[serde(default)]
    pub source: String,
    pub destination: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub driver: String,
    /// The mode string the user gave (`ro,z`, ...); "z" for local volumes without one.
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    /// Bind propagation ("rprivate" by default for binds, empty for volumes).
    #[serde(default)]
    pub propagation: String,
    /// Fill a new, empty volume with the image's content at the destination.
    #[serde(default)]
    pub copy_data: bool,
    /// The volume had no name in the request: `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
    /// `-v /host:/dst` creates a missing host directory (docker's backwards compatible
    /// behaviour); `--mount type=bind` only with `bind-create-src`.
    #[serde(default)]
    pub create_source: bool,
    /// `bind-recursive=disabled`.
    #[serde(default)]
    pub non_recursive: bool,
    /// `bind-recursive=writable`: read-only, but not recursively.
    #[serde(default)]
    pub ro_non_recursive: bool,
    /// tmpfs mount data (`size=...,mode=...`).
    #[serde(default)]
    pub data: String,
    /// Options and labels of a volume to create on demand (`--mount volume-opt=...`).
    #[serde(default)]
    pub volume_options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub volume_labels: Option<BTreeMap<String, String>>,
}

impl MountPoint {
    /// Docker's `MountPoint` as shown by inspect (and `ps`).
    pub fn to_api(&self) -> models::MountPoint {
        models::MountPoint {
            typ: Some(self.typ.clone()),
            name: (!self.name.is_empty()).then(|| self.name.clone()),
            source: Some(self.source.clone()),
            destination: Some(self.destination.clone()),
            driver: (!self.driver.is_empty()).then(|| self.driver.clone()),
            mode: Some(self.mode.clone()),
            rw: Some(self.rw),
            propagation: Some(self.propagation.clone()),
        }
    }
}

/// Bind options of a `--mount` / `Mounts` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOpts {
    pub propagation: String,
    pub non_recursive: bool,
    pub create_mountpoint: bool,
    pub ro_non_recursive: bool,
    pub ro_force_recursive: bool,
}

/// Volume options of a `--mount` / `Mounts` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeOpts {
    pub no_copy: bool,
    pub labels: Option<BTreeMap<String, String>>,
    pub driver: String,
    pub driver_options: Option<BTreeMap<String, String>>,
    pub subpath: String,
}

/// tmpfs options of a `--mount` / `Mounts` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TmpfsOpts {
    pub size_bytes: i64,
    pub mode: i64,
    pub options: Vec<Vec<String>>,
}

/// One `HostConfig.Mounts` entry with its type as a string, so an unknown type gets
/// docker's error rather than a JSON one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountSpec {
    pub typ: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub bind: Option<BindOpts>,
    pub volume: Option<VolumeOpts>,
    pub tmpfs: Option<TmpfsOpts>,
    pub image: bool,
}

fn btree(
    m: &Option<std::collections::HashMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    m.as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

impl From<&models::Mount> for MountSpec {
    fn from(m: &models::Mount) -> Self {
        MountSpec {
            typ: m.typ.map(|t| t.to_string()).unwrap_or_default(),
            source: m.source.clone().unwrap_or_default(),
            target: m.target.clone().unwrap_or_default(),
            read_only: m.read_only.unwrap_or(false),
            bind: m.bind_options.as_ref().map(|b| BindOpts {
                propagation: b.propagation.map(|p| p.to_string()).unwrap_or_default(),
                non_recursive: b.non_recursive.unwrap_or(false),
                create_mountpoint: b.create_mountpoint.unwrap_or(false),
                ro_non_recursive: b.read_only_non_recursive.unwrap_or(false),
                ro_force_recursive: b.read_only_force_recursive.unwrap_or(false),
            }),
            volume: m.volume_options.as_ref().map(|v| VolumeOpts {
                no_copy: v.no_copy.unwrap_or(false),
                labels: btree(&v.labels),
                driver: v
                    .driver_config
                    .as_ref()
                    .and_then(|d| d.name.clone())
                    .unwrap_or_default(),
                driver_options: v.driver_config.as_ref().and_then(|d| btree(&d.options)),
                subpath: v.subpath.clone().unwrap_or_default(),
            }),
            tmpfs: m.tmpfs_options.as_ref().map(|t| TmpfsOpts {
                size_bytes: t.size_bytes.unwrap_or(0),
                mode: t.mode.unwrap_or(0),
                options: t.options.clone().unwrap_or_default(),
            }),
            image: m.image_options.is_some(),
        }
    }
}

const KNOWN_TYPES: &[&str] = &["bind", "volume", "tmpfs", "npipe", "cluster", "image"];

/// Checks the mount types of a raw create body (`HostConfig.Mounts[].Type`) before it is
/// decoded, so an unknown type gets docker's message instead of a JSON decoding error.
pub fn check_raw_mount_types(body: &serde_json::Value) -> Result<()> {
    let Some(list) = body
        .get("HostConfig")
        .and_then(|h| h.get("Mounts"))
        .and_then(|m| m.as_array())
    else {
        return Ok(());
    };
    for m in list {
        if let Some(t) = m.get("Type").and_then(|t| t.as_str()) {
            if !KNOWN_TYPES.contains(&t) {
                return Err(mount_config_err(t, "mount type unknown"));
            }
        }
        if let Some(p) = m
            .get("BindOptions")
            .and_then(|b| b.get("Propagation"))
            .and_then(|p| p.as_str())
        {
            if !p.is_empty() && !PROPAGATIONS.contains(&p) {
                let t = m.get("Type").and_then(|t| t.as_str()).unwrap_or("");
                return Err(mount_config_err(
                    t,
                    &format!("invalid propagation mode: {p}"),
                ));
            }
        }
    }
    Ok(())
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "slave", "rslave", "shared", "rshared",
];
const RW_MODES: &[&str] = &["rw", "ro"];
const LABEL_MODES: &[&str] = &["z", "Z"];
const CONSISTENCY_MODES: &[&str] = &["consistent", "cached", "delegated"];
const COPY_MODES: &[&str] = &["nocopy"];

fn invalid(m: impl Into<String>) -> VolumeError {
    VolumeError::Invalid(m.into())
}

fn mount_config_err(typ: &str, err: &str) -> VolumeError {
    invalid(format!("invalid mount config for type \"{typ}\": {err}"))
}

fn invalid_spec(raw: &str) -> String {
    format!("invalid volume specification: '{raw}'")
}

/// moby's `linuxValidMountMode`: each kind of mode at most once, nothing unknown.
pub fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let i = if RW_MODES.contains(&o) {
            0
        } else if LABEL_MODES.contains(&o) {
            1
        } else if PROPAGATIONS.contains(&o) {
            2
        } else if COPY_MODES.contains(&o) {
            3
        } else if CONSISTENCY_MODES.contains(&o) {
            4
        } else {
            return false;
        };
        counts[i] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

/// A valid mode without "ro".
pub fn read_write(mode: &str) -> bool {
    valid_mode(mode) && !mode.split(',').any(|o| o == "ro")
}

fn propagation_of(mode: &str) -> Option<String> {
    mode.split(',')
        .find(|o| PROPAGATIONS.contains(o))
        .map(String::from)
}

/// Go's `path.Clean` for absolute and relative slash paths.
pub fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().map(|l| *l != "..").unwrap_or(false) {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let s = out.join("/");
    match (abs, s.is_empty()) {
        (true, _) => format!("/{s}"),
        (false, true) => ".".into(),
        (false, false) => s,
    }
}

fn validate_target(target: &str) -> std::result::Result<(), String> {
    if target.is_empty() {
        return Err("field Target must not be empty".into());
    }
    if clean_path(target) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    Ok(())
}

/// moby's `validateMountConfigImpl`, returning the inner message (callers wrap it).
fn validate(m: &MountSpec, check_bind_source: bool) -> std::result::Result<(), String> {
    let extra = |f: &str| Err(format!("field {f} must not be specified"));
    if m.typ != "bind" && m.bind.is_some() {
        return extra("BindOptions");
    }
    if m.typ != "volume" && m.volume.is_some() {
        return extra("VolumeOptions");
    }
    if m.typ != "image" && m.image {
        return extra("ImageOptions");
    }
    if m.typ != "tmpfs" && m.tmpfs.is_some() {
        return extra("TmpfsOptions");
    }
    validate_target(&m.target)?;
    match m.typ.as_str() {
        "bind" => {
            if m.source.is_empty() {
                return Err("field Source must not be empty".into());
            }
            if let Some(b) = &m.bind {
                if !b.propagation.is_empty() && !PROPAGATIONS.contains(&b.propagation.as_str()) {
                    return Err(format!("invalid propagation mode: {}", b.propagation));
                }
            }
            if !m.source.starts_with('/') {
                return Err(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                ));
            }
            if check_bind_source {
                let create = m
                    .bind
                    .as_ref()
                    .map(|b| b.create_mountpoint)
                    .unwrap_or(false);
                match std::fs::metadata(&m.source) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if !create {
                            return Err(format!("bind source path does not exist: {}", m.source));
                        }
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        "volume" => {
            if let Some(v) = &m.volume {
                if !v.subpath.is_empty() {
                    if m.source.is_empty() {
                        return Err("must not set Subpath when using anonymous volumes".into());
                    }
                    // Subpaths are not supported yet; refuse rather than ignore.
                    return Err("volume subpaths are not supported by berth".into());
                }
            }
        }
        "tmpfs" => {
            if !m.source.is_empty() {
                return Err("field Source must not be specified".into());
            }
            tmpfs_data(m.tmpfs.as_ref(), m.read_only)?;
        }
        "image" => {
            if m.source.is_empty() {
                return Err("field Source must not be empty".into());
            }
            return Err("image mounts are not supported by berth".into());
        }
        _ => return Err("mount type unknown".into()),
    }
    Ok(())
}

/// moby's `ConvertTmpfsOptions`: tmpfs mount data from `TmpfsOptions`.
pub fn tmpfs_data(opt: Option<&TmpfsOpts>, read_only: bool) -> std::result::Result<String, String> {
    let mut raw = Vec::new();
    if read_only {
        raw.push("ro".to_string());
    }
    if let Some(o) = opt {
        if o.mode != 0 {
            raw.push(format!("mode={:o}", o.mode));
        }
        if o.size_bytes != 0 {
            let mut size = o.size_bytes;
            let mut suffix = "";
            for (s, d) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
                if size % d == 0 {
                    size /= d;
                    suffix = s;
                    break;
                }
            }
            raw.push(format!("size={size}{suffix}"));
        }
        for opt in &o.options {
            if opt.is_empty() || opt.len() > 2 {
                return Err("invalid option array length".into());
            }
            if opt[0] != "exec" && opt[0] != "noexec" {
                return Err(format!("invalid option: {}", opt[0]));
            }
            raw.push(opt.join("="));
        }
    }
    Ok(raw.join(","))
}

/// `-v` / `HostConfig.Binds`: moby's `ParseMountRaw` (bind sources are not checked here:
/// `-v` creates a missing host directory).
pub fn parse_bind(raw: &str) -> Result<MountPoint> {
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(invalid(invalid_spec(raw)));
    }
    let (source, target, mode) = match arr.len() {
        1 => ("", arr[0], ""),
        2 => {
            // "/foo:rw" is a destination with a mode, which volumes cannot have.
            if valid_mode(arr[1]) {
                return Err(invalid(invalid_spec(raw)));
            }
            (arr[0], arr[1], "")
        }
        3 => (arr[0], arr[1], arr[2]),
        _ => return Err(invalid(invalid_spec(raw))),
    };
    if !valid_mode(mode) {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    let typ = if source.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    let spec = MountSpec {
        typ: typ.into(),
        source: source.into(),
        target: target.into(),
        read_only: !read_write(mode),
        bind: propagation_of(mode).map(|p| BindOpts {
            propagation: p,
            ..Default::default()
        }),
        ..Default::default()
    };
    // Binds with a propagation on a volume: moby checks exclusivity after setting
    // BindOptions, so `-v vol:/x:shared` fails the same way.
    if let Err(e) = validate(&spec, false) {
        return Err(invalid(format!(
            "{}: invalid mount config for type \"{typ}\": {e}",
            invalid_spec(raw)
        )));
    }
    let mut mp = point_from_spec(&spec);
    mp.mode = mode.to_string();
    if mode.split(',').any(|o| o == "nocopy") {
        mp.copy_data = false;
    }
    mp.create_source = typ == "bind";
    if typ == "volume" && mp.mode.is_empty() {
        mp.mode = "z".into();
    }
    Ok(mp)
}

/// `--mount` / `HostConfig.Mounts`: moby's `ParseMountSpec`, bind sources must exist
/// unless `CreateMountpoint`.
pub fn parse_mount(m: &MountSpec) -> Result<MountPoint> {
    validate(m, true).map_err(|e| mount_config_err(&m.typ, &e))?;
    let mut mp = point_from_spec(m);
    if m.typ == "volume" && mp.driver == LOCAL_DRIVER && mp.mode.is_empty() {
        mp.mode = "z".into();
    }
    if m.typ == "tmpfs" {
        mp.data =
            tmpfs_data(m.tmpfs.as_ref(), m.read_only).map_err(|e| mount_config_err(&m.typ, &e))?;
    }
    if m.typ == "bind" {
        mp.create_source = m
            .bind
            .as_ref()
            .map(|b| b.create_mountpoint)
            .unwrap_or(false);
    }
    Ok(mp)
}

fn point_from_spec(m: &MountSpec) -> MountPoint {
    let mut mp = MountPoint {
        typ: m.typ.clone(),
        destination: clean_path(&m.target),
        rw: !m.read_only,
        ..Default::default()
    };
    match m.typ.as_str() {
        "volume" => {
            mp.name = m.source.clone();
            mp.anonymous = m.source.is_empty();
            mp.copy_data = true;
            mp.driver = LOCAL_DRIVER.into();
            if let Some(v) = &m.volume {
                if !v.driver.is_empty() {
                    mp.driver = v.driver.clone();
                }
                if v.no_copy {
                    mp.copy_data = false;
                }
                mp.volume_options = v.driver_options.clone();
                mp.volume_labels = v.labels.clone();
            }
        }
        "bind" => {
            mp.source = clean_path(&m.source);
            let b = m.bind.clone().unwrap_or_default();
            mp.propagation = if b.propagation.is_empty() {
                "rprivate".into()
            } else {
                b.propagation
            };
            mp.non_recursive = b.non_recursive;
            mp.ro_non_recursive = b.ro_non_recursive;
        }
        _ => {}
    }
    mp
}

/// An anonymous volume for an image's `VOLUME` (or `-v /path`).
pub fn anonymous_volume(destination: &str) -> MountPoint {
    let d = if destination.starts_with('/') {
        destination.to_string()
    } else {
        format!("/{destination}")
    };
    MountPoint {
        typ: "volume".into(),
        destination: clean_path(&d),
        driver: LOCAL_DRIVER.into(),
        rw: true,
        copy_data: true,
        anonymous: true,
        ..Default::default()
    }
}

/// `--volumes-from CONTAINER[:ro|rw]`: moby's `ParseVolumesFrom`.
pub fn parse_volumes_from(spec: &str) -> Result<(String, String)> {
    if spec.is_empty() {
        return Err(invalid(
            "volumes-from specification cannot be an empty string",
        ));
    }
    let (id, mode) = spec.split_once(':').unwrap_or((spec, ""));
    if mode.is_empty() {
        return Ok((id.to_string(), "rw".into()));
    }
    if !valid_mode(mode)
        || propagation_of(mode).is_some()
        || mode.split(',').any(|o| COPY_MODES.contains(&o))
    {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    Ok((id.to_string(), mode.to_string()))
}

/// `--tmpfs` destinations (moby's `ValidateTmpfsMountDestination`) and their options.
pub fn validate_tmpfs(dest: &str, data: &str) -> Result<()> {
    if clean_path(dest) == "/" {
        return Err(invalid("invalid specification: destination can't be '/'"));
    }
    if !dest.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount path: '{dest}' mount path must be absolute"
        )));
    }
    tmpfs_options(data)?;
    Ok(())
}

/// Mount flags by option name, for tmpfs merging (flags that clear each other share a key).
fn flag_key(o: &str) -> Option<&'static str> {
    Some(match o {
        "ro" | "rw" => "ro",
        "suid" | "nosuid" => "suid",
        "dev" | "nodev" => "dev",
        "exec" | "noexec" => "exec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "atime",
        "diratime" | "nodiratime" => "diratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "bind" | "rbind" => "bind",
        // One propagation only.
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
        | "runbindable" => "propagation",
        _ => return None,
    })
}

const TMPFS_DATA: &[&str] = &[
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// docker's tmpfs options: `noexec,nosuid,nodev,rprivate` then the user's, later options
/// winning (moby `MergeTmpfsOptions`).
pub fn tmpfs_options(data: &str) -> Result<Vec<String>> {
    let mut opts: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    opts.extend(data.split(',').filter(|s| !s.is_empty()).map(String::from));
    let mut seen_flags = std::collections::HashSet::new();
    let mut seen_data = std::collections::HashSet::new();
    let mut out = Vec::new();
    for o in opts.iter().rev() {
        if o == "defaults" {
            continue;
        }
        if let Some(k) = flag_key(o) {
            if seen_flags.insert(k) {
                out.push(o.clone());
            }
            continue;
        }
        match o.split_once('=') {
            Some((k, _)) if TMPFS_DATA.contains(&k) => {
                if seen_data.insert(k.to_string()) {
                    out.push(o.clone());
                }
            }
            _ => {
                let parts: Vec<String> = o.splitn(2, '=').map(|s| format!("{s:?}")).collect();
                return Err(invalid(format!(
                    "invalid tmpfs option [{}]",
                    parts.join(" ")
                )));
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// The OCI mount of a recorded mount point whose source is `source` (the volume's data
/// path for volumes).
pub fn oci_mount(mp: &MountPoint, source: &Path) -> Result<oci_spec::runtime::Mount> {
    let b = oci_spec::runtime::MountBuilder::default().destination(&mp.destination);
    let m = if mp.typ == "tmpfs" {
        b.typ("tmpfs")
            .source("tmpfs")
            .options(tmpfs_options(&mp.data)?)
            .build()
    } else {
        let mut opts = vec![if mp.non_recursive { "bind" } else { "rbind" }.to_string()];
        if !mp.rw {
            opts.push("ro".into());
            // Recursively read-only (docker ≥ 25 on kernels with mount_setattr) unless
            // `bind-recursive=writable`.
            if !mp.non_recursive && !mp.ro_non_recursive {
                opts.push("rro".into());
            }
        }
        if !mp.propagation.is_empty() {
            opts.push(mp.propagation.clone());
        }
        b.typ("bind").source(source).options(opts).build()
    };
    m.map_err(|e| VolumeError::Internal(e.to_string()))
}

/// Number of path components, the sort key that mounts a parent before its children.
pub fn depth(dest: &str) -> usize {
    clean_path(dest).matches('/').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<MountPoint>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(m) => panic!("expected an error, got {m:?}"),
        }
    }

    #[test]
    fn binds() {
        let m = parse_bind("/src:/dst:ro").unwrap();
        assert_eq!(
            (m.typ.as_str(), m.source.as_str(), m.destination.as_str()),
            ("bind", "/src", "/dst")
        );
        assert!(!m.rw && m.create_source);
        assert_eq!(
            (m.mode.as_str(), m.propagation.as_str()),
            ("ro", "rprivate")
        );
        let m = parse_bind("/src:/dst:rw,rshared").unwrap();
        assert!(m.rw);
        assert_eq!(m.propagation, "rshared");
        let m = parse_bind("data:/x/").unwrap();
        assert_eq!(
            (m.typ.as_str(), m.name.as_str(), m.destination.as_str()),
            ("volume", "data", "/x")
        );
        assert_eq!(m.mode, "z");
        assert!(m.copy_data && !m.anonymous && m.rw);
        assert!(!parse_bind("data:/x:nocopy").unwrap().copy_data);
        let m = parse_bind("/anon").unwrap();
        assert!(m.anonymous && m.name.is_empty());
        assert_eq!(
            err(parse_bind("a:b:c:d")),
            "invalid volume specification: 'a:b:c:d'"
        );
        assert_eq!(
            err(parse_bind(":/x")),
            "invalid volume specification: ':/x'"
        );
        assert_eq!(
            err(parse_bind("/x:ro")),
            "invalid volume specification: '/x:ro'"
        );
        assert_eq!(err(parse_bind("/a:/b:bogus")), "invalid mode: bogus");
        assert_eq!(err(parse_bind("/a:/b:ro,rw")), "invalid mode: ro,rw");
        assert_eq!(
            err(parse_bind("a:b")),
            "invalid volume specification: 'a:b': invalid mount config for type \"volume\": invalid mount path: 'b' mount path must be absolute"
        );
        assert_eq!(
            err(parse_bind("/a:/")),
            "invalid volume specification: '/a:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            err(parse_bind("vol:/x:shared")),
            "invalid volume specification: 'vol:/x:shared': invalid mount config for type \"volume\": field BindOptions must not be specified"
        );
    }

    #[test]
    fn mounts() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().display().to_string();
        let spec = |typ: &str, source: &str, target: &str| MountSpec {
            typ: typ.into(),
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        let m = parse_mount(&spec("bind", &src, "/x")).unwrap();
        assert_eq!((m.propagation.as_str(), m.mode.as_str()), ("rprivate", ""));
        assert!(!m.create_source);
        let missing = format!("{src}/nope");
        assert_eq!(
            err(parse_mount(&spec("bind", &missing, "/x"))),
            format!("invalid mount config for type \"bind\": bind source path does not exist: {missing}")
        );
        let mut s = spec("bind", &missing, "/x");
        s.bind = Some(BindOpts {
            create_mountpoint: true,
            ..Default::default()
        });
        assert!(parse_mount(&s).unwrap().create_source);
        assert_eq!(
            err(parse_mount(&spec("nosuch", "", "/x"))),
            "invalid mount config for type \"nosuch\": mount type unknown"
        );
        assert_eq!(
            err(parse_mount(&spec("volume", "v", ""))),
            "invalid mount config for type \"volume\": field Target must not be empty"
        );
        assert_eq!(
            err(parse_mount(&spec("tmpfs", "x", "/t"))),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        let mut s = spec("volume", "v", "/t");
        s.bind = Some(BindOpts::default());
        assert_eq!(
            err(parse_mount(&s)),
            "invalid mount config for type \"volume\": field BindOptions must not be specified"
        );
        let m = parse_mount(&spec("volume", "", "/t")).unwrap();
        assert!(m.anonymous && m.copy_data);
        assert_eq!(m.mode, "z");
        let mut s = spec("tmpfs", "", "/t");
        s.read_only = true;
        s.tmpfs = Some(TmpfsOpts {
            size_bytes: 64 << 20,
            mode: 0o1770,
            options: vec![vec!["exec".into()]],
        });
        assert_eq!(parse_mount(&s).unwrap().data, "ro,mode=1770,size=64m,exec");
        let mut s = spec("tmpfs", "", "/t");
        s.tmpfs = Some(TmpfsOpts {
            options: vec![vec!["suid".into()]],
            ..Default::default()
        });
        assert_eq!(
            err(parse_mount(&s)),
            "invalid mount config for type \"tmpfs\": invalid option: suid"
        );
        let raw =
            serde_json::json!({"HostConfig": {"Mounts": [{"Type": "nosuch", "Target": "/x"}]}});
        assert_eq!(
            check_raw_mount_types(&raw).unwrap_err().to_string(),
            "invalid mount config for type \"nosuch\": mount type unknown"
        );
        let raw = serde_json::json!({"HostConfig": {"Mounts": [{"Type": "bind", "BindOptions": {"Propagation": "weird"}}]}});
        assert!(check_raw_mount_types(&raw).is_err());
        assert!(check_raw_mount_types(&serde_json::json!({})).is_ok());
    }

    #[test]
    fn volumes_from_and_tmpfs() {
        assert_eq!(
            parse_volumes_from("c1").unwrap(),
            ("c1".to_string(), "rw".to_string())
        );
        assert_eq!(parse_volumes_from("c1:ro").unwrap().1, "ro");
        assert!(parse_volumes_from("c1:shared").is_err());
        assert!(parse_volumes_from("c1:nocopy").is_err());
        assert!(parse_volumes_from("").is_err());
        assert_eq!(
            tmpfs_options("size=1m,exec").unwrap(),
            vec!["nosuid", "nodev", "rprivate", "size=1m", "exec"]
        );
        assert_eq!(
            tmpfs_options("").unwrap(),
            vec!["noexec", "nosuid", "nodev", "rprivate"]
        );
        assert_eq!(
            tmpfs_options("bogus").unwrap_err().to_string(),
            "invalid tmpfs option [\"bogus\"]"
        );
        assert!(validate_tmpfs("rel", "").is_err());
        assert!(validate_tmpfs("/", "").is_err());
        assert!(validate_tmpfs("/run", "size=10m").is_ok());
    }

    #[test]
    fn paths_and_oci() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(depth("/etc"), 1);
        assert_eq!(depth("/etc/hosts"), 2);
        let m = parse_bind("/src:/dst:ro").unwrap();
        let o = oci_mount(&m, Path::new("/src")).unwrap();
        assert_eq!(
            o.options().clone().unwrap(),
            vec!["rbind", "ro", "rro", "rprivate"]
        );
        let v = parse_bind("vol:/data").unwrap();
        let o = oci_mount(&v, Path::new("/v/_data")).unwrap();
        assert_eq!(o.options().clone().unwrap(), vec!["rbind"]);
        let api = v.to_api();
        assert_eq!(api.name.as_deref(), Some("vol"));
        assert_eq!(api.propagation.as_deref(), Some(""));
    }
}
