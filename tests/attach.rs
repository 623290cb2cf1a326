//! Attach over a raw hijacked connection: after the upgrade the container's shim holds the
//! client's connection itself (berthd hands it over), so the session outlives the daemon;
//! stdin the client sent along with its request still reaches the container.

use berth_tests::Daemon;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Sends an attach request (plus `early`, in the same write) and reads up to the end of the
/// 101 answer's head.
fn hijack(d: &Daemon, name: &str, early: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST /v1.44/containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n\
         Host: api\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes();
    req.extend_from_slice(early);
    s.write_all(&req).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "EOF in the answer's head: {head:?}"
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("application/vnd.docker.multiplexed-stream"),
        "{head}"
    );
    s
}

/// Reads stdcopy frames until `want` bytes of stdout arrived; returns them.
fn read_stdout(s: &mut UnixStream, want: usize) -> String {
    let mut out = Vec::new();
    while out.len() < want {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).unwrap();
        let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let mut p = vec![0u8; len];
        s.read_exact(&mut p).unwrap();
        assert_eq!(h[0], 1, "stream of {p:?}");
        out.extend_from_slice(&p);
    }
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn attach_session_outlives_the_daemon() {
    let mut d = Daemon::start();
    d.busybox();
    d.ok(&["run", "-d", "-i", "--name", "cat", "busybox", "cat"]);
    let mut s = hijack(&d, "cat", b"");
    s.write_all(b"before\n").unwrap();
    assert_eq!(read_stdout(&mut s, 7), "before\n");
    // The shim has the connection: nothing on it goes through berthd any more.
    d.kill9();
    s.write_all(b"after the daemon\n").unwrap();
    assert_eq!(read_stdout(&mut s, 17), "after the daemon\n");
    d.restart();
    d.ok(&["kill", "cat"]);
    // The container's end ends the session: EOF, not a reset.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let logs = d.ok(&["logs", "cat"]);
    assert_eq!(logs, "before\nafter the daemon");
}

#[test]
fn stdin_sent_with_the_request_reaches_the_container() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&["run", "-d", "-i", "--name", "cat", "busybox", "cat"]);
    let mut s = hijack(&d, "cat", b"early\n");
    assert_eq!(read_stdout(&mut s, 6), "early\n");
    s.write_all(b"late\n").unwrap();
    assert_eq!(read_stdout(&mut s, 5), "late\n");
    // Ending stdin ends this session (the container keeps its stdin: not stdin_once).
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(d.field("cat", "{{.State.Running}}"), "true");
}
