//! json-file logs in Docker's exact format (moby `daemon/logger/jsonfilelog`):
//! one `{"log":"...","stream":"stdout","time":"<RFC3339Nano>"}` object per line, lines
//! longer than 16 KiB split into partial entries without `\n`, rotation to
//! `<path>.1`..`<path>.N-1`. The writer is synchronous (the shim's); the reader and
//! the follower serve berthd.
//!
//! Both sides are hand-written for speed: the writer escapes straight into a reused
//! buffer, the reader recognises our own field layout and only falls back to a JSON
//! parser for lines written otherwise (e.g. by Docker with `attrs`).

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use tokio::sync::mpsc;

use crate::error::{Result, RuntimeError};

/// Docker's copier splits lines at this size (moby `daemon/logger/copier.go` bufSize).
pub const MAX_PARTIAL: usize = 16 * 1024;
const WRITE_BUF: usize = 256 * 1024;
const FOLLOW_POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Writes a container's output as Docker's json-file driver does.
pub struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
    partial: [Vec<u8>; 2],
    line: Vec<u8>,
    clock: Clock,
    /// The time stamped on the entries of the current `write` (RFC 3339, nanoseconds).
    ts: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`. `max_size` in bytes (`None`: no
    /// rotation); `max_files` counts `path` itself, as docker's `max-file`.
    pub fn open(path: &Path, max_size: Option<u64>, max_files: u32) -> std::io::Result<Self> {
        let f = open_log(path)?;
        let size = f.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(WRITE_BUF, f),
            size,
            max_size: max_size.filter(|m| *m > 0),
            max_files: max_files.max(1),
            partial: [Vec::new(), Vec::new()],
            line: Vec::with_capacity(MAX_PARTIAL * 2),
            clock: Clock::default(),
            ts: Vec::with_capacity(32),
        })
    }

    /// Logs `data` read from the container's `stream`. Complete lines are written at
    /// once; the rest waits for its newline (or for 16 KiB, then goes out as partial).
    /// All lines of one call carry one time stamp: the time the daemon read them (docker takes
    /// one per line, microseconds apart within one read; a clock read per 100-byte line was a
    /// visible share of the shim's time for chatty containers).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        self.stamp();
        let i = stream.index();
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(pos + 1);
            if self.partial[i].is_empty() {
                self.emit_split(stream, line, true)?;
            } else {
                let mut p = std::mem::take(&mut self.partial[i]);
                p.extend_from_slice(line);
                let r = self.emit_split(stream, &p, true);
                p.clear();
                self.partial[i] = p;
                r?;
            }
            rest = tail;
        }
        if !rest.is_empty() {
            let mut p = std::mem::take(&mut self.partial[i]);
            p.extend_from_slice(rest);
            let r = self.emit_split(stream, &p, false);
            self.partial[i] = p;
            let kept = r?;
            self.partial[i].drain(..kept);
        }
        Ok(())
    }

    /// Emits `data` in 16 KiB pieces as Docker's copier does. With `complete`, all of it
    /// goes out; otherwise a last piece shorter than 16 KiB stays: returns how many
    /// bytes were written.
    fn emit_split(
        &mut self,
        stream: Stream,
        data: &[u8],
        complete: bool,
    ) -> std::io::Result<usize> {
        let mut start = 0;
        while data.len() - start > MAX_PARTIAL || (!complete && data.len() - start == MAX_PARTIAL) {
            self.emit(stream, &data[start..start + MAX_PARTIAL])?;
            start += MAX_PARTIAL;
        }
        if complete && start < data.len() {
            self.emit(stream, &data[start..])?;
            start = data.len();
        }
        Ok(start)
    }

    /// Writes out a stream's pending partial line (as Docker does when the stream ends).
    pub fn finish_stream(&mut self, stream: Stream) -> std::io::Result<()> {
        let p = std::mem::take(&mut self.partial[stream.index()]);
        if !p.is_empty() {
            self.stamp();
            self.emit(stream, &p)?;
        }
        Ok(())
    }

    /// Hands everything buffered to the kernel (readers see it after this). Pending
    /// partial lines stay pending; see [`LogWriter::finish_stream`].
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Ends both streams and flushes: call when the container's output is closed.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.finish_stream(Stream::Stdout)?;
        self.finish_stream(Stream::Stderr)?;
        self.flush()
    }

    fn emit(&mut self, stream: Stream, log: &[u8]) -> std::io::Result<()> {
        // Docker checks the size before writing, so a file may end past max-size.
        if let Some(max) = self.max_size {
            if self.size >= max {
                self.rotate()?;
            }
        }
        let line = &mut self.line;
        line.clear();
        line.extend_from_slice(b"{\"log\":\"");
        escape_json(log, line);
        line.extend_from_slice(match stream {
            Stream::Stdout => b"\",\"stream\":\"stdout\",\"time\":\"",
            Stream::Stderr => b"\",\"stream\":\"stderr\",\"time\":\"",
        });
        line.extend_from_slice(&self.ts);
        line.extend_from_slice(b"\"}\n");
        self.out.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn stamp(&mut self) {
        self.ts.clear();
        self.clock.now_rfc3339nano(&mut self.ts);
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.max_files < 2 {
            let f = self.out.get_mut();
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        let name = |n: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        let last = name(self.max_files - 1);
        match std::fs::remove_file(&last) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (2..self.max_files).rev() {
            match std::fs::rename(name(n - 1), name(n)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, name(1))?;
        self.out = BufWriter::with_capacity(WRITE_BUF, open_log(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Formats wall-clock time as Go's `time.RFC3339Nano` in UTC (trailing zeros of the
/// fraction trimmed), re-rendering the date part only when the second changes.
#[derive(Default)]
struct Clock {
    sec: i64,
    prefix: Vec<u8>,
}

impl Clock {
    fn now_rfc3339nano(&mut self, out: &mut Vec<u8>) {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.format(d.as_secs() as i64, d.subsec_nanos(), out);
    }

    fn format(&mut self, sec: i64, nanos: u32, out: &mut Vec<u8>) {
        if self.prefix.is_empty() || sec != self.sec {
            self.sec = sec;
            self.prefix.clear();
            let dt = Utc.timestamp_opt(sec, 0).single().unwrap_or_default();
            let _ = write!(self.prefix, "{}", dt.format("%Y-%m-%dT%H:%M:%S"));
        }
        out.extend_from_slice(&self.prefix);
        if nanos != 0 {
            let mut digits = [0u8; 9];
            let mut n = nanos;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let mut len = 9;
            while digits[len - 1] == b'0' {
                len -= 1;
            }
            out.push(b'.');
            out.extend_from_slice(&digits[..len]);
        }
        out.push(b'Z');
    }
}

/// 0: copy as is; 1: ASCII that needs escaping; 2: start of a non-ASCII sequence.
static ESCAPE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i >= 0x80 {
            2
        } else if i < 0x20
            || i == b'"' as usize
            || i == b'\\' as usize
            || i == b'<' as usize
            || i == b'>' as usize
            || i == b'&' as usize
        {
            1
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Whether any of the 8 bytes in `x` is not plain (class 0 in `ESCAPE_CLASS`); the
/// classic SWAR zero-byte tests, exact for "is there any".
#[inline]
fn needs_escape8(x: u64) -> bool {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(L) & !v & H;
    let below_space = x.wrapping_sub(L * 0x20) & !x & H;
    let hits = (x & H)
        | below_space
        | has_zero(x ^ (L * b'"' as u64))
        | has_zero(x ^ (L * b'\\' as u64))
        | has_zero(x ^ (L * b'<' as u64))
        | has_zero(x ^ (L * b'>' as u64))
        | has_zero(x ^ (L * b'&' as u64));
    hits != 0
}

/// JSON string escaping exactly as moby's jsonlog (`ffjsonWriteJSONBytesAsString`):
/// `<`, `>`, `&` and control characters other than `\n`/`\r` as `\u00XX`, invalid UTF-8
/// as `\ufffd`, U+2028/U+2029 escaped.
pub fn escape_json(s: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        // Skip plain text eight bytes at a time.
        while i + 8 <= s.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[i..i + 8]);
            if needs_escape8(u64::from_le_bytes(w)) {
                break;
            }
            i += 8;
        }
        let Some(&b) = s.get(i) else { break };
        match ESCAPE_CLASS[b as usize] {
            0 => i += 1,
            1 => {
                out.extend_from_slice(&s[start..i]);
                match b {
                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 0xf) as usize],
                    ]),
                }
                i += 1;
                start = i;
            }
            _ => {
                let width = match b {
                    0xC2..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF4 => 4,
                    _ => 0,
                };
                let valid = width > 0
                    && i + width <= s.len()
                    && std::str::from_utf8(&s[i..i + width]).is_ok();
                if !valid {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(b"\\ufffd");
                    i += 1;
                    start = i;
                } else if width == 3
                    && s[i] == 0xE2
                    && s[i + 1] == 0x80
                    && (s[i + 2] & 0xFE) == 0xA8
                {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(b"\\u202");
                    out.push(HEX[(s[i + 2] & 0xf) as usize]);
                    i += 3;
                    start = i;
                } else {
                    i += width;
                }
            }
        }
    }
    out.extend_from_slice(&s[start..]);
}

// ---------------------------------------------------------------------------------
// Reading

/// One log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: DateTime<Utc>,
    /// The bytes the container wrote, with its `\n` (none for a partial entry).
    pub line: Vec<u8>,
}

/// What to read, as `docker logs` asks for it.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub tail: Option<usize>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            stdout: true,
            stderr: true,
            since: None,
            until: None,
            tail: None,
        }
    }
}

impl ReadOptions {
    fn wants(&self, stream: Stream) -> bool {
        match stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        }
    }
}

#[derive(serde::Deserialize)]
struct JsonLog {
    log: String,
    stream: String,
    time: DateTime<Utc>,
}

/// Parses one json-file line (with or without its trailing `\n`) into `line_out`.
pub fn parse_line(raw: &[u8], line_out: &mut Vec<u8>) -> Option<(Stream, DateTime<Utc>)> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    line_out.clear();
    // One allocation per entry: the escaped text is never shorter than the bytes.
    line_out.reserve(raw.len());
    if let Some(r) = parse_fast(raw, line_out) {
        return Some(r);
    }
    let j: JsonLog = serde_json::from_slice(raw).ok()?;
    let stream = match j.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    line_out.clear();
    line_out.extend_from_slice(j.log.as_bytes());
    Some((stream, j.time))
}

fn parse_fast(raw: &[u8], out: &mut Vec<u8>) -> Option<(Stream, DateTime<Utc>)> {
    let s = raw.strip_prefix(b"{\"log\":\"")?;
    let n = unescape_until_quote(s, out)?;
    let rest = &s[n..];
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b",\"stream\":\"stdout\",\"time\":\"") {
        (Stream::Stdout, r)
    } else if let Some(r) = rest.strip_prefix(b",\"stream\":\"stderr\",\"time\":\"") {
        (Stream::Stderr, r)
    } else {
        return None;
    };
    let ts = rest.strip_suffix(b"\"}")?;
    Some((stream, parse_time(ts)?))
}

/// Unescapes a JSON string body up to its closing quote; returns the bytes consumed
/// including that quote.
fn unescape_until_quote(s: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let mut i = 0;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', &s[i..])?;
        out.extend_from_slice(&s[i..j]);
        if s[j] == b'"' {
            return Some(j + 1);
        }
        let esc = *s.get(j + 1)?;
        i = j + 2;
        match esc {
            b'"' | b'\\' | b'/' => out.push(esc),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'u' => {
                let hi = hex4(s.get(i..i + 4)?)?;
                i += 4;
                let c = if (0xD800..0xDC00).contains(&hi) {
                    match s.get(i..i + 6) {
                        Some([b'\\', b'u', rest @ ..]) => match hex4(rest) {
                            Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                            }
                            _ => None,
                        },
                        _ => None,
                    }
                } else {
                    char::from_u32(hi)
                };
                let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` by hand; anything else through chrono's RFC 3339.
