//! Wakes tracer when the network around its ports changes, instead of polling: an rtnetlink
//! socket joined to the groups asked for in every named network namespace and in tracer's own,
//! and inotify on `/run/netns` for the namespaces that come and go (a socket joins a new one as
//! soon as `ip netns add` has mounted it). All of it behind one epoll descriptor, readable
//! whenever something is pending, for the async runtime to wait on.
//!
//! A socket keeps its namespace alive: when a name leaves `/run/netns`, its socket is closed at
//! once, so that `ip netns del` still destroys the namespace and its devices.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::fs::MetadataExt as _,
    },
    path::Path,
    time::{Duration, Instant},
};

use log::debug;
use tokio::io::{Interest, unix::AsyncFd};

use crate::{
    netlink::{EventSocket, Group, Notification},
    netns,
};

/// The epoll token of the inotify descriptor; sockets get 1, 2, …
const INOTIFY_TOKEN: u64 = 0;
/// How often a name in `/run/netns` that is not a namespace yet (`ip netns add` creates the
/// file, then mounts the namespace on it) is looked at again, and for how long.
const UNREADY_RETRY: Duration = Duration::from_millis(2);
const UNREADY_PATIENCE: Duration = Duration::from_secs(1);

/// What changed since the last look.
#[derive(Debug, Default)]
pub struct Changes {
    /// Announcements, with the name of the namespace they came from ("" for tracer's own).
    pub notifications: Vec<(String, Notification)>,
    /// Namespaces joined since the last look: new ones, with whatever they already hold.
    pub joined: Vec<String>,
    /// Namespaces that went (or were created anew under their name).
    pub left: Vec<String>,
    /// Announcements were lost (a full socket buffer, a read error): anything may have moved.
    pub lost: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.notifications.is_empty()
            && self.joined.is_empty()
            && self.left.is_empty()
            && !self.lost
    }
}

/// One epoll set: readable when one of its descriptors is. Level-triggered.
pub struct Readiness {
    epoll: OwnedFd,
}

impl Readiness {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Self {
            epoll: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Watches `fd` for input, reported with `token`. The caller keeps `fd` open until it
    /// [`remove`](Self::remove)s it (a closed descriptor leaves the set by itself).
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a live epoll_event; both descriptors are open.
        let added = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &raw mut event,
            )
        };
        if added != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn remove(&self, fd: BorrowedFd<'_>) {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer; both descriptors are open.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The tokens of the descriptors with input now, without waiting.
    pub fn ready(&self) -> Vec<u64> {
        let mut tokens = Vec::new();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
        loop {
            // SAFETY: `events` is writable for the count passed.
            let count = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    0,
                )
            };
            let Ok(count) = usize::try_from(count) else {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return tokens;
            };
            tokens.extend(events[..count].iter().map(|event| event.u64));
            return tokens;
        }
    }
}

impl Readiness {
    /// Registered with the async runtime (which must be running), to wait on.
    pub fn into_async(self) -> io::Result<AsyncFd<Self>> {
        // SAFETY: the descriptor is the epoll set this value owns, open for as long as it
        // lives and the same at every call of `as_raw_fd`.
        unsafe { AsyncFd::register_with_interest(self, Interest::READABLE) }.map_err(Into::into)
    }
}

impl AsRawFd for Readiness {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

impl AsFd for Readiness {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

struct Subscription {
    inode: u32,
    token: u64,
    socket: EventSocket,
}

/// Announcements of the groups asked for, from every namespace tracer can name.
pub struct NetworkEvents {
    groups: Vec<Group>,
    readiness: Readiness,
    /// On `/run/netns`; `None` while it does not exist or cannot be watched (the periodic
    /// [`resync`](Self::resync) covers for it).
    inotify: Option<OwnedFd>,
    /// By namespace name; "" is tracer's own.
    subscriptions: HashMap<String, Subscription>,
    next_token: u64,
    /// Names in `/run/netns` that were not namespaces yet, with when they were first seen.
    unready: BTreeMap<String, Instant>,
    last_resync: Instant,
}

impl NetworkEvents {
    /// Joins `groups` in every namespace there is now.
    pub fn new(groups: &[Group]) -> io::Result<Self> {
        let mut events = Self {
            groups: groups.to_vec(),
            readiness: Readiness::new()?,
            inotify: None,
            subscriptions: HashMap::new(),
            next_token: INOTIFY_TOKEN + 1,
            unready: BTreeMap::new(),
            last_resync: Instant::now(),
        };
        events.resync();
        Ok(events)
    }

    /// Everything announced since the last call, without waiting; subscribes to namespaces
    /// that appeared and leaves those that went.
    pub fn take(&mut self) -> Changes {
        let mut changes = Changes::default();
        let names: HashMap<u64, String> = self
            .subscriptions
            .iter()
            .map(|(name, subscription)| (subscription.token, name.clone()))
            .collect();
        let mut namespaces_changed = false;
        for token in self.readiness.ready() {
            if token == INOTIFY_TOKEN {
                // An inotify queue overflow is one more reason to look at the directory.
                self.drain_inotify();
                namespaces_changed = true;
                continue;
            }
            let Some(name) = names.get(&token) else {
                continue;
            };
            let Some(subscription) = self.subscriptions.get(name) else {
                continue;
            };
            let mut heard = Vec::new();
            if let Err(err) = subscription.socket.drain(&mut heard) {
                debug!(
                    "reading announcements in {}: {err}",
                    netns::display_name(name)
                );
                changes.lost = true;
            }
            for notification in heard {
                if notification == Notification::Overrun {
                    changes.lost = true;
                } else {
                    changes.notifications.push((name.clone(), notification));
                }
            }
        }
        let retry = self.next_retry().is_some_and(|at| at <= Instant::now());
        if namespaces_changed || changes.lost || retry {
            let (joined, left) = self.resync();
            changes.joined = joined;
            changes.left = left;
        }
        changes
    }

