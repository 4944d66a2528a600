//! More than one MAC answered ARP for one address: two hosts hold it (a leftover interface or
//! namespace of an earlier run, say), and frames go to the wrong one part of the time.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::Verdict,
    windows::{AddressOwner, SharedAddress, at},
    words::port_label,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateAddress {
    pub shared: SharedAddress,
}

/// Whatever else happened: an address answered from two MACs is wrong on its own.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let shared = context
        .evidence
        .windows
        .shared_addresses
        .iter()
        .find(|shared| shared.owners.len() > 1)?;
    let side = if shared.address.to_string() == context.evidence.environment.initiator_ip {
        Side::Initiator
    } else {
        Side::Target
    };
    Some(
        Verdict::new(
            side,
            DuplicateAddress {
                shared: shared.clone(),
            },
        )
        .because_all(context.failed_facts()),
    )
}

fn owner_text(owner: &AddressOwner) -> String {
    let place = match (&owner.interface, &owner.netns) {
        (Some(interface), Some(netns)) => format!("on {}", port_label(netns, interface)),
        _ => "not on this machine".to_owned(),
    };
    format!(
        "{} ({place}; {} answer(s) from {} to {})",
        owner.mac,
        owner.answers,
        at(owner.first_ms),
        at(owner.last_ms)
    )
}

impl Describe for DuplicateAddress {
    fn class(&self) -> VerdictClass {
        VerdictClass::Neighbour
    }

    fn summary(&self, _: Side) -> String {
        let owners: Vec<String> = self.shared.owners.iter().map(owner_text).collect();
        format!(
            "{} MACs answered ARP for {}: {}.",
            owners.len(),
            self.shared.address,
            owners.join(" and ")
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Remove {} from every interface but the one that should hold it (a leftover interface or namespace of an earlier run keeps it); ip -br addr in each namespace shows where.",
            self.shared.address
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.side(side)
    }

    fn named_thing(&self) -> Option<String> {
        let macs: Vec<&str> = self
            .shared
            .owners
            .iter()
            .map(|owner| owner.mac.as_str())
            .collect();
        Some(format!("{} held by {}", self.shared.address, macs.join(" and ")))
    }
}

#[cfg(test)]
pub(crate) fn example() -> DuplicateAddress {
    let owner = |mac: &str, netns: &str, interface: &str| AddressOwner {
        mac: mac.to_owned(),
        first_ms: 2000,
        last_ms: 5000,
        answers: 12,
        interface: Some(interface.to_owned()),
        netns: Some(netns.to_owned()),
    };
    DuplicateAddress {
        shared: SharedAddress {
            address: std::net::Ipv4Addr::new(10, 0, 0, 2),
            owners: vec![
                owner("02:00:00:00:00:02", "cvl_0_0_ns_spdk", "cvl_0_0"),
                owner("02:00:00:00:00:99", "leftover", "rogue0"),
            ],
        },
    }
}
