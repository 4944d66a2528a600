//! The netfilter rules behind drops: both namespaces' rulesets, and the rules (or policies)
//! tied to the drops the kernel reported.

use tracer_evidence::{DropEvidence, FoundBy, NetfilterEvidence, NetfilterLocation, Side};

use crate::netfilter::{self, Ruleset};

/// Rulesets of both namespaces, read in parallel.
pub fn rulesets(initiator: &str, target: &str) -> (Ruleset, Ruleset) {
    let (initiator, target) = (initiator.to_owned(), target.to_owned());
    let target_thread = std::thread::spawn(move || netfilter::snapshot(&target));
    let initiator = netfilter::snapshot(&initiator);
    let target = target_thread.join().unwrap_or_default();
    (initiator, target)
}

/// The rules behind netfilter drops in one namespace, found by reading rule counters only:
/// `counted`, the rules (or drop policies) whose counters grew; failing that, the dropping
/// rules without counters in chains that could have seen the dropped packets.
pub fn netfilter_evidence(
    side: Side,
    netns: &str,
    dropped: &[&DropEvidence],
    counted: Vec<netfilter::DropHit>,
    after: &Ruleset,
) -> Vec<NetfilterEvidence> {
    let evidence = |hit: netfilter::DropHit, found_by: FoundBy| {
        let rule = hit
            .rule
            .unwrap_or_else(|| format!("policy drop of chain {}", hit.chain));
        NetfilterEvidence {
            side,
            backend: hit.backend,
            location: NetfilterLocation {
                netns: netns.to_owned(),
                family: hit.family,
                table: hit.table,
                chain: hit.chain,
                rule,
            },
            packets: hit.packets,
            rule_found_by: found_by,
        }
    };
    if !counted.is_empty() {
        return counted
            .into_iter()
            .map(|hit| {
                let found_by = if hit.rule.is_some() {
                    FoundBy::Counter
                } else {
                    FoundBy::Policy
                };
                evidence(hit, found_by)
            })
            .collect();
    }
    let mut candidates = Vec::new();
    for drop in dropped {
        let family = match drop.drop.protocol.as_str() {
            "arp" => "arp",
            "ipv4" => "ip",
            _ => continue,
        };
        // A locally sent packet without a device yet was dropped on an output hook.
        let local_output = drop.drop.ifindex == 0;
        for hit in after.uncounted_drop_candidates(Some(family), None, None) {
            let hook = after
                .chains
                .iter()
                .find(|chain| {
                    chain.backend == hit.backend
                        && chain.family == hit.family
                        && chain.table == hit.table
                        && chain.name == hit.chain
                })
                .and_then(|chain| chain.hook.clone());
            let fits = match hook.as_deref() {
                Some("output") => local_output,
                Some(_) => !local_output,
                None => true,
            };
            if fits && !candidates.contains(&hit) {
                candidates.push(hit);
            }
        }
    }
    candidates
        .into_iter()
        .map(|hit| evidence(hit, FoundBy::Candidate))
        .collect()
}
