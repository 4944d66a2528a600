//! The classifier: `diagnose(&Evidence) -> Verdict`, a pure function.
//!
//! It reads the evidence the way a person would: first what makes probing meaningless (a
//! missing or down port, no route), then, if a probe went unanswered, who took the packets
//! (netfilter, or another tool's BPF program on a port), whether they crossed the wire at all
//! (cable), whether the target answered ARP (neighbour), and what the kernel said otherwise
//! (unknown, with its drop reason).

use crate::{
    facts::{
        AttachedProgram, DropEvidence, Evidence, FoundBy, Hop, HopRole, NetfilterLocation,
        PortEvidence, ProbeEvidence, ProbeKind, RouteLookup, Side, Sysctl, mac_text,
    },
    verdict::{Fact, Finding, HopProblem, PortRef, Verdict, VerdictClass},
};

/// Drop reasons that are normal on a healthy path and say nothing about a fault.
const BENIGN_REASONS: [&str; 3] = ["NO_SOCKET", "QUEUE_PURGE", "NOT_SPECIFIED"];

pub fn diagnose(evidence: &Evidence) -> Verdict {
    if let Some(verdict) = interface_fault(evidence) {
        return verdict;
    }
    // Without a route from the initiator the probes cannot leave: that is the answer.
    if let Some(verdict) = no_route(evidence) {
        return verdict;
    }
    let failed: Vec<&ProbeEvidence> = evidence
        .probes
        .iter()
        .filter(|probe| probe.skipped.is_none() && !probe.fully_answered())
        .collect();
    if evidence.probes.iter().all(|probe| probe.skipped.is_some()) {
        return Verdict::new(VerdictClass::Ok, Side::None, Finding::NothingObserved);
    }
    if failed.is_empty() {
        // Small probes pass; jumbo frames may still die on the way.
        return mtu_fault(evidence).unwrap_or_else(|| healthy(evidence));
    }
    // A route by another interface is a fault only where the probes failed: on a bridge, the
    // other interface may reach the target too.
    let never_left = failed.iter().any(|probe| {
        probe.from == Side::Initiator && probe.kind != ProbeKind::Arp && probe.left_origin == 0
    });
    netfilter_fault(evidence, &failed)
        .or_else(|| program_fault(evidence, &failed))
        .or_else(|| carrier_gap_fault(evidence, &failed))
        .or_else(|| {
            carrier_fault(evidence).map(|verdict| verdict.because_all(probe_facts(&failed)))
        })
        // A broken hop explains probes that never arrived, whichever way they left.
        .or_else(|| hop_fault(evidence, &failed))
        .or_else(|| route_fault(evidence, Side::Initiator).filter(|_| never_left))
        .or_else(|| mtu_fault(evidence))
        .or_else(|| frames_lost(evidence, &failed))
        .or_else(|| neighbour_mismatch(evidence, &failed))
        .or_else(|| reverse_path_fault(evidence, &failed))
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

fn opposite(side: Side) -> Side {
    if side == Side::Target {
        Side::Initiator
    } else {
        Side::Target
    }
}

fn port_ref(port: &PortEvidence) -> PortRef {
    PortRef {
        netns: port.netns.clone(),
        interface: port.interface.clone(),
    }
}

fn probe_facts<'a>(probes: impl IntoIterator<Item = &'a &'a ProbeEvidence>) -> Vec<Fact> {
    probes
        .into_iter()
        .map(|probe| Fact::Probe {
            probe: (*probe).clone(),
        })
        .collect()
}

fn interface_fault(evidence: &Evidence) -> Option<Verdict> {
    for port in ports(evidence) {
        let found_elsewhere = port.found_elsewhere.clone();
        if !port.netns_exists {
            return Some(
                Verdict::new(
                    VerdictClass::Interface,
                    port.side,
                    Finding::NamespaceMissing {
                        port: port_ref(port),
                        found_elsewhere,
                    },
                )
                .because(Fact::NoNamespace {
                    netns: port.netns.clone(),
                }),
            );
        }
        let Some(link) = &port.link else {
            return Some(
                Verdict::new(
                    VerdictClass::Interface,
                    port.side,
                    Finding::InterfaceMissing {
                        port: port_ref(port),
                        found_elsewhere,
                    },
                )
                .because(Fact::NoInterface {
                    port: port_ref(port),
                }),
            );
        };
        if !link.admin_up {
            return Some(
                Verdict::new(
                    VerdictClass::Interface,
                    port.side,
                    Finding::InterfaceDown {
                        port: port_ref(port),
                        operstate: link.operstate.clone(),
                    },
                )
                .because(Fact::Link {
                    port: port_ref(port),
                    link: link.clone(),
                }),
            );
        }
    }
    None
}

