//! The nftables layer of berth's bridge networking: one `ip` table per daemon that holds the NAT
//! rules (published ports, masquerading) and the forward filter (isolation between networks).
//!
//! Layout of the table (see [`Firewall`]):
//! - `prerouting` (nat, prio -100): per network `iifname BR return`, then last
//!   `fib daddr type local jump ports` (published ports only catch traffic addressed to this host).
//! - `output` (nat, prio -100): `oifname "lo" jump ports` (host-local traffic, incl. 127.0.0.1).
//! - `ports` (regular): one DNAT rule per published port.
//! - `postrouting` (nat, prio 100): masquerading for non-internal networks and for the 127.0.0.1
//!   DNAT path.
//! - `forward` (filter, prio 0, policy accept) and `isolation` (regular): intra-network traffic
//!   passes, traffic between two berth bridges is dropped, internal networks are cut off.
//!
//! Every rule carries a tag in its userdata, encoded as an nft comment so `nft list` shows it:
//! `berth:base`, `berth:net:<bridge>` or `berth:port:<owner>`. Removal lists the rules and
//! deletes the tagged ones by handle.
//!
//! Everything is spoken directly over a NETLINK_NETFILTER socket by the small nfnetlink client
//! at the bottom of this file: message bodies and the few expressions we use are hand-encoded
//! (the same attributes `nft --debug=netlink` shows), changes go out as one atomic batch with an
//! ACK per message, and listing only decodes rule handles and tags, never expressions (so rules
//! someone added by hand with `nft` can't break it).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One published port: `[host_ip:]host_port/proto -> container_ip:container_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub proto: Proto,
    /// `None` (or 0.0.0.0) matches every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The firewall view of one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRules {
    /// Bridge interface name (at most 15 bytes).
    pub bridge: String,
    /// Network address; host bits are ignored.
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// `--internal`: no masquerading, no traffic in or out of the bridge.
    pub internal: bool,
}

#[derive(thiserror::Error, Debug)]
pub enum NftError {
    #[error("invalid firewall request: {0}")]
    InvalidArgument(String),
    /// The kernel rejected a message of the batch (the whole batch was rolled back).
    #[error("nftables: {op}: {source}{detail}")]
    Kernel {
        op: String,
        #[source]
        source: io::Error,
        /// Extended ACK text from the kernel, formatted as " (text)", or empty.
        detail: String,
    },
    #[error("netlink {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("malformed netlink reply: {0}")]
    Protocol(String),
}

