//! Registry credentials (docker's X-Registry-Auth) and WWW-Authenticate challenges.

use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;

/// What a client sends in X-Registry-Auth (docker's `registry.AuthConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// "user:password" base64, as in ~/.docker/config.json.
    #[serde(default)]
    pub auth: String,
    /// An OAuth refresh token from `docker login` against a token server.
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    /// A bearer token to use as is.
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
}

impl Credentials {
    /// Decodes the X-Registry-Auth header: base64 (URL-safe, as docker writes it, or
    /// standard) JSON. An empty or unusable header means anonymous, as with docker.
    pub fn from_header(value: &str) -> Option<Credentials> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let bytes = engines.iter().find_map(|e| e.decode(value).ok())?;
        // Fields may be null (bollard sends every field): read them one by one.
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let mut c = Credentials {
            username: field("username"),
            password: field("password"),
            auth: field("auth"),
            identity_token: field("identitytoken"),
            registry_token: field("registrytoken"),
        };
        if c.username.is_empty() && !c.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(c.auth.trim())
                .ok()?;
            let s = String::from_utf8(decoded).ok()?;
            if let Some((u, p)) = s.split_once(':') {
                c.username = u.to_string();
                c.password = p.to_string();
            }
        }
        if c.username.is_empty() && c.identity_token.is_empty() && c.registry_token.is_empty() {
            return None;
        }
        Some(c)
    }

    /// The value of a Basic Authorization header, if there is a user name.
    pub fn basic(&self) -> Option<String> {
        if self.username.is_empty() {
            return None;
        }
        let raw = format!("{}:{}", self.username, self.password);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

/// A parsed WWW-Authenticate header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower case: "basic" or "bearer".
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// Parses `Bearer realm="https://x/token",service="x",scope="repository:a:pull"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = match header.split_once(char::is_whitespace) {
            Some((s, r)) => (s, r),
            None => (header, ""),
        };
        if scheme.is_empty() {
            return None;
        }
        let mut params = HashMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
                chars.next();
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c == ',' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            if key.is_empty() {
                break;
            }
            if chars.peek() != Some(&'=') {
                continue;
            }
            chars.next();
            let mut val = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => break,
                        c => val.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
            params.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm");
    }

    #[test]
    fn null_fields_are_empty() {
        // bollard's DockerCredentials serialises unset fields as null.
        let json = r#"{"username":"u","password":"p","auth":null,"email":null,"serveraddress":"x","identitytoken":null,"registrytoken":null}"#;
        let h = base64::engine::general_purpose::URL_SAFE.encode(json);
        let c = Credentials::from_header(&h).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
    }

    #[test]
    fn decodes_registry_auth_header() {
        let json = r#"{"username":"u","password":"p:w","serveraddress":"x"}"#;
        let h = base64::engine::general_purpose::URL_SAFE.encode(json);
        let c = Credentials::from_header(&h).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p:w"));
        assert_eq!(c.basic().unwrap(), "Basic dTpwOnc=");
        let auth = base64::engine::general_purpose::STANDARD.encode("a:b");
        let h = base64::engine::general_purpose::STANDARD.encode(format!(r#"{{"auth":"{auth}"}}"#));
        let c = Credentials::from_header(&h).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("a", "b"));
        assert!(Credentials::from_header("").is_none());
        assert!(
            Credentials::from_header(&base64::engine::general_purpose::STANDARD.encode("{}"))
                .is_none()
        );
    }
}
