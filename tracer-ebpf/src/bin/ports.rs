//! Packet counters for one watched port: tc on ingress and egress, and an XDP ingress program
//! for those who ask for frames before GRO.
//!
//! The loader loads this object once per port, so the counters need no interface key. Every
//! program only reads: every path returns pass. With `CAPTURE` set, the frames that explain a
//! failure are also copied to `CAPTURED_FRAMES` for the pcapng capture: ARP, ICMP, segments of
//! the watched port that open or end a connection, the first few data segments of each
//! connection (the bulk is only counted), tracer's own cable-map frames and LLDP.
//!
//! The bulk is what a storage test sends, so it touches no hash map: a connection direction
//! is tracked from its SYN only while it is young (`YOUNG_FLOWS`), a slot counter shared by a
//! few flows (`YOUNG_SLOTS`, an array read) says when a segment's flow cannot be young, and
//! once no connection is young (`YOUNG_FLOW_COUNT`) a segment reads not even its addresses.
//!
//! Every frame pays one cache line of counters (cold in a flood, where it is most of what a
//! program costs), so the rest is kept small: a program looks its direction's row up once,
//! reads `WATCHED_PORT` only for TCP and `CAPTURE` only for a frame the capture may keep, and
//! the capture is a subprogram of its own.
#![no_std]
#![no_main]
// The BPF target has atomic adds (BPF_XADD) but no compare-and-swap, so core's atomic types
// offer no fetch_add: the intrinsic is what they would call.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_xadd},
};

use aya_ebpf::{
    Global,
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC, xdp_action},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    macros::{classifier, map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tracer_common::{
    CAPTURE_SNAPLEN, CAPTURED_DATA_SEGMENTS, CapturedFrame, Direction, DirectionCounters,
    ETH_P_LLDP, ETH_P_TRACER_CABLE, FlowKey, PacketKind,
};
use tracer_ebpf::classify::{Classified, Frame, IPV4_ADDRESSES_OFFSET, TcpSegment, classify, fits};

/// The TCP port whose segments are counted as `tcp_port` (host byte order).
#[unsafe(no_mangle)]
static WATCHED_PORT: Global<u16> = Global::new(4420);

/// Nonzero: copy ARP, ICMP, port, cable-map and LLDP frames to `CAPTURED_FRAMES`.
#[unsafe(no_mangle)]
static CAPTURE: Global<u8> = Global::new(0);

/// A row of counters per direction (see `DirectionCounters`).
#[map]
static PACKET_COUNTERS: PerCpuArray<DirectionCounters> =
    PerCpuArray::with_max_entries(Direction::COUNT, 0);

#[map]
static CAPTURED_FRAMES: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Data segments captured so far per connection direction, from its SYN (or SYN-ACK) until
/// its first few are kept or it ends; least recently used ones go first.
#[map]
static YOUNG_FLOWS: LruHashMap<FlowKey, u32> = LruHashMap::with_max_entries(4096, 0);

/// Flows in `YOUNG_FLOWS` per slot of a flow hash: a segment whose slot holds none belongs
/// to no young flow, and skips the hash map. Only the CPU that inserted (deleted) a flow
/// counts it up (down); a flow the LRU evicted stays counted, which only costs its slot's
/// flows a lookup.
#[map]
static YOUNG_SLOTS: Array<u64> = Array::with_max_entries(YOUNG_SLOT_COUNT, 0);

const YOUNG_SLOT_COUNT: u32 = 1024;

/// All of `YOUNG_SLOTS`' flows, counted the same way. Zero once every connection is past its
/// first segments (the usual case): a data segment then reads neither its addresses nor its
/// slot. A connection that never ends keeps it above zero, which costs what the slots cost.
#[map]
static YOUNG_FLOW_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// Frames that could not be captured because the ring buffer was full.
#[map]
static CAPTURE_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// A frame read straight from packet memory (XDP's frame, or an skb's linear part).
struct LinearFrame {
    data: usize,
    end: usize,
}

impl Frame for LinearFrame {
    #[inline(always)]
    fn fields<T: Copy, R>(&self, base: usize, offset: usize, pick: impl Fn(&T) -> R) -> Option<R> {
        const { assert!(align_of::<T>() <= 2) };
        let start = self.data + base;
        if !fits::<T>(start, offset, self.end) {
            return None;
        }
        // SAFETY: bounds checked against data_end just above; `T` is aligned as the frame
        // (see `Frame::fields`).
        Some(pick(unsafe { &*((start + offset) as *const T) }))
    }
}

/// An skb: its linear part directly (no helper call on the hot path), the rest through
/// bpf_skb_load_bytes for the rare header that is not in the linear part.
struct SkbFrame<'a> {
    linear: LinearFrame,
    ctx: &'a TcContext,
}

