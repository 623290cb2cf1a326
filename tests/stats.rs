//! `GET /containers/{id}/stats` and `stats --no-stream` (berth and the docker CLI) against a
//! container holding a known amount of memory.

use berth_tests::Daemon;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

const MIB: f64 = 1024.0 * 1024.0;
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Sends a GET and returns (status, the JSON objects of the body, at most `max`). The body
/// may be chunked; each stats object is one line, so chunk-size lines are skipped.
fn get_json(d: &Daemon, path: &str, max: usize) -> (u16, Vec<Value>) {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    let mut line = String::new();
    while out.len() < max {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let t = line.trim();
        if t.starts_with('{') {
            out.push(serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t}")));
        }
    }
    (status, out)
}

/// Reads the rest of a response: how many more JSON objects arrive before the end.
fn count_rest(d: &Daemon, path: &str) -> Vec<Value> {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// "64.27MiB" (go-units BytesSize) in bytes.
fn parse_size(s: &str) -> f64 {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("size {s:?}"));
    let mul = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => MIB,
        "GiB" => MIB * 1024.0,
        "TiB" => MIB * MIB,
        other => panic!("unit {other:?} in {s:?}"),
    };
    n * mul
}

/// The data row of a `stats --no-stream` table: columns split on runs of spaces (values
/// hold single spaces only, e.g. "64MiB / 7.6GiB").
fn table_row(out: &str) -> Vec<String> {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let cols = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    assert_eq!(
        cols(lines[0]),
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{out}"
    );
    let row = cols(lines[1]);
    assert_eq!(row.len(), 8, "{out}");
    row
}

/// Checks a row for a container holding 64 MiB: usage 60..200 MiB, a limit, PIDS >= 1.
fn check_row(row: &[String], id: &str, name: &str) {
    assert_eq!(row[0], id[..12]);
    assert_eq!(row[1], name);
    assert!(row[2].ends_with('%'), "{row:?}");
    let (usage, limit) = row[3].split_once(" / ").expect("usage / limit");
    let usage = parse_size(usage);
    assert!(
        (60.0 * MIB..200.0 * MIB).contains(&usage),
        "memory usage {usage} in {row:?}"
    );
    assert!(parse_size(limit) >= usage, "{row:?}");
    assert!(row[4].ends_with('%'), "{row:?}");
    let pids: u64 = row[7].parse().unwrap();
    assert!(pids >= 1, "{row:?}");
}

/// A container that fills 64 MiB of its /dev/shm (tmpfs, charged to its memory cgroup as
/// shmem, never reclaimed as cache) and then waits.
fn memory_holder(d: &Daemon, name: &str) -> String {
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--shm-size",
        "128m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/x bs=1048576 count=64 2>/dev/null && echo ready && sleep 1000",
    ]);
    d.eventually("the container to fill /dev/shm", || {
        d.ok(&["logs", &id]).contains("ready")
    });
    id
}

#[test]
fn stats_v1_cli_docker_and_api() {
    let d = Daemon::start();
    d.busybox();
    let id = memory_holder(&d, "holder");

    let out = d.ok(&["stats", "--no-stream", &id]);
    check_row(&table_row(&out), &id, "holder");
    let out = d.dok(&["stats", "--no-stream", "holder"]);
    check_row(&table_row(&out), &id, "holder");

    // stream=false: one object, precpu primed by a sample a second earlier.
    let (status, v) = get_json(&d, &format!("/containers/{id}/stats?stream=false"), 10);
    assert_eq!(status, 200);
    assert_eq!(v.len(), 1, "{v:?}");
    let s = &v[0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["name"], "/holder");
    assert_ne!(s["read"], ZERO_TIME);
    assert_ne!(s["preread"], ZERO_TIME);
    assert!(
        s["memory_stats"]["usage"].as_u64().unwrap() > 60 << 20,
        "{s}"
    );
    assert!(s["memory_stats"]["limit"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["memory_stats"]["stats"]["total_inactive_file"].is_u64()
            || s["memory_stats"]["stats"]["inactive_file"].is_u64(),
        "{s}"
    );
    assert!(s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0);
    assert!(s["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(s["cpu_stats"]["online_cpus"].as_u64().unwrap() >= 1);
    assert!(s["precpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(s["pids_stats"]["current"].as_u64().unwrap() >= 1);
    assert!(s["blkio_stats"]["io_service_bytes_recursive"].is_array());
    assert_eq!(s["num_procs"], 0);
    assert_eq!(s["storage_stats"], serde_json::json!({}));
    let eth0 = &s["networks"]["eth0"];
    assert!(
        eth0["rx_bytes"].is_u64() && eth0["tx_packets"].is_u64(),
        "{s}"
    );

    // one-shot: at once, with docker's zero-filled precpu.
    let (_, v) = get_json(
        &d,
        &format!("/v1.47/containers/{id}/stats?stream=0&one-shot=1"),
        10,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["preread"], ZERO_TIME);
    assert!(v[0]["precpu_stats"].get("system_cpu_usage").is_none());
    assert_eq!(v[0]["precpu_stats"]["cpu_usage"]["total_usage"], 0);
    let (status, _) = get_json(&d, &format!("/containers/{id}/stats?one-shot=1"), 1);
    assert_eq!(status, 400);

    // The stream: each object carries the previous one as precpu.
    let (status, v) = get_json(&d, &format!("/containers/{id}/stats"), 2);
    assert_eq!(status, 200);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["preread"], ZERO_TIME);
    assert_eq!(v[1]["preread"], v[0]["read"]);
    assert_eq!(v[1]["precpu_stats"], v[0]["cpu_stats"]);

    let (status, _) = get_json(&d, "/containers/nope/stats?stream=0", 1);
    assert_eq!(status, 404);

    // Stopped: one zeroed object, and the stream ends.
    d.ok(&["stop", "-t", "0", &id]);
    let v = count_rest(&d, &format!("/containers/{id}/stats"));
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["read"], ZERO_TIME);
    assert_eq!(v[0]["name"], "/holder");
    assert_eq!(v[0]["memory_stats"], serde_json::json!({}));
    let out = d.ok(&["stats", "--no-stream", &id]);
    let row = table_row(&out);
    assert_eq!((row[3].as_str(), row[7].as_str()), ("0B / 0B", "0"));
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn stats_cgroup_v2() {
    let d = Daemon::start_cgroup2();
    d.busybox();
    let id = memory_holder(&d, "holder2");
    let (status, v) = get_json(&d, &format!("/containers/{id}/stats?stream=false"), 1);
    assert_eq!(status, 200);
    let s = &v[0];
    assert!(
        s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert!(s["cpu_stats"]["cpu_usage"].get("percpu_usage").is_none());
    assert!(s["pids_stats"]["current"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["networks"]["eth0"].is_object(), "{s}");
    // A hybrid host's unified tree has no memory controller; a pure v2 host has.
    let has_memory = s["memory_stats"]["usage"].is_u64();
    if has_memory {
        assert!(s["memory_stats"]["stats"]["inactive_file"].is_u64(), "{s}");
        check_row(
            &table_row(&d.ok(&["stats", "--no-stream", &id])),
            &id,
            "holder2",
        );
    } else {
        let row = table_row(&d.dok(&["stats", "--no-stream", &id]));
        assert!(row[7].parse::<u64>().unwrap() >= 1, "{row:?}");
    }
    d.ok(&["rm", "-f", &id]);
}
