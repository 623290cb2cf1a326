//! Embedded DNS server for containers on user-defined networks (Docker's 127.0.0.11).
//!
//! The daemon binds a UDP socket and a TCP listener inside each container's network namespace
//! and hands them to [`DnsServer::start`]. The server runs as tasks on the daemon's runtime:
//! names of containers on the container's networks are answered from a callback, everything else
//! is relayed byte for byte to the host's upstream resolvers. Upstream sockets are created by the
//! tasks themselves, so they live in the daemon's (host) namespace and host-local resolvers such
//! as systemd-resolved's 127.0.0.53 work.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::timeout;
use tracing::{debug, warn};

/// Answers for names in the container's networks: name (lowercase, without trailing dot) -> IPv4
/// addresses; None = not ours (forward).
pub type Lookup = Arc<dyn Fn(&str) -> Option<Vec<Ipv4Addr>> + Send + Sync>;
/// Reverse lookups for container IPs: ip -> names (FQDN-less names, e.g. "web" and "web.mynet").
/// None = forward.
pub type Reverse = Arc<dyn Fn(Ipv4Addr) -> Option<Vec<String>> + Send + Sync>;

/// What one container's resolver knows.
pub struct DnsConfig {
    pub lookup: Lookup,
    pub reverse: Reverse,
    /// Tried in order; an upstream that times out, errors, or answers SERVFAIL/REFUSED is skipped.
    pub upstreams: Vec<SocketAddr>,
}

/// Per-upstream deadline (connect + exchange), as Docker's resolver.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// TTL of our own answers (Docker uses 600).
const LOCAL_TTL: u32 = 600;
/// Queries being answered at once (UDP and TCP together); excess queries are dropped so a dead
/// upstream cannot make the daemon pile up tasks.
const MAX_IN_FLIGHT: usize = 100;
/// Open TCP connections per server; excess connections are closed at once.
const MAX_TCP_CONNS: usize = 64;
/// A TCP connection with no new query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing a reply to a TCP client that does not read gives up after this.
const TCP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest UDP datagram.
const MAX_DATAGRAM: usize = 65535;
/// Payload size we advertise in our own EDNS answers (the DNS-flag-day value).
const OUR_EDNS_PAYLOAD: u16 = 1232;
/// Wire rcodes after which the next upstream is tried (Docker does the same).
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// A running resolver for one container. Dropping it aborts every task (listeners, connections,
/// in-flight queries), which closes its sockets.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Per-query and per-connection tasks live in JoinSets owned by these two tasks, so
        // aborting them cascades to everything.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl DnsServer {
    /// Must be called inside a tokio runtime. Sockets are std and already bound; set them
    /// non-blocking and convert.
    pub fn start(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        cfg: DnsConfig,
    ) -> io::Result<DnsServer> {
        Self::start_with_timeout(udp, tcp, cfg, UPSTREAM_TIMEOUT)
    }

    fn start_with_timeout(
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        cfg: DnsConfig,
        upstream_timeout: Duration,
    ) -> io::Result<DnsServer> {
        // from_std panics outside a runtime; turn that into an error instead.
        let rt = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = TcpListener::from_std(tcp)?;
        let shared = Arc::new(Shared {
            cfg,
            upstream_timeout,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        let tasks = vec![
            rt.spawn(udp_loop(udp, shared.clone())),
            rt.spawn(tcp_loop(tcp, shared)),
        ];
        Ok(DnsServer { tasks })
    }
}

struct Shared {
    cfg: DnsConfig,
    upstream_timeout: Duration,
    in_flight: Arc<Semaphore>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Udp,
    Tcp,
}

fn log_join(res: Result<(), JoinError>) {
    if let Err(e) = res {
        if e.is_panic() {
            warn!("dns: query task panicked: {e}");
        }
    }
}

async fn udp_loop(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut queries = JoinSet::new();
    loop {
        let (n, peer) = tokio::select! {
            Some(res) = queries.join_next(), if !queries.is_empty() => {
                log_join(res);
                continue;
            }
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    debug!("dns: udp recv: {e}");
                    // Avoid spinning if the error persists.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            debug!("dns: too many queries in flight, dropping one from {peer}");
            continue;
        };
        let packet = buf[..n].to_vec();
        let sock = sock.clone();
        let shared = shared.clone();
        queries.spawn(async move {
            let _permit = permit;
            if let Some(reply) = handle_query(&shared, &packet, Transport::Udp).await {
                if let Err(e) = sock.send_to(&reply, peer).await {
                    debug!("dns: udp send to {peer}: {e}");
                }
            }
        });
    }
}

async fn tcp_loop(listener: TcpListener, shared: Arc<Shared>) {
    let conn_slots = Arc::new(Semaphore::new(MAX_TCP_CONNS));
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            Some(res) = conns.join_next(), if !conns.is_empty() => {
                log_join(res);
                continue;
            }
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    debug!("dns: tcp accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = conn_slots.clone().try_acquire_owned() else {
            debug!("dns: too many tcp connections, closing one");
            continue;
        };
        let shared = shared.clone();
        conns.spawn(async move {
            let _slot = slot;
            serve_tcp_conn(stream, shared).await;
        });
    }
}

