//! Minimal stand-in for `crate::logfile::LogWriter` (owned by another helper) with the same
//! interface, so the shim can be switched over by changing one `use`. Writes Docker json-file
//! lines, one per output line; no rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub struct LogWriter {
    file: File,
}

impl LogWriter {
    pub fn open(path: &Path, _max_size: Option<u64>, _max_files: u32) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let stream = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let time = berth_runtime::proto::now_rfc3339();
        for line in data.split_inclusive(|b| *b == b'\n') {
            let rec = serde_json::json!({
                "log": String::from_utf8_lossy(line),
                "stream": stream,
                "time": time,
            });
            let mut buf = serde_json::to_vec(&rec)?;
            buf.push(b'\n');
            self.file.write_all(&buf)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
