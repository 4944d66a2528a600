//! `tracer diagnose`: inspect both ports, probe the path, gather the evidence, classify.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    time::Duration,
};

use tracer_common::PacketKind;

use crate::{
    bundle::ReportDir,
    cli::DiagnoseArgs,
    collect::{
        drops::RawDrop,
        ebpf_log_level,
        ports::{PortOptions, PortProbe},
        programs,
    },
    diagnose::{
        DropEvidence, Environment, Evidence, NeighbourEvidence, NetfilterEvidence,
        NetfilterLocation, PortEvidence, ProbeEvidence, ProbeKind, RouteEvidence, Side, diagnose,
    },
    error::UsageError,
    evidence::{InterfaceCounters, KindCounts},
    lock::{self, PortLocks},
    netfilter::{self, Ruleset},
    netlink::{RouteLookup, RouteSocket},
    netns, output, preflight, probes, render,
    session::Session,
    spec::PortSpec,
};

const ARP_PROBES: u32 = 3;
const ECHO_PROBES: u32 = 5;
const TCP_PROBES: u32 = 3;
/// One SYN and its first retransmission's worth of waiting is enough on a loop.
const TCP_TIMEOUT: Duration = Duration::from_millis(1000);

pub fn run(args: &DiagnoseArgs, verbosity: u8) -> anyhow::Result<u8> {
    preflight::check()?;
    if let Some(dir) = &args.report {
        prepare_report_dir(dir)?;
    }
    let evidence = gather(args, verbosity)?;
    if let Some(path) = &args.ready_file
        && !path.exists()
    {
        // Nothing was attached (the ports were unusable): ready all the same, for scripts.
        super::write_ready_file(path)?;
    }

    let verdict = diagnose(&evidence);
    let report = render::diagnose::Report::new(&verdict, &evidence);
    if args.json {
        output::print_line(&serde_json::to_string(&report)?)?;
    } else {
        output::print(&render::diagnose::text(
            &report,
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ))?;
    }
    if let Some(dir) = &args.report {
        let dir = ReportDir::open(dir)?;
        dir.write("report.md", render::diagnose::markdown(&report).as_bytes())?;
        dir.write(
            "report.json",
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )?;
    }
    Ok(verdict.class.exit_code())
}

/// The environment part of the evidence.
pub fn environment(initiator_ip: Ipv4Addr, target_ip: Ipv4Addr, port: u16) -> Environment {
    Environment {
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_default(),
        tracer_version: env!("CARGO_PKG_VERSION").to_owned(),
        initiator_ip: initiator_ip.to_string(),
        target_ip: target_ip.to_string(),
        port,
        limitations: Vec::new(),
    }
}

/// Inspects both ports and, when they are usable and routed, probes the path.
pub fn gather(args: &DiagnoseArgs, verbosity: u8) -> anyhow::Result<Evidence> {
    // One run at a time on these ports: their probes and neighbour entries would mix.
    let _locks = PortLocks::acquire(&[&args.ports.initiator, &args.ports.target], lock::WAIT)?;
    let mut evidence = Evidence {
        initiator: inspect_port(&args.ports.initiator, Side::Initiator, &[]),
        target: inspect_port(&args.ports.target, Side::Target, &[]),
        routes: Vec::new(),
        probes: Vec::new(),
        drops: Vec::new(),
        netfilter: Vec::new(),
        neighbours: Vec::new(),
        counters: None,
        environment: environment(args.initiator_ip, args.target_ip, args.ports.port),
    };
    // Probing a missing port or an unroutable address says nothing more: classify now.
    let usable = |port: &PortEvidence| port.link.as_ref().is_some_and(|link| link.admin_up);
    if usable(&evidence.initiator) && usable(&evidence.target) {
        evidence.routes = vec![
            route_evidence(&evidence.initiator, args.target_ip),
            route_evidence(&evidence.target, args.initiator_ip),
        ];
        let initiator_routed = evidence.routes.iter().any(|route| {
            route.from == Side::Initiator
                && matches!(route.lookup, RouteLookup::Via { .. })
                && route.via_port
        });
        if initiator_routed {
            probe_path(args, verbosity, &mut evidence)?;
        }
    }
    Ok(evidence)
}

