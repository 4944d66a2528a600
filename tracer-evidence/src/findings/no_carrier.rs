//! A port is up without carrier: unplugged, or the far end down.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{PortEvidence, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCarrier {
    pub ports: Vec<PortRef>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let without_carrier: Vec<&PortEvidence> = context
        .ports()
        .into_iter()
        .filter(|port| {
            port.link
                .as_ref()
                .is_some_and(|link| link.admin_up && !link.carrier)
        })
        .collect();
    let side = match without_carrier.as_slice() {
        [] => return None,
        [only] => only.side,
        _ => Side::Wire,
    };
    let facts: Vec<Fact> = without_carrier
        .iter()
        .filter_map(|port| {
            Some(Fact::Link {
                port: PortRef::of(port),
                link: port.link.clone()?,
            })
        })
        .collect();
    Some(
        Verdict::new(
            side,
            NoCarrier {
                ports: without_carrier.into_iter().map(PortRef::of).collect(),
            },
        )
        .because_all(facts)
        .because_all(context.failed_facts()),
    )
}

impl Describe for NoCarrier {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        let names: Vec<String> = self.ports.iter().map(PortRef::label).collect();
        format!(
            "No carrier on {}: the port is up but its link is down (cable unplugged, or the far end down).",
            names.join(" and ")
        )
    }

    fn advice(&self, _: Side) -> String {
        "Check the cable between the two ports and that the far end is up.".to_owned()
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        match self.ports.as_slice() {
            [only] => path.port(only),
            _ => Some(path.wire()),
        }
    }
}

#[cfg(test)]
pub(crate) fn example() -> NoCarrier {
    NoCarrier {
        ports: vec![super::example::target()],
    }
}
