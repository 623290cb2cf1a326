//! Giving back memory a long-running process no longer uses (the shim once its container
//! runs, berthd when idle).
//!
//! Creating and starting a container runs most of the shim's code (libcontainer, the OCI
//! spec, seccomp) and allocates a few MiB; the long-running part afterwards is a poll loop
//! over a handful of descriptors. Without help the shim would keep all of it resident for the
//! container's life: ~3 MiB of code and read-only data pages it will never touch again and
//! ~1 MiB of freed heap that malloc keeps. berthd is the same after a burst of requests. Both
//! are given back here:
//!
//! - `malloc_trim(0)` returns free heap pages of every malloc arena to the kernel;
//! - the calling thread's stack below its current frame, when it is the main thread's stack;
//! - every page of a read-only, private file mapping (the binary, libc, libseccomp, ...) that
//!   is still the file's own page — never written, so identical to the file — is dropped with
//!   `MADV_DONTNEED`. A later access faults the same bytes back in from the page cache, so this
//!   is invisible to the program (other threads included); what the program touches returns,
//!   the rest stays out. Pages that were copied on write (relocations in `.data.rel.ro` of a
//!   position-independent binary) are anonymous and are kept: dropping them would re-read the
//!   unrelocated file bytes.
//!
//! Best-effort: any failure leaves memory as it was.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

/// `/proc/PID/pagemap`: the page is present in RAM.
const PM_PRESENT: u64 = 1 << 63;
/// `/proc/PID/pagemap`: the page is a file page (or shared anonymous), i.e. not a private copy.
const PM_FILE: u64 = 1 << 61;

/// Trims the heap, the unused part of the stack and clean file-backed pages; returns the
/// bytes of file pages dropped.
pub fn trim() -> usize {
    // SAFETY: malloc_trim only walks malloc's own state.
    unsafe { libc::malloc_trim(0) };
    let _ = drop_dead_stack();
    drop_clean_file_pages().unwrap_or(0)
}

/// The main thread's stack grew deep while libcontainer ran; the pages below the current
/// frame hold nothing live. Dropped, they come back zero-filled if the stack grows again.
fn drop_dead_stack() -> std::io::Result<()> {
    let page = page_size();
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    // Keep a generous margin below this frame for the calls made from here on.
    let keep_from = (sp & !(page - 1)).saturating_sub(4 * page);
    for line in BufReader::new(File::open("/proc/self/maps")?).lines() {
        let line = line?;
        if !line.ends_with("[stack]") {
            continue;
        }
        let Some((s, e)) = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
        else {
            return Ok(());
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16))
        else {
            return Ok(());
        };
        if start < keep_from && keep_from < end {
            // SAFETY: [start, keep_from) is the part of our own stack mapping below the live
            // frames (the stack grows down); nothing references it.
            unsafe {
                libc::madvise(
                    start as *mut libc::c_void,
                    keep_from - start,
                    libc::MADV_DONTNEED,
                )
            };
        }
        return Ok(());
    }
    Ok(())
}

fn page_size() -> usize {
    // SAFETY: sysconf with a valid name.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

fn drop_clean_file_pages() -> std::io::Result<usize> {
    let page = page_size();
    // Read the whole list first: madvise below changes nothing in it, but reading maps while
    // changing mappings is asking for trouble.
    let mut ranges = Vec::new();
    for line in BufReader::new(File::open("/proc/self/maps")?).lines() {
        let line = line?;
        if let Some(r) = candidate(&line) {
            ranges.push(r);
        }
    }
    let mut pagemap = File::open("/proc/self/pagemap")?;
    let mut dropped = 0;
    let mut entries = Vec::new();
    for (start, end) in ranges {
        let n = (end - start) / page;
        entries.resize(n * 8, 0u8);
        pagemap.seek(SeekFrom::Start((start / page * 8) as u64))?;
        pagemap.read_exact(&mut entries)?;
        // Runs of consecutive droppable pages become one madvise each.
        let mut run: Option<usize> = None;
        for i in 0..=n {
            let droppable = i < n && {
                let mut b = [0u8; 8];
                b.copy_from_slice(&entries[i * 8..i * 8 + 8]);
                let e = u64::from_le_bytes(b);
                e & PM_PRESENT != 0 && e & PM_FILE != 0
            };
            match (droppable, run) {
                (true, None) => run = Some(i),
                (false, Some(first)) => {
                    let addr = start + first * page;
                    let len = (i - first) * page;
                    // SAFETY: [addr, addr+len) lies in a read-only private file mapping whose
                    // pages in this range are unmodified file pages: discarding them only
                    // means they are read from the file again on the next access.
                    if unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) }
                        == 0
                    {
                        dropped += len;
                    }
                    run = None;
                }
                _ => {}
            }
        }
    }
    Ok(dropped)
}

/// A `/proc/self/maps` line → its range when it is a private, non-writable mapping of a file.
fn candidate(line: &str) -> Option<(usize, usize)> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let perms = f.next()?;
    let _offset = f.next()?;
    let _dev = f.next()?;
    let inode = f.next()?;
    let path = f.next()?;
    // Writable mappings hold data the program changed; shared ones are not ours alone;
    // [vdso], [vvar], [stack] and anonymous mappings have no file to read back from.
    let p = perms.as_bytes();
    if p.len() < 4 || p[1] != b'-' || p[3] != b'p' || inode == "0" || !path.starts_with('/') {
        return None;
    }
    let (s, e) = range.split_once('-')?;
    let start = usize::from_str_radix(s, 16).ok()?;
    let end = usize::from_str_radix(e, 16).ok()?;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates() {
        assert_eq!(
            candidate("7f00-7f10 r-xp 00000000 fe:01 123 /usr/lib/libc.so.6"),
            Some((0x7f00, 0x7f10))
        );
        assert_eq!(
            candidate("7f00-7f10 r--p 00001000 fe:01 123 /usr/bin/x"),
            Some((0x7f00, 0x7f10))
        );
        assert_eq!(
            candidate("7f00-7f10 rw-p 00000000 fe:01 123 /usr/bin/x"),
            None
        );
        assert_eq!(
            candidate("7f00-7f10 r--s 00000000 fe:01 123 /dev/shm/x"),
            None
        );
        assert_eq!(candidate("7f00-7f10 r-xp 00000000 00:00 0 [vdso]"), None);
        assert_eq!(candidate("7f00-7f10 rw-p 00000000 00:00 0"), None);
    }

    #[test]
    fn trimming_keeps_the_program_working() {
        let before: Vec<u64> = (0..1000).map(|i| i * 7).collect();
        let _ = trim();
        // Code, libc and relocated data must all still work after their pages were dropped.
        let after: Vec<u64> = (0..1000).map(|i| i * 7).collect();
        assert_eq!(before, after);
        assert_eq!(format!("{:?}", Some(1)), "Some(1)");
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(s.contains("VmRSS"));
    }
}
