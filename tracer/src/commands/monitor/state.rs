//! What the monitor knows: the ports it follows, the drop probe, the drop counts carried over
//! from places the ports left, and the snapshot a scrape exports.

use std::collections::{BTreeMap, HashMap};

use log::{debug, warn};
use tracer_common::DropKey;

use super::cabling::CableMaps;
use crate::{
    cli::MonitorArgs,
    collect::{
        drops::{self, DropPrograms, RawDrop},
        ebpf_log_level,
        events::Changes,
        follow::{self, Concern, FollowedPort},
        ports::{self, PortOptions},
        spdk_rules::SpdkRuleCounts,
    },
    layout::PlannedPair,
    pins,
    place::{Place, PlaceKey},
    render::metrics::{AttachedPort, MonitorSnapshot, MonitoredPort},
    spec::PortSpec,
};

pub(super) const NEIGH_FAILED: &str = "NEIGH_FAILED";
/// Drop reasons with a series on every counted port, zero until the first drop.
const ALWAYS_EXPORTED_REASONS: [&str; 2] = ["NETFILTER_DROP", NEIGH_FAILED];

/// Drops counted where a port was before it moved or was created anew are carried on in the
/// pinned drop map, so that a restart keeps them as it keeps the rest: under this namespace,
/// which the kernel never writes (no namespace has this inode), and the port's
/// [`carried_id`] as interface index.
const CARRIED_NETNS: u32 = u32::MAX;

