use crate::error::ApiResult;
use crate::http::{json, AppState};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::models;
use berth_api::version::{API_VERSION, ENGINE_VERSION, MIN_API_VERSION};
use std::collections::HashMap;

pub async fn ping() -> Response {
    let mut r = "OK".into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // The classic builder; BuildKit is not served.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    r
}

fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn version() -> Response {
    let v = serde_json::json!({
        "Platform": {"Name": "berth"},
        "Components": [{
            "Name": "Engine",
            "Version": ENGINE_VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": arch(),
                "KernelVersion": kernel_version(),
                "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
                "GoVersion": "n/a (rust)",
                "BuildTime": "",
                "Experimental": "false",
            }
        }],
        "Version": ENGINE_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "n/a (rust)",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    });
    json(StatusCode::OK, &v)
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub async fn info(State(st): State<AppState>) -> ApiResult<Response> {
    let (mut running, mut paused, mut stopped, total) =
        (0i64, 0i64, 0i64, st.table_read().by_id.len() as i64);
    for c in st.table_read().by_id.values() {
        let r = c.rec();
        if r.state.paused {
            paused += 1;
        } else if r.state.running {
            running += 1;
        } else {
            stopped += 1;
        }
    }
    let images = st.images.clone();
    let nimages = super::blocking(move || Ok(images.list(false, &HashMap::new())?.len() as i64))
        .await
        .unwrap_or(0);
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mut runtimes = HashMap::new();
    runtimes.insert(
        "berth".to_string(),
        models::Runtime {
            path: Some(st.shim_binary.display().to_string()),
            ..Default::default()
        },
    );
    let info = models::SystemInfo {
        id: Some(st.daemon_id.clone()),
        containers: Some(total),
        containers_running: Some(running),
        containers_paused: Some(paused),
        containers_stopped: Some(stopped),
        images: Some(nimages),
        driver: Some("overlay2".into()),
        driver_status: Some(vec![
            vec!["Backing Filesystem".into(), "extfs".into()],
            vec!["Supports d_type".into(), "true".into()],
        ]),
        docker_root_dir: Some(st.root.display().to_string()),
        memory_limit: Some(true),
        swap_limit: Some(true),
        cpu_cfs_period: Some(true),
        cpu_cfs_quota: Some(true),
        cpu_shares: Some(true),
        cpu_set: Some(true),
        pids_limit: Some(true),
        oom_kill_disable: Some(cgroup_version() == "1"),
        ipv4_forwarding: Some(true),
        debug: Some(st.cfg.debug),
        nfd: Some(
            std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count() as i64)
                .unwrap_or(0),
        ),
        n_goroutines: Some(0),
        system_time: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        logging_driver: Some("json-file".into()),
        cgroup_driver: Some(models::SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(if cgroup_version() == "2" {
            models::SystemInfoCgroupVersionEnum::_2
        } else {
            models::SystemInfoCgroupVersionEnum::_1
        }),
        n_events_listener: Some(0),
        kernel_version: Some(kernel_version()),
        operating_system: Some(os_name()),
        os_version: Some(String::new()),
        os_type: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        ncpu: Some(
            std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
        ),
        mem_total: Some(mem_total()),
        index_server_address: Some("https://index.docker.io/v1/".into()),
        name: Some(hostname),
        labels: Some(vec![]),
        experimental_build: Some(false),
        server_version: Some(ENGINE_VERSION.into()),
        runtimes: Some(runtimes),
        default_runtime: Some("berth".into()),
        live_restore_enabled: Some(true),
        isolation: None,
        init_binary: Some(String::new()),
        security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
        warnings: Some(vec![]),
        ..Default::default()
    };
    Ok(json(StatusCode::OK, &info))
}

/// GET /events: history since `since`, then live events until `until` (or forever), one JSON
/// object per line, filtered.
pub async fn events(State(st): State<AppState>, p: crate::http::Params) -> ApiResult<Response> {
    use berth_api::Error;
    use futures::StreamExt;
    let f = p.filters()?;
    let now = chrono::Utc::now();
    let parse = |k: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
        match p.get(k).filter(|s| !s.is_empty()) {
            Some(v) => berth_runtime::logfile::parse_since(v, now)
                .map(Some)
                .map_err(Error::from),
            None => Ok(None),
        }
    };
    let since = parse("since")?;
    let until = parse("until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(Error::invalid("`since` time must be before `until` time").into());
        }
    }
    let ns = |t: chrono::DateTime<chrono::Utc>| t.timestamp_nanos_opt().unwrap_or(0);
    let (hist, rx) = st.events.subscribe();
    let past: Vec<crate::events::Event> = match since {
        Some(s) => hist
            .into_iter()
            .filter(|e| e.time_nano >= ns(s))
            .filter(|e| until.map(|u| e.time_nano <= ns(u)).unwrap_or(true))
            .filter(|e| crate::events::matches(e, &f))
            .collect(),
        None => vec![],
    };
    let line = |e: &crate::events::Event| {
        let mut v = serde_json::to_vec(e).unwrap_or_default();
        v.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(v))
    };
    let head = futures::stream::iter(past.iter().map(line).collect::<Vec<_>>());
    let live_until = until.filter(|u| *u > now);
    let live = if until.is_some() && live_until.is_none() {
        futures::stream::empty().boxed()
    } else {
        let deadline = live_until.map(|u| {
            tokio::time::Instant::now() + (u - now).to_std().unwrap_or(std::time::Duration::ZERO)
        });
        futures::stream::unfold((rx, f, deadline), move |(mut rx, f, deadline)| async move {
            loop {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(e) if crate::events::matches(&e, &f) => {
                        let mut v = serde_json::to_vec(&e).unwrap_or_default();
                        v.push(b'\n');
                        return Some((Ok(bytes::Bytes::from(v)), (rx, f, deadline)));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        })
        .boxed()
    };
    let body = axum::body::Body::from_stream(head.chain(live));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default())
}

