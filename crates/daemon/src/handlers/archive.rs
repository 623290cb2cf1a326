//! HEAD/GET/PUT /containers/{id}/archive (`docker cp`).

use super::blocking;
use crate::archive::file_not_found;
use crate::error::{ApiError, ApiResult};
use crate::http::{AppState, Params};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use berth_api::Error;
use berth_image::{ExtractOptions, PathStat};
use futures::TryStreamExt;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// The `path` parameter (docker: required, not empty).
fn path_param(p: &Params) -> Result<String, Error> {
    match p.get("path") {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(Error::invalid("bad parameter: path cannot be empty")),
    }
}

fn stat_response(stat: &PathStat, body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(STAT_HEADER, stat.header_value())
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(body)
        .unwrap_or_default()
}

/// HEAD: the path's stat in a header.
pub async fn head(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let path = path_param(&p)?;
    let c = st.lookup(&id)?;
    let (st2, c2, path2) = (st.clone(), c.clone(), path.clone());
    let stat = blocking(move || st2.in_container_fs(&c2, |fs, _| fs.stat(&path2)))
        .await
        .map_err(|e| file_not_found(e, &path, &id))?;
    Ok(stat_response(&stat, Body::empty()))
}

/// GET: the stat header and a tar of the path, streamed.
pub async fn get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let path = path_param(&p)?;
    let c = st.lookup(&id)?;
    let (r, w) = tokio::io::duplex(1 << 20);
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<PathStat, Error>>();
    let (st2, path2) = (st.clone(), path.clone());
    let mut w = SyncIoBridge::new(w);
    tokio::task::spawn_blocking(move || {
        let mut tx = Some(tx);
        let r = st2.in_container_fs(&c, |fs, rec| {
            let ready = |s: &PathStat| {
                // The response starts now; a client that went away ends the copy.
                match tx.take().map(|tx| tx.send(Ok(s.clone()))) {
                    Some(Ok(())) => Ok(()),
                    _ => Err(Error::internal("client went away")),
                }
            };
            fs.archive(&path2, ready, &mut w)?;
            st2.ctr_event(rec, "archive-path", &[]);
            Ok(())
        });
        match (r, tx) {
            (Err(e), Some(tx)) => {
                let _ = tx.send(Err(e));
            }
            (Err(e), None) => tracing::warn!("archive of {path2}: {}", e.message),
            _ => {}
        }
        let _ = std::io::Write::flush(&mut w);
        let _ = w.shutdown();
    });
    let stat = rx
        .await
        .map_err(|_| Error::internal("archive failed"))?
        .map_err(|e| file_not_found(e, &path, &id))?;
    Ok(stat_response(
        &stat,
        Body::from_stream(ReaderStream::new(r)),
    ))
}

/// PUT: extracts the tar body into the directory `path`.
pub async fn put(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    req: Request,
) -> ApiResult<Response> {
    let path = path_param(&p)?;
    let c = st.lookup(&id)?;
    let mut opts = ExtractOptions {
        no_overwrite_dir_non_dir: p.bool("noOverwriteDirNonDir", false),
        chown: None,
    };
    let copy_uid_gid = p.bool("copyUIDGID", false);
    let stream = req
        .into_body()
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut body = SyncIoBridge::new(StreamReader::new(stream));
    let (st2, path2) = (st.clone(), path.clone());
    blocking(move || {
        let r = st2.in_container_fs(&c, |fs, rec| {
            // `cp -a`: entries belong to the container's user (docker's tarCopyOptions).
            let user = rec.config.user.clone().unwrap_or_default();
            if copy_uid_gid && !user.is_empty() {
                let rootfs = st2.container_dir(&rec.id).join("rootfs");
                let (uid, gid, _) = berth_runtime::user::resolve_user(&rootfs, &user, &[])
                    .map_err(|e| Error::invalid(e.to_string()))?;
                opts.chown = Some((uid, gid));
            }
            fs.extract(&path2, &mut body, &opts)?;
            st2.ctr_event(rec, "extract-to-dir", &[]);
            Ok(())
        });
        if r.is_err() {
            // Read what the client is still sending (bounded), so it gets the error
            // response instead of a reset connection.
            let _ = std::io::copy(
                &mut std::io::Read::take(&mut body, 256 << 20),
                &mut std::io::sink(),
            );
        }
        r
    })
    .await
    .map_err(|e| ApiError(file_not_found(e, &path, &id)))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .body(Body::empty())
        .unwrap_or_default())
}
