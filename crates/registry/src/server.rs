//! The HTTP side: one catch-all route under /v2/ (repository names contain slashes), parsed
//! from the end (`/manifests/<ref>`, `/blobs/<digest>`, `/blobs/uploads/<id>`, `/tags/list`,
//! `/referrers/<digest>`), and distribution's headers and error bodies.

use crate::auth::Htpasswd;
use crate::error::{Code, RegistryError, Result};
use crate::names::{valid_name, Digest, Reference, ReferenceError};
use crate::storage::{ManifestDoc, RevisionInfo, Storage, StorageError, MAX_MANIFEST_SIZE};
use crate::token::{Access, Claims, TokenError, Verifier};
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError};
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Known manifest media types: a Content-Type among these must agree with the body's mediaType.
const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Catalog page size when the client gives none (distribution's default maximum).
const DEFAULT_CATALOG_N: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening storage at {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Htpasswd(#[from] crate::auth::HtpasswdError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Token auth: where clients get tokens and how to check them.
#[derive(Clone, Debug, Default)]
pub struct TokenConfig {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// The token server's public key (PEM, EC P-256 or RSA).
    pub key: PathBuf,
}

/// How to run the registry.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    pub read_only: bool,
    /// Bearer-token auth instead of (or, oddly, besides) htpasswd.
    pub token: Option<TokenConfig>,
    /// Pull-through cache of this upstream registry (writes refused).
    pub upstream: Option<UpstreamConfig>,
}

/// The registry: storage, auth, and the per-upload locks (PATCH/PUT of one upload serialize,
/// different uploads run in parallel).
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    storage: Storage,
    auth: Option<Htpasswd>,
    realm: String,
    read_only: bool,
    token: Option<Verifier>,
    upstream: Option<Upstream>,
    uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Registry {
    pub fn new(cfg: &ServerConfig) -> std::result::Result<Registry, ServerError> {
        let storage = Storage::open(&cfg.root).map_err(|source| ServerError::Storage {
            path: cfg.root.display().to_string(),
            source,
        })?;
        let auth = match &cfg.htpasswd {
            Some(p) => Some(Htpasswd::load(p)?),
            None => None,
        };
        let realm = if cfg.realm.is_empty() {
            "berth-registry".to_string()
        } else {
            cfg.realm.clone()
        };
        let token = match &cfg.token {
            Some(t) => Some(Verifier::new(&t.realm, &t.service, &t.issuer, &t.key)?),
            None => None,
        };
        let upstream = match &cfg.upstream {
            Some(u) => Some(Upstream::new(u)?),
            None => None,
        };
        Ok(Registry(Arc::new(Inner {
            storage,
            auth,
            realm,
            read_only: cfg.read_only,
            token,
            upstream,
            uploads: std::sync::Mutex::new(HashMap::new()),
        })))
    }

    pub fn storage(&self) -> &Storage {
        &self.0.storage
    }

    /// The axum router serving /v2/.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v2", axum::routing::any(base))
            .route("/v2/", axum::routing::any(base))
            .route("/v2/{*rest}", axum::routing::any(dispatch))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                middleware,
            ))
            .with_state(self.clone())
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self
            .0
            .uploads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    fn forget_upload_lock(&self, id: &str) {
        let mut m = self
            .0
            .uploads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        m.remove(id);
    }

    /// Runs a storage call off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Storage) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.0.storage))
            .await
            .map_err(RegistryError::internal)?
            .map_err(RegistryError::from)
    }
}

/// Auth first (401 before anything else), then read-only (a pull-through cache is read-only
/// too), then the API version header on every response.
async fn middleware(State(reg): State<Registry>, mut req: Request, next: Next) -> Response {
    let mut resp = if let Err(e) = authorize(&reg, &mut req) {
        e.into_response()
    } else if (reg.0.read_only || reg.0.upstream.is_some())
        && matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        RegistryError::new(Code::Unsupported)
            .message(if reg.0.read_only {
                "registry is in read-only mode"
            } else {
                "registry is a pull-through cache: writes are not supported"
            })
            .into_response()
    } else {
        next.run(req).await
    };
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        axum::http::HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// What a request needs from a token, distribution's way: pull to read a repository, push
/// (with pull) to write, delete to delete, `registry:catalog:*` for the catalog; nothing
/// beyond a valid token for /v2/ itself.
fn required_access(method: &Method, path: &str) -> Option<Access> {
    let path = percent_decode(path);
    let rest = path.strip_prefix("/v2/")?;
    if rest == "_catalog" {
        return Access::parse_scope("registry:catalog:*");
    }
    let (name, _) = parse_target(rest)?;
    let actions: &[&str] = match *method {
        Method::GET | Method::HEAD => &["pull"],
        Method::DELETE => &["delete"],
        _ => &["pull", "push"],
    };
    Some(Access {
        kind: "repository".into(),
        name,
        actions: actions.iter().map(|a| a.to_string()).collect(),
    })
}

