//! No ARP, ICMP or port traffic crossed the ports: nothing shows the path working or failing.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::Verdict,
};

/// Saved as `{"kind": "nothing_observed"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NothingObserved {}

/// Every probe was skipped, or (watch) no exchange happened at all.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context
        .evidence
        .exchanges
        .iter()
        .all(|probe| probe.skipped.is_some())
        .then(|| Verdict::new(Side::None, NothingObserved {}))
}

impl Describe for NothingObserved {
    fn class(&self) -> VerdictClass {
        VerdictClass::Ok
    }

    fn summary(&self, _: Side) -> String {
        "No ARP, ICMP or port traffic crossed the ports: nothing shows whether the path works."
            .to_owned()
    }

    fn advice(&self, _: Side) -> String {
        "Run tracer watch with --probe, or tracer diagnose, to probe the path.".to_owned()
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        Some(Stop::Hop(path.last()))
    }

    fn mark(&self) -> String {
        "no traffic seen".to_owned()
    }
}

#[cfg(test)]
pub(crate) fn example() -> NothingObserved {
    NothingObserved {}
}
