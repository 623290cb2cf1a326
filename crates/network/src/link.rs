//! Bridges and veth pairs over rtnetlink.
//!
//! Calls are blocking: each runs on a thread of its own with a current-thread runtime, because
//! configuring the container's side means opening netlink sockets inside its namespace (a
//! socket belongs to the namespace of the thread that opened it). The daemon calls these from
//! `spawn_blocking`.

use crate::netns;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: {0}")]
    Netlink(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<rtnetlink::Error> for LinkError {
    fn from(e: rtnetlink::Error) -> Self {
        LinkError::Netlink(e.to_string())
    }
}

type Result<T> = std::result::Result<T, LinkError>;

/// Runs an async netlink job on a fresh thread (optionally inside a namespace).
fn with_handle<T, F, Fut>(ns: Option<&Path>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let job = move || -> io::Result<Result<T>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        Ok(rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()?;
            let task = tokio::spawn(conn);
            let r = f(handle).await;
            task.abort();
            r
        }))
    };
    match ns {
        Some(p) => netns::run_in(p, job)?,
        None => std::thread::spawn(job)
            .join()
            .map_err(|_| io::Error::other("netlink thread panicked"))?
            .map_err(LinkError::from)?,
    }
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut s = h.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a link of that name exists in the daemon's namespace.
pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// MTU of berth's bridges and of both ends of every container veth. Traffic that stays on
/// the host (host <-> container, container <-> container on one bridge) then moves in 64 KiB
/// frames as on loopback instead of 1500-byte ones: published ports carry ~35% more
/// (bench/net.sh, the same container with MTU 1500 vs 65520: 2335 vs 3137 MB/s median of 5).
/// What leaves for other hosts keeps docker's 1500: a container's default route carries
/// `mtu 1500` (see `attach`), so TCP's MSS and the path MTU towards anything beyond the
/// bridge are what they would be on docker's bridge.
pub const LINK_MTU: u32 = 65520;
/// The MTU of the way out of a container (docker's default bridge MTU).
pub const EGRESS_MTU: u32 = 1500;

/// Creates the bridge if it is missing, gives it `gateway/prefix`, brings it up, and lets
/// DNAT'd loopback traffic leave through it (route_localnet, as docker does without its
/// userland proxy).
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    let n = name.to_string();
    with_handle(None, move |h| async move {
        let idx = match index_of(&h, &n).await? {
            Some(i) => i,
            None => {
                h.link().add(LinkBridge::new(&n).build()).execute().await?;
                index_of(&h, &n)
                    .await?
                    .ok_or_else(|| LinkError::Netlink(format!("bridge {n} vanished")))?
            }
        };
        let mut addrs = h.address().get().set_link_index_filter(idx).execute();
        let mut have = false;
        while let Some(a) = addrs.try_next().await? {
            use rtnetlink::packet_route::address::AddressAttribute;
            for attr in a.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                    if ip == gateway && a.header.prefix_len == prefix {
                        have = true;
                    }
                }
            }
        }
        if !have {
            h.address()
                .add(idx, IpAddr::V4(gateway), prefix)
                .execute()
                .await?;
        }
        // Set explicitly, the bridge keeps it whatever its ports have (a bridge otherwise
        // follows its smallest port).
        h.link()
            .set(LinkUnspec::new_with_index(idx).mtu(LINK_MTU).up().build())
            .execute()
            .await?;
        Ok(())
    })?;
    set_sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
    Ok(())
}

