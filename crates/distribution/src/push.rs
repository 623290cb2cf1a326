//! `push`: an image's blobs and manifest to a registry. A manifest kept from a pull (or an
//! earlier push) whose blobs are all here is sent byte for byte, so the digest survives a
//! round trip; otherwise a Docker schema2 manifest is made over gzip layers (made once per
//! layer, deterministically, and remembered). Blobs the registry has are skipped.

use crate::client::{transport_error, Fetched, RegistryOptions, Repository};
use crate::pull::{Progress, ProgressDetail};
use crate::Credentials;
use berth_api::{Error, Result};
use berth_image::{ImageStore, Reference};
use std::sync::Arc;
use tokio::sync::mpsc;

const SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// The largest manifest we send or accept (distribution's limit).
const MAX_MANIFEST: usize = 4 << 20;

/// What a finished push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub tag: String,
    pub digest: String,
    pub size: usize,
}

#[derive(Clone)]
struct Blob {
    digest: String,
    size: u64,
    /// A repository of the same registry the layer was pulled from: mount, don't upload.
    mount_from: Option<String>,
}

fn short(digest: &str) -> String {
    digest
        .split_once(':')
        .map(|(_, h)| h)
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

async fn send(tx: &mpsc::Sender<Progress>, p: Progress) {
    let _ = tx.send(p).await;
}

fn msg(id: Option<&str>, status: impl Into<String>) -> Progress {
    Progress {
        status: status.into(),
        id: id.map(String::from),
        progress_detail: None,
        progress: None,
    }
}

fn failed(what: &str, f: &crate::client::HttpFailure) -> Error {
    let text = format!("{what}: {}", f.text);
    match f.status {
        401 | 403 => Error::forbidden(text),
        404 => Error::not_found(text),
        _ => Error::unavailable(text),
    }
}

/// Resolves an upload Location (absolute or relative to the registry).
fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else {
        format!("{base}{loc}")
    }
}

