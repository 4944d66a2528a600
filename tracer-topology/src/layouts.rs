//! SPDK's three NVMe/TCP test layouts as data: the names, namespaces and addresses its scripts
//! (spdk/spdk test/nvmf/) give the ports, for `tracer lab up --layout` to build faithfully and
//! for tracer to look for on a node.
//!
//! | layout | initiators (host namespace) | targets | between |
//! |---|---|---|---|
//! | `phy` (`nvmf_tcp_init`) | `cvl_0_1` 10.0.0.1 | `cvl_0_0` 10.0.0.2 in `cvl_0_0_ns_spdk` | a cable |
//! | `virt-legacy` (`nvmf_veth_init`) | `nvmf_init_if` .1, `nvmf_init_if2` .2 | `nvmf_tgt_if` .3, `nvmf_tgt_if2` .4 in `nvmf_tgt_ns_spdk` | peers `nvmf_{init,tgt}_br{,2}` in bridge `nvmf_br` |
//! | `virt` (setup.sh) | `initiatorN` 10.0.0.(2N+1) | `targetN` 10.0.0.(2N+2) in `nvmf_ns_spdk` | peers `*_br` in bridge `nvmf_br`; each address also in the port's ifalias |
//!
//! A [`Scope`] stands a namespace in for the host's own: the layout's ports and namespaces are
//! then named inside it, so that the lab and the tests never use the host's.

use std::fmt;

use crate::{End, Join, Pair, Rule, Switch, Topology};

/// The bridge both virtual layouts put the ports' peers in.
pub const BRIDGE: &str = "nvmf_br";
/// The TCP port SPDK's tests listen on (NVMF_PORT).
pub const TCP_PORT: u16 = 4420;
/// The prefix length of every layout's addresses.
pub const PREFIX_LEN: u8 = 24;
/// The comment SPDK puts on every firewall rule it adds (and removes them by).
pub const RULE_TAG: &str = "SPDK_NVMF";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayoutName {
    /// `nvmf_tcp_init`: two NIC ports cabled to each other.
    Phy,
    /// setup.sh's `setup_interfaces`: `initiatorN`/`targetN` veths through `nvmf_br`.
    Virt,
    /// `nvmf_veth_init` in common.sh (release branches): `nvmf_init_if{,2}`/`nvmf_tgt_if{,2}`.
    VirtLegacy,
}

impl LayoutName {
    pub const ALL: [Self; 3] = [Self::Phy, Self::Virt, Self::VirtLegacy];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phy => "phy",
            Self::Virt => "virt",
            Self::VirtLegacy => "virt-legacy",
        }
    }

    /// The SPDK function that builds it, for people to look up.
    pub fn builder(self) -> &'static str {
        match self {
            Self::Phy => "nvmf_tcp_init (test/nvmf/common.sh)",
            Self::Virt => "setup_interfaces (test/nvmf/setup.sh)",
            Self::VirtLegacy => "nvmf_veth_init (test/nvmf/common.sh)",
        }
    }

    /// The namespace the targets are moved into.
    pub fn target_netns(self) -> &'static str {
        match self {
            Self::Phy => "cvl_0_0_ns_spdk",
            Self::Virt => "nvmf_ns_spdk",
            Self::VirtLegacy => "nvmf_tgt_ns_spdk",
        }
    }

    /// Pairs SPDK's scripts make: how many the layout can hold, and how many by default.
    pub fn max_pairs(self) -> usize {
        match self {
            Self::Phy => 1,
            Self::Virt => 8,
            Self::VirtLegacy => 2,
        }
    }

    pub fn default_pairs(self) -> usize {
        self.max_pairs().min(2)
    }

    /// Whether the layout joins its ports through the bridge.
    pub fn bridged(self) -> bool {
        self != Self::Phy
    }

    /// Whether SPDK writes each port's address into its ifalias.
    pub fn addresses_in_ifalias(self) -> bool {
        self == Self::Virt
    }

    /// The initiator and target of pair `index` (0-based), with their addresses and, in the
    /// virtual layouts, their bridge-side peers.
    pub fn pair(self, index: usize) -> PairNames {
        let octet = |n: usize| format!("10.0.0.{n}");
        match self {
            Self::Phy => PairNames {
                initiator: "cvl_0_1".to_owned(),
                target: "cvl_0_0".to_owned(),
                initiator_ip: octet(1),
                target_ip: octet(2),
                peers: None,
            },
            Self::Virt => PairNames {
                initiator: format!("initiator{index}"),
                target: format!("target{index}"),
                initiator_ip: octet(2 * index + 1),
                target_ip: octet(2 * index + 2),
                peers: Some((format!("initiator{index}_br"), format!("target{index}_br"))),
            },
            Self::VirtLegacy => {
                // The first pair has no number, the second ends in 2.
                let suffix = if index == 0 {
                    String::new()
                } else {
                    (index + 1).to_string()
                };
                PairNames {
                    initiator: format!("nvmf_init_if{suffix}"),
                    target: format!("nvmf_tgt_if{suffix}"),
                    initiator_ip: octet(index + 1),
                    target_ip: octet(index + 3),
                    peers: Some((
                        format!("nvmf_init_br{suffix}"),
                        format!("nvmf_tgt_br{suffix}"),
                    )),
                }
            }
        }
    }

    /// Every pair the layout can hold.
    pub fn all_pairs(self) -> Vec<PairNames> {
        (0..self.max_pairs())
            .map(|index| self.pair(index))
            .collect()
    }
}

