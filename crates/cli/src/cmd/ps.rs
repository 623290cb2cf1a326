//! `ps`: docker/cli's container formatter.

use gtmpl::Value;
use serde_json::Value as J;

use super::filters_json;
use crate::args::PsArgs;
use crate::client::{q, CliResult, Client};
use crate::tmpl::{self, object, Format};
use crate::units;

pub const DEFAULT_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn s(v: &J) -> &str {
    v.as_str().unwrap_or_default()
}

/// An IP as docker prints it before ":port" (IPv6 in brackets, as net.JoinHostPort).
fn host_ip(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// docker/cli's DisplayablePorts: sorted, consecutive identity-mapped ports grouped into
/// ranges ("8000-8002/tcp"), other host mappings listed after the groups.
pub fn format_ports(ports: &J) -> String {
    let Some(list) = ports.as_array() else {
        return String::new();
    };
    let mut ports: Vec<(u64, String, u64, String)> = list
        .iter()
        .map(|p| {
            (
                p["PrivatePort"].as_u64().unwrap_or(0),
                s(&p["IP"]).to_string(),
                p["PublicPort"].as_u64().unwrap_or(0),
                p["Type"].as_str().unwrap_or("tcp").to_string(),
            )
        })
        .collect();
    ports.sort();
    let mut result: Vec<String> = Vec::new();
    let mut host_mappings: Vec<String> = Vec::new();
    // (key, ip, type, first, last), in the order keys first appear.
    let mut groups: Vec<(String, String, String, u64, u64)> = Vec::new();
    let form = |ip: &str, kind: &str, first: u64, last: u64| {
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{}:{g}->{g}", host_ip(ip));
        }
        format!("{g}/{kind}")
    };
    for (private, ip, public, kind) in ports {
        if !ip.is_empty() && public != private {
            host_mappings.push(format!("{}:{public}->{private}/{kind}", host_ip(&ip)));
            continue;
        }
        let key = if ip.is_empty() {
            kind.clone()
        } else {
            format!("{ip}/{kind}")
        };
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, ip, kind, private, private)),
            Some(g) if private == g.4 + 1 => g.4 = private,
            Some(g) => {
                result.push(form(&g.1, &g.2, g.3, g.4));
                g.3 = private;
                g.4 = private;
            }
        }
    }
    for g in &groups {
        result.push(form(&g.1, &g.2, g.3, g.4));
    }
    result.extend(host_mappings);
    result.join(", ")
}

/// One `ps` row as docker/cli's containerContext presents it.
pub fn row(c: &J, trunc: bool) -> Value {
    let id = s(&c["Id"]);
    let id = if trunc {
        units::truncate_id(id)
    } else {
        id.to_string()
    };

    let mut image = s(&c["Image"]).to_string();
    if trunc {
        if image.starts_with("sha256:")
            || units::truncate_id(&image) == units::truncate_id(s(&c["ImageID"]))
        {
            image = units::truncate_id(&image);
        } else if let Some((name, _)) = image.split_once('@') {
            image = name.to_string();
        }
    }

    let command = s(&c["Command"]);
    let command = if trunc {
        units::ellipsis(command, 20)
    } else {
        command.to_string()
    };

    // Names carry a leading "/"; with truncation docker hides link names ("/a/b").
    let names: Vec<String> = c["Names"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| s(n).trim_start_matches('/').to_string())
                .filter(|n| !trunc || !n.contains('/'))
                .collect()
        })
        .unwrap_or_default();

    let created = c["Created"].as_i64().unwrap_or(0);

    let mut labels: Vec<(String, String)> = c["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), s(v).to_string()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let labels_str = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");

    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let name = if s(&m["Name"]).is_empty() {
                        s(&m["Source"])
                    } else {
                        s(&m["Name"])
                    };
                    if trunc {
                        units::ellipsis(name, 15)
                    } else {
                        name.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let local_volumes = c["Mounts"]
        .as_array()
        .map(|a| a.iter().filter(|m| s(&m["Driver"]) == "local").count())
        .unwrap_or(0);

    let mut networks: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();

    let srw = c["SizeRw"].as_i64().unwrap_or(0);
    let srootfs = c["SizeRootFs"].as_i64().unwrap_or(0);
    let mut size = units::human_size_prec(srw as f64, 3);
    if srootfs > 0 {
        size = format!(
            "{size} (virtual {})",
            units::human_size_prec(srootfs as f64, 3)
        );
    }

    let mut v = object(vec![
        ("ID", Value::from(id)),
        ("Image", Value::from(image)),
        ("Command", Value::from(units::go_quote(&command))),
        ("CreatedAt", Value::from(units::go_time_string(created))),
        ("RunningFor", Value::from(units::since(created))),
        ("Ports", Value::from(format_ports(&c["Ports"]))),
        ("State", Value::from(s(&c["State"]).to_string())),
        ("Status", Value::from(s(&c["Status"]).to_string())),
        ("Size", Value::from(size)),
        ("Names", Value::from(names.join(","))),
        ("Labels", Value::from(labels_str)),
        ("Mounts", Value::from(mounts.join(","))),
        ("Networks", Value::from(networks.join(","))),
        ("LocalVolumes", Value::from(local_volumes.to_string())),
        ("Platform", Value::Nil),
    ]);
    tmpl::insert_field(&mut v, "__labels", tmpl::from_json(&c["Labels"]));
    v
}

