//! `[NETNS/]IFNAME` port specs from the command line: any string parses or is refused, and what
//! parses prints back to a spec that parses to the same port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::spec::PortSpec;

fuzz_target!(|text: &str| {
    let Ok(spec) = text.parse::<PortSpec>() else {
        return;
    };
    assert!(
        (1..=15).contains(&spec.interface.len()),
        "interface {:?}",
        spec.interface
    );
    assert!(
        !spec.interface.contains('/') && !spec.netns.contains('/'),
        "{spec:?}"
    );
    let printed = spec.to_string();
    let again: PortSpec = printed
        .parse()
        .unwrap_or_else(|err| panic!("{spec:?} printed as {printed:?}, which fails: {err}"));
    assert_eq!(again, spec);
});