impl fmt::Display for LayoutName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LayoutName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|layout| layout.as_str() == text)
            .ok_or_else(|| format!("`{text}`: expected phy, virt or virt-legacy"))
    }
}

/// The names and addresses SPDK gives one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairNames {
    pub initiator: String,
    pub target: String,
    /// Without prefix length (it is [`PREFIX_LEN`]).
    pub initiator_ip: String,
    pub target_ip: String,
    /// The bridge-side veth peers (initiator's, target's), in the virtual layouts.
    pub peers: Option<(String, String)>,
}

/// Where a layout lives: the host's own namespace (`root` empty), or a namespace standing in
/// for it, whose layout namespaces are then named `ROOT-NAME`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub root: String,
}

impl Scope {
    pub fn new(root: &str) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    /// The name namespace `name` of a layout has in this scope.
    pub fn netns(&self, name: &str) -> String {
        if self.root.is_empty() {
            name.to_owned()
        } else {
            format!("{}-{name}", self.root)
        }
    }
}

/// A layout as `tracer lab up --layout` builds it: SPDK's names and addresses, `pairs` pairs,
/// in `scope` (which must stand a namespace in for the host's: the lab never builds in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutLab {
    pub layout: LayoutName,
    pub pairs: usize,
    pub scope: Scope,
}

impl LayoutLab {
    pub fn new(layout: LayoutName, scope: Scope) -> Self {
        Self {
            layout,
            pairs: layout.default_pairs(),
            scope,
        }
    }

    /// The namespaces it makes: the stand-in host, then the targets'.
    pub fn namespaces(&self) -> [String; 2] {
        [
            self.scope.root.clone(),
            self.scope.netns(self.layout.target_netns()),
        ]
    }

    pub fn topology(&self) -> Topology {
        let host = self.scope.root.as_str();
        let targets = self.scope.netns(self.layout.target_netns());
        let address = |ip: &str| format!("{ip}/{PREFIX_LEN}");
        let mut rules = Vec::new();
        if self.layout.bridged() {
            rules.push(Rule::new(
                host,
                &[
                    "-A",
                    "FORWARD",
                    "-i",
                    BRIDGE,
                    "-o",
                    BRIDGE,
                    "-j",
                    "ACCEPT",
                    "-m",
                    "comment",
                    "--comment",
                    &rule_comment("-A FORWARD -i nvmf_br -o nvmf_br -j ACCEPT"),
                ],
            ));
        }
        let pairs = (0..self.pairs)
            .map(|index| {
                let names = self.layout.pair(index);
                let mut initiator =
                    End::new(host, &names.initiator).with_address(&address(&names.initiator_ip));
                let mut target =
                    End::new(&targets, &names.target).with_address(&address(&names.target_ip));
                if self.layout.addresses_in_ifalias() {
                    initiator = initiator.with_alias(&names.initiator_ip);
                    target = target.with_alias(&names.target_ip);
                }
                rules.push(accept_rule(host, &names.initiator, TCP_PORT));
                let join = match names.peers {
                    None => Join::Veth,
                    Some((initiator_peer, target_peer)) => Join::Switch(Switch {
                        netns: host.to_owned(),
                        bridge: Some(BRIDGE.to_owned()),
                        initiator_peer,
                        target_peer,
                        peers_up: true,
                    }),
                };
                Pair {
                    initiator,
                    target,
                    join,
                }
            })
            .collect();
        Topology {
            namespaces: vec![host.to_owned()],
            pairs,
            rules,
        }
    }
}

