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
        Compression::Bzip2 | Compression::Xz => Box::new(external(kind, whole)?),
    })
}

/// xz and bzip2 go through the host's `xz`/`bzip2` binaries, as docker does for xz.
/// The input is spooled to an unlinked temp file first so the child reads a plain fd.
fn external(kind: Compression, mut input: impl Read) -> Result<ChildReader> {
    let prog = if kind == Compression::Xz {
        "xz"
    } else {
        "bzip2"
    };
    let mut spool =
        tempfile::tempfile().map_err(|e| Error::internal(format!("spooling {prog} input: {e}")))?;
    std::io::copy(&mut input, &mut spool)
        .map_err(|e| Error::invalid(format!("reading archive: {e}")))?;
    std::io::Seek::rewind(&mut spool)?;
    let mut child = std::process::Command::new(prog)
        .args(["-d", "-c", "-q"])
        .stdin(spool)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::not_implemented(format!(
                "{prog} compressed archives need the {prog} program: {e}"
            ))
        })?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| Error::internal("no child stdout"))?;
    Ok(ChildReader { child, out, prog })
}

/// The child's stdout; at EOF a failed exit becomes a read error.
struct ChildReader {
    child: std::process::Child,
    out: std::process::ChildStdout,
    prog: &'static str,
}

impl Read for ChildReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.out.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let st = self.child.wait()?;
            if !st.success() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} failed to decompress the archive ({st})", self.prog),
                ));
            }
        }
        Ok(n)
    }
}

impl Drop for ChildReader {
    fn drop(&mut self) {
        // An abandoned read: stop the child and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `decompress` for an owned reader (the result can outlive the caller's borrow).
pub fn decompress_owned(r: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> {
    let mut r = std::io::BufReader::with_capacity(1 << 16, r);
    let head = std::io::BufRead::fill_buf(&mut r)
        .map_err(|e| Error::invalid(format!("reading archive: {e}")))?;
    Ok(match detect(head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| Error::invalid(format!("zstd: {e}")))?,
        ),
        c => {
            return Err(Error::invalid(format!(
                "unsupported layer compression: {c:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(prog: &str) {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut child = std::process::Command::new(prog)
            .args(["-c", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let d2 = data.clone();
        let t = std::thread::spawn(move || stdin.write_all(&d2).unwrap());
        let out = child.wait_with_output().unwrap();
        t.join().unwrap();
        let mut input = &out.stdout[..];
        let mut r = decompress(&mut input).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
        // Corrupt input is an error, not silent truncation.
        let mut bad = out.stdout.clone();
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        let mut input = &bad[..];
        let mut r = decompress(&mut input).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn xz_and_bzip2_via_host_tools() {
        for prog in ["xz", "bzip2"] {
            if std::process::Command::new(prog)
                .arg("--help")
                .output()
                .is_ok()
            {
                roundtrip(prog);
            }
        }
    }

    #[test]
    fn detects_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 0x08, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(b"BZh9"), Compression::Bzip2);
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(detect(b"ustar"), Compression::None);
    }
}
