//! A port is administratively down.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{netns_exec, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDown {
    pub port: PortRef,
    pub operstate: String,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let (port, link) = context.ports().into_iter().find_map(|port| {
        let link = port.link.as_ref()?;
        (!link.admin_up).then_some((port, link))
    })?;
    Some(
        Verdict::new(
            port.side,
            InterfaceDown {
                port: PortRef::of(port),
                operstate: link.operstate.clone(),
            },
        )
        .because(Fact::Link {
            port: PortRef::of(port),
            link: link.clone(),
        }),
    )
}

impl Describe for InterfaceDown {
    fn class(&self) -> VerdictClass {
        VerdictClass::Interface
    }

    fn summary(&self, side: Side) -> String {
        format!(
            "The {} port {} is administratively down.",
            side_name(side),
            self.port.label()
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Bring it up: {}ip link set {} up",
            netns_exec(&self.port.netns),
            self.port.interface
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }
}

#[cfg(test)]
pub(crate) fn example() -> InterfaceDown {
    InterfaceDown {
        port: super::example::target(),
        operstate: "down".to_owned(),
    }
}
