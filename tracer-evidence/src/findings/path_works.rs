//! Every probe was answered: the path works.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{ExchangeKind, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, Verdict},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathWorks {
    pub target_ip: String,
    #[serde(alias = "port")]
    pub tcp_port: u16,
    /// Whether a listener accepted on the TCP port; `None` when TCP was not probed.
    pub listening: Option<bool>,
}

/// Nothing failed (the classifier asks the faults that need no failure, MTU, first).
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    if context.failures().is_some() {
        return None;
    }
    let evidence = context.evidence;
    let listening = context
        .probe(ExchangeKind::Tcp)
        .map(|tcp| tcp.outcome.answered > 0);
    Some(
        Verdict::new(
            Side::None,
            PathWorks {
                target_ip: evidence.environment.target_ip.clone(),
                tcp_port: evidence.environment.tcp_port,
                listening,
            },
        )
        .because_all(evidence.exchanges.iter().map(|probe| Fact::Exchange {
            exchange: probe.clone(),
        })),
    )
}

impl Describe for PathWorks {
    fn class(&self) -> VerdictClass {
        VerdictClass::Ok
    }

    fn summary(&self, _: Side) -> String {
        let Self {
            target_ip,
            tcp_port: port,
            ..
        } = self;
        match self.listening {
            Some(true) => format!(
                "ARP, ICMP both ways and TCP to {target_ip}:{port} work; a listener accepts on the port."
            ),
            Some(false) => format!(
                "ARP, ICMP both ways and the path to {target_ip}:{port} work; nothing listens on the port (RST)."
            ),
            None => "ARP and ICMP both ways work.".to_owned(),
        }
    }

    fn advice(&self, _: Side) -> String {
        "Nothing to fix on the path.".to_owned()
    }

    /// A working path "stops" at the target.
    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        Some(Stop::Hop(path.last()))
    }

    fn mark(&self) -> String {
        "✓ answered".to_owned()
    }
}

#[cfg(test)]
pub(crate) fn example() -> PathWorks {
    PathWorks {
        target_ip: "10.0.0.2".to_owned(),
        tcp_port: 4420,
        listening: Some(true),
    }
}
