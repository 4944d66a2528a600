//! What the bench measures: per-packet cost, attach time, memory, throughput, packet rate,
//! how soon a port is counted, and watch's idle CPU.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use serde_json::{Value, json};

use tracer_topology::Topology;

use super::*;
use crate::util::{describe, tracer_binary};

/// What watches both ports during a throughput run.
#[derive(Clone, Copy)]
pub(super) enum Watcher {
    Nothing,
    Tracer,
    Tcpdump,
    /// The run is the command of `tracer watch`, which also captures frames.
    Watch,
    /// `tracer-bench hold --hooks NAME`: a design alternative, for comparison.
    Hooks(&'static str),
}

/// Every throughput run of a round, in the order of the first round; the indices below name
/// the first five, the alternatives follow.
pub(super) const UNWATCHED: usize = 0;
pub(super) const TRACER: usize = 1;
pub(super) const TCPDUMP: usize = 2;
pub(super) const WATCH: usize = 3;
/// Empty programs on tracer's tc hooks: what any tc observer costs, the floor under the
/// monitor's and watch's ratios.
pub(super) const EMPTY_TC: usize = 4;
pub(super) const FIRST_ALTERNATIVE: usize = 5;
/// `tracer-bench hold --hooks` for [`EMPTY_TC`], in the throughput runs and the floods alike.
const EMPTY_TC_HOOKS: &str = "empty-tc";
pub(super) const WATCHERS: [Watcher; 9] = [
    Watcher::Nothing,
    Watcher::Tracer,
    Watcher::Tcpdump,
    Watcher::Watch,
    Watcher::Hooks(EMPTY_TC_HOOKS),
    Watcher::Hooks("empty"),
    Watcher::Hooks("xdp-generic"),
    Watcher::Hooks("tc-ingress"),
    // Where watch's cost lies: its kernel programs without it.
    Watcher::Hooks("capturing"),
];

impl Watcher {
    pub(super) fn name(self) -> String {
        match self {
            Self::Nothing => "none".to_owned(),
            Self::Tracer => "tracer".to_owned(),
            Self::Tcpdump => "tcpdump".to_owned(),
            Self::Watch => "watch".to_owned(),
            Self::Hooks(hooks) => hooks.replace('-', "_"),
        }
    }

    /// One iperf3 run with this watcher on both ports: Gbit/s.
    pub(super) fn throughput(self) -> anyhow::Result<f64> {
        let attached = match self {
            Self::Nothing => return iperf3_gbps(IPERF_SECONDS, Client::Alone),
            Self::Watch => return iperf3_gbps(IPERF_SECONDS, Client::UnderWatch),
            Self::Tcpdump => {
                let initiator = tcpdump(INITIATOR_NS, INITIATOR_IF)?;
                let target = tcpdump(TARGET_NS, TARGET_IF)?;
                let gbps = iperf3_gbps(IPERF_SECONDS, Client::Alone)?;
                initiator.interrupt()?;
                target.interrupt()?;
                return Ok(gbps);
            }
            Self::Tracer => Attached::start(tracer_command())?.0,
            Self::Hooks(hooks) => Attached::start(hold_command(hooks))?.0,
        };
        let gbps = iperf3_gbps(IPERF_SECONDS, Client::Alone)?;
        attached.stop()?;
        Ok(gbps)
    }
}

/// Gbit/s of each round, per watcher (in `WATCHERS` order).
pub(super) struct Throughput {
    pub(super) gbps: Vec<Vec<f64>>,
}

impl Throughput {
    /// Median over rounds of (watched ÷ unwatched). A round's runs are next to each other in
    /// time, so each ratio compares like with like.
    pub(super) fn ratio(&self, watcher: usize) -> f64 {
        median(&self.ratios(watcher))
    }

