//! `version` and `info`.

use gtmpl::Value;
use serde_json::Value as J;

use crate::args::FormatArgs;
use crate::client::{CliResult, Client};
use crate::tmpl::{self, object, Tmpl};
use crate::units;

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn client_info() -> Value {
    let api = berth_api::version::API_VERSION;
    object(vec![
        ("Platform", object(vec![("Name", Value::from(""))])),
        ("Version", Value::from(env!("CARGO_PKG_VERSION"))),
        ("ApiVersion", Value::from(api)),
        ("APIVersion", Value::from(api)),
        ("DefaultAPIVersion", Value::from(api)),
        (
            "GitCommit",
            Value::from(option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown")),
        ),
        ("GoVersion", Value::from("n/a (rust)")),
        ("Os", Value::from(std::env::consts::OS)),
        ("Arch", Value::from(go_arch())),
        (
            "BuildTime",
            Value::from(option_env!("BERTH_BUILD_TIME").unwrap_or("unknown")),
        ),
        ("Context", Value::from("default")),
    ])
}

/// Pads a label like docker's tabwriter (minwidth 20, padding 1) does for `version`.
fn line(label: &str, value: impl std::fmt::Display) -> String {
    format!("{label:<19} {value}\n")
}

fn s(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        J::Null => String::new(),
        other => other.to_string(),
    }
}

pub async fn version(c: &Client, a: FormatArgs) -> CliResult<()> {
    let server = c.get_json("/version").await;
    if let Some(f) = &a.format {
        let t = Tmpl::parse(f)?;
        let mut server_v = server.as_ref().map(tmpl::from_json).unwrap_or(Value::Nil);
        // Go's field name differs from the JSON key here.
        if let Value::Map(m) | Value::Object(m) = &mut server_v {
            if let Some(v) = m.get("ApiVersion").cloned() {
                m.insert("APIVersion".into(), v);
            }
        }
        let ctx = object(vec![("Client", client_info()), ("Server", server_v)]);
        println!("{}", t.render(&ctx)?);
        return server.map(|_| ());
    }
    let api = berth_api::version::API_VERSION;
    let mut out = String::from("Client:\n");
    out.push_str(&line(" Version:", env!("CARGO_PKG_VERSION")));
    out.push_str(&line(" API version:", api));
    out.push_str(&line(" Go version:", "n/a (rust)"));
    out.push_str(&line(
        " Git commit:",
        option_env!("BERTH_GIT_COMMIT").unwrap_or("unknown"),
    ));
    out.push_str(&line(
        " Built:",
        option_env!("BERTH_BUILD_TIME").unwrap_or("unknown"),
    ));
    out.push_str(&line(
        " OS/Arch:",
        format!("{}/{}", std::env::consts::OS, go_arch()),
    ));
    out.push_str(&line(" Context:", "default"));
    let sv = match server {
        Ok(v) => v,
        Err(e) => {
            print!("{out}");
            return Err(e);
        }
    };
    out.push_str("\nServer:");
    let pname = s(&sv["Platform"]["Name"]);
    if !pname.is_empty() {
        out.push(' ');
        out.push_str(&pname);
    }
    out.push('\n');
    let components = sv["Components"].as_array().cloned().unwrap_or_default();
    if components.is_empty() {
        out.push_str(" Engine:\n");
        out.push_str(&line("  Version:", s(&sv["Version"])));
        out.push_str(&line(
            "  API version:",
            format!(
                "{} (minimum version {})",
                s(&sv["ApiVersion"]),
                s(&sv["MinAPIVersion"])
            ),
        ));
    }
    for comp in components {
        let name = s(&comp["Name"]);
        out.push_str(&format!(" {name}:\n"));
        let d = &comp["Details"];
        if name == "Engine" {
            out.push_str(&line("  Version:", s(&comp["Version"])));
            out.push_str(&line(
                "  API version:",
                format!(
                    "{} (minimum version {})",
                    s(&d["ApiVersion"]),
                    s(&d["MinAPIVersion"])
                ),
            ));
            out.push_str(&line("  Go version:", s(&d["GoVersion"])));
            out.push_str(&line("  Git commit:", s(&d["GitCommit"])));
            out.push_str(&line("  Built:", ansic(&s(&d["BuildTime"]))));
            out.push_str(&line(
                "  OS/Arch:",
                format!("{}/{}", s(&d["Os"]), s(&d["Arch"])),
            ));
            out.push_str(&line("  Experimental:", s(&d["Experimental"])));
        } else {
            out.push_str(&line("  Version:", s(&comp["Version"])));
            if let Some(m) = d.as_object() {
                for (k, v) in m {
                    out.push_str(&line(&format!("  {k}:"), s(v)));
                }
            }
        }
    }
    print!("{out}");
    Ok(())
}

