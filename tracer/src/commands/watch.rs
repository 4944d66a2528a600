//! `tracer watch -- CMD`: watch both ports while a test runs, follow them wherever the test
//! moves them, and write the root-cause bundle when the test fails.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    path::Path,
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Serialize;
use tracer_common::PacketKind;

use crate::{
    bundle::ReportDir,
    capture::{self, FlightRecorder},
    child,
    cli::{DiagnoseArgs, PortArgs, WatchArgs},
    collect::{
        drops::{DropProbe, RawDrop},
        ebpf_log_level,
        follow::FollowedPort,
        ports::{PortOptions, PortProbe},
    },
    commands::diagnose::{
        self as diagnose_command, environment, inspect_port, netfilter_evidence,
        prepare_report_dir, route_evidence,
    },
    diagnose::{
        DropEvidence, Evidence, NeighbourEvidence, PortEvidence, ProbeEvidence, ProbeKind, Side,
        diagnose,
    },
    evidence::{CountersReport, DropCount, InterfaceCounters, KindCounts, protocol_name},
    locate::Location,
    netfilter::{self, DropHit, Ruleset},
    netlink::{Link, RouteSocket},
    netns, preflight, render,
    spec::PortSpec,
};

/// How often the ports, links, neighbours, counters and drops are looked at.
const TICK: Duration = Duration::from_millis(50);
/// How long after the command exits tracer keeps counting.
const SETTLE: Duration = Duration::from_millis(200);
/// The timeline keeps this many events; later ones are counted, not kept.
const TIMELINE_LIMIT: usize = 10_000;

/// One thing that happened, at `seconds` after tracer started watching.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub seconds: f64,
    /// attach, move, link, neighbour, drop, packets, command.
    pub kind: &'static str,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
    /// Events not kept because the timeline was full.
    pub truncated: u64,
}

impl Timeline {
    fn push(&mut self, seconds: f64, kind: &'static str, message: String) {
        if self.events.len() >= TIMELINE_LIMIT {
            self.truncated += 1;
            return;
        }
        log::info!("+{seconds:.3}s {kind}: {message}");
        self.events.push(TimelineEvent {
            seconds,
            kind,
            message,
        });
    }

    fn sorted(mut self) -> Self {
        self.events.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        self
    }
}

/// First and last time frames of one kind crossed a port in one direction.
#[derive(Debug, Clone, Copy)]
struct Seen {
    first: f64,
    last: f64,
}

/// A configured port and everything watch has learned about it.
struct WatchedPort {
    side: Side,
    spec: PortSpec,
    /// Finds the port wherever it is and keeps it attached.
    follower: FollowedPort,
    /// Every namespace inode and ifindex the port has had: drops there are this port's.
    history: Vec<Location>,
    link: Option<Link>,
    neighbours: HashMap<Ipv4Addr, String>,
    /// First state seen of each neighbour entry, for the before -> after evidence.
    first_neighbours: HashMap<Ipv4Addr, String>,
    /// Counts of earlier attachments (a port deleted and recreated gets new counters).
    carried: (KindCounts, KindCounts),
    /// (ingress, egress) counts of the whole run so far.
    totals: (KindCounts, KindCounts),
    /// First and last time each (kind, direction) crossed the port.
    seen: BTreeMap<(&'static str, &'static str), Seen>,
    recorder: FlightRecorder,
}

impl WatchedPort {
    fn new(side: Side, spec: &PortSpec, options: PortOptions, capture_frames: usize) -> Self {
        let role = if side == Side::Target {
            "target"
        } else {
            "initiator"
        };
        Self {
            side,
            spec: spec.clone(),
            follower: FollowedPort::new(role, spec.clone(), options, None),
            history: Vec::new(),
            link: None,
            neighbours: HashMap::new(),
            first_neighbours: HashMap::new(),
            carried: Default::default(),
            totals: Default::default(),
            seen: BTreeMap::new(),
            recorder: FlightRecorder::new(&spec.interface, capture_frames),
        }
    }

