//! Malformed and adversarial frames never disturb traffic: with `tracer counters` attached to
//! both lab ports, every frame crafted on the initiator port arrives at the target port byte for
//! byte, tracer survives them all, and its counters stay consistent.
//!
//! Frames are written by an AF_PACKET socket inside the initiator's namespace and read by
//! another inside the target's: they only ever cross the lab's veth pair.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{End, Lab, check, in_netns};

/// The lab's MTU, raised from 1500 towards the ~3500 bytes XDP on veth allows, so that frames
/// longer than the usual 1514 bytes cross the programs too.
const LAB_MTU: usize = 3000;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
/// The longest untagged frame the kernel lets out of a port of this MTU; tagged: 4 more.
const MAX_FRAME: usize = LAB_MTU + ETH_HLEN;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
/// IPv4 "more fragments" flag, in the flags-and-offset field.
const IP_MF: u16 = 0x2000;
const IP_DF: u16 = 0x4000;

/// Source of every crafted IP packet and ARP request: a lab address nobody owns, so that what
/// the target answers never makes the initiator's kernel send anything of its own.
const FOREIGN_IP: [u8; 4] = [10, 0, 0, 200];
const TARGET_IP: [u8; 4] = [10, 0, 0, 2];

/// How tracer must count a crafted frame, when that is certain.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Counted once under each of these kinds (a SYN is `tcp_port` and `tcp_syn`).
    Kinds(&'static [&'static str]),
    /// Random bytes or a borderline shape: only the totals are checked.
    Unknown,
}

const UNKNOWN: Expect = Expect::Unknown;
const OTHER: Expect = Expect::Kinds(&["other"]);
const ARP_REQUEST: Expect = Expect::Kinds(&["arp_request"]);
const ARP_REPLY: Expect = Expect::Kinds(&["arp_reply"]);
const ECHO_REQUEST: Expect = Expect::Kinds(&["icmp_echo_request"]);
const ECHO_REPLY: Expect = Expect::Kinds(&["icmp_echo_reply"]);
const UNREACHABLE: Expect = Expect::Kinds(&["icmp_unreachable"]);
/// Any segment from or to the watched port; handshake flags are counted in addition.
const PORT: Expect = Expect::Kinds(&["tcp_port"]);
const PORT_SYN: Expect = Expect::Kinds(&["tcp_port", "tcp_syn"]);
const PORT_SYN_ACK: Expect = Expect::Kinds(&["tcp_port", "tcp_syn_ack"]);
const PORT_RST: Expect = Expect::Kinds(&["tcp_port", "tcp_rst"]);

struct Crafted {
    what: String,
    bytes: Vec<u8>,
    expect: Expect,
    /// Whether a packet socket on the target port can see it: the kernel discards a VLAN frame
    /// too short for its tag (skb_vlan_untag) before any packet socket, after XDP.
    reaches_sockets: bool,
}

/// Writes frames, each with its own source MAC (02:7a + a 32-bit serial) as a marker.
struct Crafter {
    target_mac: [u8; 6],
    next_serial: u32,
    frames: Vec<Crafted>,
}

impl Crafter {
    fn new(target_mac: [u8; 6]) -> Self {
        Self {
            target_mac,
            next_serial: 0,
            frames: Vec::new(),
        }
    }

    /// A fresh marker MAC, also usable inside ARP payloads.
    fn marker(&mut self) -> [u8; 6] {
        let serial = self.next_serial.to_be_bytes();
        self.next_serial += 1;
        [0x02, 0x7a, serial[0], serial[1], serial[2], serial[3]]
    }

    /// An Ethernet header to the target port, with a fresh marker as its source.
    fn ethernet(&mut self, ethertype: u16) -> Vec<u8> {
        let mut frame = self.target_mac.to_vec();
        frame.extend_from_slice(&self.marker());
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame
    }

    fn push(&mut self, what: impl Into<String>, bytes: Vec<u8>, expect: Expect) {
        assert!(
            (ETH_HLEN..=MAX_FRAME + VLAN_HLEN).contains(&bytes.len()),
            "test bug: frame of {} bytes",
            bytes.len()
        );
        let ethertype = u16::from_be_bytes([bytes[12], bytes[13]]);
        let vlan = ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD;
        let reaches_sockets = !vlan || bytes.len() >= ETH_HLEN + VLAN_HLEN + 2;
        self.frames.push(Crafted {
            what: what.into(),
            bytes,
            expect,
            reaches_sockets,
        });
    }

