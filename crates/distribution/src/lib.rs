//! Registry client for the OCI distribution spec / Docker registry v2 API, and `pull`
//! into the image store.
//!
//! Manifests are kept as the registry served them (their digest is what RepoDigests and
//! "Digest:" show); every blob is verified against its digest while it streams. Layers
//! download in parallel (bounded) and are added to the store in order.

mod auth;
mod client;
mod manifest;
mod pull;
mod push;

pub use auth::{Challenge, Credentials};
pub use client::{login, registry_domain, RegistryOptions, Repository};
pub use manifest::{select_platform, Descriptor, ManifestKind, Platform};
pub use pull::{
    pull_reference, spool_dir, Progress, ProgressDetail, PullOutcome, Puller, Resolved,
};
pub use push::{push, PushOutcome};
