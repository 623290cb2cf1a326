//! `docker build` with the classic builder API: the context tar made here (with
//! `.dockerignore` applied, as docker's CLI does), POST /build, the message stream
//! printed as it arrives.

use crate::args::{BuildArgs, BuilderPruneArgs, PushArgs};
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::units;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn usage(msg: impl std::fmt::Display) -> CliError {
    CliError::new(1, msg.to_string())
}

/// `--build-arg k=v` / `--build-arg k` (value from the environment, else null: docker's
/// ConvertKVStringsToMapWithNil).
fn build_args(v: &[String]) -> BTreeMap<String, Option<String>> {
    v.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), std::env::var(a).ok()),
        })
        .collect()
}

fn labels(v: &[String]) -> BTreeMap<String, String> {
    v.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), String::new()),
        })
        .collect()
}

/// A name for a Dockerfile that lives outside the context (or came on stdin), added to
/// the context tar as docker's CLI does.
fn random_dockerfile_name() -> String {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    format!(".dockerfile.{:012x}", n & 0xffff_ffff_ffff)
}

fn append_file(tar: &mut Vec<u8>, name: &str, data: &[u8]) -> CliResult<Vec<u8>> {
    // The context tar ends with two zero blocks; re-open it, add one entry, close it.
    let mut b = ::tar::Builder::new(Vec::new());
    let mut ar = ::tar::Archive::new(tar.as_slice());
    for e in ar.entries().map_err(|e| usage(e.to_string()))? {
        let mut e = e.map_err(|e| usage(e.to_string()))?;
        let mut h = e.header().clone();
        let path = e.path_bytes().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf)?;
        match h.entry_type() {
            ::tar::EntryType::Symlink | ::tar::EntryType::Link => {
                let link = e
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                b.append_link(
                    &mut h,
                    String::from_utf8_lossy(&path).as_ref(),
                    String::from_utf8_lossy(&link).as_ref(),
                )?;
            }
            _ => b.append_data(
                &mut h,
                String::from_utf8_lossy(&path).as_ref(),
                buf.as_slice(),
            )?,
        }
    }
    let mut h = ::tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    b.append_data(&mut h, name, data)?;
    Ok(b.into_inner()?)
}

/// The context tar and the Dockerfile's name inside it.
fn make_context(a: &BuildArgs) -> CliResult<(Vec<u8>, String)> {
    let stdin_df = a.file.as_deref() == Some("-");
    if a.context == "-" {
        if stdin_df {
            return Err(usage(
                "invalid argument: can't use stdin for both build context and dockerfile",
            ));
        }
        // stdin is a context tar (any compression) or a bare Dockerfile.
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data)?;
        let is_tar = data.len() >= 262 && &data[257..262] == b"ustar";
        let compressed = data.starts_with(&[0x1f, 0x8b])
            || data.starts_with(b"BZh")
            || data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z'])
            || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if is_tar || compressed {
            return Ok((data, a.file.clone().unwrap_or_else(|| "Dockerfile".into())));
        }
        let mut h = ::tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        let mut b = ::tar::Builder::new(Vec::new());
        b.append_data(&mut h, "Dockerfile", data.as_slice())?;
        return Ok((b.into_inner()?, "Dockerfile".into()));
    }
    let dir = PathBuf::from(&a.context);
    let md = std::fs::metadata(&dir).map_err(|_| {
        usage(format!(
            "unable to prepare context: path \"{}\" not found",
            a.context
        ))
    })?;
    if !md.is_dir() {
        return Err(usage(format!(
            "unable to prepare context: context must be a directory: {}",
            a.context
        )));
    }
    let root = std::fs::canonicalize(&dir)?;
    // The Dockerfile: inside the context it travels as itself; outside (or on stdin) it
    // is added under a random name, as docker's CLI does.
    let (df_inside, df_extra): (Option<String>, Option<(String, Vec<u8>)>) = match a.file.as_deref()
    {
        Some("-") => {
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data)?;
            (None, Some((random_dockerfile_name(), data)))
        }
        Some(f) => {
            let p = Path::new(f);
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir()?.join(p)
            };
            let abs = std::fs::canonicalize(&abs).map_err(|_| {
                usage(format!(
                    "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory",
                    abs.display()
                ))
            })?;
            match abs.strip_prefix(&root) {
                Ok(rel) => (Some(rel.to_string_lossy().into_owned()), None),
                Err(_) => {
                    let data = std::fs::read(&abs)?;
                    (None, Some((random_dockerfile_name(), data)))
                }
            }
        }
        None => {
            let default = root.join("Dockerfile");
            if !default.exists() && !root.join("dockerfile").exists() {
                return Err(usage(format!(
                    "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory",
                    default.display()
                )));
            }
            (Some("Dockerfile".into()), None)
        }
    };
    let matcher =
        berth_context::tar::load_context_ignore(&root).map_err(|e| usage(e.to_string()))?;
    let mut tar = Vec::new();
    berth_context::tar::write_context(&root, df_inside.as_deref(), &matcher, &mut tar)
        .map_err(|e| usage(format!("error checking context: {e}")))?;
    match df_extra {
        Some((name, data)) => Ok((append_file(&mut tar, &name, &data)?, name)),
        None => Ok((tar, df_inside.unwrap_or_else(|| "Dockerfile".into()))),
    }
}