/// Creates the report directory up front, so that an unwritable one fails before probing.
pub fn prepare_report_dir(dir: &Path) -> Result<(), UsageError> {
    ReportDir::create(dir).map(drop)
}

/// What is at `spec`; `ours` are the ids of tracer's own programs, left out of the port's
/// attached programs.
pub fn inspect_port(spec: &PortSpec, side: Side, ours: &[u32]) -> PortEvidence {
    let mut evidence = PortEvidence {
        side,
        netns: spec.netns.clone(),
        interface: spec.interface.clone(),
        netns_exists: spec.netns.is_empty() || netns::netns_path(&spec.netns).exists(),
        link: None,
        found_elsewhere: Vec::new(),
        addresses: Vec::new(),
        programs: Vec::new(),
    };
    if evidence.netns_exists
        && let Ok(socket) = RouteSocket::open_in(&spec.netns)
    {
        evidence.link = socket.link(&spec.interface).ok().flatten();
        if let Some(link) = &evidence.link {
            evidence.addresses = socket
                .addresses()
                .unwrap_or_default()
                .into_iter()
                .filter(|address| address.ifindex == link.ifindex)
                .map(|address| format!("{}/{}", address.address, address.prefix_len))
                .collect();
            evidence.programs = programs::attached_programs(&spec.netns, &spec.interface, ours);
        }
    }
    if evidence.link.is_none() {
        evidence.found_elsewhere = namespaces_holding(&spec.interface, &spec.netns);
    }
    evidence
}

/// Every namespace (by name; "" for tracer's own) with an interface called `interface`.
fn namespaces_holding(interface: &str, except: &str) -> Vec<String> {
    let mut names: Vec<String> = netns::netns_names().into_values().collect();
    names.sort();
    names
        .into_iter()
        .filter(|name| name != except)
        .filter(|name| {
            RouteSocket::open_in(name)
                .ok()
                .and_then(|socket| socket.link(interface).ok().flatten())
                .is_some()
        })
        .collect()
}

pub fn route_evidence(from: &PortEvidence, destination: Ipv4Addr) -> RouteEvidence {
    let port_index = from.link.as_ref().map(|link| link.ifindex);
    let lookup_and_links = RouteSocket::open_in(&from.netns).and_then(|socket| {
        let lookup = socket.route_get(destination)?;
        let links = socket.links()?;
        Ok((lookup, links))
    });
    match lookup_and_links {
        Ok((lookup, links)) => {
            let oif = match &lookup {
                RouteLookup::Via { oif, .. } => Some(*oif),
                RouteLookup::Unreachable { .. } => None,
            };
            RouteEvidence {
                from: from.side,
                destination,
                via_interface: oif.and_then(|oif| {
                    links
                        .iter()
                        .find(|link| link.ifindex == oif)
                        .map(|link| link.name.clone())
                }),
                via_port: oif.is_some() && oif == port_index,
                lookup,
            }
        }
        Err(err) => RouteEvidence {
            from: from.side,
            destination,
            lookup: RouteLookup::Unreachable {
                errno: 0,
                message: format!("route lookup failed: {err:#}"),
            },
            via_interface: None,
            via_port: false,
        },
    }
}

/// Counters and drops at one moment.
struct Snapshot {
    ports: Vec<InterfaceCounters>,
    drops: Vec<RawDrop>,
}

fn snapshot(session: &Session) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        ports: session
            .ports
            .iter()
            .map(|port| port.counters())
            .collect::<anyhow::Result<_>>()?,
        drops: session.drops.drops()?,
    })
}

/// What crossed the watched ports between two snapshots.
struct Crossings {
    initiator: (KindCounts, KindCounts),
    target: (KindCounts, KindCounts),
}

impl Crossings {
    fn between(before: &Snapshot, after: &Snapshot) -> Self {
        let delta = |index: usize| {
            let (b, a) = (&before.ports[index], &after.ports[index]);
            (a.ingress.since(&b.ingress), a.egress.since(&b.egress))
        };
        Self {
            initiator: delta(0),
            target: delta(1),
        }
    }

