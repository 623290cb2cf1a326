//! Container lifecycle commands that do not hijack a stream.

use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::Method;

use super::{confirm, filters_json, for_each};
use crate::args::{
    CommitArgs, ContainerPruneArgs, DiffArgs, ExportArgs, KillArgs, LogsArgs, NamesArgs, PortArgs,
    RenameArgs, RestartArgs, RmArgs, StopArgs, TopArgs, UpdateArgs,
};
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::units;

pub async fn stop(c: &Client, a: StopArgs) -> CliResult<()> {
    for_each(&a.containers, |name| {
        let opts = bollard::query_parameters::StopContainerOptions {
            signal: a.signal.clone(),
            t: a.time,
        };
        async move {
            c.docker
                .stop_container(&name, Some(opts))
                .await
                .map_err(|e| c.err(e))?;
            println!("{name}");
            Ok(())
        }
    })
    .await
}

pub async fn restart(c: &Client, a: RestartArgs) -> CliResult<()> {
    for_each(&a.containers, |name| {
        let opts = bollard::query_parameters::RestartContainerOptions {
            signal: a.signal.clone(),
            t: a.time,
        };
        async move {
            c.docker
                .restart_container(&name, Some(opts))
                .await
                .map_err(|e| c.err(e))?;
            println!("{name}");
            Ok(())
        }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> CliResult<()> {
    for_each(&a.containers, |name| {
        let opts = bollard::query_parameters::KillContainerOptions {
            signal: a.signal.clone().unwrap_or_else(|| "KILL".into()),
        };
        async move {
            c.docker
                .kill_container(&name, Some(opts))
                .await
                .map_err(|e| c.err(e))?;
            println!("{name}");
            Ok(())
        }
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> CliResult<()> {
    for_each(&a.containers, |name| {
        let opts = bollard::query_parameters::RemoveContainerOptions {
            v: a.volumes,
            force: a.force,
            link: a.link,
        };
        async move {
            c.docker
                .remove_container(&name, Some(opts))
                .await
                .map_err(|e| c.err(e))?;
            println!("{name}");
            Ok(())
        }
    })
    .await
}

pub async fn rename(c: &Client, a: RenameArgs) -> CliResult<()> {
    let opts = bollard::query_parameters::RenameContainerOptions {
        name: a.new_name.clone(),
    };
    c.docker
        .rename_container(&a.container, opts)
        .await
        .map_err(|e| {
            let e = c.err(e);
            CliError::new(
                1,
                format!(
                    "{}\nError: failed to rename container named {}",
                    e.msg, a.container
                ),
            )
        })
}

pub async fn pause(c: &Client, a: NamesArgs, pause: bool) -> CliResult<()> {
    for_each(&a.containers, |name| async move {
        let r = if pause {
            c.docker.pause_container(&name).await
        } else {
            c.docker.unpause_container(&name).await
        };
        r.map_err(|e| c.err(e))?;
        println!("{name}");
        Ok(())
    })
    .await
}

pub async fn wait(c: &Client, a: NamesArgs) -> CliResult<()> {
    for_each(&a.containers, |name| async move {
        let mut s = c.docker.wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        match s.next().await {
            Some(Ok(r)) => println!("{}", r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                println!("{code}")
            }
            Some(Err(e)) => return Err(c.err(e)),
            None => {}
        }
        Ok(())
    })
    .await
}

pub async fn top(c: &Client, a: TopArgs) -> CliResult<()> {
    let mut path = format!("/containers/{}/top", q(&a.container));
    if !a.ps_args.is_empty() {
        path.push_str(&format!("?ps_args={}", q(&a.ps_args.join(" "))));
    }
    let v = c.get_json(&path).await?;
    let mut out = String::new();
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    out.push_str(&strs(&v["Titles"]).join("\t"));
    out.push('\n');
    if let Some(rows) = v["Processes"].as_array() {
        for r in rows {
            out.push_str(&strs(r).join("\t"));
            out.push('\n');
        }
    }
    // docker top uses a wider minimum cell (20) than the other tables.
    print!("{}", crate::table::tabwrite_min(&out, 20));
    Ok(())
}

pub async fn prune(c: &Client, a: ContainerPruneArgs) -> CliResult<()> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(());
    }
    let mut path = "/containers/prune".to_string();
    if let Some(f) = filters_json(&a.filter)? {
        path.push_str(&format!("?filters={}", q(&f)));
    }
    let (status, body) = c.raw(Method::POST, &path, None, None).await?;
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut reclaimed = 0;
    if let Some(ids) = v["ContainersDeleted"].as_array().filter(|a| !a.is_empty()) {
        let mut out = "Deleted Containers:\n".to_string();
        for id in ids {
            out.push_str(id.as_str().unwrap_or_default());
            out.push('\n');
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

pub async fn logs(c: &Client, a: LogsArgs) -> CliResult<()> {
    let info = c
        .docker
        .inspect_container(
            &a.container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(|e| c.err(e))?;
    let tty = info.config.and_then(|c| c.tty).unwrap_or(false);
    let now = chrono::Utc::now().timestamp();
    let mut path = format!(
        "/containers/{}/logs?stdout=1&stderr=1&tail={}",
        q(&a.container),
        q(&a.tail)
    );
    if a.follow {
        path.push_str("&follow=1");
    }
    if a.timestamps {
        path.push_str("&timestamps=1");
    }
    if a.details {
        path.push_str("&details=1");
    }
    for (flag, val) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = val {
            let t = units::parse_timestamp(v, now).map_err(|e| CliError::new(1, e))?;
            path.push_str(&format!("&{flag}={t}"));
        }
    }
    let resp = c.raw_stream(Method::GET, &path, None, None).await?;
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
    let mut demux = crate::stream::Demux::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::new(1, format!("error reading logs: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if tty {
            crate::stream::write_out(1, &data)?;
        } else {
            demux.feed(&data, crate::stream::write_out)?;
        }
    }
    Ok(())
}

/// "host:port" as Go's net.JoinHostPort writes it.
fn join_host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `port`: the published ports from inspect, as "80/tcp -> 0.0.0.0:8080".
pub fn port_lines(
    inspect: &serde_json::Value,
    wanted: Option<&str>,
) -> Result<Vec<String>, String> {
    let ports = inspect["NetworkSettings"]["Ports"].as_object();
    let bindings = |key: &str| -> Vec<String> {
        ports
            .and_then(|p| p.get(key))
            .and_then(|b| b.as_array())
            .map(|a| {
                a.iter()
                    .map(|b| {
                        join_host_port(
                            b["HostIp"].as_str().unwrap_or_default(),
                            b["HostPort"].as_str().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(w) = wanted {
        let key = if w.contains('/') {
            w.to_string()
        } else {
            format!("{w}/tcp")
        };
        let out = bindings(&key);
        if out.is_empty() {
            let name = inspect["Name"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/');
            return Err(format!(
                "Error: No public port '{key}' published for {name}"
            ));
        }
        return Ok(out);
    }
    let mut keys: Vec<&String> = ports.map(|p| p.keys().collect()).unwrap_or_default();
    // Numeric port order, then protocol, as docker sorts them.
    keys.sort_by_key(|k| {
        let (num, proto) = k.split_once('/').unwrap_or((k, ""));
        (num.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    let mut out = Vec::new();
    for k in keys {
        for b in bindings(k) {
            out.push(format!("{k} -> {b}"));
        }
    }
    Ok(out)
}

pub async fn port(c: &Client, a: PortArgs) -> CliResult<()> {
    let v = c
        .get_json(&format!("/containers/{}/json", q(&a.container)))
        .await?;
    let lines = port_lines(&v, a.port.as_deref()).map_err(|e| CliError::new(1, e))?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

pub async fn diff(c: &Client, a: DiffArgs) -> CliResult<()> {
    let v = c
        .get_json(&format!("/containers/{}/changes", q(&a.container)))
        .await?;
    let mut changes = v.as_array().cloned().unwrap_or_default();
    // docker lists changes sorted by path.
    changes.sort_by(|a, b| a["Path"].as_str().cmp(&b["Path"].as_str()));
    for ch in changes {
        let kind = match ch["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        println!("{kind} {}", ch["Path"].as_str().unwrap_or_default());
    }
    Ok(())
}

pub async fn export(c: &Client, a: ExportArgs) -> CliResult<()> {
    let path = format!("/containers/{}/export", q(&a.container));
    super::image::download(c, &path, a.output.as_deref(), "failed to export container").await
}

pub async fn commit(c: &Client, a: CommitArgs) -> CliResult<()> {
    let mut path = format!(
        "/commit?container={}&pause={}",
        q(&a.container),
        a.pause as u8
    );
    if let Some(r) = &a.reference {
        let (repo, tag) = super::run::split_ref(r);
        path.push_str(&format!("&repo={}", q(&repo)));
        if !tag.is_empty() {
            path.push_str(&format!("&tag={}", q(&tag)));
        }
    }
    if let Some(m) = &a.message {
        path.push_str(&format!("&comment={}", q(m)));
    }
    if let Some(au) = &a.author {
        path.push_str(&format!("&author={}", q(au)));
    }
    for ch in &a.change {
        path.push_str(&format!("&changes={}", q(ch)));
    }
    let (status, body) = c.raw(Method::POST, &path, None, None).await?;
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(())
}

/// The update body from `update`'s flags (only what was given is sent).
pub fn update_body(a: &UpdateArgs) -> Result<serde_json::Value, String> {
    let bytes = |v: &Option<String>, flag: &str| -> Result<Option<i64>, String> {
        v.as_deref()
            .map(|s| {
                if s == "-1" {
                    Ok(-1)
                } else {
                    units::ram_in_bytes(s)
                        .map_err(|e| format!("invalid argument \"{s}\" for \"{flag}\" flag: {e}"))
                }
            })
            .transpose()
    };
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(v) = bytes(&a.memory, "-m, --memory")? {
        put("Memory", v.into());
    }
    if let Some(v) = bytes(&a.memory_swap, "--memory-swap")? {
        put("MemorySwap", v.into());
    }
    if let Some(v) = bytes(&a.memory_reservation, "--memory-reservation")? {
        put("MemoryReservation", v.into());
    }
    if let Some(c) = &a.cpus {
        put("NanoCpus", units::parse_cpus(c)?.into());
    }
    if let Some(v) = a.cpu_shares {
        put("CpuShares", v.into());
    }
    if let Some(v) = &a.cpuset_cpus {
        put("CpusetCpus", v.clone().into());
    }
    if let Some(v) = a.pids_limit {
        put("PidsLimit", v.into());
    }
    if let Some(r) = &a.restart {
        let p = crate::opts::parse_restart(r)?;
        put(
            "RestartPolicy",
            serde_json::to_value(p).map_err(|e| e.to_string())?,
        );
    }
    Ok(serde_json::Value::Object(m))
}

pub async fn update(c: &Client, a: UpdateArgs) -> CliResult<()> {
    let body = update_body(&a).map_err(|e| CliError::new(125, e))?;
    if body.as_object().is_some_and(|m| m.is_empty()) {
        return Err(CliError::new(
            1,
            "you must provide one or more flags when using this command",
        ));
    }
    let text = body.to_string();
    for_each(&a.containers, |name| {
        let text = text.clone();
        async move {
            let b = http_body_util::Full::new(bytes::Bytes::from(text))
                .map_err(|never| match never {})
                .boxed();
            let path = format!("/containers/{}/update", q(&name));
            let (status, resp) = c
                .raw(Method::POST, &path, Some(b), Some("application/json"))
                .await?;
            if !status.is_success() {
                return Err(daemon_error(status, &resp));
            }
            let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
            for w in v["Warnings"].as_array().cloned().unwrap_or_default() {
                eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
            }
            println!("{name}");
            Ok(())
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_sends_only_given_flags() {
        let a = UpdateArgs {
            memory: Some("64m".into()),
            memory_swap: Some("-1".into()),
            memory_reservation: None,
            cpus: Some("0.5".into()),
            cpu_shares: None,
            cpuset_cpus: None,
            pids_limit: Some(10),
            restart: Some("on-failure:2".into()),
            containers: vec!["c".into()],
        };
        let b = update_body(&a).unwrap_or_default();
        assert_eq!(b["Memory"], 67_108_864);
        assert_eq!(b["MemorySwap"], -1);
        assert_eq!(b["NanoCpus"], 500_000_000);
        assert_eq!(b["PidsLimit"], 10);
        assert_eq!(b["RestartPolicy"]["Name"], "on-failure");
        assert_eq!(b["RestartPolicy"]["MaximumRetryCount"], 2);
        assert!(b.get("CpuShares").is_none());
    }

    #[test]
    fn port_listing_like_docker() {
        let v = serde_json::json!({"Name": "/web", "NetworkSettings": {"Ports": {
            "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8443"}, {"HostIp": "::", "HostPort": "8443"}],
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
            "53/udp": null
        }}});
        assert_eq!(
            port_lines(&v, None),
            Ok(vec![
                "80/tcp -> 127.0.0.1:8080".to_string(),
                "443/tcp -> 0.0.0.0:8443".to_string(),
                "443/tcp -> [::]:8443".to_string(),
            ])
        );
        assert_eq!(
            port_lines(&v, Some("80")),
            Ok(vec!["127.0.0.1:8080".to_string()])
        );
        assert_eq!(
            port_lines(&v, Some("53/udp")),
            Err("Error: No public port '53/udp' published for web".to_string())
        );
    }
}
