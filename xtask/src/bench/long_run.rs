//! Issue 25's measures: two pairs of SPDK's virtual layout (four ports) attached, spawn to
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
const GOAL_TWO_PAIRS_ATTACH_MS: f64 = 100.0;
const LONG_RUN_ROUNDS: usize = 3;
const SHORT_RUN_SECONDS: u64 = 2;
const LONG_RUN_SECONDS: u64 = 60;
/// Neighbour entries the churn adds: past the timeline's cap of a kind.
const CHURN_NEIGHBOURS: usize = 1500;
/// The long run's peak may exceed the short run's by this much and still be flat.
const GOAL_LONG_RUN_GROWTH_MB: f64 = 8.0;

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
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
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

/// Issue 25's measures as the report's fields (added to the bench's JSON), each with its
/// spread, its goal and whether it was met, and the load before and after.
pub(super) fn issue25_measures() -> anyhow::Result<serde_json::Map<String, Value>> {
    let load_before = load();
    let two_pairs = measure_two_pairs_attach()?;
    let long = measure_long_run()?;
    let growth = median(&long.long_mb) - median(&long.short_mb);
    let two_pairs_ms = median(&two_pairs);
    let churn = long
        .long_churn
        .first()
        .ok_or_else(|| anyhow!("no long run"))?;
    let fields = json!({
        "two_pairs_attach_ms": round2(two_pairs_ms),
        "two_pairs_attach_ms_spread": spread(&two_pairs),
        "long_run_peak_mb": round2(median(&long.long_mb)),
        "long_run_peak_mb_spread": spread(&long.long_mb),
        "short_run_peak_mb": round2(median(&long.short_mb)),
        "short_run_peak_mb_spread": spread(&long.short_mb),
        "long_run_growth_mb": round2(growth),
        "long_run_seconds": LONG_RUN_SECONDS,
        "long_run_churn": {
            "flaps": churn[0],
            "neighbours": churn[1],
            "rules": churn[2],
        },
        "issue25_goals": {
            "two_pairs_attach_ms": GOAL_TWO_PAIRS_ATTACH_MS,
            "long_run_growth_mb": GOAL_LONG_RUN_GROWTH_MB,
        },
        "issue25_goals_met": {
            "two_pairs_attach_ms": two_pairs_ms <= GOAL_TWO_PAIRS_ATTACH_MS,
            "long_run_growth_mb": growth <= GOAL_LONG_RUN_GROWTH_MB,
        },
        "issue25_load": { "before": load_before, "after": load() },
    });
    match fields {
        Value::Object(map) => Ok(map),
        _ => unreachable!("a JSON object"),
    }
}

/// Issue 25's measures added to the bench's report.
pub(super) fn add_issue25_measures(report: &mut Value) -> anyhow::Result<()> {
    let fields = issue25_measures()?;
    if let Value::Object(map) = report {
        map.extend(fields);
    }
    Ok(())
}

/// Issue 25's lines of the terminal report.
pub(super) fn issue25_table(report: &Value) -> String {
    let spread = |key: &str| {
        let s = &report[format!("{key}_spread")];
        format!("{}..{} ({} runs)", s["min"], s["max"], s["runs"])
    };
    let met = |key: &str| match report["issue25_goals_met"][key].as_bool() {
        Some(true) => "yes",
        _ => "NO",
    };
    format!(
        "\nIssue 25 (load {} before, {} after):\n  two pairs (four ports, virt layout) attached, spawn to ready file: {} ms, {}; goal <= {} ms: {}\n  watch peak memory (VmHWM) under churn: {} MiB after {} s, {} MiB after {} s, {}; growth {} MiB; goal <= {} MiB: {}\n  the long run's churn: {} flaps, {} neighbour entries, {} rules\n",
        report["issue25_load"]["before"],
        report["issue25_load"]["after"],
        report["two_pairs_attach_ms"],
        spread("two_pairs_attach_ms"),
        GOAL_TWO_PAIRS_ATTACH_MS,
        met("two_pairs_attach_ms"),
        report["long_run_peak_mb"],
        LONG_RUN_SECONDS,
        report["short_run_peak_mb"],
        SHORT_RUN_SECONDS,
        spread("long_run_peak_mb"),
        report["long_run_growth_mb"],
        GOAL_LONG_RUN_GROWTH_MB,
        met("long_run_growth_mb"),
        report["long_run_churn"]["flaps"],
        report["long_run_churn"]["neighbours"],
        report["long_run_churn"]["rules"],
    )
}

/// `cargo xtask bench --issue25-only`: these measures alone, printed and written as JSON.
pub fn run_alone(json_path: Option<&Path>) -> anyhow::Result<()> {
    catch_interrupt();
    let mut report = json!({ "machine": machine() });
    add_issue25_measures(&mut report)?;
    print!("{}", issue25_table(&report));
    if let Some(path) = json_path {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
