//! Networks: the records of docker's three predefined networks and of user-defined bridge
//! networks, their address pools, and the per-container network setup (namespace, veths,
//! published ports, embedded DNS) built on the berth-network crate.

use crate::containers::Record;
use crate::state::State;
use berth_api::Error;
use berth_network::dns::{self, DnsServer};
use berth_network::ipam::{self, Pool, Subnet};
use berth_network::nft::{Firewall, NetRules, PortRule, Proto};
use berth_network::{link, netns};
use berth_store::Db;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

pub const NETWORKS_TABLE: &str = "networks";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetRecord {
    pub id: String,
    pub name: String,
    /// "bridge", "host" or "null".
    pub driver: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub options: HashMap<String, String>,
    /// The host's bridge interface (bridge driver).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub ip_range: Option<String>,
    /// The subnet came from the user (docker allows `--ip` only then).
    #[serde(default)]
    pub user_subnet: bool,
}

impl NetRecord {
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    fn subnet(&self) -> Option<Subnet> {
        self.subnet.as_deref().and_then(|s| s.parse().ok())
    }
    fn gateway_ip(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|s| s.parse().ok())
    }
}

/// A container's attachment to one network. The first fields are configuration (kept while
/// stopped); the rest describe the live endpoint and are cleared when the container stops.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ipv4_config: Option<String>,
    /// `--mac-address`; else docker's 02:42 + IPv4 address.
    #[serde(default)]
    pub mac_config: Option<String>,
    #[serde(default)]
    pub endpoint_id: String,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub prefix: u8,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub host_veth: Option<String>,
}

/// One published port as inspect shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Published {
    pub host_ip: String,
    pub host_port: u16,
}

/// A host port held by the daemon while it is published, so nothing else takes it (docker
/// 28 reserves ports the same way): bound, never listening; DNAT steers the traffic.
enum Reservation {
    #[allow(dead_code)]
    Tcp(tokio::net::TcpSocket),
    #[allow(dead_code)]
    Udp(std::net::UdpSocket),
}

#[derive(Default)]
struct Live {
    dns: Option<DnsServer>,
    #[allow(dead_code)]
    ports: Vec<Reservation>,
}

pub struct Net {
    pub rec: NetRecord,
    pool: Mutex<Option<Pool>>,
}

impl Net {
    fn new(rec: NetRecord) -> Net {
        let pool = match (rec.subnet(), rec.gateway_ip()) {
            (Some(s), Some(g)) if rec.is_bridge() => Some(Pool::new(
                s,
                g,
                rec.ip_range.as_deref().and_then(|r| r.parse().ok()),
            )),
            _ => None,
        };
        Net {
            rec,
            pool: Mutex::new(pool),
        }
    }
    fn pool(&self) -> std::sync::MutexGuard<'_, Option<Pool>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Networks {
    nets: RwLock<HashMap<String, Arc<Net>>>,
    pub fw: Firewall,
    netns_dir: PathBuf,
    live: Mutex<HashMap<String, Live>>,
    db: Arc<Db>,
}

fn net_err(e: impl std::fmt::Display) -> Error {
    Error::internal(e.to_string())
}