    fn name(&self) -> &str {
        &self.spec.interface
    }

    fn location(&self) -> Option<&Location> {
        self.follower.location()
    }

    fn probe(&self) -> Option<&PortProbe> {
        self.follower.attached().map(|(_, probe)| probe)
    }

    /// The port as found now, as a spec.
    fn current_spec(&self) -> PortSpec {
        PortSpec {
            netns: self
                .location()
                .map_or_else(|| self.spec.netns.clone(), |l| l.netns.clone()),
            interface: self.spec.interface.clone(),
        }
    }
}

/// All the watching state.
struct Watch {
    started: Instant,
    ports: [WatchedPort; 2],
    drops: DropProbe,
    last_drops: HashMap<tracer_common::DropKey, u64>,
    all_drops: HashMap<tracer_common::DropKey, u64>,
    timeline: Timeline,
    clock_offset: i128,
    /// Rulesets of the ports' namespaces before the command started, by name.
    first_rulesets: HashMap<String, Ruleset>,
}

impl Watch {
    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Finds each port, attaching or following it; then reads everything once.
    fn tick(&mut self) {
        for index in 0..self.ports.len() {
            self.follow(index);
            self.observe_link(index);
        }
        let places: Vec<(u32, u32)> = self
            .ports
            .iter()
            .flat_map(|port| &port.history)
            .map(|place| (place.netns_inode, place.ifindex))
            .collect();
        if let Err(err) = self.drops.watch_ports(places) {
            log::warn!("keeping the ports' drops apart: {err:#}");
        }
        self.observe_counters();
        self.observe_drops();
        for port in &mut self.ports {
            port.recorder.drain(self.clock_offset);
        }
    }

    fn follow(&mut self, index: usize) {
        let now = self.seconds();
        let port = &mut self.ports[index];
        let interface = port.spec.interface.clone();
        let refreshed = port.follower.refresh();
        if let Some(old) = refreshed.replaced
            && let Ok(counters) = old.counters()
        {
            // A device deleted and created anew has new counters: keep the old ones' counts.
            port.carried = (
                port.carried.0.plus(&counters.ingress),
                port.carried.1.plus(&counters.egress),
            );
        }
        let location = port.follower.location().cloned();
        match (&refreshed.left, &location) {
            (Some(left), Some(location)) if left.netns != location.netns => {
                self.timeline.push(
                    now,
                    "move",
                    format!(
                        "{interface} moved from {} to {} (ifindex {} -> {})",
                        netns::display_name(&left.netns),
                        netns::display_name(&location.netns),
                        left.ifindex,
                        location.ifindex
                    ),
                );
            }
            (Some(left), None) => {
                self.timeline.push(
                    now,
                    "move",
                    format!(
                        "{interface} disappeared from {}",
                        netns::display_name(&left.netns)
                    ),
                );
                port.link = None;
            }
            _ => {}
        }
        if let Some(location) = &location
            && !port.history.contains(location)
        {
            port.history.push(location.clone());
        }
        if refreshed.attached
            && let Some(location) = &location
            && let Some(probe) = port.follower.probe_mut()
        {
            let hook = probe.ingress_hook.name();
            port.recorder.attach(probe.take_capture());
            self.timeline.push(
                now,
                "attach",
                format!(
                    "{interface} found in {} (ifindex {}): counting ({hook} ingress, tc egress)",
                    netns::display_name(&location.netns),
                    location.ifindex
                ),
            );
        }
    }

    /// Rulesets of the namespaces the ports are in before the command starts: what their
    /// counters held before the run. A namespace that appears later is the run's own, and all
    /// its counts are the run's (a snapshot taken while the run goes on would race with it).
    fn snapshot_rulesets(&mut self) {
        for port in &self.ports {
            if let Some(location) = port.location()
                && !self.first_rulesets.contains_key(&location.netns)
            {
                let ruleset = netfilter::snapshot(&location.netns);
                self.first_rulesets.insert(location.netns.clone(), ruleset);
            }
        }
    }

