//! One line per captured Ethernet frame, as tcpdump would sum it up: ARP, ICMP, TCP and UDP
//! by their addresses and ports, anything else by its EtherType or protocol number. The bytes
//! may be cut (snap length) or hostile: a frame too short for a header says so.

use std::net::Ipv4Addr;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_IPV6: u16 = 0x86DD;

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn ipv4_at(bytes: &[u8], at: usize) -> Option<Ipv4Addr> {
    let octets: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

/// What the frame is, in one line.
pub fn describe(frame: &[u8]) -> String {
    let Some(mut ethertype) = u16_at(frame, 12) else {
        return "cut before the Ethernet header's end".to_owned();
    };
    let mut payload = 14;
    let mut vlan = String::new();
    if ethertype == ETHERTYPE_VLAN {
        let (Some(tag), Some(inner)) = (u16_at(frame, 14), u16_at(frame, 16)) else {
            return "VLAN, cut before its tag's end".to_owned();
        };
        vlan = format!("VLAN {} ", tag & 0x0fff);
        ethertype = inner;
        payload = 18;
    }
    let rest = &frame[payload.min(frame.len())..];
    let what = match ethertype {
        ETHERTYPE_ARP => arp(rest),
        ETHERTYPE_IPV4 => ipv4(rest),
        ETHERTYPE_IPV6 => "IPv6".to_owned(),
        other => format!("EtherType 0x{other:04x}"),
    };
    format!("{vlan}{what}")
}

fn arp(arp: &[u8]) -> String {
    let (Some(operation), Some(sender), Some(target)) =
        (u16_at(arp, 6), ipv4_at(arp, 14), ipv4_at(arp, 24))
    else {
        return "ARP, cut".to_owned();
    };
    match operation {
        1 => format!("ARP who has {target}? tell {sender}"),
        2 => {
            let mac: Vec<String> = arp[8..14].iter().map(|b| format!("{b:02x}")).collect();
            format!("ARP {sender} is at {}", mac.join(":"))
        }
        other => format!("ARP operation {other}, {sender} -> {target}"),
    }
}

fn ipv4(ip: &[u8]) -> String {
    let (Some(first), Some(protocol), Some(source), Some(destination)) =
        (ip.first(), ip.get(9), ipv4_at(ip, 12), ipv4_at(ip, 16))
    else {
        return "IPv4, cut".to_owned();
    };
    let header = usize::from(first & 0x0f) * 4;
    let rest = &ip[header.min(ip.len())..];
    match protocol {
        1 => format!("ICMP {source} -> {destination}: {}", icmp(rest)),
        6 => tcp(source, destination, rest),
        17 => match (u16_at(rest, 0), u16_at(rest, 2)) {
            (Some(from), Some(to)) => format!("UDP {source}:{from} -> {destination}:{to}"),
            _ => format!("UDP {source} -> {destination}, cut"),
        },
        other => format!("IPv4 protocol {other} {source} -> {destination}"),
    }
}

fn icmp(icmp: &[u8]) -> String {
    match (icmp.first(), icmp.get(1)) {
        (Some(0), _) => "echo reply".to_owned(),
        (Some(8), _) => "echo request".to_owned(),
        (Some(3), Some(code)) => format!("destination unreachable (code {code})"),
        (Some(11), _) => "time exceeded".to_owned(),
        (Some(kind), _) => format!("type {kind}"),
        (None, _) => "cut".to_owned(),
    }
}

fn tcp(source: Ipv4Addr, destination: Ipv4Addr, tcp: &[u8]) -> String {
    let (Some(from), Some(to), Some(flags)) = (u16_at(tcp, 0), u16_at(tcp, 2), tcp.get(13)) else {
        return format!("TCP {source} -> {destination}, cut");
    };
    let names: Vec<&str> = [
        (0x02, "SYN"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x01, "FIN"),
        (0x04, "RST"),
    ]
    .into_iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| name)
    .collect();
    format!(
        "TCP {source}:{from} -> {destination}:{to} [{}]",
        names.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend([0x02, 0, 0, 0, 0, 1]);
        frame.extend(ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn ipv4_packet(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
        ip.extend([10, 0, 0, 1, 10, 0, 0, 2]);
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn names_arp_icmp_and_tcp() {
        let mut request = vec![0, 1, 8, 0, 6, 4, 0, 1];
        request.extend([2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        assert_eq!(
            describe(&ethernet(ETHERTYPE_ARP, &request)),
            "ARP who has 10.0.0.2? tell 10.0.0.1"
        );
        assert_eq!(
            describe(&ethernet(ETHERTYPE_IPV4, &ipv4_packet(1, &[8, 0]))),
            "ICMP 10.0.0.1 -> 10.0.0.2: echo request"
        );
        let mut syn = vec![0x9c, 0x40, 0x11, 0x44];
        syn.extend([0; 9]);
        syn.push(0x12);
        assert_eq!(
            describe(&ethernet(ETHERTYPE_IPV4, &ipv4_packet(6, &syn))),
            "TCP 10.0.0.1:40000 -> 10.0.0.2:4420 [SYN ACK]"
        );
    }

    #[test]
    fn cut_frames_say_so() {
        assert!(describe(&[0; 5]).contains("cut"));
        assert_eq!(describe(&ethernet(ETHERTYPE_ARP, &[0, 1])), "ARP, cut");
        assert_eq!(
            describe(&ethernet(ETHERTYPE_IPV4, &ipv4_packet(6, &[0]))),
            "TCP 10.0.0.1 -> 10.0.0.2, cut"
        );
        assert_eq!(describe(&ethernet(0x88b5, &[])), "EtherType 0x88b5");
    }
}
