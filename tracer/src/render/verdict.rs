//! The verdict in English: its one-sentence summary, a line per fact, and what to do, written
//! from the classifier's typed findings. Every report format uses these.

use tracer_evidence::{
    DropCount, Fact, Finding, Hop, HopProblem, HopRole, MtuProbe, NetfilterEvidence,
    NetfilterLocation, PortRef, ProbeEvidence, ProbeKind, RouteLookup, Side, Sysctl, Verdict,
};

use crate::netns;

pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Initiator => "initiator",
        Side::Target => "target",
        Side::Wire => "wire",
        Side::None => "none",
    }
}

/// Where the fault is, as a phrase: `target side`.
pub fn side_label(side: Side) -> &'static str {
    match side {
        Side::Initiator => "initiator side",
        Side::Target => "target side",
        Side::Wire => "between the ports",
        Side::None => "no fault",
    }
}

pub fn namespace_phrase(netns: &str) -> String {
    if netns.is_empty() {
        "tracer's own namespace".to_owned()
    } else {
        format!("namespace {netns}")
    }
}

/// The prefix that runs a command in `netns` (nothing for tracer's own).
pub fn netns_exec(netns: &str) -> String {
    if netns.is_empty() {
        String::new()
    } else {
        format!("ip netns exec {netns} ")
    }
}

/// A port for people: `cvl_0_0 (namespace cvl_0_0_ns_spdk)`.
pub fn port_label(netns: &str, interface: &str) -> String {
    if netns.is_empty() {
        interface.to_owned()
    } else {
        format!("{interface} (namespace {netns})")
    }
}

fn label(port: &PortRef) -> String {
    port_label(&port.netns, &port.interface)
}

pub fn probe_name(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Arp => "ARP request",
        ProbeKind::IcmpForward => "ICMP echo initiator -> target",
        ProbeKind::IcmpReverse => "ICMP echo target -> initiator",
        ProbeKind::Tcp => "TCP connect",
    }
}

/// Where one probe's packets were seen, in one line.
pub fn ladder(probe: &ProbeEvidence) -> String {
    format!(
        "{}: {} sent, {} answered; left origin port {}, reached peer port {}, answers left peer {}, answers reached origin {}",
        probe_name(probe.kind),
        probe.outcome.sent,
        probe.answers(),
        probe.left_origin,
        probe.reached_peer,
        probe.answer_left_peer,
        probe.answer_reached_origin
    )
}

/// The four points of a probe's way, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    /// The request left its origin port.
    LeftOrigin,
    /// It arrived at the peer port.
    ReachedPeer,
    /// The answer left the peer port.
    AnswerLeftPeer,
    /// The answer arrived back at the origin port.
    AnswerReachedOrigin,
}

impl Rung {
    pub const ALL: [Self; 4] = [
        Self::LeftOrigin,
        Self::ReachedPeer,
        Self::AnswerLeftPeer,
        Self::AnswerReachedOrigin,
    ];

    /// Packets counted at this point.
    pub fn count(self, probe: &ProbeEvidence) -> u64 {
        match self {
            Self::LeftOrigin => probe.left_origin,
            Self::ReachedPeer => probe.reached_peer,
            Self::AnswerLeftPeer => probe.answer_left_peer,
            Self::AnswerReachedOrigin => probe.answer_reached_origin,
        }
    }

    /// The point, with the origin's and the peer's interface names: `answer left cvl_0_0`.
    pub fn label(self, origin: &str, peer: &str) -> String {
        match self {
            Self::LeftOrigin => format!("left {origin}"),
            Self::ReachedPeer => format!("reached {peer}"),
            Self::AnswerLeftPeer => format!("answer left {peer}"),
            Self::AnswerReachedOrigin => format!("answer reached {origin}"),
        }
    }
}

/// The first point of a probe's way where fewer packets were counted than were sent.
pub fn first_short(probe: &ProbeEvidence) -> Option<Rung> {
    let expected = u64::from(probe.outcome.sent);
    Rung::ALL
        .into_iter()
        .find(|rung| rung.count(probe) < expected)
}

/// Where a drop happened, for people: the interface, else what the skb had instead.
pub fn drop_place(drop: &DropCount) -> String {
    let place = match (drop.interface.is_empty(), drop.ifindex) {
        (false, _) => drop.interface.clone(),
        (true, 0) => "no device (a local socket)".to_owned(),
        (true, ifindex) => format!("ifindex {ifindex}"),
    };
    match &drop.location {
        Some(location) => format!("{place}, freed in {location}"),
        None => place,
    }
}

