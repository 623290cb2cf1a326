//! `inspect`: the daemon's raw JSON, indented like docker, or rendered with -f.

use hyper::Method;

use crate::args::InspectArgs;
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::tmpl::{self, Tmpl};

enum Found {
    Raw(Vec<u8>),
    Missing,
}

async fn fetch(c: &Client, path: &str) -> CliResult<Found> {
    let (status, body) = c.raw(Method::GET, path, None, None).await?;
    if status == hyper::StatusCode::NOT_FOUND {
        return Ok(Found::Missing);
    }
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    Ok(Found::Raw(body.to_vec()))
}

pub async fn inspect(c: &Client, a: InspectArgs, forced: Option<&str>) -> CliResult<()> {
    let kind = forced.or(a.kind.as_deref());
    if let Some(k) = kind {
        if k != "container" && k != "image" {
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
        if kind.is_none() || kind == Some("container") {
            let path = format!(
                "/containers/{}/json{}",
                q(name),
                if a.size { "?size=1" } else { "" }
            );
            if let Found::Raw(b) = fetch(c, &path).await? {
                hit = Some(b);
            }
        }
        if hit.is_none() && (kind.is_none() || kind == Some("image")) {
            if let Found::Raw(b) = fetch(c, &format!("/images/{}/json", q(name))).await? {
                hit = Some(b);
            }
        }
        match hit {
            Some(b) => found.push(b),
            None => errors.push(match kind {
                Some("container") => format!("Error: No such container: {name}"),
                Some("image") => format!("Error: No such image: {name}"),
                _ => format!("Error: No such object: {name}"),
            }),
        }
    }
    match tmpl {
        Some(t) => {
            let mut out = String::new();
            for raw in &found {
                let v: serde_json::Value = serde_json::from_slice(raw)
                    .map_err(|e| CliError::new(1, format!("error decoding response: {e}")))?;
                out.push_str(&t.render(&tmpl::from_json(&v))?);
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