fn parse_time(b: &[u8]) -> Option<DateTime<Utc>> {
    let fast = || -> Option<DateTime<Utc>> {
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
            return None;
        }
        if b[16] != b':' || *b.last()? != b'Z' {
            return None;
        }
        let frac = &b[19..b.len() - 1];
        let nanos = match frac {
            [] => 0,
            [b'.', d @ ..] if !d.is_empty() && d.len() <= 9 => {
                digits(d)? * 10u32.pow(9 - d.len() as u32)
            }
            _ => return None,
        };
        let date = NaiveDate::from_ymd_opt(
            digits(&b[0..4])? as i32,
            digits(&b[5..7])?,
            digits(&b[8..10])?,
        )?;
        let t = date.and_hms_nano_opt(
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
            nanos,
        )?;
        Some(t.and_utc())
    };
    fast().or_else(|| {
        DateTime::parse_from_rfc3339(std::str::from_utf8(b).ok()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The log files oldest first: `<path>.N` .. `<path>.1`, `<path>`.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for n in 1.. {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        let p = PathBuf::from(s);
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    rotated.push(path.to_path_buf());
    rotated
}

/// Byte offset in `f` (of `len` bytes) where its last `n` complete lines start, and how
/// many complete lines it holds from there (fewer than `n` if it has fewer).
fn tail_offset(f: &mut File, len: u64, n: usize) -> std::io::Result<(u64, usize)> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = len;
    let mut newlines = 0usize; // newlines seen, from the end
                               // Bytes after the last newline are an unfinished line: not counted.
    let mut seen_first = false;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        for (i, &c) in chunk.iter().enumerate().rev() {
            if c != b'\n' {
                continue;
            }
            if !seen_first {
                seen_first = true;
                newlines = 1;
                continue;
            }
            if newlines == n {
                return Ok((start + i as u64 + 1, n));
            }
            newlines += 1;
        }
        end = start;
    }
    Ok((0, newlines))
}

/// Where reading stopped: the newest file and the offset after its last complete line;
/// `done` when `until` was passed or the consumer stopped.
struct Position {
    file: Option<File>,
    offset: u64,
    done: bool,
}

/// Reads complete lines of `f` from `offset`, handing each entry to `sink`; returns the
/// offset after the last complete line and false if `until` or `sink` stopped it.
/// Lines are parsed in place in a large buffer: no copy per line besides the entry's.
fn read_lines(
    f: &mut File,
    offset: u64,
    opts: &ReadOptions,
    buf_size: usize,
    mut sink: impl FnMut(LogEntry) -> bool,
) -> std::io::Result<(u64, bool)> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; buf_size];
    let mut filled = 0usize;
    let mut base = offset; // file offset of buf[0]
    let mut line = Vec::new();
    loop {
        let n = f.read(&mut buf[filled..])?;
        filled += n;
        let mut start = 0usize;
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..filled]) {
            let raw = &buf[start..start + nl + 1];
            start += nl + 1;
            let Some((stream, time)) = parse_line(raw, &mut line) else {
                continue; // a corrupt line (e.g. after a crash) is skipped, as Docker does
            };
            if let Some(u) = opts.until {
                if time > u {
                    return Ok((base + start as u64, false));
                }
            }
            if !opts.wants(stream) || opts.since.is_some_and(|s| time < s) {
                continue;
            }
            let entry = LogEntry {
                stream,
                time,
                line: std::mem::take(&mut line),
            };
            if !sink(entry) {
                return Ok((base + start as u64, false));
            }
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        base += start as u64;
        if n == 0 {
            return Ok((base, true));
        }
        if filled == buf.len() {
            // One line longer than the buffer.
            buf.resize(buf.len() * 2, 0);
        }
    }
}

