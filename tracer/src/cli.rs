//! Command-line interface.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use clap::{Args, Parser, Subcommand};

use tracer_topology::layouts::LayoutName;

use crate::{
    collect::ports::IngressHook, error::UsageError, pins::DEFAULT_PIN_ROOT, spec::PortSpec,
};

pub const DEFAULT_INITIATOR: &str = "cvl_0_1";
pub const DEFAULT_TARGET: &str = "cvl_0_0_ns_spdk/cvl_0_0";
pub const DEFAULT_PORT: &str = "4420";
/// Where `tracer lab up` puts the initiator: never in tracer's own namespace.
pub const DEFAULT_LAB_INITIATOR: &str = "cvl_0_1_ns_initiator/cvl_0_1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

const DIAGNOSE_EXAMPLES: &str = "Examples:\n  \
tracer diagnose\n  \
tracer diagnose -i cvl_0_1_ns_initiator/cvl_0_1 -t cvl_0_0_ns_spdk/cvl_0_0 --report /tmp/bundle";

/// diagnose's long help after its flags: the class table, from the one in tracer-evidence.
fn diagnose_after_long_help() -> String {
    format!(
        "Verdicts and exit codes (fixed; scripts may depend on them):\n{}\n\
Several pairs: repeat --initiator, --target, --initiator-ip and --target-ip (pair N is the \
Nth of each); one verdict each, the exit code of the first that failed.\n\
2 stays a usage or environment error (bad argument, not root, the same address on both sides, \
another diagnose probing the same ports for over 60 s: runs on a port take turns).\n\n\
{DIAGNOSE_EXAMPLES}",
        tracer_evidence::class::exit_code_help()
    )
}

/// tracer --help after the commands: what a port spec is, where ports come from, exit codes.
const ROOT_AFTER_LONG_HELP: &str = "Ports are given as [NETNS/]IFNAME: a namespace name as in \
`ip netns list`, or none for tracer's own namespace. Without --initiator/--target, every \
command looks for SPDK's three test layouts (phy, virt, virt-legacy) and takes the pairs it \
finds; with one of them alone, the other is SPDK's (initiator cvl_0_1, target \
cvl_0_0_ns_spdk/cvl_0_0). The TCP port is 4420 unless --tcp-port says otherwise.\n\n\
tracer counts on tc (ingress first in the chain, egress last; XDP on ingress with \
--ingress-hook xdp) and follows kernel drops (kfree_skb with its reason). It changes nothing \
on the ports: what it adds it removes.\n\n\
Exit codes: 0 success, 1 internal error or output that cannot be written, 2 usage or \
environment error (bad argument, unknown port or namespace, not root, kernel without BTF), \
10-17 diagnose's verdicts, 141 standard output closed by its reader.\n\n\
Examples:\n  \
sudo tracer lab up --layout phy --netns-root tracer_lab   # a lab to try it on\n  \
sudo tracer diagnose --netns-root tracer_lab\n  \
sudo tracer watch --report /tmp/bundle -- ./test.sh\n  \
sudo tracer counters -d 10";

