//! The cable map shows a port's frames arriving somewhere other than its peer: at another
//! local port (crossed cables), or at a switch whose LLDP frames name it.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    cables::{CableMap, LinkPartner},
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::port_list,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CabledElsewhere {
    /// Each end of the pair whose frames do not reach the other, initiator first.
    pub ends: Vec<CableEnd>,
}

/// Where one port's frames go instead of its peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CableEnd {
    pub port: PortRef,
    pub peer: PortRef,
    /// The local ports its frames arrived at.
    pub reaches: Vec<PortRef>,
    /// The far end its LLDP frames name, when it sent any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<LinkPartner>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let map = context.evidence.cables.as_ref()?;
    let [initiator, target] = context.ports().map(PortRef::of);
    let verdict = of_pair(map, &initiator, &target)?;
    let facts = verdict_facts(map, &[initiator, target]);
    Some(verdict.because_all(facts))
}

/// The verdict for two ports meant to be cabled to each other, from the map alone; `None`
/// when they reach each other, or when the map shows nothing about where they go instead.
pub fn of_pair(map: &CableMap, a: &PortRef, b: &PortRef) -> Option<Verdict> {
    let ends: Vec<CableEnd> = [(a, b), (b, a)]
        .into_iter()
        .filter_map(|(port, peer)| {
            let found = map.port(port)?;
            (found.sent > 0 && !found.reaches.contains(peer)).then(|| CableEnd {
                port: port.clone(),
                peer: peer.clone(),
                reaches: found.reaches.clone(),
                partner: found.partner.clone(),
            })
        })
        .collect();
    let named = ends
        .iter()
        .any(|end| !end.reaches.is_empty() || end.partner.is_some());
    named.then(|| {
        let facts = verdict_facts(map, &[a.clone(), b.clone()]);
        Verdict::new(Side::Wire, CabledElsewhere { ends }).because_all(facts)
    })
}

fn verdict_facts(map: &CableMap, ports: &[PortRef]) -> Vec<Fact> {
    ports
        .iter()
        .filter_map(|port| {
            Some(Fact::Cable {
                cable: map.port(port)?.clone(),
            })
        })
        .collect()
}

impl CableEnd {
    fn sentence(&self) -> String {
        let port = &self.port.interface;
        let peer = &self.peer.interface;
        match (&self.partner, self.reaches.as_slice()) {
            (_, [_, ..]) => format!(
                "{port}'s frames arrive at {}, not at {peer}",
                port_list(&self.reaches)
            ),
            (Some(partner), []) => format!(
                "{port} is cabled to {} (LLDP), not to {peer}",
                partner.label()
            ),
            (None, []) => format!("{port}'s frames arrive at no port tracer looked at"),
        }
    }
}

impl Describe for CabledElsewhere {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        let sentences: Vec<String> = self.ends.iter().map(CableEnd::sentence).collect();
        format!(
            "{}: the ports are not cabled to each other.",
            sentences.join("; ")
        )
    }

    fn advice(&self, _: Side) -> String {
        let moves: Vec<String> = self
            .ends
            .iter()
            .map(|end| {
                let now = match (&end.partner, end.reaches.as_slice()) {
                    (_, [_, ..]) => format!(" (now reaching {})", port_list(&end.reaches)),
                    (Some(partner), []) => format!(" (now at {})", partner.label()),
                    (None, []) => String::new(),
                };
                format!(
                    "the cable at {}{now} belongs at {}",
                    end.port.interface, end.peer.interface
                )
            })
            .collect();
        format!(
            "Recable: {} (`tracer cables` shows the whole map).",
            moves.join("; ")
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        Some(path.wire())
    }

    /// The far ends the frames really reach.
    fn named_thing(&self) -> Option<String> {
        let far: Vec<String> = self
            .ends
            .iter()
            .flat_map(|end| {
                let ports = end.reaches.iter().map(PortRef::label);
                let partner = end.partner.iter().map(LinkPartner::label);
                ports.chain(partner)
            })
            .collect();
        (!far.is_empty()).then(|| far.join(", "))
    }
}

#[cfg(test)]
pub(crate) fn example() -> CabledElsewhere {
    let elsewhere = |interface: &str| PortRef {
        netns: String::new(),
        interface: interface.to_owned(),
    };
    CabledElsewhere {
        ends: vec![
            CableEnd {
                port: super::example::initiator(),
                peer: super::example::target(),
                reaches: vec![elsewhere("cvl_1_0")],
                partner: None,
            },
            CableEnd {
                port: super::example::target(),
                peer: super::example::initiator(),
                reaches: Vec::new(),
                partner: Some(LinkPartner {
                    chassis_id: "52:54:00:12:34:56".to_owned(),
                    port_id: "Ethernet12".to_owned(),
                    system_name: Some("tor-3".to_owned()),
                    ..LinkPartner::default()
                }),
            },
        ],
    }
}
