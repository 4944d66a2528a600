//! A port's MAC changed during the run while the other port's neighbour entry kept the old
//! one, and the test's requests went unanswered meanwhile.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    windows::{LossWindow, NeighbourWindow, at, loss_line, worst_loss},
    words::netns_exec,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleNeighbour {
    pub window: NeighbourWindow,
    pub loss: LossWindow,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let windows = &context.evidence.windows;
    let (window, loss) = windows
        .neighbour
        .iter()
        .filter_map(|window| {
            Some((window, worst_loss(windows, window.changed_ms, window.until_ms)?))
        })
        .max_by_key(|(_, loss)| loss.unanswered)?;
    Some(
        Verdict::new(
            window.side,
            StaleNeighbour {
                window: window.clone(),
                loss: loss.clone(),
            },
        )
        .because(Fact::Loss { loss: loss.clone() })
        .because_all(context.drop_facts())
        .because_all(context.failed_facts()),
    )
}

impl StaleNeighbour {
    fn port(&self) -> PortRef {
        PortRef {
            netns: self.window.netns.clone(),
            interface: self.window.interface.clone(),
        }
    }
}

impl Describe for StaleNeighbour {
    fn class(&self) -> VerdictClass {
        VerdictClass::Neighbour
    }

    fn summary(&self, _: Side) -> String {
        let window = &self.window;
        let until = window
            .until_ms
            .map_or_else(|| "the end".to_owned(), at);
        format!(
            "{}'s MAC changed to {} at {} while the neighbour entry on {} kept the stale {} until {until}; {}.",
            window.address,
            window.port_mac,
            at(window.changed_ms),
            self.port().label(),
            window.entry_mac,
            loss_line(&self.loss)
        )
    }

    fn advice(&self, _: Side) -> String {
        let window = &self.window;
        format!(
            "A NIC reset or a re-created VF changes the MAC: have it announce itself (sysctl net.ipv4.conf.all.arp_notify=1), or flush the stale entry: {}ip neigh flush {} dev {}.",
            netns_exec(&window.netns),
            window.address,
            window.interface
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.port(&self.port()).or_else(|| path.side(side))
    }

    fn named_thing(&self) -> Option<String> {
        let window = &self.window;
        Some(format!(
            "neighbour entry {} on {}: stale {}, the port has {}",
            window.address,
            self.port().label(),
            window.entry_mac,
            window.port_mac
        ))
    }
}

#[cfg(test)]
pub(crate) fn example() -> StaleNeighbour {
    let port = super::example::initiator();
    StaleNeighbour {
        window: NeighbourWindow {
            side: Side::Initiator,
            netns: port.netns,
            interface: port.interface,
            address: std::net::Ipv4Addr::new(10, 0, 0, 2),
            entry_mac: "02:00:00:00:00:02".to_owned(),
            port_mac: "02:00:00:00:00:22".to_owned(),
            changed_ms: 2000,
            until_ms: Some(5000),
        },
        loss: LossWindow {
            flow: "ICMP from 10.0.0.1 to 10.0.0.2".to_owned(),
            side: Side::Initiator,
            first_ms: 2100,
            last_ms: 4900,
            unanswered: 14,
        },
    }
}
