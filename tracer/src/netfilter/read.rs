//! Running the tools of every backend in a namespace, and joining what they show.

use std::collections::{BTreeSet, HashMap};

use super::{
    Backend, Ruleset,
    nft_text::{ChainCounts, chain_rule_counts},
    parse::*,
    parse_nft_json,
};
use crate::{
    netns::NetnsGuard,
    tool::{run, shown},
};

/// Reads the ruleset of namespace `netns` ("" for tracer's own) from every backend.
/// Sources that cannot be read are skipped and said so in `errors`.
///
/// nft's JSON costs a second and 150 MB for a table of 20,000 rules, so it is read only for the
/// tables iptables-nft does not show whole: the chains nft lists (cheap) say which tables
/// exist, and a table iptables-nft also shows is checked against nft's plain listing
/// ([`nft_text`](super::nft_text)), read while the xtables tools run.
pub fn snapshot(netns: &str) -> Ruleset {
    let mut errors = Vec::new();
    let nft_tables = nft_tables(netns, &mut errors);
    let (xtables_nft, legacy, nft) = std::thread::scope(|scope| {
        let legacy = scope.spawn(|| {
            let mut errors = Vec::new();
            (read_xtables_legacy(netns, &mut errors), errors)
        });
        let listings: Vec<_> = nft_tables
            .iter()
            .filter(|(family, table)| {
                XTABLES_FAMILIES.contains(&family.as_str()) && plain_name(table)
            })
            .map(|(family, table)| {
                let listing =
                    scope.spawn(|| run(netns, "nft", &["-a", "list", "table", family, table]));
                ((family, table), listing)
            })
            .collect();
        let xtables_nft = read_xtables_nft(netns, &mut errors);
        // A listing that failed (nft timed out on a loaded machine, say) leaves a table
        // iptables-nft shows to its view: nft's JSON would cost more still.
        let in_xtables = |(family, table): (&String, &String)| {
            xtables_nft
                .chains
                .iter()
                .any(|chain| &chain.family == family && &chain.table == table)
        };
        let shown_whole: BTreeSet<(&String, &String)> = listings
            .into_iter()
            .filter_map(|(table, listing)| match listing.join() {
                // A table iptables-nft does not show (a native nft table of the ip family,
                // say) is nft's alone, whatever its rules.
                Ok(Ok(listing)) => (in_xtables(table)
                    && rule_counts_agree(
                        &xtables_nft,
                        table.0,
                        table.1,
                        chain_rule_counts(&listing),
                    ))
                .then_some(table),
                Ok(Err(err)) => {
                    errors.push(format!(
                        "{err}: {} {} not checked against nft's view",
                        table.0, table.1
                    ));
                    in_xtables(table).then_some(table)
                }
                Err(_) => in_xtables(table).then_some(table),
            })
            .collect();
        let unread: Vec<&(String, String)> = nft_tables
            .iter()
            .filter(|(family, table)| !shown_whole.contains(&(family, table)))
            .collect();
        let nft = read_nft_tables(netns, &unread, &mut errors);
        let (legacy, legacy_errors) = legacy.join().unwrap_or_default();
        errors.extend(legacy_errors);
        (xtables_nft, legacy, nft)
    });
    assemble(Readings {
        xtables_nft,
        legacy,
        nft,
        errors,
    })
}

/// The nftables families iptables-nft, ip6tables-nft and arptables-nft keep their tables in.
const XTABLES_FAMILIES: [&str; 3] = ["ip", "ip6", "arp"];

/// The tables nftables holds in `netns`, as (family, name), from its chains: nft lists those
/// without fetching a rule. A table without chains holds no rules.
fn nft_tables(netns: &str, errors: &mut Vec<String>) -> BTreeSet<(String, String)> {
    const ARGS: [&str; 3] = ["-j", "list", "chains"];
    match run(netns, "nft", &ARGS).map(|json| parse_nft_json(&json)) {
        Ok(Ok((_, chains))) => chains
            .into_iter()
            .map(|chain| (chain.family, chain.table))
            .collect(),
        Ok(Err(err)) => {
            errors.push(format!("{}: {err}", shown(netns, "nft", &ARGS)));
            BTreeSet::new()
        }
        Err(err) => {
            errors.push(err);
            BTreeSet::new()
        }
    }
}

