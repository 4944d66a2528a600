//! A port followed wherever it goes while tracer runs: attached when it appears, attached again
//! when it is deleted and created anew, and found again when it moves to another namespace (its
//! attachments move with the device: only the place changes).

use std::{fs::File, path::PathBuf};

use log::{debug, info, warn};

use crate::{
    collect::{
        events::Changes,
        ports::{self, LoadedPrograms, PortOptions, PortPrograms, TcAttachment},
    },
    netlink::Notification,
    netlink::RouteSocket,
    netns::{self, NetnsGuard},
    place::{self, Place},
    spec::PortSpec,
};

/// How long to wait, after the port's device left its namespace, for it to turn up in another
/// one: a move is a removal from one namespace announced before the arrival in the other, and a
/// look between the two would report the port gone rather than moved.
pub const MOVE_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether announced changes call for looking at a port again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Concern {
    /// Nothing of the port's changed.
    None,
    /// Its device left a namespace: look once it has had [`MOVE_SETTLE`] to arrive elsewhere.
    Soon,
    /// Look now.
    Now,
}

/// What one refresh found out.
#[derive(Default)]
pub struct Refreshed {
    /// Where the port was, when it moved or went away since the last refresh.
    pub left: Option<Place>,
    /// A probe was attached: the port appeared, or came back as a new device.
    pub attached: bool,
    /// The probe of a device that is gone, replaced by a new attachment: its counts are the
    /// caller's to keep (pinned maps keep them by themselves).
    pub replaced: Option<PortPrograms>,
}

pub struct FollowedPort {
    /// "initiator" or "target".
    pub role: &'static str,
    /// Where the port is expected, as configured: it names the pinned counters.
    pub spec: PortSpec,
    options: PortOptions,
    pin_directory: Option<PathBuf>,
    probe: Option<PortPrograms>,
    /// Programs loaded ahead (see `prepare`): when the port appears or, before tcx, has moved,
    /// only attaching is left to do.
    prepared: Option<LoadedPrograms>,
    /// Where the port is now; `None` while it is not found.
    location: Option<Place>,
    /// The last warning about this port, logged once rather than at every retry.
    last_warning: Option<String>,
    /// Why the port, present, could not be attached at the last try.
    attach_error: Option<String>,
    /// The namespace the port is in, kept open: looking at the port again at every refresh
    /// opens no file, so a process out of descriptors still finds it where it is.
    namespace: Option<OpenNamespace>,
    /// Carrier at the last refresh.
    carrier: Option<bool>,
    /// Carrier up and down counts at the last refresh (rtnetlink, since the device appeared).
    carrier_counts: Option<(u32, u32)>,
}

/// A namespace kept open, with a route socket inside it.
struct OpenNamespace {
    inode: u32,
    file: File,
    route: RouteSocket,
}

impl OpenNamespace {
    fn open(location: &Place) -> Option<Self> {
        let file = netns::open(&location.netns).ok()?;
        let route = RouteSocket::open_in(&location.netns).ok()?;
        Some(Self {
            inode: location.netns_inode,
            file,
            route,
        })
    }
}

impl FollowedPort {
    pub fn new(
        role: &'static str,
        spec: PortSpec,
        options: PortOptions,
        pin_directory: Option<PathBuf>,
    ) -> Self {
        Self {
            role,
            spec,
            options,
            pin_directory,
            probe: None,
            prepared: None,
            location: None,
            last_warning: None,
            attach_error: None,
            namespace: None,
            carrier: None,
            carrier_counts: None,
        }
    }

    /// The kept namespace of `location`, if it is the one kept.
    fn namespace_of(&self, location: &Place) -> Option<&OpenNamespace> {
        self.namespace
            .as_ref()
            .filter(|namespace| namespace.inode == location.netns_inode)
    }

    /// Whether `interface` is still at `last`: the cheap check before searching every
    /// namespace. A namespace deleted and created again under its name has another inode: not
    /// the same place.
    fn still_there(&self, last: &Place) -> bool {
        if netns::netns_inode(&last.netns).ok() != Some(last.netns_inode) {
            return false;
        }
        let kept = self
            .namespace_of(last)
            .and_then(|namespace| namespace.route.link(&self.spec.interface).ok());
        match kept {
            Some(link) => link.is_some_and(|link| link.ifindex == last.ifindex),
            None => place::ifindex_in(&last.netns, &self.spec.interface) == Some(last.ifindex),
        }
    }