/// The interface index a port's carried drops are kept under: a hash (FNV-1a) of its spec, as
/// configured, which also names its pinned packet counters.
fn carried_id(spec: &PortSpec) -> u32 {
    spec.to_string().bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Where a port's carried drops of the site `key` are kept.
fn carried_key(spec: &PortSpec, key: &DropKey) -> DropKey {
    DropKey {
        netns: CARRIED_NETNS,
        ifindex: carried_id(spec),
        ..*key
    }
}

pub(super) struct Monitor {
    pub(super) ports: Vec<FollowedPort>,
    /// Each port's pair, as its label value (the pair's number, 0 first), beside `ports`.
    pub(super) pair_labels: Vec<String>,
    pub(super) drops: DropPrograms,
    pub(super) kernel: String,
    /// The running test's name, read from --test-tag-file at start and at SIGUSR1: empty when
    /// the file names none, `None` without the file.
    pub(super) test: Option<String>,
    /// Rules with SPDK's comment in the ports' namespaces, counted in the background.
    pub(super) spdk_rules: SpdkRuleCounts,
    /// Where the ports were at the last refresh (namespace inode, ifindex), with the port
    /// whose drops were counted there: what is counted at a place a port leaves (another
    /// namespace, or another ifindex for a port created anew) is carried on in its series.
    pub(super) last_places: HashMap<(u32, u32), PortSpec>,
    /// The last cable map of the pair.
    pub(super) cables: CableMaps,
}

impl Monitor {
    pub(super) fn start(
        args: &MonitorArgs,
        pairs: &[PlannedPair],
        verbosity: u8,
    ) -> anyhow::Result<Self> {
        let root = &args.pin_dir;
        let log_level = ebpf_log_level(verbosity);
        let drops_directory = pins::drops_directory(root);
        let carried = pins::prepare_directory(&drops_directory, &drops::PINNED_MAPS, args.reset)?;
        let options = PortOptions {
            tcp_port: args.ports.counting.tcp_port,
            capture: false,
            log_level,
            ingress: args.ports.counting.ingress_hook,
        };
        let mut followed = Vec::new();
        let mut pair_labels = Vec::new();
        let roles = pairs.iter().enumerate().flat_map(|(index, pair)| {
            [
                (index, "initiator", &pair.initiator),
                (index, "target", &pair.target),
            ]
        });
        for (index, role, spec) in roles {
            pair_labels.push(index.to_string());
            let directory = pins::port_directory(root, spec)?;
            pins::prepare_directory(&directory, &ports::PINNED_MAPS, args.reset)?;
            followed.push(FollowedPort::new(
                role,
                spec.clone(),
                options,
                Some(directory),
            ));
        }
        // The drop probe is attached beside the ports, whose attachments mostly wait for the
        // kernel (an RCU grace period each, under the RTNL lock).
        let mut drops = std::thread::scope(|scope| {
            let drops =
                scope.spawn(|| DropPrograms::attach_pinned(&log_level, Some(&drops_directory)));
            follow::refresh_all(followed.iter_mut().collect());
            drops
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })?;
        for (key, count) in carried.drops {
            drops.add(key, count)?;
        }
        let namespaces = pairs
            .iter()
            .flat_map(|pair| [pair.initiator.netns.clone(), pair.target.netns.clone()])
            .collect();
        Ok(Self {
            ports: followed,
            pair_labels,
            drops,
            kernel: kernel_release(),
            test: None,
            spdk_rules: SpdkRuleCounts::start(namespaces),
            last_places: HashMap::new(),
            cables: CableMaps::default(),
        })
    }

    /// Whether announced changes concern a port.
    pub(super) fn concern(&self, changes: &Changes) -> Concern {
        self.ports
            .iter()
            .map(|port| port.concern(changes, false))
            .max()
            .unwrap_or(Concern::None)
    }

    /// Finds the ports, attaching where needed, then forgets the drop sites that are not where
    /// a port is now.
    pub(super) fn refresh(&mut self) {
        follow::refresh_all(self.ports.iter_mut().collect());
        let places: Vec<PlaceKey> = self
            .ports
            .iter()
            .filter_map(FollowedPort::location)
            .map(Place::key)
            .collect();
        let names = self.ports.iter().map(|port| port.spec.interface.as_str());
        if let Err(err) = self
            .drops
            .watch_ports(places.iter().copied())
            .and_then(|()| self.drops.watch_names(names))
        {
            warn!("keeping the ports' drops apart: {err:#}");
        }
        if let Err(err) = self.forget_unexported_drops(&places) {
            warn!("sweeping the drop counters: {err:#}");
        }
        self.last_places = self
            .ports
            .iter()
            .filter_map(|port| {
                let location = port.location()?;
                Some(((location.netns_inode, location.ifindex), port.spec.clone()))
            })
            .collect();
    }

    /// kfree_skb sees the whole machine, and drops are keyed by (namespace inode, interface
    /// index): both are reused once freed. Keeping only the sites where a port is now, every
    /// second, stops the pinned map from filling up with the rest of the machine, and a port
    /// arriving somewhere from inheriting the counts of a namespace that died there before.
    /// The counts of a place a port has just left are carried on under its carried key first.
    pub(super) fn forget_unexported_drops(&mut self, places: &[PlaceKey]) -> anyhow::Result<()> {
        let carried_ids: Vec<u32> = self
            .ports
            .iter()
            .map(|port| carried_id(&port.spec))
            .collect();
        let mut unexported: Vec<DropKey> = Vec::new();
        for site in self.drops.drops()? {
            let key = site.key;
            if places.iter().any(|place| place.on_device(&key))
                || (key.netns == CARRIED_NETNS && carried_ids.contains(&key.ifindex))
            {
                continue;
            }
            if key.netns != CARRIED_NETNS
                && let Some(spec) = self.last_places.get(&(key.netns, key.ifindex))
            {
                self.drops.add(carried_key(spec, &key), site.count)?;
            }
            unexported.push(key);
        }
        if !unexported.is_empty() {
            debug!(
                "forgetting {} drop sites away from the ports",
                unexported.len()
            );
            self.drops.forget(&unexported)?;
        }
        Ok(())
    }

    pub(super) fn snapshot(&self) -> anyhow::Result<MonitorSnapshot> {
        let sites = self.drops.drops()?;
        let ports = self
            .ports
            .iter()
            .zip(&self.pair_labels)
            .enumerate()
            .map(|(index, (port, pair))| {
                Ok(MonitoredPort {
                    role: port.role.to_owned(),
                    pair: pair.clone(),
                    spec: port.spec.to_string(),
                    attached: self.attached_port(port, &sites)?,
                    attach_failing: port.attach_error().is_some(),
                    cable: self.cables.port_cable(index),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(MonitorSnapshot {
            ports,
            // The ports' capture is off: its loss counter stays zero.
            lost_events: self.drops.lost_events()?,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel: self.kernel.clone(),
            test: self.test.clone(),
            spdk_rules: self.spdk_rules.counts(),
            cable_map_at: self.cables.mapped_at(),
        })
    }

    pub(super) fn attached_port(
        &self,
        port: &FollowedPort,
        sites: &[RawDrop],
    ) -> anyhow::Result<Option<AttachedPort>> {
        let Some((location, probe)) = port.attached() else {
            return Ok(None);
        };
        let mut counters = probe.counters()?;
        // The probe was attached where the port was then; it is where it is now.
        counters.netns = location.netns.clone();
        let carried = carried_id(&port.spec);
        let mut drops = BTreeMap::<String, u64>::new();
        for site in sites.iter().filter(|site| {
            location.key().on_device(&site.key)
                || (site.key.netns == CARRIED_NETNS && site.key.ifindex == carried)
        }) {
            *drops.entry(self.drops.reason_of(&site.key)).or_default() += site.count;
        }
        // The reasons alerts watch are exported from zero on: a series that appears at its
        // first drop, already at its count, shows no increase to `increase()` or `rate()`.
        for reason in ALWAYS_EXPORTED_REASONS {
            drops.entry(reason.to_owned()).or_default();
        }
        let neighbour_failures = drops.get(NEIGH_FAILED).copied().unwrap_or(0);
        Ok(Some(AttachedPort {
            counters,
            carrier: port.carrier(),
            drops,
            neighbour_failures,
            carrier_counts: port.carrier_counts(),
        }))
    }
}

/// `uname -r`.
pub(super) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default()
}
