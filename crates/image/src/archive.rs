//! `docker load` (docker-save archives and OCI image layouts) and `docker save` (an
//! archive that is both, as Docker 25+ writes).

use crate::reference::{parse_normalized_named, Reference};
use crate::store::{parse_config, ImageStore};
use berth_api::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANN_IMAGE_NAME: &str = "io.containerd.image.name";
const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The unpacked outer archive: regular files by (normalised) path, plus symlinks, which
/// are resolved inside the archive only (docker-save uses them to dedupe layers).
struct Extracted {
    dir: PathBuf,
    files: HashMap<String, PathBuf>,
    links: HashMap<String, String>,
}

impl Drop for Extracted {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn normalise(p: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_str()?.to_string()),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.join("/"))
}

impl Extracted {
    fn read_from(reader: &mut dyn Read, dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir)?;
        let mut ex = Extracted {
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut input = crate::compress::decompress(reader)?;
        let mut ar = tar::Archive::new(&mut input);
        let bad = |e: std::io::Error| Error::invalid(format!("invalid image archive: {e}"));
        for (n, entry) in ar.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.into_owned();
            let Some(name) = normalise(&path) else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    // Stored under a generated name: archive paths never become host paths.
                    let dest = ex.dir.join(format!("f{n}"));
                    let mut f = File::create(&dest)?;
                    std::io::copy(&mut entry, &mut f).map_err(bad)?;
                    ex.files.insert(name, dest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Ok(Some(target)) = entry.link_name() else {
                        continue;
                    };
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        path.parent()
                            .map(|p| p.join(&target))
                            .unwrap_or_else(|| target.to_path_buf())
                    } else {
                        target.to_path_buf()
                    };
                    if let Some(t) = normalise(&base) {
                        ex.links.insert(name, t);
                    }
                }
                _ => {}
            }
        }
        Ok(ex)
    }

    fn get(&self, name: &str) -> Option<&PathBuf> {
        let mut cur = normalise(Path::new(name))?;
        for _ in 0..16 {
            if let Some(p) = self.files.get(&cur) {
                return Some(p);
            }
            cur = self.links.get(&cur)?.clone();
        }
        None
    }

    fn open(&self, name: &str) -> Result<File> {
        let p = self
            .get(name)
            .ok_or_else(|| Error::invalid(format!("invalid image archive: {name} not found")))?;
        Ok(File::open(p)?)
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open(name)?.read_to_end(&mut v)?;
        Ok(v)
    }

    fn blob_path(digest: &str) -> Result<String> {
        let (alg, hex) = digest
            .split_once(':')
            .ok_or_else(|| Error::invalid(format!("invalid digest {digest:?}")))?;
        if alg != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("unsupported digest {digest:?}")));
        }
        Ok(format!("blobs/{alg}/{hex}"))
    }

    /// Reads a blob of an OCI layout, verifying its digest.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let data = self.read(&Self::blob_path(digest)?)?;
        let actual = berth_store::sha256_digest(&data);
        if actual != digest {
            return Err(Error::invalid(format!(
                "digest mismatch for {digest}: got {actual}"
            )));
        }
        Ok(data)
    }
}

/// Hashes what passes through, to verify a compressed layer against its descriptor.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// One image found in an archive, ready to be stored.
struct Pending {
    config: Vec<u8>,
    /// (archive path, expected compressed digest if known)
    layers: Vec<(String, Option<String>)>,
    tags: Vec<Reference>,
}

