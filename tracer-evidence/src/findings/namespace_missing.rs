//! A port's namespace does not exist.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{found_elsewhere, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMissing {
    pub port: PortRef,
    /// Namespaces holding an interface of the port's name ("" for tracer's own).
    pub found_elsewhere: Vec<String>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let port = context.ports().into_iter().find(|port| !port.netns_exists)?;
    Some(
        Verdict::new(
            port.side,
            NamespaceMissing {
                port: PortRef::of(port),
                found_elsewhere: port.found_elsewhere.clone(),
            },
        )
        .because(Fact::NoNamespace {
            netns: port.netns.clone(),
        }),
    )
}

impl Describe for NamespaceMissing {
    fn class(&self) -> VerdictClass {
        VerdictClass::Interface
    }

    fn summary(&self, side: Side) -> String {
        format!(
            "The {} namespace {} does not exist; {}.",
            side_name(side),
            self.port.netns,
            found_elsewhere(&self.port.interface, &self.found_elsewhere)
        )
    }

    fn advice(&self, side: Side) -> String {
        format!(
            "Create the namespace and move {0} into it (ip netns add {1}; ip link set {0} netns {1}), or pass the right --{2}.",
            self.port.interface,
            self.port.netns,
            side_name(side)
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }
}

#[cfg(test)]
pub(crate) fn example() -> NamespaceMissing {
    NamespaceMissing {
        port: super::example::target(),
        found_elsewhere: vec![String::new()],
    }
}
