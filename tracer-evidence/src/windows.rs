//! Windows of time in a watched run: when the test's requests went unanswered, and how long a
//! rule, a carrier loss, a stale neighbour entry or a second owner of an address lasted. Times
//! are milliseconds after tracer started watching. Plain data, and the pure arithmetic that
//! finds loss windows in the requests' times and ties a window to a loss.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::facts::Side;

/// How far apart a cause and a loss may be and still be one event: the watch looks at most
/// every 50 ms while traffic flows, and a ping interval is 0.2 s or more.
pub const TIE_MS: u64 = 500;

/// Everything a watch placed in time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    /// The exchanges are the test's own traffic, observed by watch (not diagnose's probes).
    #[serde(default)]
    pub observed: bool,
    #[serde(default)]
    pub loss: Vec<LossWindow>,
    #[serde(default)]
    pub rules: Vec<RuleWindow>,
    /// Rules that came and went, counted and not kept: watch keeps the latest windows only.
    #[serde(default)]
    pub rules_forgotten: u64,
    #[serde(default)]
    pub carrier: Vec<CarrierWindow>,
    #[serde(default)]
    pub neighbour: Vec<NeighbourWindow>,
    #[serde(default)]
    pub shared_addresses: Vec<SharedAddress>,
    #[serde(default)]
    pub address: Vec<AddressWindow>,
}

impl Windows {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The latest moment any window mentions (0 when there are none).
    pub fn last_ms(&self) -> u64 {
        let loss = self.loss.iter().map(|loss| loss.last_ms);
        let rules = self
            .rules
            .iter()
            .flat_map(|rule| rule.added_ms.into_iter().chain(rule.removed_ms));
        let carrier = self
            .carrier
            .iter()
            .flat_map(|carrier| std::iter::once(carrier.lost_ms).chain(carrier.back_ms));
        let neighbour = self
            .neighbour
            .iter()
            .flat_map(|entry| std::iter::once(entry.changed_ms).chain(entry.until_ms));
        let shared = self
            .shared_addresses
            .iter()
            .flat_map(|shared| shared.owners.iter().map(|owner| owner.last_ms));
        let address = self
            .address
            .iter()
            .flat_map(|address| std::iter::once(address.removed_ms).chain(address.back_ms));
        loss.chain(rules)
            .chain(carrier)
            .chain(neighbour)
            .chain(shared)
            .chain(address)
            .max()
            .unwrap_or(0)
    }

    /// The loss windows that overlap `from..until` (`None`: it lasted to the end).
    pub fn losses_during(
        &self,
        from: u64,
        until: Option<u64>,
    ) -> impl Iterator<Item = &LossWindow> {
        self.loss
            .iter()
            .filter(move |loss| overlaps(from, until, loss))
    }
}

/// Consecutive requests of one flow that went unanswered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossWindow {
    /// For people: "ICMP from 10.0.0.1 to 10.0.0.2".
    pub flow: String,
    /// The port the requests left.
    pub side: Side,
    /// When the first and the last unanswered request were sent.
    pub first_ms: u64,
    pub last_ms: u64,
    pub unanswered: u32,
}

/// A request of a flow: when it was sent, and whether an answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub at_ms: u64,
    pub answered: bool,
}

/// The runs of unanswered requests among `requests` (any order).
pub fn loss_windows(flow: &str, side: Side, requests: &[Request]) -> Vec<LossWindow> {
    let mut sorted = requests.to_vec();
    sorted.sort_by_key(|request| request.at_ms);
    let mut windows: Vec<LossWindow> = Vec::new();
    let mut open = false;
    for request in sorted {
        if request.answered {
            open = false;
            continue;
        }
        match windows.last_mut() {
            Some(window) if open => {
                window.last_ms = request.at_ms;
                window.unanswered += 1;
            }
            _ => windows.push(LossWindow {
                flow: flow.to_owned(),
                side,
                first_ms: request.at_ms,
                last_ms: request.at_ms,
                unanswered: 1,
            }),
        }
        open = true;
    }
    windows
}

/// Whether something that lasted `from..until` (to the end when `None`) and a loss window are
/// one event, give or take [`TIE_MS`].
pub fn overlaps(from: u64, until: Option<u64>, loss: &LossWindow) -> bool {
    let starts_in_time = from <= loss.last_ms + TIE_MS;
    let ends_in_time = until.is_none_or(|until| until + TIE_MS >= loss.first_ms);
    starts_in_time && ends_in_time
}

/// `+2.1 s`.
pub fn at(ms: u64) -> String {
    format!("+{:.1} s", ms as f64 / 1000.0)
}

