//! The classifier: `diagnose(&Evidence) -> Verdict`, a pure function.
//!
//! It reads the evidence the way a person would: first what makes probing meaningless (a
//! missing or down port, no route), then, if a probe went unanswered, who took the packets
//! (netfilter, or another tool's BPF program on a port), whether they crossed the wire at all (cable), whether the target answered ARP
//! (neighbour), and what the kernel said otherwise (unknown, with its drop reason).

pub mod evidence;

use serde::Serialize;

use crate::{collect::programs::AttachedProgram, netlink::RouteLookup, netns};
pub use evidence::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictClass {
    Ok,
    Cable,
    Neighbour,
    Netfilter,
    Route,
    Interface,
    Unknown,
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
            // 16 is kept for `mtu`.
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
            Self::Program => "program",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub class: VerdictClass,
    pub side: Side,
    /// One sentence.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netfilter: Option<NetfilterLocation>,
    /// The facts the verdict rests on, one per line.
    pub evidence: Vec<String>,
    /// What to do about it.
    pub advice: String,
}

impl Verdict {
    fn new(class: VerdictClass, side: Side, summary: String) -> Self {
        Self {
            class,
            side,
            summary,
            netfilter: None,
            evidence: Vec::new(),
            advice: String::new(),
        }
    }

    fn because(mut self, fact: impl Into<String>) -> Self {
        self.evidence.push(fact.into());
        self
    }

    fn advise(mut self, advice: impl Into<String>) -> Self {
        self.advice = advice.into();
        self
    }

