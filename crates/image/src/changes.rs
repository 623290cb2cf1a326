//! `docker import --change` / `docker commit --change`: the Dockerfile instructions that
//! may edit an image config (docker's `validCommitCommands`).

use berth_api::models::{HealthConfig, ImageConfig};
use berth_api::{Error, Result};
use std::collections::HashMap;

/// Applies each change line (a change may hold several lines) to `cfg`, in order.
pub fn apply_changes(cfg: &mut ImageConfig, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for change in changes {
        for line in change.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            apply_line(cfg, line, &mut cmd_set)?;
        }
    }
    Ok(())
}

fn apply_line(cfg: &mut ImageConfig, line: &str, cmd_set: &mut bool) -> Result<()> {
    let (instr, rest) = match line.split_once(char::is_whitespace) {
        Some((a, b)) => (a, b.trim()),
        None => (line, ""),
    };
    let lower = instr.to_ascii_lowercase();
    let need_arg = || {
        if rest.is_empty() {
            Err(Error::invalid(format!(
                "{} requires at least one argument",
                instr.to_ascii_uppercase()
            )))
        } else {
            Ok(())
        }
    };
    match lower.as_str() {
        "cmd" => {
            cfg.cmd = Some(command_form(cfg, rest));
            *cmd_set = true;
        }
        "entrypoint" => {
            cfg.entrypoint = Some(command_form(cfg, rest));
            // Docker: a new ENTRYPOINT drops an inherited CMD unless CMD was set here too.
            if !*cmd_set {
                cfg.cmd = None;
            }
        }
        "env" => {
            need_arg()?;
            for (k, v) in name_values(rest, "ENV")? {
                let env = cfg.env.get_or_insert_with(Vec::new);
                let prefix = format!("{k}=");
                let entry = format!("{k}={v}");
                match env.iter_mut().find(|e| e.starts_with(&prefix) || **e == k) {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
        }
        "label" => {
            need_arg()?;
            let labels = cfg.labels.get_or_insert_with(HashMap::new);
            for (k, v) in name_values(rest, "LABEL")? {
                labels.insert(k, v);
            }
        }
        "workdir" => {
            need_arg()?;
            let w = words(rest).into_iter().next().unwrap_or_default();
            cfg.working_dir = Some(if w.starts_with('/') {
                w
            } else {
                let cur = cfg.working_dir.clone().unwrap_or_default();
                clean_path(&format!("/{cur}/{w}"))
            });
        }
        "user" => {
            need_arg()?;
            cfg.user = Some(rest.to_string());
        }
        "expose" => {
            need_arg()?;
            let ports = cfg.exposed_ports.get_or_insert_with(Vec::new);
            for p in words(rest) {
                for spec in expand_port(&p)? {
                    if !ports.contains(&spec) {
                        ports.push(spec);
                    }
                }
            }
            ports.sort();
        }
        "volume" => {
            need_arg()?;
            let vols = cfg.volumes.get_or_insert_with(Vec::new);
            let list = json_array(rest).unwrap_or_else(|| words(rest));
            for v in list {
                let v = v.trim().to_string();
                if v.is_empty() {
                    return Err(Error::invalid(
                        "VOLUME specified can not be an empty string",
                    ));
                }
                if !vols.contains(&v) {
                    vols.push(v);
                }
            }
            vols.sort();
        }
        "stopsignal" => {
            need_arg()?;
            cfg.stop_signal = Some(rest.to_string());
        }
        "onbuild" => {
            need_arg()?;
            let trigger = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(trigger.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(Error::invalid(format!(
                    "{trigger} isn't allowed as an ONBUILD trigger"
                )));
            }
            cfg.on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string());
        }
        "healthcheck" => {
            need_arg()?;
            cfg.healthcheck = Some(healthcheck(rest)?);
        }
        _ => {
            return Err(Error::invalid(format!(
                "{lower} is not a valid change command"
            )))
        }
    }
    Ok(())
}

/// Exec form (a JSON string array) or shell form (wrapped in the image's shell).
fn command_form(cfg: &ImageConfig, rest: &str) -> Vec<String> {
    if let Some(v) = json_array(rest) {
        return v;
    }
    let mut shell = cfg
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    shell.push(rest.to_string());
    shell
}

fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// Splits on whitespace honouring '...' and "..." and backslash escapes; quotes removed.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c == '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `K=V K2="v 2"` or the legacy single pair `K some value`.
fn name_values(rest: &str, instr: &str) -> Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::invalid(format!("{instr} must have two arguments")))?;
        return Ok(vec![(k.to_string(), words(v.trim()).join(" "))]);
    }
    let mut out = Vec::new();
    for w in words(rest) {
        let (k, v) = w.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ))
        })?;
        if k.is_empty() {
            return Err(Error::invalid(format!("{instr} names can not be blank")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// "80" → "80/tcp"; "8000-8001/udp" → each port.
fn expand_port(p: &str) -> Result<Vec<String>> {
    let (ports, proto) = match p.split_once('/') {
        Some((a, b)) => (a, b.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    let bad = || Error::invalid(format!("invalid containerPort: {ports}"));
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let x = ports.parse::<u16>().map_err(|_| bad())?;
            (x, x)
        }
    };
    if hi < lo {
        return Err(Error::invalid(format!(
            "invalid range specified for container port: {ports}"
        )));
    }
    Ok((lo..=hi).map(|x| format!("{x}/{proto}")).collect())
}

/// Lexical cleaning like Go's path.Clean for absolute paths.
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// Go duration subset: "30s", "1m30s", "500ms", "1h".
fn parse_duration_ns(s: &str) -> Result<i64> {
    let bad = || Error::invalid(format!("time: invalid duration \"{s}\""));
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest == "0" {
        return Ok(0);
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

fn healthcheck(rest: &str) -> Result<HealthConfig> {
    let mut hc = HealthConfig::default();
    let mut rest = rest.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let (f, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("missing value for --{f}")))?;
        match k {
            "interval" => hc.interval = Some(parse_duration_ns(v)?),
            "timeout" => hc.timeout = Some(parse_duration_ns(v)?),
            "start-period" => hc.start_period = Some(parse_duration_ns(v)?),
            "start-interval" => hc.start_interval = Some(parse_duration_ns(v)?),
            "retries" => {
                hc.retries = Some(
                    v.parse()
                        .map_err(|_| Error::invalid(format!("invalid retries {v:?}")))?,
                )
            }
            _ => return Err(Error::invalid(format!("Unknown flag: {k}"))),
        }
        rest = after.trim();
    }
    let (kw, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match kw.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !args.trim().is_empty() {
                return Err(Error::invalid("HEALTHCHECK NONE takes no arguments"));
            }
            hc.test = Some(vec!["NONE".into()]);
        }
        "CMD" => {
            let args = args.trim();
            hc.test = Some(match json_array(args) {
                Some(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                None => vec!["CMD-SHELL".into(), args.to_string()],
            });
        }
        other => {
            return Err(Error::invalid(format!(
                "Unknown type {other:?} in HEALTHCHECK (try CMD)"
            )))
        }
    }
    Ok(hc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(ch: &[&str]) -> Result<ImageConfig> {
        let mut c = ImageConfig::default();
        apply_changes(
            &mut c,
            &ch.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(c)
    }

    #[test]
    fn changes_like_docker() {
        let c = apply(&[
            "CMD echo hi there",
            "ENV A=1 B=\"two words\"",
            "ENV C legacy value",
            "ENV A=3",
            "WORKDIR /app",
            "WORKDIR sub/../x",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8001",
            "LABEL a=b \"c d\"=e",
            "VOLUME [\"/data\", \"/logs\"]",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN true",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi there"]);
        assert_eq!(c.env.unwrap(), ["A=3", "B=two words", "C=legacy value"]);
        assert_eq!(c.working_dir.unwrap(), "/app/x");
        assert_eq!(c.user.unwrap(), "1000:1000");
        assert_eq!(
            c.exposed_ports.unwrap(),
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
        );
        let l = c.labels.unwrap();
        assert_eq!(l["a"], "b");
        assert_eq!(l["c d"], "e");
        assert_eq!(c.volumes.unwrap(), ["/data", "/logs"]);
        assert_eq!(c.stop_signal.unwrap(), "SIGINT");
        assert_eq!(c.on_build.unwrap(), ["RUN true"]);

        let c = apply(&["CMD [\"/bin/sh\",\"-c\",\"x\"]", "ENTRYPOINT [\"/init\"]"]).unwrap();
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "x"]);
        assert_eq!(c.entrypoint.unwrap(), ["/init"]);
        let c = apply(&["HEALTHCHECK --interval=5s --retries=3 CMD curl -f x"]).unwrap();
        let h = c.healthcheck.unwrap();
        assert_eq!(h.test.unwrap(), ["CMD-SHELL", "curl -f x"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(3));
        assert_eq!(
            apply(&["RUN true"]).unwrap_err().message,
            "run is not a valid change command"
        );
        assert!(apply(&["EXPOSE abc"]).is_err());
    }
}
