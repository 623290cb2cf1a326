//! POST /build (docker's classic builder API) and POST /build/prune.

use crate::build::{build_root, DaemonBackend, CACHE_TABLE};
use crate::error::{ApiError, ApiResult};
use crate::http::{json, AppState, Params};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use berth_api::{models, Error};
use berth_build::builder::{self, BuildError, BuildOptions, Msg, Out};
use futures::TryStreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::io::{StreamReader, SyncIoBridge};

fn json_map<T: serde::de::DeserializeOwned + Default>(p: &Params, k: &str) -> ApiResult<T> {
    match p.get(k) {
        None | Some("") => Ok(T::default()),
        Some(v) => serde_json::from_str(v)
            .map_err(|e| ApiError(Error::invalid(format!("invalid {k} parameter: {e}")))),
    }
}

fn line(v: &serde_json::Value) -> bytes::Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    bytes::Bytes::from(b)
}

/// The Dockerfile's path inside the context; docker also tries "dockerfile" for the default.
fn locate_dockerfile(ctx: &Path, name: &str) -> Result<(PathBuf, String), Error> {
    let missing = || Error::invalid(format!("Cannot locate specified Dockerfile: {name}"));
    let mut comps = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                comps.pop().ok_or_else(missing)?;
            }
            c => comps.push(c),
        }
    }
    let rel = comps.join("/");
    let mut candidates = vec![rel.clone()];
    if rel == "Dockerfile" {
        candidates.push("dockerfile".into());
    }
    for c in candidates {
        let p = ctx.join(&c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => return Ok((p, c)),
            _ => continue,
        }
    }
    Err(missing())
}

pub async fn build(State(st): State<AppState>, p: Params, req: Request) -> ApiResult<Response> {
    if p.get("version") == Some("2") {
        return Err(ApiError(Error::invalid(
            "BuildKit is not supported by berthd; build with DOCKER_BUILDKIT=0 (the classic builder API)",
        )));
    }
    if p.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError(Error::not_implemented(
            "remote build contexts are not supported; send the context as a tar",
        )));
    }
    let mut build_args: HashMap<String, Option<String>> = json_map(&p, "buildargs")?;
    build_args.retain(|k, _| !k.is_empty());
    let labels: BTreeMap<String, String> = json_map(&p, "labels")?;
    let tags = p.all("t");
    for t in &tags {
        berth_image::parse_normalized_named(t).map_err(|e| {
            ApiError(Error::invalid(format!(
                "invalid reference format: {t}: {}",
                e.message
            )))
        })?;
    }
    let dockerfile = p.get("dockerfile").unwrap_or("Dockerfile").to_string();
    let quiet = p.bool("q", false);
    let opts = BuildOptions {
        dockerfile: dockerfile.clone(),
        tags,
        build_args,
        labels,
        target: p.get("target").map(String::from),
        no_cache: p.bool("nocache", false),
        pull: p.bool("pull", false),
        rm: p.bool("rm", true),
        force_rm: p.bool("forcerm", false),
        network_mode: p
            .get("networkmode")
            .filter(|n| !n.is_empty())
            .map(String::from),
        platform: p
            .get("platform")
            .filter(|n| !n.is_empty())
            .map(String::from),
    };
    let host_config = models::HostConfig {
        memory: p.int("memory")?.filter(|m| *m > 0),
        memory_swap: p.int("memswap")?.filter(|m| *m != 0),
        cpu_shares: p.int("cpushares")?.filter(|m| *m > 0),
        cpu_period: p.int("cpuperiod")?.filter(|m| *m > 0),
        cpu_quota: p.int("cpuquota")?.filter(|m| *m > 0),
        cpuset_cpus: p
            .get("cpusetcpus")
            .filter(|c| !c.is_empty())
            .map(String::from),
        shm_size: p.int("shmsize")?.filter(|m| *m > 0),
        ..Default::default()
    };

    // The context: unpacked (hostile-input safe) into this build's scratch dir.
    let scratch = build_root(&st.root).join(format!("{:016x}", rand::random::<u64>()));
    let ctx = scratch.join("context");
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut reader = SyncIoBridge::new(StreamReader::new(stream));
    let (c2, s2) = (ctx.clone(), scratch.clone());
    let df_name = dockerfile.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&c2)?;
        let mut input = berth_image::decompress(&mut reader)?;
        berth_image::unpack_layer(&mut input, &c2)?;
        // Drain what the tar reader left (padding), so the client sees its upload taken.
        let _ = std::io::copy(&mut input, &mut std::io::sink());
        let (path, _) = locate_dockerfile(&c2, &df_name)?;
        let src = std::fs::read(&path)?;
        // docker: a .dockerignore that names the Dockerfile or itself removes them from
        // the context after the Dockerfile was read.
        if let Ok(ign) = std::fs::read_to_string(c2.join(".dockerignore")) {
            let pats = berth_context::ignore::read_dockerignore(&ign);
            if let Ok(m) = berth_context::ignore::Matcher::new(&pats) {
                if let Ok(rel) = path.strip_prefix(&c2) {
                    if m.is_excluded(&rel.to_string_lossy()) {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                if m.is_excluded(".dockerignore") {
                    let _ = std::fs::remove_file(c2.join(".dockerignore"));
                }
            }
        }
        Ok::<_, Error>(String::from_utf8_lossy(&src).into_owned())
    })
    .await
    .map_err(|e| Error::internal(e.to_string()));
    let src = match unpacked.and_then(|r| r) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&s2);
            return Err(ApiError(e));
        }
    };

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let out_tx = tx.clone();
    let out: Out = Arc::new(move |m| {
        let v = match m {
            Msg::Stream(_) if quiet => return,
            Msg::Stream(s) => serde_json::json!({ "stream": s }),
            Msg::Aux(v) => serde_json::json!({ "aux": v }),
            Msg::Raw(_) if quiet => return,
            Msg::Raw(v) => v,
        };
        let _ = out_tx.send(v);
    });
    let backend = DaemonBackend::new(st.clone(), ctx, scratch.clone(), host_config, None);
    tokio::spawn(async move {
        let r = builder::build(&backend, &src, &opts, out).await;
        match r {
            Ok(id) => {
                if quiet {
                    let _ = tx.send(serde_json::json!({ "stream": format!("{id}\n") }));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let detail = match &e {
                    BuildError::Run { code, .. } => {
                        serde_json::json!({ "code": code, "message": msg })
                    }
                    BuildError::Api(_) => serde_json::json!({ "message": msg }),
                };
                let _ = tx.send(serde_json::json!({ "errorDetail": detail, "error": msg }));
            }
        }
        drop(tx);
        drop(backend);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&scratch)).await;
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|v| (Ok::<_, std::io::Error>(line(&v)), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_default())
}

/// POST /build/prune: forgets the build cache and removes the images only it kept
/// (untagged, unused intermediate step images).
pub async fn prune(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let all = p.bool("all", false);
    let _ = all;
    let db = st.db.clone();
    let images = st.images.clone();
    let st2 = st.clone();
    let (deleted, reclaimed) = tokio::task::spawn_blocking(move || {
        let entries: Vec<(String, String)> = db.list(CACHE_TABLE).map_err(Error::from)?;
        let mut deleted = Vec::new();
        for (k, _) in &entries {
            db.delete(CACHE_TABLE, k).map_err(Error::from)?;
            deleted.push(k.clone());
        }
        let ids: Vec<String> = entries.into_iter().map(|(_, v)| v).collect();
        let reclaimed = images.prune_untagged(&ids, &|id: &str| st2.image_user(id))?;
        Ok::<_, Error>((deleted, reclaimed))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))??;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"CachesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}