/// A netfilter rule that dropped while probing: who, where, which rule, how it was found.
pub fn rule_line(hit: &NetfilterEvidence) -> String {
    let location = &hit.location;
    let rule = if location.rule.is_empty() {
        String::new()
    } else {
        format!(", rule `{}`", location.rule)
    };
    let packets = if hit.packets > 0 {
        format!(", {} packets", hit.packets)
    } else {
        String::new()
    };
    format!(
        "{} in {}: {} table {} chain {}{rule} [{}{packets}]",
        hit.backend.name(),
        netns::display_name(&location.netns),
        location.family,
        location.table,
        location.chain,
        hit.rule_found_by.name()
    )
}

fn elsewhere(interface: &str, found: &[String]) -> String {
    if found.is_empty() {
        return format!("no namespace has an interface named {interface}");
    }
    let places: Vec<String> = found.iter().map(|netns| namespace_phrase(netns)).collect();
    format!("an interface named {interface} is in {}", places.join(", "))
}

/// The verdict in one sentence.
pub fn summary(verdict: &Verdict) -> String {
    let role = side_name(verdict.side);
    match &verdict.finding {
        Finding::PathWorks {
            target_ip,
            port,
            listening,
        } => match listening {
            Some(true) => format!(
                "ARP, ICMP both ways and TCP to {target_ip}:{port} work; a listener accepts on the port."
            ),
            Some(false) => format!(
                "ARP, ICMP both ways and the path to {target_ip}:{port} work; nothing listens on the port (RST)."
            ),
            None => "ARP and ICMP both ways work.".to_owned(),
        },
        Finding::NamespaceMissing {
            port,
            found_elsewhere,
        } => format!(
            "The {role} namespace {} does not exist; {}.",
            port.netns,
            elsewhere(&port.interface, found_elsewhere)
        ),
        Finding::InterfaceMissing {
            port,
            found_elsewhere,
        } => format!(
            "The {role} port {} is not in {}; {}.",
            port.interface,
            namespace_phrase(&port.netns),
            elsewhere(&port.interface, found_elsewhere)
        ),
        Finding::InterfaceDown { port, .. } => {
            format!("The {role} port {} is administratively down.", label(port))
        }
        Finding::NoRoute {
            destination,
            message,
            ..
        } => format!("The {role} has no route to {destination}: {message}."),
        Finding::RouteByOtherInterface {
            port,
            destination,
            via,
        } => format!(
            "The {role}'s route to {destination} leaves by {}, not by the port {}.",
            via.as_deref().unwrap_or("another interface"),
            port.interface
        ),
        Finding::NetfilterDrop { location, dropped } => netfilter_summary(location, *dropped, role),
        Finding::ProgramTakesProbes {
            port,
            hook,
            programs,
        } => {
            let names: Vec<String> = programs
                .iter()
                .map(|program| format!("{} (id {})", program.name, program.id))
                .collect();
            format!(
                "A BPF program on {}'s {hook} takes the probes: {}.",
                label(port),
                names.join(", ")
            )
        }
        Finding::NoCarrier { ports } => {
            let names: Vec<String> = ports.iter().map(label).collect();
            format!(
                "No carrier on {}: the port is up but its link is down (cable unplugged, or the far end down).",
                names.join(" and ")
            )
        }
        Finding::FramesLost {
            from, to, arrived, ..
        } => {
            if *arrived == 0 {
                format!(
                    "Frames leave {} but never reach {}: the two ports are not cabled to each other.",
                    from.interface, to.interface
                )
            } else {
                format!(
                    "Frames between {} and {} are lost on the wire, part of the time.",
                    from.interface, to.interface
                )
            }
        }
        Finding::ArpUnanswered {
            port,
            target_ip,
            owns_address,
            sysctls,
        } => {
            if *owns_address && !sysctls.is_empty() {
                format!(
                    "{} receives the ARP requests for {target_ip} but does not answer them: {}.",
                    label(port),
                    sysctl_list(sysctls)
                )
            } else if *owns_address {
                format!(
                    "{} receives the ARP requests for {target_ip} but does not answer them.",
                    label(port)
                )
            } else {
                format!(
                    "{} receives the ARP requests for {target_ip} but does not own that address, so nobody answers.",
                    label(port)
                )
            }
        }
        Finding::UnexplainedDrop { drop } => format!(
            "The kernel drops the probes with reason {} on {} in {}, which no class explains.",
            drop.reason,
            drop_place(drop),
            namespace_phrase(&drop.netns)
        ),
        Finding::Unanswered => {
            "Probes go unanswered and the kernel reports no drop for them.".to_owned()
        }
        Finding::NothingObserved => {
            "No ARP, ICMP or port traffic crossed the ports: nothing shows whether the path works."
                .to_owned()
        }
        Finding::NeighbourMismatch {
            port,
            address,
            entry_mac,
            entry_state,
            target_mac,
        } => format!(
            "{}'s neighbour entry for {address} points at {entry_mac} ({entry_state}), but the target port's MAC is {target_mac}: frames arrive and are dropped as not for this host.",
            label(port)
        ),
        Finding::ReversePathFilter {
            port,
            sysctl,
            source,
            route_via,
        } => format!(
            "Reverse-path filtering on {} ({}) drops what comes from {source}: the route back leaves by {}, not by the port.",
            label(port),
            sysctl_text(sysctl),
            route_via.as_deref().unwrap_or("another interface")
        ),
        Finding::HopBroken { hop, problem } => format!(
            "Frames between the ports stop at {}: {}.",
            hop_label(hop),
            hop_problem(hop, problem)
        ),
        Finding::MtuMismatch {
            from,
            from_mtu,
            to,
            to_mtu,
            dropping,
            dropping_mtu,
            size,
        } => format!(
            "{size}-byte packets from {} (MTU {from_mtu}) to {} (MTU {to_mtu}) die at {} (MTU {dropping_mtu}): small probes pass, jumbo frames do not.",
            label(from),
            label(to),
            label(dropping)
        ),
        Finding::CarrierLate {
            port,
            frames_without_carrier,
            carrier_after_ms,
        } => match carrier_after_ms {
            Some(ms) => format!(
                "{} had no carrier when {frames_without_carrier} frame(s) left; carrier came up {:.1} s later.",
                label(port),
                *ms as f64 / 1000.0
            ),
            None => format!(
                "{} had no carrier when {frames_without_carrier} frame(s) left, and never got it.",
                label(port)
            ),
        },
    }
}

