//! Bridge-side peers of the other virtual layout version are beside a port of one: a leftover
//! of a run of that version. Both versions call their bridge `nvmf_br` and neither removes the
//! other's names, so a crashed run of one leaves its peers in the bridge the next version's run
//! uses: one layer-2 segment with the test's ports, whose far ends carry 10.0.0.x in the other
//! numbering (virt-legacy's first target is virt's second initiator, 10.0.0.3), so that ARP may
//! be answered by the wrong port at any time.
//!
//! Asked after every explanation of a failure: it explains a failure nothing more precise does.
//! On a working path it is a warning beside `path_works` (like a leftover address), with the
//! command that removes it: the path carried every probe, so it is not the verdict.

use serde::{Deserialize, Serialize};

use super::{Context, Describe};
use crate::{
    class::VerdictClass,
    facts::{Side, StalePeer},
    stop::{DrawnPath, Stop},
    verdict::{Fact, PortRef, Verdict},
    words::{link_removal, namespace_phrase, side_name},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleBridge {
    /// The port they are beside.
    pub port: PortRef,
    pub peers: Vec<StalePeer>,
}

pub(crate) fn recognise(context: &Context) -> Option<Verdict> {
    context.failures()?;
    let port = context
        .ports()
        .into_iter()
        .find(|port| !port.stale_peers.is_empty())?;
    Some(
        Verdict::new(
            port.side,
            StaleBridge {
                port: PortRef::of(port),
                peers: port.stale_peers.clone(),
            },
        )
        .because_all(facts(context))
        .because_all(context.failed_facts()),
    )
}

/// Every stale peer beside either port, as facts: the failure's evidence, or a working path's
/// warnings.
pub(crate) fn facts<'a>(context: &Context<'a>) -> impl Iterator<Item = Fact> + 'a {
    context.ports().into_iter().flat_map(|port| {
        let at = PortRef::of(port);
        port.stale_peers.iter().map(move |peer| Fact::StalePeer {
            port: at.clone(),
            peer: peer.clone(),
        })
    })
}

impl StaleBridge {
    /// The commands that remove them: deleting a veth peer deletes its other end too.
    pub fn removal(&self) -> Vec<String> {
        self.peers
            .iter()
            .map(|peer| link_removal(&self.port.netns, &peer.interface))
            .collect()
    }

    fn layouts(&self) -> Vec<&str> {
        let mut layouts: Vec<&str> = self.peers.iter().map(|peer| peer.layout.as_str()).collect();
        layouts.dedup();
        layouts
    }
}

impl Describe for StaleBridge {
    fn class(&self) -> VerdictClass {
        VerdictClass::Interface
    }

    fn summary(&self, side: Side) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|peer| match &peer.bridge {
                Some(bridge) => format!("{} (a port of {bridge})", peer.interface),
                None => format!("{} (in no bridge)", peer.interface),
            })
            .collect();
        format!(
            "Beside the {} port {} in {} are bridge-side peers of the other layout version ({}): {}, a leftover of an earlier run.",
            side_name(side),
            self.port.interface,
            namespace_phrase(&self.port.netns),
            self.layouts().join(", "),
            peers.join(", ")
        )
    }

    fn advice(&self, _: Side) -> String {
        format!(
            "With no test of layout {} running, remove them (each veth goes with its peer): {}.",
            self.layouts().join(", "),
            self.removal().join("; ")
        )
    }

    fn stop(&self, path: &DrawnPath, _: Side) -> Option<Stop> {
        path.port(&self.port)
            .or_else(|| path.in_netns(&self.port.netns))
    }

    fn named_thing(&self) -> Option<String> {
        Some(self.removal().join("; "))
    }
}

#[cfg(test)]
pub(crate) fn example() -> StaleBridge {
    StaleBridge {
        port: PortRef {
            netns: String::new(),
            interface: "initiator0".to_owned(),
        },
        peers: vec![
            StalePeer {
                layout: "virt-legacy".to_owned(),
                interface: "nvmf_init_br".to_owned(),
                bridge: Some("nvmf_br".to_owned()),
            },
            StalePeer {
                layout: "virt-legacy".to_owned(),
                interface: "nvmf_tgt_br".to_owned(),
                bridge: None,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_other_versions_peers_and_the_commands_that_remove_them() {
        let found = example();
        assert_eq!(
            found.summary(Side::Initiator),
            "Beside the initiator port initiator0 in tracer's own namespace are bridge-side peers \
             of the other layout version (virt-legacy): nvmf_init_br (a port of nvmf_br), \
             nvmf_tgt_br (in no bridge), a leftover of an earlier run."
        );
        assert_eq!(
            found.advice(Side::Initiator),
            "With no test of layout virt-legacy running, remove them (each veth goes with its \
             peer): ip link del nvmf_init_br; ip link del nvmf_tgt_br."
        );
        let inside = StaleBridge {
            port: PortRef {
                netns: "host".to_owned(),
                interface: "nvmf_init_if".to_owned(),
            },
            peers: vec![StalePeer {
                layout: "virt".to_owned(),
                interface: "initiator0_br".to_owned(),
                bridge: Some("nvmf_br".to_owned()),
            }],
        };
        assert_eq!(
            inside.named_thing().unwrap(),
            "ip netns exec host ip link del initiator0_br"
        );
    }
}
