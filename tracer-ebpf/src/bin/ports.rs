//! Packet counters for one watched port: XDP on ingress, tc (tcx) on egress.
//!
//! The loader loads this object once per port, so the counters need no interface key. Both
//! programs only read: every path returns pass.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    bindings::{TC_ACT_PIPE, xdp_action},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use tracer_common::{Direction, PACKET_COUNTER_ENTRIES, PacketKind, counter_index};
use tracer_ebpf::classify::{Frame, classify, fits};

/// The TCP port whose segments are counted as `tcp_port` (host byte order).
#[unsafe(no_mangle)]
static WATCHED_PORT: Global<u16> = Global::new(4420);

#[map]
static PACKET_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(PACKET_COUNTER_ENTRIES, 0);

struct XdpFrame {
    data: usize,
    end: usize,
}

impl Frame for XdpFrame {
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

struct SkbFrame<'a>(&'a TcContext);

impl Frame for SkbFrame<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, base: usize, offset: usize) -> Option<T> {
        self.0.load(base + offset).ok()
    }
}

#[inline(always)]
fn increment(direction: Direction, kind: PacketKind) {
    if let Some(counter) = PACKET_COUNTERS.get_ptr_mut(counter_index(direction, kind)) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn count<F: Frame>(frame: &F, direction: Direction) {
    let classified = classify(frame, WATCHED_PORT.load());
    increment(direction, classified.kind);
    if let Some(kind) = classified.tcp_flags_kind {
        increment(direction, kind);
    }
}

#[xdp]
pub fn tracer_ingress(ctx: XdpContext) -> u32 {
    let frame = XdpFrame {
        data: ctx.data(),
        end: ctx.data_end(),
    };
    count(&frame, Direction::Ingress);
    xdp_action::XDP_PASS
}

#[classifier]
pub fn tracer_egress(ctx: TcContext) -> i32 {
    count(&SkbFrame(&ctx), Direction::Egress);
    TC_ACT_PIPE as i32
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