impl ImageStore {
    /// `docker load`: returns docker's messages ("Loaded image: busybox:latest").
    pub fn load(&self, reader: &mut dyn Read) -> Result<Vec<String>> {
        let tmp = self
            .tmp_dir()
            .join(format!("load-{}-{}", std::process::id(), tmp_seq()));
        let ex = Extracted::read_from(reader, tmp)?;
        let pending = if ex.get("manifest.json").is_some() {
            docker_images(&ex)?
        } else if ex.get("index.json").is_some() {
            let index: Index = serde_json::from_slice(&ex.read("index.json")?)
                .map_err(|e| Error::invalid(format!("invalid index.json: {e}")))?;
            let mut out = Vec::new();
            oci_images(&ex, &index.manifests, None, &mut out, 0)?;
            out
        } else {
            return Err(Error::invalid(
                "invalid image archive: no manifest.json or index.json",
            ));
        };
        let mut messages = Vec::new();
        for p in pending {
            let cfg = parse_config(&p.config)?;
            let diff_ids = cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default();
            if diff_ids.len() != p.layers.len() {
                return Err(Error::invalid(format!(
                    "invalid manifest, layers length mismatch: expected {}, got {}",
                    diff_ids.len(),
                    p.layers.len()
                )));
            }
            let mut stored: Vec<String> = Vec::new();
            for ((path, compressed), diff) in p.layers.iter().zip(&diff_ids) {
                if self.has_layer(diff) {
                    continue;
                }
                let file = ex.open(path)?;
                let mut hr = HashingReader {
                    inner: std::io::BufReader::new(file),
                    hasher: Sha256::new(),
                };
                let res = self.store_layer(&mut hr, Some(diff));
                if let Err(e) = res {
                    for d in &stored {
                        self.drop_unused_blob(d);
                    }
                    return Err(e);
                }
                stored.push(diff.clone());
                if let Some(want) = compressed {
                    let got = format!("sha256:{}", hex::encode(hr.hasher.finalize()));
                    if &got != want {
                        self.drop_unused_blob(diff);
                        return Err(Error::invalid(format!(
                            "layer digest mismatch: expected {want}, got {got}"
                        )));
                    }
                }
            }
            let _g = self.guard();
            let (id, moved) = match self.register(&p.config, &p.tags) {
                Ok(x) => x,
                Err(e) => {
                    for d in &stored {
                        self.drop_unused_blob(d);
                    }
                    return Err(e);
                }
            };
            for (t, old) in p.tags.iter().zip(moved) {
                if let Some(old) = old {
                    messages.push(format!(
                        "The image {} already exists, renaming the old one with ID {old} to empty string",
                        t.familiar_string()
                    ));
                }
                messages.push(format!("Loaded image: {}", t.familiar_string()));
            }
            if p.tags.is_empty() {
                messages.push(format!("Loaded image ID: {id}"));
            }
        }
        Ok(messages)
    }

