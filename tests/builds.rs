//! `build` end to end: a multi-stage Dockerfile (COPY --from, ARG/ENV substitution,
//! USER/WORKDIR, a heredoc RUN, .dockerignore) through berth and the stock docker CLI's
//! classic builder; the resulting image's run output, inspect, history and layers; the
//! exact cache (fully cached rebuild, one changed file, mtime-only change, daemon
//! restart, builder prune); and bad input (syntax errors, missing or escaping COPY
//! sources, failing RUN).

use berth_tests::{stderr, stdout, Daemon};
use std::path::Path;

fn start() -> Daemon {
    let d = Daemon::start();
    d.busybox();
    d
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
ARG GREETING=hello
ENV OUT=/out \
    UNUSED=x
WORKDIR /src
COPY src/ ./
RUN <<EOF
mkdir -p $OUT
echo "$GREETING from build" > $OUT/greeting.txt
cat a.txt >> $OUT/greeting.txt
EOF
RUN ls /src | sort > $OUT/listing.txt

FROM busybox AS unused
RUN exit 7

FROM $BASE
LABEL org.example.title="berth test" version=1
COPY --from=build /out/ /app/
COPY --chown=1000:1000 --chmod=640 data.txt /app/data.txt
USER 1000:1000
WORKDIR /app
EXPOSE 8080 53/udp
VOLUME /data
ENV MODE=prod
HEALTHCHECK --interval=30s --timeout=3s CMD true
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/greeting.txt"]
"#;

fn make_context(root: &Path) {
    write(root, "Dockerfile", DOCKERFILE);
    write(root, ".dockerignore", "*.log\n**/*.log\nsecret\n");
    write(root, "src/a.txt", "A\n");
    write(root, "src/b.txt", "B\n");
    write(root, "src/debug.log", "noise\n");
    write(root, "data.txt", "data\n");
    write(root, "secret/key", "s3cret\n");
}

fn inspect(d: &Daemon, name: &str) -> serde_json::Value {
    let out = d.ok(&["image", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

fn count(s: &str, pat: &str) -> usize {
    s.matches(pat).count()
}

#[test]
fn multi_stage_build_cache_and_image() {
    let d = start();
    let ctx = tempfile::tempdir().unwrap();
    make_context(ctx.path());
    let dir = ctx.path().to_str().unwrap();

    let out = d.ok(&["build", "-t", "t1", "--build-arg", "GREETING=hi", dir]);
    assert!(
        out.contains("Sending build context to Docker daemon"),
        "{out}"
    );
    assert!(out.contains("Step 1/"), "{out}");
    assert!(out.contains("Successfully tagged t1:latest"), "{out}");
    // The unused stage (which would fail) is skipped.
    assert!(!out.contains("exit 7"), "{out}");

    // What the image does.
    assert_eq!(d.ok(&["run", "--rm", "t1"]), "hi from build\nA");
    assert_eq!(
        d.ok(&["run", "--rm", "t1", "cat /app/listing.txt"]),
        "a.txt\nb.txt",
        ".dockerignore keeps *.log out of the context"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "t1",
            "stat -c '%u:%g %a' /app/data.txt; id -u"
        ]),
        "1000:1000 640\n1000"
    );
    assert_eq!(d.ok(&["run", "--rm", "t1", "pwd"]), "/app");

    // What inspect says (the fields docker build sets).
    let i = inspect(&d, "t1");
    let c = &i["Config"];
    assert_eq!(c["Cmd"], serde_json::json!(["cat /app/greeting.txt"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/app");
    let env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap();
    assert!(env.contains(&"MODE=prod".to_string()), "{env:?}");
    // docker's classic builder gives a stage without PATH the default one.
    assert!(env[0].starts_with("PATH=/usr/local/sbin:"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("OUT=")), "{env:?}");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["Labels"]["org.example.title"], "berth test");
    assert_eq!(c["Labels"]["version"], "1");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Timeout"], 3_000_000_000i64);
    // busybox's layer + COPY --from + COPY (WORKDIR /app exists by then: empty layer).
    let layers = i["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(layers, 3, "{i}");
    let hist = d.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", "t1"]);
    assert!(
        hist.contains("#(nop)  CMD [\"cat /app/greeting.txt\"]"),
        "{hist}"
    );
    assert!(hist.contains("#(nop) COPY dir:"), "{hist}");
    assert!(hist.contains("#(nop) WORKDIR /app"), "{hist}");

    // A second build is fully cached: the same image, nothing run.
    let again = d.ok(&["build", "-t", "t1", "--build-arg", "GREETING=hi", dir]);
    assert!(!again.contains("Running in"), "{again}");
    assert_eq!(
        d.field("t1", "{{.Id}}"),
        i["Id"].as_str().unwrap(),
        "{again}"
    );
    // Only the mtime of a copied file changes: still cached.
    let f = std::fs::File::options()
        .write(true)
        .open(ctx.path().join("src/b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let again = d.ok(&["build", "-t", "t1", "--build-arg", "GREETING=hi", dir]);
    assert!(!again.contains("Running in"), "{again}");

    // One copied file changes: that COPY and the steps after it run again, not before.
    write(ctx.path(), "src/b.txt", "B2\n");
    let out = d.ok(&["build", "-t", "t2", "--build-arg", "GREETING=hi", dir]);
    let before_copy = out.split("COPY src/ ./").next().unwrap();
    assert_eq!(count(before_copy, "Using cache"), 3, "{out}"); // ARG, ENV, WORKDIR
    assert_eq!(count(&out, "Running in"), 2, "{out}"); // both RUNs of the build stage
    assert_ne!(d.field("t2", "{{.Id}}"), i["Id"].as_str().unwrap());
    // A different build arg invalidates the RUNs that see it.
    let out = d.ok(&["build", "-t", "t3", "--build-arg", "GREETING=yo", dir]);
    assert!(out.contains("Running in"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "t3"]), "yo from build\nA");

    // --target builds only what the target needs; -q prints only the id; --iidfile.
    let iid = ctx.path().join("iid");
    let q = d.ok(&[
        "build",
        "-q",
        "--target",
        "build",
        "--iidfile",
        iid.to_str().unwrap(),
        dir,
    ]);
    assert!(q.starts_with("sha256:") && !q.contains('\n'), "{q}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), q);
}

#[test]
fn cache_survives_restart_and_prune_clears_it() {
    let mut d = start();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nCOPY f /f\nRUN cat /f > /g\nCMD [\"cat\", \"/g\"]\n",
    );
    write(ctx.path(), "f", "one\n");
    let dir = ctx.path().to_str().unwrap();
    d.ok(&["build", "-t", "c1", dir]);
    let id = d.field("c1", "{{.Id}}");
    d.restart();
    let out = d.ok(&["build", "-t", "c1", dir]);
    assert!(!out.contains("Running in"), "{out}");
    assert_eq!(d.field("c1", "{{.Id}}"), id);
    assert_eq!(d.ok(&["run", "--rm", "c1"]), "one");

    let out = d.ok(&["builder", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    let out = d.ok(&["build", "-t", "c1", dir]);
    assert!(out.contains("Running in"), "{out}");
    // The tagged image survived the prune; its content is unchanged.
    assert_eq!(d.ok(&["run", "--rm", "c1"]), "one");
}

#[test]
fn add_heredoc_stdin_and_options() {
    let d = start();
    let ctx = tempfile::tempdir().unwrap();
    // A tar for ADD to unpack.
    {
        let f = std::fs::File::create(ctx.path().join("files.tar")).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(3);
        b.append_data(&mut h, "inner/x.txt", &b"xyz"[..]).unwrap();
        b.finish().unwrap();
    }
    write(
        ctx.path(),
        "build.Dockerfile",
        "FROM busybox\nADD files.tar /opt/\nCOPY --exclude=*.skip exdir/ /ex/\nCOPY <<EOF /etc/motd\nwelcome $NAME\nEOF\nARG NAME=x\nRUN --network=none echo \"name=$NAME\" > /name\nSTOPSIGNAL SIGINT\n",
    );
    write(ctx.path(), "exdir/a.keep", "k\n");
    write(ctx.path(), "exdir/b.skip", "s\n");
    let dir = ctx.path().to_str().unwrap();
    let out = d.ok(&[
        "build",
        "-f",
        ctx.path().join("build.Dockerfile").to_str().unwrap(),
        "-t",
        "a1",
        "--label",
        "from=cli",
        "--build-arg",
        "NAME=n1",
        "--build-arg",
        "NOTUSED=1",
        dir,
    ]);
    assert!(
        out.contains("[Warning] One or more build-args [NOTUSED] were not consumed"),
        "{out}"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "a1",
            "cat",
            "/opt/inner/x.txt",
            "/etc/motd",
            "/name"
        ]),
        "xyzwelcome \nname=n1"
    );
    assert_eq!(d.field("a1", "{{.Config.StopSignal}}"), "SIGINT");
    assert_eq!(d.ok(&["run", "--rm", "a1", "ls", "/ex"]), "a.keep");
    assert_eq!(d.field("a1", "{{index .Config.Labels \"from\"}}"), "cli");

    // The Dockerfile on stdin, with a context directory.
    let o = d.berth_stdin(
        &["build", "-t", "a2", "-f", "-", dir],
        Some(b"FROM busybox\nCOPY files.tar /\nRUN test -f /files.tar\n"),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // A bare Dockerfile as the whole context.
    let o = d.berth_stdin(
        &["build", "-t", "a3", "-"],
        Some(b"FROM busybox\nENV A=1\nCMD [\"sh\"]\n"),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(d.field("a3", "{{json .Config.Cmd}}"), "[\"sh\"]");
}

#[test]
fn bad_input_is_refused_clearly() {
    let d = start();
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path().to_str().unwrap();
    write(ctx.path(), "f", "x\n");

    let case = |df: &str| {
        write(ctx.path(), "Dockerfile", df);
        d.berth(&["build", "-t", "bad", dir])
    };
    let o = case("FROM busybox\nRUN true\nFOO bar\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Dockerfile:3") && stderr(&o).contains("unknown instruction"),
        "{}",
        stderr(&o)
    );

    let o = case("FROM busybox\nCOPY missing.txt /x\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Dockerfile:2: COPY failed: file not found in build context")
            && stderr(&o).contains("missing.txt"),
        "{}",
        stderr(&o)
    );

    let o = case("FROM busybox\nCOPY ../f /x\n");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("outside the build context"),
        "{}",
        stderr(&o)
    );

    let o = case("FROM busybox\nCOPY a b c\n");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("must be a directory"), "{}", stderr(&o));

    let o = case("FROM busybox\nRUN echo out-before-fail && exit 3\n");
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("out-before-fail"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "The command '/bin/sh -c echo out-before-fail && exit 3' returned a non-zero code: 3"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!d.berth(&["image", "inspect", "bad"]).status.success());

    let o = d.berth(&["build", "--target", "nope", dir]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));

    let o = d.berth(&["build", "/nonexistent-ctx"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}

#[test]
fn docker_cli_classic_builder() {
    if std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("docker CLI not installed; skipping");
        return;
    }
    let d = start();
    let ctx = tempfile::tempdir().unwrap();
    make_context(ctx.path());
    let dir = ctx.path().to_str().unwrap();
    let iid = ctx.path().join("iid");
    let out = d.dok(&[
        "build",
        "-t",
        "dk1",
        "--build-arg",
        "GREETING=hey",
        "--iidfile",
        iid.to_str().unwrap(),
        dir,
    ]);
    assert!(out.contains("Successfully tagged dk1:latest"), "{out}");
    assert_eq!(d.dok(&["run", "--rm", "dk1"]), "hey from build\nA");
    assert_eq!(
        std::fs::read_to_string(&iid).unwrap(),
        d.field("dk1", "{{.Id}}")
    );
    // The same context through berth is fully cached.
    let again = d.ok(&["build", "-t", "dk1", "--build-arg", "GREETING=hey", dir]);
    assert!(!again.contains("Running in"), "{again}");
    // A failing RUN: docker's exit code and message.
    write(ctx.path(), "Dockerfile", "FROM busybox\nRUN exit 4\n");
    let o = d.docker(&["build", dir]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("returned a non-zero code: 4"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn onbuild_url_and_context_symlinks() {
    let d = start();
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path().to_str().unwrap();

    // ONBUILD triggers run in the child's build, and are not inherited further.
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nONBUILD RUN echo triggered > /trig\n",
    );
    d.ok(&["build", "-t", "ob", dir]);
    write(
        ctx.path(),
        "Dockerfile",
        "FROM ob\nCMD [\"cat\", \"/trig\"]\n",
    );
    let out = d.ok(&["build", "-t", "ob2", dir]);
    assert!(out.contains("# Executing 1 build trigger"), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "ob2"]), "triggered");
    let cfg = d.ok(&["image", "inspect", "--format", "{{json .Config}}", "ob2"]);
    assert!(!cfg.contains("triggered"), "{cfg}");

    // ADD of a URL: served once by a one-shot HTTP server on the loopback.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut req = [0u8; 4096];
        let _ = s.read(&mut req);
        let body = "downloaded\n";
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM busybox\nADD http://127.0.0.1:{port}/files/remote.txt /dl/\n"),
    );
    let o = d.berth(&["build", "-t", "u1", dir]);
    server.join().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "u1",
            "sh",
            "-c",
            "cat /dl/remote.txt; stat -c %a /dl/remote.txt"
        ]),
        "downloaded\n600"
    );

    // Symlinks in the context resolve inside it: never to the host's files.
    std::os::unix::fs::symlink("/etc", ctx.path().join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", ctx.path().join("hn")).unwrap();
    for src in ["escape/hostname", "hn"] {
        for ins in ["COPY", "ADD"] {
            write(
                ctx.path(),
                "Dockerfile",
                &format!("FROM busybox\n{ins} {src} /x\n"),
            );
            let o = d.berth(&["build", dir]);
            assert!(!o.status.success(), "{ins} {src}: {}", stdout(&o));
            assert!(
                stderr(&o).contains("not found"),
                "{ins} {src}: {}",
                stderr(&o)
            );
        }
    }
    // A symlink inside the context that stays inside is followed.
    std::os::unix::fs::symlink("sub/real.txt", ctx.path().join("rel")).unwrap();
    write(ctx.path(), "sub/real.txt", "real\n");
    write(ctx.path(), "Dockerfile", "FROM busybox\nCOPY rel /x\n");
    d.ok(&["build", "-t", "s1", dir]);
    assert_eq!(d.ok(&["run", "--rm", "s1", "cat", "/x"]), "real");
}