fn read_all_pos(
    path: &Path,
    opts: &ReadOptions,
    mut sink: impl FnMut(LogEntry) -> bool,
) -> std::io::Result<Position> {
    let files = log_files(path);
    // Docker's tail counts lines of the files before filtering by stream and since.
    let mut starts: Vec<u64> = vec![0; files.len()];
    let mut first = 0;
    if let Some(n) = opts.tail {
        let mut need = n;
        first = files.len();
        for (i, p) in files.iter().enumerate().rev() {
            if need == 0 {
                break;
            }
            let Ok(mut f) = File::open(p) else { continue };
            let len = f.metadata()?.len();
            let (off, got) = tail_offset(&mut f, len, need)?;
            starts[i] = off;
            first = i;
            need -= got;
        }
    }
    let mut pos = Position {
        file: None,
        offset: 0,
        done: false,
    };
    let last = files.len() - 1;
    for (i, p) in files.iter().enumerate().skip(first) {
        let mut f = match File::open(p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let (off, more) = read_lines(&mut f, starts[i], opts, 1 << 20, &mut sink)?;
        if !more {
            pos.done = true;
            return Ok(pos);
        }
        if i == last {
            pos.file = Some(f);
            pos.offset = off;
        }
    }
    if opts.tail == Some(0) {
        // Nothing was read; following starts at the end.
        if let Ok(mut f) = File::open(path) {
            pos.offset = complete_end(&mut f)?;
            pos.file = Some(f);
        }
    }
    Ok(pos)
}

/// The offset just after the last newline of `f` (skipping a line being written).
fn complete_end(f: &mut File) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = f.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Like [`read_all`] but hands each entry to `sink` as it is read (no big `Vec` for a
/// big log); `sink` returns false to stop.
pub fn read_each(
    path: &Path,
    opts: &ReadOptions,
    sink: impl FnMut(LogEntry) -> bool,
) -> std::io::Result<()> {
    read_all_pos(path, opts, sink).map(|_| ())
}

/// All entries of the log at `path`, rotated files included, oldest first.
pub fn read_all(path: &Path, opts: &ReadOptions) -> std::io::Result<Vec<LogEntry>> {
    let mut out = Vec::new();
    read_all_pos(path, opts, |e| {
        out.push(e);
        true
    })?;
    Ok(out)
}

/// Docker's `--since`/`--until` value (moby `api/types/time.GetTimestamp`): RFC 3339
/// (with or without zone, date only), a unix timestamp with optional fraction, or a
/// Go duration before `now` (`10m`, `1h30m`).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let s = s.trim();
    // moby api/types/time.GetTimestamp's wording.
    let bad = || {
        RuntimeError::InvalidArgument(format!("failed to parse value as time or duration: {s:?}"))
    };
    if s.is_empty() {
        return Err(bad());
    }
    if s != "0" {
        if let Some(d) = parse_go_duration(s) {
            return Ok(now - d);
        }
    }
    if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
        let sec: i64 = sec.parse().map_err(|_| bad())?;
        let nanos: u32 = if frac.is_empty() {
            0
        } else {
            if frac.len() > 9 {
                return Err(bad());
            }
            frac.parse::<u32>().map_err(|_| bad())? * 10u32.pow(9 - frac.len() as u32)
        };
        return Utc.timestamp_opt(sec, nanos).single().ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // Zone-less forms are local time in Docker; the daemon runs in UTC.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).ok_or_else(bad);
    }
    Err(bad())
}

