use super::blocking;
use crate::containers::{log_path, AttachConn, Ctr, Record};
use crate::error::{ApiError, ApiResult};
use crate::http::{json, AppState, JsonBody, Params};
use crate::state::State as St;
use crate::stream::{self, Hijack};
use crate::util;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::models::{self, ContainerCreateBody};
use berth_api::Error;
use berth_runtime::client::{AttachOptions, ShimClient};
use berth_runtime::logfile::{self, ReadOptions, Stream as LogStream};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn ts(t: &Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        None => ZERO_TIME.to_string(),
    }
}

pub async fn create(
    State(st): State<AppState>,
    p: Params,
    JsonBody(raw): JsonBody<serde_json::Value>,
) -> ApiResult<Response> {
    // Unknown mount types get docker's message, not a JSON decoding error.
    berth_volume::spec::check_raw_mount_types(&raw)?;
    let body: ContainerCreateBody = if raw.is_null() {
        ContainerCreateBody::default()
    } else {
        serde_json::from_value(raw).map_err(|e| Error::invalid(format!("invalid JSON: {e}")))?
    };
    let name = p.get("name").filter(|n| !n.is_empty()).map(String::from);
    let id = st.create_container(name, body).await?;
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({"Id": id, "Warnings": []}),
    ))
}

fn status_string(r: &Record) -> String {
    let now = Utc::now();
    let s = &r.state;
    if s.running {
        let since = s.started_at.map(|t| (now - t).num_seconds()).unwrap_or(0);
        let mut out = format!("Up {}", util::human_duration(since));
        if s.paused {
            out.push_str(" (Paused)");
        } else if let Some(h) = &s.health {
            out.push_str(&match h.status.as_str() {
                "starting" => " (health: starting)".to_string(),
                st => format!(" ({st})"),
            });
        }
        return out;
    }
    if s.status == "removing" {
        return "Removal In Progress".into();
    }
    if s.restarting {
        let ago = s.finished_at.map(|f| (now - f).num_seconds()).unwrap_or(0);
        return format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            util::human_duration(ago)
        );
    }
    if s.status == "created" && !r.has_started {
        return "Created".into();
    }
    match s.finished_at {
        Some(f) => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            util::human_duration((now - f).num_seconds())
        ),
        None => "Created".into(),
    }
}

fn command_string(r: &Record) -> String {
    let mut parts = vec![r.path.clone()];
    parts.extend(r.args.iter().cloned());
    parts.join(" ")
}

fn network_settings(r: &Record) -> HashMap<String, models::EndpointSettings> {
    let mut m = HashMap::new();
    for (name, e) in &r.networks {
        m.insert(
            name.clone(),
            models::EndpointSettings {
                network_id: Some(e.network_id.clone()),
                endpoint_id: Some(e.endpoint_id.clone()),
                gateway: Some(e.gateway.clone().unwrap_or_default()),
                ip_address: Some(e.ip.clone().unwrap_or_default()),
                ip_prefix_len: Some(e.prefix as i64),
                mac_address: Some(e.mac.clone().unwrap_or_default()),
                aliases: (!e.aliases.is_empty()).then(|| e.aliases.clone()),
                dns_names: e.ip.as_ref().map(|_| {
                    let mut v = vec![r.name.clone(), r.id[..12].to_string()];
                    v.extend(e.aliases.iter().cloned());
                    v
                }),
                ipam_config: e.ipv4_config.as_ref().map(|ip| models::EndpointIpamConfig {
                    ipv4_address: Some(ip.clone()),
                    ..Default::default()
                }),
                ipv6_gateway: Some(String::new()),
                global_ipv6_address: Some(String::new()),
                global_ipv6_prefix_len: Some(0),
                ..Default::default()
            },
        );
    }
    m
}

