//! `inspect`: the daemon's raw JSON, indented like docker, or rendered with -f.

use hyper::Method;

use crate::args::InspectArgs;
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::tmpl::{self, Tmpl};

enum Found {
    Raw(Vec<u8>),
    /// 404: the daemon's error line, which docker prints when --type is given.
    Missing(String),
}

async fn fetch(c: &Client, path: &str) -> CliResult<Found> {
    let (status, body) = c.raw(Method::GET, path, None, None).await?;
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(Found::Missing(daemon_error(status, &body).msg));
    }
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    Ok(Found::Raw(body.to_vec()))
}

pub async fn inspect(c: &Client, a: InspectArgs, forced: Option<&str>) -> CliResult<()> {
    let kind = forced.or(a.kind.as_deref());
    if let Some(k) = kind {
        if !["container", "image", "network", "volume"].contains(&k) {
            return Err(CliError::new(
                1,
                format!("\"{k}\" is not a valid value for --type"),
            ));
        }
    }
    let tmpl = a.format.as_deref().map(Tmpl::parse).transpose()?;
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for name in &a.names {
        let mut hit = None;
        let mut last_err = String::new();
        if kind.is_none() || kind == Some("container") {
            let size = if a.size { "?size=1" } else { "" };
            let path = format!("/containers/{}/json{size}", q(name));
            match fetch(c, &path).await? {
                Found::Raw(b) => hit = Some(b),
                Found::Missing(e) => last_err = e,
            }
        }
        if hit.is_none() && (kind.is_none() || kind == Some("image")) {
            match fetch(c, &format!("/images/{}/json", q(name))).await? {
                Found::Raw(b) => hit = Some(b),
                Found::Missing(e) => last_err = e,
            }
        }
        // docker tries the other object kinds next, in this order.
        for (k, prefix) in [("network", "/networks/"), ("volume", "/volumes/")] {
            if hit.is_none() && (kind.is_none() || kind == Some(k)) {
                match fetch(c, &format!("{prefix}{}", q(name))).await {
                    Ok(Found::Raw(b)) => hit = Some(b),
                    Ok(Found::Missing(e)) => last_err = e,
                    // A daemon without these endpoints answers oddly; the object is
                    // then simply not found.
                    Err(e) if kind.is_none() => last_err = e.msg,
                    Err(e) => return Err(e),
                }
            }
        }
        match hit {
            Some(b) => found.push(b),
            // Without --type docker names the object generically; with it, docker
            // passes the daemon's message through.
            None if kind.is_none() => errors.push(format!("Error: No such object: {name}")),
            None => errors.push(last_err),
        }
    }
    match tmpl {
        Some(t) => {
            let mut out = String::new();
            for raw in &found {
                tmpl::record_key_order(raw);
                let v: serde_json::Value = serde_json::from_slice(raw)
                    .map_err(|e| CliError::new(1, format!("error decoding response: {e}")))?;
                let r = t
                    .render(&tmpl::from_json(&v))
                    .map_err(|e| CliError::new(1, format!("template parsing error: {}", e.0)))?;
                out.push_str(&r);
                out.push('\n');
            }
            print!("{out}");
        }
        None => println!("{}", crate::jsonfmt::indent_array(&found)),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(1, errors.join("\n")))
    }
}
