//! What watch observes while the command runs: each port followed wherever it goes, its link
//! and neighbours, its counters, and the kernel's drops there.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    os::fd::BorrowedFd,
    time::Instant,
};

use tracer_common::PacketKind;
use tracer_evidence::{
    KindCounts, LateAttachment, LinkPartner, NetfilterLocation, PortChange, Side, Timeline,
    TimelineEvent, words::is_spdk_rule,
};

/// The kinds of frames a test sends (everything tracer classifies but `other`).
const TEST_TRAFFIC: [PacketKind; 6] = [
    PacketKind::ArpRequest,
    PacketKind::ArpReply,
    PacketKind::IcmpEchoRequest,
    PacketKind::IcmpEchoReply,
    PacketKind::IcmpUnreachable,
    PacketKind::TcpPort,
];
use crate::{
    capture::FlightRecorder,
    collect::{
        drops::DropPrograms,
        events::Changes,
        follow::{self, Concern, FollowedPort, Refreshed},
        ports::{PortOptions, PortPrograms},
    },
    lldp,
    netfilter::{self, RuleWatch, Ruleset},
    netlink::{Link, RouteSocket},
    netns,
    place::{Place, PlaceKey},
    spec::PortSpec,
};

/// (ingress, egress) counts of one port.
pub(crate) type Totals = (KindCounts, KindCounts);

/// The run's timeline, each event also logged as it is kept (`-v` shows them as they happen).
#[derive(Debug, Default)]
pub(crate) struct LiveTimeline(Timeline);

impl LiveTimeline {
    /// An event of the whole run (the command's).
    pub(crate) fn push(&mut self, seconds: f64, kind: &'static str, message: String) {
        log_event(self.0.push(seconds, kind, message));
    }

    /// An event on one port, with what changed there when something did.
    pub(crate) fn push_on(
        &mut self,
        port: Side,
        seconds: f64,
        kind: &'static str,
        message: String,
        change: Option<PortChange>,
    ) {
        log_event(self.0.push_on(port, seconds, kind, message, change));
    }

    /// The events kept so far: of each kind, in the order pushed.
    pub(crate) fn events(&self) -> impl Iterator<Item = &TimelineEvent> {
        self.0.kept()
    }

    /// Events pushed so far, kept or not.
    pub(crate) fn seen(&self) -> u64 {
        self.0.seen()
    }

    /// The timeline in time order.
    pub(crate) fn sorted(self) -> Timeline {
        self.0.sorted()
    }
}

fn log_event(event: Option<&TimelineEvent>) {
    if let Some(event) = event {
        log::info!("+{:.3}s {}: {}", event.seconds, event.kind, event.message);
    }
}

/// First and last time frames of one kind crossed a port in one direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) first: f64,
    pub(crate) last: f64,
}

/// Frames a port sent without carrier: from `since` seconds on, carrier at `carrier_at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CarrierGapSeen {
    pub(crate) frames: u64,
    pub(crate) since: f64,
    pub(crate) carrier_at: Option<f64>,
}

/// The carrier as one look at the link found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CarrierReading {
    ifindex: u32,
    carrier: bool,
    /// How often carrier had come up by then (`IFLA_CARRIER_UP_COUNT`), where the kernel says.
    up_count: Option<u32>,
}

impl CarrierReading {
    fn of(link: &Link) -> Self {
        Self {
            ifindex: link.ifindex,
            carrier: link.carrier,
            up_count: link.carrier_up_count,
        }
    }

    /// Whether the port had no carrier from this look to the `later` one: none at either, on
    /// the same device, and it never came up in between (as far as the kernel counts). The
    /// later look is taken only when this one found no carrier: while traffic flows with
    /// carrier, watch's looks read no link.
    fn without_carrier_until(self, later: impl FnOnce() -> Option<Self>) -> bool {
        !self.carrier
            && later().is_some_and(|later| {
                !later.carrier && self.ifindex == later.ifindex && self.up_count == later.up_count
            })
    }
}