/// Checks the request's credentials; a verified token's claims go into its extensions (a
/// cross-repository mount checks the source repository against them).
fn authorize(reg: &Registry, req: &mut Request) -> Result<()> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(a) = &reg.0.auth {
        if !a.check_header(header.as_deref()) {
            return Err(RegistryError::new(Code::Unauthorized).header(
                "www-authenticate",
                format!("Basic realm=\"{}\"", reg.0.realm.replace('"', "")),
            ));
        }
    }
    let Some(v) = &reg.0.token else {
        return Ok(());
    };
    let need = required_access(req.method(), req.uri().path());
    let refuse = |error: Option<&str>| {
        let detail: Vec<serde_json::Value> = need
            .iter()
            .flat_map(|n| {
                n.actions
                    .iter()
                    .map(|a| serde_json::json!({"Type": n.kind, "Name": n.name, "Action": a}))
            })
            .collect();
        RegistryError::new(Code::Unauthorized)
            .detail(detail)
            .header("www-authenticate", v.challenge(need.as_ref(), error))
    };
    let token = header.as_deref().and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    });
    let Some(token) = token else {
        return Err(refuse(None));
    };
    let claims = v.verify(token.trim()).map_err(|e| {
        tracing::debug!("refused token: {e}");
        refuse(Some("invalid_token")).message(format!("invalid token: {e}"))
    })?;
    if let Some(n) = &need {
        if !claims.allows(n) {
            return Err(refuse(Some("insufficient_scope")));
        }
    }
    req.extensions_mut().insert(claims);
    Ok(())
}

async fn base() -> Response {
    (StatusCode::OK, [("content-type", "application/json")], "{}").into_response()
}

/// Decodes %XX escapes (clients may escape the ':' of a digest).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hexval = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

enum Target {
    Tags,
    Manifest(String),
    Upload(String),
    Blob(String),
    Referrers(String),
}

/// Splits `<name>/<suffix>` into the name and what the suffix addresses.
fn parse_target(rest: &str) -> Option<(String, Target)> {
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    if n < 2 {
        return None;
    }
    let name_upto = |k: usize| segs[..n - k].join("/");
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some((name_upto(2), Target::Tags));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        return Some((name_upto(3), Target::Upload(segs[n - 1].to_string())));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some((name_upto(2), Target::Upload(String::new())));
    }
    if n >= 3 {
        let last = segs[n - 1].to_string();
        match segs[n - 2] {
            "manifests" => return Some((name_upto(2), Target::Manifest(last))),
            "blobs" => return Some((name_upto(2), Target::Blob(last))),
            "referrers" => return Some((name_upto(2), Target::Referrers(last))),
            _ => {}
        }
    }
    None
}

async fn dispatch(State(reg): State<Registry>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    tracing::debug!("{method} {uri}");
    match route(reg, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{method} {uri}: {e}");
            e.into_response()
        }
    }
}

fn unsupported() -> RegistryError {
    RegistryError::new(Code::Unsupported)
}

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).ok_or_else(|| RegistryError::new(Code::DigestInvalid).detail(s.to_string()))
}

