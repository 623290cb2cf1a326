//! Manifest and index shapes (Docker schema2 and OCI), parsed only to find what to fetch;
//! the bytes themselves are kept as served.

use berth_api::{Error, Result};
use serde::Deserialize;

pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const MT_DOCKER_SCHEMA1_PLAIN: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// The Accept header for manifest requests: every format we can pull.
pub const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    schema_version: Option<u32>,
}

/// What a manifest document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

impl ManifestKind {
    /// Parses manifest bytes; `content_type` is the response's Content-Type (the body's
    /// mediaType wins when present).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestKind> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("invalid manifest: {e}")))?;
        let ct = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let mt = raw.media_type.clone().unwrap_or(ct);
        if mt == MT_DOCKER_SCHEMA1 || mt == MT_DOCKER_SCHEMA1_PLAIN || raw.schema_version == Some(1)
        {
            return Err(Error::not_implemented(
                "Docker Image Format v1 and Docker Image manifest version 2, schema 1 are not supported",
            ));
        }
        if mt == MT_DOCKER_LIST
            || mt == MT_OCI_INDEX
            || (raw.manifests.is_some() && raw.config.is_none())
        {
            return Ok(ManifestKind::Index(raw.manifests.unwrap_or_default()));
        }
        match raw.config {
            Some(config) => Ok(ManifestKind::Image {
                config,
                layers: raw.layers.unwrap_or_default(),
            }),
            None => Err(Error::invalid(format!(
                "unsupported manifest media type {mt:?}"
            ))),
        }
    }
}

/// The Go name of this machine's architecture (what image platforms use).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Picks the entry for linux/`arch` (docker's default platform matcher, variant-agnostic
/// except that arm64 prefers v8 and an exact variant wins).
pub fn select_platform<'a>(
    manifests: &'a [Descriptor],
    arch: &str,
    variant: Option<&str>,
) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    if let Some(v) = variant {
        if let Some(d) = candidates
            .iter()
            .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == Some(v))
        {
            return Some(d);
        }
    }
    candidates.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_and_selects_platform() {
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"architecture":"arm","os":"linux","variant":"v7"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"architecture":"amd64","os":"windows"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let ManifestKind::Index(m) = ManifestKind::parse(idx, None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            select_platform(&m, "amd64", None).unwrap().digest,
            "sha256:cc"
        );
        assert_eq!(
            select_platform(&m, "arm", Some("v7")).unwrap().digest,
            "sha256:aa"
        );
        assert!(select_platform(&m, "s390x", None).is_none());

        let img = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:c","size":2},"layers":[{"mediaType":"y","digest":"sha256:l","size":3}]}"#;
        match ManifestKind::parse(
            img,
            Some("application/vnd.docker.distribution.manifest.v2+json"),
        )
        .unwrap()
        {
            ManifestKind::Image { config, layers } => {
                assert_eq!(config.digest, "sha256:c");
                assert_eq!(layers.len(), 1);
            }
            k => panic!("{k:?}"),
        }
        assert!(ManifestKind::parse(br#"{"schemaVersion":1,"name":"x"}"#, None).is_err());
    }
}
