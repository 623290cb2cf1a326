//! `volume` and `network` management commands.

use bytes::Bytes;
use gtmpl::Value;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde_json::Value as J;

use super::{confirm, filters_json, for_each};
use crate::args::{
    NetworkCommand, NetworkConnectArgs, NetworkCreateArgs, NetworkDisconnectArgs, NetworkPruneArgs,
    ObjInspectArgs, ObjLsArgs, VolumeCommand, VolumeCreateArgs, VolumePruneArgs,
};
use crate::client::{daemon_error, q, CliError, CliResult, Client};
use crate::tmpl::{self, object, Format, Tmpl};
use crate::units;

const VOLUME_TABLE: &str = "table {{.Driver}}\t{{.Name}}";
const NETWORK_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";

fn s(v: &J) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn labels_str(v: &J) -> String {
    let mut l: Vec<String> = v
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect())
        .unwrap_or_default();
    l.sort();
    l.join(",")
}

/// `k=v` flags as a JSON object.
fn kv_object(items: &[String]) -> J {
    let m: serde_json::Map<String, J> = items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.to_string(), J::String(v.to_string())),
            None => (i.clone(), J::String(String::new())),
        })
        .collect();
    J::Object(m)
}

async fn post_json(c: &Client, path: &str, body: &J) -> CliResult<J> {
    let b = Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed();
    let (status, resp) = c
        .raw(Method::POST, path, Some(b), Some("application/json"))
        .await?;
    if !status.is_success() {
        return Err(daemon_error(status, &resp));
    }
    Ok(serde_json::from_slice(&resp).unwrap_or(J::Null))
}

async fn delete(c: &Client, path: &str) -> CliResult<()> {
    let (status, resp) = c.raw(Method::DELETE, path, None, None).await?;
    if !status.is_success() {
        return Err(daemon_error(status, &resp));
    }
    Ok(())
}

/// Raw-JSON inspect shared by volumes and networks.
async fn inspect(c: &Client, a: &ObjInspectArgs, kind: &str) -> CliResult<()> {
    let t = a.format.as_deref().map(Tmpl::parse).transpose()?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        let (status, body) = c
            .raw(Method::GET, &format!("/{kind}/{}", q(n)), None, None)
            .await?;
        if status.is_success() {
            found.push(body.to_vec());
        } else {
            errors.push(daemon_error(status, &body).msg);
        }
    }
    match t {
        Some(t) => {
            for raw in &found {
                tmpl::record_key_order(raw);
                let v: J = serde_json::from_slice(raw).unwrap_or_default();
                let out = t
                    .render(&tmpl::from_json(&v))
                    .map_err(|e| CliError::new(1, format!("template parsing error: {}", e.0)))?;
                println!("{out}");
            }
        }
        None => println!("{}", crate::jsonfmt::indent_array(&found)),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(1, errors.join("\n")))
    }
}

pub fn volume_row(v: &J) -> Value {
    object(vec![
        ("Name", Value::from(s(&v["Name"]))),
        ("Driver", Value::from(s(&v["Driver"]))),
        ("Scope", Value::from(s(&v["Scope"]))),
        ("Mountpoint", Value::from(s(&v["Mountpoint"]))),
        ("Labels", Value::from(labels_str(&v["Labels"]))),
        ("Links", Value::from("N/A")),
        ("Size", Value::from("N/A")),
    ])
}

fn volume_header() -> Value {
    object(vec![
        ("Name", Value::from("VOLUME NAME")),
        ("Driver", Value::from("DRIVER")),
        ("Scope", Value::from("SCOPE")),
        ("Mountpoint", Value::from("MOUNTPOINT")),
        ("Labels", Value::from("LABELS")),
        ("Links", Value::from("LINKS")),
        ("Size", Value::from("SIZE")),
    ])
}

pub fn network_row(n: &J, trunc: bool) -> Value {
    let id = s(&n["Id"]);
    let id = if trunc { units::truncate_id(&id) } else { id };
    object(vec![
        ("ID", Value::from(id)),
        ("Name", Value::from(s(&n["Name"]))),
        ("Driver", Value::from(s(&n["Driver"]))),
        ("Scope", Value::from(s(&n["Scope"]))),
        (
            "IPv6",
            Value::from(n["EnableIPv6"].as_bool().unwrap_or(false).to_string()),
        ),
        (
            "Internal",
            Value::from(n["Internal"].as_bool().unwrap_or(false).to_string()),
        ),
        ("Labels", Value::from(labels_str(&n["Labels"]))),
        ("CreatedAt", Value::from(s(&n["Created"]))),
    ])
}