/// docker's reformatDate: RFC3339 build times shown in Go's ANSIC layout.
fn ansic(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d.format("%a %b %e %H:%M:%S %Y").to_string(),
        Err(_) => t.to_string(),
    }
}

pub fn render_info(v: &J) -> String {
    let mut o = String::new();
    o.push_str("Client:\n");
    o.push_str(&format!(" Version:    {}\n", env!("CARGO_PKG_VERSION")));
    o.push_str(" Context:    default\n");
    o.push_str(" Debug Mode: false\n\n");
    o.push_str("Server:\n");
    let n = |k: &str| v[k].as_i64().unwrap_or(0);
    o.push_str(&format!(" Containers: {}\n", n("Containers")));
    o.push_str(&format!("  Running: {}\n", n("ContainersRunning")));
    o.push_str(&format!("  Paused: {}\n", n("ContainersPaused")));
    o.push_str(&format!("  Stopped: {}\n", n("ContainersStopped")));
    o.push_str(&format!(" Images: {}\n", n("Images")));
    o.push_str(&format!(" Server Version: {}\n", s(&v["ServerVersion"])));
    o.push_str(&format!(" Storage Driver: {}\n", s(&v["Driver"])));
    if let Some(st) = v["DriverStatus"].as_array() {
        for pair in st {
            if let Some([k, val]) = pair.as_array().map(|a| a.as_slice()) {
                o.push_str(&format!("  {}: {}\n", s(k), s(val)));
            }
        }
    }
    o.push_str(&format!(" Logging Driver: {}\n", s(&v["LoggingDriver"])));
    o.push_str(&format!(" Cgroup Driver: {}\n", s(&v["CgroupDriver"])));
    o.push_str(&format!(" Cgroup Version: {}\n", s(&v["CgroupVersion"])));
    let join = |k: &J| -> String {
        k.as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    o.push_str(" Plugins:\n");
    o.push_str(&format!("  Volume: {}\n", join(&v["Plugins"]["Volume"])));
    o.push_str(&format!("  Network: {}\n", join(&v["Plugins"]["Network"])));
    if v["Plugins"]["Authorization"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        o.push_str(&format!(
            "  Authorization: {}\n",
            join(&v["Plugins"]["Authorization"])
        ));
    }
    o.push_str(&format!("  Log: {}\n", join(&v["Plugins"]["Log"])));
    let swarm = s(&v["Swarm"]["LocalNodeState"]);
    o.push_str(&format!(
        " Swarm: {}\n",
        if swarm.is_empty() {
            "inactive".into()
        } else {
            swarm
        }
    ));
    let runtimes: Vec<String> = v["Runtimes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if !runtimes.is_empty() {
        o.push_str(&format!(" Runtimes: {}\n", runtimes.join(" ")));
        o.push_str(&format!(" Default Runtime: {}\n", s(&v["DefaultRuntime"])));
    }
    if s(&v["OSType"]) == "linux" {
        o.push_str(&format!(" Init Binary: {}\n", s(&v["InitBinary"])));
        for (name, key) in [
            ("containerd", "ContainerdCommit"),
            ("runc", "RuncCommit"),
            ("init", "InitCommit"),
        ] {
            o.push_str(&format!(" {name} version: {}\n", s(&v[key]["ID"])));
        }
        if let Some(opts) = v["SecurityOptions"].as_array().filter(|a| !a.is_empty()) {
            o.push_str(" Security Options:\n");
            for opt in opts {
                // "name=seccomp,profile=default" → "  seccomp" / "   Profile: default"
                for (i, kv) in s(opt).split(',').enumerate() {
                    let (k, val) = kv.split_once('=').unwrap_or(("", kv));
                    if i == 0 || k == "name" {
                        o.push_str(&format!("  {val}\n"));
                    } else {
                        let mut key = k.to_string();
                        if let Some(f) = key.get_mut(0..1) {
                            f.make_ascii_uppercase();
                        }
                        o.push_str(&format!("   {key}: {val}\n"));
                    }
                }
            }
        }
    }
    o.push_str(&format!(" Kernel Version: {}\n", s(&v["KernelVersion"])));
    o.push_str(&format!(
        " Operating System: {}\n",
        s(&v["OperatingSystem"])
    ));
    o.push_str(&format!(" OSType: {}\n", s(&v["OSType"])));
    o.push_str(&format!(" Architecture: {}\n", s(&v["Architecture"])));
    o.push_str(&format!(" CPUs: {}\n", n("NCPU")));
    o.push_str(&format!(
        " Total Memory: {}\n",
        units::bytes_size(n("MemTotal") as f64)
    ));
    o.push_str(&format!(" Name: {}\n", s(&v["Name"])));
    o.push_str(&format!(" ID: {}\n", s(&v["ID"])));
    o.push_str(&format!(" Docker Root Dir: {}\n", s(&v["DockerRootDir"])));
    o.push_str(&format!(
        " Debug Mode: {}\n",
        v["Debug"].as_bool().unwrap_or(false)
    ));
    o.push_str(&format!(
        " Experimental: {}\n",
        v["ExperimentalBuild"].as_bool().unwrap_or(false)
    ));
    let insecure: Vec<String> = v["RegistryConfig"]["InsecureRegistryCIDRs"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    if !insecure.is_empty() {
        o.push_str(" Insecure Registries:\n");
        for i in insecure {
            o.push_str(&format!("  {i}\n"));
        }
    }
    o.push_str(&format!(
        " Live Restore Enabled: {}\n",
        v["LiveRestoreEnabled"].as_bool().unwrap_or(false)
    ));
    // docker ends the server section with an empty line, then any warnings.
    o.push('\n');
    if let Some(w) = v["Warnings"].as_array().filter(|w| !w.is_empty()) {
        for x in w {
            o.push_str(&s(x));
            o.push('\n');
        }
    }
    o
}

pub async fn info(c: &Client, a: FormatArgs) -> CliResult<()> {
    let v = c.get_json("/info").await;
    if let Some(f) = &a.format {
        let t = Tmpl::parse(f)?;
        let mut ctx = v
            .as_ref()
            .map(tmpl::from_json)
            .unwrap_or(Value::Map(Default::default()));
        tmpl::insert_field(&mut ctx, "ClientInfo", client_info());
        let out = t.render(&ctx)?;
        println!("{out}");
        return v.map(|_| ());
    }
    match v {
        Ok(v) => {
            print!("{}", render_info(&v));
            Ok(())
        }
        Err(e) => {
            print!(
                "Client:\n Version:    {}\n Context:    default\n Debug Mode: false\n\nServer:\n",
                env!("CARGO_PKG_VERSION")
            );
            Err(e)
        }
    }
}

/// docker's default event line: time, type, action, actor and sorted attributes.
pub fn event_line(e: &J) -> String {
    let mut out = String::new();
    let nanos = e["timeNano"].as_i64().unwrap_or(0);
    let secs = e["time"].as_i64().unwrap_or(0);
    use chrono::TimeZone;
    let t = if nanos != 0 {
        Some(chrono::Local.timestamp_nanos(nanos))
    } else {
        chrono::Local.timestamp_opt(secs, 0).single()
    };
    if let Some(t) = t.filter(|_| nanos != 0 || secs != 0) {
        // jsonmessage.RFC3339NanoFixed: always nine digits.
        out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
        out.push(' ');
    }
    out.push_str(&format!(
        "{} {} {}",
        s(&e["Type"]),
        s(&e["Action"]),
        s(&e["Actor"]["ID"])
    ));
    if let Some(attrs) = e["Actor"]["Attributes"]
        .as_object()
        .filter(|a| !a.is_empty())
    {
        let mut kv: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
        kv.sort();
        out.push_str(&format!(" ({})", kv.join(", ")));
    }
    out
}

pub async fn events(c: &Client, a: crate::args::EventsArgs) -> CliResult<()> {
    use http_body_util::BodyExt;
    let now = chrono::Utc::now().timestamp();
    let mut path = "/events?".to_string();
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            let t =
                units::parse_timestamp(v, now).map_err(|e| crate::client::CliError::new(1, e))?;
            path.push_str(&format!("{k}={t}&"));
        }
    }
    if let Some(f) = super::filters_json(&a.filter)? {
        path.push_str(&format!("filters={}", crate::client::q(&f)));
    }
    let json_only = matches!(a.format.as_deref(), Some("json" | "{{json .}}"));
    let format = a
        .format
        .as_deref()
        .map(|f| if f == "json" { "{{json .}}" } else { f });
    let t = format.map(Tmpl::parse).transpose()?;
    let resp = c.raw_stream(hyper::Method::GET, &path, None, None).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let b = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(crate::client::daemon_error(status, &b));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| crate::client::CliError::new(1, e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        // Events arrive as concatenated JSON objects; print each complete one.
        let mut consumed = 0;
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<J>();
        while let Some(Ok(ev)) = it.next() {
            let raw = &buf[consumed..it.byte_offset()];
            consumed = it.byte_offset();
            let line = match &t {
                // docker re-marshals the event as received: print the daemon's bytes.
                Some(_) if json_only => String::from_utf8_lossy(raw).trim().to_string(),
                Some(t) => {
                    let mut v = tmpl::from_json(&ev);
                    // Go field names of the Message type, next to the JSON keys.
                    for (go, json) in [
                        ("Status", "status"),
                        ("ID", "id"),
                        ("From", "from"),
                        ("Scope", "scope"),
                        ("Time", "time"),
                        ("TimeNano", "timeNano"),
                    ] {
                        // Absent (omitempty) fields are Go's zero values.
                        let val = match &ev[json] {
                            J::Null if go.starts_with("Time") => Value::from(0),
                            J::Null => Value::from(""),
                            x => tmpl::from_json(x),
                        };
                        tmpl::insert_field(&mut v, go, val);
                    }
                    t.render(&v)?
                }
                None => event_line(&ev),
            };
            println!("{line}");
        }
        buf.drain(..consumed);
    }
    Ok(())
}