/// No route at all from the initiator to the target: nothing could be probed.
fn no_route(evidence: &Evidence) -> Option<Verdict> {
    route_fault(evidence, Side::Initiator)
        .filter(|verdict| matches!(verdict.finding, Finding::NoRoute { .. }))
}

fn route_fault(evidence: &Evidence, from: Side) -> Option<Verdict> {
    for route in evidence.routes.iter().filter(|route| route.from == from) {
        let port = port_ref(port(evidence, route.from));
        let fact = Fact::RouteLookup {
            port: port.clone(),
            destination: route.destination,
            lookup: route.lookup.clone(),
            via: route.via_interface.clone(),
        };
        let finding = match &route.lookup {
            RouteLookup::Unreachable { message, .. } => Finding::NoRoute {
                port,
                destination: route.destination,
                message: message.clone(),
            },
            RouteLookup::Via { .. } if !route.via_port => Finding::RouteByOtherInterface {
                port,
                destination: route.destination,
                via: route.via_interface.clone(),
            },
            RouteLookup::Via { .. } => continue,
        };
        let at = self::port(evidence, route.from);
        let beside = (!at.same_subnet_elsewhere.is_empty()).then(|| Fact::SameSubnet {
            port: port_ref(at),
            interfaces: at.same_subnet_elsewhere.clone(),
        });
        return Some(
            Verdict::new(VerdictClass::Route, route.from, finding)
                .because(fact)
                .because_all(beside),
        );
    }
    None
}

fn probe(evidence: &Evidence, kind: ProbeKind) -> Option<&ProbeEvidence> {
    evidence.probes.iter().find(|probe| probe.kind == kind)
}

fn netfilter_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
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
        .max_by_key(|hit| (hit.rule_found_by != FoundBy::Candidate, hit.packets));
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
    Some(
        Verdict::new(
            VerdictClass::Netfilter,
            side,
            Finding::NetfilterDrop { location, dropped },
        )
        .because_all(
            netfilter_drops
                .into_iter()
                .map(|drop| Fact::Drop { drop: drop.clone() }),
        )
        .because_all(
            evidence
                .netfilter
                .iter()
                .map(|rule| Fact::Rule { rule: rule.clone() }),
        )
        .because_all(probe_facts(failed)),
    )
}

/// A probe that stopped at a port where another tool's program runs on the way: on tc ingress
/// behind tracer's own counting (the frames were counted arriving and went no further), or on
/// XDP, ahead of tracer's tc counting (the frames were never counted).
fn program_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
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
            let programs: Vec<AttachedProgram> = at
                .programs
                .iter()
                .filter(|program| program.hook == hook)
                .cloned()
                .collect();
            if !stopped || programs.is_empty() {
                continue;
            }
            let facts: Vec<Fact> = programs
                .iter()
                .map(|program| Fact::Program {
                    port: port_ref(at),
                    program: program.clone(),
                })
                .collect();
            return Some(
                Verdict::new(
                    VerdictClass::Program,
                    side,
                    Finding::ProgramTakesProbes {
                        port: port_ref(at),
                        hook: hook.to_owned(),
                        programs,
                    },
                )
                .because_all(facts)
                .because_all(probe_facts(failed)),
            );
        }
    }
    None
}

