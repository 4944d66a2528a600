//! `cargo xtask bench`: the numbers that make tracer safe to leave on.
//!
//! What it costs per packet (BPF_PROG_TEST_RUN through `tracer-bench`), how long attaching and
//! detaching take and how much memory that needs, how much TCP throughput and how many small
//! UDP packets a second it leaves (next to tcpdump), how soon a port that appears is counted,
//! how much CPU `tracer watch` takes while the command is idle, how fast `tracer diagnose`
//! reaches each verdict, and how much memory the monitor holds after traffic. Every timing is
//! repeated and reported with its spread (min, median, max): the machine is shared.
//!
//! Network safety: every packet stays inside namespaces the bench creates (`tbench_*`), between
//! addresses of 10.0.0.0/24 on a veth pair; the namespaces are removed at the end, on failure
//! and on Ctrl-C too.
//!
//! By job: `harness` runs the lab's processes (tracer, iperf3, tcpdump) and cleans up after
//! them, `measures` times and counts, `faults` builds the faults diagnose is timed on,
//! `stats` summarises repeated runs, `table` prints the report for the terminal; this file
//! holds the goals and assembles the report.

mod busy;
mod faults;
mod harness;
mod measures;
mod stats;
mod table;

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

use self::{busy::*, faults::*, harness::*, measures::*, stats::*, table::table};

const INITIATOR_NS: &str = "tbench_i";
const TARGET_NS: &str = "tbench_t";
/// Where the miscabled faults put the ports' peers.
const ELSEWHERE_NS: &str = "tbench_x";
const INITIATOR_IF: &str = "cvl_0_1";
const TARGET_IF: &str = "cvl_0_0";
const TARGET_IP: &str = "10.0.0.2";
/// An address in the lab's subnet that no interface owns.
const UNOWNED_IP: &str = "10.0.0.3";
const PORT: &str = "4420";

/// The tracer command left attached while traffic flows: the one meant to stay on.
const ATTACHED_COMMAND: &str = "monitor";
/// Where the attached monitor serves and pins: its own, so a real monitor is not disturbed.
const MONITOR_ARGS: [&str; 5] = [
    "--metrics-addr",
    "127.0.0.1:19463",
    "--pin-dir",
    "/sys/fs/bpf/tracer-bench",
    "--reset",
];

/// Runs of each timing; medians are reported, with min and max.
const ATTACH_RUNS: usize = 7;
const APPEAR_RUNS: usize = 7;
const THROUGHPUT_ROUNDS: usize = 9;
const PPS_ROUNDS: usize = 15;
const VERDICT_RUNS: usize = 3;
const BIG_RULESET_RUNS: usize = 5;
const WATCH_IDLE_RUNS: usize = 3;
/// Seconds of each idle-CPU measurement, after `tracer watch` is ready.
const WATCH_IDLE_SECONDS: u64 = 10;
const IPERF_SECONDS: u64 = 3;
/// UDP payload of the packet flood: 106-byte frames with UDP, IPv4 and Ethernet headers.
const PPS_PAYLOAD: &str = "64";
/// Pings a second during the RSS run, so that ICMP, ARP and drop counting see traffic too.
const RSS_PINGS_PER_SECOND: u64 = 5;
/// The port that appears while the monitor runs, in the target's namespace, its veth peer in
/// `ELSEWHERE_NS`.
const APPEARING_IF: &str = "cvl_9_0";

/// The goals of issue 16 (performance, second round).
const GOAL_ADDED_NS: f64 = 10.0;
const GOAL_ATTACH_MS: f64 = 60.0;
const GOAL_RSS_PEAK_MB: f64 = 25.0;
const GOAL_RSS_MB: f64 = 15.0;
const GOAL_WATCH_IDLE_CPU_PERCENT: f64 = 0.2;
const GOAL_APPEARS_COUNTED_MS: f64 = 20.0;
const GOAL_VERDICT_SECONDS: f64 = 1.0;
const GOAL_PPS_RATIO: f64 = 0.95;
/// The goals of issue 25 on a busy node (`busy`): a verdict within 2 s, in 100 MB.
const GOAL_BIG_RULESET_SECONDS: f64 = 2.0;
const GOAL_BIG_RULESET_PEAK_MB: f64 = 100.0;
/// Kept from issue 6.
const GOAL_THROUGHPUT_RATIO: f64 = 0.97;