/// Docker's PortMap: every exposed port, with its bindings while published (else null).
fn port_map(r: &Record) -> models::PortMap {
    let mut m: models::PortMap = HashMap::new();
    if r.state.running && !r.networks.is_empty() {
        for k in r.config.exposed_ports.clone().unwrap_or_default().iter() {
            m.insert(k.clone(), None);
        }
    }
    for (k, list) in &r.published {
        m.insert(
            k.clone(),
            Some(
                list.iter()
                    .map(|p| models::PortBinding {
                        host_ip: Some(p.host_ip.clone()),
                        host_port: Some(p.host_port.to_string()),
                    })
                    .collect(),
            ),
        );
    }
    m
}

fn port_summaries(r: &Record) -> Vec<models::PortSummary> {
    let mut out = Vec::new();
    for (k, v) in port_map(r) {
        let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
        let Ok(private) = port.parse::<u16>() else {
            continue;
        };
        let typ = match proto {
            "udp" => Some(models::PortSummaryTypeEnum::UDP),
            "sctp" => Some(models::PortSummaryTypeEnum::SCTP),
            _ => Some(models::PortSummaryTypeEnum::TCP),
        };
        match v {
            None => out.push(models::PortSummary {
                private_port: private,
                typ,
                ..Default::default()
            }),
            Some(list) => {
                for b in list {
                    out.push(models::PortSummary {
                        ip: b.host_ip.clone(),
                        private_port: private,
                        public_port: b.host_port.as_deref().and_then(|p| p.parse().ok()),
                        typ,
                    })
                }
            }
        }
    }
    out.sort_by(|a, b| (a.private_port, &a.ip).cmp(&(b.private_port, &b.ip)));
    out
}

pub(crate) fn summary(r: &Record) -> models::ContainerSummary {
    models::ContainerSummary {
        id: Some(r.id.clone()),
        names: Some(vec![format!("/{}", r.name)]),
        image: Some(r.config.image.clone().unwrap_or_default()),
        image_id: Some(r.image_id.clone()),
        command: Some(command_string(r)),
        created: Some(r.created.timestamp()),
        ports: Some(port_summaries(r)),
        labels: Some(r.config.labels.clone().unwrap_or_default()),
        state: state_enum(&r.state.status),
        status: Some(status_string(r)),
        host_config: Some(models::ContainerSummaryHostConfig {
            network_mode: r.host_config.network_mode.clone(),
            ..Default::default()
        }),
        network_settings: Some(models::ContainerSummaryNetworkSettings {
            networks: Some(network_settings(r)),
        }),
        mounts: Some(crate::volumes::api_mounts(r)),
        ..Default::default()
    }
}

/// A state string ("running", ...) as one of the models' status enums (they share Docker's
/// spelling, so serde maps it); anything unknown reads as exited.
fn state_enum<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::from(s))
        .or_else(|_| serde_json::from_value(serde_json::Value::from("exited")))
        .ok()
}

