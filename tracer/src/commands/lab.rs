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

use crate::{
    cli::{DEFAULT_LAB_INITIATOR, DEFAULT_PORT, DEFAULT_TARGET, LabArgs},
    error::UsageError,
};

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

/// Removes the lab's namespaces; the veth pair and the rules inside go with them. Says what
/// it removed.
pub fn down(args: &LabArgs) -> anyhow::Result<()> {
    let namespaces = namespaces(args)?;
    crate::preflight::check_privileges()?;
    let removed = remove(&namespaces)?;
    if removed.is_empty() {
        println!("tracer lab down: nothing to remove (no namespace of the lab's names exists)");
    } else {
        println!(
            "tracer lab down: removed namespace(s) {} and everything in them",
            removed.join(", ")
        );
    }
    Ok(())
}

/// Deletes the lab's namespaces that exist; returns their names.
fn remove(namespaces: &[String]) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for netns in namespaces {
        if tracer_topology::namespace_exists(netns) {
            removed.push(netns.clone());
        }
        tracer_topology::delete_namespace(netns)?;
        let _ = std::fs::remove_file(mark_path(netns));
    }
    Ok(removed)
}

/// Builds the lab from scratch (removing an earlier one first), the way nvmf_tcp_init does. A
/// namespace of that name that `lab up` did not make is refused, never deleted.
pub fn up(args: &LabArgs) -> anyhow::Result<()> {
    let namespaces = namespaces(args)?;
    crate::preflight::check_privileges()?;
    for netns in &namespaces {
        if tracer_topology::namespace_exists(netns) && !made_by_lab(netns) {
            return Err(UsageError::Argument(format!(
                "namespace `{netns}` exists and `tracer lab up` did not make it: it is left \
                 alone; remove it yourself (`ip netns del {netns}`) or give the lab other names"
            ))
            .into());
        }
    }
    remove(&namespaces)?;
    let layout_lab = args.layout_lab()?;
    let topology = match &layout_lab {
        Some(lab) => lab.topology(),
        None => lab(args).topology(),
    };
    // On failure the guard removes what was made: nothing half-made stays behind.
    let network = topology.build()?;
    for netns in &namespaces {
        mark(netns)?;
    }
    network.keep();
    print!(
        "{}",
        match &layout_lab {
            Some(lab) => built_layout(lab),
            None => built(args),
        }
    );
    Ok(())
}

/// What `lab up` built and the commands to run next, for the two-namespace lab.
fn built(args: &LabArgs) -> String {
    let (initiator, target) = (&args.initiator, &args.target);
    let address = |cidr: &str| cidr.split_once('/').map_or(cidr, |(ip, _)| ip).to_owned();
    let target_ip = address(&args.target_ip);
    let mut flags = format!("--initiator {initiator} --target {target}");
    if address(&args.initiator_ip) != "10.0.0.1" || target_ip != "10.0.0.2" {
        flags += &format!(
            " --initiator-ip {} --target-ip {target_ip}",
            address(&args.initiator_ip)
        );
    }
    if args.tcp_port.to_string() != DEFAULT_PORT {
        flags += &format!(" --tcp-port {}", args.tcp_port);
    }
    let cabling = if args.virt {
        format!("veth pairs whose peers are ports of bridge {}", args.bridge)
    } else {
        "a veth pair".to_owned()
    };
    format!(
        "tracer lab up: built the lab, {cabling} between\n  \
         initiator {} {} in namespace {}\n  \
         target    {} {} in namespace {}\n\
         with SPDK's iptables ACCEPT for TCP port {} in the initiator's namespace.\n\
         Next (the lab is not where tracer looks by default, hence the flags):\n  \
         sudo tracer diagnose {flags}\n  \
         sudo tracer watch {flags} -- ip netns exec {} ping -c 3 {target_ip}\n  \
         sudo tracer lab down{}\n",
        initiator.interface,
        args.initiator_ip,
        initiator.netns,
        target.interface,
        args.target_ip,
        target.netns,
        args.tcp_port,
        initiator.netns,
        lab_flags(args),
    )
}

/// What `lab up --layout` built and the commands to run next.
fn built_layout(lab: &LayoutLab) -> String {
    let [host, targets] = lab.namespaces();
    let mut text = format!(
        "tracer lab up: built SPDK's {} layout in namespace {host} (standing for the host) \
         and {targets}:\n",
        lab.layout
    );
    for index in 0..lab.pairs {
        let pair = lab.layout.pair(index);
        text += &format!(
            "  pair {}: initiator {} {} in {host}, target {} {} in {targets}\n",
            index + 1,
            pair.initiator,
            pair.initiator_ip,
            pair.target,
            pair.target_ip
        );
    }
    let first = lab.layout.pair(0);
    let scope = format!("--netns-root {host}");
    text += &format!(
        "Next (--netns-root makes tracer look for the layouts in the lab, not on the host):\n  \
         sudo tracer diagnose {scope}\n  \
         sudo tracer watch {scope} -- ip netns exec {host} ping -c 3 {}\n  \
         sudo tracer lab down --layout {} {scope}\n",
        first.target_ip, lab.layout
    );
    text
}

/// The flags `lab down` needs to find this lab again: the names that differ from the defaults.
fn lab_flags(args: &LabArgs) -> String {
    let mut flags = String::new();
    if args.initiator.to_string() != DEFAULT_LAB_INITIATOR {
        flags += &format!(" --initiator {}", args.initiator);
    }
    if args.target.to_string() != DEFAULT_TARGET {
        flags += &format!(" --target {}", args.target);
    }
    flags
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
