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
use berth_build::context::{clean_rel, Context};
use futures::TryStreamExt;
use std::collections::{BTreeMap, HashMap};
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

/// A regular file of the context by name, resolved inside the context.
fn context_file(ctx: &Context, name: &str) -> Option<(String, Vec<u8>)> {
    let key = ctx.resolve(name, true)?;
    let node = ctx.get(&key).filter(|n| !n.is_dir())?;
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut ctx.reader(node), &mut data).ok()?;
    Some((key, data))
}

/// The Dockerfile (docker also tries "dockerfile" for the default name).
fn read_dockerfile(ctx: &Context, name: &str) -> Result<(String, Vec<u8>), Error> {
    let missing = || Error::invalid(format!("Cannot locate specified Dockerfile: {name}"));
    let rel = clean_rel(name).ok_or_else(missing)?;
    let mut candidates = vec![rel.clone()];
    if rel == "Dockerfile" {
        candidates.push("dockerfile".into());
    }
    candidates
        .iter()
        .find_map(|c| context_file(ctx, c))
        .ok_or_else(missing)
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

    // The context stays as sent: contents in one spool file, an index in memory.
    let scratch = build_root(&st.root).join(format!("{:016x}", rand::random::<u64>()));
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut reader = SyncIoBridge::new(StreamReader::new(stream));
    let s2 = scratch.clone();
    let df_name = dockerfile.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&s2)?;
        let mut input = berth_image::decompress(&mut reader)?;
        let spool = tempfile::tempfile_in(&s2)?;
        let mut ctx =
            Context::load(&mut input, spool).map_err(|e| Error::invalid(e.to_string()))?;
        // Drain what the tar reader left (padding), so the client sees its upload taken.
        let _ = std::io::copy(&mut input, &mut std::io::sink());
        let (key, src) = read_dockerfile(&ctx, &df_name)?;
        // docker: a .dockerignore that names the Dockerfile or itself takes them out of
        // the context once the Dockerfile is read.
        if let Some((ign_key, ign)) = context_file(&ctx, ".dockerignore") {
            let pats = berth_context::ignore::read_dockerignore(&String::from_utf8_lossy(&ign));
            if let Ok(m) = berth_context::ignore::Matcher::new(&pats) {
                if m.is_excluded(&key) {
                    ctx.remove(&key);
                }
                if m.is_excluded(".dockerignore") {
                    ctx.remove(&ign_key);
                }
            }
        }
        Ok::<_, Error>((ctx, String::from_utf8_lossy(&src).into_owned()))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()));
    let (ctx, src) = match loaded.and_then(|r| r) {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
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
    let backend = DaemonBackend::new(
        st.clone(),
        Arc::new(ctx),
        scratch.clone(),
        host_config,
        None,
    );
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
