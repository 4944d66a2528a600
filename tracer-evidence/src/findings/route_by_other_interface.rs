//! The route to the other side leaves by another interface than the port.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{ExchangeKind, RouteLookup, Side},
    stop::{DrawnPath, Stop},
    verdict::{PortRef, Verdict},
    words::{namespace_phrase, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteByOtherInterface {
    pub port: PortRef,
    pub destination: IpAddr,
    /// The interface the route leaves by, when it has a name.
    pub via: Option<String>,
}

fn by_other_interface(context: &Context, from: Side) -> Option<Verdict> {
    context.route_fault(from, |route, port| {
        (matches!(route.lookup, RouteLookup::Via { .. }) && !route.via_port).then(|| {
            RouteByOtherInterface {
                port,
                destination: route.destination,
                via: route.via_interface.clone(),
            }
            .into()
        })
    })
}

/// A fault only where the probes failed and never left the initiator's port: on a bridge, the
/// other interface may reach the target too.
pub(crate) fn from_initiator(context: &Context) -> Option<Verdict> {
    let never_left = context.failures()?.iter().any(|probe| {
        probe.from == Side::Initiator && probe.kind != ExchangeKind::Arp && probe.left_origin == 0
    });
    never_left.then(|| by_other_interface(context, Side::Initiator))?
}

/// The target's way back matters once the probes failed.
pub(crate) fn from_target(context: &Context) -> Option<Verdict> {
    context.failures()?;
    by_other_interface(context, Side::Target)
}

impl Describe for RouteByOtherInterface {
    fn class(&self) -> VerdictClass {
        VerdictClass::Route
    }

    fn summary(&self, side: Side) -> String {
        format!(
            "The {}'s route to {} leaves by {}, not by the port {}.",
            side_name(side),
            self.destination,
            self.via.as_deref().unwrap_or("another interface"),
            self.port.interface
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Fix the routes (or addresses) in {} so that {} is reached through {}.",
            namespace_phrase(&self.port.netns),
            self.destination,
            self.port.interface
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }
}

#[cfg(test)]
pub(crate) fn example() -> RouteByOtherInterface {
    RouteByOtherInterface {
        port: super::example::initiator(),
        destination: [10, 0, 0, 2].into(),
        via: Some("eth0".to_owned()),
    }
}
