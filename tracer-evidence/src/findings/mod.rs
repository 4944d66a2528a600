//! What the classifier can find: one module per finding kind. Each holds what it needs from
//! the evidence, the rule that recognises it (`recognise`), its class, where on the path it
//! stops, and its words. The classifier (`crate::classify`) orders the rules; renderers ask a
//! finding through [`Describe`] and never take it apart.

use serde::{Deserialize, Serialize};

use crate::{
    class::VerdictClass,
    facts::{Evidence, Exchange, ExchangeKind, PortEvidence, RouteEvidence, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
};

/// What every finding kind answers.
pub trait Describe {
    fn class(&self) -> VerdictClass;
    /// The verdict in one sentence; `side` is the verdict's.
    fn summary(&self, side: Side) -> String;
    /// What to do about it.
    fn advice(&self, side: Side) -> String;
    /// The place on the path it names; `None` leaves it to where the probes' counts fell short.
    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop>;
    /// The thing to change, when it names one: a rule, a sysctl, an MTU, a hop's fault.
    fn named_thing(&self) -> Option<String> {
        None
    }
    /// What the picture's stop mark says.
    fn mark(&self) -> String {
        format!("✕ stops here: {}", self.class().name())
    }
}

/// Declares the finding kinds: each variant's type lives in its own module. The enum is saved
/// in report.json, tagged by `kind`.
macro_rules! finding_kinds {
    ($($(#[$doc:meta])* $variant:ident in $module:ident,)*) => {
        $(pub(crate) mod $module;)*
        $(pub use $module::$variant;)*

        /// What the classifier found, with the things to change named.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum Finding {
            $($(#[$doc])* $variant($variant),)*
        }

        impl Finding {
            pub fn describe(&self) -> &dyn Describe {
                match self {
                    $(Self::$variant(finding) => finding,)*
                }
            }
        }

        $(impl From<$variant> for Finding {
            fn from(finding: $variant) -> Self {
                Self::$variant(finding)
            }
        })*

        /// One example of every kind, for the tests that walk them all.
        #[cfg(test)]
        pub(crate) fn examples() -> Vec<Finding> {
            vec![$(Finding::$variant($module::example()),)*]
        }
    };
}

finding_kinds! {
    /// Every probe was answered (a RST from a port nobody listens on included).
    PathWorks in path_works,
    /// No ARP, ICMP or port traffic crossed the ports (a watched command that sent nothing).
    NothingObserved in nothing_observed,
    NamespaceMissing in namespace_missing,
    /// A port is in another namespace than its own (a leftover of an earlier run, say).
    PortElsewhere in port_elsewhere,
    InterfaceMissing in interface_missing,
    InterfaceDown in interface_down,
    /// tracer's own frames from a port arrive at another port, or at a switch, not its peer.
    CabledElsewhere in cabled_elsewhere,
    NoRoute in no_route,
    RouteByOtherInterface in route_by_other_interface,
    NetfilterDrop in netfilter_drop,
    /// A BPF program another tool attached to a port consumed the probes.
    ProgramTakesProbes in program_takes_probes,
    NoCarrier in no_carrier,
    FramesLost in frames_lost,
    ArpUnanswered in arp_unanswered,
    /// The initiator's neighbour entry points at a MAC the target port does not have.
    NeighbourMismatch in neighbour_mismatch,
    /// Reverse-path filtering drops what arrives.
    ReversePathFilter in reverse_path_filter,
    /// A hop between two veth peers does not pass frames on.
    HopBroken in hop_broken,
    /// Frames larger than a hop's MTU die there.
    MtuMismatch in mtu_mismatch,
    /// A port had no carrier while frames were sent, and got it only later.
    CarrierLate in carrier_late,
    UnexplainedDrop in unexplained_drop,
    /// Probes went unanswered and the kernel reported no drop for them.
    Unanswered in unanswered,
    /// A rule that came and went during a watched run dropped the test's frames.
    TransientRule in transient_rule,
    /// A port lost carrier for a while during a watched run.
    CarrierLost in carrier_lost,
    /// A port's address was removed for a while during a watched run.
    AddressRemoved in address_removed,
    /// A neighbour entry kept a MAC the other port no longer had.
    StaleNeighbour in stale_neighbour,
    /// The test's requests went unanswered as tracer added a qdisc to an up port.
    AttachedLate in attached_late,
    /// More than one MAC answered ARP for one address.
    DuplicateAddress in duplicate_address,
    /// Probes failed and a port's subnet is also on another interface (a leftover, say).
    AddressElsewhere in address_elsewhere,
    /// Probes failed and rules with SPDK's comment were there before the run (a leftover).
    RulesBeforeRun in rules_before_run,
    /// Bridge-side peers of the other virtual layout version beside a port (a leftover).
    StaleBridge in stale_bridge,
}

pub use cabled_elsewhere::{CableEnd, of_pair as cable_verdict};
pub use hop_broken::HopProblem;

/// What a rule reads: the evidence, and the probes that were sent and not all answered.
pub(crate) struct Context<'a> {
    pub evidence: &'a Evidence,
    pub failed: Vec<&'a Exchange>,
}

impl<'a> Context<'a> {
    pub fn new(evidence: &'a Evidence) -> Self {
        let failed = evidence
            .exchanges
            .iter()
            .filter(|probe| probe.skipped.is_none() && !probe.fully_answered())
            .collect();
        Self { evidence, failed }
    }

    /// The failed probes, for rules that explain a failure; `None` when every probe passed.
    pub fn failures(&self) -> Option<&[&'a Exchange]> {
        (!self.failed.is_empty()).then_some(self.failed.as_slice())
    }

    pub fn ports(&self) -> [&'a PortEvidence; 2] {
        [&self.evidence.initiator, &self.evidence.target]
    }

    pub fn port(&self, side: Side) -> &'a PortEvidence {
        if side == Side::Target {
            &self.evidence.target
        } else {
            &self.evidence.initiator
        }
    }

    pub fn probe(&self, kind: ExchangeKind) -> Option<&'a Exchange> {
        self.evidence
            .exchanges
            .iter()
            .find(|probe| probe.kind == kind)
    }

    /// The failed probes as facts.
    pub fn failed_facts(&self) -> impl Iterator<Item = Fact> + '_ {
        self.failed.iter().map(|probe| Fact::Exchange {
            exchange: (*probe).clone(),
        })
    }

    /// The route lookup from `from`'s namespace whose answer `fault` recognises, with the
    /// facts it rests on: the lookup, and the port's neighbours on the same subnet.
    pub fn route_fault(
        &self,
        from: Side,
        fault: impl Fn(&RouteEvidence, PortRef) -> Option<Finding>,
    ) -> Option<Verdict> {
        self.evidence
            .routes
            .iter()
            .filter(|route| route.from == from)
            .find_map(|route| {
                let at = self.port(route.from);
                let finding = fault(route, PortRef::of(at))?;
                let beside = (!at.same_subnet_elsewhere.is_empty()).then(|| Fact::SameSubnet {
                    port: PortRef::of(at),
                    interfaces: at.same_subnet_elsewhere.clone(),
                });
                Some(
                    Verdict::new(route.from, finding)
                        .because(Fact::RouteLookup {
                            port: PortRef::of(at),
                            destination: route.destination,
                            lookup: route.lookup.clone(),
                            via: route.via_interface.clone(),
                        })
                        .because_all(beside),
                )
            })
    }

    /// Every drop as a fact.
    pub fn drop_facts(&self) -> impl Iterator<Item = Fact> + '_ {
        self.evidence
            .drops
            .iter()
            .map(|drop| Fact::Drop { drop: drop.clone() })
    }
}

impl PortRef {
    pub fn of(port: &PortEvidence) -> Self {
        Self {
            netns: port.netns.clone(),
            interface: port.interface.clone(),
        }
    }
}

/// Example ports and places for the modules' `example()`s.
#[cfg(test)]
pub(crate) mod example {
    use crate::verdict::PortRef;

    pub fn initiator() -> PortRef {
        PortRef {
            netns: String::new(),
            interface: "cvl_0_1".to_owned(),
        }
    }

    pub fn target() -> PortRef {
        PortRef {
            netns: "cvl_0_0_ns_spdk".to_owned(),
            interface: "cvl_0_0".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
