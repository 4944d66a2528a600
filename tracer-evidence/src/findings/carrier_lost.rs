//! A port lost carrier for a while during the run, and the test's requests went unanswered
//! then.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    windows::{CarrierWindow, LossWindow, at, loss_line, worst_loss},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierLost {
    pub port: PortRef,
    pub window: CarrierWindow,
    pub loss: LossWindow,
}

/// Carrier lost after the port had it, overlapping a loss.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let windows = &context.evidence.windows;
    let (window, loss) = windows
        .carrier
        .iter()
        .filter_map(|window| Some((window, worst_loss(windows, window.lost_ms, window.back_ms)?)))
        .max_by_key(|(_, loss)| loss.unanswered)?;
    Some(
        Verdict::new(
            window.side,
            CarrierLost {
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

impl Describe for CarrierLost {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        let back = self
            .window
            .back_ms
            .map_or_else(|| "never got it back".to_owned(), |ms| format!("got it back at {}", at(ms)));
        format!(
            "{} lost carrier at {} and {back}; {}.",
            self.port.label(),
            at(self.window.lost_ms),
            loss_line(&self.loss)
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Find what took the link of {} or its peer down during the run (a cable, a switch port, a driver reset, a test that flaps it on purpose); ip -s link show {} counts carrier changes.",
            self.port.label(),
            self.port.interface
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.port(&self.port).or_else(|| path.side(side))
    }

    fn named_thing(&self) -> Option<String> {
        Some(format!("port {}", self.port.label()))
    }
}

#[cfg(test)]
pub(crate) fn example() -> CarrierLost {
    let port = super::example::initiator();
    CarrierLost {
        window: CarrierWindow {
            side: Side::Initiator,
            netns: port.netns.clone(),
            interface: port.interface.clone(),
            lost_ms: 2000,
            back_ms: Some(4000),
        },
        port,
        loss: LossWindow {
            flow: "ICMP from 10.0.0.1 to 10.0.0.2".to_owned(),
            side: Side::Initiator,
            first_ms: 2100,
            last_ms: 3900,
            unanswered: 9,
        },
    }
}
