//! A minimal rtnetlink (NETLINK_ROUTE) client: reads the links, IPv4 addresses, neighbours and
//! route decisions and tc filters of one network namespace, and changes nothing but what tracer
//! added itself.
//!
//! A netlink socket stays bound to the namespace it was created in, so callers open a
//! [`RouteSocket`] while inside a namespace (with [`crate::netns::NetnsGuard::enter`]) and may
//! use it afterwards from anywhere. Only GET requests are encoded, and two changes, each only
//! of what tracer added: deleting the `clsact` qdisc it created, and deleting one IPv4
//! neighbour entry its probes created; anything else is refused before it reaches the kernel.
//!
//! An [`EventSocket`] only listens: it joins rtnetlink's multicast groups (links, neighbours,
//! IPv4 addresses and routes) and is told of every change in its namespace, so that tracer
//! wakes when something changes instead of asking again and again. It never sends.
//!
//! The parsers are pure, bounds-checked functions over `&[u8]`: malformed input becomes an
//! `InvalidData` error, never a panic.
//!
//! The module is split by job: `socket` sends requests and gathers answers, `events`
//! listens to multicast groups, `codec` encodes requests and splits datagrams into messages
//! and attributes, `decode` turns message payloads into typed values, and `names` holds the
//! kernel's state names as `ip` prints them.

pub(crate) mod codec;
mod decode;
mod events;
mod names;
mod socket;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use serde::Serialize;
pub use tracer_evidence::{Link, RouteLookup};

pub(crate) use self::socket::open_netlink;
pub use self::{
    decode::parse_datagram_for_fuzzing,
    events::{EventSocket, Group, Notification},
    socket::RouteSocket,
};

/// One BPF filter of a `clsact` qdisc (tc's classic attachment, before tcx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfFilter {
    /// Lower runs first.
    pub priority: u16,
    pub program_id: u32,
    /// The name tc gave the filter (usually the object file and section).
    pub name: Option<String>,
}

/// A hook of a `clsact` qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClsactHook {
    Ingress,
    Egress,
}

/// One IPv4 address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub ifindex: u32,
    /// The local address (`IFA_LOCAL`, falling back to `IFA_ADDRESS`).
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// One IPv4 neighbour (ARP) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub ifindex: u32,
    pub address: Ipv4Addr,
    /// NUD state names as `ip neigh` prints them ("REACHABLE", "STALE", "FAILED", "NONE", …),
    /// separated by spaces when several bits are set.
    pub state: String,
    /// `NDA_LLADDR` when six bytes long; absent for INCOMPLETE and FAILED entries.
    pub mac: Option<[u8; 6]>,
}
