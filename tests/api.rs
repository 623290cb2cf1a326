//! Raw API requests: versioned paths, headers, and malformed input (4xx, never a crash).

use berth_tests::Daemon;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

fn request(d: &Daemon, method: &str, path: &str, body: Option<&[u8]>, ctype: &str) -> Resp {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        headers: h.to_string(),
        body: b.to_string(),
    }
}

fn get(d: &Daemon, path: &str) -> Resp {
    request(d, "GET", path, None, "application/json")
}
fn post(d: &Daemon, path: &str, body: &str) -> Resp {
    request(d, "POST", path, Some(body.as_bytes()), "application/json")
}

#[test]
fn versions_headers_and_errors() {
    let d = Daemon::start();
    d.busybox();
    let r = get(&d, "/_ping");
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with("OK"), "{}", r.body);
    let hl = r.headers.to_ascii_lowercase();
    assert!(
        hl.contains("api-version: 1.47")
            && hl.contains("ostype: linux")
            && hl.contains("server: berth/"),
        "{}",
        r.headers
    );
    assert_eq!(
        request(&d, "HEAD", "/_ping", None, "text/plain").status,
        200
    );
    assert_eq!(get(&d, "/v1.44/version").status, 200);
    assert_eq!(get(&d, "/v1.24/containers/json").status, 200);
    let r = get(&d, "/v1.99/version");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("too new"), "{}", r.body);
    assert_eq!(get(&d, "/v1.12/version").status, 400);

    // unknown things are 404 with docker's body shape
    let r = get(&d, "/containers/nope/json");
    assert_eq!(r.status, 404);
    let v: serde_json::Value = serde_json::from_str(last_json(&r.body)).unwrap();
    assert_eq!(v["message"], "No such container: nope");
    assert_eq!(get(&d, "/images/nope:1/json").status, 404);
    assert_eq!(get(&d, "/no/such/endpoint").status, 404);

    // malformed bodies and parameters are 400
    assert_eq!(post(&d, "/containers/create", "{bad json").status, 400);
    assert_eq!(
        post(&d, "/containers/create", r#"{"Image": 42}"#).status,
        400
    );
    assert_eq!(
        post(
            &d,
            "/containers/create",
            r#"{"Image":"busybox","Cmd":"not-a-list"}"#
        )
        .status,
        400
    );
    assert_eq!(
        post(
            &d,
            "/containers/create",
            r#"{"Image":"busybox","HostConfig":{"Memory":"lots"}}"#
        )
        .status,
        400
    );
    assert_eq!(
        post(
            &d,
            "/containers/create?name=bad%20name",
            r#"{"Image":"busybox","Cmd":["true"]}"#
        )
        .status,
        400
    );
    assert_eq!(
        post(
            &d,
            "/containers/create",
            r#"{"Image":"nosuch","Cmd":["true"]}"#
        )
        .status,
        404
    );
    let huge = format!(
        r#"{{"Image":"busybox","Cmd":["{}"]}}"#,
        "x".repeat(32 << 20)
    );
    let r = post(&d, "/containers/create", &huge);
    assert!((400..500).contains(&r.status), "huge body: {}", r.status);

    // conflicts and not-modified
    let r = post(
        &d,
        "/containers/create?name=one",
        r#"{"Image":"busybox","Cmd":["sleep","100"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        post(
            &d,
            "/containers/create?name=one",
            r#"{"Image":"busybox","Cmd":["true"]}"#
        )
        .status,
        409
    );
    assert_eq!(post(&d, "/containers/one/start", "").status, 204);
    assert_eq!(post(&d, "/containers/one/start", "").status, 304);
    assert_eq!(post(&d, "/containers/one/kill?signal=NOPE", "").status, 400);
    assert_eq!(
        request(&d, "DELETE", "/containers/one", None, "text/plain").status,
        409
    );
    assert_eq!(post(&d, "/containers/one/stop?t=0", "").status, 204);
    assert_eq!(post(&d, "/containers/one/stop", "").status, 304);
    assert_eq!(
        post(&d, "/containers/one/wait?condition=bogus", "").status,
        400
    );
    assert_eq!(get(&d, "/containers/json?filters=%7Bbad").status, 400);
    assert_eq!(get(&d, "/containers/one/logs").status, 400);
    assert_eq!(
        request(&d, "DELETE", "/containers/one", None, "text/plain").status,
        204
    );

    // the daemon survived all of it
    assert_eq!(get(&d, "/_ping").status, 200);
}

/// The last JSON object of a possibly chunked body.
fn last_json(body: &str) -> &str {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map(|e| e + 1).unwrap_or(body.len());
    &body[start..end]
}