    /// When a namespace being set up should be looked at again, if one is.
    pub fn next_retry(&self) -> Option<Instant> {
        let now = Instant::now();
        self.unready
            .values()
            .any(|first_seen| now.duration_since(*first_seen) < UNREADY_PATIENCE)
            .then_some(self.last_resync + UNREADY_RETRY)
    }

    /// Joins the namespaces that have no socket yet and leaves those that are gone; returns
    /// the names joined and left. Also what the caller's periodic fallback calls.
    pub fn resync(&mut self) -> (Vec<String>, Vec<String>) {
        self.last_resync = Instant::now();
        if self.inotify.is_none() {
            self.inotify = self.watch_netns_directory();
        }
        let own = std::fs::metadata(netns::netns_path("")).ok();
        let mut present: HashMap<String, u32> = HashMap::new();
        if let Some(own) = &own {
            present.insert(String::new(), own.ino() as u32);
        }
        let mut unready = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(netns::NETNS_RUN_DIR) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Until `ip netns add` has mounted the namespace, the name is a plain file
                // (another file system than the namespaces').
                let mounted = std::fs::metadata(entry.path())
                    .ok()
                    .filter(|metadata| own.as_ref().is_some_and(|own| own.dev() == metadata.dev()));
                match mounted {
                    Some(metadata) => {
                        present.insert(name, metadata.ino() as u32);
                    }
                    None => {
                        let first_seen = self.unready.get(&name).copied();
                        unready.insert(name, first_seen.unwrap_or(self.last_resync));
                    }
                }
            }
        }
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        let gone: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|(name, subscription)| present.get(*name) != Some(&subscription.inode))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(subscription) = self.subscriptions.remove(&name) {
                self.readiness.remove(subscription.socket.as_fd());
                left.push(name);
            }
        }
        for (name, inode) in present {
            if self.subscriptions.contains_key(&name) {
                continue;
            }
            let subscribed = EventSocket::open_in(&name, &self.groups).and_then(|socket| {
                let token = self.next_token;
                self.next_token += 1;
                self.readiness.add(socket.as_fd(), token)?;
                Ok(Subscription {
                    inode,
                    token,
                    socket,
                })
            });
            match subscribed {
                Ok(subscription) => {
                    self.subscriptions.insert(name.clone(), subscription);
                    joined.push(name);
                }
                Err(err) => {
                    debug!(
                        "joining announcements in {}: {err}",
                        netns::display_name(&name)
                    );
                    let first_seen = self.unready.get(&name).copied();
                    unready.insert(name, first_seen.unwrap_or(self.last_resync));
                }
            }
        }
        self.unready = unready;
        (joined, left)
    }

    /// inotify on `/run/netns` for names created, deleted and renamed.
    fn watch_netns_directory(&self) -> Option<OwnedFd> {
        // SAFETY: inotify_init1 takes no pointers; the result is checked before use.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let directory = CString::new(netns::NETNS_RUN_DIR).ok()?;
        if !Path::new(netns::NETNS_RUN_DIR).is_dir() {
            return None;
        }
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF;
        // SAFETY: `directory` is a NUL-terminated path alive for the call.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), directory.as_ptr(), mask) } < 0 {
            debug!(
                "watching {}: {}",
                netns::NETNS_RUN_DIR,
                io::Error::last_os_error()
            );
            return None;
        }
        self.readiness.add(fd.as_fd(), INOTIFY_TOKEN).ok()?;
        Some(fd)
    }

    /// Reads every pending inotify event (the directory is looked at as a whole afterwards);
    /// forgets the watch when the directory itself went.
    fn drain_inotify(&mut self) {
        let Some(fd) = &self.inotify else {
            return;
        };
        let mut buffer = [0u8; 4096];
        let mut directory_gone = false;
        loop {
            // SAFETY: the buffer is writable for its length.
            let read =
                unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            let Ok(read) = usize::try_from(read) else {
                break;
            };
            if read == 0 {
                break;
            }
            let mut at = 0;
            while at + size_of::<libc::inotify_event>() <= read {
                let field = |offset: usize| {
                    u32::from_ne_bytes([
                        buffer[at + offset],
                        buffer[at + offset + 1],
                        buffer[at + offset + 2],
                        buffer[at + offset + 3],
                    ])
                };
                let mask = field(4);
                let name_len = field(12) as usize;
                if mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED) != 0 {
                    directory_gone = true;
                }
                at += size_of::<libc::inotify_event>() + name_len;
            }
        }
        if directory_gone && let Some(fd) = self.inotify.take() {
            self.readiness.remove(fd.as_fd());
        }
    }
}

impl NetworkEvents {
    /// Registered with the async runtime (which must be running), to wait on.
    pub fn into_async(self) -> io::Result<AsyncFd<Self>> {
        // SAFETY: the descriptor is the epoll set this value owns, open for as long as it
        // lives and the same at every call of `as_raw_fd`.
        unsafe { AsyncFd::register_with_interest(self, Interest::READABLE) }.map_err(Into::into)
    }
}

impl AsRawFd for NetworkEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.readiness.as_raw_fd()
    }
}

impl AsFd for NetworkEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.readiness.as_fd()
    }
}
