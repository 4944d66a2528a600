//! Building a [`Topology`], and the [`Network`] guard that removes what was built.

use std::marker::PhantomData;

use crate::{
    End, Join, Pair, Switch, Topology,
    ip::{Error, delete_namespace, ip, ip_batch, ip_in, namespace_exists},
};

/// The namespaces a build made; each is deleted when this is dropped, with everything in it.
#[must_use = "dropping the guard removes the network at once"]
pub struct Network {
    namespaces: Vec<String>,
    // Namespace work is tied to the creating thread's view (aya's NetNsGuard); keep the guard
    // on that thread.
    _not_send: PhantomData<*const ()>,
}

impl Network {
    /// The namespaces this guard removes.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Also removes `name` on drop: a namespace the code under test will create.
    pub fn adopt(mut self, name: &str) -> Self {
        self.namespaces.push(name.to_owned());
        self
    }

    /// Leaves the network in place when the guard goes (`tracer lab up`); returns the names
    /// of the namespaces it made.
    pub fn keep(mut self) -> Vec<String> {
        std::mem::take(&mut self.namespaces)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        for name in self.namespaces.iter().rev() {
            if let Err(err) = delete_namespace(name) {
                eprintln!("removing namespace {name}: {err}");
            }
        }
    }
}

impl Topology {
    /// Makes the namespaces (loopback up), the bridges, each pair, the addresses, then the
    /// rules. A namespace that exists already is refused before anything is made; on failure
    /// what was made is removed again.
    pub fn build(&self) -> Result<Network, Error> {
        let namespaces = self.all_namespaces();
        if let Some(netns) = namespaces.iter().find(|name| namespace_exists(name)) {
            return Err(Error::Exists {
                netns: netns.clone(),
            });
        }
        let mut network = Network {
            namespaces: Vec::new(),
            _not_send: PhantomData,
        };
        for name in namespaces {
            ip(&["netns", "add", &name])?;
            network.namespaces.push(name.clone());
            ip_in(&name, &["link", "set", "lo", "up"])?;
        }
        for (netns, bridge) in self.bridges() {
            ip_in(netns, &["link", "add", bridge, "type", "bridge"])?;
            ip_in(netns, &["link", "set", bridge, "up"])?;
        }
        for pair in &self.pairs {
            pair.create_link()?;
            pair.configure()?;
        }
        for rule in &self.rules {
            rule.add()?;
        }
        Ok(network)
    }
}

impl Network {
    /// `count` namespaces named `{prefix}0`, `{prefix}1`, …, each holding a veth pair of its
    /// own (`crowd0` and `crowd1`, down, no address): what earlier jobs leave on a busy CI
    /// node.
    /// Made by two `ip -batch` runs (seconds, not minutes, for hundreds); refused like
    /// [`Topology::build`] when one exists already, and removed by the guard.
    pub fn crowd(prefix: &str, count: usize) -> Result<Self, Error> {
        let names: Vec<String> = (0..count).map(|index| format!("{prefix}{index}")).collect();
        if let Some(netns) = names.iter().find(|name| namespace_exists(name)) {
            return Err(Error::Exists {
                netns: netns.clone(),
            });
        }
        let mut network = Self {
            namespaces: Vec::new(),
            _not_send: PhantomData,
        };
        let mut add = String::new();
        let mut links = String::new();
        for name in &names {
            add.push_str(&format!("netns add {name}\n"));
            // Made inside the namespace: the names need be unique only there.
            links.push_str(&format!(
                "link add crowd0 netns {name} type veth peer name crowd1 netns {name}\n"
            ));
        }
        let added = ip_batch(&add);
        // Whatever part of the batch ran is removed by the guard.
        network.namespaces = names
            .into_iter()
            .filter(|name| namespace_exists(name))
            .collect();
        added?;
        ip_batch(&links)?;
        Ok(network)
    }
}

impl Pair {
    /// One veth pair between the two ends.
    pub fn veth(initiator: End, target: End) -> Self {
        Self {
            initiator,
            target,
            join: Join::Veth,
        }
    }

    /// Each end's veth peer in namespace `netns` (named `peers`), in no bridge: the ends are
    /// cabled to something that forwards nothing (peers up: carrier on), or unplugged (peers
    /// down: no carrier).
    pub fn cabled_elsewhere(
        initiator: End,
        target: End,
        netns: &str,
        peers: (&str, &str),
        peers_up: bool,
    ) -> Self {
        Self {
            initiator,
            target,
            join: Join::Switch(Switch {
                netns: netns.to_owned(),
                bridge: None,
                initiator_peer: peers.0.to_owned(),
                target_peer: peers.1.to_owned(),
                peers_up,
            }),
        }
    }

    /// The pair's veth pairs, each side created inside its namespace, and the switch's side
    /// (in its bridge, up) when there is one. Its namespaces and bridge must exist.
    pub fn create_link(&self) -> Result<(), Error> {
        match &self.join {
            Join::Veth => veth(&self.initiator, &self.target.netns, &self.target.interface),
            Join::Switch(switch) => {
                for (end, peer) in [
                    (&self.initiator, &switch.initiator_peer),
                    (&self.target, &switch.target_peer),
                ] {
                    veth(end, &switch.netns, peer)?;
                    if let Some(bridge) = &switch.bridge {
                        ip_in(&switch.netns, &["link", "set", peer, "master", bridge])?;
                    }
                    if switch.peers_up {
                        ip_in(&switch.netns, &["link", "set", peer, "up"])?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Each end's address, then the end up (unless it is to stay down).
    pub fn configure(&self) -> Result<(), Error> {
        for end in [&self.initiator, &self.target] {
            if let Some(address) = &end.address {
                ip_in(&end.netns, &["addr", "add", address, "dev", &end.interface])?;
            }
            if let Some(alias) = &end.alias {
                ip_in(
                    &end.netns,
                    &["link", "set", "dev", &end.interface, "alias", alias],
                )?;
            }
            if end.up {
                ip_in(&end.netns, &["link", "set", &end.interface, "up"])?;
            }
        }
        Ok(())
    }
}

/// A veth pair: `end`, and `peer` in `peer_netns`.
fn veth(end: &End, peer_netns: &str, peer: &str) -> Result<(), Error> {
    ip(&[
        "link",
        "add",
        &end.interface,
        "netns",
        &end.netns,
        "type",
        "veth",
        "peer",
        "name",
        peer,
        "netns",
        peer_netns,
    ])
}