    /// `docker save`: a docker-save archive that is also an OCI image layout.
    pub fn save(&self, names: &[String], writer: &mut dyn Write) -> Result<()> {
        // image id → tags (in request order), keeping the order images were named in.
        let mut order: Vec<String> = Vec::new();
        let mut tags: HashMap<String, Vec<Reference>> = HashMap::new();
        for name in names {
            let mut add = |id: &str, t: Option<Reference>| {
                if !tags.contains_key(id) {
                    order.push(id.to_string());
                }
                let e = tags.entry(id.to_string()).or_default();
                if let Some(t) = t {
                    if !e.contains(&t) {
                        e.push(t);
                    }
                }
            };
            // A bare repository name saves every tag of that repository.
            if let Ok(r) = parse_normalized_named(name) {
                if r.tag.is_none() && r.digest.is_none() {
                    let all = self.repo_tags(&r.name())?;
                    if !all.is_empty() {
                        for (t, id) in all {
                            add(&id, Some(t));
                        }
                        continue;
                    }
                }
            }
            let res = self.resolve_full(name)?;
            add(&res.image.id, res.via.filter(|v| v.digest.is_none()));
        }

        let mut tar = tar::Builder::new(writer);
        let terr = |e: std::io::Error| Error::internal(format!("writing archive: {e}"));
        let mut written: std::collections::HashSet<String> = Default::default();
        for d in ["blobs/", "blobs/sha256/"] {
            let mut h = header(tar::EntryType::Directory, 0);
            tar.append_data(&mut h, d, std::io::empty()).map_err(terr)?;
        }
        let mut manifest_json = Vec::new();
        let mut index = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for id in &order {
            let img = self.resolve(id)?;
            let config = self.config_bytes(id)?;
            let mut layer_descs = Vec::new();
            for d in &img.diff_ids {
                let (f, size) = self.open_layer_tar(d)?;
                let path = Extracted::blob_path(d)?;
                if written.insert(d.clone()) {
                    let mut h = header(tar::EntryType::Regular, size);
                    tar.append_data(&mut h, &path, f).map_err(terr)?;
                }
                layer_descs.push(Descriptor {
                    media_type: MT_OCI_LAYER.into(),
                    digest: d.clone(),
                    size: size as i64,
                    annotations: None,
                    platform: None,
                });
            }
            let cpath = Extracted::blob_path(id)?;
            if written.insert(id.clone()) {
                let mut h = header(tar::EntryType::Regular, config.len() as u64);
                tar.append_data(&mut h, &cpath, &config[..]).map_err(terr)?;
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(MT_OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: MT_OCI_CONFIG.into(),
                    digest: id.clone(),
                    size: config.len() as i64,
                    annotations: None,
                    platform: None,
                },
                layers: layer_descs,
            };
            let mbytes =
                serde_json::to_vec(&manifest).map_err(|e| Error::internal(e.to_string()))?;
            let mdigest = berth_store::sha256_digest(&mbytes);
            if written.insert(mdigest.clone()) {
                let mut h = header(tar::EntryType::Regular, mbytes.len() as u64);
                tar.append_data(&mut h, Extracted::blob_path(&mdigest)?, &mbytes[..])
                    .map_err(terr)?;
            }
            let img_tags = tags.get(id).cloned().unwrap_or_default();
            let desc = |ann: Option<BTreeMap<String, String>>| Descriptor {
                media_type: MT_OCI_MANIFEST.into(),
                digest: mdigest.clone(),
                size: mbytes.len() as i64,
                annotations: ann,
                platform: None,
            };
            if img_tags.is_empty() {
                index.push(desc(None));
            }
            for t in &img_tags {
                let mut ann = BTreeMap::new();
                ann.insert(ANN_IMAGE_NAME.to_string(), t.to_string());
                ann.insert(ANN_REF_NAME.to_string(), t.tag.clone().unwrap_or_default());
                index.push(desc(Some(ann)));
                if let (Some(tag), Some(top)) = (&t.tag, img.diff_ids.last()) {
                    repositories
                        .entry(t.familiar_name())
                        .or_default()
                        .insert(tag.clone(), top.trim_start_matches("sha256:").to_string());
                }
            }
            manifest_json.push(ManifestEntry {
                config: cpath,
                repo_tags: if img_tags.is_empty() {
                    None
                } else {
                    Some(img_tags.iter().map(|t| t.familiar_string()).collect())
                },
                layers: img
                    .diff_ids
                    .iter()
                    .map(|d| Extracted::blob_path(d))
                    .collect::<Result<_>>()?,
            });
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(MT_OCI_INDEX.into()),
            manifests: index,
        };
        let files: Vec<(&str, Vec<u8>)> = vec![
            (
                "index.json",
                serde_json::to_vec(&index).map_err(|e| Error::internal(e.to_string()))?,
            ),
            (
                "manifest.json",
                serde_json::to_vec(&manifest_json).map_err(|e| Error::internal(e.to_string()))?,
            ),
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            (
                "repositories",
                serde_json::to_vec(&repositories).map_err(|e| Error::internal(e.to_string()))?,
            ),
        ];
        for (name, data) in files {
            // Docker leaves an empty repositories file out.
            if name == "repositories" && repositories.is_empty() {
                continue;
            }
            let mut h = header(tar::EntryType::Regular, data.len() as u64);
            tar.append_data(&mut h, name, &data[..]).map_err(terr)?;
        }
        tar.finish().map_err(terr)?;
        Ok(())
    }
}

fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn tmp_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn parse_tag(s: &str) -> Result<Reference> {
    let r = parse_normalized_named(s)?;
    if r.tag.is_none() || r.digest.is_some() {
        return Err(Error::invalid(format!("invalid tag {s:?}")));
    }
    Ok(r)
}

