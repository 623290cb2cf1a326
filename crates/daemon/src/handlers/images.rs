use super::blocking;
use crate::error::{ApiError, ApiResult};
use crate::http::{json, AppState, Params};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::Error;
use futures::TryStreamExt;
use std::io::Write;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

pub async fn list(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let all = p.bool("all", false);
    let filters = p.filters()?;
    let images = st.images.clone();
    let out = blocking(move || images.list(all, &filters)).await?;
    Ok(json(StatusCode::OK, &out))
}

/// A request body as a blocking reader (for the image store's std::io API).
fn body_reader(req: Request) -> SyncIoBridge<impl tokio::io::AsyncRead + Unpin> {
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    SyncIoBridge::new(StreamReader::new(stream))
}

fn json_lines(msgs: Vec<serde_json::Value>) -> Response {
    let mut body = Vec::new();
    for m in msgs {
        if let Ok(v) = serde_json::to_vec(&m) {
            body.extend_from_slice(&v);
            body.push(b'\n');
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// POST /images/create: `fromSrc` imports a rootfs tarball; `fromImage` (pull) comes with
/// the distribution work.
pub async fn create(State(st): State<AppState>, p: Params, req: Request) -> ApiResult<Response> {
    if let Some(src) = p.get("fromSrc") {
        if src != "-" {
            return Err(ApiError(Error::not_implemented(
                "importing from a URL is not supported yet; pipe the archive to stdin",
            )));
        }
        let repo = p.get("repo").unwrap_or("").to_string();
        let tag = p.get("tag").unwrap_or("").to_string();
        let repo_tag = if repo.is_empty() {
            None
        } else if tag.is_empty() {
            Some(repo)
        } else {
            Some(format!("{repo}:{tag}"))
        };
        let changes = p.all("changes");
        let message = p.get("message").map(String::from);
        let images = st.images.clone();
        let mut reader = body_reader(req);
        let id = blocking(move || {
            images.import(
                &mut reader,
                &changes,
                message.as_deref(),
                repo_tag.as_deref(),
            )
        })
        .await?;
        st.events.publish(
            "image",
            "import",
            &id,
            std::collections::HashMap::from([("name".to_string(), id.clone())]),
        );
        return Ok(json_lines(vec![serde_json::json!({"status": id})]));
    }
    if let Some(img) = p.get("fromImage") {
        let tag = p.get("tag").unwrap_or("").to_string();
        let creds = req
            .headers()
            .get("X-Registry-Auth")
            .and_then(|v| v.to_str().ok())
            .and_then(berth_distribution::Credentials::from_header);
        let platform = p.get("platform").unwrap_or("").to_string();
        return pull(st, img.to_string(), tag, creds, platform).await;
    }
    Err(ApiError(Error::invalid(
        "either fromSrc or fromImage must be set",
    )))
}

/// The pull half of POST /images/create. Resolve errors (unknown tag, access denied) are
/// plain API errors, as docker returns them before any output; then docker's progress
/// messages stream as JSON lines, and a later failure ends them with an error line.
async fn pull(
    st: AppState,
    from_image: String,
    tag: String,
    creds: Option<berth_distribution::Credentials>,
    platform: String,
) -> ApiResult<Response> {
    use futures::StreamExt;
    // docker's API: no tag at all (none in fromImage either) pulls every tag.
    let named = berth_image::parse_normalized_named(&from_image)?;
    let all_tags = tag.is_empty() && named.tag.is_none() && named.digest.is_none();
    let reference = berth_distribution::pull_reference(&from_image, &tag)?;
    let opts = st.registry_options();
    let puller = berth_distribution::Puller::new(
        st.images.clone(),
        opts,
        berth_distribution::spool_dir(&st.root),
    )
    .with_platform(&platform)?;
    let tags = if all_tags {
        puller.tags(&named, creds.clone()).await?
    } else {
        Vec::new()
    };
    let first = match tags.first() {
        Some(t) => named.with_tag(t),
        None if all_tags => {
            return Err(ApiError(Error::not_found(format!(
                "no tags found for {}",
                named.familiar_name()
            ))))
        }
        None => reference.clone(),
    };
    let resolved = puller.resolve(&first, creds.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<berth_distribution::Progress>(64);
    let name = if all_tags {
        named.familiar_name()
    } else {
        reference.familiar_string()
    };
    let done = tokio::spawn(async move {
        let mut res = puller.fetch(resolved, tx.clone()).await;
        for t in tags.iter().skip(1) {
            if res.is_err() {
                break;
            }
            res = match puller.resolve(&named.with_tag(t), creds.clone()).await {
                Ok(r) => puller.fetch(r, tx.clone()).await,
                Err(e) => Err(e),
            };
        }
        drop(tx);
        if res.is_ok() {
            st.events.publish(
                "image",
                "pull",
                &name,
                std::collections::HashMap::from([("name".to_string(), name.clone())]),
            );
        }
        res
    });
    let line = |v: serde_json::Value| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        b
    };
    let progress =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) })
            .map(move |p| line(serde_json::to_value(p).unwrap_or_default()));
    let tail = futures::stream::once(async move {
        let msg = match done.await {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => e.message,
            Err(e) => e.to_string(),
        };
        Some(line(
            serde_json::json!({"errorDetail": {"message": msg}, "error": msg}),
        ))
    })
    .filter_map(|x| async move { x });
    let body = Body::from_stream(progress.chain(tail).map(Ok::<_, std::io::Error>));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default())
}

