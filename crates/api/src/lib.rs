//! Docker Engine API wire types, version constants and the one error-kind enum.
//!
//! No I/O lives here. The response models are bollard's (generated from moby's
//! `api/swagger.yaml`), re-exported as `models`, so field names match Docker exactly.

pub use bollard_stubs::models;

pub mod error;
pub mod version;

pub use error::{Error, ErrorKind, Result};
