//! rtnetlink datagrams as the kernel (or anyone writing to our netlink port) might send them:
//! every parser must return, never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    std::hint::black_box(tracer::netlink::parse_datagram_for_fuzzing(datagram));
});