#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    max_term_width = 100,
    about = "Say where a packet between two cabled NIC ports died",
    after_help = "Start with the README's quick start: sudo tracer lab up --layout phy --netns-root tracer_lab\n\
`tracer COMMAND -h` lists a command's flags; `--help` explains them at length.",
    after_long_help = ROOT_AFTER_LONG_HELP
)]
pub struct Cli {
    /// Say more (-v: tracer's steps; -vv: debug; -vvv: the BPF library's too)
    #[arg(short, long, action = clap::ArgAction::Count, global = true, display_order = 900,
          conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print nothing on standard error but errors
    #[arg(short, long, global = true, display_order = 901)]
    pub quiet: bool,
    /// When to colour: auto, always, never
    ///
    /// auto: on a terminal, unless NO_COLOR is set or TERM=dumb.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        default_value = "auto",
        hide_possible_values = true,
        global = true,
        display_order = 902
    )]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// What clap cannot check alone: arguments that contradict each other.
    pub fn check(&self) -> Result<(), UsageError> {
        let addresses: Vec<(Ipv4Addr, Ipv4Addr)> = match &self.command {
            Command::Diagnose(args) => args
                .initiator_ips
                .iter()
                .copied()
                .zip(args.target_ips.iter().copied())
                .collect(),
            Command::Watch(args) => args.initiator_ip.zip(args.target_ip).into_iter().collect(),
            _ => Vec::new(),
        };
        if let Some((initiator, _)) = addresses
            .into_iter()
            .find(|(initiator, target)| initiator == target)
        {
            return Err(UsageError::Argument(format!(
                "--initiator-ip and --target-ip are both {initiator}: the two sides need \
                 different addresses"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Say which port is cabled to which (tracer's own frames, LLDP, link state)
    #[command(
        long_about = "Say which port is cabled to which, without any IP configuration.\n\n\
tracer attaches its tc programs to the ports (given ones, or every physical port in every \
namespace: a device that is its own link, not a veth, bridge or loopback), sends three frames of \
its own from each (EtherType 0x88B5, to the broadcast address, naming the port and the run) and \
says where each arrived: which port reaches which, both ways, and the ports that reach no local \
port. LLDP frames arriving meanwhile name the far end (a switch's system name and port); \
--listen waits for them longer (LLDP's default interval is 30 s). For each port: carrier and \
its up/down counts (flaps between two looks), and from ethtool speed, duplex, autonegotiation, \
the extended link state and link-down events where the driver gives them; what it does not \
give is named as not available. A port that is down is set up to send and down again \
afterwards; nothing else changes.\n\n\
Exit codes: 0, or with --pair the first pair's verdict class (cable: 10) when the two ports do \
not reach each other; 2 usage or environment error.",
        after_help = "Examples:\n  \
tracer cables\n  \
tracer cables cvl_0_0 cvl_0_1 --listen 31 --json\n  \
tracer cables --pair cvl_0_1=cvl_0_0_ns_spdk/cvl_0_0"
    )]
    Cables(CablesArgs),
    /// Count ARP, ICMP and port traffic on both ports, and kernel drops, until Ctrl-C
    #[command(after_help = "Examples:\n  \
tracer counters -d 10\n  \
tracer counters -i cvl_0_1_ns_initiator/cvl_0_1 -t cvl_0_0_ns_spdk/cvl_0_0 -d 5 --json")]
    Counters(CountersArgs),
    /// Probe the path from initiator to target and say exactly where packets die
    #[command(
        long_about = "Probe the path from initiator to target and say exactly where packets die.\n\n\
tracer attaches to both ports, checks that they exist, are up and routed, then sends its own \
probes from the initiator's namespace: ARP requests for the target address, ICMP echo both ways \
and TCP connects to the port (a SYN-ACK or a RST both mean the path is open). It watches both \
ports, kernel drops, neighbour state, carrier and netfilter verdicts meanwhile, and prints one \
verdict with its evidence. It never changes the firewall, and reads rule counters only.",
        after_help = DIAGNOSE_EXAMPLES,
        after_long_help = diagnose_after_long_help()
    )]
    Diagnose(DiagnoseArgs),
    /// Watch both ports while a command runs; on failure, write a bundle saying why
    #[command(
        long_about = "Watch both ports while a command runs; on failure, write the root-cause bundle.\n\n\
tracer attaches to the ports wherever they are (they need not be where their specs say yet: a test \
script may create the target namespace and move the port into it after tracer started), runs CMD \
with its standard input and output in a process group of its own, passes SIGINT, SIGTERM, SIGHUP, \
SIGQUIT, SIGUSR1 and SIGUSR2 on to that whole group (a script's own children too), kills the group \
with SIGKILL when it still runs --kill-after seconds after a SIGINT or SIGTERM, follows the ports \
as they move, disappear and come back, and exits with CMD's exit code (128 + signal when it was \
killed). CMD never outlives tracer: the kernel kills it when tracer dies, even by SIGKILL. A CMD \
that is not found exits 127, one that cannot be executed 126.\n\n\
When CMD fails (or always, with --always), DIR holds report.html (the whole bundle as one page), \
report.md (verdict and evidence first, a \
one-line signature for bots, the timeline), report.json (diagnose's schema plus timeline), \
capture.pcapng (the last N ARP, ICMP and port frames of both ports, with interface and direction) \
and snapshot/ (addresses, routes, neighbours and netfilter rules of each namespace at the end). \
tracer creates every file itself and never follows a symbolic link found in DIR (it refuses, \
exit 2). \
By default the test's own traffic is the evidence; --probe also runs diagnose's probes at the end.",
        after_help = "Examples:\n  \
tracer watch -- ./test/nvmf/target/some_test.sh --transport=tcp\n  \
tracer watch --report /tmp/bundle --always -- ping -c 3 10.0.0.2"
    )]
    Watch(WatchArgs),
    /// Count on the ports for as long as tracer runs, and serve the counts to Prometheus
    #[command(
        long_about = "Count on both ports for as long as tracer runs, and serve the counts to \
Prometheus at http://ADDR:PORT/metrics (the Prometheus text format, or OpenMetrics when the scraper \
asks for it). Metrics:\n\n  \
tracer_packets_total{role,pair,port,direction,kind}   frames per port, direction and kind\n  \
tracer_drops_total{role,pair,port,reason}             kernel drops (kfree_skb) on a port\n  \
tracer_neighbour_failures_total{role,pair,port}       frames dropped on a port because its \
neighbour (ARP) entry failed: exactly the kfree_skb drops with reason NEIGH_FAILED\n  \
tracer_link_carrier{role,pair,port}                   1 with carrier, 0 without\n  \
tracer_port_ingress_hook{role,pair,port,hook}         tc, or xdp when asked for and attachable\n  \
tracer_port_attached{role,pair,port}                  1 when counted, 0 while waited for\n  \
tracer_port_attach_failing{role,pair,port}            1 while present but not attachable\n  \
tracer_port_info{role,pair,port,netns,interface}      1: where the port is now, for joins\n  \
tracer_lost_events_total                              what the kernel programs could not count\n  \
tracer_build_info{version,kernel}                     1\n\n\
Every port's series are named by what was configured: role (initiator, target), pair (0) and port \
(the spec as given), never by where the port is, so that rate() and increase() count each frame \
once: ports are followed across namespace moves, waited for while they do not exist, and attached \
again when they are deleted and created anew, and their counts go on in the same series. Where \
several namespaces hold an interface of the port's name, tracer never guesses: the device running \
its programs, else the one in the spec's namespace, else in tracer's own, else the only one. The \
kernel keys drops by namespace and interface index: the drops counted where a port was are carried \
on in its series (and pinned with the rest) when it moves or is created anew. Drops on other \
interfaces are neither exported nor kept (kfree_skb sees the whole machine: the series would be \
unbounded; `tracer counters` shows them).\n\n\
The counters are pinned on bpffs under --pin-dir (bpffs is mounted at /sys/fs/bpf when it is not), \
one directory per port named by its spec, so counts survive a restart or an upgrade of tracer and \
follow a port wherever it moves; --reset starts from zero, --unpin removes them (only maps of the \
shape tracer pins, on bpffs: nothing else is ever deleted). An earlier tracer's counters are read \
on; a pin of any other shape where tracer pins is never used nor removed: the monitor names it \
and exits 2, and --reset replaces it. Only maps are \
pinned: nothing stays attached after tracer exits. One monitor per pin directory. With \
--ingress-hook xdp, where XDP cannot be attached (another program holds it, the driver or MTU \
does not allow it), tracer counts ingress with tc instead and never replaces what is there.\n\n\
The server answers at most 64 connections at once (more are closed at once); a client has 5 s to \
send its request head (16 KiB at most, else 431) and 5 s to read the answer. Scrapes are answered \
from where the ports were at the last refresh (every second, and at SIGHUP): a scrape reads the \
counter maps and opens nothing. With port 0 in --metrics-addr, the port the kernel chose is \
printed on standard output (`serving metrics at http://ADDR:PORT/metrics`).\n\n\
Exit codes: 0 after Ctrl-C or SIGTERM (SIGHUP does not stop it), 2 usage or environment error (a \
metrics address that is malformed, in use or not bindable; another monitor on the pin directory; \
a pin directory not on bpffs; a pin of another shape where tracer pins; not root).",
        after_help = "Examples:\n  \
tracer monitor --metrics-addr 127.0.0.1:9464\n  \
tracer monitor --initiator cvl_0_1_ns_initiator/cvl_0_1 --reset\n  \
tracer monitor --unpin"
    )]
    Monitor(MonitorArgs),
    /// Say what this kernel offers tracer, and what it uses where something lacks
    #[command(
        long_about = "Say what this kernel offers tracer, and what tracer uses where something lacks.\n\n\
For each capability: whether the kernel has it, and what tracer uses. Kernels before 6.6 have no \
tcx: tc programs go on a clsact qdisc, which tracer adds when missing and removes on exit (after \
a SIGKILL, the qdisc and tracer's filters stay until `tc qdisc del dev IFNAME clsact`). Kernels \
before 5.17 have no drop reasons: drops are named by the kernel function that freed the packet. \
The drop probe is really attached and detached to find out.\n\n\
Exit codes: 0 tracer can work here, 2 it cannot (one line says why).",
        after_help = "Example:\n  tracer doctor --json"
    )]
    Doctor(DoctorArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Install them where your shell looks, e.g.:\n  \
tracer completions bash > /etc/bash_completion.d/tracer\n  \
tracer completions zsh > /usr/local/share/zsh/site-functions/_tracer")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print tracer's man page (roff)
    #[command(after_help = "Example:\n  tracer man > /usr/local/share/man/man1/tracer.1")]
    Man,
    /// Group many saved bundles by what failed
    #[command(
        long_about = "Group many saved bundles by what failed.\n\n\
Each PATH is a directory, searched recursively for bundles (directories holding a report.json; \
symbolic links are not followed), a .tar.gz or .tgz archive of bundles (read in memory, never \
extracted), or a report.json. The bundles are grouped by their verdict's signature; for each \
group: how many, first and last seen (UTC), the hosts, kernels and tests they came from, and an \
example bundle. A bundle that cannot be read is listed with the reason (one written by a newer \
tracer says so), never skipped. Needs no root and touches no network.\n\n\
Exit codes: 0, also when some bundles could not be read; 2 a PATH that does not exist.",
        after_help = "Examples:\n  \
tracer triage /var/ci/artifacts\n  \
tracer triage nightly-*.tar.gz --json\n  \
tracer triage /var/ci/artifacts --html /var/ci/artifacts/triage.html"
    )]
    Triage(TriageArgs),
    /// Build or remove the built-in lab: SPDK's test network inside namespaces of its own
    #[command(after_help = "Example:\n  \
