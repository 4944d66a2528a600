//! tracer-bench: the measurements `cargo xtask bench` needs from inside tracer.
//!
//! - `test-run`: what the counting programs cost per packet, counting alone (monitor) and
//!   capturing too (watch), by BPF_PROG_TEST_RUN over representative frames, next to empty
//!   pass-through programs measured the same way.
//! - `attach`: `Session::attach` and its drop, timed in process, on ports that exist; and the
//!   attachment alone of one port whose programs are loaded already.
//! - `hold`: programs attached the way a design alternative would attach them, until SIGINT,
//!   so that the throughput they leave can be compared with tracer's own attachment.
//!
//! Each prints one JSON object on stdout. xtask cannot do this itself: it must build on a fresh
//! machine before bpf-linker exists, so it does not depend on the tracer crate.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, TestRun, TestRunOptions,
    programs::{Program, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use clap::{Parser, Subcommand};
use serde_json::json;
use tracer::{
    collect::{
        ebpf_log_level, loader,
        ports::{self, IngressHook, LoadedPrograms, PortOptions, PortPrograms},
    },
    netns::{self, NetnsGuard},
    preflight,
    session::Session,
    spec::PortSpec,
};
use tracer_common::{Direction, PacketKind};

static PORTS_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ports"));
static BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-baseline"));

/// The watched TCP port given to the counting programs (SPDK's NVMe/TCP port).
const WATCHED_PORT: u16 = 4420;
/// A TCP port that is not watched: iperf3's, whose segments the throughput runs carry.
const OTHER_PORT: u16 = 5201;

const XDP_PASS: u32 = 2;
/// tc verdicts that let a frame go on: TC_ACT_UNSPEC (tcx's "next program"), TC_ACT_OK and
/// TC_ACT_PIPE, as BPF_PROG_TEST_RUN returns them (an unsigned `retval`).
const TC_PASSING: &[u32] = &[-1i32 as u32, 0, 3];

#[derive(Debug, Parser)]
#[command(
    name = "tracer-bench",
    about = "Measurements for `cargo xtask bench` (root)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cost per packet of the counting programs and of empty programs, by BPF_PROG_TEST_RUN
    TestRun {
        /// Runs of each program on each frame per measurement (the kernel averages them)
        #[arg(long, default_value_t = 1_000_000,
              value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Measurements per program and frame, interleaved; the median is kept
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
    },
    /// Time attaching every program to two ports and detaching them, in process
    Attach {
        /// Initiator port, [NETNS/]IFNAME
        #[arg(long, value_name = "SPEC")]
        initiator: PortSpec,
        /// Target port, [NETNS/]IFNAME
        #[arg(long, value_name = "SPEC")]
        target: PortSpec,
        /// Attach and detach cycles
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
    },
    /// Attach `--hooks` to two ports and hold them until SIGINT or SIGTERM
    Hold {
        /// Initiator port, [NETNS/]IFNAME
        #[arg(long, value_name = "SPEC")]
        initiator: PortSpec,
        /// Target port, [NETNS/]IFNAME
        #[arg(long, value_name = "SPEC")]
        target: PortSpec,
        /// Which programs, on which hooks
        #[arg(long, value_enum)]
        hooks: Hooks,
        /// Created once every program is attached
        #[arg(long, value_name = "PATH")]
        ready_file: PathBuf,
        /// Have the kernel time every BPF program while held (BPF_ENABLE_STATS, undone when
        /// this exits) and write what these programs ran to PATH at the end, as JSON: `runs`
        /// and `run_time_ns`, summed over both ports
        #[arg(long, value_name = "PATH")]
        run_stats: Option<PathBuf>,
    },
}

/// What `hold` attaches to each port (egress is always tcx).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Hooks {
    /// Empty programs on tracer's hooks (native XDP ingress, tcx egress): what the hooks
    /// alone cost
    Empty,
    /// The counting programs, with XDP in generic (skb) mode
    XdpGeneric,
    /// The counting programs, with tcx on ingress instead of XDP
    TcIngress,
    /// Empty programs on tcx ingress and egress: what tracer's default hooks alone cost
    EmptyTc,
    /// The counting programs capturing, as watch runs them (tcx ingress; nothing reads the
    /// frames they keep): watch's kernel side without watch
    Capturing,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = preflight::check()
        .map_err(anyhow::Error::from)
        .and_then(|()| match cli.command {
            Command::TestRun { repeat, rounds } => test_run(repeat, rounds),
            Command::Attach {
                initiator,
                target,
                runs,
            } => attach(&initiator, &target, runs),
            Command::Hold {
                initiator,
                target,
                hooks,
                ready_file,
                run_stats,
            } => hold(
                &initiator,
                &target,
                hooks,
                &ready_file,
                run_stats.as_deref(),
            ),
        });
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tracer-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// One representative frame and the kinds the counters must record for it.
struct Frame {
    name: &'static str,
    bytes: Vec<u8>,
    kinds: &'static [PacketKind],
}

const INITIATOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const TARGET_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const INITIATOR_IP: [u8; 4] = [10, 0, 0, 1];
const TARGET_IP: [u8; 4] = [10, 0, 0, 2];
const TCP_SYN: u8 = 0x02;
const TCP_PSH_ACK: u8 = 0x18;
/// A full-sized segment on a 1500-byte MTU, as NVMe/TCP data and iperf3 send.
const TCP_MSS_WITH_TIMESTAMPS: usize = 1448;
/// The bench's flood sends 64-byte datagrams (`iperf3 -u -l 64`).
const FLOOD_PAYLOAD_BYTES: usize = 64;

fn ethernet(destination: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(1514);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&INITIATOR_MAC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// An IPv4 header from the initiator to the target. Checksums stay zero: neither the
/// programs nor BPF_PROG_TEST_RUN read them.
fn ipv4(frame: &mut Vec<u8>, protocol: u8, payload_len: usize) {
    let total_len = u16::try_from(20 + payload_len).unwrap_or(u16::MAX);
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&total_len.to_be_bytes());
    frame.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, protocol, 0, 0]);
    frame.extend_from_slice(&INITIATOR_IP);
    frame.extend_from_slice(&TARGET_IP);
}

fn arp_request() -> Vec<u8> {
    let mut frame = ethernet([0xff; 6], 0x0806);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame.extend_from_slice(&INITIATOR_MAC);
    frame.extend_from_slice(&INITIATOR_IP);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&TARGET_IP);
    frame
}

/// What `ping` sends: 8 bytes of ICMP header and 56 of data.
fn icmp_echo_request() -> Vec<u8> {
    let mut frame = ethernet(TARGET_MAC, 0x0800);
    ipv4(&mut frame, 1, 64);
    frame.extend_from_slice(&[8, 0, 0, 0, 0x00, 0x01, 0x00, 0x01]);
    frame.extend((0..56u8).map(|i| i.wrapping_add(0x10)));
    frame
}