pub async fn build(c: &Client, a: BuildArgs) -> CliResult<()> {
    let (tar, dockerfile) = {
        let a2 = a.clone();
        tokio::task::spawn_blocking(move || make_context(&a2))
            .await
            .map_err(|e| usage(e.to_string()))??
    };
    if !a.quiet {
        println!(
            "Sending build context to Docker daemon  {}",
            units::human_size(tar.len() as f64)
        );
    }
    let mut params = vec![
        format!("dockerfile={}", q(&dockerfile)),
        format!("q={}", a.quiet as u8),
        format!("nocache={}", a.no_cache as u8),
        format!("pull={}", a.pull as u8),
        format!("rm={}", a.rm as u8),
        format!("forcerm={}", a.force_rm as u8),
        format!("networkmode={}", q(&a.network)),
        "version=1".to_string(),
    ];
    for t in &a.tags {
        params.push(format!("t={}", q(t)));
    }
    if !a.build_args.is_empty() {
        let m = serde_json::to_string(&build_args(&a.build_args)).unwrap_or_default();
        params.push(format!("buildargs={}", q(&m)));
    }
    if !a.labels.is_empty() {
        let m = serde_json::to_string(&labels(&a.labels)).unwrap_or_default();
        params.push(format!("labels={}", q(&m)));
    }
    if let Some(t) = &a.target {
        params.push(format!("target={}", q(t)));
    }
    if let Some(p) = &a.platform {
        params.push(format!("platform={}", q(p)));
    }
    if let Some(m) = &a.memory {
        let b = units::ram_in_bytes(m).map_err(|e| CliError::new(125, e))?;
        params.push(format!("memory={b}"));
    }
    if let Some(s) = a.cpu_shares {
        params.push(format!("cpushares={s}"));
    }
    if let Some(m) = &a.shm_size {
        let b = units::ram_in_bytes(m).map_err(|e| CliError::new(125, e))?;
        params.push(format!("shmsize={b}"));
    }
    let path = format!("/build?{}", params.join("&"));
    let body = Full::new(Bytes::from(tar))
        .map_err(|never| match never {})
        .boxed();
    let resp = c
        .raw_stream(Method::POST, &path, Some(body), Some("application/x-tar"))
        .await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let b = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(daemon_error(status, &b));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut image_id: Option<String> = None;
    let mut stdout = std::io::stdout();
    let mut failure: Option<CliError> = None;
    let mut handle = |v: J, stdout: &mut std::io::Stdout| -> CliResult<()> {
        if let Some(msg) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
            let code = v["errorDetail"]["code"]
                .as_i64()
                .filter(|c| *c != 0)
                .unwrap_or(1);
            failure = Some(CliError::new(code as i32, msg.to_string()));
            return Ok(());
        }
        if let Some(id) = v["aux"]["ID"].as_str() {
            image_id = Some(id.to_string());
        }
        if let Some(s) = v["stream"].as_str() {
            if !a.quiet || s.starts_with("sha256:") {
                stdout.write_all(s.as_bytes())?;
                stdout.flush()?;
            }
        } else if let Some(st) = v["status"].as_str() {
            let bar = v["progressDetail"]["total"].is_number()
                || v["progressDetail"]["current"].is_number();
            if !a.quiet && !bar {
                match v["id"].as_str() {
                    Some(id) if !id.is_empty() => writeln!(stdout, "{id}: {st}")?,
                    _ => writeln!(stdout, "{st}")?,
                }
            }
        }
        Ok(())
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::new(1, e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Ok(v) = serde_json::from_slice::<J>(&line) {
                handle(v, &mut stdout)?;
            }
        }
    }
    if !buf.is_empty() {
        if let Ok(v) = serde_json::from_slice::<J>(&buf) {
            handle(v, &mut stdout)?;
        }
    }
    if let Some(f) = failure {
        return Err(f);
    }
    if let (Some(path), Some(id)) = (&a.iidfile, &image_id) {
        std::fs::write(path, id)
            .map_err(|e| usage(format!("Failed to write image ID to file: {e}")))?;
    }
    Ok(())
}

