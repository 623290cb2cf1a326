//! berth-registry: berth's built-in private registry, an OCI distribution-spec (v1.1) server
//! with distribution-compatible filesystem storage, htpasswd auth, TLS and garbage collection.

pub mod auth;
pub mod error;
pub mod names;
pub mod server;
pub mod storage;
pub mod token;
pub mod upstream;

pub use error::{Code, RegistryError};
pub use server::{load_tls, serve, Registry, ServerConfig, ServerError, TokenConfig};
pub use storage::{GcReport, Storage};
pub use upstream::UpstreamConfig;
