//! The run's kernel drops: each tied to the port whose places (every namespace and interface
//! index it has had) hold it, in the timeline as they happen and as evidence at the end.

use tracer_common::DropKey;
use tracer_evidence::{DropCount, DropEvidence, ELSEWHERE, PortChange, Side, protocol_name};

use super::observe::{Watch, WatchedPort};
use crate::{collect::drops::RawDrop, netns};

impl Watch {
    /// Which port a drop belongs to, by every place the ports have been.
    pub(crate) fn side_of(&self, key: &DropKey) -> Option<(Side, &WatchedPort)> {
        self.ports.iter().find_map(|port| {
            port.history
                .iter()
                .any(|place| place.key().holds(key))
                .then_some((port.side, port))
        })
    }

    pub(crate) fn observe_drops(&mut self) {
        let now = self.seconds();
        let Ok(drops) = self.drops.drops() else {
            return;
        };
        let mut messages = Vec::new();
        for RawDrop { key, count } in drops {
            let previous = self.last_drops.insert(key, count).unwrap_or(0);
            let delta = count.saturating_sub(previous);
            if delta == 0 {
                continue;
            }
            let Some((side, port_name)) = self
                .side_of(&key)
                .map(|(side, port)| (side, port.name().to_owned()))
            else {
                // The rest of the machine: the probe counts it by reason, a few keys whatever
                // the rate, and so is it kept here.
                *self.other_drops.entry(key).or_default() += delta;
                continue;
            };
            *self.all_drops.entry(key).or_default() += delta;
            let reason = self.drops.reason_of(&key);
            let protocol = protocol_name(key.protocol);
            // IPv6 neighbour discovery on fresh interfaces and socket teardown are noise.
            if matches!(protocol.as_str(), "ipv6" | "none") || reason == "QUEUE_PURGE" {
                continue;
            }
            let place = if key.ifindex == 0 {
                format!("a local socket beside {port_name}")
            } else {
                port_name
            };
            messages.push((
                side,
                format!("{delta} x {reason} ({protocol}) on {place}"),
                PortChange::Drop {
                    count: delta,
                    reason,
                },
            ));
        }
        for (side, message, change) in messages {
            self.timeline
                .push_on(side, now, "drop", message, Some(change));
        }
    }

    /// The drops away from every port while watching, by reason, most first.
    pub(crate) fn other_drop_counts(&self) -> Vec<DropCount> {
        let names = netns::netns_names();
        let mut counts: Vec<DropCount> = self
            .other_drops
            .iter()
            .map(|(key, count)| {
                let netns = match key.netns {
                    0 => ELSEWHERE.to_owned(),
                    inode => names
                        .get(&inode)
                        .cloned()
                        .unwrap_or_else(|| format!("net:[{inode}]")),
                };
                let drop = RawDrop {
                    key: *key,
                    count: *count,
                };
                self.drops.name(&drop, netns, None)
            })
            .collect();
        counts.sort_by_key(|drop| std::cmp::Reverse(drop.count));
        counts
    }

    /// The drops of pair `pair`'s ports.
    pub(crate) fn drop_evidence(&self, pair: usize) -> Vec<DropEvidence> {
        let names = netns::netns_names();
        let mut evidence: Vec<DropEvidence> = self
            .all_drops
            .iter()
            .filter_map(|(key, count)| {
                let (side, port) = self.side_of(key).filter(|(_, port)| port.pair == pair)?;
                let place = port.history.iter().find(|place| place.key().holds(key))?;
                let netns = names
                    .get(&key.netns)
                    .cloned()
                    .unwrap_or_else(|| place.netns.clone());
                let drop = RawDrop {
                    key: *key,
                    count: *count,
                };
                Some(DropEvidence {
                    side,
                    drop: self.drops.name(&drop, netns, Some(&port.spec.interface)),
                })
            })
            .collect();
        evidence.sort_by_key(|drop| std::cmp::Reverse(drop.drop.count));
        evidence
    }
}