// ---- system df ------------------------------------------------------------------

const DF_TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
const DF_IMAGES: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}";
const DF_CONTAINERS: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}";
const DF_VOLUMES: &str = "table {{.Name}}\t{{.Links}}\t{{.Size}}";
const DF_CACHE: &str = "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}";

fn arr(v: &J) -> Vec<J> {
    v.as_array().cloned().unwrap_or_default()
}

fn int(v: &J) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// docker/cli's "SIZE (N%)" of the reclaimable part.
fn reclaimable(part: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            units::human_size(part as f64),
            part * 100 / total
        )
    } else {
        units::human_size(part as f64)
    }
}

fn active_state(c: &J) -> bool {
    matches!(
        c["State"].as_str().unwrap_or_default(),
        "running" | "paused" | "restarting"
    )
}

/// The four summary rows of `system df` (docker/cli's diskUsage*Context).
pub fn df_rows(du: &J) -> Vec<Value> {
    let row = |typ: &str, total: usize, active: usize, size: String, recl: String| {
        object(vec![
            ("Type", Value::from(typ)),
            ("TotalCount", Value::from(total.to_string())),
            ("Active", Value::from(active.to_string())),
            ("Size", Value::from(size)),
            ("Reclaimable", Value::from(recl)),
        ])
    };
    let images = arr(&du["Images"]);
    let layers = int(&du["LayersSize"]);
    let used: i64 = images
        .iter()
        .filter(|i| int(&i["Containers"]) != 0 && int(&i["Size"]) != -1)
        .filter(|i| int(&i["SharedSize"]) != -1)
        .map(|i| int(&i["Size"]) - int(&i["SharedSize"]))
        .sum();
    let containers = arr(&du["Containers"]);
    let ctr_total: i64 = containers.iter().map(|c| int(&c["SizeRw"])).sum();
    let ctr_free: i64 = containers
        .iter()
        .filter(|c| !active_state(c))
        .map(|c| int(&c["SizeRw"]))
        .sum();
    let volumes = arr(&du["Volumes"]);
    let sized: Vec<&J> = volumes
        .iter()
        .filter(|v| int(&v["UsageData"]["Size"]) != -1)
        .collect();
    let vol_total: i64 = sized.iter().map(|v| int(&v["UsageData"]["Size"])).sum();
    let vol_free: i64 = sized
        .iter()
        .filter(|v| int(&v["UsageData"]["RefCount"]) == 0)
        .map(|v| int(&v["UsageData"]["Size"]))
        .sum();
    let cache = arr(&du["BuildCache"]);
    let cache_size: i64 = cache
        .iter()
        .filter(|b| !b["Shared"].as_bool().unwrap_or(false))
        .map(|b| int(&b["Size"]))
        .sum();
    let cache_in_use: i64 = cache
        .iter()
        .filter(|b| {
            b["InUse"].as_bool().unwrap_or(false) && !b["Shared"].as_bool().unwrap_or(false)
        })
        .map(|b| int(&b["Size"]))
        .sum();
    vec![
        row(
            "Images",
            images.len(),
            images.iter().filter(|i| int(&i["Containers"]) > 0).count(),
            units::human_size(layers as f64),
            reclaimable(layers - used, layers),
        ),
        row(
            "Containers",
            containers.len(),
            containers.iter().filter(|c| active_state(c)).count(),
            units::human_size(ctr_total as f64),
            reclaimable(ctr_free, ctr_total),
        ),
        row(
            "Local Volumes",
            volumes.len(),
            volumes
                .iter()
                .filter(|v| int(&v["UsageData"]["RefCount"]) > 0)
                .count(),
            units::human_size(vol_total as f64),
            reclaimable(vol_free, vol_total),
        ),
        row(
            "Build Cache",
            cache.len(),
            cache
                .iter()
                .filter(|b| b["InUse"].as_bool().unwrap_or(false))
                .count(),
            units::human_size(cache_size as f64),
            units::human_size((cache_size - cache_in_use) as f64),
        ),
    ]
}