    /// A stable one-line signature a bot can match across runs: class and where.
    pub fn signature(&self, evidence: &Evidence) -> String {
        let place = match &self.netfilter {
            Some(nf) => format!(
                "{}:{}/{}/{}",
                netns::display_name(&nf.netns),
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

/// Drop reasons that are normal on a healthy path and say nothing about a fault.
const BENIGN_REASONS: [&str; 3] = ["NO_SOCKET", "QUEUE_PURGE", "NOT_SPECIFIED"];

pub fn diagnose(evidence: &Evidence) -> Verdict {
    if let Some(verdict) = interface_fault(evidence) {
        return verdict;
    }
    // Without a route from the initiator the probes cannot leave: that is the answer.
    if let Some(verdict) = route_fault(evidence, Side::Initiator) {
        return verdict;
    }
    let failed: Vec<&ProbeEvidence> = evidence
        .probes
        .iter()
        .filter(|probe| probe.skipped.is_none() && !probe.fully_answered())
        .collect();
    if failed.is_empty() {
        return healthy(evidence);
    }
    netfilter_fault(evidence)
        .or_else(|| program_fault(evidence, &failed))
        .or_else(|| cable_fault(evidence, &failed))
        .or_else(|| neighbour_fault(evidence))
        // The target's way back matters only once ARP has shown it is there.
        .or_else(|| route_fault(evidence, Side::Target))
        .unwrap_or_else(|| unexplained(evidence, &failed))
}

fn ports(evidence: &Evidence) -> [&PortEvidence; 2] {
    [&evidence.initiator, &evidence.target]
}

fn port(evidence: &Evidence, side: Side) -> &PortEvidence {
    if side == Side::Target {
        &evidence.target
    } else {
        &evidence.initiator
    }
}

fn interface_fault(evidence: &Evidence) -> Option<Verdict> {
    for port in ports(evidence) {
        let role = side_name(port.side);
        let elsewhere = if port.found_elsewhere.is_empty() {
            format!("no namespace has an interface named {}", port.interface)
        } else {
            format!(
                "an interface named {} is in {}",
                port.interface,
                port.found_elsewhere
                    .iter()
                    .map(|ns| if ns.is_empty() {
                        "tracer's own namespace".to_owned()
                    } else {
                        format!("namespace {ns}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if !port.netns_exists {
            return Some(
                Verdict::new(
                    VerdictClass::Interface,
                    port.side,
                    format!(
                        "The {role} namespace {} does not exist; {elsewhere}.",
                        port.netns
                    ),
                )
                .because(format!("/var/run/netns/{} is missing", port.netns))
                .advise(format!(
                    "Create the namespace and move {} into it (ip netns add {}; ip link set {} netns {}), or pass the right --{role}.",
                    port.interface, port.netns, port.interface, port.netns
                )),
            );
        }
        let Some(link) = &port.link else {
            return Some(
                Verdict::new(
                    VerdictClass::Interface,
                    port.side,
                    format!(
                        "The {role} port {} is not in {}; {elsewhere}.",
                        port.interface,
                        namespace_phrase(&port.netns)
                    ),
                )
                .because(format!("no interface {} in {}", port.interface, namespace_phrase(&port.netns)))
                .advise(format!(
                    "Move {} where the test expects it, or pass --{role} NETNS/IFNAME for where it is.",
                    port.interface
                )),
            );
        };
        if !link.admin_up {
            return Some(
                Verdict::new(
                    VerdictClass::Interface,
                    port.side,
                    format!("The {role} port {} is administratively down.", port.label()),
                )
                .because(format!(
                    "{}: state {}, flag UP missing",
                    port.label(),
                    link.operstate
                ))
                .advise(format!(
                    "Bring it up: {}ip link set {} up",
                    netns_exec(&port.netns),
                    port.interface
                )),
            );
        }
    }
    None
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Initiator => "initiator",
        Side::Target => "target",
        Side::Wire => "wire",
        Side::None => "none",
    }
}

fn namespace_phrase(netns: &str) -> String {
    if netns.is_empty() {
        "tracer's own namespace".to_owned()
    } else {
        format!("namespace {netns}")
    }
}

fn netns_exec(netns: &str) -> String {
    if netns.is_empty() {
        String::new()
    } else {
        format!("ip netns exec {netns} ")
    }
}

fn route_fault(evidence: &Evidence, from: Side) -> Option<Verdict> {
    for route in evidence.routes.iter().filter(|route| route.from == from) {
        let from = port(evidence, route.from);
        let role = side_name(route.from);
        match &route.lookup {
            RouteLookup::Unreachable { message, .. } => {
                return Some(
                    Verdict::new(
                        VerdictClass::Route,
                        route.from,
                        format!(
                            "The {role} has no route to {}: {message}.",
                            route.destination
                        ),
                    )
                    .because(format!(
                        "{}ip route get {}: {message}",
                        netns_exec(&from.netns),
                        route.destination
                    ))
                    .advise(format!(
                        "Add an address with the right prefix or a route: {}ip route add {}/32 dev {}",
                        netns_exec(&from.netns),
                        route.destination,
                        from.interface
                    )),
                );
            }
            RouteLookup::Via { .. } if !route.via_port => {
                let via = route
                    .via_interface
                    .as_deref()
                    .unwrap_or("another interface");
                return Some(
                    Verdict::new(
                        VerdictClass::Route,
                        route.from,
                        format!(
                            "The {role}'s route to {} leaves by {via}, not by the port {}.",
                            route.destination, from.interface
                        ),
                    )
                    .because(format!(
                        "{}ip route get {}: dev {via}",
                        netns_exec(&from.netns),
                        route.destination
                    ))
                    .advise(format!(
                        "Fix the routes (or addresses) in {} so that {} is reached through {}.",
                        namespace_phrase(&from.netns),
                        route.destination,
                        from.interface
                    )),
                );
            }
            RouteLookup::Via { .. } => {}
        }
    }
    None
}

fn probe(evidence: &Evidence, kind: ProbeKind) -> Option<&ProbeEvidence> {
    evidence.probes.iter().find(|probe| probe.kind == kind)
}

fn ladder(probe: &ProbeEvidence) -> String {
    format!(
        "{}: {} sent, {} answered; left origin port {}, reached peer port {}, answers left peer {}, answers reached origin {}",
        probe.kind.describe(),
        probe.outcome.sent,
        probe.answers(),
        probe.left_origin,
        probe.reached_peer,
        probe.answer_left_peer,
        probe.answer_reached_origin
    )
}

fn netfilter_fault(evidence: &Evidence) -> Option<Verdict> {
    let netfilter_drops: Vec<&DropEvidence> = evidence
        .drops
        .iter()
        .filter(|drop| {
            drop.drop.reason == "NETFILTER_DROP"
                && matches!(drop.drop.protocol.as_str(), "ipv4" | "arp")
        })
        .collect();
    // The verdict probes name the table; kfree_skb alone still proves netfilter did it.
    let best_hit = evidence
        .netfilter
        .iter()
        .filter(|hit| hit.location.family != "ip6")
        .max_by_key(|hit| (hit.rule_found_by != "candidate", hit.packets));
    // An inet or ip6 table may be dropping unrelated IPv6 traffic: only IPv4 and ARP count.
    let ipv4_or_arp_hit = evidence
        .netfilter
        .iter()
        .any(|hit| matches!(hit.location.family.as_str(), "ip" | "arp"));
    if netfilter_drops.is_empty() && !ipv4_or_arp_hit {
        return None;
    }
    let side = best_hit
        .map(|hit| hit.side)
        .or_else(|| netfilter_drops.first().map(|drop| drop.side))
        .unwrap_or(Side::None);
    let dropped: u64 = netfilter_drops.iter().map(|drop| drop.drop.count).sum();
    let summary = match best_hit {
        Some(hit) => {
            let rule = if hit.location.rule.is_empty() {
                String::new()
            } else {
                format!(" by rule `{}`", hit.location.rule)
            };
            format!(
                "Netfilter in {} drops the probes: {} table {} chain {}{rule}.",
                namespace_phrase(&hit.location.netns),
                hit.location.family,
                hit.location.table,
                hit.location.chain
            )
        }
        None => format!(
            "Netfilter in the {}'s namespace drops the probes ({dropped} packets).",
            side_name(side)
        ),
    };
    let mut verdict = Verdict::new(VerdictClass::Netfilter, side, summary);
    for drop in &netfilter_drops {
        verdict = verdict.because(format!(
            "kernel dropped {} {} packet(s) with NETFILTER_DROP on {} in {}",
            drop.drop.count,
            drop.drop.protocol,
            drop.drop.place(),
            namespace_phrase(&drop.drop.netns)
        ));
    }
    for hit in &evidence.netfilter {
        verdict = verdict.because(hit.describe());
    }
    for probe in evidence.probes.iter().filter(|p| !p.fully_answered()) {
        verdict = verdict.because(ladder(probe));
    }
    // Without a rule to name (say, a ruleset tracer could not read), still say where.
    let location = best_hit.map_or_else(
        || NetfilterLocation {
            netns: netfilter_drops.first().map_or_else(
                || port(evidence, side).netns.clone(),
                |d| d.drop.netns.clone(),
            ),
            family: match netfilter_drops.first().map(|d| d.drop.protocol.as_str()) {
                Some("arp") => "arp".to_owned(),
                _ => "ip".to_owned(),
            },
            table: String::new(),
            chain: String::new(),
            rule: String::new(),
        },
        |hit| hit.location.clone(),
    );
    let netns = location.netns.clone();
    verdict.netfilter = Some(location);
    Some(verdict.advise(format!(
        "Inspect the ruleset in {}: {}nft list ruleset (or iptables-save / arptables-save).",
        namespace_phrase(&netns),
        netns_exec(&netns)
    )))
}

/// A probe that stopped at a port where another tool's program runs on the way: on tc ingress
/// behind tracer's own counting (the frames were counted arriving and went no further), or on
/// XDP or tc egress, ahead of tracer's counting (the frames were never counted).
fn program_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    let opposite = |side| {
        if side == Side::Target {
            Side::Initiator
        } else {
            Side::Target
        }
    };
    for probe in failed {
        let peer = opposite(probe.from);
        let stops = [
            // Requests arrived at the peer, nothing came back out of it.
            (
                peer,
                "tc ingress",
                probe.reached_peer > 0 && probe.answer_left_peer == 0,
            ),
            // Requests left, none counted arriving: the peer's XDP is ahead of tracer's tc.
            (
                peer,
                "xdp",
                probe.left_origin > 0 && probe.reached_peer == 0,
            ),
            // Answers arrived back and the probe still failed.
            (probe.from, "tc ingress", probe.answer_reached_origin > 0),
            (
                probe.from,
                "xdp",
                probe.answer_left_peer > 0 && probe.answer_reached_origin == 0,
            ),
        ];
        for (side, hook, stopped) in stops {
            let at = port(evidence, side);
            let programs: Vec<&AttachedProgram> =
                at.programs.iter().filter(|p| p.hook == hook).collect();
            if !stopped || programs.is_empty() {
                continue;
            }
            let names = programs
                .iter()
                .map(|p| format!("{} (id {})", p.name, p.id))
                .collect::<Vec<_>>()
                .join(", ");
            let mut verdict = Verdict::new(
                VerdictClass::Program,
                side,
                format!(
                    "A BPF program on {}'s {hook} takes the probes: {names}.",
                    at.label()
                ),
            );
            for program in &programs {
                verdict = verdict.because(format!(
                    "{}: program {} (id {}) attached by another tool, {} at position {}",
                    at.label(),
                    program.name,
                    program.id,
                    program.attachment,
                    program.position
                ));
            }
            let verdict = failed
                .iter()
                .fold(verdict, |verdict, probe| verdict.because(ladder(probe)));
            let ids = programs
                .iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            return Some(verdict.advise(format!(
                "Find who attached it ({}bpftool prog show id {ids}; bpftool net) and why it drops these frames.",
                netns_exec(&at.netns)
            )));
        }
    }
    None
}

fn carrier_fault(evidence: &Evidence) -> Option<Verdict> {
    let without_carrier: Vec<&PortEvidence> = ports(evidence)
        .into_iter()
        .filter(|port| {
            port.link
                .as_ref()
                .is_some_and(|link| link.admin_up && !link.carrier)
        })
        .collect();
    let side = match without_carrier.as_slice() {
        [] => return None,
        [only] => only.side,
        _ => Side::Wire,
    };
    let names = without_carrier
        .iter()
        .map(|port| port.label())
        .collect::<Vec<_>>()
        .join(" and ");
    let mut verdict = Verdict::new(
        VerdictClass::Cable,
        side,
        format!(
            "No carrier on {names}: the port is up but its link is down (cable unplugged, or the far end down)."
        ),
    );
    for port in without_carrier {
        if let Some(link) = &port.link {
            verdict = verdict.because(format!(
                "{}: admin up, carrier 0, operstate {}",
                port.label(),
                link.operstate
            ));
        }
    }
    Some(verdict.advise("Check the cable between the two ports and that the far end is up."))
}

fn cable_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    if let Some(verdict) = carrier_fault(evidence) {
        let verdict = failed
            .iter()
            .fold(verdict, |verdict, probe| verdict.because(ladder(probe)));
        return Some(verdict);
    }
    // Frames that left one port and did not all arrive at the other.
    let lost_forward = failed
        .iter()
        .find(|probe| probe.left_origin > 0 && probe.reached_peer < probe.left_origin);
    let lost_back = failed.iter().find(|probe| {
        probe.answer_left_peer > 0 && probe.answer_reached_origin < probe.answer_left_peer
    });
    let (probe, from, to, left, arrived) = match (lost_forward, lost_back) {
        (Some(probe), _) => {
            let (from, to) = if probe.from == Side::Target {
                (&evidence.target, &evidence.initiator)
            } else {
                (&evidence.initiator, &evidence.target)
            };
            (probe, from, to, probe.left_origin, probe.reached_peer)
        }
        (None, Some(probe)) => {
            let (from, to) = if probe.from == Side::Target {
                (&evidence.initiator, &evidence.target)
            } else {
                (&evidence.target, &evidence.initiator)
            };
            (
                probe,
                from,
                to,
                probe.answer_left_peer,
                probe.answer_reached_origin,
            )
        }
        (None, None) => return None,
    };
    let what = if arrived == 0 {
        "none".to_owned()
    } else {
        format!("only {arrived}")
    };
    let summary = if arrived == 0 {
        format!(
            "Frames leave {} but never reach {}: the two ports are not cabled to each other.",
            from.interface, to.interface
        )
    } else {
        format!(
            "Frames between {} and {} are lost on the wire, part of the time.",
            from.interface, to.interface
        )
    };
    let verdict = Verdict::new(VerdictClass::Cable, Side::Wire, summary)
        .because(format!(
            "{} {}(s) left {}, {what} arrived at {}",
            left,
            probe.kind.describe(),
            from.label(),
            to.label()
        ))
        .because(format!(
            "carrier is up on both ports ({} and {})",
            evidence.initiator.interface, evidence.target.interface
        ));
    let verdict = failed
        .iter()
        .fold(verdict, |verdict, probe| verdict.because(ladder(probe)));
    Some(verdict.advise(
        "Check the cabling: the ports must be connected to each other (a loop), not to something else.",
    ))
}

fn neighbour_fault(evidence: &Evidence) -> Option<Verdict> {
    let arp = probe(evidence, ProbeKind::Arp)?;
    if arp.fully_answered() || arp.reached_peer == 0 {
        return None;
    }
    let target_ip = &evidence.environment.target_ip;
    let target = &evidence.target;
    let owns_address = target
        .addresses
        .iter()
        .any(|address| address.split('/').next() == Some(target_ip.as_str()));
    let summary = if owns_address {
        format!(
            "{} receives the ARP requests for {target_ip} but does not answer them.",
            target.label()
        )
    } else {
        format!(
            "{} receives the ARP requests for {target_ip} but does not own that address, so nobody answers.",
            target.label()
        )
    };
    let mut verdict = Verdict::new(VerdictClass::Neighbour, Side::Target, summary)
        .because(ladder(arp))
        .because(format!(
            "addresses on {}: {}",
            target.label(),
            if target.addresses.is_empty() {
                "none".to_owned()
            } else {
                target.addresses.join(", ")
            }
        ));
    for neighbour in &evidence.neighbours {
        verdict = verdict.because(format!(
            "neighbour {} in {}: {} -> {}",
            neighbour.address,
            namespace_phrase(&neighbour.netns),
            neighbour.before.as_deref().unwrap_or("none"),
            neighbour.after.as_deref().unwrap_or("none")
        ));
    }
    Some(verdict.advise(if owns_address {
        format!(
            "Check ARP settings on the target (arp_ignore, arp_filter) in {}.",
            namespace_phrase(&target.netns)
        )
    } else {
        format!(
            "Configure {target_ip} on {}: {}ip addr add {target_ip}/24 dev {}",
            target.interface,
            netns_exec(&target.netns),
            target.interface
        )
    }))
}

fn unexplained(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Verdict {
    let suspicious = evidence
        .drops
        .iter()
        .filter(|drop| {
            !BENIGN_REASONS.contains(&drop.drop.reason.as_str()) && drop.drop.protocol != "ipv6"
        })
        .max_by_key(|drop| drop.drop.count);
    let (side, summary) = match suspicious {
        Some(drop) => (
            drop.side,
            format!(
                "The kernel drops the probes with reason {} on {} in {}, which no class explains.",
                drop.drop.reason,
                drop.drop.place(),
                namespace_phrase(&drop.drop.netns)
            ),
        ),
        None => (
            Side::None,
            "Probes go unanswered and the kernel reports no drop for them.".to_owned(),
        ),
    };
    let verdict = Verdict::new(VerdictClass::Unknown, side, summary);
    let verdict = evidence.drops.iter().fold(verdict, |verdict, drop| {
        verdict.because(format!(
            "drop: {} x {} ({}) on {} in {}",
            drop.drop.count,
            drop.drop.reason,
            drop.drop.protocol,
            drop.drop.place(),
            namespace_phrase(&drop.drop.netns)
        ))
    });
    failed
        .iter()
        .fold(verdict, |verdict, probe| verdict.because(ladder(probe)))
        .advise("Look up the drop reason in the kernel's include/net/dropreason-core.h and attach this report to a bug.")
}

fn healthy(evidence: &Evidence) -> Verdict {
    let listening = probe(evidence, ProbeKind::Tcp).map(|tcp| tcp.outcome.answered > 0);
    let port = evidence.environment.port;
    let target_ip = &evidence.environment.target_ip;
    let summary = match listening {
        Some(true) => format!(
            "ARP, ICMP both ways and TCP to {target_ip}:{port} work; a listener accepts on the port."
        ),
        Some(false) => format!(
            "ARP, ICMP both ways and the path to {target_ip}:{port} work; nothing listens on the port (RST)."
        ),
        None => "ARP and ICMP both ways work.".to_owned(),
    };
    let verdict = Verdict::new(VerdictClass::Ok, Side::None, summary);
    evidence
        .probes
        .iter()
        .fold(verdict, |verdict, probe| verdict.because(ladder(probe)))
        .advise("Nothing to fix on the path.")
}

#[cfg(test)]
mod tests;
