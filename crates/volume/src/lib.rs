//! Volumes and mounts.
//!
//! - [`store`]: named and anonymous volumes of the `local` driver (plain directories under
//!   `<root>/volumes/<name>/_data`, or a tmpfs / bind / device mounted there from docker's
//!   `type`/`device`/`o` options), their metadata in the daemon's SQLite, filters and prune.
//! - [`spec`]: docker's `-v`/`Binds`, `--mount`/`Mounts`, `--tmpfs` and `--volumes-from`
//!   syntax with moby's validation and error messages, and their OCI mounts.
//! - [`fsutil`]: paths inside a container rootfs resolved as the container would see them
//!   (`openat2(RESOLVE_IN_ROOT)`, so a symlink in an image can never point a mount or a
//!   copy at the host), mount point creation, the copy-up of image content into a new
//!   volume, and mount helpers.

pub mod fsutil;
pub mod spec;
pub mod store;

pub use spec::{MountPoint, MountSpec};
pub use store::{CreateRequest, Volume, VolumeStore};

/// Label docker puts on volumes created without a name.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The only driver there is.
pub const LOCAL_DRIVER: &str = "local";

/// Errors of the volume crate; each maps to one API error kind.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] berth_store::StoreError),
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

impl From<VolumeError> for berth_api::Error {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::NotFound(m) => berth_api::Error::not_found(m),
            VolumeError::Invalid(m) => berth_api::Error::invalid(m),
            VolumeError::Conflict(m) => berth_api::Error::conflict(m),
            VolumeError::Internal(m) => berth_api::Error::internal(m),
            VolumeError::Io(e) => berth_api::Error::internal(e.to_string()),
            VolumeError::Store(e) => e.into(),
        }
    }
}
