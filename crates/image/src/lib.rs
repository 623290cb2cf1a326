//! Images and layers: image configs, hostile-input-safe layer unpacking into snapshots,
//! overlayfs rootfs assembly, `docker import` / `load` / `save` / `commit` / `diff`.
//!
//! Storage: the config JSON bytes as loaded (image id = their sha256) and uncompressed
//! layer tars (keyed by diff id) live in the blob store; SQLite tables `images`,
//! `image_refs` and `layers` hold the metadata; each layer is unpacked once into
//! `<root>/snapshots/<chain-id-hex>/` and stacked as an overlay lower. Errors are
//! `berth_api::Error` with docker's messages.

mod archive;
mod changes;
mod compress;
mod containerfs;
mod diff;
mod mount;
mod reference;
mod store;
mod unpack;

pub use changes::apply_changes;
pub use compress::{decompress, detect as compress_detect, Compression};
pub use containerfs::{ContainerFs, ExtractOptions, FsMount, PathStat};
pub use reference::{parse_normalized_named, parse_reference, path_match, validate_tag, Reference};
pub use store::{
    chain_ids, CommitOptions, CompressedSource, Image, ImageStore, LayerBlob, StoredManifest,
};
pub use unpack::unpack_layer;

#[cfg(test)]
mod tests;