    /// Pushes `payload` behind a fresh Ethernet header.
    fn frame(&mut self, what: impl Into<String>, ethertype: u16, payload: &[u8], expect: Expect) {
        let mut frame = self.ethernet(ethertype);
        frame.extend_from_slice(payload);
        self.push(what, frame, expect);
    }

    /// Pushes the first `len` bytes of `payload` behind a fresh Ethernet header.
    fn cut(&mut self, what: &str, ethertype: u16, payload: &[u8], len: usize, expect: Expect) {
        let mut frame = self.ethernet(ethertype);
        frame.extend_from_slice(payload);
        frame.truncate(len);
        self.push(format!("{what} cut to {len} bytes"), frame, expect);
    }
}

/// The Internet checksum (RFC 1071) over `chunks`, as one byte stream.
fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = chunks.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet: header with `options` (padded to 4 bytes), correct checksum, `payload`.
fn ipv4(protocol: u8, flags_and_offset: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut options = options.to_vec();
    options.resize(options.len().div_ceil(4) * 4, 0);
    let header_len = 20 + options.len();
    assert!(header_len <= 60, "test bug: IPv4 options too long");
    let total = u16::try_from(header_len + payload.len()).expect("packet fits an IPv4 length");
    let mut header = vec![0x40 | (header_len / 4) as u8, 0];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&0x7a7a_u16.to_be_bytes()); // identification
    header.extend_from_slice(&flags_and_offset.to_be_bytes());
    header.extend_from_slice(&[64, protocol, 0, 0]);
    header.extend_from_slice(&FOREIGN_IP);
    header.extend_from_slice(&TARGET_IP);
    header.extend_from_slice(&options);
    let checksum = internet_checksum(&[&header]);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

/// An ICMP message with a correct checksum.
fn icmp(icmp_type: u8, code: u8, rest_of_header: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut message = vec![icmp_type, code, 0, 0];
    message.extend_from_slice(&rest_of_header);
    message.extend_from_slice(data);
    let checksum = internet_checksum(&[&message]);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    message
}

fn echo(icmp_type: u8, serial: u16, data: &[u8]) -> Vec<u8> {
    let [s0, s1] = serial.to_be_bytes();
    icmp(icmp_type, 0, [0x7a, 0x7a, s0, s1], data)
}

/// A TCP segment from FOREIGN_IP to TARGET_IP with a correct checksum.
fn tcp(source_port: u16, destination_port: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20 + data.len());
    segment.extend_from_slice(&source_port.to_be_bytes());
    segment.extend_from_slice(&destination_port.to_be_bytes());
    segment.extend_from_slice(&0x7a00_0001_u32.to_be_bytes()); // sequence
    segment.extend_from_slice(&0_u32.to_be_bytes()); // acknowledgement
    segment.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    segment.extend_from_slice(data);
    let length = u16::try_from(segment.len())
        .expect("segment fits")
        .to_be_bytes();
    let pseudo = [&FOREIGN_IP[..], &TARGET_IP, &[0, IPPROTO_TCP], &length].concat();
    let checksum = internet_checksum(&[&pseudo, &segment]);
    segment[16..18].copy_from_slice(&checksum.to_be_bytes());
    segment
}

/// An Ethernet/IPv4 ARP payload.
fn arp(operation: u16, sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut payload = vec![0, 1, 0x08, 0x00, 6, 4];
    payload.extend_from_slice(&operation.to_be_bytes());
    payload.extend_from_slice(&sender_mac);
    payload.extend_from_slice(&sender_ip);
    payload.extend_from_slice(&[0; 6]);
    payload.extend_from_slice(&target_ip);
    payload
}