fn ipam_err(e: ipam::IpamError) -> Error {
    match e {
        ipam::IpamError::InvalidCidr(_) => Error::invalid(e.to_string()),
        ipam::IpamError::InUse => Error::forbidden(e.to_string()),
        _ => Error::invalid(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}

/// The name of our nftables table: one per default bridge, so test daemons with their own
/// bridge never touch each other's rules.
pub fn table_name(bridge: &str) -> String {
    if bridge == "berth0" {
        "berth".into()
    } else {
        format!("berth-{bridge}")
    }
}

impl Networks {
    /// Loads the network records, creating docker's predefined `bridge`, `host` and `none`.
    /// `bridge` gets `bip` if given, else the first of docker's address pools that overlaps
    /// no route of the host.
    pub fn open(
        db: Arc<Db>,
        exec_root: &Path,
        bridge: Option<&str>,
        bip: Option<&str>,
    ) -> anyhow::Result<Networks> {
        let default_bridge = bridge.unwrap_or("berth0").to_string();
        let mut recs: Vec<NetRecord> = db
            .list::<NetRecord>(NETWORKS_TABLE)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let mut changed = Vec::new();
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if !recs.iter().any(|r| r.name == name) {
                let r = NetRecord {
                    id: crate::util::new_id(),
                    name: name.into(),
                    driver: driver.into(),
                    created: Utc::now(),
                    internal: false,
                    attachable: false,
                    enable_ipv6: false,
                    labels: HashMap::new(),
                    options: HashMap::new(),
                    bridge: String::new(),
                    subnet: None,
                    gateway: None,
                    ip_range: None,
                    user_subnet: false,
                };
                recs.push(r.clone());
                changed.push(r);
            }
        }
        let taken_user: Vec<Subnet> = recs
            .iter()
            .filter(|r| r.name != "bridge")
            .filter_map(|r| r.subnet())
            .collect();
        if let Some(b) = recs.iter_mut().find(|r| r.name == "bridge") {
            let before = (b.bridge.clone(), b.subnet.clone(), b.gateway.clone());
            b.bridge = default_bridge.clone();
            b.options.insert(
                "com.docker.network.bridge.name".into(),
                default_bridge.clone(),
            );
            b.options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
            if let Some(bip) = bip {
                let (ip, net) = ipam::parse_cidr(bip).map_err(|e| anyhow::anyhow!("--bip: {e}"))?;
                b.subnet = Some(net.to_string());
                b.gateway = Some(ip.to_string());
            } else if b.subnet.is_none() || !link::exists(&default_bridge) {
                // Keep the stored choice while its bridge exists; else choose again.
                let mut taken: Vec<Subnet> = ipam::host_routes();
                taken.extend(taken_user.iter().copied());
                let keep = b.subnet().filter(|s| !taken.iter().any(|t| t.overlaps(s)));
                let s = match keep {
                    Some(s) => s,
                    None => ipam::pick_subnet(&ipam::default_pools(), &taken).ok_or_else(|| {
                        anyhow::anyhow!("no free subnet for the default bridge: use --bip")
                    })?,
                };
                b.subnet = Some(s.to_string());
                b.gateway = Some(s.first_host().to_string());
            }
            if before != (b.bridge.clone(), b.subnet.clone(), b.gateway.clone()) {
                changed.push(b.clone());
            }
        }
        for r in &changed {
            let r = recs.iter().find(|x| x.id == r.id).unwrap_or(r);
            db.put(NETWORKS_TABLE, &r.id, r)?;
        }
        let nets = recs
            .into_iter()
            .map(|r| (r.id.clone(), Arc::new(Net::new(r))))
            .collect();
        Ok(Networks {
            nets: RwLock::new(nets),
            fw: Firewall::new(&table_name(&default_bridge)),
            netns_dir: exec_root.join("netns"),
            live: Mutex::new(HashMap::new()),
            db,
        })
    }

    /// Brings bridges and firewall rules in line with the records (daemon start).
    pub fn init(&self) -> Result<(), Error> {
        link::set_sysctl("net/ipv4/ip_forward", "1").map_err(net_err)?;
        self.fw.ensure().map_err(net_err)?;
        for n in self.all() {
            if n.rec.is_bridge() {
                self.up(&n.rec)?;
            }
        }
        Ok(())
    }

    fn up(&self, r: &NetRecord) -> Result<(), Error> {
        let (Some(s), Some(g)) = (r.subnet(), r.gateway_ip()) else {
            return Err(Error::internal(format!("network {} has no subnet", r.name)));
        };
        link::ensure_bridge(&r.bridge, g, s.prefix).map_err(net_err)?;
        self.fw
            .add_network(&NetRules {
                bridge: r.bridge.clone(),
                subnet: s.addr,
                prefix: s.prefix,
                internal: r.internal,
            })
            .map_err(net_err)
    }

    pub fn all(&self) -> Vec<Arc<Net>> {
        let mut v: Vec<Arc<Net>> = self
            .nets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.rec
                .created
                .cmp(&b.rec.created)
                .then(a.rec.name.cmp(&b.rec.name))
        });
        v
    }

    /// By full id, name, or unique id prefix (docker's order).
    pub fn find(&self, key: &str) -> Result<Arc<Net>, Error> {
        let nets = self.nets.read().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = nets.get(key) {
            return Ok(n.clone());
        }
        if let Some(n) = nets.values().find(|n| n.rec.name == key) {
            return Ok(n.clone());
        }
        let found: Vec<&Arc<Net>> = nets
            .values()
            .filter(|n| n.rec.id.starts_with(key))
            .collect();
        match found.len() {
            1 if !key.is_empty() => Ok(found[0].clone()),
            n if n > 1 && !key.is_empty() => Err(Error::invalid(format!(
                "network {key} is ambiguous ({n} matches found based on ID prefix)"
            ))),
            _ => Err(Error::not_found(format!("network {key} not found"))),
        }
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<Net>> {
        self.nets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// POST /networks/create (the record part: validation, subnet, bridge, rules).
    pub fn create(&self, req: CreateRequest) -> Result<NetRecord, Error> {
        if req.name.is_empty() {
            return Err(Error::invalid("network name cannot be empty"));
        }
        let driver = if req.driver.is_empty() {
            "bridge".to_string()
        } else {
            req.driver.clone()
        };
        if matches!(req.name.as_str(), "bridge" | "host" | "none" | "default") {
            return Err(Error::forbidden(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        if driver != "bridge" {
            return Err(Error::not_found(format!("plugin \"{driver}\" not found")));
        }
        if self.all().iter().any(|n| n.rec.name == req.name) {
            return Err(Error::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let taken: Vec<Subnet> = self.all().iter().filter_map(|n| n.rec.subnet()).collect();
        let (subnet, gateway, range, user_subnet) = match &req.subnet {
            Some(s) => {
                let (_, net) = ipam::parse_cidr(s).map_err(ipam_err)?;
                if taken.iter().any(|t| t.overlaps(&net)) {
                    return Err(Error::forbidden(
                        "Pool overlaps with other one on this address space",
                    ));
                }
                let gw = match &req.gateway {
                    Some(g) => {
                        let ip: Ipv4Addr = g
                            .parse()
                            .map_err(|_| Error::invalid(format!("invalid gateway address {g}")))?;
                        if !net.contains(ip) {
                            return Err(Error::invalid(format!(
                                "no matching subnet for gateway {g}"
                            )));
                        }
                        ip
                    }
                    None => net.first_host(),
                };
                let range = match &req.ip_range {
                    Some(r) => {
                        let (_, rn) = ipam::parse_cidr(r).map_err(ipam_err)?;
                        if !net.overlaps(&rn) || rn.prefix < net.prefix {
                            return Err(Error::invalid(format!(
                                "no matching subnet for range {r}"
                            )));
                        }
                        Some(rn.to_string())
                    }
                    None => None,
                };
                (net, gw, range, true)
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(Error::invalid("gateway and ip-range need a --subnet"));
                }
                let mut t = taken.clone();
                t.extend(ipam::host_routes());
                let net = ipam::pick_subnet(&ipam::default_pools(), &t).ok_or_else(|| {
                    Error::invalid(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                    )
                })?;
                (net, net.first_host(), None, false)
            }
        };
        let id = crate::util::new_id();
        let bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(b) if !b.is_empty() => {
                if b.len() > 15 {
                    return Err(Error::invalid(format!("invalid bridge name: {b}")));
                }
                if self.all().iter().any(|n| &n.rec.bridge == b) || link::exists(b) {
                    return Err(Error::forbidden(format!(
                        "bridge name {b} is already in use"
                    )));
                }
                b.clone()
            }
            _ => format!("br-{}", &id[..12]),
        };
        let rec = NetRecord {
            id: id.clone(),
            name: req.name.clone(),
            driver,
            created: Utc::now(),
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv6: false,
            labels: req.labels.clone(),
            options: req.options.clone(),
            bridge,
            subnet: Some(subnet.to_string()),
            gateway: Some(gateway.to_string()),
            ip_range: range,
            user_subnet,
        };
        if let Err(e) = self.up(&rec) {
            let _ = self.fw.remove_network(&rec.bridge);
            let _ = link::delete(&rec.bridge);
            return Err(e);
        }
        if let Err(e) = self.db.put(NETWORKS_TABLE, &id, &rec) {
            let _ = self.fw.remove_network(&rec.bridge);
            let _ = link::delete(&rec.bridge);
            return Err(e.into());
        }
        self.nets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(Net::new(rec.clone())));
        Ok(rec)
    }

    /// Deletes a user-defined network with no endpoints (checked by the caller).
    pub fn remove(&self, n: &Net) -> Result<(), Error> {
        if n.rec.predefined() {
            return Err(Error::forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.rec.name
            )));
        }
        self.fw.remove_network(&n.rec.bridge).map_err(net_err)?;
        link::delete(&n.rec.bridge).map_err(net_err)?;
        self.db.delete(NETWORKS_TABLE, &n.rec.id)?;
        self.nets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&n.rec.id);
        Ok(())
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }
}

