//! Docker's registry token auth (distribution's `auth: token:`): the registry side verifies
//! `Bearer` JWTs (RS256 or ES256) against a public key, and a small token server issues them
//! (`GET /token?service=&scope=` with optional Basic auth against an htpasswd file).

use crate::auth::Htpasswd;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not an EC P-256 or RSA {kind} key in PEM")]
    Key { path: String, kind: &'static str },
    #[error("invalid --allow rule {0:?} (want REPO_GLOB=ACTIONS, e.g. 'public/*=pull')")]
    Rule(String),
}

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    /// `type:name:actions` (the name may itself contain ':' only in exotic types, so the type
    /// ends at the first ':' and the actions start after the last, as docker parses it).
    pub fn parse_scope(s: &str) -> Option<Access> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// The claims of a registry token (docker's token spec).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

impl Claims {
    /// Whether the token grants every action of `want` (a `*` action grants all).
    pub fn allows(&self, want: &Access) -> bool {
        want.actions.iter().all(|a| {
            self.access.iter().any(|g| {
                g.kind == want.kind
                    && g.name == want.name
                    && g.actions.iter().any(|x| x == a || x == "*")
            })
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TokenError> {
    std::fs::read(path).map_err(|source| TokenError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The registry's side: checks signature, issuer, audience (the service), exp and nbf.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    pub realm: String,
    pub service: String,
}

impl Verifier {
    /// `key` is the token server's public key (`openssl pkey -pubout`), EC P-256 or RSA.
    pub fn new(
        realm: &str,
        service: &str,
        issuer: &str,
        key: &Path,
    ) -> Result<Verifier, TokenError> {
        let pem = read(key)?;
        let (key, alg) = if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
            (k, Algorithm::RS256)
        } else {
            return Err(TokenError::Key {
                path: key.display().to_string(),
                kind: "public",
            });
        };
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[service]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30; // clock skew between token server and registry
        Ok(Verifier {
            key,
            validation,
            realm: realm.to_string(),
            service: service.to_string(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map(|d| d.claims)
    }

    /// `WWW-Authenticate` for a refusal: realm, service, the scope needed and, for a token
    /// that was presented, why it was refused.
    pub fn challenge(&self, scope: Option<&Access>, error: Option<&str>) -> String {
        let mut s = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm.replace('"', ""),
            self.service.replace('"', "")
        );
        if let Some(a) = scope {
            s.push_str(&format!(",scope=\"{}\"", a.scope().replace('"', "")));
        }
        if let Some(e) = error {
            s.push_str(&format!(",error=\"{e}\""));
        }
        s
    }
}

/// `*` matches any run of characters (including '/'), `?` one character.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `--allow REPO_GLOB=ACTIONS`: what anyone, anonymous or not, may do on matching repositories.
#[derive(Clone, Debug)]
pub struct Rule {
    pub glob: String,
    pub actions: Vec<String>,
}

impl std::str::FromStr for Rule {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Rule, TokenError> {
        let (glob, actions) = s
            .rsplit_once('=')
            .ok_or_else(|| TokenError::Rule(s.to_string()))?;
        let actions: Vec<String> = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if glob.is_empty() || actions.is_empty() {
            return Err(TokenError::Rule(s.to_string()));
        }
        Ok(Rule {
            glob: glob.to_string(),
            actions,
        })
    }
}

/// What the token server grants: `--allow` rules for everyone, and to an authenticated user
/// everything asked for on every repository (pull, push, delete) and the catalog.
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn grant(&self, user: Option<&str>, want: &Access) -> Access {
        let actions = want
            .actions
            .iter()
            .filter(|a| {
                if user.is_some() {
                    return matches!(
                        (want.kind.as_str(), a.as_str()),
                        ("repository", "pull" | "push" | "delete" | "*") | ("registry", "*")
                    );
                }
                want.kind == "repository"
                    && self.rules.iter().any(|r| {
                        glob_match(&r.glob, &want.name)
                            && r.actions.iter().any(|x| x == *a || x == "*")
                    })
            })
            .cloned()
            .collect();
        Access {
            kind: want.kind.clone(),
            name: want.name.clone(),
            actions,
        }
    }
}

/// The token server: signs tokens for the registry.
pub struct Issuer {
    key: EncodingKey,
    alg: Algorithm,
    issuer: String,
    expiry: u64,
    htpasswd: Option<Htpasswd>,
    policy: Policy,
}

impl Issuer {
    /// `key` is a private key in PEM: EC P-256 (PKCS#8, `openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256`) or RSA (PKCS#1 or PKCS#8).
    pub fn new(
        key: &Path,
        issuer: &str,
        expiry: u64,
        htpasswd: Option<Htpasswd>,
        policy: Policy,
    ) -> Result<Issuer, TokenError> {
        let pem = read(key)?;
        let (k, alg) = if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
            (k, Algorithm::ES256)
        } else if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
            (k, Algorithm::RS256)
        } else {
            return Err(TokenError::Key {
                path: key.display().to_string(),
                kind: "private",
            });
        };
        Ok(Issuer {
            key: k,
            alg,
            issuer: issuer.to_string(),
            expiry,
            htpasswd,
            policy,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut h = Header::new(self.alg);
        h.typ = Some("JWT".into());
        jsonwebtoken::encode(&h, claims, &self.key)
    }

    /// The router serving `GET /token`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/token", axum::routing::get(token_endpoint))
            .with_state(Arc::new(self))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn token_error(status: StatusCode, code: &str, msg: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": msg, "detail": null}]});
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            axum::http::HeaderValue::from_static("Basic realm=\"berth-registry token server\""),
        );
    }
    r
}

async fn token_endpoint(
    State(iss): State<Arc<Issuer>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let service = query
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    // Credentials given must be right (a login checks them here); none means anonymous.
    let user = match auth {
        None => None,
        Some(h) => {
            let ok = iss
                .htpasswd
                .as_ref()
                .is_some_and(|p| p.check_header(Some(h)));
            match (ok, basic_user(h)) {
                (true, Some(u)) => Some(u),
                _ => {
                    return token_error(
                        StatusCode::UNAUTHORIZED,
                        "UNAUTHORIZED",
                        "authentication required",
                    )
                }
            }
        }
    };
    // Several `scope` parameters, each possibly holding several space-separated scopes.
    let mut access: Vec<Access> = Vec::new();
    for (_, v) in query.iter().filter(|(k, _)| k == "scope") {
        for s in v.split_whitespace() {
            let Some(want) = Access::parse_scope(s) else {
                return token_error(StatusCode::BAD_REQUEST, "INVALID_SCOPE", "invalid scope");
            };
            let g = iss.policy.grant(user.as_deref(), &want);
            if !g.actions.is_empty() {
                access.push(g);
            }
        }
    }
    let t = now();
    let jti: [u8; 16] = rand::random();
    let claims = Claims {
        iss: iss.issuer.clone(),
        sub: user.clone().unwrap_or_default(),
        aud: service,
        exp: t + iss.expiry,
        nbf: t.saturating_sub(1),
        iat: t,
        jti: hex::encode(jti),
        access,
    };
    let token = match iss.sign(&claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("signing token: {e}");
            return token_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "signing failed",
            );
        }
    };
    tracing::debug!(
        "token for {:?}: {:?}",
        user,
        claims.access.iter().map(Access::scope).collect::<Vec<_>>()
    );
    let issued_at = chrono::DateTime::<chrono::Utc>::from_timestamp(t as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    axum::Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": iss.expiry,
        "issued_at": issued_at,
    }))
    .into_response()
}