async fn route(reg: Registry, req: Request) -> Result<Response> {
    let path = percent_decode(req.uri().path());
    let rest = path.strip_prefix("/v2/").unwrap_or("").to_string();
    let query: HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|q: Query<HashMap<String, String>>| q.0)
        .unwrap_or_default();
    let method = req.method().clone();
    if rest == "_catalog" {
        return match method {
            Method::GET | Method::HEAD => catalog(&reg, &query).await,
            _ => Err(unsupported()),
        };
    }
    let Some((name, target)) = parse_target(&rest) else {
        return Ok((StatusCode::NOT_FOUND, "404 page not found\n").into_response());
    };
    if !valid_name(&name) {
        return Err(RegistryError::new(Code::NameInvalid).detail(serde_json::json!({"name": name})));
    }
    let head = method == Method::HEAD;
    match (target, method) {
        (Target::Tags, Method::GET | Method::HEAD) => {
            tags_list(&reg, &name, &query, req.uri().query().unwrap_or("")).await
        }
        (Target::Manifest(r), Method::GET | Method::HEAD) => {
            get_manifest(&reg, &name, &r, head).await
        }
        (Target::Manifest(r), Method::PUT) => put_manifest(&reg, &name, &r, req).await,
        (Target::Manifest(r), Method::DELETE) => delete_manifest(&reg, &name, &r).await,
        (Target::Blob(d), Method::GET | Method::HEAD) => {
            get_blob(&reg, &name, &d, head, req.headers()).await
        }
        (Target::Blob(d), Method::DELETE) => delete_blob(&reg, &name, &d).await,
        (Target::Upload(id), Method::POST) if id.is_empty() => {
            start_upload(&reg, &name, &query, req).await
        }
        (Target::Upload(id), Method::PATCH) if !id.is_empty() => {
            patch_upload(&reg, &name, &id, req).await
        }
        (Target::Upload(id), Method::PUT) if !id.is_empty() => {
            put_upload(&reg, &name, &id, &query, req).await
        }
        (Target::Upload(id), Method::GET) if !id.is_empty() => {
            upload_status(&reg, &name, &id).await
        }
        (Target::Upload(id), Method::DELETE) if !id.is_empty() => {
            cancel_upload(&reg, &name, &id).await
        }
        (Target::Referrers(d), Method::GET) => referrers(&reg, &name, &d, &query).await,
        _ => Err(unsupported()),
    }
}

// ---- listing ----

/// `n` and `last` of a paginated listing; None for n means "no limit given".
fn pagination(query: &HashMap<String, String>) -> Result<(Option<usize>, Option<String>)> {
    let n = match query.get("n") {
        Some(v) if !v.is_empty() => Some(v.parse::<usize>().map_err(|_| {
            RegistryError::new(Code::PaginationNumberInvalid).detail(serde_json::json!({"n": v}))
        })?),
        _ => None,
    };
    Ok((n, query.get("last").filter(|l| !l.is_empty()).cloned()))
}

/// Applies `last`/`n` to a sorted list; the Link header when more remain.
fn paginate(
    all: Vec<String>,
    n: Option<usize>,
    last: Option<&str>,
    base: &str,
) -> (Vec<String>, Option<String>) {
    let mut items: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|x| x.as_str() > l).collect(),
        None => all,
    };
    let Some(n) = n else {
        return (items, None);
    };
    let more = items.len() > n;
    items.truncate(n);
    let link = match (more, items.last()) {
        (true, Some(l)) => Some(format!("<{base}?last={l}&n={n}>; rel=\"next\"")),
        _ => None,
    };
    (items, link)
}

fn json_response(status: StatusCode, body: serde_json::Value, link: Option<String>) -> Response {
    let mut r = (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(l) = link.and_then(|l| l.parse().ok()) {
        r.headers_mut().insert("link", l);
    }
    r
}

async fn catalog(reg: &Registry, query: &HashMap<String, String>) -> Result<Response> {
    let (n, last) = pagination(query)?;
    let all = reg.blocking(|s| s.catalog()).await?;
    let (repos, link) = paginate(
        all,
        Some(n.unwrap_or(DEFAULT_CATALOG_N)),
        last.as_deref(),
        "/v2/_catalog",
    );
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({ "repositories": repos }),
        link,
    ))
}

async fn tags_list(
    reg: &Registry,
    name: &str,
    query: &HashMap<String, String>,
    raw_query: &str,
) -> Result<Response> {
    let (n, last) = pagination(query)?;
    // A pull-through cache lists the upstream's tags, its own when the upstream fails.
    if let Some(up) = &reg.0.upstream {
        match up.tags(name, raw_query).await {
            Ok(Some((body, link))) => {
                let mut r =
                    (StatusCode::OK, [("content-type", "application/json")], body).into_response();
                if let Some(l) = link.and_then(|l| l.parse().ok()) {
                    r.headers_mut().insert("link", l);
                }
                return Ok(r);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}; listing cached tags of {name}"),
        }
    }
    let nm = name.to_string();
    let Some(all) = reg.blocking(move |s| s.tags(&nm)).await? else {
        return Err(RegistryError::new(Code::NameUnknown).detail(serde_json::json!({"name": name})));
    };
    let (tags, link) = paginate(all, n, last.as_deref(), &format!("/v2/{name}/tags/list"));
    Ok(json_response(
        StatusCode::OK,
        serde_json::json!({ "name": name, "tags": tags }),
        link,
    ))
}

// ---- manifests ----

fn parse_reference(r: &str) -> Result<Reference> {
    Reference::parse(r).map_err(|e| match e {
        ReferenceError::Digest => RegistryError::new(Code::DigestInvalid).detail(r.to_string()),
        ReferenceError::Tag => RegistryError::new(Code::TagInvalid).detail(r.to_string()),
    })
}