fn df_header() -> Value {
    object(vec![
        ("Type", Value::from("TYPE")),
        ("TotalCount", Value::from("TOTAL")),
        ("Active", Value::from("ACTIVE")),
        ("Size", Value::from("SIZE")),
        ("Reclaimable", Value::from("RECLAIMABLE")),
    ])
}

/// `system df -v` rows per section: images (first tag only), containers (writable layer
/// only), volumes (links and size).
fn df_verbose_rows(du: &J, trunc: bool) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let images = arr(&du["Images"])
        .iter()
        .map(|i| {
            let first = i["RepoTags"]
                .as_array()
                .and_then(|t| t.first())
                .and_then(|t| t.as_str())
                .filter(|t| *t != "<none>:<none>");
            let (repo, tag) = match first {
                Some(t) => super::run::split_ref(t),
                None => ("<none>".to_string(), "<none>".to_string()),
            };
            super::image::image_row(i, &repo, &tag, "<none>", trunc)
        })
        .collect();
    let containers = arr(&du["Containers"])
        .iter()
        .map(|c| {
            let mut c = c.clone();
            // docker/cli hides the virtual size here.
            c["SizeRootFs"] = J::from(0);
            super::ps::row(&c, trunc)
        })
        .collect();
    let volumes = arr(&du["Volumes"])
        .iter()
        .map(|v| {
            let mut row = super::netvol::volume_row(v);
            let u = &v["UsageData"];
            if u.is_object() {
                tmpl::insert_field(
                    &mut row,
                    "Links",
                    Value::from(int(&u["RefCount"]).to_string()),
                );
                tmpl::insert_field(
                    &mut row,
                    "Size",
                    Value::from(units::human_size(int(&u["Size"]) as f64)),
                );
            }
            row
        })
        .collect();
    (images, containers, volumes)
}

