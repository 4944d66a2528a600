//! The test's own traffic as evidence: the ports as they are at the end, the routes between
//! them, probe ladders from the run's counts, the drops and the rules that dropped.

use std::{collections::BTreeMap, net::Ipv4Addr};

use tracer_common::PacketKind;
use tracer_evidence::{
    CarrierGap, CountersReport, DropEvidence, Evidence, InterfaceCounters, KindCounts,
    NeighbourEvidence, PortEvidence, ProbeEvidence, ProbeKind, ProbeOutcome, Side, mac_text,
};

use super::observe::{Watch, WatchedPort};
use crate::{
    cli::WatchArgs,
    collect::{
        host::{environment, inspect_port, route_evidence},
        path,
        ports::PortProbe,
        rules::netfilter_evidence,
    },
    netfilter::{DropHit, Ruleset},
};

/// The test's own traffic as probe ladders: what left one port, reached the other, and came
/// back, for each kind of exchange that happened at all.
/// (ingress, egress) counts of one port over the run.
pub(super) type Totals = (KindCounts, KindCounts);

pub(super) fn passive_probes(initiator: &Totals, target: &Totals) -> Vec<ProbeEvidence> {
    let exchanges: [(ProbeKind, Side, &[PacketKind], &[PacketKind]); 5] = [
        (
            ProbeKind::Arp,
            Side::Initiator,
            &[PacketKind::ArpRequest],
            &[PacketKind::ArpReply],
        ),
        (
            ProbeKind::Arp,
            Side::Target,
            &[PacketKind::ArpRequest],
            &[PacketKind::ArpReply],
        ),
        (
            ProbeKind::IcmpForward,
            Side::Initiator,
            &[PacketKind::IcmpEchoRequest],
            &[PacketKind::IcmpEchoReply],
        ),
        (
            ProbeKind::IcmpReverse,
            Side::Target,
            &[PacketKind::IcmpEchoRequest],
            &[PacketKind::IcmpEchoReply],
        ),
        (
            ProbeKind::Tcp,
            Side::Initiator,
            &[PacketKind::TcpSyn],
            &[PacketKind::TcpSynAck, PacketKind::TcpRst],
        ),
    ];
    exchanges
        .into_iter()
        .filter_map(|(kind, from, requests, answers)| {
            let (origin, peer) = if from == Side::Target {
                (target, initiator)
            } else {
                (initiator, target)
            };
            let left_origin = origin.1.sum_of(requests);
            if left_origin == 0 {
                return None;
            }
            let answer_reached_origin = origin.0.sum_of(answers);
            Some(ProbeEvidence {
                kind,
                from,
                outcome: ProbeOutcome {
                    sent: left_origin.min(u64::from(u32::MAX)) as u32,
                    answered: answer_reached_origin.min(left_origin) as u32,
                    ..Default::default()
                },
                skipped: None,
                left_origin,
                reached_peer: peer.0.sum_of(requests),
                answer_left_peer: peer.1.sum_of(answers),
                answer_reached_origin,
            })
        })
        .collect()
}

/// Dropping rules whose counters grew since `before`, counting in full the rules of chains
/// `before` did not have (a namespace or table made while watching, or no `before` at all).
pub(super) fn counted_drops(before: Option<&Ruleset>, after: &Ruleset) -> Vec<DropHit> {
    let empty = Ruleset::default();
    let before = before.unwrap_or(&empty);
    let mut hits = before.drop_hits(after);
    let known = |backend, family: &str, table: &str, chain: &str| {
        before.chains.iter().any(|known| {
            known.backend == backend
                && known.family == family
                && known.table == table
                && known.name == chain
        })
    };
    let new_rules = after
        .rules
        .iter()
        .filter(|rule| rule.drops && rule.packets.unwrap_or(0) > 0)
        .filter(|rule| !known(rule.backend, &rule.family, &rule.table, &rule.chain))
        .map(|rule| rule.hit(rule.packets.unwrap_or(0)));
    let new_policies = after
        .chains
        .iter()
        .filter(|chain| chain.policy_drop && chain.policy_packets.unwrap_or(0) > 0)
        .filter(|chain| !known(chain.backend, &chain.family, &chain.table, &chain.name))
        .map(|chain| chain.policy_hit(chain.policy_packets.unwrap_or(0)));
    for hit in new_rules.chain(new_policies) {
        if !hits.contains(&hit) {
            hits.push(hit);
        }
    }
    hits
}

pub(super) fn port_evidence(port: &WatchedPort) -> PortEvidence {
    let ours = port.probe().map(PortProbe::program_ids).unwrap_or_default();
    inspect_port(&port.current_spec(), port.side, &ours)
}

