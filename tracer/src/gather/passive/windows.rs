//! What a watched run placed in time: the test's requests that went unanswered (from the
//! frames the capture kept, with their timestamps), the rules that came and went with the
//! drops in their namespace meanwhile, the ports' carrier losses, the neighbour entries that
//! held a MAC the other port no longer had, the ports' addresses removed for a while, and
//! addresses answered from more than one MAC.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    time::{SystemTime, UNIX_EPOCH},
};

use tracer_evidence::{
    AddressOwner, AddressWindow, CarrierWindow, NeighbourWindow, PortChange, Request, RuleWindow,
    SharedAddress, Side, Windows, mac_text, reasons::DropReason, windows::loss_windows,
};

use super::observe::{Watch, WatchedPort};
use crate::{capture::Frame, gather::Pair, netlink::RouteSocket, netns};

/// An ARP answer later than this after the request answers a later one.
const ARP_ANSWER_MS: u64 = 1500;

/// The windows of pair `ports` (initiator, target) in a watched run.
pub(crate) fn windows(watch: &Watch, ports: &[WatchedPort], pair: &Pair) -> Windows {
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(watch.started.elapsed())
        .as_nanos();
    let at_ms =
        |frame: &Frame| (u128::from(frame.unix_ns).saturating_sub(start_ns) / 1_000_000) as u64;
    let mut windows = Windows {
        observed: true,
        ..Windows::default()
    };
    let mut answers: BTreeMap<Ipv4Addr, BTreeMap<[u8; 6], AddressOwner>> = BTreeMap::new();
    for port in ports {
        let frames: Vec<(u64, bool, Packet)> = port
            .recorder
            .frames()
            .filter_map(|frame| Some((at_ms(frame), frame.inbound, Packet::parse(&frame.data)?)))
            .collect();
        windows.loss.extend(losses(port.side, &frames));
        for (ms, inbound, packet) in &frames {
            if let (true, Packet::ArpReply { sender, mac }) = (inbound, packet) {
                let owner = answers
                    .entry(*sender)
                    .or_default()
                    .entry(*mac)
                    .or_insert_with(|| AddressOwner {
                        mac: mac_text(*mac),
                        first_ms: *ms,
                        last_ms: *ms,
                        answers: 0,
                        interface: None,
                        netns: None,
                    });
                owner.first_ms = owner.first_ms.min(*ms);
                owner.last_ms = owner.last_ms.max(*ms);
                owner.answers += 1;
            }
        }
    }
    windows.shared_addresses = shared_addresses(watch, answers);
    windows.rules = rules(watch);
    windows.rules_forgotten = watch.rules.forgotten;
    windows.carrier = ports.iter().flat_map(|port| carrier(watch, port)).collect();
    let [initiator, target] = ports else {
        unreachable!("every pair has two ports");
    };
    windows.neighbour = [
        stale_entries(initiator, target, pair.target_ip),
        stale_entries(target, initiator, pair.initiator_ip),
    ]
    .concat();
    windows.address = [
        address_removed(initiator, pair.initiator_ip),
        address_removed(target, pair.target_ip),
    ]
    .concat();
    windows
}

/// The times `port` had had `address` and no longer had it, and when it had it again.
fn address_removed(port: &WatchedPort, address: Ipv4Addr) -> Vec<AddressWindow> {
    let spec = port.current_spec();
    let mut windows: Vec<AddressWindow> = Vec::new();
    let mut had = false;
    for (seconds, addresses) in &port.address_history {
        let ms = (seconds * 1000.0) as u64;
        let has = addresses.contains(&address);
        if had && !has {
            windows.push(AddressWindow {
                side: port.side,
                netns: spec.netns.clone(),
                interface: spec.interface.clone(),
                address,
                removed_ms: ms,
                back_ms: None,
            });
        } else if has && let Some(open) = windows.last_mut().filter(|w| w.back_ms.is_none()) {
            open.back_ms = Some(ms);
        }
        had = has;
    }
    windows
}

/// A SYN by (from, to, source tcp_port, destination tcp_port, sequence number).
type SynKey = (Ipv4Addr, Ipv4Addr, u16, u16, u32);
/// Echo requests of one (from, to, id), by sequence number: when sent, and whether answered.
type Echoes = BTreeMap<(Ipv4Addr, Ipv4Addr, u16), BTreeMap<u16, (Option<u64>, bool)>>;