    /// Where the port is now and its attached probe; `None` while it is missing or could not
    /// be attached yet.
    pub fn attached(&self) -> Option<(&Place, &PortPrograms)> {
        Some((self.location.as_ref()?, self.probe.as_ref()?))
    }

    /// Why the port, present, could not be attached; `None` when it is attached or missing.
    pub fn attach_error(&self) -> Option<&str> {
        self.location.as_ref()?;
        self.attach_error.as_deref()
    }

    /// Where the port is now, attached or not.
    pub fn location(&self) -> Option<&Place> {
        self.location.as_ref()
    }

    /// A route socket in the port's namespace, kept open while the port stays there.
    pub fn route_socket(&self) -> Option<&RouteSocket> {
        let location = self.location.as_ref()?;
        self.namespace_of(location)
            .map(|namespace| &namespace.route)
    }

    /// Whether `changes` concern this port: a link of its name anywhere, or its own device (by
    /// index in its namespace, renamed say), and with `neighbours`, its neighbour entries,
    /// addresses and routes as well; while it is missing, a namespace that joined (it may be
    /// there); when found, its namespace going.
    pub fn concern(&self, changes: &Changes, neighbours: bool) -> Concern {
        let namespaces = match &self.location {
            None => !changes.joined.is_empty(),
            Some(location) => changes.left.contains(&location.netns),
        };
        if changes.lost || namespaces {
            return Concern::Now;
        }
        let here = |netns: &str, ifindex: u32| {
            self.location
                .as_ref()
                .is_some_and(|location| location.netns == netns && location.ifindex == ifindex)
        };
        let mut concern = Concern::None;
        for (netns, notification) in &changes.notifications {
            let this = match notification {
                Notification::Link {
                    ifindex,
                    name,
                    gone,
                } if *name == self.spec.interface || here(netns, *ifindex) => {
                    if *gone {
                        Concern::Soon
                    } else {
                        Concern::Now
                    }
                }
                Notification::Neighbour { ifindex } | Notification::Address { ifindex }
                    if neighbours && here(netns, *ifindex) =>
                {
                    Concern::Now
                }
                Notification::Route
                    if neighbours
                        && self
                            .location
                            .as_ref()
                            .is_some_and(|location| location.netns == *netns) =>
                {
                    Concern::Now
                }
                Notification::Overrun => Concern::Now,
                _ => Concern::None,
            };
            concern = concern.max(this);
        }
        concern
    }

    /// Looks for the port and attaches where needed. Never fails: a port that is missing or
    /// cannot be attached is tried again at the next refresh.
    pub fn refresh(&mut self) -> Refreshed {
        let refreshed = self.locate();
        self.attach_located(refreshed)
    }

    /// The first half of a refresh: where the port is now, and its link.
    fn locate(&mut self) -> Refreshed {
        let last = self.location.take();
        let found = last
            .clone()
            .filter(|last| self.still_there(last))
            .or_else(|| self.search());
        match &found {
            Some(location) if self.namespace_of(location).is_some() => {}
            Some(location) => self.namespace = OpenNamespace::open(location),
            None => self.namespace = None,
        }
        let link = found.as_ref().and_then(|location| {
            let namespace = self.namespace_of(location)?;
            match namespace.route.link(&self.spec.interface) {
                Ok(link) => link,
                Err(err) => {
                    debug!("{}: reading carrier: {err}", self.spec);
                    None
                }
            }
        });
        self.carrier = link.as_ref().map(|link| link.carrier);
        self.carrier_counts =
            link.and_then(|link| link.carrier_up_count.zip(link.carrier_down_count));
        log_move(&self.spec, last.as_ref(), found.as_ref());
        let refreshed = Refreshed {
            left: last.filter(|last| found.as_ref() != Some(last)),
            ..Refreshed::default()
        };
        self.location = found;
        refreshed
    }

