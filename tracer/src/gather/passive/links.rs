//! A watched port's link, addresses and neighbours: carrier and state changes, its addresses,
//! neighbour entries and their MACs, as they happen.

use std::{collections::HashMap, net::Ipv4Addr};

use tracer_evidence::{PortChange, reasons::NeighbourState};

use super::observe::{LiveTimeline, Watch, WatchedPort};
use crate::netlink::{Link, Neighbour, RouteSocket};

impl Watch {
    pub(crate) fn observe_link(&mut self, index: usize) {
        let now = self.seconds();
        let port = &mut self.ports[index];
        let Some(location) = port.location() else {
            return;
        };
        // The follower keeps a socket in the port's namespace; opened here only when it could
        // not.
        let opened;
        let socket = match port.follower.route_socket() {
            Some(socket) => socket,
            None => {
                let Ok(socket) = RouteSocket::open_in(&location.netns) else {
                    return;
                };
                opened = socket;
                &opened
            }
        };
        let link = socket.link(&port.spec.interface).ok().flatten();
        if port.first_carrier_downs.is_none() {
            port.first_carrier_downs = link.as_ref().and_then(|link| link.carrier_down_count);
        }
        if let (Some(gap), Some(link)) = (&mut port.carrier_gap, &link)
            && link.carrier
            && gap.carrier_at.is_none()
        {
            gap.carrier_at = Some(now);
        }
        if let Some(mac) = link.as_ref().and_then(|link| link.mac)
            && port.mac_history.last().is_none_or(|(_, last)| *last != mac)
        {
            port.mac_history.push((now, mac));
            keep_recent(&mut port.mac_history);
        }
        if let Some(link) = &link {
            let describe = |link: &Link| {
                format!(
                    "{}, carrier {}, operstate {}",
                    if link.admin_up { "up" } else { "down" },
                    u8::from(link.carrier),
                    link.operstate
                )
            };
            let changed = port.link.as_ref().is_none_or(|old| {
                old.admin_up != link.admin_up
                    || old.carrier != link.carrier
                    || old.operstate != link.operstate
            });
            if changed {
                let message = match &port.link {
                    Some(old) => format!(
                        "{}: {} -> {}",
                        port.spec.interface,
                        describe(old),
                        describe(link)
                    ),
                    None => format!("{}: {}", port.spec.interface, describe(link)),
                };
                self.timeline.push_on(
                    port.side,
                    now,
                    "link",
                    message,
                    Some(PortChange::Link {
                        present: true,
                        admin_up: link.admin_up,
                        carrier: link.carrier,
                    }),
                );
            }
            let ifindex = link.ifindex;
            // A dump that failed says nothing of the table: the last look stands, else every
            // entry would be counted as gone and then back.
            if let Ok(all) = socket.addresses() {
                let mut addresses: Vec<Ipv4Addr> = all
                    .into_iter()
                    .filter(|address| address.ifindex == ifindex)
                    .map(|address| address.address)
                    .collect();
                addresses.sort();
                if port
                    .address_history
                    .last()
                    .is_none_or(|(_, last)| *last != addresses)
                {
                    port.address_history.push((now, addresses));
                    keep_recent(&mut port.address_history);
                }
            }
            if let Ok(all) = socket.neighbours() {
                let entries = all
                    .into_iter()
                    .filter(|neighbour| neighbour.ifindex == ifindex)
                    .collect();
                observe_neighbours(port, &mut self.timeline, entries, now);
            }
        }
        port.link = link;
    }
}

/// Compares the port's neighbour entries with the last look: each change is a timeline event,
/// and each entry's MAC and first state are kept.
fn observe_neighbours(
    port: &mut WatchedPort,
    timeline: &mut LiveTimeline,
    entries: Vec<Neighbour>,
    now: f64,
) {
    for entry in &entries {
        if let Some(mac) = entry.mac {
            port.neighbour_macs.insert(entry.address, mac);
        }
    }
    record_usable_macs(port, &entries, now);
    let current: HashMap<Ipv4Addr, String> = entries
        .into_iter()
        .map(|neighbour| (neighbour.address, neighbour.state))
        .collect();
    let mut addresses: Vec<&Ipv4Addr> = current.keys().chain(port.neighbours.keys()).collect();
    addresses.sort();
    addresses.dedup();
    for address in addresses {
        let (old, new) = (port.neighbours.get(address), current.get(address));
        if old != new {
            let state = new.map_or("none", String::as_str);
            timeline.push_on(
                port.side,
                now,
                "neighbour",
                format!(
                    "{address} on {}: {} -> {state}",
                    port.spec.interface,
                    old.map_or("none", String::as_str),
                ),
                Some(PortChange::Neighbour {
                    address: *address,
                    state: state.to_owned(),
                }),
            );
        }
    }
    // The state each entry had when first seen ("none" if it appeared while watching).
    let watched_before = port.link.is_some();
    for (address, state) in &current {
        port.first_neighbours.entry(*address).or_insert_with(|| {
            if watched_before {
                "none".to_owned()
            } else {
                state.clone()
            }
        });
    }
    port.neighbours = current;
}

/// Records each entry's MAC when it changes: the MAC frames go to, none while the entry is
/// gone, INCOMPLETE or FAILED.
fn record_usable_macs(port: &mut WatchedPort, entries: &[Neighbour], now: f64) {
    let usable = |entry: &Neighbour| {
        let states = NeighbourState::parse(&entry.state);
        let resolving = states
            .iter()
            .any(|state| matches!(state, NeighbourState::Incomplete | NeighbourState::Failed));
        entry.mac.filter(|_| !resolving)
    };
    let present: HashMap<Ipv4Addr, Option<[u8; 6]>> = entries
        .iter()
        .map(|entry| (entry.address, usable(entry)))
        .collect();
    let mut addresses: Vec<Ipv4Addr> = present.keys().copied().collect();
    addresses.extend(port.usable_macs.keys());
    addresses.sort();
    addresses.dedup();
    for address in addresses {
        let now_mac = present.get(&address).copied().flatten();
        if port.usable_macs.insert(address, now_mac) != Some(now_mac) {
            port.neighbour_history.push((now, address, now_mac));
        }
    }
    // An entry gone, once its going is recorded, is forgotten: the map holds what is there.
    port.usable_macs
        .retain(|address, mac| mac.is_some() || present.contains_key(address));
    keep_recent(&mut port.neighbour_history);
}

/// The changes a port's histories keep, the latest: a port whose MAC, addresses or neighbours
/// change all the time for hours keeps its memory flat (the timeline counts those changes).
const KEPT_HISTORY: usize = 4096;

/// Forgets the oldest half of `history` once it holds twice [`KEPT_HISTORY`].
fn keep_recent<T>(history: &mut Vec<T>) {
    if history.len() >= 2 * KEPT_HISTORY {
        history.drain(..history.len() - KEPT_HISTORY);
    }
}