/// A configured port and everything watch has learned about it.
pub(crate) struct WatchedPort {
    pub(crate) side: Side,
    pub(crate) spec: PortSpec,
    /// Finds the port wherever it is and keeps it attached.
    pub(crate) follower: FollowedPort,
    /// Every namespace inode and ifindex the port has had: drops there are this port's.
    pub(crate) history: Vec<Place>,
    pub(crate) link: Option<Link>,
    pub(crate) neighbours: HashMap<Ipv4Addr, String>,
    /// First state seen of each neighbour entry, for the before -> after evidence.
    pub(crate) first_neighbours: HashMap<Ipv4Addr, String>,
    /// Frames that left while the port had no carrier, and when carrier came.
    pub(crate) carrier_gap: Option<CarrierGapSeen>,
    /// The carrier as the last look before the last reading of the counters found it.
    carrier_at_counting: Option<CarrierReading>,
    /// The last MAC each neighbour entry had.
    pub(crate) neighbour_macs: HashMap<Ipv4Addr, [u8; 6]>,
    /// Each change of a neighbour entry's usable MAC (none: gone, INCOMPLETE or FAILED), at
    /// seconds after the start.
    pub(crate) neighbour_history: Vec<(f64, Ipv4Addr, Option<[u8; 6]>)>,
    /// The last usable MAC of each entry `neighbour_history` holds a change of.
    pub(crate) usable_macs: HashMap<Ipv4Addr, Option<[u8; 6]>>,
    /// Each change of the port's own MAC.
    pub(crate) mac_history: Vec<(f64, [u8; 6])>,
    /// Each change of the port's IPv4 addresses, at seconds after the start.
    pub(crate) address_history: Vec<(f64, Vec<Ipv4Addr>)>,
    /// Counts of earlier attachments (a port deleted and recreated gets new counters).
    pub(crate) carried: Totals,
    /// (ingress, egress) counts of the whole run so far.
    pub(crate) totals: Totals,
    /// First and last time each (kind, direction) crossed the port.
    pub(crate) seen: BTreeMap<(&'static str, &'static str), Seen>,
    pub(crate) recorder: FlightRecorder,
    /// The pair the port belongs to (0 first).
    pub(crate) pair: usize,
    /// The far end, as the last LLDP frame that arrived named it.
    pub(crate) partner: Option<LinkPartner>,
    /// The carrier down count when watch first found the port: its growth is the run's.
    pub(crate) first_carrier_downs: Option<u32>,
    /// Each time tracer attached to the port while the command ran and the port was up.
    pub(crate) late_attachments: Vec<LateAttachment>,
}

impl WatchedPort {
    pub(crate) fn new(
        pair: usize,
        side: Side,
        spec: &PortSpec,
        options: PortOptions,
        capture_frames: usize,
    ) -> Self {
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
            neighbour_macs: HashMap::new(),
            neighbour_history: Vec::new(),
            usable_macs: HashMap::new(),
            mac_history: Vec::new(),
            address_history: Vec::new(),
            carrier_gap: None,
            carrier_at_counting: None,
            carried: Default::default(),
            totals: Default::default(),
            seen: BTreeMap::new(),
            recorder: FlightRecorder::new(&spec.interface, capture_frames),
            pair,
            partner: None,
            first_carrier_downs: None,
            late_attachments: Vec::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.spec.interface
    }

    pub(crate) fn location(&self) -> Option<&Place> {
        self.follower.location()
    }

    pub(crate) fn probe(&self) -> Option<&PortPrograms> {
        self.follower.attached().map(|(_, probe)| probe)
    }

    /// The port's link as the kernel has it now: through the follower's socket in its
    /// namespace, or one opened for this look.
    fn read_link(&self) -> Option<Link> {
        let read = |socket: &RouteSocket| socket.link(&self.spec.interface).ok().flatten();
        match self.follower.route_socket() {
            Some(socket) => read(socket),
            None => read(&RouteSocket::open_in(&self.location()?.netns).ok()?),
        }
    }

    /// The port as found now, as a spec.
    pub(crate) fn current_spec(&self) -> PortSpec {
        PortSpec {
            netns: self
                .location()
                .map_or_else(|| self.spec.netns.clone(), |l| l.netns.clone()),
            interface: self.spec.interface.clone(),
        }
    }
}

