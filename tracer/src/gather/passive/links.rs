//! A watched port's link, addresses and neighbours: carrier and state changes, its addresses,
//! neighbour entries and their MACs, as they happen.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

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
            if let Ok(entries) = port_neighbours(socket, ifindex, &port.neighbours) {
                observe_neighbours(port, &mut self.timeline, entries, now);
            }
        }
        port.link = link;
    }
}

/// The neighbour entries of the port at `ifindex`. A dump taken while the table grows can
/// leave entries out without saying so (a dump too big for one message resumes where its
/// last part ended, in a table that moved meanwhile: growing to 16,000 entries, a dump left
/// out up to 3,000 on 5.10 and up to 1,700 on 6.18). So when an entry the last look had is
/// missing, the table is dumped again, and an entry either dump lists is there: one really
/// gone is in neither. Either dump failing fails the look, which then leaves the last one.
fn port_neighbours(
    socket: &RouteSocket,
    ifindex: u32,
    last: &HashMap<Ipv4Addr, String>,
) -> std::io::Result<Vec<Neighbour>> {
    let dump = || -> std::io::Result<Vec<Neighbour>> {
        Ok(socket
            .neighbours()?
            .into_iter()
            .filter(|neighbour| neighbour.ifindex == ifindex)
            .collect())
    };
    let first = dump()?;
    let listed: HashSet<Ipv4Addr> = first.iter().map(|entry| entry.address).collect();
    if last.keys().all(|address| listed.contains(address)) {
        return Ok(first);
    }
    Ok(either_dump(first, dump()?))
}

/// The entries of two dumps of one table: the second's, and those only the first lists.
fn either_dump(first: Vec<Neighbour>, mut second: Vec<Neighbour>) -> Vec<Neighbour> {
    let listed: HashSet<Ipv4Addr> = second.iter().map(|entry| entry.address).collect();
    second.extend(
        first
            .into_iter()
            .filter(|entry| !listed.contains(&entry.address)),
    );
    second
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(address: [u8; 4], state: &str) -> Neighbour {
        Neighbour {
            ifindex: 2,
            address: Ipv4Addr::from(address),
            state: state.to_owned(),
            mac: None,
        }
    }

    #[test]
    fn an_entry_either_dump_lists_is_there_with_its_latest_state() {
        let first = vec![
            entry([10, 1, 0, 1], "STALE"),
            entry([10, 1, 0, 2], "PERMANENT"),
        ];
        let second = vec![
            entry([10, 1, 0, 1], "REACHABLE"),
            entry([10, 1, 0, 3], "PERMANENT"),
        ];
        let mut both: Vec<(Ipv4Addr, String)> = either_dump(first, second)
            .into_iter()
            .map(|entry| (entry.address, entry.state))
            .collect();
        both.sort();
        assert_eq!(
            both,
            [
                (Ipv4Addr::new(10, 1, 0, 1), "REACHABLE".to_owned()),
                (Ipv4Addr::new(10, 1, 0, 2), "PERMANENT".to_owned()),
                (Ipv4Addr::new(10, 1, 0, 3), "PERMANENT".to_owned()),
            ]
        );
    }
}
