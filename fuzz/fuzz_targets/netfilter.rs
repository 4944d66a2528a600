//! Firewall listings (`iptables-save -c` of every xtables backend, `nft -j list ruleset`): any
//! text parses to some rules, or, for nft, to an error, and comparing two such rulesets for
//! drops never panics.
//!
//! A NUL byte splits the input into the "before" and "after" listings of one diagnosis.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::netfilter::{Backend, Ruleset, parse_nft_json, parse_xtables_save};

const XTABLES: [Backend; 6] = [
    Backend::IptablesNft,
    Backend::Ip6tablesNft,
    Backend::ArptablesNft,
    Backend::IptablesLegacy,
    Backend::Ip6tablesLegacy,
    Backend::ArptablesLegacy,
];

fn ruleset(text: &str) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let parsed = XTABLES
        .iter()
        .map(|backend| parse_xtables_save(text, *backend))
        .chain(parse_nft_json(text).ok());
    for (rules, chains) in parsed {
        for rule in &rules {
            assert!(rule.position >= 1, "{rule:?}");
            assert!(!rule.counts_drops || rule.packets.is_some(), "{rule:?}");
            assert!(rule.handle.is_none() || rule.backend == Backend::Nft, "{rule:?}");
        }
        ruleset.rules.extend(rules);
        ruleset.chains.extend(chains);
    }
    ruleset
}

fuzz_target!(|text: &str| {
    let (before, after) = text.split_once('\0').unwrap_or((text, text));
    let (before, after) = (ruleset(before), ruleset(after));
    for hit in before.drop_hits(&after) {
        assert!(hit.packets > 0, "{hit:?}");
    }
    let _ = after.uncounted_drop_candidates(Some("ip"), None, Some("INPUT"));
    let _ = after.uncounted_drop_candidates(None, None, None);
});
