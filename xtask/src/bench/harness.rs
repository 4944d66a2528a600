//! The bench's processes and namespaces: started, waited for, and always cleaned up.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use serde_json::Value;

use tracer_topology::{Network, Topology, delete_namespace, lab::Lab};

use super::*;
use crate::util::{describe, run_checked, tracer_binary, workspace_root};

pub(super) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C reaches the children too (they end their runs); the bench then stops at the next
/// check and its guards remove the namespaces.
pub(super) fn catch_interrupt() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
}

pub(super) fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub(super) fn tracer_bench_binary() -> PathBuf {
    workspace_root().join("target/release/tracer-bench")
}

/// `--initiator` and `--target` of the bench's lab.
pub(super) fn port_specs() -> Vec<String> {
    vec![
        "--initiator".to_owned(),
        format!("{INITIATOR_NS}/{INITIATOR_IF}"),
        "--target".to_owned(),
        format!("{TARGET_NS}/{TARGET_IF}"),
    ]
}

/// The port specs and the TCP port, as tracer's commands take them.
pub(super) fn port_args() -> Vec<String> {
    let mut args = port_specs();
    args.extend(["--tcp-port".to_owned(), PORT.to_owned()]);
    args
}

/// A command run inside namespace `netns`.
pub(super) fn in_netns(netns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns, program]);
    command
}