fn manifest_unknown(r: &str) -> RegistryError {
    let detail = if r.contains(':') {
        serde_json::json!({ "Digest": r })
    } else {
        serde_json::json!({ "Tag": r })
    };
    RegistryError::new(Code::ManifestUnknown).detail(detail)
}

async fn get_manifest(reg: &Registry, name: &str, r: &str, head: bool) -> Result<Response> {
    let reference = parse_reference(r)?;
    let proxied = match &reg.0.upstream {
        Some(up) => proxy_manifest(reg, up, name, &reference).await,
        None => Ok(()),
    };
    let nm = name.to_string();
    let found = reg
        .blocking(move |s| {
            let d = match reference {
                Reference::Digest(d) => d,
                Reference::Tag(t) => match s.resolve_tag(&nm, &t)? {
                    Some(d) => d,
                    None => return Ok(None),
                },
            };
            Ok(s.get_manifest(&nm, &d)?.map(|(mt, b)| (d, mt, b)))
        })
        .await?;
    let Some((digest, media_type, bytes)) = found else {
        proxied?;
        return Err(manifest_unknown(r));
    };
    if let Err(e) = proxied {
        tracing::warn!("{name}:{r}: serving the cached manifest: {e}");
    }
    let len = bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", media_type)
        .header("content-length", len)
        .header("docker-content-digest", digest.to_string())
        .header("etag", format!("\"{digest}\""))
        .body(body)
        .map_err(RegistryError::internal)
}

fn upstream_error(e: UpstreamError) -> RegistryError {
    tracing::warn!("{e}");
    RegistryError::new(Code::Unknown)
        .message(e.to_string())
        .status(StatusCode::BAD_GATEWAY)
}

/// Pull-through: brings the manifest `reference` names upstream into the cache. A tag is
/// resolved upstream on every request (a HEAD, so a moved tag is seen at once; when the
/// upstream fails the cached tag is served); a digest is fetched only when not cached.
async fn proxy_manifest(
    reg: &Registry,
    up: &Upstream,
    name: &str,
    reference: &Reference,
) -> Result<()> {
    let (digest, tag) = match reference {
        Reference::Digest(d) => (d.clone(), None),
        Reference::Tag(t) => match up.resolve(name, t).await.map_err(upstream_error)? {
            Some(d) => (d, Some(t.clone())),
            None => return Ok(()),
        },
    };
    let (nm, dg) = (name.to_string(), digest.clone());
    if reg.blocking(move |s| s.revision(&nm, &dg)).await?.is_some() {
        if let Some(t) = tag {
            let (nm, dg) = (name.to_string(), digest.clone());
            reg.blocking(move |s| s.set_tag(&nm, &t, &dg)).await?;
        }
        return Ok(());
    }
    let Some((ct, bytes, digest)) = up
        .manifest(name, &digest.to_string(), Some(&digest))
        .await
        .map_err(upstream_error)?
    else {
        return Ok(());
    };
    let doc: ManifestDoc = serde_json::from_slice(&bytes).map_err(|e| {
        upstream_error(UpstreamError::Status {
            status: reqwest::StatusCode::BAD_GATEWAY,
            what: format!("an undecodable manifest {name}@{digest}: {e}"),
        })
    })?;
    let media_type = doc.media_type.clone().or(ct).unwrap_or_else(|| {
        if doc.is_index() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    });
    let info = RevisionInfo {
        media_type,
        subject: doc.subject.as_ref().map(|s| s.digest.clone()),
    };
    let nm = name.to_string();
    reg.blocking(move |s| s.put_manifest(&nm, &bytes, &digest, &info, tag.as_deref()))
        .await
}

