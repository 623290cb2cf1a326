//! The build context, kept as the client sent it: file contents appended to one spool
//! file, metadata in an in-memory index. Nothing is unpacked, so a build (cached or not)
//! creates no file per context entry; on ext4 with many recent deletions each create costs
//! far more than reading the bytes back. Paths resolve inside the context only: a symlink
//! is followed against the context root, never the host's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Symlinks followed in one resolution (Linux's limit).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("invalid build context: {0}")]
    Invalid(String),
    #[error("reading build context: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    File { offset: u64, size: u64 },
    Dir,
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Node {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// A tar header for this node (size set for files).
    pub fn header(&self) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_mode(self.mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.mtime);
        match &self.kind {
            Kind::File { size, .. } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(*size);
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
            }
            Kind::Symlink(_) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
            }
        }
        h
    }
}

pub struct Context {
    spool: File,
    /// Keys are clean relative paths ("a/b"); "" is the root.
    nodes: BTreeMap<String, Node>,
}

/// `path.Clean` of a relative path; None when it climbs above the root.
pub fn clean_rel(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

fn dir_node() -> Node {
    Node {
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
    }
}

impl Context {
    /// Reads an (uncompressed) context tar. Names that climb out (`../x`) are refused;
    /// hard links become copies of their target; special files are skipped.
    pub fn load(r: &mut dyn Read, mut spool: File) -> Result<Context, ContextError> {
        let mut nodes = BTreeMap::new();
        nodes.insert(String::new(), dir_node());
        let mut ar = tar::Archive::new(r);
        let mut offset = spool.seek(SeekFrom::End(0))?;
        let bad = |e: io::Error| ContextError::Invalid(e.to_string());
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let raw = e.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let key = clean_rel(&name).ok_or_else(|| {
                ContextError::Invalid(format!("path escapes the context: {name}"))
            })?;
            let h = e.header();
            let mut node = Node {
                kind: Kind::Dir,
                mode: h.mode().unwrap_or(0o644) & 0o7777,
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                mtime: h.mtime().unwrap_or(0),
            };
            let et = h.entry_type();
            node.kind = match et {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => {
                    let l = e
                        .link_name_bytes()
                        .map(|l| l.into_owned())
                        .unwrap_or_default();
                    Kind::Symlink(String::from_utf8_lossy(&l).into_owned())
                }
                tar::EntryType::Link => {
                    let l = e
                        .link_name_bytes()
                        .map(|l| l.into_owned())
                        .unwrap_or_default();
                    let target = clean_rel(&String::from_utf8_lossy(&l)).unwrap_or_default();
                    match nodes.get(&target) {
                        Some(Node {
                            kind: k @ Kind::File { .. },
                            ..
                        }) => k.clone(),
                        _ => continue,
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let n = io::copy(&mut e, &mut spool)?;
                    let k = Kind::File { offset, size: n };
                    offset += n;
                    k
                }
                _ => continue,
            };
            if key.is_empty() {
                if node.is_dir() {
                    nodes.insert(key, node);
                }
                continue;
            }
            // Parents the tar did not list exist implicitly.
            let mut p = key.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                nodes.entry(parent.to_string()).or_insert_with(dir_node);
                p = parent;
            }
            nodes.insert(key, node);
        }
        spool.flush()?;
        Ok(Context { spool, nodes })
    }

    /// Resolves `path` (relative to the context root, leading '/' allowed) inside the
    /// context; `follow_last` follows a final symlink too. None if it does not exist.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Option<String> {
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .rev()
            .map(String::from)
            .collect();
        let mut cur: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            cur.push(c);
            let key = cur.join("/");
            let node = self.nodes.get(&key)?;
            if let Kind::Symlink(t) = &node.kind {
                if todo.is_empty() && !follow_last {
                    break;
                }
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                cur.pop();
                if t.starts_with('/') {
                    cur.clear();
                }
                for part in t.split('/').rev().filter(|p| !p.is_empty() && *p != ".") {
                    todo.push(part.to_string());
                }
            } else if !todo.is_empty() && !node.is_dir() {
                return None;
            }
        }
        let key = cur.join("/");
        self.nodes.contains_key(&key).then_some(key)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Names directly below the directory `key`, sorted.
    pub fn children(&self, key: &str) -> Vec<String> {
        self.descendants(key)
            .filter(|(rel, _)| !rel.contains('/'))
            .map(|(rel, _)| rel.to_string())
            .collect()
    }

    /// Everything below the directory `key` (not `key` itself), parents before children,
    /// as (path relative to `key`, node).
    pub fn descendants<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        let prefix = if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        };
        let plen = prefix.len();
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(move |(k, n)| (&k[plen..], n))
    }

    /// Reads a file node's bytes.
    pub fn reader<'a>(&'a self, node: &Node) -> SpoolReader<'a> {
        let (offset, size) = match node.kind {
            Kind::File { offset, size } => (offset, size),
            _ => (0, 0),
        };
        SpoolReader {
            file: &self.spool,
            pos: offset,
            end: offset + size,
        }
    }

    /// docker's removal of an ignored Dockerfile / .dockerignore after reading them.
    pub fn remove(&mut self, key: &str) {
        self.nodes.remove(key);
    }
}

/// Positioned reads of one file's bytes in the spool (shareable: no seek state).
pub struct SpoolReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(left as usize);
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o640);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("Dockerfile", b"FROM x\n");
        add("src/a.txt", b"A\n");
        add("src/sub/b.txt", b"B\n");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "escape", "/etc").unwrap();
        b.append_link(&mut h, "rel", "src/a.txt").unwrap();
        b.append_link(&mut h, "up", "../../src").unwrap();
        let data = b.into_inner().unwrap();
        Context::load(&mut data.as_slice(), tempfile::tempfile().unwrap()).unwrap()
    }

    #[test]
    fn resolves_inside_and_reads_back() {
        let c = ctx();
        assert_eq!(c.resolve("src/a.txt", true).as_deref(), Some("src/a.txt"));
        assert_eq!(c.resolve("/rel", true).as_deref(), Some("src/a.txt"));
        assert_eq!(c.resolve("rel", false).as_deref(), Some("rel"));
        // "/etc" inside the context does not exist: never the host's /etc.
        assert_eq!(c.resolve("escape/passwd", true), None);
        // ".." stops at the context root.
        assert_eq!(c.resolve("up/a.txt", true).as_deref(), Some("src/a.txt"));
        assert_eq!(c.resolve("src/a.txt/x", true), None);
        let n = c.get("src/sub/b.txt").unwrap();
        let mut s = String::new();
        c.reader(n).read_to_string(&mut s).unwrap();
        assert_eq!(s, "B\n");
        assert!(c.get("src/sub").unwrap().is_dir());
        let d: Vec<&str> = c.descendants("src").map(|(r, _)| r).collect();
        assert_eq!(d, vec!["a.txt", "sub", "sub/b.txt"]);
        assert_eq!(
            c.children(""),
            vec!["Dockerfile", "escape", "rel", "src", "up"]
        );
    }

    #[test]
    fn refuses_escaping_names() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // The tar crate refuses to write "..": put the name in the header by hand.
        h.as_old_mut().name[..6].copy_from_slice(b"../x\0\0");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(Context::load(&mut data.as_slice(), tempfile::tempfile().unwrap()).is_err());
    }
}