/// splitmix64: a fixed seed makes every run send the same "random" frames.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform below `bound` (the tiny modulo bias does not matter here).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Every frame of the test, in sending order.
fn craft(target_mac: [u8; 6], tcp_port: u16) -> Vec<Crafted> {
    let mut c = Crafter::new(target_mac);
    let port = tcp_port;

    // Nothing but an Ethernet header: the shortest frame the kernel lets out.
    for ethertype in [
        ETH_P_IP,
        ETH_P_ARP,
        ETH_P_IPV6,
        ETH_P_8021Q,
        ETH_P_8021AD,
        0x0000,
        0x05dc, // an 802.3 length, not an EtherType
        0xffff,
    ] {
        c.frame(
            format!("bare header {ethertype:#06x}"),
            ethertype,
            &[],
            OTHER,
        );
    }

    // ARP: valid requests and replies (also padded to the Ethernet minimum), then broken ones.
    for serial in 0..8 {
        let mac = c.marker();
        let request = arp(1, mac, FOREIGN_IP, TARGET_IP);
        c.frame(
            format!("ARP request {serial}"),
            ETH_P_ARP,
            &request,
            ARP_REQUEST,
        );
        let reply = arp(2, mac, FOREIGN_IP, TARGET_IP);
        c.frame(format!("ARP reply {serial}"), ETH_P_ARP, &reply, ARP_REPLY);
    }
    let mut padded = arp(1, c.marker(), FOREIGN_IP, TARGET_IP);
    padded.resize(60 - ETH_HLEN, 0);
    c.frame(
        "ARP request padded to 60 bytes",
        ETH_P_ARP,
        &padded,
        ARP_REQUEST,
    );
    let request = arp(1, c.marker(), FOREIGN_IP, TARGET_IP);
    // Cut before the operation field: nothing says what it is.
    for len in ETH_HLEN + 1..ETH_HLEN + 8 {
        c.cut("ARP request", ETH_P_ARP, &request, len, OTHER);
    }
    // Cut after it: the classifier may or may not trust what is left.
    for len in [ETH_HLEN + 8, ETH_HLEN + 20, ETH_HLEN + 27] {
        c.cut("ARP request", ETH_P_ARP, &request, len, UNKNOWN);
    }
    for operation in [0, 3, 4, 8, 0xffff] {
        let payload = arp(operation, c.marker(), FOREIGN_IP, TARGET_IP);
        c.frame(
            format!("ARP operation {operation}"),
            ETH_P_ARP,
            &payload,
            OTHER,
        );
    }

    // ICMP: the three counted types, and others.
    for serial in 0..8 {
        let packet = ipv4(IPPROTO_ICMP, 0, &[], &echo(8, serial, b"tracer-malformed"));
        let kinds = ECHO_REQUEST;
        c.frame(format!("echo request {serial}"), ETH_P_IP, &packet, kinds);
        let packet = ipv4(IPPROTO_ICMP, 0, &[], &echo(0, serial, b"tracer-malformed"));
        let kinds = ECHO_REPLY;
        c.frame(format!("echo reply {serial}"), ETH_P_IP, &packet, kinds);
    }
    let quoted = ipv4(IPPROTO_UDP, 0, &[], &[0x7a; 8]);
    for code in [0, 1, 3, 4, 13] {
        let packet = ipv4(IPPROTO_ICMP, 0, &[], &icmp(3, code, [0; 4], &quoted));
        let kinds = UNREACHABLE;
        c.frame(format!("unreachable code {code}"), ETH_P_IP, &packet, kinds);
    }
    for icmp_type in [5, 11, 13, 255] {
        let packet = ipv4(IPPROTO_ICMP, 0, &[], &icmp(icmp_type, 0, [0; 4], &quoted));
        c.frame(format!("ICMP type {icmp_type}"), ETH_P_IP, &packet, OTHER);
    }

    // TCP to and from the watched port, with each flag combination counted apart.
    let segments: [(&str, u16, u16, u8, Expect); 8] = [
        ("SYN", 40000, port, TCP_SYN, PORT_SYN),
        ("SYN-ACK", port, 40001, TCP_SYN | TCP_ACK, PORT_SYN_ACK),
        ("RST", 40002, port, TCP_RST, PORT_RST),
        ("RST-ACK", port, 40003, TCP_RST | TCP_ACK, PORT_RST),
        ("FIN-ACK", 40004, port, TCP_FIN | TCP_ACK, PORT),
        ("PSH-ACK", 40005, port, TCP_PSH | TCP_ACK, PORT),
        (
            "SYN to another port",
            40006,
            port.wrapping_add(1),
            TCP_SYN,
            OTHER,
        ),
        ("every flag", 40007, port, 0xff, UNKNOWN),
    ];
    for (what, source, destination, flags, expect) in segments {
        let packet = ipv4(
            IPPROTO_TCP,
            0,
            &[],
            &tcp(source, destination, flags, b"nvme"),
        );
        c.frame(format!("TCP {what}"), ETH_P_IP, &packet, expect);
    }
    let udp = [
        &40008_u16.to_be_bytes()[..],
        &port.to_be_bytes(),
        &[0, 8, 0, 0],
    ]
    .concat();
    c.frame(
        "UDP to the watched port",
        ETH_P_IP,
        &ipv4(IPPROTO_UDP, 0, &[], &udp),
        OTHER,
    );
    for protocol in [0, 4, 41, 255] {
        let packet = ipv4(protocol, 0, &[], &[0x7a; 16]);
        c.frame(format!("IP protocol {protocol}"), ETH_P_IP, &packet, OTHER);
    }

    // Truncated IPv4 headers, and transport headers cut before what the classifier reads.
    let echo_request = ipv4(IPPROTO_ICMP, 0, &[], &echo(8, 100, b"tracer"));
    for len in ETH_HLEN + 1..=ETH_HLEN + 21 {
        c.cut("IPv4 echo request", ETH_P_IP, &echo_request, len, OTHER);
    }
    for len in [ETH_HLEN + 22, ETH_HLEN + 27] {
        c.cut("IPv4 echo request", ETH_P_IP, &echo_request, len, UNKNOWN);
    }
    let syn = ipv4(IPPROTO_TCP, 0, &[], &tcp(40009, port, TCP_SYN, &[]));
    for len in ETH_HLEN + 20..ETH_HLEN + 24 {
        c.cut("IPv4 SYN", ETH_P_IP, &syn, len, OTHER);
    }
    for len in [ETH_HLEN + 24, ETH_HLEN + 33, ETH_HLEN + 34] {
        c.cut("IPv4 SYN", ETH_P_IP, &syn, len, UNKNOWN);
    }

    // Impossible header lengths and versions.
    for ihl in 0..5u8 {
        let mut packet = echo_request.clone();
        packet[0] = 0x40 | ihl;
        c.frame(format!("IPv4 IHL {ihl}"), ETH_P_IP, &packet, OTHER);
    }
    for version in [0u8, 5, 6, 15] {
        let mut packet = echo_request.clone();
        packet[0] = (version << 4) | 5;
        c.frame(format!("IP version {version}"), ETH_P_IP, &packet, OTHER);
    }
    let mut beyond = echo_request.clone();
    beyond[2..4].copy_from_slice(&0xffff_u16.to_be_bytes());
    c.frame(
        "IPv4 total length beyond the frame",
        ETH_P_IP,
        &beyond,
        UNKNOWN,
    );

    // The longest IPv4 header (IHL 15, 40 bytes of options): the transport header comes after.
    let record_route = [&[7, 39, 4][..], &[0; 36], &[0]].concat();
    let timestamp = [&[68, 40, 5, 0][..], &[0; 36]].concat();
    let nops = [1; 40];
    let long_headers = [
        (
            "record route, echo request",
            &record_route[..],
            IPPROTO_ICMP,
            echo(8, 101, b"options"),
            ECHO_REQUEST,
        ),
        (
            "timestamp, echo reply",
            &timestamp[..],
            IPPROTO_ICMP,
            echo(0, 102, b"options"),
            ECHO_REPLY,
        ),
        (
            "40 NOPs, SYN",
            &nops[..],
            IPPROTO_TCP,
            tcp(40010, port, TCP_SYN, &[]),
            PORT_SYN,
        ),
    ];
    for (what, options, protocol, transport, expect) in long_headers {
        let packet = ipv4(protocol, 0, options, &transport);
        assert_eq!(packet[0], 0x4f, "test bug: options do not fill IHL 15");
        c.frame(format!("IHL 15, {what}"), ETH_P_IP, &packet, expect);
        // Cut inside the options or before the transport fields: nothing to classify by.
        for len in [ETH_HLEN + 21, ETH_HLEN + 40, ETH_HLEN + 59, ETH_HLEN + 61] {
            c.cut(&format!("IHL 15, {what}"), ETH_P_IP, &packet, len, OTHER);
        }
    }

    // Fragments: only the first carries the transport header, and is counted by it.
    let first_fragments: [(&str, u16, Expect); 2] = [
        ("first fragment (MF, offset 0)", IP_MF, ECHO_REQUEST),
        ("unfragmented (DF)", IP_DF, ECHO_REQUEST),
    ];
    for (what, flags, expect) in first_fragments {
        let packet = ipv4(IPPROTO_ICMP, flags, &[], &echo(8, 103, &[0x7a; 64]));
        c.frame(format!("echo request, {what}"), ETH_P_IP, &packet, expect);
    }
    for offset in [1u16, 8, 185, 0x1fff] {
        for (flags, last) in [(IP_MF, "middle"), (0, "last")] {
            // Bytes that would read as an echo request or a SYN, were they a header.
            let icmp_like = ipv4(IPPROTO_ICMP, flags | offset, &[], &echo(8, 104, &[0; 32]));
            let what = format!("{last} fragment at offset {offset}, ICMP");
            c.frame(what, ETH_P_IP, &icmp_like, OTHER);
            let tcp_like = ipv4(
                IPPROTO_TCP,
                flags | offset,
                &[],
                &tcp(40011, port, TCP_SYN, &[]),
            );
            let what = format!("{last} fragment at offset {offset}, TCP");
            c.frame(what, ETH_P_IP, &tcp_like, OTHER);
        }
    }

    // VLAN-tagged frames (802.1Q, 802.1ad, and both stacked), full and cut inside the tag.
    let tagged_payloads: [(&str, u16, Vec<u8>); 3] = [
        ("echo request", ETH_P_IP, echo_request.clone()),
        (
            "ARP request",
            ETH_P_ARP,
            arp(1, c.marker(), FOREIGN_IP, TARGET_IP),
        ),
        ("SYN", ETH_P_IP, syn.clone()),
    ];
    for (what, inner_type, payload) in &tagged_payloads {
        for vid in [0u16, 1, 100, 4094, 4095] {
            let tag = [&vid.to_be_bytes()[..], &inner_type.to_be_bytes()].concat();
            let bytes = [&tag[..], payload].concat();
            c.frame(
                format!("802.1Q VID {vid}, {what}"),
                ETH_P_8021Q,
                &bytes,
                OTHER,
            );
        }
        let stacked = [
            &[0, 10][..],
            &ETH_P_8021Q.to_be_bytes(),
            &[0, 20],
            &inner_type.to_be_bytes(),
            payload,
        ]
        .concat();
        c.frame(
            format!("802.1ad over 802.1Q, {what}"),
            ETH_P_8021AD,
            &stacked,
            OTHER,
        );
    }
    let tagged = [&[0, 100][..], &ETH_P_IP.to_be_bytes(), &echo_request].concat();
    for len in ETH_HLEN + 1..ETH_HLEN + 8 {
        c.cut("802.1Q echo request", ETH_P_8021Q, &tagged, len, OTHER);
    }

    // IPv6: never counted as any IPv4 kind.
    let mut ipv6 = vec![0x60, 0, 0, 0, 0, 16, 58, 64];
    ipv6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ipv6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ipv6.extend_from_slice(&[128, 0, 0, 0, 0x7a, 0x7a, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    c.frame("IPv6 echo request", ETH_P_IPV6, &ipv6, OTHER);
    for len in [ETH_HLEN + 1, ETH_HLEN + 20, ETH_HLEN + 40] {
        c.cut("IPv6 echo request", ETH_P_IPV6, &ipv6, len, OTHER);
    }

    // The longest frames the port takes, tagged and untagged.
    let fill = vec![0x7a; MAX_FRAME - ETH_HLEN - 20 - 8];
    let longest_echo = ipv4(IPPROTO_ICMP, 0, &[], &echo(8, 105, &fill));
    c.frame(
        "longest echo request",
        ETH_P_IP,
        &longest_echo,
        ECHO_REQUEST,
    );
    let fill = vec![0x7a; MAX_FRAME - ETH_HLEN - 60 - 20];
    let longest_segment = ipv4(
        IPPROTO_TCP,
        0,
        &nops,
        &tcp(40012, port, TCP_PSH | TCP_ACK, &fill),
    );
    c.frame("longest segment, IHL 15", ETH_P_IP, &longest_segment, PORT);
    let tagged_longest = [&[0, 100][..], &ETH_P_IP.to_be_bytes(), &longest_echo].concat();
    c.frame(
        "longest 802.1Q echo request",
        ETH_P_8021Q,
        &tagged_longest,
        OTHER,
    );

    // Random bytes: some behind EtherTypes the classifier parses, of every length.
    let mut prng = Prng(0x7472_6163_6572); // "tracer"
    for serial in 0..400 {
        let ethertype = match prng.below(8) {
            0 | 1 => ETH_P_IP,
            2 | 3 => ETH_P_ARP,
            4 => ETH_P_8021Q,
            _ => prng.next() as u16,
        };
        let len = match prng.below(10) {
            0 => MAX_FRAME,
            1 => ETH_HLEN + prng.below(MAX_FRAME - ETH_HLEN + 1),
            _ => ETH_HLEN + prng.below(120),
        };
        let mut bytes = prng.bytes(len - ETH_HLEN);
        if ethertype == ETH_P_IP && !bytes.is_empty() && prng.below(2) == 0 {
            bytes[0] = 0x40 | (bytes[0] & 0x0f); // version 4, any header length
        }
        c.frame(
            format!("random {serial} ({len} bytes, {ethertype:#06x})"),
            ethertype,
            &bytes,
            UNKNOWN,
        );
    }
    c.frames
}

fn sockaddr_ll(ifindex: i32) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_ifindex = ifindex;
    address
}

fn setsockopt_int(socket: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the value pointer and length describe a live c_int.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A raw packet socket; `protocol` 0 receives nothing, ETH_P_ALL everything.
fn packet_socket(protocol: u16) -> OwnedFd {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    };
    assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Index and MAC of a lab end's interface, from `ip -j link`.
fn link_of(end: &End) -> (i32, [u8; 6]) {
    let out = check(
        end.exec("ip")
            .args(["-j", "link", "show", "dev", &end.interface]),
    );
    let links: Value = serde_json::from_slice(&out.stdout).expect("ip -j link prints JSON");
    let link = &links[0];
    let ifindex = link["ifindex"].as_i64().expect("ifindex") as i32;
    let mac: Vec<u8> = link["address"]
        .as_str()
        .expect("address")
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex MAC"))
        .collect();
    (ifindex, mac.try_into().expect("6-byte MAC"))
}

/// A packet socket on the target port that sees every frame arriving there, outgoing ones not.
fn receiving_socket(end: &End, ifindex: i32) -> OwnedFd {
    in_netns(&end.netns, move || {
        let socket = packet_socket(libc::ETH_P_ALL as u16);
        setsockopt_int(&socket, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
            .expect("PACKET_IGNORE_OUTGOING");
        // VLAN tags are taken off before packet sockets see the frame: ask for them apart.
        setsockopt_int(&socket, libc::SOL_PACKET, libc::PACKET_AUXDATA, 1).expect("PACKET_AUXDATA");
        // Room for every frame of the test at once.
        setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20)
            .expect("SO_RCVBUFFORCE");
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: the value pointer and length describe a live timeval.
        let status = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        assert_eq!(status, 0, "SO_RCVTIMEO: {}", io::Error::last_os_error());
        let address = sockaddr_ll(ifindex);
        let mut bound = address;
        bound.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: a live sockaddr_ll of the length passed.
        let status = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const bound).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(status, 0, "bind: {}", io::Error::last_os_error());
        socket
    })
    .join()
    .expect("receiver socket thread")
}

/// The next frame that arrived on the receiving socket's port, as it was on the wire (its VLAN
/// tag put back), or `None` on timeout.
fn receive_frame(socket: &OwnedFd) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 65536];
    let mut control = [0u64; 64];
    let mut address = sockaddr_ll(0);
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: msghdr is plain old data; all zeroes is valid.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = (&raw mut address).cast();
    message.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    message.msg_iov = &raw mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of_val(&control);
    loop {
        // SAFETY: every pointer in `message` refers to a live buffer of the length given.
        let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut message, 0) };
        if received < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return None,
                _ => panic!("recvmsg: {err}"),
            }
        }
        assert_eq!(message.msg_flags & libc::MSG_TRUNC, 0, "frame cut short");
        if address.sll_pkttype == libc::PACKET_OUTGOING {
            continue; // not an arrival (PACKET_IGNORE_OUTGOING should keep these away anyway)
        }
        let mut frame = buffer[..received as usize].to_vec();
        if let Some((tpid, tci)) = vlan_tag(&message) {
            frame.splice(12..12, [tpid.to_be_bytes(), tci.to_be_bytes()].concat());
        }
        return Some(frame);
    }
}

