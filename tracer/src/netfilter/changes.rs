//! Rules as they come and go: nftables' change announcements (NFNLGRP_NFTABLES) in each
//! watched namespace, which nft and iptables-nft both cause. Each added rule is read once, so
//! that its text is known after it is gone. Legacy x_tables announce nothing: their rules are
//! read on a short period instead (`legacy`), and the evidence says so.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    os::fd::{AsFd as _, BorrowedFd},
};

use tracer_evidence::{Backend, RuleWindow};

use super::{
    legacy::{LegacyReads, READ_EVERY_MS},
    nft::parse_nft_json,
    parse::Parsed,
    read::read_xtables_nft,
};
use crate::{
    netlink::{
        EventSocket,
        codec::{find_attribute, parse_attributes, parse_messages},
    },
    tool::run,
};

/// NFNL_SUBSYS_NFTABLES, in the high byte of the message type.
const NFTABLES: u16 = 10 << 8;
/// enum nf_tables_msg_types (include/uapi/linux/netfilter/nf_tables.h).
const NFT_MSG_DELTABLE: u16 = NFTABLES | 2;
const NFT_MSG_DELCHAIN: u16 = NFTABLES | 5;
const NFT_MSG_NEWRULE: u16 = NFTABLES | 6;
const NFT_MSG_DELRULE: u16 = NFTABLES | 8;
/// NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_HANDLE; NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME;
/// NFTA_TABLE_NAME.
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_HANDLE: u16 = 3;
const CHAIN_TABLE: u16 = 1;
const CHAIN_NAME: u16 = 3;
const TABLE_NAME: u16 = 1;
/// struct nfgenmsg: family, version, resource id.
const NFGENMSG_LEN: usize = 4;

/// One announced change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    Added(RuleKey),
    Removed(RuleKey),
    /// A chain (or, without `chain`, a table) went, and every rule in it.
    Emptied {
        family: String,
        table: String,
        chain: Option<String>,
    },
}

/// A rule, as nftables names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleKey {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
}

fn family_name(family: u8) -> String {
    match family {
        1 => "inet".to_owned(),
        2 => "ip".to_owned(),
        3 => "arp".to_owned(),
        5 => "netdev".to_owned(),
        7 => "bridge".to_owned(),
        10 => "ip6".to_owned(),
        other => other.to_string(),
    }
}

fn text(value: Option<&[u8]>) -> Option<String> {
    let value = value?;
    let end = value
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(value.len());
    Some(String::from_utf8_lossy(&value[..end]).into_owned())
}

/// The rule changes announced in one datagram; other messages (generations, sets) are skipped.
pub fn parse_rule_changes(datagram: &[u8]) -> io::Result<Vec<RuleChange>> {
    let mut changes = Vec::new();
    for message in parse_messages(datagram)? {
        let kind = message.message_type;
        if ![
            NFT_MSG_NEWRULE,
            NFT_MSG_DELRULE,
            NFT_MSG_DELCHAIN,
            NFT_MSG_DELTABLE,
        ]
        .contains(&kind)
        {
            continue;
        }
        let (Some(&family), Some(area)) =
            (message.payload.first(), message.payload.get(NFGENMSG_LEN..))
        else {
            continue;
        };
        let family = family_name(family);
        let attributes = parse_attributes(area)?;
        let attribute = |kind| find_attribute(&attributes, kind);
        let change = match kind {
            NFT_MSG_NEWRULE | NFT_MSG_DELRULE => {
                let (Some(table), Some(chain), Some(handle)) = (
                    text(attribute(RULE_TABLE)),
                    text(attribute(RULE_CHAIN)),
                    attribute(RULE_HANDLE).and_then(|value| value.try_into().ok()),
                ) else {
                    continue;
                };
                let key = RuleKey {
                    family,
                    table,
                    chain,
                    handle: u64::from_be_bytes(handle),
                };
                if kind == NFT_MSG_NEWRULE {
                    RuleChange::Added(key)
                } else {
                    RuleChange::Removed(key)
                }
            }
            NFT_MSG_DELCHAIN => {
                let (Some(table), Some(chain)) =
                    (text(attribute(CHAIN_TABLE)), text(attribute(CHAIN_NAME)))
                else {
                    continue;
                };
                RuleChange::Emptied {
                    family,
                    table,
                    chain: Some(chain),
                }
            }
            _ => {
                let Some(table) = text(attribute(TABLE_NAME)) else {
                    continue;
                };
                RuleChange::Emptied {
                    family,
                    table,
                    chain: None,
                }
            }
        };
        changes.push(change);
    }
    Ok(changes)
}

