//! The classifier's answer: a class, a side, what was found with the things to change named,
//! and the facts it rests on. Typed only: the renderers write the sentences.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::counters::DropCount;
use crate::facts::{
    AttachedProgram, DropEvidence, Evidence, Hop, Link, MtuProbe, NeighbourEvidence,
    NetfilterEvidence, NetfilterLocation, ProbeEvidence, ProbeKind, RouteLookup, Side, Sysctl,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictClass {
    Ok,
    Cable,
    Neighbour,
    Netfilter,
    Route,
    Interface,
    Unknown,
    /// Frames larger than a hop's MTU die there: the MTUs along the path differ.
    Mtu,
    /// A BPF program another tool attached to a port consumed the probes.
    Program,
}

impl VerdictClass {
    /// Exit codes are part of the interface: scripts depend on them.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Cable => 10,
            Self::Neighbour => 11,
            Self::Netfilter => 12,
            Self::Route => 13,
            Self::Interface => 14,
            Self::Unknown => 15,
            Self::Mtu => 16,
            Self::Program => 17,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Cable => "cable",
            Self::Neighbour => "neighbour",
            Self::Netfilter => "netfilter",
            Self::Route => "route",
            Self::Interface => "interface",
            Self::Unknown => "unknown",
            Self::Mtu => "mtu",
            Self::Program => "program",
        }
    }
}

/// A port, by where it is expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRef {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub interface: String,
}

/// What the classifier found, with the things to change named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Every probe was answered (a RST from a port nobody listens on included).
    PathWorks {
        target_ip: String,
        port: u16,
        /// Whether a listener accepted on the port; `None` when TCP was not probed.
        listening: Option<bool>,
    },
    NamespaceMissing {
        port: PortRef,
        /// Namespaces holding an interface of the port's name ("" for tracer's own).
        found_elsewhere: Vec<String>,
    },
    InterfaceMissing {
        port: PortRef,
        found_elsewhere: Vec<String>,
    },
    InterfaceDown {
        port: PortRef,
        operstate: String,
    },
    NoRoute {
        port: PortRef,
        destination: Ipv4Addr,
        message: String,
    },
    RouteByOtherInterface {
        port: PortRef,
        destination: Ipv4Addr,
        /// The interface the route leaves by, when it has a name.
        via: Option<String>,
    },
    NetfilterDrop {
        location: NetfilterLocation,
        /// Packets the kernel reported dropped by netfilter while probing.
        dropped: u64,
    },
    ProgramTakesProbes {
        port: PortRef,
        /// "xdp", "tc ingress" or "tc egress".
        hook: String,
        programs: Vec<AttachedProgram>,
    },
    NoCarrier {
        ports: Vec<PortRef>,
    },
    FramesLost {
        probe: ProbeKind,
        from: PortRef,
        to: PortRef,
        left: u64,
        arrived: u64,
    },
    ArpUnanswered {
        port: PortRef,
        target_ip: String,
        owns_address: bool,
        /// ARP sysctls of the port with values that make it stay silent.
        sysctls: Vec<Sysctl>,
    },
    /// The initiator's neighbour entry for the target's address points at a MAC the target
    /// port does not have: frames arrive and are dropped as not for this host.
    NeighbourMismatch {
        port: PortRef,
        address: Ipv4Addr,
        entry_mac: String,
        entry_state: String,
        target_mac: String,
    },
    /// Reverse-path filtering drops what arrives: the route back to the sender leaves by
    /// another interface.
    ReversePathFilter {
        port: PortRef,
        sysctl: Sysctl,
        source: Ipv4Addr,
        /// The interface the route back leaves by.
        route_via: Option<String>,
    },
    /// A hop between two veth peers does not pass frames on.
    HopBroken {
        hop: Hop,
        problem: HopProblem,
    },
    /// Frames larger than a hop's MTU die there.
    MtuMismatch {
        from: PortRef,
        from_mtu: u32,
        to: PortRef,
        to_mtu: u32,
        /// Where the oversize frames die, and its MTU.
        dropping: PortRef,
        dropping_mtu: u32,
        /// The packet size that did not pass.
        size: u32,
    },
    /// A port had no carrier while frames were sent, and got it only later.
    CarrierLate {
        port: PortRef,
        /// Frames that left while it had no carrier.
        frames_without_carrier: u64,
        /// Milliseconds from the first of them to carrier up; `None` if it never came.
        carrier_after_ms: Option<u64>,
    },
    UnexplainedDrop {
        drop: DropCount,
    },
    /// Probes went unanswered and the kernel reported no drop for them.
    Unanswered,
    /// No ARP, ICMP or port traffic crossed the ports (a watched command that sent nothing):
    /// nothing shows the path working or failing.
    NothingObserved,
}