fn network_header() -> Value {
    object(vec![
        ("ID", Value::from("NETWORK ID")),
        ("Name", Value::from("NAME")),
        ("Driver", Value::from("DRIVER")),
        ("Scope", Value::from("SCOPE")),
        ("IPv6", Value::from("IPV6")),
        ("Internal", Value::from("INTERNAL")),
        ("Labels", Value::from("LABELS")),
        ("CreatedAt", Value::from("CREATED AT")),
    ])
}

fn list_format(a: &ObjLsArgs, default: &str, quiet: &str) -> String {
    match (&a.format, a.quiet) {
        (_, true) => quiet.to_string(),
        (Some(f), false) => f.clone(),
        (None, false) => default.to_string(),
    }
}

pub async fn volume(c: &Client, cmd: VolumeCommand) -> CliResult<()> {
    match cmd {
        VolumeCommand::Create(a) => volume_create(c, a).await,
        VolumeCommand::Inspect(a) => inspect(c, &a, "volumes").await,
        VolumeCommand::Ls(a) => {
            let mut path = "/volumes".to_string();
            if let Some(f) = filters_json(&a.filter)? {
                path.push_str(&format!("?filters={}", q(&f)));
            }
            let v = c.get_json(&path).await?;
            let mut vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            // docker sorts volumes by name.
            vols.sort_by_key(|x| s(&x["Name"]));
            let rows: Vec<Value> = vols.iter().map(volume_row).collect();
            let fmt = Format::new(
                Some(&list_format(&a, VOLUME_TABLE, "{{.Name}}")),
                VOLUME_TABLE,
            );
            print!("{}", fmt.render(&volume_header(), &rows)?);
            Ok(())
        }
        VolumeCommand::Prune(a) => volume_prune(c, a).await,
        VolumeCommand::Rm(a) => {
            for_each(&a.names, |n| async move {
                delete(c, &format!("/volumes/{}?force={}", q(&n), a.force as u8)).await?;
                println!("{n}");
                Ok(())
            })
            .await
        }
    }
}

async fn volume_create(c: &Client, a: VolumeCreateArgs) -> CliResult<()> {
    let body = serde_json::json!({
        "Name": a.name.clone().unwrap_or_default(),
        "Driver": a.driver,
        "DriverOpts": kv_object(&a.opt),
        "Labels": kv_object(&a.label),
    });
    let v = post_json(c, "/volumes/create", &body).await?;
    println!("{}", s(&v["Name"]));
    Ok(())
}

