//! A port's address was removed for a while during the run, and the test's requests went
//! unanswered then: nobody answered ARP for it (SPDK's discovery_remove_ifc.sh does this on
//! purpose).

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    windows::{AddressWindow, LossWindow, at, loss_line, worst_loss},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRemoved {
    pub port: PortRef,
    pub window: AddressWindow,
    pub loss: LossWindow,
}

/// An address removed after watching began, overlapping a loss.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let windows = &context.evidence.windows;
    let (window, loss) = windows
        .address
        .iter()
        .filter_map(|window| {
            Some((
                window,
                worst_loss(windows, window.removed_ms, window.back_ms)?,
            ))
        })
        .max_by_key(|(_, loss)| loss.unanswered)?;
    Some(
        Verdict::new(
            window.side,
            AddressRemoved {
                port: PortRef {
                    netns: window.netns.clone(),
                    interface: window.interface.clone(),
                },
                window: window.clone(),
                loss: loss.clone(),
            },
        )
        .because(Fact::Loss { loss: loss.clone() })
        .because_all(context.failed_facts()),
    )
}

impl Describe for AddressRemoved {
    fn class(&self) -> VerdictClass {
        VerdictClass::Neighbour
    }

    fn summary(&self, _: Side) -> String {
        let back = self.window.back_ms.map_or_else(
            || "never had it again".to_owned(),
            |ms| format!("had it again at {}", at(ms)),
        );
        format!(
            "{} lost its address {} at {} and {back}; {}.",
            self.port.label(),
            self.window.address,
            at(self.window.removed_ms),
            loss_line(&self.loss)
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Find what removed {} from {} during the run (a test that does it on purpose, a network manager, DHCP); ip monitor address shows it as it happens.",
            self.window.address,
            self.port.label()
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.port(&self.port).or_else(|| path.side(side))
    }

    fn named_thing(&self) -> Option<String> {
        Some(format!(
            "address {} of port {}",
            self.window.address,
            self.port.label()
        ))
    }
}

#[cfg(test)]
pub(crate) fn example() -> AddressRemoved {
    let port = super::example::target();
    AddressRemoved {
        window: AddressWindow {
            side: Side::Target,
            netns: port.netns.clone(),
            interface: port.interface.clone(),
            address: [10, 0, 0, 2].into(),
            removed_ms: 2000,
            back_ms: Some(5000),
        },
        port,
        loss: LossWindow {
            flow: "ICMP from 10.0.0.1 to 10.0.0.2".to_owned(),
            side: Side::Initiator,
            first_ms: 2100,
            last_ms: 4900,
            unanswered: 14,
        },
    }
}
