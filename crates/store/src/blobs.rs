use crate::{digest_hex, Result, StoreError};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Content-addressed blobs under `<root>/blobs/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    tmp: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl BlobStore {
    /// Opens (creating) the blob store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("blobs").join("sha256");
        let tmp = root.join("blobs").join("tmp");
        fs::create_dir_all(&dir)?;
        fs::create_dir_all(&tmp)?;
        // Leftovers of writes interrupted by a crash are garbage.
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(BlobStore { dir, tmp })
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join(digest_hex(digest)?))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    pub fn size(&self, digest: &str) -> Result<u64> {
        let p = self.path(digest)?;
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn open_blob(&self, digest: &str) -> Result<File> {
        let p = self.path(digest)?;
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound(digest.to_string())
            } else {
                e.into()
            }
        })
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut v)?;
        Ok(v)
    }

    /// Starts a streaming write; call `commit` to verify and publish it.
    pub fn writer(&self) -> Result<BlobWriter> {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{}-{}", std::process::id(), n));
        let file = File::create(&path)?;
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Sha256::new(),
            size: 0,
            dir: self.dir.clone(),
        })
    }

    /// Stores `data`, returning its digest.
    pub fn put(&self, data: &[u8]) -> Result<String> {
        let mut w = self.writer()?;
        w.write_all(data)?;
        w.commit(None)
    }

    /// Publishes a file already verified to hold `digest` (a pull's spooled download) by
    /// renaming it into place; the file must be on the blob store's filesystem.
    pub fn adopt(&self, src: &Path, digest: &str) -> Result<()> {
        let dest = self.path(digest)?;
        if dest.exists() {
            fs::remove_file(src)?;
            return Ok(());
        }
        File::open(src)?.sync_all()?;
        if fs::rename(src, &dest).is_err() {
            // Another filesystem: copy (verifying again) instead.
            let mut w = self.writer()?;
            io::copy(&mut File::open(src)?, &mut w)?;
            w.commit(Some(digest))?;
            fs::remove_file(src)?;
        }
        Ok(())
    }

    /// Removes a blob; a missing blob is not an error.
    pub fn delete(&self, digest: &str) -> Result<()> {
        match fs::remove_file(self.path(digest)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// All stored digests.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            if let Some(n) = e.file_name().to_str() {
                out.push(format!("sha256:{n}"));
            }
        }
        Ok(out)
    }
}

/// A blob being written: hashes as it goes, lands under its digest on `commit`.
pub struct BlobWriter {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    dir: PathBuf,
}

impl BlobWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies the digest (if `expected` is given), fsyncs and renames into place.
    pub fn commit(mut self, expected: Option<&str>) -> Result<String> {
        let mut buf = self.file.take().expect("writer used after commit");
        buf.flush()?;
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(exp) = expected {
            if exp != actual {
                let _ = fs::remove_file(&self.path);
                return Err(StoreError::DigestMismatch {
                    expected: exp.to_string(),
                    actual,
                });
            }
        }
        let dest = self.dir.join(digest_hex(&actual)?);
        fs::rename(&self.path, &dest)?;
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("committed"))?;
        let n = f.write(data)?;
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_verify() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path()).unwrap();
        let dg = s.put(b"hello").unwrap();
        assert_eq!(dg, crate::sha256_digest(b"hello"));
        assert_eq!(s.read(&dg).unwrap(), b"hello");
        let mut w = s.writer().unwrap();
        w.write_all(b"x").unwrap();
        let wrong = crate::sha256_digest(b"y");
        assert!(matches!(
            w.commit(Some(&wrong)),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!s.has(&wrong));
        assert!(s.path("sha256:../../etc").is_err());
        assert_eq!(fs::read_dir(d.path().join("blobs/tmp")).unwrap().count(), 0);
    }
}
