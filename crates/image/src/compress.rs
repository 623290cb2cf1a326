//! Compression detection by magic number (docker's `archive.DetectCompression`).

use berth_api::{Error, Result};
use std::io::{Cursor, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// Wraps `r` in the decompressor its first bytes call for.
pub fn decompress<'a>(r: &'a mut dyn Read) -> Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::invalid(format!("reading archive: {e}"))),
        }
    }
    let kind = detect(&head[..n]);
    let whole = Cursor::new(head[..n].to_vec()).chain(r);
    Ok(match kind {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(whole)
                .map_err(|e| Error::invalid(format!("zstd: {e}")))?,
        ),
        Compression::Bzip2 | Compression::Xz => {
            return Err(Error::not_implemented(
                format!("{kind:?} compressed archives are not supported").to_lowercase(),
            ))
        }
    })
}