/// What the loss windows and address owners need of a captured frame.
enum Packet {
    EchoRequest {
        from: Ipv4Addr,
        to: Ipv4Addr,
        id: u16,
        seq: u16,
    },
    EchoReply {
        from: Ipv4Addr,
        to: Ipv4Addr,
        id: u16,
        seq: u16,
    },
    /// A SYN without ACK; `key` is (from, to, source tcp_port, destination tcp_port, seq).
    Syn {
        from: Ipv4Addr,
        to: Ipv4Addr,
        key: SynKey,
    },
    /// SYN-ACK or RST: the answer to the SYN whose key this is.
    SynAnswer {
        key: SynKey,
    },
    ArpRequest {
        target: Ipv4Addr,
    },
    ArpReply {
        sender: Ipv4Addr,
        mac: [u8; 6],
    },
}

impl Packet {
    fn parse(frame: &[u8]) -> Option<Self> {
        let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
        let body = frame.get(14..)?;
        let address = |bytes: &[u8], at: usize| -> Option<Ipv4Addr> {
            let octets: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(octets))
        };
        match ethertype {
            0x0806 => {
                let operation = u16::from_be_bytes(body.get(6..8)?.try_into().ok()?);
                match operation {
                    1 => Some(Self::ArpRequest {
                        target: address(body, 24)?,
                    }),
                    2 => Some(Self::ArpReply {
                        sender: address(body, 14)?,
                        mac: body.get(8..14)?.try_into().ok()?,
                    }),
                    _ => None,
                }
            }
            0x0800 => {
                let header_len = usize::from(body.first()? & 0x0f) * 4;
                let (from, to) = (address(body, 12)?, address(body, 16)?);
                let payload = body.get(header_len..)?;
                let word = |at: usize| -> Option<u16> {
                    Some(u16::from_be_bytes(
                        payload.get(at..at + 2)?.try_into().ok()?,
                    ))
                };
                match body.get(9)? {
                    1 => {
                        let (id, seq) = (word(4)?, word(6)?);
                        match payload.first()? {
                            8 => Some(Self::EchoRequest { from, to, id, seq }),
                            0 => Some(Self::EchoReply { from, to, id, seq }),
                            _ => None,
                        }
                    }
                    6 => {
                        let (source, destination) = (word(0)?, word(2)?);
                        let number = |at: usize| -> Option<u32> {
                            Some(u32::from_be_bytes(
                                payload.get(at..at + 4)?.try_into().ok()?,
                            ))
                        };
                        let flags = payload.get(13)?;
                        let (syn, ack, rst) =
                            (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
                        if syn && !ack {
                            Some(Self::Syn {
                                from,
                                to,
                                key: (from, to, source, destination, number(4)?),
                            })
                        } else if (syn && ack) || rst {
                            let answered = number(8)?.wrapping_sub(1);
                            Some(Self::SynAnswer {
                                key: (to, from, destination, source, answered),
                            })
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Loss windows of the requests that left `side`'s port, by flow.
fn losses(side: Side, frames: &[(u64, bool, Packet)]) -> Vec<tracer_evidence::LossWindow> {
    let mut flows: BTreeMap<String, Vec<Request>> = BTreeMap::new();
    // ICMP echo: requests by (from, to, id), each sequence number once. A request that never
    // reached the port (held in a neighbour queue, dropped on the way out) still shows as a
    // gap in the sequence numbers; it is placed between its neighbours in time.
    let mut echoes = Echoes::new();
    let mut syns: Vec<(u64, String, SynKey)> = Vec::new();
    let mut syn_answers: Vec<(u64, SynKey)> = Vec::new();
    let mut arp: Vec<(u64, Ipv4Addr)> = Vec::new();
    let mut arp_answers: Vec<(u64, Ipv4Addr)> = Vec::new();
    for (ms, inbound, packet) in frames {
        match (inbound, packet) {
            (false, Packet::EchoRequest { from, to, id, seq }) => {
                let entry = echoes
                    .entry((*from, *to, *id))
                    .or_default()
                    .entry(*seq)
                    .or_default();
                entry.0 = Some(entry.0.map_or(*ms, |first: u64| first.min(*ms)));
            }
            (true, Packet::EchoReply { from, to, id, seq }) => {
                echoes
                    .entry((*to, *from, *id))
                    .or_default()
                    .entry(*seq)
                    .or_default()
                    .1 = true;
            }
            (false, Packet::Syn { from, to, key }) => {
                syns.push((*ms, format!("TCP from {from} to {to}:{}", key.3), *key));
            }
            (true, Packet::SynAnswer { key }) => syn_answers.push((*ms, *key)),
            (false, Packet::ArpRequest { target }) => arp.push((*ms, *target)),
            (true, Packet::ArpReply { sender, .. }) => arp_answers.push((*ms, *sender)),
            _ => {}
        }
    }
    for ((from, to, _), sequence) in echoes {
        let known: Vec<(u16, u64)> = sequence
            .iter()
            .filter_map(|(seq, (sent, _))| Some((*seq, (*sent)?)))
            .collect();
        let (Some(first), Some(last)) = (sequence.keys().next(), sequence.keys().next_back())
        else {
            continue;
        };
        let requests = flows
            .entry(format!("ICMP from {from} to {to}"))
            .or_default();
        for seq in *first..=*last {
            let (sent, answered) = sequence.get(&seq).copied().unwrap_or_default();
            let Some(at_ms) = sent.or_else(|| interpolate(&known, seq)) else {
                continue;
            };
            requests.push(Request { at_ms, answered });
        }
    }
    for (index, (ms, flow, key)) in syns.iter().enumerate() {
        // Answered when an answer to it comes before the SYN is sent again.
        let until = syns[index + 1..]
            .iter()
            .find(|(_, _, other)| other == key)
            .map_or(u64::MAX, |(later, _, _)| *later);
        let answered = syn_answers
            .iter()
            .any(|(at, answered)| answered == key && at >= ms && *at <= until);
        flows.entry(flow.clone()).or_default().push(Request {
            at_ms: *ms,
            answered,
        });
    }
    for (ms, target) in arp {
        let answered = arp_answers
            .iter()
            .any(|(at, sender)| *sender == target && at >= &ms && *at <= ms + ARP_ANSWER_MS);
        flows
            .entry(format!("ARP for {target}"))
            .or_default()
            .push(Request {
                at_ms: ms,
                answered,
            });
    }
    flows
        .iter()
        .flat_map(|(flow, requests)| loss_windows(flow, side, requests))
        .collect()
}

/// When request `seq` was sent, from the nearest requests seen on either side of it.
fn interpolate(known: &[(u16, u64)], seq: u16) -> Option<u64> {
    let before = known.iter().rev().find(|(other, _)| *other < seq)?;
    let after = known.iter().find(|(other, _)| *other > seq)?;
    let span = u64::from(after.0 - before.0);
    let offset = u64::from(seq - before.0);
    Some(before.1 + (after.1.saturating_sub(before.1)) * offset / span)
}

/// Addresses answered from more than one MAC, unless every MAC is one watched port's (a port
/// whose MAC changed is not two hosts) or every MAC lives in one namespace (one host answering
/// on each of its interfaces, Linux's default for two ports on one subnet, as in SPDK's
/// virtual layouts), each MAC with where it lives on this machine.
fn shared_addresses(
    watch: &Watch,
    answers: BTreeMap<Ipv4Addr, BTreeMap<[u8; 6], AddressOwner>>,
) -> Vec<SharedAddress> {
    let mut found = Vec::new();
    let mut holders: Option<HashMap<[u8; 6], (String, String)>> = None;
    for (address, owners) in answers {
        if owners.len() < 2
            || watch.ports.iter().any(|port| {
                owners
                    .keys()
                    .all(|mac| port.mac_history.iter().any(|(_, had)| had == mac))
            })
        {
            continue;
        }
        let holders = holders.get_or_insert_with(mac_holders);
        let mut owners: Vec<AddressOwner> = owners
            .into_iter()
            .map(|(mac, mut owner)| {
                if let Some((netns, interface)) = holders.get(&mac) {
                    owner.netns = Some(netns.clone());
                    owner.interface = Some(interface.clone());
                }
                owner
            })
            .collect();
        let one_host = owners
            .iter()
            .all(|owner| owner.netns.is_some() && owner.netns == owners[0].netns);
        if one_host {
            continue;
        }
        owners.sort_by_key(|owner| owner.first_ms);
        found.push(SharedAddress { address, owners });
    }
    found
}

/// Every MAC on this machine's interfaces, with the namespace and interface holding it.
fn mac_holders() -> HashMap<[u8; 6], (String, String)> {
    let mut names: Vec<String> = netns::netns_names().into_values().collect();
    names.sort();
    names.insert(0, String::new());
    let mut holders = HashMap::new();
    for netns in names {
        let Ok(links) = RouteSocket::open_in(&netns).and_then(|socket| socket.links()) else {
            continue;
        };
        for link in links {
            if let Some(mac) = link.mac.filter(|mac| *mac != [0; 6]) {
                holders
                    .entry(mac)
                    .or_insert_with(|| (netns.clone(), link.name.clone()));
            }
        }
    }
    holders
}

/// The rules heard coming and going, each with the NETFILTER_DROP drops the watch counted in
/// its namespace while it existed.
fn rules(watch: &Watch) -> Vec<RuleWindow> {
    watch
        .rules
        .windows
        .iter()
        .map(|window| {
            let mut window = window.clone();
            let from = window.added_ms.unwrap_or(0) as f64 / 1000.0;
            // A drop is counted at the look after it: give the last one a look's time.
            let until = window
                .removed_ms
                .map_or(f64::MAX, |ms| ms as f64 / 1000.0 + 0.1);
            window.dropped = watch
                .timeline
                .events()
                .filter(|event| event.seconds >= from && event.seconds <= until)
                .filter_map(|event| {
                    let Some(PortChange::Drop { count, reason }) = &event.change else {
                        return None;
                    };
                    let port = watch
                        .ports
                        .iter()
                        .find(|port| Some(port.side) == event.port)?;
                    let here = port.history.iter().any(|place| place.netns == window.netns);
                    (here && DropReason::from_name(reason) == DropReason::NetfilterDrop)
                        .then_some(*count)
                })
                .sum();
            window
        })
        .collect()
}

/// The times a port that had carrier and carried the test's frames lost it, and when it came
/// back (carrier lost before any frame is `carrier_late`'s: a port not ready yet).
fn carrier(watch: &Watch, port: &WatchedPort) -> Vec<CarrierWindow> {
    let spec = port.current_spec();
    let first_frame = port
        .seen
        .values()
        .map(|seen| seen.first)
        .fold(f64::INFINITY, f64::min);
    let mut windows: Vec<CarrierWindow> = Vec::new();
    let mut had_carrier = false;
    for event in watch.timeline.events() {
        let Some(PortChange::Link {
            present, carrier, ..
        }) = &event.change
        else {
            continue;
        };
        if event.port != Some(port.side) {
            continue;
        }
        let ms = (event.seconds * 1000.0) as u64;
        let carrier = *present && *carrier;
        if had_carrier && !carrier && event.seconds > first_frame {
            windows.push(CarrierWindow {
                side: port.side,
                netns: spec.netns.clone(),
                interface: spec.interface.clone(),
                lost_ms: ms,
                back_ms: None,
            });
        } else if carrier && let Some(open) = windows.last_mut().filter(|w| w.back_ms.is_none()) {
            open.back_ms = Some(ms);
        }
        had_carrier = carrier;
    }
    windows
}

/// When `port`'s entry for `address` (the other port's) held a MAC `other` did not have.
fn stale_entries(
    port: &WatchedPort,
    other: &WatchedPort,
    address: Ipv4Addr,
) -> Vec<NeighbourWindow> {
    let mut times: Vec<f64> = port
        .neighbour_history
        .iter()
        .filter(|(_, entry, _)| *entry == address)
        .map(|(at, _, _)| *at)
        .chain(other.mac_history.iter().map(|(at, _)| *at))
        .collect();
    times.sort_by(f64::total_cmp);
    let entry_at = |time: f64| {
        port.neighbour_history
            .iter()
            .rev()
            .find(|(at, entry, _)| *entry == address && *at <= time)
            .and_then(|(_, _, mac)| *mac)
    };
    let mac_at = |time: f64| {
        other
            .mac_history
            .iter()
            .rev()
            .find(|(at, _)| *at <= time)
            .map(|(_, mac)| *mac)
    };
    let spec = port.current_spec();
    let mut windows: Vec<NeighbourWindow> = Vec::new();
    for time in times {
        let ms = (time * 1000.0) as u64;
        let open = windows
            .last_mut()
            .filter(|window| window.until_ms.is_none());
        match (entry_at(time), mac_at(time)) {
            (Some(entry), Some(mac)) if entry != mac => {
                if open.is_none() {
                    windows.push(NeighbourWindow {
                        side: port.side,
                        netns: spec.netns.clone(),
                        interface: spec.interface.clone(),
                        address,
                        entry_mac: mac_text(entry),
                        port_mac: mac_text(mac),
                        changed_ms: ms,
                        until_ms: None,
                    });
                }
            }
            _ => {
                if let Some(open) = open {
                    open.until_ms = Some(ms);
                }
            }
        }
    }
    windows
}