    fn observe_link(&mut self, index: usize) {
        let now = self.seconds();
        let port = &mut self.ports[index];
        let Some(location) = port.location() else {
            return;
        };
        let Ok(socket) = RouteSocket::open_in(&location.netns) else {
            return;
        };
        let link = socket.link(&port.spec.interface).ok().flatten();
        if let Some(link) = &link {
            let describe = |link: &Link| {
                format!(
                    "{}, carrier {}, operstate {}",
                    if link.admin_up { "up" } else { "down" },
                    u8::from(link.carrier),
                    link.operstate
                )
            };
            let changed = port.link.as_ref().is_none_or(|old| {
                old.admin_up != link.admin_up
                    || old.carrier != link.carrier
                    || old.operstate != link.operstate
            });
            if changed {
                let message = match &port.link {
                    Some(old) => format!(
                        "{}: {} -> {}",
                        port.spec.interface,
                        describe(old),
                        describe(link)
                    ),
                    None => format!("{}: {}", port.spec.interface, describe(link)),
                };
                self.timeline.push(now, "link", message);
            }
            let ifindex = link.ifindex;
            let current: HashMap<Ipv4Addr, String> = socket
                .neighbours()
                .unwrap_or_default()
                .into_iter()
                .filter(|neighbour| neighbour.ifindex == ifindex)
                .map(|neighbour| (neighbour.address, neighbour.state))
                .collect();
            let mut addresses: Vec<&Ipv4Addr> =
                current.keys().chain(port.neighbours.keys()).collect();
            addresses.sort();
            addresses.dedup();
            for address in addresses {
                let (old, new) = (port.neighbours.get(address), current.get(address));
                if old != new {
                    self.timeline.push(
                        now,
                        "neighbour",
                        format!(
                            "{address} on {}: {} -> {}",
                            port.spec.interface,
                            old.map_or("none", String::as_str),
                            new.map_or("none", String::as_str)
                        ),
                    );
                }
            }
            // The state each entry had when first seen ("none" if it appeared while watching).
            let watched_before = port.link.is_some();
            for (address, state) in &current {
                port.first_neighbours.entry(*address).or_insert_with(|| {
                    if watched_before {
                        "none".to_owned()
                    } else {
                        state.clone()
                    }
                });
            }
            port.neighbours = current;
        }
        port.link = link;
    }

    fn observe_counters(&mut self) {
        let now = self.seconds();
        for port in &mut self.ports {
            let Some(probe) = port.probe() else {
                continue;
            };
            let Ok(counters) = probe.counters() else {
                continue;
            };
            let totals = (
                port.carried.0.plus(&counters.ingress),
                port.carried.1.plus(&counters.egress),
            );
            for (direction, before, after) in [
                ("ingress", &port.totals.0, &totals.0),
                ("egress", &port.totals.1, &totals.1),
            ] {
                let delta = after.since(before);
                for kind in PacketKind::ALL {
                    if kind == PacketKind::Other || delta.get(kind) == 0 {
                        continue;
                    }
                    let seen = port.seen.entry((kind.name(), direction)).or_insert(Seen {
                        first: now,
                        last: now,
                    });
                    seen.last = now;
                }
            }
            port.totals = totals;
        }
    }

    /// Which port a drop belongs to, by every place the ports have been.
    fn side_of(&self, key: &tracer_common::DropKey) -> Option<(Side, &WatchedPort)> {
        self.ports.iter().find_map(|port| {
            port.history
                .iter()
                .any(|place| {
                    place.netns_inode == key.netns
                        && (key.ifindex == place.ifindex || key.ifindex == 0)
                })
                .then_some((port.side, port))
        })
    }

