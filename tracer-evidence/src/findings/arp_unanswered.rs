//! The target does not answer ARP: it does not own the address (whatever ARP did earlier in a
//! watched run: an address removed by NetworkManager or DHCP), or its ARP sysctls keep it
//! silent.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{ExchangeKind, Side, Sysctl},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{namespace_phrase, netns_exec, sysctl_list},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArpUnanswered {
    pub port: PortRef,
    pub target_ip: String,
    pub owns_address: bool,
    /// ARP sysctls of the port with values that make it stay silent.
    pub sysctls: Vec<Sysctl>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let evidence = context.evidence;
    let target_ip = &evidence.environment.target_ip;
    let target = &evidence.target;
    let owns_address = target
        .addresses
        .iter()
        .any(|address| address.split('/').next() == Some(target_ip.as_str()));
    let arp = context.probe(ExchangeKind::Arp);
    let arp_failed = arp.is_some_and(|arp| !arp.fully_answered() && arp.reached_peer > 0);
    if !arp_failed && owns_address {
        return None;
    }
    let sysctls: Vec<Sysctl> = target
        .sysctls
        .iter()
        .filter(|sysctl| {
            matches!(
                sysctl.name.as_str(),
                "arp_ignore" | "arp_filter" | "arp_announce"
            ) && sysctl.effective != 0
        })
        .cloned()
        .collect();
    Some(
        Verdict::new(
            Side::Target,
            ArpUnanswered {
                port: PortRef::of(target),
                target_ip: target_ip.clone(),
                owns_address,
                sysctls: sysctls.clone(),
            },
        )
        .because_all(arp.map(|arp| Fact::Exchange { exchange: arp.clone() }))
        .because_all(sysctls.into_iter().map(|sysctl| Fact::Sysctl {
            port: PortRef::of(target),
            sysctl,
        }))
        .because(Fact::Addresses {
            port: PortRef::of(target),
            addresses: target.addresses.clone(),
        })
        .because_all(evidence.neighbours.iter().map(|neighbour| Fact::Neighbour {
            neighbour: neighbour.clone(),
        })),
    )
}

impl Describe for ArpUnanswered {
    fn class(&self) -> VerdictClass {
        VerdictClass::Neighbour
    }

    fn summary(&self, _: Side) -> String {
        let (port, target_ip) = (self.port.label(), &self.target_ip);
        if self.owns_address && !self.sysctls.is_empty() {
            format!(
                "{port} receives the ARP requests for {target_ip} but does not answer them: {}.",
                sysctl_list(&self.sysctls)
            )
        } else if self.owns_address {
            format!("{port} receives the ARP requests for {target_ip} but does not answer them.")
        } else {
            format!(
                "{port} receives the ARP requests for {target_ip} but does not own that address, so nobody answers."
            )
        }
    }

    fn advice(&self, _: Side) -> String {
        let port = &self.port;
        if self.owns_address && !self.sysctls.is_empty() {
            let resets: Vec<String> = self
                .sysctls
                .iter()
                .map(|sysctl| {
                    format!(
                        "net.ipv4.conf.{{all,{}}}.{}=0",
                        port.interface, sysctl.name
                    )
                })
                .collect();
            format!(
                "Let the target answer ARP: {}sysctl -w {}",
                netns_exec(&port.netns),
                resets.join(" ")
            )
        } else if self.owns_address {
            format!(
                "Check ARP settings on the target (arp_ignore, arp_filter) in {}.",
                namespace_phrase(&port.netns)
            )
        } else {
            format!(
                "Configure {0} on {1}: {2}ip addr add {0}/24 dev {1}",
                self.target_ip,
                port.interface,
                netns_exec(&port.netns)
            )
        }
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }

    fn named_thing(&self) -> Option<String> {
        (!self.sysctls.is_empty()).then(|| sysctl_list(&self.sysctls))
    }
}

#[cfg(test)]
pub(crate) fn example() -> ArpUnanswered {
    ArpUnanswered {
        port: super::example::target(),
        target_ip: "10.0.0.2".to_owned(),
        owns_address: true,
        sysctls: vec![Sysctl {
            name: "arp_ignore".to_owned(),
            effective: 8,
            all: 0,
            device: 8,
        }],
    }
}