pub async fn load(State(st): State<AppState>, p: Params, req: Request) -> ApiResult<Response> {
    let quiet = p.bool("quiet", false);
    let images = st.images.clone();
    let mut reader = body_reader(req);
    let msgs = blocking(move || images.load(&mut reader)).await?;
    let _ = quiet;
    Ok(json_lines(
        msgs.into_iter()
            .map(|m| serde_json::json!({"stream": format!("{m}\n")}))
            .collect(),
    ))
}

async fn save_names(st: AppState, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError(Error::invalid("no images specified")));
    }
    let images = st.images.clone();
    let check = names.clone();
    blocking(move || {
        for n in &check {
            images.resolve(n)?;
        }
        Ok(())
    })
    .await?;
    let (r, w) = tokio::io::duplex(1 << 20);
    let images = st.images.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = SyncIoBridge::new(w);
        if let Err(e) = images.save(&names, &mut w) {
            tracing::warn!("save failed: {e}");
        }
        let _ = w.flush();
        let _ = w.shutdown();
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(ReaderStream::new(r)))
        .unwrap_or_default())
}

pub async fn save(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    save_names(st, p.all("names")).await
}

pub async fn prune(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let filters = p.filters()?;
    let dangling_only = filters
        .get("dangling")
        .and_then(|v| v.first())
        .map(|v| v != "false" && v != "0")
        .unwrap_or(true);
    let images = st.images.clone();
    let st2 = st.clone();
    let r = blocking(move || images.prune(dangling_only, &filters, &|id: &str| st2.image_user(id)))
        .await?;
    Ok(json(StatusCode::OK, &r))
}

/// GET /images/{name}/json|history|get — names may contain slashes.
pub async fn get_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
) -> ApiResult<Response> {
    let images = st.images.clone();
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let r = blocking(move || images.inspect(&name)).await?;
        return Ok(json(StatusCode::OK, &r));
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let name = name.to_string();
        let r = blocking(move || images.history(&name)).await?;
        return Ok(json(StatusCode::OK, &r));
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save_names(st, vec![name.to_string()]).await;
    }
    Err(ApiError(Error::not_found("page not found")))
}