pub(super) fn passive_evidence(
    watch: &Watch,
    args: &WatchArgs,
    final_rulesets: &BTreeMap<String, Ruleset>,
) -> Evidence {
    let [initiator, target] = &watch.ports;
    let initiator_evidence = port_evidence(initiator);
    let target_evidence = port_evidence(target);
    let routes = if initiator_evidence.link.is_some() && target_evidence.link.is_some() {
        vec![
            route_evidence(&initiator_evidence, args.target_ip),
            route_evidence(&target_evidence, args.initiator_ip),
        ]
    } else {
        Vec::new()
    };
    let drops = watch.drop_evidence();
    let path = path::walk(&initiator_evidence, &target_evidence);
    let carrier_gaps = watch
        .ports
        .iter()
        .filter_map(|port| {
            let gap = port.carrier_gap?;
            Some(CarrierGap {
                side: port.side,
                frames: gap.frames,
                carrier_after_ms: gap
                    .carrier_at
                    .map(|at| ((at - gap.since).max(0.0) * 1000.0) as u64),
            })
        })
        .collect();
    let netfilter = watch
        .ports
        .iter()
        .filter_map(|port| {
            let location = port.location()?;
            let after = final_rulesets.get(&location.netns)?;
            let counted = counted_drops(watch.first_rulesets.get(&location.netns), after);
            let dropped: Vec<&DropEvidence> = drops
                .iter()
                .filter(|drop| drop.side == port.side && drop.drop.reason == "NETFILTER_DROP")
                .collect();
            Some(netfilter_evidence(
                port.side,
                &location.netns,
                &dropped,
                counted,
                after,
            ))
        })
        .flatten()
        .collect();
    let neighbours = watch
        .ports
        .iter()
        .flat_map(|port| {
            let netns = port
                .location()
                .map(|location| location.netns.clone())
                .unwrap_or_default();
            let mut addresses: Vec<&Ipv4Addr> = port
                .first_neighbours
                .keys()
                .chain(port.neighbours.keys())
                .collect();
            addresses.sort();
            addresses.dedup();
            addresses
                .into_iter()
                .map(|address| NeighbourEvidence {
                    side: port.side,
                    netns: netns.clone(),
                    address: (*address).into(),
                    before: port.first_neighbours.get(address).cloned(),
                    after: port.neighbours.get(address).cloned(),
                    mac: port.neighbour_macs.get(address).copied().map(mac_text),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut environment = environment(args.initiator_ip, args.target_ip, args.ports.counting.port);
    environment.limitations.extend(watch.drops.limitation());
    if watch.ports.iter().all(|port| port.seen.is_empty()) {
        environment
            .limitations
            .push("no ARP, ICMP or port traffic crossed the ports: pass --probe to probe".into());
    }
    Evidence {
        initiator: initiator_evidence,
        target: target_evidence,
        routes,
        probes: passive_probes(&initiator.totals, &target.totals),
        drops,
        netfilter,
        neighbours,
        counters: Some(run_counters(watch)),
        path,
        mtu_probes: Vec::new(),
        carrier_gaps,
        cables: None,
        environment,
    }
}

/// What crossed each port over the whole run, wherever it was.
pub(super) fn run_counters(watch: &Watch) -> CountersReport {
    let interfaces = watch
        .ports
        .iter()
        .map(|port| InterfaceCounters {
            netns: port.location().map_or_else(
                || port.spec.netns.clone(),
                |location| location.netns.clone(),
            ),
            interface: port.spec.interface.clone(),
            ingress_hook: port
                .probe()
                .map_or("none", |probe| probe.ingress_hook.name())
                .to_owned(),
            ingress: port.totals.0,
            egress: port.totals.1,
        })
        .collect();
    CountersReport {
        interfaces,
        drops: Vec::new(),
        other_drops: Vec::new(),
        lost_events: watch.lost_events(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(kinds: &[(PacketKind, u64)]) -> KindCounts {
        let mut counts = KindCounts::default();
        for (kind, count) in kinds {
            counts.set(*kind, *count);
        }
        counts
    }

    /// Recorded from a run where the target's INPUT dropped ICMP: ARP answered, echo requests
    /// arrived and were never answered, the port's SYNs met RSTs.
    #[test]
    fn ladders_from_recorded_counts() {
        let initiator = (
            counts(&[(PacketKind::ArpReply, 1), (PacketKind::TcpRst, 2)]),
            counts(&[
                (PacketKind::ArpRequest, 1),
                (PacketKind::IcmpEchoRequest, 3),
                (PacketKind::TcpSyn, 2),
            ]),
        );
        let target = (
            counts(&[
                (PacketKind::ArpRequest, 1),
                (PacketKind::IcmpEchoRequest, 3),
                (PacketKind::TcpSyn, 2),
            ]),
            counts(&[(PacketKind::ArpReply, 1), (PacketKind::TcpRst, 2)]),
        );
        let probes = passive_probes(&initiator, &target);
        let kinds: Vec<(ProbeKind, Side)> = probes.iter().map(|p| (p.kind, p.from)).collect();
        // No ARP from the target and no echo from it: those exchanges did not happen.
        assert_eq!(
            kinds,
            [
                (ProbeKind::Arp, Side::Initiator),
                (ProbeKind::IcmpForward, Side::Initiator),
                (ProbeKind::Tcp, Side::Initiator)
            ]
        );
        let icmp = &probes[1];
        assert_eq!(
            (icmp.left_origin, icmp.reached_peer, icmp.answer_left_peer),
            (3, 3, 0)
        );
        assert!(!icmp.fully_answered());
        let tcp = &probes[2];
        assert_eq!((tcp.outcome.sent, tcp.outcome.answered), (2, 2));
        assert!(tcp.fully_answered());
    }

    #[test]
    fn no_traffic_is_no_ladder() {
        let silent = (KindCounts::default(), KindCounts::default());
        assert!(passive_probes(&silent, &silent).is_empty());
    }
}
