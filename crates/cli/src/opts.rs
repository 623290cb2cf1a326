//! `run`/`create` flags to the API's container config, as docker/cli's opts.go does it.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HostConfig, HostConfigCgroupnsModeEnum, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};

use crate::args::ContainerOpts;
use crate::units::{parse_cpus, ram_in_bytes};

/// The create body plus what the CLI itself needs to know.
pub struct Parsed {
    pub body: ContainerCreateBody,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
}

/// Reads docker env-files: `KEY=value`, bare `KEY` taken from our environment,
/// blank lines and `#` comments skipped.
pub fn parse_env_file(content: &str, path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in content.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (var, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line, None),
        };
        let var = var.trim_start();
        if var.is_empty() {
            return Err(format!(
                "invalid env file ({path}): no variable name on line '{line}'"
            ));
        }
        if var.contains(char::is_whitespace) {
            return Err(format!("variable '{var}' contains whitespaces"));
        }
        match value {
            Some(v) => out.push(format!("{var}={v}")),
            None => {
                if let Ok(v) = std::env::var(var) {
                    out.push(format!("{var}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// `-e KEY` takes KEY from our environment (and is dropped if unset), like docker.
pub fn expand_env(items: &[String]) -> Vec<String> {
    items
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

pub fn collect_env(env_files: &[String], env: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for f in env_files {
        let content = std::fs::read_to_string(f).map_err(|e| crate::units::go_open_error(f, &e))?;
        out.extend(parse_env_file(&content, f)?);
    }
    out.extend(expand_env(env));
    Ok(out)
}

pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let name_enum = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => return Err(format!("invalid restart policy '{name}'")),
    };
    let maximum_retry_count = match count {
        Some(c) if name == "on-failure" => Some(c.parse::<i64>().map_err(|_| {
            format!("invalid restart policy format: maximum retry count must be an integer: {c}")
        })?),
        Some(_) => return Err(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
                .into(),
        ),
        None => None,
    };
    Ok(RestartPolicy {
        name: Some(name_enum),
        maximum_retry_count,
    })
}

/// `--ulimit nofile=1024:2048` (hard defaults to soft).
pub fn parse_ulimit(s: &str) -> Result<ResourcesUlimits, String> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a, b),
        None => (vals, vals),
    };
    let soft: i64 = soft
        .parse()
        .map_err(|_| format!("invalid ulimit soft value: {soft}"))?;
    let hard: i64 = hard
        .parse()
        .map_err(|_| format!("invalid ulimit hard value: {hard}"))?;
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

fn kv_map(items: &[String], what: &str) -> Result<HashMap<String, String>, String> {
    let mut m = HashMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => {
                m.insert(k.to_string(), v.to_string());
            }
            None if what == "label" => {
                m.insert(i.clone(), String::new());
            }
            None => return Err(format!("invalid {what} format: {i}")),
        }
    }
    Ok(m)
}

/// docker/cli `opts.ValidateSysctl`: only namespaced sysctls may be set.
pub fn validate_sysctl(val: &str) -> Result<(), String> {
    const KEYS: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let ok = match val.split_once('=') {
        Some((k, _)) if !k.is_empty() => {
            KEYS.contains(&k) || k.starts_with("net.") || k.starts_with("fs.mqueue.")
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("sysctl '{val}' is not allowed"))
    }
}

fn valid_device_mode(mode: &str) -> bool {
    let mut seen = String::new();
    !mode.is_empty()
        && mode.chars().all(|c| {
            let fresh = matches!(c, 'r' | 'w' | 'm') && !seen.contains(c);
            seen.push(c);
            fresh
        })
}

/// docker/cli `validateDevice` + `parseLinuxDevice`: `SRC[:DST][:PERMS]`.
pub fn parse_device(val: &str) -> Result<DeviceMapping, String> {
    let bad = || format!("bad format for path: {val}");
    if val.matches(':').count() > 2 {
        return Err(bad());
    }
    let parts: Vec<&str> = val.split(':').collect();
    if parts[0].is_empty() {
        return Err(bad());
    }
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, m] if valid_device_mode(m) => (*src, *src, *m),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, m] => {
            if !valid_device_mode(m) {
                return Err(format!("bad mode specified: {m}"));
            }
            (*src, *dst, *m)
        }
        _ => return Err(bad()),
    };
    if !dst.starts_with('/') {
        return Err(format!("{dst} is not an absolute path"));
    }
    Ok(DeviceMapping {
        path_on_host: Some(src.to_string()),
        path_in_container: Some(dst.to_string()),
        cgroup_permissions: Some(perms.to_string()),
    })
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => s.parse().ok().map(|p| (p, p)),
    }
}