fn matches_filters(st: &St, r: &Record, f: &HashMap<String, Vec<String>>) -> Result<bool, Error> {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "network" => vals.iter().any(|v| {
                r.networks
                    .iter()
                    .any(|(n, e)| n == v || e.network_id.starts_with(v.as_str()))
            }),
            "name" => vals.iter().any(|v| {
                let v = v.strip_prefix('/').unwrap_or(v);
                r.name.contains(v)
            }),
            "status" => {
                for v in vals {
                    if !matches!(
                        v.as_str(),
                        "created"
                            | "restarting"
                            | "running"
                            | "removing"
                            | "paused"
                            | "exited"
                            | "dead"
                    ) {
                        return Err(Error::invalid(format!("invalid filter 'status={v}'")));
                    }
                }
                vals.contains(&r.state.status)
            }
            "exited" => {
                !r.state.running
                    && r.has_started
                    && vals
                        .iter()
                        .any(|v| v.parse::<i64>().ok() == Some(r.state.exit_code))
            }
            "label" => {
                let labels = r.config.labels.clone().unwrap_or_default();
                vals.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => labels.get(k).map(|x| x == val).unwrap_or(false),
                    None => labels.contains_key(v),
                })
            }
            "ancestor" => vals.iter().any(|v| {
                r.config.image.as_deref() == Some(v.as_str())
                    || st
                        .images
                        .resolve(v)
                        .map(|i| i.id == r.image_id)
                        .unwrap_or(false)
            }),
            "before" | "since" => {
                let mut ok = true;
                for v in vals {
                    let other = st.lookup(v)?.rec();
                    ok &= if k == "before" {
                        r.created < other.created
                    } else {
                        r.created > other.created
                    };
                }
                ok
            }
            "is-task" => vals.iter().any(|v| v == "false"),
            "health" => {
                let h = r
                    .state
                    .health
                    .as_ref()
                    .map(|h| h.status.as_str())
                    .unwrap_or("none");
                vals.iter().any(|v| v == h)
            }
            "volume" => vals.iter().any(|v| {
                r.mounts
                    .iter()
                    .any(|m| (!m.name.is_empty() && &m.name == v) || &m.destination == v)
            }),
            "publish" | "expose" => true,
            other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let all = p.bool("all", false);
    let size = p.bool("size", false);
    let limit = p.int("limit")?.unwrap_or(-1);
    let filters = p.filters()?;
    let mut recs: Vec<Record> = st.table_read().by_id.values().map(|c| c.rec()).collect();
    recs.sort_by_key(|r| std::cmp::Reverse(r.created));
    let st2 = st.clone();
    let out = blocking(move || {
        let mut out = Vec::new();
        for r in recs {
            if !all
                && limit <= 0
                && !r.state.running
                && !filters.contains_key("status")
                && !filters.contains_key("exited")
            {
                continue;
            }
            if !matches_filters(&st2, &r, &filters)? {
                continue;
            }
            let mut s = summary(&r);
            if size {
                let (rw, root) = super::system::container_sizes(&st2, &r);
                s.size_rw = Some(rw);
                s.size_root_fs = Some(root);
            }
            out.push(s);
            if limit > 0 && out.len() as i64 >= limit {
                break;
            }
        }
        Ok(out)
    })
    .await?;
    Ok(json(StatusCode::OK, &out))
}

