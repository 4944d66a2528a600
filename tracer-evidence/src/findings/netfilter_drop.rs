//! A netfilter hook dropped the packets: namespace, family, table, chain and rule.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{DropEvidence, FoundBy, NetfilterLocation, Side},
    reasons::DropReason,
    stop::{DrawnPath, Stop},
    verdict::{Fact, Verdict},
    words::{is_spdk_rule, namespace_phrase, netns_exec, side_name, spdk_rule_note},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetfilterDrop {
    pub location: NetfilterLocation,
    /// Packets the kernel reported dropped by netfilter while probing.
    pub dropped: u64,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let failed = context.failures()?;
    let evidence = context.evidence;
    let netfilter_drops: Vec<&DropEvidence> = evidence
        .drops
        .iter()
        .filter(|drop| {
            drop.drop.reason() == DropReason::NetfilterDrop
                && matches!(drop.drop.protocol.as_str(), "ipv4" | "arp")
        })
        .collect();
    // The rule counters name the table; kfree_skb alone still proves netfilter did it.
    let best_hit = evidence
        .netfilter
        .iter()
        .filter(|hit| hit.location.family != "ip6")
        .max_by_key(|hit| (hit.rule_found_by != FoundBy::Candidate, hit.packets));
    // An inet or ip6 table may be dropping unrelated IPv6 traffic: only IPv4 and ARP count.
    let ipv4_or_arp_hit = evidence
        .netfilter
        .iter()
        .any(|hit| matches!(hit.location.family.as_str(), "ip" | "arp"));
    if netfilter_drops.is_empty() && !ipv4_or_arp_hit {
        return None;
    }
    let side = best_hit
        .map(|hit| hit.side)
        .or_else(|| netfilter_drops.first().map(|drop| drop.side))
        .unwrap_or(Side::None);
    let dropped: u64 = netfilter_drops.iter().map(|drop| drop.drop.count).sum();
    // Without a rule to name (say, a ruleset tracer could not read), still say where.
    let location = best_hit.map_or_else(
        || NetfilterLocation {
            netns: netfilter_drops.first().map_or_else(
                || context.port(side).netns.clone(),
                |drop| drop.drop.netns.clone(),
            ),
            family: match netfilter_drops.first().map(|drop| drop.drop.protocol.as_str()) {
                Some("arp") => "arp".to_owned(),
                _ => "ip".to_owned(),
            },
            table: String::new(),
            chain: String::new(),
            rule: String::new(),
        },
        |hit| hit.location.clone(),
    );
    Some(
        Verdict::new(side, NetfilterDrop { location, dropped })
            .because_all(
                netfilter_drops
                    .into_iter()
                    .map(|drop| Fact::Drop { drop: drop.clone() }),
            )
            .because_all(
                evidence
                    .netfilter
                    .iter()
                    .map(|rule| Fact::Rule { rule: rule.clone() }),
            )
            .because_all(failed.iter().map(|probe| Fact::Exchange {
                exchange: (*probe).clone(),
            })),
    )
}

impl Describe for NetfilterDrop {
    fn class(&self) -> VerdictClass {
        VerdictClass::Netfilter
    }

    fn summary(&self, side: Side) -> String {
        let location = &self.location;
        if location.chain.is_empty() {
            return format!(
                "Netfilter in the {}'s namespace drops the probes ({} packets).",
                side_name(side),
                self.dropped
            );
        }
        let rule = if location.rule.is_empty() {
            String::new()
        } else {
            format!(" by rule `{}`{}", location.rule, spdk_rule_note(&location.rule))
        };
        format!(
            "Netfilter in {} drops the probes: {} table {} chain {}{rule}.",
            namespace_phrase(&location.netns),
            location.family,
            location.table,
            location.chain
        )
    }

    fn advice(&self, _: Side) -> String {
        if is_spdk_rule(&self.location.rule) {
            // A test adds such rules on purpose (host/timeout.sh drops 4420, say); one left
            // from a crashed run is removed the way SPDK's own teardown does.
            return format!(
                "The test added this rule on purpose; if no test is running, it is a leftover of an earlier run: {}sh -c 'iptables-save | grep -v SPDK_NVMF | iptables-restore' removes every such rule.",
                netns_exec(&self.location.netns)
            );
        }
        format!(
            "Inspect the ruleset in {}: {}nft list ruleset (or iptables-save / arptables-save).",
            namespace_phrase(&self.location.netns),
            netns_exec(&self.location.netns)
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.side(side)
            .or_else(|| path.in_netns(&self.location.netns))
    }

    fn named_thing(&self) -> Option<String> {
        let location = &self.location;
        if !location.rule.is_empty() {
            Some(format!(
                "rule `{}` ({} {} {}){}",
                location.rule,
                location.family,
                location.table,
                location.chain,
                spdk_rule_note(&location.rule)
            ))
        } else if !location.chain.is_empty() {
            Some(format!(
                "{} table {} chain {}",
                location.family, location.table, location.chain
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
pub(crate) fn example() -> NetfilterDrop {
    NetfilterDrop {
        location: NetfilterLocation {
            netns: "cvl_0_0_ns_spdk".to_owned(),
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: "INPUT".to_owned(),
            rule: "-A INPUT -p icmp -j DROP".to_owned(),
        },
        dropped: 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spdk_rule() -> NetfilterDrop {
        let mut drop = example();
        drop.location.chain = "OUTPUT".to_owned();
        drop.location.rule = "-A OUTPUT -d 10.0.0.2/32 -p tcp -m tcp --dport 4420 -m comment --comment SPDK_NVMF:timeout -j DROP".to_owned();
        drop
    }

    #[test]
    fn a_rule_with_spdks_comment_is_named_the_tests_own() {
        let drop = spdk_rule();
        let summary = drop.summary(Side::Target);
        assert!(summary.contains("chain OUTPUT by rule `"), "{summary}");
        assert!(
            summary.ends_with("(SPDK's own test rule, SPDK_NVMF comment)."),
            "{summary}"
        );
        assert!(drop.named_thing().unwrap().contains("SPDK's own test rule"));
        assert!(drop.advice(Side::Target).contains("grep -v SPDK_NVMF"));
    }

    #[test]
    fn other_rules_are_not() {
        let drop = example();
        assert!(!drop.summary(Side::Target).contains("SPDK"));
        assert!(!drop.named_thing().unwrap().contains("SPDK"));
        assert!(drop.advice(Side::Target).contains("nft list ruleset"));
    }
}
