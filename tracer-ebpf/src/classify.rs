//! Frame classification shared by the XDP (ingress) and tc (egress) counters.
//!
//! Every malformed or unexpected frame is classified as `Other`: the observer never fails.

use core::mem::size_of;

use tracer_common::PacketKind;

/// Bounds-checked read access to a frame.
pub trait Frame {
    /// Picks fields of the `T` at `base + offset` with `pick`, or `None` past the frame's end.
    /// Only `base` may vary at run time: keeping the constant part apart lets the verifier
    /// follow XDP packet pointers. `pick` reads each field with its own load, where copying the
    /// `T` out would first assemble it from loads the code generator splits. `T` is
    /// [`Words`] or bytes, at an even offset: frames start 2-byte aligned (as the verifier
    /// assumes: NET_IP_ALIGN is 2).
    fn fields<T: Copy, R>(&self, base: usize, offset: usize, pick: impl Fn(&T) -> R) -> Option<R>;

    /// The whole `T` at `base + offset`.
    #[inline(always)]
    fn read<T: Copy>(&self, base: usize, offset: usize) -> Option<T> {
        self.fields(base, offset, |value: &T| *value)
    }
}

/// `N` two-byte words of a frame: the BPF code generator reads a two-byte field aligned like
/// this with one load, and one of a byte array byte by byte.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Words<const N: usize>([u16; N]);

impl<const N: usize> Words<N> {
    /// The 16-bit field at an even `offset`, from network order.
    #[inline(always)]
    fn be16(&self, offset: usize) -> u16 {
        u16::from_be(self.0[offset / 2])
    }

    /// The two bytes at an even `offset`, as on the wire.
    #[inline(always)]
    fn pair(&self, offset: usize) -> [u8; 2] {
        self.0[offset / 2].to_ne_bytes()
    }

    /// The byte at `offset`.
    #[inline(always)]
    fn byte(&self, offset: usize) -> u8 {
        self.pair(offset & !1)[offset % 2]
    }
}

/// One classified frame: its kind, and for TCP to the watched port its segment, whose flags
/// give the handshake kind counted in addition and which the capture picks segments by.
pub struct Classified {
    pub kind: PacketKind,
    /// The frame's EtherType; 0 for a frame shorter than an ARP or IPv4 head.
    pub ethertype: u16,
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