    fn observe_drops(&mut self) {
        let now = self.seconds();
        let Ok(drops) = self.drops.drops() else {
            return;
        };
        let mut messages = Vec::new();
        for RawDrop { key, count } in drops {
            let previous = self.last_drops.insert(key, count).unwrap_or(0);
            let delta = count.saturating_sub(previous);
            if delta == 0 {
                continue;
            }
            let Some(port_name) = self.side_of(&key).map(|(_, port)| port.name().to_owned()) else {
                continue;
            };
            *self.all_drops.entry(key).or_default() += delta;
            let reason = self.drops.reason_of(&key);
            let protocol = protocol_name(key.protocol);
            // IPv6 neighbour discovery on fresh interfaces and socket teardown are noise.
            if matches!(protocol.as_str(), "ipv6" | "none") || reason == "QUEUE_PURGE" {
                continue;
            }
            let place = if key.ifindex == 0 {
                format!("a local socket beside {port_name}")
            } else {
                port_name
            };
            messages.push(format!("{delta} x {reason} ({protocol}) on {place}"));
        }
        for message in messages {
            self.timeline.push(now, "drop", message);
        }
    }

    /// The netfilter rulesets of the namespaces the ports are in now, each read once.
    fn final_rulesets(&self) -> BTreeMap<String, Ruleset> {
        let mut rulesets = BTreeMap::new();
        for port in &self.ports {
            if let Some(location) = port.location() {
                rulesets
                    .entry(location.netns.clone())
                    .or_insert_with(|| netfilter::snapshot(&location.netns));
            }
        }
        rulesets
    }

    /// What the kernel programs could not record: drops (map full) and frames (ring full).
    fn lost_events(&self) -> u64 {
        let drops = self.drops.lost_events().unwrap_or(0);
        let frames: u64 = self
            .ports
            .iter()
            .filter_map(|port| port.probe()?.capture_lost().ok())
            .sum();
        drops + frames
    }

    fn drop_evidence(&self) -> Vec<DropEvidence> {
        let names = netns::netns_names();
        let mut evidence: Vec<DropEvidence> = self
            .all_drops
            .iter()
            .filter_map(|(key, count)| {
                let (side, port) = self.side_of(key)?;
                let place = port
                    .history
                    .iter()
                    .find(|place| place.netns_inode == key.netns)?;
                Some(DropEvidence {
                    side,
                    drop: DropCount {
                        netns: names
                            .get(&key.netns)
                            .cloned()
                            .unwrap_or_else(|| place.netns.clone()),
                        interface: if key.ifindex == 0 {
                            String::new()
                        } else {
                            port.spec.interface.clone()
                        },
                        ifindex: key.ifindex,
                        reason: self.drops.reason_of(key),
                        location: self.drops.location_of(key),
                        protocol: protocol_name(key.protocol),
                        count: *count,
                    },
                })
            })
            .collect();
        evidence.sort_by_key(|drop| std::cmp::Reverse(drop.drop.count));
        evidence
    }
}

