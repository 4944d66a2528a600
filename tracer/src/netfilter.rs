//! The netfilter ruleset of one network namespace, with counters, read from every backend the
//! user may have used: iptables-nft, ip6tables-nft, arptables-nft, their legacy (x_tables)
//! twins, and native nftables.
//!
//! Reading never modifies anything. That rules out the obvious `iptables-legacy-save`: asking
//! x_tables for a table (`-t filter`, or `arptables-legacy -L`) instantiates it in the namespace.
//! So the legacy tools are only asked about tables that `/proc/net/*_tables_names` already lists.
//!
//! Native nftables is read as JSON ([`parse_nft_json`]), the xtables backends with their own
//! `-save` tools, whose text is what their users wrote.
//!
//! A snapshot before and one after sending probe packets tell which rule dropped them
//! ([`Ruleset::drop_hits`]); rules without counters can only be named as candidates
//! ([`Ruleset::uncounted_drop_candidates`]).
//!
//! Every tool runs with a time limit ([`crate::tool::TOOL_TIMEOUT`]): a hung `nft` must not
//! hang a diagnosis.

mod nft;

use std::collections::{BTreeSet, HashMap};

pub use nft::{NftJsonError, parse_nft_json};
pub use tracer_evidence::Backend;

use crate::tool::{run, shown};

/// The nftables family an xtables backend's tables live in; empty for [`Backend::Nft`], whose
/// tables each name their own.
fn xtables_family(backend: Backend) -> &'static str {
    match backend {
        Backend::IptablesNft | Backend::IptablesLegacy => "ip",
        Backend::Ip6tablesNft | Backend::Ip6tablesLegacy => "ip6",
        Backend::ArptablesNft | Backend::ArptablesLegacy => "arp",
        Backend::Nft => "",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    pub backend: Backend,
    /// "ip", "ip6", "inet", "arp", "bridge" or "netdev".
    pub family: String,
    pub table: String,
    pub chain: String,
    /// nft: the rule's handle, which names it across snapshots; `None` for xtables rules.
    pub handle: Option<u64>,
    /// xtables: `-A CHAIN ...` as `iptables -S` prints it; nft: the rule in nft's syntax, made
    /// from its JSON, with `counter` standing for its current values.
    pub text: String,
    /// 1-based within its chain.
    pub position: usize,
    /// `None` when the rule has no counter (nft: or a named counter several rules share).
    pub packets: Option<u64>,
    /// Its verdict is DROP or REJECT (nft: or a verdict map that can give `drop`).
    pub drops: bool,
    /// Its counter counts exactly the packets it drops: every xtables rule with a counter; an
    /// nft rule whose counter directly precedes its `drop` or `reject` (see [`parse_nft_json`]). A
    /// dropping rule that does not is only ever a candidate.
    pub counts_drops: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub name: String,
    /// nft: "input", "output", ...; xtables built-in chains: the chain name lower-cased;
    /// `None` for chains only reached by jumps.
    pub hook: Option<String>,
    /// nft base chains: "filter", "nat" or "route"; `None` otherwise.
    pub chain_type: Option<String>,
    pub policy_drop: bool,
    /// Packets the policy decided; `None` when the backend does not count them (nft).
    pub policy_packets: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
    pub chains: Vec<Chain>,
    /// Sources that could not be read (missing tool, failing command), one line each.
    pub errors: Vec<String>,
}

/// A rule (or a chain's drop policy, with `rule: None`) that dropped packets between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropHit {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
    pub rule: Option<String>,
    /// The nft rule's handle.
    pub handle: Option<u64>,
    pub packets: u64,
}

/// Reads the ruleset of namespace `netns` ("" for tracer's own) from every backend.
/// Sources that cannot be read are skipped and said so in `errors`.
pub fn snapshot(netns: &str) -> Ruleset {
    let mut errors = Vec::new();
    let xtables_nft = read_xtables_nft(netns, &mut errors);
    let legacy = read_xtables_legacy(netns, &mut errors);
    const NFT_ARGS: [&str; 3] = ["-j", "list", "ruleset"];
    let nft = match run(netns, "nft", &NFT_ARGS).map(|json| parse_nft_json(&json)) {
        Ok(Ok(parsed)) => Parsed::from(parsed),
        Ok(Err(err)) => {
            errors.push(format!("{}: {err}", shown(netns, "nft", &NFT_ARGS)));
            Parsed::default()
        }
        Err(err) => {
            errors.push(err);
            Parsed::default()
        }
    };
    assemble(Readings {
        xtables_nft,
        legacy,
        nft,
        errors,
    })
}

/// Rules and chains from one or more sources.
#[derive(Debug, Default)]
struct Parsed {
    rules: Vec<Rule>,
    chains: Vec<Chain>,
}

impl From<(Vec<Rule>, Vec<Chain>)> for Parsed {
    fn from((rules, chains): (Vec<Rule>, Vec<Chain>)) -> Self {
        Self { rules, chains }
    }
}

impl Parsed {
    fn extend(&mut self, other: impl Into<Parsed>) {
        let other = other.into();
        self.rules.extend(other.rules);
        self.chains.extend(other.chains);
    }

    fn retain_tables(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.rules.retain(|rule| keep(&rule.family, &rule.table));
        self.chains
            .retain(|chain| keep(&chain.family, &chain.table));
    }
}

/// Everything read from one namespace, before the views of the same tables are reconciled.
#[derive(Debug, Default)]
struct Readings {
    /// iptables-nft, ip6tables-nft, arptables-nft: their tables are nftables tables too.
    xtables_nft: Parsed,
    legacy: Parsed,
    nft: Parsed,
    errors: Vec<String>,
}

