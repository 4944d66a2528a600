//! Test networks as data, built with `ip` and removed by a guard: the one builder behind
//! `tracer lab up`, the integration tests, and `cargo xtask` bench, soak, demo and screenshots.
//!
//! A [`Topology`] is a list of [`Pair`]s, each an initiator [`End`] and a target [`End`] joined
//! either by one veth pair (a cable between two ports) or through a [`Switch`]: each end's veth
//! peer sits in another namespace, in a bridge when there is one (SPDK's virtual layouts), else
//! cabled to nothing that forwards. Names, namespaces, addresses and iptables rules are all
//! data, so that a layout is a value and the builder has no opinion on SPDK's names.
//!
//! [`Topology::build`] refuses a namespace that exists already (it is someone else's), and
//! returns a [`Network`] guard that deletes every namespace it made when dropped (everything
//! inside goes with them), on failure too. The guard is `!Send` like aya's `NetNsGuard`, and
//! its drop never panics: it may run while a failed test unwinds.
//!
//! No dependency on tracer itself (nor aya): tests and xtask reach it without building the
//! eBPF programs.

pub mod busy;
pub mod churn;
mod ip;
pub mod lab;
pub mod layouts;
mod network;

pub use self::{
    ip::{Error, delete_namespace, namespace_exists},
    network::Network,
};

/// One end of a pair: an interface in a namespace, with its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub netns: String,
    pub interface: String,
    /// An address with prefix length (`10.0.0.1/24`), given to the interface when set.
    pub address: Option<String>,
    /// Whether the builder sets the interface up (leave it down for a script that does).
    pub up: bool,
    /// The interface's alias (`ip link set DEV alias TEXT`): SPDK's newer scripts note each
    /// port's address there.
    pub alias: Option<String>,
}

impl End {
    /// `interface` in `netns`, set up, without an address.
    pub fn new(netns: &str, interface: &str) -> Self {
        Self {
            netns: netns.to_owned(),
            interface: interface.to_owned(),
            address: None,
            up: true,
            alias: None,
        }
    }

    pub fn with_alias(mut self, alias: &str) -> Self {
        self.alias = Some(alias.to_owned());
        self
    }

    pub fn with_address(mut self, cidr: &str) -> Self {
        self.address = Some(cidr.to_owned());
        self
    }

    /// Left down by the builder.
    pub fn down(mut self) -> Self {
        self.up = false;
        self
    }
}

/// Where each end's veth peer lives when a pair is not one veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub netns: String,
    /// The bridge in `netns` both peers are ports of; none: the peers forward nothing (each
    /// end is cabled elsewhere).
    pub bridge: Option<String>,
    pub initiator_peer: String,
    pub target_peer: String,
    /// Whether the peers are set up (down: the ends have no carrier, as if unplugged).
    pub peers_up: bool,
}

/// How a pair's two ends are joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// The two ends are the two sides of one veth pair.
    Veth,
    /// Each end is a veth pair of its own, its peer in the switch.
    Switch(Switch),
}

/// An initiator end and a target end, and how they are joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub initiator: End,
    pub target: End,
    pub join: Join,
}

/// One iptables command run inside a namespace (its arguments, as `iptables` takes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub netns: String,
    pub iptables: Vec<String>,
}

impl Rule {
    pub fn new(netns: &str, iptables: &[&str]) -> Self {
        Self {
            netns: netns.to_owned(),
            iptables: iptables.iter().map(|arg| (*arg).to_owned()).collect(),
        }
    }

    /// Runs the command in its namespace: a rule added to a network already up (a fault a
    /// test makes) goes away with the namespace.
    pub fn add(&self) -> Result<(), Error> {
        ip::iptables_in(&self.netns, &self.iptables)
    }
}

/// Namespaces, the pairs inside them, and the rules added once they are up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Namespaces made besides those the pairs name (first, in this order).
    pub namespaces: Vec<String>,
    pub pairs: Vec<Pair>,
    pub rules: Vec<Rule>,
}

impl Topology {
    /// Bare namespaces, nothing inside but their loopback.
    pub fn namespaces(names: &[&str]) -> Self {
        Self {
            namespaces: names.iter().map(|name| (*name).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Every namespace this topology makes, each once, in the order they are made.
    pub fn all_namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let named = self.pairs.iter().flat_map(|pair| {
            let switch = match &pair.join {
                Join::Veth => None,
                Join::Switch(switch) => Some(&switch.netns),
            };
            [&pair.initiator.netns, &pair.target.netns]
                .into_iter()
                .chain(switch)
        });
        for name in self.namespaces.iter().chain(named) {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        all
    }

    /// The bridges the pairs' switches name, each once: (namespace, bridge).
    pub(crate) fn bridges(&self) -> Vec<(&str, &str)> {
        let mut bridges = Vec::new();
        for pair in &self.pairs {
            if let Join::Switch(Switch {
                netns,
                bridge: Some(bridge),
                ..
            }) = &pair.join
                && !bridges.contains(&(netns.as_str(), bridge.as_str()))
            {
                bridges.push((netns.as_str(), bridge.as_str()));
            }
        }
        bridges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(netns: &str, bridge: Option<&str>) -> Join {
        Join::Switch(Switch {
            netns: netns.to_owned(),
            bridge: bridge.map(str::to_owned),
            initiator_peer: "i_br".to_owned(),
            target_peer: "t_br".to_owned(),
            peers_up: true,
        })
    }

    #[test]
    fn namespaces_are_made_once_each_in_order() {
        let topology = Topology {
            namespaces: vec!["extra".to_owned()],
            pairs: vec![
                Pair {
                    initiator: End::new("host", "a"),
                    target: End::new("tgt", "b"),
                    join: switch("host", Some("br")),
                },
                Pair {
                    initiator: End::new("host", "c"),
                    target: End::new("tgt", "d"),
                    join: switch("sw", Some("br")),
                },
            ],
            rules: Vec::new(),
        };
        assert_eq!(topology.all_namespaces(), ["extra", "host", "tgt", "sw"]);
        assert_eq!(topology.bridges(), [("host", "br"), ("sw", "br")]);
    }

    #[test]
    fn a_switch_without_bridge_makes_no_bridge() {
        let topology = Topology {
            pairs: vec![Pair {
                initiator: End::new("i", "a"),
                target: End::new("t", "b"),
                join: switch("x", None),
            }],
            ..Topology::default()
        };
        assert_eq!(topology.all_namespaces(), ["i", "t", "x"]);
        assert!(topology.bridges().is_empty());
    }
}