pub fn inspect_record(st: &St, r: &Record) -> models::ContainerInspectResponse {
    let dir = st.container_dir(&r.id);
    let s = &r.state;
    let mut gd = HashMap::new();
    gd.insert(
        "MergedDir".to_string(),
        dir.join("rootfs").display().to_string(),
    );
    gd.insert(
        "UpperDir".to_string(),
        dir.join("upper").display().to_string(),
    );
    gd.insert(
        "WorkDir".to_string(),
        dir.join("work").display().to_string(),
    );
    let execs: Vec<String> = st
        .execs
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter(|e| e.container_id == r.id && e.state().running)
        .map(|e| e.id.clone())
        .collect();
    models::ContainerInspectResponse {
        id: Some(r.id.clone()),
        created: Some(r.created),
        path: Some(r.path.clone()),
        args: Some(r.args.clone()),
        state: Some(models::ContainerState {
            status: state_enum(&s.status),
            running: Some(s.running),
            paused: Some(s.paused),
            restarting: Some(s.restarting),
            oom_killed: Some(s.oom_killed),
            dead: Some(s.dead),
            pid: Some(s.pid),
            exit_code: Some(s.exit_code),
            error: Some(s.error.clone()),
            started_at: Some(ts(&s.started_at)),
            finished_at: Some(ts(&s.finished_at)),
            health: None,
        }),
        image: Some(r.image_id.clone()),
        resolv_conf_path: Some(dir.join("resolv.conf").display().to_string()),
        hostname_path: Some(dir.join("hostname").display().to_string()),
        hosts_path: Some(dir.join("hosts").display().to_string()),
        log_path: Some(log_path(&dir, &r.id).display().to_string()),
        name: Some(format!("/{}", r.name)),
        restart_count: Some(r.restart_count),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: (!execs.is_empty()).then_some(execs),
        host_config: Some(r.host_config.clone()),
        graph_driver: Some(models::DriverData {
            name: "overlay2".into(),
            data: gd,
        }),
        mounts: Some(crate::volumes::api_mounts(r)),
        config: Some(r.config.clone()),
        network_settings: Some(models::NetworkSettings {
            sandbox_id: Some(
                r.networks
                    .values()
                    .find(|e| e.ip.is_some())
                    .map(|_| r.id.clone())
                    .unwrap_or_default(),
            ),
            sandbox_key: Some(
                st.networks
                    .sandbox_key(r)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ports: Some(port_map(r)),
            networks: Some(network_settings(r)),
        }),
        ..Default::default()
    }
}

pub async fn inspect(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let r = c.rec();
    let mut v = serde_json::to_value(inspect_record(&st, &r))
        .map_err(|e| Error::internal(e.to_string()))?;
    // The default bridge's address is also at the top of NetworkSettings (deprecated in
    // docker's API but still read by many scripts: `{{.NetworkSettings.IPAddress}}`).
    if let Some(h) = &r.state.health {
        if let Some(stv) = v.get_mut("State").and_then(|s| s.as_object_mut()) {
            stv.insert("Health".into(), h.to_json());
        }
    }
    if let Some(ns) = v.get_mut("NetworkSettings").and_then(|n| n.as_object_mut()) {
        let e = r.networks.get("bridge");
        let f = |x: Option<String>| serde_json::Value::String(x.unwrap_or_default());
        ns.insert("Bridge".into(), serde_json::Value::String(String::new()));
        ns.insert("IPAddress".into(), f(e.and_then(|e| e.ip.clone())));
        ns.insert("Gateway".into(), f(e.and_then(|e| e.gateway.clone())));
        ns.insert("MacAddress".into(), f(e.and_then(|e| e.mac.clone())));
        ns.insert(
            "IPPrefixLen".into(),
            serde_json::json!(e.map(|e| e.prefix).unwrap_or(0)),
        );
        ns.insert("GlobalIPv6Address".into(), f(None));
        ns.insert("GlobalIPv6PrefixLen".into(), serde_json::json!(0));
        ns.insert("IPv6Gateway".into(), f(None));
        ns.insert("HairpinMode".into(), serde_json::json!(false));
        ns.insert("LinkLocalIPv6Address".into(), f(None));
        ns.insert("LinkLocalIPv6PrefixLen".into(), serde_json::json!(0));
        ns.insert("SecondaryIPAddresses".into(), serde_json::Value::Null);
        ns.insert("SecondaryIPv6Addresses".into(), serde_json::Value::Null);
        ns.insert("EndpointID".into(), f(e.map(|e| e.endpoint_id.clone())));
    }
    Ok(json(StatusCode::OK, &v))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub async fn start(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    st.start_container(&c).await?;
    Ok(no_content())
}

fn signal_param(p: &Params) -> Result<Option<i32>, Error> {
    match p.get("signal") {
        None | Some("") => Ok(None),
        Some(s) => util::parse_signal(s)
            .map(Some)
            .ok_or_else(|| Error::invalid(format!("Invalid signal: {s}"))),
    }
}

pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let sig = signal_param(&p)?;
    st.stop_container(&c, p.int("t")?, sig).await?;
    Ok(no_content())
}

pub async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let sig = signal_param(&p)?;
    st.restart_container(&c, p.int("t")?, sig).await?;
    Ok(no_content())
}

pub async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let sig = signal_param(&p)?.unwrap_or(libc::SIGKILL);
    st.kill_container(&c, sig).await?;
    Ok(no_content())
}

pub async fn pause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    st.pause_container(&c, true).await?;
    Ok(no_content())
}

pub async fn unpause(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    st.pause_container(&c, false).await?;
    Ok(no_content())
}

