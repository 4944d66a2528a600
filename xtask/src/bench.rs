//! `cargo xtask bench`: the numbers that make tracer safe to leave on.
//!
//! What it costs per packet (BPF_PROG_TEST_RUN through `tracer-bench`), how long attaching and
//! detaching take, how much TCP throughput it leaves (next to tcpdump), how fast `tracer
//! diagnose` reaches each verdict, and how much memory it holds after traffic.
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

/// Runs of each timing; medians are reported.
const ATTACH_RUNS: usize = 7;
const THROUGHPUT_ROUNDS: usize = 7;
const VERDICT_RUNS: usize = 3;
const IPERF_SECONDS: u64 = 3;
/// Pings a second during the RSS run, so that ICMP, ARP and drop counting see traffic too.
const RSS_PINGS_PER_SECOND: u64 = 5;

/// The goals of issue 6.
const GOAL_ADDED_NS: f64 = 15.0;
const GOAL_ATTACH_MS: f64 = 150.0;
const GOAL_THROUGHPUT_RATIO: f64 = 0.97;
const GOAL_VERDICT_SECONDS: f64 = 5.0;
const GOAL_VERDICT_SECONDS_FAST: f64 = 2.0;
const GOAL_RSS_MB: f64 = 30.0;

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
        let ready = std::env::temp_dir().join(format!("tracer-bench-{}.ready", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        command
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
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
        let ratios: Vec<f64> = self.gbps[watcher]
            .iter()
            .zip(&self.gbps[UNWATCHED])
            .map(|(with, without)| with / without)
            .collect();
        median(&ratios)
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

/// Spawn to ready file, and Ctrl-C to exit, of the real `tracer ATTACHED_COMMAND`.
fn measure_attach() -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut attach_ms = Vec::new();
    let mut detach_ms = Vec::new();
    for _ in 0..ATTACH_RUNS {
        let (tracer, attach) = Attached::start(tracer_command())?;
        attach_ms.push(millis(attach));
        detach_ms.push(millis(tracer.stop()?));
    }
    Ok((attach_ms, detach_ms))
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

/// Median seconds and the verdict class (the last run's) of each fault.
fn measure_verdicts(net: &BenchNet) -> anyhow::Result<Vec<(&'static str, f64, String)>> {
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
        results.push((*fault, median(&seconds), class));
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
    let (attach_runs, detach_runs) = measure_attach()?;
    let internal = measure_attach_internal()?;
    let attach_internal = median(&numbers(&internal, "attach_ms")?);
    let detach_internal = median(&numbers(&internal, "detach_ms")?);

    let server = iperf3_server()?;
    let throughput = measure_throughput()?;
    let (rss, rss_peak) = measure_rss(rss_seconds)?;
    drop(server);
    unpin()?;

    let verdicts = measure_verdicts(&net)?;
    drop(net);

    let attach = median(&attach_runs);
    let detach = median(&detach_runs);
    let ratio_tracer = throughput.ratio(TRACER);
    let ratio_tcpdump = throughput.ratio(TCPDUMP);
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
    let ratio_alternatives: serde_json::Map<String, Value> = WATCHERS
        .iter()
        .enumerate()
        .skip(FIRST_ALTERNATIVE)
        .map(|(index, watcher)| (watcher.name(), json!(round2(throughput.ratio(index)))))
        .collect();
    let verdict_seconds: serde_json::Map<String, Value> = verdicts
        .iter()
        .map(|(fault, seconds, _)| ((*fault).to_owned(), json!(round3(*seconds))))
        .collect();
    let verdict_classes: serde_json::Map<String, Value> = verdicts
        .iter()
        .map(|(fault, _, class)| ((*fault).to_owned(), json!(class)))
        .collect();
    let wrong_verdicts: Vec<&str> = verdicts
        .iter()
        .filter(|(fault, _, class)| {
            FAULTS
                .iter()
                .any(|(name, expected)| name == fault && expected != class)
        })
        .map(|(fault, _, _)| *fault)
        .collect();
    let slowest_verdict = verdicts
        .iter()
        .map(|(_, seconds, _)| *seconds)
        .fold(0.0, f64::max);

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
        "attach_ms_internal": round2(attach_internal),
        "detach_ms_internal": round2(detach_internal),
        "attached_command": format!("tracer {ATTACHED_COMMAND}"),
        "throughput_ratio_tracer": round2(ratio_tracer),
        "throughput_ratio_tcpdump": round2(ratio_tcpdump),
        // The same ratio for other ways of hooking the ports (tracer-bench hold).
        "throughput_ratio_alternatives": ratio_alternatives,
        "throughput_gbps": gbps,
        "verdict_seconds": verdict_seconds,
        "verdict_classes": verdict_classes,
        "wrong_verdicts": wrong_verdicts,
        "rss_mb": round2(rss),
        "rss_peak_mb": round2(rss_peak),
        "rss_seconds": rss_seconds,
        "goals": {
            "added_ns_per_packet": GOAL_ADDED_NS,
            "attach_ms": GOAL_ATTACH_MS,
            "throughput_ratio_tracer": GOAL_THROUGHPUT_RATIO,
            "verdict_seconds": GOAL_VERDICT_SECONDS,
            "verdict_seconds_where_the_kernel_allows": GOAL_VERDICT_SECONDS_FAST,
            "rss_mb": GOAL_RSS_MB,
        },
        "goals_met": {
            "xdp_added_ns_per_packet": xdp - baseline_xdp <= GOAL_ADDED_NS,
            "tc_added_ns_per_packet": tc - baseline_tc <= GOAL_ADDED_NS,
            "attach_ms": attach <= GOAL_ATTACH_MS,
            "throughput_ratio_tracer": ratio_tracer >= GOAL_THROUGHPUT_RATIO,
            "verdict_seconds": slowest_verdict <= GOAL_VERDICT_SECONDS && wrong_verdicts.is_empty(),
            "rss_mb": rss <= GOAL_RSS_MB,
        },
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
fn table(report: &Value, verdicts: &[(&str, f64, String)]) -> String {
    let value = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    let met = |key: &str| report["goals_met"][key].as_bool().unwrap_or(false);
    let machine = &report["machine"];
    let mut rows: Vec<(String, String, String, String)> = vec![
        (
            "XDP ns/packet: counting | empty".to_owned(),
            format!(
                "{:.1} | {:.1}",
                value("xdp_ns_per_packet"),
                value("baseline_xdp_ns_per_packet")
            ),
            String::new(),
            String::new(),
        ),
        (
            "XDP ns/packet added by counting".to_owned(),
            format!("{:.1}", value("xdp_added_ns_per_packet")),
            format!("<= {GOAL_ADDED_NS}"),
            mark(met("xdp_added_ns_per_packet")).to_owned(),
        ),
        (
            "tc ns/packet: counting | empty".to_owned(),
            format!(
                "{:.1} | {:.1}",
                value("tc_ns_per_packet"),
                value("baseline_tc_ns_per_packet")
            ),
            String::new(),
            String::new(),
        ),
        (
            "tc ns/packet added by counting".to_owned(),
            format!("{:.1}", value("tc_added_ns_per_packet")),
            format!("<= {GOAL_ADDED_NS}"),
            mark(met("tc_added_ns_per_packet")).to_owned(),
        ),
        (
            "attach ms (spawn to ready file)".to_owned(),
            format!("{:.1}", value("attach_ms")),
            format!("<= {GOAL_ATTACH_MS}"),
            mark(met("attach_ms")).to_owned(),
        ),
        (
            "detach ms (SIGINT to exit)".to_owned(),
            format!("{:.1}", value("detach_ms")),
            String::new(),
            String::new(),
        ),
        (
            "attach | detach ms inside tracer".to_owned(),
            format!(
                "{:.1} | {:.1}",
                value("attach_ms_internal"),
                value("detach_ms_internal")
            ),
            String::new(),
            String::new(),
        ),
        (
            "throughput ratio, tracer".to_owned(),
            format!("{:.3}", value("throughput_ratio_tracer")),
            format!(">= {GOAL_THROUGHPUT_RATIO}"),
            mark(met("throughput_ratio_tracer")).to_owned(),
        ),
        (
            "throughput ratio, tcpdump".to_owned(),
            format!("{:.3}", value("throughput_ratio_tcpdump")),
            "(reference)".to_owned(),
            String::new(),
        ),
    ];
    if let Some(alternatives) = report["throughput_ratio_alternatives"].as_object() {
        for (hooks, ratio) in alternatives {
            rows.push((
                format!("throughput ratio, {hooks} (tracer-bench hold)"),
                format!("{:.3}", ratio.as_f64().unwrap_or(f64::NAN)),
                "(comparison)".to_owned(),
                String::new(),
            ));
        }
    }
    rows.push((
        format!("RSS MiB after {} s of traffic", report["rss_seconds"]),
        format!("{:.1}", value("rss_mb")),
        format!("<= {GOAL_RSS_MB}"),
        mark(met("rss_mb")).to_owned(),
    ));
    for (fault, seconds, class) in verdicts {
        let expected = FAULTS
            .iter()
            .find(|(name, _)| name == fault)
            .map_or("", |(_, expected)| *expected);
        let verdict = if class == expected {
            class.clone()
        } else {
            format!("{class}, expected {expected}")
        };
        rows.push((
            format!("diagnose s: {fault} ({verdict})"),
            format!("{seconds:.3}"),
            format!("<= {GOAL_VERDICT_SECONDS}"),
            mark(*seconds <= GOAL_VERDICT_SECONDS && class == expected).to_owned(),
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
        "{:<48} {:>13} {:>13} {:>7}\n",
        "measure", "value", "goal", "met"
    );
    for (measure, value, goal, met) in rows {
        text += &format!("{measure:<48} {value:>13} {goal:>13} {met:>7}\n");
    }
    text
}
