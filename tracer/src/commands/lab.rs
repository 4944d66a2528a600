//! The built-in lab: SPDK's nvmf_tcp_init topology on a veth pair, or with `--virt` its
//! nvmf_veth_init topology (each port's veth peer in a bridge), with both ports inside
//! namespaces of their own, so that no test address ever exists in tracer's namespace.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cli::LabArgs, error::UsageError, spec::PortSpec};

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

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program).args(args).output().with_context(|| {
        format!("running {program} (is it installed? `cargo xtask setup` installs it)")
    })?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A veth pair, each end created directly inside its namespace.
fn veth(netns: &str, interface: &str, peer_netns: &str, peer: &str) -> anyhow::Result<()> {
    run(
        "ip",
        &[
            "link", "add", interface, "netns", netns, "type", "veth", "peer", "name", peer,
            "netns", peer_netns,
        ],
    )
}

/// The bridge-side peer of a port in the virtual topology, named as SPDK names it.
pub fn bridge_peer(interface: &str) -> String {
    format!("{interface}_br")
}

fn netns_exists(name: &str) -> bool {
    crate::netns::netns_path(name).exists()
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

/// Removes the lab's namespaces; the veth pair and the rules inside go with them.
pub fn down(args: &LabArgs) -> anyhow::Result<()> {
    check_args(args)?;
    for spec in [&args.initiator, &args.target] {
        if netns_exists(&spec.netns) {
            run("ip", &["netns", "del", &spec.netns])?;
        }
        let _ = std::fs::remove_file(mark_path(&spec.netns));
    }
    Ok(())
}

/// Builds the lab from scratch (removing an earlier one first), the way nvmf_tcp_init does. A
/// namespace of that name that `lab up` did not make is refused, never deleted.
pub fn up(args: &LabArgs) -> anyhow::Result<()> {
    check_args(args)?;
    for spec in [&args.initiator, &args.target] {
        if netns_exists(&spec.netns) && !made_by_lab(&spec.netns) {
            return Err(UsageError::Argument(format!(
                "namespace `{0}` exists and `tracer lab up` did not make it: it is left alone; \
                 remove it yourself (`ip netns del {0}`) or give the lab other names",
                spec.netns
            ))
            .into());
        }
    }
    down(args)?;
    let result = build(args)
        .and_then(|()| mark(&args.initiator.netns))
        .and_then(|()| mark(&args.target.netns));
    if result.is_err() {
        // Leave nothing half-made behind.
        let _ = down(args);
    }
    result
}

fn build(args: &LabArgs) -> anyhow::Result<()> {
    let LabArgs {
        initiator,
        target,
        initiator_ip,
        target_ip,
        port,
        virt,
        bridge,
    } = args;
    let PortSpec {
        netns: initiator_ns,
        interface: initiator_if,
    } = initiator;
    let PortSpec {
        netns: target_ns,
        interface: target_if,
    } = target;
    run("ip", &["netns", "add", initiator_ns])?;
    run("ip", &["netns", "add", target_ns])?;
    if *virt {
        // nvmf_veth_init: each port's veth peer, named PORT_br, is a port of one bridge in
        // the initiator's namespace (SPDK's host), which forwards between them.
        run(
            "ip",
            &["-n", initiator_ns, "link", "add", bridge, "type", "bridge"],
        )?;
        run("ip", &["-n", initiator_ns, "link", "set", bridge, "up"])?;
        for (ns, interface) in [(initiator_ns, initiator_if), (target_ns, target_if)] {
            let peer = bridge_peer(interface);
            veth(ns, interface, initiator_ns, &peer)?;
            run(
                "ip",
                &["-n", initiator_ns, "link", "set", &peer, "master", bridge],
            )?;
            run("ip", &["-n", initiator_ns, "link", "set", &peer, "up"])?;
        }
        run(
            "ip",
            &[
                "netns",
                "exec",
                initiator_ns,
                "iptables",
                "-A",
                "FORWARD",
                "-i",
                bridge,
                "-o",
                bridge,
                "-j",
                "ACCEPT",
            ],
        )?;
    } else {
        veth(initiator_ns, initiator_if, target_ns, target_if)?;
    }
    for (ns, interface, address) in [
        (initiator_ns, initiator_if, initiator_ip),
        (target_ns, target_if, target_ip),
    ] {
        run("ip", &["-n", ns, "addr", "add", address, "dev", interface])?;
        run("ip", &["-n", ns, "link", "set", interface, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    }
    let port = port.to_string();
    let rule = format!("-I INPUT 1 -i {initiator_if} -p tcp --dport {port} -j ACCEPT");
    let comment = format!("SPDK_NVMF:{rule}");
    run(
        "ip",
        &[
            "netns",
            "exec",
            initiator_ns,
            "iptables",
            "-I",
            "INPUT",
            "1",
            "-i",
            initiator_if,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "ACCEPT",
            "-m",
            "comment",
            "--comment",
            &comment,
        ],
    )?;
    Ok(())
}
