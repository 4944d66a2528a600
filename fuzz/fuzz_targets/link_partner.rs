//! Frames from the wire and ethtool netlink replies: the LLDP decoder, the cable-frame decoder
//! and the ethtool parsers must return, never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    std::hint::black_box(tracer::lldp::partner(bytes));
    std::hint::black_box(tracer::cable_frame::CableFrame::decode(bytes));
    std::hint::black_box(tracer::ethtool::parse_for_fuzzing(bytes));
});
