//! `tracer diagnose` on a busy CI node: 20,000 iptables rules in the namespace that
//! drops, and 300 other namespaces with interfaces of their own. Timed spawn to exit, and its
//! own memory peak (VmHWM, read every few milliseconds while it runs: the tools it starts,
//! nft and iptables-save, are not counted).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use tracer_topology::{
    Network,
    busy::{busy_input_chain, iptables_restore},
    delete_namespace,
};

use super::*;
use crate::util::{describe, tracer_binary};

pub(super) const BIG_RULES: usize = 20_000;
pub(super) const CROWD: usize = 300;
const CROWD_PREFIX: &str = "tbench_crowd";
const DROPPING: &str = "-p icmp -j DROP";

/// Each run of diagnose on the busy node.
struct BigRuleset {
    seconds: Vec<f64>,
    peak_mb: Vec<f64>,
}

/// diagnose on the busy node, into the report with its spread and its goals.
pub(super) fn busy_node(report: &mut Report, net: &mut BenchNet) -> anyhow::Result<()> {
    let runs = measure_big_ruleset(net)?;
    let seconds = median(&runs.seconds);
    let peak_mb = median(&runs.peak_mb);
    report.value(
        "big_ruleset",
        json!({
            "rules": BIG_RULES,
            "namespaces": CROWD,
            "seconds": round3(seconds),
            "peak_mb": round2(peak_mb),
        }),
    );
    report.noise("big_ruleset_seconds", spread(&runs.seconds));
    report.noise("big_ruleset_peak_mb", spread(&runs.peak_mb));
    report.goal(
        "big_ruleset_seconds",
        GOAL_BIG_RULESET_SECONDS,
        seconds <= GOAL_BIG_RULESET_SECONDS,
    );
    report.goal(
        "big_ruleset_peak_mb",
        GOAL_BIG_RULESET_PEAK_MB,
        peak_mb <= GOAL_BIG_RULESET_PEAK_MB,
    );
    Ok(())
}

fn measure_big_ruleset(net: &mut BenchNet) -> anyhow::Result<BigRuleset> {
    net.lab_up()?;
    // An earlier bench stopped hard may have left its crowd.
    for index in 0..CROWD {
        delete_namespace(&format!("{CROWD_PREFIX}{index}"))?;
    }
    let _crowd = Network::crowd(CROWD_PREFIX, CROWD)?;
    iptables_restore(TARGET_NS, &busy_input_chain(BIG_RULES, DROPPING))?;
    let mut runs = BigRuleset {
        seconds: Vec::new(),
        peak_mb: Vec::new(),
    };
    for _ in 0..BIG_RULESET_RUNS {
        check_interrupted()?;
        let (seconds, peak_mb, report) = diagnose_with_peak()?;
        let rule = report["verdict"]["finding"]["location"]["rule"].as_str();
        if rule != Some(&format!("-A INPUT {DROPPING}")) {
            bail!("diagnose named {rule:?} on the busy node, not the dropping rule");
        }
        runs.seconds.push(seconds);
        runs.peak_mb.push(peak_mb);
    }
    Ok(runs)
}

/// `tracer diagnose --json` on the lab: (seconds spawn to exit, VmHWM MiB, report).
fn diagnose_with_peak() -> anyhow::Result<(f64, f64, Value)> {
    let mut command = Command::new(tracer_binary());
    command
        .args(["diagnose", "--json"])
        .args(port_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    eprintln!("+ {}", describe(&command));
    let start = Instant::now();
    let mut child = command.spawn().context("starting tracer diagnose")?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = stdout {
            let _ = std::io::Read::read_to_end(&mut pipe, &mut text);
        }
        text
    });
    let mut peak: f64 = 0.0;
    let seconds = loop {
        if child.try_wait()?.is_some() {
            break start.elapsed().as_secs_f64();
        }
        // Gone between the two looks: the last peak read stands.
        if let Ok((_, hwm)) = rss_mb(child.id()) {
            peak = peak.max(hwm);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = reader
        .join()
        .map_err(|_| anyhow!("the reader thread panicked"))?;
    let report = serde_json::from_slice(&text).context("diagnose printed no JSON")?;
    Ok((seconds, peak, report))
}
