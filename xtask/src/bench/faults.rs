//! The faults `tracer diagnose` is timed on, and the timing.

use std::{
    fs::File,
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    path::Path,
    process::Command,
    time::Instant,
};

use anyhow::{anyhow, bail};
use serde_json::Value;

use tracer_topology::{End, Pair, Topology};

use super::*;
use crate::util::{describe, run_checked, tracer_binary};

/// A fault in place, and what diagnose needs beside the port arguments.
pub(super) struct FaultSetup {
    pub(super) extra_args: Vec<&'static str>,
    /// Held open for the duration: something listens on the port.
    pub(super) _listener: Option<TcpListener>,
}

impl FaultSetup {
    pub(super) fn plain() -> Self {
        Self {
            extra_args: Vec::new(),
            _listener: None,
        }
    }
}

/// A TCP listener bound inside namespace `netns`; the socket stays there afterwards.
pub(super) fn listen_in_netns(netns: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
    let path = Path::new("/var/run/netns").join(netns);
    // A thread of its own: setns changes only the calling thread, and this one then ends.
    std::thread::spawn(move || -> anyhow::Result<TcpListener> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: setns on a namespace fd; affects only this short-lived thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("entering {}", path.display()));
        }
        TcpListener::bind(address).with_context(|| format!("listening on {address}"))
    })
    .join()
    .map_err(|_| anyhow!("the listener thread panicked"))?
}

/// Two ports whose veth peers live in a third namespace: up (cabled elsewhere) or down
/// (unplugged: no carrier).
pub(super) fn miscabled(net: &mut BenchNet, peers_up: bool) -> anyhow::Result<()> {
    net.rebuild(&Topology {
        pairs: vec![Pair::cabled_elsewhere(
            End::new(INITIATOR_NS, INITIATOR_IF).with_address("10.0.0.1/24"),
            End::new(TARGET_NS, TARGET_IF).with_address("10.0.0.2/24"),
            ELSEWHERE_NS,
            ("peer1", "peer0"),
            peers_up,
        )],
        ..Topology::default()
    })
}

pub(super) fn build_fault(net: &mut BenchNet, fault: &str) -> anyhow::Result<FaultSetup> {
    match fault {
        "unplugged" => {
            miscabled(net, false)?;
            return Ok(FaultSetup::plain());
        }
        "cabled_elsewhere" => {
            miscabled(net, true)?;
            return Ok(FaultSetup::plain());
        }
        _ => net.lab_up()?,
    }
    let mut setup = FaultSetup::plain();
    match fault {
        "healthy" => {
            let address: SocketAddr = format!("{TARGET_IP}:{PORT}")
                .parse()
                .context("the listener's address")?;
            setup._listener = Some(listen_in_netns(TARGET_NS, address)?);
        }
        "nothing_listening" => {}
        "target_down" => run_checked(
            Command::new("ip").args(["-n", TARGET_NS, "link", "set", TARGET_IF, "down"]),
        )?,
        "netfilter_icmp" => run_checked(
            in_netns(TARGET_NS, "iptables").args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
        )?,
        "netfilter_tcp" => run_checked(
            in_netns(TARGET_NS, "iptables")
                .args(["-A", "INPUT", "-p", "tcp", "--dport", PORT, "-j", "DROP"]),
        )?,
        "netfilter_arp" => {
            run_checked(in_netns(TARGET_NS, "arptables").args(["-A", "INPUT", "-j", "DROP"]))?
        }
        "address_nobody_owns" => setup.extra_args = vec!["--target-ip", UNOWNED_IP],
        "no_route" => run_checked(Command::new("ip").args([
            "-n",
            INITIATOR_NS,
            "route",
            "del",
            "10.0.0.0/24",
            "dev",
            INITIATOR_IF,
        ]))?,
        other => bail!("no recipe for fault `{other}`"),
    }
    Ok(setup)
}

/// `tracer diagnose --json` on the fault in place: (seconds from spawn to exit, verdict class).
pub(super) fn time_diagnose(setup: &FaultSetup) -> anyhow::Result<(f64, String)> {
    check_interrupted()?;
    let mut command = Command::new(tracer_binary());
    command
        .args(["diagnose", "--json"])
        .args(port_args())
        .args(&setup.extra_args);
    eprintln!("+ {}", describe(&command));
    let start = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("starting `{}`", describe(&command)))?;
    let seconds = start.elapsed().as_secs_f64();
    let report: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "diagnose printed no JSON ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
    })?;
    let class = report["verdict"]["class"]
        .as_str()
        .ok_or_else(|| anyhow!("diagnose's report has no verdict.class"))?
        .to_owned();
    Ok((seconds, class))
}

/// One fault's diagnose runs.
pub(super) struct Verdicts {
    pub(super) fault: &'static str,
    /// Spawn to exit, each run.
    pub(super) seconds: Vec<f64>,
    /// The verdict class of the last run.
    pub(super) class: String,
}

/// Every run of diagnose on each fault.
pub(super) fn measure_verdicts(net: &mut BenchNet) -> anyhow::Result<Vec<Verdicts>> {
    let mut results = Vec::new();
    for (fault, _) in FAULTS {
        let mut seconds = Vec::new();
        let mut class = String::new();
        // A fresh fault each run: what a user meets the first time, not a warmed-up cache.
        for _ in 0..VERDICT_RUNS {
            let setup = build_fault(net, fault)?;
            let (run_seconds, run_class) = time_diagnose(&setup)?;
            seconds.push(run_seconds);
            class = run_class;
        }
        results.push(Verdicts {
            fault,
            seconds,
            class,
        });
    }
    Ok(results)
}
