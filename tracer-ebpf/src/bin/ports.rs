//! Packet counters for one watched port: XDP on ingress, tc (tcx) on egress, and a tc ingress
//! program for when another tool holds the port's XDP hook.
//!
//! The loader loads this object once per port, so the counters need no interface key. Every
//! program only reads: every path returns pass. With `CAPTURE` set, ARP, ICMP and port frames
//! are also copied to `CAPTURED_FRAMES` for the pcapng capture.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    Global,
    bindings::{TC_ACT_UNSPEC, xdp_action},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    macros::{classifier, map, xdp},
    maps::{PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use tracer_common::{
    CAPTURE_SNAPLEN, CapturedFrame, Direction, PACKET_COUNTER_ENTRIES, PacketKind, counter_index,
};
use tracer_ebpf::classify::{Frame, classify, fits};

/// The TCP port whose segments are counted as `tcp_port` (host byte order).
#[unsafe(no_mangle)]
static WATCHED_PORT: Global<u16> = Global::new(4420);

/// Nonzero: copy ARP, ICMP and port frames to `CAPTURED_FRAMES`.
#[unsafe(no_mangle)]
static CAPTURE: Global<u8> = Global::new(0);

#[map]
static PACKET_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PACKET_COUNTER_ENTRIES, 0);

#[map]
static CAPTURED_FRAMES: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

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
    fn read<T: Copy>(&self, base: usize, offset: usize) -> Option<T> {
        let start = self.data + base;
        if !fits::<T>(start, offset, self.end) {
            return None;
        }
        // SAFETY: bounds checked against data_end just above.
        Some(unsafe { ((start + offset) as *const T).read_unaligned() })
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
    fn read<T: Copy>(&self, base: usize, offset: usize) -> Option<T> {
        self.linear
            .read(base, offset)
            .or_else(|| self.ctx.load(base + offset).ok())
    }
}

#[inline(always)]
fn increment(direction: Direction, kind: PacketKind, frames: u64) {
    if let Some(counter) = PACKET_COUNTERS.get_ptr_mut(counter_index(direction, kind)) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *counter += frames };
    }
}

/// Counts a packet that stands for `frames` wire frames and returns its kind. Handshake flags
/// are counted once: a segmentation offload never splits a SYN or a RST.
#[inline(always)]
fn count<F: Frame>(frame: &F, direction: Direction, frames: u64) -> PacketKind {
    let classified = classify(frame, WATCHED_PORT.load());
    increment(direction, classified.kind, frames);
    if let Some(kind) = classified.tcp_flags_kind {
        increment(direction, kind, 1);
    }
    classified.kind
}

/// Copies up to CAPTURE_SNAPLEN bytes of a frame with `copy(dst, len)` into the ring buffer.
#[inline(always)]
fn capture(
    direction: Direction,
    kind: PacketKind,
    frame_len: u32,
    copy: impl FnOnce(*mut u8, u32) -> bool,
) {
    if CAPTURE.load() == 0 || kind == PacketKind::Other {
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

/// Hides `len` from LLVM so that the bounds checks that follow stay on the very register the
/// helper receives: otherwise LLVM proves them from other values and the verifier, which
/// cannot, rejects a possibly zero-sized copy.
#[inline(always)]
fn verifier_bounded(len: u32) -> u32 {
    // SAFETY: a volatile read of a local.
    unsafe { core::ptr::read_volatile(&len) }
}

#[xdp]
pub fn tracer_ingress(ctx: XdpContext) -> u32 {
    let frame = LinearFrame {
        data: ctx.data(),
        end: ctx.data_end(),
    };
    let kind = count(&frame, Direction::Ingress, 1);
    let frame_len = (frame.end - frame.data) as u32;
    capture(Direction::Ingress, kind, frame_len, |dst, len| {
        let len = verifier_bounded(len);
        if len == 0 || len > CAPTURE_SNAPLEN as u32 {
            return false;
        }
        // SAFETY: dst has CAPTURE_SNAPLEN bytes; the helper checks the packet bounds.
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, dst.cast::<c_void>(), len) == 0 }
    });
    xdp_action::XDP_PASS
}

#[inline(always)]
fn tc(ctx: &TcContext, direction: Direction) -> i32 {
    let frame = SkbFrame {
        linear: LinearFrame {
            data: ctx.data(),
            end: ctx.data_end(),
        },
        ctx,
    };
    // tc sees a GSO packet before the device splits it (egress) or after GRO merged it
    // (ingress): count the wire frames it stands for, as XDP on the other end does.
    // SAFETY: ctx.skb.skb is the program's valid __sk_buff context.
    let segments = unsafe { (*ctx.skb.skb).gso_segs };
    let kind = count(&frame, direction, u64::from(segments.max(1)));
    capture(direction, kind, ctx.len(), |dst, len| {
        let len = verifier_bounded(len);
        if len == 0 || len > CAPTURE_SNAPLEN as u32 {
            return false;
        }
        // SAFETY: dst has CAPTURE_SNAPLEN bytes; the helper checks the packet bounds.
        unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), 0, dst.cast::<c_void>(), len) == 0 }
    });
    // TC_ACT_UNSPEC is tcx's TCX_NEXT: the programs attached after ours still run (any other
    // code, TC_ACT_PIPE included, ends the tcx chain).
    TC_ACT_UNSPEC
}

#[classifier]
pub fn tracer_egress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Egress)
}

/// Ingress counting through tc, used when another program holds the port's XDP hook.
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