/// Go's `time.ParseDuration` (units ns us µs ms s m h; decimals; optional sign).
fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n_end == 0 {
            return None;
        }
        let num: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ns = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += num * ns;
    }
    let d = chrono::Duration::nanoseconds(total as i64);
    Some(if neg { -d } else { d })
}

// ---------------------------------------------------------------------------------
// Following

struct Follower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    opts: ReadOptions,
}

impl Follower {
    /// Reads what is new (switching to the new file after a rotation); returns the
    /// entries and whether `until` was passed.
    fn poll(&mut self) -> std::io::Result<(Vec<LogEntry>, bool)> {
        let mut out = Vec::new();
        loop {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => {
                        self.file = Some(f);
                        self.offset = 0;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, false)),
                    Err(e) => return Err(e),
                }
            }
            let Some(f) = self.file.as_mut() else {
                return Ok((out, false));
            };
            let meta = f.metadata()?;
            if meta.len() < self.offset {
                // Truncated in place (max-file=1).
                self.offset = 0;
            }
            let mut budget = 8192usize;
            let (off, more) = read_lines(f, self.offset, &self.opts, 64 * 1024, |e| {
                out.push(e);
                budget -= 1;
                budget > 0
            })?;
            self.offset = off;
            if !more && budget > 0 {
                return Ok((out, true)); // until passed
            }
            if budget == 0 {
                return Ok((out, false)); // more to come; send these first
            }
            // At the end of this file: has `path` been rotated away from under us?
            match std::fs::metadata(&self.path) {
                Ok(m) if m.ino() != meta.ino() || m.dev() != meta.dev() => {
                    self.file = self.next_file(&meta)?;
                    self.offset = 0;
                    continue;
                }
                _ => return Ok((out, false)),
            }
        }
    }
}

