//! What diagnose and watch gather: plain data. The classifier reads only this.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    cables::CableMap,
    counters::{CountersReport, DropCount},
    windows::Windows,
};

/// One network interface, as `ip link` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `IFF_UP`: the administrator set the link up.
    pub admin_up: bool,
    /// `IFLA_CARRIER`, or `IFF_LOWER_UP` when the kernel does not send it. Some drivers keep
    /// carrier on while the link is administratively down (`ip link` then shows no LOWER_UP).
    pub carrier: bool,
    /// Lower-case RFC 2863 name from `IFLA_OPERSTATE` ("unknown", "notpresent", "down",
    /// "lowerlayerdown", "testing", "dormant", "up"); the number for values beyond those.
    pub operstate: String,
    /// `IFLA_ADDRESS` when it is six bytes long (Ethernet-like links, loopback included).
    pub mac: Option<[u8; 6]>,
    /// `IFLA_LINKINFO` → `IFLA_INFO_KIND`, e.g. "veth"; `None` for physical ports and `lo`.
    pub kind: Option<String>,
    /// `IFLA_XDP` → `IFLA_XDP_PROG_ID`: the XDP program attached, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_program: Option<u32>,
    /// `IFLA_MTU`.
    #[serde(default)]
    pub mtu: u32,
    /// `IFLA_LINK`: for a veth, its peer's index (in the peer's namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_ifindex: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer's namespace, by its id in this link's namespace; `None`
    /// when the peer is in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_netnsid: Option<i32>,
    /// `IFLA_MASTER`: the bridge (or bond) this is a port of, by index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<u32>,
    /// For a bridge port, its STP state: "disabled", "listening", "learning", "forwarding",
    /// "blocking".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_port_state: Option<String>,
    /// `IFLA_CARRIER_UP_COUNT` and `IFLA_CARRIER_DOWN_COUNT`: carrier changes since the device
    /// appeared, so that a flapping port shows between two looks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_up_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_down_count: Option<u32>,
}

/// The kernel's answer to "where would a packet to this address go", like `ip route get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RouteLookup {
    Via {
        /// Output interface index.
        oif: u32,
        /// Next hop, when the destination is not on a directly connected network.
        gateway: Option<IpAddr>,
        /// Preferred source address.
        source: Option<IpAddr>,
    },
    /// The kernel refused the lookup.
    Unreachable {
        /// Positive errno, e.g. ENETUNREACH.
        errno: i32,
        /// What `strerror` says about it, e.g. "Network is unreachable".
        message: String,
    },
}

/// What one kind of exchange achieved: for diagnose, its probes' answers; for watch, what the
/// test's own traffic got back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeOutcome {
    pub sent: u32,
    pub answered: u32,
    /// ICMP destination-unreachable answers to the requests.
    pub unreachable: u32,
    /// For TCP: connects that met a RST (the path works, nothing listens).
    pub refused: u32,
    /// Why sending failed, when it did (e.g. "Network is unreachable").
    pub error: Option<String>,
}

/// A BPF program another tool attached to a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedProgram {
    /// The kernel's program id (`bpftool prog show id ID`).
    pub id: u32,
    /// The program's name as the kernel keeps it (at most 15 characters).
    pub name: String,
    /// "xdp", "tc ingress" or "tc egress".
    pub hook: String,
    /// How it is attached: "xdp", "tcx" or "clsact".
    pub attachment: String,
    /// Its place on the hook among the other tools' programs (tracer's own not counted): 0 runs
    /// first.
    pub position: usize,
}

/// Which end something belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Initiator,
    Target,
    /// Between the two ports: the cable.
    Wire,
    None,
}

impl Side {
    /// The other end; the initiator for anything that is not the target.
    pub fn opposite(self) -> Self {
        if self == Self::Target {
            Self::Initiator
        } else {
            Self::Target
        }
    }
}

/// Where a port was looked for, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub programs: Vec<AttachedProgram>,
    /// Its IPv4 sysctls, effective values (the kernel's rule between `all` and the device).
    #[serde(default)]
    pub sysctls: Vec<Sysctl>,
    /// Other interfaces in the port's namespace with an address in one of the port's subnets
    /// (a leftover of an earlier run, say), as IFNAME ADDR/LEN.
    #[serde(default)]
    pub same_subnet_elsewhere: Vec<String>,
    /// Bridge-side peers named as the other virtual layout version names them, in the port's
    /// namespace, when the port is one of a virtual layout's: a leftover of a run of that
    /// version (both versions call their bridge `nvmf_br`, and neither removes the other's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_peers: Vec<StalePeer>,
}

/// A bridge-side veth peer of another SPDK layout version than the port's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalePeer {
    /// The layout whose names it has, e.g. "virt-legacy".
    pub layout: String,
    pub interface: String,
    /// The bridge it is a port of, by name; `None` when it is in none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// A MAC address as `ip` prints it: aa:bb:cc:dd:ee:ff.
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// An IPv4 sysctl of a port that decides whether it answers ARP or accepts packets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    /// e.g. "arp_ignore", "rp_filter".
    pub name: String,
    /// The value the kernel applies: the max of `all` and the device for arp_ignore,
    /// arp_announce and rp_filter; either of them for arp_filter.
    pub effective: u32,
    /// `net.ipv4.conf.all.NAME`.
    pub all: u32,
    /// `net.ipv4.conf.DEV.NAME`.
    pub device: u32,
}