/// Why a hop does not pass frames on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HopProblem {
    /// The veth peer is not a port of the bridge the other peer is in.
    NotInBridge {
        bridge: String,
    },
    /// The two peers are ports of different bridges.
    DifferentBridges {
        bridge: String,
        other: String,
    },
    Down,
    NoCarrier,
    /// A bridge port whose STP state is not forwarding.
    NotForwarding {
        state: String,
    },
}

/// One fact a verdict rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// Where one probe's packets were seen.
    Probe {
        probe: ProbeEvidence,
    },
    Drop {
        drop: DropEvidence,
    },
    Rule {
        rule: NetfilterEvidence,
    },
    Neighbour {
        neighbour: NeighbourEvidence,
    },
    Program {
        port: PortRef,
        program: AttachedProgram,
    },
    Link {
        port: PortRef,
        link: Link,
    },
    Addresses {
        port: PortRef,
        addresses: Vec<String>,
    },
    RouteLookup {
        port: PortRef,
        destination: Ipv4Addr,
        lookup: RouteLookup,
        via: Option<String>,
    },
    NoNamespace {
        netns: String,
    },
    NoInterface {
        port: PortRef,
    },
    CarrierOnBoth {
        initiator: String,
        target: String,
    },
    Sysctl {
        port: PortRef,
        sysctl: Sysctl,
    },
    Hop {
        hop: Hop,
    },
    Mtu {
        probe: MtuProbe,
    },
    /// Interfaces beside a port with an address in its subnet.
    SameSubnet {
        port: PortRef,
        interfaces: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub class: VerdictClass,
    pub side: Side,
    pub finding: Finding,
    /// The facts the verdict rests on, most telling first.
    pub facts: Vec<Fact>,
}

impl Verdict {
    pub(crate) fn new(class: VerdictClass, side: Side, finding: Finding) -> Self {
        Self {
            class,
            side,
            finding,
            facts: Vec::new(),
        }
    }

    pub(crate) fn because(mut self, fact: Fact) -> Self {
        self.facts.push(fact);
        self
    }

    pub(crate) fn because_all(mut self, facts: impl IntoIterator<Item = Fact>) -> Self {
        self.facts.extend(facts);
        self
    }

    /// Where netfilter dropped, for a netfilter verdict.
    pub fn netfilter(&self) -> Option<&NetfilterLocation> {
        match &self.finding {
            Finding::NetfilterDrop { location, .. } => Some(location),
            _ => None,
        }
    }

    /// A stable one-line signature a bot can match across runs: class and where.
    pub fn signature(&self, evidence: &Evidence) -> String {
        let place = match self.netfilter() {
            Some(nf) => format!(
                "{}:{}/{}/{}",
                display_netns(&nf.netns),
                nf.family,
                nf.table,
                nf.chain
            ),
            None => match self.side {
                Side::Initiator => evidence.initiator.spec(),
                Side::Target => evidence.target.spec(),
                Side::Wire => format!(
                    "{}<->{}",
                    evidence.initiator.interface, evidence.target.interface
                ),
                Side::None => "-".to_owned(),
            },
        };
        format!("tracer:{}:{}", self.class.name(), place.replace(' ', "_"))
    }
}

/// A namespace's name for people and signatures: tracer's own (the empty name) is `(own)`.
pub fn display_netns(netns: &str) -> &str {
    if netns.is_empty() { "(own)" } else { netns }
}