/// Pull-through: brings blob `d` of repository `name` into the cache (stored, verified, then
/// served by the caller). A blob another repository already brought is only confirmed with a
/// HEAD upstream (the upstream decides who may read what), not downloaded again.
async fn proxy_blob(reg: &Registry, up: &Upstream, name: &str, d: &Digest) -> Result<()> {
    let key = format!("proxy {name} {d}");
    let lock = reg.upload_lock(&key);
    let _g = lock.lock().await;
    let res = async {
        let (nm, dg) = (name.to_string(), d.clone());
        let (linked, stored) = reg
            .blocking(move |s| Ok((s.repo_blob_size(&nm, &dg)?, s.blob_size(&dg)?)))
            .await?;
        if linked.is_some() {
            return Ok(()); // a concurrent request fetched it
        }
        let Some(resp) = up
            .blob(name, d, stored.is_some())
            .await
            .map_err(upstream_error)?
        else {
            return Ok(());
        };
        if stored.is_some() {
            let (nm, dg) = (name.to_string(), d.clone());
            return reg.blocking(move |s| s.link_blob(&nm, &dg)).await;
        }
        let tmp = reg.storage().temp_path();
        let fetched = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| upstream_error(e.into()))?;
                f.write_all(&chunk).await?;
            }
            f.flush().await?;
            Ok::<_, RegistryError>(())
        }
        .await;
        if let Err(e) = fetched {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let (nm, dg, me) = (name.to_string(), d.clone(), reg.clone());
        let res = tokio::task::spawn_blocking(move || me.storage().adopt_blob(&nm, &tmp, &dg))
            .await
            .map_err(RegistryError::internal)?;
        match res {
            Ok(_) => Ok(()),
            Err(StorageError::DigestMismatch { computed }) => {
                Err(upstream_error(UpstreamError::Digest {
                    what: format!("blob {name}@{d}"),
                    got: computed.to_string(),
                    want: d.to_string(),
                }))
            }
            Err(e) => Err(RegistryError::internal(e)),
        }
    }
    .await;
    reg.forget_upload_lock(&key);
    res
}

/// Reads a request body into memory, refusing more than `limit` bytes.
async fn read_limited(req: Request, limit: usize) -> Result<Vec<u8>> {
    let too_big = || {
        RegistryError::new(Code::ManifestInvalid)
            .detail("http: request body too large")
            .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::new(Code::ManifestInvalid).detail(format!("reading body: {e}"))
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn content_type(h: &HeaderMap) -> Option<String> {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.is_empty())
}

async fn put_manifest(reg: &Registry, name: &str, r: &str, req: Request) -> Result<Response> {
    let reference = parse_reference(r)?;
    let header_type = content_type(req.headers());
    let bytes = read_limited(req, MAX_MANIFEST_SIZE).await?;
    let doc: ManifestDoc = serde_json::from_slice(&bytes).map_err(|e| {
        RegistryError::new(Code::ManifestInvalid).detail(format!("decoding manifest: {e}"))
    })?;
    if let (Some(body_type), Some(h)) = (&doc.media_type, &header_type) {
        if MANIFEST_TYPES.contains(&h.as_str()) && body_type != h {
            return Err(RegistryError::new(Code::ManifestInvalid).detail(format!(
                "mediaType in manifest should be '{h}' not '{body_type}'"
            )));
        }
    }
    let media_type = doc.media_type.clone().or(header_type).unwrap_or_else(|| {
        if doc.is_index() {
            OCI_INDEX.to_string()
        } else {
            OCI_MANIFEST.to_string()
        }
    });
    let (digest, tag) = match &reference {
        Reference::Digest(want) => {
            let got = Digest::of(want.algorithm, &bytes);
            if got != *want {
                return Err(RegistryError::new(Code::DigestInvalid)
                    .detail(format!("digest mismatch: computed {got}")));
            }
            (got, None)
        }
        Reference::Tag(t) => (
            Digest::of(crate::names::Algorithm::Sha256, &bytes),
            Some(t.clone()),
        ),
    };
    // Everything the manifest references must already be in this repository.
    let mut blobs = Vec::new();
    for desc in doc.blob_refs() {
        if desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            continue; // foreign layers live elsewhere
        }
        blobs.push(parse_digest(&desc.digest)?);
    }
    let mut children = Vec::new();
    for desc in doc.manifests.iter().flatten() {
        children.push(parse_digest(&desc.digest)?);
    }
    let subject = match &doc.subject {
        Some(s) => Some(parse_digest(&s.digest)?),
        None => None,
    };
    let nm = name.to_string();
    let missing = reg
        .blocking(move |s| {
            for b in &blobs {
                if s.repo_blob_size(&nm, b)?.is_none() {
                    return Ok(Some(b.clone()));
                }
            }
            for c in &children {
                if s.revision(&nm, c)?.is_none() {
                    return Ok(Some(c.clone()));
                }
            }
            Ok(None)
        })
        .await?;
    if let Some(m) = missing {
        return Err(RegistryError::new(Code::ManifestBlobUnknown).detail(m.to_string()));
    }
    let info = RevisionInfo {
        media_type,
        subject: subject.as_ref().map(|s| s.to_string()),
    };
    let (nm, d) = (name.to_string(), digest.clone());
    reg.blocking(move |s| s.put_manifest(&nm, &bytes, &d, &info, tag.as_deref()))
        .await?;
    let mut b = Response::builder()
        .status(StatusCode::CREATED)
        .header("location", format!("/v2/{name}/manifests/{digest}"))
        .header("docker-content-digest", digest.to_string())
        .header("content-length", 0);
    if let Some(s) = subject {
        b = b.header("oci-subject", s.to_string());
    }
    b.body(Body::empty()).map_err(RegistryError::internal)
}

