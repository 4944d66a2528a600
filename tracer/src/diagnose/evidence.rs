//! What diagnose gathers: plain data, no I/O. The classifier reads only this.

use std::net::Ipv4Addr;

use serde::Serialize;

use crate::{
    collect::programs::AttachedProgram,
    evidence::{CountersReport, DropCount},
    netlink::{Link, RouteLookup},
    netns,
    probes::ProbeOutcome,
};

/// Which end something belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Initiator,
    Target,
    /// Between the two ports: the cable.
    Wire,
    None,
}

/// Where a port was looked for, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortEvidence {
    pub side: Side,
    /// Namespace name from the spec; empty for tracer's own.
    pub netns: String,
    pub interface: String,
    pub netns_exists: bool,
    /// The interface in its expected namespace, when it is there.
    pub link: Option<Link>,
    /// Other namespaces holding an interface of that name (empty name: tracer's own).
    pub found_elsewhere: Vec<String>,
    /// IPv4 addresses on the interface, as ADDR/LEN.
    pub addresses: Vec<String>,
    /// Programs other tools attached to the port (tracer's own left out), in running order.
    pub programs: Vec<AttachedProgram>,
}

impl PortEvidence {
    /// As a port spec: NETNS/IFNAME, or IFNAME in tracer's own namespace.
    pub fn spec(&self) -> String {
        if self.netns.is_empty() {
            self.interface.clone()
        } else {
            format!("{}/{}", self.netns, self.interface)
        }
    }

    pub fn label(&self) -> String {
        if self.netns.is_empty() {
            self.interface.clone()
        } else {
            format!("{} (namespace {})", self.interface, self.netns)
        }
    }
}

/// A route lookup from one side's namespace towards the other side's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEvidence {
    pub from: Side,
    pub destination: Ipv4Addr,
    pub lookup: RouteLookup,
    /// The interface the route leaves by, by name.
    pub via_interface: Option<String>,
    /// Whether that is the side's watched port.
    pub via_port: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// ARP requests for the target address, sent on the initiator port.
    Arp,
    /// ICMP echo, initiator to target.
    IcmpForward,
    /// ICMP echo, target to initiator.
    IcmpReverse,
    /// TCP connects to the target's port.
    Tcp,
}

impl ProbeKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Arp => "ARP request",
            Self::IcmpForward => "ICMP echo initiator -> target",
            Self::IcmpReverse => "ICMP echo target -> initiator",
            Self::Tcp => "TCP connect",
        }
    }
}

/// One kind of probe and where its packets were seen: the request leaving its origin port,
/// arriving at the peer port, the answer leaving the peer port, arriving back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeEvidence {
    pub kind: ProbeKind,
    pub from: Side,
    pub outcome: ProbeOutcome,
    /// Why it was not sent, when it was not.
    pub skipped: Option<String>,
    pub left_origin: u64,
    pub reached_peer: u64,
    pub answer_left_peer: u64,
    pub answer_reached_origin: u64,
}

impl ProbeEvidence {
    /// Probes that got an answer: a reply, or for TCP a RST (the path works either way).
    pub fn answers(&self) -> u32 {
        self.outcome.answered + self.outcome.refused
    }

    pub fn fully_answered(&self) -> bool {
        self.skipped.is_none()
            && self.outcome.error.is_none()
            && self.outcome.sent > 0
            && self.answers() >= self.outcome.sent
    }
}

/// A kernel drop during the probes, in one of the two namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropEvidence {
    pub side: Side,
    #[serde(flatten)]
    pub drop: DropCount,
}

/// Where netfilter dropped packets during the probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetfilterLocation {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    /// nft family: ip, ip6, inet, arp, bridge, netdev.
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The rule's text as the user's tool prints it; empty when no single rule could be named.
    pub rule: String,
}

/// A rule (or chain policy) in one of the two namespaces that dropped packets while probing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetfilterEvidence {
    pub side: Side,
    /// The tool that owns the rule: iptables-nft, iptables-legacy, arptables-nft, nft, …
    pub backend: String,
    #[serde(flatten)]
    pub location: NetfilterLocation,
    /// Packets its counter gained while probing (0 when it has no counter).
    pub packets: u64,
    /// How the rule was found: "counter" (its counter grew), "policy" (the chain's drop policy
    /// counter grew), or "candidate" (a dropping rule without a counter where the kernel
    /// reported netfilter drops; several candidates are listed when no single one fits).
    pub rule_found_by: String,
}

impl NetfilterEvidence {
    /// One line for people: who, where, which rule, how it was found.
    pub fn describe(&self) -> String {
        let location = &self.location;
        let netns = netns::display_name(&location.netns);
        let rule = if location.rule.is_empty() {
            String::new()
        } else {
            format!(", rule `{}`", location.rule)
        };
        let packets = if self.packets > 0 {
            format!(", {} packets", self.packets)
        } else {
            String::new()
        };
        format!(
            "{} in {netns}: {} table {} chain {}{rule} [{}{packets}]",
            self.backend, location.family, location.table, location.chain, self.rule_found_by
        )
    }
}

/// A neighbour entry for the peer's address, before and after the probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighbourEvidence {
    pub side: Side,
    pub netns: String,
    pub address: Ipv4Addr,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Environment {
    pub kernel: String,
    pub tracer_version: String,
    pub initiator_ip: String,
    pub target_ip: String,
    pub port: u16,
    /// Probes or sources that could not be used, and why.
    pub limitations: Vec<String>,
}

/// Everything diagnose knows when it classifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub initiator: PortEvidence,
    pub target: PortEvidence,
    pub routes: Vec<RouteEvidence>,
    pub probes: Vec<ProbeEvidence>,
    pub drops: Vec<DropEvidence>,
    pub netfilter: Vec<NetfilterEvidence>,
    pub neighbours: Vec<NeighbourEvidence>,
    pub counters: Option<CountersReport>,
    pub environment: Environment,
}
