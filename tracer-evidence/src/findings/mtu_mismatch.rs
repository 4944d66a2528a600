//! Frames larger than a hop's MTU die there: don't-fragment probes at the size the path claims
//! did not pass, the kernel dropped packets as too big, or the test's own traffic was lost on
//! the way from a port whose MTU a hop after it cannot take.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{Evidence, Hop, HopRole, PortEvidence, Side},
    reasons::DropReason,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::netns_exec,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtuMismatch {
    pub from: PortRef,
    pub from_mtu: u32,
    pub to: PortRef,
    pub to_mtu: u32,
    /// Where the oversize frames die, and its MTU.
    pub dropping: PortRef,
    pub dropping_mtu: u32,
    /// The packet size that did not pass.
    pub size: u32,
}

/// Small probes may all pass: this rule needs no failed probe.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let evidence = context.evidence;
    let failed = evidence
        .mtu_probes
        .iter()
        .find(|probe| probe.answered < probe.sent || probe.error.is_some());
    let too_big = evidence
        .drops
        .iter()
        .find(|drop| drop.drop.reason() == DropReason::PktTooBig);
    let (from, size) = match (failed, too_big) {
        (Some(probe), _) => (probe.from, probe.size),
        // The test's own traffic: a drop as too big on one port means the other sent it.
        (None, Some(drop)) => {
            let sender = drop.side.opposite();
            (sender, port_mtu(context.port(sender)))
        }
        (None, None) => lost_above_a_smaller_mtu(context)?,
    };
    let (origin, peer) = (context.port(from), context.port(from.opposite()));
    // Where it dies: the first hop from the origin whose MTU is below the size.
    let hops: Vec<&Hop> = match &evidence.path {
        Some(path) if from == Side::Target => path.hops.iter().rev().collect(),
        Some(path) => path.hops.iter().collect(),
        None => Vec::new(),
    };
    let (dropping, dropping_mtu) = hops
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
        .unwrap_or_else(|| (PortRef::of(peer), port_mtu(peer)));
    let side = if dropping == PortRef::of(origin) {
        from
    } else if dropping == PortRef::of(peer) {
        from.opposite()
    } else {
        Side::Wire
    };
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
            side,
            MtuMismatch {
                from: PortRef::of(origin),
                from_mtu: port_mtu(origin),
                to: PortRef::of(peer),
                to_mtu: port_mtu(peer),
                dropping,
                dropping_mtu,
                size,
            },
        )
        .because_all(facts),
    )
}

/// The side whose frames were lost on the way while its port's MTU is above a hop's after it,
/// with that MTU; only for the test's own traffic (diagnose's probes test the size itself).
fn lost_above_a_smaller_mtu(context: &Context) -> Option<(Side, u32)> {
    let evidence: &Evidence = context.evidence;
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
    evidence.exchanges.iter().find_map(|probe| {
        let (side, left, arrived) = if probe.left_origin > probe.reached_peer {
            (probe.from, probe.left_origin, probe.reached_peer)
        } else {
            (
                probe.from.opposite(),
                probe.answer_left_peer,
                probe.answer_reached_origin,
            )
        };
        let mtu = port_mtu(context.port(side));
        (arrived < left && mtu > smallest).then_some((side, mtu))
    })
}

fn port_mtu(port: &PortEvidence) -> u32 {
    port.link.as_ref().map_or(0, |link| link.mtu)
}

impl Describe for MtuMismatch {
    fn class(&self) -> VerdictClass {
        VerdictClass::Mtu
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "{}-byte packets from {} (MTU {}) to {} (MTU {}) die at {} (MTU {}): small probes pass, jumbo frames do not.",
            self.size,
            self.from.label(),
            self.from_mtu,
            self.to.label(),
            self.to_mtu,
            self.dropping.label(),
            self.dropping_mtu
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Give every hop the same MTU: {}ip link set {} mtu SIZE (and the other hops alike).",
            netns_exec(&self.dropping.netns),
            self.dropping.interface
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.dropping)
    }

    fn named_thing(&self) -> Option<String> {
        Some(format!(
            "{} has MTU {}: {}-byte packets do not pass",
            self.dropping.interface, self.dropping_mtu, self.size
        ))
    }
}

#[cfg(test)]
pub(crate) fn example() -> MtuMismatch {
    MtuMismatch {
        from: super::example::initiator(),
        from_mtu: 9000,
        to: super::example::target(),
        to_mtu: 1500,
        dropping: super::example::target(),
        dropping_mtu: 1500,
        size: 9000,
    }
}
