//! Rules with SPDK's `SPDK_NVMF` comment were in place before the watched command started: an
//! earlier run ended without its teardown (which removes every such rule).
//!
//! SPDK's rules mostly accept; a leftover explains a failure only when nothing more precise
//! does (a leftover that drops is `netfilter_drop`, which names it as SPDK's own), so this rule
//! is asked after every other explanation. While the path works the `ok` verdict carries the
//! rules as `rule_before_run` facts, a warning.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{NetfilterLocation, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, Verdict},
    words::{namespace_phrase, netns_exec},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesBeforeRun {
    pub rules: Vec<NetfilterLocation>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let rules = &context.evidence.rules_before_run;
    if rules.is_empty() {
        return None;
    }
    Some(
        Verdict::new(
            Side::None,
            RulesBeforeRun {
                rules: rules.clone(),
            },
        )
        .because_all(facts(context))
        .because_all(context.failed_facts()),
    )
}

/// The rules as facts, for this finding and as warnings beside others.
pub(crate) fn facts<'a>(context: &'a Context) -> impl Iterator<Item = Fact> + 'a {
    context
        .evidence
        .rules_before_run
        .iter()
        .map(|rule| Fact::RuleBeforeRun { rule: rule.clone() })
}

impl RulesBeforeRun {
    fn namespaces(&self) -> Vec<&str> {
        let mut namespaces: Vec<&str> = self.rules.iter().map(|rule| rule.netns.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        namespaces
    }
}

impl Describe for RulesBeforeRun {
    fn class(&self) -> VerdictClass {
        VerdictClass::Netfilter
    }

    fn summary(&self, _: Side) -> String {
        let places: Vec<String> = self
            .namespaces()
            .into_iter()
            .map(namespace_phrase)
            .collect();
        format!(
            "The test's traffic failed, and {} rule(s) with SPDK's SPDK_NVMF comment were in {} before the command started: a leftover of an earlier run.",
            self.rules.len(),
            places.join(" and ")
        )
    }

    fn advice(&self, _: Side) -> String {
        let commands: Vec<String> = self
            .namespaces()
            .into_iter()
            .map(|netns| {
                format!(
                    "{}sh -c 'iptables-save | grep -v SPDK_NVMF | iptables-restore'",
                    netns_exec(netns)
                )
            })
            .collect();
        format!(
            "Remove them as SPDK's teardown does, with no test running: {}.",
            commands.join("; ")
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        let netns = self.rules.first().map_or("", |rule| rule.netns.as_str());
        path.in_netns(netns).or_else(|| path.side(Side::Initiator))
    }

    fn named_thing(&self) -> Option<String> {
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|rule| format!("`{}`", rule.rule))
            .collect();
        Some(rules.join(", "))
    }
}

#[cfg(test)]
pub(crate) fn example() -> RulesBeforeRun {
    RulesBeforeRun {
        rules: vec![NetfilterLocation {
            netns: String::new(),
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: "INPUT".to_owned(),
            rule: "-A INPUT -i cvl_0_1 -p tcp -m tcp --dport 4420 -m comment --comment SPDK_NVMF:old -j ACCEPT".to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_leftover_rules_and_their_removal() {
        let found = example();
        let summary = found.summary(Side::None);
        assert!(
            summary.contains("1 rule(s) with SPDK's SPDK_NVMF comment were in tracer's own namespace"),
            "{summary}"
        );
        assert_eq!(
            found.advice(Side::None),
            "Remove them as SPDK's teardown does, with no test running: sh -c 'iptables-save | grep -v SPDK_NVMF | iptables-restore'."
        );
        assert!(found.named_thing().unwrap().contains("SPDK_NVMF:old"));
    }
}