/// The faults `tracer diagnose` is timed on, as tests/tests/diagnose.rs builds them, with the
/// verdict class each should get.
const FAULTS: &[(&str, &str)] = &[
    ("healthy", "ok"),
    ("nothing_listening", "ok"),
    ("unplugged", "cable"),
    ("cabled_elsewhere", "cable"),
    ("target_down", "interface"),
    ("netfilter_icmp", "netfilter"),
    ("netfilter_tcp", "netfilter"),
    ("netfilter_arp", "netfilter"),
    ("address_nobody_owns", "neighbour"),
    ("no_route", "route"),
];

pub fn run(json_path: Option<&Path>, rss_seconds: u64) -> anyhow::Result<()> {
    catch_interrupt();
    let machine = machine();

    let test_run = measure_test_run()?;
    let xdp = number(&test_run, "xdp_ns_per_packet")?;
    let tc = number(&test_run, "tc_ns_per_packet")?;
    let baseline_xdp = number(&test_run, "baseline_xdp_ns_per_packet")?;
    let baseline_tc = number(&test_run, "baseline_tc_ns_per_packet")?;
    check_interrupted()?;

    let mut net = BenchNet::new()?;
    net.lab_up()?;
    let attach_runs = measure_attach()?;
    let internal = measure_attach_internal()?;
    let attach_internal = numbers(&internal, "attach_ms")?;
    let detach_internal = numbers(&internal, "detach_ms")?;
    let attach_loaded_port = numbers(&internal, "attach_loaded_port_ms")?;
    let appears = measure_appears()?;
    unpin()?;
    let watch_idle = measure_watch_idle()?;

    let server = iperf3_server()?;
    let throughput = measure_throughput()?;
    let floods = measure_pps()?;
    let (rss, rss_peak) = measure_rss(rss_seconds)?;
    drop(server);
    unpin()?;

    let verdicts = measure_verdicts(&mut net)?;
    let big_ruleset = measure_big_ruleset(&mut net)?;
    drop(net);
    let big_ruleset_seconds = median(&big_ruleset.seconds);
    let big_ruleset_peak = median(&big_ruleset.peak_mb);
    // diagnose with BIG_RULES iptables rules where it drops and CROWD other namespaces.
    let big_ruleset_report = json!({
        "rules": BIG_RULES,
        "namespaces": CROWD,
        "seconds": round3(big_ruleset_seconds),
        "peak_mb": round2(big_ruleset_peak),
    });

    let attach = median(&attach_runs.attach_ms);
    let detach = median(&attach_runs.detach_ms);
    let attach_peak = attach_runs.peak_mb.iter().copied().fold(0.0, f64::max);
    let appears_ms = median(&appears);
    let watch_idle_cpu = median(&watch_idle);
    let ratio_tracer = throughput.ratio(TRACER);
    let ratio_tcpdump = throughput.ratio(TCPDUMP);
    let at_port = |flood: &Flood| flood.port_pps;
    let received = |flood: &Flood| flood.received_pps;
    let sent = |flood: &Flood| flood.sent_pps;
    let pps_ratio_tracer = pps_ratio(&floods, 1, at_port);
    let pps_ratio_tcpdump = pps_ratio(&floods, 2, at_port);
    let gbps: serde_json::Map<String, Value> = WATCHERS
        .iter()
        .zip(&throughput.gbps)
        .map(|(watcher, runs)| {
            (
                watcher.name(),
                json!(runs.iter().copied().map(round2).collect::<Vec<_>>()),
            )
        })
        .collect();
    let pps_runs = |pps: fn(&Flood) -> f64| -> serde_json::Map<String, Value> {
        FLOOD_WATCHERS
            .iter()
            .zip(&floods)
            .map(|(watcher, runs)| {
                (
                    watcher.name().to_owned(),
                    json!(
                        runs.iter()
                            .map(|flood| pps(flood).round())
                            .collect::<Vec<_>>()
                    ),
                )
            })
            .collect()
    };
    let ratio_alternatives: serde_json::Map<String, Value> = WATCHERS
        .iter()
        .enumerate()
        .skip(FIRST_ALTERNATIVE)
        .map(|(index, watcher)| (watcher.name(), json!(round2(throughput.ratio(index)))))
        .collect();
    let verdict_seconds: serde_json::Map<String, Value> = verdicts
        .iter()
        .map(|verdict| {
            (
                verdict.fault.to_owned(),
                json!(round3(median(&verdict.seconds))),
            )
        })
        .collect();
    let verdict_spread: serde_json::Map<String, Value> = verdicts
        .iter()
        .map(|verdict| (verdict.fault.to_owned(), spread(&verdict.seconds)))
        .collect();
    let verdict_classes: serde_json::Map<String, Value> = verdicts
        .iter()
        .map(|verdict| (verdict.fault.to_owned(), json!(verdict.class)))
        .collect();
    let wrong_verdicts: Vec<&str> = verdicts
        .iter()
        .filter(|verdict| {
            FAULTS
                .iter()
                .any(|(name, expected)| *name == verdict.fault && *expected != verdict.class)
        })
        .map(|verdict| verdict.fault)
        .collect();
    let slowest_verdict = verdicts
        .iter()
        .map(|verdict| median(&verdict.seconds))
        .fold(0.0, f64::max);
    let ratios = |watcher: usize, pps: fn(&Flood) -> f64| -> Vec<f64> {
        floods[watcher]
            .iter()
            .zip(&floods[0])
            .map(|(with, without)| pps(with) / pps(without))
            .collect()
    };

    // Every repeated measurement's min, median and max: the machine is shared.
    let noise = json!({
        "attach_ms": spread(&attach_runs.attach_ms),
        "detach_ms": spread(&attach_runs.detach_ms),
        "attach_ms_internal": spread(&attach_internal),
        "detach_ms_internal": spread(&detach_internal),
        "rss_peak_attach_mb": spread(&attach_runs.peak_mb),
        "port_appears_counted_ms": spread(&appears),
        "port_attach_loaded_ms": spread(&attach_loaded_port),
        "watch_idle_cpu_percent": spread(&watch_idle),
        "throughput_ratio_tracer": spread(&throughput.ratios(TRACER)),
        "throughput_ratio_tcpdump": spread(&throughput.ratios(TCPDUMP)),
        "pps_ratio_tracer": spread(&ratios(1, at_port)),
        "pps_ratio_tcpdump": spread(&ratios(2, at_port)),
        "pps_received_ratio_tracer": spread(&ratios(1, received)),
        "verdict_seconds": verdict_spread,
        "big_ruleset_seconds": spread(&big_ruleset.seconds),
        "big_ruleset_peak_mb": spread(&big_ruleset.peak_mb),
    });
    let goals = json!({
        "added_ns_per_packet": GOAL_ADDED_NS,
        "attach_ms": GOAL_ATTACH_MS,
        "rss_peak_mb": GOAL_RSS_PEAK_MB,
        "rss_mb": GOAL_RSS_MB,
        "watch_idle_cpu_percent": GOAL_WATCH_IDLE_CPU_PERCENT,
        "port_appears_counted_ms": GOAL_APPEARS_COUNTED_MS,
        "slowest_verdict_seconds": GOAL_VERDICT_SECONDS,
        "pps_ratio_tracer": GOAL_PPS_RATIO,
        "throughput_ratio_tracer": GOAL_THROUGHPUT_RATIO,
        "big_ruleset_seconds": GOAL_BIG_RULESET_SECONDS,
        "big_ruleset_peak_mb": GOAL_BIG_RULESET_PEAK_MB,
    });
    let goals_met = json!({
        "xdp_added_ns_per_packet": xdp - baseline_xdp <= GOAL_ADDED_NS,
        "tc_added_ns_per_packet": tc - baseline_tc <= GOAL_ADDED_NS,
        "attach_ms": attach <= GOAL_ATTACH_MS,
        "rss_peak_mb": rss_peak.max(attach_peak) <= GOAL_RSS_PEAK_MB,
        "rss_mb": rss <= GOAL_RSS_MB,
        "watch_idle_cpu_percent": watch_idle_cpu <= GOAL_WATCH_IDLE_CPU_PERCENT,
        "port_appears_counted_ms": appears_ms <= GOAL_APPEARS_COUNTED_MS,
        "slowest_verdict_seconds": slowest_verdict <= GOAL_VERDICT_SECONDS && wrong_verdicts.is_empty(),
        "pps_ratio_tracer": pps_ratio_tracer >= GOAL_PPS_RATIO,
        "throughput_ratio_tracer": ratio_tracer >= GOAL_THROUGHPUT_RATIO,
        "big_ruleset_seconds": big_ruleset_seconds <= GOAL_BIG_RULESET_SECONDS,
        "big_ruleset_peak_mb": big_ruleset_peak <= GOAL_BIG_RULESET_PEAK_MB,
    });
    let report = json!({
        "machine": machine,
        "xdp_ns_per_packet": xdp,
        "tc_ns_per_packet": tc,
        "baseline_xdp_ns_per_packet": baseline_xdp,
        "baseline_tc_ns_per_packet": baseline_tc,
        "xdp_added_ns_per_packet": round2(xdp - baseline_xdp),
        "tc_added_ns_per_packet": round2(tc - baseline_tc),
        "test_run": test_run,
        "attach_ms": round2(attach),
        "detach_ms": round2(detach),
        "attach_ms_internal": round2(median(&attach_internal)),
        "detach_ms_internal": round2(median(&detach_internal)),
        "attached_command": format!("tracer {ATTACHED_COMMAND}"),
        "rss_peak_attach_mb": round2(attach_peak),
        "port_appears_counted_ms": round2(appears_ms),
        // Its floor: one port's tc attachments alone, its programs loaded ahead.
        "port_attach_loaded_ms": round2(median(&attach_loaded_port)),
        "watch_idle_cpu_percent": round3(watch_idle_cpu),
        "throughput_ratio_tracer": round2(ratio_tracer),
        "throughput_ratio_tcpdump": round2(ratio_tcpdump),
        // The same ratio for other ways of hooking the ports (tracer-bench hold).
        "throughput_ratio_alternatives": ratio_alternatives,
        "throughput_gbps": gbps,
        "pps_ratio_tracer": round3(pps_ratio_tracer),
        "pps_ratio_tcpdump": round3(pps_ratio_tcpdump),
        "pps_received_ratio_tracer": round3(pps_ratio(&floods, 1, received)),
        "pps_received_ratio_tcpdump": round3(pps_ratio(&floods, 2, received)),
        "pps_sent_ratio_tracer": round3(pps_ratio(&floods, 1, sent)),
        "pps_sent_ratio_tcpdump": round3(pps_ratio(&floods, 2, sent)),
        "pps_payload_bytes": PPS_PAYLOAD.parse::<u32>().unwrap_or(0),
        "pps_at_target_port": pps_runs(at_port),
        "pps_received": pps_runs(received),
        "pps_sent": pps_runs(sent),
        "verdict_seconds": verdict_seconds,
        "slowest_verdict_seconds": round3(slowest_verdict),
        "verdict_classes": verdict_classes,
        "wrong_verdicts": wrong_verdicts,
        "rss_mb": round2(rss),
        "rss_peak_mb": round2(rss_peak),
        "rss_seconds": rss_seconds,
        "big_ruleset": big_ruleset_report,
        "noise": noise,
        "goals": goals,
        "goals_met": goals_met,
    });
    print!("{}", table(&report, &verdicts));
    if let Some(path) = json_path {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