/// Don't-fragment probes at the size the path claims did not pass (or the kernel dropped
/// packets as too big): the MTUs along the path differ.
fn mtu_fault(evidence: &Evidence) -> Option<Verdict> {
    let failed = evidence
        .mtu_probes
        .iter()
        .find(|probe| probe.answered < probe.sent || probe.error.is_some());
    let too_big = evidence
        .drops
        .iter()
        .find(|drop| drop.drop.reason == "PKT_TOO_BIG");
    let (from, size) = match (failed, too_big) {
        (Some(probe), _) => (probe.from, probe.size),
        // The test's own traffic: a drop as too big on one port means the other sent it.
        (None, Some(drop)) => (
            opposite(drop.side),
            port_mtu(port(evidence, opposite(drop.side))),
        ),
        // The test's own traffic lost on the way from a port whose MTU a hop after it cannot
        // take (a veth drops such frames without a reason).
        (None, None) => lost_above_a_smaller_mtu(evidence)?,
    };
    let (origin, peer) = (port(evidence, from), port(evidence, opposite(from)));
    // Where it dies: the first hop from the origin whose MTU is below the size.
    let hops: Vec<&Hop> = match &evidence.path {
        Some(path) if from == Side::Target => path.hops.iter().rev().collect(),
        Some(path) => path.hops.iter().collect(),
        None => Vec::new(),
    };
    let dropping = hops
        .iter()
        .filter_map(|hop| Some((hop, hop.link.as_ref()?.mtu)))
        .find(|(_, mtu)| *mtu > 0 && *mtu < size)
        .map(|(hop, mtu)| {
            (
                PortRef {
                    netns: hop.netns.clone(),
                    interface: hop.interface.clone(),
                },
                mtu,
            )
        })
        .unwrap_or_else(|| (port_ref(peer), port_mtu(peer)));
    let facts = evidence
        .mtu_probes
        .iter()
        .map(|probe| Fact::Mtu {
            probe: probe.clone(),
        })
        .chain(too_big.map(|drop| Fact::Drop { drop: drop.clone() }))
        .chain(
            hops.iter()
                .filter(|hop| hop.role != HopRole::Port)
                .map(|hop| Fact::Hop {
                    hop: (*hop).clone(),
                }),
        );
    Some(
        Verdict::new(
            VerdictClass::Mtu,
            if dropping.0 == port_ref(origin) {
                from
            } else if dropping.0 == port_ref(peer) {
                opposite(from)
            } else {
                Side::Wire
            },
            Finding::MtuMismatch {
                from: port_ref(origin),
                from_mtu: port_mtu(origin),
                to: port_ref(peer),
                to_mtu: port_mtu(peer),
                dropping: dropping.0,
                dropping_mtu: dropping.1,
                size,
            },
        )
        .because_all(facts),
    )
}

/// The side whose frames were lost on the way while its port's MTU is above a hop's after it,
/// with that MTU; only for the test's own traffic (diagnose's probes test the size itself).
fn lost_above_a_smaller_mtu(evidence: &Evidence) -> Option<(Side, u32)> {
    if !evidence.mtu_probes.is_empty() {
        return None;
    }
    let path = evidence.path.as_ref()?;
    let smallest = path
        .hops
        .iter()
        .filter_map(|hop| Some(hop.link.as_ref()?.mtu))
        .filter(|mtu| *mtu > 0)
        .min()?;
    evidence.probes.iter().find_map(|probe| {
        let (side, left, arrived) = if probe.left_origin > probe.reached_peer {
            (probe.from, probe.left_origin, probe.reached_peer)
        } else {
            (
                opposite(probe.from),
                probe.answer_left_peer,
                probe.answer_reached_origin,
            )
        };
        let mtu = port_mtu(port(evidence, side));
        (arrived < left && mtu > smallest).then_some((side, mtu))
    })
}

fn port_mtu(port: &PortEvidence) -> u32 {
    port.link.as_ref().map_or(0, |link| link.mtu)
}

/// Frames left a port while it had no carrier (watch saw carrier come later, or never).
fn carrier_gap_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    let gap = evidence.carrier_gaps.iter().find(|gap| gap.frames > 0)?;
    let at = port(evidence, gap.side);
    Some(
        Verdict::new(
            VerdictClass::Cable,
            gap.side,
            Finding::CarrierLate {
                port: port_ref(at),
                frames_without_carrier: gap.frames,
                carrier_after_ms: gap.carrier_after_ms,
            },
        )
        .because_all(probe_facts(failed)),
    )
}

