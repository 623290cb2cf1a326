//! Errors of the runtime crate.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The container's process could not be started (message as the OCI runtime said it).
    #[error("{0}")]
    StartFailed(String),
    #[error("shim: {0}")]
    Shim(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl From<RuntimeError> for berth_api::Error {
    fn from(e: RuntimeError) -> Self {
        use berth_api::Error;
        match e {
            RuntimeError::InvalidArgument(m) => Error::invalid(m),
            RuntimeError::NotFound(m) => Error::not_found(m),
            RuntimeError::Conflict(m) => Error::conflict(m),
            other => Error::internal(other.to_string()),
        }
    }
}
