//! Every probe was answered: the path works.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{ExchangeKind, Side},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::probe_name,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathWorks {
    pub target_ip: String,
    #[serde(alias = "port")]
    pub tcp_port: u16,
    /// Whether a listener accepted on the TCP port; `None` when TCP was not probed.
    pub listening: Option<bool>,
    /// For watch: what the test itself sent and got answered, by exchange.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<Carried>,
}

/// Requests of one kind of exchange the test sent over the ports, all answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    pub exchange: ExchangeKind,
    pub sent: u32,
    pub answered: u32,
}

/// Nothing failed (the classifier asks the faults that need no failure, MTU, first).
pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    let evidence = context.evidence;
    if context.failures().is_some() || !evidence.windows.loss.is_empty() {
        return None;
    }
    // Watch observes the test's own traffic and counts it; diagnose probes.
    let carried = if evidence.windows.observed {
        evidence
            .exchanges
            .iter()
            .map(|exchange| Carried {
                exchange: exchange.kind,
                sent: exchange.outcome.sent,
                answered: exchange.outcome.answered,
            })
            .collect()
    } else {
        Vec::new()
    };
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
                carried,
            },
        )
        .because_all(evidence.exchanges.iter().map(|probe| Fact::Exchange {
            exchange: probe.clone(),
        }))
        // A leftover that does not break the path is a warning, not a failure.
        .because_all(
            context
                .ports()
                .into_iter()
                .filter(|port| !port.same_subnet_elsewhere.is_empty())
                .map(|port| Fact::SameSubnet {
                    port: PortRef::of(port),
                    interfaces: port.same_subnet_elsewhere.clone(),
                }),
        )
        .because_all(super::stale_bridge::facts(context))
        .because_all(super::rules_before_run::facts(context)),
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
        if !self.carried.is_empty() {
            let counts: Vec<String> = self
                .carried
                .iter()
                .map(|carried| {
                    format!(
                        "{} {} of {}",
                        probe_name(carried.exchange),
                        carried.answered,
                        carried.sent
                    )
                })
                .collect();
            return format!(
                "The network carried everything the command sent over the ports and every request was answered ({}); nothing was lost on the path, so a failure is the command's own.",
                counts.join(", ")
            );
        }
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
        carried: vec![Carried {
            exchange: ExchangeKind::IcmpForward,
            sent: 40,
            answered: 40,
        }],
    }
}
