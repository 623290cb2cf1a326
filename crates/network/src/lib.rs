//! berth networks: address management (IPAM), persistent network namespaces, bridge and veth
//! links over rtnetlink, nftables NAT and published ports, and the embedded DNS server.
//!
//! Everything runs inside the daemon's process: nothing is spawned per container.

pub mod dns;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;