pub async fn rename(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let name = p.get("name").unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError(Error::invalid(
            "Neither old nor new names may be empty",
        )));
    }
    st.rename_container(&c, &name).await?;
    Ok(no_content())
}

pub async fn top(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let args = p
        .get("ps_args")
        .filter(|a| !a.is_empty())
        .unwrap_or("-ef")
        .to_string();
    let r = st.top(&c, &args).await?;
    Ok(json(StatusCode::OK, &r))
}

pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let h = p.int("h")?.unwrap_or(0);
    let w = p.int("w")?.unwrap_or(0);
    if !(0..=65535).contains(&h) || !(0..=65535).contains(&w) {
        return Err(ApiError(Error::invalid("invalid resize dimensions")));
    }
    if !c.rec().state.running {
        return Err(ApiError(Error::conflict(format!(
            "Container {} is not running",
            c.id
        ))));
    }
    ShimClient::new(&st.container_dir(&c.id))
        .resize(h as u16, w as u16)
        .await
        .map_err(Error::from)?;
    Ok(StatusCode::OK.into_response())
}

pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    if p.bool("link", false) {
        return Err(ApiError(Error::not_implemented("links are not supported")));
    }
    st.remove_container_v(&c, p.bool("force", false), p.bool("v", false))
        .await?;
    Ok(no_content())
}

pub async fn prune(State(st): State<AppState>, p: Params) -> ApiResult<Response> {
    let filters = p.filters()?;
    let until = match filters.get("until").and_then(|v| v.first()) {
        Some(u) => Some(logfile::parse_since(u, Utc::now()).map_err(Error::from)?),
        None => None,
    };
    let label_filter: HashMap<String, Vec<String>> = filters
        .iter()
        .filter(|(k, _)| *k == "label")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let candidates: Vec<Arc<Ctr>> = st
        .table_read()
        .by_id
        .values()
        .filter(|c| {
            let r = c.rec();
            !r.state.running
                && until.map(|u| r.created < u).unwrap_or(true)
                && matches_filters(&st, &r, &label_filter).unwrap_or(false)
        })
        .cloned()
        .collect();
    let mut deleted = Vec::new();
    let mut space = 0i64;
    for c in candidates {
        let dir = st.container_dir(&c.id);
        let size = dir_size(&dir.join("upper"));
        if st.remove_container(&c, false).await.is_ok() {
            deleted.push(c.id.clone());
            space += size;
        }
    }
    Ok(json(
        StatusCode::OK,
        &models::ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(space),
        },
    ))
}

fn dir_size(p: &std::path::Path) -> i64 {
    let mut total = 0i64;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_dir() {
                        stack.push(e.path());
                    } else {
                        total += m.len() as i64;
                    }
                }
            }
        }
    }
    total
}

pub async fn wait(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let cond = p.get("condition").unwrap_or("not-running").to_string();
    if !matches!(cond.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError(Error::invalid(format!(
            "invalid condition: {cond:?}"
        ))));
    }
    // Register before answering: the client sends the wait before it starts the container.
    let mut rx = c.events.subscribe();
    let seen = rx.borrow().exits;
    // One snapshot of the record: `running` and the exit code change together there, while
    // the exit event is sent a little later (after the rootfs is unmounted).
    let (running, exit_code) = {
        let r = c.rec();
        (r.state.running, r.state.exit_code)
    };
    let fut = async move {
        let code = loop {
            {
                let ev = rx.borrow_and_update().clone();
                match cond.as_str() {
                    "removed" if ev.removed => break ev.last_exit,
                    "next-exit" if ev.exits > seen => break ev.last_exit,
                    "" | "not-running" if ev.exits > seen => break ev.last_exit,
                    "" | "not-running" if !running => break exit_code,
                    _ => {}
                }
            }
            if rx.changed().await.is_err() {
                // The container was dropped: it was removed.
                break rx.borrow().last_exit;
            }
        };
        let body = serde_json::json!({"StatusCode": code, "Error": null});
        let mut v = serde_json::to_vec(&body).unwrap_or_default();
        v.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(v))
    };
    // The headers go out at once (a streamed body); the status follows when it is known.
    let body = Body::from_stream(futures::stream::once(fut));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default())
}

