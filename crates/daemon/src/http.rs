//! Router assembly, API-version handling, headers and request extractors.

use crate::error::ApiError;
use crate::handlers;
use crate::state::State;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_api::version::{self, API_VERSION, MIN_API_VERSION, SERVER_HEADER};
use berth_api::Error;
use std::sync::Arc;
use tower::Layer;

pub type AppState = Arc<State>;

/// The API version of the current request (the path's `/vX.Y`, or the newest).
#[derive(Clone, Debug)]
pub struct ApiVersion(#[allow(dead_code)] pub String);

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = routes().with_state(state);
    // Wrapping the router (rather than Router::layer) runs before routing, so the version
    // prefix is gone when routes match.
    let app = axum::middleware::from_fn(version_mw).layer(router);
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service(app),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn routes() -> Router<AppState> {
    use handlers::{containers as c, exec as e, images as i, networks as n, system as s};
    Router::new()
        .route("/_ping", get(s::ping).head(s::ping))
        .route("/version", get(s::version))
        .route("/info", get(s::info))
        .route("/system/df", get(s::df))
        .route("/auth", post(s::auth))
        .route("/build", post(handlers::build::build))
        .route("/build/prune", post(handlers::build::prune))
        .route("/events", get(s::events))
        .route("/containers/create", post(c::create))
        .route("/containers/json", get(c::list))
        .route("/containers/prune", post(c::prune))
        .route("/containers/{id}/json", get(c::inspect))
        .route("/containers/{id}/start", post(c::start))
        .route("/containers/{id}/stop", post(c::stop))
        .route("/containers/{id}/restart", post(c::restart))
        .route("/containers/{id}/kill", post(c::kill))
        .route("/containers/{id}/wait", post(c::wait))
        .route("/containers/{id}/attach", post(c::attach))
        .route("/containers/{id}/resize", post(c::resize))
        .route("/containers/{id}/rename", post(c::rename))
        .route("/containers/{id}/pause", post(c::pause))
        .route("/containers/{id}/unpause", post(c::unpause))
        .route("/containers/{id}/top", get(c::top))
        .route("/containers/{id}/stats", get(handlers::stats::stats))
        .route("/containers/{id}/logs", get(c::logs))
        .route("/containers/{id}/changes", get(c::changes))
        .route("/containers/{id}/export", get(c::export))
        .route(
            "/containers/{id}/archive",
            get(handlers::archive::get)
                .head(handlers::archive::head)
                .put(handlers::archive::put),
        )
        .route("/commit", post(c::commit))
        .route("/containers/{id}", axum::routing::delete(c::remove))
        .route("/containers/{id}/exec", post(e::create))
        .route("/exec/{id}/start", post(e::start))
        .route("/exec/{id}/resize", post(e::resize))
        .route("/exec/{id}/json", get(e::inspect))
        .route("/volumes", get(handlers::volumes::list))
        .route("/volumes/create", post(handlers::volumes::create))
        .route("/volumes/prune", post(handlers::volumes::prune))
        .route(
            "/volumes/{name}",
            get(handlers::volumes::inspect).delete(handlers::volumes::remove),
        )
        .route("/networks", get(n::list))
        .route("/networks/create", post(n::create))
        .route("/networks/prune", post(n::prune))
        .route("/networks/{id}", get(n::inspect).delete(n::remove))
        .route("/networks/{id}/connect", post(n::connect))
        .route("/networks/{id}/disconnect", post(n::disconnect))
        .route("/images/json", get(i::list))
        .route("/images/create", post(i::create))
        .route("/images/load", post(i::load))
        .route("/images/get", get(i::save))
        .route("/images/prune", post(i::prune))
        .route(
            "/images/{*rest}",
            get(i::get_dispatch)
                .post(i::post_dispatch)
                .delete(i::delete),
        )
        .fallback(|| async { ApiError(Error::not_found("page not found")) })
        .layer(axum::extract::DefaultBodyLimit::max(16 << 20))
}

async fn version_mw(mut req: Request, next: Next) -> Response {
    crate::idle::touch();
    let path = req.uri().path().to_string();
    let mut ver = API_VERSION.to_string();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((v, tail)) = rest.split_once('/') {
            if version::parse(v).is_some() {
                if version::cmp(v, API_VERSION).is_gt() {
                    return add_headers(
                        ApiError(Error::invalid(format!(
                            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                        )))
                        .into_response(),
                    );
                }
                if version::cmp(v, MIN_API_VERSION).is_lt() {
                    return add_headers(ApiError(Error::invalid(format!(
                        "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                    ))).into_response());
                }
                ver = v.to_string();
                let new_path = format!("/{tail}");
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                if let Ok(uri) = pq.parse() {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req.extensions_mut().insert(ApiVersion(ver));
    let resp = next.run(req).await;
    add_headers(resp)
}

fn add_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    resp
}

/// Query parameters as an ordered list (some are repeated, e.g. `changes`).
#[derive(Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// Docker's boolean query values: "1"/"true"/"True" are true; absent is `default`.
    pub fn bool(&self, k: &str, default: bool) -> bool {
        match self.get(k) {
            None => default,
            Some(v) => !matches!(v, "" | "0" | "false" | "False" | "FALSE" | "no"),
        }
    }
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ApiError(Error::invalid(format!("invalid value for {k}: {v:?}")))),
        }
    }
    /// The `filters` parameter: {"key": ["v", ...]} or the old {"key": {"v": true}} form.
    pub fn filters(&self) -> Result<std::collections::HashMap<String, Vec<String>>, ApiError> {
        let mut out = std::collections::HashMap::new();
        let Some(raw) = self.get("filters") else {
            return Ok(out);
        };
        if raw.is_empty() {
            return Ok(out);
        }
        let v: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError(Error::invalid(format!("invalid filter: {e}"))))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError(Error::invalid("invalid filter: not an object")))?;
        for (k, vals) in obj {
            let list: Vec<String> = match vals {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, b)| b.as_bool().unwrap_or(false))
                    .map(|(s, _)| s.clone())
                    .collect(),
                _ => return Err(ApiError(Error::invalid(format!("invalid filter {k:?}")))),
            };
            out.insert(k.clone(), list);
        }
        Ok(out)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _s: &S,
    ) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let v: Vec<(String, String)> = serde_urlencoded::from_str(q)
            .map_err(|e| ApiError(Error::invalid(format!("invalid query: {e}"))))?;
        Ok(Params(v))
    }
}

