//! A minimal rtnetlink (NETLINK_ROUTE) client: reads the links, IPv4 addresses, neighbours and
//! route decisions and tc filters of one network namespace, and changes nothing but what tracer
//! added itself.
//!
//! A netlink socket stays bound to the namespace it was created in, so callers open a
//! [`RouteSocket`] while inside a namespace (with [`crate::netns::NetnsGuard::enter`]) and may
//! use it afterwards from anywhere. Only GET requests are encoded, and one change: deleting a
//! `clsact` qdisc, which tracer does only for the one it created; anything else is refused
//! before it reaches the kernel.
//!
//! An [`EventSocket`] only listens: it joins rtnetlink's multicast groups (links, neighbours,
//! IPv4 addresses and routes) and is told of every change in its namespace, so that tracer
//! wakes when something changes instead of asking again and again. It never sends.
//!
//! The parsers are pure, bounds-checked functions over `&[u8]`: malformed input becomes an
//! `InvalidData` error, never a panic.

use std::{
    cell::Cell,
    ffi::CStr,
    io,
    net::Ipv4Addr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use serde::Serialize;
pub use tracer_evidence::{Link, RouteLookup};

/// One BPF filter of a `clsact` qdisc (tc's classic attachment, before tcx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfFilter {
    /// Lower runs first.
    pub priority: u16,
    pub program_id: u32,
    /// The name tc gave the filter (usually the object file and section).
    pub name: Option<String>,
}

/// A hook of a `clsact` qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClsactHook {
    Ingress,
    Egress,
}

/// One IPv4 address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub ifindex: u32,
    /// The local address (`IFA_LOCAL`, falling back to `IFA_ADDRESS`).
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// One IPv4 neighbour (ARP) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub ifindex: u32,
    pub address: Ipv4Addr,
    /// NUD state names as `ip neigh` prints them ("REACHABLE", "STALE", "FAILED", "NONE", …),
    /// separated by spaces when several bits are set.
    pub state: String,
    /// `NDA_LLADDR` when six bytes long; absent for INCOMPLETE and FAILED entries.
    pub mac: Option<[u8; 6]>,
}

// Wire types of netlink header fields; libc declares these as c_int.
const NLMSG_NOOP: u16 = libc::NLMSG_NOOP as u16;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLMSG_OVERRUN: u16 = libc::NLMSG_OVERRUN as u16;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
/// Attribute type bits without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
const AF_INET: u8 = libc::AF_INET as u8;
const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_LOWER_UP: u32 = libc::IFF_LOWER_UP as u32;

/// First rtnetlink message type; types come in groups of four: NEW, DEL, GET, SET.
const RTM_BASE: u16 = libc::RTM_NEWLINK;

// Sizes of the C structs on the wire (uapi/linux/netlink.h, rtnetlink.h, if_addr.h,
// neighbour.h); libc lacks ndmsg and rtmsg.
/// `struct nlmsghdr`.
const NLMSG_HEADER_LEN: usize = 16;
/// `struct rtattr` (same layout as `struct nlattr`).
const RTA_HEADER_LEN: usize = 4;
/// `struct ifinfomsg`.
const IFINFOMSG_LEN: usize = 16;
/// `struct ifaddrmsg`.
const IFADDRMSG_LEN: usize = 8;
/// `struct ndmsg`.
const NDMSG_LEN: usize = 12;
/// `struct rtmsg`.
const RTMSG_LEN: usize = 12;
/// `struct tcmsg`.
const TCMSG_LEN: usize = 20;

// tc (uapi/linux/pkt_sched.h, rtnetlink.h, pkt_cls.h), which libc lacks.
const RTM_DELQDISC: u16 = 37;
const RTM_GETTFILTER: u16 = 46;
const RTM_NEWTFILTER: u16 = 44;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const TC_H_CLSACT: u32 = 0xffff_fff1;
const TC_H_MIN_INGRESS: u32 = 0xfff2;
const TC_H_MIN_EGRESS: u32 = 0xfff3;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
const IFLA_XDP: u16 = 43;
const IFLA_CARRIER_UP_COUNT: u16 = 47;
const IFLA_CARRIER_DOWN_COUNT: u16 = 48;
const IFLA_LINK_NETNSID: u16 = 37;
const RTM_GETNSID: u16 = 90;
const RTM_NEWNSID: u16 = 88;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_STATE: u16 = 1;
const IFLA_XDP_PROG_ID: u16 = 4;

/// `IF_OPER_*` (uapi/linux/if.h) names, indexed by value, as `ip link` prints them lower-cased.
const OPERSTATE_NAMES: [&str; 7] = [
    "unknown",
    "notpresent",
    "down",
    "lowerlayerdown",
    "testing",
    "dormant",
    "up",
];

/// `NUD_*` bits and their names, in the order `ip neigh` prints them.
const NEIGHBOUR_STATE_NAMES: [(u16, &str); 8] = [
    (libc::NUD_INCOMPLETE, "INCOMPLETE"),
    (libc::NUD_REACHABLE, "REACHABLE"),
    (libc::NUD_STALE, "STALE"),
    (libc::NUD_DELAY, "DELAY"),
    (libc::NUD_PROBE, "PROBE"),
    (libc::NUD_FAILED, "FAILED"),
    (libc::NUD_NOARP, "NOARP"),
    (libc::NUD_PERMANENT, "PERMANENT"),
];

/// Receive timeout: the kernel answers within microseconds, so this only stops hangs.
const RECEIVE_TIMEOUT_SECS: libc::time_t = 2;
/// Starting receive buffer; it grows when a datagram is bigger.
const RECEIVE_BUFFER_LEN: usize = 32 * 1024;
/// A dump that changed under the kernel's feet (NLM_F_DUMP_INTR) is retried this many times.
const DUMP_ATTEMPTS: u32 = 3;

/// An rtnetlink socket in the namespace that was current when it was opened.
///
/// One request at a time: the socket is `Send` but not `Sync`.
pub struct RouteSocket {
    fd: OwnedFd,
    /// Sequence number of the next request; the kernel echoes it in every reply message.
    next_sequence: Cell<u32>,
}

impl RouteSocket {
    /// Opens a socket inside namespace `netns` ("" for the calling thread's own); it stays
    /// bound to that namespace whichever thread uses it later.
    pub fn open_in(netns: &str) -> io::Result<Self> {
        let _inside = crate::netns::NetnsGuard::enter(netns).map_err(io::Error::other)?;
        Self::open()
    }