/// `docker builder prune`.
pub async fn prune(c: &Client, a: BuilderPruneArgs) -> CliResult<()> {
    if !a.force
        && !super::confirm("WARNING! This will remove all dangling build cache.\nAre you sure you want to continue?")
    {
        return Ok(());
    }
    let path = format!("/build/prune?all={}", a.all as u8);
    let resp = c.raw_stream(Method::POST, &path, None, None).await?;
    let status = resp.status();
    let b = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(daemon_error(status, &b));
    }
    let v: J = serde_json::from_slice(&b).unwrap_or_default();
    if let Some(list) = v["CachesDeleted"].as_array().filter(|l| !l.is_empty()) {
        println!("Deleted build cache objects:");
        for id in list {
            println!("{}", id.as_str().unwrap_or_default());
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        units::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(())
}

/// Feeds each JSON line of a streaming response to `f` as it arrives.
async fn each_json_line(
    resp: hyper::Response<hyper::body::Incoming>,
    mut f: impl FnMut(J) -> CliResult<()>,
) -> CliResult<()> {
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let b = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(daemon_error(status, &b));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::new(1, e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Ok(v) = serde_json::from_slice::<J>(&line) {
                f(v)?;
            }
        }
    }
    if let Ok(v) = serde_json::from_slice::<J>(&buf) {
        f(v)?;
    }
    Ok(())
}

/// `docker push NAME[:TAG]`: progress lines (no bars off a terminal), then the digest line.
pub async fn push(c: &Client, a: PushArgs) -> CliResult<()> {
    let (repo, tag) = crate::cmd::run::split_ref(&a.image);
    let tag = if tag.is_empty() {
        "latest".to_string()
    } else {
        tag
    };
    let path = format!("/images/{}/push?tag={}", repo, q(&tag));
    // docker sends X-Registry-Auth on every push ("{}" base64 when not logged in).
    let auth = crate::config::registry_auth(&repo).unwrap_or_else(|| "e30=".to_string());
    let resp = c
        .raw_stream_with(
            Method::POST,
            &path,
            None,
            None,
            &[("X-Registry-Auth", auth)],
        )
        .await?;
    let mut failure = None;
    let mut r = crate::progress::Renderer::new(true, a.quiet);
    each_json_line(resp, |v| {
        if let Some(msg) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
            failure = Some(CliError::new(1, msg.to_string()));
            return Ok(());
        }
        if let Some(st) = v["status"].as_str() {
            r.message(
                v["id"].as_str(),
                st,
                v["progressDetail"]["current"].as_u64(),
                v["progressDetail"]["total"].as_u64(),
            );
        }
        Ok(())
    })
    .await?;
    r.finish();
    if let Some(f) = failure {
        return Err(f);
    }
    if a.quiet {
        println!("{}", crate::cmd::run::with_default_tag(&a.image));
    }
    Ok(())
}