tracer lab up --layout phy --netns-root tracer_lab\n  \
tracer lab down --layout phy --netns-root tracer_lab")]
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
}

/// The ports and how to count on them.
#[derive(Debug, Clone, Args)]
pub struct PortArgs {
    /// Initiator port, [NETNS/]IFNAME
    ///
    /// Default: the pairs of the SPDK layouts found; with --target alone, cvl_0_1.
    #[arg(short, long, value_name = "SPEC")]
    pub initiator: Option<PortSpec>,
    /// Target port, [NETNS/]IFNAME
    ///
    /// Default: the pairs of the SPDK layouts found; with --initiator alone,
    /// cvl_0_0_ns_spdk/cvl_0_0.
    #[arg(short, long, value_name = "SPEC")]
    pub target: Option<PortSpec>,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub counting: CountingArgs,
}

impl PortArgs {
    /// The port flags given, as the layout module takes them.
    pub fn flags<'a>(
        &'a self,
        initiator_ips: &'a [Ipv4Addr],
        target_ips: &'a [Ipv4Addr],
    ) -> crate::layout::Flags<'a> {
        crate::layout::Flags {
            initiators: self.initiator.as_slice(),
            targets: self.target.as_slice(),
            initiator_ips,
            target_ips,
        }
    }
}