    /// Opens a socket bound to the calling thread's current network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: RECEIVE_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: the option value points to a live timeval of the length passed.
        let status = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                socklen_of::<libc::timeval>(),
            )
        };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            next_sequence: Cell::new(1),
        })
    }

    /// All links (RTM_GETLINK dump).
    pub fn links(&self) -> io::Result<Vec<Link>> {
        let mut header = [0u8; IFINFOMSG_LEN];
        header[0] = AF_UNSPEC; // ifi_family: every link
        self.dump(libc::RTM_GETLINK, &header, libc::RTM_NEWLINK)?
            .iter()
            .map(|payload| parse_link(payload))
            .collect()
    }

    /// The link called `name`, if there is one.
    pub fn link(&self, name: &str) -> io::Result<Option<Link>> {
        Ok(self.links()?.into_iter().find(|link| link.name == name))
    }

    /// All IPv4 addresses (RTM_GETADDR dump).
    pub fn addresses(&self) -> io::Result<Vec<Address>> {
        let mut header = [0u8; IFADDRMSG_LEN];
        header[0] = AF_INET; // ifa_family: the kernel dumps this family only
        let payloads = self.dump(libc::RTM_GETADDR, &header, libc::RTM_NEWADDR)?;
        let mut addresses = Vec::new();
        for payload in &payloads {
            addresses.extend(parse_address(payload)?);
        }
        Ok(addresses)
    }

    /// All IPv4 neighbour entries (RTM_GETNEIGH dump), proxy entries excluded. NOARP entries
    /// are included, as with `ip neigh show nud all` (plain `ip neigh` hides them).
    pub fn neighbours(&self) -> io::Result<Vec<Neighbour>> {
        let mut header = [0u8; NDMSG_LEN];
        header[0] = AF_INET; // ndm_family: the ARP table only
        let payloads = self.dump(libc::RTM_GETNEIGH, &header, libc::RTM_NEWNEIGH)?;
        let mut neighbours = Vec::new();
        for payload in &payloads {
            neighbours.extend(parse_neighbour(payload)?);
        }
        Ok(neighbours)
    }

    /// The BPF filters of `ifindex`'s clsact qdisc on `hook`, in the order they run (an
    /// interface without the qdisc has none).
    pub fn bpf_filters(&self, ifindex: u32, hook: ClsactHook) -> io::Result<Vec<BpfFilter>> {
        let minor = match hook {
            ClsactHook::Ingress => TC_H_MIN_INGRESS,
            ClsactHook::Egress => TC_H_MIN_EGRESS,
        };
        let header = tcmsg(ifindex, 0, (TC_H_CLSACT & 0xffff_0000) | minor);
        let payloads = match self.dump(RTM_GETTFILTER, &header, RTM_NEWTFILTER) {
            Ok(payloads) => payloads,
            // No clsact qdisc: no filters.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
                return Ok(Vec::new());
            }
            Err(err) => return Err(err),
        };
        let mut filters = Vec::new();
        for payload in &payloads {
            filters.extend(parse_bpf_filter(payload)?);
        }
        filters.sort_by_key(|filter| filter.priority);
        Ok(filters)
    }

    /// The id namespace `namespace` has in this socket's namespace (what `IFLA_LINK_NETNSID`
    /// names a veth peer's namespace by); `None` when it has none.
    pub fn nsid_of(&self, namespace: &std::fs::File) -> io::Result<Option<i32>> {
        let header = [AF_UNSPEC, 0, 0, 0]; // struct rtgenmsg, padded
        let fd = u32::try_from(namespace.as_raw_fd())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative descriptor"))?;
        let answer = self.exchange(
            RTM_GETNSID,
            NLM_F_REQUEST,
            &header,
            &[(NETNSA_FD, &fd.to_ne_bytes())],
            RTM_NEWNSID,
        )?;
        match answer {
            Answer::KernelError { errno } => Err(io::Error::from_raw_os_error(errno)),
            Answer::Messages { payloads, .. } => {
                let Some(payload) = payloads.first() else {
                    return Ok(None);
                };
                let (_, attributes) = split_family_header::<4>(payload, "rtgenmsg")?;
                let nsid = find_attribute(&attributes, NETNSA_NSID)
                    .map(|value| attribute_u32(value, "NETNSA_NSID"))
                    .transpose()?
                    .map(|id| id as i32);
                // NETNSA_NSID_NOT_ASSIGNED
                Ok(nsid.filter(|id| *id >= 0))
            }
        }
    }

    /// Deletes `ifindex`'s clsact qdisc, and with it every filter on it: only for the qdisc
    /// tracer created itself.
    pub fn delete_clsact(&self, ifindex: u32) -> io::Result<()> {
        let header = tcmsg(ifindex, TC_H_CLSACT & 0xffff_0000, TC_H_CLSACT);
        match self.exchange(
            RTM_DELQDISC,
            NLM_F_REQUEST | NLM_F_ACK,
            &header,
            &[(TCA_KIND, b"clsact\0")],
            NLMSG_ERROR,
        )? {
            Answer::Messages { .. } => Ok(()),
            Answer::KernelError { errno } => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Asks the kernel where a locally sent packet to `destination` would go, like
    /// `ip route get`. The kernel refusing (ENETUNREACH, EHOSTUNREACH, …) is an answer too:
    /// `Ok(RouteLookup::Unreachable)`.
    pub fn route_get(&self, destination: Ipv4Addr) -> io::Result<RouteLookup> {
        let mut header = [0u8; RTMSG_LEN];
        header[0] = AF_INET; // rtm_family
        header[1] = 32; // rtm_dst_len: a host lookup
        let destination = destination.octets();
        let answer = self.exchange(
            libc::RTM_GETROUTE,
            NLM_F_REQUEST,
            &header,
            &[(libc::RTA_DST, &destination)],
            libc::RTM_NEWROUTE,
        )?;
        route_lookup_from(answer)
    }

    /// Runs a dump request, retrying while the kernel reports it inconsistent; after the last
    /// attempt, the possibly inconsistent result is returned, as `ip` does.
    fn dump(&self, message_type: u16, header: &[u8], reply_type: u16) -> io::Result<Vec<Vec<u8>>> {
        let mut attempts_left = DUMP_ATTEMPTS;
        loop {
            attempts_left -= 1;
            let answer = self.exchange(
                message_type,
                NLM_F_REQUEST | NLM_F_DUMP,
                header,
                &[],
                reply_type,
            )?;
            match answer {
                Answer::Messages {
                    interrupted: true, ..
                } if attempts_left > 0 => continue,
                Answer::Messages { payloads, .. } => return Ok(payloads),
                Answer::KernelError { errno } => return Err(io::Error::from_raw_os_error(errno)),
            }
        }
    }

    /// Sends one request and collects its reply.
    fn exchange(
        &self,
        message_type: u16,
        flags: u16,
        header: &[u8],
        attributes: &[(u16, &[u8])],
        reply_type: u16,
    ) -> io::Result<Answer> {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence.wrapping_add(1));
        let request = encode_request(message_type, flags, sequence, header, attributes)?;
        self.send(&request)?;
        let mut collector = ReplyCollector::new(sequence, reply_type);
        let mut buffer = vec![0u8; RECEIVE_BUFFER_LEN];
        loop {
            let Some(datagram) = self.receive(&mut buffer)? else {
                continue;
            };
            if let Some(answer) = collector.absorb(datagram)? {
                return Ok(answer);
            }
        }
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
        let kernel = kernel_address();
        loop {
            // SAFETY: both pointers refer to live values of the lengths passed.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&raw const kernel).cast(),
                    socklen_of::<libc::sockaddr_nl>(),
                )
            };
            if sent < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            return if usize::try_from(sent).ok() == Some(request.len()) {
                Ok(())
            } else {
                Err(io::Error::other("netlink request was sent only in part"))
            };
        }
    }

    /// Receives one datagram, growing `buffer` to fit it; `None` if it did not come from the
    /// kernel (another process may write to our port).
    fn receive<'buffer>(&self, buffer: &'buffer mut Vec<u8>) -> io::Result<Option<&'buffer [u8]>> {
        // Peek first: a datagram bigger than the buffer would otherwise be cut short and lost.
        let pending = self.receive_into(buffer, libc::MSG_PEEK | libc::MSG_TRUNC, None)?;
        if pending > buffer.len() {
            buffer.resize(pending, 0);
        }
        let mut sender = kernel_address();
        let received = self.receive_into(buffer, libc::MSG_TRUNC, Some(&mut sender))?;
        if sender.nl_pid != 0 {
            return Ok(None);
        }
        buffer
            .get(..received)
            .map(Some)
            .ok_or_else(|| malformed("netlink datagram grew between peek and read"))
    }

    /// recvfrom(2) that retries on EINTR and reports the receive timeout as `TimedOut`.
    fn receive_into(
        &self,
        buffer: &mut [u8],
        flags: libc::c_int,
        sender: Option<&mut libc::sockaddr_nl>,
    ) -> io::Result<usize> {
        let (sender, mut sender_len) = match sender {
            Some(sender) => (
                std::ptr::from_mut(sender).cast::<libc::sockaddr>(),
                socklen_of::<libc::sockaddr_nl>(),
            ),
            None => (std::ptr::null_mut(), 0),
        };
        loop {
            // SAFETY: the buffer is writable for its length; `sender` is null or points to a
            // live sockaddr_nl whose length is in `sender_len`.
            let received = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    flags,
                    sender,
                    &raw mut sender_len,
                )
            };
            if let Ok(received) = usize::try_from(received) {
                return Ok(received);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no netlink reply from the kernel in {RECEIVE_TIMEOUT_SECS} s"),
                    ));
                }
                _ => return Err(err),
            }
        }
    }
}

