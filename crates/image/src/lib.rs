//! Images and layers: image configs, hostile-input-safe layer unpacking into snapshots,
//! overlayfs rootfs assembly, `docker import` / `load` / `save`.

mod archive;
mod changes;
mod compress;
mod diff;
mod mount;
mod reference;
mod store;
mod unpack;

pub use changes::apply_changes;
pub use reference::{parse_normalized_named, parse_reference, path_match, Reference};
pub use store::{chain_ids, CommitOptions, Image, ImageStore};
pub use unpack::unpack_layer;

#[cfg(test)]
mod tests;
