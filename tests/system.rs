//! `system df` and `system prune` end to end, and the reference counting of layers that
//! makes pruning safe: a layer goes with its last image, never before.

use berth_tests::{stderr, stdout, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A raw API request; returns (status, JSON body).
fn api(d: &Daemon, method: &str, path: &str) -> (u16, Value) {
    let mut s = UnixStream::connect(&d.sock).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(b).unwrap_or(Value::Null))
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(-99)
}

/// Entries of a store directory, without unpack leftovers and the empty lowerdir.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n != "empty" && !n.starts_with("tmp-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// An image committed on top of busybox with one file of `bytes` zeros.
fn commit_on_busybox(d: &Daemon, name: &str, bytes: usize) -> String {
    d.ok(&[
        "run",
        "--name",
        name,
        "busybox",
        "sh",
        "-c",
        &format!("head -c {bytes} /dev/zero > /{name}"),
    ]);
    d.ok(&["commit", name, &format!("{name}:1")])
}

fn image_size(d: &Daemon, name: &str) -> i64 {
    d.ok(&["image", "inspect", "-f", "{{.Size}}", name])
        .parse()
        .unwrap()
}

#[test]
fn df_reports_layers_once_and_every_kind() {
    let d = Daemon::start();
    d.busybox();
    let one = commit_on_busybox(&d, "one", 100_000);
    let two = commit_on_busybox(&d, "two", 50_000);
    d.ok(&["volume", "create", "v1"]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "v1:/data",
        "busybox",
        "sh",
        "-c",
        "head -c 30000 /dev/zero > /data/f",
    ]);
    d.ok(&[
        "create", "--name", "holder", "-v", "v1:/data", "busybox", "true",
    ]);
    d.ok(&["volume", "create", "idle"]);
    let (bb, s1, s2) = (
        image_size(&d, "busybox"),
        image_size(&d, "one:1"),
        image_size(&d, "two:1"),
    );
    assert!(s1 >= bb + 100_000 && s2 >= bb + 50_000);

    let (status, du) = api(&d, "GET", "/v1.47/system/df");
    assert_eq!(status, 200, "{du}");
    assert_eq!(
        i(&du["LayersSize"]),
        s1 + s2 - bb,
        "shared layer counted once"
    );
    let img = |id: &str| {
        du["Images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["Id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {du}"))
    };
    let bb_id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "busybox"]);
    assert_eq!(i(&img(&bb_id)["SharedSize"]), bb);
    assert_eq!(i(&img(&bb_id)["Containers"]), 3);
    assert_eq!(i(&img(&one)["SharedSize"]), bb);
    assert_eq!(i(&img(&one)["Size"]), s1);
    assert_eq!(i(&img(&two)["Containers"]), 0);
    let ctr = |name: &str| {
        du["Containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["Names"][0] == format!("/{name}"))
            .cloned()
            .unwrap()
    };
    let rw = i(&ctr("one")["SizeRw"]);
    assert!(rw >= 100_000, "{rw}");
    assert_eq!(i(&ctr("one")["SizeRootFs"]), rw + bb);
    let vol = |name: &str| {
        du["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["Name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        vol("v1")["UsageData"],
        serde_json::json!({"Size": 30000, "RefCount": 1})
    );
    assert_eq!(
        vol("idle")["UsageData"],
        serde_json::json!({"Size": 0, "RefCount": 0})
    );
    assert_eq!(du["BuildCache"], serde_json::json!([]));
    // `type` narrows the answer.
    let (_, only) = api(&d, "GET", "/system/df?type=volume");
    assert!(
        only.get("Images").is_none() && only["Volumes"].is_array(),
        "{only}"
    );
    assert_eq!(api(&d, "GET", "/system/df?type=bogus").0, 400);
    // `ps -s` uses the same sizes.
    let out = d.ok(&["ps", "-as", "--filter", "name=one", "--format", "{{.Size}}"]);
    assert!(out.contains("(virtual "), "{out}");

    // The summary table: the same bytes from berth and the docker CLI.
    let table = d.ok(&["system", "df"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    assert_eq!(&rows[1][..3], ["Images", "3", "1"]);
    assert_eq!(&rows[2][..3], ["Containers", "3", "0"]);
    assert_eq!(&rows[3][..4], ["Local", "Volumes", "2", "1"]);
    assert_eq!(rows[4], ["Build", "Cache", "0", "0", "0B", "0B"]);
    assert_eq!(d.dok(&["system", "df"]), table);
    let json = d.ok(&["system", "df", "--format", "{{json .}}"]);
    assert!(
        json.lines()
            .next()
            .unwrap()
            .starts_with(r#"{"Active":"1","Reclaimable":"#),
        "{json}"
    );
    assert_eq!(d.dok(&["system", "df", "--format", "{{json .}}"]), json);

    // -v: one section per kind, as docker prints it (times may tick between the two runs).
    let verbose = d.ok(&["system", "df", "-v"]);
    for section in [
        "Images space usage:\n\nREPOSITORY",
        "\n\nContainers space usage:\n\nCONTAINER ID",
        "\n\nLocal Volumes space usage:\n\nVOLUME NAME",
        "\n\nBuild cache usage: 0B\n\nCACHE ID",
    ] {
        assert!(verbose.contains(section), "{section:?} in\n{verbose}");
    }
    let v1 = verbose.lines().find(|l| l.starts_with("v1 ")).unwrap();
    assert_eq!(
        v1.split_whitespace().collect::<Vec<_>>(),
        ["v1", "1", "30kB"]
    );
    let same = (0..3).any(|_| d.dok(&["system", "df", "-v"]) == d.ok(&["system", "df", "-v"]));
    assert!(
        same,
        "berth and docker differ:\n{verbose}\n{}",
        d.dok(&["system", "df", "-v"])
    );
}

#[test]
fn prune_endpoints_report_what_they_reclaim() {
    let d = Daemon::start();
    d.busybox();
    d.ok(&[
        "run",
        "--name",
        "big",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /f",
    ]);
    let dangling = d.ok(&["commit", "big"]);
    let (st, r) = api(&d, "POST", "/containers/prune");
    assert_eq!(st, 200);
    assert_eq!(r["ContainersDeleted"].as_array().unwrap().len(), 1);
    assert!(i(&r["SpaceReclaimed"]) >= 100_000, "{r}");
    let (_, r) = api(&d, "POST", "/images/prune");
    let deleted: Vec<&str> = r["ImagesDeleted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["Deleted"].as_str())
        .collect();
    assert!(deleted.contains(&dangling.as_str()), "{r}");
    assert!(i(&r["SpaceReclaimed"]) >= 100_000, "{r}");
    d.ok(&["volume", "create", "gone"]);
    let (_, r) = api(
        &d,
        "POST",
        "/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D",
    );
    assert_eq!(r["VolumesDeleted"], serde_json::json!(["gone"]));
    assert_eq!(i(&r["SpaceReclaimed"]), 0);
    d.ok(&["network", "create", "n1"]);
    let (_, r) = api(&d, "POST", "/networks/prune");
    assert_eq!(r["NetworksDeleted"], serde_json::json!(["n1"]));
    let (st, r) = api(&d, "POST", "/build/prune");
    assert_eq!((st, i(&r["SpaceReclaimed"])), (200, 0));
}

#[test]
fn system_prune_like_docker() {
    let d = Daemon::start();
    d.busybox();
    let done = d.ok(&["create", "--name", "done", "busybox", "true"]);
    d.ok(&["run", "-d", "--name", "live", "busybox", "sleep", "1000"]);
    d.ok(&["network", "create", "n1"]);
    d.ok(&["volume", "create", "named"]);
    // An anonymous volume whose container is gone.
    d.ok(&["create", "--name", "anon", "-v", "/data", "busybox", "true"]);
    let anon = d.field("anon", "{{(index .Mounts 0).Name}}");
    d.ok(&["rm", "anon"]);
    d.ok(&["run", "--name", "wr", "busybox", "sh", "-c", "echo x > /x"]);
    let dangling = d.ok(&["commit", "wr"]);
    d.ok(&["rm", "wr"]);

    // Without -f: docker's question; "n" changes nothing.
    let o = d.berth_stdin(&["system", "prune"], Some(b"n\n"));
    assert_eq!(
        stdout(&o),
        "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all dangling images\n  - unused build cache\n\nAre you sure you want to continue? [y/N] "
    );
    let o = d.berth_stdin(
        &["system", "prune", "-a", "--volumes", "--filter", "label=x"],
        Some(b"n\n"),
    );
    assert!(stdout(&o).starts_with("WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all anonymous volumes not used by at least one container\n  - all images without at least one container associated to them\n  - all build cache\n\n  Items to be pruned will be filtered with:\n  - label=x\n\nAre you sure"), "{}", stdout(&o));
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 2);

    // `until` keeps what is newer.
    let out = d.ok(&["system", "prune", "-f", "--filter", "until=1h"]);
    assert_eq!(out, "Total reclaimed space: 0B");
    let o = d.berth(&["system", "prune", "-f", "--volumes", "--filter", "until=1h"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(r#"ERROR: The "until" filter is not supported with "--volumes""#));

    let out = d.ok(&["system", "prune", "-f"]);
    let expected_head = format!("Deleted Containers:\n{done}\n\nDeleted Networks:\nn1\n\nDeleted Images:\ndeleted: {dangling}\n");
    assert!(out.starts_with(&expected_head), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("Total reclaimed space: "),
        "{out}"
    );
    assert_eq!(
        d.ok(&["ps", "-aq"]).lines().count(),
        1,
        "the running one stays"
    );
    let vols = d.ok(&["volume", "ls", "-q"]);
    assert!(vols.contains(&anon) && vols.contains("named"), "{vols}");

    // --volumes: anonymous volumes only, even with -a (as docker/cli does).
    let out = d.ok(&["system", "prune", "-f", "-a", "--volumes"]);
    assert!(
        out.starts_with(&format!("Deleted Volumes:\n{anon}\n\n")),
        "{out}"
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "named");
    assert!(
        d.berth(&["image", "inspect", "busybox"]).status.success(),
        "in use"
    );

    // -a takes images no container uses; the docker CLI drives the same endpoints.
    d.ok(&["rm", "-f", "live"]);
    let out = d.dok(&["system", "prune", "-af"]);
    assert!(
        out.starts_with("Deleted Images:\nuntagged: busybox:latest\ndeleted: sha256:"),
        "{out}"
    );
    assert!(out.contains("\n\nTotal reclaimed space: "), "{out}");
    assert_eq!(d.ok(&["images", "-aq"]), "");
    assert_eq!(
        d.ok(&["system", "prune", "-f"]),
        "Total reclaimed space: 0B"
    );
}

/// Two images share the busybox layer: removing one keeps it, removing the last user
/// leaves no snapshot and no blob behind, and prune never takes a layer in use.
#[test]
fn layers_are_reference_counted() {
    let d = Daemon::start();
    d.busybox();
    let snaps = d.root.join("snapshots");
    let blobs = d.root.join("blobs").join("sha256");
    let base = entries(&snaps);
    assert_eq!(base.len(), 1);
    commit_on_busybox(&d, "one", 1000);
    commit_on_busybox(&d, "two", 2000);
    d.ok(&["rm", "one", "two"]);
    assert_eq!(entries(&snaps).len(), 3);

    // Untagging busybox keeps it (the parent of both); removing one child keeps the
    // shared layer, and a prune now removes nothing anyone uses.
    d.ok(&["rmi", "busybox"]);
    d.ok(&["rmi", "one:1"]);
    let left = entries(&snaps);
    assert_eq!(left.len(), 2);
    assert!(left.contains(&base[0]), "shared snapshot kept");
    d.ok(&["run", "-d", "--name", "user", "two:1", "sleep", "1000"]);
    d.ok(&["system", "prune", "-af"]);
    assert_eq!(entries(&snaps), left, "prune took a layer in use");
    assert_eq!(
        d.ok(&["run", "--rm", "two:1", "wc", "-c", "/two"]),
        "2000 /two"
    );

    // The last user goes: its untagged parent with it, and every snapshot and blob.
    d.ok(&["rm", "-f", "user"]);
    d.ok(&["system", "prune", "-af"]);
    assert_eq!(d.ok(&["images", "-aq"]), "");
    assert_eq!(entries(&snaps), Vec::<String>::new());
    assert_eq!(entries(&blobs), Vec::<String>::new());
}

/// Containers of one image share its init layer (the mount points the image lacks); it holds
/// nothing container-specific, lives as long as the image's layers and goes with them.
#[test]
fn init_layer_is_shared_per_image_and_removed_with_it() {
    let d = Daemon::start();
    d.busybox();
    let inits = d.root.join("init-layers");
    d.ok(&[
        "run",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /etc/hosts",
    ]);
    d.ok(&["run", "--name", "c2", "busybox", "cat", "/etc/hosts"]);
    let layers = entries(&inits);
    assert_eq!(layers.len(), 1, "{layers:?}");
    // A container's write lands in its own upper, never in the shared layer.
    assert_eq!(d.ok(&["diff", "c2"]), "");
    let shared = inits.join(&layers[0]);
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let m = std::fs::metadata(shared.join(f)).expect(f);
        assert_eq!(m.len(), 0, "{f}");
    }
    // A second image on the same layers shares it too.
    d.ok(&["tag", "busybox", "other:1"]);
    d.ok(&["run", "--rm", "other:1", "true"]);
    assert_eq!(entries(&inits).len(), 1);
    d.ok(&["rm", "c1", "c2"]);
    d.ok(&["rmi", "busybox", "other:1"]);
    assert_eq!(entries(&inits), Vec::<String>::new());
}