fn df_verbose_table(du: &J) -> CliResult<String> {
    use crate::tmpl::Format;
    let (images, containers, volumes) = df_verbose_rows(du, true);
    let mut out = String::from("Images space usage:\n\n");
    out.push_str(&Format::new(None, DF_IMAGES).render(&super::image::images_header(), &images)?);
    out.push_str("\nContainers space usage:\n\n");
    out.push_str(&Format::new(None, DF_CONTAINERS).render(&super::ps::header(), &containers)?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    let vh = object(vec![
        ("Name", Value::from("VOLUME NAME")),
        ("Links", Value::from("LINKS")),
        ("Size", Value::from("SIZE")),
    ]);
    out.push_str(&Format::new(None, DF_VOLUMES).render(&vh, &volumes)?);
    out.push_str("\nBuild cache usage: 0B\n\n");
    let bh = object(vec![
        ("ID", Value::from("CACHE ID")),
        ("CacheType", Value::from("CACHE TYPE")),
        ("Size", Value::from("SIZE")),
        ("CreatedSince", Value::from("CREATED")),
        ("LastUsedSince", Value::from("LAST USED")),
        ("UsageCount", Value::from("USAGE")),
        ("Shared", Value::from("SHARED")),
    ]);
    out.push_str(&Format::new(None, DF_CACHE).render(&bh, &[])?);
    Ok(out)
}

pub async fn df(c: &Client, a: crate::args::DfArgs) -> CliResult<()> {
    use crate::tmpl::Format;
    let du = c.get_json("/system/df").await?;
    let format = a.format.as_deref().unwrap_or("");
    if a.verbose {
        if format.is_empty() || format == "table" {
            print!("{}", df_verbose_table(&du)?);
            return Ok(());
        }
        // A custom template sees the sections as lists of rows.
        let (images, containers, volumes) = df_verbose_rows(&du, false);
        let data = object(vec![
            ("Images", Value::Array(images)),
            ("Containers", Value::Array(containers)),
            ("Volumes", Value::Array(volumes)),
            ("BuildCache", Value::Array(Vec::new())),
        ]);
        let f = Format::new(Some(format), DF_TABLE);
        let out = Tmpl::parse(&f.body)?.render(&data)?;
        println!("{out}");
        return Ok(());
    }
    let f = Format::new(Some(format), DF_TABLE);
    print!("{}", f.render(&df_header(), &df_rows(&du))?);
    Ok(())
}

// ---- system prune ---------------------------------------------------------------

/// Runs one prune endpoint; returns docker's section text and the bytes it reports.
async fn prune_one(
    c: &Client,
    path: &str,
    filters: &[String],
    key: &str,
    title: &str,
) -> CliResult<(String, u64)> {
    use crate::client::{daemon_error, q};
    let mut p = path.to_string();
    if let Some(f) = super::filters_json(filters)? {
        p.push_str(&format!("?filters={}", q(&f)));
    }
    let (status, body) = c.raw(hyper::Method::POST, &p, None, None).await?;
    if !status.is_success() {
        return Err(daemon_error(status, &body));
    }
    let v: J = serde_json::from_slice(&body).unwrap_or_default();
    let items = arr(&v[key]);
    if items.is_empty() {
        // The build cache counts its bytes even with nothing listed.
        let space = if key == "CachesDeleted" {
            v["SpaceReclaimed"].as_u64().unwrap_or(0)
        } else {
            0
        };
        return Ok((String::new(), space));
    }
    let mut out = format!("{title}:\n");
    for it in &items {
        if key == "ImagesDeleted" {
            match it["Untagged"].as_str().filter(|u| !u.is_empty()) {
                Some(u) => out.push_str(&format!("untagged: {u}\n")),
                None => out.push_str(&format!("deleted: {}\n", s(&it["Deleted"]))),
            }
        } else {
            out.push_str(&s(it));
            out.push('\n');
        }
    }
    Ok((out, v["SpaceReclaimed"].as_u64().unwrap_or(0)))
}

/// docker/cli's confirmation for `system prune` (without the question line).
pub fn prune_warning(a: &crate::args::SystemPruneArgs) -> String {
    let mut w = vec![
        "all stopped containers",
        "all networks not used by at least one container",
    ];
    if a.volumes {
        w.push("all anonymous volumes not used by at least one container");
    }
    w.push(if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    });
    w.push(if a.all {
        "all build cache"
    } else {
        "unused build cache"
    });
    let mut out = "WARNING! This will remove:\n".to_string();
    for x in w {
        out.push_str(&format!("  - {x}\n"));
    }
    let mut filters: Vec<&String> = a
        .filter
        .iter()
        .filter(|f| {
            let k = f.split_once('=').map_or(f.as_str(), |(k, _)| k);
            matches!(k, "label" | "label!" | "until")
        })
        .collect();
    filters.sort();
    if !filters.is_empty() {
        out.push_str("\n  Items to be pruned will be filtered with:\n");
        for f in filters {
            out.push_str(&format!("  - {f}\n"));
        }
    }
    out
}

