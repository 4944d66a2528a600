//! Frames left a port while it had no carrier (watch saw carrier come later, or never).

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{PortRef, Verdict},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierLate {
    pub port: PortRef,
    /// Frames that left while it had no carrier.
    pub frames_without_carrier: u64,
    /// Milliseconds from the first of them to carrier up; `None` if it never came.
    pub carrier_after_ms: Option<u64>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let gap = context
        .evidence
        .carrier_gaps
        .iter()
        .find(|gap| gap.frames > 0)?;
    Some(
        Verdict::new(
            gap.side,
            CarrierLate {
                port: PortRef::of(context.port(gap.side)),
                frames_without_carrier: gap.frames,
                carrier_after_ms: gap.carrier_after_ms,
            },
        )
        .because_all(context.failed_facts()),
    )
}

impl Describe for CarrierLate {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        let (port, frames) = (self.port.label(), self.frames_without_carrier);
        match self.carrier_after_ms {
            Some(ms) => format!(
                "{port} had no carrier when {frames} frame(s) left; carrier came up {:.1} s later.",
                ms as f64 / 1000.0
            ),
            None => format!(
                "{port} had no carrier when {frames} frame(s) left, and never got it."
            ),
        }
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Wait for carrier on {0} before sending (ip link show {0} must say LOWER_UP), or check the cable and the far end.",
            self.port.interface
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }
}

#[cfg(test)]
pub(crate) fn example() -> CarrierLate {
    CarrierLate {
        port: super::example::target(),
        frames_without_carrier: 2,
        carrier_after_ms: Some(1500),
    }
}
