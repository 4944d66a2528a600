//! tracer's built-in lab (`tracer lab up`) as a [`Topology`]: SPDK's nvmf_tcp_init on one veth
//! pair, or its nvmf_veth_init with each port's veth peer in a bridge, both ports inside
//! namespaces of their own, and SPDK's firewall rule opening the TCP port on the initiator.

use crate::{End, Join, Pair, Rule, Switch, Topology, layouts::accept_rule};

/// `tracer lab up`'s defaults (its flags say the same).
pub const DEFAULT_INITIATOR_NETNS: &str = "cvl_0_1_ns_initiator";
pub const DEFAULT_INITIATOR_INTERFACE: &str = "cvl_0_1";
pub const DEFAULT_TARGET_NETNS: &str = "cvl_0_0_ns_spdk";
pub const DEFAULT_TARGET_INTERFACE: &str = "cvl_0_0";
pub const DEFAULT_INITIATOR_ADDRESS: &str = "10.0.0.1/24";
pub const DEFAULT_TARGET_ADDRESS: &str = "10.0.0.2/24";
pub const DEFAULT_TCP_PORT: u16 = 4420;
pub const DEFAULT_BRIDGE: &str = "nvmf_br";

/// The lab's two ports (each with its address), the TCP port SPDK's rule opens, and the
/// bridge of the virtual layout (none: one veth pair).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    pub initiator: End,
    pub target: End,
    pub tcp_port: u16,
    pub bridge: Option<String>,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new(
            (DEFAULT_INITIATOR_NETNS, DEFAULT_INITIATOR_INTERFACE),
            (DEFAULT_TARGET_NETNS, DEFAULT_TARGET_INTERFACE),
        )
    }
}

impl Lab {
    /// The lab on one veth pair between (namespace, interface) `initiator` and `target`, with
    /// the default addresses and TCP port.
    pub fn new(initiator: (&str, &str), target: (&str, &str)) -> Self {
        Self {
            initiator: End::new(initiator.0, initiator.1).with_address(DEFAULT_INITIATOR_ADDRESS),
            target: End::new(target.0, target.1).with_address(DEFAULT_TARGET_ADDRESS),
            tcp_port: DEFAULT_TCP_PORT,
            bridge: None,
        }
    }

    pub fn topology(&self) -> Topology {
        let initiator_ns = self.initiator.netns.as_str();
        let mut rules = Vec::new();
        let join = match &self.bridge {
            None => Join::Veth,
            Some(bridge) => {
                // nvmf_veth_init: the bridge is in the initiator's namespace (SPDK's host),
                // which forwards between its ports.
                rules.push(Rule::new(
                    initiator_ns,
                    &["-A", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"],
                ));
                Join::Switch(Switch {
                    netns: initiator_ns.to_owned(),
                    bridge: Some(bridge.clone()),
                    initiator_peer: bridge_peer(&self.initiator.interface),
                    target_peer: bridge_peer(&self.target.interface),
                    peers_up: true,
                })
            }
        };
        rules.push(accept_rule(
            initiator_ns,
            &self.initiator.interface,
            self.tcp_port,
        ));
        Topology {
            namespaces: Vec::new(),
            pairs: vec![Pair {
                initiator: self.initiator.clone(),
                target: self.target.clone(),
                join,
            }],
            rules,
        }
    }
}

/// The bridge-side peer of a port in the virtual layout, named as SPDK's nvmf_veth_init names
/// its peers (`PORT_br`).
pub fn bridge_peer(interface: &str) -> String {
    format!("{interface}_br")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_virtual_lab_puts_both_peers_in_the_initiators_bridge() {
        let lab = Lab {
            bridge: Some(DEFAULT_BRIDGE.to_owned()),
            ..Lab::default()
        };
        let topology = lab.topology();
        assert_eq!(
            topology.all_namespaces(),
            [DEFAULT_INITIATOR_NETNS, DEFAULT_TARGET_NETNS]
        );
        let Join::Switch(switch) = &topology.pairs[0].join else {
            panic!("a veth pair, not a bridge: {topology:?}");
        };
        assert_eq!(switch.netns, DEFAULT_INITIATOR_NETNS);
        assert_eq!(
            (switch.initiator_peer.as_str(), switch.target_peer.as_str()),
            ("cvl_0_1_br", "cvl_0_0_br")
        );
        assert_eq!(topology.rules[0].iptables[..2], ["-A", "FORWARD"]);
        assert!(
            topology.rules[1].iptables.contains(
                &"SPDK_NVMF:-I INPUT 1 -i cvl_0_1 -p tcp --dport 4420 -j ACCEPT".to_owned()
            )
        );
    }
}
