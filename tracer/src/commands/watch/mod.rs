//! `tracer watch -- CMD`: watch both ports while a test runs, follow them wherever the test
//! moves them, and write the root-cause bundle when the test fails.

mod bundle;
mod drops;
mod observe;
mod passive;
pub(crate) mod timeline;

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsFd as _, AsRawFd as _, RawFd},
    process::ExitStatus,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::io::unix::AsyncFd;
use tracer_evidence::{Side, diagnose};

use self::{
    bundle::{CommandReport, write_bundle},
    observe::{Watch, WatchedPort},
    passive::passive_evidence,
    timeline::Timeline,
};
use crate::{
    capture, child,
    cli::WatchArgs,
    collect::{
        drops::DropProbe,
        ebpf_log_level,
        events::{NetworkEvents, Readiness},
        follow::{Concern, MOVE_SETTLE},
        ports::PortOptions,
        probing,
    },
    commands::diagnose::prepare_report_dir,
    netlink::Group,
    preflight, render,
};

/// How often the ports, links, neighbours, counters and drops are looked at while something
/// happens on the ports, and at most.
const TICK: Duration = Duration::from_millis(50);
/// The least time between two looks woken by announcements.
const MIN_GAP: Duration = Duration::from_millis(5);
/// How long after the last change watch keeps looking every `TICK`.
const ACTIVE_LINGER: Duration = Duration::from_secs(1);
/// How often counters and drops are read once nothing has changed for `ACTIVE_LINGER`. Links,
/// neighbours, addresses and routes are announced by the kernel and captured frames wake
/// watch at once, so this only bounds how late a drop or bulk data is seen after a quiet spell.
const IDLE_TICK: Duration = Duration::from_millis(250);
/// How often links and neighbours are looked at although nothing was announced, in case an
/// announcement was lost.
const FULL_LOOK: Duration = Duration::from_secs(5);
/// The rtnetlink groups watch wakes on.
const GROUPS: [Group; 4] = [
    Group::Link,
    Group::Neighbour,
    Group::Ipv4Address,
    Group::Ipv4Route,
];
/// The readiness token of the announcements; capture ring buffers follow.
const ANNOUNCEMENTS: u64 = 0;
/// How long after the command exits tracer keeps counting.
const SETTLE: Duration = Duration::from_millis(200);

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
        watched_port: args.ports.counting.port,
        capture: true,
        log_level: ebpf_log_level(verbosity),
        ingress: args.ports.counting.ingress_hook,
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
    // Joined before the first look: nothing that happens after it goes unannounced.
    let events = NetworkEvents::new(&GROUPS).context("joining rtnetlink's announcements")?;
    watch.tick(true);
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
        let mut events = events
            .into_async()
            .context("waiting for rtnetlink's announcements")?;
        let mut wakeups = Wakeups::new(&watch, events.get_ref())?;
        let mut pace = Pace::new();
        loop {
            let wake_at = pace.next_look(events.get_ref().next_retry());
            let pending = wakeups.readiness.readable_mut();
            tokio::select! {
                status = child.wait() => break status.context("waiting for the command"),
                number = signals.recv() => child.forward(number),
                ready = pending => {
                    let mut ready = ready.context("waiting for announcements and frames")?;
                    let tokens = ready.get_inner().ready();
                    // Only new input wakes again; what is left is read at the next look.
                    ready.clear_ready();
                    let captured = tokens.iter().any(|token| *token != ANNOUNCEMENTS);
                    let concern = if tokens.contains(&ANNOUNCEMENTS) {
                        let changes = events.get_mut().take();
                        log::trace!("announced: {changes:?}");
                        watch.concern(&changes)
                    } else {
                        Concern::None
                    };
                    log::debug!("woken: {concern:?}, frames captured: {captured}");
                    pace.woken(&mut watch, concern, captured);
                }
                () = tokio::time::sleep_until(wake_at.into()) => {
                    let changes = events.get_mut().take();
                    log::trace!("looking: {changes:?}");
                    let concern = watch.concern(&changes);
                    if pace.due() {
                        let full = pace.full_due() || concern != Concern::None;
                        pace.look(&mut watch, full, concern == Concern::Now);
                    } else {
                        pace.woken(&mut watch, concern, false);
                    }
                }
            }
            if wakeups.captures != capture_fds(&watch) {
                wakeups = Wakeups::new(&watch, events.get_ref())?;
            }
        }
    })?;
    // Answers to the command's last requests may still be in flight: let them land before
    // the last look, or a healthy run would show an unanswered request.
    std::thread::sleep(SETTLE);
    watch.tick(true);
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
        let path = probing::ProbedPath {
            initiator: watch.ports[0].current_spec(),
            target: watch.ports[1].current_spec(),
            initiator_ip: args.initiator_ip,
            target_ip: args.target_ip,
            port: args.ports.counting.port,
            ingress_hook: args.ports.counting.ingress_hook,
        };
        let mut evidence = probing::gather(&path, verbosity, &mut || Ok(()))?;
        evidence.drops.extend(watch.drop_evidence());
        evidence
    } else {
        passive_evidence(&watch, args, &final_rulesets)
    };
    let verdict = diagnose(&evidence);
    for port in &watch.ports {
        for ((kind, direction), seen) in &port.seen {
            watch.timeline.push_on(
                port.side,
                seen.first,
                "packets",
                format!("first {kind} {direction} on {}", port.name()),
                None,
            );
            if seen.last > seen.first {
                watch.timeline.push_on(
                    port.side,
                    seen.last,
                    "packets",
                    format!("last {kind} {direction} on {}", port.name()),
                    None,
                );
            }
        }
    }
    let timeline = std::mem::take(&mut watch.timeline).sorted();
    let signature = verdict.signature(&evidence);
    eprintln!(
        "tracer: verdict {} ({signature}): {}",
        verdict.class.name(),
        render::verdict::summary(&verdict)
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

/// When watch looks next: every `TICK` while something happens, every `IDLE_TICK` once it is
/// quiet, in full every `FULL_LOOK` at least, and `MOVE_SETTLE` after a port's device left
/// its namespace.
struct Pace {
    last_tick: Instant,
    last_full: Instant,
    last_change: Instant,
    /// A full look put off until a moving device has arrived.
    settle_until: Option<Instant>,
    /// Woken by input while looking would have been too soon: the next look is in full.
    woken: bool,
}

impl Pace {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            last_tick: now,
            last_full: now,
            last_change: now,
            settle_until: None,
            woken: false,
        }
    }

    fn active(&self) -> bool {
        self.last_change.elapsed() < ACTIVE_LINGER
    }

    fn full_due(&self) -> bool {
        self.woken
            || self.active()
            || self.last_full.elapsed() >= FULL_LOOK
            || self.settle_until.is_some_and(|at| at <= Instant::now())
    }

    fn next_look(&self, retry: Option<Instant>) -> Instant {
        let interval = if self.active() || self.woken {
            TICK
        } else {
            IDLE_TICK
        };
        [
            Some(self.last_tick + interval),
            Some(self.last_full + FULL_LOOK),
            self.settle_until,
            retry,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.last_tick + interval)
    }

    /// Whether the next look is due now.
    fn due(&self) -> bool {
        let interval = if self.active() || self.woken {
            TICK
        } else {
            IDLE_TICK
        };
        let now = Instant::now();
        self.last_tick + interval <= now
            || self.last_full + FULL_LOOK <= now
            || self.settle_until.is_some_and(|at| at <= now)
    }

    /// Input came: a port's link, neighbours, addresses or routes changed (`concern`), or
    /// frames were captured. Looks in full at once, unless it looked less than `MIN_GAP` (for
    /// announcements) or a `TICK` (for frames) ago: then the next look, that close, does.
    fn woken(&mut self, watch: &mut Watch, concern: Concern, captured: bool) {
        let since = self.last_tick.elapsed();
        match concern {
            Concern::Now if since >= MIN_GAP => return self.look(watch, true, true),
            Concern::Now => self.woken = true,
            Concern::Soon => self.settle(),
            Concern::None => {}
        }
        if captured {
            if since >= TICK {
                self.look(watch, true, true);
            } else {
                self.woken = true;
            }
        }
    }

    fn settle(&mut self) {
        self.settle_until
            .get_or_insert_with(|| Instant::now() + MOVE_SETTLE);
    }

    /// Looks (in full or not); `woken`: by an announcement or a captured frame, which counts
    /// as a change.
    fn look(&mut self, watch: &mut Watch, full: bool, woken: bool) {
        let woken = woken || self.woken;
        let changed = watch.tick(full || self.woken);
        let now = Instant::now();
        self.last_tick = now;
        self.woken = false;
        if full {
            self.last_full = now;
            self.settle_until = None;
        }
        if changed || woken {
            self.last_change = now;
        }
    }
}

/// What watch wakes on: the announcements, and each port's capture ring buffer.
struct Wakeups {
    readiness: AsyncFd<Readiness>,
    /// The ring buffers registered, to notice when a port attached again has new ones.
    captures: Vec<RawFd>,
}

impl Wakeups {
    fn new(watch: &Watch, events: &NetworkEvents) -> anyhow::Result<Self> {
        let readiness = Readiness::new().context("creating an epoll set")?;
        readiness
            .add(events.as_fd(), ANNOUNCEMENTS)
            .context("waiting for announcements")?;
        for (token, fd) in (ANNOUNCEMENTS + 1..).zip(watch.capture_fds()) {
            readiness
                .add(fd, token)
                .context("waiting for captured frames")?;
        }
        Ok(Self {
            readiness: readiness
                .into_async()
                .context("waiting for announcements and frames")?,
            captures: capture_fds(watch),
        })
    }
}

fn capture_fds(watch: &Watch) -> Vec<RawFd> {
    watch
        .capture_fds()
        .iter()
        .map(|fd| fd.as_raw_fd())
        .collect()
}