/// Reads one length-prefixed message; Ok(None) on a clean EOF between messages.
async fn read_frame<R: AsyncReadExt + Unpin>(rd: &mut R) -> io::Result<Option<Vec<u8>>> {
    let len = match rd.read_u16().await {
        Ok(len) => len,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut body = vec![0u8; usize::from(len)];
    rd.read_exact(&mut body).await?;
    Ok(Some(body))
}

fn frame(msg: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(msg.len()).ok()?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Some(out)
}

async fn serve_tcp_conn(stream: TcpStream, shared: Arc<Shared>) {
    let (mut rd, wr) = stream.into_split();
    let wr: Arc<Mutex<OwnedWriteHalf>> = Arc::new(Mutex::new(wr));
    // Queries on one connection are answered concurrently (RFC 7766), so one slow forward does
    // not hold up the local answers behind it.
    let mut queries = JoinSet::new();
    loop {
        let packet = match timeout(TCP_IDLE_TIMEOUT, read_frame(&mut rd)).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                debug!("dns: tcp read: {e}");
                break;
            }
            Err(_) => break,
        };
        while let Some(res) = queries.try_join_next() {
            log_join(res);
        }
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            debug!("dns: too many queries in flight, dropping a tcp query");
            continue;
        };
        let shared = shared.clone();
        let wr = wr.clone();
        queries.spawn(async move {
            let _permit = permit;
            let Some(reply) = handle_query(&shared, &packet, Transport::Tcp).await else {
                return;
            };
            let Some(out) = frame(&reply) else { return };
            let mut w = wr.lock().await;
            match timeout(TCP_WRITE_TIMEOUT, w.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!("dns: tcp write: {e}"),
                Err(_) => {
                    // A partial write breaks the framing; stop talking to this client.
                    let _ = w.shutdown().await;
                }
            }
        });
    }
    // Finish what was asked before EOF: clients may half-close right after sending.
    while let Some(res) = queries.join_next().await {
        log_join(res);
    }
}

/// Answers one raw query; None = send nothing (malformed, or not a query).
async fn handle_query(shared: &Shared, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let req = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(e) => {
            debug!("dns: dropping malformed packet: {e}");
            return None;
        }
    };
    // Never answer responses: that is how two resolvers end up in a loop.
    if req.message_type() != MessageType::Query {
        return None;
    }
    if req.op_code() != OpCode::Query {
        return build_reply(&req, ResponseCode::NotImp, Vec::new(), false, transport);
    }
    if req.queries().len() != 1 {
        return build_reply(&req, ResponseCode::FormErr, Vec::new(), false, transport);
    }
    if let Some(answers) = answer_locally(&shared.cfg, &req) {
        return build_reply(&req, ResponseCode::NoError, answers, true, transport);
    }
    forward(shared, packet, &req, transport).await
}