async fn delete_manifest(reg: &Registry, name: &str, r: &str) -> Result<Response> {
    let d = match parse_reference(r)? {
        Reference::Tag(_) => return Err(unsupported()),
        Reference::Digest(d) => d,
    };
    let nm = name.to_string();
    if !reg.blocking(move |s| s.delete_manifest(&nm, &d)).await? {
        return Err(manifest_unknown(r));
    }
    Ok(accepted())
}

fn accepted() -> Response {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-length", 0)
        .body(Body::empty())
        .unwrap_or_default()
}

// ---- blobs ----

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive [start, end]; Err for unsatisfiable.
fn parse_range(h: &str, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None); // unknown unit: ignore, as HTTP allows
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: serve the whole blob
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn blob_unknown(d: &Digest) -> RegistryError {
    RegistryError::new(Code::BlobUnknown).detail(d.to_string())
}

async fn get_blob(
    reg: &Registry,
    name: &str,
    d: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    let digest = parse_digest(d)?;
    let (nm, dg) = (name.to_string(), digest.clone());
    let mut size = reg.blocking(move |s| s.repo_blob_size(&nm, &dg)).await?;
    if let (None, Some(up)) = (size, &reg.0.upstream) {
        proxy_blob(reg, up, name, &digest).await?;
        let (nm, dg) = (name.to_string(), digest.clone());
        size = reg.blocking(move |s| s.repo_blob_size(&nm, &dg)).await?;
    }
    let Some(size) = size else {
        return Err(blob_unknown(&digest));
    };
    let range = match headers.get("range").and_then(|v| v.to_str().ok()) {
        Some(h) => parse_range(h, size).map_err(|_| {
            RegistryError::new(Code::RangeInvalid)
                .header("content-range", format!("bytes */{size}"))
        })?,
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .header("docker-content-digest", digest.to_string())
        .header("etag", format!("\"{digest}\""))
        .header("accept-ranges", "bytes")
        .header("cache-control", "max-age=31536000");
    if range.is_some() {
        b = b.header(
            "content-range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    let body = if head {
        Body::empty()
    } else {
        let mut f = tokio::fs::File::open(reg.storage().blob_path(&digest)).await?;
        if start > 0 {
            f.seek(SeekFrom::Start(start)).await?;
        }
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            f.take(len),
            256 << 10,
        ))
    };
    b.body(body).map_err(RegistryError::internal)
}

async fn delete_blob(reg: &Registry, name: &str, d: &str) -> Result<Response> {
    let digest = parse_digest(d)?;
    let (nm, dg) = (name.to_string(), digest.clone());
    if !reg.blocking(move |s| s.unlink_blob(&nm, &dg)).await? {
        return Err(blob_unknown(&digest));
    }
    Ok(accepted())
}

// ---- uploads ----

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::new(Code::BlobUploadUnknown).detail(id.to_string())
}

/// distribution's `Range: 0-<last byte>` ("0-0" when empty).
fn range_header(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> Result<Response> {
    Response::builder()
        .status(status)
        .header("location", format!("/v2/{name}/blobs/uploads/{id}"))
        .header("range", range_header(size))
        .header("docker-upload-uuid", id)
        .header("content-length", 0)
        .body(Body::empty())
        .map_err(RegistryError::internal)
}

fn blob_created(name: &str, d: &Digest) -> Result<Response> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header("location", format!("/v2/{name}/blobs/{d}"))
        .header("docker-content-digest", d.to_string())
        .header("content-length", 0)
        .body(Body::empty())
        .map_err(RegistryError::internal)
}

