//! What the host says about a path: each port (link, addresses, other tools' programs, where
//! else its name exists), the routes between the two addresses, and the environment.

use std::net::Ipv4Addr;

use tracer_evidence::{Environment, PortEvidence, RouteEvidence, RouteLookup, Side};

use crate::{collect::programs, netlink::RouteSocket, netns, spec::PortSpec};

/// The environment part of the evidence.
pub fn environment(initiator_ip: Ipv4Addr, target_ip: Ipv4Addr, port: u16) -> Environment {
    Environment {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_default(),
        tracer_version: env!("CARGO_PKG_VERSION").to_owned(),
        initiator_ip: initiator_ip.to_string(),
        target_ip: target_ip.to_string(),
        port,
        limitations: Vec::new(),
    }
}

/// What is at `spec`; `ours` are the ids of tracer's own programs, left out of the port's
/// attached programs.
pub fn inspect_port(spec: &PortSpec, side: Side, ours: &[u32]) -> PortEvidence {
    let mut evidence = PortEvidence {
        side,
        netns: spec.netns.clone(),
        interface: spec.interface.clone(),
        netns_exists: spec.netns.is_empty() || netns::netns_path(&spec.netns).exists(),
        link: None,
        found_elsewhere: Vec::new(),
        addresses: Vec::new(),
        programs: Vec::new(),
        sysctls: Vec::new(),
        same_subnet_elsewhere: Vec::new(),
    };
    if evidence.netns_exists
        && let Ok(socket) = RouteSocket::open_in(&spec.netns)
    {
        evidence.link = socket.link(&spec.interface).ok().flatten();
        if let Some(link) = &evidence.link {
            evidence.addresses = socket
                .addresses()
                .unwrap_or_default()
                .into_iter()
                .filter(|address| address.ifindex == link.ifindex)
                .map(|address| format!("{}/{}", address.address, address.prefix_len))
                .collect();
            evidence.programs = programs::attached_programs(&spec.netns, &spec.interface, ours);
        }
    }
    if evidence.link.is_none() {
        evidence.found_elsewhere = namespaces_holding(&spec.interface, &spec.netns);
    }
    evidence
}

/// Every namespace (by name; "" for tracer's own) with an interface called `interface`.
fn namespaces_holding(interface: &str, except: &str) -> Vec<String> {
    let mut names: Vec<String> = netns::netns_names().into_values().collect();
    names.sort();
    names
        .into_iter()
        .filter(|name| name != except)
        .filter(|name| {
            RouteSocket::open_in(name)
                .ok()
                .and_then(|socket| socket.link(interface).ok().flatten())
                .is_some()
        })
        .collect()
}

pub fn route_evidence(from: &PortEvidence, destination: Ipv4Addr) -> RouteEvidence {
    let port_index = from.link.as_ref().map(|link| link.ifindex);
    let lookup_and_links = RouteSocket::open_in(&from.netns).and_then(|socket| {
        let lookup = socket.route_get(destination)?;
        let links = socket.links()?;
        Ok((lookup, links))
    });
    match lookup_and_links {
        Ok((lookup, links)) => {
            let oif = match &lookup {
                RouteLookup::Via { oif, .. } => Some(*oif),
                RouteLookup::Unreachable { .. } => None,
            };
            RouteEvidence {
                from: from.side,
                destination,
                via_interface: oif.and_then(|oif| {
                    links
                        .iter()
                        .find(|link| link.ifindex == oif)
                        .map(|link| link.name.clone())
                }),
                via_port: oif.is_some() && oif == port_index,
                lookup,
            }
        }
        Err(err) => RouteEvidence {
            from: from.side,
            destination,
            lookup: RouteLookup::Unreachable {
                errno: 0,
                message: format!("route lookup failed: {err:#}"),
            },
            via_interface: None,
            via_port: false,
        },
    }
}