/// `system prune`: containers, networks, (anonymous) volumes with `--volumes`, images
/// (dangling unless `-a`), build cache; then docker's total. Like docker/cli, `-a` does
/// not widen the volume prune to named volumes.
pub async fn prune(c: &Client, a: crate::args::SystemPruneArgs) -> CliResult<()> {
    use crate::client::CliError;
    if a.volumes && a.filter.iter().any(|f| f.starts_with("until=")) {
        return Err(CliError::new(
            1,
            "ERROR: The \"until\" filter is not supported with \"--volumes\"",
        ));
    }
    if !a.force && !super::confirm(&prune_warning(&a)) {
        return Ok(());
    }
    let mut steps: Vec<(&str, Vec<String>, &str, &str)> = vec![
        (
            "/containers/prune",
            a.filter.clone(),
            "ContainersDeleted",
            "Deleted Containers",
        ),
        (
            "/networks/prune",
            a.filter.clone(),
            "NetworksDeleted",
            "Deleted Networks",
        ),
    ];
    if a.volumes {
        steps.push((
            "/volumes/prune",
            a.filter.clone(),
            "VolumesDeleted",
            "Deleted Volumes",
        ));
    }
    let mut image_filters = a.filter.clone();
    image_filters.push(format!("dangling={}", !a.all));
    steps.push((
        "/images/prune",
        image_filters,
        "ImagesDeleted",
        "Deleted Images",
    ));
    steps.push((
        "/build/prune",
        a.filter.clone(),
        "CachesDeleted",
        "Deleted build cache objects",
    ));
    let mut total = 0u64;
    for (path, filters, key, title) in steps {
        let (out, space) = prune_one(c, path, &filters, key, title).await?;
        total += space;
        if !out.is_empty() {
            println!("{out}");
        }
    }
    println!("Total reclaimed space: {}", units::human_size(total as f64));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_renders_key_fields() {
        let v = serde_json::json!({"Containers": 3, "ContainersRunning": 1, "ContainersPaused": 0,
            "ContainersStopped": 2, "Images": 4, "ServerVersion": "0.1.0", "Driver": "overlay2",
            "NCPU": 2, "MemTotal": 4294967296u64, "Name": "host"});
        let out = render_info(&v);
        assert!(
            out.contains(" Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n Images: 4\n")
        );
        assert!(out.contains(" Total Memory: 4GiB\n"));
        assert!(out.contains(" Storage Driver: overlay2\n"));
    }

    #[test]
    fn event_lines_like_docker() {
        let e = serde_json::json!({"Type": "container", "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "image": "busybox"}},
            "time": 1_700_000_000, "timeNano": 1_700_000_000_123_456_789i64});
        let line = event_line(&e);
        assert!(
            line.ends_with(" container start abc (image=busybox, name=web)"),
            "{line}"
        );
        assert!(line.contains(":20.123456789"), "{line}");
        let e = serde_json::json!({"Type": "image", "Action": "tag", "Actor": {"ID": "sha256:x"}});
        assert_eq!(event_line(&e), "image tag sha256:x");
    }

    #[test]
    fn build_time_is_ansic() {
        assert_eq!(
            ansic("2026-05-07T21:09:36.000000000+00:00"),
            "Thu May  7 21:09:36 2026"
        );
        assert_eq!(ansic("unknown"), "unknown");
    }

    #[test]
    fn version_lines_are_aligned() {
        assert_eq!(line(" Version:", "1"), " Version:           1\n");
        assert_eq!(line("  API version:", "1.47"), "  API version:      1.47\n");
    }

    #[test]
    fn df_summary_like_docker_cli() {
        let du = serde_json::json!({
            "LayersSize": 3_000_000,
            "Images": [
                {"Id": "a", "Size": 2_000_000, "SharedSize": 1_000_000, "Containers": 1},
                {"Id": "b", "Size": 2_000_000, "SharedSize": 1_000_000, "Containers": 0}
            ],
            "Containers": [
                {"State": "running", "SizeRw": 100},
                {"State": "exited", "SizeRw": 300}
            ],
            "Volumes": [
                {"Name": "v", "UsageData": {"Size": 1000, "RefCount": 0}},
                {"Name": "w", "UsageData": {"Size": -1, "RefCount": 1}}
            ],
            "BuildCache": []
        });
        let f = crate::tmpl::Format::new(None, DF_TABLE);
        assert_eq!(
            f.render(&df_header(), &df_rows(&du)).unwrap_or_default(),
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n\
             Images          2         1         3MB       2MB (66%)\n\
             Containers      2         1         400B      300B (75%)\n\
             Local Volumes   2         1         1kB       1kB (100%)\n\
             Build Cache     0         0         0B        0B\n"
        );
    }

    #[test]
    fn prune_warning_like_docker_cli() {
        let a = crate::args::SystemPruneArgs {
            all: false,
            force: false,
            volumes: true,
            filter: vec!["until=24h".into(), "label=a=b".into(), "dangling=x".into()],
        };
        assert_eq!(
            prune_warning(&a),
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n  - all anonymous volumes not used by at least one container\n  - all dangling images\n  - unused build cache\n\n  Items to be pruned will be filtered with:\n  - label=a=b\n  - until=24h\n"
        );
    }
}