/// The comment SPDK's `ipts` puts on a rule: its tag and the rule itself.
pub fn rule_comment(rule: &str) -> String {
    format!("{RULE_TAG}:{rule}")
}

/// SPDK's rule that opens the TCP port on an initiator interface, tagged as SPDK tags it.
pub fn accept_rule(netns: &str, interface: &str, tcp_port: u16) -> Rule {
    let port = tcp_port.to_string();
    tagged_rule(
        netns,
        &[
            "-I", "INPUT", "1", "-i", interface, "-p", "tcp", "--dport", &port, "-j", "ACCEPT",
        ],
    )
}

/// SPDK's rule that drops the TCP port, tagged as SPDK tags it: what host/timeout.sh adds on
/// purpose (there on OUTPUT towards the target's address; here on INPUT, where the target
/// receives).
pub fn drop_rule(netns: &str, tcp_port: u16) -> Rule {
    let port = tcp_port.to_string();
    tagged_rule(
        netns,
        &[
            "-I", "INPUT", "1", "-p", "tcp", "--dport", &port, "-j", "DROP",
        ],
    )
}

/// The iptables rule `rule`, with SPDK's comment: its tag and the rule's own words.
fn tagged_rule(netns: &str, rule: &[&str]) -> Rule {
    let comment = rule_comment(&rule.join(" "));
    let tag = ["-m", "comment", "--comment", &comment];
    Rule::new(netns, &[rule, &tag].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_layouts_name_their_pairs_as_spdk_does() {
        let phy = LayoutName::Phy.pair(0);
        assert_eq!(
            (phy.initiator.as_str(), phy.target.as_str()),
            ("cvl_0_1", "cvl_0_0")
        );
        assert_eq!(
            (phy.initiator_ip.as_str(), phy.target_ip.as_str()),
            ("10.0.0.1", "10.0.0.2")
        );
        let legacy: Vec<_> = LayoutName::VirtLegacy.all_pairs();
        assert_eq!(legacy[1].initiator, "nvmf_init_if2");
        assert_eq!(legacy[1].target, "nvmf_tgt_if2");
        assert_eq!(
            (
                legacy[0].target_ip.as_str(),
                legacy[1].initiator_ip.as_str()
            ),
            ("10.0.0.3", "10.0.0.2")
        );
        assert_eq!(legacy[1].peers.as_ref().unwrap().1, "nvmf_tgt_br2");
        let virt = LayoutName::Virt.pair(1);
        assert_eq!(
            (virt.initiator_ip.as_str(), virt.target_ip.as_str()),
            ("10.0.0.3", "10.0.0.4")
        );
        assert_eq!(virt.peers.unwrap().0, "initiator1_br");
        for layout in LayoutName::ALL {
            assert_eq!(layout.as_str().parse::<LayoutName>(), Ok(layout));
        }
    }

    #[test]
    fn a_virtual_lab_bridges_every_pair_in_the_stand_in_host() {
        let lab = LayoutLab::new(LayoutName::Virt, Scope::new("host"));
        let topology = lab.topology();
        assert_eq!(topology.all_namespaces(), ["host", "host-nvmf_ns_spdk"]);
        assert_eq!(topology.pairs.len(), 2);
        assert_eq!(topology.pairs[1].target.alias.as_deref(), Some("10.0.0.4"));
        assert_eq!(topology.bridges(), [("host", BRIDGE)]);
        // The FORWARD accept, then one INPUT accept per initiator, each tagged as SPDK's.
        assert_eq!(topology.rules.len(), 3);
        assert!(topology.rules.iter().all(|rule| {
            rule.iptables
                .iter()
                .any(|arg| arg.starts_with("SPDK_NVMF:"))
        }));
    }
}
