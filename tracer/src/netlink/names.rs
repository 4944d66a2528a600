//! Kernel state numbers named as `ip` prints them.

use tracer_evidence::reasons::NeighbourState;

/// `IF_OPER_*` (uapi/linux/if.h) names, indexed by value, as `ip link` prints them lower-cased.
pub(super) const OPERSTATE_NAMES: [&str; 7] = [
    "unknown",
    "notpresent",
    "down",
    "lowerlayerdown",
    "testing",
    "dormant",
    "up",
];

/// `NUD_*` bits and their states, in the order `ip neigh` prints them.
pub(super) const NEIGHBOUR_STATE_BITS: [(u16, NeighbourState); 8] = [
    (libc::NUD_INCOMPLETE, NeighbourState::Incomplete),
    (libc::NUD_REACHABLE, NeighbourState::Reachable),
    (libc::NUD_STALE, NeighbourState::Stale),
    (libc::NUD_DELAY, NeighbourState::Delay),
    (libc::NUD_PROBE, NeighbourState::Probe),
    (libc::NUD_FAILED, NeighbourState::Failed),
    (libc::NUD_NOARP, NeighbourState::NoArp),
    (libc::NUD_PERMANENT, NeighbourState::Permanent),
];

pub(super) fn operstate_name(operstate: u8) -> String {
    OPERSTATE_NAMES
        .get(usize::from(operstate))
        .map_or_else(|| operstate.to_string(), |name| (*name).to_owned())
}

pub(super) fn neighbour_state_name(state: u16) -> String {
    if state == libc::NUD_NONE {
        return "NONE".to_owned();
    }
    let mut names: Vec<String> = NEIGHBOUR_STATE_BITS
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, known)| known.name().to_owned())
        .collect();
    let known = NEIGHBOUR_STATE_BITS
        .iter()
        .fold(0, |bits, (bit, _)| bits | bit);
    if state & !known != 0 {
        names.push(format!("{:#x}", state & !known));
    }
    names.join(" ")
}

/// `BR_STATE_*` (uapi/linux/if_bridge.h) names.
pub(super) fn bridge_port_state_name(state: u8) -> String {
    match state {
        0 => "disabled",
        1 => "listening",
        2 => "learning",
        3 => "forwarding",
        4 => "blocking",
        _ => return state.to_string(),
    }
    .to_owned()
}
