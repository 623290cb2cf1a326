//! /networks: list, inspect, create, remove, prune, connect, disconnect.

use super::blocking;
use crate::error::ApiResult;
use crate::http::{json, AppState, JsonBody, Params};
use crate::networks::{CreateRequest, Net, NetRecord};
use crate::state::State as St;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::Error;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json as j, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn ipam(r: &NetRecord) -> Value {
    let config: Vec<Value> = match &r.subnet {
        Some(s) if r.is_bridge() => {
            let mut c = serde_json::Map::new();
            c.insert("Subnet".into(), j!(s));
            if let Some(g) = &r.gateway {
                c.insert("Gateway".into(), j!(g));
            }
            if let Some(ir) = &r.ip_range {
                c.insert("IPRange".into(), j!(ir));
            }
            vec![Value::Object(c)]
        }
        _ => vec![],
    };
    j!({"Driver": "default", "Options": null, "Config": config})
}

/// Docker's Network object. `containers` is filled by inspect, empty in lists.
fn network_json(st: &St, r: &NetRecord, with_containers: bool) -> Value {
    let mut containers = serde_json::Map::new();
    if with_containers {
        for c in st.network_users(&r.id) {
            if !c.state.running {
                continue;
            }
            if let Some(e) = c.networks.values().find(|e| e.network_id == r.id) {
                let v4 = match &e.ip {
                    Some(ip) => format!("{ip}/{}", e.prefix),
                    None => String::new(),
                };
                containers.insert(
                    c.id.clone(),
                    j!({
                        "Name": c.name,
                        "EndpointID": e.endpoint_id,
                        "MacAddress": e.mac.clone().unwrap_or_default(),
                        "IPv4Address": v4,
                        "IPv6Address": "",
                    }),
                );
            }
        }
    }
    j!({
        "Name": r.name,
        "Id": r.id,
        "Created": r.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "Scope": "local",
        "Driver": r.driver,
        "EnableIPv4": true,
        "EnableIPv6": r.enable_ipv6,
        "IPAM": ipam(r),
        "Internal": r.internal,
        "Attachable": r.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": r.options,
        "Labels": r.labels,
    })
}

fn net_event(st: &St, r: &NetRecord, action: &str, container: Option<&str>) {
    let mut a = HashMap::from([
        ("name".to_string(), r.name.clone()),
        ("type".to_string(), r.driver.clone()),
    ]);
    if let Some(c) = container {
        a.insert("container".into(), c.to_string());
    }
    st.events.publish("network", action, &r.id, a);
}

fn label_match(labels: &HashMap<String, String>, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, val)) => labels.get(k).map(|x| x == val).unwrap_or(false),
        None => labels.contains_key(v),
    }
}

