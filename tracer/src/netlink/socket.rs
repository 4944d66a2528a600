//! [`RouteSocket`]: one request at a time to the kernel, answers gathered into messages.

use std::{
    cell::Cell,
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::{Address, BpfFilter, ClsactHook, Link, Neighbour, RouteLookup, codec::*, decode::*};

/// Receive timeout: the kernel answers within microseconds, so this only stops hangs.
pub(super) const RECEIVE_TIMEOUT_SECS: libc::time_t = 2;
/// Starting receive buffer; it grows when a datagram is bigger.
pub(super) const RECEIVE_BUFFER_LEN: usize = 32 * 1024;
/// A dump that changed under the kernel's feet (NLM_F_DUMP_INTR) is retried this many times.
pub(super) const DUMP_ATTEMPTS: u32 = 3;

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
        let fd = open_netlink(libc::NETLINK_ROUTE)?;
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

    /// The links' aliases (ifalias), by interface index: only links that have one.
    pub fn aliases(&self) -> io::Result<Vec<(u32, String)>> {
        let mut header = [0u8; IFINFOMSG_LEN];
        header[0] = AF_UNSPEC;
        let mut aliases = Vec::new();
        for payload in self.dump(libc::RTM_GETLINK, &header, libc::RTM_NEWLINK)? {
            aliases.extend(parse_link_alias(&payload)?);
        }
        Ok(aliases)
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

    /// Deletes `ifindex`'s IPv4 neighbour entry for `address`, like `ip neigh del`: `Ok(false)`
    /// when there was none. Only for an entry tracer's own probes made.
    pub fn delete_neighbour(&self, ifindex: u32, address: Ipv4Addr) -> io::Result<bool> {
        let mut header = [0u8; NDMSG_LEN];
        header[0] = AF_INET; // ndm_family
        header[4..8].copy_from_slice(&ifindex.to_ne_bytes()); // ndm_ifindex
        match self.exchange(
            libc::RTM_DELNEIGH,
            NLM_F_REQUEST | NLM_F_ACK,
            &header,
            &[(libc::NDA_DST, &address.octets())],
            NLMSG_ERROR,
        )? {
            Answer::Messages { .. } => Ok(true),
            Answer::KernelError {
                errno: libc::ENOENT,
            } => Ok(false),
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

/// The netlink address of the kernel: port 0.
pub(super) fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address
}

/// A netlink socket of `protocol` in the calling thread's network namespace, whose receives
/// give up after `RECEIVE_TIMEOUT_SECS` (the kernel answers within microseconds: this only
/// stops hangs).
pub(crate) fn open_netlink(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
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
    Ok(fd)
}

pub(super) fn socklen_of<T>() -> libc::socklen_t {
    // Socket structs are a few dozen bytes: this never truncates.
    size_of::<T>() as libc::socklen_t
}
