//! `stats`: docker/cli's resource usage table, computed from the stats API the same way.

use gtmpl::Value;
use serde_json::Value as J;

use crate::args::StatsArgs;
use crate::client::{q, CliError, CliResult, Client};
use crate::tmpl::{object, Format};
use crate::units;

const DEFAULT_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn f(v: &J) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// CPU % as docker computes it: the container's share of the system's CPU time
/// between the two samples, times the number of CPUs.
pub fn cpu_percent(s: &J) -> f64 {
    let cpu_delta = f(&s["cpu_stats"]["cpu_usage"]["total_usage"])
        - f(&s["precpu_stats"]["cpu_usage"]["total_usage"]);
    let system_delta =
        f(&s["cpu_stats"]["system_cpu_usage"]) - f(&s["precpu_stats"]["system_cpu_usage"]);
    let mut online = f(&s["cpu_stats"]["online_cpus"]);
    if online == 0.0 {
        online = s["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0);
    }
    if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * online * 100.0
    } else {
        0.0
    }
}

/// Memory use without the page cache (docker's calculateMemUsageUnixNoCache).
pub fn mem_usage(s: &J) -> f64 {
    let usage = f(&s["memory_stats"]["usage"]);
    let stats = &s["memory_stats"]["stats"];
    if let Some(v) = stats["total_inactive_file"].as_f64() {
        if v < usage {
            return usage - v;
        }
    }
    match stats["inactive_file"].as_f64() {
        Some(v) if v < usage => usage - v,
        _ => usage,
    }
}

/// One row of the table from one stats sample.
pub fn row(s: &J, trunc: bool) -> Value {
    let id = s["id"].as_str().unwrap_or_default();
    let id = if trunc {
        units::truncate_id(id)
    } else {
        id.to_string()
    };
    let name = s["name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/');
    let mem = mem_usage(s);
    let limit = f(&s["memory_stats"]["limit"]);
    let mem_perc = if limit > 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(nets) = s["networks"].as_object() {
        for n in nets.values() {
            rx += f(&n["rx_bytes"]);
            tx += f(&n["tx_bytes"]);
        }
    }
    let (mut read, mut write) = (0.0, 0.0);
    if let Some(entries) = s["blkio_stats"]["io_service_bytes_recursive"].as_array() {
        for e in entries {
            match e["op"].as_str().map(|o| o.to_ascii_lowercase()).as_deref() {
                Some("read") => read += f(&e["value"]),
                Some("write") => write += f(&e["value"]),
                _ => {}
            }
        }
    }
    let pids = s["pids_stats"]["current"].as_u64().unwrap_or(0);
    let pair = |a: f64, b: f64| {
        format!(
            "{} / {}",
            units::human_size_prec(a, 3),
            units::human_size_prec(b, 3)
        )
    };
    object(vec![
        ("ID", Value::from(id.clone())),
        ("Container", Value::from(id)),
        ("Name", Value::from(name)),
        ("CPUPerc", Value::from(format!("{:.2}%", cpu_percent(s)))),
        (
            "MemUsage",
            Value::from(format!(
                "{} / {}",
                units::bytes_size(mem),
                units::bytes_size(limit)
            )),
        ),
        ("MemPerc", Value::from(format!("{mem_perc:.2}%"))),
        ("NetIO", Value::from(pair(rx, tx))),
        ("BlockIO", Value::from(pair(read, write))),
        ("PIDs", Value::from(pids.to_string())),
    ])
}

fn header() -> Value {
    object(vec![
        ("ID", Value::from("CONTAINER ID")),
        ("Container", Value::from("CONTAINER")),
        ("Name", Value::from("NAME")),
        ("CPUPerc", Value::from("CPU %")),
        ("MemUsage", Value::from("MEM USAGE / LIMIT")),
        ("MemPerc", Value::from("MEM %")),
        ("NetIO", Value::from("NET I/O")),
        ("BlockIO", Value::from("BLOCK I/O")),
        ("PIDs", Value::from("PIDS")),
    ])
}

async fn sample(c: &Client, id: &str) -> CliResult<J> {
    c.get_json(&format!("/containers/{}/stats?stream=0", q(id)))
        .await
}

pub async fn stats(c: &Client, a: StatsArgs) -> CliResult<()> {
    let names: Vec<String> = if a.containers.is_empty() {
        let list = c
            .get_json(&format!("/containers/json?all={}", a.all as u8))
            .await?;
        list.as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x["Id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        a.containers.clone()
    };
    let fmt = Format::new(a.format.as_deref(), DEFAULT_TABLE);
    let is_tty = crate::stream::stdout_is_tty();
    loop {
        // Samples are taken one after the other; each takes dockerd about a second.
        let started = tokio::time::Instant::now();
        let mut rows = Vec::new();
        for n in &names {
            match sample(c, n).await {
                Ok(s) => rows.push(row(&s, !a.no_trunc)),
                Err(e) if !a.containers.is_empty() => return Err(e),
                Err(_) => {}
            }
        }
        let out = fmt.render(&header(), &rows)?;
        if !a.no_stream && is_tty {
            // Clear the screen and home the cursor between refreshes, like docker.
            print!("\x1b[2J\x1b[H");
        }
        print!("{out}");
        use std::io::Write;
        std::io::stdout()
            .flush()
            .map_err(|e| CliError::new(1, e.to_string()))?;
        if a.no_stream {
            return Ok(());
        }
        // Refresh at most once a second, whatever the daemon's sampling takes.
        tokio::time::sleep_until(started + std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_json() -> J {
        serde_json::json!({
            "id": "0123456789abcdef0123", "name": "/web",
            "pids_stats": {"current": 3},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 1_000_000}
            ]},
            "cpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000u64}, "system_cpu_usage": 6_000_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_500_000_000u64}, "system_cpu_usage": 5_998_000_000_000u64, "online_cpus": 2},
            "memory_stats": {"usage": 10_485_760u64, "limit": 104_857_600u64, "stats": {"total_inactive_file": 2_097_152u64}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 250}}
        })
    }

    #[test]
    fn rows_compute_like_docker() {
        let s = sample_json();
        assert!((cpu_percent(&s) - 50.0).abs() < 1e-9);
        assert_eq!(mem_usage(&s), 8_388_608.0);
        let fmt = Format::new(None, DEFAULT_TABLE);
        let out = fmt.render(&header(), &[row(&s, true)]).unwrap_or_default();
        assert_eq!(
            out,
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O        BLOCK I/O     PIDS\n\
0123456789ab   web       50.00%    8MiB / 100MiB       8.00%     1.5kB / 250B   4.1kB / 1MB   3\n"
        );
    }
}