/// Which SPDK layout to take the pairs of, when no port is given.
#[derive(Debug, Clone, Default, Args)]
pub struct LayoutArgs {
    /// Take this SPDK layout's pairs: phy, virt, virt-legacy
    ///
    /// Without --initiator/--target: this layout's pairs rather than looking for all three;
    /// when it is not there, its names and default addresses are used.
    #[arg(long, value_name = "NAME")]
    pub layout: Option<LayoutName>,
    /// Look for the layouts in namespace NAME standing for the host's
    ///
    /// The layouts' namespaces are then named NAME-NETNS, as `tracer lab up --layout` builds
    /// them; never needed on an SPDK node.
    #[arg(long, value_name = "NAME")]
    pub netns_root: Option<String>,
}

/// What is counted on the ports, and where.
#[derive(Debug, Clone, Args)]
pub struct CountingArgs {
    /// TCP port counted as tcp_port
    ///
    /// Its SYN, SYN-ACK and RST segments are also counted apart.
    #[arg(long, visible_alias = "port", value_name = "N", default_value = DEFAULT_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub tcp_port: u16,
    /// Count ingress on tc or xdp
    ///
    /// tc (the default) runs first in the port's tc chain, so frames another program consumes
    /// are still counted, and leaves MTU, offloads and queues alone. xdp counts frames before
    /// GRO, but native XDP can change the port (on a veth pair it turns off the peer's
    /// segmentation offload); where XDP cannot be attached, tracer says so and uses tc.
    #[arg(
        long,
        value_enum,
        value_name = "HOOK",
        default_value = "tc",
        hide_possible_values = true
    )]
    pub ingress_hook: IngressHook,
}

