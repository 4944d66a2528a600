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

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::util::{describe, run_checked, tracer_binary, workspace_root};

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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C reaches the children too (they end their runs); the bench then stops at the next
/// check and its guards remove the namespaces.
fn catch_interrupt() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
}

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn tracer_bench_binary() -> PathBuf {
    workspace_root().join("target/release/tracer-bench")
}

/// `--initiator` and `--target` of the bench's lab.
fn port_specs() -> Vec<String> {
    vec![
        "--initiator".to_owned(),
        format!("{INITIATOR_NS}/{INITIATOR_IF}"),
        "--target".to_owned(),
        format!("{TARGET_NS}/{TARGET_IF}"),
    ]
}

/// The port specs and the TCP port, as tracer's commands take them.
fn port_args() -> Vec<String> {
    let mut args = port_specs();
    args.extend(["--port".to_owned(), PORT.to_owned()]);
    args
}

/// A command run inside namespace `netns`.
fn in_netns(netns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns, program]);
    command
}

/// Runs a command without echoing it and returns its output; fails unless it succeeds.
fn output_checked(command: &mut Command) -> anyhow::Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("starting `{}`", describe(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A repeated measurement's spread: what a shared machine does to it.
fn spread(values: &[f64]) -> Value {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({
        "min": round3(min),
        "median": round3(median(values)),
        "max": round3(max),
        "runs": values.len(),
    })
}

/// The bench's namespaces. Created clean; removed on drop, on failure too.
struct BenchNet {
    // Namespace work is tied to the creating thread's view; keep the guard on it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl BenchNet {
    fn new() -> anyhow::Result<Self> {
        let net = Self {
            _not_send: std::marker::PhantomData,
        };
        net.remove()?;
        Ok(net)
    }

    /// (Re)builds the lab: `tracer lab up` removes an earlier one first.
    fn lab_up(&self) -> anyhow::Result<()> {
        self.remove()?;
        run_checked(
            Command::new(tracer_binary())
                .args(["lab", "up"])
                .args(port_args()),
        )
    }

    fn remove(&self) -> anyhow::Result<()> {
        output_checked(
            Command::new(tracer_binary())
                .args(["lab", "down"])
                .args(port_args()),
        )?;
        if Path::new("/var/run/netns").join(ELSEWHERE_NS).exists() {
            output_checked(Command::new("ip").args(["netns", "del", ELSEWHERE_NS]))?;
        }
        Ok(())
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        // Never panic here: this runs while an error unwinds the bench too.
        match self.remove() {
            Ok(()) => eprintln!("bench: namespaces removed"),
            Err(err) => eprintln!("bench: removing the bench's namespaces failed: {err:#}"),
        }
    }
}

/// A process attached to the lab's ports (tracer, or `tracer-bench hold`); killed on drop if
/// it still runs.
struct Attached {
    child: Option<Child>,
    ready: PathBuf,
}

/// The ready file of the bench's attached processes (one at a time).
fn ready_file() -> PathBuf {
    std::env::temp_dir().join(format!("tracer-bench-{}.ready", std::process::id()))
}

/// `tracer ATTACHED_COMMAND` on the lab's ports.
fn tracer_command() -> Command {
    let mut command = Command::new(tracer_binary());
    command
        .arg(ATTACHED_COMMAND)
        .args(port_args())
        .args(MONITOR_ARGS);
    command
}

/// Removes what the attached monitor pinned.
fn unpin() -> anyhow::Result<()> {
    run_checked(
        Command::new(tracer_binary())
            .args(["monitor", "--unpin"])
            .args(&MONITOR_ARGS[2..4]),
    )
}

/// `tracer-bench hold`: the lab's ports watched through other hooks, for comparison.
fn hold_command(hooks: &str) -> Command {
    let mut command = Command::new(tracer_bench_binary());
    command
        .arg("hold")
        .args(port_specs())
        .args(["--hooks", hooks]);
    command
}

impl Attached {
    /// Starts `command` with a ready file and waits until every program is attached; returns
    /// it with the time from spawn to the ready file.
    fn start(mut command: Command) -> anyhow::Result<(Self, Duration)> {
        command.arg("--ready-file").arg(ready_file());
        Self::start_with_ready_file(command)
    }

    /// [`Self::start`] for a command given [`ready_file`] already (where it must come before
    /// other arguments).
    fn start_with_ready_file(mut command: Command) -> anyhow::Result<(Self, Duration)> {
        let ready = ready_file();
        let _ = std::fs::remove_file(&ready);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let start = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting `{}`", describe(&command)))?;
        let mut attached = Self {
            child: Some(child),
            ready,
        };
        attached
            .wait_ready()
            .with_context(|| format!("`{}`", describe(&command)))?;
        Ok((attached, start.elapsed()))
    }

    fn child(&mut self) -> anyhow::Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| anyhow!("already stopped"))
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready.exists() {
            check_interrupted()?;
            let child = self.child()?;
            if let Some(status) = child.try_wait()? {
                let stderr = read_all(child.stderr.take());
                bail!("exited before it was ready ({status}): {stderr}");
            }
            if Instant::now() > deadline {
                bail!("not attached within 30 s");
            }
            // Fine enough for attach times of tens of milliseconds.
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for it to exit by itself; fails unless it succeeded.
    fn wait(mut self) -> anyhow::Result<()> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("already stopped"))?;
        let status = child.wait().context("waiting for the attached process")?;
        if !status.success() {
            let stderr = read_all(child.stderr.take());
            bail!("failed ({status}): {stderr}");
        }
        Ok(())
    }

    /// Ctrl-C, as a user stops it; returns the time until it exited.
    fn stop(mut self) -> anyhow::Result<Duration> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("already stopped"))?;
        let start = Instant::now();
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().context("waiting for the attached process")?;
        let elapsed = start.elapsed();
        if !status.success() {
            let stderr = read_all(child.stderr.take());
            bail!("failed when stopped ({status}): {stderr}");
        }
        Ok(elapsed)
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.ready);
    }
}

