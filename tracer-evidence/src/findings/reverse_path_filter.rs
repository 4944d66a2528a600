//! Strict reverse-path filtering on a side whose route back to the other side's address leaves
//! by another interface: what arrives on the port is dropped (ARP requests included).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{Side, Sysctl},
    reasons::DropReason,
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{netns_exec, sysctl_text},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversePathFilter {
    pub port: PortRef,
    pub sysctl: Sysctl,
    pub source: IpAddr,
    /// The interface the route back leaves by.
    pub route_via: Option<String>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let evidence = context.evidence;
    [Side::Target, Side::Initiator].into_iter().find_map(|side| {
        let at = context.port(side);
        let sysctl = at
            .sysctls
            .iter()
            .find(|sysctl| sysctl.name == "rp_filter" && sysctl.effective == 1)?;
        let route = evidence
            .routes
            .iter()
            .find(|route| route.from == side && !route.via_port)?;
        let rpfilter_drops = evidence
            .drops
            .iter()
            .filter(|drop| drop.side == side && drop.drop.reason() == DropReason::IpRpfilter)
            .map(|drop| Fact::Drop { drop: drop.clone() });
        Some(
            Verdict::new(
                side,
                ReversePathFilter {
                    port: PortRef::of(at),
                    sysctl: sysctl.clone(),
                    source: route.destination,
                    route_via: route.via_interface.clone(),
                },
            )
            .because(Fact::Sysctl {
                port: PortRef::of(at),
                sysctl: sysctl.clone(),
            })
            .because(Fact::RouteLookup {
                port: PortRef::of(at),
                destination: route.destination,
                lookup: route.lookup.clone(),
                via: route.via_interface.clone(),
            })
            .because_all(rpfilter_drops)
            .because_all(context.failed_facts()),
        )
    })
}

impl Describe for ReversePathFilter {
    fn class(&self) -> VerdictClass {
        VerdictClass::Route
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "Reverse-path filtering on {} ({}) drops what comes from {}: the route back leaves by {}, not by the port.",
            self.port.label(),
            sysctl_text(&self.sysctl),
            self.source,
            self.route_via.as_deref().unwrap_or("another interface")
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Route the reply by the port, or loosen the filter: {}sysctl -w net.ipv4.conf.{}.{}=2 (and net.ipv4.conf.all.{} <= 2).",
            netns_exec(&self.port.netns),
            self.port.interface,
            self.sysctl.name,
            self.sysctl.name
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }

    fn named_thing(&self) -> Option<String> {
        Some(sysctl_text(&self.sysctl))
    }
}

#[cfg(test)]
pub(crate) fn example() -> ReversePathFilter {
    ReversePathFilter {
        port: super::example::target(),
        sysctl: Sysctl {
            name: "rp_filter".to_owned(),
            effective: 1,
            all: 1,
            device: 0,
        },
        source: [10, 0, 0, 1].into(),
        route_via: Some("eth0".to_owned()),
    }
}