#[derive(Debug, Args)]
pub struct CablesArgs {
    /// Ports, [NETNS/]IFNAME (default: every physical port in every namespace)
    #[arg(value_name = "SPEC")]
    pub ports: Vec<PortSpec>,
    /// Two ports meant to be cabled together, A=B (repeatable): their cable verdict
    #[arg(long = "pair", value_name = "A=B", value_parser = parse_pair)]
    pub pairs: Vec<(PortSpec, PortSpec)>,
    /// Wait SECS more for LLDP frames from the far ends
    #[arg(long, value_name = "SECS", default_value = "0",
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub listen: u64,
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
}

fn parse_pair(text: &str) -> Result<(PortSpec, PortSpec), String> {
    let (a, b) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected A=B, two port specs"))?;
    let a: PortSpec = a.parse().map_err(|err| format!("{err}"))?;
    let b: PortSpec = b.parse().map_err(|err| format!("{err}"))?;
    if a == b {
        return Err(format!("`{text}`: a port cannot be cabled to itself"));
    }
    Ok((a, b))
}

#[derive(Debug, Args)]
pub struct CountersArgs {
    #[command(flatten)]
    pub ports: PortArgs,
    /// Stop after SECS seconds (default: at Ctrl-C or SIGTERM)
    #[arg(long, short, value_name = "SECS", value_parser = seconds::<86_400>)]
    pub duration: Option<u64>,
    /// Print one JSON object instead of tables
    #[arg(long)]
    pub json: bool,
    /// Create PATH once every program is attached (for scripts to wait on)
    #[arg(long, value_name = "PATH", value_parser = new_file_path)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiagnoseArgs {
    /// Initiator port, [NETNS/]IFNAME (repeatable: one per pair)
    ///
    /// Repeat it, with --target, --initiator-ip and --target-ip, to diagnose several pairs
    /// together (the Nth of each make pair N). Default: every pair of the SPDK layouts found
    /// (with --target alone, cvl_0_1).
    #[arg(short, long = "initiator", value_name = "SPEC")]
    pub initiators: Vec<PortSpec>,
    /// Target port, [NETNS/]IFNAME (repeatable: one per pair)
    ///
    /// With --initiator alone, cvl_0_0_ns_spdk/cvl_0_0.
    #[arg(short, long = "target", value_name = "SPEC")]
    pub targets: Vec<PortSpec>,
    /// The initiator's address (repeatable: one per pair)
    ///
    /// Source of the ARP probes, destination of the reverse pings. Default: configured, else
    /// the ifalias, else the layout's; 10.0.0.1 with port flags.
    #[arg(long = "initiator-ip", value_name = "IP")]
    pub initiator_ips: Vec<Ipv4Addr>,
    /// The target's address (repeatable: one per pair)
    ///
    /// Default as --initiator-ip's; 10.0.0.2 with port flags.
    #[arg(long = "target-ip", value_name = "IP")]
    pub target_ips: Vec<Ipv4Addr>,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub counting: CountingArgs,
    /// Other ports to find far ends on when frames were lost
    ///
    /// [NETNS/]IFNAME,… (default: every physical port that is up).
    #[arg(long, value_name = "SPEC,...", value_delimiter = ',')]
    pub cable_ports: Vec<PortSpec>,
    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,
    /// Also write the report files into DIR
    ///
    /// DIR/report.md, report.json, report.html and path.svg. DIR is created; symbolic links in
    /// it are refused, never followed.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Also write the path as a picture to FILE (SVG)
    ///
    /// The hops, the counts at the ports, and where the packets stopped (of several pairs,
    /// the first that failed).
    #[arg(long, value_name = "FILE", value_parser = new_file_path)]
    pub svg: Option<PathBuf>,
    /// Also write the whole report as one page to FILE (HTML)
    ///
    /// Self-contained; with --from, a saved bundle's report.html made again, its timeline and
    /// capture included.
    #[arg(long, value_name = "FILE", value_parser = new_file_path)]
    pub html: Option<PathBuf>,
    /// Classify a saved bundle again (no network, no root)
    ///
    /// Its directory, or its report.json, with this tracer's classifier.
    #[arg(long, value_name = "DIR|FILE", conflicts_with = "ready_file")]
    pub from: Option<PathBuf>,
    /// Create PATH once every program is attached
    #[arg(long, value_name = "PATH", value_parser = new_file_path)]
    pub ready_file: Option<PathBuf>,
}