    /// The second half of a refresh: loads the port's programs and attaches them where the
    /// port was located, unless the probe there is still this port's.
    fn attach_located(&mut self, mut refreshed: Refreshed) -> Refreshed {
        if let Some(location) = self.location.clone() {
            // When the kernel cannot say, the probe is kept rather than churned.
            let kept = self
                .namespace_of(&location)
                .map(|namespace| &namespace.file);
            let still_ours = self.probe.as_ref().is_some_and(|probe| {
                runs_probe(probe, &location, kept, &self.spec.interface) != Some(false)
            });
            if !still_ours {
                refreshed.replaced = self.probe.take();
                if refreshed.replaced.is_some() {
                    info!(
                        "{}: the device in {} is a new one: attaching again",
                        self.spec,
                        netns::display_name(&location.netns)
                    );
                }
                self.attach(&location);
                refreshed.attached = self.probe.is_some();
            }
        }
        self.prepare();
        refreshed
    }

    /// Loads the port's programs ahead, unless they are loaded already: while the port is
    /// missing, and before tcx (6.6) while it is attached too, since a move to another
    /// namespace takes its qdisc and tracer's filters with it. What is left to do then is the
    /// attachment alone, before the test's next frames.
    fn prepare(&mut self) {
        let needed = self
            .probe
            .as_ref()
            .is_none_or(|probe| probe.tc_attachment == TcAttachment::Clsact);
        if needed && self.prepared.is_none() {
            match LoadedPrograms::load(&self.options, self.pin_directory.as_deref()) {
                Ok(loaded) => self.prepared = Some(loaded),
                Err(err) => debug!("{}: loading ahead: {err:#}", self.spec),
            }
        }
    }

    /// The attached probe, for a caller that takes its capture.
    pub fn probe_mut(&mut self) -> Option<&mut PortPrograms> {
        self.probe.as_mut()
    }

    /// Where the port went. Several namespaces may hold an interface of that name (labs, other
    /// test runs), so tracer never guesses: the device that still runs this probe is the port,
    /// wherever it is; else the one in the spec's namespace, then in tracer's own (where a
    /// physical port returns when its namespace is deleted); else the only one there is.
    fn search(&mut self) -> Option<Place> {
        let interface = &self.spec.interface;
        let candidates = everywhere(interface);
        if let Some(probe) = &self.probe
            && let Some(ours) = candidates
                .iter()
                .find(|candidate| runs_probe(probe, candidate, None, interface) == Some(true))
        {
            return Some(ours.clone());
        }
        let preferred = [self.spec.netns.as_str(), ""]
            .into_iter()
            .find_map(|netns| candidates.iter().find(|candidate| candidate.netns == netns));
        match (preferred, candidates.as_slice()) {
            (Some(found), _) => Some(found.clone()),
            (None, [only]) => Some(only.clone()),
            (None, []) => None,
            (None, several) => {
                let places: Vec<&str> = several
                    .iter()
                    .map(|c| netns::display_name(&c.netns))
                    .collect();
                let note = format!(
                    "{} is in several namespaces ({}): waiting for it in {}",
                    self.spec,
                    places.join(", "),
                    netns::display_name(&self.spec.netns)
                );
                if self.last_warning.as_ref() != Some(&note) {
                    warn!("{note}");
                }
                self.last_warning = Some(note);
                None
            }
        }
    }

    fn attach(&mut self, location: &Place) {
        let here = PortSpec {
            netns: location.netns.clone(),
            interface: self.spec.interface.clone(),
        };
        let start = std::time::Instant::now();
        let attached = match self.prepared.take() {
            Some(loaded) => PortPrograms::attach_loaded(&here, &self.options, loaded),
            None => {
                PortPrograms::attach_pinned(&here, &self.options, self.pin_directory.as_deref())
            }
        };
        debug!("{}: attaching took {:?}", self.spec, start.elapsed());
        match attached {
            Ok(probe) => {
                info!(
                    "{}: counting on {here} ({} ingress, tc egress, {})",
                    self.spec,
                    probe.ingress_hook.name(),
                    probe.tc_attachment.name()
                );
                self.probe = Some(probe);
                self.last_warning = None;
                self.attach_error = None;
            }
            Err(err) => {
                let failure = format!("{err:#}");
                self.attach_error = Some(failure.clone());
                if self.last_warning.as_ref() != Some(&failure) {
                    warn!("{}: cannot attach yet, will retry: {failure}", self.spec);
                }
                self.last_warning = Some(failure);
            }
        }
    }

