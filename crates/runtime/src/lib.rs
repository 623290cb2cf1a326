//! From container config to a running process: OCI runtime spec generation with Docker's
//! default security profile, the per-container shim (`berth-shim`, on youki's libcontainer)
//! and the async client berthd uses to talk to shims.

pub mod client;
pub mod error;
pub mod logfile;
pub mod proto;
pub mod seccomp;
pub mod spec;
pub mod stats;
pub mod trim;
pub mod user;

pub use error::{Result, RuntimeError};