/// A hop between two veth peers that does not pass frames on: frames left a port and did not
/// reach the other, and the walk of the path shows why.
fn hop_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    let path = evidence.path.as_ref()?;
    let lost = failed.iter().any(|probe| {
        probe.reached_peer < u64::from(probe.outcome.sent)
            || (probe.answer_left_peer > 0 && probe.answer_reached_origin < probe.answer_left_peer)
    });
    if !lost {
        return None;
    }
    let bridge = path
        .hops
        .iter()
        .find(|hop| hop.role == HopRole::Bridge)
        .map(|hop| hop.interface.clone());
    let broken = path.hops.iter().find_map(|hop| {
        if hop.role == HopRole::Port || hop.role == HopRole::Cable {
            return None;
        }
        let link = hop.link.as_ref()?;
        let problem = if !link.admin_up {
            HopProblem::Down
        } else if !link.carrier {
            HopProblem::NoCarrier
        } else if hop.role == HopRole::VethPeer {
            match (&bridge, &hop.bridge) {
                (Some(bridge), None) => HopProblem::NotInBridge {
                    bridge: bridge.clone(),
                },
                (Some(bridge), Some(own)) if own != bridge => HopProblem::DifferentBridges {
                    bridge: bridge.clone(),
                    other: own.clone(),
                },
                _ => match link.bridge_port_state.as_deref() {
                    Some(state) if state != "forwarding" => HopProblem::NotForwarding {
                        state: state.to_owned(),
                    },
                    _ => return None,
                },
            }
        } else {
            return None;
        };
        Some((hop.clone(), problem))
    })?;
    let (hop, problem) = broken;
    Some(
        Verdict::new(
            VerdictClass::Cable,
            Side::Wire,
            Finding::HopBroken { hop, problem },
        )
        .because_all(path.hops.iter().map(|hop| Fact::Hop { hop: hop.clone() }))
        .because_all(probe_facts(failed)),
    )
}

/// The initiator's entry for the target's address holds another MAC than the target port's:
/// frames go out to a MAC nobody has (a static entry, or a stale one after the target port was
/// re-created).
fn neighbour_mismatch(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    let target_mac = mac_text(evidence.target.link.as_ref()?.mac?);
    let entry = evidence.neighbours.iter().find(|neighbour| {
        neighbour.side == Side::Initiator
            && neighbour.address.to_string() == evidence.environment.target_ip
    })?;
    let entry_mac = entry.mac.clone()?;
    if entry_mac == target_mac {
        return None;
    }
    Some(
        Verdict::new(
            VerdictClass::Neighbour,
            Side::Initiator,
            Finding::NeighbourMismatch {
                port: port_ref(&evidence.initiator),
                address: entry.address,
                entry_mac,
                entry_state: entry
                    .after
                    .clone()
                    .or_else(|| entry.before.clone())
                    .unwrap_or_default(),
                target_mac,
            },
        )
        .because(Fact::Neighbour {
            neighbour: entry.clone(),
        })
        .because_all(
            evidence
                .drops
                .iter()
                .map(|drop| Fact::Drop { drop: drop.clone() }),
        )
        .because_all(probe_facts(failed)),
    )
}