    /// Whether the port had carrier at the last refresh; `None` while it is missing or
    /// unreadable.
    pub fn carrier(&self) -> Option<bool> {
        self.carrier
    }

    /// Carrier (up, down) counts at the last refresh; `None` while the port is missing, or on
    /// a kernel before 4.16.
    pub fn carrier_counts(&self) -> Option<(u32, u32)> {
        self.carrier_counts
    }
}

/// Refreshes `ports` side by side: every port located, then every port's programs loaded and
/// attached. A tcx attachment holds the RTNL lock through an RCU grace period, which a port's
/// lookups would otherwise queue behind, one grace period each (the fourth of four ports was
/// attached 60 ms after the others): with the lookups done first, the attachments follow one
/// another, the programs of the ports still to attach loading meanwhile. Once every port has
/// its probe, a refresh stays on the caller's thread (watch looks every few milliseconds while
/// links churn).
pub fn refresh_all(ports: Vec<&mut FollowedPort>) -> Vec<Refreshed> {
    if ports.iter().all(|port| port.probe.is_some()) {
        return ports.into_iter().map(FollowedPort::refresh).collect();
    }
    fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
    std::thread::scope(|scope| {
        let located: Vec<_> = ports
            .into_iter()
            .map(|port| {
                scope.spawn(move || {
                    let refreshed = port.locate();
                    (port, refreshed)
                })
            })
            .collect();
        // Every port located before the first attachment starts.
        let located: Vec<_> = located.into_iter().map(joined).collect();
        let attaching: Vec<_> = located
            .into_iter()
            .map(|(port, refreshed)| scope.spawn(move || port.attach_located(refreshed)))
            .collect();
        attaching.into_iter().map(joined).collect()
    })
}

fn log_move(spec: &PortSpec, before: Option<&Place>, now: Option<&Place>) {
    match (before, now) {
        (None, Some(now)) => info!("{spec}: found in {}", netns::display_name(&now.netns)),
        (Some(before), Some(now)) if before.netns == now.netns && before != now => info!(
            "{spec}: found again in {} (ifindex {}), re-created",
            netns::display_name(&now.netns),
            now.ifindex
        ),
        (Some(before), Some(now)) if before != now => info!(
            "{spec}: moved from {} (ifindex {}) to {} (ifindex {})",
            netns::display_name(&before.netns),
            before.ifindex,
            netns::display_name(&now.netns),
            now.ifindex
        ),
        (Some(before), None) => warn!(
            "{spec}: gone from {}; waiting for it to come back",
            netns::display_name(&before.netns)
        ),
        _ => {}
    }
}

/// Every namespace holding an interface called `interface`: tracer's own first, then the named
/// ones by name.
fn everywhere(interface: &str) -> Vec<Place> {
    let mut names: Vec<String> = netns::netns_names().into_values().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|netns| {
            let ifindex = place::ifindex_in(&netns, interface)?;
            let netns_inode = netns::netns_inode(&netns).ok()?;
            Some(Place {
                netns,
                netns_inode,
                ifindex,
            })
        })
        .collect()
}

/// Whether the device at `location` runs `probe`'s egress program: a device that only moved
/// does, one deleted and created again under the same name does not. `None`: the kernel could
/// not say. `kept`: the namespace's file, when the caller keeps it open.
fn runs_probe(
    probe: &PortPrograms,
    location: &Place,
    kept: Option<&File>,
    interface: &str,
) -> Option<bool> {
    let ours = probe.egress_program_id().ok()?;
    let _inside = match kept {
        Some(file) => NetnsGuard::enter_file(file, &location.netns).ok()?,
        None => NetnsGuard::enter(&location.netns).ok()?,
    };
    Some(ports::egress_program_ids(interface)?.contains(&ours))
}
