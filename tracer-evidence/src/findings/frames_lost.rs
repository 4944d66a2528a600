//! Frames left one port and did not all arrive at the other, with carrier on both: the ports
//! are not cabled to each other, or the wire loses frames. Where the cable map was looked at,
//! a carrier that went down during the run and ends whose link modes differ are part of it.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    cables::CableMap,
    class::VerdictClass,
    facts::{ExchangeKind, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::link_mismatch,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FramesLost {
    #[serde(alias = "probe")]
    pub exchange: ExchangeKind,
    pub from: PortRef,
    pub to: PortRef,
    pub left: u64,
    pub arrived: u64,
    /// The ends whose carrier went down while tracer looked, and how often.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carrier_downs: Vec<CarrierDowns>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierDowns {
    pub port: PortRef,
    pub downs: u32,
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
    let ends = [PortRef::of(context.port(from)), PortRef::of(context.port(from.opposite()))];
    let (carrier_downs, link_facts) = evidence
        .cables
        .as_ref()
        .map(|map| link_trouble(map, &ends))
        .unwrap_or_default();
    let [from, to] = ends;
    Some(
        Verdict::new(
            Side::Wire,
            FramesLost {
                exchange: probe.kind,
                from,
                to,
                left,
                arrived,
                carrier_downs,
            },
        )
        .because(Fact::CarrierOnBoth {
            initiator: evidence.initiator.interface.clone(),
            target: evidence.target.interface.clone(),
        })
        .because_all(link_facts)
        .because_all(context.failed_facts()),
    )
}

/// The ends whose carrier went down during the run, and the map's view of both ends as facts
/// when a carrier went down or their speed, duplex or autonegotiation differ.
fn link_trouble(map: &CableMap, ends: &[PortRef; 2]) -> (Vec<CarrierDowns>, Vec<Fact>) {
    let found: Vec<_> = ends.iter().filter_map(|end| map.port(end)).collect();
    let carrier_downs: Vec<CarrierDowns> = found
        .iter()
        .filter_map(|cable| {
            let downs = cable.link.carrier_downs_during_run.filter(|downs| *downs > 0)?;
            Some(CarrierDowns {
                port: cable.port.clone(),
                downs,
            })
        })
        .collect();
    let modes_differ = matches!(found.as_slice(), [a, b] if link_mismatch(a, b).is_some());
    let facts = if carrier_downs.is_empty() && !modes_differ {
        Vec::new()
    } else {
        found
            .into_iter()
            .map(|cable| Fact::Cable {
                cable: cable.clone(),
            })
            .collect()
    };
    (carrier_downs, facts)
}

impl FramesLost {
    /// "Carrier went down 14 time(s) on cvl_0_1 during the run.", or nothing.
    fn carrier_sentence(&self) -> String {
        self.carrier_downs
            .iter()
            .map(|end| {
                format!(
                    " Carrier went down {} time(s) on {} during the run.",
                    end.downs, end.port.interface
                )
            })
            .collect()
    }
}

impl Describe for FramesLost {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        let lost = if self.arrived == 0 {
            format!(
                "Frames leave {} but never reach {}: the two ports are not cabled to each other.",
                self.from.interface, self.to.interface
            )
        } else {
            format!(
                "Frames between {} and {} are lost on the wire, part of the time.",
                self.from.interface, self.to.interface
            )
        };
        format!("{lost}{}", self.carrier_sentence())
    }

    fn advice(&self, _: Side) -> String {
        if self.carrier_downs.is_empty() {
            "Check the cabling: the ports must be connected to each other (a loop), not to something else."
                .to_owned()
        } else {
            "Check the cable and the transceivers at both ends: the link went down while frames were lost."
                .to_owned()
        }
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
        // Empty: report.json written before the field existed reads as this.
        carrier_downs: Vec::new(),
    }
}
