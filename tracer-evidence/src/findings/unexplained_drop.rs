//! The kernel dropped the probes for a reason no other finding explains.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    counters::DropCount,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::Verdict,
    words::{drop_place, namespace_phrase},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnexplainedDrop {
    pub drop: DropCount,
}

/// The largest drop that is not expected on a healthy path (and not IPv6: the probes are IPv4).
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let suspicious = context
        .evidence
        .drops
        .iter()
        .filter(|drop| !drop.drop.reason().is_expected() && drop.drop.protocol != "ipv6")
        .max_by_key(|drop| drop.drop.count)?;
    Some(
        Verdict::new(
            suspicious.side,
            UnexplainedDrop {
                drop: suspicious.drop.clone(),
            },
        )
        .because_all(context.drop_facts())
        .because_all(context.failed_facts()),
    )
}

/// Shared with `Unanswered`: what to do when nothing explains the loss.
pub(super) const ADVICE: &str = "Look up the drop reason in the kernel's include/net/dropreason-core.h and attach this report to a bug.";

impl Describe for UnexplainedDrop {
    fn class(&self) -> VerdictClass {
        VerdictClass::Unknown
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "The kernel drops the probes with reason {} on {} in {}, which no class explains.",
            self.drop.reason,
            drop_place(&self.drop),
            namespace_phrase(&self.drop.netns)
        )
    }

    fn advice(&self, _: Side) -> String {
        ADVICE.to_owned()
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.at(&self.drop.netns, &self.drop.interface)
    }

    fn named_thing(&self) -> Option<String> {
        Some(self.drop.reason.clone())
    }
}

#[cfg(test)]
pub(crate) fn example() -> UnexplainedDrop {
    UnexplainedDrop {
        drop: DropCount {
            netns: "cvl_0_0_ns_spdk".to_owned(),
            interface: "cvl_0_0".to_owned(),
            ifindex: 2,
            reason: "IP_INHDR".to_owned(),
            location: None,
            protocol: "ipv4".to_owned(),
            count: 3,
        },
    }
}