/// rtnetlink multicast groups (`enum rtnetlink_groups`, include/uapi/linux/rtnetlink.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// RTNLGRP_LINK: links added, changed (up, carrier, name) or removed.
    Link = 1,
    /// RTNLGRP_NEIGH: neighbour (ARP) entries and their state.
    Neighbour = 3,
    /// RTNLGRP_IPV4_IFADDR.
    Ipv4Address = 5,
    /// RTNLGRP_IPV4_ROUTE.
    Ipv4Route = 7,
}

/// What the kernel announced to an [`EventSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A link appeared or changed (RTM_NEWLINK), or went (RTM_DELLINK: deleted, or moved to
    /// another namespace).
    Link {
        ifindex: u32,
        name: String,
        gone: bool,
    },
    /// A neighbour entry of this link changed or went.
    Neighbour { ifindex: u32 },
    /// An IPv4 address of this link was added or removed.
    Address { ifindex: u32 },
    /// An IPv4 route changed.
    Route,
    /// The socket's buffer overflowed and the kernel dropped announcements: anything may have
    /// changed.
    Overrun,
}

/// A socket told of every change of the groups it joined, in the namespace that was current
/// when it was opened. Non-blocking; it never sends a request.
pub struct EventSocket {
    fd: OwnedFd,
}

impl EventSocket {
    /// Opens a socket inside namespace `netns` ("" for the calling thread's own) joined to
    /// `groups`.
    pub fn open_in(netns: &str, groups: &[Group]) -> io::Result<Self> {
        let _inside = crate::netns::NetnsGuard::enter(netns).map_err(io::Error::other)?;
        Self::open(groups)
    }

    /// Opens a socket in the calling thread's current namespace joined to `groups`.
    pub fn open(groups: &[Group]) -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Port 0: the kernel picks one.
        let local = kernel_address();
        // SAFETY: `local` is a live sockaddr_nl of the length passed.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const local).cast(),
                socklen_of::<libc::sockaddr_nl>(),
            )
        };
        if bound != 0 {
            return Err(io::Error::last_os_error());
        }
        for group in groups {
            let group = *group as libc::c_int;
            // SAFETY: the option value points to a live c_int of the length passed.
            let joined = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    libc::NETLINK_ADD_MEMBERSHIP,
                    (&raw const group).cast(),
                    socklen_of::<libc::c_int>(),
                )
            };
            if joined != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self { fd })
    }

    /// Every announcement queued now, without waiting (none when nothing is queued).
    pub fn drain(&self, into: &mut Vec<Notification>) -> io::Result<()> {
        let mut buffer = vec![0u8; RECEIVE_BUFFER_LEN];
        loop {
            // Peek first: a datagram bigger than the buffer would otherwise be cut short.
            let pending = match self.receive(&mut buffer, libc::MSG_PEEK | libc::MSG_TRUNC) {
                Ok(Some(pending)) => pending,
                Ok(None) => return Ok(()),
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    into.push(Notification::Overrun);
                    continue;
                }
                Err(err) => return Err(err),
            };
            if pending > buffer.len() {
                buffer.resize(pending, 0);
            }
            let Some(received) = self.receive(&mut buffer, 0)? else {
                return Ok(());
            };
            let datagram = buffer
                .get(..received)
                .ok_or_else(|| malformed("netlink datagram grew between peek and read"))?;
            into.extend(parse_notifications(datagram)?);
        }
    }

    /// One recv(2): the datagram's length, or `None` when nothing is queued.
    fn receive(&self, buffer: &mut [u8], flags: libc::c_int) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: the buffer is writable for its length.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    flags | libc::MSG_DONTWAIT,
                )
            };
            if let Ok(received) = usize::try_from(received) {
                return Ok(Some(received));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(err),
            }
        }
    }
}

impl AsFd for EventSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The announcements in one datagram a subscribed socket received; other messages are skipped.
fn parse_notifications(datagram: &[u8]) -> io::Result<Vec<Notification>> {
    let mut notifications = Vec::new();
    for message in parse_messages(datagram)? {
        let payload = message.payload;
        let notification = match message.message_type {
            libc::RTM_NEWLINK | libc::RTM_DELLINK => {
                let link = parse_link(payload)?;
                Notification::Link {
                    ifindex: link.ifindex,
                    name: link.name,
                    gone: message.message_type == libc::RTM_DELLINK,
                }
            }
            libc::RTM_NEWNEIGH | libc::RTM_DELNEIGH => {
                let index = read_i32(payload, 4).ok_or_else(|| malformed("ndmsg cut short"))?;
                Notification::Neighbour {
                    ifindex: ifindex_from(index, "neighbour")?,
                }
            }
            libc::RTM_NEWADDR | libc::RTM_DELADDR => Notification::Address {
                ifindex: read_u32(payload, 4).ok_or_else(|| malformed("ifaddrmsg cut short"))?,
            },
            libc::RTM_NEWROUTE | libc::RTM_DELROUTE => Notification::Route,
            NLMSG_OVERRUN => Notification::Overrun,
            _ => continue,
        };
        notifications.push(notification);
    }
    Ok(notifications)
}

/// The netlink address of the kernel: port 0.
fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address
}

fn socklen_of<T>() -> libc::socklen_t {
    // Socket structs are a few dozen bytes: this never truncates.
    size_of::<T>() as libc::socklen_t
}

/// What the kernel answered to one request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Payloads of the reply messages, in order; `interrupted` if the kernel flagged the dump
    /// as possibly inconsistent.
    Messages {
        payloads: Vec<Vec<u8>>,
        interrupted: bool,
    },
    /// NLMSG_ERROR (or an NLMSG_DONE carrying an error) with this positive errno.
    KernelError { errno: i32 },
}

/// Gathers the reply to the request with one sequence number from successive datagrams.
struct ReplyCollector {
    sequence: u32,
    reply_type: u16,
    payloads: Vec<Vec<u8>>,
    interrupted: bool,
}

impl ReplyCollector {
    fn new(sequence: u32, reply_type: u16) -> Self {
        Self {
            sequence,
            reply_type,
            payloads: Vec::new(),
            interrupted: false,
        }
    }

