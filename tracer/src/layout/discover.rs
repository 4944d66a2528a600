//! Looking for SPDK's layouts on this node: which of their ports are where, their addresses,
//! their bridge, and what is missing. Reads only (rtnetlink dumps in the scope's namespaces).

use std::{collections::HashMap, net::Ipv4Addr};

use serde::Serialize;
use tracer_topology::layouts::{BRIDGE, LayoutName, PairNames, Scope};

use crate::{netlink::RouteSocket, netns, spec::PortSpec};

/// Where an address tracer uses came from: what is configured beats what SPDK noted in the
/// port's ifalias, which beats the layout's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressSource {
    Configured,
    Ifalias,
    Default,
}

impl AddressSource {
    pub fn words(self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::Ifalias => "from its ifalias (no address configured)",
            Self::Default => "the layout's default (none configured, no ifalias)",
        }
    }
}

/// One end of a pair as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundEnd {
    pub spec: String,
    pub ip: Ipv4Addr,
    pub address_from: AddressSource,
    /// Whether the interface is where the layout puts it now.
    pub present: bool,
}

/// One pair of a layout found on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundPair {
    #[serde(serialize_with = "layout_name")]
    pub layout: LayoutName,
    /// The pair's number in its layout (0 first).
    pub index: usize,
    pub initiator: FoundEnd,
    pub target: FoundEnd,
    #[serde(skip)]
    pub initiator_spec: PortSpec,
    #[serde(skip)]
    pub target_spec: PortSpec,
}

/// A layout found: its pairs and what of it is missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundLayout {
    #[serde(serialize_with = "layout_name")]
    pub name: LayoutName,
    pub built_by: &'static str,
    pub pairs: Vec<FoundPair>,
    /// What is not there that the layout has (half-built), one sentence each.
    pub missing: Vec<String>,
}

fn layout_name<S: serde::Serializer>(name: &LayoutName, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(name.as_str())
}

/// What one namespace holds: its links by name, their first IPv4 address, their aliases.
#[derive(Debug, Default)]
pub(super) struct Place {
    pub exists: bool,
    links: HashMap<String, LinkFacts>,
}

#[derive(Debug, Default)]
struct LinkFacts {
    address: Option<Ipv4Addr>,
    alias: Option<String>,
    master: Option<String>,
}

impl Place {
    /// What namespace `netns` ("" for tracer's own) holds; nothing when it does not exist.
    pub(super) fn read(netns: &str) -> Self {
        if !netns.is_empty() && !netns::netns_path(netns).exists() {
            return Self::default();
        }
        let Ok(socket) = RouteSocket::open_in(netns) else {
            return Self::default();
        };
        let links = socket.links().unwrap_or_default();
        let addresses = socket.addresses().unwrap_or_default();
        let aliases: HashMap<u32, String> =
            socket.aliases().unwrap_or_default().into_iter().collect();
        let names: HashMap<u32, String> = links
            .iter()
            .map(|link| (link.ifindex, link.name.clone()))
            .collect();
        let links = links
            .iter()
            .map(|link| {
                let facts = LinkFacts {
                    address: addresses
                        .iter()
                        .find(|address| address.ifindex == link.ifindex)
                        .map(|address| address.address),
                    alias: aliases.get(&link.ifindex).cloned(),
                    master: link.master.and_then(|index| names.get(&index).cloned()),
                };
                (link.name.clone(), facts)
            })
            .collect();
        Self {
            exists: true,
            links,
        }
    }

    pub(super) fn has(&self, interface: &str) -> bool {
        self.links.contains_key(interface)
    }

    /// The address of `interface`: configured, else from its ifalias, else `default`.
    fn address(&self, interface: &str, default: &str) -> (Ipv4Addr, AddressSource) {
        let facts = self.links.get(interface);
        if let Some(address) = facts.and_then(|facts| facts.address) {
            return (address, AddressSource::Configured);
        }
        // SPDK writes the bare address; a prefix length after it is accepted too.
        if let Some(address) = facts
            .and_then(|facts| facts.alias.as_deref())
            .and_then(|alias| alias.split('/').next()?.trim().parse().ok())
        {
            return (address, AddressSource::Ifalias);
        }
        let default = default.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        (default, AddressSource::Default)
    }

    fn master_of(&self, interface: &str) -> Option<&str> {
        self.links.get(interface)?.master.as_deref()
    }
}

