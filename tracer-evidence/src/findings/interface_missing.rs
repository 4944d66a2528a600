//! A port's interface is not in its namespace.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{found_elsewhere, namespace_phrase, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceMissing {
    pub port: PortRef,
    /// Namespaces holding an interface of the port's name ("" for tracer's own).
    pub found_elsewhere: Vec<String>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let port = context.ports().into_iter().find(|port| port.link.is_none())?;
    Some(
        Verdict::new(
            port.side,
            InterfaceMissing {
                port: PortRef::of(port),
                found_elsewhere: port.found_elsewhere.clone(),
            },
        )
        .because(Fact::NoInterface {
            port: PortRef::of(port),
        }),
    )
}

impl Describe for InterfaceMissing {
    fn class(&self) -> VerdictClass {
        VerdictClass::Interface
    }

    fn summary(&self, side: Side) -> String {
        format!(
            "The {} port {} is not in {}; {}.",
            side_name(side),
            self.port.interface,
            namespace_phrase(&self.port.netns),
            found_elsewhere(&self.port.interface, &self.found_elsewhere)
        )
    }

    fn advice(&self, side: Side) -> String {
        format!(
            "Move {} where the test expects it, or pass --{} NETNS/IFNAME for where it is.",
            self.port.interface,
            side_name(side)
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }
}

#[cfg(test)]
pub(crate) fn example() -> InterfaceMissing {
    InterfaceMissing {
        port: super::example::target(),
        found_elsewhere: vec!["other".to_owned()],
    }
}