fn docker_images(ex: &Extracted) -> Result<Vec<Pending>> {
    let entries: Vec<ManifestEntry> = serde_json::from_slice(&ex.read("manifest.json")?)
        .map_err(|e| Error::invalid(format!("invalid manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let config = ex.read(&e.config)?;
        // Docker 25+ names the config by its digest: verify it.
        if let Some(hex) = e.config.strip_prefix("blobs/sha256/") {
            let got = berth_store::sha256_digest(&config);
            if got != format!("sha256:{hex}") {
                return Err(Error::invalid(format!(
                    "config digest mismatch: {} vs {got}",
                    e.config
                )));
            }
        }
        let tags = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| parse_tag(t))
            .collect::<Result<Vec<_>>>()?;
        out.push(Pending {
            config,
            layers: e.layers.into_iter().map(|l| (l, None)).collect(),
            tags,
        });
    }
    Ok(out)
}

/// Walks index descriptors (nested indexes pick this host's platform), merging images
/// that several descriptors name under different tags.
fn oci_images(
    ex: &Extracted,
    descs: &[Descriptor],
    inherited: Option<&Reference>,
    out: &mut Vec<Pending>,
    depth: usize,
) -> Result<()> {
    if depth > 4 {
        return Err(Error::invalid("image index nests too deeply"));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for d in descs {
        let tag = d
            .annotations
            .as_ref()
            .and_then(|a| {
                a.get(ANN_IMAGE_NAME)
                    .and_then(|n| parse_tag(n).ok())
                    .or_else(|| {
                        a.get(ANN_REF_NAME)
                            .and_then(|n| parse_tag(n).ok().filter(|_| n.contains(':')))
                    })
            })
            .or_else(|| inherited.cloned());
        match d.media_type.as_str() {
            MT_OCI_INDEX | MT_DOCKER_LIST => {
                let idx: Index = serde_json::from_slice(&ex.read_blob(&d.digest)?)
                    .map_err(|e| Error::invalid(format!("invalid image index: {e}")))?;
                let arch = crate::store::go_arch();
                let pick: Vec<Descriptor> = idx
                    .manifests
                    .iter()
                    .filter(|m| {
                        m.platform
                            .as_ref()
                            .is_none_or(|p| p.os == "linux" && p.architecture == arch)
                    })
                    .take(1)
                    .cloned()
                    .collect();
                oci_images(ex, &pick, tag.as_ref(), out, depth + 1)?;
            }
            _ => {
                if let Some(&i) = seen.get(&d.digest) {
                    if let Some(t) = tag {
                        out[i].tags.push(t);
                    }
                    continue;
                }
                let m: Manifest = serde_json::from_slice(&ex.read_blob(&d.digest)?)
                    .map_err(|e| Error::invalid(format!("invalid image manifest: {e}")))?;
                let config = ex.read_blob(&m.config.digest)?;
                let layers = m
                    .layers
                    .iter()
                    .map(|l| Ok((Extracted::blob_path(&l.digest)?, Some(l.digest.clone()))))
                    .collect::<Result<Vec<_>>>()?;
                seen.insert(d.digest.clone(), out.len());
                out.push(Pending {
                    config,
                    layers,
                    tags: tag.into_iter().collect(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tests::{busybox_tar, env};

    fn entries(tar_bytes: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(tar_bytes);
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    /// Rewrites an archive keeping only entries `keep` accepts.
    fn filter_tar(tar_bytes: &[u8], keep: impl Fn(&str) -> bool) -> Vec<u8> {
        let mut ar = tar::Archive::new(tar_bytes);
        let mut b = tar::Builder::new(Vec::new());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            if keep(&p) {
                let mut h = e.header().clone();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                b.append_data(&mut h, &p, &data[..]).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn save_load_round_trip_keeps_id_and_tags() {
        let a = env();
        let id = a
            .store
            .import(
                &mut &busybox_tar()[..],
                &["CMD [\"sh\"]".into()],
                None,
                Some("busybox:latest"),
            )
            .unwrap();
        a.store.tag(&id, "localhost:5000/bb", Some("v1")).unwrap();
        let mut out = Vec::new();
        a.store
            .save(&["busybox".into(), "localhost:5000/bb:v1".into()], &mut out)
            .unwrap();
        let names = entries(&out);
        for want in ["manifest.json", "index.json", "oci-layout", "repositories"] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing in {names:?}"
            );
        }
        let b = env();
        let msgs = b.store.load(&mut &out[..]).unwrap();
        assert_eq!(
            msgs,
            [
                "Loaded image: busybox:latest",
                "Loaded image: localhost:5000/bb:v1"
            ]
        );
        let img = b.store.resolve("busybox").unwrap();
        assert_eq!(img.id, id);
        assert_eq!(img.repo_tags, ["busybox:latest", "localhost:5000/bb:v1"]);
        assert_eq!(b.store.config(&id).unwrap().cmd.unwrap(), ["sh"]);
        // Loading again moves nothing and still reports the tags.
        assert_eq!(b.store.load(&mut &out[..]).unwrap().len(), 2);

        // `docker save | gzip` and zstd-compressed archives load too.
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&out).unwrap();
            e.finish().unwrap()
        };
        let g = env();
        assert_eq!(g.store.load(&mut &gz[..]).unwrap().len(), 2);
        let zs = zstd::encode_all(&out[..], 1).unwrap();
        let z = env();
        assert_eq!(z.store.load(&mut &zs[..]).unwrap().len(), 2);
        assert_eq!(z.store.resolve("busybox").unwrap().id, id);

        // The same archive as a pure OCI layout (no manifest.json / repositories).
        let oci = filter_tar(&out, |p| p != "manifest.json" && p != "repositories");
        let c = env();
        let msgs = c.store.load(&mut &oci[..]).unwrap();
        assert_eq!(
            msgs,
            [
                "Loaded image: busybox:latest",
                "Loaded image: localhost:5000/bb:v1"
            ]
        );
        assert_eq!(c.store.resolve("localhost:5000/bb:v1").unwrap().id, id);

        // Saved by id: no tags; loads as "Loaded image ID".
        let mut out = Vec::new();
        a.store.save(&[id[7..19].to_string()], &mut out).unwrap();
        let d = env();
        assert_eq!(
            d.store.load(&mut &out[..]).unwrap(),
            [format!("Loaded image ID: {id}")]
        );
    }

    /// The pre-25 docker-save layout: `<id>/layer.tar`, `<hex>.json`, and a symlink
    /// standing in for a duplicated layer.
    #[test]
    fn load_legacy_docker_save_with_symlinked_layer() {
        let layer = busybox_tar();
        let diff = berth_store::sha256_digest(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
            "config": {"Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": [diff, diff]},
            "history": [{"created_by": "a"}, {"created_by": "b"}]
        }))
        .unwrap();
        let cdigest = berth_store::sha256_digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{}.json", &cdigest[7..]),
            "RepoTags": ["legacy:1"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"]
        }]))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("manifest.json".to_string(), &manifest[..]),
            (format!("{}.json", &cdigest[7..]), &config[..]),
            ("aaa/layer.tar".to_string(), &layer[..]),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
            .unwrap();
        let archive = b.into_inner().unwrap();
        let e = env();
        assert_eq!(
            e.store.load(&mut &archive[..]).unwrap(),
            ["Loaded image: legacy:1"]
        );
        let img = e.store.resolve("legacy:1").unwrap();
        assert_eq!(img.id, cdigest);
        assert_eq!(img.chain_ids.len(), 2);
        assert_eq!(img.created_unix, 1704164645);
        assert_eq!(
            e.store.config("legacy:1").unwrap().exposed_ports.unwrap(),
            ["80/tcp"]
        );
        assert_eq!(e.store.history("legacy:1").unwrap().len(), 2);
    }

    #[test]
    fn load_oci_layout_with_gzip_layer_and_tampered_blob() {
        use std::io::Write;
        let layer = busybox_tar();
        let diff = berth_store::sha256_digest(&layer);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).unwrap();
        let gz = gz.finish().unwrap();
        let gz_digest = berth_store::sha256_digest(&gz);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff]},
            "history": [{"created_by": "x"}]
        }))
        .unwrap();
        let cdigest = berth_store::sha256_digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": super::MT_OCI_MANIFEST,
            "config": {"mediaType": super::MT_OCI_CONFIG, "digest": cdigest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": gz_digest, "size": gz.len()}]
        }))
        .unwrap();
        let mdigest = berth_store::sha256_digest(&manifest);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": super::MT_OCI_MANIFEST, "digest": mdigest, "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "example.com/app:1.0"}}]
        }))
        .unwrap();
        let build = |layer_bytes: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, data) in [
                (
                    "oci-layout".to_string(),
                    &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
                ),
                ("index.json".to_string(), &index[..]),
                (format!("blobs/sha256/{}", &mdigest[7..]), &manifest[..]),
                (format!("blobs/sha256/{}", &cdigest[7..]), &config[..]),
                (format!("blobs/sha256/{}", &gz_digest[7..]), layer_bytes),
            ] {
                let mut h = tar::Header::new_ustar();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, name, data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let e = env();
        // A layer whose bytes do not match its descriptor is refused and leaves nothing.
        let mut tampered = gz.clone();
        let n = tampered.len();
        tampered[n - 9] ^= 0xff;
        assert!(e.store.load(&mut &build(&tampered)[..]).is_err());
        assert!(e.store.list(true, &Default::default()).unwrap().is_empty());
        assert!(!e.store.blobs.has(&diff));
        let msgs = e.store.load(&mut &build(&gz)[..]).unwrap();
        assert_eq!(msgs, ["Loaded image: example.com/app:1.0"]);
        let img = e.store.resolve("example.com/app:1.0").unwrap();
        assert_eq!(img.id, cdigest);
        assert_eq!(img.diff_ids, [diff]);
    }
}