/// `-p [ip:][hostPort:]containerPort[/proto]`, ranges expanded one port each as
/// docker's nat.ParsePortSpec does → [("80/tcp", binding)].
pub fn parse_publish(s: &str) -> Result<Vec<(String, PortBinding)>, String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (cport, hport, ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, *ip),
        _ => return Err(format!("invalid port format: {s}")),
    };
    let (cfirst, clast) =
        port_range(cport).ok_or_else(|| format!("invalid containerPort: {cport}"))?;
    let host = if hport.is_empty() {
        None
    } else {
        Some(port_range(hport).ok_or_else(|| format!("invalid hostPort: {hport}"))?)
    };
    let ip = ip.trim_matches(['[', ']']).to_string();
    let n = clast - cfirst;
    if let Some((hf, hl)) = host {
        if n > 0 && hl - hf != n {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {cport} and {hport}"
            ));
        }
    }
    let mut out = Vec::new();
    for i in 0..=n {
        let host_port = match host {
            // A single container port may take any host port of a range.
            Some((hf, hl)) if n == 0 && hf != hl => format!("{hf}-{hl}"),
            Some((hf, _)) => (hf + i).to_string(),
            None => String::new(),
        };
        out.push((
            format!("{}/{proto}", cfirst + i),
            PortBinding {
                host_ip: Some(ip.clone()),
                host_port: Some(host_port),
            },
        ));
    }
    Ok(out)
}

/// A byte-size flag, with docker's (pflag's) error wording.
fn bytes_flag(v: Option<&str>, flag: &str) -> Result<Option<i64>, String> {
    v.map(|s| {
        ram_in_bytes(s).map_err(|e| format!("invalid argument \"{s}\" for \"{flag}\" flag: {e}"))
    })
    .transpose()
}

