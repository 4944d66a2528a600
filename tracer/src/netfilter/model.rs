//! What a snapshot holds: rules, chains and their counters, and what dropped packets.

use super::Backend;

/// The nftables family an xtables backend's tables live in; empty for [`Backend::Nft`], whose
/// tables each name their own.
pub(super) fn xtables_family(backend: Backend) -> &'static str {
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