pub async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
    headers: HeaderMap,
    mut req: Request,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let rec = c.rec();
    let tty = rec.config.tty.unwrap_or(false);
    let want_stream = p.bool("stream", false);
    let logs = p.bool("logs", false);
    let stdout = p.bool("stdout", false);
    let stderr = p.bool("stderr", false);
    let stdin = p.bool("stdin", false);
    let detach_keys = match p.get("detachKeys") {
        Some(k) if !k.is_empty() => Some(
            util::parse_detach_keys(k)
                .ok_or_else(|| Error::invalid(format!("Invalid detach keys ({k}) provided")))?,
        ),
        _ => None,
    };
    if !want_stream && !logs {
        return Err(ApiError(Error::invalid(
            "either logs or stream must be set",
        )));
    }
    let hijack = Hijack::from_request(&mut req, &headers);
    let mut prefix = Vec::new();
    if logs {
        let dir = st.container_dir(&c.id);
        let opts = ReadOptions {
            stdout,
            stderr,
            since: None,
            until: None,
            tail: None,
        };
        let entries = blocking(move || {
            logfile::read_all(&log_path(&dir, &rec.id), &opts).map_err(Error::from)
        })
        .await?;
        for e in entries {
            encode_entry(&mut prefix, &e, tty, false);
        }
    }
    let opts = AttachOptions {
        stdin,
        stdout,
        stderr,
        detach_keys,
    };
    let on = match hijack {
        // The usual case (`run`, `start -a`, `attach`): the shim gets the client's connection
        // and berthd is out of the data path.
        Hijack::Upgrade(on) if want_stream && prefix.is_empty() => on,
        h => return attach_relayed(st, c, opts, want_stream, h, prefix, tty).await,
    };
    let (ctx, crx) = tokio::sync::oneshot::channel();
    st.attach_later(&c, opts, crx).await;
    tokio::spawn(async move {
        // Dropping `ctx` unanswered (failed upgrade) ends the session.
        let Some(conn) = stream::upgraded_conn(on).await else {
            return;
        };
        match conn {
            stream::ClientConn::Unix(s) => {
                let _ = ctx.send(AttachConn::Handoff(s));
            }
            stream::ClientConn::Other(mut io) => {
                let (stx, srx) = tokio::sync::oneshot::channel();
                if ctx.send(AttachConn::Relay(stx)).is_ok() {
                    if let Ok(s) = srx.await {
                        stream::splice(io, s, async {}).await;
                        return;
                    }
                }
                use tokio::io::AsyncWriteExt;
                let _ = io.shutdown().await;
            }
        }
    });
    Ok(stream::upgrade_response(tty))
}

/// Attach through berthd: output-only clients, `logs` replay, transports other than ours.
async fn attach_relayed(
    st: AppState,
    c: Arc<Ctr>,
    opts: AttachOptions,
    want_stream: bool,
    hijack: Hijack,
    prefix: Vec<u8>,
    tty: bool,
) -> ApiResult<Response> {
    let rx = if want_stream {
        Some(st.attach_stream(&c, opts).await?)
    } else {
        None
    };
    match hijack {
        Hijack::Upgrade(on) => {
            tokio::spawn(async move {
                let Some(mut conn) = stream::upgraded(on).await else {
                    return;
                };
                use tokio::io::AsyncWriteExt;
                if !prefix.is_empty() && conn.write_all(&prefix).await.is_err() {
                    return;
                }
                match rx {
                    Some(rx) => {
                        if let Ok(s) = rx.await {
                            stream::splice(conn, s, async {}).await;
                        } else {
                            let _ = conn.shutdown().await;
                        }
                    }
                    None => {
                        let _ = conn.shutdown().await;
                    }
                }
            });
            Ok(stream::upgrade_response(tty))
        }
        Hijack::Plain => {
            let body_stream = async_stream_body(prefix, rx);
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    if tty {
                        stream::RAW_STREAM
                    } else {
                        stream::MUX_STREAM
                    },
                )
                .body(body_stream)
                .unwrap_or_default())
        }
    }
}

