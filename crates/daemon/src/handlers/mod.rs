//! HTTP handlers: parse, call the engine, encode. Logic lives in the state modules and the
//! engine crates.

pub mod archive;
pub mod build;
pub mod containers;
pub mod exec;
pub mod images;
pub mod networks;
pub mod stats;
pub mod system;
pub mod volumes;

use berth_api::Error;

/// Runs blocking engine work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}
