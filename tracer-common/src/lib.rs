//! Types shared by the kernel programs (tracer-ebpf) and the loader (tracer).
//!
//! Everything here is `#[repr(C)]`, free of implicit padding and of `bool`, so that both sides
//! agree on the bytes.
#![no_std]

/// What a counted frame was. The discriminant is the counter's index within one direction.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    ArpRequest = 0,
    ArpReply = 1,
    IcmpEchoRequest = 2,
    IcmpEchoReply = 3,
    IcmpUnreachable = 4,
    /// Any TCP segment from or to the watched port.
    TcpPort = 5,
    /// The three below are counted in addition to `TcpPort`.
    TcpSyn = 6,
    TcpSynAck = 7,
    TcpRst = 8,
    Other = 9,
}

impl PacketKind {
    pub const COUNT: u32 = 10;
    pub const ALL: [Self; Self::COUNT as usize] = [
        Self::ArpRequest,
        Self::ArpReply,
        Self::IcmpEchoRequest,
        Self::IcmpEchoReply,
        Self::IcmpUnreachable,
        Self::TcpPort,
        Self::TcpSyn,
        Self::TcpSynAck,
        Self::TcpRst,
        Self::Other,
    ];

    /// The name used in JSON, tables and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ArpRequest => "arp_request",
            Self::ArpReply => "arp_reply",
            Self::IcmpEchoRequest => "icmp_echo_request",
            Self::IcmpEchoReply => "icmp_echo_reply",
            Self::IcmpUnreachable => "icmp_unreachable",
            Self::TcpPort => "tcp_port",
            Self::TcpSyn => "tcp_syn",
            Self::TcpSynAck => "tcp_syn_ack",
            Self::TcpRst => "tcp_rst",
            Self::Other => "other",
        }
    }
}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    pub const COUNT: u32 = 2;
}

/// One direction's counters in a port's `PACKET_COUNTERS`, a per-CPU array indexed by
/// `Direction`: frames by `PacketKind`, at the kind's discriminant. A program looks its row up
/// once, before it classifies the frame, and keeps no other value across that lookup.
pub type DirectionCounters = [u64; PacketKind::COUNT as usize];

/// The EtherType of tracer's own cable-map frames: IEEE 802's first local experimental one.
pub const ETH_P_TRACER_CABLE: u16 = 0x88b5;
/// LLDP (IEEE 802.1AB).
pub const ETH_P_LLDP: u16 = 0x88cc;

/// Bytes of each frame kept by the capture: enough for every header tracer classifies.
pub const CAPTURE_SNAPLEN: usize = 256;

/// A frame copied to user space when capture is on (only ARP, ICMP and port traffic).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CapturedFrame {
    /// CLOCK_MONOTONIC (bpf_ktime_get_ns).
    pub timestamp_ns: u64,
    /// The frame's length on the wire.
    pub frame_len: u32,
    /// How many bytes of `data` are valid.
    pub captured_len: u32,
    /// A `Direction`.
    pub direction: u8,
    /// A `PacketKind`.
    pub kind: u8,
    pub _pad: [u8; 6],
    pub data: [u8; CAPTURE_SNAPLEN],
}
const _: () = assert!(size_of::<CapturedFrame>() == 24 + CAPTURE_SNAPLEN);

/// Key of the `DROP_COUNTERS` map: one kernel drop site as seen by `kfree_skb`.
///
/// Only drops at a watched place (see [`WatchedPlace`]) or on a device of a watched name keep
/// their namespace and interface;
/// every other drop is counted under `netns == 0 && ifindex == 0`, so that a busy host cannot
/// fill the map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropKey {
    /// Inode number of the device's network namespace, else of the socket's (0: neither, or
    /// not a watched place).
    pub netns: u32,
    /// Interface index inside that namespace (0: the skb had no device).
    pub ifindex: u32,
    /// The running kernel's `enum skb_drop_reason` value; 0 on kernels without drop reasons.
    pub reason: u32,
    /// `skb->protocol` in host byte order (an EtherType).
    pub protocol: u16,
    pub _pad: u16,
    /// The code address that freed the skb, on kernels without drop reasons (0 otherwise): it
    /// names the dropping function through /proc/kallsyms.
    pub location: u64,
}
const _: () = assert!(size_of::<DropKey>() == 24);

/// `name` as an [`InterfaceName`]; `None` when it does not fit.
pub fn interface_name(name: &str) -> Option<InterfaceName> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= 16 {
        return None;
    }
    let mut padded = [0u8; 16];
    let mut i = 0;
    while i < bytes.len() {
        padded[i] = bytes[i];
        i += 1;
    }
    Some(padded)
}

/// Key of the drop probe's `WATCHED_PLACES` map: a (namespace, interface) whose drops are
/// kept apart. `ifindex == 0` stands for the drops in that namespace without a device
/// (a local socket's packets dropped before they had one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchedPlace {
    pub netns: u32,
    pub ifindex: u32,
}
const _: () = assert!(size_of::<WatchedPlace>() == 8);

/// Most places the drop probe keeps apart: both ports and their namespaces, with room for
/// the hops between them.
pub const WATCHED_PLACES_MAX: u32 = 64;

/// One direction of a TCP connection, for the capture's per-connection budget of data
/// segments. Addresses and ports as they are on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub addresses: [u8; 8],
    pub ports: [u8; 4],
}
const _: () = assert!(size_of::<FlowKey>() == 12);

/// Data segments (no SYN, FIN or RST) the capture keeps from each direction of a connection:
/// enough to see it carry data; the bulk is only counted.
pub const CAPTURED_DATA_SEGMENTS: u32 = 4;

/// Byte offsets of the kernel struct fields the drop probe reads. They differ between kernels,
/// so the loader reads them from the running kernel's BTF and patches them in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `sk_buff.dev`
    pub skb_dev: u32,
    /// `sk_buff.protocol`
    pub skb_protocol: u32,
    /// `net_device.ifindex`
    pub dev_ifindex: u32,
    /// `net_device.nd_net.net`
    pub dev_net: u32,
    /// `net.ns.inum`
    pub net_inum: u32,
    /// `sk_buff.sk`: locally sent packets may have no device yet, but a socket.
    pub skb_sk: u32,
    /// `sock.__sk_common.skc_net.net`
    pub sock_net: u32,
    /// `net_device.name`
    pub dev_name: u32,
}
const _: () = assert!(size_of::<KernelOffsets>() == 32);

/// An interface name as the kernel keeps it (`IFNAMSIZ`, NUL-padded): the drop probe keeps a
/// watched port's drops apart by its name too, so that a port moved to another namespace is
/// followed from its first drop there.
pub type InterfaceName = [u8; 16];

/// Most interface names the drop probe keeps apart.
pub const WATCHED_NAMES_MAX: u32 = 16;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: plain `#[repr(C)]` integers and bytes without implicit padding.
    unsafe impl aya::Pod for super::CapturedFrame {}
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::WatchedPlace {}
}