/// The rule windows a watch keeps; past them, the oldest that came and went are counted instead
/// (those that did not drop first), so that a run of hours stays small.
pub const KEPT_RULE_WINDOWS: usize = 1000;

/// Every rule added or removed in the namespaces listened to, as windows of time.
#[derive(Default)]
pub struct RuleWatch {
    sockets: BTreeMap<String, EventSocket>,
    refused: BTreeSet<String>,
    /// Every namespace listened to, for the legacy tables' reads.
    namespaces: BTreeSet<String>,
    legacy: LegacyReads,
    /// Namespaces where legacy tables were found (and so read on a period).
    legacy_found: BTreeSet<String>,
    pub windows: Vec<RuleWindow>,
    /// Windows of rules that came and went, counted and not kept (past [`KEPT_RULE_WINDOWS`]).
    pub forgotten: u64,
    /// What could not be watched, one line each.
    pub limitations: Vec<String>,
}

impl RuleWatch {
    /// The sockets nftables announces changes on, to wake on; they are only ever added to.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.sockets.values().map(|socket| socket.as_fd())
    }

    /// Listens in `netns` from now on (once per namespace).
    pub fn listen(&mut self, netns: &str) {
        self.namespaces.insert(netns.to_owned());
        if self.sockets.contains_key(netns) || self.refused.contains(netns) {
            return;
        }
        match EventSocket::open_nftables_in(netns) {
            Ok(socket) => {
                self.sockets.insert(netns.to_owned(), socket);
            }
            Err(err) => {
                log::warn!("listening to nftables changes in {netns:?}: {err}");
                self.limitations.push(format!(
                    "nftables changes in {} could not be heard ({err}): a rule that came and went there is not seen",
                    crate::netns::display_name(netns)
                ));
                // Asked once: a namespace that refused is not asked at every look.
                self.refused.insert(netns.to_owned());
            }
        }
    }

    /// The changes announced since the last call, at `now_ms`.
    pub fn drain(&mut self, now_ms: u64) {
        let mut heard = Vec::new();
        for (netns, socket) in &self.sockets {
            let result = socket.drain_datagrams(|datagram| {
                match datagram {
                    Some(datagram) => heard.extend(
                        parse_rule_changes(datagram)?
                            .into_iter()
                            .map(|change| (netns.clone(), change)),
                    ),
                    None => log::warn!("nftables changes in {netns:?} overflowed: some missed"),
                }
                Ok(())
            });
            if let Err(err) = result {
                log::warn!("reading nftables changes in {netns:?}: {err}");
            }
        }
        let mut read: BTreeMap<String, RulesNow> = BTreeMap::new();
        for (netns, change) in heard {
            let rules_now = read.entry(netns.clone()).or_default();
            self.apply(&netns, change, now_ms, rules_now);
        }
        for netns in &self.namespaces {
            let found = self.legacy.read(netns, now_ms, &mut self.windows);
            if found && self.legacy_found.insert(netns.clone()) {
                self.limitations.push(format!(
                    "legacy x_tables in {} read every {READ_EVERY_MS} ms (they announce no changes): a rule that lived less than that may be missed",
                    crate::netns::display_name(netns)
                ));
            }
        }
        self.forget_oldest();
    }

    /// Keeps at most [`KEPT_RULE_WINDOWS`]: forgets the oldest closed windows of rules that
    /// did not drop, then the oldest closed ones; open windows are always kept.
    fn forget_oldest(&mut self) {
        for dropping_too in [false, true] {
            let before = self.windows.len();
            let mut excess = before.saturating_sub(KEPT_RULE_WINDOWS);
            if excess == 0 {
                return;
            }
            self.windows.retain(|window| {
                let forget =
                    excess > 0 && window.removed_ms.is_some() && (dropping_too || !window.drops);
                excess -= usize::from(forget);
                !forget
            });
            self.forgotten += (before - self.windows.len()) as u64;
        }
    }

    fn apply(&mut self, netns: &str, change: RuleChange, now_ms: u64, rules_now: &mut RulesNow) {
        match change {
            RuleChange::Added(key) => {
                let (rule, drops) = describe(netns, &key, rules_now);
                log::info!("rule added in {netns:?}: {rule}");
                self.windows.push(RuleWindow {
                    netns: netns.to_owned(),
                    family: key.family,
                    table: key.table,
                    chain: key.chain,
                    handle: key.handle,
                    rule,
                    drops,
                    added_ms: Some(now_ms),
                    removed_ms: None,
                    dropped: 0,
                });
            }
            RuleChange::Removed(key) => {
                let open = self.windows.iter_mut().find(|window| {
                    window.removed_ms.is_none()
                        && window.netns == netns
                        && window.family == key.family
                        && window.table == key.table
                        && window.handle == key.handle
                });
                match open {
                    Some(window) => window.removed_ms = Some(now_ms),
                    // There before watching began: its text is gone with it.
                    None => self.windows.push(RuleWindow {
                        netns: netns.to_owned(),
                        family: key.family,
                        table: key.table,
                        chain: key.chain,
                        handle: key.handle,
                        rule: String::new(),
                        drops: false,
                        added_ms: None,
                        removed_ms: Some(now_ms),
                        dropped: 0,
                    }),
                }
            }
            RuleChange::Emptied {
                family,
                table,
                chain,
            } => {
                for window in &mut self.windows {
                    if window.removed_ms.is_none()
                        && window.netns == netns
                        && window.family == family
                        && window.table == table
                        && chain.as_ref().is_none_or(|chain| *chain == window.chain)
                    {
                        window.removed_ms = Some(now_ms);
                    }
                }
            }
        }
    }
}