fn matches(st: &St, n: &Net, f: &HashMap<String, Vec<String>>) -> Result<bool, Error> {
    let r = &n.rec;
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| r.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "driver" => vals.iter().any(|v| v == &r.driver),
            "label" => vals.iter().all(|v| label_match(&r.labels, v)),
            "scope" => vals.iter().any(|v| v == "local"),
            "type" => vals.iter().any(|v| match v.as_str() {
                "builtin" => r.predefined(),
                "custom" => !r.predefined(),
                _ => false,
            }),
            "dangling" => {
                let want = match vals[0].as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    v => return Err(Error::invalid(format!("invalid filter 'dangling={v}'"))),
                };
                let dangling = !r.predefined() && st.network_users(&r.id).is_empty();
                dangling == want
            }
            other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let f = p.filters()?;
    let mut out = Vec::new();
    for n in st.networks.all() {
        if matches(&st, &n, &f)? {
            out.push(network_json(&st, &n.rec, false));
        }
    }
    Ok(json(StatusCode::OK, &out))
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let n = st.networks.find(&id)?;
    Ok(json(StatusCode::OK, &network_json(&st, &n.rec, true)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfigBody {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct IpamBody {
    driver: Option<String>,
    config: Option<Vec<IpamConfigBody>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: Option<bool>,
    attachable: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    options: Option<HashMap<String, String>>,
    labels: Option<HashMap<String, String>>,
}

pub async fn create(
    State(st): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    if b.enable_ipv6.unwrap_or(false) {
        return Err(Error::not_implemented("IPv6 networks are not supported yet").into());
    }
    let ipam = b.ipam.unwrap_or_default();
    if let Some(d) = ipam.driver.as_deref() {
        if !d.is_empty() && d != "default" {
            return Err(Error::not_found(format!("plugin \"{d}\" not found")).into());
        }
    }
    let mut cfgs = ipam.config.unwrap_or_default();
    let v4: Vec<&IpamConfigBody> = cfgs
        .iter()
        .filter(|c| {
            c.subnet
                .as_deref()
                .map(|s| !s.contains(':'))
                .unwrap_or(true)
        })
        .collect();
    if v4.len() > 1 {
        return Err(Error::not_implemented("only one IPv4 subnet per network is supported").into());
    }
    let c = if cfgs.is_empty() {
        IpamConfigBody::default()
    } else {
        cfgs.remove(0)
    };
    let req = CreateRequest {
        name: b.name,
        driver: b.driver.unwrap_or_default(),
        internal: b.internal.unwrap_or(false),
        attachable: b.attachable.unwrap_or(false),
        subnet: c.subnet.filter(|s| !s.is_empty()),
        gateway: c.gateway.filter(|s| !s.is_empty()),
        ip_range: c.ip_range.filter(|s| !s.is_empty()),
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
    };
    let st2 = st.clone();
    let rec = blocking(move || st2.networks.create(req)).await?;
    net_event(&st, &rec, "create", None);
    Ok(json(
        StatusCode::CREATED,
        &j!({"Id": rec.id, "Warning": ""}),
    ))
}

fn active_error(n: &NetRecord) -> Error {
    Error::forbidden(format!(
        "error while removing network: network {} id {} has active endpoints",
        n.name, n.id
    ))
}

pub async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let n = st.networks.find(&id)?;
    if n.rec.predefined() {
        return Err(Error::forbidden(format!(
            "{} is a pre-defined network and cannot be removed",
            n.rec.name
        ))
        .into());
    }
    if !st.network_users(&n.rec.id).is_empty() {
        return Err(active_error(&n.rec).into());
    }
    let st2 = st.clone();
    let rec = n.rec.clone();
    blocking(move || st2.networks.remove(&n)).await?;
    net_event(&st, &rec, "destroy", None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let f = p.filters()?;
    let until: Option<DateTime<Utc>> = match f.get("until").and_then(|v| v.first()) {
        Some(u) => Some(berth_runtime::logfile::parse_since(u, Utc::now()).map_err(Error::from)?),
        None => None,
    };
    let mut deleted = Vec::new();
    for n in st.networks.all() {
        if n.rec.predefined() || !st.network_users(&n.rec.id).is_empty() {
            continue;
        }
        if let Some(u) = until {
            if n.rec.created >= u {
                continue;
            }
        }
        if let Some(ls) = f.get("label") {
            if !ls.iter().all(|v| label_match(&n.rec.labels, v)) {
                continue;
            }
        }
        if let Some(ls) = f.get("label!") {
            if ls.iter().any(|v| label_match(&n.rec.labels, v)) {
                continue;
            }
        }
        let st2 = st.clone();
        let name = n.rec.name.clone();
        let n2: Arc<Net> = n.clone();
        match blocking(move || st2.networks.remove(&n2)).await {
            Ok(()) => {
                net_event(&st, &n.rec, "destroy", None);
                deleted.push(name)
            }
            Err(e) => tracing::warn!("prune {name}: {}", e.message),
        }
    }
    Ok(json(StatusCode::OK, &j!({"NetworksDeleted": deleted})))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfig {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
    aliases: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
}

pub async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConnectBody>,
) -> ApiResult<Response> {
    let n = st.networks.find(&id)?;
    let c = st.lookup(&b.container)?;
    let ec = b.endpoint_config.unwrap_or_default();
    let ip = ec
        .ipam_config
        .and_then(|i| i.ipv4_address)
        .filter(|s| !s.is_empty());
    st.connect_network(&c, &n, ec.aliases.unwrap_or_default(), ip)
        .await?;
    net_event(&st, &n.rec, "connect", Some(&c.id));
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DisconnectBody {
    container: String,
    #[allow(dead_code)]
    force: Option<bool>,
}

pub async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<DisconnectBody>,
) -> ApiResult<Response> {
    let n = st.networks.find(&id)?;
    let c = st.lookup(&b.container)?;
    st.disconnect_network(&c, &n).await?;
    net_event(&st, &n.rec, "disconnect", Some(&c.id));
    Ok(StatusCode::OK.into_response())
}