pub async fn post_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    p: Params,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let name = name.to_string();
        let repo = p.get("repo").unwrap_or("").to_string();
        let tag = p.get("tag").filter(|t| !t.is_empty()).map(String::from);
        if repo.is_empty() {
            return Err(ApiError(Error::invalid(
                "repository name must have at least one component",
            )));
        }
        let images = st.images.clone();
        let (n2, r2, t2) = (name.clone(), repo.clone(), tag.clone());
        blocking(move || images.tag(&n2, &r2, t2.as_deref())).await?;
        let images = st.images.clone();
        let id = blocking(move || images.resolve(&name).map(|i| i.id))
            .await
            .unwrap_or_default();
        let full = format!("{repo}:{}", tag.unwrap_or_else(|| "latest".into()));
        st.events.publish(
            "image",
            "tag",
            &id,
            std::collections::HashMap::from([("name".to_string(), full)]),
        );
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let creds = headers
            .get("X-Registry-Auth")
            .and_then(|v| v.to_str().ok())
            .and_then(berth_distribution::Credentials::from_header);
        return push(
            st,
            name.to_string(),
            p.get("tag").unwrap_or("").to_string(),
            creds,
        )
        .await;
    }
    Err(ApiError(Error::not_found("page not found")))
}

pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let force = p.bool("force", false);
    let noprune = p.bool("noprune", false);
    let images = st.images.clone();
    let st2 = st.clone();
    let r = blocking(move || images.remove(&name, force, noprune, &|id: &str| st2.image_user(id)))
        .await?;
    if let Ok(v) = serde_json::to_value(&r) {
        for item in v.as_array().into_iter().flatten() {
            for (k, action) in [("Untagged", "untag"), ("Deleted", "delete")] {
                if let Some(x) = item.get(k).and_then(|x| x.as_str()) {
                    st.events.publish(
                        "image",
                        action,
                        x,
                        std::collections::HashMap::from([("name".to_string(), x.to_string())]),
                    );
                }
            }
        }
    }
    Ok(json(StatusCode::OK, &r))
}

/// POST /images/{name}/push: docker's push progress messages as JSON lines, then the aux
/// message with the pushed digest (or an error line).
async fn push(
    st: AppState,
    name: String,
    tag: String,
    creds: Option<berth_distribution::Credentials>,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let mut reference = berth_image::parse_normalized_named(&name)?;
    if !tag.is_empty() {
        berth_image::validate_tag(&tag)?;
        reference = reference.with_tag(&tag);
    } else if reference.tag.is_none() {
        reference = reference.with_tag("latest");
    }
    let images = st.images.clone();
    let n = reference.to_string();
    let familiar = reference.familiar_string();
    blocking(move || {
        images.resolve(&n).map(|_| ()).map_err(|_| {
            Error::not_found(format!(
                "An image does not exist locally with the tag: {}",
                familiar
            ))
        })
    })
    .await?;
    let opts = st.registry_options();
    let (tx, rx) = tokio::sync::mpsc::channel::<berth_distribution::Progress>(64);
    let store = st.images.clone();
    let r2 = reference.clone();
    let done = tokio::spawn(async move {
        let res = berth_distribution::push(store, &opts, &r2, creds, tx).await;
        if res.is_ok() {
            let name = r2.familiar_string();
            st.events.publish(
                "image",
                "push",
                &name,
                std::collections::HashMap::from([("name".to_string(), name.clone())]),
            );
        }
        res
    });
    let line = |v: serde_json::Value| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        b
    };
    let progress =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) })
            .map(move |p| line(serde_json::to_value(p).unwrap_or_default()));
    let tail = futures::stream::once(async move {
        Some(match done.await {
            Ok(Ok(o)) => line(serde_json::json!({
                "progressDetail": {},
                "aux": {"Tag": o.tag, "Digest": o.digest, "Size": o.size}
            })),
            Ok(Err(e)) => line(serde_json::json!({"errorDetail": {"message": e.message}, "error": e.message})),
            Err(e) => line(serde_json::json!({"errorDetail": {"message": e.to_string()}, "error": e.to_string()})),
        })
    })
    .filter_map(|x| async move { x });
    let body = Body::from_stream(progress.chain(tail).map(Ok::<_, std::io::Error>));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default())
}
