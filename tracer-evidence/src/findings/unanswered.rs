//! Probes went unanswered and the kernel reported no drop for them: the last answer.

use serde::{Deserialize, Serialize};

use super::{Context, Describe, unexplained_drop::ADVICE};
use crate::{
    class::VerdictClass,
    facts::Side,
    stop::{DrawnPath, Stop},
    verdict::Verdict,
};

/// Saved as `{"kind": "unanswered"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unanswered {}

/// Whatever failed and no rule before explained.
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    Some(
        Verdict::new(Side::None, Unanswered {})
            .because_all(context.drop_facts())
            .because_all(context.failed_facts()),
    )
}

impl Describe for Unanswered {
    fn class(&self) -> VerdictClass {
        VerdictClass::Unknown
    }

    fn summary(&self, _: Side) -> String {
        "Probes go unanswered and the kernel reports no drop for them.".to_owned()
    }

    fn advice(&self, _: Side) -> String {
        ADVICE.to_owned()
    }

    /// Where the probes' counts fell short.
    fn stop(&self, _: &DrawnPath, _: Side) -> Option<Stop> {
        None
    }
}

#[cfg(test)]
pub(crate) fn example() -> Unanswered {
    Unanswered {}
}
