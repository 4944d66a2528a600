//! Frame classification shared by the XDP (ingress) and tc (egress) counters.
//!
//! Every malformed or unexpected frame is classified as `Other`: the observer never fails.

use core::mem::size_of;

use tracer_common::PacketKind;

/// Bounds-checked read access to a frame.
pub trait Frame {
    /// Reads a `T` at `base + offset`. Only `base` may vary at run time: keeping the constant
    /// part apart lets the verifier follow XDP packet pointers.
    fn read<T: Copy>(&self, base: usize, offset: usize) -> Option<T>;
}

/// One classified frame: its kind, and for TCP to the watched port the handshake kind that is
/// counted in addition and what the capture needs to pick segments.
pub struct Classified {
    pub kind: PacketKind,
    pub tcp_flags_kind: Option<PacketKind>,
    /// The segment when `kind` is `TcpPort`, zeros otherwise: written on every path, never
    /// left undefined. An undefined field (an `Option`'s payload) lets LLVM load its stack
    /// slot on every path, and verifiers before 6.5 refuse a read of stack never written,
    /// even for root (5.10 and 6.1 refused the XDP program: `invalid read from stack`).
    segment: TcpSegment,
}

impl Classified {
    /// The segment of the watched port, if this frame is one.
    #[inline(always)]
    pub fn tcp(&self) -> Option<TcpSegment> {
        (self.kind == PacketKind::TcpPort).then_some(self.segment)
    }
}

/// A segment from or to the watched port.
#[derive(Clone, Copy)]
pub struct TcpSegment {
    /// The TCP header's flags byte.
    pub flags: u8,
    /// Source and destination port, as on the wire.
    pub ports: [u8; 4],
}

impl TcpSegment {
    /// SYN (or SYN-ACK): opens its direction of a connection.
    pub fn opens(self) -> bool {
        self.flags & TCP_SYN != 0
    }

    /// FIN or RST: ends its direction of a connection (RST both).
    pub fn ends(self) -> bool {
        self.flags & (TCP_FIN | TCP_RST) != 0
    }

    /// RST: ends both directions.
    pub fn resets(self) -> bool {
        self.flags & TCP_RST != 0
    }
}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ARP_OPER_OFFSET: usize = 6;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;
const IPV4_FRAG_OFFSET: usize = 6;
const IPV4_PROTO_OFFSET: usize = 9;
const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const ICMP_ECHOREPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO: u8 = 8;
const TCP_FLAGS_OFFSET: usize = 13;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

const fn only(kind: PacketKind) -> Classified {
    Classified {
        kind,
        tcp_flags_kind: None,
        segment: TcpSegment {
            flags: 0,
            ports: [0; 4],
        },
    }
}

#[inline(always)]
fn read_be16<F: Frame>(frame: &F, base: usize, offset: usize) -> Option<u16> {
    frame.read::<[u8; 2]>(base, offset).map(u16::from_be_bytes)
}

#[inline(always)]
pub fn classify<F: Frame>(frame: &F, watched_port: u16) -> Classified {
    match read_be16(frame, 0, 12) {
        Some(ETH_P_ARP) => classify_arp(frame),
        Some(ETH_P_IP) => classify_ipv4(frame, watched_port),
        _ => only(PacketKind::Other),
    }
}

#[inline(always)]
fn classify_arp<F: Frame>(frame: &F) -> Classified {
    match read_be16(frame, ETH_HLEN, ARP_OPER_OFFSET) {
        Some(ARPOP_REQUEST) => only(PacketKind::ArpRequest),
        Some(ARPOP_REPLY) => only(PacketKind::ArpReply),
        _ => only(PacketKind::Other),
    }
}

#[inline(always)]
fn classify_ipv4<F: Frame>(frame: &F, watched_port: u16) -> Classified {
    let Some(version_ihl) = frame.read::<u8>(ETH_HLEN, 0) else {
        return only(PacketKind::Other);
    };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return only(PacketKind::Other);
    }
    let Some(frag) = read_be16(frame, ETH_HLEN, IPV4_FRAG_OFFSET) else {
        return only(PacketKind::Other);
    };
    // Only the first fragment carries the transport header.
    if frag & IPV4_FRAG_OFFSET_MASK != 0 {
        return only(PacketKind::Other);
    }
    let transport = ETH_HLEN + header_len;
    match frame.read::<u8>(ETH_HLEN, IPV4_PROTO_OFFSET) {
        Some(IPPROTO_ICMP) => classify_icmp(frame, transport),
        Some(IPPROTO_TCP) => classify_tcp(frame, transport, watched_port),
        _ => only(PacketKind::Other),
    }
}

#[inline(always)]
fn classify_icmp<F: Frame>(frame: &F, transport: usize) -> Classified {
    // Type and code together: a one-byte read at a variable offset compiles to a bounds check
    // the verifier cannot use.
    match frame
        .read::<[u8; 2]>(transport, 0)
        .map(|[icmp_type, _code]| icmp_type)
    {
        Some(ICMP_ECHO) => only(PacketKind::IcmpEchoRequest),
        Some(ICMP_ECHOREPLY) => only(PacketKind::IcmpEchoReply),
        Some(ICMP_DEST_UNREACH) => only(PacketKind::IcmpUnreachable),
        _ => only(PacketKind::Other),
    }
}

#[inline(always)]
fn classify_tcp<F: Frame>(frame: &F, transport: usize, watched_port: u16) -> Classified {
    let Some(ports) = frame.read::<[u8; 4]>(transport, 0) else {
        return only(PacketKind::Other);
    };
    let source = u16::from_be_bytes([ports[0], ports[1]]);
    let destination = u16::from_be_bytes([ports[2], ports[3]]);
    if source != watched_port && destination != watched_port {
        return only(PacketKind::Other);
    }
    let flags = frame.read::<u8>(transport, TCP_FLAGS_OFFSET).unwrap_or(0);
    let tcp_flags_kind = if flags & TCP_RST != 0 {
        Some(PacketKind::TcpRst)
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK != 0 {
        Some(PacketKind::TcpSynAck)
    } else if flags & TCP_SYN != 0 {
        Some(PacketKind::TcpSyn)
    } else {
        None
    };
    Classified {
        kind: PacketKind::TcpPort,
        tcp_flags_kind,
        segment: TcpSegment { flags, ports },
    }
}

/// Where an IPv4 header's source and destination addresses are (8 bytes).
pub const IPV4_ADDRESSES_OFFSET: usize = ETH_HLEN + 12;

/// Size check written as the verifier wants it: the variable part is already in `start`.
#[inline(always)]
pub fn fits<T>(start: usize, offset: usize, end: usize) -> bool {
    start + offset + size_of::<T>() <= end
}