    /// The handshake kind counted in addition to `TcpPort`, for a SYN, SYN-ACK or RST.
    #[inline(always)]
    pub fn handshake(&self) -> Option<PacketKind> {
        let flags = self.tcp()?.flags;
        if flags & TCP_RST != 0 {
            Some(PacketKind::TcpRst)
        } else if flags & TCP_SYN != 0 && flags & TCP_ACK != 0 {
            Some(PacketKind::TcpSynAck)
        } else if flags & TCP_SYN != 0 {
            Some(PacketKind::TcpSyn)
        } else {
            None
        }
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
/// The Ethernet header and the start of an ARP or IPv4 header: all that is read before the
/// transport header, in one read (one bounds check on the hot path). No ARP or IPv4 frame is
/// shorter.
type Head = Words<{ (ETH_HLEN + 10) / 2 }>;
const ETHERTYPE_OFFSET: usize = 12;
const ARP_OPER_OFFSET: usize = ETH_HLEN + 6;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;
const IPV4_VERSION_IHL_OFFSET: usize = ETH_HLEN;
const IPV4_FRAG_OFFSET: usize = ETH_HLEN + 6;
const IPV4_PROTO_OFFSET: usize = ETH_HLEN + 9;
const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const ICMP_ECHOREPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO: u8 = 8;
/// The TCP header up to its flags byte: ports (0..4) and flags (13), in one read.
type TcpHead = Words<7>;
const TCP_FLAGS_OFFSET: usize = 13;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

const fn only(kind: PacketKind, ethertype: u16) -> Classified {
    Classified {
        kind,
        ethertype,
        segment: TcpSegment {
            flags: 0,
            ports: [0; 4],
        },
    }
}

/// What classification reads of [`Head`].
struct HeadFields {
    ethertype: u16,
    arp_oper: u16,
    version_ihl: u8,
    fragment: u16,
    protocol: u8,
}

/// `watched_port` is only called for a TCP segment: the frames of other protocols read
/// nothing more than their headers.
#[inline(always)]
pub fn classify<F: Frame>(frame: &F, watched_port: impl Fn() -> u16) -> Classified {
    let Some(head) = frame.fields(0, 0, |head: &Head| HeadFields {
        ethertype: head.be16(ETHERTYPE_OFFSET),
        arp_oper: head.be16(ARP_OPER_OFFSET),
        version_ihl: head.byte(IPV4_VERSION_IHL_OFFSET),
        fragment: head.be16(IPV4_FRAG_OFFSET),
        protocol: head.byte(IPV4_PROTO_OFFSET),
    }) else {
        return only(PacketKind::Other, 0);
    };
    match head.ethertype {
        ETH_P_ARP => classify_arp(&head),
        ETH_P_IP => classify_ipv4(frame, &head, watched_port),
        ethertype => only(PacketKind::Other, ethertype),
    }
}

#[inline(always)]
fn classify_arp(head: &HeadFields) -> Classified {
    let kind = match head.arp_oper {
        ARPOP_REQUEST => PacketKind::ArpRequest,
        ARPOP_REPLY => PacketKind::ArpReply,
        _ => PacketKind::Other,
    };
    only(kind, ETH_P_ARP)
}

#[inline(always)]
fn classify_ipv4<F: Frame>(
    frame: &F,
    head: &HeadFields,
    watched_port: impl Fn() -> u16,
) -> Classified {
    // A protocol tracer does not look into (a UDP flood, say) is done before the header's
    // other checks.
    if head.protocol != IPPROTO_ICMP && head.protocol != IPPROTO_TCP {
        return only(PacketKind::Other, ETH_P_IP);
    }
    let header_len = usize::from(head.version_ihl & 0x0f) * 4;
    // Only the first fragment carries the transport header.
    if head.version_ihl >> 4 != 4 || header_len < 20 || head.fragment & IPV4_FRAG_OFFSET_MASK != 0 {
        return only(PacketKind::Other, ETH_P_IP);
    }
    let transport = ETH_HLEN + header_len;
    match head.protocol {
        IPPROTO_ICMP => classify_icmp(frame, transport),
        IPPROTO_TCP => classify_tcp(frame, transport, watched_port),
        _ => only(PacketKind::Other, ETH_P_IP),
    }
}

#[inline(always)]
fn classify_icmp<F: Frame>(frame: &F, transport: usize) -> Classified {
    // Type and code together: a one-byte read at a variable offset compiles to a bounds check
    // the verifier cannot use.
    let kind = match frame
        .read::<[u8; 2]>(transport, 0)
        .map(|[icmp_type, _code]| icmp_type)
    {
        Some(ICMP_ECHO) => PacketKind::IcmpEchoRequest,
        Some(ICMP_ECHOREPLY) => PacketKind::IcmpEchoReply,
        Some(ICMP_DEST_UNREACH) => PacketKind::IcmpUnreachable,
        _ => PacketKind::Other,
    };
    only(kind, ETH_P_IP)
}

#[inline(always)]
fn classify_tcp<F: Frame>(
    frame: &F,
    transport: usize,
    watched_port: impl Fn() -> u16,
) -> Classified {
    let Some((source, destination, segment)) = frame.fields(transport, 0, |tcp: &TcpHead| {
        let ([a, b], [c, d]) = (tcp.pair(0), tcp.pair(2));
        let segment = TcpSegment {
            flags: tcp.byte(TCP_FLAGS_OFFSET),
            ports: [a, b, c, d],
        };
        (tcp.be16(0), tcp.be16(2), segment)
    }) else {
        return only(PacketKind::Other, ETH_P_IP);
    };
    let watched_port = watched_port();
    if source != watched_port && destination != watched_port {
        return only(PacketKind::Other, ETH_P_IP);
    }
    Classified {
        kind: PacketKind::TcpPort,
        ethertype: ETH_P_IP,
        segment,
    }
}

/// Where an IPv4 header's source and destination addresses are (8 bytes).
pub const IPV4_ADDRESSES_OFFSET: usize = ETH_HLEN + 12;

/// Size check written as the verifier wants it: the variable part is already in `start`.
#[inline(always)]
pub fn fits<T>(start: usize, offset: usize, end: usize) -> bool {
    start + offset + size_of::<T>() <= end
}
