//! When watch looks next, and what wakes it: the kernel's announcements (links, neighbours,
//! addresses, routes, nftables rules) and each port's capture ring buffer, with a slow look in
//! full now and then in case an announcement was lost.

use std::{
    os::fd::AsFd as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::io::unix::AsyncFd;

use crate::{
    collect::{
        events::{NetworkEvents, Readiness},
        follow::{Concern, MOVE_SETTLE},
        ports::TcAttachment,
    },
    gather::passive::observe::Watch,
    netlink::Group,
};

/// How often the ports, links, neighbours, counters and drops are looked at while something
/// happens on the ports, and at most.
pub(super) const TICK: Duration = Duration::from_millis(50);
/// The least time between two looks woken by announcements.
pub(super) const MIN_GAP: Duration = Duration::from_millis(5);
/// How long after the last change watch keeps looking every `TICK`.
pub(super) const ACTIVE_LINGER: Duration = Duration::from_secs(1);
/// How often counters and drops are read once nothing has changed for `ACTIVE_LINGER`. Links,
/// neighbours, addresses, routes and nftables rules are announced by the kernel and captured
/// frames wake watch at once, so this only bounds how late a drop or bulk data is seen after a
/// quiet spell, or while only the port's data segments flow.
pub(super) const IDLE_TICK: Duration = Duration::from_millis(500);
/// How often links and neighbours are looked at although nothing was announced, in case an
/// announcement was lost.
pub(super) const FULL_LOOK: Duration = Duration::from_secs(5);
/// The rtnetlink groups watch wakes on.
pub(super) const GROUPS: [Group; 4] = [
    Group::Link,
    Group::Neighbour,
    Group::Ipv4Address,
    Group::Ipv4Route,
];
/// The readiness token of the announcements.
pub(super) const ANNOUNCEMENTS: u64 = 0;
/// The readiness token of nftables' rule changes; capture ring buffers follow.
const RULE_CHANGES: u64 = 1;
/// When watch looks next: every `TICK` while something happens, every `IDLE_TICK` once it is
/// quiet, in full every `FULL_LOOK` at least, and `MOVE_SETTLE` after a port's device left
/// its namespace.
pub(super) struct Pace {
    last_tick: Instant,
    last_full: Instant,
    last_change: Instant,
    /// A full look put off until a moving device has arrived.
    settle_until: Option<Instant>,
    /// Woken by input while looking would have been too soon: the next look is in full.
    woken: bool,
    /// Before tcx (6.6), a port moved to another namespace loses its qdisc and tracer's
    /// filters with it, which no announcement tells: look in full every `TICK`, as if busy.
    always_busy: bool,
}

impl Pace {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Self {
            last_tick: now,
            last_full: now,
            last_change: now,
            settle_until: None,
            woken: false,
            always_busy: TcAttachment::of_running_kernel() == TcAttachment::Clsact,
        }
    }

    pub(super) fn active(&self) -> bool {
        self.always_busy || self.last_change.elapsed() < ACTIVE_LINGER
    }

    /// Whether `FULL_LOOK` has passed since the last look in full.
    pub(super) fn full_look_overdue(&self) -> bool {
        self.last_full.elapsed() >= FULL_LOOK
    }

    /// Whether the next look is in full. Traffic alone does not make it so: what a full look
    /// reads (links, neighbours, addresses, routes) is announced when it changes; before tcx,
    /// a moved port's lost filters are not, so there every look is in full.
    pub(super) fn full_due(&self) -> bool {
        self.woken
            || self.always_busy
            || self.full_look_overdue()
            || self.settle_until.is_some_and(|at| at <= Instant::now())
    }

    pub(super) fn next_look(&self, retry: Option<Instant>) -> Instant {
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
    pub(super) fn due(&self) -> bool {
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
    /// frames were captured or rules changed (`input`). Looks in full at once, unless it looked
    /// less than `MIN_GAP` (for announcements) or a `TICK` (for the rest) ago: then the next
    /// look, that close, does.
    pub(super) fn woken(&mut self, watch: &mut Watch, concern: Concern, input: bool) {
        let since = self.last_tick.elapsed();
        match concern {
            Concern::Now if since >= MIN_GAP => return self.look(watch, true, true),
            Concern::Now => self.woken = true,
            Concern::Soon => self.settle(),
            Concern::None => {}
        }
        if input {
            if since >= TICK {
                self.look(watch, true, true);
            } else {
                self.woken = true;
            }
        }
    }

    pub(super) fn settle(&mut self) {
        self.settle_until
            .get_or_insert_with(|| Instant::now() + MOVE_SETTLE);
    }

    /// Looks (in full or not); `woken`: by an announcement, a captured frame or a rule change,
    /// which counts as a change.
    pub(super) fn look(&mut self, watch: &mut Watch, full: bool, woken: bool) {
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

/// What watch wakes on: the announcements, nftables' rule changes, and each port's capture
/// ring buffer.
pub(super) struct Wakeups {
    pub(super) readiness: AsyncFd<Readiness>,
    /// `Watch::captures_attached` when made: a port attached again has a new ring buffer.
    captures_attached: u64,
    /// The rule change sockets when made: a namespace the ports went to has its own.
    rule_sockets: usize,
}

impl Wakeups {
    pub(super) fn new(watch: &Watch, events: &NetworkEvents) -> anyhow::Result<Self> {
        let readiness = Readiness::new().context("creating an epoll set")?;
        readiness
            .add(events.as_fd(), ANNOUNCEMENTS)
            .context("waiting for announcements")?;
        let mut rule_sockets = 0;
        for fd in watch.rules.fds() {
            readiness
                .add(fd, RULE_CHANGES)
                .context("waiting for rule changes")?;
            rule_sockets += 1;
        }
        for (token, fd) in (RULE_CHANGES + 1..).zip(watch.capture_fds()) {
            readiness
                .add(fd, token)
                .context("waiting for captured frames")?;
        }
        Ok(Self {
            readiness: readiness
                .into_async()
                .context("waiting for announcements and frames")?,
            captures_attached: watch.captures_attached,
            rule_sockets,
        })
    }

    /// Whether what watch wakes on changed since these were made (a port attached again, a
    /// namespace listened to): then they are made again.
    pub(super) fn outdated(&self, watch: &Watch) -> bool {
        self.captures_attached != watch.captures_attached
            || self.rule_sockets != watch.rules.fds().count()
    }
}
