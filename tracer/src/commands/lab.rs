//! The built-in lab: SPDK's nvmf_tcp_init topology on a veth pair, or with `--virt` its
//! nvmf_veth_init topology (each port's veth peer in a bridge), with both ports inside
//! namespaces of their own, so that no test address ever exists in tracer's namespace.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tracer_topology::{
    End,
    lab::{Lab, bridge_peer},
    layouts::{LayoutLab, Scope},
};

use crate::{cli::LabArgs, error::UsageError};

fn check_args(args: &LabArgs) -> Result<(), UsageError> {
    for (role, spec) in [("initiator", &args.initiator), ("target", &args.target)] {
        if spec.netns.is_empty() {
            return Err(UsageError::Argument(format!(
                "lab {role} `{spec}` needs a namespace (NETNS/IFNAME): the lab never touches tracer's own namespace"
            )));
        }
    }
    if args.virt {
        for spec in [&args.initiator, &args.target] {
            // IFNAMSIZ: 15 characters, and the bridge side adds "_br".
            if bridge_peer(&spec.interface).len() > 15 {
                return Err(UsageError::Argument(format!(
                    "--virt names the bridge side of `{spec}` {}: at most 12 characters for the port's name",
                    bridge_peer(&spec.interface)
                )));
            }
        }
    }
    if args.initiator.netns == args.target.netns {
        return Err(UsageError::Argument(
            "lab initiator and target need different namespaces".to_owned(),
        ));
    }
    for (role, cidr) in [
        ("--initiator-ip", &args.initiator_ip),
        ("--target-ip", &args.target_ip),
    ] {
        let valid = cidr.split_once('/').is_some_and(|(addr, len)| {
            addr.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|len| len <= 32)
        });
        if !valid {
            return Err(UsageError::Argument(format!(
                "{role} `{cidr}` is not an IPv4 address with prefix length, e.g. 10.0.0.1/24"
            )));
        }
    }
    Ok(())
}

/// Where `lab up` notes the namespaces it made, each file named after one and holding its
/// inode: `up` re-creates only those, never a namespace someone else made under that name.
const LAB_MARKS: &str = "/run/tracer/lab";

fn mark_path(netns: &str) -> PathBuf {
    Path::new(LAB_MARKS).join(netns)
}

/// Whether namespace `netns`, as it is now, was made by `tracer lab up`.
fn made_by_lab(netns: &str) -> bool {
    let Ok(inode) = crate::netns::netns_inode(netns) else {
        return false;
    };
    std::fs::read_to_string(mark_path(netns)).is_ok_and(|mark| mark.trim() == inode.to_string())
}

fn mark(netns: &str) -> anyhow::Result<()> {
    let inode = crate::netns::netns_inode(netns)?;
    std::fs::create_dir_all(LAB_MARKS).with_context(|| format!("creating {LAB_MARKS}"))?;
    std::fs::write(mark_path(netns), format!("{inode}\n"))
        .with_context(|| format!("noting that tracer made namespace {netns}"))
}

/// The namespaces the lab `args` describe: the two ports', or a layout's.
fn namespaces(args: &LabArgs) -> Result<Vec<String>, UsageError> {
    match &args.layout_lab()? {
        Some(lab) => Ok(lab.namespaces().to_vec()),
        None => {
            check_args(args)?;
            Ok(vec![
                args.initiator.netns.clone(),
                args.target.netns.clone(),
            ])
        }
    }
}

/// Removes the lab's namespaces; the veth pair and the rules inside go with them.
pub fn down(args: &LabArgs) -> anyhow::Result<()> {
    for netns in namespaces(args)? {
        tracer_topology::delete_namespace(&netns)?;
        let _ = std::fs::remove_file(mark_path(&netns));
    }
    Ok(())
}

/// Builds the lab from scratch (removing an earlier one first), the way nvmf_tcp_init does. A
/// namespace of that name that `lab up` did not make is refused, never deleted.
pub fn up(args: &LabArgs) -> anyhow::Result<()> {
    let namespaces = namespaces(args)?;
    for netns in &namespaces {
        if tracer_topology::namespace_exists(netns) && !made_by_lab(netns) {
            return Err(UsageError::Argument(format!(
                "namespace `{netns}` exists and `tracer lab up` did not make it: it is left \
                 alone; remove it yourself (`ip netns del {netns}`) or give the lab other names"
            ))
            .into());
        }
    }
    down(args)?;
    let topology = match args.layout_lab()? {
        Some(lab) => lab.topology(),
        None => lab(args).topology(),
    };
    // On failure the guard removes what was made: nothing half-made stays behind.
    let network = topology.build()?;
    for netns in &namespaces {
        mark(netns)?;
    }
    network.keep();
    Ok(())
}

impl LabArgs {
    /// The SPDK layout --layout asks for, in its own namespaces.
    fn layout_lab(&self) -> Result<Option<LayoutLab>, UsageError> {
        let Some(layout) = self.layout else {
            return Ok(None);
        };
        if self.netns_root.is_empty() {
            return Err(UsageError::Argument(
                "--netns-root needs a name: the lab never builds in tracer's own namespace"
                    .to_owned(),
            ));
        }
        let mut lab = LayoutLab::new(layout, Scope::new(&self.netns_root));
        if let Some(pairs) = self.pairs {
            let pairs = usize::from(pairs);
            if pairs > layout.max_pairs() {
                return Err(UsageError::Argument(format!(
                    "--pairs {pairs}: SPDK's {layout} layout has at most {}",
                    layout.max_pairs()
                )));
            }
            lab.pairs = pairs;
        }
        Ok(Some(lab))
    }
}

/// The lab `args` describe, as the topology builder takes it.
fn lab(args: &LabArgs) -> Lab {
    let end = |spec: &crate::spec::PortSpec, address: &str| {
        End::new(&spec.netns, &spec.interface).with_address(address)
    };
    Lab {
        initiator: end(&args.initiator, &args.initiator_ip),
        target: end(&args.target, &args.target_ip),
        tcp_port: args.tcp_port,
        bridge: args.virt.then(|| args.bridge.clone()),
    }
}
