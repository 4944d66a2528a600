//! Gathering: the one place both commands fill [`Evidence`] from. diagnose gathers actively
//! ([`active`]: tracer sends probes along the path and watches them cross), watch passively
//! ([`passive`]: the test's own traffic, observed while it runs). Whatever both build is built
//! here once: the ports and the path between them, the routes, the ladders
//! ([`ladder`]), the kernel drops, the netfilter rules behind them and the neighbour entries,
//! each by a [`Collector`].

pub mod active;
pub mod cabling;
mod ladder;
pub mod passive;

use std::net::Ipv4Addr;

use tracer_evidence::{
    DropEvidence, Environment, Evidence, NeighbourEvidence, PortEvidence, Side, mac_text,
    reasons::DropReason,
};

use crate::{
    collect::{
        drops::DropPrograms,
        host::{environment, route_evidence},
        path,
        ports::IngressHook,
        rules::netfilter_evidence,
    },
    netfilter::{DropHit, Ruleset},
    spec::PortSpec,
};

/// The pair of ports to gather about: where they are, their addresses and the TCP port.
#[derive(Debug, Clone)]
pub struct Pair {
    pub initiator: PortSpec,
    pub target: PortSpec,
    pub initiator_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
    pub tcp_port: u16,
    pub ingress_hook: IngressHook,
    /// Ports beside the pair to look for its cabling at (`--cable-ports`); none: every
    /// physical port that is up.
    pub cable_ports: Vec<PortSpec>,
}

impl Pair {
    fn environment(&self) -> Environment {
        environment(self.initiator_ip, self.target_ip, self.tcp_port)
    }
}

/// One source of evidence, driven the same way in both modes (in the spirit of retis's
/// collectors): first what it cannot tell on this host, each named in the evidence's
/// limitations rather than silently missing; then what it gathered, into the evidence.
pub trait Collector {
    /// What this source cannot tell here (a kernel without drop reasons, a ruleset that could
    /// not be read), one sentence each.
    fn limitations(&self) -> Vec<String> {
        Vec::new()
    }

    /// Puts what it gathered into `evidence`.
    fn gather(&self, evidence: &mut Evidence);
}

/// Runs `collectors` in order (a later one may read what an earlier one gathered).
fn collect(evidence: &mut Evidence, collectors: &[&dyn Collector]) {
    for collector in collectors {
        evidence
            .environment
            .limitations
            .extend(collector.limitations());
        collector.gather(evidence);
    }
}

/// The ports as found and the path walked between them: evidence before anything else.
fn found(pair: &Pair, initiator: PortEvidence, target: PortEvidence) -> Evidence {
    let mut evidence = Evidence::new(initiator, target, pair.environment());
    evidence.path = path::walk(&evidence.initiator, &evidence.target);
    evidence
}

/// The route from each port towards the other's address.
struct Routes<'a>(&'a Pair);

impl Collector for Routes<'_> {
    fn gather(&self, evidence: &mut Evidence) {
        evidence.routes = vec![
            route_evidence(&evidence.initiator, self.0.target_ip),
            route_evidence(&evidence.target, self.0.initiator_ip),
        ];
    }
}

/// The kernel's drops on the ports (and the hops between them), each tied to its side.
struct KernelDrops<'a> {
    probe: &'a DropPrograms,
    drops: Vec<DropEvidence>,
}

impl Collector for KernelDrops<'_> {
    fn limitations(&self) -> Vec<String> {
        self.probe.limitation().into_iter().collect()
    }

    fn gather(&self, evidence: &mut Evidence) {
        evidence.drops.extend(self.drops.iter().cloned());
    }
}

/// One namespace's netfilter ruleset over the run: as it was before (`None`: the namespace
/// appeared while gathering) and after.
struct NamespaceRules<'a> {
    side: Side,
    netns: &'a str,
    before: Option<&'a Ruleset>,
    after: &'a Ruleset,
}

/// The rules behind the netfilter drops already gathered.
struct Netfilter<'a>(Vec<NamespaceRules<'a>>);

impl Collector for Netfilter<'_> {
    fn limitations(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|rules| rules.before)
            .flat_map(|ruleset| ruleset.errors.iter().map(|err| format!("ruleset: {err}")))
            .collect()
    }

    fn gather(&self, evidence: &mut Evidence) {
        let found: Vec<_> = self
            .0
            .iter()
            .flat_map(|rules| {
                let dropped: Vec<&DropEvidence> = evidence
                    .drops
                    .iter()
                    .filter(|drop| {
                        drop.side == rules.side && drop.drop.reason() == DropReason::NetfilterDrop
                    })
                    .collect();
                netfilter_evidence(
                    rules.side,
                    rules.netns,
                    &dropped,
                    counted_drops(rules.before, rules.after),
                    rules.after,
                )
            })
            .collect();
        evidence.netfilter = found;
    }
}

/// Dropping rules whose counters grew since `before`, counting in full the rules of chains
/// `before` did not have (a namespace or table made while gathering, or no `before` at all).
fn counted_drops(before: Option<&Ruleset>, after: &Ruleset) -> Vec<DropHit> {
    let empty = Ruleset::default();
    let before = before.unwrap_or(&empty);
    let mut hits = before.drop_hits(after);
    let known = |backend, family: &str, table: &str, chain: &str| {
        before.chains.iter().any(|known| {
            known.backend == backend
                && known.family == family
                && known.table == table
                && known.name == chain
        })
    };
    let new_rules = after
        .rules
        .iter()
        .filter(|rule| rule.drops && rule.packets.unwrap_or(0) > 0)
        .filter(|rule| !known(rule.backend, &rule.family, &rule.table, &rule.chain))
        .map(|rule| rule.hit(rule.packets.unwrap_or(0)));
    let new_policies = after
        .chains
        .iter()
        .filter(|chain| chain.policy_drop && chain.policy_packets.unwrap_or(0) > 0)
        .filter(|chain| !known(chain.backend, &chain.family, &chain.table, &chain.name))
        .map(|chain| chain.policy_hit(chain.policy_packets.unwrap_or(0)));
    for hit in new_rules.chain(new_policies) {
        if !hits.contains(&hit) {
            hits.push(hit);
        }
    }
    hits
}

/// One neighbour entry of a port over the run: its state before and after (`None`: no entry)
/// and the last MAC it had.
struct NeighbourSeen {
    side: Side,
    netns: String,
    address: Ipv4Addr,
    before: Option<String>,
    after: Option<String>,
    mac: Option<[u8; 6]>,
}

/// The ports' neighbour entries, before and after.
struct Neighbours(Vec<NeighbourSeen>);

impl Collector for Neighbours {
    fn gather(&self, evidence: &mut Evidence) {
        evidence.neighbours = self
            .0
            .iter()
            .map(|seen| NeighbourEvidence {
                side: seen.side,
                netns: seen.netns.clone(),
                address: seen.address.into(),
                before: seen.before.clone(),
                after: seen.after.clone(),
                mac: seen.mac.map(mac_text),
            })
            .collect();
    }
}