/// Some(records) when the name is ours (possibly no records: NODATA); None = forward.
fn answer_locally(cfg: &DnsConfig, req: &Message) -> Option<Vec<Record>> {
    let q = req.queries().first()?;
    if q.query_class() != DNSClass::IN {
        return None;
    }
    let lower = q.name().to_lowercase().to_ascii();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return None;
    }
    // Answers carry the name exactly as asked (0x20-randomizing clients compare case).
    let owner = q.name().clone();
    match q.query_type() {
        RecordType::A => {
            let ips = (cfg.lookup)(name)?;
            Some(
                ips.into_iter()
                    .map(|ip| Record::from_rdata(owner.clone(), LOCAL_TTL, RData::A(A(ip))))
                    .collect(),
            )
        }
        RecordType::PTR => {
            let ip = parse_in_addr_arpa(name)?;
            let names = (cfg.reverse)(ip)?;
            let records: Vec<Record> = names
                .iter()
                .filter_map(|n| {
                    let n = n.trim_end_matches('.');
                    match Name::from_ascii(format!("{n}.")) {
                        Ok(target) => Some(Record::from_rdata(
                            owner.clone(),
                            LOCAL_TTL,
                            RData::PTR(PTR(target)),
                        )),
                        Err(e) => {
                            debug!("dns: skipping unusable PTR target {n:?}: {e}");
                            None
                        }
                    }
                })
                .collect();
            if records.is_empty() {
                return None;
            }
            Some(records)
        }
        // Our name but a type we have no data for (AAAA, MX, HTTPS, ...): NOERROR with no
        // answers, so resolvers fall back to A instead of caching NXDOMAIN for the name.
        _ => {
            (cfg.lookup)(name)?;
            Some(Vec::new())
        }
    }
}

/// "4.3.2.1.in-addr.arpa" (lowercase, no trailing dot) -> 1.2.3.4.
fn parse_in_addr_arpa(name: &str) -> Option<Ipv4Addr> {
    let prefix = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = prefix.split('.');
    for slot in octets.iter_mut().rev() {
        let label = labels.next()?;
        // u8::from_str accepts "+1"; a DNS label for an octet is plain digits.
        if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = label.parse().ok()?;
    }
    if labels.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn build_reply(
    req: &Message,
    rcode: ResponseCode,
    answers: Vec<Record>,
    authoritative: bool,
    transport: Transport,
) -> Option<Vec<u8>> {
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(req.checking_disabled())
        .set_authoritative(authoritative)
        .set_response_code(rcode);
    resp.add_queries(req.queries().iter().cloned());
    resp.add_answers(answers);
    if let Some(edns) = req.extensions() {
        // RFC 6891: answer an EDNS query with an OPT record of our own.
        if edns.version() == 0 {
            let mut ours = Edns::new();
            ours.set_max_payload(OUR_EDNS_PAYLOAD);
            resp.set_edns(ours);
        }
    }
    let bytes = match resp.to_vec() {
        Ok(b) => b,
        Err(e) => {
            warn!("dns: cannot encode reply: {e}");
            return None;
        }
    };
    // Message::max_payload is 512 without EDNS, else the client's size (at least 512).
    if transport == Transport::Udp && bytes.len() > usize::from(req.max_payload()) {
        // Too big for the client's UDP buffer: TC tells it to retry over TCP.
        resp.take_answers();
        resp.set_truncated(true);
        return match resp.to_vec() {
            Ok(b) => Some(b),
            Err(e) => {
                warn!("dns: cannot encode truncated reply: {e}");
                None
            }
        };
    }
    Some(bytes)
}

/// Relays the raw query to each upstream in turn; SERVFAIL if none gives a usable answer.
async fn forward(
    shared: &Shared,
    packet: &[u8],
    req: &Message,
    transport: Transport,
) -> Option<Vec<u8>> {
    let id = req.id();
    for &upstream in &shared.cfg.upstreams {
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(upstream, packet, id).await,
                Transport::Tcp => exchange_tcp(upstream, packet, id).await,
            }
        };
        match timeout(shared.upstream_timeout, exchange).await {
            Ok(Ok(reply)) => {
                let rcode = reply.get(3).map_or(0, |b| b & 0x0f);
                if rcode == RCODE_SERVFAIL || rcode == RCODE_REFUSED {
                    debug!("dns: upstream {upstream} answered rcode {rcode}, trying next");
                    continue;
                }
                return Some(reply);
            }
            Ok(Err(e)) => debug!("dns: upstream {upstream} ({transport:?}): {e}"),
            Err(_) => debug!("dns: upstream {upstream} ({transport:?}) timed out"),
        }
    }
    build_reply(req, ResponseCode::ServFail, Vec::new(), false, transport)
}

