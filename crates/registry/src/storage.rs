//! Filesystem storage, laid out like distribution's:
//!
//! ```text
//! blobs/<alg>/<hex[..2]>/<hex>                    content (layers, configs, manifests), global
//! repositories/<name>/_layers/<alg>/<hex>        "this repository has that blob"
//! repositories/<name>/_manifests/revisions/<alg>/<hex>   the manifest's media type (JSON)
//! repositories/<name>/_manifests/tags/<tag>      the digest the tag points at
//! repositories/<name>/_referrers/<alg>/<subject-hex>/<alg>-<hex>   manifests with a subject
//! repositories/<name>/_uploads/<uuid>/{data,startedat}
//! tmp/                                           temp files, renamed into place when complete
//! ```
//!
//! Every published file is written to a temp file, fsynced and renamed, so a crash never leaves a
//! half-written blob, tag or link, and parallel writers of the same content simply race to an
//! identical result.

use crate::names::{Algorithm, Digest, Hasher};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Largest manifest accepted (distribution's maxManifestBodySize).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("upload unknown")]
    UploadUnknown,
    #[error("digest mismatch: computed {computed}")]
    DigestMismatch { computed: Digest },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a revision file records about a stored manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RevisionInfo {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The parts of an image manifest or index the registry looks at.
#[derive(Debug, Default, Deserialize)]
pub struct ManifestDoc {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub blobs: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

impl ManifestDoc {
    /// Index / manifest list children.
    pub fn is_index(&self) -> bool {
        self.manifests.is_some()
    }

    /// Every blob digest the manifest references (config, layers, artifact blobs), as strings.
    pub fn blob_refs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().flatten())
            .chain(self.blobs.iter().flatten())
    }
}

pub struct Storage {
    root: PathBuf,
}

fn random_id() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    // UUID-shaped, like distribution's upload ids (clients only treat them as opaque).
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn not_found_ok<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Upload ids come from the URL: only what `random_id` makes is accepted (no path tricks).
pub fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn fsync_dir(p: &Path) {
    // Best effort: makes the rename durable; some filesystems refuse fsync on directories.
    if let Ok(f) = fs::File::open(p) {
        let _ = f.sync_all();
    }
}

impl Storage {
    pub fn open(root: &Path) -> io::Result<Storage> {
        for d in ["blobs", "repositories", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Storage {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm.as_str())
            .join(&d.hex[..2])
            .join(&d.hex)
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_layers")
            .join(d.algorithm.as_str())
            .join(&d.hex)
    }

    fn revision_path(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests/revisions")
            .join(d.algorithm.as_str())
            .join(&d.hex)
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags").join(tag)
    }

    fn referrer_dir(&self, name: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_referrers")
            .join(subject.algorithm.as_str())
            .join(&subject.hex)
    }

    fn upload_dir(&self, name: &str, id: &str) -> PathBuf {
        self.repo_dir(name).join("_uploads").join(id)
    }

    /// A fresh temp path on the same filesystem as the store (so rename is atomic).
    pub fn temp_path(&self) -> PathBuf {
        self.root.join("tmp").join(random_id())
    }

    /// Writes `data` to `dest` atomically (temp file, fsync, rename).
    fn write_atomic(&self, dest: &Path, data: &[u8]) -> io::Result<()> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = self.temp_path();
        let res = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, dest)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Size of a stored blob, if present.
    pub fn blob_size(&self, d: &Digest) -> io::Result<Option<u64>> {
        Ok(not_found_ok(fs::metadata(self.blob_path(d)))?.map(|m| m.len()))
    }

    /// Whether repository `name` has blob `d` (linked to it and present).
    pub fn repo_blob_size(&self, name: &str, d: &Digest) -> io::Result<Option<u64>> {
        if !self.layer_link(name, d).exists() {
            return Ok(None);
        }
        self.blob_size(d)
    }

    pub fn link_blob(&self, name: &str, d: &Digest) -> io::Result<()> {
        let link = self.layer_link(name, d);
        if link.exists() {
            return Ok(());
        }
        self.write_atomic(&link, d.to_string().as_bytes())
    }

    /// Removes the repository's link to a blob (the content stays until gc).
    pub fn unlink_blob(&self, name: &str, d: &Digest) -> io::Result<bool> {
        Ok(not_found_ok(fs::remove_file(self.layer_link(name, d)))?.is_some())
    }

    /// Moves a complete, verified file into the blob store.
    fn publish(&self, file: &Path, d: &Digest) -> io::Result<()> {
        let dest = self.blob_path(d);
        if dest.exists() {
            // Same digest, same bytes: keep the existing one.
            let _ = fs::remove_file(file);
            return Ok(());
        }
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent)?;
        fs::File::open(file)?.sync_all()?;
        fs::rename(file, &dest)?;
        fsync_dir(&parent);
        Ok(())
    }

    /// Stores `data` as a blob, verifying it against `expected` when given.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, StorageError> {
        let alg = expected.map(|d| d.algorithm).unwrap_or(Algorithm::Sha256);
        let d = Digest::of(alg, data);
        if let Some(e) = expected {
            if *e != d {
                return Err(StorageError::DigestMismatch { computed: d });
            }
        }
        if self.blob_path(&d).exists() {
            return Ok(d);
        }
        let tmp = self.temp_path();
        let res = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            drop(f);
            self.publish(&tmp, &d)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res?;
        Ok(d)
    }

    pub fn read_blob(&self, d: &Digest) -> io::Result<Option<Vec<u8>>> {
        not_found_ok(fs::read(self.blob_path(d)))
    }

    // ---- manifests ----

    /// Stores a manifest (already validated) and, when `tag` is given, points the tag at it.
    pub fn put_manifest(
        &self,
        name: &str,
        bytes: &[u8],
        digest: &Digest,
        info: &RevisionInfo,
        tag: Option<&str>,
    ) -> io::Result<()> {
        match self.put_blob(bytes, Some(digest)) {
            Ok(_) => {}
            Err(StorageError::Io(e)) => return Err(e),
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
        self.link_blob(name, digest)?;
        let json = serde_json::to_vec(info).map_err(io::Error::other)?;
        self.write_atomic(&self.revision_path(name, digest), &json)?;
        if let Some(s) = info.subject.as_deref().and_then(Digest::parse) {
            let marker = self.referrer_dir(name, &s).join(format!(
                "{}-{}",
                digest.algorithm.as_str(),
                digest.hex
            ));
            self.write_atomic(&marker, b"")?;
        }
        if let Some(t) = tag {
            self.write_atomic(&self.tag_path(name, t), digest.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Points `tag` at a manifest the repository already has.
    pub fn set_tag(&self, name: &str, tag: &str, d: &Digest) -> io::Result<()> {
        self.write_atomic(&self.tag_path(name, tag), d.to_string().as_bytes())
    }

    pub fn resolve_tag(&self, name: &str, tag: &str) -> io::Result<Option<Digest>> {
        Ok(not_found_ok(fs::read_to_string(self.tag_path(name, tag)))?
            .and_then(|s| Digest::parse(s.trim())))
    }

    pub fn revision(&self, name: &str, d: &Digest) -> io::Result<Option<RevisionInfo>> {
        let Some(bytes) = not_found_ok(fs::read(self.revision_path(name, d)))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other)
    }

    /// A manifest of the repository: (media type, bytes).
    pub fn get_manifest(&self, name: &str, d: &Digest) -> io::Result<Option<(String, Vec<u8>)>> {
        let Some(info) = self.revision(name, d)? else {
            return Ok(None);
        };
        Ok(self.read_blob(d)?.map(|b| (info.media_type, b)))
    }

    /// Deletes a manifest revision, every tag pointing at it and its referrer entry.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> io::Result<bool> {
        let Some(info) = self.revision(name, d)? else {
            return Ok(false);
        };
        for t in self.tags(name)?.unwrap_or_default() {
            if self.resolve_tag(name, &t)?.as_ref() == Some(d) {
                not_found_ok(fs::remove_file(self.tag_path(name, &t)))?;
            }
        }
        if let Some(s) = info.subject.as_deref().and_then(Digest::parse) {
            let marker =
                self.referrer_dir(name, &s)
                    .join(format!("{}-{}", d.algorithm.as_str(), d.hex));
            not_found_ok(fs::remove_file(marker))?;
        }
        not_found_ok(fs::remove_file(self.revision_path(name, d)))?;
        Ok(true)
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        self.repo_dir(name).join("_manifests").is_dir()
    }

    /// Sorted tags, or None when the repository does not exist.
    pub fn tags(&self, name: &str) -> io::Result<Option<Vec<String>>> {
        if !self.repo_exists(name) {
            return Ok(None);
        }
        let mut out = Vec::new();
        if let Some(rd) = not_found_ok(fs::read_dir(self.repo_dir(name).join("_manifests/tags")))? {
            for e in rd {
                let n = e?.file_name().to_string_lossy().into_owned();
                if crate::names::valid_tag(&n) {
                    out.push(n);
                }
            }
        }
        out.sort();
        Ok(Some(out))
    }

    /// Every repository (a directory with `_manifests`), sorted.
    pub fn catalog(&self) -> io::Result<Vec<String>> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
            let Some(rd) = not_found_ok(fs::read_dir(dir))? else {
                return Ok(());
            };
            for e in rd {
                let e = e?;
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('_') || !e.file_type()?.is_dir() {
                    continue;
                }
                let full = if prefix.is_empty() {
                    n.clone()
                } else {
                    format!("{prefix}/{n}")
                };
                if e.path().join("_manifests").is_dir() {
                    out.push(full.clone());
                }
                walk(&e.path(), &full, out)?;
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root.join("repositories"), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Manifest revisions of a repository.
    pub fn revisions(&self, name: &str) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        let base = self.repo_dir(name).join("_manifests/revisions");
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            if let Some(rd) = not_found_ok(fs::read_dir(base.join(alg.as_str())))? {
                for e in rd {
                    let n = e?.file_name().to_string_lossy().into_owned();
                    if let Some(d) = Digest::parse(&format!("{}:{n}", alg.as_str())) {
                        out.push(d);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Manifests of the repository whose `subject` is `subject`.
    pub fn referrers(&self, name: &str, subject: &Digest) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        if let Some(rd) = not_found_ok(fs::read_dir(self.referrer_dir(name, subject)))? {
            for e in rd {
                let n = e?.file_name().to_string_lossy().into_owned();
                if let Some(d) = n
                    .split_once('-')
                    .and_then(|(a, h)| Digest::parse(&format!("{a}:{h}")))
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    // ---- uploads ----

    pub fn upload_start(&self, name: &str) -> io::Result<String> {
        let id = random_id();
        let dir = self.upload_dir(name, &id);
        fs::create_dir_all(&dir)?;
        fs::File::create(dir.join("data"))?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        fs::write(dir.join("startedat"), now.to_string())?;
        Ok(id)
    }

    /// The data file of an upload in progress.
    pub fn upload_data(&self, name: &str, id: &str) -> Option<PathBuf> {
        if !valid_upload_id(id) {
            return None;
        }
        let p = self.upload_dir(name, id).join("data");
        p.is_file().then_some(p)
    }

    pub fn upload_cancel(&self, name: &str, id: &str) -> io::Result<bool> {
        if !valid_upload_id(id) {
            return Ok(false);
        }
        Ok(not_found_ok(fs::remove_dir_all(self.upload_dir(name, id)))?.is_some())
    }

    /// Verifies an upload against `expected`, publishes it and links it to the repository. On a
    /// mismatch the upload is discarded (nothing is stored), as distribution does.
    pub fn upload_finish(
        &self,
        name: &str,
        id: &str,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let data = self
            .upload_data(name, id)
            .ok_or(StorageError::UploadUnknown)?;
        let (computed, size) = hash_file(&data, expected.algorithm)?;
        if computed != *expected {
            let _ = self.upload_cancel(name, id);
            return Err(StorageError::DigestMismatch { computed });
        }
        self.publish(&data, expected)?;
        self.link_blob(name, expected)?;
        let _ = self.upload_cancel(name, id);
        Ok(size)
    }

    /// Verifies a complete file (a blob fetched from a pull-through upstream) against
    /// `expected`, publishes it and links it to the repository; the file is consumed either way.
    pub fn adopt_blob(
        &self,
        name: &str,
        file: &Path,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let res = (|| {
            let (computed, size) = hash_file(file, expected.algorithm)?;
            if computed != *expected {
                return Err(StorageError::DigestMismatch { computed });
            }
            self.publish(file, expected)?;
            self.link_blob(name, expected)?;
            Ok(size)
        })();
        if res.is_err() {
            let _ = fs::remove_file(file);
        }
        res
    }

    // ---- garbage collection ----

    /// Mark and sweep: every blob no manifest revision of any repository references is deleted
    /// (dry run: only reported), with uploads and temp files older than `upload_max_age`.
    /// Like distribution's, run it while the registry is stopped or read-only: a push in
    /// flight has blobs no manifest references yet.
    pub fn gc(&self, dry_run: bool, upload_max_age: Duration) -> io::Result<GcReport> {
        let mut report = GcReport::default();
        let mut marked: BTreeSet<Digest> = BTreeSet::new();
        let repos = self.catalog()?;
        for repo in &repos {
            for rev in self.revisions(repo)? {
                marked.insert(rev.clone());
                let Some(bytes) = self.read_blob(&rev)? else {
                    continue;
                };
                let doc: ManifestDoc = serde_json::from_slice(&bytes).unwrap_or_default();
                for desc in doc.blob_refs().chain(doc.manifests.iter().flatten()) {
                    if let Some(d) = Digest::parse(&desc.digest) {
                        marked.insert(d);
                    }
                }
            }
        }
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let base = self.root.join("blobs").join(alg.as_str());
            let Some(rd) = not_found_ok(fs::read_dir(&base))? else {
                continue;
            };
            for shard in rd {
                let shard = shard?;
                for e in fs::read_dir(shard.path())? {
                    let e = e?;
                    let n = e.file_name().to_string_lossy().into_owned();
                    let Some(d) = Digest::parse(&format!("{}:{n}", alg.as_str())) else {
                        continue;
                    };
                    if marked.contains(&d) {
                        report.kept += 1;
                        continue;
                    }
                    if !dry_run {
                        not_found_ok(fs::remove_file(e.path()))?;
                    }
                    report.deleted.push(d);
                }
            }
        }
        let now = SystemTime::now();
        let old = |p: &Path| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= upload_max_age)
                .unwrap_or(false)
        };
        // Every repository directory, including ones with only uploads or links.
        let mut dirs = Vec::new();
        collect_repo_dirs(&self.root.join("repositories"), &mut dirs)?;
        for dir in dirs {
            if let Some(rd) = not_found_ok(fs::read_dir(dir.join("_uploads")))? {
                for e in rd {
                    let p = e?.path();
                    if old(&p.join("data")) || !p.join("data").exists() {
                        if !dry_run {
                            not_found_ok(fs::remove_dir_all(&p))?;
                        }
                        report.uploads.push(p);
                    }
                }
            }
            // Links to blobs that are gone would only answer 404 later; drop them.
            if !dry_run {
                for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                    if let Some(rd) =
                        not_found_ok(fs::read_dir(dir.join("_layers").join(alg.as_str())))?
                    {
                        for e in rd {
                            let e = e?;
                            let n = e.file_name().to_string_lossy().into_owned();
                            if let Some(d) = Digest::parse(&format!("{}:{n}", alg.as_str())) {
                                if !self.blob_path(&d).exists() {
                                    not_found_ok(fs::remove_file(e.path()))?;
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(rd) = not_found_ok(fs::read_dir(self.root.join("tmp")))? {
            for e in rd {
                let p = e?.path();
                if old(&p) {
                    if !dry_run {
                        not_found_ok(fs::remove_file(&p))?;
                    }
                    report.uploads.push(p);
                }
            }
        }
        report.deleted.sort();
        Ok(report)
    }
}

fn collect_repo_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let Some(rd) = not_found_ok(fs::read_dir(dir))? else {
        return Ok(());
    };
    for e in rd {
        let e = e?;
        let n = e.file_name();
        if n.to_string_lossy().starts_with('_') || !e.file_type()?.is_dir() {
            continue;
        }
        out.push(e.path());
        collect_repo_dirs(&e.path(), out)?;
    }
    Ok(())
}

/// What gc deleted (or, on a dry run, would delete).
#[derive(Debug, Default)]
pub struct GcReport {
    pub deleted: Vec<Digest>,
    pub kept: usize,
    /// Stale uploads and temp files.
    pub uploads: Vec<PathBuf>,
}

/// Digest and size of a file, read in 1 MiB chunks.
pub fn hash_file(p: &Path, alg: Algorithm) -> io::Result<(Digest, u64)> {
    let mut f = fs::File::open(p)?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((h.finish(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Storage) {
        let t = tempfile::tempdir().unwrap();
        let s = Storage::open(t.path()).unwrap();
        (t, s)
    }

    #[test]
    fn blobs_links_and_mismatch() {
        let (_t, s) = store();
        let d = s.put_blob(b"hello", None).unwrap();
        assert_eq!(s.blob_size(&d).unwrap(), Some(5));
        assert!(s.blob_path(&d).starts_with(s.root().join("blobs/sha256")));
        assert_eq!(s.repo_blob_size("a/b", &d).unwrap(), None);
        s.link_blob("a/b", &d).unwrap();
        assert_eq!(s.repo_blob_size("a/b", &d).unwrap(), Some(5));
        let wrong = Digest::of(Algorithm::Sha256, b"other");
        assert!(matches!(
            s.put_blob(b"hello!", Some(&wrong)),
            Err(StorageError::DigestMismatch { .. })
        ));
        assert_eq!(
            s.blob_size(&Digest::of(Algorithm::Sha256, b"hello!"))
                .unwrap(),
            None
        );
        assert!(s.unlink_blob("a/b", &d).unwrap());
        assert_eq!(s.repo_blob_size("a/b", &d).unwrap(), None);
    }

    #[test]
    fn uploads_finish_and_discard_on_mismatch() {
        let (_t, s) = store();
        let id = s.upload_start("x").unwrap();
        let p = s.upload_data("x", &id).unwrap();
        fs::write(&p, b"layer").unwrap();
        let bad = Digest::of(Algorithm::Sha256, b"nope");
        assert!(matches!(
            s.upload_finish("x", &id, &bad),
            Err(StorageError::DigestMismatch { .. })
        ));
        assert!(s.upload_data("x", &id).is_none());
        assert_eq!(s.blob_size(&bad).unwrap(), None);

        let id = s.upload_start("x").unwrap();
        fs::write(s.upload_data("x", &id).unwrap(), b"layer").unwrap();
        let good = Digest::of(Algorithm::Sha256, b"layer");
        assert_eq!(s.upload_finish("x", &id, &good).unwrap(), 5);
        assert_eq!(s.repo_blob_size("x", &good).unwrap(), Some(5));
        assert!(s.upload_data("x", "../../etc").is_none());
    }

    #[test]
    fn manifests_tags_referrers_catalog_and_gc() {
        let (_t, s) = store();
        let layer = s.put_blob(b"layer", None).unwrap();
        let config = s.put_blob(b"{}", None).unwrap();
        let orphan = s.put_blob(b"orphan", None).unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": config.to_string(), "size": 2},
            "layers": [{"digest": layer.to_string(), "size": 5}],
        })
        .to_string();
        let md = Digest::of(Algorithm::Sha256, m.as_bytes());
        let info = RevisionInfo {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            subject: None,
        };
        s.put_manifest("lib/img", m.as_bytes(), &md, &info, Some("v1"))
            .unwrap();
        s.put_manifest("lib/img", m.as_bytes(), &md, &info, Some("v2"))
            .unwrap();
        let sig = b"{\"schemaVersion\":2}";
        let sd = Digest::of(Algorithm::Sha256, sig);
        let sinfo = RevisionInfo {
            media_type: info.media_type.clone(),
            subject: Some(md.to_string()),
        };
        s.put_manifest("lib/img", sig, &sd, &sinfo, None).unwrap();
        assert_eq!(s.referrers("lib/img", &md).unwrap(), vec![sd.clone()]);
        assert_eq!(s.resolve_tag("lib/img", "v1").unwrap(), Some(md.clone()));
        assert_eq!(s.tags("lib/img").unwrap().unwrap(), vec!["v1", "v2"]);
        assert_eq!(s.tags("nope").unwrap(), None);
        s.put_manifest("lib", m.as_bytes(), &md, &info, Some("x"))
            .unwrap();
        assert_eq!(s.catalog().unwrap(), vec!["lib", "lib/img"]);
        let (mt, bytes) = s.get_manifest("lib/img", &md).unwrap().unwrap();
        assert_eq!(
            (mt.as_str(), bytes.as_slice()),
            (info.media_type.as_str(), m.as_bytes())
        );

        let dry = s.gc(true, Duration::from_secs(3600)).unwrap();
        assert_eq!(dry.deleted, vec![orphan.clone()]);
        assert!(s.blob_size(&orphan).unwrap().is_some());
        let r = s.gc(false, Duration::from_secs(3600)).unwrap();
        assert_eq!(r.deleted, vec![orphan.clone()]);
        assert!(s.blob_size(&orphan).unwrap().is_none());
        assert!(s.blob_size(&layer).unwrap().is_some());

        assert!(s.delete_manifest("lib/img", &sd).unwrap());
        assert!(s.referrers("lib/img", &md).unwrap().is_empty());
        assert!(s.delete_manifest("lib/img", &md).unwrap());
        assert!(s.tags("lib/img").unwrap().unwrap().is_empty());
        assert!(!s.delete_manifest("lib/img", &md).unwrap());
        // Still referenced by repository "lib".
        s.gc(false, Duration::from_secs(3600)).unwrap();
        assert!(s.blob_size(&layer).unwrap().is_some());
        assert!(s.delete_manifest("lib", &md).unwrap());
        let r = s.gc(false, Duration::ZERO).unwrap();
        assert!(r.deleted.contains(&layer) && r.deleted.contains(&md));
    }
}