pub fn build(
    o: &ContainerOpts,
    image: &str,
    cmd: &[String],
    detach: bool,
) -> Result<Parsed, String> {
    let env = collect_env(&o.env_file, &o.env)?;
    let labels = kv_map(&o.label, "label")?;
    for s in &o.sysctl {
        validate_sysctl(s)
            .map_err(|e| format!("invalid argument \"{s}\" for \"--sysctl\" flag: {e}"))?;
    }
    let sysctls = kv_map(&o.sysctl, "sysctl")?;
    let devices = o
        .device
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>, _>>()?;
    let container_ref = |m: &str| m.strip_prefix("container:").is_some_and(|c| !c.is_empty());
    let pid = o.pid.clone().unwrap_or_default();
    if !(pid.is_empty() || pid == "host" || container_ref(&pid)) {
        return Err("--pid: invalid PID mode".into());
    }
    let uts = o.uts.clone().unwrap_or_default();
    if !(uts.is_empty() || uts == "host") {
        return Err("--uts: invalid UTS mode".into());
    }
    let cgroupns_mode = match o.cgroupns.as_deref().unwrap_or("") {
        "" => None,
        "host" => Some(HostConfigCgroupnsModeEnum::HOST),
        "private" => Some(HostConfigCgroupnsModeEnum::PRIVATE),
        _ => return Err("--cgroupns: invalid CGROUP mode".into()),
    };

    // docker: with neither -d nor -a, attach stdout+stderr (and stdin with -i).
    let mut attach_stdin = o.attach.iter().any(|a| a.eq_ignore_ascii_case("stdin"));
    let mut attach_stdout = o.attach.iter().any(|a| a.eq_ignore_ascii_case("stdout"));
    let mut attach_stderr = o.attach.iter().any(|a| a.eq_ignore_ascii_case("stderr"));
    for a in &o.attach {
        if !["stdin", "stdout", "stderr"].contains(&a.to_ascii_lowercase().as_str()) {
            return Err(format!("invalid argument \"{a}\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR"));
        }
    }
    if detach && !o.attach.is_empty() {
        return Err("conflicting options: cannot specify both --attach and --detach".into());
    }
    if o.attach.is_empty() && !detach {
        attach_stdout = true;
        attach_stderr = true;
        if o.interactive {
            attach_stdin = true;
        }
    }

    let memory = bytes_flag(o.memory.as_deref(), "-m, --memory")?;
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => Some(-1),
        other => bytes_flag(other, "--memory-swap")?,
    };
    let memory_reservation = bytes_flag(o.memory_reservation.as_deref(), "--memory-reservation")?;
    let shm_size = bytes_flag(o.shm_size.as_deref(), "--shm-size")?;
    let nano_cpus = o.cpus.as_deref().map(parse_cpus).transpose()?;
    let ulimits = o
        .ulimit
        .iter()
        .map(|u| {
            parse_ulimit(u)
                .map_err(|e| format!("invalid argument \"{u}\" for \"--ulimit\" flag: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let restart = parse_restart(&o.restart)?;
    if o.rm && !matches!(restart.name, Some(RestartPolicyNameEnum::NO) | None) {
        return Err("conflicting options: cannot specify both --restart and --rm".into());
    }

    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &o.publish {
        for (port, b) in parse_publish(p)? {
            if !exposed.contains(&port) {
                exposed.push(port.clone());
            }
            bindings
                .entry(port)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(b);
        }
    }
    for e in &o.expose {
        let port = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        if !exposed.contains(&port) {
            exposed.push(port);
        }
    }
    let tmpfs: HashMap<String, String> = o
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, opts)) => (p.to_string(), opts.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();

    // docker: an empty --entrypoint resets it to [""] ... we send [] which the API treats the same.
    let entrypoint = o.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            vec![String::new()]
        } else {
            vec![e.clone()]
        }
    });

    // `-v /data` is an anonymous volume (Config.Volumes); `-v src:dst[:opts]` a bind.
    let (binds, anonymous) = crate::mounts::split_volumes(&o.volume)?;
    let mounts = o
        .mount
        .iter()
        .map(|m| {
            crate::mounts::parse_mount(m)
                .map_err(|e| format!("invalid argument \"{m}\" for \"--mount\" flag: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut log_opts = HashMap::new();
    for kv in &o.log_opt {
        match kv.split_once('=') {
            Some((k, v)) => {
                log_opts.insert(k.to_string(), v.to_string());
            }
            None => return Err(format!("invalid argument \"{kv}\" for \"--log-opt\" flag: invalid key value pair format in log options")),
        }
    }
    let log_config = (o.log_driver.is_some() || !log_opts.is_empty()).then(|| {
        bollard::models::HostConfigLogConfig {
            typ: Some(o.log_driver.clone().unwrap_or_default()),
            config: Some(log_opts),
        }
    });
    let host_config = HostConfig {
        auto_remove: Some(o.rm),
        log_config,
        memory,
        memory_swap,
        memory_reservation,
        nano_cpus,
        cpu_shares: o.cpu_shares,
        cpuset_cpus: o.cpuset_cpus.clone(),
        pids_limit: o.pids_limit,
        cap_add: (!o.cap_add.is_empty()).then(|| o.cap_add.clone()),
        cap_drop: (!o.cap_drop.is_empty()).then(|| o.cap_drop.clone()),
        privileged: Some(o.privileged),
        readonly_rootfs: Some(o.read_only),
        security_opt: (!o.security_opt.is_empty()).then(|| o.security_opt.clone()),
        network_mode: Some(o.network.clone().unwrap_or_else(|| "default".into())),
        init: o.init.then_some(true),
        group_add: (!o.group_add.is_empty()).then(|| o.group_add.clone()),
        ulimits: (!ulimits.is_empty()).then_some(ulimits),
        shm_size,
        sysctls: (!sysctls.is_empty()).then_some(sysctls),
        devices: (!devices.is_empty()).then_some(devices),
        cgroupns_mode,
        ipc_mode: o.ipc.clone(),
        pid_mode: o.pid.clone(),
        uts_mode: o.uts.clone(),
        restart_policy: Some(restart),
        binds: (!binds.is_empty()).then_some(binds),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        mounts: (!mounts.is_empty()).then_some(mounts),
        volumes_from: (!o.volumes_from.is_empty()).then(|| o.volumes_from.clone()),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        dns: (!o.dns.is_empty()).then(|| o.dns.clone()),
        dns_search: (!o.dns_search.is_empty()).then(|| o.dns_search.clone()),
        dns_options: (!o.dns_option.is_empty()).then(|| o.dns_option.clone()),
        publish_all_ports: o.publish_all.then_some(true),
        extra_hosts: (!o.add_host.is_empty()).then(|| o.add_host.clone()),
        ..Default::default()
    };

    // docker sends the per-network settings (aliases, --ip, --mac-address) under the
    // network named by --network.
    let net_name = o.network.clone().unwrap_or_else(|| "default".into());
    let networking_config =
        (!o.network_alias.is_empty() || o.ip.is_some() || o.mac_address.is_some()).then(|| {
            let ep = bollard::models::EndpointSettings {
                aliases: (!o.network_alias.is_empty()).then(|| o.network_alias.clone()),
                mac_address: o.mac_address.clone(),
                ipam_config: o.ip.as_ref().map(|ip| bollard::models::EndpointIpamConfig {
                    ipv4_address: Some(ip.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            bollard::models::NetworkingConfig {
                endpoints_config: Some(HashMap::from([(net_name.clone(), ep)])),
            }
        });
    let dur = |flag: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(s) => crate::units::parse_go_duration(s)
                .map(|d| Some(d.as_nanos() as i64))
                .ok_or_else(|| format!("invalid argument \"{s}\" for \"--{flag}\" flag: time: invalid duration \"{s}\"")),
        }
    };
    let health_opts = o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_retries.is_some()
        || o.health_start_period.is_some()
        || o.health_start_interval.is_some();
    if o.no_healthcheck && (o.health_cmd.is_some() || health_opts) {
        return Err("--no-healthcheck conflicts with --health-* options".into());
    }
    let healthcheck = if o.no_healthcheck {
        Some(bollard::models::HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        })
    } else if o.health_cmd.is_some() || health_opts {
        Some(bollard::models::HealthConfig {
            test: o
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".to_string(), c.clone()]),
            interval: dur("health-interval", &o.health_interval)?,
            timeout: dur("health-timeout", &o.health_timeout)?,
            retries: o.health_retries,
            start_period: dur("health-start-period", &o.health_start_period)?,
            start_interval: dur("health-start-interval", &o.health_start_interval)?,
        })
    } else {
        None
    };
    let body = ContainerCreateBody {
        healthcheck,
        hostname: o.hostname.clone(),
        domainname: o.domainname.clone(),
        user: o.user.clone(),
        attach_stdin: Some(attach_stdin),
        attach_stdout: Some(attach_stdout),
        attach_stderr: Some(attach_stderr),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        volumes: (!anonymous.is_empty()).then_some(anonymous),
        tty: Some(o.tty),
        open_stdin: Some(o.interactive),
        stdin_once: Some(attach_stdin),
        env: Some(env),
        cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
        image: Some(image.to_string()),
        working_dir: o.workdir.clone(),
        entrypoint,
        labels: Some(labels),
        stop_signal: o.stop_signal.clone(),
        stop_timeout: o.stop_timeout,
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    Ok(Parsed {
        body,
        attach_stdin,
        attach_stdout,
        attach_stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parsing() {
        std::env::set_var("BERTH_TEST_ENV_FROM_HOST", "h");
        let content = "# comment\n\nA=1\n  B=two words\nBERTH_TEST_ENV_FROM_HOST\nBERTH_TEST_UNSET_VAR_X\nC=\n";
        assert_eq!(
            parse_env_file(content, "f"),
            Ok(vec![
                "A=1".to_string(),
                "B=two words".to_string(),
                "BERTH_TEST_ENV_FROM_HOST=h".to_string(),
                "C=".to_string()
            ])
        );
        assert!(parse_env_file("BAD KEY=1\n", "f").is_err());
    }

    #[test]
    fn devices_and_sysctls_like_docker_cli() {
        let d = |v: &str| {
            parse_device(v).map(|m| {
                (
                    m.path_on_host.unwrap_or_default(),
                    m.path_in_container.unwrap_or_default(),
                    m.cgroup_permissions.unwrap_or_default(),
                )
            })
        };
        let t = |a: &str, b: &str, c: &str| Ok((a.to_string(), b.to_string(), c.to_string()));
        assert_eq!(d("/dev/fuse"), t("/dev/fuse", "/dev/fuse", "rwm"));
        assert_eq!(d("/dev/fuse:r"), t("/dev/fuse", "/dev/fuse", "r"));
        assert_eq!(d("/dev/sda:/dev/xvdc"), t("/dev/sda", "/dev/xvdc", "rwm"));
        assert_eq!(d("/dev/sda:/dev/xvdc:rw"), t("/dev/sda", "/dev/xvdc", "rw"));
        assert_eq!(
            d("/dev/sda:/dev/xvdc:rx"),
            Err("bad mode specified: rx".into())
        );
        assert_eq!(
            d("/dev/sda:xvdc"),
            Err("xvdc is not an absolute path".into())
        );
        assert_eq!(d(":/dev/x"), Err("bad format for path: :/dev/x".into()));
        assert_eq!(d("a:b:c:d"), Err("bad format for path: a:b:c:d".into()));
        assert!(validate_sysctl("net.ipv4.ip_forward=1").is_ok());
        assert!(validate_sysctl("kernel.shmmax=1").is_ok());
        assert!(validate_sysctl("fs.mqueue.msg_max=10").is_ok());
        assert_eq!(
            validate_sysctl("kernel.domainname=x"),
            Err("sysctl 'kernel.domainname=x' is not allowed".into())
        );
    }

    #[test]
    fn restart_and_ulimits() {
        assert!(matches!(
            parse_restart("on-failure:3"),
            Ok(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(3)
            })
        ));
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        let u = parse_ulimit("nofile=1024:2048");
        assert!(matches!(
            u,
            Ok(ResourcesUlimits {
                soft: Some(1024),
                hard: Some(2048),
                ..
            })
        ));
        let u = parse_ulimit("nproc=10");
        assert!(matches!(
            u,
            Ok(ResourcesUlimits {
                soft: Some(10),
                hard: Some(10),
                ..
            })
        ));
        assert!(parse_ulimit("nofile=10:5").is_err());
    }

    #[test]
    fn publish_specs() {
        let v = parse_publish("127.0.0.1:8080:80/udp").unwrap_or_default();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, "80/udp");
        assert_eq!(v[0].1.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(v[0].1.host_port.as_deref(), Some("8080"));
        let v = parse_publish("80").unwrap_or_default();
        assert_eq!(v[0].0, "80/tcp");
        assert_eq!(v[0].1.host_port.as_deref(), Some(""));
        let v = parse_publish("9000-9001:8000-8001").unwrap_or_default();
        let got: Vec<(String, Option<String>)> =
            v.into_iter().map(|(p, b)| (p, b.host_port)).collect();
        assert_eq!(
            got,
            vec![
                ("8000/tcp".to_string(), Some("9000".to_string())),
                ("8001/tcp".to_string(), Some("9001".to_string()))
            ]
        );
        let v = parse_publish("[::1]:8000-8010:80").unwrap_or_default();
        assert_eq!(v[0].1.host_ip.as_deref(), Some("::1"));
        assert_eq!(v[0].1.host_port.as_deref(), Some("8000-8010"));
        assert!(parse_publish("x:y").is_err());
        assert!(parse_publish("1-3:1-2").is_err());
    }

    #[test]
    fn build_maps_flags() {
        let o = ContainerOpts {
            interactive: true,
            tty: true,
            rm: true,
            env: vec!["A=1".into()],
            label: vec!["k=v".into(), "flag".into()],
            memory: Some("512m".into()),
            memory_swap: Some("-1".into()),
            cpus: Some("0.5".into()),
            restart: "no".into(),
            network: Some("none".into()),
            volume: vec!["/data".into(), "/src:/dst:ro".into()],
            ..Default::default()
        };
        let p = build(&o, "busybox", &["sh".into()], false).map_err(|e| e.to_string());
        let Ok(p) = p else {
            panic!("{p:?}", p = p.err())
        };
        assert!(p.attach_stdin && p.attach_stdout && p.attach_stderr);
        let b = p.body;
        assert_eq!(b.open_stdin, Some(true));
        assert_eq!(b.stdin_once, Some(true));
        assert_eq!(b.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(b.volumes, Some(vec!["/data".to_string()]));
        let labels = b.labels.unwrap_or_default();
        assert_eq!(labels.get("flag").map(String::as_str), Some(""));
        let hc = b.host_config.unwrap_or_default();
        assert_eq!(hc.memory, Some(512 * 1024 * 1024));
        assert_eq!(hc.memory_swap, Some(-1));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.auto_remove, Some(true));
        assert_eq!(hc.network_mode.as_deref(), Some("none"));
        assert_eq!(hc.binds, Some(vec!["/src:/dst:ro".to_string()]));

        let o = ContainerOpts {
            restart: "always".into(),
            rm: true,
            ..Default::default()
        };
        assert!(build(&o, "x", &[], true).is_err());
        let o = ContainerOpts {
            restart: "no".into(),
            ..Default::default()
        };
        let Ok(p) = build(&o, "x", &[], true) else {
            panic!()
        };
        assert!(!p.attach_stdout && !p.attach_stdin);
    }
}