/// The (TPID, TCI) the kernel took off the frame, from its PACKET_AUXDATA message.
fn vlan_tag(message: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `message` was filled in by recvmsg; the CMSG macros stay inside its control area.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(message) };
    while !cmsg.is_null() {
        // SAFETY: non-null headers returned by CMSG_FIRSTHDR/NXTHDR are inside the buffer.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_PACKET && header.cmsg_type == libc::PACKET_AUXDATA {
            // SAFETY: a PACKET_AUXDATA message carries one tpacket_auxdata, maybe unaligned.
            let aux: libc::tpacket_auxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                ETH_P_8021Q
            };
            return Some((tpid, aux.tp_vlan_tci));
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(message, cmsg) };
    }
    None
}

/// Sends one frame out of the port; the error, if the kernel refuses it.
fn send_frame(socket: &OwnedFd, ifindex: i32, frame: &[u8]) -> io::Result<()> {
    let address = sockaddr_ll(ifindex);
    // SAFETY: the frame and the address are live for the lengths passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    assert_eq!(sent as usize, frame.len(), "frame sent in part");
    Ok(())
}

/// Whether `received` is `sent`, or `sent` padded with zeroes to the 60-byte Ethernet minimum
/// (veth does not pad; a NIC would).
fn same_frame(sent: &[u8], received: &[u8]) -> bool {
    received == sent
        || (sent.len() < 60
            && received.len() == 60
            && received.starts_with(sent)
            && received[sent.len()..].iter().all(|&byte| byte == 0))
}