/// A reply is ours if it is a response carrying our id. Sockets are connected to the upstream,
/// so nobody else can inject one.
fn is_reply_to(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12 && u16::from_be_bytes([reply[0], reply[1]]) == id && reply[2] & 0x80 != 0
}

async fn exchange_udp(upstream: SocketAddr, packet: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket per query: random source port, and replies can't get mixed up.
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = sock.recv(&mut buf).await?;
        if is_reply_to(&buf[..n], id) {
            buf.truncate(n);
            return Ok(buf);
        }
        debug!("dns: ignoring stray datagram from {upstream}");
    }
}

async fn exchange_tcp(upstream: SocketAddr, packet: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let out = frame(packet).ok_or_else(|| io::Error::other("query too large"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&out).await?;
    loop {
        let reply = read_frame(&mut stream)
            .await?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if is_reply_to(&reply, id) {
            return Ok(reply);
        }
    }
}

/// Nameservers from resolv.conf text (IPv4 and IPv6, port 53). Used for upstreams.
///
/// Order is kept and duplicates dropped; unparsable entries are skipped. A link-local IPv6
/// address may carry a zone (`fe80::1%eth0` or `%2`); named zones are resolved in the caller's
/// network namespace and the entry is skipped if the interface does not exist.
pub fn parse_resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_nameserver) else {
            continue;
        };
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Some((ip, zone)) = s.split_once('%') {
        let ip: Ipv6Addr = ip.parse().ok()?;
        let scope = scope_id(zone)?;
        return Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)));
    }
    let ip: IpAddr = s.parse().ok()?;
    Some(SocketAddr::new(ip, 53))
}