    /// Takes in one datagram; returns the answer once the reply is complete.
    fn absorb(&mut self, datagram: &[u8]) -> io::Result<Option<Answer>> {
        for message in parse_messages(datagram)? {
            // Replies to earlier requests that timed out are not ours any more.
            if message.sequence != self.sequence {
                continue;
            }
            if message.flags & NLM_F_DUMP_INTR != 0 {
                self.interrupted = true;
            }
            match message.message_type {
                NLMSG_NOOP => {}
                NLMSG_OVERRUN => return Err(malformed("netlink reported an overrun")),
                NLMSG_ERROR => {
                    let code = read_i32(message.payload, 0)
                        .ok_or_else(|| malformed("NLMSG_ERROR without an error code"))?;
                    return self.finish_with(code).map(Some);
                }
                NLMSG_DONE => {
                    // Since Linux 4.x the dump's own result follows; older kernels send nothing.
                    let code = read_i32(message.payload, 0).unwrap_or(0);
                    return self.finish_with(code).map(Some);
                }
                message_type if message_type == self.reply_type => {
                    self.payloads.push(message.payload.to_vec());
                    // A reply that is not multi-part is a single message.
                    if message.flags & NLM_F_MULTI == 0 {
                        return Ok(Some(self.finish()));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Ends the reply on a status code: 0 is success, negative an errno.
    fn finish_with(&mut self, code: i32) -> io::Result<Answer> {
        match code {
            0 => Ok(self.finish()),
            code if code < 0 => Ok(Answer::KernelError {
                errno: code.saturating_neg(),
            }),
            code => Err(malformed(format!("netlink status {code} is not an errno"))),
        }
    }

    fn finish(&mut self) -> Answer {
        Answer::Messages {
            payloads: std::mem::take(&mut self.payloads),
            interrupted: self.interrupted,
        }
    }
}

/// Turns the answer to RTM_GETROUTE into a lookup result.
fn route_lookup_from(answer: Answer) -> io::Result<RouteLookup> {
    match answer {
        Answer::KernelError { errno } => Ok(RouteLookup::Unreachable {
            errno,
            message: describe_errno(errno),
        }),
        Answer::Messages { payloads, .. } => match payloads.first() {
            Some(payload) => parse_route(payload),
            None => Err(malformed("RTM_GETROUTE answered without a route")),
        },
    }
}

/// The C library's text for an errno, e.g. "Network is unreachable".
fn describe_errno(errno: i32) -> String {
    let mut text = [0u8; 256];
    // SAFETY: the buffer is writable for its full length; the XSI strerror_r that libc binds
    // NUL-terminates it on success.
    let status = unsafe { libc::strerror_r(errno, text.as_mut_ptr().cast(), text.len()) };
    match CStr::from_bytes_until_nul(&text) {
        Ok(text) if status == 0 && !text.is_empty() => text.to_string_lossy().into_owned(),
        _ => format!("error {errno}"),
    }
}

/// Builds a request message; refuses every type but GET and the deletion of a clsact qdisc,
/// so this client cannot change anything else.
fn encode_request(
    message_type: u16,
    flags: u16,
    sequence: u32,
    header: &[u8],
    attributes: &[(u16, &[u8])],
) -> io::Result<Vec<u8>> {
    let clsact_deletion =
        message_type == RTM_DELQDISC && attributes == [(TCA_KIND, b"clsact\0".as_slice())];
    if !is_get_request(message_type) && !clsact_deletion {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("netlink message type {message_type} is not a GET request"),
        ));
    }
    let mut body = header.to_vec();
    pad_to_alignment(&mut body);
    for (kind, value) in attributes {
        encode_attribute(&mut body, *kind, value)?;
    }
    let length = u32::try_from(NLMSG_HEADER_LEN + body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "netlink request too long"))?;
    let mut message = Vec::with_capacity(NLMSG_HEADER_LEN + body.len());
    message.extend_from_slice(&length.to_ne_bytes());
    message.extend_from_slice(&message_type.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&sequence.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
    message.extend_from_slice(&body);
    Ok(message)
}

/// Appends one attribute, padded to the 4-byte boundary (RTA_ALIGN).
pub(crate) fn encode_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> io::Result<()> {
    let length = u16::try_from(RTA_HEADER_LEN + value.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "netlink attribute too long"))?;
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad_to_alignment(out);
    Ok(())
}

/// rtnetlink types come as NEW, DEL, GET, SET from RTM_BASE on; only GET reads.
fn is_get_request(message_type: u16) -> bool {
    message_type >= RTM_BASE && (message_type - RTM_BASE) % 4 == 2
}

/// NLMSG_ALIGN and RTA_ALIGN: round up to a multiple of 4.
pub(crate) fn align(length: usize) -> usize {
    length.saturating_add(3) & !3
}

fn pad_to_alignment(bytes: &mut Vec<u8>) {
    bytes.resize(align(bytes.len()), 0);
}

pub(crate) fn malformed(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink message: {what}"),
    )
}

/// One netlink message inside a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) message_type: u16,
    pub(crate) flags: u16,
    pub(crate) sequence: u32,
    pub(crate) payload: &'a [u8],
}

/// Runs every parser of this module over one raw datagram, as if the kernel had sent it: the
/// message splitter, each message's payload through the link, address, neighbour and route
/// parsers, and the whole datagram through the reply collector as the answer to its first
/// message's sequence number. Returns how many payloads a parser accepted.
///
/// For the fuzz targets (`fuzz/`), which need the private parsers to be reachable: whatever the
/// bytes, this must return, never panic.
pub fn parse_datagram_for_fuzzing(datagram: &[u8]) -> usize {
    let Ok(messages) = parse_messages(datagram) else {
        return 0;
    };
    let mut accepted = 0;
    for message in &messages {
        let payload = message.payload;
        accepted += usize::from(parse_link(payload).is_ok())
            + usize::from(matches!(parse_address(payload), Ok(Some(_))))
            + usize::from(matches!(parse_neighbour(payload), Ok(Some(_))))
            + usize::from(parse_route(payload).is_ok());
    }
    accepted += parse_notifications(datagram).map_or(0, |notifications| notifications.len());
    if let Some(first) = messages.first() {
        let mut collector = ReplyCollector::new(first.sequence, first.message_type);
        if let Ok(Some(answer)) = collector.absorb(datagram) {
            accepted += usize::from(route_lookup_from(answer).is_ok());
        }
    }
    accepted
}

/// Splits a datagram into its messages.
pub(crate) fn parse_messages(datagram: &[u8]) -> io::Result<Vec<Message<'_>>> {
    let mut messages = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HEADER_LEN {
            return Err(malformed(format!(
                "{} bytes after the last message",
                rest.len()
            )));
        }
        let cut_short = || malformed("netlink header cut short");
        let length = read_u32(rest, 0).ok_or_else(cut_short)? as usize;
        let message_type = read_u16(rest, 4).ok_or_else(cut_short)?;
        let flags = read_u16(rest, 6).ok_or_else(cut_short)?;
        let sequence = read_u32(rest, 8).ok_or_else(cut_short)?;
        if length < NLMSG_HEADER_LEN || length > rest.len() {
            return Err(malformed(format!(
                "message length {length} with {} bytes left",
                rest.len()
            )));
        }
        let payload = rest
            .get(NLMSG_HEADER_LEN..length)
            .ok_or_else(|| malformed("message payload out of bounds"))?;
        messages.push(Message {
            message_type,
            flags,
            sequence,
            payload,
        });
        rest = rest.get(align(length)..).unwrap_or_default();
    }
    Ok(messages)
}

/// One attribute (`struct rtattr` plus value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attribute<'a> {
    /// Type without the NLA_F_NESTED and NLA_F_NET_BYTEORDER flags.
    pub(crate) kind: u16,
    pub(crate) value: &'a [u8],
}

/// Splits an attribute area (what follows a family header, or a nested attribute's value).
pub(crate) fn parse_attributes(area: &[u8]) -> io::Result<Vec<Attribute<'_>>> {
    let mut attributes = Vec::new();
    let mut rest = area;
    while !rest.is_empty() {
        let cut_short = || malformed(format!("{} bytes after the last attribute", rest.len()));
        let length = usize::from(read_u16(rest, 0).ok_or_else(cut_short)?);
        let kind = read_u16(rest, 2).ok_or_else(cut_short)?;
        if length < RTA_HEADER_LEN || length > rest.len() {
            return Err(malformed(format!(
                "attribute {kind} length {length} with {} bytes left",
                rest.len()
            )));
        }
        let value = rest
            .get(RTA_HEADER_LEN..length)
            .ok_or_else(|| malformed("attribute value out of bounds"))?;
        attributes.push(Attribute {
            kind: kind & NLA_TYPE_MASK,
            value,
        });
        rest = rest.get(align(length)..).unwrap_or_default();
    }
    Ok(attributes)
}

/// The value of the first attribute of `kind`.
pub(crate) fn find_attribute<'a>(attributes: &[Attribute<'a>], kind: u16) -> Option<&'a [u8]> {
    attributes
        .iter()
        .find(|attribute| attribute.kind == kind)
        .map(|attribute| attribute.value)
}

