//! `tracer monitor`: counts on both ports for as long as it runs, follows them wherever they go,
//! and serves the counts to Prometheus. The counters are pinned on bpffs, so that they outlive
//! a restart.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap},
    path::Path,
    rc::Rc,
    time::Duration,
};

use anyhow::Context as _;
use log::{debug, info, warn};
use tokio::{
    net::{TcpListener, TcpStream},
    signal::unix::{SignalKind, signal},
    time::Instant,
};
use tracer_common::DropKey;

use crate::{
    cli::MonitorArgs,
    collect::{
        drops::{self, DropProbe, PortPlace, RawDrop},
        ebpf_log_level,
        events::NetworkEvents,
        follow::{Concern, FollowedPort, MOVE_SETTLE},
        ports::{self, PortOptions},
    },
    error::UsageError,
    http::{self, Request, Response},
    locate::Location,
    netlink::Group,
    output,
    pins::{self, PinLock},
    preflight,
    render::metrics::{self, AttachedPort, Format, MonitorSnapshot, MonitoredPort},
};

/// How often the ports are looked at without being told of a change, and the drop counters
/// swept; scrapes are answered from the last look. Links that appear, move, go or lose carrier
/// are announced by the kernel and looked at within milliseconds.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Connections served at once; more are closed as soon as they are accepted, so that clients
/// can never take the descriptors the ports' follower needs.
const MAX_CONNECTIONS: usize = 64;
const NEIGH_FAILED: &str = "NEIGH_FAILED";
/// Drop reasons with a series on every counted port, zero until the first drop.
const ALWAYS_EXPORTED_REASONS: [&str; 2] = ["NETFILTER_DROP", NEIGH_FAILED];