/// The counters of one direction of one lab end, by kind.
fn counts(report: &Value, end: &End, direction: &str) -> BTreeMap<String, u64> {
    let port = report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .find(|port| port["netns"] == end.netns.as_str() && port["interface"] == end.interface)
        .unwrap_or_else(|| panic!("no row for {} in {report}", end.spec()));
    port[direction]
        .as_object()
        .unwrap_or_else(|| panic!("no {direction} counts for {}", end.spec()))
        .iter()
        .map(|(kind, count)| (kind.clone(), count.as_u64().expect("count")))
        .collect()
}

/// Kinds counted on top of `tcp_port`, not instead of it.
const SUBKINDS: [&str; 3] = ["tcp_syn", "tcp_syn_ack", "tcp_rst"];

#[test]
fn malformed_frames_all_arrive_and_are_counted_consistently() {
    let lab = Lab::up("mal");
    for end in [&lab.initiator, &lab.target] {
        check(end.exec("ip").args([
            "link",
            "set",
            "dev",
            &end.interface,
            "mtu",
            &LAB_MTU.to_string(),
        ]));
        // No IPv6 chatter from the kernels (ND, MLD): the only frames are the test's.
        check(
            end.exec("sysctl")
                .args(["-qw", "net.ipv6.conf.all.disable_ipv6=1"]),
        );
    }
    let (initiator_index, _) = link_of(&lab.initiator);
    let (target_index, target_mac) = link_of(&lab.target);
    let frames = craft(target_mac, lab.port);
    assert!(frames.len() >= 500, "{} frames", frames.len());

    // XDP: the program that sees every frame as it arrives, before the stack may drop it.
    let run = lab.counters_with(&["--ingress-hook", "xdp"]);
    let receiver = receiving_socket(&lab.target, target_index);
    let sender = in_netns(&lab.initiator.netns, || packet_socket(0))
        .join()
        .expect("sender socket thread");

    // A frame shorter than an Ethernet header never leaves: the kernel refuses it.
    let runt = send_frame(&sender, initiator_index, &frames[0].bytes[..ETH_HLEN - 1]);
    assert_eq!(
        runt.map_err(|err| err.raw_os_error()),
        Err(Some(libc::EINVAL)),
        "a 13-byte frame was sent"
    );

    // Read while sending, so that the socket never has to hold every frame at once.
    let expected: Vec<Vec<u8>> = frames
        .iter()
        .filter(|frame| frame.reaches_sockets)
        .map(|frame| frame.bytes.clone())
        .collect();
    let reader = std::thread::spawn(move || {
        let mut pending: HashMap<Vec<u8>, usize> = HashMap::new();
        for frame in &expected {
            *pending.entry(frame.clone()).or_default() += 1;
        }
        let (mut arrived, mut padded, mut unrelated) = (0usize, 0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pending.is_empty() && Instant::now() < deadline {
            let Some(frame) = receive_frame(&receiver) else {
                continue;
            };
            let key = if pending.contains_key(&frame) {
                Some(frame.clone())
            } else {
                // Maybe a short frame padded on its way.
                (ETH_HLEN..frame.len().min(60))
                    .map(|len| &frame[..len])
                    .find(|sent| pending.contains_key(*sent) && same_frame(sent, &frame))
                    .map(<[u8]>::to_vec)
                    .inspect(|_| padded += 1)
            };
            match key {
                Some(key) => {
                    arrived += 1;
                    let left = pending.get_mut(&key).expect("pending");
                    *left -= 1;
                    if *left == 0 {
                        pending.remove(&key);
                    }
                }
                None => unrelated += 1,
            }
        }
        (arrived, padded, pending, unrelated)
    });

    for (serial, frame) in frames.iter().enumerate() {
        send_frame(&sender, initiator_index, &frame.bytes).unwrap_or_else(|err| {
            panic!(
                "sending {} ({} bytes): {err}",
                frame.what,
                frame.bytes.len()
            )
        });
        // veth queues at most 256 frames towards an XDP program: never come near that.
        if serial % 32 == 31 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let (arrived, padded, missing, unrelated) = reader.join().expect("reader thread");
    let missing_names: Vec<&str> = frames
        .iter()
        .filter(|frame| missing.contains_key(&frame.bytes))
        .map(|frame| frame.what.as_str())
        .collect();
    assert!(
        missing_names.is_empty(),
        "{} of {} frames never reached the target port: {missing_names:?}",
        missing_names.len(),
        frames.len()
    );
    eprintln!(
        "{} frames sent, {arrived} arrived byte for byte ({padded} padded), {unrelated} others",
        frames.len()
    );
    // Let anything the target answered settle before the counters are read.
    std::thread::sleep(Duration::from_millis(200));
    let report = run.finish();

    let egress = counts(&report, &lab.initiator, "egress");
    let ingress = counts(&report, &lab.target, "ingress");
    // What left one end of the veth pair is exactly what reached the other, kind by kind.
    assert_eq!(egress, ingress, "initiator egress vs target ingress");
    let counted: u64 = ingress
        .iter()
        .filter(|(kind, _)| !SUBKINDS.contains(&kind.as_str()))
        .map(|(_, count)| count)
        .sum();
    assert!(
        counted >= frames.len() as u64,
        "{counted} frames counted at the target, {} sent: {ingress:?}",
        frames.len()
    );

    // Every frame whose kind is certain is counted as that kind; frames of unknown kind may
    // add to any count, but no more than there are of them.
    let mut certain: BTreeMap<&str, u64> = BTreeMap::new();
    let mut uncertain = 0u64;
    for frame in &frames {
        match frame.expect {
            Expect::Kinds(kinds) => {
                for kind in kinds {
                    *certain.entry(kind).or_default() += 1;
                }
            }
            Expect::Unknown => uncertain += 1,
        }
    }
    for (kind, count) in &ingress {
        let least = certain.get(kind.as_str()).copied().unwrap_or(0);
        assert!(
            *count >= least,
            "{kind}: {count} counted, {least} crafted as such; {ingress:?}"
        );
        if kind != "other" {
            assert!(
                *count <= least + uncertain,
                "{kind}: {count} counted, only {least} crafted as such and {uncertain} unknown"
            );
        }
    }
    for kind in certain.keys() {
        assert!(
            ingress.contains_key(*kind),
            "no `{kind}` counter in {ingress:?}"
        );
    }
}