async fn start_upload(
    reg: &Registry,
    name: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> Result<Response> {
    // Cross-repository mount: link when the source repository has the blob, else fall back
    // to a regular upload (the spec's 202).
    if let (Some(m), Some(from)) = (query.get("mount"), query.get("from")) {
        // With token auth the token must also let the client pull the source repository.
        let permitted = req.extensions().get::<Claims>().is_none_or(|c| {
            c.allows(&Access {
                kind: "repository".into(),
                name: from.clone(),
                actions: vec!["pull".into()],
            })
        });
        if let (Some(d), true, true) = (Digest::parse(m), valid_name(from), permitted) {
            let (nm, from, dg) = (name.to_string(), from.clone(), d.clone());
            let mounted = reg
                .blocking(move |s| {
                    if s.repo_blob_size(&from, &dg)?.is_none() {
                        return Ok(false);
                    }
                    s.link_blob(&nm, &dg)?;
                    Ok(true)
                })
                .await?;
            if mounted {
                return blob_created(name, &d);
            }
        }
    }
    let monolithic = match query.get("digest") {
        Some(d) => Some(parse_digest(d)?),
        None => None,
    };
    let nm = name.to_string();
    let id = reg.blocking(move |s| s.upload_start(&nm)).await?;
    let Some(digest) = monolithic else {
        return upload_response(StatusCode::ACCEPTED, name, &id, 0);
    };
    let lock = reg.upload_lock(&id);
    let _g = lock.lock().await;
    let res = async {
        append_body(reg, name, &id, req).await?;
        finish_upload(reg, name, &id, &digest).await
    }
    .await;
    reg.forget_upload_lock(&id);
    if res.is_err() {
        let (nm, i) = (name.to_string(), id.clone());
        let _ = reg.blocking(move |s| s.upload_cancel(&nm, &i)).await;
    }
    res?;
    blob_created(name, &digest)
}

/// Appends the request body to the upload (after checking Content-Range, when given, starts
/// where the upload ends); returns the new size.
async fn append_body(reg: &Registry, name: &str, id: &str, req: Request) -> Result<u64> {
    let data = reg
        .storage()
        .upload_data(name, id)
        .ok_or_else(|| upload_unknown(id))?;
    let mut f = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .await?;
    let mut size = f.metadata().await?.len();
    if let Some(cr) = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
    {
        let spec = cr
            .trim()
            .trim_start_matches("bytes ")
            .trim_start_matches("bytes=");
        let start = spec
            .split_once('-')
            .and_then(|(a, _)| a.trim().parse::<u64>().ok());
        if start != Some(size) {
            return Err(RegistryError::new(Code::RangeInvalid)
                .detail(format!("upload is at {size}, chunk starts at {cr}"))
                .header("range", range_header(size))
                .header("location", format!("/v2/{name}/blobs/uploads/{id}"))
                .header("docker-upload-uuid", id.to_string()));
        }
    }
    let mut stream = req.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::new(Code::BlobUploadInvalid).detail(format!("reading body: {e}"))
        })?;
        f.write_all(&chunk).await?;
        size += chunk.len() as u64;
    }
    f.flush().await?;
    Ok(size)
}

async fn finish_upload(reg: &Registry, name: &str, id: &str, digest: &Digest) -> Result<u64> {
    let (nm, i, d) = (name.to_string(), id.to_string(), digest.clone());
    let me = reg.clone();
    let res = tokio::task::spawn_blocking(move || me.storage().upload_finish(&nm, &i, &d))
        .await
        .map_err(RegistryError::internal)?;
    match res {
        Ok(size) => Ok(size),
        Err(StorageError::UploadUnknown) => Err(upload_unknown(id)),
        Err(StorageError::DigestMismatch { computed }) => {
            Err(RegistryError::new(Code::DigestInvalid).detail(format!(
                "digest mismatch: computed {computed}, expected {digest}"
            )))
        }
        Err(StorageError::Io(e)) => Err(e.into()),
    }
}

async fn patch_upload(reg: &Registry, name: &str, id: &str, req: Request) -> Result<Response> {
    if reg.storage().upload_data(name, id).is_none() {
        return Err(upload_unknown(id));
    }
    let lock = reg.upload_lock(id);
    let _g = lock.lock().await;
    let size = append_body(reg, name, id, req).await?;
    upload_response(StatusCode::ACCEPTED, name, id, size)
}

async fn put_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    req: Request,
) -> Result<Response> {
    if reg.storage().upload_data(name, id).is_none() {
        return Err(upload_unknown(id));
    }
    let digest = parse_digest(query.get("digest").map(String::as_str).unwrap_or(""))?;
    let lock = reg.upload_lock(id);
    let _g = lock.lock().await;
    append_body(reg, name, id, req).await?;
    let res = finish_upload(reg, name, id, &digest).await;
    reg.forget_upload_lock(id);
    res?;
    blob_created(name, &digest)
}

async fn upload_status(reg: &Registry, name: &str, id: &str) -> Result<Response> {
    let data = reg
        .storage()
        .upload_data(name, id)
        .ok_or_else(|| upload_unknown(id))?;
    let size = tokio::fs::metadata(&data).await?.len();
    upload_response(StatusCode::NO_CONTENT, name, id, size)
}

