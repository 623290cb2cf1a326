//! Images and layers: image configs, hostile-input-safe layer unpacking into snapshots,
//! overlayfs rootfs assembly, `docker import` / `load` / `save`.

mod reference;
mod unpack;

pub use reference::{parse_normalized_named, parse_reference, path_match, Reference};
pub use unpack::unpack_layer;