/// Upper bound of --capture-frames: 100 000 frames of up to 256 bytes per port.
const MAX_CAPTURE_FRAMES: usize = 100_000;

/// A whole number of seconds from 1 to `MAX`, with a message people read.
fn seconds<const MAX: u64>(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{value}` is not a whole number of seconds from 1 to {MAX}"
        )),
    }
}

fn capture_frames(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_CAPTURE_FRAMES).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{value}` is not a number from 1 to {MAX_CAPTURE_FRAMES}"
        )),
    }
}

/// A path for a file tracer writes (a ready file, a picture) whose directory exists: refused at
/// parse time, so that a typo fails before anything is attached rather than after.
fn new_file_path(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_dir() {
        return Err(format!("`{value}` is a directory"));
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        return Err(format!(
            "directory `{}` does not exist",
            directory.display()
        ));
    }
    Ok(path)
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub ports: PortArgs,
    /// The initiator's address (for routes and --probe)
    ///
    /// Default: found as diagnose finds it; 10.0.0.1 with port flags.
    #[arg(long, value_name = "IP")]
    pub initiator_ip: Option<Ipv4Addr>,
    /// The target's address (for routes and --probe)
    ///
    /// Default as --initiator-ip's; 10.0.0.2 with port flags.
    #[arg(long, value_name = "IP")]
    pub target_ip: Option<Ipv4Addr>,
    /// Bundle directory, made only for a bundle
    ///
    /// Symbolic links in it are refused, never followed. A directory that already holds a
    /// bundle is kept: this run's goes to the first free DIR-N (DIR-2, …) unless --force.
    #[arg(long, value_name = "DIR", default_value = "tracer-report")]
    pub report: PathBuf,
    /// Replace the bundle already in the --report directory (else DIR-2, …)
    #[arg(long)]
    pub force: bool,
    /// Create PATH once tracer watches (before CMD starts)
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// The file SPDK's run_test writes the running test's name to (`.run_test_name` in its
    /// output directory): read at start, at each SIGUSR1 (then not passed on to the command)
    /// and at the end; the tests are named in the timeline and the bundle's identity
    #[arg(long, value_name = "PATH")]
    pub test_tag_file: Option<PathBuf>,
    /// Write the bundle even when CMD succeeds
    #[arg(long)]
    pub always: bool,
    /// After CMD, run diagnose's active probes as well
    #[arg(long)]
    pub probe: bool,
    /// Other ports to find far ends on when frames were lost
    ///
    /// [NETNS/]IFNAME,… (default: every physical port that is up).
    #[arg(long, value_name = "SPEC,...", value_delimiter = ',')]
    pub cable_ports: Vec<PortSpec>,
    /// Frames kept per port (the last N, 1 to 100000)
    #[arg(long, value_name = "N", default_value = "2000", value_parser = capture_frames)]
    pub capture_frames: usize,
    /// SIGKILL CMD SECS after SIGINT/SIGTERM
    ///
    /// After passing SIGINT or SIGTERM on to CMD's process group, kill the group (SIGKILL) if
    /// it still runs SECS seconds later.
    #[arg(long, value_name = "SECS", default_value = "10",
          value_parser = seconds::<86_400>)]
    pub kill_after: u64,
    /// The command to run, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub ports: PortArgs,
    /// Serve the metrics at http://ADDR:PORT/metrics
    ///
    /// Port 0: the kernel chooses, and tracer prints the address on standard output.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Keep the counters pinned in DIR, on bpffs
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_ROOT)]
    pub pin_dir: PathBuf,
    /// Start from zero: remove the pinned counters first, and replace any pin of another shape
    /// where tracer pins
    #[arg(long)]
    pub reset: bool,
    /// Remove the counters pinned in --pin-dir, then exit
    ///
    /// Attaches nothing; only maps of tracer's shape on bpffs are removed.
    #[arg(long, conflicts_with = "reset")]
    pub unpin: bool,
    /// Create PATH once the metrics are served and every port present is counted
    #[arg(long, value_name = "PATH", value_parser = new_file_path)]
    pub ready_file: Option<PathBuf>,
    /// SPDK's running-test file, exported as tracer_test_info
    ///
    /// The file SPDK's run_test writes the running test's name to (`.run_test_name` in its
    /// output directory): read at start and at each SIGUSR1.
    #[arg(long, value_name = "PATH")]
    pub test_tag_file: Option<PathBuf>,
    /// Map the cabling at start and on SIGHUP
    ///
    /// A few frames of tracer's own (EtherType 0x88B5, harmless to IP traffic, counted as
    /// `other`) from the pair's ports and the --cable-ports; exported as whether the pair's
    /// ports reach each other and what each reaches instead.
    #[arg(long)]
    pub cable_map: bool,
    /// Ports beside the pair the cable map also uses, [NETNS/]IFNAME,…
    #[arg(
        long,
        value_name = "SPEC,...",
        value_delimiter = ',',
        requires = "cable_map"
    )]
    pub cable_ports: Vec<PortSpec>,
}

