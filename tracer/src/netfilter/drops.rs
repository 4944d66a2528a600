//! What dropped packets between two snapshots: counters compared rule by rule.

use std::collections::HashMap;

use super::{Backend, Chain, DropHit, Rule, Ruleset};

/// What identifies a chain across snapshots.
pub(super) type ChainKey<'a> = (Backend, &'a str, &'a str, &'a str);

/// What identifies a rule within its chain across snapshots: an nft rule's handle; an xtables
/// rule's position and text (a rule that moved is looked for by its text alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum RuleId<'a> {
    Handle(u64),
    Place(usize, &'a str),
}

impl Rule {
    fn chain_key(&self) -> ChainKey<'_> {
        (self.backend, &self.family, &self.table, &self.chain)
    }

    fn id(&self) -> RuleId<'_> {
        match self.handle {
            Some(handle) => RuleId::Handle(handle),
            None => RuleId::Place(self.position, &self.text),
        }
    }

    /// This rule as the one that dropped `packets`.
    pub fn hit(&self, packets: u64) -> DropHit {
        DropHit {
            backend: self.backend,
            family: self.family.clone(),
            table: self.table.clone(),
            chain: self.chain.clone(),
            rule: Some(self.text.clone()),
            handle: self.handle,
            packets,
        }
    }
}

impl Chain {
    fn key(&self) -> ChainKey<'_> {
        (self.backend, &self.family, &self.table, &self.name)
    }

    /// This chain's drop policy as what dropped `packets`.
    pub fn policy_hit(&self, packets: u64) -> DropHit {
        DropHit {
            backend: self.backend,
            family: self.family.clone(),
            table: self.table.clone(),
            chain: self.name.clone(),
            rule: None,
            handle: None,
            packets,
        }
    }
}

/// Packets counted between `before` and `after`. A counter that went down was zeroed in between
/// (`iptables -Z`), so all it holds now came after.
pub(super) fn counted_since(before: u64, after: u64) -> u64 {
    after.checked_sub(before).unwrap_or(after)
}

/// `ip` and `ip6` packets also pass the `inet` tables.
pub(super) fn family_matches(filter: Option<&str>, family: &str) -> bool {
    match filter {
        None => true,
        Some(wanted) => wanted == family || (matches!(wanted, "ip" | "ip6") && family == "inet"),
    }
}

impl Ruleset {
    /// Dropping rules whose counter of drops grew between `before` (self) and `after`, and
    /// xtables chains whose drop policy counter grew, in ruleset order.
    ///
    /// An nft rule is the rule with the same handle in the same chain: rules inserted above it,
    /// or alike, do not confuse it. An xtables rule is the one at the same position with the
    /// same text, or, when it moved (another was inserted above it), the one with the same text
    /// when that is unique in its chain. A rule new in `after` counts in full, since it started
    /// from zero — but only in a chain `before` knew: otherwise `before` may simply have failed
    /// to read that source, and old counts would be blamed.
    pub fn drop_hits(&self, after: &Ruleset) -> Vec<DropHit> {
        let before_by_id: HashMap<(ChainKey, RuleId), &Rule> = self
            .rules
            .iter()
            .map(|rule| ((rule.chain_key(), rule.id()), rule))
            .collect();
        // xtables rules by text within a chain, for rules that moved; `None` when ambiguous.
        let mut before_by_text: HashMap<(ChainKey, &str), Option<&Rule>> = HashMap::new();
        for rule in self.rules.iter().filter(|rule| rule.handle.is_none()) {
            before_by_text
                .entry((rule.chain_key(), rule.text.as_str()))
                .and_modify(|unique| *unique = None)
                .or_insert(Some(rule));
        }
        let before_chains: HashMap<ChainKey, Option<u64>> = self
            .chains
            .iter()
            .map(|chain| (chain.key(), chain.policy_packets))
            .collect();

        let mut hits = Vec::new();
        for rule in after
            .rules
            .iter()
            .filter(|rule| rule.drops && rule.counts_drops)
        {
            let Some(now) = rule.packets else { continue };
            let previous = match before_by_id.get(&(rule.chain_key(), rule.id())) {
                Some(previous) => Some(*previous),
                None if rule.handle.is_some() => None,
                None => match before_by_text.get(&(rule.chain_key(), rule.text.as_str())) {
                    Some(Some(moved)) => Some(*moved),
                    // Several alike: which one moved where cannot be told.
                    Some(None) => continue,
                    None => None,
                },
            };
            let counted = match previous.map(|previous| (previous.counts_drops, previous.packets)) {
                Some((true, Some(then))) => counted_since(then, now),
                // It did not count its drops then, so it is not the same rule: a new one.
                Some(_) => now,
                None if before_chains.contains_key(&rule.chain_key()) => now,
                None => continue,
            };
            if counted > 0 {
                hits.push(rule.hit(counted));
            }
        }
        for chain in after.chains.iter().filter(|chain| chain.policy_drop) {
            let (Some(now), Some(Some(then))) =
                (chain.policy_packets, before_chains.get(&chain.key()))
            else {
                continue;
            };
            let counted = counted_since(*then, now);
            if counted > 0 {
                hits.push(chain.policy_hit(counted));
            }
        }
        hits
    }

    /// Dropping rules whose counters cannot tell their drops (no counter, a shared one, or one
    /// that also counts what they let by) and drop policies without counters, in chains
    /// matching the filters: candidates when counters cannot tell. `family`, `table`, `chain`
    /// None = any; `chain` is the chain's name; family "ip" or "ip6" also matches "inet"
    /// tables, which see those packets too.
    pub fn uncounted_drop_candidates(
        &self,
        family: Option<&str>,
        table: Option<&str>,
        chain: Option<&str>,
    ) -> Vec<DropHit> {
        let matches = |rule_family: &str, rule_table: &str, rule_chain: &str| {
            family_matches(family, rule_family)
                && table.is_none_or(|wanted| wanted == rule_table)
                && chain.is_none_or(|wanted| wanted == rule_chain)
        };
        let rules = self
            .rules
            .iter()
            .filter(|rule| rule.drops && !rule.counts_drops)
            .filter(|rule| matches(&rule.family, &rule.table, &rule.chain))
            .map(|rule| rule.hit(0));
        let policies = self
            .chains
            .iter()
            .filter(|chain| chain.policy_drop && chain.policy_packets.is_none())
            .filter(|chain| matches(&chain.family, &chain.table, &chain.name))
            .map(|chain| chain.policy_hit(0));
        rules.chain(policies).collect()
    }
}