/// The test's own traffic as probe ladders: what left one port, reached the other, and came
/// back, for each kind of exchange that happened at all.
fn passive_probes(initiator: &WatchedPort, target: &WatchedPort) -> Vec<ProbeEvidence> {
    let exchanges: [(ProbeKind, Side, &[PacketKind], &[PacketKind]); 5] = [
        (
            ProbeKind::Arp,
            Side::Initiator,
            &[PacketKind::ArpRequest],
            &[PacketKind::ArpReply],
        ),
        (
            ProbeKind::Arp,
            Side::Target,
            &[PacketKind::ArpRequest],
            &[PacketKind::ArpReply],
        ),
        (
            ProbeKind::IcmpForward,
            Side::Initiator,
            &[PacketKind::IcmpEchoRequest],
            &[PacketKind::IcmpEchoReply],
        ),
        (
            ProbeKind::IcmpReverse,
            Side::Target,
            &[PacketKind::IcmpEchoRequest],
            &[PacketKind::IcmpEchoReply],
        ),
        (
            ProbeKind::Tcp,
            Side::Initiator,
            &[PacketKind::TcpSyn],
            &[PacketKind::TcpSynAck, PacketKind::TcpRst],
        ),
    ];
    exchanges
        .into_iter()
        .filter_map(|(kind, from, requests, answers)| {
            let (origin, peer) = if from == Side::Target {
                (target.totals, initiator.totals)
            } else {
                (initiator.totals, target.totals)
            };
            let left_origin = origin.1.sum_of(requests);
            if left_origin == 0 {
                return None;
            }
            let answer_reached_origin = origin.0.sum_of(answers);
            Some(ProbeEvidence {
                kind,
                from,
                outcome: crate::probes::ProbeOutcome {
                    sent: left_origin.min(u64::from(u32::MAX)) as u32,
                    answered: answer_reached_origin.min(left_origin) as u32,
                    ..Default::default()
                },
                skipped: None,
                left_origin,
                reached_peer: peer.0.sum_of(requests),
                answer_left_peer: peer.1.sum_of(answers),
                answer_reached_origin,
            })
        })
        .collect()
}

/// Dropping rules whose counters grew since `before`, counting in full the rules of chains
/// `before` did not have (a namespace or table made while watching, or no `before` at all).
fn counted_drops(before: Option<&Ruleset>, after: &Ruleset) -> Vec<DropHit> {
    let empty = Ruleset::default();
    let before = before.unwrap_or(&empty);
    let mut hits = before.drop_hits(after);
    let known = |backend, family: &str, table: &str, chain: &str| {
        before.chains.iter().any(|known| {
            known.backend == backend
                && known.family == family
                && known.table == table
                && known.name == chain
        })
    };
    let new_rules = after
        .rules
        .iter()
        .filter(|rule| rule.drops && rule.packets.unwrap_or(0) > 0)
        .filter(|rule| !known(rule.backend, &rule.family, &rule.table, &rule.chain))
        .map(|rule| rule.hit(rule.packets.unwrap_or(0)));
    let new_policies = after
        .chains
        .iter()
        .filter(|chain| chain.policy_drop && chain.policy_packets.unwrap_or(0) > 0)
        .filter(|chain| !known(chain.backend, &chain.family, &chain.table, &chain.name))
        .map(|chain| chain.policy_hit(chain.policy_packets.unwrap_or(0)));
    for hit in new_rules.chain(new_policies) {
        if !hits.contains(&hit) {
            hits.push(hit);
        }
    }
    hits
}

#[derive(Debug, Serialize)]
struct CommandReport {
    argv: Vec<String>,
    exit_code: i32,
}

#[derive(Debug, Serialize)]
struct CaptureReport {
    file: &'static str,
    frames: usize,
    /// Frames pushed out of the flight recorder (it keeps the last N per port).
    evicted: u64,
    /// Frames and drops the kernel programs saw but could not record (ring buffer or map
    /// full).
    lost_events: u64,
}

#[derive(Debug, Serialize)]
struct WatchReport<'a> {
    #[serde(flatten)]
    diagnosis: render::diagnose::Report<'a>,
    timeline: &'a Timeline,
    command: CommandReport,
    capture: CaptureReport,
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

