//! Ladders: how far each exchange got, read from what crossed the two ports. One table says
//! which packet kinds ask and which answer in each kind of exchange, for diagnose's probes and
//! for the test traffic watch observes alike.

use tracer_common::PacketKind;
use tracer_evidence::{Exchange, ExchangeKind, ExchangeOutcome, KindCounts, Side};

/// (ingress, egress) counts at one port.
pub type Crossed = (KindCounts, KindCounts);

/// The packet kinds that ask and the packet kinds that answer in an exchange of `kind`.
pub fn packet_kinds(kind: ExchangeKind) -> (&'static [PacketKind], &'static [PacketKind]) {
    match kind {
        ExchangeKind::Arp => (&[PacketKind::ArpRequest], &[PacketKind::ArpReply]),
        ExchangeKind::IcmpForward | ExchangeKind::IcmpReverse => {
            (&[PacketKind::IcmpEchoRequest], &[PacketKind::IcmpEchoReply])
        }
        ExchangeKind::Tcp => (
            &[PacketKind::TcpSyn],
            &[PacketKind::TcpSynAck, PacketKind::TcpRst],
        ),
    }
}

/// The counts of the port an exchange starts from, then of its peer.
pub fn ends<'a>(
    from: Side,
    initiator: &'a Crossed,
    target: &'a Crossed,
) -> (&'a Crossed, &'a Crossed) {
    if from == Side::Target {
        (target, initiator)
    } else {
        (initiator, target)
    }
}

/// Fills `probe`'s ladder: request kinds out of the origin and into the peer, answer kinds out
/// of the peer and back into the origin.
pub fn fill(probe: &mut Exchange, initiator: &Crossed, target: &Crossed) {
    let (requests, answers) = packet_kinds(probe.kind);
    let (origin, peer) = ends(probe.from, initiator, target);
    probe.left_origin = origin.1.sum_of(requests);
    probe.reached_peer = peer.0.sum_of(requests);
    probe.answer_left_peer = peer.1.sum_of(answers);
    probe.answer_reached_origin = origin.0.sum_of(answers);
}

/// An exchange with its outcome and an empty ladder, to be filled.
pub fn exchange(kind: ExchangeKind, from: Side, outcome: ExchangeOutcome) -> Exchange {
    Exchange {
        kind,
        from,
        outcome,
        skipped: None,
        left_origin: 0,
        reached_peer: 0,
        answer_left_peer: 0,
        answer_reached_origin: 0,
    }
}