/// A JSON body with Docker's 400 message on bad input; an empty body gives `T::default()`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;
    async fn from_request(req: Request, s: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, s).await.map_err(|e| {
            let status = e.status();
            let msg = e.body_text();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                (
                    status,
                    axum::Json(serde_json::json!({"message": "request body too large"})),
                )
                    .into_response()
            } else {
                ApiError(Error::invalid(msg)).into_response()
            }
        })?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(JsonBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError(Error::invalid(format!("invalid JSON: {e}"))).into_response())
    }
}

/// A JSON response with Docker's content type.
pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(e) => ApiError(Error::internal(e.to_string())).into_response(),
    }
}

/// True when the client asked to hijack the connection (`Upgrade: tcp`).
pub fn wants_upgrade(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("tcp"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config {
            shim_path: Some("/bin/true".into()),
            ..Default::default()
        };
        let st = State::open(cfg, dir.path().join("root"), dir.path().join("run"))
            .await
            .unwrap();
        (dir, Arc::new(st))
    }

    async fn call(st: &AppState, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let app = axum::middleware::from_fn(version_mw).layer(routes().with_state(st.clone()));
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        assert_eq!(resp.headers().get("Api-Version").unwrap(), API_VERSION);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn versions_and_errors() {
        let (_d, st) = state().await;
        assert_eq!(
            call(&st, "GET", "/_ping", "").await,
            (StatusCode::OK, "OK".into())
        );
        assert_eq!(call(&st, "GET", "/v1.41/_ping", "").await.0, StatusCode::OK);
        let (s, b) = call(&st, "GET", "/v1.99/version", "").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(b.contains("Maximum supported API version is 1.47"), "{b}");
        let (s, b) = call(&st, "GET", "/containers/nope/json", "").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b, r#"{"message":"No such container: nope"}"#);
        let (s, _) = call(&st, "POST", "/containers/create", "{bad").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, b) = call(&st, "POST", "/containers/create", r#"{"Image":"nope"}"#).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let (s, b) = call(&st, "GET", "/containers/json", "").await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
        let (s, _) = call(&st, "GET", "/containers/json?filters=%7Bx", "").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(&st, "GET", "/nope", "").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    #[test]
    fn params() {
        let p = Params(vec![
            ("all".into(), "1".into()),
            ("changes".into(), "CMD a".into()),
            ("changes".into(), "ENV b=c".into()),
            (
                "filters".into(),
                r#"{"label":{"a=b":true},"status":["running"]}"#.into(),
            ),
        ]);
        assert!(p.bool("all", false));
        assert!(!p.bool("stream", false));
        assert_eq!(p.all("changes").len(), 2);
        let f = p.filters().unwrap();
        assert_eq!(f["label"], vec!["a=b".to_string()]);
        assert_eq!(f["status"], vec!["running".to_string()]);
    }
}