/// Looks for `layout` in `scope`: every pair of which at least one end is found (an end may
/// be elsewhere yet: a target the test has not moved into its namespace), and what is missing.
/// `None` when nothing of it is there.
pub(super) fn look_for(layout: LayoutName, scope: &Scope, host: &Place) -> Option<FoundLayout> {
    let target_netns = scope.netns(layout.target_netns());
    let targets = Place::read(&target_netns);
    let host_name = if scope.root.is_empty() {
        "the host namespace".to_owned()
    } else {
        format!("namespace {} (standing for the host's)", scope.root)
    };
    let mut pairs = Vec::new();
    let mut missing = Vec::new();
    for (index, names) in layout.all_pairs().into_iter().enumerate() {
        let initiator_here = host.has(&names.initiator);
        let target_here = targets.has(&names.target);
        let target_in_host = host.has(&names.target);
        if !(initiator_here || target_here || target_in_host) {
            continue;
        }
        if !initiator_here {
            missing.push(format!(
                "pair {}: initiator {} is not in {host_name}",
                index + 1,
                names.initiator
            ));
        }
        if !target_here && !target_in_host {
            missing.push(format!(
                "pair {}: target {} is in neither {target_netns} nor {host_name}",
                index + 1,
                names.target
            ));
        }
        if layout.bridged() {
            missing.extend(bridge_gaps(index, &names, host));
        }
        pairs.push(found_pair(layout, index, &names, scope, host, &targets));
    }
    if pairs.is_empty() && !targets.exists {
        return None;
    }
    if pairs.is_empty() {
        missing.push(format!(
            "namespace {target_netns} exists but none of the layout's ports is there or in \
             {host_name}"
        ));
    } else if !targets.exists {
        missing.push(format!(
            "namespace {target_netns} does not exist yet (its targets are still in {host_name})"
        ));
    }
    if layout.bridged() && !pairs.is_empty() && !host.has(BRIDGE) {
        missing.push(format!("bridge {BRIDGE} is not in {host_name}"));
    }
    Some(FoundLayout {
        name: layout,
        built_by: layout.builder(),
        pairs,
        missing,
    })
}

/// Bridge-side peers that are missing or in no bridge (a pair half-built, or taken apart).
fn bridge_gaps(index: usize, names: &PairNames, host: &Place) -> Vec<String> {
    let Some((initiator_peer, target_peer)) = &names.peers else {
        return Vec::new();
    };
    let mut gaps = Vec::new();
    for peer in [initiator_peer, target_peer] {
        if !host.has(peer) {
            gaps.push(format!(
                "pair {}: bridge-side peer {peer} is missing",
                index + 1
            ));
        } else if host.master_of(peer) != Some(BRIDGE) {
            gaps.push(format!(
                "pair {}: bridge-side peer {peer} is not a port of {BRIDGE}",
                index + 1
            ));
        }
    }
    gaps
}

fn found_pair(
    layout: LayoutName,
    index: usize,
    names: &PairNames,
    scope: &Scope,
    host: &Place,
    targets: &Place,
) -> FoundPair {
    let initiator_spec = PortSpec {
        netns: scope.root.clone(),
        interface: names.initiator.clone(),
    };
    let target_spec = PortSpec {
        netns: scope.netns(layout.target_netns()),
        interface: names.target.clone(),
    };
    let (initiator_ip, initiator_from) = host.address(&names.initiator, &names.initiator_ip);
    // A target not moved yet is read where it is.
    let target_place = if targets.has(&names.target) {
        targets
    } else {
        host
    };
    let (target_ip, target_from) = target_place.address(&names.target, &names.target_ip);
    FoundPair {
        layout,
        index,
        initiator: FoundEnd {
            spec: initiator_spec.to_string(),
            ip: initiator_ip,
            address_from: initiator_from,
            present: host.has(&names.initiator),
        },
        target: FoundEnd {
            spec: target_spec.to_string(),
            ip: target_ip,
            address_from: target_from,
            present: targets.has(&names.target),
        },
        initiator_spec,
        target_spec,
    }
}

/// `layout`'s first `count` pairs by its names and default addresses, as if found: what is
/// followed when nothing is there yet.
pub(super) fn assumed(layout: LayoutName, count: usize, scope: &Scope) -> FoundLayout {
    let nothing = Place::default();
    FoundLayout {
        name: layout,
        built_by: layout.builder(),
        pairs: (0..count)
            .map(|index| {
                found_pair(
                    layout,
                    index,
                    &layout.pair(index),
                    scope,
                    &nothing,
                    &nothing,
                )
            })
            .collect(),
        missing: Vec::new(),
    }
}