fn read_xtables_nft(netns: &str, errors: &mut Vec<String>) -> Parsed {
    let mut parsed = Parsed::default();
    for (backend, program) in [
        (Backend::IptablesNft, "iptables-nft-save"),
        (Backend::Ip6tablesNft, "ip6tables-nft-save"),
    ] {
        match run(netns, program, &["-c"]) {
            Ok(text) => parsed.extend(parse_xtables_save(&text, backend)),
            Err(err) => errors.push(err),
        }
    }
    match run(netns, "arptables-nft-save", &["-c"]) {
        Ok(save) => {
            // arptables-nft-save prints no policy counters; its listing does. Listing a table
            // that does not exist would only show made-up empty chains, so only ask when needed.
            let listing = if save.lines().any(|line| line.trim() == "*filter") {
                match run(
                    netns,
                    "arptables-nft",
                    &["-t", "filter", "-L", "-n", "-v", "-x"],
                ) {
                    Ok(listing) => Some(listing),
                    Err(err) => {
                        errors.push(err);
                        None
                    }
                }
            } else {
                None
            };
            parsed.extend(parse_arptables_nft(&save, listing.as_deref()));
        }
        Err(err) => errors.push(err),
    }
    parsed
}

/// arptables-nft rules from its save output, with policy counters from its listing if given.
fn parse_arptables_nft(save: &str, listing: Option<&str>) -> Parsed {
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

fn read_xtables_legacy(netns: &str, errors: &mut Vec<String>) -> Parsed {
    let mut parsed = Parsed::default();
    for (backend, names_file, program) in [
        (
            Backend::IptablesLegacy,
            "/proc/net/ip_tables_names",
            "iptables-legacy-save",
        ),
        (
            Backend::Ip6tablesLegacy,
            "/proc/net/ip6_tables_names",
            "ip6tables-legacy-save",
        ),
        // Debian's arptables-legacy-save is a script that lists through `arptables`, which is
        // arptables-nft: it would show the wrong rules, and without counters.
        (
            Backend::ArptablesLegacy,
            "/proc/net/arp_tables_names",
            "arptables-legacy",
        ),
    ] {
        for table in legacy_table_names(netns, names_file, errors) {
            let result = if backend == Backend::ArptablesLegacy {
                run(netns, program, &["-t", &table, "-L", "-n", "-v", "-x"])
                    .map(|text| parse_arptables_list(&text, backend, &table))
            } else {
                run(netns, program, &["-c", "-t", &table])
                    .map(|text| parse_xtables_save(&text, backend))
            };
            match result {
                Ok(tables) => parsed.extend(tables),
                Err(err) => errors.push(err),
            }
        }
    }
    parsed
}

/// Legacy tables that already exist in the namespace. Reading this file creates nothing.
fn legacy_table_names(netns: &str, names_file: &str, errors: &mut Vec<String>) -> Vec<String> {
    match run(netns, "cat", &[names_file]) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            // The names become arguments: accept only what a table name looks like.
            .filter(|name| {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .map(str::to_owned)
            .collect(),
        // A kernel without legacy x_tables has no such file, and so no legacy tables.
        Err(err) if err.contains("No such file or directory") => Vec::new(),
        Err(err) => {
            errors.push(err);
            Vec::new()
        }
    }
}

/// Joins the views. iptables-nft's tables are nftables tables too: `nft` shows them again, in
/// a syntax the user did not write, so they are taken from the xtables view — unless that view
/// is unfaithful, which happens when a native nft table has an iptables name (iptables-nft-save
/// 1.8.9 prints `ip saddr { ... } drop` as `-A INPUT -j DROP`, with a made-up counter).
fn assemble(readings: Readings) -> Ruleset {
    let Readings {
        mut xtables_nft,
        legacy,
        mut nft,
        mut errors,
    } = readings;
    let xtables_tables: BTreeSet<(String, String)> = xtables_nft
        .chains
        .iter()
        .map(|chain| (chain.family.clone(), chain.table.clone()))
        .chain(
            xtables_nft
                .rules
                .iter()
                .map(|rule| (rule.family.clone(), rule.table.clone())),
        )
        .collect();
    for (family, table) in &xtables_tables {
        let same_table =
            |other_family: &str, other_table: &str| other_family == family && other_table == table;
        let nft_has_table = nft
            .chains
            .iter()
            .any(|chain| same_table(&chain.family, &chain.table));
        if !nft_has_table {
            continue;
        }
        if xtables_view_is_faithful(&xtables_nft, &nft, family, table) {
            nft.retain_tables(|f, t| !same_table(f, t));
        } else {
            xtables_nft.retain_tables(|f, t| !same_table(f, t));
            errors.push(format!(
                "table {family} {table} holds rules iptables-nft cannot show faithfully; \
                 it is read with nft instead"
            ));
        }
    }
    let mut ruleset = Ruleset {
        errors,
        ..Ruleset::default()
    };
    for parsed in [xtables_nft, legacy, nft] {
        ruleset.rules.extend(parsed.rules);
        ruleset.chains.extend(parsed.chains);
    }
    ruleset
}

/// iptables-nft gives every rule a counter and shows every rule: a table where nft sees a rule
/// without counter, or a different number of rules in a chain, holds rules it did not write.
fn xtables_view_is_faithful(xtables: &Parsed, nft: &Parsed, family: &str, table: &str) -> bool {
    let in_table = |rule: &&Rule| rule.family == family && rule.table == table;
    let nft_rules: Vec<&Rule> = nft.rules.iter().filter(in_table).collect();
    if nft_rules.iter().any(|rule| rule.packets.is_none()) {
        return false;
    }
    let mut rules_per_chain: HashMap<&str, (usize, usize)> = HashMap::new();
    for rule in xtables.rules.iter().filter(in_table) {
        rules_per_chain.entry(&rule.chain).or_default().0 += 1;
    }
    for rule in nft_rules {
        rules_per_chain.entry(&rule.chain).or_default().1 += 1;
    }
    rules_per_chain
        .values()
        .all(|(xtables_count, nft_count)| xtables_count == nft_count)
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
fn parse_bracketed_packets(counters: &str) -> Option<u64> {
    let (packets, _bytes) = counters
        .strip_prefix('[')?
        .strip_suffix(']')?
        .split_once(':')?;
    packets.parse().ok()
}

fn xtables_verdict_drops(words: &[&str]) -> bool {
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
fn parse_arptables_list(text: &str, backend: Backend, table: &str) -> (Vec<Rule>, Vec<Chain>) {
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
fn split_words(line: &str) -> Vec<&str> {
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

/// What identifies a chain across snapshots.
type ChainKey<'a> = (Backend, &'a str, &'a str, &'a str);

/// What identifies a rule within its chain across snapshots: an nft rule's handle; an xtables
/// rule's position and text (a rule that moved is looked for by its text alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RuleId<'a> {
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
fn counted_since(before: u64, after: u64) -> u64 {
    after.checked_sub(before).unwrap_or(after)
}

/// `ip` and `ip6` packets also pass the `inet` tables.
fn family_matches(filter: Option<&str>, family: &str) -> bool {
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

/// The fixtures are the real tools' output on Debian 12 (iptables 1.8.9, arptables 0.0.5,
/// nft 1.0.6, kernel 6.18), captured by `netfilter/fixtures/capture.sh` in scratch namespaces
/// `tracer_nf_scratch` and `tracer_nf_peer` joined by a veth pair (10.9.0.2 and
/// 10.9.0.1/.3/.4) and deleted afterwards:
///
/// - iptables(-nft): SPDK's `-I INPUT 1 -i cvl_0_1 -p tcp --dport 4420 -j ACCEPT` with its
///   comment, `-A INPUT -p icmp -j DROP`, `-A INPUT -p udp -j SPDK_BLOCK` with `SPDK_BLOCK`
///   rejecting udp port 9, `-P FORWARD DROP`, raw `PREROUTING` dropping udp port 7;
///   ip6tables an echo-request DROP; arptables `-A INPUT -s 10.9.0.3 -j DROP`.
/// - iptables-legacy: `-P INPUT DROP` with accepts for lo, icmp, udp 7 and 9, a commented
///   tcp 4420 DROP, an OUTPUT REJECT; mangle `PREROUTING` dropping udp port 10;
///   ip6tables-legacy a tcp 4420 DROP; arptables-legacy `-A INPUT -s 10.9.0.4 -j DROP`.
/// - nft (`nft -j list ruleset`): `inet guard` (output chain with a counter-less drop, a quota,
///   a counter drop, drops counted by a named counter and by one two rules share, a commented
///   accept; input chain with policy drop, anonymous and named sets, a jump, verdict maps with
///   and without drop, a reject, a log prefix), `netdev edge` dropping udp port 7 on lo
///   ingress.
///
/// `*_before` was taken right after setup, `*_after` once the peer had sent ARP from .3 and .4,
/// three pings, udp to ports 9 (twice), 7, 10 (four times), 11, a tcp SYN to 4420, and the
/// scratch namespace udp to 10.9.0.1 ports 9, 12 (twice) and 13, and to 127.0.0.1:7. `*_native`
/// is another namespace with only a native `table ip filter` (a set match drop, a counter
/// accept, policy drop). `nft_moved_*` has two alike `udp dport 9 counter drop` rules, the
/// first with one packet, then a third one inserted above both, which counted three more.
#[cfg(test)]
mod tests {
    use super::*;

    struct Fixtures {
        iptables_nft: &'static str,
        ip6tables_nft: &'static str,
        arptables_nft_save: &'static str,
        arptables_nft_list: &'static str,
        iptables_legacy_filter: &'static str,
        iptables_legacy_mangle: &'static str,
        ip6tables_legacy_filter: &'static str,
        arptables_legacy_list: &'static str,
        nft: &'static str,
    }

    const BEFORE: Fixtures = Fixtures {
        iptables_nft: include_str!("netfilter/fixtures/iptables_nft_save_before.txt"),
        ip6tables_nft: include_str!("netfilter/fixtures/ip6tables_nft_save.txt"),
        arptables_nft_save: include_str!("netfilter/fixtures/arptables_nft_save_before.txt"),
        arptables_nft_list: include_str!("netfilter/fixtures/arptables_nft_list_before.txt"),
        iptables_legacy_filter: include_str!(
            "netfilter/fixtures/iptables_legacy_save_filter_before.txt"
        ),
        iptables_legacy_mangle: include_str!(
            "netfilter/fixtures/iptables_legacy_save_mangle_before.txt"
        ),
        ip6tables_legacy_filter: include_str!(
            "netfilter/fixtures/ip6tables_legacy_save_filter.txt"
        ),
        arptables_legacy_list: include_str!("netfilter/fixtures/arptables_legacy_list_before.txt"),
        nft: include_str!("netfilter/fixtures/nft_before.json"),
    };

    const AFTER: Fixtures = Fixtures {
        iptables_nft: include_str!("netfilter/fixtures/iptables_nft_save_after.txt"),
        ip6tables_nft: include_str!("netfilter/fixtures/ip6tables_nft_save.txt"),
        arptables_nft_save: include_str!("netfilter/fixtures/arptables_nft_save_after.txt"),
        arptables_nft_list: include_str!("netfilter/fixtures/arptables_nft_list_after.txt"),
        iptables_legacy_filter: include_str!(
            "netfilter/fixtures/iptables_legacy_save_filter_after.txt"
        ),
        iptables_legacy_mangle: include_str!(
            "netfilter/fixtures/iptables_legacy_save_mangle_after.txt"
        ),
        ip6tables_legacy_filter: include_str!(
            "netfilter/fixtures/ip6tables_legacy_save_filter.txt"
        ),
        arptables_legacy_list: include_str!("netfilter/fixtures/arptables_legacy_list_after.txt"),
        nft: include_str!("netfilter/fixtures/nft_after.json"),
    };

    const IPTABLES_NFT_SAVE_NATIVE: &str =
        include_str!("netfilter/fixtures/iptables_nft_save_native.txt");
    const NFT_NATIVE: &str = include_str!("netfilter/fixtures/nft_native.json");
    const NFT_MOVED_BEFORE: &str = include_str!("netfilter/fixtures/nft_moved_before.json");
    const NFT_MOVED_AFTER: &str = include_str!("netfilter/fixtures/nft_moved_after.json");

    fn nft(json: &str) -> Parsed {
        Parsed::from(parse_nft_json(json).expect("the fixture is nft's JSON"))
    }

    /// What `snapshot` would have made of the fixtures' namespace.
    fn ruleset(fixtures: &Fixtures) -> Ruleset {
        let mut xtables_nft = Parsed::default();
        xtables_nft.extend(parse_xtables_save(
            fixtures.iptables_nft,
            Backend::IptablesNft,
        ));
        xtables_nft.extend(parse_xtables_save(
            fixtures.ip6tables_nft,
            Backend::Ip6tablesNft,
        ));
        xtables_nft.extend(parse_arptables_nft(
            fixtures.arptables_nft_save,
            Some(fixtures.arptables_nft_list),
        ));
        let mut legacy = Parsed::default();
        for (text, backend) in [
            (fixtures.iptables_legacy_filter, Backend::IptablesLegacy),
            (fixtures.iptables_legacy_mangle, Backend::IptablesLegacy),
            (fixtures.ip6tables_legacy_filter, Backend::Ip6tablesLegacy),
        ] {
            legacy.extend(parse_xtables_save(text, backend));
        }
        legacy.extend(parse_arptables_list(
            fixtures.arptables_legacy_list,
            Backend::ArptablesLegacy,
            "filter",
        ));
        assemble(Readings {
            xtables_nft,
            legacy,
            nft: nft(fixtures.nft),
            errors: Vec::new(),
        })
    }

    /// A ruleset of native nftables only.
    fn nft_ruleset(json: &str) -> Ruleset {
        let parsed = nft(json);
        Ruleset {
            rules: parsed.rules,
            chains: parsed.chains,
            errors: Vec::new(),
        }
    }

    fn find_rule<'a>(rules: &'a [Rule], table: &str, chain: &str, position: usize) -> &'a Rule {
        rules
            .iter()
            .find(|rule| rule.table == table && rule.chain == chain && rule.position == position)
            .unwrap_or_else(|| panic!("no rule {table}/{chain}#{position} in {rules:#?}"))
    }

    fn find_chain<'a>(chains: &'a [Chain], table: &str, name: &str) -> &'a Chain {
        chains
            .iter()
            .find(|chain| chain.table == table && chain.name == name)
            .unwrap_or_else(|| panic!("no chain {table}/{name} in {chains:#?}"))
    }

    /// An xtables rule's (or any policy's) hit.
    fn hit(
        backend: Backend,
        family: &str,
        table: &str,
        chain: &str,
        rule: Option<&str>,
        packets: u64,
    ) -> DropHit {
        DropHit {
            backend,
            family: family.to_owned(),
            table: table.to_owned(),
            chain: chain.to_owned(),
            rule: rule.map(str::to_owned),
            handle: None,
            packets,
        }
    }

    /// A native nft rule's hit.
    fn nft_hit(
        (family, table, chain): (&str, &str, &str),
        handle: u64,
        rule: &str,
        packets: u64,
    ) -> DropHit {
        DropHit {
            handle: Some(handle),
            ..hit(Backend::Nft, family, table, chain, Some(rule), packets)
        }
    }

    const GUARD_OUT: (&str, &str, &str) = ("inet", "guard", "out");

    #[test]
    fn parses_iptables_nft_save() {
        let (rules, chains) = parse_xtables_save(AFTER.iptables_nft, Backend::IptablesNft);
        assert_eq!(rules.len(), 5);
        assert_eq!(
            find_rule(&rules, "filter", "INPUT", 1),
            &Rule {
                backend: Backend::IptablesNft,
                family: "ip".to_owned(),
                table: "filter".to_owned(),
                chain: "INPUT".to_owned(),
                handle: None,
                text: "-A INPUT -i cvl_0_1 -p tcp -m tcp --dport 4420 -m comment --comment \
                       \"SPDK_NVMF:-I INPUT 1 -i cvl_0_1 -p tcp --dport 4420 -j ACCEPT\" -j ACCEPT"
                    .to_owned(),
                position: 1,
                packets: Some(0),
                drops: false,
                counts_drops: true,
            }
        );
        let icmp = find_rule(&rules, "filter", "INPUT", 2);
        assert_eq!(icmp.text, "-A INPUT -p icmp -j DROP");
        assert_eq!((icmp.packets, icmp.drops), (Some(3), true));
        assert!(
            !find_rule(&rules, "filter", "INPUT", 3).drops,
            "a jump is no verdict"
        );
        let reject = find_rule(&rules, "filter", "SPDK_BLOCK", 1);
        assert_eq!((reject.packets, reject.drops), (Some(2), true));
        let raw = find_rule(&rules, "raw", "PREROUTING", 1);
        assert_eq!(raw.text, "-A PREROUTING -p udp -m udp --dport 7 -j DROP");

        let forward = find_chain(&chains, "filter", "FORWARD");
        assert_eq!(forward.hook.as_deref(), Some("forward"));
        assert!(forward.policy_drop);
        assert_eq!(forward.policy_packets, Some(0));
        let user_chain = find_chain(&chains, "filter", "SPDK_BLOCK");
        assert_eq!(
            (
                user_chain.hook.as_deref(),
                user_chain.policy_drop,
                user_chain.policy_packets
            ),
            (None, false, None)
        );
        assert_eq!(chains.len(), 6);
    }

    #[test]
    fn parses_legacy_save_with_escaped_quotes() {
        let (rules, chains) =
            parse_xtables_save(AFTER.iptables_legacy_filter, Backend::IptablesLegacy);
        let guarded = find_rule(&rules, "filter", "INPUT", 4);
        assert_eq!(
            guarded.text,
            r#"-A INPUT -p tcp -m tcp --dport 4420 -m comment --comment "legacy \"guard\" 4420" -j DROP"#
        );
        assert_eq!((guarded.packets, guarded.drops), (Some(1), true));
        let input = find_chain(&chains, "filter", "INPUT");
        assert_eq!((input.policy_drop, input.policy_packets), (true, Some(1)));
    }

    #[test]
    fn parses_arptables_nft_save_without_policy_counters() {
        let (rules, chains) = parse_xtables_save(AFTER.arptables_nft_save, Backend::ArptablesNft);
        let drop = find_rule(&rules, "filter", "INPUT", 1);
        assert_eq!(drop.text, "-A INPUT -j DROP -s 10.9.0.3");
        assert_eq!(
            (drop.family.as_str(), drop.packets, drop.drops),
            ("arp", Some(1), true)
        );
        let input = find_chain(&chains, "filter", "INPUT");
        assert_eq!(
            (input.hook.as_deref(), input.policy_packets),
            (Some("input"), None)
        );

        // The listing has them.
        let parsed = parse_arptables_nft(AFTER.arptables_nft_save, Some(AFTER.arptables_nft_list));
        assert!(
            parsed
                .chains
                .iter()
                .all(|chain| chain.policy_packets == Some(0))
        );
        assert_eq!(parsed.rules, rules);
    }

    #[test]
    fn arptables_listing_reads_like_its_save_format() {
        let (listed, _) =
            parse_arptables_list(AFTER.arptables_nft_list, Backend::ArptablesNft, "filter");
        let (saved, _) = parse_xtables_save(AFTER.arptables_nft_save, Backend::ArptablesNft);
        assert_eq!(listed, saved);

        let (rules, chains) = parse_arptables_list(
            AFTER.arptables_legacy_list,
            Backend::ArptablesLegacy,
            "filter",
        );
        let texts: Vec<&str> = rules.iter().map(|rule| rule.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "-A INPUT -j DROP -s 10.9.0.4",
                "-A INPUT -j ACCEPT -i lo --opcode 1"
            ]
        );
        assert_eq!((rules[0].packets, rules[0].drops), (Some(2), true));
        let names: Vec<&str> = chains.iter().map(|chain| chain.name.as_str()).collect();
        assert_eq!(names, ["INPUT", "OUTPUT", "FORWARD"]);
        assert_eq!(chains[0].policy_packets, Some(2));
    }

    #[test]
    fn xtables_tables_are_not_listed_twice() {
        let ruleset = ruleset(&AFTER);
        assert_eq!(ruleset.errors, Vec::<String>::new());
        let nft_tables: BTreeSet<(&str, &str)> = ruleset
            .chains
            .iter()
            .filter(|chain| chain.backend == Backend::Nft)
            .map(|chain| (chain.family.as_str(), chain.table.as_str()))
            .collect();
        assert_eq!(
            nft_tables.into_iter().collect::<Vec<_>>(),
            [("inet", "guard"), ("netdev", "edge")]
        );
        let count = |backend| {
            ruleset
                .rules
                .iter()
                .filter(|rule| rule.backend == backend)
                .count()
        };
        assert_eq!(count(Backend::IptablesNft), 5);
        assert_eq!(count(Backend::Ip6tablesNft), 1);
        assert_eq!(count(Backend::ArptablesNft), 2);
        assert_eq!(count(Backend::IptablesLegacy), 6);
        assert_eq!(count(Backend::Ip6tablesLegacy), 1);
        assert_eq!(count(Backend::ArptablesLegacy), 2);
        assert_eq!(count(Backend::Nft), 19);
    }

    #[test]
    fn native_table_with_an_iptables_name_is_read_with_nft() {
        // iptables-nft-save shows the set match as a bare `-A INPUT -j DROP`, counter and all.
        let misread = parse_xtables_save(IPTABLES_NFT_SAVE_NATIVE, Backend::IptablesNft);
        assert_eq!(
            find_rule(&misread.0, "filter", "INPUT", 1).text,
            "-A INPUT -j DROP"
        );

        let ruleset = assemble(Readings {
            xtables_nft: Parsed::from(misread),
            nft: nft(NFT_NATIVE),
            ..Readings::default()
        });
        assert!(
            ruleset
                .rules
                .iter()
                .all(|rule| rule.backend == Backend::Nft)
        );
        assert!(
            ruleset
                .chains
                .iter()
                .all(|chain| chain.backend == Backend::Nft)
        );
        assert_eq!(ruleset.errors.len(), 1, "{:?}", ruleset.errors);
        assert_eq!(
            ruleset.uncounted_drop_candidates(Some("ip"), Some("filter"), Some("INPUT")),
            [
                nft_hit(
                    ("ip", "filter", "INPUT"),
                    3,
                    "ip saddr { 10.8.0.1, 10.8.0.2 } drop",
                    0
                ),
                hit(Backend::Nft, "ip", "filter", "INPUT", None, 0),
            ]
        );
    }

    #[test]
    fn drop_hits_between_fixture_snapshots() {
        let before = ruleset(&BEFORE);
        let after = ruleset(&AFTER);
        assert_eq!(
            before.drop_hits(&after),
            [
                hit(
                    Backend::IptablesNft,
                    "ip",
                    "raw",
                    "PREROUTING",
                    Some("-A PREROUTING -p udp -m udp --dport 7 -j DROP"),
                    1
                ),
                hit(
                    Backend::IptablesNft,
                    "ip",
                    "filter",
                    "INPUT",
                    Some("-A INPUT -p icmp -j DROP"),
                    3
                ),
                hit(
                    Backend::IptablesNft,
                    "ip",
                    "filter",
                    "SPDK_BLOCK",
                    Some(
                        "-A SPDK_BLOCK -p udp -m udp --dport 9 -j REJECT \
                         --reject-with icmp-port-unreachable"
                    ),
                    2
                ),
                hit(
                    Backend::ArptablesNft,
                    "arp",
                    "filter",
                    "INPUT",
                    Some("-A INPUT -j DROP -s 10.9.0.3"),
                    1
                ),
                hit(
                    Backend::IptablesLegacy,
                    "ip",
                    "filter",
                    "INPUT",
                    Some(
                        r#"-A INPUT -p tcp -m tcp --dport 4420 -m comment --comment "legacy \"guard\" 4420" -j DROP"#
                    ),
                    1
                ),
                hit(
                    Backend::IptablesLegacy,
                    "ip",
                    "mangle",
                    "PREROUTING",
                    Some("-A PREROUTING -p udp -m udp --dport 10 -j DROP"),
                    4
                ),
                hit(
                    Backend::ArptablesLegacy,
                    "arp",
                    "filter",
                    "INPUT",
                    Some("-A INPUT -j DROP -s 10.9.0.4"),
                    2
                ),
                nft_hit(GUARD_OUT, 11, "udp dport 9 counter drop", 1),
                // A named counter only one rule uses counts for it; the shared one cannot.
                nft_hit(
                    GUARD_OUT,
                    12,
                    r#"udp dport 12 counter name "probes" drop"#,
                    2
                ),
                nft_hit(
                    ("netdev", "edge", "lo_in"),
                    2,
                    "udp dport 7 counter drop",
                    1
                ),
                hit(Backend::IptablesLegacy, "ip", "filter", "INPUT", None, 1),
            ]
        );
        assert_eq!(after.drop_hits(&after), []);
    }

    #[test]
    fn nft_rules_are_matched_by_handle() {
        let before = nft_ruleset(NFT_MOVED_BEFORE);
        let after = nft_ruleset(NFT_MOVED_AFTER);
        let rules = |ruleset: &Ruleset| -> Vec<(Option<u64>, usize, Option<u64>)> {
            ruleset
                .rules
                .iter()
                .map(|rule| (rule.handle, rule.position, rule.packets))
                .collect()
        };
        assert_eq!(
            rules(&before),
            [(Some(2), 1, Some(1)), (Some(3), 2, Some(0))]
        );
        assert_eq!(
            rules(&after),
            [
                (Some(4), 1, Some(3)),
                (Some(2), 2, Some(1)),
                (Some(3), 3, Some(0))
            ]
        );
        assert!(
            after
                .rules
                .iter()
                .all(|rule| rule.text == "udp dport 9 counter drop")
        );
        // By position and text, the new first rule would have been the old first rule (2
        // packets, not 3), and the old first rule the old second one (1 packet, not 0).
        let wall_in = ("ip", "wall", "in");
        assert_eq!(
            before.drop_hits(&after),
            [nft_hit(wall_in, 4, "udp dport 9 counter drop", 3)]
        );
        // A rule deleted in between is not blamed, nor does its handle go to another.
        let mut deleted = after.clone();
        deleted.rules.retain(|rule| rule.handle != Some(2));
        assert_eq!(
            before.drop_hits(&deleted),
            [nft_hit(wall_in, 4, "udp dport 9 counter drop", 3)]
        );
        assert_eq!(after.drop_hits(&after), []);
    }

    #[test]
    fn uncounted_candidates_follow_the_filters() {
        let ruleset = ruleset(&AFTER);
        let rules_of = |hits: Vec<DropHit>| -> Vec<Option<String>> {
            hits.into_iter().map(|hit| hit.rule).collect()
        };
        // inet tables see ip packets too; a verdict map that can drop is a candidate.
        assert_eq!(
            rules_of(ruleset.uncounted_drop_candidates(Some("ip"), None, Some("in"))),
            [
                Some("ip saddr @blocked drop".to_owned()),
                Some(
                    r#"meta l4proto tcp log prefix "drop: " drop comment "drop # handle 5""#
                        .to_owned()
                ),
                Some("udp dport vmap { 5000 : drop, 5001 : accept }".to_owned()),
                Some("udp dport vmap @ports".to_owned()),
                None,
            ]
        );
        assert_eq!(
            ruleset.uncounted_drop_candidates(None, Some("guard"), Some("out")),
            [
                nft_hit(GUARD_OUT, 9, "tcp dport 4420 drop", 0),
                nft_hit(
                    GUARD_OUT,
                    10,
                    "meta l4proto udp quota over 10 mbytes drop",
                    0
                ),
                nft_hit(
                    GUARD_OUT,
                    13,
                    r#"udp dport 13 counter name "shared" drop"#,
                    0
                ),
                nft_hit(
                    GUARD_OUT,
                    14,
                    r#"udp dport 14 counter name "shared" drop"#,
                    0
                ),
            ]
        );
        // xtables counts everything, its policies included.
        assert_eq!(
            ruleset.uncounted_drop_candidates(Some("ip"), Some("filter"), None),
            []
        );
        assert_eq!(
            ruleset.uncounted_drop_candidates(Some("arp"), None, None),
            []
        );
        assert_eq!(ruleset.uncounted_drop_candidates(None, None, None).len(), 9);
    }

    fn xtables(text: &str) -> Ruleset {
        let (rules, chains) = parse_xtables_save(text, Backend::IptablesLegacy);
        Ruleset {
            rules,
            chains,
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_rule_that_moved_keeps_its_baseline() {
        let before = xtables("*filter\n:INPUT ACCEPT [0:0]\n[10:840] -A INPUT -p icmp -j DROP\n");
        let after = xtables(
            "*filter\n:INPUT ACCEPT [0:0]\n[0:0] -A INPUT -p tcp -j ACCEPT\n\
             [12:1008] -A INPUT -p icmp -j DROP\n",
        );
        assert_eq!(
            before.drop_hits(&after),
            [hit(
                Backend::IptablesLegacy,
                "ip",
                "filter",
                "INPUT",
                Some("-A INPUT -p icmp -j DROP"),
                2
            )]
        );
    }

    #[test]
    fn new_and_zeroed_rules_count_from_zero() {
        let before = xtables("*filter\n:INPUT DROP [7:0]\n[9:0] -A INPUT -p udp -j DROP\n");
        let after = xtables(
            "*filter\n:INPUT DROP [9:0]\n[3:0] -A INPUT -p udp -j DROP\n\
             [4:0] -A INPUT -p tcp -j REJECT\n",
        );
        let packets: Vec<u64> = before
            .drop_hits(&after)
            .iter()
            .map(|hit| hit.packets)
            .collect();
        assert_eq!(packets, [3, 4, 2]);
    }

    #[test]
    fn a_source_missing_before_is_not_blamed() {
        let after = xtables("*filter\n:INPUT DROP [5:0]\n[9:0] -A INPUT -p udp -j DROP\n");
        assert_eq!(Ruleset::default().drop_hits(&after), []);
        let after = nft_ruleset(NFT_MOVED_AFTER);
        assert_eq!(Ruleset::default().drop_hits(&after), []);
    }

    #[test]
    fn garbage_does_not_panic() {
        let fixtures = [
            AFTER.iptables_nft,
            AFTER.arptables_nft_save,
            AFTER.arptables_legacy_list,
            AFTER.iptables_legacy_filter,
            AFTER.nft,
            NFT_NATIVE,
        ];
        let mut inputs: Vec<String> = [
            "",
            "\n\n",
            "{{{{ }",
            "}}}}}}",
            "null",
            "[]",
            r#"{"nftables": null}"#,
            r#"{"nftables": [null, 1, "x", [], {}]}"#,
            r#"{"nftables": [{"rule": {}}, {"chain": {}}, {"counter": "x"}, {"map": 1}]}"#,
            r#"{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c",
                "handle": -1, "expr": [null, 1, {}, {"counter": "n"}, {"vmap": {"data": 7}},
                {"vmap": {"data": "@"}}, {"vmap": {"data": {"set": [1, [], [2], [3, 4, 5]]}}},
                {"match": {"left": {"&": [1]}, "right": {"set": {"range": 7}}, "op": 3}},
                {"reject": {"type": null}}, {"log": 1}, {"quota": []},
                {"drop": null, "accept": null}, {"counter": {"packets": -5}}]}}]}"#,
            r#"{"nftables": [{"counter": {"family": "ip", "table": "t", "name": "n"}},
                {"map": {"family": "ip", "table": "t", "name": "m", "map": "verdict",
                "elem": {"drop": null}}}]}"#,
            "table inet x {\n chain c {\n type\n policy\n counter packets\n used\n}\n}",
            "*",
            "*filter\n:\n:X\n[\n[1:2]\n[1:2] -A\n[:] -A X\n[x:y] -A X -j\n-A",
            "Chain\nChain (\nChain X (policy\nChain X (policy DROP x packets, y bytes)\n, pcnt=",
            "Chain X (policy DROP)\n1\n-i\n-i * -o\n , pcnt=-- bcnt=",
            "ü\u{0}\u{7f} # handle é { } \\\" \"\\",
        ]
        .map(str::to_owned)
        .to_vec();
        // Deeply nested, as deep as serde_json reads.
        inputs.push(format!(
            r#"{{"nftables": [{{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{}1{}]}}}}]}}"#,
            r#"{"match": {"left": "#.repeat(60),
            "}}".repeat(60)
        ));
        // Every fixture cut short anywhere, and fed to the wrong parser.
        for fixture in fixtures {
            inputs.extend(
                fixture
                    .char_indices()
                    .step_by(5)
                    .map(|(at, _)| fixture[..at].to_owned()),
            );
        }
        for input in &inputs {
            let _ = parse_xtables_save(input, Backend::IptablesNft);
            let _ = parse_xtables_save(input, Backend::Nft);
            let _ = parse_arptables_list(input, Backend::ArptablesLegacy, "filter");
            let nft = parse_nft_json(input).map(Parsed::from).unwrap_or_default();
            let parsed = parse_arptables_nft(input, Some(input));
            let ruleset = assemble(Readings {
                xtables_nft: parsed,
                nft,
                ..Readings::default()
            });
            let _ = ruleset.drop_hits(&ruleset);
            let _ = ruleset.uncounted_drop_candidates(Some("ip"), Some("filter"), Some("INPUT"));
        }
    }

    /// A namespace of our own, deleted whatever happens.
    struct ScratchNetns {
        name: String,
    }

    impl ScratchNetns {
        fn create() -> Self {
            let name = format!("tracer_nf_test_{}", std::process::id());
            let created = std::process::Command::new("ip")
                .args(["netns", "add", &name])
                .status();
            assert!(
                created.as_ref().is_ok_and(|status| status.success()),
                "ip netns add {name}: {created:?}"
            );
            Self { name }
        }

        /// Runs a command inside; the test's setup must succeed.
        fn exec(&self, command: &[&str]) -> String {
            let output = run(&self.name, command[0], &command[1..]);
            output.unwrap_or_else(|err| panic!("{err}"))
        }

        fn send_udp(&self, port: u16, count: usize) {
            let name = self.name.clone();
            let sent = std::thread::spawn(move || -> std::io::Result<()> {
                let _inside =
                    crate::netns::NetnsGuard::enter(&name).map_err(std::io::Error::other)?;
                let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
                for _ in 0..count {
                    // Dropped on the way in: the send itself succeeds.
                    socket.send_to(b"probe", ("127.0.0.1", port))?;
                }
                Ok(())
            })
            .join();
            assert!(
                matches!(sent, Ok(Ok(()))),
                "sending to port {port}: {sent:?}"
            );
        }
    }

    impl Drop for ScratchNetns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    #[test]
    fn snapshot_of_a_scratch_namespace_creates_nothing_and_finds_the_dropping_rules() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to create a network namespace");
            return;
        }
        let netns = ScratchNetns::create();
        let legacy_tables = |netns: &ScratchNetns| -> String {
            ["ip_tables_names", "ip6_tables_names", "arp_tables_names"]
                .map(|file| netns.exec(&["cat", &format!("/proc/net/{file}")]))
                .concat()
        };

        let empty = snapshot(&netns.name);
        assert_eq!(empty, Ruleset::default());
        assert_eq!(legacy_tables(&netns), "", "reading made legacy tables");
        assert_eq!(
            netns.exec(&["nft", "list", "ruleset"]),
            "",
            "reading made nft tables"
        );

        netns.exec(&["ip", "link", "set", "lo", "up"]);
        netns.exec(&[
            "iptables-nft",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "9",
            "-j",
            "DROP",
        ]);
        netns.exec(&[
            "iptables-legacy",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "11",
            "-j",
            "DROP",
        ]);
        netns.exec(&["nft", "add", "table", "inet", "guard"]);
        netns.exec(&[
            "nft",
            "add chain inet guard in { type filter hook input priority 0; }",
        ]);
        netns.exec(&["nft", "add rule inet guard in udp dport 10 counter drop"]);
        netns.exec(&["nft", "add rule inet guard in udp dport 12 drop"]);

        let before = snapshot(&netns.name);
        // Inserted above the counted rule: it must not take its place.
        netns.exec(&["nft", "insert rule inet guard in udp dport 13 counter drop"]);
        netns.send_udp(9, 2);
        netns.send_udp(10, 3);
        netns.send_udp(11, 1);
        let after = snapshot(&netns.name);
        assert_eq!(after.errors, Vec::<String>::new());
        let guard_in = ("inet", "guard", "in");
        let counted = find_rule(&after.rules, "guard", "in", 2);
        assert_eq!(counted.text, "udp dport 10 counter drop");
        let handle = counted.handle.expect("nft rules have handles");
        assert_eq!(
            before.drop_hits(&after),
            [
                hit(
                    Backend::IptablesNft,
                    "ip",
                    "filter",
                    "INPUT",
                    Some("-A INPUT -p udp -m udp --dport 9 -j DROP"),
                    2
                ),
                hit(
                    Backend::IptablesLegacy,
                    "ip",
                    "filter",
                    "INPUT",
                    Some("-A INPUT -p udp -m udp --dport 11 -j DROP"),
                    1
                ),
                nft_hit(guard_in, handle, "udp dport 10 counter drop", 3),
            ]
        );
        assert_eq!(
            after.uncounted_drop_candidates(Some("ip"), None, None),
            [nft_hit(guard_in, handle + 1, "udp dport 12 drop", 0)]
        );
        // Only the table the test made itself.
        assert_eq!(legacy_tables(&netns), "filter\n");
    }
}