pub fn header() -> Value {
    object(vec![
        ("ID", Value::from("CONTAINER ID")),
        ("Image", Value::from("IMAGE")),
        ("Command", Value::from("COMMAND")),
        ("CreatedAt", Value::from("CREATED AT")),
        ("RunningFor", Value::from("CREATED")),
        ("Ports", Value::from("PORTS")),
        ("State", Value::from("STATE")),
        ("Status", Value::from("STATUS")),
        ("Size", Value::from("SIZE")),
        ("Names", Value::from("NAMES")),
        ("Labels", Value::from("LABELS")),
        ("Mounts", Value::from("MOUNTS")),
        ("Networks", Value::from("NETWORKS")),
        ("LocalVolumes", Value::from("LOCAL VOLUMES")),
        ("Platform", Value::from("PLATFORM")),
        ("__header_label", Value::from("LABEL")),
    ])
}

pub async fn ps(c: &Client, a: PsArgs) -> CliResult<()> {
    let mut size = a.size;
    if a.format
        .as_deref()
        .is_some_and(|f| f.contains(".Size") || f.contains("{{json .}}"))
    {
        // docker asks for sizes when the template uses them.
        size = true;
    }
    let mut path = format!("/containers/json?all={}", a.all as u8);
    let limit = if a.latest { 1 } else { a.last };
    if limit > 0 {
        path.push_str(&format!("&limit={limit}"));
    }
    if size {
        path.push_str("&size=1");
    }
    if let Some(f) = filters_json(&a.filter)? {
        path.push_str(&format!("&filters={}", q(&f)));
    }
    let list = c.get_json(&path).await?;
    let items = list.as_array().cloned().unwrap_or_default();
    let trunc = !a.no_trunc;

    let format = match (&a.format, a.quiet) {
        (None, true) => "{{.ID}}".to_string(),
        (Some(f), true) => {
            if !f.is_empty() && f != "table" {
                eprintln!(
                    "WARNING: Ignoring custom format, because both --format and --quiet are set."
                );
            }
            "{{.ID}}".to_string()
        }
        (f, false) if f.as_deref().is_none_or(|f| f.is_empty() || f == "table") => {
            if size {
                format!("{DEFAULT_TABLE}\t{{{{.Size}}}}")
            } else {
                DEFAULT_TABLE.to_string()
            }
        }
        (Some(f), _) => f.clone(),
        (None, false) => DEFAULT_TABLE.to_string(),
    };
    let fmt = Format::new(Some(&format), DEFAULT_TABLE);
    let rows: Vec<Value> = items.iter().map(|i| row(i, trunc)).collect();
    print!("{}", fmt.render(&header(), &rows)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> J {
        serde_json::json!({
            "Id": "4f2a9c0e3b1d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f",
            "Names": ["/web"],
            "Image": "busybox",
            "ImageID": "sha256:aaaaaaaaaaaaaaaaaaaa",
            "Command": "sh -c 'while true; do sleep 1; done'",
            "Created": chrono::Utc::now().timestamp() - 300,
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}, {"PrivatePort": 53, "Type": "udp"}],
            "Labels": {"app": "x", "tier": "web"},
            "State": "running",
            "Status": "Up 5 minutes",
            "NetworkSettings": {"Networks": {"none": {}}},
            "Mounts": []
        })
    }

    #[test]
    fn default_table_matches_docker_layout() {
        let fmt = Format::new(Some(DEFAULT_TABLE), DEFAULT_TABLE);
        let out = fmt
            .render(&header(), &[row(&sample(), true)])
            .unwrap_or_default();
        let want = "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS                          NAMES\n\
4f2a9c0e3b1d   busybox   \"sh -c 'while true; …\"   5 minutes ago   Up 5 minutes   53/udp, 0.0.0.0:8080->80/tcp   web\n";
        assert_eq!(out, want);
    }

    #[test]
    fn ports_group_like_docker() {
        let p = serde_json::json!([
            {"PrivatePort": 8001, "Type": "tcp"},
            {"PrivatePort": 8000, "Type": "tcp"},
            {"PrivatePort": 8002, "Type": "tcp"},
            {"PrivatePort": 9000, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 80, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 81, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 443, "PublicPort": 8443, "Type": "tcp"},
            {"PrivatePort": 53, "Type": "udp"}
        ]);
        assert_eq!(
            format_ports(&p),
            "8000-8002/tcp, 53/udp, 0.0.0.0:80-81->80-81/tcp, 9000/tcp, [::]:8443->443/tcp"
        );
        assert_eq!(format_ports(&J::Null), "");
    }

    #[test]
    fn custom_formats() {
        let r = row(&sample(), true);
        let f = Format::new(
            Some("{{.Names}} {{.Label \"app\"}} {{.Labels}} {{.State}}"),
            DEFAULT_TABLE,
        );
        assert_eq!(
            f.render(&header(), std::slice::from_ref(&r))
                .unwrap_or_default(),
            "web x app=x,tier=web running\n"
        );
        let f = Format::new(Some("table {{.ID}}\t{{.Networks}}"), DEFAULT_TABLE);
        assert_eq!(
            f.render(&header(), std::slice::from_ref(&r))
                .unwrap_or_default(),
            "CONTAINER ID   NETWORKS\n4f2a9c0e3b1d   none\n"
        );
        let full = row(&sample(), false);
        let f = Format::new(Some("{{.ID}}"), DEFAULT_TABLE);
        assert_eq!(
            f.render(&header(), &[full])
                .unwrap_or_default()
                .trim()
                .len(),
            64
        );
        let f = Format::new(Some("{{json .}}"), DEFAULT_TABLE);
        let out = f.render(&header(), &[r]).unwrap_or_default();
        let v: J = serde_json::from_str(out.trim()).unwrap_or_default();
        assert_eq!(v["Names"], "web");
        assert!(v.get("__labels").is_none());
    }
}