/// Pushes `reference` (a tagged name the store knows) to its registry.
pub async fn push(
    store: Arc<ImageStore>,
    opts: &RegistryOptions,
    reference: &Reference,
    creds: Option<Credentials>,
    tx: mpsc::Sender<Progress>,
) -> Result<PushOutcome> {
    let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
    let name = reference.with_tag(&tag).to_string();
    let s = store.clone();
    let n = name.clone();
    let target = reference.clone();
    let (image_id, manifest, media_type, blobs) =
        tokio::task::spawn_blocking(move || prepare(&s, &n, &target))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
    send(
        &tx,
        msg(
            None,
            format!("The push refers to repository [{}]", reference.name()),
        ),
    )
    .await;
    let repo = Arc::new(Repository::for_push(reference, opts, creds)?);
    // Layers first (docker lists them top-down), the config last.
    for b in blobs.iter().skip(1).rev() {
        send(&tx, msg(Some(&short(&b.digest)), "Preparing")).await;
    }
    // Layers in parallel (max-concurrent-uploads), then the config.
    {
        use futures::StreamExt;
        let jobs: Vec<_> = blobs
            .iter()
            .skip(1)
            .rev()
            .map(|b| upload_blob(repo.clone(), store.clone(), b.clone(), false, tx.clone()))
            .collect();
        let mut uploads =
            futures::stream::iter(jobs).buffer_unordered(opts.max_concurrent_uploads.max(1));
        while let Some(r) = uploads.next().await {
            r?;
        }
    }
    if let Some(cfg) = blobs.first() {
        upload_blob(repo.clone(), store.clone(), cfg.clone(), true, tx.clone()).await?;
    }
    let url = format!("{}/v2/{}/manifests/{}", repo.base(), repo.path(), tag);
    let resp = match repo
        .send(
            reqwest::Method::PUT,
            &url,
            &[("Content-Type", media_type.as_str())],
            Some(bytes::Bytes::from(manifest.clone())),
        )
        .await?
    {
        Fetched::Ok(r) => r,
        Fetched::Failed(f) => return Err(failed("pushing manifest", &f)),
    };
    let digest = format!("sha256:{}", hex::encode(sha2_digest(&manifest)));
    let _ = resp.bytes().await.map_err(transport_error);
    let size = manifest.len();
    let (s, r) = (store.clone(), reference.clone());
    let (id2, d2, m2, t2) = (image_id, digest.clone(), manifest, media_type);
    tokio::task::spawn_blocking(move || -> Result<()> {
        s.add_manifest(&id2, &m2, &t2)?;
        s.add_reference(
            &id2,
            &Reference {
                tag: None,
                digest: Some(d2),
                ..r
            },
        )
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    send(
        &tx,
        msg(None, format!("{tag}: digest: {digest} size: {size}")),
    )
    .await;
    Ok(PushOutcome { tag, digest, size })
}

/// One blob: skipped when the registry has it, else a POST for an upload session and a
/// monolithic PUT streamed from the blob store.
async fn upload_blob(
    repo: Arc<Repository>,
    store: Arc<ImageStore>,
    b: Blob,
    is_config: bool,
    tx: mpsc::Sender<Progress>,
) -> Result<()> {
    let tx = &tx;
    let id = short(&b.digest);
    let url = format!("{}/v2/{}/blobs/{}", repo.base(), repo.path(), b.digest);
    if let Fetched::Ok(_) = repo.send(reqwest::Method::HEAD, &url, &[], None).await? {
        if !is_config {
            send(tx, msg(Some(&id), "Layer already exists")).await;
        }
        return Ok(());
    }
    let mut start = format!("{}/v2/{}/blobs/uploads/", repo.base(), repo.path());
    if let Some(from) = &b.mount_from {
        start = format!("{start}?mount={}&from={from}", b.digest);
    }
    let resp = match repo
        .send(
            reqwest::Method::POST,
            &start,
            &[("Content-Length", "0")],
            Some(bytes::Bytes::new()),
        )
        .await?
    {
        Fetched::Ok(r) => r,
        Fetched::Failed(f) => return Err(failed("starting upload", &f)),
    };
    // 201: the registry mounted it from the other repository (202: a plain upload).
    if resp.status().as_u16() == 201 {
        if let Some(from) = &b.mount_from {
            send(tx, msg(Some(&id), format!("Mounted from {from}"))).await;
        }
        return Ok(());
    }
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::unavailable("registry gave no upload location"))?;
    let loc = absolute(repo.base(), loc);
    if !is_config {
        send(
            tx,
            Progress {
                status: "Pushing".into(),
                id: Some(id.clone()),
                progress_detail: Some(ProgressDetail {
                    current: 0,
                    total: b.size,
                }),
                progress: None,
            },
        )
        .await;
    }
    let file = {
        let s = store.clone();
        let d = b.digest.clone();
        tokio::task::spawn_blocking(move || s.open_blob(&d))
            .await
            .map_err(|e| Error::internal(e.to_string()))??
    };
    // docker's way: the bytes in one streamed PATCH, then an empty PUT with the digest.
    let resp = match repo
        .send_stream(
            reqwest::Method::PATCH,
            &loc,
            tokio::fs::File::from_std(file),
            b.size,
        )
        .await?
    {
        Fetched::Ok(r) => r,
        Fetched::Failed(f) => return Err(failed("uploading blob", &f)),
    };
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| absolute(repo.base(), l))
        .unwrap_or(loc);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put_url = format!("{loc}{sep}digest={}", b.digest);
    match repo
        .send(
            reqwest::Method::PUT,
            &put_url,
            &[("Content-Length", "0")],
            Some(bytes::Bytes::new()),
        )
        .await?
    {
        Fetched::Ok(_) => {}
        Fetched::Failed(f) => return Err(failed("finishing upload", &f)),
    }
    if !is_config {
        send(tx, msg(Some(&id), "Pushed")).await;
    }
    Ok(())
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

/// The manifest to send and its blobs (config first, then the layers bottom-up).
fn prepare(
    store: &ImageStore,
    name: &str,
    target: &Reference,
) -> Result<(String, Vec<u8>, String, Vec<Blob>)> {
    let img = store.resolve(name).map_err(|_| {
        Error::not_found(format!(
            "An image does not exist locally with the tag: {}",
            name
        ))
    })?;
    let config = store.config_bytes(&img.id)?;
    // A kept manifest whose blobs are all here goes out as it is.
    for m in store.manifests(&img.id)?.iter().rev() {
        let Ok(bytes) = store.read_blob(&m.digest) else {
            continue;
        };
        let Ok(crate::ManifestKind::Image { config: c, layers }) =
            crate::ManifestKind::parse(&bytes, Some(&m.media_type))
        else {
            continue;
        };
        if c.digest != img.id || !layers.iter().all(|l| store.has_blob(&l.digest)) {
            continue;
        }
        let mut blobs = vec![Blob {
            digest: img.id.clone(),
            size: config.len() as u64,
            mount_from: None,
        }];
        blobs.extend(layers.iter().map(|l| Blob {
            digest: l.digest.clone(),
            size: l.size.max(0) as u64,
            mount_from: mount_source(store, &l.digest, target),
        }));
        return Ok((img.id.clone(), bytes, m.media_type.clone(), blobs));
    }
    let mut blobs = vec![Blob {
        digest: img.id.clone(),
        size: config.len() as u64,
        mount_from: None,
    }];
    let mut layers = Vec::new();
    for d in &img.diff_ids {
        let lb = store.compressed_layer(d)?;
        layers.push(serde_json::json!({
            "mediaType": lb.media_type,
            "size": lb.size,
            "digest": lb.digest,
        }));
        blobs.push(Blob {
            mount_from: mount_source(store, &lb.digest, target),
            digest: lb.digest,
            size: lb.size,
        });
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": SCHEMA2,
        "config": {"mediaType": CONFIG_TYPE, "size": config.len(), "digest": img.id},
        "layers": layers,
    });
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?;
    if bytes.len() > MAX_MANIFEST {
        return Err(Error::invalid("manifest too large"));
    }
    Ok((img.id.clone(), bytes, SCHEMA2.to_string(), blobs))
}

/// The repository path to mount a layer from: where it was pulled from, when that is
/// another repository of the registry being pushed to.
fn mount_source(store: &ImageStore, digest: &str, target: &Reference) -> Option<String> {
    let lb = store.layer_blob_by_digest(digest)?;
    let (domain, path) = lb.source.split_once('/')?;
    (domain == target.domain && path != target.path).then(|| path.to_string())
}