/// Strict reverse-path filtering on a side whose route back to the other side's address leaves
/// by another interface: what arrives on the port is dropped (ARP requests included).
fn reverse_path_fault(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    for side in [Side::Target, Side::Initiator] {
        let at = port(evidence, side);
        let Some(sysctl) = at
            .sysctls
            .iter()
            .find(|sysctl| sysctl.name == "rp_filter" && sysctl.effective == 1)
        else {
            continue;
        };
        let Some(route) = evidence
            .routes
            .iter()
            .find(|route| route.from == side && !route.via_port)
        else {
            continue;
        };
        let rpfilter_drops = evidence
            .drops
            .iter()
            .filter(|drop| drop.side == side && drop.drop.reason == "IP_RPFILTER")
            .map(|drop| Fact::Drop { drop: drop.clone() });
        return Some(
            Verdict::new(
                VerdictClass::Route,
                side,
                Finding::ReversePathFilter {
                    port: port_ref(at),
                    sysctl: sysctl.clone(),
                    source: route.destination,
                    route_via: route.via_interface.clone(),
                },
            )
            .because(Fact::Sysctl {
                port: port_ref(at),
                sysctl: sysctl.clone(),
            })
            .because(Fact::RouteLookup {
                port: port_ref(at),
                destination: route.destination,
                lookup: route.lookup.clone(),
                via: route.via_interface.clone(),
            })
            .because_all(rpfilter_drops)
            .because_all(probe_facts(failed)),
        );
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
    let facts: Vec<Fact> = without_carrier
        .iter()
        .filter_map(|port| {
            Some(Fact::Link {
                port: port_ref(port),
                link: port.link.clone()?,
            })
        })
        .collect();
    Some(
        Verdict::new(
            VerdictClass::Cable,
            side,
            Finding::NoCarrier {
                ports: without_carrier.into_iter().map(port_ref).collect(),
            },
        )
        .because_all(facts),
    )
}

/// Frames that left one port and did not all arrive at the other, with carrier on both.
fn frames_lost(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Option<Verdict> {
    let lost_forward = failed
        .iter()
        .find(|probe| probe.left_origin > 0 && probe.reached_peer < probe.left_origin);
    let lost_back = failed.iter().find(|probe| {
        probe.answer_left_peer > 0 && probe.answer_reached_origin < probe.answer_left_peer
    });
    let (probe, from, left, arrived) = match (lost_forward, lost_back) {
        (Some(probe), _) => (probe, probe.from, probe.left_origin, probe.reached_peer),
        (None, Some(probe)) => (
            probe,
            opposite(probe.from),
            probe.answer_left_peer,
            probe.answer_reached_origin,
        ),
        (None, None) => return None,
    };
    Some(
        Verdict::new(
            VerdictClass::Cable,
            Side::Wire,
            Finding::FramesLost {
                probe: probe.kind,
                from: port_ref(port(evidence, from)),
                to: port_ref(port(evidence, opposite(from))),
                left,
                arrived,
            },
        )
        .because(Fact::CarrierOnBoth {
            initiator: evidence.initiator.interface.clone(),
            target: evidence.target.interface.clone(),
        })
        .because_all(probe_facts(failed)),
    )
}

/// The target does not answer ARP: it does not own the address (whatever ARP did earlier in a
/// watched run: an address removed by NetworkManager or DHCP), or its ARP sysctls keep it
/// silent.
fn neighbour_fault(evidence: &Evidence) -> Option<Verdict> {
    let target_ip = &evidence.environment.target_ip;
    let target = &evidence.target;
    let owns_address = target
        .addresses
        .iter()
        .any(|address| address.split('/').next() == Some(target_ip.as_str()));
    let arp = probe(evidence, ProbeKind::Arp);
    let arp_failed = arp.is_some_and(|arp| !arp.fully_answered() && arp.reached_peer > 0);
    if !arp_failed && owns_address {
        return None;
    }
    let sysctls: Vec<Sysctl> = target
        .sysctls
        .iter()
        .filter(|sysctl| {
            matches!(
                sysctl.name.as_str(),
                "arp_ignore" | "arp_filter" | "arp_announce"
            ) && sysctl.effective != 0
        })
        .cloned()
        .collect();
    Some(
        Verdict::new(
            VerdictClass::Neighbour,
            Side::Target,
            Finding::ArpUnanswered {
                port: port_ref(target),
                target_ip: target_ip.clone(),
                owns_address,
                sysctls: sysctls.clone(),
            },
        )
        .because_all(arp.map(|arp| Fact::Probe { probe: arp.clone() }))
        .because_all(sysctls.into_iter().map(|sysctl| Fact::Sysctl {
            port: port_ref(target),
            sysctl,
        }))
        .because(Fact::Addresses {
            port: port_ref(target),
            addresses: target.addresses.clone(),
        })
        .because_all(evidence.neighbours.iter().map(|neighbour| Fact::Neighbour {
            neighbour: neighbour.clone(),
        })),
    )
}

fn unexplained(evidence: &Evidence, failed: &[&ProbeEvidence]) -> Verdict {
    let suspicious = evidence
        .drops
        .iter()
        .filter(|drop| {
            !BENIGN_REASONS.contains(&drop.drop.reason.as_str()) && drop.drop.protocol != "ipv6"
        })
        .max_by_key(|drop| drop.drop.count);
    let (side, finding) = match suspicious {
        Some(drop) => (
            drop.side,
            Finding::UnexplainedDrop {
                drop: drop.drop.clone(),
            },
        ),
        None => (Side::None, Finding::Unanswered),
    };
    Verdict::new(VerdictClass::Unknown, side, finding)
        .because_all(
            evidence
                .drops
                .iter()
                .map(|drop| Fact::Drop { drop: drop.clone() }),
        )
        .because_all(probe_facts(failed))
}

fn healthy(evidence: &Evidence) -> Verdict {
    let listening = probe(evidence, ProbeKind::Tcp).map(|tcp| tcp.outcome.answered > 0);
    Verdict::new(
        VerdictClass::Ok,
        Side::None,
        Finding::PathWorks {
            target_ip: evidence.environment.target_ip.clone(),
            port: evidence.environment.port,
            listening,
        },
    )
    .because_all(evidence.probes.iter().map(|probe| Fact::Probe {
        probe: probe.clone(),
    }))
}

#[cfg(test)]
mod tests;
