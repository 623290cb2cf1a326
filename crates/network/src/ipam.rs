//! IPv4 address management: CIDR parsing, subnet choice that avoids the host's routes, and
//! per-network address pools.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    #[error("no available IPv4 addresses on this network's address pools: {0}")]
    Exhausted(String),
    #[error("Address already in use")]
    InUse,
    #[error("no configured subnet or ip-range contain the IP address {0}")]
    OutOfRange(Ipv4Addr),
}

/// An IPv4 network in CIDR form. The address is kept as given (docker keeps
/// `--subnet 10.1.2.3/24` as written only after masking; we mask too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }
    pub fn network(&self) -> u32 {
        u32::from(self.addr)
    }
    pub fn broadcast(&self) -> u32 {
        self.network() | !mask(self.prefix)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network()
    }
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        self.network() & mask(p) == other.network() & mask(p)
    }
    /// The first usable address: docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        if self.prefix >= 31 {
            self.addr
        } else {
            Ipv4Addr::from(self.network() + 1)
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s).map(|(_, n)| n)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32) as u32)
    }
}

/// Parses `a.b.c.d/n`, returning the address as written and its network.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, Subnet), IpamError> {
    let bad = || IpamError::InvalidCidr(s.to_string());
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > 32 || p.starts_with('+') {
        return Err(bad());
    }
    Ok((ip, Subnet::new(ip, prefix)))
}

/// Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<Subnet> {
    let mut v: Vec<Subnet> = (17..=31)
        .map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .collect();
    v.extend((0..16).map(|i| Subnet::new(Ipv4Addr::new(192, 168, i * 16, 0), 20)));
    v
}

/// The first candidate that overlaps none of `taken`.
pub fn pick_subnet(candidates: &[Subnet], taken: &[Subnet]) -> Option<Subnet> {
    candidates
        .iter()
        .find(|c| !taken.iter().any(|t| t.overlaps(c)))
        .copied()
}

/// The host's IPv4 routes (destination networks, default route excluded), from
/// /proc/net/route: a new network must not shadow any of them.
pub fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    parse_proc_route(&text)
}

fn parse_proc_route(text: &str) -> Vec<Subnet> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        // The kernel prints the network-order word as a host (little-endian) integer.
        let (Ok(dst), Ok(m)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        let dst = Ipv4Addr::from(dst.to_le_bytes());
        let m = u32::from_be_bytes(m.to_le_bytes());
        if m == 0 {
            continue;
        }
        out.push(Subnet::new(dst, m.count_ones() as u8));
    }
    out
}

/// Addresses handed out on one network.
#[derive(Clone, Debug)]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// `--ip-range`: automatic allocation stays inside it.
    pub range: Option<Subnet>,
    used: BTreeSet<u32>,
}

impl Pool {
    pub fn new(subnet: Subnet, gateway: Ipv4Addr, range: Option<Subnet>) -> Pool {
        let mut used = BTreeSet::new();
        used.insert(u32::from(gateway));
        Pool {
            subnet,
            gateway,
            range,
            used,
        }
    }

    /// Takes `want` if given (it must be free and inside the subnet), else the lowest free
    /// address of the range (docker allocates sequentially too).
    pub fn allocate(&mut self, want: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = want {
            let n = u32::from(ip);
            if !self.subnet.contains(ip)
                || n == self.subnet.network()
                || n == self.subnet.broadcast()
            {
                return Err(IpamError::OutOfRange(ip));
            }
            if !self.used.insert(n) {
                return Err(IpamError::InUse);
            }
            return Ok(ip);
        }
        // Like libnetwork: the whole --ip-range is usable except the subnet's own network
        // and broadcast addresses (and the gateway, taken at creation).
        let r = self.range.unwrap_or(self.subnet);
        let (lo, hi) = if self.subnet.prefix >= 31 {
            (r.network(), r.broadcast())
        } else {
            (
                r.network().max(self.subnet.network() + 1),
                r.broadcast().min(self.subnet.broadcast() - 1),
            )
        };
        let mut n = lo;
        while n <= hi {
            if self.used.insert(n) {
                return Ok(Ipv4Addr::from(n));
            }
            n += 1;
        }
        Err(IpamError::Exhausted(self.subnet.to_string()))
    }

    /// Marks an address as taken (recovery after a daemon restart).
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(u32::from(ip));
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if ip != self.gateway {
            self.used.remove(&u32::from(ip));
        }
    }
}

/// Docker derives a container's MAC address from its IPv4 address: 02:42 + the 4 bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let (ip, n) = parse_cidr("10.1.2.3/16").unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(n.to_string(), "10.1.0.0/16");
        for bad in [
            "10.1.2.3",
            "10.1.2/8",
            "10.1.2.3/33",
            "x/8",
            "10.0.0.0/+8",
            "",
        ] {
            assert_eq!(
                parse_cidr(bad),
                Err(IpamError::InvalidCidr(bad.to_string())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_cidr("10.0.0.0/33").unwrap_err().to_string(),
            "invalid CIDR address: 10.0.0.0/33"
        );
    }

    #[test]
    fn overlap_and_contains() {
        let a: Subnet = "172.17.0.0/16".parse().unwrap();
        let b: Subnet = "172.17.5.0/24".parse().unwrap();
        let c: Subnet = "172.18.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(a.contains(Ipv4Addr::new(172, 17, 200, 1)));
        assert!(!b.contains(Ipv4Addr::new(172, 17, 6, 1)));
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(all.overlaps(&a));
    }

    #[test]
    fn picks_first_free_pool() {
        let taken = vec![
            "172.17.0.0/16".parse().unwrap(),
            "172.18.3.0/24".parse().unwrap(),
        ];
        let got = pick_subnet(&default_pools(), &taken).unwrap();
        assert_eq!(got.to_string(), "172.19.0.0/16");
    }

    #[test]
    fn proc_route_parsing() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse_proc_route(text);
        assert_eq!(
            r.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            vec!["192.0.2.0/24", "172.17.0.0/16"]
        );
    }

    #[test]
    fn pool_allocation() {
        let s: Subnet = "10.9.0.0/29".parse().unwrap();
        let mut p = Pool::new(s, s.first_host(), None);
        let got: Vec<_> = (0..5).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 9, 0, 6));
        assert!(matches!(p.allocate(None), Err(IpamError::Exhausted(_))));
        p.release(Ipv4Addr::new(10, 9, 0, 4));
        assert_eq!(p.allocate(None).unwrap(), Ipv4Addr::new(10, 9, 0, 4));
        assert_eq!(
            p.allocate(Some(Ipv4Addr::new(10, 9, 0, 3))),
            Err(IpamError::InUse)
        );
        assert_eq!(
            p.allocate(Some(Ipv4Addr::new(10, 9, 1, 3))),
            Err(IpamError::OutOfRange(Ipv4Addr::new(10, 9, 1, 3)))
        );
        let mut q = Pool::new(
            "10.8.0.0/16".parse().unwrap(),
            Ipv4Addr::new(10, 8, 0, 1),
            Some("10.8.5.0/24".parse().unwrap()),
        );
        assert_eq!(q.allocate(None).unwrap(), Ipv4Addr::new(10, 8, 5, 0));
    }

    #[test]
    fn macs() {
        let m = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(&m), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02"), Some(m));
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
    }
}