    /// (ingress, egress) of the side a probe starts from, then of its peer.
    fn ends(&self, from: Side) -> (&(KindCounts, KindCounts), &(KindCounts, KindCounts)) {
        if from == Side::Target {
            (&self.target, &self.initiator)
        } else {
            (&self.initiator, &self.target)
        }
    }

    /// Fills a probe's ladder: request kinds out of the origin and into the peer, answer kinds
    /// out of the peer and back into the origin.
    fn ladder(&self, probe: &mut ProbeEvidence, requests: &[PacketKind], answers: &[PacketKind]) {
        let (origin, peer) = self.ends(probe.from);
        probe.left_origin = origin.1.sum_of(requests);
        probe.reached_peer = peer.0.sum_of(requests);
        probe.answer_left_peer = peer.1.sum_of(answers);
        probe.answer_reached_origin = origin.0.sum_of(answers);
    }
}

fn probe_evidence(kind: ProbeKind, from: Side, outcome: probes::ProbeOutcome) -> ProbeEvidence {
    ProbeEvidence {
        kind,
        from,
        outcome,
        skipped: None,
        left_origin: 0,
        reached_peer: 0,
        answer_left_peer: 0,
        answer_reached_origin: 0,
    }
}

fn skipped(kind: ProbeKind, from: Side, why: &str) -> ProbeEvidence {
    ProbeEvidence {
        skipped: Some(why.to_owned()),
        ..probe_evidence(kind, from, probes::ProbeOutcome::default())
    }
}

fn neighbour_state(netns: &str, ifindex: u32, address: Ipv4Addr) -> Option<String> {
    RouteSocket::open_in(netns)
        .ok()?
        .neighbours()
        .ok()?
        .into_iter()
        .find(|neighbour| neighbour.ifindex == ifindex && neighbour.address == address)
        .map(|neighbour| neighbour.state)
}

