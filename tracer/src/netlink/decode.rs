//! Typed values from rtnetlink message payloads: links, addresses, neighbours, routes and tc
//! filters.

use std::io;

use super::{
    Address, BpfFilter, Link, Neighbour, RouteLookup, codec::*, events::parse_notifications,
    names::*,
};

/// Turns the answer to RTM_GETROUTE into a lookup result.
pub(super) fn route_lookup_from(answer: Answer) -> io::Result<RouteLookup> {
    match answer {
        Answer::KernelError { errno } => Ok(RouteLookup::Unreachable {
            errno,
            message: describe_errno(errno),
        }),
        Answer::Messages { payloads, .. } => match payloads.first() {
            Some(payload) => parse_route(payload),
            None => Err(malformed("RTM_GETROUTE answered without a route")),
        },
    }
}

/// Runs every parser of this module over one raw datagram, as if the kernel had sent it: the
/// message splitter, each message's payload through the link, address, neighbour and route
/// parsers, and the whole datagram through the reply collector as the answer to its first
/// message's sequence number. Returns how many payloads a parser accepted.
///
/// For the fuzz targets (`fuzz/`), which need the private parsers to be reachable: whatever the
/// bytes, this must return, never panic.
pub fn parse_datagram_for_fuzzing(datagram: &[u8]) -> usize {
    let Ok(messages) = parse_messages(datagram) else {
        return 0;
    };
    let mut accepted = 0;
    for message in &messages {
        let payload = message.payload;
        accepted += usize::from(parse_link(payload).is_ok())
            + usize::from(matches!(parse_address(payload), Ok(Some(_))))
            + usize::from(matches!(parse_neighbour(payload), Ok(Some(_))))
            + usize::from(parse_route(payload).is_ok());
    }
    accepted += parse_notifications(datagram).map_or(0, |notifications| notifications.len());
    if let Some(first) = messages.first() {
        let mut collector = ReplyCollector::new(first.sequence, first.message_type);
        if let Ok(Some(answer)) = collector.absorb(datagram) {
            accepted += usize::from(route_lookup_from(answer).is_ok());
        }
    }
    accepted
}

/// Parses an RTM_NEWTFILTER payload; `None` for filters that are not BPF programs.
pub(super) fn parse_bpf_filter(payload: &[u8]) -> io::Result<Option<BpfFilter>> {
    let (header, attributes) = split_family_header::<TCMSG_LEN>(payload, "tcmsg")?;
    // tcm_info holds the priority in its upper 16 bits and the protocol in the lower.
    let info = read_u32(header.as_slice(), 16).ok_or_else(|| malformed("tcmsg too short"))?;
    if find_attribute(&attributes, TCA_KIND)
        .map(attribute_string)
        .as_deref()
        != Some("bpf")
    {
        return Ok(None);
    }
    let Some(options) = find_attribute(&attributes, TCA_OPTIONS) else {
        return Ok(None);
    };
    let options = parse_attributes(options)?;
    let Some(id) = find_attribute(&options, TCA_BPF_ID) else {
        return Ok(None);
    };
    Ok(Some(BpfFilter {
        priority: (info >> 16) as u16,
        program_id: attribute_u32(id, "TCA_BPF_ID")?,
        name: find_attribute(&options, TCA_BPF_NAME).map(attribute_string),
    }))
}

/// Parses an RTM_NEWLINK payload.
pub(super) fn parse_link(payload: &[u8]) -> io::Result<Link> {
    let (header, attributes) = split_family_header::<IFINFOMSG_LEN>(payload, "ifinfomsg")?;
    let [
        _family,
        _pad,
        _type_low,
        _type_high,
        i0,
        i1,
        i2,
        i3,
        f0,
        f1,
        f2,
        f3,
        ..,
    ] = *header;
    let ifindex = ifindex_from(i32::from_ne_bytes([i0, i1, i2, i3]), "link")?;
    let flags = u32::from_ne_bytes([f0, f1, f2, f3]);
    let name = find_attribute(&attributes, libc::IFLA_IFNAME)
        .map(attribute_string)
        .ok_or_else(|| malformed(format!("link {ifindex} without IFLA_IFNAME")))?;
    let operstate = match find_attribute(&attributes, libc::IFLA_OPERSTATE) {
        Some(value) => operstate_name(attribute_u8(value, "IFLA_OPERSTATE")?),
        None => operstate_name(0),
    };
    let carrier = match find_attribute(&attributes, libc::IFLA_CARRIER) {
        Some(value) => attribute_u8(value, "IFLA_CARRIER")? != 0,
        None => flags & IFF_LOWER_UP != 0,
    };
    let link_info = match find_attribute(&attributes, libc::IFLA_LINKINFO) {
        Some(nested) => parse_attributes(nested)?,
        None => Vec::new(),
    };
    let kind = find_attribute(&link_info, libc::IFLA_INFO_KIND).map(attribute_string);
    // A bridge port's own state rides in the link info as "slave data".
    let bridge_port_state = match (
        find_attribute(&link_info, IFLA_INFO_SLAVE_KIND).map(attribute_string),
        find_attribute(&link_info, IFLA_INFO_SLAVE_DATA),
    ) {
        (Some(slave_kind), Some(data)) if slave_kind == "bridge" => {
            match find_attribute(&parse_attributes(data)?, IFLA_BRPORT_STATE) {
                Some(state) => Some(bridge_port_state_name(attribute_u8(
                    state,
                    "IFLA_BRPORT_STATE",
                )?)),
                None => None,
            }
        }
        _ => None,
    };
    let optional_u32 = |kind: u16, what: &str| -> io::Result<Option<u32>> {
        find_attribute(&attributes, kind)
            .map(|value| attribute_u32(value, what))
            .transpose()
    };
    Ok(Link {
        ifindex,
        name,
        admin_up: flags & IFF_UP != 0,
        carrier,
        operstate,
        mac: find_attribute(&attributes, libc::IFLA_ADDRESS).and_then(attribute_mac),
        kind,
        xdp_program: match find_attribute(&attributes, IFLA_XDP) {
            Some(nested) => match find_attribute(&parse_attributes(nested)?, IFLA_XDP_PROG_ID) {
                Some(id) => Some(attribute_u32(id, "IFLA_XDP_PROG_ID")?).filter(|id| *id != 0),
                None => None,
            },
            None => None,
        },
        mtu: optional_u32(libc::IFLA_MTU, "IFLA_MTU")?.unwrap_or(0),
        // The peer's index in its own namespace: it may equal this link's own.
        peer_ifindex: optional_u32(libc::IFLA_LINK, "IFLA_LINK")?.filter(|peer| *peer != 0),
        peer_netnsid: optional_u32(IFLA_LINK_NETNSID, "IFLA_LINK_NETNSID")?.map(|id| id as i32),
        master: optional_u32(libc::IFLA_MASTER, "IFLA_MASTER")?.filter(|master| *master != 0),
        bridge_port_state,
        carrier_up_count: optional_u32(IFLA_CARRIER_UP_COUNT, "IFLA_CARRIER_UP_COUNT")?,
        carrier_down_count: optional_u32(IFLA_CARRIER_DOWN_COUNT, "IFLA_CARRIER_DOWN_COUNT")?,
    })
}

