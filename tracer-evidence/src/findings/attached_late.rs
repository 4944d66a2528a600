//! The test's requests went unanswered in the moment tracer attached to an up port and added
//! the clsact qdisc its programs need before Linux 6.6: the kernel stops the port's transmit
//! queue while a qdisc is added and drops what leaves it then. tracer's own attachment, not
//! the network, explains the loss.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{LateAttachment, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    windows::{LossWindow, TIE_MS, loss_line},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedLate {
    pub port: PortRef,
    pub attachment: LateAttachment,
    /// The loss in that moment.
    pub loss: LossWindow,
}

/// How long before an attachment began a frame may be stamped and still be sent after it: the
/// capture's clock and watch's are read apart.
const CLOCKS_APART_MS: u64 = 50;

/// Every loss of the run lies in the [`TIE_MS`] after an attachment that added a qdisc to an up
/// port began: the frames that moment drops are the ones sent while tracer attached. A loss
/// outside such a moment (ARP's retries a second apart, say) is the network's to explain.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let evidence = context.evidence;
    let grafted_during = |loss: &LossWindow| {
        evidence.late_attachments.iter().find(|attachment| {
            attachment.qdisc_added
                && attachment.at_ms <= loss.first_ms + CLOCKS_APART_MS
                && loss.last_ms <= attachment.at_ms + TIE_MS
        })
    };
    let tied: Option<Vec<_>> = evidence
        .windows
        .loss
        .iter()
        .map(|loss| Some((grafted_during(loss)?, loss)))
        .collect();
    let (attachment, loss) = tied?
        .into_iter()
        .max_by_key(|(_, loss)| loss.unanswered)?;
    Some(
        Verdict::new(
            attachment.side,
            AttachedLate {
                port: PortRef::of(context.port(attachment.side)),
                attachment: attachment.clone(),
                loss: loss.clone(),
            },
        )
        .because(Fact::Loss { loss: loss.clone() })
        .because_all(context.drop_facts())
        .because_all(context.failed_facts()),
    )
}

impl Describe for AttachedLate {
    fn class(&self) -> VerdictClass {
        VerdictClass::Unknown
    }

    fn summary(&self, _: Side) -> String {
        format!(
            "{} while tracer attached to {}, which was up already: {}. tracer's own attachment explains the loss; the counts show no fault of the network.",
            loss_line(&self.loss),
            self.port.label(),
            self.attachment.consequences(&self.port.interface)
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "Before Linux 6.6 tracer attaches to {0} again after every move to another namespace: let the test send once tracer counts there (tc filter show dev {0} egress lists tracer_egress), or run on 6.6 or newer, where tracer's programs move with the port; run again to see whether the loss comes back.",
            self.port.interface
        )
    }

    fn stop(&self, path: &DrawnPath, side: Side) -> Option<Stop> {
        path.port(&self.port).or_else(|| path.side(side))
    }
}

#[cfg(test)]
pub(crate) fn example() -> AttachedLate {
    AttachedLate {
        port: super::example::target(),
        attachment: LateAttachment {
            side: Side::Target,
            at_ms: 3050,
            qdisc_added: true,
        },
        loss: LossWindow {
            flow: "ICMP from 10.0.0.1 to 10.0.0.2".to_owned(),
            side: Side::Initiator,
            first_ms: 3100,
            last_ms: 3100,
            unanswered: 1,
        },
    }
}