impl Frame for SkbFrame<'_> {
    #[inline(always)]
    fn fields<T: Copy, R>(&self, base: usize, offset: usize, pick: impl Fn(&T) -> R) -> Option<R> {
        self.linear.fields(base, offset, &pick).or_else(|| {
            let copy: T = self.ctx.load(base + offset).ok()?;
            Some(pick(&copy))
        })
    }
}

#[inline(always)]
fn increment(counters: *mut DirectionCounters, kind: PacketKind, frames: u64) {
    // SAFETY: a per-CPU map value, only this CPU writes it.
    if let Some(counter) = unsafe { (*counters).get_mut(kind as usize) } {
        *counter += frames;
    }
}

/// Counts a packet that stands for `frames()` wire frames, and hands it to `capture` when the
/// capture may keep it. Handshake flags are counted once: a segmentation offload never splits
/// a SYN or a RST.
#[inline(always)]
fn count<F: Frame>(
    frame: &F,
    direction: Direction,
    frames: impl FnOnce() -> u64,
    capture: impl FnOnce(PacketKind, Option<TcpSegment>),
) {
    // Looked up first: to LLVM the lookup is a call, and each value that lived across it
    // would take one of four registers or a stack slot.
    let Some(counters) = PACKET_COUNTERS.get_ptr_mut(direction as u32) else {
        return;
    };
    let classified = classify(frame, || WATCHED_PORT.load());
    increment(counters, classified.kind, frames());
    if let Some(kind) = classified.handshake() {
        increment(counters, kind, 1);
    }
    if capture_may_keep(&classified) {
        capture(classified.kind, classified.tcp());
    }
}

/// Whether the capture may keep this frame, from what classification found alone: everything
/// tracer classifies but data segments while no connection is young, the bulk that would
/// crowd the history out of the ring. Cheap, and inline: every frame asks it.
#[inline(always)]
fn capture_may_keep(classified: &Classified) -> bool {
    // What is in registers first: a frame of another protocol reads no memory at all.
    if classified.kind == PacketKind::Other {
        // Counted as other, but kept: tracer's cable frames and LLDP name who is at the far end.
        return matches!(classified.ethertype, ETH_P_TRACER_CABLE | ETH_P_LLDP)
            && CAPTURE.load() != 0;
    }
    CAPTURE.load() != 0
        && classified
            .tcp()
            .is_none_or(|segment| segment.opens() || segment.ends() || any_young_flow())
}

/// Whether the capture keeps a frame it may keep: a data segment only among the first few of
/// its connection.
#[inline(always)]
fn capture_keeps<F: Frame>(frame: &F, segment: Option<TcpSegment>) -> bool {
    let Some(segment) = segment else {
        return true;
    };
    let Some(addresses) = frame.read::<[u8; 8]>(0, IPV4_ADDRESSES_OFFSET) else {
        return false;
    };
    keep_segment(
        Flow {
            addresses: u64::from_ne_bytes(addresses),
            ports: u32::from_ne_bytes(segment.ports),
        },
        segment,
    )
}

/// One direction of a connection as whole words, kept in registers: its slot and its
/// reversal are a few word operations, and a `FlowKey` is only written for the map helpers.
#[derive(Clone, Copy)]
struct Flow {
    /// Source and destination address, as on the wire.
    addresses: u64,
    /// Source and destination port, as on the wire.
    ports: u32,
}

impl Flow {
    #[inline(always)]
    fn key(self) -> FlowKey {
        FlowKey {
            addresses: self.addresses.to_ne_bytes(),
            ports: self.ports.to_ne_bytes(),
        }
    }

    /// The other direction: each word's halves swapped, in either byte order.
    #[inline(always)]
    fn reversed(self) -> Self {
        Self {
            addresses: self.addresses.rotate_left(32),
            ports: self.ports.rotate_left(16),
        }
    }

    /// Its slot in `YOUNG_SLOTS`: its words folded (both directions share one).
    #[inline(always)]
    fn slot(self) -> u32 {
        let mut hash = self.addresses as u32 ^ (self.addresses >> 32) as u32 ^ self.ports;
        hash ^= hash >> 16;
        hash ^= hash >> 8;
        hash & (YOUNG_SLOT_COUNT - 1)
    }
}

