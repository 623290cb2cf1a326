//! Image commands: images, rmi, tag, load, save, import, history, image prune.

use std::io::Write;

use bytes::Bytes;
use futures::TryStreamExt;
use gtmpl::Value;
use http_body_util::{combinators::BoxBody, BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Method;
use serde_json::Value as J;

use super::run::split_ref;
use super::{confirm, filters_json, for_each};
use crate::args::{
    HistoryArgs, ImagePruneArgs, ImagesArgs, ImportArgs, LoadArgs, RmiArgs, SaveArgs, TagArgs,
};
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::tmpl::{object, Format};
use crate::units;

const IMAGES_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const IMAGES_TABLE_DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const HISTORY_TABLE: &str =
    "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

fn s(v: &J) -> &str {
    v.as_str().unwrap_or_default()
}

fn strs(v: &J) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| s(x).to_string()).collect())
        .unwrap_or_default()
}

pub(crate) fn image_row(img: &J, repo: &str, tag: &str, digest: &str, trunc: bool) -> Value {
    let id = s(&img["Id"]);
    let id = if trunc {
        units::truncate_id(id)
    } else {
        id.to_string()
    };
    let created = img["Created"].as_i64().unwrap_or(0);
    let size = img["Size"].as_i64().unwrap_or(0) as f64;
    let containers = match img["Containers"].as_i64() {
        Some(n) if n >= 0 => n.to_string(),
        _ => "N/A".into(),
    };
    // docker/cli: HumanSize (precision 4) for these two, unlike Size.
    let shared = match img["SharedSize"].as_i64() {
        Some(n) if n >= 0 => units::human_size(n as f64),
        _ => "N/A".into(),
    };
    let unique = match img["SharedSize"].as_i64() {
        Some(n) if n >= 0 => units::human_size(size - n as f64),
        _ => "N/A".into(),
    };
    object(vec![
        ("ID", Value::from(id)),
        ("Repository", Value::from(repo)),
        ("Tag", Value::from(tag)),
        ("Digest", Value::from(digest)),
        ("CreatedSince", Value::from(units::since(created))),
        ("CreatedAt", Value::from(units::go_time_string(created))),
        ("Size", Value::from(units::human_size_prec(size, 3))),
        ("VirtualSize", Value::from(units::human_size(size))),
        ("Containers", Value::from(containers)),
        ("SharedSize", Value::from(shared)),
        ("UniqueSize", Value::from(unique)),
    ])
}

/// docker/cli's imageFormat: one row per repository:tag, digest-only rows, or <none>.
pub fn image_rows(img: &J, digests: bool, trunc: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut tags: Vec<(String, Vec<String>)> = Vec::new();
    for t in strs(&img["RepoTags"]) {
        if t == "<none>:<none>" {
            continue;
        }
        let (repo, tag) = split_ref(&t);
        match tags.iter_mut().find(|(r, _)| *r == repo) {
            Some((_, v)) => v.push(tag),
            None => tags.push((repo, vec![tag])),
        }
    }
    let mut dig: Vec<(String, Vec<String>)> = Vec::new();
    for d in strs(&img["RepoDigests"]) {
        if let Some((repo, dg)) = d.split_once('@') {
            if repo == "<none>" {
                continue;
            }
            match dig.iter_mut().find(|(r, _)| r == repo) {
                Some((_, v)) => v.push(dg.to_string()),
                None => dig.push((repo.to_string(), vec![dg.to_string()])),
            }
        }
    }
    for (repo, ts) in &tags {
        let ds = dig
            .iter()
            .position(|(r, _)| r == repo)
            .map(|i| dig.remove(i).1)
            .unwrap_or_default();
        for t in ts {
            if !digests || ds.is_empty() {
                rows.push(image_row(img, repo, t, "<none>", trunc));
            } else {
                for d in &ds {
                    rows.push(image_row(img, repo, t, d, trunc));
                }
            }
        }
    }
    for (repo, ds) in &dig {
        if digests {
            for d in ds {
                rows.push(image_row(img, repo, "<none>", d, trunc));
            }
        } else {
            rows.push(image_row(img, repo, "<none>", "<none>", trunc));
        }
    }
    if rows.is_empty() {
        rows.push(image_row(img, "<none>", "<none>", "<none>", trunc));
    }
    rows
}

