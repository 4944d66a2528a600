//! The four points of a probe's way, where tracer counts its packets.

use crate::facts::Exchange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    /// The request left its origin port.
    LeftOrigin,
    /// It arrived at the peer port.
    ReachedPeer,
    /// The answer left the peer port.
    AnswerLeftPeer,
    /// The answer arrived back at the origin port.
    AnswerReachedOrigin,
}

impl Rung {
    pub const ALL: [Self; 4] = [
        Self::LeftOrigin,
        Self::ReachedPeer,
        Self::AnswerLeftPeer,
        Self::AnswerReachedOrigin,
    ];

    /// Packets counted at this point.
    pub fn count(self, probe: &Exchange) -> u64 {
        match self {
            Self::LeftOrigin => probe.left_origin,
            Self::ReachedPeer => probe.reached_peer,
            Self::AnswerLeftPeer => probe.answer_left_peer,
            Self::AnswerReachedOrigin => probe.answer_reached_origin,
        }
    }

    /// The point, with the origin's and the peer's interface names: `answer left cvl_0_0`.
    pub fn label(self, origin: &str, peer: &str) -> String {
        match self {
            Self::LeftOrigin => format!("left {origin}"),
            Self::ReachedPeer => format!("reached {peer}"),
            Self::AnswerLeftPeer => format!("answer left {peer}"),
            Self::AnswerReachedOrigin => format!("answer reached {origin}"),
        }
    }
}

/// The first point of a probe's way where fewer packets were counted than were sent.
pub fn first_short(probe: &Exchange) -> Option<Rung> {
    let expected = u64::from(probe.outcome.sent);
    Rung::ALL
        .into_iter()
        .find(|rung| rung.count(probe) < expected)
}
