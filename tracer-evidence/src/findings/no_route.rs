//! No route from a side's namespace to the other side's address.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{RouteLookup, Side},
    stop::{DrawnPath, Stop},
    verdict::{PortRef, Verdict},
    words::{netns_exec, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoRoute {
    pub port: PortRef,
    pub destination: IpAddr,
    pub message: String,
}

fn no_route(context: &Context, from: Side) -> Option<Verdict> {
    context.route_fault(from, |route, port| match &route.lookup {
        RouteLookup::Unreachable { message, .. } => Some(
            NoRoute {
                port,
                destination: route.destination,
                message: message.clone(),
            }
            .into(),
        ),
        RouteLookup::Via { .. } => None,
    })
}

/// Without a route from the initiator nothing could be probed: that is the answer.
pub(crate) fn from_initiator(context: &Context) -> Option<Verdict> {
    no_route(context, Side::Initiator)
}

/// The target's way back matters once the probes failed.
pub(crate) fn from_target(context: &Context) -> Option<Verdict> {
    context.failures()?;
    no_route(context, Side::Target)
}

impl Describe for NoRoute {
    fn class(&self) -> VerdictClass {
        VerdictClass::Route
    }

    fn summary(&self, side: Side) -> String {
        format!(
            "The {} has no route to {}: {}.",
            side_name(side),
            self.destination,
            self.message
        )
    }

    fn advice(&self, _: Side) -> String {
        let prefix = if self.destination.is_ipv4() { 32 } else { 128 };
        format!(
            "Add an address with the right prefix or a route: {}ip route add {}/{prefix} dev {}",
            netns_exec(&self.port.netns),
            self.destination,
            self.port.interface
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }
}

#[cfg(test)]
pub(crate) fn example() -> NoRoute {
    NoRoute {
        port: super::example::initiator(),
        destination: [10, 0, 0, 2].into(),
        message: "Network is unreachable".to_owned(),
    }
}
