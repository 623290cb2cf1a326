//! Embedded state: SQLite (WAL) for metadata and a content-addressed blob store.
//!
//! Every blob is written to a temp file, hashed while written, verified against the
//! expected digest, fsynced and renamed into place, so a crash never leaves a partial blob
//! under its final name.

mod blobs;
mod db;

pub use blobs::{BlobStore, BlobWriter};
pub use db::Db;

/// Errors of the store. Converted to the API error kinds by callers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {0} not found")]
    BlobNotFound(String),
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<StoreError> for berth_api::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BlobNotFound(_) => berth_api::Error::not_found(e.to_string()),
            StoreError::InvalidDigest(_) | StoreError::DigestMismatch { .. } => {
                berth_api::Error::invalid(e.to_string())
            }
            _ => berth_api::Error::internal(e.to_string()),
        }
    }
}

/// Hex of the sha256 of `data`, prefixed with "sha256:".
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Splits "sha256:<64 hex>" into its hex part, refusing anything else (so a digest can
/// never name a path outside the store).
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| StoreError::InvalidDigest(digest.to_string()))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(StoreError::InvalidDigest(digest.to_string()));
    }
    Ok(hex)
}
