//! Raw BTF, as read from /sys/kernel/btf/vmlinux: parsing and then every lookup the drop probe
//! makes must return an answer or an error, never panic, loop or overflow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::btf::Btf;

/// The struct member paths tracer asks the kernel's BTF for (collect/drops.rs).
const MEMBER_PATHS: &[(&str, &[&str])] = &[
    ("sk_buff", &["dev"]),
    ("sk_buff", &["protocol"]),
    ("sk_buff", &["sk"]),
    ("net_device", &["ifindex"]),
    ("net_device", &["nd_net", "net"]),
    ("net", &["ns", "inum"]),
    ("sock", &["__sk_common", "skc_net", "net"]),
];

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else {
        return;
    };
    for (strukt, path) in MEMBER_PATHS {
        let _ = btf.member_offset(strukt, path);
    }
    if let Ok(variants) = btf.enum_variants("skb_drop_reason") {
        // Every variant was read from the input: there cannot be more than it has room for.
        assert!(
            variants.len() <= data.len() / 8,
            "{} variants",
            variants.len()
        );
    }
});