#[derive(Debug, Args)]
pub struct TriageArgs {
    /// Directories holding bundles, .tar.gz archives of bundles, or report.json files
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object instead of the groups
    #[arg(long)]
    pub json: bool,
    /// Also write the groups as one page to FILE (HTML), each bundle linked to its report.html
    #[arg(long, value_name = "FILE", value_parser = new_file_path)]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Create (or re-create) the lab, and say what to run next
    ///
    /// A veth pair whose ends live in two namespaces (or with --layout one of SPDK's layouts).
    /// A namespace of the lab's names that `lab up` did not make is left alone (exit 2).
    Up(LabArgs),
    /// Remove the lab's namespaces and everything in them
    Down(LabArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LabArgs {
    /// Initiator end, NETNS/IFNAME (the lab never uses tracer's own namespace)
    #[arg(
        long,
        value_name = "SPEC",
        default_value = DEFAULT_LAB_INITIATOR
    )]
    pub initiator: PortSpec,
    /// Target end, NETNS/IFNAME
    #[arg(long, value_name = "SPEC", default_value = DEFAULT_TARGET)]
    pub target: PortSpec,
    /// Initiator address with prefix length
    #[arg(long, value_name = "ADDR/LEN", default_value = "10.0.0.1/24")]
    pub initiator_ip: String,
    /// Target address with prefix length
    #[arg(long, value_name = "ADDR/LEN", default_value = "10.0.0.2/24")]
    pub target_ip: String,
    /// TCP port the SPDK-style iptables ACCEPT rule opens on the initiator
    #[arg(long, visible_alias = "port", value_name = "N", default_value = DEFAULT_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub tcp_port: u16,
    /// SPDK's virtual topology (ports' veth peers in one bridge)
    ///
    /// nvmf_veth_init, NET_TYPE=virt, instead of a direct pair: each port's veth peer
    /// (PORT_br) is a port of one bridge in the initiator's namespace, with an iptables
    /// FORWARD accept for it.
    #[arg(long)]
    pub virt: bool,
    /// The bridge's name, with --virt
    #[arg(
        long,
        value_name = "NAME",
        default_value = "nvmf_br",
        requires = "virt"
    )]
    pub bridge: String,
    /// Build one of SPDK's layouts instead: phy, virt or virt-legacy
    ///
    /// Faithfully (its names, addresses, bridge, ifalias and SPDK_NVMF rules), inside
    /// namespace --netns-root standing for the host's and NETNS_ROOT-<the layout's namespace>.
    #[arg(long, value_name = "NAME",
          conflicts_with_all = ["initiator", "target", "initiator_ip", "target_ip", "virt"])]
    pub layout: Option<LayoutName>,
    /// With --layout: how many pairs (default 2 for the virtual layouts; phy has one)
    #[arg(long, value_name = "N", requires = "layout",
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub pairs: Option<u8>,
    /// With --layout: the namespace standing for the host's
    ///
    /// Give the same --netns-root to the other commands.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "tracer_lab",
        requires = "layout"
    )]
    pub netns_root: String,
}