pub(crate) fn images_header() -> Value {
    object(vec![
        ("ID", Value::from("IMAGE ID")),
        ("Repository", Value::from("REPOSITORY")),
        ("Tag", Value::from("TAG")),
        ("Digest", Value::from("DIGEST")),
        ("CreatedSince", Value::from("CREATED")),
        ("CreatedAt", Value::from("CREATED AT")),
        ("Size", Value::from("SIZE")),
        ("VirtualSize", Value::from("VIRTUAL SIZE")),
        ("Containers", Value::from("CONTAINERS")),
        ("SharedSize", Value::from("SHARED SIZE")),
        ("UniqueSize", Value::from("UNIQUE SIZE")),
    ])
}

pub async fn images(c: &Client, a: ImagesArgs) -> CliResult<()> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut path = format!("/images/json?all={}", a.all as u8);
    if a.digests {
        path.push_str("&digests=1");
    }
    if let Some(f) = filters_json(&filters)? {
        path.push_str(&format!("&filters={}", q(&f)));
    }
    let list = c.get_json(&path).await?;
    let trunc = !a.no_trunc;
    let default = if a.digests {
        IMAGES_TABLE_DIGESTS
    } else {
        IMAGES_TABLE
    };
    let format = match (&a.format, a.quiet) {
        (None, true) => "{{.ID}}".to_string(),
        (Some(f), true) if f.is_empty() || f == "table" => "{{.ID}}".to_string(),
        (None, false) => default.to_string(),
        (Some(f), _) => f.clone(),
    };
    let digests = a.digests || format.contains(".Digest");
    let rows: Vec<Value> = list
        .as_array()
        .map(|l| {
            l.iter()
                .flat_map(|i| image_rows(i, digests, trunc))
                .collect()
        })
        .unwrap_or_default();
    let fmt = Format::new(Some(&format), default);
    print!("{}", fmt.render(&images_header(), &rows)?);
    Ok(())
}

pub async fn rmi(c: &Client, a: RmiArgs) -> CliResult<()> {
    for_each(&a.images, |name| async move {
        let path = format!(
            "/images/{}?force={}&noprune={}",
            q(&name),
            a.force as u8,
            a.no_prune as u8
        );
        let (status, body) = c.raw(Method::DELETE, &path, None, None).await?;
        if !status.is_success() {
            return Err(daemon_error(status, &body));
        }
        let v: J = serde_json::from_slice(&body).unwrap_or_default();
        for item in v.as_array().cloned().unwrap_or_default() {
            if let Some(u) = item["Untagged"].as_str() {
                println!("Untagged: {u}");
            }
            if let Some(d) = item["Deleted"].as_str() {
                println!("Deleted: {d}");
            }
        }
        Ok(())
    })
    .await
}

pub async fn tag(c: &Client, a: TagArgs) -> CliResult<()> {
    let (repo, tag) = split_ref(&a.target);
    let tag = if tag.is_empty() {
        "latest".to_string()
    } else {
        tag
    };
    let path = format!(
        "/images/{}/tag?repo={}&tag={}",
        q(&a.source),
        q(&repo),
        q(&tag)
    );
    let (status, body) = c.raw(Method::POST, &path, None, None).await?;
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    Ok(())
}

/// A request body streamed from a file or stdin.
async fn body_from(source: &str) -> CliResult<BoxBody<Bytes, std::io::Error>> {
    let reader: Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin> = if source == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(source)
                .await
                .map_err(|e| CliError::new(1, units::go_open_error(source, &e)))?,
        )
    };
    let stream = tokio_util::io::ReaderStream::new(reader).map_ok(Frame::data);
    Ok(BodyExt::boxed(StreamBody::new(stream)))
}

