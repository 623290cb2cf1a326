//! The upstream of a pull-through cache: a minimal distribution client (manifests and blobs
//! by GET/HEAD) answering Basic and Bearer challenges with the configured credentials.

use crate::names::Digest;
use base64::Engine as _;
use std::collections::HashMap;
use tokio::sync::Mutex;

/// Manifest types asked of the upstream (what this registry stores and serves).
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Clone, Debug, Default)]
pub struct UpstreamConfig {
    /// `https://host[:port]` (or `http://` for a loopback host, or any with `insecure`).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Allows plain http to any host and skips TLS certificate checks.
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("invalid upstream URL {0:?}")]
    Url(String),
    #[error("upstream {0} is plain http and not loopback: pass --upstream-insecure")]
    Insecure(String),
    #[error("upstream: {0}")]
    Http(#[from] reqwest::Error),
    #[error("upstream answered {status} for {what}")]
    Status {
        status: reqwest::StatusCode,
        what: String,
    },
    #[error("upstream sent {what} with digest {got}, expected {want}")]
    Digest {
        what: String,
        got: String,
        want: String,
    },
    #[error("upstream manifest too large")]
    TooLarge,
}

pub struct Upstream {
    base: String,
    http: reqwest::Client,
    basic: Option<String>,
    /// Authorization per repository, from the last answered challenge.
    auth: Mutex<HashMap<String, String>>,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `key="value"` pairs of a challenge, after the scheme (values may hold commas).
fn challenge_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.insert(key, value);
    }
    out
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

