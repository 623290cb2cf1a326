//! htpasswd basic auth, bcrypt entries only (what `htpasswd -B` writes and what distribution
//! accepts).

use base64::Engine as _;
use sha2::Digest as _;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a bcrypt entry (use htpasswd -B)")]
    NotBcrypt { path: String, line: usize },
}

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256(user, password, hash) of credentials already verified: bcrypt is slow on
    /// purpose and a pull makes dozens of requests.
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Htpasswd::parse(&text).map_err(|line| HtpasswdError::NotBcrypt {
            path: path.display().to_string(),
            line,
        })
    }

    /// Parses `user:hash` lines; Err(line number) for a non-bcrypt entry.
    pub fn parse(text: &str) -> Result<Htpasswd, usize> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((u, h)) = line.split_once(':') else {
                return Err(i + 1);
            };
            if !(h.starts_with("$2y$") || h.starts_with("$2b$") || h.starts_with("$2a$")) {
                return Err(i + 1);
            }
            users.insert(u.to_string(), h.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let mut h = sha2::Sha256::new();
        for part in [user, password, hash] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        if let Ok(v) = self.verified.lock() {
            if v.contains(&key) {
                return true;
            }
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                v.insert(key);
            }
        }
        ok
    }

    /// Checks an `Authorization` header value (`Basic base64(user:password)`).
    pub fn check_header(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        let Some(b64) = v
            .strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(s) = String::from_utf8(raw) else {
            return false;
        };
        match s.split_once(':') {
            Some((u, p)) => self.check(u, p),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_entries() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# c\nberth:{hash}\n")).unwrap();
        assert!(h.check("berth", "s3cret"));
        assert!(h.check("berth", "s3cret")); // cached
        assert!(!h.check("berth", "wrong"));
        assert!(!h.check("other", "s3cret"));
        let hdr = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("berth:s3cret")
        );
        assert!(h.check_header(Some(&hdr)));
        assert!(!h.check_header(Some("Bearer x")));
        assert!(!h.check_header(None));
        assert_eq!(Htpasswd::parse("u:{SHA}abc").err(), Some(1));
    }
}