/// A name nft cannot take for one of its options (`-f FILE` would make it run a file's
/// commands): the names come from the namespace, which someone else may own.
pub(super) fn plain_name(name: &str) -> bool {
    !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

/// nft's JSON of `tables`, one table at a time; the whole ruleset, kept to `tables`, when a
/// name could pass for one of nft's options.
fn read_nft_tables(netns: &str, tables: &[&(String, String)], errors: &mut Vec<String>) -> Parsed {
    let mut read = |args: &[&str], parsed: &mut Parsed| match run(netns, "nft", args)
        .map(|json| parse_nft_json(&json))
    {
        Ok(Ok(tables)) => parsed.extend(tables),
        Ok(Err(err)) => errors.push(format!("{}: {err}", shown(netns, "nft", args))),
        Err(err) => errors.push(err),
    };
    let mut parsed = Parsed::default();
    if tables
        .iter()
        .all(|(family, table)| plain_name(family) && plain_name(table))
    {
        for (family, table) in tables {
            read(&["-j", "list", "table", family, table], &mut parsed);
        }
    } else {
        read(&["-j", "list", "ruleset"], &mut parsed);
        parsed.retain_tables(|family, table| {
            tables
                .iter()
                .any(|wanted| wanted.0 == family && wanted.1 == table)
        });
    }
    parsed
}

/// Everything read from one namespace, before the views of the same tables are reconciled.
#[derive(Debug, Default)]
pub(super) struct Readings {
    /// iptables-nft, ip6tables-nft, arptables-nft: their tables are nftables tables too.
    pub(super) xtables_nft: Parsed,
    pub(super) legacy: Parsed,
    pub(super) nft: Parsed,
    pub(super) errors: Vec<String>,
}

pub(super) fn read_xtables_nft(netns: &str, errors: &mut Vec<String>) -> Parsed {
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

pub(super) fn read_xtables_legacy(netns: &str, errors: &mut Vec<String>) -> Parsed {
    let mut parsed = Parsed::default();
    for (backend, names_file, program) in [
        (
            Backend::IptablesLegacy,
            "ip_tables_names",
            "iptables-legacy-save",
        ),
        (
            Backend::Ip6tablesLegacy,
            "ip6_tables_names",
            "ip6tables-legacy-save",
        ),
        // Debian's arptables-legacy-save is a script that lists through `arptables`, which is
        // arptables-nft: it would show the wrong rules, and without counters.
        (
            Backend::ArptablesLegacy,
            "arp_tables_names",
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

/// Legacy tables that already exist in the namespace, from `/proc/net/{names_file}`. The file is
/// read in place, no tool started (it shows the namespace of the thread that reads it), and
/// reading it creates nothing.
pub(super) fn legacy_table_names(
    netns: &str,
    names_file: &str,
    errors: &mut Vec<String>,
) -> Vec<String> {
    let path = format!("/proc/thread-self/net/{names_file}");
    let read = match NetnsGuard::enter(netns) {
        Ok(_inside) => std::fs::read_to_string(&path),
        Err(err) => {
            errors.push(err.to_string());
            return Vec::new();
        }
    };
    match read {
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
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => {
            errors.push(format!(
                "/proc/net/{names_file} in namespace {netns:?}: {err}"
            ));
            Vec::new()
        }
    }
}

/// Joins the views. iptables-nft's tables are nftables tables too: `nft` shows them again, in
/// a syntax the user did not write, so they are taken from the xtables view — unless that view
/// is unfaithful, which happens when a native nft table has an iptables name (iptables-nft-save
/// 1.8.9 prints `ip saddr { ... } drop` as `-A INPUT -j DROP`, with a made-up counter).
pub(super) fn assemble(readings: Readings) -> Ruleset {
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
pub(super) fn xtables_view_is_faithful(
    xtables: &Parsed,
    nft: &Parsed,
    family: &str,
    table: &str,
) -> bool {
    let mut counts = ChainCounts::new();
    for rule in nft
        .rules
        .iter()
        .filter(|rule| rule.family == family && rule.table == table)
    {
        let entry = counts.entry(rule.chain.clone()).or_default();
        entry.0 += 1;
        if rule.packets.is_none() {
            entry.1 += 1;
        }
    }
    rule_counts_agree(xtables, family, table, counts)
}

/// Whether nft's `counts` of a table's rules (per chain: rules, rules without counter) are
/// those of the xtables view: every rule counted, as many in each chain.
fn rule_counts_agree(xtables: &Parsed, family: &str, table: &str, nft: ChainCounts) -> bool {
    if nft.values().any(|(_, uncounted)| *uncounted > 0) {
        return false;
    }
    let mut rules_per_chain: HashMap<&str, (usize, usize)> = HashMap::new();
    for rule in xtables
        .rules
        .iter()
        .filter(|rule| rule.family == family && rule.table == table)
    {
        rules_per_chain.entry(&rule.chain).or_default().0 += 1;
    }
    for (chain, (rules, _)) in &nft {
        rules_per_chain.entry(chain).or_default().1 += rules;
    }
    rules_per_chain
        .values()
        .all(|(xtables_count, nft_count)| xtables_count == nft_count)
}