/// Splits a message payload into its fixed family header and its attributes.
fn split_family_header<'a, const LEN: usize>(
    payload: &'a [u8],
    what: &str,
) -> io::Result<(&'a [u8; LEN], Vec<Attribute<'a>>)> {
    let header = payload
        .get(..LEN)
        .and_then(|header| <&[u8; LEN]>::try_from(header).ok())
        .ok_or_else(|| malformed(format!("{what} cut short")))?;
    let attributes = payload.get(align(LEN)..).unwrap_or_default();
    Ok((header, parse_attributes(attributes)?))
}

fn read_array<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    read_array(bytes, offset).map(u16::from_ne_bytes)
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    read_array(bytes, offset).map(u32::from_ne_bytes)
}

fn read_i32(bytes: &[u8], offset: usize) -> Option<i32> {
    read_array(bytes, offset).map(i32::from_ne_bytes)
}

/// An interface index from a C `int` field: never negative.
fn ifindex_from(index: i32, what: &str) -> io::Result<u32> {
    u32::try_from(index).map_err(|_| malformed(format!("{what} has interface index {index}")))
}

/// A string attribute: up to the first NUL, if any.
pub(crate) fn attribute_string(value: &[u8]) -> String {
    let text = value.split(|&byte| byte == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

pub(crate) fn attribute_u8(value: &[u8], what: &str) -> io::Result<u8> {
    match value {
        [byte] => Ok(*byte),
        _ => Err(malformed(format!("{what} is {} bytes, not 1", value.len()))),
    }
}

pub(crate) fn attribute_u32(value: &[u8], what: &str) -> io::Result<u32> {
    <[u8; 4]>::try_from(value)
        .map(u32::from_ne_bytes)
        .map_err(|_| malformed(format!("{what} is {} bytes, not 4", value.len())))
}

fn attribute_ipv4(value: &[u8], what: &str) -> io::Result<Ipv4Addr> {
    <[u8; 4]>::try_from(value).map(Ipv4Addr::from).map_err(|_| {
        malformed(format!(
            "{what} is {} bytes, not an IPv4 address",
            value.len()
        ))
    })
}

fn attribute_mac(value: &[u8]) -> Option<[u8; 6]> {
    value.try_into().ok()
}

fn operstate_name(operstate: u8) -> String {
    OPERSTATE_NAMES
        .get(usize::from(operstate))
        .map_or_else(|| operstate.to_string(), |name| (*name).to_owned())
}

fn neighbour_state_name(state: u16) -> String {
    if state == libc::NUD_NONE {
        return "NONE".to_owned();
    }
    let mut names: Vec<String> = NEIGHBOUR_STATE_NAMES
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let known = NEIGHBOUR_STATE_NAMES
        .iter()
        .fold(0, |bits, (bit, _)| bits | bit);
    if state & !known != 0 {
        names.push(format!("{:#x}", state & !known));
    }
    names.join(" ")
}

/// A `struct tcmsg`: family unspecified, the interface, the handle and parent.
fn tcmsg(ifindex: u32, handle: u32, parent: u32) -> [u8; TCMSG_LEN] {
    let mut header = [0u8; TCMSG_LEN];
    header[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    header[8..12].copy_from_slice(&handle.to_ne_bytes());
    header[12..16].copy_from_slice(&parent.to_ne_bytes());
    header
}

/// Parses an RTM_NEWTFILTER payload; `None` for filters that are not BPF programs.
fn parse_bpf_filter(payload: &[u8]) -> io::Result<Option<BpfFilter>> {
    let (header, attributes) = split_family_header::<TCMSG_LEN>(payload, "tcmsg")?;
    // tcm_info holds the priority in its upper 16 bits and the protocol in the lower.
    let info = read_u32(header.as_slice(), 16).ok_or_else(|| malformed("tcmsg too short"))?;
    if find_attribute(&attributes, TCA_KIND)
        .map(attribute_string)
        .as_deref()
        != Some("bpf")
    {
        return Ok(None);
    }
    let Some(options) = find_attribute(&attributes, TCA_OPTIONS) else {
        return Ok(None);
    };
    let options = parse_attributes(options)?;
    let Some(id) = find_attribute(&options, TCA_BPF_ID) else {
        return Ok(None);
    };
    Ok(Some(BpfFilter {
        priority: (info >> 16) as u16,
        program_id: attribute_u32(id, "TCA_BPF_ID")?,
        name: find_attribute(&options, TCA_BPF_NAME).map(attribute_string),
    }))
}

/// Parses an RTM_NEWLINK payload.
fn parse_link(payload: &[u8]) -> io::Result<Link> {
    let (header, attributes) = split_family_header::<IFINFOMSG_LEN>(payload, "ifinfomsg")?;
    let [
        _family,
        _pad,
        _type_low,
        _type_high,
        i0,
        i1,
        i2,
        i3,
        f0,
        f1,
        f2,
        f3,
        ..,
    ] = *header;
    let ifindex = ifindex_from(i32::from_ne_bytes([i0, i1, i2, i3]), "link")?;
    let flags = u32::from_ne_bytes([f0, f1, f2, f3]);
    let name = find_attribute(&attributes, libc::IFLA_IFNAME)
        .map(attribute_string)
        .ok_or_else(|| malformed(format!("link {ifindex} without IFLA_IFNAME")))?;
    let operstate = match find_attribute(&attributes, libc::IFLA_OPERSTATE) {
        Some(value) => operstate_name(attribute_u8(value, "IFLA_OPERSTATE")?),
        None => operstate_name(0),
    };
    let carrier = match find_attribute(&attributes, libc::IFLA_CARRIER) {
        Some(value) => attribute_u8(value, "IFLA_CARRIER")? != 0,
        None => flags & IFF_LOWER_UP != 0,
    };
    let link_info = match find_attribute(&attributes, libc::IFLA_LINKINFO) {
        Some(nested) => parse_attributes(nested)?,
        None => Vec::new(),
    };
    let kind = find_attribute(&link_info, libc::IFLA_INFO_KIND).map(attribute_string);
    // A bridge port's own state rides in the link info as "slave data".
    let bridge_port_state = match (
        find_attribute(&link_info, IFLA_INFO_SLAVE_KIND).map(attribute_string),
        find_attribute(&link_info, IFLA_INFO_SLAVE_DATA),
    ) {
        (Some(slave_kind), Some(data)) if slave_kind == "bridge" => {
            match find_attribute(&parse_attributes(data)?, IFLA_BRPORT_STATE) {
                Some(state) => Some(bridge_port_state_name(attribute_u8(
                    state,
                    "IFLA_BRPORT_STATE",
                )?)),
                None => None,
            }
        }
        _ => None,
    };
    let optional_u32 = |kind: u16, what: &str| -> io::Result<Option<u32>> {
        find_attribute(&attributes, kind)
            .map(|value| attribute_u32(value, what))
            .transpose()
    };
    Ok(Link {
        ifindex,
        name,
        admin_up: flags & IFF_UP != 0,
        carrier,
        operstate,
        mac: find_attribute(&attributes, libc::IFLA_ADDRESS).and_then(attribute_mac),
        kind,
        xdp_program: match find_attribute(&attributes, IFLA_XDP) {
            Some(nested) => match find_attribute(&parse_attributes(nested)?, IFLA_XDP_PROG_ID) {
                Some(id) => Some(attribute_u32(id, "IFLA_XDP_PROG_ID")?).filter(|id| *id != 0),
                None => None,
            },
            None => None,
        },
        mtu: optional_u32(libc::IFLA_MTU, "IFLA_MTU")?.unwrap_or(0),
        // The peer's index in its own namespace: it may equal this link's own.
        peer_ifindex: optional_u32(libc::IFLA_LINK, "IFLA_LINK")?.filter(|peer| *peer != 0),
        peer_netnsid: optional_u32(IFLA_LINK_NETNSID, "IFLA_LINK_NETNSID")?.map(|id| id as i32),
        master: optional_u32(libc::IFLA_MASTER, "IFLA_MASTER")?.filter(|master| *master != 0),
        bridge_port_state,
        carrier_up_count: optional_u32(IFLA_CARRIER_UP_COUNT, "IFLA_CARRIER_UP_COUNT")?,
        carrier_down_count: optional_u32(IFLA_CARRIER_DOWN_COUNT, "IFLA_CARRIER_DOWN_COUNT")?,
    })
}

/// `BR_STATE_*` (uapi/linux/if_bridge.h) names.
fn bridge_port_state_name(state: u8) -> String {
    match state {
        0 => "disabled",
        1 => "listening",
        2 => "learning",
        3 => "forwarding",
        4 => "blocking",
        _ => return state.to_string(),
    }
    .to_owned()
}

/// Parses an RTM_NEWADDR payload; `None` for families other than IPv4.
fn parse_address(payload: &[u8]) -> io::Result<Option<Address>> {
    let (header, attributes) = split_family_header::<IFADDRMSG_LEN>(payload, "ifaddrmsg")?;
    let [family, prefix_len, _flags, _scope, i0, i1, i2, i3] = *header;
    if family != AF_INET {
        return Ok(None);
    }
    let ifindex = u32::from_ne_bytes([i0, i1, i2, i3]);
    if prefix_len > 32 {
        return Err(malformed(format!("IPv4 prefix length {prefix_len}")));
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is always ours.
    let value = find_attribute(&attributes, libc::IFA_LOCAL)
        .or_else(|| find_attribute(&attributes, libc::IFA_ADDRESS))
        .ok_or_else(|| malformed(format!("address on link {ifindex} without IFA_LOCAL")))?;
    Ok(Some(Address {
        ifindex,
        address: attribute_ipv4(value, "IFA_LOCAL")?,
        prefix_len,
    }))
}

/// Parses an RTM_NEWNEIGH payload; `None` for families other than IPv4.
fn parse_neighbour(payload: &[u8]) -> io::Result<Option<Neighbour>> {
    let (header, attributes) = split_family_header::<NDMSG_LEN>(payload, "ndmsg")?;
    let [
        family,
        _pad1,
        _pad2,
        _pad3,
        i0,
        i1,
        i2,
        i3,
        s0,
        s1,
        _flags,
        _type,
    ] = *header;
    if family != AF_INET {
        return Ok(None);
    }
    let ifindex = ifindex_from(i32::from_ne_bytes([i0, i1, i2, i3]), "neighbour")?;
    let value = find_attribute(&attributes, libc::NDA_DST)
        .ok_or_else(|| malformed(format!("neighbour on link {ifindex} without NDA_DST")))?;
    Ok(Some(Neighbour {
        ifindex,
        address: attribute_ipv4(value, "NDA_DST")?,
        state: neighbour_state_name(u16::from_ne_bytes([s0, s1])),
        mac: find_attribute(&attributes, libc::NDA_LLADDR).and_then(attribute_mac),
    }))
}

/// Parses the RTM_NEWROUTE payload answering RTM_GETROUTE.
fn parse_route(payload: &[u8]) -> io::Result<RouteLookup> {
    let (header, attributes) = split_family_header::<RTMSG_LEN>(payload, "rtmsg")?;
    let family = header[0];
    if family != AF_INET {
        return Err(malformed(format!("route reply of address family {family}")));
    }
    let oif = find_attribute(&attributes, libc::RTA_OIF)
        .ok_or_else(|| malformed("route reply without RTA_OIF"))?;
    let optional_ipv4 = |kind, what| {
        find_attribute(&attributes, kind)
            .map(|value| attribute_ipv4(value, what))
            .transpose()
    };
    Ok(RouteLookup::Via {
        oif: attribute_u32(oif, "RTA_OIF")?,
        gateway: optional_ipv4(libc::RTA_GATEWAY, "RTA_GATEWAY")?.map(Into::into),
        source: optional_ipv4(libc::RTA_PREFSRC, "RTA_PREFSRC")?.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message, built independently of the production encoder.
    fn message(message_type: u16, flags: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let length = (NLMSG_HEADER_LEN + payload.len()) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&length.to_ne_bytes());
        out.extend_from_slice(&message_type.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&sequence.to_ne_bytes());
        out.extend_from_slice(&4242u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align(out.len()), 0);
        out
    }

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((RTA_HEADER_LEN + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align(out.len()), 0);
        out
    }

    const MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0x00, 0x00, 0x02];

    /// RTM_NEWLINK payload for an up veth `cvl_0_0` with index 7.
    fn link_payload() -> Vec<u8> {
        let mut payload = vec![AF_UNSPEC, 0];
        payload.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
        payload.extend_from_slice(&7i32.to_ne_bytes());
        payload.extend_from_slice(&IFF_UP.to_ne_bytes());
        payload.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
        payload.extend(attribute(libc::IFLA_IFNAME, b"cvl_0_0\0"));
        payload.extend(attribute(libc::IFLA_MTU, &1500u32.to_ne_bytes()));
        payload.extend(attribute(libc::IFLA_OPERSTATE, &[libc::IF_OPER_UP as u8]));
        payload.extend(attribute(libc::IFLA_CARRIER, &[1]));
        payload.extend(attribute(libc::IFLA_ADDRESS, &MAC));
        payload.extend(attribute(libc::IFLA_LINK, &9u32.to_ne_bytes()));
        payload.extend(attribute(IFLA_LINK_NETNSID, &3u32.to_ne_bytes()));
        payload.extend(attribute(libc::IFLA_MASTER, &4u32.to_ne_bytes()));
        let mut linkinfo = attribute(libc::IFLA_INFO_KIND, b"veth\0");
        linkinfo.extend(attribute(libc::IFLA_INFO_DATA, &[0; 8]));
        linkinfo.extend(attribute(IFLA_INFO_SLAVE_KIND, b"bridge\0"));
        linkinfo.extend(attribute(
            IFLA_INFO_SLAVE_DATA,
            &attribute(IFLA_BRPORT_STATE, &[3]),
        ));
        payload.extend(attribute(
            libc::IFLA_LINKINFO | libc::NLA_F_NESTED as u16,
            &linkinfo,
        ));
        payload
    }

    fn neighbour_payload() -> Vec<u8> {
        let mut payload = vec![AF_INET, 0, 0, 0];
        payload.extend_from_slice(&7i32.to_ne_bytes());
        payload.extend_from_slice(&libc::NUD_REACHABLE.to_ne_bytes());
        payload.extend_from_slice(&[0, 1]); // ndm_flags, ndm_type
        payload.extend(attribute(libc::NDA_DST, &[10, 0, 0, 2]));
        payload.extend(attribute(libc::NDA_LLADDR, &MAC));
        payload
    }

    fn route_payload() -> Vec<u8> {
        let mut payload = vec![AF_INET, 32, 0, 0, libc::RT_TABLE_MAIN, 0, 0, 1];
        payload.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
        payload.extend(attribute(libc::RTA_TABLE, &254u32.to_ne_bytes()));
        payload.extend(attribute(libc::RTA_DST, &[192, 0, 2, 1]));
        payload.extend(attribute(libc::RTA_OIF, &3u32.to_ne_bytes()));
        payload.extend(attribute(libc::RTA_PREFSRC, &[10, 0, 0, 1]));
        payload.extend(attribute(libc::RTA_GATEWAY, &[10, 0, 0, 254]));
        payload
    }

    /// NLMSG_ERROR payload: the errno, then the header of the request it answers.
    fn error_payload(code: i32) -> Vec<u8> {
        let mut payload = code.to_ne_bytes().to_vec();
        payload.extend(&message(libc::RTM_GETROUTE, NLM_F_REQUEST, 5, &[])[..NLMSG_HEADER_LEN]);
        payload
    }

    #[test]
    fn struct_sizes_match_libc() {
        assert_eq!(NLMSG_HEADER_LEN, size_of::<libc::nlmsghdr>());
        assert_eq!(RTA_HEADER_LEN, size_of::<libc::rtattr>());
        assert_eq!(IFINFOMSG_LEN, size_of::<libc::ifinfomsg>());
        assert_eq!(IFADDRMSG_LEN, size_of::<libc::ifaddrmsg>());
    }

    #[test]
    fn parses_link_with_nested_linkinfo() {
        let link = parse_link(&link_payload()).unwrap();
        assert_eq!(
            link,
            Link {
                ifindex: 7,
                name: "cvl_0_0".to_owned(),
                admin_up: true,
                carrier: true,
                operstate: "up".to_owned(),
                mac: Some(MAC),
                kind: Some("veth".to_owned()),
                xdp_program: None,
                mtu: 1500,
                peer_ifindex: Some(9),
                peer_netnsid: Some(3),
                master: Some(4),
                bridge_port_state: Some("forwarding".to_owned()),
                carrier_up_count: None,
                carrier_down_count: None,
            }
        );
    }

    #[test]
    fn link_carrier_falls_back_to_lower_up() {
        let mut payload = vec![AF_UNSPEC, 0, 0, 0];
        payload.extend_from_slice(&1i32.to_ne_bytes());
        payload.extend_from_slice(&(IFF_UP | IFF_LOWER_UP).to_ne_bytes());
        payload.extend_from_slice(&0u32.to_ne_bytes());
        payload.extend(attribute(libc::IFLA_IFNAME, b"lo")); // no NUL: still a name
        payload.extend(attribute(libc::IFLA_OPERSTATE, &[42]));
        payload.extend(attribute(libc::IFLA_ADDRESS, &[1, 2, 3, 4]));
        let link = parse_link(&payload).unwrap();
        assert_eq!(link.name, "lo");
        assert!(link.carrier);
        assert_eq!(link.operstate, "42");
        assert_eq!(link.mac, None);
        assert_eq!(link.kind, None);
    }

    #[test]
    fn parses_neighbour() {
        assert_eq!(
            parse_neighbour(&neighbour_payload()).unwrap(),
            Some(Neighbour {
                ifindex: 7,
                address: Ipv4Addr::new(10, 0, 0, 2),
                state: "REACHABLE".to_owned(),
                mac: Some(MAC),
            })
        );
        let mut ipv6 = neighbour_payload();
        ipv6[0] = libc::AF_INET6 as u8;
        assert_eq!(parse_neighbour(&ipv6).unwrap(), None);
    }

    #[test]
    fn names_neighbour_states_like_ip() {
        assert_eq!(neighbour_state_name(libc::NUD_NONE), "NONE");
        assert_eq!(neighbour_state_name(libc::NUD_FAILED), "FAILED");
        assert_eq!(neighbour_state_name(libc::NUD_INCOMPLETE), "INCOMPLETE");
        assert_eq!(
            neighbour_state_name(libc::NUD_STALE | libc::NUD_PERMANENT | 0x100),
            "STALE PERMANENT 0x100"
        );
    }

    #[test]
    fn parses_address_preferring_local() {
        let mut payload = vec![AF_INET, 24, 0, 0];
        payload.extend_from_slice(&2u32.to_ne_bytes());
        payload.extend(attribute(libc::IFA_ADDRESS, &[10, 0, 0, 99]));
        payload.extend(attribute(libc::IFA_LOCAL, &[10, 0, 0, 1]));
        assert_eq!(
            parse_address(&payload).unwrap(),
            Some(Address {
                ifindex: 2,
                address: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24,
            })
        );
        payload[1] = 33;
        assert!(parse_address(&payload).is_err());
    }

    #[test]
    fn parses_route_reply() {
        let datagram = message(libc::RTM_NEWROUTE, 0, 9, &route_payload());
        let mut collector = ReplyCollector::new(9, libc::RTM_NEWROUTE);
        let answer = collector.absorb(&datagram).unwrap().unwrap();
        assert_eq!(
            route_lookup_from(answer).unwrap(),
            RouteLookup::Via {
                oif: 3,
                gateway: Some([10, 0, 0, 254].into()),
                source: Some([10, 0, 0, 1].into()),
            }
        );
    }

    #[test]
    fn error_reply_is_unreachable() {
        let datagram = message(NLMSG_ERROR, 0, 5, &error_payload(-libc::ENETUNREACH));
        let mut collector = ReplyCollector::new(5, libc::RTM_NEWROUTE);
        let answer = collector.absorb(&datagram).unwrap().unwrap();
        assert_eq!(
            answer,
            Answer::KernelError {
                errno: libc::ENETUNREACH
            }
        );
        let RouteLookup::Unreachable { errno, message } = route_lookup_from(answer).unwrap() else {
            panic!("an error reply must be Unreachable");
        };
        assert_eq!(errno, libc::ENETUNREACH);
        assert_eq!(message, "Network is unreachable");
        assert_eq!(describe_errno(libc::EHOSTUNREACH), "No route to host");
    }

    #[test]
    fn collects_multipart_dump_until_done() {
        let link = link_payload();
        let mut first = message(libc::RTM_NEWLINK, NLM_F_MULTI, 3, &link);
        first.extend(message(libc::RTM_NEWLINK, NLM_F_MULTI, 2, &link)); // stale reply
        first.extend(message(NLMSG_NOOP, 0, 3, &[]));
        first.extend(message(libc::RTM_NEWLINK, NLM_F_MULTI, 3, &link));
        let done = message(NLMSG_DONE, NLM_F_MULTI, 3, &0i32.to_ne_bytes());

        let mut collector = ReplyCollector::new(3, libc::RTM_NEWLINK);
        assert_eq!(collector.absorb(&first).unwrap(), None);
        assert_eq!(
            collector.absorb(&done).unwrap(),
            Some(Answer::Messages {
                payloads: vec![link.clone(), link],
                interrupted: false,
            })
        );
    }

    #[test]
    fn dump_flags_interruption_and_errors() {
        let interrupted = message(NLMSG_DONE, NLM_F_MULTI | NLM_F_DUMP_INTR, 1, &[]);
        assert_eq!(
            ReplyCollector::new(1, libc::RTM_NEWLINK)
                .absorb(&interrupted)
                .unwrap(),
            Some(Answer::Messages {
                payloads: Vec::new(),
                interrupted: true,
            })
        );
        let failed = message(NLMSG_DONE, NLM_F_MULTI, 1, &(-libc::EINTR).to_ne_bytes());
        assert_eq!(
            ReplyCollector::new(1, libc::RTM_NEWLINK)
                .absorb(&failed)
                .unwrap(),
            Some(Answer::KernelError { errno: libc::EINTR })
        );
        let overrun = message(NLMSG_OVERRUN, 0, 1, &[]);
        assert!(
            ReplyCollector::new(1, libc::RTM_NEWLINK)
                .absorb(&overrun)
                .is_err()
        );
        let positive = message(NLMSG_ERROR, 0, 1, &error_payload(7));
        assert!(
            ReplyCollector::new(1, libc::RTM_NEWLINK)
                .absorb(&positive)
                .is_err()
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn encodes_route_get_request() {
        let mut header = [0u8; RTMSG_LEN];
        header[0] = AF_INET;
        header[1] = 32;
        let request = encode_request(
            libc::RTM_GETROUTE,
            NLM_F_REQUEST,
            0x0102_0304,
            &header,
            &[(libc::RTA_DST, &[127, 0, 0, 1])],
        )
        .unwrap();
        #[rustfmt::skip]
        let expected = [
            36, 0, 0, 0, 26, 0, 1, 0, 4, 3, 2, 1, 0, 0, 0, 0, // nlmsghdr
            2, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,               // rtmsg
            8, 0, 1, 0, 127, 0, 0, 1,                          // RTA_DST
        ];
        assert_eq!(request, expected);
    }

    #[test]
    fn announcements_name_what_changed() {
        let mut datagram = message(libc::RTM_DELLINK, 0, 0, &link_payload());
        datagram.extend(message(libc::RTM_NEWNEIGH, 0, 0, &neighbour_payload()));
        let mut address = vec![AF_INET, 24, 0, 0];
        address.extend_from_slice(&7u32.to_ne_bytes());
        datagram.extend(message(libc::RTM_NEWADDR, 0, 0, &address));
        datagram.extend(message(libc::RTM_DELROUTE, 0, 0, &route_payload()));
        datagram.extend(message(NLMSG_NOOP, 0, 0, &[]));
        assert_eq!(
            parse_notifications(&datagram).unwrap(),
            [
                Notification::Link {
                    ifindex: 7,
                    name: "cvl_0_0".to_owned(),
                    gone: true
                },
                Notification::Neighbour { ifindex: 7 },
                Notification::Address { ifindex: 7 },
                Notification::Route,
            ]
        );
        let cut = message(libc::RTM_NEWNEIGH, 0, 0, &[AF_INET, 0]);
        assert!(parse_notifications(&cut).is_err());
    }

    /// A link created in a namespace of its own is announced to a socket joined there.
    #[test]
    fn a_joined_socket_hears_of_new_links() {
        // Root only (a new namespace): skip elsewhere.
        let Ok(()) = std::thread::spawn(|| -> io::Result<()> {
            // SAFETY: unshare on this short-lived thread only; it ends with the closure.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let socket = EventSocket::open(&[Group::Link])?;
            let mut heard = Vec::new();
            socket.drain(&mut heard)?;
            assert!(heard.is_empty(), "{heard:?}");
            let status = std::process::Command::new("ip")
                .args([
                    "link", "add", "evtest0", "type", "veth", "peer", "name", "evtest1",
                ])
                .status()?;
            assert!(status.success());
            socket.drain(&mut heard)?;
            assert!(
                heard.iter().any(|n| matches!(
                    n,
                    Notification::Link { name, gone: false, .. } if name == "evtest0"
                )),
                "{heard:?}"
            );
            Ok(())
        })
        .join()
        .unwrap() else {
            eprintln!("cannot make a network namespace (not root?): skipped");
            return;
        };
    }

    #[test]
    fn refuses_anything_but_get() {
        for message_type in [libc::RTM_NEWLINK, libc::RTM_DELROUTE, libc::RTM_SETLINK, 3] {
            let err = encode_request(message_type, NLM_F_REQUEST, 1, &[], &[]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        for message_type in [
            libc::RTM_GETLINK,
            libc::RTM_GETADDR,
            libc::RTM_GETNEIGH,
            libc::RTM_GETROUTE,
        ] {
            assert!(is_get_request(message_type));
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let datagram = message(libc::RTM_NEWLINK, 0, 1, &link_payload());
        for cut in 1..datagram.len() {
            assert!(parse_messages(&datagram[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(parse_messages(&datagram).unwrap().len(), 1);

        let payload = link_payload();
        for cut in 0..IFINFOMSG_LEN {
            assert!(parse_link(&payload[..cut]).is_err(), "cut at {cut}");
        }
        for cut in IFINFOMSG_LEN..payload.len() {
            let _ = parse_link(&payload[..cut]); // must not panic
        }
        // Inside the first attribute (the name): an error, not a shorter name.
        assert!(parse_link(&payload[..IFINFOMSG_LEN + 6]).is_err());
        assert!(parse_neighbour(&neighbour_payload()[..NDMSG_LEN + 5]).is_err());
        assert!(parse_route(&route_payload()[..RTMSG_LEN - 1]).is_err());
        assert!(parse_address(&[AF_INET, 8, 0]).is_err());
    }

    #[test]
    fn bad_lengths_are_errors() {
        for length in [0u32, 3, 15, 1 << 20, u32::MAX] {
            let mut datagram = message(NLMSG_DONE, 0, 1, &[0; 4]);
            datagram[..4].copy_from_slice(&length.to_ne_bytes());
            assert!(parse_messages(&datagram).is_err(), "nlmsg_len {length}");
        }
        for length in [0u16, 3, 200, u16::MAX] {
            let mut attributes = attribute(libc::IFLA_IFNAME, b"eth0\0");
            attributes[..2].copy_from_slice(&length.to_ne_bytes());
            assert!(parse_attributes(&attributes).is_err(), "rta_len {length}");
        }
        // Wrongly sized values.
        let mut payload = link_payload();
        payload.truncate(IFINFOMSG_LEN);
        payload.extend(attribute(libc::IFLA_IFNAME, b"x\0"));
        payload.extend(attribute(libc::IFLA_OPERSTATE, &[6, 6]));
        assert!(parse_link(&payload).is_err());
        let mut route = route_payload();
        route.extend(attribute(libc::RTA_GATEWAY, &[1, 2, 3])); // later duplicate: ignored
        assert!(parse_route(&route).is_ok());
        let mut route = route_payload();
        route.truncate(RTMSG_LEN);
        route.extend(attribute(libc::RTA_OIF, &[1, 0]));
        assert!(parse_route(&route).is_err());
        // A negative interface index.
        let mut payload = link_payload();
        payload[4..8].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(parse_link(&payload).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed xorshift stream: reproducible noise.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let length = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            // Plausible lengths reach deeper into the parsers than pure noise does.
            if round % 2 == 0 && bytes.len() >= 4 {
                let length = bytes.len() as u32;
                bytes[..4].copy_from_slice(&length.to_ne_bytes());
            }
            let _ = parse_messages(&bytes);
            let _ = parse_attributes(&bytes);
            let _ = parse_link(&bytes);
            let _ = parse_address(&bytes);
            let _ = parse_neighbour(&bytes);
            let _ = parse_route(&bytes);
            let _ = ReplyCollector::new(1, libc::RTM_NEWLINK).absorb(&bytes);
        }
    }

    #[test]
    fn kernel_loopback_in_own_namespace() {
        let socket = RouteSocket::open().unwrap();
        let links = socket.links().unwrap();
        let lo = links.iter().find(|link| link.name == "lo").unwrap();
        assert_eq!(lo.ifindex, 1);
        assert!(lo.admin_up);
        assert_eq!(socket.link("lo").unwrap().as_ref(), Some(lo));
        assert_eq!(socket.link("no-such-link").unwrap(), None);

        let loopback = Address {
            ifindex: 1,
            address: Ipv4Addr::LOCALHOST,
            prefix_len: 8,
        };
        assert!(socket.addresses().unwrap().contains(&loopback));
        socket.neighbours().unwrap();
        assert!(matches!(
            socket.route_get(Ipv4Addr::LOCALHOST).unwrap(),
            RouteLookup::Via { oif: 1, .. }
        ));
    }

    /// A socket opened in a fresh namespace keeps reading that namespace from another thread.
    /// Needs CAP_SYS_ADMIN: skipped without it.
    #[test]
    fn kernel_socket_stays_in_its_namespace() {
        let opened = std::thread::spawn(|| {
            // SAFETY: unshare takes no pointers and moves only this short-lived thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            Some(RouteSocket::open().unwrap())
        })
        .join()
        .unwrap();
        let Some(socket) = opened else {
            eprintln!("skipped: cannot create a network namespace (not root?)");
            return;
        };
        let links = socket.links().unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        assert_eq!(links[0].name, "lo");
        assert!(!links[0].admin_up);
        let lookup = socket.route_get(Ipv4Addr::new(10, 0, 0, 2)).unwrap();
        assert_eq!(
            lookup,
            RouteLookup::Unreachable {
                errno: libc::ENETUNREACH,
                message: "Network is unreachable".to_owned(),
            }
        );
    }
}