/// All the watching state.
pub(crate) struct Watch {
    pub(crate) started: Instant,
    /// Each pair's initiator then target, pair by pair.
    pub(crate) ports: Vec<WatchedPort>,
    pub(crate) drops: DropPrograms,
    pub(crate) last_drops: HashMap<tracer_common::DropKey, u64>,
    pub(crate) all_drops: HashMap<tracer_common::DropKey, u64>,
    /// Drops away from every port while watching (the probe counts them by reason).
    pub(crate) other_drops: HashMap<tracer_common::DropKey, u64>,
    pub(crate) timeline: LiveTimeline,
    pub(crate) clock_offset: i128,
    /// Rulesets of the ports' namespaces before the command started, by name.
    pub(crate) first_rulesets: HashMap<String, Ruleset>,
    /// Capture ring buffers taken so far: a new one is a new descriptor to wake on.
    pub(crate) captures_attached: u64,
    /// Rules added and removed in the ports' namespaces, as they happen.
    pub(crate) rules: RuleWatch,
    /// Rules with SPDK's comment in the first rulesets, read before the command started.
    pub(crate) rules_before_run: Vec<NetfilterLocation>,
    /// The command has started: an attachment from then on is late.
    pub(crate) command_started: bool,
}

impl Watch {
    pub(crate) fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Reads what the kernel programs counted and captured; with `full`, first finds each
    /// port, attaching or following it, and reads its link and neighbours. Returns whether
    /// anything of the test's was new: captured frames, a timeline event, a kind of the test's
    /// frames crossing a port for the first time. More of the same (a steady stream of data
    /// segments) is not: looking every `TICK` through a storage test's bulk took watch's own
    /// share of the CPU out of the test's throughput.
    pub(crate) fn tick(&mut self, full: bool) -> bool {
        let events_before = self.timeline.seen();
        let kinds_before = self.kinds_seen();
        if full {
            let followers = self.ports.iter_mut().map(|port| &mut port.follower);
            let refreshed = follow::refresh_all(followers.collect());
            for (index, refreshed) in refreshed.into_iter().enumerate() {
                self.follow(index, refreshed);
                self.observe_link(index);
            }
            let places: Vec<PlaceKey> = self
                .ports
                .iter()
                .flat_map(|port| &port.history)
                .map(Place::key)
                .collect();
            let names = self.ports.iter().map(|port| port.spec.interface.as_str());
            if let Err(err) = self
                .drops
                .watch_ports(places)
                .and_then(|()| self.drops.watch_names(names))
            {
                log::warn!("keeping the ports' drops apart: {err:#}");
            }
        }
        self.observe_counters();
        self.observe_drops();
        self.observe_rules();
        let mut captured = false;
        for port in &mut self.ports {
            let partner = &mut port.partner;
            let drained = port.recorder.drain(self.clock_offset, |frame| {
                if frame.inbound
                    && let Some(found) = lldp::partner(&frame.data)
                {
                    *partner = Some(found);
                }
            });
            captured |= drained > 0;
        }
        // Other traffic (IPv6 housekeeping on fresh links, say) is counted, not hurried after.
        captured || self.timeline.seen() != events_before || self.kinds_seen() != kinds_before
    }

    /// The (kind, direction) pairs of the test's frames seen so far, over all ports.
    fn kinds_seen(&self) -> usize {
        self.ports.iter().map(|port| port.seen.len()).sum()
    }

    /// Whether announced changes concern a port: its link, neighbours, addresses or routes.
    pub(crate) fn concern(&self, changes: &Changes) -> Concern {
        self.ports
            .iter()
            .map(|port| port.follower.concern(changes, true))
            .max()
            .unwrap_or(Concern::None)
    }

