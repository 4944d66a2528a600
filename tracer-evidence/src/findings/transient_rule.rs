//! A rule that came and went while watching dropped the test's frames: its text, namespace,
//! handle, and the window it existed in, tied to the loss in that window.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::{Fact, Verdict},
    windows::{LossWindow, RuleWindow, loss_line, worst_loss},
    words::{namespace_phrase, netns_exec},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransientRule {
    pub rule: RuleWindow,
    /// The loss in the window the rule existed.
    pub loss: LossWindow,
}

/// A dropping rule removed before the end (one still there is `netfilter_drop`'s) whose
/// lifetime overlaps a loss; the one that dropped most wins.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let windows = &context.evidence.windows;
    let (rule, loss) = windows
        .rules
        .iter()
        .filter(|rule| rule.drops && rule.removed_ms.is_some())
        .filter_map(|rule| {
            let loss = worst_loss(windows, rule.added_ms.unwrap_or(0), rule.removed_ms)?;
            Some((rule, loss))
        })
        .max_by_key(|(rule, loss)| (rule.dropped, loss.unanswered))?;
    let side = context
        .ports()
        .into_iter()
        .find(|port| port.netns == rule.netns)
        .map_or(Side::None, |port| port.side);
    Some(
        Verdict::new(
            side,
            TransientRule {
                rule: rule.clone(),
                loss: loss.clone(),
            },
        )
        .because(Fact::Loss { loss: loss.clone() })
        .because_all(context.drop_facts())
        .because_all(context.failed_facts()),
    )
}

impl Describe for TransientRule {
    fn class(&self) -> VerdictClass {
        VerdictClass::Netfilter
    }

    fn summary(&self, _: Side) -> String {
        let rule = &self.rule;
        format!(
            "{}; in that window rule `{}` in {} existed ({}) and dropped {} packet(s).",
            loss_line(&self.loss),
            rule.text(),
            namespace_phrase(&rule.netns),
            rule.lifetime(),
            rule.dropped
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Find what inserts and removes this rule during the run (a test's own fault injection, or a leftover script): {}nft monitor ruleset shows it as it happens.",
            netns_exec(&self.rule.netns)
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.in_netns(&self.rule.netns).or_else(|| path.side(side))
    }

    fn named_thing(&self) -> Option<String> {
        let rule = &self.rule;
        Some(format!(
            "rule `{}` ({} {} {}, handle {}) in {}",
            rule.text(),
            rule.family,
            rule.table,
            rule.chain,
            rule.handle,
            namespace_phrase(&rule.netns)
        ))
    }
}

#[cfg(test)]
pub(crate) fn example() -> TransientRule {
    TransientRule {
        rule: RuleWindow {
            netns: "cvl_0_0_ns_spdk".to_owned(),
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: "INPUT".to_owned(),
            handle: 4,
            rule: "-A INPUT -p icmp -j DROP".to_owned(),
            drops: true,
            added_ms: Some(2000),
            removed_ms: Some(5000),
            dropped: 14,
        },
        loss: LossWindow {
            flow: "ICMP from 10.0.0.1 to 10.0.0.2".to_owned(),
            side: Side::Initiator,
            first_ms: 2100,
            last_ms: 4900,
            unanswered: 14,
        },
    }
}
