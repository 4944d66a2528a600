//! Phrases every finding and fact is written with: places, commands, sysctls, hops, drops.
//! Pure functions of the evidence's plain data.

use crate::{
    cables::{CablePort, PortLinkState},
    counters::DropCount,
    facts::{
        Exchange, ExchangeKind, Hop, HopRole, MtuProbe, NetfilterEvidence, NetfilterLocation, Side,
        Sysctl,
    },
    verdict::PortRef,
};

/// A namespace's name for people and signatures: tracer's own (the empty name) is `(own)`.
pub fn display_netns(netns: &str) -> &str {
    if netns.is_empty() { "(own)" } else { netns }
}

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

/// The command that removes a veth end in `netns` (its peer goes with it).
pub fn link_removal(netns: &str, interface: &str) -> String {
    format!("{}ip link del {interface}", netns_exec(netns))
}

/// The comment SPDK's test scripts put on every rule they add (and grep for to remove them).
pub const SPDK_RULE_COMMENT: &str = "SPDK_NVMF";

/// Whether a rule's text carries SPDK's comment: the test's own rule, added on purpose.
pub fn is_spdk_rule(rule: &str) -> bool {
    rule.contains(SPDK_RULE_COMMENT)
}

/// What follows a rule's text when it is SPDK's own: ` (SPDK's own test rule, SPDK_NVMF comment)`.
pub fn spdk_rule_note(rule: &str) -> &'static str {
    if is_spdk_rule(rule) {
        " (SPDK's own test rule, SPDK_NVMF comment)"
    } else {
        ""
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

pub fn probe_name(kind: ExchangeKind) -> &'static str {
    match kind {
        ExchangeKind::Arp => "ARP request",
        ExchangeKind::IcmpForward => "ICMP echo initiator -> target",
        ExchangeKind::IcmpReverse => "ICMP echo target -> initiator",
        ExchangeKind::Tcp => "TCP connect",
    }
}

/// How a report speaks of its exchanges: diagnose sent probes; watch sent nothing and
/// observed the command's own traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    /// The command that gathered the evidence.
    pub command: &'static str,
    /// The title of the exchanges' section.
    pub exchanges: &'static str,
    /// One exchange, as a table's column names it.
    pub exchange: &'static str,
    /// When the drops and rule counters were read.
    pub during: &'static str,
}

pub fn voice(observed: bool) -> Voice {
    if observed {
        Voice {
            command: "tracer watch",
            exchanges: "Traffic observed",
            exchange: "exchange",
            during: "while watching",
        }
    } else {
        Voice {
            command: "tracer diagnose",
            exchanges: "Probes",
            exchange: "probe",
            during: "while probing",
        }
    }
}

/// How one exchange went: "3 sent, 0 answered, 3 refused (RST: nothing listens)". The
/// evidence and the probe ladder both say it in these words.
pub fn outcome(probe: &Exchange) -> String {
    let outcome = &probe.outcome;
    let mut line = format!("{} sent, {} answered", outcome.sent, outcome.answered);
    if outcome.refused > 0 {
        line += &format!(", {} refused (RST: nothing listens)", outcome.refused);
    }
    if outcome.unreachable > 0 {
        line += &format!(", {} ICMP unreachable", outcome.unreachable);
    }
    if let Some(error) = &outcome.error {
        line += &format!(", error: {error}");
    }
    line
}

/// Where one probe's packets were seen, in one line.
pub fn ladder(probe: &Exchange) -> String {
    format!(
        "{}: {}; left origin port {}, reached peer port {}, answers left peer {}, answers reached origin {}",
        probe_name(probe.kind),
        outcome(probe),
        probe.left_origin,
        probe.reached_peer,
        probe.answer_left_peer,
        probe.answer_reached_origin
    )
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
        display_netns(&location.netns),
        location.family,
        location.table,
        location.chain,
        hit.rule_found_by.name()
    )
}

/// Where netfilter dropped, in one line: `namespace x, family ip, table filter, chain INPUT,
/// rule -A INPUT -p icmp -j DROP`.
pub fn rule_location(location: &NetfilterLocation) -> String {
    format!(
        "namespace {}, family {}, table {}, chain {}, rule {}",
        display_netns(&location.netns),
        location.family,
        location.table,
        location.chain,
        if location.rule.is_empty() {
            "(not identified)"
        } else {
            &location.rule
        }
    )
}

/// `arp_ignore=1 (all 0, device 1)`.
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

/// Where else an interface of this name is: `an interface named cvl_0_0 is in namespace x`.
pub fn found_elsewhere(interface: &str, found: &[String]) -> String {
    if found.is_empty() {
        return format!("no namespace has an interface named {interface}");
    }
    let places: Vec<String> = found.iter().map(|netns| namespace_phrase(netns)).collect();
    format!("an interface named {interface} is in {}", places.join(", "))
}