pub fn run(args: &WatchArgs, verbosity: u8) -> anyhow::Result<u8> {
    preflight::check()?;
    child::check(&args.command)?;
    prepare_report_dir(&args.report)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = PortOptions {
        watched_port: args.ports.port,
        capture: true,
        log_level: ebpf_log_level(verbosity),
        ingress: args.ports.ingress_hook,
    };
    let drops = DropProbe::attach(&options.log_level)?;
    let mut watch = Watch {
        started: Instant::now(),
        ports: [
            WatchedPort::new(
                Side::Initiator,
                &args.ports.initiator,
                options,
                args.capture_frames,
            ),
            WatchedPort::new(
                Side::Target,
                &args.ports.target,
                options,
                args.capture_frames,
            ),
        ],
        drops,
        last_drops: HashMap::new(),
        all_drops: HashMap::new(),
        timeline: Timeline::default(),
        clock_offset: capture::monotonic_to_unix_ns(),
        first_rulesets: HashMap::new(),
    };
    // Drops counted before the command starts are not the command's.
    watch.last_drops = watch
        .drops
        .drops()?
        .into_iter()
        .map(|drop| (drop.key, drop.count))
        .collect();
    watch.tick();
    watch.snapshot_rulesets();
    for port in &watch.ports {
        if port.probe().is_none() {
            log::warn!(
                "{} not found yet: waiting for it to appear (in any namespace)",
                port.spec
            );
        }
    }

    let status = runtime.block_on(async {
        let mut signals = child::Signals::install().context("installing signal handlers")?;
        if let Some(path) = &args.ready_file {
            super::write_ready_file(path)?;
        }
        let mut child = child::spawn(&args.command, Duration::from_secs(args.kill_after))?;
        let started = watch.seconds();
        watch.timeline.push(
            started,
            "command",
            format!("started: {}", args.command.join(" ")),
        );
        let mut ticks = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                status = child.wait() => break status.context("waiting for the command"),
                _ = ticks.tick() => watch.tick(),
                number = signals.recv() => child.forward(number),
            }
        }
    })?;
    // Answers to the command's last requests may still be in flight: let them land before
    // the last look, or a healthy run would show an unanswered request.
    std::thread::sleep(SETTLE);
    watch.tick();
    let code = exit_code(status);
    watch
        .timeline
        .push(watch.seconds(), "command", format!("exited with {code}"));

    let failed = code != 0;
    let write_bundle_now = failed || args.always;
    // Read once, for the passive evidence and for the bundle's snapshots.
    let final_rulesets = if args.probe && !write_bundle_now {
        BTreeMap::new()
    } else {
        watch.final_rulesets()
    };
    let evidence = if args.probe {
        let probe_args = DiagnoseArgs {
            ports: PortArgs {
                initiator: watch.ports[0].current_spec(),
                target: watch.ports[1].current_spec(),
                port: args.ports.port,
                ingress_hook: args.ports.ingress_hook,
            },
            initiator_ip: args.initiator_ip,
            target_ip: args.target_ip,
            json: false,
            report: None,
            ready_file: None,
        };
        let mut evidence = diagnose_command::gather(&probe_args, verbosity)?;
        evidence.drops.extend(watch.drop_evidence());
        evidence
    } else {
        passive_evidence(&watch, args, &final_rulesets)
    };
    let verdict = diagnose(&evidence);
    for port in &watch.ports {
        for ((kind, direction), seen) in &port.seen {
            watch.timeline.push(
                seen.first,
                "packets",
                format!("first {kind} {direction} on {}", port.name()),
            );
            if seen.last > seen.first {
                watch.timeline.push(
                    seen.last,
                    "packets",
                    format!("last {kind} {direction} on {}", port.name()),
                );
            }
        }
    }
    let timeline = std::mem::take(&mut watch.timeline).sorted();
    let signature = verdict.signature(&evidence);
    eprintln!(
        "tracer: verdict {} ({signature}): {}",
        verdict.class.name(),
        verdict.summary
    );
    if write_bundle_now {
        write_bundle(
            &args.report,
            &verdict,
            &evidence,
            &timeline,
            CommandReport {
                argv: args.command.clone(),
                exit_code: code,
            },
            &watch,
            &final_rulesets,
        )?;
        eprintln!("tracer: report in {}", args.report.display());
    }
    drop(watch);
    Ok(u8::try_from(code).unwrap_or(1))
}

