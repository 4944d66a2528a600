//! Legacy x_tables rules as they come and go. x_tables announces nothing, so each watched
//! namespace's legacy tables are read on a short period and each read is compared with the
//! last: a rule that lived less than the period may be missed, and the evidence says so.

use std::{collections::BTreeMap, time::Instant};

use tracer_evidence::RuleWindow;

use super::{
    Rule,
    parse::Parsed,
    read::{legacy_table_names, read_xtables_legacy},
};

/// Where each legacy family lists the tables that exist in a namespace.
const TABLE_NAMES: [&str; 3] = ["ip_tables_names", "ip6_tables_names", "arp_tables_names"];

/// Whether any legacy table exists in `netns` (read in place: no tool started).
fn has_legacy_tables(netns: &str) -> bool {
    TABLE_NAMES
        .iter()
        .any(|file| !legacy_table_names(netns, file, &mut Vec::new()).is_empty())
}

/// How often the legacy tables of a namespace are read.
pub const READ_EVERY_MS: u64 = 500;

/// What names a legacy rule across reads: x_tables rules have no handle, so their family,
/// table, chain and text (a rule written twice is two of the same key).
type RuleKey = (String, String, String, String);

fn key(rule: &Rule) -> RuleKey {
    (
        rule.family.clone(),
        rule.table.clone(),
        rule.chain.clone(),
        rule.text.clone(),
    )
}

/// The rules of one namespace's last read, and when it was.
struct LastRead {
    at_ms: u64,
    tables: bool,
    rules: BTreeMap<RuleKey, (usize, bool)>,
}

/// Legacy rules read on a period in each namespace, as windows of time.
#[derive(Default)]
pub(super) struct LegacyReads {
    last: BTreeMap<String, LastRead>,
}

impl LegacyReads {
    /// Reads `netns`'s legacy tables when the period is up, and opens or closes `windows` for
    /// what changed since the last read. The first read of a namespace is where it starts.
    /// Returns whether the namespace has legacy tables.
    pub(super) fn read(&mut self, netns: &str, now_ms: u64, windows: &mut Vec<RuleWindow>) -> bool {
        if let Some(last) = self.last.get(netns)
            && now_ms < last.at_ms + READ_EVERY_MS
        {
            return last.tables;
        }
        // Asked every period: tools start only where legacy tables exist.
        let started = Instant::now();
        let tables = has_legacy_tables(netns);
        let mut errors = Vec::new();
        let parsed = if tables {
            read_xtables_legacy(netns, &mut errors)
        } else {
            Parsed::default()
        };
        // A rule seen now may have come while the tools ran: it is placed when they finished.
        let now_ms = now_ms + started.elapsed().as_millis() as u64;
        for error in errors {
            log::debug!("reading legacy x_tables in {netns:?}: {error}");
        }
        let mut rules: BTreeMap<RuleKey, (usize, bool)> = BTreeMap::new();
        for rule in &parsed.rules {
            let entry = rules.entry(key(rule)).or_insert((0, rule.drops));
            entry.0 += 1;
        }
        let previous = self.last.insert(
            netns.to_owned(),
            LastRead {
                at_ms: now_ms,
                tables,
                rules: rules.clone(),
            },
        );
        if let Some(previous) = previous {
            changes(netns, &previous.rules, &rules, now_ms, windows);
        }
        tables
    }
}

/// Windows opened for rules `now` holds more of than `before`, closed for rules it holds fewer
/// of (a rule there before watching began gets a window from the start).
fn changes(
    netns: &str,
    before: &BTreeMap<RuleKey, (usize, bool)>,
    now: &BTreeMap<RuleKey, (usize, bool)>,
    now_ms: u64,
    windows: &mut Vec<RuleWindow>,
) {
    let mut keys: Vec<&RuleKey> = before.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (was, drops_before) = before.get(key).copied().unwrap_or((0, false));
        let (is, drops_now) = now.get(key).copied().unwrap_or((0, false));
        let (family, table, chain, text) = key;
        let same = |window: &RuleWindow| {
            window.removed_ms.is_none()
                && window.netns == netns
                && window.family == *family
                && window.table == *table
                && window.chain == *chain
                && window.rule == *text
        };
        for _ in was..is {
            log::info!("legacy rule added in {netns:?}: {text}");
            windows.push(RuleWindow {
                netns: netns.to_owned(),
                family: family.clone(),
                table: table.clone(),
                chain: chain.clone(),
                handle: 0,
                rule: text.clone(),
                drops: drops_now,
                added_ms: Some(now_ms),
                removed_ms: None,
                dropped: 0,
            });
        }
        for _ in is..was {
            log::info!("legacy rule removed in {netns:?}: {text}");
            match windows.iter_mut().rev().find(|window| same(window)) {
                Some(window) => window.removed_ms = Some(now_ms),
                None => windows.push(RuleWindow {
                    netns: netns.to_owned(),
                    family: family.clone(),
                    table: table.clone(),
                    chain: chain.clone(),
                    handle: 0,
                    rule: text.clone(),
                    drops: drops_before,
                    added_ms: None,
                    removed_ms: Some(now_ms),
                    dropped: 0,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> BTreeMap<RuleKey, (usize, bool)> {
        let mut rules = BTreeMap::new();
        for text in texts {
            let key = (
                "ip".to_owned(),
                "filter".to_owned(),
                "INPUT".to_owned(),
                (*text).to_owned(),
            );
            rules.entry(key).or_insert((0, text.ends_with("DROP"))).0 += 1;
        }
        rules
    }

    #[test]
    fn reads_compared_open_and_close_windows() {
        let drop = "-A INPUT -p icmp -j DROP";
        let accept = "-A INPUT -i lo -j ACCEPT";
        let mut windows = Vec::new();
        changes(
            "ns",
            &rules(&[accept]),
            &rules(&[accept, drop]),
            2000,
            &mut windows,
        );
        changes(
            "ns",
            &rules(&[accept, drop]),
            &rules(&[accept]),
            5000,
            &mut windows,
        );
        // A rule there from the start, removed: its window has no start.
        changes("ns", &rules(&[accept]), &rules(&[]), 6000, &mut windows);
        let spans: Vec<_> = windows
            .iter()
            .map(|w| (w.rule.as_str(), w.drops, w.added_ms, w.removed_ms))
            .collect();
        assert_eq!(
            spans,
            [
                (drop, true, Some(2000), Some(5000)),
                (accept, false, None, Some(6000)),
            ]
        );
    }

    #[test]
    fn a_rule_written_twice_is_two_windows() {
        let drop = "-A INPUT -p icmp -j DROP";
        let mut windows = Vec::new();
        changes("ns", &rules(&[]), &rules(&[drop, drop]), 1000, &mut windows);
        changes(
            "ns",
            &rules(&[drop, drop]),
            &rules(&[drop]),
            1500,
            &mut windows,
        );
        let open = windows.iter().filter(|w| w.removed_ms.is_none()).count();
        assert_eq!((windows.len(), open), (2, 1));
    }
}