async fn volume_prune(c: &Client, a: VolumePruneArgs) -> CliResult<()> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !confirm(warning) {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let mut path = "/volumes/prune".to_string();
    if let Some(f) = filters_json(&filters)? {
        path.push_str(&format!("?filters={}", q(&f)));
    }
    let v = post_json(c, &path, &J::Null).await?;
    let mut reclaimed = 0;
    if let Some(items) = v["VolumesDeleted"].as_array().filter(|i| !i.is_empty()) {
        let mut out = "Deleted Volumes:\n".to_string();
        for i in items {
            out.push_str(&s(i));
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

pub async fn network(c: &Client, cmd: NetworkCommand) -> CliResult<()> {
    match cmd {
        NetworkCommand::Connect(a) => network_connect(c, a).await,
        NetworkCommand::Create(a) => network_create(c, a).await,
        NetworkCommand::Disconnect(a) => network_disconnect(c, a).await,
        NetworkCommand::Inspect(a) => inspect(c, &a, "networks").await,
        NetworkCommand::Ls(a) => {
            let mut path = "/networks".to_string();
            if let Some(f) = filters_json(&a.filter)? {
                path.push_str(&format!("?filters={}", q(&f)));
            }
            let v = c.get_json(&path).await?;
            let mut nets = v.as_array().cloned().unwrap_or_default();
            // docker sorts networks by name.
            nets.sort_by_key(|x| s(&x["Name"]));
            let rows: Vec<Value> = nets.iter().map(|n| network_row(n, !a.no_trunc)).collect();
            let fmt = Format::new(
                Some(&list_format(&a, NETWORK_TABLE, "{{.ID}}")),
                NETWORK_TABLE,
            );
            print!("{}", fmt.render(&network_header(), &rows)?);
            Ok(())
        }
        NetworkCommand::Prune(a) => network_prune(c, a).await,
        NetworkCommand::Rm(a) => {
            for_each(&a.names, |n| async move {
                delete(c, &format!("/networks/{}", q(&n))).await?;
                println!("{n}");
                Ok(())
            })
            .await
        }
    }
}

async fn network_create(c: &Client, a: NetworkCreateArgs) -> CliResult<()> {
    let config: Vec<J> = a
        .subnet
        .iter()
        .enumerate()
        .map(|(i, sn)| {
            let mut m = serde_json::Map::new();
            m.insert("Subnet".into(), J::String(sn.clone()));
            if let Some(g) = a.gateway.get(i) {
                m.insert("Gateway".into(), J::String(g.clone()));
            }
            if let Some(r) = a.ip_range.get(i) {
                m.insert("IPRange".into(), J::String(r.clone()));
            }
            J::Object(m)
        })
        .collect();
    let body = serde_json::json!({
        "Name": a.name,
        "Driver": a.driver,
        "Internal": a.internal,
        "Attachable": a.attachable,
        "EnableIPv6": a.ipv6,
        "Options": kv_object(&a.opt),
        "Labels": kv_object(&a.label),
        "IPAM": {"Driver": "default", "Config": config, "Options": {}},
    });
    let v = post_json(c, "/networks/create", &body).await?;
    if let Some(w) = v["Warning"].as_str().filter(|w| !w.is_empty()) {
        eprintln!("WARNING: {w}");
    }
    println!("{}", s(&v["Id"]));
    Ok(())
}

async fn network_connect(c: &Client, a: NetworkConnectArgs) -> CliResult<()> {
    let mut endpoint = serde_json::Map::new();
    if !a.alias.is_empty() {
        endpoint.insert("Aliases".into(), serde_json::json!(a.alias));
    }
    if let Some(ip) = &a.ip {
        endpoint.insert("IPAMConfig".into(), serde_json::json!({"IPv4Address": ip}));
    }
    let body = serde_json::json!({"Container": a.container, "EndpointConfig": endpoint});
    post_json(c, &format!("/networks/{}/connect", q(&a.network)), &body).await?;
    Ok(())
}

async fn network_disconnect(c: &Client, a: NetworkDisconnectArgs) -> CliResult<()> {
    let body = serde_json::json!({"Container": a.container, "Force": a.force});
    post_json(c, &format!("/networks/{}/disconnect", q(&a.network)), &body).await?;
    Ok(())
}

async fn network_prune(c: &Client, a: NetworkPruneArgs) -> CliResult<()> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Ok(());
    }
    let mut path = "/networks/prune".to_string();
    if let Some(f) = filters_json(&a.filter)? {
        path.push_str(&format!("?filters={}", q(&f)));
    }
    let v = post_json(c, &path, &J::Null).await?;
    if let Some(items) = v["NetworksDeleted"].as_array().filter(|i| !i.is_empty()) {
        let mut out = "Deleted Networks:\n".to_string();
        for i in items {
            out.push_str(&s(i));
            out.push('\n');
        }
        println!("{out}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_and_network_tables() {
        let v = serde_json::json!({"Name": "data", "Driver": "local", "Scope": "local", "Labels": {"b": "2", "a": "1"}});
        let f = Format::new(None, VOLUME_TABLE);
        assert_eq!(
            f.render(&volume_header(), &[volume_row(&v)])
                .unwrap_or_default(),
            "DRIVER    VOLUME NAME\nlocal     data\n"
        );
        let f = Format::new(Some("{{.Name}} {{.Labels}}"), VOLUME_TABLE);
        assert_eq!(
            f.render(&volume_header(), &[volume_row(&v)])
                .unwrap_or_default(),
            "data a=1,b=2\n"
        );
        let n = serde_json::json!({"Id": "0123456789abcdef0123", "Name": "bridge", "Driver": "bridge", "Scope": "local"});
        let f = Format::new(None, NETWORK_TABLE);
        assert_eq!(
            f.render(&network_header(), &[network_row(&n, true)])
                .unwrap_or_default(),
            "NETWORK ID     NAME      DRIVER    SCOPE\n0123456789ab   bridge    bridge    local\n"
        );
    }
}
