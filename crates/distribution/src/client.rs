//! HTTP transport to one repository of a registry, with anonymous, basic and bearer-token
//! authentication (the token is fetched on the first 401 and reused).

use crate::auth::{Challenge, Credentials};
use berth_api::{Error, ErrorKind, Result};
use berth_image::Reference;
use serde::Deserialize;
use std::net::IpAddr;
use tokio::sync::Mutex;

/// Registry settings from the daemon config.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// "host:port" (or "host") of registries reached over plain http (docker's
    /// `insecure-registries`; CIDR entries match registry IP addresses).
    pub insecure_registries: Vec<String>,
    /// Layers downloaded at once per pull (docker's `max-concurrent-downloads`).
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at once per push (docker's `max-concurrent-uploads`).
    pub max_concurrent_uploads: usize,
    /// Mirrors tried, in order, before the registry itself, for every registry (docker's
    /// `registry-mirrors`, which docker only applies to Docker Hub): "http://host:port".
    pub mirrors: Vec<String>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            mirrors: Vec::new(),
        }
    }
}

impl RegistryOptions {
    /// True when `domain` is to be reached over http. Like docker, loopback (127.0.0.0/8)
    /// registries are always insecure.
    pub fn is_insecure(&self, domain: &str) -> bool {
        let host = host_of(domain);
        if let Ok(ip) = host.parse::<IpAddr>() {
            if ip.is_loopback() {
                return true;
            }
        }
        self.insecure_registries.iter().any(|entry| {
            let entry = entry
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/');
            if entry == domain || entry == host {
                return true;
            }
            match (entry.split_once('/'), host.parse::<IpAddr>()) {
                (Some((net, bits)), Ok(ip)) => cidr_contains(net, bits, ip),
                _ => false,
            }
        })
    }
}

fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    domain.rsplit_once(':').map(|(h, _)| h).unwrap_or(domain)
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// A registry error body: `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<RegistryError>,
}

#[derive(Debug, Deserialize)]
struct RegistryError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A failed registry request: status, the registry's error code and docker's rendering of
/// it ("manifest unknown: manifest unknown").
#[derive(Debug, Clone)]
pub struct HttpFailure {
    pub status: u16,
    pub code: String,
    pub text: String,
}