impl NftError {
    /// The errno behind a kernel or socket failure (e.g. `EPERM` without CAP_NET_ADMIN).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Kernel { source, .. } | NftError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

const CH_PREROUTING: &str = "prerouting";
const CH_OUTPUT: &str = "output";
const CH_PORTS: &str = "ports";
const CH_POSTROUTING: &str = "postrouting";
const CH_FORWARD: &str = "forward";
const CH_ISOLATION: &str = "isolation";

const TAG_BASE: &str = "berth:base";
const TAG_NET: &str = "berth:net:";
const TAG_PORT: &str = "berth:port:";

/// nft refuses to print comments longer than this (NFTNL_UDATA_COMMENT_MAXLEN).
const MAX_COMMENT: usize = 128;
const IFNAMSIZ: usize = 16;

/// One process-wide lock: every change is "list, then batch by handle", and two threads doing
/// that on the same table at once could delete each other's handles and fail the batch.
static LOCK: Mutex<()> = Mutex::new(());

/// Handle on one nftables table (family `ip`). Cheap to create; holds no socket.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    pub fn new(table: &str) -> Self {
        Firewall {
            table: table.to_string(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table, its chains and the base rules where missing. Idempotent: re-adding an
    /// existing table or chain is a no-op in nf_tables, and base rules are added only when no
    /// rule tagged `berth:base` is in their chain.
    pub fn ensure(&self) -> Result<(), NftError> {
        self.check_table_name()?;
        let _g = lock();
        let rules = dump_rules(&self.table, None)?;
        let has_base = |chain: &str| {
            rules
                .iter()
                .any(|r| r.chain == chain && r.tag.as_deref() == Some(TAG_BASE))
        };

        let mut tx = Tx::new(&self.table);
        tx.add_table();
        for (name, base) in [
            (
                CH_PREROUTING,
                Some(BaseChain::nat(NF_INET_PRE_ROUTING, -100)),
            ),
            (CH_OUTPUT, Some(BaseChain::nat(NF_INET_LOCAL_OUT, -100))),
            (CH_PORTS, None),
            (
                CH_POSTROUTING,
                Some(BaseChain::nat(NF_INET_POST_ROUTING, 100)),
            ),
            (
                CH_FORWARD,
                Some(BaseChain {
                    hook: NF_INET_FORWARD,
                    priority: 0,
                    kind: "filter",
                    policy: Some(NF_ACCEPT),
                }),
            ),
            (CH_ISOLATION, None),
        ] {
            tx.add_chain(name, base);
        }
        if !has_base(CH_PREROUTING) {
            let rule = Rule::new(CH_PREROUTING, TAG_BASE)
                .fib_daddr_type()
                // fib stores the address type as a host-endian u32 in the register.
                .cmp(NFT_CMP_EQ, &RTN_LOCAL.to_ne_bytes())
                .jump(CH_PORTS);
            tx.add_rule(rule, "add rule prerouting: fib daddr type local jump ports");
        }
        if !has_base(CH_OUTPUT) {
            let rule = Rule::new(CH_OUTPUT, TAG_BASE)
                .meta(NFT_META_OIFNAME)
                .cmp(NFT_CMP_EQ, &ifname("lo"))
                .jump(CH_PORTS);
            tx.add_rule(rule, "add rule output: oifname lo jump ports");
        }
        tx.commit()
    }

    /// Adds the rules of one network, replacing any it already has (one atomic batch).
    pub fn add_network(&self, n: &NetRules) -> Result<(), NftError> {
        self.check_table_name()?;
        check_ifname(&n.bridge)?;
        if n.prefix > 32 {
            return Err(NftError::InvalidArgument(format!(
                "prefix length {} out of range",
                n.prefix
            )));
        }
        let tag = format!("{TAG_NET}{}", n.bridge);
        let br = n.bridge.as_str();
        let _g = lock();
        let mut tx = Tx::new(&self.table);
        self.delete_tagged(&mut tx, None, &tag)?;

        // Head insert: these must come before the fib rule, which ensure() appended.
        let rule = Rule::new(CH_PREROUTING, &tag)
            .meta(NFT_META_IIFNAME)
            .cmp(NFT_CMP_EQ, &ifname(br))
            .verdict(NFT_RETURN);
        tx.insert_rule(
            rule,
            &format!("insert rule prerouting: iifname {br} return"),
        );

        if !n.internal {
            let rule = Rule::new(CH_POSTROUTING, &tag)
                .saddr_prefix(n.subnet, n.prefix)
                .meta(NFT_META_OIFNAME)
                .cmp(NFT_CMP_NEQ, &ifname(br))
                .masq();
            tx.add_rule(rule, &format!("add rule postrouting: masquerade for {br}"));
        }
        let rule = Rule::new(CH_POSTROUTING, &tag)
            .meta(NFT_META_OIFNAME)
            .cmp(NFT_CMP_EQ, &ifname(br))
            .saddr_prefix(Ipv4Addr::new(127, 0, 0, 0), 8)
            .masq();
        tx.add_rule(
            rule,
            &format!("add rule postrouting: loopback masquerade to {br}"),
        );

        let rule = Rule::new(CH_FORWARD, &tag)
            .meta(NFT_META_IIFNAME)
            .cmp(NFT_CMP_EQ, &ifname(br))
            .meta(NFT_META_OIFNAME)
            .cmp(NFT_CMP_EQ, &ifname(br))
            .verdict(NF_ACCEPT);
        tx.add_rule(rule, &format!("add rule forward: {br} to {br} accept"));
        if n.internal {
            for key in [NFT_META_IIFNAME, NFT_META_OIFNAME] {
                let rule = Rule::new(CH_FORWARD, &tag)
                    .meta(key)
                    .cmp(NFT_CMP_EQ, &ifname(br))
                    .verdict(NF_DROP);
                tx.add_rule(rule, &format!("add rule forward: internal {br} drop"));
            }
        }
        let rule = Rule::new(CH_FORWARD, &tag)
            .meta(NFT_META_IIFNAME)
            .cmp(NFT_CMP_EQ, &ifname(br))
            .jump(CH_ISOLATION);
        tx.add_rule(
            rule,
            &format!("add rule forward: iifname {br} jump isolation"),
        );
        let rule = Rule::new(CH_ISOLATION, &tag)
            .meta(NFT_META_OIFNAME)
            .cmp(NFT_CMP_EQ, &ifname(br))
            .verdict(NF_DROP);
        tx.add_rule(rule, &format!("add rule isolation: oifname {br} drop"));
        tx.commit()
    }

    /// Deletes every rule of this network. Ok if it has none (or the table is absent).
    pub fn remove_network(&self, bridge: &str) -> Result<(), NftError> {
        self.check_table_name()?;
        check_ifname(bridge)?;
        let _g = lock();
        let mut tx = Tx::new(&self.table);
        self.delete_tagged(&mut tx, None, &format!("{TAG_NET}{bridge}"))?;
        tx.commit()
    }

    /// Publishes `ports` for `owner` (a container id). Replaces the rules `owner` already has,
    /// so calling it again (e.g. on daemon recovery) never duplicates rules.
    pub fn add_ports(&self, owner: &str, ports: &[PortRule]) -> Result<(), NftError> {
        self.check_table_name()?;
        let tag = port_tag(owner)?;
        for p in ports {
            if p.host_port == 0 || p.container_port == 0 {
                return Err(NftError::InvalidArgument(format!("port 0 in {p:?}")));
            }
        }
        let _g = lock();
        let mut tx = Tx::new(&self.table);
        self.delete_tagged(&mut tx, Some(CH_PORTS), &tag)?;
        for p in ports {
            let mut rule = Rule::new(CH_PORTS, &tag);
            if let Some(ip) = p.host_ip.filter(|ip| !ip.is_unspecified()) {
                rule = rule
                    .payload(NFT_PAYLOAD_NETWORK_HEADER, IPV4_DADDR_OFFSET, 4)
                    .cmp(NFT_CMP_EQ, &ip.octets());
            }
            let l4 = match p.proto {
                Proto::Tcp => libc::IPPROTO_TCP as u8,
                Proto::Udp => libc::IPPROTO_UDP as u8,
            };
            let rule = rule
                .meta(NFT_META_L4PROTO)
                .cmp(NFT_CMP_EQ, &[l4])
                // `th dport`: the destination port sits at offset 2 in both TCP and UDP.
                .payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)
                .cmp(NFT_CMP_EQ, &p.host_port.to_be_bytes())
                .immediate(NFT_REG_1, &p.container_ip.octets())
                .immediate(NFT_REG_2, &p.container_port.to_be_bytes())
                .dnat(NFT_REG_1, NFT_REG_2);
            tx.add_rule(
                rule,
                &format!(
                    "add rule ports: {}:{} -> {}:{}",
                    p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    p.host_port,
                    p.container_ip,
                    p.container_port
                ),
            );
        }
        tx.commit()
    }

    /// Deletes every port rule of `owner`. Ok if it has none (or the table is absent).
    pub fn remove_ports(&self, owner: &str) -> Result<(), NftError> {
        self.check_table_name()?;
        let tag = port_tag(owner)?;
        let _g = lock();
        let mut tx = Tx::new(&self.table);
        self.delete_tagged(&mut tx, Some(CH_PORTS), &tag)?;
        tx.commit()
    }

    /// Distinct owners that have rules in `ports`, sorted (for garbage collection after a crash).
    pub fn port_owners(&self) -> Result<Vec<String>, NftError> {
        self.check_table_name()?;
        let _g = lock();
        let mut owners: Vec<String> = dump_rules(&self.table, Some(CH_PORTS))?
            .into_iter()
            .filter_map(|r| r.tag?.strip_prefix(TAG_PORT).map(str::to_string))
            .collect();
        owners.sort();
        owners.dedup();
        Ok(owners)
    }

    /// Deletes the whole table. Ok if it does not exist.
    pub fn delete_table(&self) -> Result<(), NftError> {
        self.check_table_name()?;
        let _g = lock();
        let mut tx = Tx::new(&self.table);
        tx.delete_table();
        match tx.commit() {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    fn check_table_name(&self) -> Result<(), NftError> {
        // NFT_NAME_MAXLEN is 256 including the NUL.
        if self.table.is_empty() || self.table.len() > 255 || self.table.contains('\0') {
            return Err(NftError::InvalidArgument(format!(
                "bad table name {:?}",
                self.table
            )));
        }
        Ok(())
    }

    /// Queues the deletion of every rule tagged `tag` (in `chain`, or in any chain).
    fn delete_tagged(&self, tx: &mut Tx, chain: Option<&str>, tag: &str) -> Result<(), NftError> {
        for r in dump_rules(&self.table, chain)? {
            if r.tag.as_deref() == Some(tag) {
                tx.delete_rule(&r.chain, r.handle);
            }
        }
        Ok(())
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves nothing half-done in the kernel (batches are
    // atomic), so a poisoned lock is safe to reuse.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_ifname(name: &str) -> Result<(), NftError> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        return Err(NftError::InvalidArgument(format!(
            "bad interface name {name:?}"
        )));
    }
    Ok(())
}

fn port_tag(owner: &str) -> Result<String, NftError> {
    let tag = format!("{TAG_PORT}{owner}");
    if owner.is_empty() || owner.contains('\0') || tag.len() >= MAX_COMMENT {
        return Err(NftError::InvalidArgument(format!(
            "bad port owner {owner:?}"
        )));
    }
    Ok(tag)
}

/// Interface name as nft matches it exactly: the name plus its NUL terminator.
fn ifname(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// Rule userdata in nft's own comment format (TLV: type 0 = comment, length, NUL-terminated text).
fn comment_udata(text: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(text.len() + 3);
    v.push(0);
    v.push((text.len() + 1) as u8);
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

fn parse_comment(udata: &[u8]) -> Option<String> {
    let mut rest = udata;
    while rest.len() >= 2 {
        let (ty, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if ty == 0 {
            let value = value.strip_suffix(&[0]).unwrap_or(value);
            return String::from_utf8(value.to_vec()).ok();
        }
        rest = &rest[2 + len..];
    }
    None
}

// ---- nfnetlink wire format (stable kernel ABI, from linux/netlink.h, nfnetlink.h,
// netfilter.h and nf_tables.h) ----
//
// Netlink headers and attribute headers are host-endian, but nf_tables puts every integer
// attribute (NLA_U32 values, register numbers, the u64 rule handle) in network byte order:
// hence the `to_be_bytes()` below. Only data compared against packet or register contents
// (`NFTA_DATA_VALUE`) is copied verbatim, in whatever order the register holds it.

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(1 << 15 | 1 << 14);

const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;

// Object attributes.
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

// Expression attributes.
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;

// Attribute values.
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_RETURN: i32 = -5;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_NAT_DNAT: u32 = 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const RTN_LOCAL: u32 = 2;
const IPV4_SADDR_OFFSET: u32 = 12;
const IPV4_DADDR_OFFSET: u32 = 16;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// An NLA_U32 of nf_tables: big-endian.
fn put_u32(buf: &mut Vec<u8>, ty: u16, v: u32) {
    put_attr(buf, ty, &v.to_be_bytes());
}

fn put_strz(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    put_attr(buf, ty, &v);
}

fn put_nested(buf: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    inner(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

/// `NFTA_xxx_DATA { NFTA_DATA_VALUE }`: raw bytes, as they sit in the register.
fn put_data_value(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    put_nested(buf, ty, |b| put_attr(b, NFTA_DATA_VALUE, value));
}

/// A netlink message with nlmsghdr + nfgenmsg; nlmsg_seq is filled in by [`Tx::commit`].
fn nl_message(ty: u16, flags: u16, family: u8, res_id: u16, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + body.len();
    let mut m = Vec::with_capacity(align4(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    m.push(family);
    m.push(0); // NFNETLINK_V0
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(body);
    m.resize(align4(len), 0);
    m
}

/// Hook, priority, type and policy of a base chain (`NFTA_CHAIN_HOOK` and friends).
struct BaseChain {
    hook: u32,
    priority: i32,
    kind: &'static str,
    policy: Option<i32>,
}

impl BaseChain {
    fn nat(hook: u32, priority: i32) -> Self {
        BaseChain {
            hook,
            priority,
            kind: "nat",
            policy: None,
        }
    }
}

/// A rule being built: its chain, its tag (userdata comment) and its expressions, each already
/// encoded as an `NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }` of `NFTA_RULE_EXPRESSIONS`.
/// The comments give each expression as `nft --debug=netlink` prints it.
struct Rule {
    chain: String,
    tag: String,
    exprs: Vec<u8>,
}

impl Rule {
    fn new(chain: &str, tag: &str) -> Self {
        Rule {
            chain: chain.to_string(),
            tag: tag.to_string(),
            exprs: Vec::new(),
        }
    }

    fn expr(mut self, name: &str, data: impl FnOnce(&mut Vec<u8>)) -> Self {
        put_nested(&mut self.exprs, NFTA_LIST_ELEM, |b| {
            put_strz(b, NFTA_EXPR_NAME, name);
            put_nested(b, NFTA_EXPR_DATA, data);
        });
        self
    }

    /// `[ meta load KEY => reg 1 ]`
    fn meta(self, key: u32) -> Self {
        self.expr("meta", |b| {
            put_u32(b, NFTA_META_DREG, NFT_REG_1);
            put_u32(b, NFTA_META_KEY, key);
        })
    }

    /// `[ cmp OP reg 1 VALUE ]`
    fn cmp(self, op: u32, value: &[u8]) -> Self {
        self.expr("cmp", |b| {
            put_u32(b, NFTA_CMP_SREG, NFT_REG_1);
            put_u32(b, NFTA_CMP_OP, op);
            put_data_value(b, NFTA_CMP_DATA, value);
        })
    }

    /// `[ payload load LENb @ BASE header + OFFSET => reg 1 ]`
    fn payload(self, base: u32, offset: u32, len: u32) -> Self {
        self.expr("payload", |b| {
            put_u32(b, NFTA_PAYLOAD_DREG, NFT_REG_1);
            put_u32(b, NFTA_PAYLOAD_BASE, base);
            put_u32(b, NFTA_PAYLOAD_OFFSET, offset);
            put_u32(b, NFTA_PAYLOAD_LEN, len);
        })
    }

    /// `[ bitwise reg 1 = ( reg 1 & MASK ) ^ 0 ]`
    fn mask(self, mask: &[u8]) -> Self {
        self.expr("bitwise", |b| {
            put_u32(b, NFTA_BITWISE_SREG, NFT_REG_1);
            put_u32(b, NFTA_BITWISE_DREG, NFT_REG_1);
            put_u32(b, NFTA_BITWISE_LEN, mask.len() as u32);
            put_data_value(b, NFTA_BITWISE_MASK, mask);
            put_data_value(b, NFTA_BITWISE_XOR, &vec![0; mask.len()]);
        })
    }

    /// `ip saddr NET/PREFIX`: payload, bitwise, cmp. `prefix` must be at most 32.
    fn saddr_prefix(self, net: Ipv4Addr, prefix: u8) -> Self {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix.min(32)))
        };
        let network = u32::from(net) & mask;
        self.payload(NFT_PAYLOAD_NETWORK_HEADER, IPV4_SADDR_OFFSET, 4)
            .mask(&mask.to_be_bytes())
            .cmp(NFT_CMP_EQ, &network.to_be_bytes())
    }

    /// `[ immediate reg DREG VALUE ]`
    fn immediate(self, dreg: u32, value: &[u8]) -> Self {
        self.expr("immediate", |b| {
            put_u32(b, NFTA_IMMEDIATE_DREG, dreg);
            put_data_value(b, NFTA_IMMEDIATE_DATA, value);
        })
    }

    /// `[ immediate reg 0 VERDICT [-> CHAIN] ]`
    fn put_verdict(self, code: i32, chain: Option<&str>) -> Self {
        self.expr("immediate", |b| {
            put_u32(b, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            put_nested(b, NFTA_IMMEDIATE_DATA, |b| {
                put_nested(b, NFTA_DATA_VERDICT, |b| {
                    put_attr(b, NFTA_VERDICT_CODE, &code.to_be_bytes());
                    if let Some(chain) = chain {
                        put_strz(b, NFTA_VERDICT_CHAIN, chain);
                    }
                });
            });
        })
    }

    /// accept, drop or return.
    fn verdict(self, code: i32) -> Self {
        self.put_verdict(code, None)
    }

    fn jump(self, chain: &str) -> Self {
        self.put_verdict(NFT_JUMP, Some(chain))
    }

    /// `[ nat dnat ip addr_min reg ADDR proto_min reg PROTO ]`; the kernel derives the range
    /// flags (map IPs, proto specified) from the registers given.
    fn dnat(self, addr_reg: u32, proto_reg: u32) -> Self {
        self.expr("nat", |b| {
            put_u32(b, NFTA_NAT_TYPE, NFT_NAT_DNAT);
            put_u32(b, NFTA_NAT_FAMILY, libc::NFPROTO_IPV4 as u32);
            put_u32(b, NFTA_NAT_REG_ADDR_MIN, addr_reg);
            put_u32(b, NFTA_NAT_REG_PROTO_MIN, proto_reg);
        })
    }

    /// `[ masq ]` (no attributes: masquerade to the output interface's address).
    fn masq(self) -> Self {
        self.expr("masq", |_| {})
    }

    /// `[ fib daddr type => reg 1 ]`: the route type of the destination address.
    fn fib_daddr_type(self) -> Self {
        self.expr("fib", |b| {
            put_u32(b, NFTA_FIB_DREG, NFT_REG_1);
            put_u32(b, NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
            put_u32(b, NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
        })
    }
}

struct NlHeader {
    len: usize,
    ty: u16,
    flags: u16,
    seq: u32,
}

fn nl_header(buf: &[u8]) -> Result<NlHeader, NftError> {
    let h = buf
        .get(..NLMSG_HDRLEN)
        .ok_or_else(|| NftError::Protocol("truncated netlink header".into()))?;
    let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(NftError::Protocol(format!("bad netlink length {len}")));
    }
    Ok(NlHeader {
        len,
        ty: u16::from_ne_bytes([h[4], h[5]]),
        flags: u16::from_ne_bytes([h[6], h[7]]),
        seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
    })
}

/// Splits a buffer of netlink messages.
fn split_messages(mut buf: &[u8]) -> Result<Vec<(NlHeader, &[u8])>, NftError> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let h = nl_header(buf)?;
        let (msg, rest) = buf.split_at(h.len);
        out.push((h, msg));
        buf = rest.get(align4(msg.len()) - msg.len()..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Top-level attributes of a message body as (type without flags, payload).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        buf = buf.get(align4(len)..).unwrap_or(&[]);
    }
    out
}

fn strz(b: &[u8]) -> String {
    String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(b)).into_owned()
}

/// One atomic nf_tables transaction on one table (family ip): the messages of the batch, each
/// with a description for error reports.
struct Tx {
    table: String,
    msgs: Vec<(Vec<u8>, String)>,
}

impl Tx {
    fn new(table: &str) -> Self {
        Tx {
            table: table.to_string(),
            msgs: Vec::new(),
        }
    }

    fn push(&mut self, msg_type: u16, flags: u16, body: &[u8], what: String) {
        let msg = nl_message(
            NFNL_SUBSYS_NFTABLES << 8 | msg_type,
            // Every message asks for an ACK, so success is "one ACK per message, all zero".
            flags | NLM_F_ACK,
            libc::NFPROTO_IPV4 as u8,
            0,
            body,
        );
        self.msgs.push((msg, what));
    }

    /// NFT_MSG_NEWTABLE { NFTA_TABLE_NAME }; without NLM_F_EXCL an existing table is fine.
    fn add_table(&mut self) {
        let mut b = Vec::new();
        put_strz(&mut b, NFTA_TABLE_NAME, &self.table);
        self.push(NFT_MSG_NEWTABLE, NLM_F_CREATE, &b, "add table".into());
    }

    /// NFT_MSG_DELTABLE { NFTA_TABLE_NAME }: the table with all its chains and rules.
    fn delete_table(&mut self) {
        let mut b = Vec::new();
        put_strz(&mut b, NFTA_TABLE_NAME, &self.table);
        self.push(NFT_MSG_DELTABLE, 0, &b, "delete table".into());
    }

    /// NFT_MSG_NEWCHAIN { NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, and for a base chain
    /// NFTA_CHAIN_HOOK { NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY }, NFTA_CHAIN_POLICY,
    /// NFTA_CHAIN_TYPE }. Re-adding an existing chain with the same hook is a no-op.
    fn add_chain(&mut self, name: &str, base: Option<BaseChain>) {
        let mut b = Vec::new();
        put_strz(&mut b, NFTA_CHAIN_TABLE, &self.table);
        put_strz(&mut b, NFTA_CHAIN_NAME, name);
        if let Some(base) = base {
            put_nested(&mut b, NFTA_CHAIN_HOOK, |b| {
                put_u32(b, NFTA_HOOK_HOOKNUM, base.hook);
                put_attr(b, NFTA_HOOK_PRIORITY, &base.priority.to_be_bytes());
            });
            if let Some(policy) = base.policy {
                put_attr(&mut b, NFTA_CHAIN_POLICY, &policy.to_be_bytes());
            }
            put_strz(&mut b, NFTA_CHAIN_TYPE, base.kind);
        }
        self.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            &b,
            format!("add chain {name}"),
        );
    }

    /// NFT_MSG_NEWRULE { NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS,
    /// NFTA_RULE_USERDATA }.
    fn rule_body(&self, rule: &Rule) -> Vec<u8> {
        let mut b = Vec::with_capacity(rule.exprs.len() + 64);
        put_strz(&mut b, NFTA_RULE_TABLE, &self.table);
        put_strz(&mut b, NFTA_RULE_CHAIN, &rule.chain);
        put_attr(&mut b, NFTA_RULE_EXPRESSIONS | NLA_F_NESTED, &rule.exprs);
        put_attr(&mut b, NFTA_RULE_USERDATA, &comment_udata(&rule.tag));
        b
    }

    /// Appends `rule` to its chain.
    fn add_rule(&mut self, rule: Rule, what: &str) {
        let b = self.rule_body(&rule);
        self.push(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            &b,
            what.into(),
        );
    }

    /// Inserts `rule` at the head of its chain (no NLM_F_APPEND, no position).
    fn insert_rule(&mut self, rule: Rule, what: &str) {
        let b = self.rule_body(&rule);
        self.push(NFT_MSG_NEWRULE, NLM_F_CREATE, &b, what.into());
    }

    /// NFT_MSG_DELRULE { NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE (u64, big-endian) }.
    fn delete_rule(&mut self, chain: &str, handle: u64) {
        let mut b = Vec::new();
        put_strz(&mut b, NFTA_RULE_TABLE, &self.table);
        put_strz(&mut b, NFTA_RULE_CHAIN, chain);
        put_attr(&mut b, NFTA_RULE_HANDLE, &handle.to_be_bytes());
        self.push(
            NFT_MSG_DELRULE,
            0,
            &b,
            format!("delete rule {chain} handle {handle}"),
        );
    }

    /// Frames the messages as one batch, sends it and waits for every ACK. Nothing to do is Ok.
    fn commit(self) -> Result<(), NftError> {
        if self.msgs.is_empty() {
            return Ok(());
        }
        // Sequence numbers: 0 for BATCH_BEGIN, i + 1 for message i, n + 1 for BATCH_END, so an
        // ACK's seq names the message it answers.
        let res_id = NFNL_SUBSYS_NFTABLES;
        let mut out = nl_message(NFNL_MSG_BATCH_BEGIN, 0, libc::AF_UNSPEC as u8, res_id, &[]);
        let mut whats = Vec::with_capacity(self.msgs.len());
        for (i, (mut msg, what)) in self.msgs.into_iter().enumerate() {
            msg[8..12].copy_from_slice(&(i as u32 + 1).to_ne_bytes());
            out.extend_from_slice(&msg);
            whats.push(what);
        }
        let n = whats.len() as u32;
        let mut end = nl_message(NFNL_MSG_BATCH_END, 0, libc::AF_UNSPEC as u8, res_id, &[]);
        end[8..12].copy_from_slice(&(n + 1).to_ne_bytes());
        out.extend_from_slice(&end);

        let sock = NlSocket::open()?;
        sock.size_buffers(out.len(), whats.len());
        sock.send(&out)?;

        let mut acked = vec![false; whats.len()];
        let mut remaining = whats.len();
        let mut buf = vec![0u8; 64 * 1024];
        while remaining > 0 {
            let len = sock.recv(&mut buf)?;
            for (h, m) in split_messages(&buf[..len])? {
                if h.ty != NLMSG_ERROR {
                    continue;
                }
                let (errno, detail) = parse_ack(&h, m)?;
                let idx = (h.seq as usize).checked_sub(1).filter(|&i| i < whats.len());
                if errno != 0 {
                    let op = match idx {
                        Some(i) => whats[i].clone(),
                        None => "batch".to_string(),
                    };
                    return Err(NftError::Kernel {
                        op,
                        source: io::Error::from_raw_os_error(errno),
                        detail,
                    });
                }
                if let Some(i) = idx {
                    if !acked[i] {
                        acked[i] = true;
                        remaining -= 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// (positive errno or 0, extended ACK text formatted for NftError::Kernel)
fn parse_ack(h: &NlHeader, m: &[u8]) -> Result<(i32, String), NftError> {
    let e = m
        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
        .ok_or_else(|| NftError::Protocol("truncated netlink ack".into()))?;
    let errno = i32::from_ne_bytes([e[0], e[1], e[2], e[3]]).abs();
    let mut detail = String::new();
    if errno != 0 && h.flags & NLM_F_ACK_TLVS != 0 {
        // nlmsgerr = error + the request's header, plus its payload unless capped.
        let orig = NLMSG_HDRLEN + 4;
        let tlv_start = if h.flags & NLM_F_CAPPED != 0 {
            orig + NLMSG_HDRLEN
        } else {
            m.get(orig..)
                .and_then(|b| nl_header(b).ok())
                .map_or(m.len(), |oh| orig + align4(oh.len))
        };
        if let Some(tlvs) = m.get(tlv_start..) {
            if let Some((_, msg)) = attrs(tlvs)
                .into_iter()
                .find(|(t, _)| *t == NLMSGERR_ATTR_MSG)
            {
                detail = format!(" ({})", strz(msg));
            }
        }
    }
    Ok((errno, detail))
}

struct RuleInfo {
    chain: String,
    handle: u64,
    tag: Option<String>,
}

/// Lists the rules of `table` (family ip), optionally of one chain. An absent table is empty.
fn dump_rules(table: &str, chain: Option<&str>) -> Result<Vec<RuleInfo>, NftError> {
    // A dump interrupted by a concurrent change (NLM_F_DUMP_INTR) may be inconsistent: retry.
    for _ in 0..10 {
        if let Some(rules) = dump_rules_once(table, chain)? {
            return Ok(rules);
        }
    }
    Err(NftError::Protocol(
        "rule dump kept being interrupted by concurrent changes".into(),
    ))
}

fn dump_rules_once(table: &str, chain: Option<&str>) -> Result<Option<Vec<RuleInfo>>, NftError> {
    let mut body = Vec::new();
    put_strz(&mut body, NFTA_RULE_TABLE, table);
    if let Some(c) = chain {
        put_strz(&mut body, NFTA_RULE_CHAIN, c);
    }
    let mut req = nl_message(
        NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE,
        NLM_F_DUMP,
        libc::NFPROTO_IPV4 as u8,
        0,
        &body,
    );
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let sock = NlSocket::open()?;
    sock.send(&req)?;

    let mut rules = Vec::new();
    let mut interrupted = false;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let len = sock.recv(&mut buf)?;
        for (h, m) in split_messages(&buf[..len])? {
            if h.flags & NLM_F_DUMP_INTR != 0 {
                interrupted = true;
            }
            match h.ty {
                NLMSG_DONE => {
                    // The DONE payload is the dump's final status.
                    let status = m
                        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                        .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]).abs());
                    return match status {
                        0 if interrupted => Ok(None),
                        0 | libc::ENOENT => Ok(Some(rules)),
                        e => Err(NftError::Kernel {
                            op: format!("list rules of table {table}"),
                            source: io::Error::from_raw_os_error(e),
                            detail: String::new(),
                        }),
                    };
                }
                NLMSG_ERROR => {
                    let (errno, detail) = parse_ack(&h, m)?;
                    return match errno {
                        0 | libc::ENOENT => Ok(Some(rules)),
                        e => Err(NftError::Kernel {
                            op: format!("list rules of table {table}"),
                            source: io::Error::from_raw_os_error(e),
                            detail,
                        }),
                    };
                }
                t if t == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE => {
                    let body = m.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or(&[]);
                    let (mut r_table, mut r) = (
                        String::new(),
                        RuleInfo {
                            chain: String::new(),
                            handle: 0,
                            tag: None,
                        },
                    );
                    for (ty, v) in attrs(body) {
                        match ty {
                            NFTA_RULE_TABLE => r_table = strz(v),
                            NFTA_RULE_CHAIN => r.chain = strz(v),
                            NFTA_RULE_HANDLE => {
                                if let Ok(b) = <[u8; 8]>::try_from(v) {
                                    r.handle = u64::from_be_bytes(b);
                                }
                            }
                            NFTA_RULE_USERDATA => r.tag = parse_comment(v),
                            _ => {}
                        }
                    }
                    if r_table == table && r.handle != 0 {
                        rules.push(r);
                    }
                }
                _ => {}
            }
            if h.flags & NLM_F_MULTI == 0 && h.ty != NLMSG_DONE {
                // A single-part answer other than an error is unexpected for a dump.
                return Err(NftError::Protocol(format!(
                    "unexpected netlink message type {} in rule dump",
                    h.ty
                )));
            }
        }
    }
}

/// A NETLINK_NETFILTER socket, one per call.
struct NlSocket(OwnedFd);

impl NlSocket {
    fn open() -> Result<Self, NftError> {
        let io_err = |op| NftError::Io {
            op,
            source: io::Error::last_os_error(),
        };
        // SAFETY: plain socket(2); the returned fd is owned by OwnedFd right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io_err("socket"));
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = NlSocket(unsafe { OwnedFd::from_raw_fd(fd) });
        // Errors carry the kernel's text; ACKs don't echo the whole request.
        sock.setsockopt(libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        sock.setsockopt(libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1);
        // Safety net only: the kernel answers synchronously while processing send().
        let tv = libc::timeval {
            tv_sec: 30,
            tv_usec: 0,
        };
        // SAFETY: valid fd, pointer to a live timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io_err("setsockopt SO_RCVTIMEO"));
        }
        Ok(sock)
    }

    fn setsockopt(&self, level: i32, opt: i32, val: i32) -> bool {
        // SAFETY: valid fd, pointer to a live int of the size passed.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                level,
                opt,
                &val as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as libc::socklen_t,
            ) == 0
        }
    }

    /// Big batches need room: the batch must go in one send(), and every message's ACK is
    /// queued (about 1 KiB of buffer each) before we get to read any of them.
    fn size_buffers(&self, batch_len: usize, messages: usize) {
        let snd = (batch_len + 64 * 1024).min(i32::MAX as usize) as i32;
        let rcv = (messages * 1024 + 256 * 1024).min(i32::MAX as usize) as i32;
        // FORCE ignores rmem_max/wmem_max but needs CAP_NET_ADMIN, which nftables needs anyway;
        // without it the plain option still raises the buffer up to the sysctl limit.
        if !self.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd) {
            self.setsockopt(libc::SOL_SOCKET, libc::SO_SNDBUF, snd);
        }
        if !self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv) {
            self.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, rcv);
        }
    }

    fn send(&self, buf: &[u8]) -> Result<(), NftError> {
        // SAFETY: an all-zero sockaddr_nl is valid; nl_pid 0 addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd, buffer and address with their real lengths.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(NftError::Io {
                op: "send",
                source: io::Error::last_os_error(),
            });
        }
        if n as usize != buf.len() {
            return Err(NftError::Protocol(format!(
                "short netlink send ({n} of {} bytes)",
                buf.len()
            )));
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, NftError> {
        loop {
            // SAFETY: valid fd and buffer with its real length.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NftError::Io {
                    op: "receive",
                    source: e,
                });
            }
            let n = n as usize;
            if n > buf.len() {
                return Err(NftError::Protocol(format!(
                    "netlink message of {n} bytes truncated"
                )));
            }
            if n == 0 {
                return Err(NftError::Protocol("netlink socket closed".into()));
            }
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn suffix() -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let x = std::process::id()
            .wrapping_mul(2_654_435_761)
            .wrapping_add(nanos)
            .wrapping_add(N.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
        format!("{:06x}", x & 0xff_ffff)
    }

    /// Deletes the test's table however the test ends.
    struct TableGuard(Firewall);

    impl TableGuard {
        fn new() -> Self {
            TableGuard(Firewall::new(&format!("berth-t{}", suffix())))
        }
    }

    impl Drop for TableGuard {
        fn drop(&mut self) {
            if let Err(e) = self.0.delete_table() {
                eprintln!("cleanup of table {}: {e}", self.0.table);
            }
        }
    }

    impl std::ops::Deref for TableGuard {
        type Target = Firewall;
        fn deref(&self) -> &Firewall {
            &self.0
        }
    }

    fn nft_json(table: &str) -> Option<Value> {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "ip", table])
            .output()
            .expect("run nft");
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("nft json"))
    }

    fn items<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
        v["nftables"]
            .as_array()
            .expect("nftables array")
            .iter()
            .filter_map(|i| i.get(kind))
            .collect()
    }

    /// (chain, comment, expr) of every rule, in list order.
    fn rules(table: &str) -> Vec<(String, String, Value)> {
        let v = nft_json(table).expect("table exists");
        items(&v, "rule")
            .into_iter()
            .map(|r| {
                (
                    r["chain"].as_str().unwrap_or_default().to_string(),
                    r["comment"].as_str().unwrap_or_default().to_string(),
                    r["expr"].clone(),
                )
            })
            .collect()
    }

    fn count(rs: &[(String, String, Value)], chain: &str, comment: &str) -> usize {
        rs.iter()
            .filter(|(c, t, _)| c == chain && t == comment)
            .count()
    }

    fn net(bridge: &str, third: u8, internal: bool) -> NetRules {
        NetRules {
            bridge: bridge.into(),
            subnet: Ipv4Addr::new(10, 213, third, 7),
            prefix: 24,
            internal,
        }
    }

    #[test]
    fn comment_roundtrip() {
        let u = comment_udata("berth:port:abc");
        assert_eq!(u[0], 0);
        assert_eq!(u[1] as usize, "berth:port:abc".len() + 1);
        assert_eq!(parse_comment(&u).as_deref(), Some("berth:port:abc"));
        // Other TLVs before the comment are skipped.
        let mut v = vec![1, 2, 9, 9];
        v.extend_from_slice(&u);
        assert_eq!(parse_comment(&v).as_deref(), Some("berth:port:abc"));
        assert_eq!(parse_comment(&[0, 10, 1]), None);
    }

    #[test]
    fn expression_encoding() {
        let nla = |len: u16, ty: u16| [len.to_ne_bytes(), ty.to_ne_bytes()].concat();
        let mut want = nla(36, NFTA_LIST_ELEM | NLA_F_NESTED);
        want.extend(nla(9, NFTA_EXPR_NAME));
        want.extend(b"meta\0\0\0\0");
        want.extend(nla(20, NFTA_EXPR_DATA | NLA_F_NESTED));
        // nf_tables u32 attributes are big-endian, whatever the host.
        want.extend(nla(8, NFTA_META_DREG));
        want.extend([0, 0, 0, 1]);
        want.extend(nla(8, NFTA_META_KEY));
        want.extend([0, 0, 0, 7]);
        assert_eq!(Rule::new("c", "t").meta(NFT_META_OIFNAME).exprs, want);

        // An expression without attributes still carries an (empty) NFTA_EXPR_DATA.
        let masq = Rule::new("c", "t").masq().exprs;
        assert_eq!(masq.len(), 4 + 12 + 4);
        assert_eq!(&masq[16..], &nla(4, NFTA_EXPR_DATA | NLA_F_NESTED)[..]);
    }

    #[test]
    fn ensure_is_idempotent() {
        let fw = TableGuard::new();
        fw.ensure().unwrap();
        fw.ensure().unwrap();
        let v = nft_json(fw.table()).unwrap();
        let chains = items(&v, "chain");
        assert_eq!(chains.len(), 6);
        let chain = |n: &str| {
            *chains
                .iter()
                .find(|c| c["name"] == n)
                .unwrap_or_else(|| panic!("chain {n}"))
        };
        let pre = chain("prerouting");
        assert_eq!(
            (pre["type"].as_str(), pre["hook"].as_str()),
            (Some("nat"), Some("prerouting"))
        );
        assert_eq!(pre["prio"], -100);
        assert_eq!(chain("output")["hook"], "output");
        assert_eq!(chain("output")["prio"], -100);
        assert_eq!(chain("postrouting")["prio"], 100);
        let fwd = chain("forward");
        assert_eq!(
            (fwd["type"].as_str(), fwd["prio"].as_i64()),
            (Some("filter"), Some(0))
        );
        assert_eq!(fwd["policy"], "accept");
        assert!(chain("ports").get("hook").is_none());
        assert!(chain("isolation").get("hook").is_none());

        let rs = rules(fw.table());
        assert_eq!(rs.len(), 2, "{rs:?}");
        let (c, tag, expr) = &rs.iter().find(|r| r.0 == "prerouting").unwrap();
        assert_eq!((c.as_str(), tag.as_str()), ("prerouting", TAG_BASE));
        assert_eq!(
            expr,
            &serde_json::json!([
                {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
                {"jump": {"target": "ports"}}
            ])
        );
        let (_, tag, expr) = &rs.iter().find(|r| r.0 == "output").unwrap();
        assert_eq!(tag, TAG_BASE);
        assert_eq!(
            expr,
            &serde_json::json!([
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "lo"}},
                {"jump": {"target": "ports"}}
            ])
        );
        // Deleting an absent table is fine, twice.
        fw.delete_table().unwrap();
        fw.delete_table().unwrap();
        assert!(nft_json(fw.table()).is_none());
    }

    #[test]
    fn networks_add_and_remove_exactly_their_rules() {
        let fw = TableGuard::new();
        fw.ensure().unwrap();
        let (a, b) = (format!("bta{}", suffix()), format!("btb{}", suffix()));
        let (ta, tb) = (format!("{TAG_NET}{a}"), format!("{TAG_NET}{b}"));
        fw.add_network(&net(&a, 1, false)).unwrap();
        fw.add_network(&net(&b, 2, true)).unwrap();
        // Re-adding replaces instead of duplicating.
        fw.add_network(&net(&a, 1, false)).unwrap();
        fw.ensure().unwrap();

        let rs = rules(fw.table());
        let expect_a = [
            ("prerouting", 1),
            ("postrouting", 2),
            ("forward", 2),
            ("isolation", 1),
        ];
        let expect_b = [
            ("prerouting", 1),
            ("postrouting", 1),
            ("forward", 4),
            ("isolation", 1),
        ];
        for (chain, n) in expect_a {
            assert_eq!(count(&rs, chain, &ta), n, "{chain} of {a}: {rs:#?}");
        }
        for (chain, n) in expect_b {
            assert_eq!(count(&rs, chain, &tb), n, "{chain} of {b}: {rs:#?}");
        }
        assert_eq!(rs.len(), 2 + 6 + 7);
        // The fib rule stays last in prerouting, after the per-bridge returns.
        let pre: Vec<_> = rs.iter().filter(|r| r.0 == "prerouting").collect();
        assert_eq!(pre.last().unwrap().1, TAG_BASE);
        assert_eq!(pre[0].2[1], serde_json::json!({"return": null}));
        // Masquerade of a's subnet (host bits dropped), not out of its own bridge.
        let masq = rs
            .iter()
            .find(|r| {
                r.0 == "postrouting" && r.1 == ta && r.2[0]["match"]["left"]["payload"].is_object()
            })
            .expect("subnet masquerade rule");
        assert_eq!(
            masq.2,
            serde_json::json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                           "right": {"prefix": {"addr": "10.213.1.0", "len": 24}}}},
                {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": a}},
                {"masquerade": null}
            ])
        );
        let iso = rs.iter().find(|r| r.0 == "isolation" && r.1 == tb).unwrap();
        assert_eq!(
            iso.2,
            serde_json::json!([
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": b}},
                {"drop": null}
            ])
        );

        fw.remove_network(&a).unwrap();
        let rs = rules(fw.table());
        assert!(rs.iter().all(|r| r.1 != ta), "{rs:#?}");
        assert_eq!(rs.len(), 2 + 7);
        fw.remove_network(&a).unwrap();
        fw.remove_network(&b).unwrap();
        let rs = rules(fw.table());
        assert_eq!(
            rs.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            [TAG_BASE; 2]
        );
    }

    #[test]
    fn ports_by_owner() {
        let fw = TableGuard::new();
        fw.ensure().unwrap();
        assert!(fw.port_owners().unwrap().is_empty());
        let c1 = "c1".repeat(32); // a 64-char container id
        let p = |proto, host_ip, host_port, cport| PortRule {
            proto,
            host_ip,
            host_port,
            container_ip: Ipv4Addr::new(10, 213, 9, 2),
            container_port: cport,
        };
        let c1_ports = [
            p(Proto::Tcp, None, 18080, 80),
            p(Proto::Udp, Some(Ipv4Addr::LOCALHOST), 15353, 53),
        ];
        fw.add_ports(&c1, &c1_ports).unwrap();
        fw.add_ports(
            "c2",
            &[p(Proto::Tcp, Some(Ipv4Addr::UNSPECIFIED), 18081, 8080)],
        )
        .unwrap();
        fw.add_ports(&c1, &c1_ports).unwrap();
        fw.add_ports("c3", &[]).unwrap();

        let rs = rules(fw.table());
        let t1 = format!("{TAG_PORT}{c1}");
        assert_eq!(count(&rs, "ports", &t1), 2, "{rs:#?}");
        assert_eq!(count(&rs, "ports", "berth:port:c2"), 1);
        assert_eq!(rs.iter().filter(|r| r.0 == "ports").count(), 3);
        assert_eq!(
            fw.port_owners().unwrap(),
            vec![c1.clone(), "c2".to_string()]
        );

        let tcp = rs
            .iter()
            .find(|r| r.1 == t1 && r.2.to_string().contains("tcp"))
            .unwrap();
        assert_eq!(
            tcp.2,
            serde_json::json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 18080}},
                {"dnat": {"addr": "10.213.9.2", "port": 80}}
            ])
        );
        let udp = rs
            .iter()
            .find(|r| r.1 == t1 && r.2.to_string().contains("udp"))
            .unwrap();
        assert_eq!(
            udp.2,
            serde_json::json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "127.0.0.1"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 15353}},
                {"dnat": {"addr": "10.213.9.2", "port": 53}}
            ])
        );

        fw.remove_ports(&c1).unwrap();
        fw.remove_ports("nobody").unwrap();
        assert_eq!(fw.port_owners().unwrap(), vec!["c2".to_string()]);
        let rs = rules(fw.table());
        assert_eq!(rs.iter().filter(|r| r.0 == "ports").count(), 1);
        assert_eq!(rs.len(), 3);
    }

    #[test]
    fn absent_table_and_bad_input() {
        let fw = Firewall::new(&format!("berth-t{}", suffix()));
        assert!(fw.port_owners().unwrap().is_empty());
        fw.remove_ports("x").unwrap();
        fw.remove_network("br-x").unwrap();
        fw.delete_table().unwrap();
        // Adding without ensure() fails cleanly, naming the message.
        let err = fw.add_ports(
            "x",
            &[PortRule {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 1,
                container_ip: Ipv4Addr::new(10, 0, 0, 1),
                container_port: 1,
            }],
        );
        match err {
            Err(e @ NftError::Kernel { .. }) => {
                assert_eq!(e.errno(), Some(libc::ENOENT));
                assert!(e.to_string().contains("add rule ports"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(nft_json(fw.table()).is_none());

        let bad = [
            NetRules {
                bridge: "x".repeat(16),
                ..net("b", 1, false)
            },
            NetRules {
                bridge: String::new(),
                ..net("b", 1, false)
            },
            NetRules {
                prefix: 33,
                ..net("b", 1, false)
            },
        ];
        for n in &bad {
            assert!(
                matches!(fw.add_network(n), Err(NftError::InvalidArgument(_))),
                "{n:?}"
            );
        }
        assert!(matches!(
            fw.add_ports(&"x".repeat(200), &[]),
            Err(NftError::InvalidArgument(_))
        ));
        assert!(matches!(
            Firewall::new("").ensure(),
            Err(NftError::InvalidArgument(_))
        ));
    }

    /// Two private network namespaces joined by a veth pair; deleted (with the table inside
    /// n1 and the veths) on drop.
    struct NetnsPair {
        n1: String,
        n2: String,
    }

    impl Drop for NetnsPair {
        fn drop(&mut self) {
            for n in [&self.n1, &self.n2] {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
        }
    }

    fn ip(args: &[&str]) {
        let st = Command::new("ip").args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?}");
    }

    /// Runs `f` on a thread inside netns `ns`; sockets it creates stay in that namespace.
    fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: valid fd; affects only this short-lived thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    }

    /// Runs a Firewall call on table "berth" inside netns `ns` (private, so the name is safe).
    fn fw_in(ns: &str, f: impl FnOnce(&Firewall) -> Result<(), NftError> + Send + 'static) {
        in_netns(ns, move || f(&Firewall::new("berth"))).unwrap();
    }

    fn connect(ns: &str, addr: std::net::SocketAddr) -> io::Result<std::net::TcpStream> {
        in_netns(ns, move || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
        })
    }

    /// Real packets, inside two private netns (no sysctl, no forwarding): the output path
    /// (host-local client -> DNAT to a "container" in the other netns) and the prerouting path
    /// (fib daddr local; DNAT to a local listener), and that `iifname BR return` sits before it.
    #[test]
    fn dnat_traffic_in_netns() {
        let s = suffix();
        let pair = NetnsPair {
            n1: format!("btn1-{s}"),
            n2: format!("btn2-{s}"),
        };
        let (v1, v2) = (format!("btv1{s}"), format!("btv2{s}"));
        ip(&["netns", "add", &pair.n1]);
        ip(&["netns", "add", &pair.n2]);
        ip(&[
            "-n", &pair.n1, "link", "add", &v1, "type", "veth", "peer", "name", &v2, "netns",
            &pair.n2,
        ]);
        ip(&["-n", &pair.n1, "addr", "add", "10.213.77.1/24", "dev", &v1]);
        ip(&["-n", &pair.n2, "addr", "add", "10.213.77.2/24", "dev", &v2]);
        for (ns, dev) in [
            (&pair.n1, v1.as_str()),
            (&pair.n1, "lo"),
            (&pair.n2, v2.as_str()),
            (&pair.n2, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        let h1 = Ipv4Addr::new(10, 213, 77, 1);
        let h2 = Ipv4Addr::new(10, 213, 77, 2);
        let container = in_netns(&pair.n2, move || {
            std::net::TcpListener::bind((h2, 8000)).unwrap()
        });
        let local = in_netns(&pair.n1, move || {
            std::net::TcpListener::bind((h1, 8001)).unwrap()
        });

        fw_in(&pair.n1, |fw| fw.ensure());
        fw_in(&pair.n1, move |fw| {
            fw.add_ports(
                "c",
                &[
                    PortRule {
                        proto: Proto::Tcp,
                        host_ip: None,
                        host_port: 9000,
                        container_ip: h2,
                        container_port: 8000,
                    },
                    PortRule {
                        proto: Proto::Tcp,
                        host_ip: Some(h1),
                        host_port: 9001,
                        container_ip: h1,
                        container_port: 8001,
                    },
                ],
            )
        });

        // Output path: n1 connects to its own address, lands on the "container" in n2.
        let c = connect(&pair.n1, (h1, 9000).into()).expect("output-path DNAT");
        let (srv, _) = container.accept().unwrap();
        assert_eq!(srv.local_addr().unwrap(), (h2, 8000).into());
        assert_eq!(c.peer_addr().unwrap(), (h1, 9000).into());
        // Prerouting path: n2 connects to n1's address.
        connect(&pair.n2, (h1, 9001).into()).expect("prerouting DNAT");
        let (srv, _) = local.accept().unwrap();
        assert_eq!(srv.local_addr().unwrap(), (h1, 8001).into());

        // Traffic coming in from a berth bridge is not DNATed: nothing listens on 9001.
        let br = v1.clone();
        fw_in(&pair.n1, move |fw| {
            fw.add_network(&NetRules {
                bridge: br,
                subnet: h1,
                prefix: 24,
                internal: false,
            })
        });
        let e = connect(&pair.n2, (h1, 9001).into()).expect_err("bridge traffic must skip DNAT");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        fw_in(&pair.n1, move |fw| fw.remove_network(&v1));
        connect(&pair.n2, (h1, 9001).into()).expect("DNAT again after remove_network");
        local.accept().unwrap();

        fw_in(&pair.n1, |fw| fw.remove_ports("c"));
        let e = connect(&pair.n1, (h1, 9000).into()).expect_err("ports removed");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