/// A TCP segment with `options_len` bytes of options (NOPs) and `payload_len` bytes of data.
fn tcp(destination_port: u16, flags: u8, options_len: usize, payload_len: usize) -> Vec<u8> {
    let header_len = 20 + options_len;
    let mut frame = ethernet(TARGET_MAC, 0x0800);
    ipv4(&mut frame, 6, header_len + payload_len);
    frame.extend_from_slice(&40_000u16.to_be_bytes());
    frame.extend_from_slice(&destination_port.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0x20, 0]);
    // The data offset counts 32-bit words.
    let data_offset = u8::try_from(header_len / 4).unwrap_or(5) << 4;
    frame.extend_from_slice(&[data_offset, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    frame.resize(frame.len() + options_len, 1);
    frame.resize(frame.len() + payload_len, 0xab);
    frame
}

/// A UDP datagram with `payload_len` bytes of data, as the bench's flood sends them.
fn udp(destination_port: u16, payload_len: usize) -> Vec<u8> {
    let mut frame = ethernet(TARGET_MAC, 0x0800);
    ipv4(&mut frame, 17, 8 + payload_len);
    frame.extend_from_slice(&40_000u16.to_be_bytes());
    frame.extend_from_slice(&destination_port.to_be_bytes());
    let length = u16::try_from(8 + payload_len).unwrap_or(u16::MAX);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.resize(frame.len() + payload_len, 0xab);
    frame
}

fn frames() -> Vec<Frame> {
    vec![
        Frame {
            name: "arp_request",
            bytes: arp_request(),
            kinds: &[PacketKind::ArpRequest],
        },
        Frame {
            name: "icmp_echo_request",
            bytes: icmp_echo_request(),
            kinds: &[PacketKind::IcmpEchoRequest],
        },
        // The longest path: the port matches and the flags are counted too.
        Frame {
            name: "tcp_port_syn",
            bytes: tcp(WATCHED_PORT, TCP_SYN, 20, 0),
            kinds: &[PacketKind::TcpPort, PacketKind::TcpSyn],
        },
        Frame {
            name: "tcp_port_data",
            bytes: tcp(WATCHED_PORT, TCP_PSH_ACK, 12, TCP_MSS_WITH_TIMESTAMPS),
            kinds: &[PacketKind::TcpPort],
        },
        // Parsed down to the TCP ports before it is known to be `other`.
        Frame {
            name: "other_tcp",
            bytes: tcp(OTHER_PORT, TCP_PSH_ACK, 12, TCP_MSS_WITH_TIMESTAMPS),
            kinds: &[PacketKind::Other],
        },
        // The bench's flood of small datagrams to the watched port: `other` from the IPv4
        // header's protocol.
        Frame {
            name: "udp_flood",
            bytes: udp(WATCHED_PORT, FLOOD_PAYLOAD_BYTES),
            kinds: &[PacketKind::Other],
        },
    ]
}

/// The six programs measured, loaded and ready for BPF_PROG_TEST_RUN.
struct Programs {
    counting: Ebpf,
    capturing: Ebpf,
    baseline: Ebpf,
}

impl Programs {
    fn load() -> anyhow::Result<Self> {
        let log_level = ebpf_log_level(0);
        let ports = |capture: u8| {
            loader(&log_level)
                .override_global("WATCHED_PORT", &WATCHED_PORT, true)
                .override_global("CAPTURE", &capture, false)
                .load(PORTS_OBJECT)
        };
        // Counting alone, as the monitor runs it: no frame capture.
        let mut counting = ports(0).context("loading the port counting programs")?;
        // Counting and capturing, as watch runs it. Nothing reads its ring buffer here: once
        // full, what it keeps costs a failed reservation.
        let mut capturing = ports(1).context("loading the port capturing programs")?;
        let mut baseline = loader(&log_level)
            .load(BASELINE_OBJECT)
            .context("loading the baseline programs")?;
        for (ebpf, xdp, tc) in [
            (&mut counting, "tracer_ingress", "tracer_egress"),
            (&mut capturing, "tracer_ingress", "tracer_egress"),
            (&mut baseline, "baseline_ingress", "baseline_egress"),
        ] {
            let ingress: &mut Xdp = program_mut(ebpf, xdp)?.try_into()?;
            ingress
                .load()
                .with_context(|| format!("loading the XDP program {xdp}"))?;
            let egress: &mut SchedClassifier = program_mut(ebpf, tc)?.try_into()?;
            egress
                .load()
                .with_context(|| format!("loading the tc program {tc}"))?;
        }
        Ok(Self {
            counting,
            capturing,
            baseline,
        })
    }
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))
}

