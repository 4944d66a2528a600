//! Another tool's BPF program on a port takes the probes: on tc ingress behind tracer's own
//! counting (the frames were counted arriving and went no further), or on XDP, ahead of
//! tracer's tc counting (the frames were never counted).

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{AttachedProgram, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::netns_exec,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramTakesProbes {
    pub port: PortRef,
    /// "xdp", "tc ingress" or "tc egress".
    pub hook: String,
    pub programs: Vec<AttachedProgram>,
}

impl ProgramTakesProbes {
    fn names(&self) -> String {
        self.programs
            .iter()
            .map(|program| format!("{} (id {})", program.name, program.id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let failed = context.failures()?;
    for probe in failed {
        let peer = probe.from.opposite();
        let stops = [
            // Requests arrived at the peer, nothing came back out of it.
            (
                peer,
                "tc ingress",
                probe.reached_peer > 0 && probe.answer_left_peer == 0,
            ),
            // Requests left, none counted arriving: the peer's XDP is ahead of tracer's tc.
            (
                peer,
                "xdp",
                probe.left_origin > 0 && probe.reached_peer == 0,
            ),
            // Answers arrived back and the probe still failed.
            (probe.from, "tc ingress", probe.answer_reached_origin > 0),
            (
                probe.from,
                "xdp",
                probe.answer_left_peer > 0 && probe.answer_reached_origin == 0,
            ),
        ];
        for (side, hook, stopped) in stops {
            let at = context.port(side);
            let programs: Vec<AttachedProgram> = at
                .programs
                .iter()
                .filter(|program| program.hook == hook)
                .cloned()
                .collect();
            if !stopped || programs.is_empty() {
                continue;
            }
            let facts: Vec<Fact> = programs
                .iter()
                .map(|program| Fact::Program {
                    port: PortRef::of(at),
                    program: program.clone(),
                })
                .collect();
            return Some(
                Verdict::new(
                    side,
                    ProgramTakesProbes {
                        port: PortRef::of(at),
                        hook: hook.to_owned(),
                        programs,
                    },
                )
                .because_all(facts)
                .because_all(context.failed_facts()),
            );
        }
    }
    None
}

impl Describe for ProgramTakesProbes {
    fn class(&self) -> VerdictClass {
        VerdictClass::Program
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "A BPF program on {}'s {} takes the probes: {}.",
            self.port.label(),
            self.hook,
            self.names()
        )
    }

    fn advice(&self, _: Side) -> String {
        let ids: Vec<String> = self.programs.iter().map(|p| p.id.to_string()).collect();
        format!(
            "Find who attached it ({}bpftool prog show id {}; bpftool net) and why it drops these frames.",
            netns_exec(&self.port.netns),
            ids.join(" ")
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
    }

    fn named_thing(&self) -> Option<String> {
        Some(format!("{}: {}", self.hook, self.names()))
    }
}

#[cfg(test)]
pub(crate) fn example() -> ProgramTakesProbes {
    ProgramTakesProbes {
        port: super::example::target(),
        hook: "tc ingress".to_owned(),
        programs: vec![AttachedProgram {
            id: 42,
            name: "drop_icmp".to_owned(),
            hook: "tc ingress".to_owned(),
            attachment: "tcx".to_owned(),
            position: 0,
        }],
    }
}
