//! Where on the path the packets stopped: the hops from the initiator's port to the target's,
//! and the place the verdict's finding names (else where the first failed probe's counts fell
//! short, else the verdict's side). Pictures draw it; they do not decide it.

use crate::{
    facts::{Evidence, Exchange, Hop, HopRole, PortEvidence, Side},
    ladder::{Rung, Shortfall, shortfall},
    verdict::{PortRef, Verdict},
    words::hop_label,
};

/// Where on the drawn path the packets stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Hop(usize),
    /// Between hop `i` and hop `i + 1`.
    Between(usize),
}

/// The hops from the initiator's port to the target's, as pictures draw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawnPath {
    pub hops: Vec<Hop>,
}

impl DrawnPath {
    /// The walked path when there is one; else the two ports, with the cable between them
    /// unless a veth pair joins them directly.
    pub fn of(evidence: &Evidence) -> Self {
        if let Some(path) = &evidence.path
            && path.hops.len() >= 2
        {
            return Self {
                hops: path.hops.clone(),
            };
        }
        let is_veth = |port: &PortEvidence| {
            port.link
                .as_ref()
                .is_some_and(|link| link.kind.as_deref() == Some("veth"))
        };
        let mut hops = vec![Hop::port(&evidence.initiator)];
        if !is_veth(&evidence.initiator) && !is_veth(&evidence.target) {
            hops.push(Hop::cable());
        }
        hops.push(Hop::port(&evidence.target));
        Self { hops }
    }

    pub fn last(&self) -> usize {
        self.hops.len() - 1
    }

    /// The hop of this interface in this namespace.
    pub fn at(&self, netns: &str, interface: &str) -> Option<Stop> {
        self.hops
            .iter()
            .position(|hop| hop.netns == netns && hop.interface == interface)
            .map(Stop::Hop)
    }

    pub fn port(&self, port: &PortRef) -> Option<Stop> {
        self.at(&port.netns, &port.interface)
    }

    /// The first hop in this namespace.
    pub fn in_netns(&self, netns: &str) -> Option<Stop> {
        self.hops
            .iter()
            .position(|hop| hop.netns == netns)
            .map(Stop::Hop)
    }

    /// This hop, by role and place.
    pub fn hop(&self, wanted: &Hop) -> Option<Stop> {
        self.hops
            .iter()
            .position(|hop| {
                hop.role == wanted.role
                    && hop.netns == wanted.netns
                    && hop.interface == wanted.interface
            })
            .map(Stop::Hop)
    }

    /// A side's port; the wire between them; nothing for no side.
    pub fn side(&self, side: Side) -> Option<Stop> {
        match side {
            Side::Initiator => Some(Stop::Hop(0)),
            Side::Target => Some(Stop::Hop(self.last())),
            Side::Wire => Some(self.wire()),
            Side::None => None,
        }
    }

    /// Between the two ports: the cable when there is one, else the middle of the path.
    pub fn wire(&self) -> Stop {
        if let Some(cable) = self.hops.iter().position(|hop| hop.role == HopRole::Cable) {
            return Stop::Hop(cable);
        }
        match self.hops.len() {
            n if n % 2 == 1 => Stop::Hop(n / 2),
            n => Stop::Between(n / 2 - 1),
        }
    }

    /// The columns of a probe's origin port and its peer's.
    pub fn ends(&self, from: Side) -> (usize, usize) {
        if from == Side::Target {
            (self.last(), 0)
        } else {
            (0, self.last())
        }
    }

    /// Where the packets stopped, for this verdict on this evidence.
    pub fn stop(&self, evidence: &Evidence, verdict: &Verdict) -> Stop {
        verdict
            .finding
            .describe()
            .stop(self, verdict.side)
            .or_else(|| self.ladder_stop(evidence))
            .or_else(|| self.side(verdict.side))
            .unwrap_or_else(|| self.wire())
    }

    /// Where the first probe that went unanswered stopped.
    fn ladder_stop(&self, evidence: &Evidence) -> Option<Stop> {
        let probe = evidence
            .exchanges
            .iter()
            .find(|probe| probe.skipped.is_none() && !probe.fully_answered())?;
        Some(self.probe_stop(probe))
    }

    /// Where a probe stopped, by the first of its counts that fell short; answers that
    /// arrived and still went unanswered died at the origin, after the last counting point.
    pub fn probe_stop(&self, probe: &Exchange) -> Stop {
        let (origin, peer) = self.ends(probe.from);
        match shortfall(probe) {
            Some(Shortfall::At(Rung::LeftOrigin) | Shortfall::AfterLast) | None => {
                Stop::Hop(origin)
            }
            Some(Shortfall::At(Rung::ReachedPeer | Rung::AnswerReachedOrigin)) => self.wire(),
            Some(Shortfall::At(Rung::AnswerLeftPeer)) => Stop::Hop(peer),
        }
    }

    /// A hop's name on the picture: its interface, else what it is (the cable).
    pub fn name(&self, index: usize) -> String {
        let hop = &self.hops[index];
        if hop.interface.is_empty() {
            hop_label(hop)
        } else {
            hop.interface.clone()
        }
    }

    /// A stop for people: `cvl_0_0 (namespace cvl_0_0_ns_spdk)`, `between cvl_0_1 and cvl_0_0`.
    pub fn place(&self, stop: Stop) -> String {
        match stop {
            Stop::Hop(index) => hop_label(&self.hops[index]),
            Stop::Between(index) => {
                format!("between {} and {}", self.name(index), self.name(index + 1))
            }
        }
    }
}
