//! For the integration tests only: "another tool's" tc program that drops every IPv4 ICMP
//! frame, so that the tests can check that tracer still counts what it takes and names it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};

const ETH_P_IP: u16 = 0x0800;
const IPPROTO_ICMP: u8 = 1;
/// Offsets in an Ethernet frame carrying IPv4.
const ETHERTYPE_OFFSET: usize = 12;
const IPV4_PROTO_OFFSET: usize = 14 + 9;

#[classifier]
pub fn test_drop_icmp(ctx: TcContext) -> i32 {
    let ethertype = ctx
        .load::<[u8; 2]>(ETHERTYPE_OFFSET)
        .map(u16::from_be_bytes);
    let protocol = ctx.load::<u8>(IPV4_PROTO_OFFSET);
    match (ethertype, protocol) {
        (Ok(ETH_P_IP), Ok(IPPROTO_ICMP)) => TC_ACT_SHOT,
        _ => TC_ACT_UNSPEC,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