/// Deletes a link (a bridge, or the host end of a veth, which takes its peer along).
/// A missing link is not an error.
pub fn delete(name: &str) -> Result<()> {
    let n = name.to_string();
    with_handle(None, move |h| async move {
        if let Some(idx) = index_of(&h, &n).await? {
            match h.link().del(idx).execute().await {
                Ok(()) => {}
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
}

/// One container interface: a veth pair with `host_name` on `bridge` and `ifname` inside the
/// namespace at `netns`, carrying `ip/prefix`, with a default route via `gateway` if given.
#[derive(Clone, Debug)]
pub struct Veth {
    pub host_name: String,
    pub bridge: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
}

/// Creates and configures the pair; on failure nothing is left in the host namespace.
pub fn attach(v: &Veth) -> Result<()> {
    let r = attach_inner(v);
    if r.is_err() {
        let _ = delete(&v.host_name);
    }
    r
}

fn attach_inner(v: &Veth) -> Result<()> {
    let ns = std::fs::File::open(&v.netns)?;
    let v1 = v.clone();
    with_handle(None, move |h| async move {
        let br = index_of(&h, &v1.bridge)
            .await?
            .ok_or_else(|| LinkError::Netlink(format!("bridge {} not found", v1.bridge)))?;
        // The peer is born inside the container's namespace under its final name.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(v1.ifname.clone())
            .address(v1.mac.to_vec())
            .mtu(LINK_MTU)
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(v1.host_name.clone())
            .mtu(LINK_MTU)
            .controller(br)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        h.link().add(msg).execute().await?;
        let idx = index_of(&h, &v1.host_name)
            .await?
            .ok_or_else(|| LinkError::Netlink(format!("veth {} vanished", v1.host_name)))?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await?;
        drop(ns);
        Ok(())
    })?;
    let v2 = v.clone();
    with_handle(Some(&v.netns), move |h| async move {
        if let Some(lo) = index_of(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await?;
        }
        let idx = index_of(&h, &v2.ifname)
            .await?
            .ok_or_else(|| LinkError::Netlink(format!("{} missing in namespace", v2.ifname)))?;
        h.address()
            .add(idx, IpAddr::V4(v2.ip), v2.prefix)
            .execute()
            .await?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await?;
        if let Some(gw) = v2.gateway {
            use rtnetlink::packet_route::route::{RouteAttribute, RouteMetric};
            let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(idx)
                .build();
            // Not locked: path MTU discovery may still lower it. The MSS the container
            // advertises stays that of the bridge: a peer that reaches it through the host
            // (the host itself, via one of its own addresses) may send big segments, and
            // one beyond a 1500-byte link never sends more than its own path allows.
            route.attributes.push(RouteAttribute::Metrics(vec![
                RouteMetric::Mtu(EGRESS_MTU),
                RouteMetric::Advmss(LINK_MTU - 40),
            ]));
            h.route().add(route).execute().await?;
        }
        Ok(())
    })
}

/// Brings `lo` up inside a namespace (for containers without other interfaces).
pub fn loopback_up(netns: &Path) -> Result<()> {
    with_handle(Some(netns), move |h| async move {
        if let Some(lo) = index_of(&h, "lo").await? {
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await?;
        }
        Ok(())
    })
}

/// The MAC address of a link in the daemon's namespace (for tests and inspect).
pub fn mac_of(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("address"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Writes a sysctl under /proc/sys.
pub fn set_sysctl(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
}

/// A random name for the host end of a veth: "veth" + 7 hex digits, like docker.
pub fn random_veth_name() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("veth{:07x}", n & 0x0fff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Cleanup(Vec<String>, Vec<PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for l in &self.0 {
                let _ = delete(l);
            }
            for p in &self.1 {
                let _ = netns::remove(p);
            }
        }
    }

    fn in_ns(ns: &Path, cmd: &str) -> String {
        let cmd = cmd.to_string();
        netns::run_in(ns, move || {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .output()?;
            Ok(String::from_utf8_lossy(&o.stdout).to_string())
        })
        .unwrap()
    }

    #[test]
    fn bridge_and_veth() {
        let tag = format!("{:05x}", rand::random::<u32>() & 0xfffff);
        let br = format!("bt{tag}");
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("ns");
        let host = format!("vt{tag}");
        let _c = Cleanup(vec![host.clone(), br.clone()], vec![ns.clone()]);
        let gw = Ipv4Addr::new(10, 231, 7, 1);
        ensure_bridge(&br, gw, 24).unwrap();
        ensure_bridge(&br, gw, 24).unwrap(); // idempotent
        assert!(exists(&br));
        netns::create(&ns).unwrap();
        let v = Veth {
            host_name: host.clone(),
            bridge: br.clone(),
            netns: ns.clone(),
            ifname: "eth0".into(),
            ip: Ipv4Addr::new(10, 231, 7, 2),
            prefix: 24,
            gateway: Some(gw),
            mac: crate::ipam::mac_for(Ipv4Addr::new(10, 231, 7, 2)),
        };
        attach(&v).unwrap();
        assert!(exists(&host));
        let addrs = in_ns(
            &ns,
            "ip -4 -o addr show dev eth0; ip route; ip link show lo",
        );
        assert!(addrs.contains("10.231.7.2/24"), "{addrs}");
        assert!(addrs.contains("default via 10.231.7.1"), "{addrs}");
        assert!(addrs.contains("LOOPBACK,UP"), "{addrs}");
        // (/sys shows the mounter's namespace, so ask netlink.)
        let mac = in_ns(&ns, "ip -o link show eth0");
        assert!(mac.contains("link/ether 02:42:0a:e7:07:02"), "{mac}");
        // Big frames on the bridge, docker's 1500 on the way out.
        assert!(mac.contains("mtu 65520"), "{mac}");
        let route = in_ns(&ns, "ip route show default");
        assert!(route.contains("mtu 1500"), "{route}");
        assert!(route.contains("advmss 65480"), "{route}");
        let brl = std::fs::read_to_string(format!("/sys/class/net/{br}/mtu")).unwrap();
        assert_eq!(brl.trim(), "65520");
        // A 30 KB ping still reaches the gateway.
        let big = in_ns(
            &ns,
            "busybox ping -c1 -W2 -s 30000 10.231.7.1 >/dev/null && echo ok",
        );
        assert_eq!(big.trim(), "ok");
        // The container reaches its gateway (the bridge) over the veth.
        let ping = in_ns(&ns, "busybox ping -c1 -W2 10.231.7.1 >/dev/null && echo ok");
        assert_eq!(ping.trim(), "ok");
        delete(&host).unwrap();
        assert!(!exists(&host));
        delete(&host).unwrap();
        delete(&br).unwrap();
        assert!(!exists(&br));
    }
}