async fn cancel_upload(reg: &Registry, name: &str, id: &str) -> Result<Response> {
    let (nm, i) = (name.to_string(), id.to_string());
    let lock = reg.upload_lock(id);
    let _g = lock.lock().await;
    let removed = reg.blocking(move |s| s.upload_cancel(&nm, &i)).await?;
    reg.forget_upload_lock(id);
    if !removed {
        return Err(upload_unknown(id));
    }
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .map_err(RegistryError::internal)
}

// ---- referrers ----

async fn referrers(
    reg: &Registry,
    name: &str,
    d: &str,
    query: &HashMap<String, String>,
) -> Result<Response> {
    let subject = parse_digest(d)?;
    let filter = query.get("artifactType").filter(|s| !s.is_empty()).cloned();
    let nm = name.to_string();
    let found = reg
        .blocking(move |s| {
            let mut out = Vec::new();
            for r in s.referrers(&nm, &subject)? {
                if let Some((mt, bytes)) = s.get_manifest(&nm, &r)? {
                    out.push((r, mt, bytes));
                }
            }
            Ok(out)
        })
        .await?;
    let mut manifests = Vec::new();
    for (digest, media_type, bytes) in found {
        let doc: ManifestDoc = serde_json::from_slice(&bytes).unwrap_or_default();
        // The spec: artifactType, else the config's media type for image manifests.
        let artifact_type = doc
            .artifact_type
            .clone()
            .or_else(|| doc.config.as_ref().and_then(|c| c.media_type.clone()));
        if let Some(f) = &filter {
            if artifact_type.as_ref() != Some(f) {
                continue;
            }
        }
        let mut desc = serde_json::json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": bytes.len(),
        });
        if let Some(a) = artifact_type {
            desc["artifactType"] = a.into();
        }
        if let Some(a) = doc.annotations {
            desc["annotations"] = serde_json::Value::Object(a);
        }
        manifests.push(desc);
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut r = (
        StatusCode::OK,
        [("content-type", OCI_INDEX)],
        body.to_string(),
    )
        .into_response();
    if filter.is_some() {
        r.headers_mut().insert(
            "oci-filters-applied",
            axum::http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

// ---- serving ----

/// Loads a PEM certificate chain and private key for TLS.
pub fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::result::Result<tokio_rustls::TlsAcceptor, ServerError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning or dying.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let svc = TowerToHyperService::new(app.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let res = match tls {
                Some(acc) => match acc.accept(stream).await {
                    Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                    Err(e) => {
                        tracing::debug!("TLS handshake with {peer}: {e}");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(stream), svc).await,
            };
            if let Err(e) = res {
                tracing::debug!("connection {peer}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |s: &str| parse_target(s).map(|(n, t)| (n, std::mem::discriminant(&t)));
        let d = |t: Target| std::mem::discriminant(&t);
        assert_eq!(t("a/b/tags/list"), Some(("a/b".into(), d(Target::Tags))));
        assert_eq!(
            t("a/b/manifests/latest"),
            Some(("a/b".into(), d(Target::Manifest(String::new()))))
        );
        assert_eq!(
            t("x/blobs/uploads/"),
            Some(("x".into(), d(Target::Upload(String::new()))))
        );
        assert_eq!(
            t("x/y/blobs/uploads/abc"),
            Some(("x/y".into(), d(Target::Upload(String::new()))))
        );
        assert_eq!(
            t("x/blobs/sha256:aa"),
            Some(("x".into(), d(Target::Blob(String::new()))))
        );
        assert_eq!(
            t("x/referrers/sha256:aa"),
            Some(("x".into(), d(Target::Referrers(String::new()))))
        );
        assert!(t("x").is_none());
        assert!(t("x/other/thing").is_none());
    }

    #[test]
    fn ranges_and_pagination() {
        assert_eq!(parse_range("bytes=0-3", 10), Ok(Some((0, 3))));
        assert_eq!(parse_range("bytes=4-", 10), Ok(Some((4, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=5-100", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=3-1", 10), Err(()));
        assert_eq!(parse_range("items=1-2", 10), Ok(None));
        let all: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (p, l) = paginate(all.clone(), Some(2), None, "/v2/_catalog");
        assert_eq!(p, vec!["a", "b"]);
        assert_eq!(
            l.as_deref(),
            Some("</v2/_catalog?last=b&n=2>; rel=\"next\"")
        );
        let (p, l) = paginate(all.clone(), Some(2), Some("b"), "/v2/_catalog");
        assert_eq!((p, l), (vec!["c".to_string()], None));
        assert_eq!(paginate(all, Some(0), None, "/x").0.len(), 0);
        assert_eq!(
            percent_decode("/v2/a/blobs/sha256%3Aab"),
            "/v2/a/blobs/sha256:ab"
        );
        assert_eq!(percent_decode("100%"), "100%");
    }
}
