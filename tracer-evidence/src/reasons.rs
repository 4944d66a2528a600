//! The kernel's drop reasons tracer's findings read, by name (`enum skb_drop_reason` without
//! its `SKB_DROP_REASON_` prefix, as the running kernel's BTF spells them). A drop keeps the
//! kernel's own text; this is how findings compare it.

use crate::counters::DropCount;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    NetfilterDrop,
    NeighFailed,
    PktTooBig,
    IpRpfilter,
    /// Replies to ping's raw socket also reach the stack, where no socket takes them.
    NoSocket,
    /// A queue purged when a device or socket goes away.
    QueuePurge,
    NotSpecified,
    /// Any reason no finding reads.
    Other,
}

/// Each reason a finding reads, with the kernel's name for it.
const NAMES: [(DropReason, &str); 7] = [
    (DropReason::NetfilterDrop, "NETFILTER_DROP"),
    (DropReason::NeighFailed, "NEIGH_FAILED"),
    (DropReason::PktTooBig, "PKT_TOO_BIG"),
    (DropReason::IpRpfilter, "IP_RPFILTER"),
    (DropReason::NoSocket, "NO_SOCKET"),
    (DropReason::QueuePurge, "QUEUE_PURGE"),
    (DropReason::NotSpecified, "NOT_SPECIFIED"),
];

impl DropReason {
    pub fn from_name(name: &str) -> Self {
        NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map_or(Self::Other, |(reason, _)| *reason)
    }

    /// The kernel's name; `None` for `Other`.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(reason, _)| *reason == self)
            .map(|(_, name)| *name)
    }

    /// Normal on a healthy path: says nothing about a fault.
    pub fn is_expected(self) -> bool {
        self.why_expected().is_some()
    }

    /// Why a drop of this reason is normal on a healthy path, for people.
    pub fn why_expected(self) -> Option<&'static str> {
        match self {
            Self::NoSocket => {
                Some("ping reads its replies on a raw socket; no other socket takes them")
            }
            Self::QueuePurge => Some("a queue purged as a device or socket went away"),
            Self::NotSpecified => Some("no reason given, as for IPv6 frames on ports without IPv6"),
            _ => None,
        }
    }
}

impl DropCount {
    pub fn reason(&self) -> DropReason {
        DropReason::from_name(&self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (reason, name) in NAMES {
            assert_eq!(DropReason::from_name(name), reason);
            assert_eq!(reason.name(), Some(name));
        }
        assert_eq!(DropReason::from_name("IP_INHDR"), DropReason::Other);
    }
}

/// A neighbour entry's NUD state, as `ip neigh` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourState {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    NoArp,
    Permanent,
}

impl NeighbourState {
    /// In the order `ip neigh` prints them.
    pub const ALL: [(Self, &'static str); 8] = [
        (Self::Incomplete, "INCOMPLETE"),
        (Self::Reachable, "REACHABLE"),
        (Self::Stale, "STALE"),
        (Self::Delay, "DELAY"),
        (Self::Probe, "PROBE"),
        (Self::Failed, "FAILED"),
        (Self::NoArp, "NOARP"),
        (Self::Permanent, "PERMANENT"),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(state, _)| *state == self)
            .map_or("", |(_, name)| name)
    }

    /// The states a saved state text holds ("REACHABLE", or several separated by spaces or
    /// commas); unknown names are left out.
    pub fn parse(text: &str) -> Vec<Self> {
        text.split([' ', ','])
            .filter_map(|part| {
                Self::ALL
                    .iter()
                    .find(|(_, name)| *name == part)
                    .map(|(state, _)| *state)
            })
            .collect()
    }
}
