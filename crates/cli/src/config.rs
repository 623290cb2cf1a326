//! The client config file, docker's shape and place (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so `docker login` and `berth login` share credentials:
//! `auths` entries (base64 "user:password"), or a credential helper (`credsStore`,
//! `credHelpers`: `docker-credential-<name> get|store|erase`). Unknown fields are kept.

use base64::Engine;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Docker Hub's key in `auths` (and what `docker login` without a server uses).
pub const HUB_KEY: &str = "https://index.docker.io/v1/";

pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker")
}

pub fn path() -> PathBuf {
    dir().join("config.json")
}

fn load() -> Result<Map<String, Value>, String> {
    match std::fs::read(path()) {
        Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(format!(
                "loading config file {}: invalid JSON",
                path().display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(format!("loading config file {}: {e}", path().display())),
    }
}

/// Written to a temp file and renamed, mode 0600 (it holds credentials).
fn save(m: &Map<String, Value>) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = dir();
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let tmp = d.join(format!(".config.json.{}", std::process::id()));
    let data = serde_json::to_vec_pretty(&Value::Object(m.clone())).unwrap_or_default();
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("saving config file {}: {e}", path().display())
    })
}

/// The `auths` key of a registry domain ("docker.io" -> Docker Hub's URL key).
pub fn server_key(domain: &str) -> String {
    match domain {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => HUB_KEY.to_string(),
        d => d
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    }
}

/// The registry domain of an image reference (docker's rules for the first component).
pub fn image_domain(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

fn helper_for(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(|v| v.as_str())
        .or_else(|| m.get("credsStore").and_then(|v| v.as_str()))
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn run_helper(name: &str, verb: &str, input: &str) -> Result<String, String> {
    let prog = format!("docker-credential-{name}");
    let mut child = Command::new(&prog)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("error getting credentials - err: exec: \"{prog}\": {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !o.status.success() {
        return Err(format!("error getting credentials - err: {out}"));
    }
    Ok(out)
}

/// Stored credentials for a server key: (username, password).
pub fn get(key: &str) -> Option<(String, String)> {
    let m = load().ok()?;
    if let Some(h) = helper_for(&m, key) {
        let out = run_helper(&h, "get", key).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        return Some((
            v["Username"].as_str()?.to_string(),
            v["Secret"].as_str()?.to_string(),
        ));
    }
    let a = m.get("auths")?.get(key)?.get("auth")?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn store(key: &str, user: &str, password: &str) -> Result<(), String> {
    let mut m = load()?;
    if let Some(h) = helper_for(&m, key) {
        let input = json!({"ServerURL": key, "Username": user, "Secret": password}).to_string();
        run_helper(&h, "store", &input)?;
        // docker keeps an empty entry so `docker info`/logout know the server.
        let auths = m.entry("auths").or_insert_with(|| json!({}));
        if let Some(o) = auths.as_object_mut() {
            o.insert(key.to_string(), json!({}));
        }
        return save(&m);
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let auths = m.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    if let Some(o) = auths.as_object_mut() {
        o.insert(key.to_string(), json!({ "auth": auth }));
    }
    save(&m)
}

/// Removes a server's credentials; false when there were none.
pub fn erase(key: &str) -> Result<bool, String> {
    let mut m = load()?;
    let had = m
        .get("auths")
        .and_then(|a| a.as_object())
        .is_some_and(|a| a.contains_key(key));
    if let Some(h) = helper_for(&m, key) {
        let _ = run_helper(&h, "erase", key);
    }
    if let Some(a) = m.get_mut("auths").and_then(|a| a.as_object_mut()) {
        a.remove(key);
    }
    if had {
        save(&m)?;
    }
    Ok(had)
}

/// The X-Registry-Auth header value for an image (base64url JSON, as docker sends it);
/// None when not logged in to its registry.
pub fn registry_auth(image: &str) -> Option<String> {
    let key = server_key(&image_domain(image));
    let (user, password) = get(&key)?;
    let j = json!({"username": user, "password": password, "serveraddress": key}).to_string();
    Some(base64::engine::general_purpose::URL_SAFE.encode(j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_domains() {
        assert_eq!(image_domain("busybox"), "docker.io");
        assert_eq!(image_domain("user/app"), "docker.io");
        assert_eq!(image_domain("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000");
        assert_eq!(image_domain("localhost/x"), "localhost");
        assert_eq!(server_key("docker.io"), HUB_KEY);
        assert_eq!(server_key("https://reg.example:5000/"), "reg.example:5000");
    }
}