/// Prints a JSON-message stream (load, import) the way docker's jsonmessage does
/// for a non-terminal: `stream` text as is, `status` lines, errors as failures.
async fn print_messages(resp: hyper::Response<hyper::body::Incoming>) -> CliResult<()> {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CliError::new(1, e.to_string()))?
        .to_bytes();
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    let mut out = std::io::stdout().lock();
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<J>() {
        let Ok(v) = v else { break };
        if let Some(e) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
            return Err(CliError::new(1, e.to_string()));
        }
        if let Some(st) = v["stream"].as_str() {
            out.write_all(st.as_bytes())?;
        } else if let Some(st) = v["status"].as_str() {
            match v["id"].as_str() {
                Some(id) if !id.is_empty() => writeln!(out, "{id}: {st}")?,
                _ => writeln!(out, "{st}")?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// `docker pull`: progress lines on stdout, then the full reference.
pub async fn pull(c: &Client, a: crate::args::PullArgs) -> CliResult<()> {
    crate::cmd::run::pull_with(
        c,
        &a.image,
        a.quiet,
        true,
        a.all_tags,
        a.platform.as_deref(),
    )
    .await?;
    // docker prints the canonical name last ("docker.io/library/busybox:latest").
    if a.all_tags {
        println!("{}", canonical_name(&a.image).trim_end_matches(":latest"));
    } else {
        println!("{}", canonical_name(&a.image));
    }
    Ok(())
}

/// docker's `reference.TagNameOnly(ParseNormalizedNamed(s)).String()`, for names the
/// daemon already accepted.
fn canonical_name(s: &str) -> String {
    let (name, suffix) = match s.split_once('@') {
        Some((n, d)) => (n.to_string(), format!("@{d}")),
        None => {
            let (repo, tag) = crate::cmd::run::split_ref(s);
            let tag = if tag.is_empty() {
                "latest".to_string()
            } else {
                tag
            };
            (repo, format!(":{tag}"))
        }
    };
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{full}{suffix}")
}

pub async fn load(c: &Client, a: LoadArgs) -> CliResult<()> {
    let source = a.input.clone().unwrap_or_else(|| "-".into());
    if source == "-" && crate::stream::stdin_is_tty() {
        return Err(CliError::new(
            1,
            "requested load from stdin, but stdin is empty",
        ));
    }
    let body = body_from(&source).await?;
    let path = format!("/images/load?quiet={}", a.quiet as u8);
    let resp = c
        .raw_stream(Method::POST, &path, Some(body), Some("application/x-tar"))
        .await?;
    print_messages(resp).await
}

pub async fn save(c: &Client, a: SaveArgs) -> CliResult<()> {
    let names: Vec<String> = a.images.iter().map(|n| format!("names={}", q(n))).collect();
    let path = format!("/images/get?{}", names.join("&"));
    download(c, &path, a.output.as_deref(), "failed to save image").await
}

/// Streams a GET (an archive) to a file or to stdout, refusing a terminal like docker.
pub async fn download(c: &Client, path: &str, output: Option<&str>, what: &str) -> CliResult<()> {
    if output.is_none() && crate::stream::stdout_is_tty() {
        return Err(CliError::new(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let resp = c.raw_stream(Method::GET, path, None, None).await?;
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
    // Write to a temp file next to the target and rename, so a failed save leaves no
    // truncated archive behind.
    let (mut out, tmp): (Box<dyn Write>, Option<(String, String)>) = match output {
        Some(path) => {
            let tmp = format!("{path}.berth-tmp-{}", std::process::id());
            // 0600 like docker's temp-file-and-rename save.
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| {
                    CliError::new(1, format!("{what}: {}", units::go_open_error(path, &e)))
                })?;
            (
                Box::new(std::io::BufWriter::new(f)),
                Some((tmp, path.to_string())),
            )
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let result: CliResult<()> = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CliError::new(1, format!("{what}: {e}")))?;
            if let Ok(d) = frame.into_data() {
                out.write_all(&d)?;
            }
        }
        out.flush()?;
        Ok(())
    }
    .await;
    drop(out);
    if let Some((tmp, path)) = tmp {
        if result.is_ok() {
            std::fs::rename(&tmp, &path).map_err(|e| CliError::new(1, format!("{what}: {e}")))?;
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    result
}

pub async fn import(c: &Client, a: ImportArgs) -> CliResult<()> {
    if a.source.starts_with("http://") || a.source.starts_with("https://") {
        return Err(CliError::new(1, "importing from a URL is not supported"));
    }
    let body = body_from(&a.source).await?;
    let mut path = "/images/create?fromSrc=-".to_string();
    if let Some(r) = &a.reference {
        let (repo, tag) = split_ref(r);
        path.push_str(&format!("&repo={}", q(&repo)));
        if !tag.is_empty() {
            path.push_str(&format!("&tag={}", q(&tag)));
        }
    }
    if let Some(m) = &a.message {
        path.push_str(&format!("&message={}", q(m)));
    }
    if let Some(p) = &a.platform {
        path.push_str(&format!("&platform={}", q(p)));
    }
    for ch in &a.change {
        path.push_str(&format!("&changes={}", q(ch)));
    }
    let resp = c
        .raw_stream(Method::POST, &path, Some(body), Some("application/x-tar"))
        .await?;
    print_messages(resp).await
}

pub fn history_rows(list: &J, human: bool, trunc: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for h in list.as_array().cloned().unwrap_or_default() {
        let id = s(&h["Id"]);
        let id = if id == "<missing>" || !trunc {
            id.to_string()
        } else {
            units::truncate_id(id)
        };
        let created = h["Created"].as_i64().unwrap_or(0);
        let created_by = s(&h["CreatedBy"]).replace('\t', " ");
        let created_by = if trunc {
            units::ellipsis(&created_by, 45)
        } else {
            created_by
        };
        let size = h["Size"].as_i64().unwrap_or(0);
        rows.push(object(vec![
            ("ID", Value::from(id)),
            (
                "CreatedSince",
                Value::from(if human {
                    units::since(created)
                } else {
                    units::rfc3339(created)
                }),
            ),
            ("CreatedAt", Value::from(units::rfc3339(created))),
            ("CreatedBy", Value::from(created_by)),
            (
                "Size",
                Value::from(if human {
                    units::human_size_prec(size as f64, 3)
                } else {
                    size.to_string()
                }),
            ),
            ("Comment", Value::from(s(&h["Comment"]).to_string())),
        ]));
    }
    rows
}

pub async fn history(c: &Client, a: HistoryArgs) -> CliResult<()> {
    let list = c
        .get_json(&format!("/images/{}/history", q(&a.image)))
        .await?;
    let format = match (&a.format, a.quiet) {
        (_, true) => "{{.ID}}".to_string(),
        (None, false) => HISTORY_TABLE.to_string(),
        (Some(f), false) => f.clone(),
    };
    let header = object(vec![
        ("ID", Value::from("IMAGE")),
        (
            "CreatedSince",
            Value::from(if a.human { "CREATED" } else { "CREATED AT" }),
        ),
        ("CreatedAt", Value::from("CREATED AT")),
        ("CreatedBy", Value::from("CREATED BY")),
        ("Size", Value::from("SIZE")),
        ("Comment", Value::from("COMMENT")),
    ]);
    let rows = history_rows(&list, a.human, !a.no_trunc);
    let fmt = Format::new(Some(&format), HISTORY_TABLE);
    print!("{}", fmt.render(&header, &rows)?);
    Ok(())
}

pub async fn prune(c: &Client, a: ImagePruneArgs) -> CliResult<()> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning) {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    filters.push(format!("dangling={}", !a.all));
    let mut path = "/images/prune".to_string();
    if let Some(f) = filters_json(&filters)? {
        path.push_str(&format!("?filters={}", q(&f)));
    }
    let (status, body) = c.raw(Method::POST, &path, None, None).await?;
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    let v: J = serde_json::from_slice(&body).unwrap_or_default();
    let mut reclaimed = 0;
    if let Some(items) = v["ImagesDeleted"].as_array().filter(|a| !a.is_empty()) {
        let mut out = "Deleted Images:\n".to_string();
        for it in items {
            if let Some(u) = it["Untagged"].as_str().filter(|u| !u.is_empty()) {
                out.push_str(&format!("untagged: {u}\n"));
            } else {
                out.push_str(&format!("deleted: {}\n", s(&it["Deleted"])));
            }
        }
        println!("{out}");
        reclaimed = v["SpaceReclaimed"].as_u64().unwrap_or(0);
    }
    println!(
        "Total reclaimed space: {}",
        units::human_size(reclaimed as f64)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> J {
        serde_json::json!({
            "Id": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "RepoTags": ["busybox:latest", "busybox:1.36", "local/bb:x"],
            "RepoDigests": ["busybox@sha256:feed"],
            "Created": chrono::Utc::now().timestamp() - 3 * 86400,
            "Size": 4_261_550,
            "Containers": -1
        })
    }

    #[test]
    fn image_rows_like_docker() {
        let rows = image_rows(&img(), false, true);
        let f = Format::new(Some(IMAGES_TABLE), IMAGES_TABLE);
        let out = f.render(&images_header(), &rows).unwrap_or_default();
        let want = "REPOSITORY   TAG       IMAGE ID       CREATED      SIZE\n\
busybox      latest    0123456789ab   3 days ago   4.26MB\n\
busybox      1.36      0123456789ab   3 days ago   4.26MB\n\
local/bb     x         0123456789ab   3 days ago   4.26MB\n";
        assert_eq!(out, want);
        let rows = image_rows(&img(), true, false);
        let f = Format::new(
            Some("{{.Repository}}:{{.Tag}}@{{.Digest}} {{.ID}}"),
            IMAGES_TABLE,
        );
        let out = f.render(&images_header(), &rows).unwrap_or_default();
        assert!(out.starts_with("busybox:latest@sha256:feed sha256:0123"));
        assert!(out.contains("local/bb:x@<none>"));
    }

    #[test]
    fn dangling_image_row() {
        let v = serde_json::json!({"Id": "sha256:abcdefabcdefabcdef", "RepoTags": [], "Created": 0, "Size": 0});
        let rows = image_rows(&v, false, true);
        let f = Format::new(Some("{{.Repository}} {{.Tag}} {{.ID}}"), IMAGES_TABLE);
        assert_eq!(
            f.render(&images_header(), &rows).unwrap_or_default(),
            "<none> <none> abcdefabcdef\n"
        );
    }

    #[test]
    fn history_rows_like_docker() {
        let list = serde_json::json!([
            {"Id": "sha256:0123456789abcdef", "Created": 0, "CreatedBy": "/bin/sh -c #(nop)\tCMD [\"sh\"] with a very long tail of words", "Size": 0, "Comment": ""},
            {"Id": "<missing>", "Created": 0, "CreatedBy": "", "Size": 4261550, "Comment": "Imported from -"}
        ]);
        let rows = history_rows(&list, true, true);
        let f = Format::new(
            Some("{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}"),
            HISTORY_TABLE,
        );
        let out = f.render(&Value::Nil, &rows).unwrap_or_default();
        assert_eq!(
            out,
            "0123456789ab|/bin/sh -c #(nop) CMD [\"sh\"] with a very lon…|0B|\n<missing>||4.26MB|Imported from -\n"
        );
        let rows = history_rows(&list, false, true);
        let f = Format::new(Some("{{.Size}}"), HISTORY_TABLE);
        assert_eq!(
            f.render(&Value::Nil, &rows).unwrap_or_default(),
            "0\n4261550\n"
        );
    }
}