/// A link's index and its alias (`IFLA_IFALIAS`, what `ip link set DEV alias TEXT` set), if it
/// has one.
pub(super) fn parse_link_alias(payload: &[u8]) -> io::Result<Option<(u32, String)>> {
    let (header, attributes) = split_family_header::<IFINFOMSG_LEN>(payload, "ifinfomsg")?;
    let [_, _, _, _, i0, i1, i2, i3, ..] = *header;
    let ifindex = ifindex_from(i32::from_ne_bytes([i0, i1, i2, i3]), "link")?;
    Ok(find_attribute(&attributes, libc::IFLA_IFALIAS)
        .map(attribute_string)
        .filter(|alias| !alias.is_empty())
        .map(|alias| (ifindex, alias)))
}

/// Parses an RTM_NEWADDR payload; `None` for families other than IPv4.
pub(super) fn parse_address(payload: &[u8]) -> io::Result<Option<Address>> {
    let (header, attributes) = split_family_header::<IFADDRMSG_LEN>(payload, "ifaddrmsg")?;
    let [family, prefix_len, _flags, _scope, i0, i1, i2, i3] = *header;
    if family != AF_INET {
        return Ok(None);
    }
    let ifindex = u32::from_ne_bytes([i0, i1, i2, i3]);
    if prefix_len > 32 {
        return Err(malformed(format!("IPv4 prefix length {prefix_len}")));
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is always ours.
    let value = find_attribute(&attributes, libc::IFA_LOCAL)
        .or_else(|| find_attribute(&attributes, libc::IFA_ADDRESS))
        .ok_or_else(|| malformed(format!("address on link {ifindex} without IFA_LOCAL")))?;
    Ok(Some(Address {
        ifindex,
        address: attribute_ipv4(value, "IFA_LOCAL")?,
        prefix_len,
    }))
}

/// Parses an RTM_NEWNEIGH payload; `None` for families other than IPv4.
pub(super) fn parse_neighbour(payload: &[u8]) -> io::Result<Option<Neighbour>> {
    let (header, attributes) = split_family_header::<NDMSG_LEN>(payload, "ndmsg")?;
    let [
        family,
        _pad1,
        _pad2,
        _pad3,
        i0,
        i1,
        i2,
        i3,
        s0,
        s1,
        _flags,
        _type,
    ] = *header;
    if family != AF_INET {
        return Ok(None);
    }
    let ifindex = ifindex_from(i32::from_ne_bytes([i0, i1, i2, i3]), "neighbour")?;
    let value = find_attribute(&attributes, libc::NDA_DST)
        .ok_or_else(|| malformed(format!("neighbour on link {ifindex} without NDA_DST")))?;
    Ok(Some(Neighbour {
        ifindex,
        address: attribute_ipv4(value, "NDA_DST")?,
        state: neighbour_state_name(u16::from_ne_bytes([s0, s1])),
        mac: find_attribute(&attributes, libc::NDA_LLADDR).and_then(attribute_mac),
    }))
}

/// Parses the RTM_NEWROUTE payload answering RTM_GETROUTE.
pub(super) fn parse_route(payload: &[u8]) -> io::Result<RouteLookup> {
    let (header, attributes) = split_family_header::<RTMSG_LEN>(payload, "rtmsg")?;
    let family = header[0];
    if family != AF_INET {
        return Err(malformed(format!("route reply of address family {family}")));
    }
    let oif = find_attribute(&attributes, libc::RTA_OIF)
        .ok_or_else(|| malformed("route reply without RTA_OIF"))?;
    let optional_ipv4 = |kind, what| {
        find_attribute(&attributes, kind)
            .map(|value| attribute_ipv4(value, what))
            .transpose()
    };
    Ok(RouteLookup::Via {
        oif: attribute_u32(oif, "RTA_OIF")?,
        gateway: optional_ipv4(libc::RTA_GATEWAY, "RTA_GATEWAY")?.map(Into::into),
        source: optional_ipv4(libc::RTA_PREFSRC, "RTA_PREFSRC")?.map(Into::into),
    })
}
