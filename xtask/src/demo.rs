//! `cargo xtask demo`: tracer at work on the built-in lab.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use tracer_topology::{End, Pair, Topology, lab::Lab};

use crate::util::{describe, run_checked, tracer_binary};

const INITIATOR: &str = "cvl_0_1_ns_initiator/cvl_0_1";
const INITIATOR_NS: &str = "cvl_0_1_ns_initiator";
const TARGET_NS: &str = "cvl_0_0_ns_spdk";
const TARGET_IP: &str = "10.0.0.2";

fn ready_file() -> PathBuf {
    std::env::temp_dir().join(format!("tracer-demo-{}.ready", std::process::id()))
}

fn wait_ready(child: &mut Child, ready: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("tracer exited before it was ready ({status})");
        }
        if Instant::now() > deadline {
            bail!("tracer was not ready within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs `tracer counters` around a ping from the initiator namespace and shows both.
fn counters_around_ping(title: &str) -> anyhow::Result<()> {
    println!("\n=== {title}");
    let ready = ready_file();
    let _ = std::fs::remove_file(&ready);
    let mut counters = Command::new(tracer_binary());
    counters
        .args(["counters", "--initiator", INITIATOR, "--ready-file"])
        .arg(&ready)
        .stdout(Stdio::inherit());
    eprintln!("+ {}", describe(&counters));
    let mut child = counters.spawn().context("starting tracer counters")?;
    let result = wait_ready(&mut child, &ready).and_then(|()| {
        let mut ping = Command::new("ip");
        ping.args([
            "netns",
            "exec",
            INITIATOR_NS,
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "1",
        ])
        .arg(TARGET_IP);
        eprintln!("+ {}", describe(&ping));
        // A failing ping is part of the show, not a demo failure.
        ping.status().context("running ping")?;
        Ok(())
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait()?;
    let _ = std::fs::remove_file(&ready);
    result?;
    if !status.success() {
        bail!("tracer counters failed ({status})");
    }
    Ok(())
}

/// Runs `tracer diagnose` on the lab and shows its report; a fault verdict is the point here.
fn diagnose(title: &str) -> anyhow::Result<()> {
    println!("\n=== {title}");
    let mut diagnose = Command::new(tracer_binary());
    diagnose.args(["diagnose", "--initiator", INITIATOR]);
    eprintln!("+ {}", describe(&diagnose));
    let status = diagnose.status().context("running tracer diagnose")?;
    println!("(exit code {})", status.code().unwrap_or(-1));
    Ok(())
}

fn in_netns(netns: &str, command: &[&str]) -> anyhow::Result<()> {
    run_checked(
        Command::new("ip")
            .args(["netns", "exec", netns])
            .args(command),
    )
}

pub fn run() -> anyhow::Result<()> {
    // `tracer lab up`'s lab; removed when dropped, on failure too.
    let _lab = Lab::default().topology().build()?;
    counters_around_ping("A healthy loop: 5 pings from 10.0.0.1 to 10.0.0.2")?;
    diagnose("tracer diagnose on the healthy loop: verdict ok")?;

    let icmp_drop = ["iptables", "-I", "INPUT", "1", "-p", "icmp", "-j", "DROP"];
    in_netns(TARGET_NS, &icmp_drop)?;
    counters_around_ping(
        "ICMP dropped on the target's INPUT chain: the requests arrive, the kernel drops them",
    )?;
    diagnose("tracer diagnose names the namespace, table, chain and rule")?;
    in_netns(
        TARGET_NS,
        &["iptables", "-D", "INPUT", "-p", "icmp", "-j", "DROP"],
    )?;

    in_netns(
        TARGET_NS,
        &["ip", "addr", "del", "10.0.0.2/24", "dev", "cvl_0_0"],
    )?;
    diagnose("The target does not own 10.0.0.2 any more: ARP goes unanswered")?;
    in_netns(
        TARGET_NS,
        &["ip", "addr", "add", "10.0.0.2/24", "dev", "cvl_0_0"],
    )?;

    in_netns(TARGET_NS, &["ip", "link", "set", "cvl_0_0", "down"])?;
    diagnose("The target port is administratively down")?;
    drop(_lab);
    the_incident()
}

/// The incident tracer was born from: both ports have carrier, but each is cabled to something
/// else. SPDK's nvmf_tcp_init runs under `tracer watch`, which follows cvl_0_0 into the
/// namespace the script creates and says why the ping fails.
fn the_incident() -> anyhow::Result<()> {
    println!("\n=== The incident: nvmf_tcp_init under `tracer watch`, the ports cabled elsewhere");
    const HOST: &str = "tracer_demo_host";
    const ELSEWHERE: &str = "tracer_demo_switch";
    // The ports stay down and without addresses: the script sets them up. TARGET_NS is the
    // script's, removed with the others.
    let _network = Topology {
        pairs: vec![Pair::cabled_elsewhere(
            End::new(HOST, "cvl_0_1").down(),
            End::new(HOST, "cvl_0_0").down(),
            ELSEWHERE,
            ("sw_p1", "sw_p0"),
            true,
        )],
        ..Topology::default()
    }
    .build()?
    .adopt(TARGET_NS);
    let script = format!(
        "set -e
ip netns add {TARGET_NS}
ip -n {HOST} link set cvl_0_0 netns {TARGET_NS}
ip -n {HOST} addr add 10.0.0.1/24 dev cvl_0_1
ip -n {TARGET_NS} addr add 10.0.0.2/24 dev cvl_0_0
ip -n {HOST} link set cvl_0_1 up
ip -n {TARGET_NS} link set cvl_0_0 up
ip -n {TARGET_NS} link set lo up
ip netns exec {HOST} iptables -I INPUT 1 -i cvl_0_1 -p tcp --dport 4420 -j ACCEPT -m comment --comment SPDK_NVMF:demo
ip netns exec {HOST} ping -c 1 {TARGET_IP}
"
    );
    let report = std::env::temp_dir().join(format!("tracer-demo-report-{}", std::process::id()));
    let mut watch = Command::new(tracer_binary());
    watch
        .args([
            "watch",
            "--initiator",
            &format!("{HOST}/cvl_0_1"),
            "--report",
        ])
        .arg(&report)
        .args(["--", "sh", "-c", &script]);
    eprintln!("+ {}", describe(&watch));
    let status = watch.status().context("running tracer watch")?;
    println!("(exit code {}: the script's)", status.code().unwrap_or(-1));
    let markdown = std::fs::read_to_string(report.join("report.md"))
        .with_context(|| format!("reading {}", report.join("report.md").display()))?;
    // The first screen of the bundle, and its timeline.
    for line in markdown.lines().take(12) {
        println!("{line}");
    }
    if let Some(timeline) = markdown.split("## Timeline").nth(1) {
        println!(
            "## Timeline{}",
            timeline.split("## Capture").next().unwrap_or_default()
        );
    }
    println!("(the whole bundle: {})", report.display());
    Ok(())
}