    /// The ports' capture ring buffers, to wake on.
    pub(crate) fn capture_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.ports
            .iter()
            .filter_map(|port| port.recorder.ring_fd())
            .collect()
    }

    /// What port `index`'s refresh found, into its history and timeline.
    pub(crate) fn follow(&mut self, index: usize, refreshed: Refreshed) {
        let now = self.seconds();
        let port = &mut self.ports[index];
        let interface = port.spec.interface.clone();
        let side = port.side;
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
                self.timeline.push_on(
                    side,
                    now,
                    "move",
                    format!(
                        "{interface} moved from {} to {} (ifindex {} -> {})",
                        netns::display_name(&left.netns),
                        netns::display_name(&location.netns),
                        left.ifindex,
                        location.ifindex
                    ),
                    None,
                );
            }
            (Some(left), None) => {
                self.timeline.push_on(
                    side,
                    now,
                    "move",
                    format!(
                        "{interface} disappeared from {}",
                        netns::display_name(&left.netns)
                    ),
                    Some(PortChange::Link {
                        present: false,
                        admin_up: false,
                        carrier: false,
                    }),
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
            let late = (probe.attached_while_up && self.command_started).then(|| LateAttachment {
                side,
                at_ms: probe
                    .attached_at
                    .saturating_duration_since(self.started)
                    .as_millis() as u64,
                qdisc_added: probe.qdisc_added_while_up(),
            });
            port.recorder.attach(probe.take_capture());
            self.captures_attached += 1;
            let mut message = format!(
                "{interface} found in {} (ifindex {}): counting ({hook} ingress, tc egress)",
                netns::display_name(&location.netns),
                location.ifindex
            );
            if let Some(late) = late {
                message.push_str(&format!(
                    "; it was up already: {}",
                    late.consequences(&interface)
                ));
                port.late_attachments.push(late);
            }
            self.timeline.push_on(side, now, "attach", message, None);
        }
    }

    /// Rulesets of the namespaces the ports are in before the command starts: what their
    /// counters held before the run. A namespace that appears later is the run's own, and all
    /// its counts are the run's (a snapshot taken while the run goes on would race with it).
    pub(crate) fn snapshot_rulesets(&mut self) {
        for port in &self.ports {
            if let Some(location) = port.location()
                && !self.first_rulesets.contains_key(&location.netns)
            {
                let ruleset = netfilter::snapshot(&location.netns);
                self.first_rulesets.insert(location.netns.clone(), ruleset);
            }
        }
    }

    /// Notes the rules with SPDK's comment in the rulesets read so far: called before the
    /// command starts, they are an earlier run's.
    pub(crate) fn note_rules_before_run(&mut self) {
        let mut namespaces: Vec<&String> = self.first_rulesets.keys().collect();
        namespaces.sort();
        self.rules_before_run = namespaces
            .into_iter()
            .flat_map(|netns| {
                self.first_rulesets[netns]
                    .rules
                    .iter()
                    .filter(|rule| is_spdk_rule(&rule.text))
                    .map(|rule| NetfilterLocation {
                        netns: netns.clone(),
                        family: rule.family.clone(),
                        table: rule.table.clone(),
                        chain: rule.chain.clone(),
                        rule: rule.text.clone(),
                    })
            })
            .collect();
    }

    pub(crate) fn observe_counters(&mut self) {
        let now = self.seconds();
        for port in &mut self.ports {
            // Frames counted now left since the counters were last read: the look at the link
            // before that reading is the last one known to precede them all.
            let carrier_before = std::mem::replace(
                &mut port.carrier_at_counting,
                port.link.as_ref().map(CarrierReading::of),
            );
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
            let sent = totals.1.since(&port.totals.1).sum_of(&TEST_TRAFFIC);
            // A look taken before the frames left is not enough: the link may have come up
            // (and carrier with it) just before they did. They left without carrier only if a
            // look now still finds none, and carrier never came up since the look before.
            let without_carrier = sent > 0
                && carrier_before.is_some_and(|before| {
                    before
                        .without_carrier_until(|| port.read_link().as_ref().map(CarrierReading::of))
                });
            if without_carrier {
                let gap = port.carrier_gap.get_or_insert(CarrierGapSeen {
                    frames: 0,
                    since: now,
                    carrier_at: None,
                });
                gap.frames += sent;
            }
            port.totals = totals;
        }
    }

    /// Rules added and removed in the namespaces the ports have been in.
    pub(crate) fn observe_rules(&mut self) {
        for place in self.ports.iter().flat_map(|port| &port.history) {
            self.rules.listen(&place.netns);
        }
        let now_ms = (self.seconds() * 1000.0) as u64;
        self.rules.drain(now_ms);
    }

    /// The netfilter rulesets of the namespaces the ports are in now, each read once.
    pub(crate) fn final_rulesets(&self) -> BTreeMap<String, Ruleset> {
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
    pub(crate) fn lost_events(&self) -> u64 {
        let drops = self.drops.lost_events().unwrap_or(0);
        let frames: u64 = self
            .ports
            .iter()
            .filter_map(|port| port.probe()?.capture_lost().ok())
            .sum();
        drops + frames
    }
}