/// "ICMP from 10.0.0.1 to 10.0.0.2 lost from +2.1 s to +5.0 s (14 requests)".
pub fn loss_line(loss: &LossWindow) -> String {
    format!(
        "{} lost from {} to {} ({} request(s) unanswered)",
        loss.flow,
        at(loss.first_ms),
        at(loss.last_ms),
        loss.unanswered
    )
}

/// The loss window that overlaps `from..until` the most requests long.
pub fn worst_loss(windows: &Windows, from: u64, until: Option<u64>) -> Option<&LossWindow> {
    windows
        .losses_during(from, until)
        .max_by_key(|loss| loss.unanswered)
}

/// A rule that appeared or disappeared while watching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleWindow {
    /// Namespace name; empty for tracer's own.
    pub netns: String,
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The nftables handle (iptables-nft rules have one too).
    pub handle: u64,
    /// As iptables-save prints it for iptables-nft tables, else in nft's syntax; empty when
    /// it could not be read before it went.
    pub rule: String,
    /// Its verdict is DROP or REJECT.
    pub drops: bool,
    /// `None`: it was there before watching began.
    pub added_ms: Option<u64>,
    /// `None`: it was still there at the end.
    pub removed_ms: Option<u64>,
    /// Packets the kernel dropped with NETFILTER_DROP in its namespace while it existed.
    pub dropped: u64,
}

impl RuleWindow {
    /// The rule's text, or why there is none.
    pub fn text(&self) -> &str {
        if self.rule.is_empty() {
            "(gone before it could be read)"
        } else {
            &self.rule
        }
    }

    /// "added +2.0 s, removed +5.0 s".
    pub fn lifetime(&self) -> String {
        let added = self
            .added_ms
            .map_or_else(|| "before watching began".to_owned(), at);
        let removed = self.removed_ms.map_or_else(|| "never".to_owned(), at);
        format!("added {added}, removed {removed}")
    }
}

/// A watched port without carrier, and when carrier came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierWindow {
    pub side: Side,
    pub netns: String,
    pub interface: String,
    pub lost_ms: u64,
    /// `None`: still without carrier at the end.
    pub back_ms: Option<u64>,
}

/// A watched port without its address (the pair's address for that side), and when it had it
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressWindow {
    pub side: Side,
    pub netns: String,
    pub interface: String,
    pub address: Ipv4Addr,
    pub removed_ms: u64,
    /// `None`: still without it at the end.
    pub back_ms: Option<u64>,
}

/// A port's neighbour entry for the other port's address held a MAC the other port no longer
/// had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourWindow {
    /// Whose entry it was.
    pub side: Side,
    pub netns: String,
    pub interface: String,
    pub address: Ipv4Addr,
    /// The MAC the entry held.
    pub entry_mac: String,
    /// The MAC the other port had meanwhile.
    pub port_mac: String,
    /// When the two first differed, and when they agreed again (or the entry went).
    pub changed_ms: u64,
    pub until_ms: Option<u64>,
}

/// ARP answers for one address from more than one MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAddress {
    pub address: Ipv4Addr,
    /// Each MAC that answered, first the one that answered first.
    pub owners: Vec<AddressOwner>,
}

/// One MAC that answered for an address, and where it lives when tracer found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressOwner {
    pub mac: String,
    pub first_ms: u64,
    pub last_ms: u64,
    pub answers: u32,
    /// The interface holding the MAC on this machine, and its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(pattern: &str) -> Vec<Request> {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| Request {
                at_ms: i as u64 * 200,
                answered: c == 'y',
            })
            .collect()
    }

    #[test]
    fn runs_of_unanswered_requests_are_windows() {
        let windows = loss_windows("ICMP", Side::Initiator, &requests("yynnnnyyny"));
        let spans: Vec<_> = windows
            .iter()
            .map(|w| (w.first_ms, w.last_ms, w.unanswered))
            .collect();
        assert_eq!(spans, [(400, 1000, 4), (1600, 1600, 1)]);
        assert!(loss_windows("ICMP", Side::Initiator, &requests("yyy")).is_empty());
    }

    #[test]
    fn a_cause_ties_to_a_loss_within_half_a_second() {
        let loss = &loss_windows("ICMP", Side::Initiator, &requests("yyyyynnnnnyy"))[0];
        assert_eq!((loss.first_ms, loss.last_ms), (1000, 1800));
        assert!(overlaps(900, Some(2000), loss));
        assert!(overlaps(2200, None, loss));
        assert!(!overlaps(2400, None, loss));
        assert!(!overlaps(0, Some(400), loss));
    }
}
