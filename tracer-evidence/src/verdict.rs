//! The classifier's answer: a finding (which carries its class and words), the side it is on,
//! and the facts it rests on, each fact with its own line.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    cables::CablePort,
    class::VerdictClass,
    facts::{
        AttachedProgram, DropEvidence, Evidence, Exchange, Hop, Link, MtuProbe, NeighbourEvidence,
        NetfilterEvidence, NetfilterLocation, RouteLookup, Side, StalePeer, Sysctl,
    },
    findings::Finding,
    windows::{LossWindow, loss_line},
    words::{
        cable_line, display_netns, drop_place, hop_line, ladder, link_removal, mtu_line,
        namespace_phrase, netns_exec, port_label, rule_line, sysctl_text,
    },
};

/// A port, by where it is expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRef {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub interface: String,
}

impl PortRef {
    /// For people: `cvl_0_0 (namespace cvl_0_0_ns_spdk)`.
    pub fn label(&self) -> String {
        port_label(&self.netns, &self.interface)
    }
}

/// One fact a verdict rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// Where one exchange's packets were seen.
    #[serde(alias = "probe")]
    Exchange {
        #[serde(alias = "probe")]
        exchange: Exchange,
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
        destination: IpAddr,
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
    /// A bridge-side peer of the other virtual layout version beside a port.
    StalePeer {
        port: PortRef,
        peer: StalePeer,
    },
    /// A rule with SPDK's comment in place before the watched command started.
    RuleBeforeRun {
        rule: NetfilterLocation,
    },
    /// One port of the cable map: where tracer's own frames from it arrived.
    Cable {
        cable: CablePort,
    },
    /// Requests of one flow unanswered for a while (watch).
    Loss {
        loss: LossWindow,
    },
}

impl Fact {
    /// The fact in one line.
    pub fn line(&self) -> String {
        match self {
            Self::Exchange { exchange } => ladder(exchange),
            Self::Drop { drop } => {
                let drop = &drop.drop;
                format!(
                    "kernel dropped {} {} packet(s) with {} on {} in {}",
                    drop.count,
                    drop.protocol,
                    drop.reason,
                    drop_place(drop),
                    namespace_phrase(&drop.netns)
                )
            }
            Self::Rule { rule } => rule_line(rule),
            Self::Neighbour { neighbour } => format!(
                "neighbour {} in {}: {} -> {}",
                neighbour.address,
                namespace_phrase(&neighbour.netns),
                neighbour.before.as_deref().unwrap_or("none"),
                neighbour.after.as_deref().unwrap_or("none")
            ),
            Self::Program { port, program } => format!(
                "{}: program {} (id {}) attached by another tool on {}, {} at position {}",
                port.label(),
                program.name,
                program.id,
                program.hook,
                program.attachment,
                program.position
            ),
            Self::Link { port, link } => format!(
                "{}: admin {}, carrier {}, operstate {}",
                port.label(),
                if link.admin_up { "up" } else { "down" },
                u8::from(link.carrier),
                link.operstate
            ),
            Self::Addresses { port, addresses } => format!(
                "addresses on {}: {}",
                port.label(),
                if addresses.is_empty() {
                    "none".to_owned()
                } else {
                    addresses.join(", ")
                }
            ),
            Self::RouteLookup {
                port,
                destination,
                lookup,
                via,
            } => {
                let answer = match lookup {
                    RouteLookup::Unreachable { message, .. } => message.clone(),
                    RouteLookup::Via { .. } => {
                        format!("dev {}", via.as_deref().unwrap_or("another interface"))
                    }
                };
                format!(
                    "{}ip route get {destination}: {answer}",
                    netns_exec(&port.netns)
                )
            }
            Self::NoNamespace { netns } => format!("/var/run/netns/{netns} is missing"),
            Self::NoInterface { port } => format!(
                "no interface {} in {}",
                port.interface,
                namespace_phrase(&port.netns)
            ),
            Self::CarrierOnBoth { initiator, target } => {
                format!("carrier is up on both ports ({initiator} and {target})")
            }
            Self::Sysctl { port, sysctl } => {
                format!("{}: {}", port.label(), sysctl_text(sysctl))
            }
            Self::Hop { hop } => hop_line(hop),
            Self::Mtu { probe } => mtu_line(probe),
            Self::SameSubnet { port, interfaces } => format!(
                "beside {} in {}, the same subnet is also on: {}",
                port.interface,
                namespace_phrase(&port.netns),
                interfaces.join(", ")
            ),
            Self::StalePeer { port, peer } => format!(
                "beside {} in {}: {}, a bridge-side peer as layout {} names it, {}; a leftover of that layout's run, removed by `{}`",
                port.interface,
                namespace_phrase(&port.netns),
                peer.interface,
                peer.layout,
                peer.bridge.as_ref().map_or_else(
                    || "in no bridge".to_owned(),
                    |bridge| format!("a port of bridge {bridge}")
                ),
                link_removal(&port.netns, &peer.interface)
            ),
            Self::RuleBeforeRun { rule } => format!(
                "{} table {} chain {} in {} held `{}` before the command started: a leftover of an earlier run",
                rule.family,
                rule.table,
                rule.chain,
                namespace_phrase(&rule.netns),
                rule.rule
            ),
            Self::Cable { cable } => cable_line(cable),
            Self::Loss { loss } => loss_line(loss),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The finding's class, saved beside it for readers of report.json.
    pub class: VerdictClass,
    pub side: Side,
    pub finding: Finding,
    /// The facts the verdict rests on, most telling first.
    pub facts: Vec<Fact>,
}

impl Verdict {
    /// A verdict of `finding`, in the finding's class.
    pub fn new(side: Side, finding: impl Into<Finding>) -> Self {
        let finding = finding.into();
        Self {
            class: finding.describe().class(),
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

    /// The verdict in one sentence.
    pub fn summary(&self) -> String {
        self.finding.describe().summary(self.side)
    }

    /// What to do about it.
    pub fn advice(&self) -> String {
        self.finding.describe().advice(self.side)
    }

    /// The thing to change, when the finding names one.
    pub fn named_thing(&self) -> Option<String> {
        self.finding.describe().named_thing()
    }

    /// What a picture's stop mark says.
    pub fn mark(&self) -> String {
        self.finding.describe().mark()
    }

    /// Where netfilter dropped, for a netfilter verdict.
    pub fn netfilter(&self) -> Option<&NetfilterLocation> {
        match &self.finding {
            Finding::NetfilterDrop(drop) => Some(&drop.location),
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