fn render_failure(status: u16, body: &[u8]) -> HttpFailure {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    match parsed.and_then(|b| b.errors.into_iter().next()) {
        // docker/distribution's errcode: the code lower-cased with spaces, then the message.
        Some(e) => HttpFailure {
            status,
            text: format!("{}: {}", e.code.to_lowercase().replace('_', " "), e.message),
            code: e.code,
        },
        None => HttpFailure {
            status,
            code: String::new(),
            text: match status {
                401 => "unauthorized: authentication required".to_string(),
                404 => "not found".to_string(),
                s => format!(
                    "received unexpected HTTP status: {s} {}",
                    reqwest::StatusCode::from_u16(s)
                        .ok()
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("")
                ),
            },
        },
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// One repository on one registry.
pub struct Repository {
    http: reqwest::Client,
    /// "https://registry-1.docker.io"
    base: String,
    /// "library/busybox"
    path: String,
    creds: Option<Credentials>,
    /// The Authorization header value once a challenge was answered.
    authorization: Mutex<Option<String>>,
    /// Token scope actions: "pull", or "pull,push" for a push.
    actions: &'static str,
}

/// The outcome of a GET: a response with a success status, or the registry's failure.
pub enum Fetched {
    Ok(reqwest::Response),
    Failed(HttpFailure),
}

impl Repository {
    pub fn new(
        reference: &Reference,
        opts: &RegistryOptions,
        creds: Option<Credentials>,
    ) -> Result<Repository> {
        let scheme = if opts.is_insecure(&reference.domain) {
            "http"
        } else {
            "https"
        };
        // Docker Hub's API lives on another host than its name.
        let host = if reference.domain == "docker.io" || reference.domain == "index.docker.io" {
            "registry-1.docker.io"
        } else {
            reference.domain.as_str()
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("registry client: {e}")))?;
        let authorization = creds
            .as_ref()
            .filter(|c| !c.registry_token.is_empty())
            .map(|c| format!("Bearer {}", c.registry_token));
        Ok(Repository {
            http,
            base: format!("{scheme}://{host}"),
            path: reference.path.clone(),
            creds,
            authorization: Mutex::new(authorization),
            actions: "pull",
        })
    }

    /// The same repository path on a mirror (`http(s)://host[:port]`), anonymous unless
    /// the mirror is the registry itself.
    pub fn on_mirror(reference: &Reference, mirror: &str) -> Result<Repository> {
        let base = mirror.trim_end_matches('/').to_string();
        let base = if base.starts_with("http://") || base.starts_with("https://") {
            base
        } else {
            format!("https://{base}")
        };
        let mut r = Repository::new(reference, &RegistryOptions::default(), None)?;
        r.base = base;
        Ok(r)
    }

    /// A repository to push to (tokens are asked for "pull,push").
    pub fn for_push(
        reference: &Reference,
        opts: &RegistryOptions,
        creds: Option<Credentials>,
    ) -> Result<Repository> {
        let mut r = Repository::new(reference, opts, creds)?;
        r.actions = "pull,push";
        Ok(r)
    }

    /// "https://host" of the registry.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// "library/busybox"
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Any request with authentication (a 401 is answered once and the request repeated;
    /// the body is small and kept for that).
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<bytes::Bytes>,
    ) -> Result<Fetched> {
        let mut answered = false;
        loop {
            let mut rb = self.http.request(method.clone(), url);
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            if let Some(a) = self.authorization.lock().await.clone() {
                rb = rb.header(reqwest::header::AUTHORIZATION, a);
            }
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let resp = rb.send().await.map_err(transport_error)?;
            let status = resp.status().as_u16();
            if status == 401 && !answered {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse);
                if let Some(ch) = challenge {
                    if self.answer(&ch).await? {
                        answered = true;
                        continue;
                    }
                }
            }
            if resp.status().is_success() {
                return Ok(Fetched::Ok(resp));
            }
            let body = resp.bytes().await.unwrap_or_default();
            return Ok(Fetched::Failed(render_failure(status, &body)));
        }
    }

    /// PUT of a large body streamed from a file (authentication must already be settled
    /// by an earlier request of this push).
    pub async fn put_stream(&self, url: &str, file: tokio::fs::File, len: u64) -> Result<Fetched> {
        self.send_stream(reqwest::Method::PUT, url, file, len).await
    }

    /// A PUT or PATCH whose body streams from a file.
    pub async fn send_stream(
        &self,
        method: reqwest::Method,
        url: &str,
        file: tokio::fs::File,
        len: u64,
    ) -> Result<Fetched> {
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let mut rb = self
            .http
            .request(method, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(a) = self.authorization.lock().await.clone() {
            rb = rb.header(reqwest::header::AUTHORIZATION, a);
        }
        let resp = rb.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Fetched::Ok(resp));
        }
        let body = resp.bytes().await.unwrap_or_default();
        Ok(Fetched::Failed(render_failure(status, &body)))
    }

    pub fn manifest_url(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{}", self.base, self.path, reference)
    }

    pub fn blob_url(&self, digest: &str) -> String {
        format!("{}/v2/{}/blobs/{}", self.base, self.path, digest)
    }

    /// GET with authentication (see `send`).
    pub async fn get(&self, url: &str, accept: Option<&str>) -> Result<Fetched> {
        let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
        self.send(reqwest::Method::GET, url, &headers, None).await
    }

    /// Sets the Authorization for a challenge; false when we have nothing to answer with.
    async fn answer(&self, ch: &Challenge) -> Result<bool> {
        match ch.scheme.as_str() {
            "basic" => {
                let Some(b) = self.creds.as_ref().and_then(|c| c.basic()) else {
                    return Ok(false);
                };
                *self.authorization.lock().await = Some(b);
                Ok(true)
            }
            "bearer" => {
                let Some(realm) = ch.params.get("realm") else {
                    return Ok(false);
                };
                let scope = format!("repository:{}:{}", self.path, self.actions);
                // A login (no repository) asks for a token without a scope, as docker does.
                let mut query: Vec<(&str, &str)> = Vec::new();
                if !self.path.is_empty() {
                    query.push(("scope", scope.as_str()));
                }
                if let Some(s) = ch.params.get("service") {
                    query.push(("service", s));
                }
                let mut rb = self.http.get(realm).query(&query);
                if let Some(b) = self.creds.as_ref().and_then(|c| c.basic()) {
                    rb = rb.header(reqwest::header::AUTHORIZATION, b);
                }
                let resp = rb.send().await.map_err(transport_error)?;
                if !resp.status().is_success() {
                    // Wrong credentials: report the original 401 (docker's "pull access denied").
                    return Ok(false);
                }
                let body = resp.bytes().await.map_err(transport_error)?;
                let tok: TokenResponse = serde_json::from_slice(&body)
                    .map_err(|e| Error::unavailable(format!("invalid token response: {e}")))?;
                let token = if tok.token.is_empty() {
                    tok.access_token
                } else {
                    tok.token
                };
                if token.is_empty() {
                    return Ok(false);
                }
                *self.authorization.lock().await = Some(format!("Bearer {token}"));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// docker's registry key of a server address: Docker Hub's aliases become "docker.io",
/// a scheme and path are dropped ("https://host:5000/v1/" -> "host:5000").
pub fn registry_domain(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        ""
        | "index.docker.io"
        | "registry-1.docker.io"
        | "docker.io"
        | "registry.hub.docker.com" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// POST /auth: checks credentials against a registry's `/v2/` (answering a basic or
/// bearer challenge with them). Docker's error text on a refusal.
pub async fn login(opts: &RegistryOptions, server: &str, creds: Credentials) -> Result<()> {
    let reference = Reference {
        domain: registry_domain(server),
        path: String::new(),
        tag: None,
        digest: None,
    };
    let repo = Repository::new(&reference, opts, Some(creds))?;
    let url = format!("{}/v2/", repo.base);
    match repo.send(reqwest::Method::GET, &url, &[], None).await? {
        Fetched::Ok(_) => Ok(()),
        Fetched::Failed(f) if f.status == 401 => Err(Error::new(
            ErrorKind::Unauthorized,
            format!("login attempt to {url} failed with status: 401 Unauthorized"),
        )),
        Fetched::Failed(f) => Err(Error::unavailable(format!(
            "login attempt to {url} failed with status: {}",
            f.status
        ))),
    }
}

pub(crate) fn transport_error(e: reqwest::Error) -> Error {
    // reqwest's Display hides the cause ("error sending request"); docker shows it.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    Error::new(ErrorKind::Unavailable, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_registries() {
        let o = RegistryOptions {
            insecure_registries: vec!["reg.local:5000".into(), "10.1.0.0/16".into()],
            ..Default::default()
        };
        assert!(o.is_insecure("127.0.0.1:5000"));
        assert!(o.is_insecure("reg.local:5000"));
        assert!(!o.is_insecure("reg.local:5001"));
        assert!(o.is_insecure("10.1.2.3:443"));
        assert!(!o.is_insecure("10.2.0.1"));
        assert!(!o.is_insecure("docker.io"));
    }

    #[test]
    fn renders_registry_errors_like_docker() {
        let f = render_failure(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(f.text, "manifest unknown: manifest unknown");
        assert_eq!(f.code, "MANIFEST_UNKNOWN");
        assert_eq!(
            render_failure(401, b"").text,
            "unauthorized: authentication required"
        );
    }
}
