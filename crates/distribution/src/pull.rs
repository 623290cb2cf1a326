//! `docker pull`: resolve a reference to a manifest and config (errors here are plain
//! API errors, as docker returns them before any output), then fetch the layers with
//! docker's progress messages and register the image.

use crate::auth::Credentials;
use crate::client::{transport_error, Fetched, HttpFailure, RegistryOptions, Repository};
use crate::manifest::{host_arch, select_platform, Descriptor, ManifestKind, ACCEPT};
use berth_api::{Error, Result};
use berth_image::{parse_normalized_named, ImageStore, Reference};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// One of docker's JSON progress messages (`jsonmessage.JSONMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProgressDetail {
    pub current: u64,
    pub total: u64,
}

impl Progress {
    fn msg(id: Option<&str>, status: impl Into<String>) -> Progress {
        Progress {
            status: status.into(),
            id: id.map(String::from),
            progress_detail: None,
            progress: None,
        }
    }

    fn bar(id: &str, status: &str, current: u64, total: u64) -> Progress {
        Progress {
            status: status.into(),
            id: Some(id.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            progress: Some(progress_bar(current, total)),
        }
    }
}

/// docker's `units.HumanSize`: decimal units, four significant digits.
fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 1.0 {
        v.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (4 - digits).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

/// docker's `JSONProgress.String()` bar: "[=====>      ]  1.2MB/3.4MB".
fn progress_bar(current: u64, total: u64) -> String {
    if total == 0 {
        return human_size(current);
    }
    let width = 50u64;
    let done = (current.min(total) * width / total) as usize;
    let bar = if done == 0 {
        " ".repeat(width as usize)
    } else {
        format!(
            "{}>{}",
            "=".repeat(done - 1),
            " ".repeat(width as usize - done)
        )
    };
    format!("[{bar}]  {}/{}", human_size(current), human_size(total))
}

/// The reference `POST /images/create?fromImage=NAME&tag=TAG` names (docker: TAG may be a
/// digest; NAME may carry its own tag or digest; no tag means "latest").
pub fn pull_reference(from_image: &str, tag: &str) -> Result<Reference> {
    let mut r = parse_normalized_named(from_image)?;
    if !tag.is_empty() {
        if tag.contains(':') {
            if !tag.starts_with("sha256:") || tag.len() != 71 {
                return Err(Error::invalid(format!("invalid reference format: {tag}")));
            }
            r.digest = Some(tag.to_string());
            r.tag = None;
        } else {
            r = parse_normalized_named(&format!("{}:{tag}", r.name()))?;
        }
    }
    if r.tag.is_none() && r.digest.is_none() {
        r.tag = Some("latest".into());
    }
    Ok(r)
}

/// A reference resolved to one image manifest and its config.
pub struct Resolved {
    pub reference: Reference,
    /// The digest of the manifest (or index) the tag pointed at: RepoDigests, "Digest:".
    pub manifest_digest: String,
    /// The image id.
    pub config_digest: String,
    config: Vec<u8>,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    repo: Arc<Repository>,
    /// The image manifest (the platform's, when the tag named an index) and its type:
    /// kept so a push sends it back byte for byte.
    manifest: (Vec<u8>, String),
}

/// What a finished pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOutcome {
    pub image_id: String,
    pub manifest_digest: String,
    pub up_to_date: bool,
}

/// Pulls into an image store.
pub struct Puller {
    store: Arc<ImageStore>,
    opts: RegistryOptions,
    /// Where downloads are spooled (under the daemon root, so renames stay on one fs).
    tmp_dir: PathBuf,
    /// `--platform`: (os, architecture, variant); None = this host's.
    platform: Option<(String, String, Option<String>)>,
}

fn sha256_hex(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Docker's wording for a failed manifest request.
fn manifest_error(r: &Reference, f: &HttpFailure) -> Error {
    match (f.status, f.code.as_str()) {
        (401 | 403, _) | (_, "UNAUTHORIZED" | "DENIED" | "NAME_UNKNOWN") => {
            Error::not_found(format!(
                "pull access denied for {}, repository does not exist or may require 'docker login': {}",
                r.familiar_name(),
                f.text
            ))
        }
        (404, _) | (_, "MANIFEST_UNKNOWN") => Error::not_found(format!(
            "manifest for {} not found: {}",
            r.familiar_string(),
            f.text
        )),
        _ => Error::unavailable(f.text.clone()),
    }
}

async fn send(tx: &mpsc::Sender<Progress>, p: Progress) {
    // A client that went away does not stop the pull: the image is still wanted.
    let _ = tx.send(p).await;
}

/// Removes the download spool directory however the pull ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Cancels the downloads still running when the pull fails.
struct Downloads(Vec<Option<JoinHandle<Result<u64>>>>);

impl Drop for Downloads {
    fn drop(&mut self) {
        for h in self.0.iter().flatten() {
            h.abort();
        }
    }
}

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// The largest manifest accepted (distribution's own limit).
const MAX_MANIFEST: u64 = 4 << 20;

impl Puller {
    pub fn new(store: Arc<ImageStore>, opts: RegistryOptions, tmp_dir: PathBuf) -> Puller {
        Puller {
            store,
            opts,
            tmp_dir,
            platform: None,
        }
    }

    /// `--platform os/arch[/variant]` (docker's format; the os must be linux here).
    pub fn with_platform(mut self, p: &str) -> Result<Puller> {
        let p = p.trim();
        if p.is_empty() {
            return Ok(self);
        }
        let parts: Vec<&str> = p.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(v.to_string())),
            [arch] => ("linux", *arch, None),
            _ => return Err(Error::invalid(format!("invalid platform: {p}"))),
        };
        if os != "linux" {
            return Err(Error::invalid(format!(
                "operating system is not supported: {os}"
            )));
        }
        self.platform = Some((os.into(), arch.to_lowercase(), variant));
        Ok(self)
    }