/// Ports for people, joined: `cvl_1_0 and cvl_1_1 (namespace x)`.
pub fn port_list(ports: &[PortRef]) -> String {
    let labels: Vec<String> = ports.iter().map(PortRef::label).collect();
    match labels.as_slice() {
        [] => "no port".to_owned(),
        [only] => only.clone(),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
    }
}

/// One port of the cable map in a line: where its frames went, its partner, its link.
pub fn cable_line(cable: &CablePort) -> String {
    let mut line = format!(
        "{}: {} of {} frame(s) left, arrived at {}",
        cable.port.label(),
        cable.left,
        cable.sent,
        port_list(&cable.reaches)
    );
    if let Some(partner) = &cable.partner {
        line.push_str(&format!("; LLDP partner {}", partner.label()));
    }
    line.push_str(&format!("; {}", link_state_text(&cable.link)));
    line
}

/// A port's link as the kernel and driver report it, what they do not named as missing.
pub fn link_state_text(link: &PortLinkState) -> String {
    let mut parts = vec![format!(
        "admin {}, carrier {}",
        if link.admin_up { "up" } else { "down" },
        on_off(link.carrier)
    )];
    if let (Some(speed), Some(duplex)) = (link.speed_mbps, &link.duplex) {
        parts.push(format!("{speed} Mb/s {duplex}"));
    }
    if let Some(autoneg) = link.autoneg {
        parts.push(format!("autoneg {}", on_off(autoneg)));
    }
    if let Some(state) = &link.ext_state {
        match link.ext_substate {
            Some(substate) => parts.push(format!("link state {state} (substate {substate})")),
            None => parts.push(format!("link state {state}")),
        }
    }
    if let Some(downs) = link.carrier_downs_during_run.filter(|downs| *downs > 0) {
        parts.push(format!("carrier went down {downs} time(s) during the run"));
    }
    if let (Some(up), Some(down)) = (link.carrier_up_count, link.carrier_down_count) {
        parts.push(format!(
            "carrier up {up}, down {down} since the device appeared"
        ));
    }
    if let Some(events) = link.link_down_events {
        parts.push(format!("{events} link-down event(s) counted by the driver"));
    }
    if link.firmware_lldp_agent == Some(true) {
        parts.push(FIRMWARE_LLDP_AGENT.to_owned());
    }
    if !link.missing.is_empty() {
        parts.push(format!("not available: {}", link.missing.join(", ")));
    }
    parts.join(", ")
}

/// What ice's firmware LLDP agent does to LLDP, and how to turn it off.
pub const FIRMWARE_LLDP_AGENT: &str = "the firmware LLDP agent is on and consumes LLDP frames \
     (`ethtool --set-priv-flags DEV fw-lldp-agent off` lets them reach the kernel)";

/// Two ends of a cable whose speed, duplex or autonegotiation differ, in a sentence: `cvl_0_1
/// is at 25000 Mb/s full, cvl_1_0 at 10000 Mb/s full`; `None` when they match or are unknown.
pub fn link_mismatch(a: &CablePort, b: &CablePort) -> Option<String> {
    let mode = |link: &PortLinkState| {
        Some(format!(
            "{} Mb/s {}",
            link.speed_mbps?,
            link.duplex.as_deref()?
        ))
    };
    let (mode_a, mode_b) = (mode(&a.link), mode(&b.link));
    if let (Some(mode_a), Some(mode_b)) = (&mode_a, &mode_b)
        && mode_a != mode_b
    {
        return Some(format!(
            "{} is at {mode_a}, {} at {mode_b}",
            a.port.interface, b.port.interface
        ));
    }
    match (a.link.autoneg, b.link.autoneg) {
        (Some(autoneg_a), Some(autoneg_b)) if autoneg_a != autoneg_b => Some(format!(
            "autonegotiation is {} on {} and {} on {}",
            on_off(autoneg_a),
            a.port.interface,
            on_off(autoneg_b),
            b.port.interface
        )),
        _ => None,
    }
}

/// A port and its LLDP partner whose autonegotiation differs.
pub fn partner_mismatch(port: &CablePort) -> Option<String> {
    let partner = port.partner.as_ref()?;
    match (port.link.autoneg, partner.autoneg) {
        (Some(ours), Some(theirs)) if ours != theirs => Some(format!(
            "autonegotiation is {} on {} and {} on {} (LLDP)",
            on_off(ours),
            port.port.interface,
            on_off(theirs),
            partner.label()
        )),
        _ => None,
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