#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
}

/// What the container's /etc files need from its network setup.
#[derive(Default)]
pub struct NetSetup {
    pub netns: Option<PathBuf>,
    /// (ip, names) lines for /etc/hosts.
    pub hosts: Vec<(String, String)>,
    /// Use the embedded DNS server (user-defined networks).
    pub embedded_dns: bool,
    /// For `container:<name>`: the other container's directory (its /etc files are shared).
    pub share_etc_from: Option<PathBuf>,
}

fn parse_proto_port(key: &str) -> Result<(u16, Proto), Error> {
    let (p, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port: u16 = p
        .parse()
        .map_err(|_| Error::invalid(format!("invalid port specification: \"{key}\"")))?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => {
            return Err(Error::invalid(format!(
                "invalid proto '{other}' in port specification \"{key}\""
            )))
        }
    };
    Ok((port, proto))
}

/// Validates `HostConfig.PortBindings` at create time (docker rejects bad specs early).
pub fn validate_port_bindings(
    pb: &HashMap<String, Option<Vec<berth_api::models::PortBinding>>>,
) -> Result<(), Error> {
    for (k, v) in pb {
        parse_proto_port(k)?;
        for b in v.iter().flatten() {
            if let Some(ip) = b.host_ip.as_deref().filter(|s| !s.is_empty()) {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    return Err(Error::invalid(format!("invalid host IP: {ip}")));
                }
            }
            if let Some(hp) = b.host_port.as_deref().filter(|s| !s.is_empty()) {
                port_range(hp)?;
            }
        }
    }
    Ok(())
}