    /// Every tag of a repository (`pull --all-tags`), following pagination links.
    pub async fn tags(
        &self,
        reference: &Reference,
        creds: Option<Credentials>,
    ) -> Result<Vec<String>> {
        let repo = Repository::new(reference, &self.opts, creds)?;
        let mut url = format!("{}/v2/{}/tags/list", repo.base(), repo.path());
        let mut out = Vec::new();
        for _ in 0..100 {
            let resp = match repo.get(&url, None).await? {
                Fetched::Ok(r) => r,
                Fetched::Failed(f) => return Err(manifest_error(reference, &f)),
            };
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<').and_then(|(_, r)| r.split_once('>')))
                .map(|(u, _)| u.to_string());
            let body = resp.bytes().await.map_err(transport_error)?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| Error::unavailable(format!("invalid tags list: {e}")))?;
            out.extend(
                v["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            match next {
                Some(n) if n.starts_with("http") => url = n,
                Some(n) => url = format!("{}{n}", repo.base()),
                None => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn get_manifest(
        &self,
        repo: &Repository,
        r: &Reference,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>)> {
        match repo.get(&repo.manifest_url(what), Some(ACCEPT)).await? {
            Fetched::Ok(resp) => {
                let ct = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                if resp.content_length().is_some_and(|n| n > MAX_MANIFEST) {
                    return Err(Error::invalid(format!(
                        "manifest for {} is larger than the 4 MiB limit",
                        r.familiar_string()
                    )));
                }
                let bytes = resp.bytes().await.map_err(transport_error)?;
                if bytes.len() as u64 > MAX_MANIFEST {
                    return Err(Error::invalid(format!(
                        "manifest for {} is larger than the 4 MiB limit",
                        r.familiar_string()
                    )));
                }
                Ok((bytes.to_vec(), ct))
            }
            Fetched::Failed(f) => Err(manifest_error(r, &f)),
        }
    }

    /// Fetches the manifest (choosing this platform from an index) and the config.
    pub async fn resolve(
        &self,
        reference: &Reference,
        creds: Option<Credentials>,
    ) -> Result<Resolved> {
        // Mirrors first (any registry's), in order; the registry itself last.
        for m in &self.opts.mirrors {
            let Ok(repo) = Repository::on_mirror(reference, m) else {
                continue;
            };
            match self.resolve_on(Arc::new(repo), reference).await {
                Ok(r) => return Ok(r),
                Err(e) => tracing::debug!("mirror {m}: {}", e.message),
            }
        }
        let repo = Arc::new(Repository::new(reference, &self.opts, creds)?);
        self.resolve_on(repo, reference).await
    }

    async fn resolve_on(&self, repo: Arc<Repository>, reference: &Reference) -> Result<Resolved> {
        let what = reference
            .digest
            .clone()
            .or_else(|| reference.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let (bytes, ct) = self.get_manifest(&repo, reference, &what).await?;
        let manifest_digest = sha256_hex(&bytes);
        if let Some(d) = &reference.digest {
            if d != &manifest_digest {
                return Err(Error::invalid(format!(
                    "manifest verification failed for digest {d}"
                )));
            }
        }
        let (config_desc, layers, manifest) = match ManifestKind::parse(&bytes, ct.as_deref())? {
            ManifestKind::Image { config, layers } => {
                let t = manifest_type(&bytes, ct.as_deref());
                (config, layers, (bytes.clone(), t))
            }
            ManifestKind::Index(list) => {
                let (arch, variant) = match &self.platform {
                    Some((_, a, v)) => (a.as_str(), v.as_deref()),
                    None => {
                        let a = host_arch();
                        (a, (a == "arm64").then_some("v8"))
                    }
                };
                let d = select_platform(&list, arch, variant).ok_or_else(|| {
                    Error::not_found(format!(
                        "no matching manifest for linux/{arch}{} in the manifest list entries",
                        variant.map(|v| format!("/{v}")).unwrap_or_default()
                    ))
                })?;
                let (inner, ct) = self.get_manifest(&repo, reference, &d.digest).await?;
                if sha256_hex(&inner) != d.digest {
                    return Err(Error::invalid(format!(
                        "manifest verification failed for digest {}",
                        d.digest
                    )));
                }
                match ManifestKind::parse(&inner, ct.as_deref())? {
                    ManifestKind::Image { config, layers } => {
                        let t = manifest_type(&inner, ct.as_deref());
                        (config, layers, (inner.clone(), t))
                    }
                    ManifestKind::Index(_) => {
                        return Err(Error::invalid("manifest list points at another index"))
                    }
                }
            }
        };
        let config = match repo.get(&repo.blob_url(&config_desc.digest), None).await? {
            Fetched::Ok(resp) => resp.bytes().await.map_err(transport_error)?.to_vec(),
            Fetched::Failed(f) => return Err(manifest_error(reference, &f)),
        };
        if sha256_hex(&config) != config_desc.digest {
            return Err(Error::invalid(format!(
                "image config verification failed for digest {}",
                config_desc.digest
            )));
        }
        let cfg: serde_json::Value = serde_json::from_slice(&config)
            .map_err(|e| Error::invalid(format!("invalid image config: {e}")))?;
        if let Some((os, arch, _)) = &self.platform {
            let (c_os, c_arch) = (
                cfg["os"].as_str().unwrap_or("linux"),
                cfg["architecture"].as_str().unwrap_or(""),
            );
            if c_os != os || (!c_arch.is_empty() && c_arch != arch) {
                return Err(Error::not_found(format!(
                    "image with reference {} was found but its platform ({c_os}/{c_arch}) does not match the specified platform ({os}/{arch})",
                    reference.familiar_string()
                )));
            }
        }
        let diff_ids: Vec<String> = cfg
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(Error::invalid(format!(
                "invalid manifest, layers length mismatch: expected {}, got {}",
                diff_ids.len(),
                layers.len()
            )));
        }
        Ok(Resolved {
            reference: reference.clone(),
            manifest_digest,
            config_digest: config_desc.digest,
            config,
            layers,
            diff_ids,
            repo,
            manifest,
        })
    }

    /// Downloads what is missing, adds the layers in order and tags the image, sending
    /// docker's progress messages to `tx`.
    pub async fn fetch(&self, r: Resolved, tx: mpsc::Sender<Progress>) -> Result<PullOutcome> {
        let reference = &r.reference;
        let what = reference
            .digest
            .clone()
            .or_else(|| reference.tag.clone())
            .unwrap_or_default();
        send(
            &tx,
            Progress::msg(Some(&what), format!("Pulling from {}", reference.path)),
        )
        .await;
        let store = self.store.clone();
        let by_id = r.config_digest.clone();
        let image_present = tokio::task::spawn_blocking(move || store.resolve(&by_id).is_ok())
            .await
            .unwrap_or(false);

        let n = SPOOL_SEQ.fetch_add(1, Ordering::Relaxed);
        let spool = Spool(
            self.tmp_dir
                .join(format!("pull-{}-{n}", std::process::id())),
        );
        tokio::fs::create_dir_all(&spool.0).await?;
        let limit = Arc::new(Semaphore::new(self.opts.max_concurrent_downloads.max(1)));
        let chains = berth_image::chain_ids(&r.diff_ids);
        let mut downloads = Downloads(Vec::new());
        for (i, (layer, diff)) in r.layers.iter().zip(&r.diff_ids).enumerate() {
            let id = short(&layer.digest);
            if self.store.has_layer(diff) {
                if !image_present {
                    send(&tx, Progress::msg(Some(&id), "Already exists")).await;
                }
                downloads.0.push(None);
                continue;
            }
            send(&tx, Progress::msg(Some(&id), "Pulling fs layer")).await;
            let task = download(
                r.repo.clone(),
                layer.clone(),
                spool.0.join(format!("layer-{i}")),
                id,
                tx.clone(),
                limit.clone(),
                Sink {
                    store: self.store.clone(),
                    diff_id: diff.clone(),
                    chain: chains[i].clone(),
                    parent: i.checked_sub(1).map(|p| chains[p].clone()),
                },
            );
            downloads.0.push(Some(tokio::spawn(task)));
        }
        // Layers are added in order as their downloads finish; later ones keep downloading.
        for (i, slot) in downloads.0.iter_mut().enumerate() {
            let Some(handle) = slot.as_mut() else {
                continue;
            };
            let res = handle
                .await
                .map_err(|e| Error::internal(format!("download task: {e}")))?;
            *slot = None;
            let tar_size = res?;
            let layer = &r.layers[i];
            let id = short(&layer.digest);
            let size = layer.size.max(0) as u64;
            send(&tx, Progress::bar(&id, "Extracting", 0, size)).await;
            let path = spool.0.join(format!("layer-{i}"));
            let store = self.store.clone();
            let diff = r.diff_ids[i].clone();
            let (digest, media_type) = (layer.digest.clone(), layer.media_type.clone());
            let source = reference.name();
            // Unpacked while it downloaded; the compressed bytes are kept (verified as
            // they came) for a push that keeps the digests.
            tokio::task::spawn_blocking(move || -> Result<()> {
                let res = store.add_compressed_layer(
                    &diff,
                    berth_image::CompressedSource::Verified(&path),
                    &digest,
                    &media_type,
                    tar_size,
                    &source,
                );
                let _ = std::fs::remove_file(&path);
                res
            })
            .await
            .map_err(|e| Error::internal(format!("extract task: {e}")))??;
            send(&tx, Progress::bar(&id, "Extracting", size, size)).await;
            send(&tx, Progress::msg(Some(&id), "Pull complete")).await;
        }
        drop(spool);

        let mut refs = Vec::new();
        if reference.tag.is_some() {
            refs.push(Reference {
                digest: None,
                ..reference.clone()
            });
        }
        refs.push(Reference {
            tag: None,
            digest: Some(r.manifest_digest.clone()),
            ..reference.clone()
        });
        let store = self.store.clone();
        let name = reference.to_string();
        let config = r.config;
        let manifest = r.manifest;
        let (previous, image_id) = tokio::task::spawn_blocking(move || -> Result<_> {
            let previous = store.resolve(&name).ok().map(|i| i.id);
            let id = store.create_image(&config, &refs)?;
            store.add_manifest(&id, &manifest.0, &manifest.1)?;
            Ok((previous, id))
        })
        .await
        .map_err(|e| Error::internal(format!("register task: {e}")))??;
        let up_to_date = previous.as_deref() == Some(image_id.as_str());
        send(
            &tx,
            Progress::msg(None, format!("Digest: {}", r.manifest_digest)),
        )
        .await;
        let status = if up_to_date {
            format!(
                "Status: Image is up to date for {}",
                reference.familiar_string()
            )
        } else {
            format!(
                "Status: Downloaded newer image for {}",
                reference.familiar_string()
            )
        };
        send(&tx, Progress::msg(None, status)).await;
        Ok(PullOutcome {
            image_id,
            manifest_digest: r.manifest_digest,
            up_to_date,
        })
    }
}

fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// Streams one blob to `dest`, hashing as it goes; fails unless the digest matches.
/// The layer a download feeds as it streams: unpacked and stored by `add_layer_streaming`
/// on a blocking thread, fed through a channel.
struct Sink {
    store: Arc<ImageStore>,
    diff_id: String,
    chain: String,
    parent: Option<String>,
}

/// A blocking `Read` over the chunks a download sends.
struct ChannelReader {
    rx: mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

async fn download(
    repo: Arc<Repository>,
    desc: Descriptor,
    dest: PathBuf,
    id: String,
    tx: mpsc::Sender<Progress>,
    limit: Arc<Semaphore>,
    sink: Sink,
) -> Result<u64> {
    use std::sync::atomic::AtomicU8;
    // docker's "Waiting": queued behind max-concurrent-downloads.
    let _permit = match limit.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            send(&tx, Progress::msg(Some(&id), "Waiting")).await;
            limit
                .acquire_owned()
                .await
                .map_err(|e| Error::internal(e.to_string()))?
        }
    };
    // 0 = downloading, 1 = digest verified, 2 = failed.
    let state = Arc::new(AtomicU8::new(0));
    let (chunks, rx) = mpsc::channel::<bytes::Bytes>(32);
    let st2 = state.clone();
    let unpack = tokio::task::spawn_blocking(move || {
        let mut r = ChannelReader {
            rx,
            cur: bytes::Bytes::new(),
        };
        let res = sink.store.add_layer_streaming(
            &mut r,
            &sink.diff_id,
            &sink.chain,
            sink.parent.as_deref(),
            &|| st2.load(Ordering::SeqCst) == 1,
        );
        // Drain so the download never blocks on a consumer that gave up.
        while r.rx.blocking_recv().is_some() {}
        res
    });
    let res = fetch_blob(&repo, &desc, &dest, &id, &tx, &chunks).await;
    state.store(if res.is_ok() { 1 } else { 2 }, Ordering::SeqCst);
    drop(chunks);
    let unpacked = unpack
        .await
        .map_err(|e| Error::internal(format!("extract task: {e}")))?;
    res?;
    unpacked.map(|(_, tar_size)| tar_size)
}

/// Streams one blob into `dest` (resuming a kept partial download), verifying its digest,
/// and hands every byte to `chunks` in order.
async fn fetch_blob(
    repo: &Repository,
    desc: &Descriptor,
    dest: &Path,
    id: &str,
    tx: &mpsc::Sender<Progress>,
    chunks: &mpsc::Sender<bytes::Bytes>,
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let id = id.to_string();
    let Some(want) = desc.digest.strip_prefix("sha256:") else {
        return Err(Error::invalid(format!(
            "unsupported digest algorithm: {}",
            desc.digest
        )));
    };
    // Bytes already fetched by an earlier, interrupted pull are kept next to the spool
    // (`partial/<hex>`) and resumed with a Range request.
    let partial_dir = dest
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("partial"))
        .unwrap_or_else(|| PathBuf::from("partial"));
    tokio::fs::create_dir_all(&partial_dir).await?;
    let partial = partial_dir.join(want);
    let total = desc.size.max(0) as u64;
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    if let Ok(mut f) = tokio::fs::File::open(&partial).await {
        // Hash what is there; a partial file longer than the blob is discarded.
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            have += n as u64;
        }
        if total > 0 && have > total {
            hasher = Sha256::new();
            have = 0;
        }
    }
    let url = repo.blob_url(&desc.digest);
    let mut attempts = 0;
    // Bytes handed to the consumer so far (a kept partial is sent once a resume is agreed).
    let mut sent = 0u64;
    loop {
        attempts += 1;
        let range = format!("bytes={have}-");
        let headers: Vec<(&str, &str)> = if have > 0 {
            vec![("Range", range.as_str())]
        } else {
            Vec::new()
        };
        let resp = match repo.send(reqwest::Method::GET, &url, &headers, None).await {
            Ok(Fetched::Ok(resp)) => resp,
            Ok(Fetched::Failed(f)) if f.status == 416 && have > 0 => {
                // The partial file is the whole blob (or stale): start over.
                hasher = Sha256::new();
                have = 0;
                let _ = tokio::fs::remove_file(&partial).await;
                if attempts < 3 {
                    continue;
                }
                return Err(Error::unavailable(format!(
                    "failed to fetch blob {}: {}",
                    desc.digest, f.text
                )));
            }
            Ok(Fetched::Failed(f)) => {
                return Err(Error::unavailable(format!(
                    "failed to fetch blob {}: {}",
                    desc.digest, f.text
                )))
            }
            Err(e) if attempts < 3 => {
                tracing::debug!("blob {}: {}; retrying", desc.digest, e.message);
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempts)).await;
                continue;
            }
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "failed to fetch blob {}: {}",
                    desc.digest, e.message
                )))
            }
        };
        let resumed = resp.status().as_u16() == 206;
        if !resumed && have > 0 {
            if sent > 0 {
                return Err(Error::unavailable(format!(
                    "failed to fetch blob {}: the registry cannot resume a download",
                    desc.digest
                )));
            }
            // The registry ignored the Range: take the whole blob again.
            hasher = Sha256::new();
            have = 0;
        }
        if resumed && sent < have {
            // The kept partial goes to the consumer first.
            let mut f = tokio::fs::File::open(&partial).await?;
            let mut left = have - sent;
            let mut buf = vec![0u8; 1 << 20];
            if sent > 0 {
                use tokio::io::AsyncSeekExt;
                f.seek(std::io::SeekFrom::Start(sent)).await?;
            }
            while left > 0 {
                let n = f.read(&mut buf[..(left.min(1 << 20)) as usize]).await?;
                if n == 0 {
                    break;
                }
                let _ = chunks.send(bytes::Bytes::copy_from_slice(&buf[..n])).await;
                left -= n as u64;
            }
            sent = have;
        }
        let mut file = if resumed {
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(&partial)
                .await?
        } else {
            tokio::fs::File::create(&partial).await?
        };
        let total = if total > 0 {
            total
        } else {
            have + resp.content_length().unwrap_or(0)
        };
        let mut current = have;
        let mut reported = 0u64;
        let mut body = resp.bytes_stream();
        let mut cut: Option<Error> = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    cut = Some(transport_error(e));
                    break;
                }
            };
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
            current += chunk.len() as u64;
            sent += chunk.len() as u64;
            let _ = chunks.send(chunk).await;
            // Throttled: one message per 512 KiB keeps the stream small for big layers.
            if current - reported >= 512 * 1024 || current == total {
                reported = current;
                send(tx, Progress::bar(&id, "Downloading", current, total)).await;
            }
        }
        file.flush().await?;
        drop(file);
        have = current;
        match cut {
            None => break,
            Some(e) if attempts < 3 => {
                tracing::debug!(
                    "blob {} cut at {have}: {}; resuming",
                    desc.digest,
                    e.message
                );
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempts)).await;
            }
            Some(e) => {
                return Err(Error::unavailable(format!(
                    "failed to fetch blob {} (a later pull resumes at byte {have}): {}",
                    desc.digest, e.message
                )))
            }
        }
    }
    send(tx, Progress::msg(Some(&id), "Verifying Checksum")).await;
    let got = hex::encode(hasher.finalize());
    if got != want {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(Error::invalid(format!(
            "filesystem layer verification failed for digest {}",
            desc.digest
        )));
    }
    tokio::fs::rename(&partial, &dest).await?;
    send(tx, Progress::msg(Some(&id), "Download complete")).await;
    Ok(())
}

/// Where a daemon rooted at `root` spools downloads.
pub fn spool_dir(root: &Path) -> PathBuf {
    root.join("tmp").join("pull")
}

/// A manifest's media type: the one it declares, else the response's Content-Type.
fn manifest_type(bytes: &[u8], ct: Option<&str>) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .or_else(|| ct.map(String::from))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_query() {
        let r = pull_reference("busybox", "").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = pull_reference("127.0.0.1:5000/test/busybox", "v1").unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/test/busybox:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = pull_reference("busybox", &d).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(r.tag.is_none());
        let r = pull_reference("busybox:1.36", "").unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert!(pull_reference("busybox", "sha256:zz").is_err());
    }

    #[test]
    fn progress_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(2_811_123), "2.811MB");
        assert_eq!(human_size(999), "999B");
        let p = Progress::bar("abc", "Downloading", 50, 100);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["progressDetail"]["current"], 50);
        assert_eq!(v["id"], "abc");
        assert!(v["progress"]
            .as_str()
            .unwrap()
            .starts_with("[========================>"));
    }
}
