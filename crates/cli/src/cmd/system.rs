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
}