impl Upstream {
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|_| UpstreamError::Url(cfg.url.clone()))?;
        let host = url.host_str().unwrap_or("");
        match url.scheme() {
            "https" => {}
            "http" if cfg.insecure || is_loopback(host) => {}
            "http" => return Err(UpstreamError::Insecure(cfg.url.clone())),
            _ => return Err(UpstreamError::Url(cfg.url.clone())),
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .danger_accept_invalid_certs(cfg.insecure)
            .user_agent(concat!("berth-registry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let basic = cfg.username.as_ref().map(|u| {
            let p = cfg.password.as_deref().unwrap_or("");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        Ok(Upstream {
            base: cfg.url.trim_end_matches('/').to_string(),
            http,
            basic,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// One request for `repo`, answering a 401 challenge once.
    async fn send(
        &self,
        method: reqwest::Method,
        repo: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}/v2/{repo}/{path}", self.base);
        let mut answered = false;
        loop {
            let mut rb = self.http.request(method.clone(), &url);
            if let Some(a) = accept {
                rb = rb.header("accept", a);
            }
            if let Some(a) = self.auth.lock().await.get(repo) {
                rb = rb.header("authorization", a.clone());
            }
            let resp = rb.send().await?;
            if resp.status() != reqwest::StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            answered = true;
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match self.answer(&challenge, repo).await? {
                Some(a) => {
                    self.auth.lock().await.insert(repo.to_string(), a);
                }
                None => return Ok(resp),
            }
        }
    }

    /// The Authorization answering a challenge, None when there is nothing to answer with.
    async fn answer(&self, challenge: &str, repo: &str) -> Result<Option<String>, UpstreamError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Ok(self.basic.clone()),
            "bearer" => {
                let p = challenge_params(params);
                let Some(realm) = p.get("realm") else {
                    return Ok(None);
                };
                let scope = format!("repository:{repo}:pull");
                let mut q = vec![("scope", scope.as_str())];
                if let Some(s) = p.get("service") {
                    q.push(("service", s.as_str()));
                }
                let mut rb = self.http.get(realm).query(&q);
                if let Some(b) = &self.basic {
                    rb = rb.header("authorization", b.clone());
                }
                let resp = rb.send().await?;
                if !resp.status().is_success() {
                    return Ok(None);
                }
                let body = resp.bytes().await?;
                let Ok(t) = serde_json::from_slice::<TokenResponse>(&body) else {
                    return Ok(None);
                };
                let token = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                Ok((!token.is_empty()).then(|| format!("Bearer {token}")))
            }
            _ => Ok(None),
        }
    }

    fn status_error(resp: &reqwest::Response, what: String) -> UpstreamError {
        UpstreamError::Status {
            status: resp.status(),
            what,
        }
    }

    /// The digest a tag points to upstream; None when the upstream does not know it.
    pub async fn resolve(&self, repo: &str, tag: &str) -> Result<Option<Digest>, UpstreamError> {
        let path = format!("manifests/{tag}");
        let resp = self
            .send(reqwest::Method::HEAD, repo, &path, Some(ACCEPT))
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::status_error(&resp, format!("{repo}:{tag}")));
        }
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(Digest::parse);
        match header {
            Some(d) => Ok(Some(d)),
            // Registries that leave the header out of HEAD: hash the manifest itself.
            None => Ok(self.manifest(repo, tag, None).await?.map(|m| m.2)),
        }
    }

    /// A manifest: (Content-Type, bytes, digest), verified against `want` when given (a
    /// digest reference). None when the upstream does not know it.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        want: Option<&Digest>,
    ) -> Result<Option<(Option<String>, Vec<u8>, Digest)>, UpstreamError> {
        let path = format!("manifests/{reference}");
        let resp = self
            .send(reqwest::Method::GET, repo, &path, Some(ACCEPT))
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::status_error(&resp, format!("{repo}@{reference}")));
        }
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .filter(|v| !v.is_empty());
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(Digest::parse);
        if resp
            .content_length()
            .is_some_and(|l| l > crate::storage::MAX_MANIFEST_SIZE as u64)
        {
            return Err(UpstreamError::TooLarge);
        }
        let bytes = resp.bytes().await?.to_vec();
        if bytes.len() > crate::storage::MAX_MANIFEST_SIZE {
            return Err(UpstreamError::TooLarge);
        }
        let expected = want.cloned().or(header);
        let alg = expected
            .as_ref()
            .map(|d| d.algorithm)
            .unwrap_or(crate::names::Algorithm::Sha256);
        let got = Digest::of(alg, &bytes);
        if let Some(e) = expected {
            if e != got {
                return Err(UpstreamError::Digest {
                    what: format!("manifest {repo}@{reference}"),
                    got: got.to_string(),
                    want: e.to_string(),
                });
            }
        }
        Ok(Some((ct, bytes, got)))
    }

    /// GET of a blob (or HEAD with `head`); None when the upstream does not have it. The
    /// caller streams the body and checks its digest.
    pub async fn blob(
        &self,
        repo: &str,
        d: &Digest,
        head: bool,
    ) -> Result<Option<reqwest::Response>, UpstreamError> {
        let method = if head {
            reqwest::Method::HEAD
        } else {
            reqwest::Method::GET
        };
        let resp = self.send(method, repo, &format!("blobs/{d}"), None).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::status_error(&resp, format!("{repo}@{d}")));
        }
        Ok(Some(resp))
    }

    /// The upstream's tag list (query passed through): body and Link header.
    pub async fn tags(
        &self,
        repo: &str,
        query: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, UpstreamError> {
        let path = if query.is_empty() {
            "tags/list".to_string()
        } else {
            format!("tags/list?{query}")
        };
        let resp = self.send(reqwest::Method::GET, repo, &path, None).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::status_error(&resp, format!("{repo} tags")));
        }
        let link = resp
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Some((resp.bytes().await?.to_vec(), link)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_urls() {
        let p = challenge_params(
            r#"realm="http://a/token",service="reg",scope="repository:x:pull,push""#,
        );
        assert_eq!(p["realm"], "http://a/token");
        assert_eq!(p["service"], "reg");
        assert_eq!(p["scope"], "repository:x:pull,push");
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        let cfg = |url: &str, insecure| UpstreamConfig {
            url: url.into(),
            insecure,
            ..Default::default()
        };
        assert!(Upstream::new(&cfg("http://127.0.0.1:5000", false)).is_ok());
        assert!(matches!(
            Upstream::new(&cfg("http://10.1.2.3:5000", false)),
            Err(UpstreamError::Insecure(_))
        ));
        assert!(Upstream::new(&cfg("http://10.1.2.3:5000", true)).is_ok());
        assert!(Upstream::new(&cfg("ftp://x", false)).is_err());
    }
}
