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
//! Every tool runs with limits ([`crate::tool::TOOL_IDLE`], [`crate::tool::TOOL_LIMIT`]): a
//! hung `nft` must not hang a diagnosis.
//!
//! By job: `model` holds the rules and chains, `read` runs the tools and joins their views,
//! `parse` and `nft` turn the tools' output into rules, `drops` tells what dropped between two
//! snapshots.

mod changes;
mod drops;
mod legacy;
mod model;
mod nft;
mod nft_text;
mod parse;
mod read;
#[cfg(test)]
mod tests;

pub use nft::{NftJsonError, parse_nft_json};
pub use tracer_evidence::Backend;

pub use self::{
    changes::{KEPT_RULE_WINDOWS, RuleWatch},
    model::{Chain, DropHit, Rule, Ruleset},
    parse::parse_xtables_save,
    read::snapshot,
};