/// Output-only attach for clients that did not ask for an upgrade.
fn async_stream_body(
    prefix: Vec<u8>,
    rx: Option<tokio::sync::oneshot::Receiver<tokio::net::UnixStream>>,
) -> Body {
    let first =
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(prefix)) });
    let rest = futures::stream::once(async move {
        match rx {
            Some(rx) => match rx.await {
                Ok(s) => {
                    let (r, w) = s.into_split();
                    drop(w);
                    tokio_util::io::ReaderStream::new(r).boxed()
                }
                Err(_) => futures::stream::empty().boxed(),
            },
            None => futures::stream::empty().boxed(),
        }
    })
    .flatten();
    Body::from_stream(first.chain(rest))
}

fn encode_entry(out: &mut Vec<u8>, e: &logfile::LogEntry, tty: bool, timestamps: bool) {
    let mut line = Vec::with_capacity(e.line.len() + 32);
    if timestamps {
        line.extend_from_slice(
            e.time
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        line.push(b' ');
    }
    line.extend_from_slice(&e.line);
    if tty {
        out.extend_from_slice(&line);
    } else {
        let s = match e.stream {
            LogStream::Stdout => 1,
            LogStream::Stderr => 2,
        };
        out.extend_from_slice(&stream::frame(s, &line));
    }
}

pub async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let rec = c.rec();
    let stdout = p.bool("stdout", false);
    let stderr = p.bool("stderr", false);
    if !stdout && !stderr {
        return Err(ApiError(Error::invalid(
            "Bad parameters: you must choose at least one stream",
        )));
    }
    let now = Utc::now();
    let parse_t = |k: &str| -> Result<Option<DateTime<Utc>>, Error> {
        match p.get(k) {
            None | Some("") | Some("0") => Ok(None),
            Some(v) => logfile::parse_since(v, now).map(Some).map_err(Error::from),
        }
    };
    let since = parse_t("since")?;
    let until = parse_t("until")?;
    let tail = match p.get("tail") {
        None | Some("") | Some("all") => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| Error::invalid(format!("invalid value for \"tail\": {t:?}")))?
                .max(0) as usize,
        ),
    };
    let follow = p.bool("follow", false);
    let timestamps = p.bool("timestamps", false);
    let tty = rec.config.tty.unwrap_or(false);
    let path = log_path(&st.container_dir(&c.id), &c.id);
    let opts = ReadOptions {
        stdout,
        stderr,
        since,
        until,
        tail,
    };
    let ct = if tty {
        stream::RAW_STREAM
    } else {
        stream::MUX_STREAM
    };
    let body = if follow && rec.state.running && until.map(|u| u > now).unwrap_or(true) {
        let mut ev = c.events.subscribe();
        let seen = ev.borrow().exits;
        let stop = async move {
            loop {
                if ev.borrow_and_update().exits > seen {
                    break;
                }
                if ev.changed().await.is_err() {
                    break;
                }
            }
        };
        // One reader for the backlog and what follows, so no line is lost or repeated.
        let rx = logfile::read_and_follow(path, opts, stop);
        let rest = tokio_stream_from(rx).ready_chunks(256).map(move |batch| {
            let mut b = Vec::new();
            for e in &batch {
                encode_entry(&mut b, e, tty, timestamps);
            }
            Ok::<_, std::io::Error>(bytes::Bytes::from(b))
        });
        Body::from_stream(rest)
    } else {
        // Encode on a blocking thread in large chunks: `logs` of a big log is a bulk copy.
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(256 * 1024);
            let r = logfile::read_each(&path, &opts, |e| {
                encode_entry(&mut buf, &e, tty, timestamps);
                if buf.len() >= 256 * 1024 {
                    let chunk = bytes::Bytes::from(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(256 * 1024),
                    ));
                    return tx.blocking_send(chunk).is_ok();
                }
                true
            });
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("reading log: {e}");
                }
            }
            if !buf.is_empty() {
                let _ = tx.blocking_send(bytes::Bytes::from(buf));
            }
        });
        Body::from_stream(tokio_stream_from(rx).map(Ok::<_, std::io::Error>))
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ct)
        .body(body)
        .unwrap_or_default())
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// POST /commit: a new image from a container's changes.
pub async fn commit(
    State(st): State<AppState>,
    p: Params,
    JsonBody(body): JsonBody<models::ContainerConfig>,
) -> ApiResult<Response> {
    let name = p.get("container").unwrap_or("").to_string();
    let c = st.lookup(&name)?;
    let repo = p.get("repo").unwrap_or("").to_string();
    let tag = p.get("tag").unwrap_or("").to_string();
    let repo_tag = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    let opts = berth_image::CommitOptions {
        config: commit_config(&c.rec().config, &body),
        changes: p.all("changes"),
        author: p.get("author").filter(|a| !a.is_empty()).map(String::from),
        comment: p.get("comment").filter(|a| !a.is_empty()).map(String::from),
        created_by: None,
        repo_tag,
        consume_upper: false,
    };
    let id = st.commit_container(&c, p.bool("pause", true), opts).await?;
    Ok(json(StatusCode::CREATED, &serde_json::json!({"Id": id})))
}

