//! Empty pass-through programs: the yardstick `tracer-bench` measures the counting programs
//! against. Whatever BPF_PROG_TEST_RUN costs by itself shows up here too, so the difference
//! is what counting adds.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[xdp]
pub fn baseline_ingress(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The same verdict as the counting program: tcx's "next", which keeps the chain going.
#[classifier]
pub fn baseline_egress(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// The same on tcx ingress, where tracer counts by default.
#[classifier]
pub fn baseline_ingress_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
