//! The initiator's neighbour entry for the target's address holds another MAC than the target
//! port's: frames go out to a MAC nobody has (a static entry, or a stale one after the target
//! port was re-created) and are dropped as not for this host.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{Side, mac_text},
    reasons::NeighbourState,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::netns_exec,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourMismatch {
    pub port: PortRef,
    pub address: IpAddr,
    pub entry_mac: String,
    pub entry_state: String,
    pub target_mac: String,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let evidence = context.evidence;
    let target_mac = mac_text(evidence.target.link.as_ref()?.mac?);
    let entry = evidence.neighbours.iter().find(|neighbour| {
        neighbour.side == Side::Initiator
            && neighbour.address.to_string() == evidence.environment.target_ip
    })?;
    let entry_mac = entry.mac.clone()?;
    if entry_mac == target_mac {
        return None;
    }
    Some(
        Verdict::new(
            Side::Initiator,
            NeighbourMismatch {
                port: PortRef::of(&evidence.initiator),
                address: entry.address,
                entry_mac,
                entry_state: entry
                    .after
                    .clone()
                    .or_else(|| entry.before.clone())
                    .unwrap_or_default(),
                target_mac,
            },
        )
        .because(Fact::Neighbour {
            neighbour: entry.clone(),
        })
        .because_all(context.drop_facts())
        .because_all(context.failed_facts()),
    )
}

impl Describe for NeighbourMismatch {
    fn class(&self) -> VerdictClass {
        VerdictClass::Neighbour
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "{}'s neighbour entry for {} points at {} ({}), but the target port's MAC is {}: frames arrive and are dropped as not for this host.",
            self.port.label(),
            self.address,
            self.entry_mac,
            self.entry_state,
            self.target_mac
        )
    }

    fn advice(&self, _: Side) -> String {
        let (exec, interface, address) = (
            netns_exec(&self.port.netns),
            &self.port.interface,
            self.address,
        );
        let fix = if NeighbourState::parse(&self.entry_state).contains(&NeighbourState::Permanent) {
            format!(
                "{exec}ip neigh replace {address} lladdr {} dev {interface} nud permanent (or delete the static entry)",
                self.target_mac
            )
        } else {
            format!("{exec}ip neigh flush dev {interface} to {address}")
        };
        format!("Fix the initiator's entry: {fix}.")
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }

    fn named_thing(&self) -> Option<String> {
        Some(format!(
            "neighbour entry {}, target port {}",
            self.entry_mac, self.target_mac
        ))
    }
}

#[cfg(test)]
pub(crate) fn example() -> NeighbourMismatch {
    NeighbourMismatch {
        port: super::example::initiator(),
        address: [10, 0, 0, 2].into(),
        entry_mac: "02:00:00:00:00:99".to_owned(),
        entry_state: "PERMANENT".to_owned(),
        target_mac: "02:00:00:00:00:02".to_owned(),
    }
}
