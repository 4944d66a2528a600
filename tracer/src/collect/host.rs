//! What the host says about a path: each port (link, addresses, other tools' programs, where
//! else its name exists), the routes between the two addresses, and the environment.

use std::net::Ipv4Addr;

use tracer_evidence::{
    Environment, PortEvidence, RouteEvidence, RouteLookup, Side, StalePeer, Sysctl,
};
use tracer_topology::layouts::LayoutName;

use crate::{
    collect::programs,
    netlink::{Address, RouteSocket},
    netns::{self, NetnsGuard},
    spec::PortSpec,
};

/// How the kernel combines `all` and the device for each sysctl tracer reads: the larger
/// value, or either being set.
#[derive(Clone, Copy)]
enum Combine {
    Max,
    Either,
}

/// The IPv4 sysctls that decide whether a port answers ARP or accepts what arrives.
const PORT_SYSCTLS: [(&str, Combine); 4] = [
    ("arp_ignore", Combine::Max),
    ("arp_filter", Combine::Either),
    ("arp_announce", Combine::Max),
    ("rp_filter", Combine::Max),
];

/// The environment part of the evidence.
pub fn environment(initiator_ip: Ipv4Addr, target_ip: Ipv4Addr, tcp_port: u16) -> Environment {
    Environment {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_default(),
        tracer_version: env!("CARGO_PKG_VERSION").to_owned(),
        initiator_ip: initiator_ip.to_string(),
        target_ip: target_ip.to_string(),
        tcp_port,
        limitations: Vec::new(),
    }
}

/// What is at `spec`; `ours` are the ids of tracer's own programs, left out of the port's
/// attached programs.
pub fn inspect_port(spec: &PortSpec, side: Side, ours: &[u32]) -> PortEvidence {
    let netns_exists = spec.netns.is_empty() || netns::netns_path(&spec.netns).exists();
    let mut evidence = PortEvidence::new(side, &spec.netns, &spec.interface, netns_exists);
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
            let addresses = socket.addresses().unwrap_or_default();
            let links = socket.links().unwrap_or_default();
            evidence.same_subnet_elsewhere = same_subnet_elsewhere(link.ifindex, &addresses)
                .into_iter()
                .filter_map(|address| {
                    let name = &links.iter().find(|l| l.ifindex == address.ifindex)?.name;
                    (!same_layout(&spec.interface, name))
                        .then(|| format!("{name} {}/{}", address.address, address.prefix_len))
                })
                .collect();
            evidence.stale_peers = stale_peers(&spec.interface, &links);
            evidence.programs = programs::attached_programs(&spec.netns, &spec.interface, ours);
            evidence.sysctls = port_sysctls(&spec.netns, &spec.interface);
        }
    }
    if evidence.link.is_none() {
        evidence.found_elsewhere = namespaces_holding(&spec.interface, &spec.netns);
    }
    evidence
}

/// Whether `other` is a port of the SPDK layout `port` belongs to: both virtual initiators on
/// one /24 is the layout's normal state, not a leftover (one of the other layout is).
fn same_layout(port: &str, other: &str) -> bool {
    LayoutName::ALL.iter().any(|layout| {
        let names: Vec<String> = layout
            .all_pairs()
            .into_iter()
            .flat_map(|pair| [pair.initiator, pair.target])
            .collect();
        names.iter().any(|name| name == port) && names.iter().any(|name| name == other)
    })
}

/// The bridge-side peers among `links` (the port's namespace) named as a virtual layout other
/// than `port`'s names them; none when `port` is no virtual layout's. Both versions call their
/// bridge `nvmf_br` and neither's setup removes the other's names.
fn stale_peers(port: &str, links: &[tracer_evidence::Link]) -> Vec<StalePeer> {
    let peers = |layout: LayoutName| -> Vec<String> {
        layout
            .all_pairs()
            .into_iter()
            .filter_map(|pair| pair.peers)
            .flat_map(|(initiator, target)| [initiator, target])
            .collect()
    };
    let is_port_of = |layout: LayoutName| {
        layout
            .all_pairs()
            .into_iter()
            .any(|pair| pair.initiator == port || pair.target == port)
    };
    let bridged = LayoutName::ALL
        .into_iter()
        .filter(|layout| layout.bridged());
    let Some(own) = bridged.clone().find(|layout| is_port_of(*layout)) else {
        return Vec::new();
    };
    bridged
        .filter(|layout| *layout != own)
        .flat_map(|other| {
            peers(other).into_iter().filter_map(move |name| {
                let link = links.iter().find(|link| link.name == name)?;
                Some(StalePeer {
                    layout: other.as_str().to_owned(),
                    interface: name,
                    bridge: link.master.and_then(|master| {
                        links
                            .iter()
                            .find(|bridge| bridge.ifindex == master)
                            .map(|bridge| bridge.name.clone())
                    }),
                })
            })
        })
        .collect()
}

/// Reads `port`'s link again (its carrier may have changed since it was inspected); a port gone
/// since is inspected again in full, for where else its name is.
pub fn refresh_link(port: &mut PortEvidence) {
    let link = RouteSocket::open_in(&port.netns)
        .ok()
        .and_then(|socket| socket.link(&port.interface).ok().flatten());
    match link {
        Some(link) => port.link = Some(link),
        None => {
            let spec = PortSpec {
                netns: port.netns.clone(),
                interface: port.interface.clone(),
            };
            *port = inspect_port(&spec, port.side, &[]);
        }
    }
}

/// Addresses of other interfaces that fall in one of `ifindex`'s subnets: a leftover of an
/// earlier run makes the kernel route some of the port's traffic elsewhere.
fn same_subnet_elsewhere(ifindex: u32, addresses: &[Address]) -> Vec<Address> {
    let subnet = |address: &Address| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(address.prefix_len.min(32)))
            .unwrap_or(0);
        u32::from(address.address) & mask
    };
    let ours: Vec<&Address> = addresses.iter().filter(|a| a.ifindex == ifindex).collect();
    addresses
        .iter()
        .filter(|other| other.ifindex != ifindex && other.prefix_len < 32)
        .filter(|other| {
            ours.iter()
                .any(|own| own.prefix_len == other.prefix_len && subnet(own) == subnet(other))
        })
        .cloned()
        .collect()
}

/// The port's ARP and reverse-path sysctls in its namespace (read from /proc/sys/net, which
/// shows the reading thread's namespace); those that cannot be read are left out.
fn port_sysctls(netns: &str, interface: &str) -> Vec<Sysctl> {
    let Ok(_inside) = NetnsGuard::enter(netns) else {
        return Vec::new();
    };
    let read = |device: &str, name: &str| -> Option<u32> {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{device}/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    PORT_SYSCTLS
        .iter()
        .filter_map(|(name, combine)| {
            // A name like "all" or "." would read other files: only real interface names.
            if interface.contains('/') || interface.starts_with('.') {
                return None;
            }
            let all = read("all", name)?;
            let device = read(interface, name)?;
            let effective = match combine {
                Combine::Max => all.max(device),
                Combine::Either => u32::from(all != 0 || device != 0),
            };
            Some(Sysctl {
                name: (*name).to_owned(),
                effective,
                all,
                device,
            })
        })
        .collect()
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
                destination: destination.into(),
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
            destination: destination.into(),
            lookup: RouteLookup::Unreachable {
                errno: 0,
                message: format!("route lookup failed: {err:#}"),
            },
            via_interface: None,
            via_port: false,
        },
    }
}