/// Whether the capture keeps a segment of the watched port: SYN, FIN and RST always, and the
/// first few data segments of each connection direction whose SYN was seen.
#[inline(always)]
fn keep_segment(flow: Flow, segment: TcpSegment) -> bool {
    if segment.opens() {
        young_flow_begins(flow);
        return true;
    }
    if segment.ends() {
        young_flow_ends(flow);
        if segment.resets() {
            // No FIN will end the other direction.
            young_flow_ends(flow.reversed());
        }
        return true;
    }
    let Some(slot) = YOUNG_SLOTS.get_ptr(flow.slot()) else {
        return false;
    };
    // SAFETY: an array value; a stale read only costs or saves one lookup.
    if unsafe { *slot } == 0 {
        return false;
    }
    let Some(captured) = YOUNG_FLOWS.get_ptr_mut(flow.key()) else {
        return false;
    };
    // SAFETY: a map value; a racing CPU can at worst let one extra segment through.
    let captured = unsafe {
        *captured += 1;
        *captured
    };
    if captured >= CAPTURED_DATA_SEGMENTS {
        // Grown up: its later segments skip the map.
        young_flow_ends(flow);
    }
    captured <= CAPTURED_DATA_SEGMENTS
}

/// A SYN or SYN-ACK: this direction starts its budget of data segments (again, for a new
/// connection on the same addresses and ports).
#[inline(always)]
fn young_flow_begins(flow: Flow) {
    if let Some(captured) = YOUNG_FLOWS.get_ptr_mut(flow.key()) {
        // SAFETY: a map value.
        unsafe { *captured = 0 };
    } else if YOUNG_FLOWS
        .insert(flow.key(), 0, BPF_NOEXIST.into())
        .is_ok()
    {
        // Only the CPU whose insert succeeds counts it up.
        count_young(flow, 1);
    }
}

#[inline(always)]
fn young_flow_ends(flow: Flow) {
    // Only the CPU whose delete succeeds counts it down.
    if YOUNG_FLOWS.remove(flow.key()).is_ok() {
        count_young(flow, u64::MAX);
    }
}

/// Counts a young flow in (`delta` 1) or out (u64::MAX, which wraps) of its slot and of the
/// count of all young flows, atomically.
#[inline(always)]
fn count_young(flow: Flow, delta: u64) {
    add_atomically(YOUNG_SLOTS.get_ptr_mut(flow.slot()), delta);
    add_atomically(YOUNG_FLOW_COUNT.get_ptr_mut(0), delta);
}

#[inline(always)]
fn add_atomically(count: Option<*mut u64>, delta: u64) {
    if let Some(count) = count {
        // SAFETY: an aligned u64 array value; every writer adds atomically (BPF_XADD).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, delta) };
    }
}

/// Whether any connection direction may still be young.
#[inline(always)]
fn any_young_flow() -> bool {
    // SAFETY: an array value; a stale read only costs or saves one lookup.
    YOUNG_FLOW_COUNT
        .get_ptr(0)
        .is_some_and(|count| unsafe { *count } != 0)
}

/// Copies up to CAPTURE_SNAPLEN bytes of a frame the capture keeps with `copy(dst, len)` into
/// the ring buffer.
#[inline(always)]
fn capture<F: Frame>(
    frame: &F,
    direction: Direction,
    kind: PacketKind,
    segment: Option<TcpSegment>,
    frame_len: u32,
    copy: impl FnOnce(*mut u8, u32) -> bool,
) {
    if !capture_keeps(frame, segment) {
        return;
    }
    let Some(mut entry) = CAPTURED_FRAMES.reserve::<CapturedFrame>(0) else {
        if let Some(lost) = CAPTURE_LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU writes it.
            unsafe { *lost += 1 };
        }
        return;
    };
    let captured_len = frame_len.min(CAPTURE_SNAPLEN as u32);
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at reserved ring buffer memory of CapturedFrame's size.
    let copied = unsafe {
        (*record).timestamp_ns = bpf_ktime_get_ns();
        (*record).frame_len = frame_len;
        (*record).captured_len = captured_len;
        (*record).direction = direction as u8;
        (*record).kind = kind as u8;
        (*record)._pad = [0; 6];
        captured_len > 0 && copy((*record).data.as_mut_ptr(), captured_len)
    };
    if copied {
        entry.submit(0);
    } else {
        entry.discard(0);
    }
}

