//! Parsers of the xtables tools' text output (`*-save`, `arptables -L`).

use std::collections::HashMap;

use super::{Backend, Chain, Rule, model::xtables_family};

/// Rules and chains from one or more sources.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub(super) rules: Vec<Rule>,
    pub(super) chains: Vec<Chain>,
}

impl From<(Vec<Rule>, Vec<Chain>)> for Parsed {
    fn from((rules, chains): (Vec<Rule>, Vec<Chain>)) -> Self {
        Self { rules, chains }
    }
}

impl Parsed {
    pub(super) fn extend(&mut self, other: impl Into<Parsed>) {
        let other = other.into();
        self.rules.extend(other.rules);
        self.chains.extend(other.chains);
    }

    pub(super) fn retain_tables(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.rules.retain(|rule| keep(&rule.family, &rule.table));
        self.chains
            .retain(|chain| keep(&chain.family, &chain.table));
    }
}

/// arptables-nft rules from its save output, with policy counters from its listing if given.
pub(super) fn parse_arptables_nft(save: &str, listing: Option<&str>) -> Parsed {
    let mut parsed = Parsed::from(parse_xtables_save(save, Backend::ArptablesNft));
    if let Some(listing) = listing {
        let (_, listed_chains) = parse_arptables_list(listing, Backend::ArptablesNft, "filter");
        for chain in parsed
            .chains
            .iter_mut()
            .filter(|chain| chain.table == "filter")
        {
            if chain.policy_packets.is_none()
                && let Some(listed) = listed_chains
                    .iter()
                    .find(|listed| listed.name == chain.name)
            {
                chain.policy_packets = listed.policy_packets;
            }
        }
    }
    parsed
}

/// Parses `iptables-save -c` output (also ip6tables-save, and arptables-nft-save, whose chains
/// have no counters). Rules without a `[packets:bytes]` prefix get `packets: None`.
/// `backend` should be an xtables backend: for [`Backend::Nft`] the family is left empty.
pub fn parse_xtables_save(text: &str, backend: Backend) -> (Vec<Rule>, Vec<Chain>) {
    let family = xtables_family(backend);
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    let mut table: Option<&str> = None;
    let mut positions: HashMap<&str, usize> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            table = Some(name.trim());
            positions.clear();
            continue;
        }
        // Anything before the first table header is not ours to guess at.
        let Some(table) = table else { continue };
        if let Some(declaration) = line.strip_prefix(':') {
            // `:INPUT ACCEPT [0:0]`, `:SPDK_BLOCK - [0:0]`, arptables: `:INPUT ACCEPT`.
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(policy)) = (words.next(), words.next()) else {
                continue;
            };
            // Only built-in chains have a policy; a user chain's counters mean nothing.
            let builtin = policy != "-";
            chains.push(Chain {
                backend,
                family: family.to_owned(),
                table: table.to_owned(),
                name: name.to_owned(),
                hook: builtin.then(|| name.to_lowercase()),
                chain_type: None,
                policy_drop: policy == "DROP",
                policy_packets: if builtin {
                    words.next().and_then(parse_bracketed_packets)
                } else {
                    None
                },
            });
            continue;
        }
        let (packets, rule_text) = match line.split_once(' ') {
            Some((prefix, rest)) if prefix.starts_with('[') => {
                (parse_bracketed_packets(prefix), rest.trim_start())
            }
            _ => (None, line),
        };
        let words = split_words(rule_text);
        let (Some(&"-A"), Some(chain)) = (words.first(), words.get(1)) else {
            continue;
        };
        let position = positions.entry(chain).or_default();
        *position += 1;
        rules.push(Rule {
            backend,
            family: family.to_owned(),
            table: table.to_owned(),
            chain: (*chain).to_owned(),
            handle: None,
            text: rule_text.to_owned(),
            position: *position,
            packets,
            drops: xtables_verdict_drops(&words),
            counts_drops: packets.is_some(),
        });
    }
    (rules, chains)
}

