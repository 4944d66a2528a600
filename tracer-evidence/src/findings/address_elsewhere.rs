//! An address of a port's subnet is on another interface of its namespace: a leftover of an
//! earlier run (or of the other layout version), and the kernel may route the subnet by it.
//!
//! A leftover explains a failure only when nothing more precise does: this rule is asked after
//! every other explanation. While the path works it is not a failure: the `ok` verdict carries
//! it as a `same_subnet` fact (`path_works`). The layout's own siblings (both virtual
//! initiators on one /24) are left out when the evidence is collected.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{namespace_phrase, netns_exec, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressElsewhere {
    pub port: PortRef,
    /// The other interfaces and their addresses, as IFNAME ADDR/LEN.
    pub interfaces: Vec<String>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let failed = context.failures()?;
    let port = context
        .ports()
        .into_iter()
        .find(|port| !port.same_subnet_elsewhere.is_empty())?;
    let at = PortRef::of(port);
    Some(
        Verdict::new(
            port.side,
            AddressElsewhere {
                port: at.clone(),
                interfaces: port.same_subnet_elsewhere.clone(),
            },
        )
        .because(Fact::SameSubnet {
            port: at,
            interfaces: port.same_subnet_elsewhere.clone(),
        })
        .because_all(failed.iter().map(|probe| Fact::Exchange {
            exchange: (*probe).clone(),
        })),
    )
}

impl Describe for AddressElsewhere {
    fn class(&self) -> VerdictClass {
        VerdictClass::Route
    }

    fn summary(&self, side: Side) -> String {
        format!(
            "Probes from the {} port {} failed, and its subnet is also on {} in {}: a leftover the kernel may route by.",
            side_name(side),
            self.port.interface,
            self.interfaces.join(", "),
            namespace_phrase(&self.port.netns)
        )
    }

    fn advice(&self, _: Side) -> String {
        let removals: Vec<String> = self
            .interfaces
            .iter()
            .filter_map(|entry| {
                let (interface, address) = entry.split_once(' ')?;
                Some(format!(
                    "{}ip addr del {address} dev {interface}",
                    netns_exec(&self.port.netns)
                ))
            })
            .collect();
        format!(
            "If it is left from an earlier run (no test uses it), remove it: {}.",
            removals.join("; ")
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }

    fn named_thing(&self) -> Option<String> {
        Some(self.interfaces.join(", "))
    }
}

#[cfg(test)]
pub(crate) fn example() -> AddressElsewhere {
    AddressElsewhere {
        port: super::example::initiator(),
        interfaces: vec!["old_if 10.0.0.9/24".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_leftover_and_how_to_remove_it() {
        let found = example();
        let summary = found.summary(Side::Initiator);
        assert!(summary.contains("old_if 10.0.0.9/24"), "{summary}");
        assert_eq!(
            found.advice(Side::Initiator),
            "If it is left from an earlier run (no test uses it), remove it: ip addr del 10.0.0.9/24 dev old_if."
        );
    }
}