/// Runs a command without echoing it and returns its output; fails unless it succeeds.
pub(super) fn output_checked(command: &mut Command) -> anyhow::Result<Output> {
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

/// The bench's network: the lab, or a fault's ports, one at a time. Leftovers of an earlier
/// bench (its own names) are removed first; the guard removes what is built, on failure too.
pub(super) struct BenchNet {
    network: Option<Network>,
}

impl BenchNet {
    pub(super) fn new() -> anyhow::Result<Self> {
        for netns in [INITIATOR_NS, TARGET_NS, ELSEWHERE_NS] {
            delete_namespace(netns)?;
        }
        Ok(Self { network: None })
    }

    /// (Re)builds the lab, as `tracer lab up` makes it under the bench's names.
    pub(super) fn lab_up(&mut self) -> anyhow::Result<()> {
        self.rebuild(&Lab::new((INITIATOR_NS, INITIATOR_IF), (TARGET_NS, TARGET_IF)).topology())
    }

    /// Removes what was built, then builds `topology`.
    pub(super) fn rebuild(&mut self, topology: &Topology) -> anyhow::Result<()> {
        self.network = None;
        self.network = Some(topology.build()?);
        Ok(())
    }
}

/// A process attached to the lab's ports (tracer, or `tracer-bench hold`); killed on drop if
/// it still runs.
pub(super) struct Attached {
    pub(super) child: Option<Child>,
    pub(super) ready: PathBuf,
}

/// The ready file of the bench's attached processes (one at a time).
pub(super) fn ready_file() -> PathBuf {
    std::env::temp_dir().join(format!("tracer-bench-{}.ready", std::process::id()))
}

/// `tracer ATTACHED_COMMAND` on the lab's ports.
pub(super) fn tracer_command() -> Command {
    let mut command = Command::new(tracer_binary());
    command
        .arg(ATTACHED_COMMAND)
        .args(port_args())
        .args(MONITOR_ARGS);
    command
}

/// Removes what the attached monitor pinned.
pub(super) fn unpin() -> anyhow::Result<()> {
    run_checked(
        Command::new(tracer_binary())
            .args(["monitor", "--unpin"])
            .args(&MONITOR_ARGS[2..4]),
    )
}

/// `tracer-bench hold`: the lab's ports watched through other hooks, for comparison.
pub(super) fn hold_command(hooks: &str) -> Command {
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
    pub(super) fn start(mut command: Command) -> anyhow::Result<(Self, Duration)> {
        command.arg("--ready-file").arg(ready_file());
        Self::start_with_ready_file(command)
    }

    /// [`Self::start`] for a command given [`ready_file`] already (where it must come before
    /// other arguments).
    pub(super) fn start_with_ready_file(mut command: Command) -> anyhow::Result<(Self, Duration)> {
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

    pub(super) fn child(&mut self) -> anyhow::Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| anyhow!("already stopped"))
    }

    pub(super) fn wait_ready(&mut self) -> anyhow::Result<()> {
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

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for it to exit by itself; fails unless it succeeded.
    pub(super) fn wait(mut self) -> anyhow::Result<()> {
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
    pub(super) fn stop(mut self) -> anyhow::Result<Duration> {
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

pub(super) fn read_all(pipe: Option<ChildStderr>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
    }
    text.trim().to_owned()
}

/// A process run for the bench (iperf3 server, tcpdump, ping); killed on drop if it still
/// runs.
pub(super) struct Background {
    pub(super) name: &'static str,
    pub(super) child: Child,
    /// Kept open so that what it writes at exit does not meet a closed pipe.
    pub(super) _stderr: Option<BufReader<ChildStderr>>,
}

impl Background {
    /// Ends it with SIGINT, which makes tcpdump flush and exit cleanly.
    pub(super) fn interrupt(mut self) -> anyhow::Result<()> {
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

/// `iperf3 -s` on the target's address and the lab's TCP port (the port tracer watches, as
/// NVMe/TCP's is), up and listening.
pub(super) fn iperf3_server() -> anyhow::Result<Background> {
    let mut command = in_netns(TARGET_NS, "iperf3");
    command
        .args(["-s", "-B", TARGET_IP, "-p", PORT])
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
        let listening =
            output_checked(in_netns(TARGET_NS, "ss").args(["-Hltn", &format!("sport = :{PORT}")]))?;
        if !listening.stdout.is_empty() {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("iperf3 server not listening within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How an iperf3 client runs: by itself in the initiator's namespace, or as the command of
/// `tracer watch` on the lab's ports, as a test run under watch.
#[derive(Clone, Copy)]
pub(super) enum Client {
    Alone,
    UnderWatch,
}

/// An iperf3 client from the initiator to the server, with `args`: its JSON report.
pub(super) fn iperf3_client(args: &[&str], client: Client) -> anyhow::Result<Value> {
    check_interrupted()?;
    let scratch = std::env::temp_dir().join(format!("tracer-bench-{}", std::process::id()));
    // Under watch, iperf3 writes its report to a file: watch's output is its own.
    let log = scratch.with_extension("iperf3.json");
    let report_dir = scratch.with_extension("watch");
    let mut command = match client {
        Client::Alone => in_netns(INITIATOR_NS, "iperf3"),
        Client::UnderWatch => {
            let _ = std::fs::remove_file(&log);
            let mut command = Command::new(tracer_binary());
            command
                .arg("watch")
                .args(port_args())
                .arg("--report")
                .arg(&report_dir)
                .args([
                    "--",
                    "ip",
                    "netns",
                    "exec",
                    INITIATOR_NS,
                    "iperf3",
                    "--logfile",
                ])
                .arg(&log);
            command
        }
    };
    command
        .args(["-c", TARGET_IP, "-p", PORT, "--json"])
        .args(args);
    eprintln!("+ {}", describe(&command));
    let output = output_checked(&mut command)?;
    let text = match client {
        Client::Alone => output.stdout,
        Client::UnderWatch => {
            let _ = std::fs::remove_dir_all(&report_dir);
            let text = std::fs::read(&log).with_context(|| format!("reading {}", log.display()));
            let _ = std::fs::remove_file(&log);
            text?
        }
    };
    serde_json::from_slice(&text).context("reading iperf3's JSON report")
}

/// An iperf3 TCP run from the initiator: received throughput in Gbit/s.
pub(super) fn iperf3_gbps(seconds: u64, client: Client) -> anyhow::Result<f64> {
    let report = iperf3_client(&["-t", &seconds.to_string()], client)?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bits| bits / 1e9)
        .ok_or_else(|| anyhow!("iperf3's report has no end.sum_received.bits_per_second"))
}

/// tcpdump capturing everything on one lab port (written to /dev/null), once it listens.
pub(super) fn tcpdump(netns: &str, interface: &str) -> anyhow::Result<Background> {
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
