//! Daemon configuration file (a subset of docker's daemon.json, same key names).

use anyhow::Context;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub debug: bool,
    /// Default log options for containers (max-size, max-file), as docker's `log-opts`.
    #[serde(default)]
    pub log_opts: HashMap<String, String>,
    pub log_driver: Option<String>,
    /// Parent cgroup of every container (absolute, cgroupfs driver).
    pub cgroup_parent: Option<String>,
    /// The default bridge's interface (docker's `bridge`, `-b`); berth creates it if missing.
    pub bridge: Option<String>,
    /// The default bridge's address and subnet, CIDR (docker's `bip`).
    pub bip: Option<String>,
    /// Path of the shim binary; defaults to `berth-shim` next to berthd.
    pub shim_path: Option<PathBuf>,
    /// Registries reached over plain http (docker's `insecure-registries`: "host:port" or
    /// CIDR; loopback registries always are).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Layers a pull downloads at once (docker's `max-concurrent-downloads`, default 3).
    pub max_concurrent_downloads: Option<usize>,
    /// Blobs a push uploads at once (docker's `max-concurrent-uploads`, default 5).
    pub max_concurrent_uploads: Option<usize>,
    /// Pull mirrors tried before any registry (docker's `registry-mirrors`; berth applies
    /// them to every registry, not only Docker Hub).
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    /// Run an init (berth-init) in every container that does not say otherwise
    /// (docker's `init`; HostConfig.Init overrides it).
    #[serde(default)]
    pub init: bool,
    /// The init binary; defaults to `berth-init` next to berthd (docker's `init-path`).
    pub init_path: Option<PathBuf>,
    /// Unknown keys are kept so a docker daemon.json loads, but they are reported.
    #[serde(flatten)]
    pub other: HashMap<String, serde_json::Value>,
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let cfg: Config = serde_json::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        for k in cfg.other.keys() {
            eprintln!("berthd: config key {k:?} is not supported yet and is ignored");
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_keys_like_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(
            &p,
            r#"{"init": true, "init-path": "/usr/libexec/docker-init"}"#,
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert!(c.init);
        assert_eq!(c.init_path, Some(PathBuf::from("/usr/libexec/docker-init")));
        assert!(c.other.is_empty());
        std::fs::write(&p, "{}").unwrap();
        assert!(!Config::load(&p).unwrap().init);
    }
}