/// The container's config as an image config, with the fields the caller set overriding.
fn commit_config(c: &models::ContainerConfig, o: &models::ContainerConfig) -> models::ImageConfig {
    fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
        over.clone().or_else(|| base.clone())
    }
    models::ImageConfig {
        user: pick(&o.user, &c.user),
        env: pick(&o.env, &c.env),
        cmd: pick(&o.cmd, &c.cmd),
        entrypoint: pick(&o.entrypoint, &c.entrypoint),
        working_dir: pick(&o.working_dir, &c.working_dir),
        labels: pick(&o.labels, &c.labels),
        exposed_ports: pick(&o.exposed_ports, &c.exposed_ports),
        volumes: pick(&o.volumes, &c.volumes),
        stop_signal: pick(&o.stop_signal, &c.stop_signal),
        healthcheck: pick(&o.healthcheck, &c.healthcheck),
        on_build: pick(&o.on_build, &c.on_build),
        shell: pick(&o.shell, &c.shell),
        ..Default::default()
    }
}

/// GET /containers/{id}/changes
pub async fn changes(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let images = st.images.clone();
    let image_id = c.rec().image_id;
    let dir = st.container_dir(&c.id);
    let r = blocking(move || images.changes(&image_id, &dir)).await?;
    Ok(json(StatusCode::OK, &r))
}

/// GET /containers/{id}/export: the container's merged filesystem as a tar stream.
pub async fn export(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let c = st.lookup(&id)?;
    let rec = c.rec();
    let dir = st.container_dir(&c.id);
    let images = st.images.clone();
    let image_id = rec.image_id.clone();
    let running = rec.state.running;
    let d2 = dir.clone();
    // A stopped container's rootfs is mounted for the export and unmounted after.
    let rootfs = blocking(move || images.mount_rootfs(&image_id, &d2)).await?;
    let (r, w) = tokio::io::duplex(1 << 20);
    tokio::task::spawn_blocking(move || {
        let mut w = tokio_util::io::SyncIoBridge::new(w);
        if let Err(e) = berth_image::ImageStore::export_rootfs(&rootfs, &mut w) {
            tracing::warn!("export failed: {e}");
        }
        let _ = std::io::Write::flush(&mut w);
        let _ = w.shutdown();
        if !running {
            let _ = berth_image::ImageStore::unmount_rootfs(&dir);
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(tokio_util::io::ReaderStream::new(r)))
        .unwrap_or_default())
}
