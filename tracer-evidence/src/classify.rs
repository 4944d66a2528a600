//! The classifier: `diagnose(&Evidence) -> Verdict`, a pure function.
//!
//! It reads the evidence the way a person would: first what makes probing meaningless (a
//! missing or down port, no route), then, if a probe went unanswered, who took the packets
//! (netfilter, or another tool's BPF program on a port), whether they crossed the wire at all
//! (cable), whether the target answered ARP (neighbour), and what the kernel said otherwise
//! (unknown, with its drop reason). Each rule lives with its finding; this is their order, and
//! the first that holds wins.

use crate::{
    facts::{Evidence, Side},
    findings::{
        Context, Unanswered, address_elsewhere, address_removed, arp_unanswered, attached_late,
        cabled_elsewhere, carrier_late, carrier_lost, duplicate_address, frames_lost, hop_broken,
        interface_down, interface_missing, mtu_mismatch, namespace_missing, neighbour_mismatch,
        netfilter_drop, no_carrier, no_route, nothing_observed, path_works, port_elsewhere,
        program_takes_probes, reverse_path_filter, route_by_other_interface, rules_before_run,
        stale_bridge, stale_neighbour, transient_rule, unanswered, unexplained_drop,
    },
    verdict::Verdict,
};

type Rule = fn(&Context) -> Option<Verdict>;

/// The rules in the order they are asked. Rules that explain a failure hold only when a probe
/// failed; the others say so in their module.
const RULES: &[Rule] = &[
    namespace_missing::recognise,
    port_elsewhere::recognise,
    interface_missing::recognise,
    interface_down::recognise,
    // tracer's own frames show where a port is cabled, whatever the probes did.
    cabled_elsewhere::recognise,
    no_route::from_initiator,
    nothing_observed::recognise,
    // What watch placed in time, gone by the end: the state read then cannot show it.
    duplicate_address::recognise,
    transient_rule::recognise,
    carrier_lost::recognise,
    address_removed::recognise,
    stale_neighbour::recognise,
    netfilter_drop::recognise,
    program_takes_probes::recognise,
    // A loss in the moment tracer added a qdisc to an up port is tracer's own: no count of
    // the network's says more of that moment.
    attached_late::recognise,
    carrier_late::recognise,
    no_carrier::recognise,
    // A broken hop explains probes that never arrived, whichever way they left.
    hop_broken::recognise,
    route_by_other_interface::from_initiator,
    // Small probes pass; jumbo frames may still die on the way.
    mtu_mismatch::recognise,
    frames_lost::recognise,
    neighbour_mismatch::recognise,
    reverse_path_filter::recognise,
    arp_unanswered::recognise,
    // The target's way back matters only once ARP has shown it is there.
    no_route::from_target,
    route_by_other_interface::from_target,
    // The other layout version's peers in the bridge: a failure nothing above explains, or a
    // working path the next run may lose.
    stale_bridge::recognise,
    path_works::recognise,
    // A leftover address explains a failure only when nothing more precise does.
    address_elsewhere::recognise,
    rules_before_run::recognise,
    unexplained_drop::recognise,
    unanswered::recognise,
];

pub fn diagnose(evidence: &Evidence) -> Verdict {
    let context = Context::new(evidence);
    RULES
        .iter()
        .find_map(|rule| rule(&context))
        // Unreachable: either a probe failed (`unanswered` holds) or none did (`path_works`).
        .unwrap_or_else(|| Verdict::new(Side::None, Unanswered {}))
}

#[cfg(test)]
mod tests;
