use crate::error::{ApiError, ApiResult};
use crate::exec::Exec;
use crate::http::{json, AppState, JsonBody, Params};
use crate::stream::{self, Hijack};
use crate::util;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::models;
use berth_api::Error;
use berth_runtime::client::{AttachOptions, ShimClient};
use std::sync::Arc;

pub async fn create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(cfg): JsonBody<models::ExecConfig>,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    if let Some(k) = cfg.detach_keys.as_deref().filter(|k| !k.is_empty()) {
        if util::parse_detach_keys(k).is_none() {
            return Err(ApiError(Error::invalid(format!(
                "Invalid detach keys ({k}) provided"
            ))));
        }
    }
    let eid = st.exec_create(&c, cfg)?;
    Ok(json(StatusCode::CREATED, &serde_json::json!({"Id": eid})))
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let ex = st.exec_lookup(&id)?;
    Ok(json(StatusCode::OK, &st.exec_inspect(&ex)))
}

pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let ex = st.exec_lookup(&id)?;
    let h = p.int("h")?.unwrap_or(0).clamp(0, 65535) as u16;
    let w = p.int("w")?.unwrap_or(0).clamp(0, 65535) as u16;
    let client = ex
        .client()
        .ok_or_else(|| Error::conflict(format!("Exec {id} is not running")))?;
    client.resize(h, w).await.map_err(Error::from)?;
    Ok(StatusCode::OK.into_response())
}

/// Records the exit code (waiting for the exec shim), so inspect sees it.
async fn reap(ex: &Arc<Exec>, client: &ShimClient) {
    let code = match client.wait().await {
        Ok(s) => s.exit_code as i64,
        Err(_) => 126,
    };
    ex.finish(code);
}

pub async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    mut req: Request,
) -> ApiResult<Response> {
    let ex = st.exec_lookup(&id)?;
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 1 << 20)
        .await
        .map_err(|e| Error::invalid(e.to_string()))?;
    let sc: models::ExecStartConfig = if body.iter().all(|b| b.is_ascii_whitespace()) {
        Default::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("invalid JSON: {e}")))?
    };
    let tty = sc.tty.unwrap_or(false) || ex.config.tty.unwrap_or(false);
    let detach = sc.detach.unwrap_or(false);
    let client = st.exec_prepare(&ex, tty).await?;
    if let Some(cs) = sc.console_size.as_ref().filter(|v| v.len() == 2) {
        let _ = client.resize(cs[0] as u16, cs[1] as u16).await;
    }
    if detach {
        let pid = client
            .start()
            .await
            .map_err(|e| Error::invalid(e.to_string()))?;
        ex.started(pid);
        let ex2 = ex.clone();
        tokio::spawn(async move { reap(&ex2, &client).await });
        return Ok(StatusCode::OK.into_response());
    }
    let opts = AttachOptions {
        stdin: ex.config.attach_stdin.unwrap_or(false),
        stdout: ex.config.attach_stdout.unwrap_or(true),
        stderr: ex.config.attach_stderr.unwrap_or(true),
        detach_keys: ex
            .config
            .detach_keys
            .as_deref()
            .and_then(util::parse_detach_keys),
    };
    let shim_stream = client.attach(opts).await.map_err(Error::from)?;
    match Hijack::from_request(&mut req, &headers) {
        Hijack::Upgrade(on) => {
            // Like docker, the process starts only once the connection is hijacked: output
            // written right behind the 101 headers can land in the client's HTTP read-ahead
            // buffer and be lost (docker-py reads the raw socket after the headers).
            tokio::spawn(async move {
                match stream::upgraded(on).await {
                    Some(mut conn) => match client.start().await {
                        Ok(pid) => {
                            ex.started(pid);
                            stream::splice(conn, shim_stream, reap(&ex, &client)).await;
                        }
                        Err(e) => {
                            let msg = format!("OCI runtime exec failed: {e}\n");
                            let code = if msg.contains("not found") || msg.contains("No such file")
                            {
                                127
                            } else {
                                126
                            };
                            let mut out = Vec::new();
                            if !tty {
                                out.extend_from_slice(&[2, 0, 0, 0]);
                                out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                            }
                            out.extend_from_slice(msg.as_bytes());
                            use tokio::io::AsyncWriteExt;
                            let _ = conn.write_all(&out).await;
                            let _ = conn.shutdown().await;
                            ex.finish(code);
                        }
                    },
                    None => {
                        // The client went away: run it unattached, as docker does.
                        drop(shim_stream);
                        if let Ok(pid) = client.start().await {
                            ex.started(pid);
                            reap(&ex, &client).await;
                        } else {
                            ex.finish(126);
                        }
                    }
                }
            });
            Ok(stream::upgrade_response(tty))
        }
        Hijack::Plain => {
            let pid = client
                .start()
                .await
                .map_err(|e| Error::invalid(e.to_string()))?;
            ex.started(pid);
            let (r, w) = shim_stream.into_split();
            drop(w);
            let ex2 = ex.clone();
            let out = tokio_util::io::ReaderStream::new(r);
            let tail = futures::stream::once(async move {
                reap(&ex2, &client).await;
                Ok::<_, std::io::Error>(bytes::Bytes::new())
            });
            use futures::StreamExt;
            let body = axum::body::Body::from_stream(out.chain(tail));
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    axum::http::header::CONTENT_TYPE,
                    if tty {
                        stream::RAW_STREAM
                    } else {
                        stream::MUX_STREAM
                    },
                )
                .body(body)
                .unwrap_or_default())
        }
    }
}
