//! diagnose's gathering: inspect both ports and, when they are usable and routed, send probes
//! along the path from the initiator's namespace while watching both ports, kernel drops,
//! neighbours and rule counters.

use std::{
    collections::HashMap,
    io,
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use tracer_common::PacketKind;
use tracer_evidence::{
    DropEvidence, Evidence, Exchange, ExchangeKind, Hop, HopRole, InterfaceCounters, MtuProbe,
    PathEvidence, PortEvidence, RouteLookup, Side,
};

use super::{
    Collector as _, KernelDrops, NamespaceRules, NeighbourSeen, Neighbours, Netfilter, Pair,
    Routes, cabling, collect, found,
    ladder::{self, Crossed},
};
use crate::{
    collect::{
        drops::RawDrop,
        ebpf_log_level,
        host::{inspect_port, refresh_link},
        ports::PortOptions,
        rules::rulesets,
    },
    lock::{self, PortLocks},
    netlink::{Neighbour, RouteSocket},
    netns,
    place::PlaceKey,
    probes,
    session::Session,
};

const ARP_PROBES: u32 = 3;
const ECHO_PROBES: u32 = 5;
const TCP_PROBES: u32 = 3;
const MTU_PROBES: u32 = 3;
/// The MTU every Ethernet hop takes: probing at it says nothing new.
const STANDARD_MTU: u32 = 1500;
/// How long a TCP connect may take, in round trips measured by the ARP probes: a SYN-ACK or
/// RST comes back one round trip after the SYN, and the kernel, not tracer's thread, takes it
/// in, so a busy machine does not make it late. Between a floor, for the target's kernel to
/// answer, and the kernel's first SYN retransmission (1 s), after which a wait says nothing
/// new; the ceiling is also the timeout when ARP measured nothing.
const TCP_TIMEOUT_ROUND_TRIPS: u32 = 10;
const TCP_TIMEOUT_FLOOR: Duration = Duration::from_millis(200);
const TCP_TIMEOUT_CEILING: Duration = Duration::from_millis(1000);

/// The TCP connect timeout for a path whose round trip ARP measured (`None`: not measured).
fn tcp_timeout(round_trip: Option<Duration>) -> Duration {
    round_trip.map_or(TCP_TIMEOUT_CEILING, |round_trip| {
        (round_trip * TCP_TIMEOUT_ROUND_TRIPS).clamp(TCP_TIMEOUT_FLOOR, TCP_TIMEOUT_CEILING)
    })
}

/// How long echo answers are awaited after the last request, the same way: some round trips,
/// at least `ECHO_LINGER_FLOOR`, at most the fixed wait used when nothing was measured. Answers
/// that arrived in time are read however late the probing thread runs.
const ECHO_LINGER_ROUND_TRIPS: u32 = 10;
const ECHO_LINGER_FLOOR: Duration = Duration::from_millis(100);

fn echo_linger(round_trip: Option<Duration>) -> Duration {
    round_trip.map_or(probes::LINGER, |round_trip| {
        (round_trip * ECHO_LINGER_ROUND_TRIPS).clamp(ECHO_LINGER_FLOOR, probes::LINGER)
    })
}

/// Inspects both ports and, when they are usable and routed, probes the path; `attached` is
/// called once tracer's programs are on both ports.
pub fn gather(
    pair: &Pair,
    verbosity: u8,
    attached: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Evidence> {
    // One run at a time on these ports: their probes and neighbour entries would mix.
    let _locks = PortLocks::acquire(&[&pair.initiator, &pair.target], lock::WAIT)?;
    let mut evidence = found(
        pair,
        inspect_port(&pair.initiator, Side::Initiator, &[]),
        inspect_port(&pair.target, Side::Target, &[]),
    );
    // Probing a missing port or an unroutable address says nothing more: classify now.
    let usable = |port: &PortEvidence| port.link.as_ref().is_some_and(|link| link.admin_up);
    if usable(&evidence.initiator) && usable(&evidence.target) {
        Routes(pair).gather(&mut evidence);
        // A route by another interface may still reach the target (two initiators on one
        // bridge): the probes tell.
        let initiator_routed = evidence.routes.iter().any(|route| {
            route.from == Side::Initiator && matches!(route.lookup, RouteLookup::Via { .. })
        });
        if initiator_routed {
            probe_path(pair, verbosity, &mut evidence, attached)?;
            cabling::look_when_frames_lost(pair, &mut evidence, verbosity);
        }
    }
    Ok(evidence)
}

/// Counters and drops at one moment.
struct Snapshot {
    ports: Vec<InterfaceCounters>,
    drops: Vec<RawDrop>,
}

fn snapshot(session: &Session) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        ports: session
            .ports
            .iter()
            .map(|port| port.counters())
            .collect::<anyhow::Result<_>>()?,
        drops: session.drops.drops()?,
    })
}