fn port_range(s: &str) -> Result<(u16, u16), Error> {
    let bad = || Error::invalid(format!("invalid port specification: \"{s}\""));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Binds (without listening) a host port to reserve it; port 0 picks a free one.
fn reserve(proto: Proto, ip: Ipv4Addr, port: u16) -> std::io::Result<(Reservation, u16)> {
    let addr = SocketAddr::from((ip, port));
    match proto {
        Proto::Tcp => {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(addr)?;
            let p = s.local_addr()?.port();
            Ok((Reservation::Tcp(s), p))
        }
        Proto::Udp => {
            let s = std::net::UdpSocket::bind(addr)?;
            let p = s.local_addr()?.port();
            Ok((Reservation::Udp(s), p))
        }
    }
}

impl State {
    fn nets(&self) -> &Networks {
        &self.networks
    }

    /// The networks a container joins, primary first: the network mode's network and any
    /// other endpoints from NetworkingConfig.
    fn endpoint_order(rec: &Record) -> Vec<String> {
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        let mut names: Vec<String> = Vec::new();
        if rec.networks.contains_key(&mode) {
            names.push(mode.clone());
        }
        for k in rec.networks.keys() {
            if k != &mode {
                names.push(k.clone());
            }
        }
        names
    }

    /// Sets up the container's network before its start: namespace, veths, addresses,
    /// routes, published ports and DNS. Updates the record's endpoints (the caller persists).
    pub async fn net_setup(self: &Arc<Self>, rec: &mut Record) -> Result<NetSetup, Error> {
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        if mode == "host" {
            return Ok(NetSetup::default());
        }
        if let Some(other) = mode.strip_prefix("container:") {
            let c = self.lookup(other)?;
            let o = c.rec();
            if !o.state.running || o.state.pid <= 0 {
                return Err(Error::conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    o.id
                )));
            }
            return Ok(NetSetup {
                netns: Some(netns::of_pid(o.state.pid as i32)),
                share_etc_from: Some(self.container_dir(&o.id)),
                ..Default::default()
            });
        }
        if mode == "none" {
            return Ok(NetSetup::default());
        }
        let t0 = std::time::Instant::now();
        let r = self.net_setup_inner(rec).await;
        tracing::debug!(id = %rec.id, net_ms = t0.elapsed().as_secs_f64() * 1e3, "network set up");
        if r.is_err() {
            self.net_teardown(rec, true).await;
        }
        r
    }

    async fn net_setup_inner(self: &Arc<Self>, rec: &mut Record) -> Result<NetSetup, Error> {
        let path = self.nets().netns_path(&rec.id);
        let p = path.clone();
        blocking(move || {
            let _ = netns::remove(&p);
            netns::create(&p).map_err(|e| net_err(format!("creating network namespace: {e}")))
        })
        .await?;
        let mut setup = NetSetup {
            netns: Some(path.clone()),
            ..Default::default()
        };
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let mut primary_ip: Option<(Ipv4Addr, String)> = None;
        let mut have_gateway = false;
        for (i, name) in Self::endpoint_order(rec).into_iter().enumerate() {
            let Some(ep) = rec.networks.get(&name).cloned() else {
                continue;
            };
            let net = self
                .nets()
                .by_id(&ep.network_id)
                .ok_or_else(|| Error::not_found(format!("network {name} not found")))?;
            if !net.rec.is_bridge() {
                continue;
            }
            let want = match ep.ipv4_config.as_deref().filter(|s| !s.is_empty()) {
                Some(s) => Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| Error::invalid(format!("invalid IPv4 address: {s}")))?,
                ),
                None => None,
            };
            let (ip, prefix, gw) = {
                let mut pool = net.pool();
                let pool = pool
                    .as_mut()
                    .ok_or_else(|| Error::internal(format!("network {name} has no pool")))?;
                let ip = pool.allocate(want).map_err(ipam_err)?;
                (ip, pool.subnet.prefix, pool.gateway)
            };
            let mac = ep
                .mac_config
                .as_deref()
                .and_then(ipam::parse_mac)
                .unwrap_or_else(|| ipam::mac_for(ip));
            let host_veth = link::random_veth_name();
            // Record before the link exists, so teardown finds it whatever fails next.
            let endpoint_id = crate::util::new_id();
            if let Some(e) = rec.networks.get_mut(&name) {
                e.ip = Some(ip.to_string());
                e.prefix = prefix;
                e.gateway = Some(gw.to_string());
                e.mac = Some(ipam::format_mac(&mac));
                e.host_veth = Some(host_veth.clone());
                e.endpoint_id = endpoint_id;
            }
            let gateway = if !net.rec.internal && !have_gateway {
                have_gateway = true;
                Some(gw)
            } else {
                None
            };
            let v = link::Veth {
                host_name: host_veth,
                bridge: net.rec.bridge.clone(),
                netns: path.clone(),
                ifname: format!("eth{i}"),
                ip,
                prefix,
                gateway,
                mac,
            };
            blocking(move || link::attach(&v).map_err(net_err)).await?;
            if net.rec.name != "bridge" {
                setup.embedded_dns = true;
            }
            if primary_ip.is_none() {
                primary_ip = Some((ip, net.rec.name.clone()));
            }
            setup.hosts.push((ip.to_string(), hostname.clone()));
        }
        if primary_ip.is_none() {
            let p = path.clone();
            blocking(move || link::loopback_up(&p).map_err(net_err)).await?;
        }
        if let Some((ip, _)) = primary_ip {
            self.publish_ports(rec, ip).await?;
        }
        if setup.embedded_dns {
            self.start_dns(rec, &path).await?;
        }
        Ok(setup)
    }

    async fn publish_ports(self: &Arc<Self>, rec: &mut Record, cip: Ipv4Addr) -> Result<(), Error> {
        let hc = &rec.host_config;
        let mut bindings: BTreeMap<String, Vec<berth_api::models::PortBinding>> = BTreeMap::new();
        for (k, v) in hc.port_bindings.clone().unwrap_or_default() {
            bindings.insert(k, v.unwrap_or_default());
        }
        if hc.publish_all_ports.unwrap_or(false) {
            for k in rec.config.exposed_ports.clone().unwrap_or_default().iter() {
                let k = if k.contains('/') {
                    k.clone()
                } else {
                    format!("{k}/tcp")
                };
                let e = bindings.entry(k).or_default();
                if e.is_empty() {
                    e.push(Default::default());
                }
            }
        }
        if bindings.is_empty() {
            return Ok(());
        }
        let mut rules = Vec::new();
        let mut held = Vec::new();
        let mut published: BTreeMap<String, Vec<Published>> = BTreeMap::new();
        for (key, list) in &bindings {
            let (cport, proto) = parse_proto_port(key)?;
            for b in list {
                let host_ip: Ipv4Addr = match b.host_ip.as_deref().filter(|s| !s.is_empty()) {
                    None => Ipv4Addr::UNSPECIFIED,
                    Some(s) => match s.parse::<std::net::IpAddr>() {
                        Ok(std::net::IpAddr::V4(v)) => v,
                        // IPv6 publishing needs IPv6 networks: skipped, like docker on an
                        // IPv4-only bridge.
                        Ok(std::net::IpAddr::V6(_)) => continue,
                        Err(_) => return Err(Error::invalid(format!("invalid host IP: {s}"))),
                    },
                };
                let (lo, hi) = match b.host_port.as_deref().filter(|s| !s.is_empty()) {
                    Some(s) => port_range(s)?,
                    None => (0, 0),
                };
                let mut last_err = None;
                let mut got = None;
                for port in lo..=hi {
                    match reserve(proto, host_ip, port) {
                        Ok(r) => {
                            got = Some(r);
                            break;
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
                let Some((res, hport)) = got else {
                    let ps = if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    };
                    tracing::debug!("reserving {host_ip}:{ps}: {last_err:?}");
                    return Err(Error::internal(format!(
                        "driver failed programming external connectivity on endpoint {}: Bind for {host_ip}:{ps} failed: port is already allocated",
                        rec.name
                    )));
                };
                held.push(res);
                rules.push(PortRule {
                    proto,
                    host_ip: (!host_ip.is_unspecified()).then_some(host_ip),
                    host_port: hport,
                    container_ip: cip,
                    container_port: cport,
                });
                published.entry(key.clone()).or_default().push(Published {
                    host_ip: host_ip.to_string(),
                    host_port: hport,
                });
            }
        }
        let me = self.clone();
        let owner = rec.id.clone();
        blocking(move || me.nets().fw.add_ports(&owner, &rules).map_err(net_err)).await?;
        rec.published = published;
        self.nets()
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rec.id.clone())
            .or_default()
            .ports = held;
        Ok(())
    }

    /// Starts the embedded DNS server on 127.0.0.11:53 inside the container's namespace.
    async fn start_dns(self: &Arc<Self>, rec: &Record, ns: &Path) -> Result<(), Error> {
        let ns = ns.to_path_buf();
        let (udp, tcp) = blocking(move || {
            netns::run_in(&ns, || {
                let a = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53));
                let u = std::net::UdpSocket::bind(a)?;
                let t = std::net::TcpListener::bind(a)?;
                Ok((u, t))
            })
            .map_err(|e| net_err(format!("starting the embedded DNS server: {e}")))
        })
        .await?;
        let upstreams = match rec.host_config.dns.as_ref().filter(|d| !d.is_empty()) {
            Some(d) => d
                .iter()
                .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect(),
            None => dns::parse_resolv_conf_nameservers(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
        };
        let weak: Weak<State> = Arc::downgrade(self);
        let id = rec.id.clone();
        let w2 = weak.clone();
        let id2 = id.clone();
        let cfg = dns::DnsConfig {
            lookup: Arc::new(move |name: &str| {
                let st = weak.upgrade()?;
                st.dns_lookup(&id, name)
            }),
            reverse: Arc::new(move |ip: Ipv4Addr| {
                let st = w2.upgrade()?;
                st.dns_reverse(&id2, ip)
            }),
            upstreams,
        };
        let server = DnsServer::start(udp, tcp, cfg).map_err(net_err)?;
        self.nets()
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rec.id.clone())
            .or_default()
            .dns = Some(server);
        Ok(())
    }

    /// The user-defined networks (ids) a container is on.
    fn dns_networks(&self, rec: &Record) -> Vec<(String, String)> {
        rec.networks
            .iter()
            .filter(|(name, _)| name.as_str() != "bridge")
            .map(|(name, e)| (e.network_id.clone(), name.clone()))
            .collect()
    }

    /// Names a container answers to on a network: its name, aliases and short id (docker's
    /// embedded DNS), each also as `<name>.<network>`.
    fn dns_lookup(&self, asker: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let me = self.table_read().by_id.get(asker)?.rec();
        let nets = self.dns_networks(&me);
        let mut out = Vec::new();
        for c in self.table_read().by_id.values() {
            let r = c.rec();
            if !r.state.running {
                continue;
            }
            for (nid, nname) in &nets {
                let Some(ep) = r.networks.values().find(|e| &e.network_id == nid) else {
                    continue;
                };
                let Some(ip) = ep.ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
                    continue;
                };
                let mut names: Vec<String> = vec![r.name.to_lowercase(), r.id[..12].to_string()];
                names.extend(ep.aliases.iter().map(|a| a.to_lowercase()));
                let hit = names
                    .iter()
                    .any(|n| n == name || format!("{n}.{}", nname.to_lowercase()) == name);
                if hit && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn dns_reverse(&self, asker: &str, ip: Ipv4Addr) -> Option<Vec<String>> {
        let me = self.table_read().by_id.get(asker)?.rec();
        let nets = self.dns_networks(&me);
        let ips = ip.to_string();
        for c in self.table_read().by_id.values() {
            let r = c.rec();
            if !r.state.running {
                continue;
            }
            for (nid, nname) in &nets {
                if r.networks
                    .values()
                    .any(|e| &e.network_id == nid && e.ip.as_deref() == Some(ips.as_str()))
                {
                    return Some(vec![format!("{}.{}", r.name, nname)]);
                }
            }
        }
        None
    }

    /// Undoes [`net_setup`]: DNS, published ports, namespace, veths, addresses. Best effort;
    /// failures are logged.
    ///
    /// Deleting a veth waits for an RCU grace period in the kernel (~30 ms here), so on a
    /// normal exit (`sync` false) the veths are not deleted: unpinning the namespace lets the
    /// kernel destroy them with it, off our path, and each address goes back to its pool only
    /// once its veth is gone (no duplicate address on the bridge, ever). After a failed start
    /// (`sync` true) they are deleted at once so a retry gets the same address.
    pub async fn net_teardown(self: &Arc<Self>, rec: &mut Record, sync: bool) {
        let live = self
            .nets()
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        drop(live);
        let me = self.clone();
        let id = rec.id.clone();
        let path = self.nets().netns_path(&rec.id);
        let veths: Vec<String> = rec
            .networks
            .values()
            .filter_map(|e| e.host_veth.clone())
            .collect();
        let had_ports = !rec.published.is_empty();
        let _ = tokio::task::spawn_blocking(move || {
            if had_ports {
                if let Err(e) = me.nets().fw.remove_ports(&id) {
                    tracing::warn!(%id, "removing port rules: {e}");
                }
            }
            if sync {
                for v in veths {
                    if let Err(e) = link::delete(&v) {
                        tracing::warn!(%id, "deleting {v}: {e}");
                    }
                }
            }
            if let Err(e) = netns::remove(&path) {
                tracing::warn!(%id, "removing network namespace: {e}");
            }
        })
        .await;
        let mut pending = Vec::new();
        for ep in rec.networks.values_mut() {
            if let (Some(net), Some(ip)) = (
                self.nets().by_id(&ep.network_id),
                ep.ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok()),
            ) {
                match ep.host_veth.clone() {
                    Some(v) if !sync => pending.push((net, ip, v)),
                    _ => {
                        if let Some(p) = net.pool().as_mut() {
                            p.release(ip);
                        }
                    }
                }
            }
            ep.ip = None;
            ep.prefix = 0;
            ep.gateway = None;
            ep.mac = None;
            ep.host_veth = None;
            ep.endpoint_id = String::new();
        }
        rec.published.clear();
        if !pending.is_empty() {
            tokio::spawn(async move {
                for (net, ip, veth) in pending {
                    // The kernel's namespace cleanup usually takes tens of ms; after 10 s
                    // (something else holds the namespace) delete the veth ourselves.
                    let mut gone = false;
                    for _ in 0..1000 {
                        if !link::exists(&veth) {
                            gone = true;
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    if !gone {
                        let v = veth.clone();
                        let _ = tokio::task::spawn_blocking(move || link::delete(&v)).await;
                    }
                    if let Some(p) = net.pool().as_mut() {
                        p.release(ip);
                    }
                }
            });
        }
    }

    /// After a daemon restart, for a container that is still running: take its addresses
    /// back, hold its ports again and restart its DNS server.
    pub async fn net_recover(self: &Arc<Self>, rec: &Record) {
        for ep in rec.networks.values() {
            if let (Some(net), Some(ip)) = (
                self.nets().by_id(&ep.network_id),
                ep.ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok()),
            ) {
                if let Some(p) = net.pool().as_mut() {
                    p.reserve(ip);
                }
            }
        }
        let mut held = Vec::new();
        for (key, list) in &rec.published {
            let Ok((_, proto)) = parse_proto_port(key) else {
                continue;
            };
            for p in list {
                let ip = p.host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
                match reserve(proto, ip, p.host_port) {
                    Ok((r, _)) => held.push(r),
                    Err(e) => {
                        tracing::warn!(id = %rec.id, "re-reserving {ip}:{}: {e}", p.host_port)
                    }
                }
            }
        }
        self.nets()
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rec.id.clone())
            .or_default()
            .ports = held;
        let path = self.nets().netns_path(&rec.id);
        let user_net = rec.networks.keys().any(|n| n != "bridge")
            && rec.networks.values().any(|e| e.ip.is_some());
        if user_net && path.exists() {
            if let Err(e) = self.start_dns(rec, &path).await {
                tracing::warn!(id = %rec.id, "restarting DNS: {}", e.message);
            }
        }
    }

    /// Drops firewall rules and namespaces left by containers that are no longer running
    /// (the daemon was killed while they stopped).
    pub async fn net_gc(self: &Arc<Self>) {
        let running: std::collections::HashSet<String> = self
            .table_read()
            .by_id
            .values()
            .filter(|c| c.rec().state.running)
            .map(|c| c.id.clone())
            .collect();
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(owners) = me.nets().fw.port_owners() {
                for o in owners.into_iter().filter(|o| !running.contains(o)) {
                    let _ = me.nets().fw.remove_ports(&o);
                }
            }
            if let Ok(rd) = std::fs::read_dir(&me.nets().netns_dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if !running.contains(&name) {
                        let _ = netns::remove(&e.path());
                    }
                }
            }
        })
        .await;
    }

    /// Containers with an endpoint on the network (for rm and inspect).
    pub fn network_users(&self, net_id: &str) -> Vec<Record> {
        self.table_read()
            .by_id
            .values()
            .map(|c| c.rec())
            .filter(|r| r.networks.values().any(|e| e.network_id == net_id))
            .collect()
    }

    /// Resolves HostConfig.NetworkMode and NetworkingConfig into the record's endpoints at
    /// create time, with docker's checks.
    pub fn plan_endpoints(
        &self,
        hc: &mut berth_api::models::HostConfig,
        cfg: Option<&berth_api::models::NetworkingConfig>,
    ) -> Result<BTreeMap<String, Endpoint>, Error> {
        let mode = hc.network_mode.clone().unwrap_or_default();
        let mut out = BTreeMap::new();
        let ecfg = cfg
            .and_then(|c| c.endpoints_config.clone())
            .unwrap_or_default();
        match mode.as_str() {
            "host" | "none" => {
                let n = self.nets().find(&mode)?;
                out.insert(
                    mode.clone(),
                    Endpoint {
                        network_id: n.rec.id.clone(),
                        ..Default::default()
                    },
                );
                return Ok(out);
            }
            m if m.starts_with("container:") => {
                self.lookup(&m["container:".len()..])?;
                return Ok(out);
            }
            _ => {}
        }
        let primary = self.nets().find(&mode)?;
        if !primary.rec.is_bridge() {
            return Err(Error::invalid(format!(
                "network {} is not usable with this mode",
                primary.rec.name
            )));
        }
        // Docker stores the mode under the network's name.
        hc.network_mode = Some(primary.rec.name.clone());
        let mut keys: Vec<String> = vec![mode.clone()];
        keys.extend(
            ecfg.keys()
                .filter(|k| **k != mode && k.as_str() != "default")
                .cloned(),
        );
        for key in keys {
            let n = self.nets().find(&key)?;
            let e = ecfg
                .get(&key)
                .or_else(|| ecfg.get(&n.rec.name))
                .or_else(|| {
                    (n.rec.id == primary.rec.id)
                        .then(|| ecfg.get("default"))
                        .flatten()
                });
            if let Some(m) = e
                .and_then(|e| e.mac_address.as_deref())
                .filter(|m| !m.is_empty())
            {
                if ipam::parse_mac(m).is_none() {
                    return Err(Error::invalid(format!("invalid MAC address: {m}")));
                }
            }
            if !n.rec.is_bridge() {
                return Err(Error::invalid(format!(
                    "container cannot be connected to network {} and {}",
                    primary.rec.name, n.rec.name
                )));
            }
            let ipv4 = e
                .and_then(|e| e.ipam_config.as_ref())
                .and_then(|c| c.ipv4_address.clone())
                .filter(|s| !s.is_empty());
            if let Some(ip) = &ipv4 {
                if n.rec.name == "bridge" || !n.rec.user_subnet {
                    return Err(Error::invalid(
                        "user specified IP address is supported only when connecting to networks with user configured subnets",
                    ));
                }
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| Error::invalid(format!("invalid IPv4 address: {ip}")))?;
                if !n.rec.subnet().map(|s| s.contains(ip)).unwrap_or(false) {
                    return Err(Error::invalid(format!(
                        "no configured subnet or ip-range contain the IP address {ip}"
                    )));
                }
            }
            let aliases: Vec<String> = e.and_then(|e| e.aliases.clone()).unwrap_or_default();
            if n.rec.name == "bridge" && !aliases.is_empty() {
                return Err(Error::invalid(
                    "network-scoped alias is supported only for containers in user defined networks",
                ));
            }
            out.insert(
                n.rec.name.clone(),
                Endpoint {
                    network_id: n.rec.id.clone(),
                    aliases,
                    ipv4_config: ipv4,
                    mac_config: e
                        .and_then(|e| e.mac_address.clone())
                        .filter(|m| !m.is_empty()),
                    ..Default::default()
                },
            );
        }
        Ok(out)
    }
}