/// Average nanoseconds of one run of `program` on `frame`, over `repeat` runs, as the kernel
/// measures it; fails unless the program passed the frame on (returned one of `passing`).
fn ns_per_run<P>(
    ebpf: &Ebpf,
    name: &str,
    frame: &[u8],
    repeat: u32,
    passing: &[u32],
) -> anyhow::Result<u64>
where
    for<'a> &'a P: TryFrom<&'a Program, Error = ProgramError>,
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::TestRunResult>,
{
    let program = ebpf
        .program(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
    let program: &P = program.try_into()?;
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
    if !passing.contains(&result.return_value) {
        bail!(
            "{name} returned {} instead of one of {passing:?}: an observer must pass every frame",
            result.return_value as i32
        );
    }
    Ok(u64::try_from(result.duration.as_nanos()).unwrap_or(u64::MAX))
}

fn median(values: &mut [u64]) -> f64 {
    values.sort_unstable();
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2] as f64,
        n => (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0,
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// The measured programs, in the order of the columns they fill.
const XDP: usize = 0;
const BASELINE_XDP: usize = 1;
const TC: usize = 2;
const BASELINE_TC: usize = 3;
const CAPTURE_XDP: usize = 4;
const CAPTURE_TC: usize = 5;
/// Each measured program: its object, name, and whether it is XDP (else tc).
const MEASURED: [(usize, &str, bool); 6] = [
    (XDP, "tracer_ingress", true),
    (BASELINE_XDP, "baseline_ingress", true),
    (TC, "tracer_egress", false),
    (BASELINE_TC, "baseline_egress", false),
    (CAPTURE_XDP, "tracer_ingress", true),
    (CAPTURE_TC, "tracer_egress", false),
];

fn test_run(repeat: u32, rounds: u32) -> anyhow::Result<serde_json::Value> {
    let programs = Programs::load()?;
    let frames = frames();
    // samples[frame][program]: one average per round.
    let mut samples = vec![[const { Vec::new() }; MEASURED.len()]; frames.len()];
    // Rounds are interleaved so that drift (other load, frequency changes) hits every program
    // and frame alike.
    for _ in 0..rounds {
        for (frame, frame_samples) in frames.iter().zip(samples.iter_mut()) {
            for (column, name, xdp) in MEASURED {
                let ebpf = match column {
                    XDP | TC => &programs.counting,
                    CAPTURE_XDP | CAPTURE_TC => &programs.capturing,
                    _ => &programs.baseline,
                };
                frame_samples[column].push(if xdp {
                    ns_per_run::<Xdp>(ebpf, name, &frame.bytes, repeat, &[XDP_PASS])?
                } else {
                    ns_per_run::<SchedClassifier>(ebpf, name, &frame.bytes, repeat, TC_PASSING)?
                });
            }
        }
    }
    for ebpf in [&programs.counting, &programs.capturing] {
        check_counted(ebpf, &frames, u64::from(repeat) * u64::from(rounds))?;
    }

    let mut per_program: [Vec<f64>; MEASURED.len()] = Default::default();
    let mut frame_reports = Vec::new();
    for (frame, mut frame_samples) in frames.iter().zip(samples) {
        let medians = frame_samples.each_mut().map(|values| median(values));
        for (column, value) in per_program.iter_mut().zip(medians) {
            column.push(value);
        }
        frame_reports.push(json!({
            "frame": frame.name,
            "bytes": frame.bytes.len(),
            "xdp_ns": medians[XDP],
            "baseline_xdp_ns": medians[BASELINE_XDP],
            "tc_ns": medians[TC],
            "baseline_tc_ns": medians[BASELINE_TC],
            "capture_xdp_ns": medians[CAPTURE_XDP],
            "capture_tc_ns": medians[CAPTURE_TC],
        }));
    }
    Ok(json!({
        "repeat": repeat,
        "rounds": rounds,
        "xdp_ns_per_packet": mean(&per_program[XDP]),
        "tc_ns_per_packet": mean(&per_program[TC]),
        "baseline_xdp_ns_per_packet": mean(&per_program[BASELINE_XDP]),
        "baseline_tc_ns_per_packet": mean(&per_program[BASELINE_TC]),
        "capture_xdp_ns_per_packet": mean(&per_program[CAPTURE_XDP]),
        "capture_tc_ns_per_packet": mean(&per_program[CAPTURE_TC]),
        "frames": frame_reports,
    }))
}

/// Checks that the counting programs classified every frame as expected: a program that took
/// a shortcut (a failed read, a wrong offset) would look cheaper than it is.
fn check_counted(counting: &Ebpf, frames: &[Frame], runs_per_frame: u64) -> anyhow::Result<()> {
    for direction in [Direction::Ingress, Direction::Egress] {
        let counts = ports::packet_counts(counting, direction)?;
        for kind in PacketKind::ALL {
            let expected = frames
                .iter()
                .filter(|frame| frame.kinds.contains(&kind))
                .count() as u64
                * runs_per_frame;
            let counted = counts.get(kind);
            if counted != expected {
                bail!(
                    "{direction:?} counted {counted} {} frames, expected {expected}: the measured path is not the real one",
                    kind.name()
                );
            }
        }
    }
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn attach(initiator: &PortSpec, target: &PortSpec, runs: u32) -> anyhow::Result<serde_json::Value> {
    let options = PortOptions {
        tcp_port: WATCHED_PORT,
        capture: false,
        log_level: ebpf_log_level(0),
        // What every command attaches by default.
        ingress: IngressHook::Tc,
    };
    let mut attach_ms = Vec::new();
    let mut detach_ms = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let session = Session::attach(&[initiator, target], &options)?;
        attach_ms.push(millis(start.elapsed()));
        let start = Instant::now();
        drop(session);
        detach_ms.push(millis(start.elapsed()));
    }
    // What is left when a port appears and its programs are loaded already: the tc
    // attachments themselves (tcx: the kernel waits for an RCU grace period for each).
    let mut attach_loaded_port_ms = Vec::new();
    for _ in 0..runs {
        let loaded = LoadedPrograms::load(&options, None)?;
        let start = Instant::now();
        let probe = PortPrograms::attach_loaded(target, &options, loaded)?;
        attach_loaded_port_ms.push(millis(start.elapsed()));
        drop(probe);
    }
    Ok(json!({
        "runs": runs,
        "attach_ms": attach_ms,
        "detach_ms": detach_ms,
        "attach_loaded_port_ms": attach_loaded_port_ms,
    }))
}

/// Attaches `hooks` to one port, entering its namespace on this thread for the duration.
fn attach_hooks(spec: &PortSpec, hooks: Hooks) -> anyhow::Result<Ebpf> {
    let log_level = ebpf_log_level(0);
    let mut ebpf = match hooks {
        Hooks::Empty | Hooks::EmptyTc => loader(&log_level).load(BASELINE_OBJECT),
        Hooks::XdpGeneric | Hooks::TcIngress | Hooks::Capturing => loader(&log_level)
            .override_global("WATCHED_PORT", &WATCHED_PORT, true)
            .override_global(
                "CAPTURE",
                &u8::from(matches!(hooks, Hooks::Capturing)),
                false,
            )
            .load(PORTS_OBJECT),
    }
    .context("loading the programs")?;
    let _inside = NetnsGuard::enter(&spec.netns)?;
    let ifindex = netns::ifindex(&spec.interface).ok_or_else(|| {
        anyhow!(
            "no interface {} in namespace {}",
            spec.interface,
            spec.netns
        )
    })?;
    let attach_xdp = |ebpf: &mut Ebpf, name: &str, mode: XdpMode| -> anyhow::Result<()> {
        let xdp: &mut Xdp = program_mut(ebpf, name)?.try_into()?;
        xdp.load()?;
        xdp.attach_to_if_index(ifindex, mode)
            .with_context(|| format!("attaching {name} to {spec}"))?;
        Ok(())
    };
    let attach_tc = |ebpf: &mut Ebpf, name: &str, direction: TcAttachType| -> anyhow::Result<()> {
        let tc: &mut SchedClassifier = program_mut(ebpf, name)?.try_into()?;
        tc.load()?;
        tc.attach(&spec.interface, direction)
            .with_context(|| format!("attaching {name} to {spec}"))?;
        Ok(())
    };
    match hooks {
        Hooks::Empty => {
            attach_xdp(&mut ebpf, "baseline_ingress", XdpMode::Default)?;
            attach_tc(&mut ebpf, "baseline_egress", TcAttachType::Egress)?;
        }
        Hooks::EmptyTc => {
            attach_tc(&mut ebpf, "baseline_ingress_tc", TcAttachType::Ingress)?;
            attach_tc(&mut ebpf, "baseline_egress", TcAttachType::Egress)?;
        }
        Hooks::XdpGeneric => {
            attach_xdp(&mut ebpf, "tracer_ingress", XdpMode::Skb)?;
            attach_tc(&mut ebpf, "tracer_egress", TcAttachType::Egress)?;
        }
        Hooks::TcIngress | Hooks::Capturing => {
            attach_tc(&mut ebpf, "tracer_ingress_tc", TcAttachType::Ingress)?;
            attach_tc(&mut ebpf, "tracer_egress", TcAttachType::Egress)?;
        }
    }
    Ok(ebpf)
}

fn hold(
    initiator: &PortSpec,
    target: &PortSpec,
    hooks: Hooks,
    ready_file: &Path,
    run_stats: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The kernel times programs while any such descriptor is open.
    let timing = run_stats
        .map(|_| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .context("enabling the kernel's BPF run statistics")?;
    let attached = [
        attach_hooks(initiator, hooks)?,
        attach_hooks(target, hooks)?,
    ];
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        std::fs::write(ready_file, b"")
            .with_context(|| format!("writing the ready file {}", ready_file.display()))?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })?;
    if let Some(path) = run_stats {
        let (runs, run_time) = attached
            .iter()
            .flat_map(|ebpf| ebpf.programs())
            .filter_map(|(_, program)| program.info().ok())
            .fold((0, Duration::ZERO), |(runs, time), info| {
                (runs + info.run_count(), time + info.run_time())
            });
        let stats = json!({ "runs": runs, "run_time_ns": run_time.as_nanos() as u64 });
        std::fs::write(path, stats.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    drop(attached);
    drop(timing);
    Ok(json!({ "hooks": format!("{hooks:?}") }))
}