    /// Each round's (watched ÷ unwatched).
    pub(super) fn ratios(&self, watcher: usize) -> Vec<f64> {
        self.gbps[watcher]
            .iter()
            .zip(&self.gbps[UNWATCHED])
            .map(|(with, without)| with / without)
            .collect()
    }
}

/// Rounds of one run per watcher (the first `watchers` of `WATCHERS`), the order rotating
/// each round so that none of them always runs first.
pub(super) fn measure_throughput(watchers: usize) -> anyhow::Result<Throughput> {
    let mut throughput = Throughput {
        gbps: vec![Vec::new(); watchers],
    };
    let mut order: Vec<usize> = (0..watchers).collect();
    for _ in 0..THROUGHPUT_ROUNDS {
        for &watcher in &order {
            let gbps = WATCHERS[watcher].throughput()?;
            throughput.gbps[watcher].push(gbps);
        }
        order.rotate_left(1);
    }
    Ok(throughput)
}

/// Each run of [`measure_attach`].
pub(super) struct AttachRuns {
    pub(super) attach_ms: Vec<f64>,
    pub(super) detach_ms: Vec<f64>,
    /// VmHWM when the ready file appeared: the peak of attaching.
    pub(super) peak_mb: Vec<f64>,
}

/// Spawn to ready file, and Ctrl-C to exit, of the real `tracer ATTACHED_COMMAND`.
pub(super) fn measure_attach() -> anyhow::Result<AttachRuns> {
    let mut runs = AttachRuns {
        attach_ms: Vec::new(),
        detach_ms: Vec::new(),
        peak_mb: Vec::new(),
    };
    for _ in 0..ATTACH_RUNS {
        let (tracer, attach) = Attached::start(tracer_command())?;
        runs.attach_ms.push(millis(attach));
        let pid = tracer
            .pid()
            .ok_or_else(|| anyhow!("tracer is not running"))?;
        runs.peak_mb.push(rss_mb(pid)?.1);
        runs.detach_ms.push(millis(tracer.stop()?));
    }
    Ok(runs)
}

/// VmRSS and VmHWM (peak) of a process, in MiB.
pub(super) fn rss_mb(pid: u32) -> anyhow::Result<(f64, f64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .ok_or_else(|| anyhow!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The attached tracer's memory after `seconds` of TCP traffic and pings.
pub(super) fn measure_rss(seconds: u64) -> anyhow::Result<(f64, f64)> {
    let (tracer, _) = Attached::start(tracer_command())?;
    let pid = tracer
        .pid()
        .ok_or_else(|| anyhow!("tracer is not running"))?;
    let mut ping = in_netns(INITIATOR_NS, "ping");
    ping.args([
        "-q",
        "-i",
        &format!("{:.2}", 1.0 / RSS_PINGS_PER_SECOND as f64),
        "-c",
        &(seconds * RSS_PINGS_PER_SECOND).to_string(),
        TARGET_IP,
    ])
    .stdout(Stdio::null());
    eprintln!("+ {}", describe(&ping));
    let pings = Background {
        name: "ping",
        child: ping.spawn().context("starting ping")?,
        _stderr: None,
    };
    iperf3_gbps(seconds, Client::Alone)?;
    drop(pings);
    let memory = rss_mb(pid)?;
    tracer.stop()?;
    Ok(memory)
}

/// What watches both ports during a packet flood.
#[derive(Clone, Copy)]
pub(super) enum FloodWatcher {
    Nothing,
    Tracer,
    Tcpdump,
    Watch,
    EmptyTc,
}

/// In the order of `WATCHERS`' first five: the same indices.
pub(super) const FLOOD_WATCHERS: [FloodWatcher; 5] = [
    FloodWatcher::Nothing,
    FloodWatcher::Tracer,
    FloodWatcher::Tcpdump,
    FloodWatcher::Watch,
    FloodWatcher::EmptyTc,
];

/// Packets a second of one flood of small UDP packets from the initiator.
#[derive(Clone, Copy)]
pub(super) struct Flood {
    /// Frames that reached the target port (its rx_packets): what crossed both watched ports,
    /// through both of tracer's programs.
    pub(super) port_pps: f64,
    /// Delivered to the receiving socket: what iperf3's server could take of them.
    pub(super) received_pps: f64,
    /// Sent by iperf3.
    pub(super) sent_pps: f64,
}

/// The target port's received frames so far.
pub(super) fn target_rx_packets() -> anyhow::Result<f64> {
    let output = output_checked(
        in_netns(TARGET_NS, "cat").arg(format!("/sys/class/net/{TARGET_IF}/statistics/rx_packets")),
    )?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<f64>()
        .context("reading the target port's rx_packets")
}

/// `iperf3 -u -l 64 -b 0` from the initiator: as many small datagrams as it can send.
pub(super) fn udp_flood(client: Client) -> anyhow::Result<Flood> {
    let rx_before = target_rx_packets()?;
    let report = iperf3_client(
        &[
            "-u",
            "-l",
            PPS_PAYLOAD,
            "-b",
            "0",
            "-t",
            &IPERF_SECONDS.to_string(),
        ],
        client,
    )?;
    let rx = target_rx_packets()? - rx_before;
    let field = |sum: &str, key: &str| {
        report["end"][sum][key]
            .as_f64()
            .ok_or_else(|| anyhow!("iperf3's report has no end.{sum}.{key}"))
    };
    let seconds = field("sum_received", "seconds")?;
    Ok(Flood {
        // The port also received the control connection's few segments: noise below 0.1 %.
        port_pps: rx / field("sum_sent", "seconds")?,
        received_pps: (field("sum_received", "packets")? - field("sum_received", "lost_packets")?)
            / seconds,
        sent_pps: field("sum_sent", "packets")? / field("sum_sent", "seconds")?,
    })
}

impl FloodWatcher {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Nothing => "none",
            Self::Tracer => "tracer",
            Self::Tcpdump => "tcpdump",
            Self::Watch => "watch",
            Self::EmptyTc => "empty_tc",
        }
    }

    pub(super) fn flood(self) -> anyhow::Result<Flood> {
        match self {
            Self::Nothing => udp_flood(Client::Alone),
            Self::Watch => udp_flood(Client::UnderWatch),
            Self::Tracer => flood_beside(tracer_command()),
            Self::EmptyTc => flood_beside(hold_command(EMPTY_TC_HOOKS)),
            Self::Tcpdump => {
                let initiator = tcpdump(INITIATOR_NS, INITIATOR_IF)?;
                let target = tcpdump(TARGET_NS, TARGET_IF)?;
                let flood = udp_flood(Client::Alone)?;
                initiator.interrupt()?;
                target.interrupt()?;
                Ok(flood)
            }
        }
    }
}

/// One flood with `command` attached from its ready file until the flood is over.
fn flood_beside(command: Command) -> anyhow::Result<Flood> {
    let (attached, _) = Attached::start(command)?;
    let flood = udp_flood(Client::Alone)?;
    attached.stop()?;
    Ok(flood)
}

/// Rounds of one flood per watcher, the order rotating; per watcher, each round's flood.
pub(super) fn measure_pps() -> anyhow::Result<Vec<Vec<Flood>>> {
    let mut floods = vec![Vec::new(); FLOOD_WATCHERS.len()];
    let mut order: Vec<usize> = (0..FLOOD_WATCHERS.len()).collect();
    for _ in 0..PPS_ROUNDS {
        for &watcher in &order {
            floods[watcher].push(FLOOD_WATCHERS[watcher].flood()?);
        }
        order.rotate_left(1);
    }
    Ok(floods)
}

/// Each round's (watched ÷ unwatched) packets a second.
pub(super) fn pps_ratios(
    floods: &[Vec<Flood>],
    watcher: usize,
    pps: fn(&Flood) -> f64,
) -> Vec<f64> {
    floods[watcher]
        .iter()
        .zip(&floods[UNWATCHED])
        .map(|(with, without)| pps(with) / pps(without))
        .collect()
}

/// Median over rounds of (watched ÷ unwatched) packets a second.
pub(super) fn pps_ratio(floods: &[Vec<Flood>], watcher: usize, pps: fn(&Flood) -> f64) -> f64 {
    median(&pps_ratios(floods, watcher, pps))
}

/// The programs timed during the flood itself, as (name in the report, `tracer-bench hold`
/// hooks): empty ones on the tc hooks, the monitor's counting ones, and watch's, which
/// capture too. The empty ones come first: the others are reported over them.
pub(super) const IN_FLOOD_HOOKS: [(&str, &str); 3] = [
    ("empty_tc", EMPTY_TC_HOOKS),
    ("counting", "tc-ingress"),
    ("capturing", "capturing"),
];

/// Rounds of one flood with every one of [`IN_FLOOD_HOOKS`] attached at once (tcx chains
/// them, in an order rotating each round), the kernel timing each program: per hooks, each
/// round's ns per run. A datagram runs them all, in the same state of the machine, so their
/// differences are a few ns sharp where the floods' packet rates vary by a tenth. The clock
/// reads around each run are in every figure alike.
pub(super) fn measure_in_flood() -> anyhow::Result<Vec<Vec<f64>>> {
    let stats_file = |hooks: &str| {
        std::env::temp_dir().join(format!("tracer-bench-{}-{hooks}.stats", std::process::id()))
    };
    let mut ns_per_run = vec![Vec::new(); IN_FLOOD_HOOKS.len()];
    let mut order: Vec<usize> = (0..IN_FLOOD_HOOKS.len()).collect();
    for _ in 0..IN_FLOOD_ROUNDS {
        let mut held = Vec::new();
        for &index in &order {
            let (_, hooks) = IN_FLOOD_HOOKS[index];
            let mut command = hold_command(hooks);
            command.arg("--run-stats").arg(stats_file(hooks));
            held.push(Attached::start(command)?.0);
        }
        udp_flood(Client::Alone)?;
        for attached in held {
            attached.stop()?;
        }
        for (index, (_, hooks)) in IN_FLOOD_HOOKS.iter().enumerate() {
            let path = stats_file(hooks);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let _ = std::fs::remove_file(&path);
            let stats: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            ns_per_run[index].push(number(&stats, "run_time_ns")? / number(&stats, "runs")?);
        }
        order.rotate_left(1);
    }
    Ok(ns_per_run)
}

/// The monitor's metrics, as text (HTTP/1.0, one request).
pub(super) fn scrape(address: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Whether the monitor says the target port is counted.
pub(super) fn target_attached(exposition: &str) -> bool {
    exposition.lines().any(|line| {
        line.starts_with("tracer_port_attached{role=\"target\"") && line.ends_with(" 1")
    })
}

/// The monitor on the initiator and on a target port that does not exist yet; each run creates
/// the port (a veth end, its peer elsewhere) and times how long until the monitor counts it,
/// from when `ip link add` returns (the kernel has announced the port by then), then deletes
/// it again.
pub(super) fn measure_appears() -> anyhow::Result<Vec<f64>> {
    // Where the appearing port's peer goes; removed after the monitor stopped.
    let _elsewhere = Topology::namespaces(&[ELSEWHERE_NS]).build()?;
    let address = MONITOR_ARGS[1];
    let mut command = Command::new(tracer_binary());
    command
        .arg(ATTACHED_COMMAND)
        .args(["--initiator", &format!("{INITIATOR_NS}/{INITIATOR_IF}")])
        .args(["--target", &format!("{TARGET_NS}/{APPEARING_IF}")])
        .args(["--port", PORT])
        .args(MONITOR_ARGS);
    let (monitor, _) = Attached::start(command)?;
    let wait_for = |attached: bool| -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            check_interrupted()?;
            if target_attached(&scrape(address)?) == attached {
                return Ok(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the monitor did not see {APPEARING_IF} come or go within 10 s");
            }
            // Every 2 ms: faster polling keeps the monitor busy answering scrapes.
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut runs = Vec::new();
    for _ in 0..APPEAR_RUNS {
        std::thread::sleep(Duration::from_millis(300));
        output_checked(Command::new("ip").args([
            "link",
            "add",
            APPEARING_IF,
            "netns",
            TARGET_NS,
            "type",
            "veth",
            "peer",
            "name",
            "cvl_9_1",
            "netns",
            ELSEWHERE_NS,
        ]))?;
        runs.push(millis(wait_for(true)?));
        output_checked(Command::new("ip").args(["-n", TARGET_NS, "link", "del", APPEARING_IF]))?;
        wait_for(false)?;
    }
    monitor.stop()?;
    Ok(runs)
}

/// CPU time of every thread of a process, in nanoseconds (schedstat's first field).
pub(super) fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// `tracer watch -- sleep`: the share of one core tracer takes while the command does nothing
/// on the ports, over `WATCH_IDLE_SECONDS` after it is ready, in percent; one value per run.
pub(super) fn measure_watch_idle() -> anyhow::Result<Vec<f64>> {
    let report = std::env::temp_dir().join(format!("tracer-bench-{}-watch", std::process::id()));
    let mut runs = Vec::new();
    for _ in 0..WATCH_IDLE_RUNS {
        let _ = std::fs::remove_dir_all(&report);
        let mut command = Command::new(tracer_binary());
        command
            .arg("watch")
            .args(port_args())
            .arg("--report")
            .arg(&report)
            .arg("--ready-file")
            .arg(ready_file())
            .args(["--", "sleep", &(WATCH_IDLE_SECONDS + 3).to_string()]);
        let (watch, _) = Attached::start_with_ready_file(command)?;
        let pid = watch
            .pid()
            .ok_or_else(|| anyhow!("tracer is not running"))?;
        std::thread::sleep(Duration::from_secs(1));
        let (cpu_before, start) = (cpu_ns(pid)?, Instant::now());
        std::thread::sleep(Duration::from_secs(WATCH_IDLE_SECONDS));
        let cpu = cpu_ns(pid)? - cpu_before;
        runs.push(100.0 * cpu as f64 / start.elapsed().as_nanos() as f64);
        watch.wait()?;
    }
    let _ = std::fs::remove_dir_all(&report);
    Ok(runs)
}

pub(super) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_default();
    let memory_mb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb / 1024);
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "cores": std::thread::available_parallelism().map(usize::from).ok(),
        "cpu": cpu,
        "memory_mb": memory_mb,
        "kernel": read("/proc/sys/kernel/osrelease"),
        // Other work on the machine moves the throughput numbers most.
        "load_average_at_start": read("/proc/loadavg").split_whitespace().next().unwrap_or_default(),
    })
}

/// `tracer-bench test-run`: the per-packet costs, as JSON.
pub(super) fn measure_test_run() -> anyhow::Result<Value> {
    let mut command = Command::new(tracer_bench_binary());
    command.arg("test-run");
    eprintln!("+ {}", describe(&command));
    let output = output_checked(&mut command)?;
    serde_json::from_slice(&output.stdout).context("reading tracer-bench's JSON")
}

/// `tracer-bench attach` on the lab: attach and detach timed inside the process.
pub(super) fn measure_attach_internal() -> anyhow::Result<Value> {
    let mut command = Command::new(tracer_bench_binary());
    command
        .arg("attach")
        .args(port_specs())
        .args(["--runs", &ATTACH_RUNS.to_string()]);
    eprintln!("+ {}", describe(&command));
    let output = output_checked(&mut command)?;
    serde_json::from_slice(&output.stdout).context("reading tracer-bench's JSON")
}