/// One hop of the path between the two ports, from the initiator's port to the target's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub role: HopRole,
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub interface: String,
    /// The link as found; `None` for the cable, which tracer cannot see.
    pub link: Option<Link>,
    /// The bridge this hop is a port of, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

impl Hop {
    /// The cable between two ports that are not a veth pair: tracer cannot see it.
    pub fn cable() -> Self {
        Self {
            role: HopRole::Cable,
            netns: String::new(),
            interface: String::new(),
            link: None,
            bridge: None,
        }
    }

    /// A watched port as a hop of the path.
    pub fn port(port: &PortEvidence) -> Self {
        Self {
            role: HopRole::Port,
            netns: port.netns.clone(),
            interface: port.interface.clone(),
            link: port.link.clone(),
            bridge: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopRole {
    /// One of the two watched ports.
    Port,
    /// The other end of a port's veth pair.
    VethPeer,
    /// The bridge joining the two veth peers.
    Bridge,
    /// Between two physical ports: the cable (or a switch), which tracer cannot see.
    Cable,
}

/// How the two ports are joined, as walked from the ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEvidence {
    /// Initiator port first, target port last.
    pub hops: Vec<Hop>,
    /// For a bridge: whether bridged IPv4 goes through iptables
    /// (`net.bridge.bridge-nf-call-iptables` in the bridge's namespace); `None` when
    /// br_netfilter is not loaded there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_nf_call_iptables: Option<bool>,
}

impl PortEvidence {
    /// A port as named, before anything about its device is read.
    pub fn new(side: Side, netns: &str, interface: &str, netns_exists: bool) -> Self {
        Self {
            side,
            netns: netns.to_owned(),
            interface: interface.to_owned(),
            netns_exists,
            link: None,
            found_elsewhere: Vec::new(),
            addresses: Vec::new(),
            programs: Vec::new(),
            sysctls: Vec::new(),
            same_subnet_elsewhere: Vec::new(),
            stale_peers: Vec::new(),
        }
    }

    /// As a port spec: NETNS/IFNAME, or IFNAME in tracer's own namespace.
    pub fn spec(&self) -> String {
        if self.netns.is_empty() {
            self.interface.clone()
        } else {
            format!("{}/{}", self.netns, self.interface)
        }
    }
}

/// A route lookup from one side's namespace towards the other side's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEvidence {
    pub from: Side,
    pub destination: IpAddr,
    pub lookup: RouteLookup,
    /// The interface the route leaves by, by name.
    pub via_interface: Option<String>,
    /// Whether that is the side's watched port.
    pub via_port: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeKind {
    /// ARP requests for the target address, sent on the initiator port.
    Arp,
    /// ICMP echo, initiator to target.
    IcmpForward,
    /// ICMP echo, target to initiator.
    IcmpReverse,
    /// TCP connects to the target's TCP port.
    Tcp,
}

/// One kind of request and answer between the ports, sent by tracer (diagnose's probes) or
/// observed (watch: the test's own traffic), and where its packets were seen: the request
/// leaving its origin port, arriving at the peer port, the answer leaving the peer port,
/// arriving back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub kind: ExchangeKind,
    pub from: Side,
    pub outcome: ExchangeOutcome,
    /// Why it was not sent, when it was not.
    pub skipped: Option<String>,
    pub left_origin: u64,
    pub reached_peer: u64,
    pub answer_left_peer: u64,
    pub answer_reached_origin: u64,
}

impl Exchange {
    /// Requests that got an answer: a reply, or for TCP a RST (the path works either way).
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropEvidence {
    pub side: Side,
    #[serde(flatten)]
    pub drop: DropCount,
}

/// Where netfilter dropped packets during the probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetfilterEvidence {
    pub side: Side,
    /// The tool that owns the rule.
    pub backend: Backend,
    #[serde(flatten)]
    pub location: NetfilterLocation,
    /// Packets its counter gained while probing (0 when it has no counter).
    pub packets: u64,
    /// How the rule was found.
    pub rule_found_by: FoundBy,
}

/// Who owns a netfilter rule, and so which syntax its text is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    IptablesNft,
    Ip6tablesNft,
    ArptablesNft,
    IptablesLegacy,
    Ip6tablesLegacy,
    ArptablesLegacy,
    Nft,
}

impl Backend {
    /// The tool's name, as the JSON writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::IptablesNft => "iptables-nft",
            Self::Ip6tablesNft => "ip6tables-nft",
            Self::ArptablesNft => "arptables-nft",
            Self::IptablesLegacy => "iptables-legacy",
            Self::Ip6tablesLegacy => "ip6tables-legacy",
            Self::ArptablesLegacy => "arptables-legacy",
            Self::Nft => "nft",
        }
    }
}

