//! Many ports and long runs: two pairs of SPDK's virtual layout (four ports) attached, spawn to
//! ready file; and `tracer watch`'s peak memory over a long run of link, neighbour and rule
//! churn next to a short one. Rounds alternate, so that the machine's other work falls on both.

use std::{path::Path, process::Command};

use anyhow::{anyhow, bail};
use serde_json::{Value, json};
use tracer_topology::{
    Network, Topology,
    churn::{Churn, NEIGHBOURS_PER_ROUND, read_churned},
    delete_namespace,
    lab::Lab,
    layouts::{LayoutLab, LayoutName, Scope},
};

use super::*;
use crate::util::{describe, tracer_binary};

/// The stand-in host of the virtual layout, and the churned lab's namespaces: names of their
/// own, so that these measures never disturb the rest of the bench's lab.
const LAYOUT_ROOT: &str = "tbench_h";
const CHURN_INITIATOR_NS: &str = "tbench_ci";
const CHURN_TARGET_NS: &str = "tbench_ct";
const TWO_PAIRS_RUNS: usize = 7;
pub(super) const GOAL_TWO_PAIRS_ATTACH_MS: f64 = 100.0;
const LONG_RUN_ROUNDS: usize = 3;
const SHORT_RUN_SECONDS: u64 = 2;
const LONG_RUN_SECONDS: u64 = 60;
/// Neighbour entries the churn adds: past the timeline's cap of a kind.
const CHURN_NEIGHBOURS: usize = 1500;
/// The long run's peak may exceed the short run's by this much and still be flat.
pub(super) const GOAL_LONG_RUN_GROWTH_MB: f64 = 8.0;

/// `tracer ATTACHED_COMMAND` on the two pairs of the virtual layout, spawn to ready file, ms.
pub(super) fn measure_two_pairs_attach() -> anyhow::Result<Vec<f64>> {
    let lab = LayoutLab::new(LayoutName::Virt, Scope::new(LAYOUT_ROOT));
    let _network = fresh(&lab.topology())?;
    let mut runs = Vec::new();
    for _ in 0..TWO_PAIRS_RUNS {
        let mut command = Command::new(tracer_binary());
        command
            .arg(ATTACHED_COMMAND)
            .args([
                "--layout",
                LayoutName::Virt.as_str(),
                "--netns-root",
                LAYOUT_ROOT,
            ])
            .args(MONITOR_ARGS);
        let (tracer, attach) = Attached::start(command)?;
        runs.push(millis(attach));
        tracer.stop()?;
        unpin()?;
    }
    Ok(runs)
}

/// `topology` built, after removing what an earlier bench left of it; removed when the guard
/// drops, on failure too.
fn fresh(topology: &Topology) -> anyhow::Result<Network> {
    for netns in topology.all_namespaces() {
        delete_namespace(&netns)?;
    }
    Ok(topology.build()?)
}