/// The exit-code tables people read agree with the class table in tracer-evidence.
#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use tracer_evidence::CLASSES;

    use super::Cli;

    fn document(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// The verdicts as "a, b and c" lists them, without ok.
    fn verdict_names() -> Vec<&'static str> {
        CLASSES
            .iter()
            .filter(|info| info.exit_code != 0)
            .map(|info| info.name)
            .collect()
    }

    /// The lowest and highest verdict exit codes, which must leave no gap.
    fn verdict_range() -> (u8, u8) {
        let codes: Vec<u8> = CLASSES
            .iter()
            .map(|info| info.exit_code)
            .filter(|code| *code != 0)
            .collect();
        let (low, high) = (codes[0], codes[codes.len() - 1]);
        assert_eq!(
            usize::from(high - low) + 1,
            codes.len(),
            "exit codes with a gap"
        );
        (low, high)
    }

    /// Every command's `-h`, as a terminal `columns` wide shows it.
    fn short_helps(columns: usize) -> Vec<(String, String)> {
        let mut root = Cli::command().term_width(columns);
        root.build();
        let mut helps = vec![("tracer".to_owned(), root.render_help().to_string())];
        let mut commands: Vec<(String, clap::Command)> = root
            .get_subcommands()
            .map(|command| (command.get_name().to_owned(), command.clone()))
            .collect();
        while let Some((name, mut command)) = commands.pop() {
            commands.extend(
                command
                    .get_subcommands()
                    .map(|sub| (format!("{name} {}", sub.get_name()), sub.clone())),
            );
            helps.push((name, command.render_help().to_string()));
        }
        helps
    }

    /// `-h` is one screen: at most 40 lines, none over 100 columns, on a 100-column terminal.
    #[test]
    fn short_help_fits_a_screen() {
        let helps = short_helps(100);
        assert!(helps.len() > 10, "every command: {helps:?}");
        for (name, help) in helps {
            let lines: Vec<&str> = help.lines().collect();
            assert!(
                lines.len() <= 40,
                "tracer {name} -h is {} lines:\n{help}",
                lines.len()
            );
            if let Some(long) = lines.iter().find(|line| line.chars().count() > 100) {
                panic!("tracer {name} -h has a line over 100 columns: {long}");
            }
        }
    }

    #[test]
    fn diagnose_help_lists_every_class() {
        let mut command = Cli::command();
        let help = command
            .find_subcommand_mut("diagnose")
            .expect("a diagnose command")
            .render_long_help()
            .to_string();
        for info in CLASSES {
            let line = help
                .lines()
                .find(|line| line.trim_start().starts_with(&format!("{} ", info.name)))
                .unwrap_or_else(|| panic!("{} not in diagnose --help:\n{help}", info.name));
            assert!(
                line.split_whitespace().nth(1) == Some(&info.exit_code.to_string()),
                "{line}"
            );
        }
    }

    #[test]
    fn readme_tables_agree() {
        let readme = document("README.md");
        // The verdict table: `| name | code | meaning |`.
        let rows: Vec<(String, u8)> = readme
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let name = *cells.get(1)?;
                let code = cells.get(2)?.parse().ok()?;
                CLASSES
                    .iter()
                    .any(|info| info.name == name)
                    .then(|| (name.to_owned(), code))
            })
            .collect();
        let expected: Vec<(String, u8)> = CLASSES
            .iter()
            .map(|info| (info.name.to_owned(), info.exit_code))
            .collect();
        assert_eq!(rows, expected, "README's verdict table");
        // The exit-code table's row of verdicts: their range and every name.
        let (low, high) = verdict_range();
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| {low}–{high} |")))
            .unwrap_or_else(|| panic!("README has no exit-code row `| {low}–{high} |`"));
        for name in verdict_names() {
            assert!(
                row.contains(name),
                "README's exit-code row lacks {name}: {row}"
            );
        }
    }

    #[test]
    fn schema_lists_every_class_and_exit_code() {
        let schema = document("docs/SCHEMA.md");
        let codes: Vec<String> = CLASSES.iter().map(|i| i.exit_code.to_string()).collect();
        assert!(
            schema.contains(&format!("| `exit_code` | {} |", codes.join(", "))),
            "docs/SCHEMA.md's exit_code row"
        );
        let names: Vec<String> = CLASSES.iter().map(|i| format!("`{}`", i.name)).collect();
        assert!(
            schema.contains(&format!("| `class` | {} |", names.join(", "))),
            "docs/SCHEMA.md's class row"
        );
    }

    #[test]
    fn the_spdk_hook_and_guide_name_the_verdict_range() {
        let (low, high) = verdict_range();
        let hook = document("packaging/spdk/tracer.sh");
        assert!(
            hook.contains(&format!("{low} to {high} a verdict")),
            "tracer.sh"
        );
        let names = verdict_names().join(", ");
        assert!(
            hook.contains(&format!("({names})")),
            "tracer.sh lacks ({names})"
        );
        let guide = document("docs/SPDK.md");
        assert!(
            guide.contains(&format!("{low}–{high} a verdict")),
            "docs/SPDK.md"
        );
    }
}