pub fn run(args: &MonitorArgs, verbosity: u8) -> anyhow::Result<()> {
    preflight::check()?;
    if args.unpin {
        return unpin(&args.pin_dir);
    }
    if args.ports.initiator == args.ports.target {
        return Err(UsageError::Argument(format!(
            "port `{}` is given twice: initiator and target must differ",
            args.ports.target
        ))
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The address is the user's to fix, and refused before anything is attached.
    let listener = runtime
        .block_on(TcpListener::bind(args.metrics_addr))
        .map_err(|err| {
            UsageError::Argument(format!(
                "cannot serve metrics on {}: {err}; choose another --metrics-addr",
                args.metrics_addr
            ))
        })?;

    pins::prepare_root(&args.pin_dir)?;
    let _lock = PinLock::acquire(&args.pin_dir)?;
    if args.reset {
        let removed = pins::remove_all(&args.pin_dir)?;
        info!(
            "--reset: removed {} pinned maps from {}",
            removed.len(),
            args.pin_dir.display()
        );
    }
    let mut monitor = Monitor::start(args, verbosity)?;
    // Joined before the first look: nothing that happens after it goes unannounced.
    let events =
        NetworkEvents::new(&[Group::Link]).context("joining rtnetlink's link announcements")?;
    monitor.refresh();
    for port in &monitor.ports {
        // The ready file promises that every port present is counted.
        if let Some(error) = port.attach_error() {
            return Err(
                UsageError::Argument(format!("cannot count {}: {error}", port.spec)).into(),
            );
        }
        if port.location().is_none() {
            warn!("{}: not found yet; counting once it appears", port.spec);
        }
    }
    let logger = monitor.drops.take_logger();

    let local = tokio::task::LocalSet::new();
    runtime.block_on(local.run_until(async move {
        // Signal handlers go in before the ready file: from then on, Ctrl-C means "stop".
        let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        if let Some(logger) = logger {
            crate::logging::forward_ebpf_logs(logger)?;
        }
        // SIGHUP (a closed terminal, `systemctl reload`) looks for the ports at once.
        let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
        if let Some(path) = &args.ready_file {
            super::write_ready_file(path)?;
        }
        let bound = listener.local_addr().unwrap_or(args.metrics_addr);
        info!("serving metrics at http://{bound}/metrics");
        if args.metrics_addr.port() == 0 {
            // The port was the kernel's choice: whoever started tracer needs to learn it.
            let _ = output::print_line(&format!("serving metrics at http://{bound}/metrics"));
        }
        let monitor = Rc::new(RefCell::new(monitor));
        let connections = Rc::new(Cell::new(0usize));
        let mut events = events
            .into_async()
            .context("waiting for link announcements")?;
        let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A look put off: a port's device left a namespace and may be arriving in another, or
        // a namespace being created is not mounted yet.
        let mut look_at: Option<Instant> = None;
        loop {
            let wake_at = [
                look_at,
                events.get_ref().next_retry().map(Instant::from_std),
            ]
            .into_iter()
            .flatten()
            .min();
            let put_off = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = refresh.tick() => {
                    events.get_mut().resync();
                    monitor.borrow_mut().refresh();
                }
                ready = events.readable_mut() => {
                    let mut ready = ready.context("waiting for link announcements")?;
                    let changes = ready.get_inner_mut().take();
                    ready.clear_ready();
                    let concern = monitor.borrow().concern(&changes);
                    match concern {
                        Concern::Now => {
                            look_at = None;
                            monitor.borrow_mut().refresh();
                        }
                        Concern::Soon => {
                            look_at.get_or_insert(Instant::now() + MOVE_SETTLE);
                        }
                        Concern::None => {}
                    }
                }
                () = put_off => {
                    let changes = events.get_mut().take();
                    if look_at.is_some_and(|at| at <= Instant::now())
                        || monitor.borrow().concern(&changes) != Concern::None
                    {
                        look_at = None;
                        monitor.borrow_mut().refresh();
                    }
                }
                _ = hangup.recv() => {
                    info!("SIGHUP: looking for the ports now");
                    monitor.borrow_mut().refresh();
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.get() >= MAX_CONNECTIONS {
                            debug!("{MAX_CONNECTIONS} metrics connections open: closing {peer}'s");
                            drop(stream);
                            continue;
                        }
                        connections.set(connections.get() + 1);
                        let connections = Rc::clone(&connections);
                        let monitor = Rc::clone(&monitor);
                        tokio::task::spawn_local(async move {
                            serve(stream, &monitor).await;
                            connections.set(connections.get() - 1);
                        });
                    }
                    Err(err) => {
                        // Out of descriptors, say: pause rather than spin.
                        warn!("accepting a metrics connection: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        anyhow::Ok(())
    }))?;
    // Dropping the runtime's tasks drops the monitor: every link goes, the pinned maps stay.
    drop(local);
    info!(
        "stopped; the counts stay pinned in {}",
        args.pin_dir.display()
    );
    Ok(())
}

fn unpin(root: &Path) -> anyhow::Result<()> {
    let removed = pins::unpin(root)?;
    if removed.is_empty() {
        output::print_line(&format!("nothing pinned in {}", root.display()))?;
    }
    for path in removed {
        output::print_line(&format!("unpinned {}", path.display()))?;
    }
    Ok(())
}

/// The labels of a drops series: namespace, interface, reason.
type DropLabels = (String, String, String);

struct Monitor {
    ports: Vec<FollowedPort>,
    drops: DropProbe,
    kernel: String,
    /// Where the ports were at the last refresh (namespace inode, ifindex), with the namespace
    /// and interface labels their drops were exported under.
    labelled_places: HashMap<(u32, u32), (String, String)>,
    /// Drops counted at places the ports have left (a port deleted and created anew gets
    /// another ifindex), by series: tracer_drops_total never goes backwards while tracer runs.
    carried_drops: BTreeMap<DropLabels, u64>,
}

impl Monitor {
    fn start(args: &MonitorArgs, verbosity: u8) -> anyhow::Result<Self> {
        let root = &args.pin_dir;
        let log_level = ebpf_log_level(verbosity);
        let drops_directory = pins::drops_directory(root);
        pins::prepare_directory(&drops_directory, &drops::PINNED_MAPS)?;
        let drops = DropProbe::attach_pinned(&log_level, Some(&drops_directory))?;

        let options = PortOptions {
            watched_port: args.ports.counting.port,
            capture: false,
            log_level,
            ingress: args.ports.counting.ingress_hook,
        };
        let mut followed = Vec::new();
        for (role, spec) in [
            ("initiator", &args.ports.initiator),
            ("target", &args.ports.target),
        ] {
            let directory = pins::port_directory(root, spec)?;
            pins::prepare_directory(&directory, &ports::PINNED_MAPS)?;
            followed.push(FollowedPort::new(
                role,
                spec.clone(),
                options,
                Some(directory),
            ));
        }
        Ok(Self {
            ports: followed,
            drops,
            kernel: kernel_release(),
            labelled_places: HashMap::new(),
            carried_drops: BTreeMap::new(),
        })
    }

    /// Whether announced changes concern a port.
    fn concern(&self, changes: &crate::collect::events::Changes) -> Concern {
        self.ports
            .iter()
            .map(|port| port.concern(changes, false))
            .max()
            .unwrap_or(Concern::None)
    }

    /// Finds the ports, attaching where needed, then forgets the drop sites that are not where
    /// a port is now.
    fn refresh(&mut self) {
        for port in &mut self.ports {
            port.refresh();
        }
        let places: Vec<PortPlace> = self
            .ports
            .iter()
            .filter_map(FollowedPort::location)
            .map(Location::place)
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
        self.labelled_places = self
            .ports
            .iter()
            .filter_map(|port| {
                let location = port.location()?;
                Some((
                    (location.netns_inode, location.ifindex),
                    (location.netns.clone(), port.spec.interface.clone()),
                ))
            })
            .collect();
    }

    /// kfree_skb sees the whole machine, and drops are keyed by (namespace inode, interface
    /// index): both are reused once freed. Keeping only the sites where a port is now, every
    /// second, stops the pinned map from filling up with the rest of the machine, and a port
    /// arriving somewhere from inheriting the counts of a namespace that died there before.
    fn forget_unexported_drops(&mut self, places: &[PortPlace]) -> anyhow::Result<()> {
        let mut unexported: Vec<DropKey> = Vec::new();
        for site in self.drops.drops()? {
            if places.iter().any(|place| place.on_device(&site.key)) {
                continue;
            }
            // A place a port has just left: its counts stay in the port's series.
            let place = (site.key.netns, site.key.ifindex);
            if let Some((netns, interface)) = self.labelled_places.get(&place) {
                let labels = (
                    netns.clone(),
                    interface.clone(),
                    self.drops.reason_of(&site.key),
                );
                *self.carried_drops.entry(labels).or_default() += site.count;
            }
            unexported.push(site.key);
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

    fn snapshot(&self) -> anyhow::Result<MonitorSnapshot> {
        let sites = self.drops.drops()?;
        let ports = self
            .ports
            .iter()
            .map(|port| {
                Ok(MonitoredPort {
                    role: port.role.to_owned(),
                    spec: port.spec.to_string(),
                    attached: self.attached_port(port, &sites)?,
                    attach_failing: port.attach_error().is_some(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(MonitorSnapshot {
            ports,
            // The ports' capture is off: its loss counter stays zero.
            lost_events: self.drops.lost_events()?,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel: self.kernel.clone(),
        })
    }

    fn attached_port(
        &self,
        port: &FollowedPort,
        sites: &[RawDrop],
    ) -> anyhow::Result<Option<AttachedPort>> {
        let Some((location, probe)) = port.attached() else {
            return Ok(None);
        };
        let mut counters = probe.counters()?;
        // The probe was attached where the port was then; the labels say where it is now.
        counters.netns = location.netns.clone();
        let mut drops = BTreeMap::<String, u64>::new();
        for ((netns, interface, reason), count) in &self.carried_drops {
            if *netns == location.netns && *interface == port.spec.interface {
                drops.insert(reason.clone(), *count);
            }
        }
        for site in sites
            .iter()
            .filter(|site| location.place().on_device(&site.key))
        {
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
        }))
    }
}

/// `uname -r`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_default()
}

/// One connection: one request, one response, closed.
async fn serve(stream: TcpStream, monitor: &RefCell<Monitor>) {
    let (request, response) = match http::read_head(&stream).await {
        Ok(http::Head::Complete(head)) => {
            let request = http::parse_request(&head);
            // Answered at once: the borrow never spans an await.
            let response = respond(monitor, request.as_ref());
            (request, response)
        }
        Ok(http::Head::TooLarge) => (None, Response::text(431, "request head over 16 KiB\n")),
        Ok(http::Head::Gone) => return,
        Err(err) => {
            log::debug!("reading a metrics request: {err}");
            return;
        }
    };
    let head_only = request.as_ref().is_some_and(|r| r.method == "HEAD");
    if let Err(err) = http::write_all(&stream, &response.encode(head_only)).await {
        log::debug!("answering a metrics request: {err}");
    }
}

fn respond(monitor: &RefCell<Monitor>, request: Option<&Request>) -> Response {
    let Some(request) = request else {
        return Response::text(400, "malformed request\n");
    };
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, "only GET and HEAD\n");
    }
    if request.path != "/metrics" {
        return Response::text(404, "tracer monitor serves /metrics only\n");
    }
    // Where the ports were at the last refresh; the counts are read from the maps now (no
    // namespace is entered and no file opened: a scrape costs map reads only).
    let monitor = monitor.borrow();
    match monitor.snapshot() {
        Ok(snapshot) => {
            let format = Format::negotiate(request.accept.as_deref());
            Response {
                status: 200,
                content_type: format.content_type(),
                body: metrics::exposition(&snapshot, format).into_bytes(),
            }
        }
        Err(err) => {
            warn!("reading the counters for a scrape: {err:#}");
            Response::text(500, "reading the counters failed; see tracer's log\n")
        }
    }
}
