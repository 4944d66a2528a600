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

/// Where a probe's packets went missing, as its four counts show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The first point where fewer packets were counted than were sent.
    At(Rung),
    /// Every point counted all that were sent and still the probe went unanswered: the
    /// answers reached the origin port and died after it, past the last counting point.
    AfterLast,
}

impl Shortfall {
    /// The point a ladder marks: the short one, or the last for what went no further.
    pub fn rung(self) -> Rung {
        match self {
            Self::At(rung) => rung,
            Self::AfterLast => Rung::AnswerReachedOrigin,
        }
    }

    /// What a ladder's mark says, beside the point it marks; `place` names where the answers
    /// died when they went no further.
    pub fn mark(self, place: &str) -> String {
        match self {
            Self::At(_) => "missing".to_owned(),
            Self::AfterLast => {
                format!("went no further: lost after the last counting point, in {place}")
            }
        }
    }
}

/// Where a sent probe's packets went missing; `None` when all were counted and answered (or
/// it was not sent).
pub fn shortfall(probe: &Exchange) -> Option<Shortfall> {
    if probe.skipped.is_some() {
        return None;
    }
    let sent = probe.outcome.sent;
    match first_short(probe) {
        Some(rung) => Some(Shortfall::At(rung)),
        None if sent > 0 && probe.outcome.error.is_none() && probe.answers() < sent => {
            Some(Shortfall::AfterLast)
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{ExchangeKind, ExchangeOutcome, Side};

    fn echo(sent: u32, answered: u32, counts: [u64; 4]) -> Exchange {
        Exchange {
            kind: ExchangeKind::IcmpReverse,
            from: Side::Target,
            outcome: ExchangeOutcome {
                sent,
                answered,
                ..ExchangeOutcome::default()
            },
            skipped: None,
            left_origin: counts[0],
            reached_peer: counts[1],
            answer_left_peer: counts[2],
            answer_reached_origin: counts[3],
        }
    }

    #[test]
    fn the_first_short_point_is_marked() {
        let short = shortfall(&echo(5, 0, [5, 5, 0, 0]));
        assert_eq!(short, Some(Shortfall::At(Rung::AnswerLeftPeer)));
        assert_eq!(short.unwrap().rung(), Rung::AnswerLeftPeer);
        assert_eq!(short.unwrap().mark("x"), "missing");
    }

    /// Dropped in the origin's INPUT chain: every point counted all five, none answered.
    #[test]
    fn answers_that_went_no_further_are_marked_on_the_last_point() {
        let short = shortfall(&echo(5, 0, [5; 4])).expect("a shortfall");
        assert_eq!(short, Shortfall::AfterLast);
        assert_eq!(short.rung(), Rung::AnswerReachedOrigin);
        let mark = short.mark("cvl_0_0 (namespace spdk)");
        assert!(mark.contains("after the last counting point"), "{mark}");
        assert!(mark.ends_with("in cvl_0_0 (namespace spdk)"), "{mark}");
    }

    #[test]
    fn answered_or_unsent_probes_are_not_marked() {
        assert_eq!(shortfall(&echo(5, 5, [5; 4])), None);
        assert_eq!(shortfall(&echo(0, 0, [0; 4])), None);
        let mut skipped = echo(5, 0, [0; 4]);
        skipped.skipped = Some("no address".to_owned());
        assert_eq!(shortfall(&skipped), None);
        // A probe that could not be sent says so in its outcome, not on its ladder's last point.
        let mut failed = echo(5, 0, [5; 4]);
        failed.outcome.error = Some("socket".to_owned());
        assert_eq!(shortfall(&failed), None);
    }
}