/// What crossed the watched ports between two snapshots: (initiator, target).
fn crossed(before: &Snapshot, after: &Snapshot) -> (Crossed, Crossed) {
    let delta = |index: usize| {
        let (b, a) = (&before.ports[index], &after.ports[index]);
        (a.ingress.since(&b.ingress), a.egress.since(&b.egress))
    };
    (delta(0), delta(1))
}

/// The hops between the ports (not the ports themselves), with where the kernel keys their
/// drops.
fn hop_places(path: &PathEvidence) -> Vec<(PlaceKey, Hop)> {
    path.hops
        .iter()
        .filter(|hop| hop.role != HopRole::Port)
        .filter_map(|hop| {
            let place = PlaceKey {
                netns: netns::netns_inode(&hop.netns).ok()?,
                ifindex: hop.link.as_ref()?.ifindex,
            };
            Some((place, hop.clone()))
        })
        .collect()
}

/// The size to probe with don't-fragment: the largest MTU a hop of the path claims, when it
/// is above the standard one or the hops disagree.
fn jumbo_size(path: &PathEvidence) -> Option<u32> {
    let mtus: Vec<u32> = path
        .hops
        .iter()
        .filter_map(|hop| Some(hop.link.as_ref()?.mtu))
        .filter(|mtu| *mtu > 0)
        .collect();
    let largest = *mtus.iter().max()?;
    let differ = mtus.iter().any(|mtu| *mtu != largest);
    (largest > STANDARD_MTU || differ).then_some(largest)
}

fn skipped(kind: ExchangeKind, from: Side, why: &str) -> Exchange {
    Exchange {
        skipped: Some(why.to_owned()),
        ..ladder::exchange(kind, from, probes::ExchangeOutcome::default())
    }
}

/// A port's entry for `address`: `Ok(None)` when the table has none, `Err` when it could not
/// be read.
fn neighbour_entry(netns: &str, ifindex: u32, address: Ipv4Addr) -> io::Result<Option<Neighbour>> {
    entry_in(&RouteSocket::open_in(netns)?, ifindex, address)
}

/// [`neighbour_entry`] through a socket already open in the port's namespace.
fn entry_in(
    socket: &RouteSocket,
    ifindex: u32,
    address: Ipv4Addr,
) -> io::Result<Option<Neighbour>> {
    Ok(socket
        .neighbours()?
        .into_iter()
        .find(|neighbour| neighbour.ifindex == ifindex && neighbour.address == address))
}

/// How many times the probes' entries are removed; see [`forget_neighbours`].
const FORGET_ROUNDS: usize = 3;

/// One port's entry for its peer's address, absent before the probes: theirs if it is there.
struct NeighbourAbsentBefore<'port> {
    netns: &'port str,
    interface: &'port str,
    ifindex: u32,
    address: Ipv4Addr,
}

impl NeighbourAbsentBefore<'_> {
    fn warn(&self, what: impl std::fmt::Display) {
        log::warn!(
            "the neighbour entry {} the probes created on {} {what}",
            self.address,
            self.interface
        );
    }
}

/// Removes the neighbour entries the probes created, so the tables are left as they were
/// found. Removing one entry can be undone by the other end: its entry in DELAY sends a
/// unicast ARP request when its timer fires (5 s after use), and that request creates a STALE
/// entry again. So the removals are repeated until a round finds none left to remove: once
/// both are gone nothing sends.
fn forget_neighbours(entries: &[NeighbourAbsentBefore]) {
    let mut pending: Vec<(&NeighbourAbsentBefore, RouteSocket)> = entries
        .iter()
        .filter_map(|entry| match RouteSocket::open_in(entry.netns) {
            Ok(socket) => Some((entry, socket)),
            Err(err) => {
                entry.warn(format_args!("could not be removed: {err}"));
                None
            }
        })
        .collect();
    for _ in 0..FORGET_ROUNDS {
        let mut removed = false;
        pending.retain(|(entry, socket)| {
            match socket.delete_neighbour(entry.ifindex, entry.address) {
                Ok(was_there) => {
                    removed |= was_there;
                    true
                }
                Err(err) => {
                    entry.warn(format_args!("could not be removed: {err}"));
                    false
                }
            }
        });
        if !removed {
            return;
        }
    }
    for (entry, socket) in &pending {
        if entry_in(socket, entry.ifindex, entry.address).is_ok_and(|found| found.is_some()) {
            entry.warn(format_args!("came back {FORGET_ROUNDS} times and is left"));
        }
    }
}