impl Networks {
    /// The pinned namespace of a running container, for inspect's SandboxKey.
    pub fn sandbox_key(&self, r: &Record) -> Option<PathBuf> {
        let p = self.netns_path(&r.id);
        (r.state.running && r.networks.values().any(|e| e.ip.is_some())).then_some(p)
    }
}

impl State {
    /// POST /networks/{id}/connect
    pub async fn connect_network(
        self: &Arc<Self>,
        c: &Arc<crate::containers::Ctr>,
        net: &Arc<Net>,
        aliases: Vec<String>,
        ipv4: Option<String>,
    ) -> Result<(), Error> {
        let _op = c.op.lock().await;
        let mut rec = c.rec();
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        if mode == "host" || net.rec.name == "host" {
            return Err(Error::forbidden(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if mode == "none" || net.rec.name == "none" || mode.starts_with("container:") {
            return Err(Error::forbidden(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode",
            ));
        }
        if rec.networks.values().any(|e| e.network_id == net.rec.id) {
            return Err(Error::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, net.rec.name
            )));
        }
        if let Some(ip) = &ipv4 {
            if net.rec.name == "bridge" || !net.rec.user_subnet {
                return Err(Error::invalid(
                    "user specified IP address is supported only when connecting to networks with user configured subnets",
                ));
            }
            ip.parse::<Ipv4Addr>()
                .map_err(|_| Error::invalid(format!("invalid IPv4 address: {ip}")))?;
        }
        if net.rec.name == "bridge" && !aliases.is_empty() {
            return Err(Error::invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        let mut ep = Endpoint {
            network_id: net.rec.id.clone(),
            aliases,
            ipv4_config: ipv4.clone(),
            ..Default::default()
        };
        if rec.state.running {
            let path = self.nets().netns_path(&rec.id);
            if !netns::exists(&path) {
                return Err(Error::conflict(format!(
                    "container {} has no network namespace of its own",
                    rec.id
                )));
            }
            let want = ipv4.as_deref().and_then(|s| s.parse().ok());
            let (ip, prefix, gw) = {
                let mut pool = net.pool();
                let pool = pool.as_mut().ok_or_else(|| {
                    Error::internal(format!("network {} has no pool", net.rec.name))
                })?;
                let ip = pool.allocate(want).map_err(ipam_err)?;
                (ip, pool.subnet.prefix, pool.gateway)
            };
            let mac = ipam::mac_for(ip);
            let host_veth = link::random_veth_name();
            let idx = rec.networks.values().filter(|e| e.ip.is_some()).count();
            let v = link::Veth {
                host_name: host_veth.clone(),
                bridge: net.rec.bridge.clone(),
                netns: path.clone(),
                ifname: format!("eth{idx}"),
                ip,
                prefix,
                gateway: None,
                mac,
            };
            if let Err(e) = blocking(move || link::attach(&v).map_err(net_err)).await {
                if let Some(p) = net.pool().as_mut() {
                    p.release(ip);
                }
                return Err(e);
            }
            ep.ip = Some(ip.to_string());
            ep.prefix = prefix;
            ep.gateway = Some(gw.to_string());
            ep.mac = Some(ipam::format_mac(&mac));
            ep.host_veth = Some(host_veth);
            ep.endpoint_id = crate::util::new_id();
            let need_dns = net.rec.name != "bridge"
                && self
                    .nets()
                    .live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&rec.id)
                    .map(|l| l.dns.is_none())
                    .unwrap_or(true);
            rec.networks.insert(net.rec.name.clone(), ep);
            if need_dns {
                // resolv.conf already points at the host's servers; switching it to
                // 127.0.0.11 as docker does keeps name resolution for both networks.
                if self.start_dns(&rec, &path).await.is_ok() {
                    let dir = self.container_dir(&rec.id);
                    let text = std::fs::read_to_string(dir.join("resolv.conf")).unwrap_or_default();
                    let rest: String = text
                        .lines()
                        .filter(|l| !l.starts_with("nameserver"))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let _ = std::fs::write(
                        dir.join("resolv.conf"),
                        format!("nameserver 127.0.0.11\n{rest}"),
                    );
                }
            }
        } else {
            rec.networks.insert(net.rec.name.clone(), ep);
        }
        let networks = rec.networks.clone();
        let rec = c.update(|r| {
            r.networks = networks;
            r.clone()
        });
        self.persist(&rec)
    }

    /// POST /networks/{id}/disconnect
    pub async fn disconnect_network(
        self: &Arc<Self>,
        c: &Arc<crate::containers::Ctr>,
        net: &Arc<Net>,
    ) -> Result<(), Error> {
        let _op = c.op.lock().await;
        let rec = c.rec();
        let Some((name, ep)) = rec
            .networks
            .iter()
            .find(|(_, e)| e.network_id == net.rec.id)
            .map(|(n, e)| (n.clone(), e.clone()))
        else {
            return Err(Error::forbidden(format!(
                "container {} is not connected to network {}",
                rec.id, net.rec.name
            )));
        };
        if net.rec.name == "host" {
            return Err(Error::forbidden(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if let Some(v) = ep.host_veth.clone() {
            blocking(move || link::delete(&v).map_err(net_err)).await?;
        }
        if let Some(ip) = ep.ip.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            if let Some(p) = net.pool().as_mut() {
                p.release(ip);
            }
        }
        let rec = c.update(|r| {
            r.networks.remove(&name);
            r.clone()
        });
        self.persist(&rec)
    }
}