/// Removes a neighbour entry the probes created, so the table is left as it was found.
fn forget_neighbour(netns: &str, interface: &str, address: Ipv4Addr) {
    let mut command = std::process::Command::new("ip");
    if !netns.is_empty() {
        command.args(["-n", netns]);
    }
    let address = address.to_string();
    match command
        .args(["neigh", "del", &address, "dev", interface])
        .output()
    {
        Ok(output) if output.status.success() => {}
        Ok(output) => log::warn!(
            "could not remove the neighbour entry {address} the probes created on {interface}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(err) => log::warn!("could not run ip to remove neighbour {address}: {err}"),
    }
}

/// Rulesets of both namespaces, read in parallel.
fn rulesets(initiator: &str, target: &str) -> (Ruleset, Ruleset) {
    let (initiator, target) = (initiator.to_owned(), target.to_owned());
    let target_thread = std::thread::spawn(move || netfilter::snapshot(&target));
    let initiator = netfilter::snapshot(&initiator);
    let target = target_thread.join().unwrap_or_default();
    (initiator, target)
}

fn probe_path(args: &DiagnoseArgs, verbosity: u8, evidence: &mut Evidence) -> anyhow::Result<()> {
    let options = PortOptions {
        watched_port: args.ports.port,
        capture: false,
        log_level: ebpf_log_level(verbosity),
        ingress: args.ports.ingress_hook,
    };
    let session = Session::attach(&[&args.ports.initiator, &args.ports.target], &options)?;
    if let Some(path) = &args.ready_file {
        super::write_ready_file(path)?;
    }
    let (initiator, target) = (&args.ports.initiator, &args.ports.target);
    let initiator_index = session.ports[0].ifindex;
    let target_index = session.ports[1].ifindex;
    let neighbours_before = [
        neighbour_state(&initiator.netns, initiator_index, args.target_ip),
        neighbour_state(&target.netns, target_index, args.initiator_ip),
    ];
    let rulesets_before = rulesets(&initiator.netns, &target.netns);

    // Phase 1: ARP alone, so that the kernel's own resolution does not mix in.
    let start = snapshot(&session)?;
    let arp = probes::finish(probes::arp(
        &initiator.netns,
        &initiator.interface,
        args.initiator_ip,
        args.target_ip,
        ARP_PROBES,
    ));
    let after_arp = snapshot(&session)?;
    let mut arp = probe_evidence(ProbeKind::Arp, Side::Initiator, arp);
    Crossings::between(&start, &after_arp).ladder(
        &mut arp,
        &[PacketKind::ArpRequest],
        &[PacketKind::ArpReply],
    );

    // Phase 2: ICMP both ways and TCP together; their packet kinds and directions keep them
    // apart in the counters.
    let mut phase_two = if arp.outcome.answered == 0 {
        let why = format!("ARP for {} was not answered", args.target_ip);
        vec![
            skipped(ProbeKind::IcmpForward, Side::Initiator, &why),
            skipped(ProbeKind::IcmpReverse, Side::Target, &why),
            skipped(ProbeKind::Tcp, Side::Initiator, &why),
        ]
    } else {
        let forward = probes::echo(&initiator.netns, args.target_ip, ECHO_PROBES);
        let reverse = probes::echo(&target.netns, args.initiator_ip, ECHO_PROBES);
        let tcp = probes::tcp(
            &initiator.netns,
            SocketAddrV4::new(args.target_ip, args.ports.port),
            TCP_PROBES,
            TCP_TIMEOUT,
        );
        vec![
            probe_evidence(
                ProbeKind::IcmpForward,
                Side::Initiator,
                probes::finish(forward),
            ),
            probe_evidence(
                ProbeKind::IcmpReverse,
                Side::Target,
                probes::finish(reverse),
            ),
            probe_evidence(ProbeKind::Tcp, Side::Initiator, probes::finish(tcp)),
        ]
    };
    let end = snapshot(&session)?;
    let crossings = Crossings::between(&after_arp, &end);
    for probe in phase_two.iter_mut().filter(|probe| probe.skipped.is_none()) {
        let (requests, answers): (&[PacketKind], &[PacketKind]) = match probe.kind {
            ProbeKind::Tcp => (
                &[PacketKind::TcpSyn],
                &[PacketKind::TcpSynAck, PacketKind::TcpRst],
            ),
            _ => (&[PacketKind::IcmpEchoRequest], &[PacketKind::IcmpEchoReply]),
        };
        crossings.ladder(probe, requests, answers);
    }
    evidence.probes = std::iter::once(arp).chain(phase_two).collect();

    let rulesets_after = rulesets(&initiator.netns, &target.netns);
    let names = netns::netns_names();
    let side_of = |inode: u32| {
        if inode == session.ports[1].netns_inode && inode != session.ports[0].netns_inode {
            Some(Side::Target)
        } else if inode == session.ports[0].netns_inode {
            Some(Side::Initiator)
        } else {
            None
        }
    };
    evidence.drops = drops_between(&start.drops, &end.drops)
        .into_iter()
        .filter_map(|raw| {
            let side = side_of(raw.key.netns)?;
            Some(DropEvidence {
                side,
                drop: session.name_drop(&raw, &names),
            })
        })
        .collect();
    evidence.netfilter = [
        (
            Side::Initiator,
            &initiator.netns,
            &rulesets_before.0,
            &rulesets_after.0,
        ),
        (
            Side::Target,
            &target.netns,
            &rulesets_before.1,
            &rulesets_after.1,
        ),
    ]
    .into_iter()
    .flat_map(|(side, netns, before, after)| {
        let dropped: Vec<&DropEvidence> = evidence
            .drops
            .iter()
            .filter(|drop| drop.side == side && drop.drop.reason == "NETFILTER_DROP")
            .collect();
        netfilter_evidence(side, netns, &dropped, before.drop_hits(after), after)
    })
    .collect();
    for ruleset in [&rulesets_before.0, &rulesets_before.1] {
        evidence
            .environment
            .limitations
            .extend(ruleset.errors.iter().map(|err| format!("ruleset: {err}")));
    }
    evidence
        .environment
        .limitations
        .extend(session.drops.limitation());
    evidence.neighbours = vec![
        NeighbourEvidence {
            side: Side::Initiator,
            netns: initiator.netns.clone(),
            address: args.target_ip,
            before: neighbours_before[0].clone(),
            after: neighbour_state(&initiator.netns, initiator_index, args.target_ip),
        },
        NeighbourEvidence {
            side: Side::Target,
            netns: target.netns.clone(),
            address: args.initiator_ip,
            before: neighbours_before[1].clone(),
            after: neighbour_state(&target.netns, target_index, args.initiator_ip),
        },
    ];
    for neighbour in &evidence.neighbours {
        if neighbour.before.is_none() && neighbour.after.is_some() {
            let interface = if neighbour.side == Side::Target {
                &target.interface
            } else {
                &initiator.interface
            };
            forget_neighbour(&neighbour.netns, interface, neighbour.address);
        }
    }
    // Carrier may have changed while probing; what it is now is what the verdict needs.
    let ours: Vec<u32> = session
        .ports
        .iter()
        .flat_map(PortProbe::program_ids)
        .collect();
    evidence.initiator = inspect_port(initiator, Side::Initiator, &ours);
    evidence.target = inspect_port(target, Side::Target, &ours);
    evidence.counters = Some(session.counters_report()?);
    Ok(())
}

fn drops_between(before: &[RawDrop], after: &[RawDrop]) -> Vec<RawDrop> {
    let before: HashMap<_, _> = before.iter().map(|drop| (drop.key, drop.count)).collect();
    after
        .iter()
        .filter_map(|drop| {
            let count = drop.count - before.get(&drop.key).copied().unwrap_or(0).min(drop.count);
            (count > 0).then_some(RawDrop {
                key: drop.key,
                count,
            })
        })
        .collect()
}

/// The rules behind netfilter drops in one namespace, found by reading rule counters only:
/// `counted`, the rules (or drop policies) whose counters grew; failing that, the dropping
/// rules without counters in chains that could have seen the dropped packets.
pub fn netfilter_evidence(
    side: Side,
    netns: &str,
    dropped: &[&DropEvidence],
    counted: Vec<netfilter::DropHit>,
    after: &Ruleset,
) -> Vec<NetfilterEvidence> {
    let evidence = |hit: netfilter::DropHit, found_by: &str| {
        let rule = hit
            .rule
            .unwrap_or_else(|| format!("policy drop of chain {}", hit.chain));
        NetfilterEvidence {
            side,
            backend: serde_json::to_value(hit.backend)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default(),
            location: NetfilterLocation {
                netns: netns.to_owned(),
                family: hit.family,
                table: hit.table,
                chain: hit.chain,
                rule,
            },
            packets: hit.packets,
            rule_found_by: found_by.to_owned(),
        }
    };
    if !counted.is_empty() {
        return counted
            .into_iter()
            .map(|hit| {
                let found_by = if hit.rule.is_some() {
                    "counter"
                } else {
                    "policy"
                };
                evidence(hit, found_by)
            })
            .collect();
    }
    let mut candidates = Vec::new();
    for drop in dropped {
        let family = match drop.drop.protocol.as_str() {
            "arp" => "arp",
            "ipv4" => "ip",
            _ => continue,
        };
        // A locally sent packet without a device yet was dropped on an output hook.
        let local_output = drop.drop.ifindex == 0;
        for hit in after.uncounted_drop_candidates(Some(family), None, None) {
            let hook = after
                .chains
                .iter()
                .find(|chain| {
                    chain.backend == hit.backend
                        && chain.family == hit.family
                        && chain.table == hit.table
                        && chain.name == hit.chain
                })
                .and_then(|chain| chain.hook.clone());
            let fits = match hook.as_deref() {
                Some("output") => local_output,
                Some(_) => !local_output,
                None => true,
            };
            if fits && !candidates.contains(&hit) {
                candidates.push(hit);
            }
        }
    }
    candidates
        .into_iter()
        .map(|hit| evidence(hit, "candidate"))
        .collect()
}
