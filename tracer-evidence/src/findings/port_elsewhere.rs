//! A port is in another namespace than the one it belongs in: a leftover of an earlier run
//! that moved it (SPDK's setup moves target ports into a namespace and a crashed run may never
//! move them back), named with the command that returns it.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{namespace_phrase, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortElsewhere {
    /// Where the port belongs.
    pub port: PortRef,
    /// Namespaces holding an interface of the port's name ("" for tracer's own), the first
    /// one being the one the advice moves it from.
    pub found_in: Vec<String>,
}

/// The port's namespace exists, the port is not in it, and an interface of its name is in
/// another one (a namespace gone altogether is `namespace_missing`, asked first).
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let port = context
        .ports()
        .into_iter()
        .find(|port| port.netns_exists && port.link.is_none() && !port.found_elsewhere.is_empty())?;
    Some(
        Verdict::new(
            port.side,
            PortElsewhere {
                port: PortRef::of(port),
                found_in: port.found_elsewhere.clone(),
            },
        )
        .because(Fact::NoInterface {
            port: PortRef::of(port),
        }),
    )
}

impl PortElsewhere {
    /// The command that moves the port back: `ip -n FROM link set IF netns TO` (`netns 1`, the
    /// namespace of PID 1, for the host's own).
    pub fn return_command(&self) -> String {
        let from = self.found_in.first().map_or("", String::as_str);
        let from = if from.is_empty() {
            String::new()
        } else {
            format!("-n {from} ")
        };
        let to = if self.port.netns.is_empty() {
            "1"
        } else {
            self.port.netns.as_str()
        };
        format!(
            "ip {from}link set {} netns {to}",
            self.port.interface
        )
    }
}

impl Describe for PortElsewhere {
    fn class(&self) -> VerdictClass {
        VerdictClass::Interface
    }

    fn summary(&self, side: Side) -> String {
        let places: Vec<String> = self
            .found_in
            .iter()
            .map(|netns| namespace_phrase(netns))
            .collect();
        format!(
            "The {} port {} is in {}, not in {}.",
            side_name(side),
            self.port.interface,
            places.join(" and "),
            namespace_phrase(&self.port.netns)
        )
    }

    fn advice(&self, side: Side) -> String {
        format!(
            "An earlier run that ended early can leave it there: return it with `{}` (with no test running), or pass --{} NETNS/IFNAME for where it is.",
            self.return_command(),
            side_name(side)
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }

    fn named_thing(&self) -> Option<String> {
        Some(self.return_command())
    }
}

#[cfg(test)]
pub(crate) fn example() -> PortElsewhere {
    PortElsewhere {
        port: super::example::target(),
        found_in: vec!["old_ns_spdk".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_where_it_is_and_the_command_that_returns_it() {
        let found = example();
        assert_eq!(
            found.return_command(),
            "ip -n old_ns_spdk link set cvl_0_0 netns cvl_0_0_ns_spdk"
        );
        assert_eq!(
            found.summary(Side::Target),
            "The target port cvl_0_0 is in namespace old_ns_spdk, not in namespace cvl_0_0_ns_spdk."
        );
        assert!(found.advice(Side::Target).contains(&found.return_command()));
        // A port that belongs in the host's own namespace returns to PID 1's.
        let home = PortElsewhere {
            port: super::super::example::initiator(),
            found_in: vec!["cvl_0_0_ns_spdk".to_owned()],
        };
        assert_eq!(
            home.return_command(),
            "ip -n cvl_0_0_ns_spdk link set cvl_0_1 netns 1"
        );
    }
}
