//! [`EventSocket`]: rtnetlink multicast announcements, heard without asking.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use super::{
    codec::*,
    decode::*,
    socket::{RECEIVE_BUFFER_LEN, kernel_address, socklen_of},
};

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
        let groups: Vec<libc::c_int> = groups.iter().map(|group| *group as libc::c_int).collect();
        Self::open_protocol(libc::NETLINK_ROUTE, &groups)
    }

    /// Opens a socket inside namespace `netns` told of nftables' changes (NFNLGRP_NFTABLES:
    /// tables, chains, rules added or removed, by nft and iptables-nft alike). Read it with
    /// [`Self::drain_datagrams`].
    pub fn open_nftables_in(netns: &str) -> io::Result<Self> {
        /// NFNLGRP_NFTABLES, include/uapi/linux/netfilter/nfnetlink.h.
        const NFNLGRP_NFTABLES: libc::c_int = 7;
        let _inside = crate::netns::NetnsGuard::enter(netns).map_err(io::Error::other)?;
        Self::open_protocol(libc::NETLINK_NETFILTER, &[NFNLGRP_NFTABLES])
    }

    fn open_protocol(protocol: libc::c_int, groups: &[libc::c_int]) -> io::Result<Self> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                protocol,
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
            // SAFETY: the option value points to a live c_int of the length passed.
            let joined = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    libc::NETLINK_ADD_MEMBERSHIP,
                    std::ptr::from_ref(group).cast(),
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
        self.drain_datagrams(|datagram| {
            match datagram {
                Some(datagram) => into.extend(parse_notifications(datagram)?),
                None => into.push(Notification::Overrun),
            }
            Ok(())
        })
    }

    /// Hands every datagram queued now to `each`, without waiting; `None` when the kernel
    /// dropped announcements because the socket's buffer overflowed.
    pub fn drain_datagrams(
        &self,
        mut each: impl FnMut(Option<&[u8]>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut buffer = vec![0u8; RECEIVE_BUFFER_LEN];
        loop {
            // Peek first: a datagram bigger than the buffer would otherwise be cut short.
            let pending = match self.receive(&mut buffer, libc::MSG_PEEK | libc::MSG_TRUNC) {
                Ok(Some(pending)) => pending,
                Ok(None) => return Ok(()),
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    each(None)?;
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
            each(Some(datagram))?;
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
pub(super) fn parse_notifications(datagram: &[u8]) -> io::Result<Vec<Notification>> {
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