/// The length to copy for a frame of `len` bytes, as the verifier must see it: between 1 and
/// CAPTURE_SNAPLEN on the very register the helper receives. `None` for nothing to copy.
///
/// The volatile read hides `len` from LLVM, which would otherwise prove the bounds from other
/// values the verifier cannot follow; the mask and add give the lower bound that verifiers
/// before 6.x do not learn from `len != 0`.
#[inline(always)]
fn copy_len(len: u32) -> Option<u32> {
    // SAFETY: a volatile read of a local.
    let len = unsafe { core::ptr::read_volatile(&len) };
    if len == 0 || len > CAPTURE_SNAPLEN as u32 {
        return None;
    }
    Some(((len - 1) & (CAPTURE_SNAPLEN as u32 - 1)) + 1)
}

/// Frags-aware: a program without multi-buffer support would cap the port's MTU.
#[xdp(frags)]
pub fn tracer_ingress(ctx: XdpContext) -> u32 {
    xdp_ingress(&ctx)
}

/// For kernels before 5.18, which load no frags-aware program: the same, on one buffer.
#[xdp]
pub fn tracer_ingress_single_buffer(ctx: XdpContext) -> u32 {
    xdp_ingress(&ctx)
}

#[inline(always)]
fn xdp_ingress(ctx: &XdpContext) -> u32 {
    count(
        &linear_frame(ctx),
        Direction::Ingress,
        || 1,
        |kind, segment| capture_xdp(ctx, kind, segment),
    );
    xdp_action::XDP_PASS
}

#[inline(always)]
fn linear_frame(ctx: &XdpContext) -> LinearFrame {
    LinearFrame {
        data: ctx.data(),
        end: ctx.data_end(),
    }
}

/// The capture's part, a function of its own (a BPF subprogram): the counting path, which
/// every frame takes, stays short.
#[inline(never)]
fn capture_xdp(ctx: &XdpContext, kind: PacketKind, segment: Option<TcpSegment>) {
    let frame = linear_frame(ctx);
    // The first buffer's length: enough for every header the capture keeps.
    let frame_len = (frame.end - frame.data) as u32;
    capture(
        &frame,
        Direction::Ingress,
        kind,
        segment,
        frame_len,
        |dst, len| {
            let Some(len) = copy_len(len) else {
                return false;
            };
            // SAFETY: dst has CAPTURE_SNAPLEN bytes; the helper checks the packet bounds.
            unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, dst.cast::<c_void>(), len) == 0 }
        },
    );
}

#[inline(always)]
fn tc(ctx: &TcContext, direction: Direction) -> i32 {
    count(
        &skb_frame(ctx),
        direction,
        || {
            // tc sees a GSO packet before the device splits it (egress) or after GRO merged
            // it (ingress): count the wire frames it stands for, as XDP on the other end does.
            // SAFETY: ctx.skb.skb is the program's valid __sk_buff context.
            u64::from(unsafe { (*ctx.skb.skb).gso_segs }.max(1))
        },
        |kind, segment| capture_skb(ctx, direction, kind, segment),
    );
    // TC_ACT_UNSPEC is tcx's TCX_NEXT: the programs attached after ours still run (any other
    // code, TC_ACT_PIPE included, ends the tcx chain).
    TC_ACT_UNSPEC
}

#[inline(always)]
fn skb_frame(ctx: &TcContext) -> SkbFrame<'_> {
    SkbFrame {
        linear: LinearFrame {
            data: ctx.data(),
            end: ctx.data_end(),
        },
        ctx,
    }
}

/// As `capture_xdp`, for an skb.
#[inline(never)]
fn capture_skb(
    ctx: &TcContext,
    direction: Direction,
    kind: PacketKind,
    segment: Option<TcpSegment>,
) {
    capture(
        &skb_frame(ctx),
        direction,
        kind,
        segment,
        ctx.len(),
        |dst, len| {
            let Some(len) = copy_len(len) else {
                return false;
            };
            // SAFETY: dst has CAPTURE_SNAPLEN bytes; the helper checks the packet bounds.
            unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, dst.cast::<c_void>(), len) == 0 }
        },
    );
}

#[classifier]
pub fn tracer_egress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Egress)
}

/// Ingress counting through tc: the default, and where XDP cannot be attached.
#[classifier]
pub fn tracer_ingress_tc(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Ingress)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
