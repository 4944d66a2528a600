//! The path between the two ports, walked rather than assumed: each port's veth peer (its
//! index, confirmed by the peer pointing back), the bridge the peers are ports of, or the cable
//! between two physical ports.

use tracer_evidence::{Hop, HopRole, Link, PathEvidence, PortEvidence};

use crate::{
    netlink::RouteSocket,
    netns::{self, NetnsGuard},
};

/// The hops from the initiator's port to the target's; `None` while a port is missing.
pub fn walk(initiator: &PortEvidence, target: &PortEvidence) -> Option<PathEvidence> {
    let (initiator_link, target_link) = (initiator.link.as_ref()?, target.link.as_ref()?);
    let port = |port: &PortEvidence, link: &Link| Hop {
        role: HopRole::Port,
        netns: port.netns.clone(),
        interface: port.interface.clone(),
        link: Some(link.clone()),
        bridge: None,
    };
    let mut hops = vec![port(initiator, initiator_link)];
    let mut bridge_nf_call_iptables = None;
    let initiator_peer = veth_peer(&initiator.netns, initiator_link);
    let direct_pair = initiator_peer
        .as_ref()
        .is_some_and(|(netns, link)| *netns == target.netns && link.ifindex == target_link.ifindex);
    if !direct_pair {
        let target_peer = veth_peer(&target.netns, target_link);
        if initiator_peer.is_none() && target_peer.is_none() {
            hops.push(Hop::cable());
        }
        let peers = [initiator_peer, target_peer].map(|peer| peer.map(peer_hop));
        // The bridge one of the peers is a port of (the initiator's first).
        let bridge = peers
            .iter()
            .flatten()
            .find_map(|hop| Some((hop.netns.clone(), hop.link.as_ref()?.master?)));
        let [initiator_peer, target_peer] = peers;
        hops.extend(initiator_peer);
        if let Some((netns, master)) = bridge
            && let Some(link) = link_by_index(&netns, master)
        {
            bridge_nf_call_iptables = bridge_netfilter(&netns);
            hops.push(Hop {
                role: HopRole::Bridge,
                netns,
                interface: link.name.clone(),
                link: Some(link),
                bridge: None,
            });
        }
        hops.extend(target_peer);
    }
    hops.push(port(target, target_link));
    Some(PathEvidence {
        hops,
        bridge_nf_call_iptables,
    })
}

fn peer_hop((netns, link): (String, Link)) -> Hop {
    let bridge = link
        .master
        .and_then(|master| link_by_index(&netns, master))
        .map(|bridge| bridge.name);
    Hop {
        role: HopRole::VethPeer,
        netns,
        interface: link.name.clone(),
        link: Some(link),
        bridge,
    }
}

/// The other end of a veth: in the namespace its link names by id (or its own), with the
/// peer's index, pointing back.
fn veth_peer(netns: &str, link: &Link) -> Option<(String, Link)> {
    if link.kind.as_deref() != Some("veth") {
        return None;
    }
    let peer_index = link.peer_ifindex?;
    let place = match link.peer_netnsid {
        None => netns.to_owned(),
        Some(nsid) => namespace_with_id(netns, nsid)?,
    };
    let peer = RouteSocket::open_in(&place)
        .ok()?
        .links()
        .ok()?
        .into_iter()
        .find(|candidate| {
            candidate.ifindex == peer_index && candidate.peer_ifindex == Some(link.ifindex)
        })?;
    Some((place, peer))
}

/// The namespace (by name; "" for tracer's own) that has id `nsid` inside `netns`.
fn namespace_with_id(netns: &str, nsid: i32) -> Option<String> {
    let socket = RouteSocket::open_in(netns).ok()?;
    let mut names: Vec<String> = netns::netns_names().into_values().collect();
    names.sort();
    names.into_iter().find(|name| {
        netns::open(name)
            .ok()
            .and_then(|file| socket.nsid_of(&file).ok().flatten())
            == Some(nsid)
    })
}

fn link_by_index(netns: &str, ifindex: u32) -> Option<Link> {
    RouteSocket::open_in(netns)
        .ok()?
        .links()
        .ok()?
        .into_iter()
        .find(|link| link.ifindex == ifindex)
}

/// `net.bridge.bridge-nf-call-iptables` in `netns`; `None` without br_netfilter.
fn bridge_netfilter(netns: &str) -> Option<bool> {
    let _inside = NetnsGuard::enter(netns).ok()?;
    let value = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables").ok()?;
    Some(value.trim() == "1")
}
