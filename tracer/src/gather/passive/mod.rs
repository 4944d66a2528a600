//! watch's gathering: the test's own traffic observed while it runs ([`observe`], with the
//! ports' [`links`] and the kernel's [`drops`]), then as evidence: the ports as they are at
//! the end, the routes between them, ladders from the run's counts, the drops, the rules that
//! dropped, the neighbour entries, the frames sent without carrier and the ports' cabling.

mod cabling;
mod drops;
mod links;
pub mod observe;
mod windows;

use std::collections::BTreeMap;

use tracer_evidence::{
    CarrierGap, CountersReport, Evidence, Exchange, ExchangeKind, ExchangeOutcome,
    InterfaceCounters, PortEvidence, Side,
};

use self::observe::{Totals, Watch, WatchedPort};
use super::{
    Collector as _, KernelDrops, NamespaceRules, NeighbourSeen, Neighbours, Netfilter, Pair,
    Routes, cabling::look_when_frames_lost, collect, found, ladder,
};
use crate::{
    collect::{host::inspect_port, ports::PortPrograms},
    netfilter::Ruleset,
};

/// The exchanges a test's traffic may hold, each from the side that starts it.
const EXCHANGES: [(ExchangeKind, Side); 5] = [
    (ExchangeKind::Arp, Side::Initiator),
    (ExchangeKind::Arp, Side::Target),
    (ExchangeKind::IcmpForward, Side::Initiator),
    (ExchangeKind::IcmpReverse, Side::Target),
    (ExchangeKind::Tcp, Side::Initiator),
];

/// The test's own traffic as ladders: what left one port, reached the other, and came back,
/// for each kind of exchange that happened at all.
fn observed_exchanges(initiator: &Totals, target: &Totals) -> Vec<Exchange> {
    EXCHANGES
        .into_iter()
        .filter_map(|(kind, from)| {
            let mut exchange = ladder::exchange(kind, from, ExchangeOutcome::default());
            ladder::fill(&mut exchange, initiator, target);
            let left_origin = exchange.left_origin;
            if left_origin == 0 {
                return None;
            }
            exchange.outcome.sent = left_origin.min(u64::from(u32::MAX)) as u32;
            exchange.outcome.answered = exchange.answer_reached_origin.min(left_origin) as u32;
            Some(exchange)
        })
        .collect()
}

fn port_evidence(port: &WatchedPort) -> PortEvidence {
    let ours = port
        .probe()
        .map(PortPrograms::program_ids)
        .unwrap_or_default();
    inspect_port(&port.current_spec(), port.side, &ours)
}

/// The evidence of pair `index` in a watched run; `final_rulesets` are the rulesets of the
/// ports' namespaces at the end, by name.
pub(crate) fn evidence(
    watch: &Watch,
    index: usize,
    pair: &Pair,
    final_rulesets: &BTreeMap<String, Ruleset>,
    verbosity: u8,
) -> Evidence {
    let ports = &watch.ports[2 * index..2 * index + 2];
    let [initiator, target] = ports else {
        unreachable!("every pair has two ports");
    };
    let mut evidence = found(pair, port_evidence(initiator), port_evidence(target));
    if evidence.initiator.link.is_some() && evidence.target.link.is_some() {
        Routes(pair).gather(&mut evidence);
    }
    evidence.exchanges = observed_exchanges(&initiator.totals, &target.totals);
    evidence
        .rules_before_run
        .clone_from(&watch.rules_before_run);
    evidence.carrier_gaps = ports
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
    let rules = ports
        .iter()
        .filter_map(|port| {
            let location = port.location()?;
            Some(NamespaceRules {
                side: port.side,
                netns: &location.netns,
                before: watch.first_rulesets.get(&location.netns),
                after: final_rulesets.get(&location.netns)?,
            })
        })
        .collect();
    let neighbours = ports
        .iter()
        .flat_map(|port| {
            let netns = port
                .location()
                .map(|location| location.netns.clone())
                .unwrap_or_default();
            let mut addresses: Vec<_> = port
                .first_neighbours
                .keys()
                .chain(port.neighbours.keys())
                .collect();
            addresses.sort();
            addresses.dedup();
            addresses
                .into_iter()
                .map(|address| NeighbourSeen {
                    side: port.side,
                    netns: netns.clone(),
                    address: *address,
                    before: port.first_neighbours.get(address).cloned(),
                    after: port.neighbours.get(address).cloned(),
                    mac: port.neighbour_macs.get(address).copied(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    collect(
        &mut evidence,
        &[
            &KernelDrops {
                probe: &watch.drops,
                drops: watch.drop_evidence(index),
            },
            &Netfilter(rules),
            &Neighbours(neighbours),
        ],
    );
    if ports.iter().all(|port| port.seen.is_empty()) {
        evidence
            .environment
            .limitations
            .push("no ARP, ICMP or port traffic crossed the ports: pass --probe to probe".into());
    }
    evidence.counters = Some(run_counters(watch, ports));
    evidence.cables = Some(cabling::observed(ports, watch.seconds()));
    evidence.windows = windows::windows(watch, ports, pair);
    evidence
        .environment
        .limitations
        .extend(watch.rules.limitations.iter().cloned());
    for port in ports {
        for late in &port.late_attachments {
            evidence.environment.limitations.push(format!(
                "tracer attached to {} while the command ran, the port up already: {}",
                port.name(),
                late.consequences(port.name())
            ));
            evidence.late_attachments.push(late.clone());
        }
    }
    look_when_frames_lost(pair, &mut evidence, verbosity);
    evidence
}

/// What crossed each port over the whole run, wherever it was.
fn run_counters(watch: &Watch, ports: &[WatchedPort]) -> CountersReport {
    let interfaces = ports
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
        other_drops: watch.other_drop_counts(),
        lost_events: watch.lost_events(),
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::PacketKind;
    use tracer_evidence::KindCounts;

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
        let probes = observed_exchanges(&initiator, &target);
        let kinds: Vec<(ExchangeKind, Side)> = probes.iter().map(|p| (p.kind, p.from)).collect();
        // No ARP from the target and no echo from it: those exchanges did not happen.
        assert_eq!(
            kinds,
            [
                (ExchangeKind::Arp, Side::Initiator),
                (ExchangeKind::IcmpForward, Side::Initiator),
                (ExchangeKind::Tcp, Side::Initiator)
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
        assert!(observed_exchanges(&silent, &silent).is_empty());
    }
}
