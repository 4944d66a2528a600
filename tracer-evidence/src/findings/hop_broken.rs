//! A hop between two veth peers does not pass frames on: frames left a port and did not reach
//! the other, and the walk of the path shows why.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{Hop, HopRole, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, Verdict},
    words::{hop_label, netns_exec},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopBroken {
    pub hop: Hop,
    pub problem: HopProblem,
}

/// Why a hop does not pass frames on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HopProblem {
    /// The veth peer is not a port of the bridge the other peer is in.
    NotInBridge { bridge: String },
    /// The two peers are ports of different bridges.
    DifferentBridges { bridge: String, other: String },
    Down,
    NoCarrier,
    /// A bridge port whose STP state is not forwarding.
    NotForwarding { state: String },
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let failed = context.failures()?;
    let path = context.evidence.path.as_ref()?;
    let lost = failed.iter().any(|probe| {
        probe.reached_peer < u64::from(probe.outcome.sent)
            || (probe.answer_left_peer > 0 && probe.answer_reached_origin < probe.answer_left_peer)
    });
    if !lost {
        return None;
    }
    let bridge = path
        .hops
        .iter()
        .find(|hop| hop.role == HopRole::Bridge)
        .map(|hop| hop.interface.clone());
    let (hop, problem) = path
        .hops
        .iter()
        .find_map(|hop| Some((hop.clone(), problem(hop, bridge.as_deref())?)))?;
    Some(
        Verdict::new(Side::Wire, HopBroken { hop, problem })
            .because_all(path.hops.iter().map(|hop| Fact::Hop { hop: hop.clone() }))
            .because_all(context.failed_facts()),
    )
}

/// What keeps a hop between the ports from passing frames on, if anything; `bridge` is the
/// path's bridge.
fn problem(hop: &Hop, bridge: Option<&str>) -> Option<HopProblem> {
    if hop.role == HopRole::Port || hop.role == HopRole::Cable {
        return None;
    }
    let link = hop.link.as_ref()?;
    if !link.admin_up {
        return Some(HopProblem::Down);
    }
    if !link.carrier {
        return Some(HopProblem::NoCarrier);
    }
    if hop.role != HopRole::VethPeer {
        return None;
    }
    match (bridge, &hop.bridge) {
        (Some(bridge), None) => Some(HopProblem::NotInBridge {
            bridge: bridge.to_owned(),
        }),
        (Some(bridge), Some(own)) if own != bridge => Some(HopProblem::DifferentBridges {
            bridge: bridge.to_owned(),
            other: own.clone(),
        }),
        _ => match link.bridge_port_state.as_deref() {
            Some(state) if state != "forwarding" => Some(HopProblem::NotForwarding {
                state: state.to_owned(),
            }),
            _ => None,
        },
    }
}

impl HopBroken {
    /// Why the hop does not pass frames on, in words.
    fn problem_text(&self) -> String {
        let interface = &self.hop.interface;
        match &self.problem {
            HopProblem::NotInBridge { bridge } => {
                format!("{interface} is not a port of {bridge}")
            }
            HopProblem::DifferentBridges { bridge, other } => format!(
                "{interface} is a port of {bridge}, its counterpart of {other}: two bridges, not one"
            ),
            HopProblem::Down => format!("{interface} is administratively down"),
            HopProblem::NoCarrier => format!("{interface} has no carrier"),
            HopProblem::NotForwarding { state } => {
                format!("bridge port {interface} is {state}, not forwarding")
            }
        }
    }
}

impl Describe for HopBroken {
    fn class(&self) -> VerdictClass {
        VerdictClass::Cable
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "Frames between the ports stop at {}: {}.",
            hop_label(&self.hop),
            self.problem_text()
        )
    }

    fn advice(&self, _: Side) -> String {
        let (exec, interface) = (netns_exec(&self.hop.netns), &self.hop.interface);
        match &self.problem {
            HopProblem::NotInBridge { bridge } | HopProblem::DifferentBridges { bridge, .. } => {
                format!("{exec}ip link set {interface} master {bridge}")
            }
            HopProblem::Down | HopProblem::NoCarrier => {
                format!("{exec}ip link set {interface} up (and its peer)")
            }
            HopProblem::NotForwarding { .. } => {
                format!("Check STP on the bridge ({exec}bridge link show dev {interface}).")
            }
        }
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.hop(&self.hop)
    }

    fn named_thing(&self) -> Option<String> {
        Some(self.problem_text())
    }
}

#[cfg(test)]
pub(crate) fn example() -> HopBroken {
    HopBroken {
        hop: Hop {
            role: HopRole::VethPeer,
            netns: "lab".to_owned(),
            interface: "target0_br".to_owned(),
            link: None,
            bridge: None,
        },
        problem: HopProblem::NotInBridge {
            bridge: "nvmf_br".to_owned(),
        },
    }
}