/// How a netfilter rule was tied to the drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// Its counter grew while probing.
    Counter,
    /// The chain's drop policy counter grew.
    Policy,
    /// A dropping rule without a counter where the kernel reported netfilter drops; several
    /// candidates are listed when no single one fits.
    Candidate,
}

impl FoundBy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Policy => "policy",
            Self::Candidate => "candidate",
        }
    }
}

/// A neighbour entry for the peer's address, before and after the probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourEvidence {
    pub side: Side,
    pub netns: String,
    pub address: IpAddr,
    pub before: Option<String>,
    pub after: Option<String>,
    /// The MAC of the entry (after the probes, else before), as aa:bb:cc:dd:ee:ff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub kernel: String,
    pub tracer_version: String,
    pub initiator_ip: String,
    pub target_ip: String,
    /// The TCP port whose segments are counted (NVMe/TCP's 4420 by default).
    #[serde(alias = "port")]
    pub tcp_port: u16,
    /// Probes or sources that could not be used, and why.
    pub limitations: Vec<String>,
}

/// Everything diagnose knows when it classifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub initiator: PortEvidence,
    pub target: PortEvidence,
    pub routes: Vec<RouteEvidence>,
    /// diagnose's probes, or the exchanges watch observed.
    #[serde(alias = "probes")]
    pub exchanges: Vec<Exchange>,
    pub drops: Vec<DropEvidence>,
    pub netfilter: Vec<NetfilterEvidence>,
    pub neighbours: Vec<NeighbourEvidence>,
    pub counters: Option<CountersReport>,
    /// The hops between the ports; `None` when they could not be walked (a port missing).
    #[serde(default)]
    pub path: Option<PathEvidence>,
    /// The largest don't-fragment ping each way, when the MTUs along the path differ or
    /// exceed 1500: where jumbo frames die.
    #[serde(default)]
    pub mtu_probes: Vec<MtuProbe>,
    /// Frames a port sent while it had no carrier (watch's link history).
    #[serde(default)]
    pub carrier_gaps: Vec<CarrierGap>,
    /// Where tracer's own frames from each port arrived, and the ports' LLDP partners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cables: Option<CableMap>,
    /// What watch placed in time: losses, and the rules, carrier losses and neighbour entries
    /// that lasted a while.
    #[serde(default, skip_serializing_if = "Windows::is_empty")]
    pub windows: Windows,
    /// Rules with SPDK's `SPDK_NVMF` comment already in place when watch started, before the
    /// command ran: left by an earlier run (watch only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules_before_run: Vec<NetfilterLocation>,
    /// The ports tracer attached to while the command ran and they were already up (watch
    /// only): their counts are not the whole run's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_attachments: Vec<LateAttachment>,
    pub environment: Environment,
}

impl Evidence {
    /// The two ports and the run's environment, before anything is probed or looked up.
    pub fn new(initiator: PortEvidence, target: PortEvidence, environment: Environment) -> Self {
        Self {
            initiator,
            target,
            routes: Vec::new(),
            exchanges: Vec::new(),
            drops: Vec::new(),
            netfilter: Vec::new(),
            neighbours: Vec::new(),
            counters: None,
            path: None,
            mtu_probes: Vec::new(),
            carrier_gaps: Vec::new(),
            cables: None,
            windows: Windows::default(),
            rules_before_run: Vec::new(),
            late_attachments: Vec::new(),
            environment,
        }
    }
}

/// Frames that left a port while it had no carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierGap {
    pub side: Side,
    pub frames: u64,
    /// Milliseconds from the first of them to carrier up; `None` if it never came.
    pub carrier_after_ms: Option<u64>,
}

/// tracer attached to a port while the command ran, the port up already (it appeared, or
/// moved to another namespace before tcx): frames that crossed it before were not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateAttachment {
    pub side: Side,
    /// When attaching began, in milliseconds after watch started.
    pub at_ms: u64,
    /// tracer added the clsact qdisc its programs need before tcx (Linux 6.6): the kernel
    /// stops an up port's transmit queue while a qdisc is added, and drops the frames leaving
    /// it then (`QDISC_DROP`).
    pub qdisc_added: bool,
}

impl LateAttachment {
    /// "frames that crossed cvl_0_0 before +1.2 s were not counted, and ...".
    pub fn consequences(&self, interface: &str) -> String {
        let mut words = format!(
            "frames that crossed {interface} before {} were not counted",
            crate::windows::at(self.at_ms)
        );
        if self.qdisc_added {
            words.push_str(
                ", and adding the clsact qdisc tracer needs before Linux 6.6 stopped its \
                 transmit queue for a moment: the kernel drops what leaves it then \
                 (QDISC_DROP)",
            );
        }
        words
    }
}

/// Echo requests of one size with don't-fragment set, sent from one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtuProbe {
    pub from: Side,
    /// IP packet size (the MTU it tests).
    pub size: u32,
    pub sent: u32,
    pub answered: u32,
    /// Requests counted leaving the origin port and arriving at the peer.
    pub left_origin: u64,
    pub reached_peer: u64,
    /// Why it was not sent, or what the kernel said (e.g. "Message too long").
    pub error: Option<String>,
}