fn scope_id(zone: &str) -> Option<u32> {
    if let Ok(n) = zone.parse::<u32>() {
        return Some(n);
    }
    let c = std::ffi::CString::new(zone).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use std::collections::HashMap;
    use std::str::FromStr;

    /// Guard against a hung test; never an assertion on speed.
    const GUARD: Duration = Duration::from_secs(20);

    struct Harness {
        server: Option<DnsServer>,
        udp: SocketAddr,
        tcp: SocketAddr,
    }

    fn start(upstreams: Vec<SocketAddr>, upstream_timeout: Duration) -> Harness {
        let mut names: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        names.insert(
            "web".into(),
            vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)],
        );
        names.insert("web.mynet".into(), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        names.insert(
            "many".into(),
            (1..=100).map(|i| Ipv4Addr::new(10, 1, 0, i)).collect(),
        );
        let lookup: Lookup = Arc::new(move |n: &str| names.get(n).cloned());
        let reverse: Reverse = Arc::new(|ip: Ipv4Addr| {
            (ip == Ipv4Addr::new(10, 0, 0, 2)).then(|| vec!["web".into(), "web.mynet".into()])
        });
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (ua, ta) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let cfg = DnsConfig {
            lookup,
            reverse,
            upstreams,
        };
        let server = DnsServer::start_with_timeout(udp, tcp, cfg, upstream_timeout).unwrap();
        Harness {
            server: Some(server),
            udp: ua,
            tcp: ta,
        }
    }

    fn query_msg(id: u16, name: &str, rtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(id)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true);
        m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        m
    }

    async fn udp_ask(server: SocketAddr, q: &Message) -> Message {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(server).await.unwrap();
        sock.send(&q.to_vec().unwrap()).await.unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let n = timeout(GUARD, sock.recv(&mut buf)).await.unwrap().unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn a_addrs(m: &Message) -> Vec<Ipv4Addr> {
        m.answers()
            .iter()
            .filter_map(|r| match r.data() {
                Some(RData::A(a)) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_query_for_known_name() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let r = udp_ask(h.udp, &query_msg(0x1234, "web.", RecordType::A)).await;
        assert_eq!(r.id(), 0x1234);
        assert_eq!(r.message_type(), MessageType::Response);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.authoritative());
        assert!(r.recursion_available());
        assert_eq!(
            a_addrs(&r),
            vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]
        );
        assert!(r.answers().iter().all(|a| a.ttl() == 600));
    }

    #[tokio::test]
    async fn names_are_case_insensitive_and_case_is_echoed() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let r = udp_ask(h.udp, &query_msg(7, "WeB.MyNet.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(a_addrs(&r), vec![Ipv4Addr::new(10, 0, 0, 2)]);
        assert!(r.answers()[0]
            .name()
            .eq_case(&Name::from_str("WeB.MyNet.").unwrap()));
    }

    #[tokio::test]
    async fn aaaa_for_our_name_is_empty_noerror() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let r = udp_ask(h.udp, &query_msg(8, "web.", RecordType::AAAA)).await;
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
        assert_eq!(r.queries().len(), 1);
    }

    #[tokio::test]
    async fn ptr_for_container_ip() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let r = udp_ask(
            h.udp,
            &query_msg(9, "2.0.0.10.in-addr.arpa.", RecordType::PTR),
        )
        .await;
        assert_eq!(r.response_code(), ResponseCode::NoError);
        let targets: Vec<String> = r
            .answers()
            .iter()
            .filter_map(|a| match a.data() {
                Some(RData::PTR(p)) => Some(p.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(targets, vec!["web.", "web.mynet."]);
    }

    #[test]
    fn in_addr_arpa_parsing() {
        assert_eq!(
            parse_in_addr_arpa("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(parse_in_addr_arpa("3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_in_addr_arpa("5.4.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_in_addr_arpa("+4.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_in_addr_arpa("256.3.2.1.in-addr.arpa"), None);
        assert_eq!(parse_in_addr_arpa("4.3.2.1.ip6.arpa"), None);
    }

    /// Canned upstream reply: echoes the question with 192.0.2.1.
    fn canned_reply(query: &[u8]) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_available(true);
        r.add_queries(q.queries().iter().cloned());
        let name = q.queries()[0].name().clone();
        r.add_answer(Record::from_rdata(
            name,
            30,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
        r.to_vec().unwrap()
    }

    /// A UDP upstream answering `count` queries; returns its address and the queries it saw.
    async fn fake_udp_upstream(count: usize) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; MAX_DATAGRAM];
            for _ in 0..count {
                let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
                seen.push(buf[..n].to_vec());
                sock.send_to(&canned_reply(&buf[..n]), peer).await.unwrap();
            }
            seen
        });
        (addr, task)
    }

    /// A UDP upstream that answers every query with `rcode` (e.g. SERVFAIL) until dropped.
    async fn failing_upstream(rcode: ResponseCode) -> (SocketAddr, JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_response_code(rcode);
                r.add_queries(q.queries().iter().cloned());
                let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn unknown_names_are_forwarded_verbatim() {
        let (up, seen) = fake_udp_upstream(1).await;
        // The first upstream fails; the server must move on to the second.
        let (bad, bad_task) = failing_upstream(ResponseCode::ServFail).await;
        let h = start(vec![bad, up], UPSTREAM_TIMEOUT);
        let q = query_msg(0xbeef, "example.com.", RecordType::A);
        let r = udp_ask(h.udp, &q).await;
        assert_eq!(r.id(), 0xbeef);
        assert_eq!(a_addrs(&r), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(!r.authoritative());
        let seen = timeout(GUARD, seen).await.unwrap().unwrap();
        assert_eq!(seen, vec![q.to_vec().unwrap()]);
        bad_task.abort();
    }

    #[tokio::test]
    async fn servfail_when_upstream_is_silent_or_missing() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let h = start(
            vec![silent.local_addr().unwrap()],
            Duration::from_millis(100),
        );
        let r = udp_ask(h.udp, &query_msg(11, "example.com.", RecordType::A)).await;
        assert_eq!(r.id(), 11);
        assert_eq!(r.response_code(), ResponseCode::ServFail);
        assert_eq!(r.queries().len(), 1);

        let h = start(vec![], UPSTREAM_TIMEOUT);
        let r = udp_ask(h.udp, &query_msg(12, "example.com.", RecordType::A)).await;
        assert_eq!(r.response_code(), ResponseCode::ServFail);
    }

    async fn tcp_send(stream: &mut TcpStream, m: &Message) {
        stream
            .write_all(&frame(&m.to_vec().unwrap()).unwrap())
            .await
            .unwrap();
    }

    async fn tcp_recv(stream: &mut TcpStream) -> Message {
        let body = timeout(GUARD, read_frame(stream))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        Message::from_vec(&body).unwrap()
    }

    #[tokio::test]
    async fn tcp_queries_local_and_forwarded() {
        // Fake TCP upstream answering one framed query.
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        let upstream = tokio::spawn(async move {
            let (mut s, _) = up.accept().await.unwrap();
            let q = read_frame(&mut s).await.unwrap().unwrap();
            s.write_all(&frame(&canned_reply(&q)).unwrap())
                .await
                .unwrap();
        });
        let h = start(vec![up_addr], UPSTREAM_TIMEOUT);
        let mut s = TcpStream::connect(h.tcp).await.unwrap();
        tcp_send(&mut s, &query_msg(21, "web.", RecordType::A)).await;
        tcp_send(&mut s, &query_msg(22, "example.org.", RecordType::A)).await;
        tcp_send(&mut s, &query_msg(23, "many.", RecordType::A)).await;
        let mut got = HashMap::new();
        for _ in 0..3 {
            let r = tcp_recv(&mut s).await;
            got.insert(r.id(), r);
        }
        assert_eq!(a_addrs(&got[&21]).len(), 2);
        assert_eq!(a_addrs(&got[&22]), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        // No 512-byte limit over TCP.
        assert_eq!(a_addrs(&got[&23]).len(), 100);
        assert!(!got[&23].truncated());
        timeout(GUARD, upstream).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn tcp_half_close_still_answered() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let mut s = TcpStream::connect(h.tcp).await.unwrap();
        tcp_send(&mut s, &query_msg(31, "web.", RecordType::A)).await;
        s.shutdown().await.unwrap();
        assert_eq!(tcp_recv(&mut s).await.id(), 31);
    }

    #[tokio::test]
    async fn big_udp_answer_is_truncated() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let r = udp_ask(h.udp, &query_msg(41, "many.", RecordType::A)).await;
        assert!(r.truncated());
        assert!(r.answers().is_empty());

        // With EDNS and a big enough buffer it fits.
        let mut q = query_msg(42, "many.", RecordType::A);
        let mut e = Edns::new();
        e.set_max_payload(4096);
        q.set_edns(e);
        let r = udp_ask(h.udp, &q).await;
        assert!(!r.truncated());
        assert_eq!(a_addrs(&r).len(), 100);
        assert!(r.extensions().is_some());
    }

    #[tokio::test]
    async fn malformed_packets_and_responses_are_ignored() {
        let h = start(vec![], UPSTREAM_TIMEOUT);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(h.udp).await.unwrap();
        sock.send(&[1, 2, 3]).await.unwrap();
        sock.send(&[0xff; 40]).await.unwrap();
        let mut resp = query_msg(51, "web.", RecordType::A);
        resp.set_message_type(MessageType::Response);
        sock.send(&resp.to_vec().unwrap()).await.unwrap();
        sock.send(&query_msg(52, "web.", RecordType::A).to_vec().unwrap())
            .await
            .unwrap();
        // The first thing to come back is the answer to the only valid query.
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let n = timeout(GUARD, sock.recv(&mut buf)).await.unwrap().unwrap();
        let r = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(r.id(), 52);
        assert_eq!(a_addrs(&r).len(), 2);

        // Garbage over TCP does not kill the connection either.
        let mut s = TcpStream::connect(h.tcp).await.unwrap();
        s.write_all(&frame(&[9, 9, 9]).unwrap()).await.unwrap();
        tcp_send(&mut s, &query_msg(53, "web.", RecordType::A)).await;
        assert_eq!(tcp_recv(&mut s).await.id(), 53);
    }

    #[tokio::test]
    async fn dropping_the_server_closes_its_sockets() {
        let mut h = start(vec![], UPSTREAM_TIMEOUT);
        // Keep a connection and a query in flight so their tasks must go too.
        let mut conn = TcpStream::connect(h.tcp).await.unwrap();
        tcp_send(&mut conn, &query_msg(60, "web.", RecordType::A)).await;
        assert_eq!(tcp_recv(&mut conn).await.id(), 60);
        let r = udp_ask(h.udp, &query_msg(61, "web.", RecordType::A)).await;
        assert_eq!(r.id(), 61);
        drop(h.server.take());
        // Aborted tasks are dropped asynchronously; wait until both ports can be bound again.
        let rebound = async {
            loop {
                let u = std::net::UdpSocket::bind(h.udp);
                let t = std::net::TcpListener::bind(h.tcp);
                if u.is_ok() && t.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(GUARD, rebound).await.unwrap();
        // The open connection was closed too.
        let n = timeout(GUARD, conn.read(&mut [0u8; 1])).await.unwrap();
        assert!(matches!(n, Ok(0)) || n.is_err());
    }

    #[test]
    fn start_outside_runtime_is_an_error() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cfg = DnsConfig {
            lookup: Arc::new(|_: &str| None),
            reverse: Arc::new(|_| None),
            upstreams: vec![],
        };
        assert!(DnsServer::start(udp, tcp, cfg).is_err());
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\n\
                    ; comment\n\
                    search example.com\n\
                    nameserver 127.0.0.53\n\
                    nameserver   1.1.1.1  # trailing comment\n\
                    nameserver 2001:db8::1\n\
                    nameserver fe80::1%3\n\
                    nameserver fe80::2%no-such-interface0\n\
                    nameserver bogus\n\
                    nameserver\n\
                    #nameserver 9.9.9.9\n\
                    nameserver 1.1.1.1\n\
                    options ndots:2\n";
        let got = parse_resolv_conf_nameservers(text);
        assert_eq!(
            got,
            vec![
                SocketAddr::from(([127, 0, 0, 53], 53)),
                SocketAddr::from(([1, 1, 1, 1], 53)),
                SocketAddr::from((Ipv6Addr::from_str("2001:db8::1").unwrap(), 53)),
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from_str("fe80::1").unwrap(),
                    53,
                    0,
                    3
                )),
            ]
        );
        let lo = parse_resolv_conf_nameservers("nameserver fe80::1%lo\n");
        assert!(matches!(lo.as_slice(), [SocketAddr::V6(a)] if a.scope_id() != 0));
        assert!(parse_resolv_conf_nameservers("").is_empty());
    }
}