fn probe_path(
    pair: &Pair,
    verbosity: u8,
    evidence: &mut Evidence,
    attached: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let options = PortOptions {
        tcp_port: pair.tcp_port,
        capture: false,
        log_level: ebpf_log_level(verbosity),
        ingress: pair.ingress_hook,
    };
    let mut session = Session::attach(&[&pair.initiator, &pair.target], &options)?;
    // Drops on the hops between the ports are kept apart too: a bridge's FORWARD drops show
    // there.
    let hop_places = evidence.path.as_ref().map(hop_places).unwrap_or_default();
    session.watch_also(hop_places.iter().map(|(place, _)| *place))?;
    attached()?;
    let (initiator, target) = (&pair.initiator, &pair.target);
    // Each port with its index and the peer's address: the neighbour entry the probes make.
    let ends = [
        (
            Side::Initiator,
            initiator,
            session.ports[0].ifindex,
            pair.target_ip,
        ),
        (
            Side::Target,
            target,
            session.ports[1].ifindex,
            pair.initiator_ip,
        ),
    ];
    let neighbours_before =
        ends.map(|(_, port, ifindex, address)| neighbour_entry(&port.netns, ifindex, address));
    let rulesets_before = rulesets(&initiator.netns, &target.netns);

    // Phase 1: ARP alone, so that the kernel's own resolution does not mix in.
    let start = snapshot(&session)?;
    let (arp, round_trip) = probes::finish_timed(probes::arp(
        &initiator.netns,
        &initiator.interface,
        pair.initiator_ip,
        pair.target_ip,
        ARP_PROBES,
    ));
    let after_arp = snapshot(&session)?;
    let mut arp = ladder::exchange(ExchangeKind::Arp, Side::Initiator, arp);
    let (initiator_crossed, target_crossed) = crossed(&start, &after_arp);
    ladder::fill(&mut arp, &initiator_crossed, &target_crossed);

    // Phase 2: ICMP both ways and TCP together; their packet kinds and directions keep them
    // apart in the counters.
    let mut phase_two = if arp.outcome.answered == 0 {
        let why = format!("ARP for {} was not answered", pair.target_ip);
        vec![
            skipped(ExchangeKind::IcmpForward, Side::Initiator, &why),
            skipped(ExchangeKind::IcmpReverse, Side::Target, &why),
            skipped(ExchangeKind::Tcp, Side::Initiator, &why),
        ]
    } else {
        let linger = echo_linger(round_trip);
        let forward = probes::echo(&initiator.netns, pair.target_ip, ECHO_PROBES, linger);
        let reverse = probes::echo(&target.netns, pair.initiator_ip, ECHO_PROBES, linger);
        let tcp = probes::tcp(
            &initiator.netns,
            SocketAddrV4::new(pair.target_ip, pair.tcp_port),
            TCP_PROBES,
            tcp_timeout(round_trip),
        );
        vec![
            ladder::exchange(
                ExchangeKind::IcmpForward,
                Side::Initiator,
                probes::finish(forward),
            ),
            ladder::exchange(
                ExchangeKind::IcmpReverse,
                Side::Target,
                probes::finish(reverse),
            ),
            ladder::exchange(ExchangeKind::Tcp, Side::Initiator, probes::finish(tcp)),
        ]
    };
    let end = snapshot(&session)?;
    let (initiator_crossed, target_crossed) = crossed(&after_arp, &end);
    for probe in phase_two.iter_mut().filter(|probe| probe.skipped.is_none()) {
        ladder::fill(probe, &initiator_crossed, &target_crossed);
    }
    let small_echo_passed = phase_two
        .iter()
        .any(|probe| probe.kind == ExchangeKind::IcmpForward && probe.fully_answered());
    evidence.exchanges = std::iter::once(arp).chain(phase_two).collect();

    // Phase 3: jumbo frames, where the path claims them: small probes pass where they die.
    let end = if small_echo_passed && let Some(size) = evidence.path.as_ref().and_then(jumbo_size) {
        let mut last = end;
        for (from, netns, destination) in [
            (Side::Initiator, &initiator.netns, pair.target_ip),
            (Side::Target, &target.netns, pair.initiator_ip),
        ] {
            let outcome = probes::finish(probes::echo_dont_fragment(
                netns,
                destination,
                MTU_PROBES,
                size,
                echo_linger(round_trip),
            ));
            let now = snapshot(&session)?;
            let (initiator_crossed, target_crossed) = crossed(&last, &now);
            let (origin, peer) = ladder::ends(from, &initiator_crossed, &target_crossed);
            evidence.mtu_probes.push(MtuProbe {
                from,
                size,
                sent: outcome.sent,
                answered: outcome.answered,
                left_origin: origin.1.get(PacketKind::IcmpEchoRequest),
                reached_peer: peer.0.get(PacketKind::IcmpEchoRequest),
                error: outcome.error,
            });
            last = now;
        }
        last
    } else {
        end
    };

    let rulesets_after = rulesets(&initiator.netns, &target.netns);
    let names = netns::netns_names();
    let drops = drops_between(&start.drops, &end.drops)
        .into_iter()
        .filter_map(|raw| {
            if let Some(port) = session.port_of(&raw.key) {
                let side = if port.key() == session.ports[0].key() {
                    Side::Initiator
                } else {
                    Side::Target
                };
                return Some(DropEvidence {
                    side,
                    drop: session.name_drop(&raw, &names),
                });
            }
            let (_, hop) = hop_places
                .iter()
                .find(|(place, _)| place.on_device(&raw.key))?;
            let side = if hop.netns == initiator.netns {
                Side::Initiator
            } else {
                Side::Target
            };
            Some(DropEvidence {
                side,
                drop: session
                    .drops
                    .name(&raw, hop.netns.clone(), Some(&hop.interface)),
            })
        })
        .collect();
    // Only an entry seen absent before is the probes' to remove: a table that could not be
    // read then may have held it.
    let absent_before = neighbours_before
        .each_ref()
        .map(|before| matches!(before, Ok(None)));
    let neighbours = Neighbours(
        ends.iter()
            .zip(neighbours_before)
            .map(|(&(side, port, ifindex, address), before)| {
                neighbour_seen(
                    side,
                    &port.netns,
                    address,
                    before.ok().flatten(),
                    neighbour_entry(&port.netns, ifindex, address)
                        .ok()
                        .flatten(),
                )
            })
            .collect(),
    );
    collect(
        evidence,
        &[
            &KernelDrops {
                probe: &session.drops,
                drops,
            },
            &Netfilter(vec![
                NamespaceRules {
                    side: Side::Initiator,
                    netns: &initiator.netns,
                    before: Some(&rulesets_before.0),
                    after: &rulesets_after.0,
                },
                NamespaceRules {
                    side: Side::Target,
                    netns: &target.netns,
                    before: Some(&rulesets_before.1),
                    after: &rulesets_after.1,
                },
            ]),
            &neighbours,
        ],
    );
    // An entry absent before is looked for even if the look after missed it: a late ARP
    // request may still create it.
    let absent: Vec<NeighbourAbsentBefore> = ends
        .iter()
        .zip(absent_before)
        .filter(|(_, absent)| *absent)
        .map(|(&(_, port, ifindex, address), _)| NeighbourAbsentBefore {
            netns: &port.netns,
            interface: &port.interface,
            ifindex,
            address,
        })
        .collect();
    forget_neighbours(&absent);
    // Carrier may have changed while probing; what it is now is what the verdict needs.
    refresh_link(&mut evidence.initiator);
    refresh_link(&mut evidence.target);
    evidence.counters = Some(session.counters_report()?);
    Ok(())
}