fn netfilter_summary(location: &NetfilterLocation, dropped: u64, role: &str) -> String {
    if location.chain.is_empty() {
        return format!(
            "Netfilter in the {role}'s namespace drops the probes ({dropped} packets)."
        );
    }
    let rule = if location.rule.is_empty() {
        String::new()
    } else {
        format!(" by rule `{}`", location.rule)
    };
    format!(
        "Netfilter in {} drops the probes: {} table {} chain {}{rule}.",
        namespace_phrase(&location.netns),
        location.family,
        location.table,
        location.chain
    )
}

/// One fact, in one line.
pub fn fact_line(fact: &Fact) -> String {
    match fact {
        Fact::Probe { probe } => ladder(probe),
        Fact::Drop { drop } => {
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
        Fact::Rule { rule } => rule_line(rule),
        Fact::Neighbour { neighbour } => format!(
            "neighbour {} in {}: {} -> {}",
            neighbour.address,
            namespace_phrase(&neighbour.netns),
            neighbour.before.as_deref().unwrap_or("none"),
            neighbour.after.as_deref().unwrap_or("none")
        ),
        Fact::Program { port, program } => format!(
            "{}: program {} (id {}) attached by another tool on {}, {} at position {}",
            label(port),
            program.name,
            program.id,
            program.hook,
            program.attachment,
            program.position
        ),
        Fact::Link { port, link } => format!(
            "{}: admin {}, carrier {}, operstate {}",
            label(port),
            if link.admin_up { "up" } else { "down" },
            u8::from(link.carrier),
            link.operstate
        ),
        Fact::Addresses { port, addresses } => format!(
            "addresses on {}: {}",
            label(port),
            if addresses.is_empty() {
                "none".to_owned()
            } else {
                addresses.join(", ")
            }
        ),
        Fact::RouteLookup {
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
        Fact::NoNamespace { netns } => format!("/var/run/netns/{netns} is missing"),
        Fact::NoInterface { port } => format!(
            "no interface {} in {}",
            port.interface,
            namespace_phrase(&port.netns)
        ),
        Fact::CarrierOnBoth { initiator, target } => {
            format!("carrier is up on both ports ({initiator} and {target})")
        }
        Fact::Sysctl { port, sysctl } => format!("{}: {}", label(port), sysctl_text(sysctl)),
        Fact::Hop { hop } => hop_line(hop),
        Fact::Mtu { probe } => mtu_line(probe),
        Fact::SameSubnet { port, interfaces } => format!(
            "beside {} in {}, the same subnet is also on: {}",
            port.interface,
            namespace_phrase(&port.netns),
            interfaces.join(", ")
        ),
    }
}

/// What to do about it.
pub fn advice(verdict: &Verdict) -> String {
    let role = side_name(verdict.side);
    match &verdict.finding {
        Finding::PathWorks { .. } => "Nothing to fix on the path.".to_owned(),
        Finding::NamespaceMissing { port, .. } => format!(
            "Create the namespace and move {0} into it (ip netns add {1}; ip link set {0} netns {1}), or pass the right --{role}.",
            port.interface, port.netns
        ),
        Finding::InterfaceMissing { port, .. } => format!(
            "Move {} where the test expects it, or pass --{role} NETNS/IFNAME for where it is.",
            port.interface
        ),
        Finding::InterfaceDown { port, .. } => format!(
            "Bring it up: {}ip link set {} up",
            netns_exec(&port.netns),
            port.interface
        ),
        Finding::NoRoute {
            port, destination, ..
        } => format!(
            "Add an address with the right prefix or a route: {}ip route add {destination}/32 dev {}",
            netns_exec(&port.netns),
            port.interface
        ),
        Finding::RouteByOtherInterface {
            port, destination, ..
        } => format!(
            "Fix the routes (or addresses) in {} so that {destination} is reached through {}.",
            namespace_phrase(&port.netns),
            port.interface
        ),
        Finding::NetfilterDrop { location, .. } => format!(
            "Inspect the ruleset in {}: {}nft list ruleset (or iptables-save / arptables-save).",
            namespace_phrase(&location.netns),
            netns_exec(&location.netns)
        ),
        Finding::ProgramTakesProbes { port, programs, .. } => {
            let ids: Vec<String> = programs.iter().map(|p| p.id.to_string()).collect();
            format!(
                "Find who attached it ({}bpftool prog show id {}; bpftool net) and why it drops these frames.",
                netns_exec(&port.netns),
                ids.join(" ")
            )
        }
        Finding::NoCarrier { .. } => {
            "Check the cable between the two ports and that the far end is up.".to_owned()
        }
        Finding::FramesLost { .. } => "Check the cabling: the ports must be connected to each other (a loop), not to something else.".to_owned(),
        Finding::ArpUnanswered {
            port,
            target_ip,
            owns_address,
            sysctls,
        } => {
            if *owns_address && !sysctls.is_empty() {
                let resets: Vec<String> = sysctls
                    .iter()
                    .map(|sysctl| {
                        format!(
                            "net.ipv4.conf.{{all,{}}}.{}=0",
                            port.interface, sysctl.name
                        )
                    })
                    .collect();
                format!(
                    "Let the target answer ARP: {}sysctl -w {}",
                    netns_exec(&port.netns),
                    resets.join(" ")
                )
            } else if *owns_address {
                format!(
                    "Check ARP settings on the target (arp_ignore, arp_filter) in {}.",
                    namespace_phrase(&port.netns)
                )
            } else {
                format!(
                    "Configure {target_ip} on {}: {}ip addr add {target_ip}/24 dev {}",
                    port.interface,
                    netns_exec(&port.netns),
                    port.interface
                )
            }
        }
        Finding::NothingObserved => "Run tracer watch with --probe, or tracer diagnose, to probe the path.".to_owned(),
        Finding::NeighbourMismatch {
            port,
            address,
            target_mac,
            entry_state,
            ..
        } => {
            let fix = if entry_state.contains("PERMANENT") {
                format!(
                    "{}ip neigh replace {address} lladdr {target_mac} dev {} nud permanent (or delete the static entry)",
                    netns_exec(&port.netns),
                    port.interface
                )
            } else {
                format!(
                    "{}ip neigh flush dev {} to {address}",
                    netns_exec(&port.netns),
                    port.interface
                )
            };
            format!("Fix the initiator's entry: {fix}.")
        }
        Finding::ReversePathFilter { port, sysctl, .. } => format!(
            "Route the reply by the port, or loosen the filter: {}sysctl -w net.ipv4.conf.{}.{}=2 (and net.ipv4.conf.all.{} <= 2).",
            netns_exec(&port.netns),
            port.interface,
            sysctl.name,
            sysctl.name
        ),
        Finding::HopBroken { hop, problem } => hop_advice(hop, problem),
        Finding::MtuMismatch { dropping, .. } => format!(
            "Give every hop the same MTU: {}ip link set {} mtu SIZE (and the other hops alike).",
            netns_exec(&dropping.netns),
            dropping.interface
        ),
        Finding::CarrierLate { port, .. } => format!(
            "Wait for carrier on {} before sending (ip link show {} must say LOWER_UP), or check the cable and the far end.",
            port.interface, port.interface
        ),
        Finding::UnexplainedDrop { .. } | Finding::Unanswered => "Look up the drop reason in the kernel's include/net/dropreason-core.h and attach this report to a bug.".to_owned(),
    }
}

/// `arp_ignore=1 (all 0, cvl_0_0 1)`.
pub fn sysctl_text(sysctl: &Sysctl) -> String {
    format!(
        "{}={} (all {}, device {})",
        sysctl.name, sysctl.effective, sysctl.all, sysctl.device
    )
}

pub fn sysctl_list(sysctls: &[Sysctl]) -> String {
    sysctls
        .iter()
        .map(sysctl_text)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A hop for people.
pub fn hop_label(hop: &Hop) -> String {
    match hop.role {
        HopRole::Cable => "the cable".to_owned(),
        HopRole::Bridge => format!("bridge {}", port_label(&hop.netns, &hop.interface)),
        HopRole::Port | HopRole::VethPeer => port_label(&hop.netns, &hop.interface),
    }
}

/// Why a hop does not pass frames on.
pub fn hop_problem(hop: &Hop, problem: &HopProblem) -> String {
    match problem {
        HopProblem::NotInBridge { bridge } => {
            format!("{} is not a port of {bridge}", hop.interface)
        }
        HopProblem::DifferentBridges { bridge, other } => format!(
            "{} is a port of {bridge}, its counterpart of {other}: two bridges, not one",
            hop.interface
        ),
        HopProblem::Down => format!("{} is administratively down", hop.interface),
        HopProblem::NoCarrier => format!("{} has no carrier", hop.interface),
        HopProblem::NotForwarding { state } => {
            format!("bridge port {} is {state}, not forwarding", hop.interface)
        }
    }
}

fn hop_advice(hop: &Hop, problem: &HopProblem) -> String {
    let exec = netns_exec(&hop.netns);
    match problem {
        HopProblem::NotInBridge { bridge } | HopProblem::DifferentBridges { bridge, .. } => {
            format!("{exec}ip link set {} master {bridge}", hop.interface)
        }
        HopProblem::Down | HopProblem::NoCarrier => {
            format!("{exec}ip link set {} up (and its peer)", hop.interface)
        }
        HopProblem::NotForwarding { .. } => format!(
            "Check STP on the bridge ({exec}bridge link show dev {}).",
            hop.interface
        ),
    }
}

/// One hop with its state.
pub fn hop_line(hop: &Hop) -> String {
    match hop_state(hop) {
        Some(state) => format!("{}: {state}", hop_label(hop)),
        None => hop_label(hop),
    }
}

/// A hop's link state: `up, carrier 1, mtu 1500, port of br0 (forwarding)`; `None` when its
/// link was not found (or, for the cable, cannot be seen).
pub fn hop_state(hop: &Hop) -> Option<String> {
    let link = hop.link.as_ref()?;
    let mut line = format!(
        "{}, carrier {}, mtu {}",
        if link.admin_up { "up" } else { "DOWN" },
        u8::from(link.carrier),
        link.mtu
    );
    if let Some(bridge) = &hop.bridge {
        line.push_str(&format!(", port of {bridge}"));
    }
    if let Some(state) = &link.bridge_port_state {
        line.push_str(&format!(" ({state})"));
    }
    Some(line)
}

pub fn mtu_line(probe: &MtuProbe) -> String {
    let mut line = format!(
        "don't-fragment echo of {} bytes from the {}: {} sent, {} answered; left origin port {}, reached peer port {}",
        probe.size,
        side_name(probe.from),
        probe.sent,
        probe.answered,
        probe.left_origin,
        probe.reached_peer
    );
    if let Some(error) = &probe.error {
        line.push_str(&format!(" ({error})"));
    }
    line
}