fn port_evidence(port: &WatchedPort) -> PortEvidence {
    let ours = port.probe().map(PortProbe::program_ids).unwrap_or_default();
    inspect_port(&port.current_spec(), port.side, &ours)
}

fn passive_evidence(
    watch: &Watch,
    args: &WatchArgs,
    final_rulesets: &BTreeMap<String, Ruleset>,
) -> Evidence {
    let [initiator, target] = &watch.ports;
    let initiator_evidence = port_evidence(initiator);
    let target_evidence = port_evidence(target);
    let routes = if initiator_evidence.link.is_some() && target_evidence.link.is_some() {
        vec![
            route_evidence(&initiator_evidence, args.target_ip),
            route_evidence(&target_evidence, args.initiator_ip),
        ]
    } else {
        Vec::new()
    };
    let drops = watch.drop_evidence();
    let netfilter = watch
        .ports
        .iter()
        .filter_map(|port| {
            let location = port.location()?;
            let after = final_rulesets.get(&location.netns)?;
            let counted = counted_drops(watch.first_rulesets.get(&location.netns), after);
            let dropped: Vec<&DropEvidence> = drops
                .iter()
                .filter(|drop| drop.side == port.side && drop.drop.reason == "NETFILTER_DROP")
                .collect();
            Some(netfilter_evidence(
                port.side,
                &location.netns,
                &dropped,
                counted,
                after,
            ))
        })
        .flatten()
        .collect();
    let neighbours = watch
        .ports
        .iter()
        .flat_map(|port| {
            let netns = port
                .location()
                .map(|location| location.netns.clone())
                .unwrap_or_default();
            let mut addresses: Vec<&Ipv4Addr> = port
                .first_neighbours
                .keys()
                .chain(port.neighbours.keys())
                .collect();
            addresses.sort();
            addresses.dedup();
            addresses
                .into_iter()
                .map(|address| NeighbourEvidence {
                    side: port.side,
                    netns: netns.clone(),
                    address: *address,
                    before: port.first_neighbours.get(address).cloned(),
                    after: port.neighbours.get(address).cloned(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut environment = environment(args.initiator_ip, args.target_ip, args.ports.port);
    environment.limitations.extend(watch.drops.limitation());
    if watch.ports.iter().all(|port| port.seen.is_empty()) {
        environment
            .limitations
            .push("no ARP, ICMP or port traffic crossed the ports: pass --probe to probe".into());
    }
    Evidence {
        initiator: initiator_evidence,
        target: target_evidence,
        routes,
        probes: passive_probes(initiator, target),
        drops,
        netfilter,
        neighbours,
        counters: Some(run_counters(watch)),
        environment,
    }
}

/// What crossed each port over the whole run, wherever it was.
fn run_counters(watch: &Watch) -> CountersReport {
    let interfaces = watch
        .ports
        .iter()
        .map(|port| InterfaceCounters {
            netns: port.location().map_or_else(
                || port.spec.netns.clone(),
                |location| location.netns.clone(),
            ),
            interface: port.spec.interface.clone(),
            ingress_hook: port
                .probe()
                .map_or("none", |probe| probe.ingress_hook.name())
                .to_owned(),
            ingress: port.totals.0,
            egress: port.totals.1,
        })
        .collect();
    CountersReport {
        interfaces,
        drops: Vec::new(),
        other_drops: Vec::new(),
        lost_events: watch.lost_events(),
    }
}

/// report.md, report.json, capture.pcapng and a snapshot of each namespace.
fn write_bundle(
    dir: &Path,
    verdict: &crate::diagnose::Verdict,
    evidence: &Evidence,
    timeline: &Timeline,
    command: CommandReport,
    watch: &Watch,
    final_rulesets: &BTreeMap<String, Ruleset>,
) -> anyhow::Result<()> {
    let dir = ReportDir::open(dir)?;
    let write = |name: &str, bytes: &[u8]| dir.write(name, bytes);
    let recorders = [&watch.ports[0].recorder, &watch.ports[1].recorder];
    let frames = recorders.iter().map(|r| r.frames().count()).sum();
    let evicted = recorders.iter().map(|r| r.evicted).sum();
    let report = WatchReport {
        diagnosis: render::diagnose::Report::new(verdict, evidence),
        timeline,
        command,
        capture: CaptureReport {
            file: "capture.pcapng",
            frames,
            evicted,
            lost_events: watch.lost_events(),
        },
    };
    let mut markdown = render::diagnose::markdown(&report.diagnosis);
    markdown.push_str(&format!(
        "\n## Command\n\n- `{}` exited with {}\n",
        report.command.argv.join(" "),
        report.command.exit_code
    ));
    markdown.push_str("\n## Timeline\n\n| time | what | event |\n|---|---|---|\n");
    for event in &timeline.events {
        markdown.push_str(&format!(
            "| +{:.3}s | {} | {} |\n",
            event.seconds,
            event.kind,
            // One table row per event, whatever the message holds.
            event.message.replace('|', "\\|").replace('\n', "; ")
        ));
    }
    if timeline.truncated > 0 {
        markdown.push_str(&format!(
            "\n{} later events not kept.\n",
            timeline.truncated
        ));
    }
    markdown.push_str(&format!(
        "\n## Capture\n\n`capture.pcapng`: the last {frames} ARP, ICMP and port frames of both ports ({evicted} older ones not kept); `tcpdump -r capture.pcapng` or Wireshark. Events lost in the kernel programs: {}.\n",
        report.capture.lost_events
    ));
    write("report.md", markdown.as_bytes())?;
    write(
        "report.json",
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    write("capture.pcapng", &capture::pcapng(&recorders))?;

    let snapshots = dir.subdirectory("snapshot")?;
    for (netns, ruleset) in final_rulesets {
        let file = if netns.is_empty() {
            "own-namespace.txt".to_owned()
        } else {
            format!("{netns}.txt")
        };
        snapshots.write(&file, namespace_snapshot(netns, ruleset).as_bytes())?;
    }
    Ok(())
}

/// Addresses, routes, neighbours and the netfilter ruleset of one namespace, as text.
fn namespace_snapshot(netns: &str, ruleset: &Ruleset) -> String {
    let mut out = format!("# namespace {}\n", netns::display_name(netns));
    for (title, args) in [
        ("addresses", &["addr", "show"][..]),
        ("routes", &["route", "show", "table", "all"][..]),
        ("neighbours", &["neigh", "show"][..]),
    ] {
        let mut command = std::process::Command::new("ip");
        if !netns.is_empty() {
            command.args(["-n", netns]);
        }
        let output = command.args(args).output();
        out.push_str(&format!("\n## {title} (ip {})\n", args.join(" ")));
        match output {
            Ok(output) => out.push_str(&String::from_utf8_lossy(&output.stdout)),
            Err(err) => out.push_str(&format!("(ip failed: {err})\n")),
        }
    }
    out.push_str("\n## netfilter rules (backend family table chain: rule [packets])\n");
    for chain in &ruleset.chains {
        if chain.policy_drop {
            out.push_str(&format!(
                "{:?} {} {} {}: policy drop [{}]\n",
                chain.backend,
                chain.family,
                chain.table,
                chain.name,
                chain
                    .policy_packets
                    .map_or_else(|| "-".to_owned(), |p| p.to_string())
            ));
        }
    }
    for rule in &ruleset.rules {
        out.push_str(&format!(
            "{:?} {} {} {}: {} [{}]\n",
            rule.backend,
            rule.family,
            rule.table,
            rule.chain,
            rule.text,
            rule.packets
                .map_or_else(|| "-".to_owned(), |p| p.to_string())
        ));
    }
    for error in &ruleset.errors {
        out.push_str(&format!("note: {error}\n"));
    }
    out
}