/// `[12:3456]` → 12.
pub(super) fn parse_bracketed_packets(counters: &str) -> Option<u64> {
    let (packets, _bytes) = counters
        .strip_prefix('[')?
        .strip_suffix(']')?
        .split_once(':')?;
    packets.parse().ok()
}

pub(super) fn xtables_verdict_drops(words: &[&str]) -> bool {
    words
        .windows(2)
        .any(|pair| matches!(pair[0], "-j" | "--jump") && matches!(pair[1], "DROP" | "REJECT"))
}

/// Parses `arptables -t TABLE -L -n -v -x` (both arptables-nft and arptables-legacy):
///
/// ```text
/// Chain INPUT (policy ACCEPT 2 packets, 56 bytes)
/// -j DROP -i * -o * -s 10.9.0.4 , pcnt=2 -- bcnt=56
/// ```
///
/// Rule texts are made to read like arptables-nft-save's: `-A INPUT -j DROP -s 10.9.0.4`.
pub(super) fn parse_arptables_list(
    text: &str,
    backend: Backend,
    table: &str,
) -> (Vec<Rule>, Vec<Chain>) {
    let family = xtables_family(backend);
    let mut rules = Vec::new();
    let mut chains = Vec::new();
    let mut chain: Option<&str> = None;
    let mut position = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix("Chain ") {
            // `INPUT (policy ACCEPT 2 packets, 56 bytes)` or `blk (1 references)`.
            let Some((name, detail)) = header.split_once(" (") else {
                chain = None;
                continue;
            };
            let detail = detail.trim_end_matches(')');
            let policy_words: Option<Vec<&str>> = detail
                .strip_prefix("policy ")
                .map(|policy| policy.split_whitespace().collect());
            chains.push(Chain {
                backend,
                family: family.to_owned(),
                table: table.to_owned(),
                name: name.to_owned(),
                hook: policy_words.is_some().then(|| name.to_lowercase()),
                chain_type: None,
                policy_drop: policy_words
                    .as_ref()
                    .is_some_and(|words| words.first() == Some(&"DROP")),
                policy_packets: policy_words.as_ref().and_then(|words| match words[..] {
                    [_, packets, "packets,", ..] => packets.parse().ok(),
                    _ => None,
                }),
            });
            chain = Some(name);
            position = 0;
            continue;
        }
        let Some(chain) = chain else { continue };
        let (spec, packets) = match line.rsplit_once(" , pcnt=") {
            Some((spec, counters)) => (
                spec,
                counters
                    .split_whitespace()
                    .next()
                    .and_then(|packets| packets.parse().ok()),
            ),
            None => (line, None),
        };
        let mut words = split_words(spec);
        // `--line-numbers` puts the position first.
        if words
            .first()
            .is_some_and(|word| word.chars().all(|c| c.is_ascii_digit()))
        {
            words.remove(0);
        }
        // `-v` spells out "any interface"; the save format leaves it out.
        let mut kept = Vec::with_capacity(words.len());
        let mut index = 0;
        while index < words.len() {
            if matches!(words[index], "-i" | "-o") && words.get(index + 1) == Some(&"*") {
                index += 2;
                continue;
            }
            kept.push(words[index]);
            index += 1;
        }
        position += 1;
        rules.push(Rule {
            backend,
            family: family.to_owned(),
            table: table.to_owned(),
            chain: chain.to_owned(),
            handle: None,
            text: format!("-A {chain} {}", kept.join(" ")),
            position,
            packets,
            drops: xtables_verdict_drops(&kept),
            counts_drops: packets.is_some(),
        });
    }
    (rules, chains)
}

/// Splits a line at whitespace outside double quotes; quoted parts stay in their word, quotes
/// and backslash escapes included (`--comment "a \"b\" c"` is two words).
pub(super) fn split_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut in_quotes = false;
    let mut escaped = false;
    for (at, c) in line.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        if c.is_whitespace() {
            if let Some(begin) = start.take() {
                words.push(&line[begin..at]);
            }
            continue;
        }
        if start.is_none() {
            start = Some(at);
        }
        if c == '"' {
            in_quotes = true;
        }
    }
    if let Some(begin) = start {
        words.push(&line[begin..]);
    }
    words
}
