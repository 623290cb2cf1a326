//! Image references parsed and normalised exactly like docker's `distribution/reference`
//! (`ParseNormalizedNamed` + `TagNameOnly`), with the same error messages.

use berth_api::{Error, Result};
use std::fmt;

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A normalised reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// "docker.io/library/busybox"
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// "busybox", "user/repo", "localhost:5000/x" (docker's `FamiliarName`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// "busybox:latest", "busybox@sha256:..." (docker's `FamiliarString`).
    pub fn familiar_string(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The same reference with only its name and tag (digest dropped).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.into()),
            digest: None,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn invalid_format() -> Error {
    Error::invalid("invalid reference format")
}

/// Parses like docker and adds the default tag "latest" when there is neither a tag nor a
/// digest (docker's `ParseNormalizedNamed` followed by `TagNameOnly`).
pub fn parse_reference(s: &str) -> Result<Reference> {
    let mut r = parse_normalized_named(s)?;
    if r.tag.is_none() && r.digest.is_none() {
        r.tag = Some("latest".into());
    }
    Ok(r)
}

/// docker's `ParseNormalizedNamed`: no default tag.
pub fn parse_normalized_named(s: &str) -> Result<Reference> {
    if s.len() == 64 && is_lower_hex(s) {
        return Err(Error::invalid(format!(
            "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )));
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote_name = match remainder.find(':') {
        Some(i) => &remainder[..i],
        None => &remainder[..],
    };
    if remote_name.to_lowercase() != remote_name {
        return Err(Error::invalid(format!(
            "invalid reference format: repository name ({remote_name}) must be lowercase"
        )));
    }
    parse_full(&domain, &remainder)
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut rem) = match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            if !first.contains(['.', ':']) && first != "localhost" && first.to_lowercase() == first
            {
                (DEFAULT_DOMAIN.to_string(), name.to_string())
            } else {
                (first.to_string(), name[i + 1..].to_string())
            }
        }
        None => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !rem.contains('/') {
        rem = format!("{OFFICIAL_PREFIX}{rem}");
    }
    (domain, rem)
}

/// Validates `domain` and `rest` ("path[:tag][@digest]") against docker's grammar.
fn parse_full(domain: &str, rest: &str) -> Result<Reference> {
    let (name_tag, digest) = match rest.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (rest, None),
    };
    // A tag separator is a ':' after the last '/'.
    let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (path, tag) = match name_tag[last_slash..].find(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    let grammar_ok = valid_domain(domain)
        && !path.is_empty()
        && path.split('/').all(valid_path_component)
        && tag.is_none_or(valid_tag)
        && digest.is_none_or(valid_digest_syntax);
    if !grammar_ok {
        // docker distinguishes "would match if lowercased".
        let lower_ok = valid_domain(domain)
            && !path.is_empty()
            && path.to_lowercase().split('/').all(valid_path_component)
            && tag.is_none_or(valid_tag)
            && digest.is_none_or(valid_digest_syntax);
        if lower_ok && path.to_lowercase() != path {
            return Err(Error::invalid(
                "invalid reference format: repository name must be lowercase",
            ));
        }
        return Err(invalid_format());
    }
    if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(Error::invalid(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )));
    }
    if let Some(d) = digest {
        validate_digest(d)?;
    }
    Ok(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // IPv6 literal: "[" hex/colons "]" (":" port)?
        let Some(end) = rest.find(']') else {
            return false;
        };
        let inner = &rest[..end];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        let after = &rest[end + 1..];
        return after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
fn valid_digest_syntax(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|p| {
        let b = p.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_digest(d: &str) -> Result<()> {
    match d.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && is_lower_hex(hex) => Ok(()),
        Some(("sha256", _)) => Err(Error::invalid("invalid checksum digest length")),
        Some(("sha384" | "sha512", _)) => Ok(()),
        _ => Err(Error::invalid("unsupported digest algorithm")),
    }
}

/// Validates a tag given separately (`docker tag SRC REPO:TAG`).
pub fn validate_tag(tag: &str) -> Result<()> {
    if valid_tag(tag) {
        Ok(())
    } else {
        Err(Error::invalid("invalid tag format"))
    }
}

/// Go's `path.Match`: `*` (no '/'), `?`, `[...]` classes with ranges and `^`, `\` escapes.
/// A malformed pattern matches nothing (Go returns ErrBadPattern; docker treats it as no match).
pub fn path_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n)
}

fn glob(p: &[char], n: &[char]) -> bool {
    if p.is_empty() {
        return n.is_empty();
    }
    match p[0] {
        '*' => {
            // '*' never crosses '/'.
            let mut i = 0;
            loop {
                if glob(&p[1..], &n[i..]) {
                    return true;
                }
                if i >= n.len() || n[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        '?' => !n.is_empty() && n[0] != '/' && glob(&p[1..], &n[1..]),
        '[' => {
            if n.is_empty() || n[0] == '/' {
                return false;
            }
            let c = n[0];
            let mut i = 1;
            let negate = p.get(i) == Some(&'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let Some(&ch) = p.get(i) else { return false };
                if ch == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let (lo, next) = match class_char(p, i) {
                    Some(x) => x,
                    None => return false,
                };
                i = next;
                let mut hi = lo;
                if p.get(i) == Some(&'-') && p.get(i + 1) != Some(&']') {
                    match class_char(p, i + 1) {
                        Some((h, nx)) => {
                            hi = h;
                            i = nx;
                        }
                        None => return false,
                    }
                }
                if lo <= c && c <= hi {
                    matched = true;
                }
            }
            matched != negate && glob(&p[i..], &n[1..])
        }
        '\\' => match p.get(1) {
            Some(&e) => !n.is_empty() && n[0] == e && glob(&p[2..], &n[1..]),
            None => false,
        },
        ch => !n.is_empty() && n[0] == ch && glob(&p[1..], &n[1..]),
    }
}

fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match p.get(i)? {
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        c => Some((*c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        parse_reference(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("user/repo:tag"), "docker.io/user/repo:tag");
        assert_eq!(
            full("docker.io/library/busybox:1"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            full("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(full("quay.io/a/b/c:v1"), "quay.io/a/b/c:v1");
        assert_eq!(full("[::1]:5000/x:y"), "[::1]:5000/x:y");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_reference(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.familiar_string(), format!("busybox@{d}"));
        let r = parse_reference("localhost:5000/x").unwrap();
        assert_eq!(r.familiar_string(), "localhost:5000/x:latest");
        assert_eq!(
            parse_reference("user/repo").unwrap().familiar_name(),
            "user/repo"
        );
        assert_eq!(
            parse_reference("a__b.c-d--e_f:T_1.x-y")
                .unwrap()
                .familiar_string(),
            "a__b.c-d--e_f:T_1.x-y"
        );
    }

    #[test]
    fn rejects_like_docker() {
        let e = parse_reference("Busybox").unwrap_err();
        assert_eq!(
            e.message,
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert_eq!(e.kind, berth_api::ErrorKind::InvalidArgument);
        for bad in [
            "",
            "busybox:",
            "bus..ybox",
            "-x",
            "x-",
            "a/:b",
            "busybox:-t",
            "a@sha256:zz",
            "a___b",
            "x:y:z",
        ] {
            assert_eq!(
                parse_reference(bad).unwrap_err().message,
                "invalid reference format",
                "{bad}"
            );
        }
        let e = parse_reference(&"a".repeat(64)).unwrap_err();
        assert!(e
            .message
            .contains("cannot specify 64-byte hexadecimal strings"));
        let e = parse_reference(&format!("x/{}", "a".repeat(260))).unwrap_err();
        assert_eq!(
            e.message,
            "repository name must not be more than 255 characters"
        );
        assert!(parse_reference(&format!("busybox:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn go_path_match() {
        assert!(path_match("busy*", "busybox"));
        assert!(path_match("busybox:*", "busybox:latest"));
        assert!(!path_match("*", "user/repo"));
        assert!(path_match("*/*", "user/repo"));
        assert!(path_match("b?sy[a-c]ox", "busybox"));
        assert!(path_match("[^x]usybox", "busybox"));
        assert!(!path_match("[^b]usybox", "busybox"));
        assert!(path_match("a\\*", "a*"));
        assert!(!path_match("[", "a"));
    }
}