/// A namespace's rules, read once for all the rules one drain heard added there: a burst of
/// announcements costs one read, not one each.
#[derive(Default)]
struct RulesNow {
    nft: Option<Parsed>,
    xtables: Option<Parsed>,
}

impl RulesNow {
    fn nft(&mut self, netns: &str) -> &Parsed {
        self.nft
            .get_or_insert_with(|| match run(netns, "nft", &["-j", "list", "ruleset"]) {
                Ok(json) => parse_nft_json(&json).map(Parsed::from).unwrap_or_default(),
                Err(err) => {
                    log::warn!("reading the rules added in {netns:?}: {err}");
                    Parsed::default()
                }
            })
    }

    fn xtables(&mut self, netns: &str) -> &Parsed {
        self.xtables
            .get_or_insert_with(|| read_xtables_nft(netns, &mut Vec::new()))
    }
}

/// The rule's text and whether it drops, as the drain's read found it: as iptables-save prints
/// it when iptables-nft shows its table, else in nft's syntax; empty when it was already gone.
fn describe(netns: &str, key: &RuleKey, rules_now: &mut RulesNow) -> (String, bool) {
    let same_chain = |family: &str, table: &str, chain: &str| {
        family == key.family && table == key.table && chain == key.chain
    };
    let nft = rules_now.nft(netns);
    let Some(rule) = nft.rules.iter().find(|rule| {
        rule.handle == Some(key.handle)
            && rule.family == key.family
            && rule.table == key.table
            && rule.chain == key.chain
    }) else {
        return (String::new(), false);
    };
    let (text, drops, position) = (rule.text.clone(), rule.drops, rule.position);
    let nft_count = nft
        .rules
        .iter()
        .filter(|other| same_chain(&other.family, &other.table, &other.chain))
        .count();
    if matches!(key.family.as_str(), "ip" | "ip6" | "arp") {
        let xtables = rules_now.xtables(netns);
        let xtables_count = xtables
            .rules
            .iter()
            .filter(|other| same_chain(&other.family, &other.table, &other.chain))
            .count();
        // iptables-nft shows the chain faithfully only when it shows every rule nft sees.
        if xtables_count == nft_count
            && let Some(xtables_rule) = xtables.rules.iter().find(|other| {
                same_chain(&other.family, &other.table, &other.chain)
                    && other.position == position
                    && other.backend != Backend::Nft
            })
        {
            return (xtables_rule.text.clone(), xtables_rule.drops);
        }
    }
    (text, drops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One NEWRULE announcement as the kernel sends it: nlmsghdr, nfgenmsg (family ip),
    /// NFTA_RULE_TABLE "filter", NFTA_RULE_CHAIN "INPUT", NFTA_RULE_HANDLE 5.
    fn new_rule() -> Vec<u8> {
        let mut attributes = Vec::new();
        for (kind, value) in [
            (RULE_TABLE, b"filter\0".to_vec()),
            (RULE_CHAIN, b"INPUT\0".to_vec()),
            (RULE_HANDLE, 5u64.to_be_bytes().to_vec()),
        ] {
            attributes.extend(((4 + value.len()) as u16).to_ne_bytes());
            attributes.extend(kind.to_ne_bytes());
            attributes.extend(&value);
            while attributes.len() % 4 != 0 {
                attributes.push(0);
            }
        }
        let mut message = Vec::new();
        let length = 16 + NFGENMSG_LEN + attributes.len();
        message.extend((length as u32).to_ne_bytes());
        message.extend(NFT_MSG_NEWRULE.to_ne_bytes());
        message.extend(0u16.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend([2, 0, 0, 0]);
        message.extend(attributes);
        message
    }

    #[test]
    fn a_new_rule_announcement_names_the_rule() {
        let changes = parse_rule_changes(&new_rule()).unwrap();
        assert_eq!(
            changes,
            [RuleChange::Added(RuleKey {
                family: "ip".to_owned(),
                table: "filter".to_owned(),
                chain: "INPUT".to_owned(),
                handle: 5,
            })]
        );
    }

    #[test]
    fn a_rule_removed_closes_its_window() {
        let mut watch = RuleWatch::default();
        let key = RuleKey {
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: "INPUT".to_owned(),
            handle: 5,
        };
        watch.apply(
            "ns",
            RuleChange::Removed(key.clone()),
            3000,
            &mut RulesNow::default(),
        );
        assert_eq!(watch.windows[0].added_ms, None);
        assert_eq!(watch.windows[0].removed_ms, Some(3000));
    }

    #[test]
    fn keeps_open_and_dropping_windows_and_counts_the_oldest_it_forgets() {
        let window = |handle: u64, drops: bool, removed: bool| RuleWindow {
            netns: "ns".into(),
            family: "ip".into(),
            table: "filter".into(),
            chain: "INPUT".into(),
            handle,
            rule: String::new(),
            drops,
            added_ms: Some(handle),
            removed_ms: removed.then_some(handle + 1),
            dropped: 0,
        };
        let mut watch = RuleWatch::default();
        let extra = 10;
        // Oldest first: one dropping rule that went, one rule still there, then many that
        // came and went without dropping.
        watch.windows.push(window(0, true, true));
        watch.windows.push(window(1, false, false));
        for handle in 2..(KEPT_RULE_WINDOWS + extra) as u64 {
            watch.windows.push(window(handle, false, true));
        }
        watch.forget_oldest();
        assert_eq!(watch.windows.len(), KEPT_RULE_WINDOWS);
        assert_eq!(watch.forgotten, extra as u64);
        let handles: Vec<u64> = watch.windows.iter().map(|w| w.handle).take(3).collect();
        assert_eq!(handles, [0, 1, 2 + extra as u64]);
    }
}