/// A container's writable layer (SizeRw) and that plus its image's layers (SizeRootFs).
pub fn container_sizes(st: &crate::state::State, r: &crate::containers::Record) -> (i64, i64) {
    let rw = berth_volume::fsutil::dir_size(&st.container_dir(&r.id).join("upper")) as i64;
    let image = st.images.resolve(&r.image_id).map(|i| i.size).unwrap_or(0);
    (rw, rw + image)
}

/// GET /system/df: images (Size, SharedSize, Containers) with LayersSize counting every
/// layer once, containers with SizeRw/SizeRootFs, volumes with UsageData, and the (empty)
/// build cache. `type` (API 1.42) narrows it to some of those.
pub async fn df(State(st): State<AppState>, p: crate::http::Params) -> ApiResult<Response> {
    let types = p.all("type");
    for t in &types {
        if !matches!(t.as_str(), "container" | "image" | "volume" | "build-cache") {
            return Err(berth_api::Error::invalid(format!("invalid type: {t}")).into());
        }
    }
    let want = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let (images, containers, volumes, cache) = (
        want("image"),
        want("container"),
        want("volume"),
        want("build-cache"),
    );
    let out = super::blocking(move || {
        let mut recs: Vec<crate::containers::Record> =
            st.table_read().by_id.values().map(|c| c.rec()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        let mut v = serde_json::Map::new();
        if images {
            let (layers, mut list) = st.images.disk_usage()?;
            for i in &mut list {
                i.containers = recs.iter().filter(|r| r.image_id == i.id).count() as i64;
            }
            v.insert("LayersSize".into(), layers.into());
            v.insert("Images".into(), serde_json::to_value(list)?);
        }
        if containers {
            let list: Vec<models::ContainerSummary> = recs
                .iter()
                .map(|r| {
                    let mut s = super::containers::summary(r);
                    let (rw, root) = container_sizes(&st, r);
                    s.size_rw = Some(rw);
                    s.size_root_fs = Some(root);
                    s
                })
                .collect();
            v.insert("Containers".into(), serde_json::to_value(list)?);
        }
        if volumes {
            let refs = st.volume_refs();
            let list: Vec<serde_json::Value> = st
                .volumes
                .list()?
                .iter()
                .map(|vol| {
                    let mut j = vol.to_json(&st.volumes.data_path(&vol.name));
                    j["UsageData"] = serde_json::json!({
                        "Size": st.volumes.size(&vol.name) as i64,
                        "RefCount": refs.get(&vol.name).map_or(0, |r| r.len()),
                    });
                    j
                })
                .collect();
            v.insert("Volumes".into(), list.into());
        }
        if cache {
            v.insert("BuildCache".into(), serde_json::json!([]));
        }
        Ok(serde_json::Value::Object(v))
    })
    .await?;
    Ok(json(StatusCode::OK, &out))
}

/// POST /auth body (docker's registry.AuthConfig).
#[derive(serde::Deserialize, Default)]
pub struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
    #[serde(default)]
    identitytoken: String,
}

/// POST /auth: `docker login` asks the daemon to check credentials with the registry.
pub async fn auth(State(st): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let b: AuthBody = serde_json::from_slice(&body).map_err(|e| {
        crate::error::ApiError(berth_api::Error::invalid(format!(
            "invalid auth configuration: {e}"
        )))
    })?;
    let creds = berth_distribution::Credentials {
        username: b.username,
        password: b.password,
        identity_token: b.identitytoken,
        ..Default::default()
    };
    let opts = st.registry_options();
    let server = if b.serveraddress.is_empty() {
        "https://index.docker.io/v1/".to_string()
    } else {
        b.serveraddress
    };
    berth_distribution::login(&opts, &server, creds).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}),
    ))
}