fn read_all(pipe: Option<ChildStderr>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
    }
    text.trim().to_owned()
}

/// A process run for the bench (iperf3 server, tcpdump, ping); killed on drop if it still
/// runs.
struct Background {
    name: &'static str,
    child: Child,
    /// Kept open so that what it writes at exit does not meet a closed pipe.
    _stderr: Option<BufReader<ChildStderr>>,
}

impl Background {
    /// Ends it with SIGINT, which makes tcpdump flush and exit cleanly.
    fn interrupt(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.name))?;
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `iperf3 -s` on the target's address, up and listening.
fn iperf3_server() -> anyhow::Result<Background> {
    let mut command = in_netns(TARGET_NS, "iperf3");
    command
        .args(["-s", "-B", TARGET_IP])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    eprintln!("+ {}", describe(&command));
    let server = Background {
        name: "iperf3 -s",
        child: command
            .spawn()
            .context("starting iperf3 (`cargo xtask setup` installs it)")?,
        _stderr: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        check_interrupted()?;
        let listening = output_checked(in_netns(TARGET_NS, "ss").args(["-Hltn", "sport = :5201"]))?;
        if !listening.stdout.is_empty() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("iperf3 server not listening within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An iperf3 client run from the initiator: received throughput in Gbit/s.
fn iperf3_gbps(seconds: u64) -> anyhow::Result<f64> {
    check_interrupted()?;
    let mut command = in_netns(INITIATOR_NS, "iperf3");
    command.args(["-c", TARGET_IP, "-t", &seconds.to_string(), "--json"]);
    eprintln!("+ {}", describe(&command));
    let output = output_checked(&mut command)?;
    let report: Value =
        serde_json::from_slice(&output.stdout).context("reading iperf3's JSON report")?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bits| bits / 1e9)
        .ok_or_else(|| anyhow!("iperf3's report has no end.sum_received.bits_per_second"))
}

/// tcpdump capturing everything on one lab port (written to /dev/null), once it listens.
fn tcpdump(netns: &str, interface: &str) -> anyhow::Result<Background> {
    let mut command = in_netns(netns, "tcpdump");
    command
        .args(["-i", interface, "-n", "-w", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("+ {}", describe(&command));
    let mut child = command.spawn().context("starting tcpdump")?;
    let mut stderr = BufReader::new(
        child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("tcpdump's stderr is not piped"))?,
    );
    let mut capture = Background {
        name: "tcpdump",
        child,
        _stderr: None,
    };
    // tcpdump says "listening on IF" once its capture is open.
    let mut line = String::new();
    stderr
        .read_line(&mut line)
        .context("reading tcpdump's output")?;
    if !line.contains("listening on") {
        bail!("tcpdump did not start capturing: {}", line.trim());
    }
    capture._stderr = Some(stderr);
    Ok(capture)
}

/// What watches both ports during a throughput run.
#[derive(Clone, Copy)]
enum Watcher {
    Nothing,
    Tracer,
    Tcpdump,
    /// `tracer-bench hold --hooks NAME`: a design alternative, for comparison.
    Hooks(&'static str),
}

/// Every throughput run of a round, in the order of the first round; the indices below name
/// the first three, the alternatives follow.
const UNWATCHED: usize = 0;
const TRACER: usize = 1;
const TCPDUMP: usize = 2;
const FIRST_ALTERNATIVE: usize = 3;
const WATCHERS: [Watcher; 6] = [
    Watcher::Nothing,
    Watcher::Tracer,
    Watcher::Tcpdump,
    Watcher::Hooks("empty"),
    Watcher::Hooks("xdp-generic"),
    Watcher::Hooks("tc-ingress"),
];

impl Watcher {
    fn name(self) -> String {
        match self {
            Self::Nothing => "none".to_owned(),
            Self::Tracer => "tracer".to_owned(),
            Self::Tcpdump => "tcpdump".to_owned(),
            Self::Hooks(hooks) => hooks.replace('-', "_"),
        }
    }

    /// One iperf3 run with this watcher on both ports: Gbit/s.
    fn throughput(self) -> anyhow::Result<f64> {
        let attached = match self {
            Self::Nothing => return iperf3_gbps(IPERF_SECONDS),
            Self::Tcpdump => {
                let initiator = tcpdump(INITIATOR_NS, INITIATOR_IF)?;
                let target = tcpdump(TARGET_NS, TARGET_IF)?;
                let gbps = iperf3_gbps(IPERF_SECONDS)?;
                initiator.interrupt()?;
                target.interrupt()?;
                return Ok(gbps);
            }
            Self::Tracer => Attached::start(tracer_command())?.0,
            Self::Hooks(hooks) => Attached::start(hold_command(hooks))?.0,
        };
        let gbps = iperf3_gbps(IPERF_SECONDS)?;
        attached.stop()?;
        Ok(gbps)
    }
}

/// Gbit/s of each round, per watcher (in `WATCHERS` order).
struct Throughput {
    gbps: Vec<Vec<f64>>,
}

impl Throughput {
    /// Median over rounds of (watched ÷ unwatched). A round's runs are next to each other in
    /// time, so each ratio compares like with like.
    fn ratio(&self, watcher: usize) -> f64 {
        median(&self.ratios(watcher))
    }

    /// Each round's (watched ÷ unwatched).
    fn ratios(&self, watcher: usize) -> Vec<f64> {
        self.gbps[watcher]
            .iter()
            .zip(&self.gbps[UNWATCHED])
            .map(|(with, without)| with / without)
            .collect()
    }
}

/// Rounds of one run per watcher, the order rotating each round so that none of them always
/// runs first.
fn measure_throughput() -> anyhow::Result<Throughput> {
    let mut throughput = Throughput {
        gbps: vec![Vec::new(); WATCHERS.len()],
    };
    let mut order: Vec<usize> = (0..WATCHERS.len()).collect();
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
struct AttachRuns {
    attach_ms: Vec<f64>,
    detach_ms: Vec<f64>,
    /// VmHWM when the ready file appeared: the peak of attaching.
    peak_mb: Vec<f64>,
}

/// Spawn to ready file, and Ctrl-C to exit, of the real `tracer ATTACHED_COMMAND`.
fn measure_attach() -> anyhow::Result<AttachRuns> {
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
fn rss_mb(pid: u32) -> anyhow::Result<(f64, f64)> {
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
fn measure_rss(seconds: u64) -> anyhow::Result<(f64, f64)> {
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
    iperf3_gbps(seconds)?;
    drop(pings);
    let memory = rss_mb(pid)?;
    tracer.stop()?;
    Ok(memory)
}

/// What watches both ports during a packet flood.
#[derive(Clone, Copy)]
enum FloodWatcher {
    Nothing,
    Tracer,
    Tcpdump,
}

const FLOOD_WATCHERS: [FloodWatcher; 3] = [
    FloodWatcher::Nothing,
    FloodWatcher::Tracer,
    FloodWatcher::Tcpdump,
];

/// Packets a second of one flood of small UDP packets from the initiator.
#[derive(Clone, Copy)]
struct Flood {
    /// Frames that reached the target port (its rx_packets): what crossed both watched ports,
    /// through both of tracer's programs.
    port_pps: f64,
    /// Delivered to the receiving socket: what iperf3's server could take of them.
    received_pps: f64,
    /// Sent by iperf3.
    sent_pps: f64,
}

/// The target port's received frames so far.
fn target_rx_packets() -> anyhow::Result<f64> {
    let output = output_checked(
        in_netns(TARGET_NS, "cat").arg(format!("/sys/class/net/{TARGET_IF}/statistics/rx_packets")),
    )?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse::<f64>()
        .context("reading the target port's rx_packets")
}

/// `iperf3 -u -l 64 -b 0` from the initiator: as many small datagrams as it can send.
fn udp_flood() -> anyhow::Result<Flood> {
    check_interrupted()?;
    let mut command = in_netns(INITIATOR_NS, "iperf3");
    command.args([
        "-c",
        TARGET_IP,
        "-u",
        "-l",
        PPS_PAYLOAD,
        "-b",
        "0",
        "-t",
        &IPERF_SECONDS.to_string(),
        "--json",
    ]);
    eprintln!("+ {}", describe(&command));
    let rx_before = target_rx_packets()?;
    let output = output_checked(&mut command)?;
    let rx = target_rx_packets()? - rx_before;
    let report: Value =
        serde_json::from_slice(&output.stdout).context("reading iperf3's JSON report")?;
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
    fn name(self) -> &'static str {
        match self {
            Self::Nothing => "none",
            Self::Tracer => "tracer",
            Self::Tcpdump => "tcpdump",
        }
    }

    fn flood(self) -> anyhow::Result<Flood> {
        match self {
            Self::Nothing => udp_flood(),
            Self::Tracer => {
                let (attached, _) = Attached::start(tracer_command())?;
                let flood = udp_flood()?;
                attached.stop()?;
                Ok(flood)
            }
            Self::Tcpdump => {
                let initiator = tcpdump(INITIATOR_NS, INITIATOR_IF)?;
                let target = tcpdump(TARGET_NS, TARGET_IF)?;
                let flood = udp_flood()?;
                initiator.interrupt()?;
                target.interrupt()?;
                Ok(flood)
            }
        }
    }
}

/// Rounds of one flood per watcher, the order rotating; per watcher, each round's flood.
fn measure_pps() -> anyhow::Result<Vec<Vec<Flood>>> {
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

/// Median over rounds of (watched ÷ unwatched) packets a second.
fn pps_ratio(floods: &[Vec<Flood>], watcher: usize, pps: fn(&Flood) -> f64) -> f64 {
    let ratios: Vec<f64> = floods[watcher]
        .iter()
        .zip(&floods[0])
        .map(|(with, without)| pps(with) / pps(without))
        .collect();
    median(&ratios)
}

/// The monitor's metrics, as text (HTTP/1.0, one request).
fn scrape(address: &str) -> anyhow::Result<String> {
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
fn target_attached(exposition: &str) -> bool {
    exposition.lines().any(|line| {
        line.starts_with("tracer_port_attached{role=\"target\"") && line.ends_with(" 1")
    })
}

/// The monitor on the initiator and on a target port that does not exist yet; each run creates
/// the port (a veth end, its peer elsewhere) and times how long until the monitor counts it,
/// from when `ip link add` returns (the kernel has announced the port by then), then deletes
/// it again.
fn measure_appears() -> anyhow::Result<Vec<f64>> {
    if !Path::new("/var/run/netns").join(ELSEWHERE_NS).exists() {
        output_checked(Command::new("ip").args(["netns", "add", ELSEWHERE_NS]))?;
    }
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
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
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
fn measure_watch_idle() -> anyhow::Result<Vec<f64>> {
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

/// A fault in place, and what diagnose needs beside the port arguments.
struct FaultSetup {
    extra_args: Vec<&'static str>,
    /// Held open for the duration: something listens on the port.
    _listener: Option<TcpListener>,
}

impl FaultSetup {
    fn plain() -> Self {
        Self {
            extra_args: Vec::new(),
            _listener: None,
        }
    }
}

/// A TCP listener bound inside namespace `netns`; the socket stays there afterwards.
fn listen_in_netns(netns: &str, address: SocketAddr) -> anyhow::Result<TcpListener> {
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
fn miscabled(net: &BenchNet, peers_up: bool) -> anyhow::Result<()> {
    net.remove()?;
    for netns in [INITIATOR_NS, TARGET_NS, ELSEWHERE_NS] {
        output_checked(Command::new("ip").args(["netns", "add", netns]))?;
    }
    for (netns, port, peer, address) in [
        (INITIATOR_NS, INITIATOR_IF, "peer1", "10.0.0.1/24"),
        (TARGET_NS, TARGET_IF, "peer0", "10.0.0.2/24"),
    ] {
        run_checked(Command::new("ip").args([
            "link",
            "add",
            port,
            "netns",
            netns,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            ELSEWHERE_NS,
        ]))?;
        run_checked(Command::new("ip").args(["-n", netns, "addr", "add", address, "dev", port]))?;
        run_checked(Command::new("ip").args(["-n", netns, "link", "set", port, "up"]))?;
        if peers_up {
            run_checked(Command::new("ip").args(["-n", ELSEWHERE_NS, "link", "set", peer, "up"]))?;
        }
    }
    Ok(())
}

fn build_fault(net: &BenchNet, fault: &str) -> anyhow::Result<FaultSetup> {
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
fn time_diagnose(setup: &FaultSetup) -> anyhow::Result<(f64, String)> {
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
struct Verdicts {
    fault: &'static str,
    /// Spawn to exit, each run.
    seconds: Vec<f64>,
    /// The verdict class of the last run.
    class: String,
}

/// Every run of diagnose on each fault.
fn measure_verdicts(net: &BenchNet) -> anyhow::Result<Vec<Verdicts>> {
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

fn machine() -> Value {
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
fn measure_test_run() -> anyhow::Result<Value> {
    let mut command = Command::new(tracer_bench_binary());
    command.arg("test-run");
    eprintln!("+ {}", describe(&command));
    let output = output_checked(&mut command)?;
    serde_json::from_slice(&output.stdout).context("reading tracer-bench's JSON")
}

/// `tracer-bench attach` on the lab: attach and detach timed inside the process.
fn measure_attach_internal() -> anyhow::Result<Value> {
    let mut command = Command::new(tracer_bench_binary());
    command
        .arg("attach")
        .args(port_specs())
        .args(["--runs", &ATTACH_RUNS.to_string()]);
    eprintln!("+ {}", describe(&command));
    let output = output_checked(&mut command)?;
    serde_json::from_slice(&output.stdout).context("reading tracer-bench's JSON")
}

fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .ok_or_else(|| anyhow!("no number `{key}` in {value}"))
}

fn numbers(value: &Value, key: &str) -> anyhow::Result<Vec<f64>> {
    value[key]
        .as_array()
        .ok_or_else(|| anyhow!("no array `{key}` in {value}"))?
        .iter()
        .map(|item| item.as_f64().ok_or_else(|| anyhow!("`{key}` holds {item}")))
        .collect()
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

pub fn run(json_path: Option<&Path>, rss_seconds: u64) -> anyhow::Result<()> {
    catch_interrupt();
    let machine = machine();

    let test_run = measure_test_run()?;
    let xdp = number(&test_run, "xdp_ns_per_packet")?;
    let tc = number(&test_run, "tc_ns_per_packet")?;
    let baseline_xdp = number(&test_run, "baseline_xdp_ns_per_packet")?;
    let baseline_tc = number(&test_run, "baseline_tc_ns_per_packet")?;
    check_interrupted()?;

    let net = BenchNet::new()?;
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

    let verdicts = measure_verdicts(&net)?;
    drop(net);

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

fn mark(met: bool) -> &'static str {
    if met { "yes" } else { "MISSED" }
}

/// The report as a plain table for the terminal.
fn table(report: &Value, verdicts: &[Verdicts]) -> String {
    let value = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    let met = |key: &str| report["goals_met"][key].as_bool().unwrap_or(false);
    let noise = |key: &str| {
        let spread = &report["noise"][key];
        format!(
            "{:.3}..{:.3}",
            spread["min"].as_f64().unwrap_or(f64::NAN),
            spread["max"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let machine = &report["machine"];
    let row = |measure: &str, value: String, goal: String, met: &str, noise: String| {
        (measure.to_owned(), value, goal, met.to_owned(), noise)
    };
    let mut rows: Vec<(String, String, String, String, String)> = vec![
        row(
            "XDP ns/packet: counting | empty",
            format!(
                "{:.1} | {:.1}",
                value("xdp_ns_per_packet"),
                value("baseline_xdp_ns_per_packet")
            ),
            String::new(),
            "",
            String::new(),
        ),
        row(
            "XDP ns/packet added by counting",
            format!("{:.1}", value("xdp_added_ns_per_packet")),
            format!("<= {GOAL_ADDED_NS}"),
            mark(met("xdp_added_ns_per_packet")),
            String::new(),
        ),
        row(
            "tc ns/packet: counting | empty",
            format!(
                "{:.1} | {:.1}",
                value("tc_ns_per_packet"),
                value("baseline_tc_ns_per_packet")
            ),
            String::new(),
            "",
            String::new(),
        ),
        row(
            "tc ns/packet added by counting",
            format!("{:.1}", value("tc_added_ns_per_packet")),
            format!("<= {GOAL_ADDED_NS}"),
            mark(met("tc_added_ns_per_packet")),
            String::new(),
        ),
        row(
            "attach ms (spawn to ready file)",
            format!("{:.1}", value("attach_ms")),
            format!("<= {GOAL_ATTACH_MS}"),
            mark(met("attach_ms")),
            noise("attach_ms"),
        ),
        row(
            "detach ms (SIGINT to exit)",
            format!("{:.1}", value("detach_ms")),
            String::new(),
            "",
            noise("detach_ms"),
        ),
        row(
            "attach | detach ms inside tracer",
            format!(
                "{:.1} | {:.1}",
                value("attach_ms_internal"),
                value("detach_ms_internal")
            ),
            String::new(),
            "",
            String::new(),
        ),
        row(
            "VmHWM MiB at ready | after traffic",
            format!(
                "{:.1} | {:.1}",
                value("rss_peak_attach_mb"),
                value("rss_peak_mb")
            ),
            format!("<= {GOAL_RSS_PEAK_MB}"),
            mark(met("rss_peak_mb")),
            noise("rss_peak_attach_mb"),
        ),
        row(
            &format!("RSS MiB after {} s of traffic", report["rss_seconds"]),
            format!("{:.1}", value("rss_mb")),
            format!("<= {GOAL_RSS_MB}"),
            mark(met("rss_mb")),
            String::new(),
        ),
        row(
            "port appears -> counted, ms",
            format!("{:.1}", value("port_appears_counted_ms")),
            format!("<= {GOAL_APPEARS_COUNTED_MS}"),
            mark(met("port_appears_counted_ms")),
            noise("port_appears_counted_ms"),
        ),
        row(
            "  of which attaching the loaded programs",
            format!("{:.1}", value("port_attach_loaded_ms")),
            String::new(),
            "",
            noise("port_attach_loaded_ms"),
        ),
        row(
            "watch CPU % of a core, command idle",
            format!("{:.3}", value("watch_idle_cpu_percent")),
            format!("<= {GOAL_WATCH_IDLE_CPU_PERCENT}"),
            mark(met("watch_idle_cpu_percent")),
            noise("watch_idle_cpu_percent"),
        ),
        row(
            "throughput ratio, tracer",
            format!("{:.3}", value("throughput_ratio_tracer")),
            format!(">= {GOAL_THROUGHPUT_RATIO}"),
            mark(met("throughput_ratio_tracer")),
            noise("throughput_ratio_tracer"),
        ),
        row(
            "throughput ratio, tcpdump",
            format!("{:.3}", value("throughput_ratio_tcpdump")),
            "(reference)".to_owned(),
            "",
            noise("throughput_ratio_tcpdump"),
        ),
        row(
            "UDP 64-byte pps ratio, tracer",
            format!("{:.3}", value("pps_ratio_tracer")),
            format!(">= {GOAL_PPS_RATIO}"),
            mark(met("pps_ratio_tracer")),
            noise("pps_ratio_tracer"),
        ),
        row(
            "UDP 64-byte pps ratio, tcpdump",
            format!("{:.3}", value("pps_ratio_tcpdump")),
            "(reference)".to_owned(),
            "",
            noise("pps_ratio_tcpdump"),
        ),
    ];
    if let Some(alternatives) = report["throughput_ratio_alternatives"].as_object() {
        for (hooks, ratio) in alternatives {
            rows.push(row(
                &format!("throughput ratio, {hooks} (tracer-bench hold)"),
                format!("{:.3}", ratio.as_f64().unwrap_or(f64::NAN)),
                "(comparison)".to_owned(),
                "",
                String::new(),
            ));
        }
    }
    for verdict in verdicts {
        let expected = FAULTS
            .iter()
            .find(|(name, _)| *name == verdict.fault)
            .map_or("", |(_, expected)| *expected);
        let class = if verdict.class == expected {
            verdict.class.clone()
        } else {
            format!("{}, expected {expected}", verdict.class)
        };
        let seconds = median(&verdict.seconds);
        rows.push(row(
            &format!("diagnose s: {} ({class})", verdict.fault),
            format!("{seconds:.3}"),
            format!("<= {GOAL_VERDICT_SECONDS}"),
            mark(seconds <= GOAL_VERDICT_SECONDS && verdict.class == expected),
            format!(
                "{:.3}..{:.3}",
                verdict
                    .seconds
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min),
                verdict.seconds.iter().copied().fold(0.0, f64::max)
            ),
        ));
    }
    let mut text = format!(
        "\ntracer bench on {} cores ({}), {} MiB, kernel {}, load {} at start\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_mb"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["load_average_at_start"].as_str().unwrap_or("?"),
    );
    text += &format!(
        "{:<44} {:>13} {:>10} {:>7} {:>16}\n",
        "measure", "value", "goal", "met", "min..max"
    );
    for (measure, value, goal, met, noise) in rows {
        text += &format!("{measure:<44} {value:>13} {goal:>10} {met:>7} {noise:>16}\n");
    }
    text
}