/// One watch around the churn for `seconds` on the churned lab: its peak memory, MiB, and what
/// the churn did.
fn watched_churn(seconds: u64, neighbours: usize) -> anyhow::Result<(f64, [u64; 3])> {
    let scratch = std::env::temp_dir().join(format!("tracer-bench-churn-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let (counts, peak) = (scratch.join("counts"), scratch.join("peak"));
    let churn = Churn {
        initiator: (CHURN_INITIATOR_NS.to_owned(), INITIATOR_IF.to_owned()),
        target: (CHURN_TARGET_NS.to_owned(), TARGET_IF.to_owned()),
        seconds,
        neighbours,
    };
    let script = churn.script(
        counts.to_str().context("temporary directory")?,
        peak.to_str().context("temporary directory")?,
    );
    let mut command = Command::new(tracer_binary());
    command
        .arg("watch")
        .args([
            "--initiator",
            &format!("{CHURN_INITIATOR_NS}/{INITIATOR_IF}"),
            "--target",
            &format!("{CHURN_TARGET_NS}/{TARGET_IF}"),
        ])
        .arg("--report")
        .arg(scratch.join("report"))
        .args(["--", "sh", "-c", &script]);
    eprintln!("+ tracer watch ... -- sh -c CHURN ({seconds} s)");
    let output = command
        .output()
        .with_context(|| format!("starting `{}`", describe(&command)))?;
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let churned = read_churned(&read(&counts), &read(&peak));
    let _ = std::fs::remove_dir_all(&scratch);
    let Some((did, peak_kb)) = churned else {
        bail!(
            "the churn under watch wrote no counts ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    };
    Ok((peak_kb as f64 / 1024.0, did))
}

/// Peak memory of short and long churning watches, MiB, rounds alternating which runs first;
/// and the long runs' (flaps, neighbours, rules).
pub(super) struct LongRuns {
    pub(super) short_mb: Vec<f64>,
    pub(super) long_mb: Vec<f64>,
    pub(super) long_churn: Vec<[u64; 3]>,
}

pub(super) fn measure_long_run() -> anyhow::Result<LongRuns> {
    let lab = Lab::new(
        (CHURN_INITIATOR_NS, INITIATOR_IF),
        (CHURN_TARGET_NS, TARGET_IF),
    )
    .topology();
    let mut runs = LongRuns {
        short_mb: Vec::new(),
        long_mb: Vec::new(),
        long_churn: Vec::new(),
    };
    for round in 0..LONG_RUN_ROUNDS {
        let mut order = [SHORT_RUN_SECONDS, LONG_RUN_SECONDS];
        if round % 2 == 1 {
            order.reverse();
        }
        for seconds in order {
            check_interrupted()?;
            // A fresh lab each run: the churn's neighbour entries are its own.
            let network = fresh(&lab)?;
            // The short run adds one round's neighbour entries, the long run all of them.
            let neighbours = if seconds == LONG_RUN_SECONDS {
                CHURN_NEIGHBOURS
            } else {
                NEIGHBOURS_PER_ROUND
            };
            let (peak, did) = watched_churn(seconds, neighbours)?;
            drop(network);
            if seconds == LONG_RUN_SECONDS {
                runs.long_mb.push(peak);
                runs.long_churn.push(did);
            } else {
                runs.short_mb.push(peak);
            }
        }
    }
    Ok(runs)
}

/// The load on the machine now: /proc/loadavg's three averages.
fn load() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Two pairs attached and the long run's memory, into the report with their spread, their goals
/// and the load before and after (these measures take minutes; the machine may be shared).
pub(super) fn long_runs(report: &mut Report) -> anyhow::Result<()> {
    let load_before = load();
    let two_pairs = measure_two_pairs_attach()?;
    let long = measure_long_run()?;
    let growth = median(&long.long_mb) - median(&long.short_mb);
    let two_pairs_ms = median(&two_pairs);
    let churn = long
        .long_churn
        .first()
        .ok_or_else(|| anyhow!("no long run"))?;
    report.value("two_pairs_attach_ms", json!(round2(two_pairs_ms)));
    report.noise("two_pairs_attach_ms", spread(&two_pairs));
    report.goal(
        "two_pairs_attach_ms",
        GOAL_TWO_PAIRS_ATTACH_MS,
        two_pairs_ms <= GOAL_TWO_PAIRS_ATTACH_MS,
    );
    report.value("long_run_peak_mb", json!(round2(median(&long.long_mb))));
    report.noise("long_run_peak_mb", spread(&long.long_mb));
    report.value("short_run_peak_mb", json!(round2(median(&long.short_mb))));
    report.noise("short_run_peak_mb", spread(&long.short_mb));
    report.value("long_run_growth_mb", json!(round2(growth)));
    report.goal(
        "long_run_growth_mb",
        GOAL_LONG_RUN_GROWTH_MB,
        growth <= GOAL_LONG_RUN_GROWTH_MB,
    );
    report.value("long_run_seconds", json!(LONG_RUN_SECONDS));
    report.value("short_run_seconds", json!(SHORT_RUN_SECONDS));
    report.value(
        "long_run_churn",
        json!({ "flaps": churn[0], "neighbours": churn[1], "rules": churn[2] }),
    );
    report.value(
        "long_run_load",
        json!({ "before": load_before, "after": load() }),
    );
    Ok(())
}