impl Follower {
    /// The file written after `current` (now `<path>.k`): `<path>.(k-1)`, or `<path>`
    /// for k = 1. If `current` is gone (rotated out), the oldest file left.
    fn next_file(&self, current: &std::fs::Metadata) -> std::io::Result<Option<File>> {
        let files = log_files(&self.path); // oldest first, `path` last
        let same = |p: &PathBuf| {
            std::fs::metadata(p).is_ok_and(|m| m.ino() == current.ino() && m.dev() == current.dev())
        };
        let next = match files.iter().position(same) {
            Some(i) => files.get(i + 1),
            None => files.first(),
        };
        match next.map(File::open) {
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }
}

async fn run_follower(
    mut fl: Follower,
    stop: impl Future<Output = ()> + Send + 'static,
    tx: mpsc::Sender<LogEntry>,
) {
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        let polled = tokio::task::spawn_blocking(move || {
            let r = fl.poll();
            (fl, r)
        })
        .await;
        let Ok((back, result)) = polled else { return };
        fl = back;
        let Ok((entries, until_passed)) = result else {
            return;
        };
        let got = !entries.is_empty();
        for e in entries {
            if tx.send(e).await.is_err() {
                return; // reader went away
            }
        }
        if until_passed || (stopping && !got) {
            return;
        }
        if got {
            continue;
        }
        tokio::select! {
            _ = &mut stop, if !stopping => stopping = true,
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

/// Follows the log from its current end: entries appended after this call (i.e. after
/// where a `read_all` just before stopped), until `stop` resolves and what was written
/// before it is drained. Prefer [`read_and_follow`], which has no gap between the two.
pub fn follow(
    path: PathBuf,
    opts: ReadOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> mpsc::Receiver<LogEntry> {
    let (tx, rx) = mpsc::channel(1024);
    let (file, offset) = match File::open(&path) {
        Ok(mut f) => {
            let off = complete_end(&mut f).unwrap_or(0);
            (Some(f), off)
        }
        Err(_) => (None, 0),
    };
    let fl = Follower {
        path,
        file,
        offset,
        opts,
    };
    tokio::spawn(run_follower(fl, stop, tx));
    rx
}

/// `docker logs --follow`: what `read_all(opts)` returns, then everything appended,
/// with nothing lost or repeated in between; ends as [`follow`] does.
pub fn read_and_follow(
    path: PathBuf,
    opts: ReadOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> mpsc::Receiver<LogEntry> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let tx2 = tx.clone();
        let p = path.clone();
        let o = opts.clone();
        // The initial read runs on a blocking thread and streams through the channel.
        let pos = tokio::task::spawn_blocking(move || {
            read_all_pos(&p, &o, |e| tx2.blocking_send(e).is_ok())
        })
        .await;
        let Ok(Ok(pos)) = pos else { return };
        if pos.done {
            return;
        }
        let fl = Follower {
            path,
            file: pos.file,
            offset: pos.offset,
            opts: ReadOptions { tail: None, ..opts },
        };
        run_follower(fl, stop, tx).await;
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut v = Vec::new();
        escape_json(s, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_like_docker() {
        assert_eq!(esc(b"plain text"), "plain text");
        assert_eq!(esc(b"a\"b\\c\n\r\t"), r#"a\"b\\c\n\r\u0009"#);
        assert_eq!(esc(b"<a&b>"), r"\u003ca\u0026b\u003e");
        assert_eq!(esc(b"\x00\x1b\x7f"), "\\u0000\\u001b\x7f");
        assert_eq!(esc("héllo €😀".as_bytes()), "héllo €😀");
        assert_eq!(esc(b"bad\xff\xfe!"), r"bad\ufffd\ufffd!");
        assert_eq!(esc(b"trunc\xe2\x82"), r"trunc\ufffd\ufffd");
        assert_eq!(esc(b"\xed\xa0\x80"), r"\ufffd\ufffd\ufffd"); // surrogate
        assert_eq!(esc("a\u{2028}b\u{2029}".as_bytes()), r"a\u2028b\u2029");
        // And back.
        for s in [&b"a\"b\\c\n\r\t<>&\x01"[..], "x😀\u{2028}".as_bytes()] {
            let mut line = Vec::new();
            let raw = format!(
                "{{\"log\":\"{}\",\"stream\":\"stdout\",\"time\":\"2026-11-27T21:00:00.1Z\"}}\n",
                esc(s)
            );
            parse_line(raw.as_bytes(), &mut line).unwrap();
            assert_eq!(line, s);
        }
    }

    #[test]
    fn swar_agrees_with_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                assert_eq!(
                    needs_escape8(u64::from_le_bytes(w)),
                    ESCAPE_CLASS[b as usize] != 0,
                    "byte {b:#x} at {pos}"
                );
            }
        }
        let long = "0123456789abcdef\"<é>\n".repeat(3);
        assert_eq!(
            esc(long.as_bytes()),
            r#"0123456789abcdef\"\u003cé\u003e\n"#.repeat(3)
        );
    }

    #[test]
    fn time_format() {
        let mut c = Clock::default();
        let mut out = Vec::new();
        c.format(0, 123_456_789, &mut out);
        out.push(b' ');
        c.format(1_795_813_200, 120_000_000, &mut out);
        out.push(b' ');
        c.format(1_795_813_200, 0, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.123456789Z 2026-11-27T21:00:00.12Z 2026-11-27T21:00:00Z"
        );
        let t = parse_time(b"2026-11-27T21:00:00.12Z").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 120_000_000);
        assert_eq!(
            parse_time(b"2026-11-27T22:00:00+01:00")
                .unwrap()
                .timestamp(),
            1_795_813_200
        );
    }

    #[test]
    fn writes_docker_lines_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut w = LogWriter::open(&p, None, 1).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\n").unwrap();
        w.write(Stream::Stdout, b"lo\nwor").unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with(r#"{"log":"oops\n","stream":"stderr","time":"20"#));
        assert!(lines[1].starts_with(r#"{"log":"hello\n","stream":"stdout","time":""#));
        assert!(lines[2].starts_with(r#"{"log":"wor","stream":"stdout","time":""#));
        assert!(lines.iter().all(|l| l.ends_with(r#"Z"}"#)));
        let all = read_all(&p, &ReadOptions::default()).unwrap();
        let got: Vec<(Stream, &[u8])> = all.iter().map(|e| (e.stream, &e.line[..])).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, &b"oops\n"[..]),
                (Stream::Stdout, b"hello\n"),
                (Stream::Stdout, b"wor")
            ]
        );
        let only_out = read_all(
            &p,
            &ReadOptions {
                stderr: false,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(only_out.len(), 2);
        assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn long_lines_split_at_16k() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = LogWriter::open(&p, None, 1).unwrap();
        let mut big = vec![b'x'; 40 * 1024];
        big.push(b'\n');
        w.write(Stream::Stdout, &big[..1000]).unwrap();
        w.write(Stream::Stdout, &big[1000..]).unwrap();
        w.write(Stream::Stdout, &vec![b'y'; MAX_PARTIAL + 5])
            .unwrap();
        w.flush().unwrap();
        let e = read_all(&p, &ReadOptions::default()).unwrap();
        let lens: Vec<usize> = e.iter().map(|e| e.line.len()).collect();
        assert_eq!(
            lens,
            vec![MAX_PARTIAL, MAX_PARTIAL, 8 * 1024 + 1, MAX_PARTIAL]
        );
        assert_eq!(
            e.iter().map(|e| e.line.len()).take(3).sum::<usize>(),
            big.len()
        );
        drop(w); // finish: the 5 pending bytes go out as a partial entry
        assert_eq!(read_all(&p, &ReadOptions::default()).unwrap().len(), 5);
    }

    fn write_n(w: &mut LogWriter, from: usize, to: usize) {
        for i in from..to {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.flush().unwrap();
    }

    fn numbers(e: &[LogEntry]) -> Vec<usize> {
        e.iter()
            .map(|e| {
                let s = std::str::from_utf8(&e.line).unwrap();
                s.trim_end().trim_start_matches("line ").parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn rotation_and_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = LogWriter::open(&p, Some(300), 3).unwrap();
        write_n(&mut w, 0, 50);
        assert!(d.path().join("log.1").exists());
        assert!(d.path().join("log.2").exists());
        assert!(!d.path().join("log.3").exists());
        for f in ["log", "log.1"] {
            // Docker rotates once the size reached max before a write: one line over.
            assert!(std::fs::metadata(d.path().join(f)).unwrap().len() < 300 + 100);
        }
        let all = numbers(&read_all(&p, &ReadOptions::default()).unwrap());
        assert_eq!(*all.last().unwrap(), 49);
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        assert!(all.len() < 50);
        let tail = |n| {
            numbers(
                &read_all(
                    &p,
                    &ReadOptions {
                        tail: Some(n),
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        };
        assert_eq!(tail(3), vec![47, 48, 49]);
        assert_eq!(tail(0), Vec::<usize>::new());
        assert_eq!(tail(all.len() - 1), all[1..].to_vec()); // crosses rotated files
        assert_eq!(tail(10_000), all);

        // max-file 1 truncates in place.
        let p1 = d.path().join("single");
        let mut w = LogWriter::open(&p1, Some(100), 1).unwrap();
        write_n(&mut w, 0, 20);
        assert!(!d.path().join("single.1").exists());
        assert_eq!(
            *numbers(&read_all(&p1, &ReadOptions::default()).unwrap())
                .last()
                .unwrap(),
            19
        );
    }

    #[test]
    fn since_until_and_foreign_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut text = String::new();
        for (i, t) in [
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:02.5Z",
            "2026-01-01T00:00:03Z",
        ]
        .iter()
        .enumerate()
        {
            text.push_str(&format!(
                "{{\"log\":\"line {i}\\n\",\"stream\":\"stdout\",\"time\":\"{t}\"}}\n"
            ));
        }
        // Docker with --log-opt labels=...: attrs between stream and time.
        text.push_str(
            "{\"log\":\"line 3\\n\",\"stream\":\"stderr\",\"attrs\":{\"a\":\"b\"},\"time\":\"2026-01-01T00:00:04Z\"}\n",
        );
        text.push_str("garbage\n{\"log\":\"unfinished");
        std::fs::write(&p, text).unwrap();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let r = |o: ReadOptions| numbers(&read_all(&p, &o).unwrap());
        assert_eq!(r(ReadOptions::default()), vec![0, 1, 2, 3]);
        assert_eq!(
            r(ReadOptions {
                since: Some(t("2026-01-01T00:00:02Z")),
                ..Default::default()
            }),
            vec![1, 2, 3]
        );
        assert_eq!(
            r(ReadOptions {
                until: Some(t("2026-01-01T00:00:02.5Z")),
                ..Default::default()
            }),
            vec![0, 1]
        );
        assert_eq!(
            r(ReadOptions {
                stdout: false,
                ..Default::default()
            }),
            vec![3]
        );
        // Docker's tail counts lines before filtering (the garbage line included).
        assert_eq!(
            r(ReadOptions {
                tail: Some(2),
                ..Default::default()
            }),
            vec![3]
        );
        assert!(read_all(&d.path().join("missing"), &ReadOptions::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn since_values() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T21:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let p = |s| parse_since(s, now).unwrap().to_rfc3339();
        assert_eq!(p("10m"), "2026-11-27T20:50:00+00:00");
        assert_eq!(p("1h30m"), "2026-11-27T19:30:00+00:00");
        assert_eq!(p("1.5h"), "2026-11-27T19:30:00+00:00");
        assert_eq!(p("1700000000"), "2023-11-14T22:13:20+00:00");
        assert_eq!(
            parse_since("1700000000.123", now)
                .unwrap()
                .timestamp_subsec_nanos(),
            123_000_000
        );
        assert_eq!(p("0"), "1970-01-01T00:00:00+00:00");
        assert_eq!(p("2026-11-27T20:00:00+01:00"), "2026-11-27T19:00:00+00:00");
        assert_eq!(p("2026-11-27T20:00:00"), "2026-11-27T20:00:00+00:00");
        assert_eq!(p("2026-11-27"), "2026-11-27T00:00:00+00:00");
        assert_eq!(
            parse_since("yesterday", now).unwrap_err().to_string(),
            "failed to parse value as time or duration: \"yesterday\""
        );
        assert!(parse_since("10x", now).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follow_sees_appends_and_rotation_until_stop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = LogWriter::open(&p, Some(400), 3).unwrap();
        write_n(&mut w, 0, 3);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut rx = read_and_follow(p.clone(), ReadOptions::default(), async move {
            let _ = stop_rx.await;
        });
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap());
        }
        let mut tail_rx = follow(p.clone(), ReadOptions::default(), std::future::pending());
        // Rotates several times; each batch is taken before the next is written.
        let mut tailed = Vec::new();
        for b in 1..10 {
            write_n(&mut w, b * 3, b * 3 + 3);
            for _ in 0..3 {
                got.push(rx.recv().await.unwrap());
                tailed.push(tail_rx.recv().await.unwrap());
            }
        }
        assert!(d.path().join("log.2").exists());
        // Written before stop: delivered before the stream ends.
        write_n(&mut w, 30, 33);
        w.write(Stream::Stderr, b"partial, not yet").unwrap();
        w.flush().unwrap();
        stop_tx.send(()).unwrap();
        while let Some(e) = rx.recv().await {
            got.push(e);
        }
        assert_eq!(numbers(&got), (0..33).collect::<Vec<_>>());
        assert_eq!(numbers(&tailed), (3..30).collect::<Vec<_>>());

        // A follower that falls behind several rotations still gets what is on disk.
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut slow = follow(p.clone(), ReadOptions::default(), async move {
            let _ = stop_rx.await;
        });
        write_n(&mut w, 33, 60);
        stop_tx.send(()).unwrap();
        let late = numbers(&{
            let mut v = Vec::new();
            while let Some(e) = slow.recv().await {
                v.push(e);
            }
            v
        });
        assert_eq!(*late.last().unwrap(), 59);
    }

    #[tokio::test]
    async fn follow_ends_at_until() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut w = LogWriter::open(&p, None, 1).unwrap();
        write_n(&mut w, 0, 2);
        let until = Utc::now();
        let mut rx = read_and_follow(
            p.clone(),
            ReadOptions {
                until: Some(until),
                ..Default::default()
            },
            std::future::pending(),
        );
        // Entries written after `until` end the stream.
        while Utc::now() <= until {
            tokio::task::yield_now().await;
        }
        write_n(&mut w, 2, 4);
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(e);
        }
        assert_eq!(numbers(&got), vec![0, 1]);
    }

    /// Throughput of the writer and reader on 200 MiB (prints, asserts nothing):
    /// `cargo test --release -p berth-runtime --lib bench_200mib -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn bench_200mib() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let mut chunk = Vec::new();
        let mut i = 0u64;
        while chunk.len() < 64 * 1024 {
            chunk.extend_from_slice(
                format!("{i} the quick brown fox jumps over the lazy dog \"quoted\" \t tab\n")
                    .as_bytes(),
            );
            i += 1;
        }
        let total = 200u64 << 20;
        let t = std::time::Instant::now();
        let mut w = LogWriter::open(&p, None, 1).unwrap();
        let mut written = 0u64;
        while written < total {
            w.write(Stream::Stdout, &chunk).unwrap();
            written += chunk.len() as u64;
        }
        w.finish().unwrap();
        let wt = t.elapsed();
        let size = std::fs::metadata(&p).unwrap().len();
        let t = std::time::Instant::now();
        let mut n = 0usize;
        let mut bytes = 0usize;
        read_each(&p, &ReadOptions::default(), |e| {
            n += 1;
            bytes += e.line.len();
            true
        })
        .unwrap();
        let rt = t.elapsed();
        let mibs = |d: std::time::Duration| written as f64 / (1 << 20) as f64 / d.as_secs_f64();
        eprintln!(
            "write: {:.0} MiB/s ({wt:?}, file {} MiB); read: {n} entries, {:.0} MiB/s ({rt:?})",
            mibs(wt),
            size >> 20,
            mibs(rt)
        );
        assert_eq!(bytes as u64, written);
    }
}
