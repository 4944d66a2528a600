//! Frames left one port and did not all arrive at the other, with carrier on both: the ports
//! are not cabled to each other, or the wire loses frames.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{ExchangeKind, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FramesLost {
    #[serde(alias = "probe")]
    pub exchange: ExchangeKind,
    pub from: PortRef,
    pub to: PortRef,
    pub left: u64,
    pub arrived: u64,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let failed = context.failures()?;
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
            probe.from.opposite(),
            probe.answer_left_peer,
            probe.answer_reached_origin,
        ),
        (None, None) => return None,
    };
    let evidence = context.evidence;
    Some(
        Verdict::new(
            Side::Wire,
            FramesLost {
                exchange: probe.kind,
                from: PortRef::of(context.port(from)),
                to: PortRef::of(context.port(from.opposite())),
                left,
                arrived,
            },
        )
        .because(Fact::CarrierOnBoth {
            initiator: evidence.initiator.interface.clone(),
            target: evidence.target.interface.clone(),
        })
        .because_all(context.failed_facts()),
    )
}

impl Describe for FramesLost {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        if self.arrived == 0 {
            format!(
                "Frames leave {} but never reach {}: the two ports are not cabled to each other.",
                self.from.interface, self.to.interface
            )
        } else {
            format!(
                "Frames between {} and {} are lost on the wire, part of the time.",
                self.from.interface, self.to.interface
            )
        }
    }

    fn advice(&self, _: Side) -> String {
        "Check the cabling: the ports must be connected to each other (a loop), not to something else."
            .to_owned()
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        Some(path.wire())
    }
}

#[cfg(test)]
pub(crate) fn example() -> FramesLost {
    FramesLost {
        exchange: ExchangeKind::Arp,
        from: super::example::initiator(),
        to: super::example::target(),
        left: 3,
        arrived: 0,
    }
}