/// A neighbour entry before and after the probes (its MAC after, else before).
fn neighbour_seen(
    side: Side,
    netns: &str,
    address: Ipv4Addr,
    before: Option<Neighbour>,
    after: Option<Neighbour>,
) -> NeighbourSeen {
    let mac = after
        .as_ref()
        .and_then(|entry| entry.mac)
        .or_else(|| before.as_ref().and_then(|entry| entry.mac));
    NeighbourSeen {
        side,
        netns: netns.to_owned(),
        address,
        before: before.map(|entry| entry.state),
        after: after.map(|entry| entry.state),
        mac,
    }
}

fn drops_between(before: &[RawDrop], after: &[RawDrop]) -> Vec<RawDrop> {
    let before: HashMap<_, _> = before.iter().map(|drop| (drop.key, drop.count)).collect();
    after
        .iter()
        .filter_map(|drop| {
            let count = drop.count - before.get(&drop.key).copied().unwrap_or(0).min(drop.count);
            (count > 0).then_some(RawDrop {
                key: drop.key,
                count,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{echo_linger, tcp_timeout};

    #[test]
    fn tcp_timeout_follows_the_round_trip_between_floor_and_ceiling() {
        // A veth loop: the floor.
        assert_eq!(
            tcp_timeout(Some(Duration::from_micros(80))),
            Duration::from_millis(200)
        );
        assert_eq!(
            tcp_timeout(Some(Duration::from_millis(40))),
            Duration::from_millis(400)
        );
        assert_eq!(
            tcp_timeout(Some(Duration::from_millis(300))),
            Duration::from_secs(1)
        );
        assert_eq!(tcp_timeout(None), Duration::from_secs(1));
    }

    #[test]
    fn echo_linger_follows_the_round_trip_between_floor_and_ceiling() {
        assert_eq!(
            echo_linger(Some(Duration::from_micros(80))),
            Duration::from_millis(100)
        );
        assert_eq!(
            echo_linger(Some(Duration::from_millis(20))),
            Duration::from_millis(200)
        );
        assert_eq!(
            echo_linger(Some(Duration::from_millis(90))),
            Duration::from_millis(300)
        );
        assert_eq!(echo_linger(None), Duration::from_millis(300));
    }
}
