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

/// Index into a port's `PACKET_COUNTERS` per-CPU array.
#[inline(always)]
pub const fn counter_index(direction: Direction, kind: PacketKind) -> u32 {
    direction as u32 * PacketKind::COUNT + kind as u32
}

/// Number of entries in a port's `PACKET_COUNTERS` array.
pub const PACKET_COUNTER_ENTRIES: u32 = Direction::COUNT * PacketKind::COUNT;

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
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    /// Inode number of the device's network namespace, else of the socket's (0: neither).
    pub netns: u32,
    /// Interface index inside that namespace (0: the skb had no device).
    pub ifindex: u32,
    /// The running kernel's `enum skb_drop_reason` value.
    pub reason: u32,
    /// `skb->protocol` in host byte order (an EtherType).
    pub protocol: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<DropKey>() == 16);

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
}
const _: () = assert!(size_of::<KernelOffsets>() == 28);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: plain `#[repr(C)]` integers and bytes without implicit padding.
    unsafe impl aya::Pod for super::CapturedFrame {}
    // SAFETY: plain `#[repr(C)]` integers without padding.
    unsafe impl aya::Pod for super::KernelOffsets {}
}