fn basic_user(h: &str) -> Option<String> {
    use base64::Engine as _;
    let b64 = h
        .strip_prefix("Basic ")
        .or_else(|| h.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.split_once(':').map(|(u, _)| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_globs_and_policy() {
        let a = Access::parse_scope("repository:a/b:pull,push").unwrap();
        assert_eq!((a.kind.as_str(), a.name.as_str()), ("repository", "a/b"));
        assert_eq!(a.actions, vec!["pull", "push"]);
        assert_eq!(a.scope(), "repository:a/b:pull,push");
        assert_eq!(
            Access::parse_scope("registry:catalog:*").unwrap().actions,
            vec!["*"]
        );
        assert!(Access::parse_scope("nope").is_none());
        assert!(glob_match("public/*", "public/a/b"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("public/*", "private/a"));
        assert!(!glob_match("abc", "abcd"));
        let p = Policy {
            rules: vec!["public/*=pull".parse().unwrap()],
        };
        assert!("nothing".parse::<Rule>().is_err());
        let want = Access::parse_scope("repository:public/x:pull,push").unwrap();
        assert_eq!(p.grant(None, &want).actions, vec!["pull"]);
        assert_eq!(p.grant(Some("u"), &want).actions, vec!["pull", "push"]);
        let private = Access::parse_scope("repository:private/x:pull").unwrap();
        assert!(p.grant(None, &private).actions.is_empty());
        let claims = Claims {
            iss: "i".into(),
            sub: String::new(),
            aud: "s".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: String::new(),
            access: vec![p.grant(None, &want)],
        };
        assert!(claims.allows(&Access::parse_scope("repository:public/x:pull").unwrap()));
        assert!(!claims.allows(&want));
    }
}
