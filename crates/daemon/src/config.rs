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
