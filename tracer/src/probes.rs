//! Active probes sent from inside a namespace: ARP requests on a port, ICMP echo requests and
//! TCP connects. Each runs on a thread of its own that enters the namespace first.
//!
//! Sockets are created inside the namespace, so they belong to it whichever thread reads them.

use std::{
    io,
    mem::size_of,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::atomic::{AtomicU16, Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use tracer_evidence::ExchangeOutcome;

use crate::netns::{self, NetnsGuard};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARP_FRAME_LEN: usize = 42;
const ICMP_ECHO: u8 = 8;
const ICMP_ECHOREPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
/// Time between two probes of one kind, and how long to wait for late answers after the last
/// when the path's round trip is not known (the ARP probes measure it for the others).
const INTERVAL: Duration = Duration::from_millis(40);
pub const LINGER: Duration = Duration::from_millis(300);
/// Poll granularity while waiting for answers.
const RECEIVE_SLICE: Duration = Duration::from_millis(10);

/// Runs `work` on a new thread inside namespace `netns`.
fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> JoinHandle<io::Result<T>> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let _inside = NetnsGuard::enter(&netns).map_err(io::Error::other)?;
        work()
    })
}

/// Joins a probe thread, turning its failure into the outcome's error.
pub fn finish(handle: JoinHandle<io::Result<ExchangeOutcome>>) -> ExchangeOutcome {
    match handle.join() {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => ExchangeOutcome {
            error: Some(err.to_string()),
            ..ExchangeOutcome::default()
        },
        Err(_) => ExchangeOutcome {
            error: Some("probe thread panicked".to_owned()),
            ..ExchangeOutcome::default()
        },
    }
}

fn socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_receive_timeout(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv outlives the call and has the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram, or None when the receive timeout passed.
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, libc::sockaddr_ll)>> {
    receive_with(fd, buf, 0)
}

/// Receives one datagram already queued, or None without waiting.
fn receive_queued(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, libc::sockaddr_ll)>> {
    receive_with(fd, buf, libc::MSG_DONTWAIT)
}

fn receive_with(
    fd: &OwnedFd,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Option<(usize, libc::sockaddr_ll)>> {
    // SAFETY: zeroed sockaddr_ll is a valid value; recvfrom writes at most its size.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buf and from are valid for the lengths given.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&raw mut from).cast(),
            &mut from_len,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(None)
            }
            _ => Err(err),
        };
    }
    Ok(Some((n as usize, from)))
}

/// Sends `count` probes `INTERVAL` apart, collecting answers until all came or `linger` after
/// the last probe; answers already queued then are still read, however late this thread
/// runs. `send(seq)` sends probe `seq`; `answer(bytes)` classifies a received packet.
fn exchange(
    fd: &OwnedFd,
    count: u32,
    linger: Duration,
    mut send: impl FnMut(u16) -> io::Result<()>,
    mut answer: impl FnMut(&[u8], &libc::sockaddr_ll, &mut ExchangeOutcome),
) -> io::Result<ExchangeOutcome> {
    set_receive_timeout(fd, RECEIVE_SLICE)?;
    let mut outcome = ExchangeOutcome::default();
    let mut buf = [0u8; 2048];
    let mut next_send = Instant::now();
    let mut deadline = None;
    loop {
        let now = Instant::now();
        if outcome.sent < count && now >= next_send {
            if let Err(err) = send(outcome.sent as u16 + 1) {
                outcome.error = Some(err.to_string());
                return Ok(outcome);
            }
            outcome.sent += 1;
            next_send = now + INTERVAL;
            if outcome.sent == count {
                deadline = Some(now + linger);
            }
        }
        if outcome.sent == count && outcome.answered + outcome.unreachable >= count {
            return Ok(outcome);
        }
        if deadline.is_some_and(|deadline| now >= deadline) {
            while let Some((len, from)) = receive_queued(fd, &mut buf)? {
                answer(&buf[..len], &from, &mut outcome);
            }
            return Ok(outcome);
        }
        if let Some((len, from)) = receive(fd, &mut buf)? {
            answer(&buf[..len], &from, &mut outcome);
        }
    }
}

/// Joins a timed probe's thread (see [`finish`]).
pub fn finish_timed(
    handle: JoinHandle<io::Result<(ExchangeOutcome, Option<Duration>)>>,
) -> (ExchangeOutcome, Option<Duration>) {
    match handle.join() {
        Ok(Ok(timed)) => timed,
        Ok(Err(err)) => (
            ExchangeOutcome {
                error: Some(err.to_string()),
                ..ExchangeOutcome::default()
            },
            None,
        ),
        Err(_) => (
            ExchangeOutcome {
                error: Some("probe thread panicked".to_owned()),
                ..ExchangeOutcome::default()
            },
            None,
        ),
    }
}

/// ARP requests for `target_ip` sent on `interface` (in `netns`) as if from `source_ip`; with
/// the round trip, from the first request to the first answer (ARP answers do not say which
/// request they answer: a first request lost makes it longer, never shorter).
pub fn arp(
    netns: &str,
    interface: &str,
    source_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
    count: u32,
) -> JoinHandle<io::Result<(ExchangeOutcome, Option<Duration>)>> {
    let interface = interface.to_owned();
    in_netns(netns, move || {
        let ifindex = netns::ifindex(&interface).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface {interface}"))
        })?;
        let fd = socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        )?;
        // SAFETY: zeroed sockaddr_ll is valid; the fields set make it a bind address.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = ETH_P_ARP.to_be();
        address.sll_ifindex = ifindex as i32;
        // SAFETY: address is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let mac = hardware_address(&fd, &interface)?;
        let request = arp_request(mac, source_ip, target_ip);
        let first_sent = std::cell::Cell::new(None);
        let mut round_trip = None;
        let outcome = exchange(
            &fd,
            count,
            LINGER,
            |_| {
                if first_sent.get().is_none() {
                    first_sent.set(Some(Instant::now()));
                }
                // SAFETY: request is valid for its length; the socket is bound to the port.
                let n = unsafe {
                    libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0)
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            },
            |frame, from, outcome| {
                if i32::from(from.sll_pkttype) != libc::PACKET_OUTGOING as i32
                    && is_arp_reply(frame, target_ip, source_ip)
                {
                    outcome.answered += 1;
                    if round_trip.is_none() {
                        round_trip = first_sent.get().map(|sent: Instant| sent.elapsed());
                    }
                }
            },
        )?;
        Ok((outcome, round_trip))
    })
}

fn hardware_address(fd: &OwnedFd, interface: &str) -> io::Result<[u8; 6]> {
    // SAFETY: zeroed ifreq is valid; the name is copied in bounds below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request
        .ifr_name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr inside the ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFHWADDR the union holds ifr_hwaddr.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(std::array::from_fn(|i| data[i] as u8))
}

fn arp_request(mac: [u8; 6], source_ip: Ipv4Addr, target_ip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut frame = [0u8; ARP_FRAME_LEN];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&source_ip.octets());
    // Target hardware address stays zero.
    frame[38..42].copy_from_slice(&target_ip.octets());
    frame
}

/// An ARP reply from `sender_ip` to `receiver_ip`.
fn is_arp_reply(frame: &[u8], sender_ip: Ipv4Addr, receiver_ip: Ipv4Addr) -> bool {
    frame.len() >= ARP_FRAME_LEN
        && frame[12..14] == ETH_P_ARP.to_be_bytes()
        && frame[20..22] == 2u16.to_be_bytes()
        && frame[28..32] == sender_ip.octets()
        && frame[38..42] == receiver_ip.octets()
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request of `len` bytes of ICMP (at least the 24 of header and tag).
fn echo_request(id: u16, seq: u16, len: usize) -> Vec<u8> {
    let mut packet = vec![0u8; len.max(ECHO_LEN)];
    packet[0] = ICMP_ECHO;
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..24].copy_from_slice(b"tracer-diagnose!");
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// ICMP echo header and tracer's tag.
const ECHO_LEN: usize = 24;
const IPV4_HEADER_LEN: usize = 20;

/// Path MTU discovery "do": the kernel sets DF and refuses (EMSGSIZE) what does not fit.
fn set_dont_fragment(fd: &OwnedFd) -> io::Result<()> {
    let value: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: the option value points to a live c_int of the length passed.
    let status = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What an IPv4 packet received on the raw ICMP socket says about our echo `id`.
#[derive(Debug, PartialEq, Eq)]
enum EchoAnswer {
    Reply,
    Unreachable,
    Unrelated,
}

fn classify_echo_answer(packet: &[u8], id: u16, destination: Ipv4Addr) -> EchoAnswer {
    let Some(&version_ihl) = packet.first() else {
        return EchoAnswer::Unrelated;
    };
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    let Some(icmp) = packet.get(header_len..) else {
        return EchoAnswer::Unrelated;
    };
    let source = packet.get(12..16);
    match icmp.first() {
        Some(&ICMP_ECHOREPLY)
            if icmp.get(4..6) == Some(&id.to_be_bytes()[..])
                && source == Some(&destination.octets()[..]) =>
        {
            EchoAnswer::Reply
        }
        Some(&ICMP_DEST_UNREACH) => {
            // The error quotes our IP header and the first 8 bytes of our ICMP header.
            let quoted = icmp.get(8..).unwrap_or_default();
            let quoted_len = usize::from(quoted.first().copied().unwrap_or(0) & 0x0f) * 4;
            let ours = quoted.get(quoted_len) == Some(&ICMP_ECHO)
                && quoted.get(quoted_len + 4..quoted_len + 6) == Some(&id.to_be_bytes()[..]);
            if ours {
                EchoAnswer::Unreachable
            } else {
                EchoAnswer::Unrelated
            }
        }
        _ => EchoAnswer::Unrelated,
    }
}

/// An echo identifier of our own: distinct per probe, so that two directions (or two tracers)
/// never count each other's replies.
fn next_echo_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16).wrapping_mul(31) ^ NEXT.fetch_add(0x0101, Ordering::Relaxed)
}

/// ICMP echo requests to `destination`, sent from namespace `netns`, answers awaited
/// `linger` after the last.
pub fn echo(
    netns: &str,
    destination: Ipv4Addr,
    count: u32,
    linger: Duration,
) -> JoinHandle<io::Result<ExchangeOutcome>> {
    echo_of_size(netns, destination, count, None, linger)
}

/// `count` echo requests of `packet_size` bytes of IP with don't-fragment set: they pass
/// only where every hop's MTU is at least that.
pub fn echo_dont_fragment(
    netns: &str,
    destination: Ipv4Addr,
    count: u32,
    packet_size: u32,
    linger: Duration,
) -> JoinHandle<io::Result<ExchangeOutcome>> {
    echo_of_size(netns, destination, count, Some(packet_size), linger)
}

fn echo_of_size(
    netns: &str,
    destination: Ipv4Addr,
    count: u32,
    dont_fragment_size: Option<u32>,
    linger: Duration,
) -> JoinHandle<io::Result<ExchangeOutcome>> {
    in_netns(netns, move || {
        let fd = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)?;
        let icmp_len = match dont_fragment_size {
            Some(size) => {
                set_dont_fragment(&fd)?;
                (size as usize).saturating_sub(IPV4_HEADER_LEN)
            }
            None => ECHO_LEN,
        };
        let id = next_echo_id();
        // SAFETY: zeroed sockaddr_in is valid; family, port and address are set below.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as libc::sa_family_t;
        to.sin_addr.s_addr = u32::from_ne_bytes(destination.octets());
        let mut replied = std::collections::HashSet::new();
        exchange(
            &fd,
            count,
            linger,
            |seq| {
                let packet = echo_request(id, seq, icmp_len);
                // SAFETY: packet and `to` are valid for the lengths passed.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&raw const to).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            },
            |packet, _, outcome| match classify_echo_answer(packet, id, destination) {
                EchoAnswer::Reply => {
                    let header_len = usize::from(packet[0] & 0x0f) * 4;
                    // Count each sequence number once, even if duplicated on the way.
                    if replied.insert(
                        packet
                            .get(header_len + 6..header_len + 8)
                            .map(<[u8]>::to_vec),
                    ) {
                        outcome.answered += 1;
                    }
                }
                EchoAnswer::Unreachable => outcome.unreachable += 1,
                EchoAnswer::Unrelated => {}
            },
        )
    })
}

/// `count` TCP connects to `destination` from namespace `netns`, all at once.
pub fn tcp(
    netns: &str,
    destination: SocketAddrV4,
    count: u32,
    timeout: Duration,
) -> JoinHandle<io::Result<ExchangeOutcome>> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let attempts: Vec<_> = (0..count)
            .map(|_| {
                in_netns(&netns, move || {
                    Ok(TcpStream::connect_timeout(
                        &SocketAddr::V4(destination),
                        timeout,
                    ))
                })
            })
            .collect();
        let mut outcome = ExchangeOutcome::default();
        for attempt in attempts {
            outcome.sent += 1;
            match attempt.join() {
                Ok(Ok(Ok(_stream))) => outcome.answered += 1,
                Ok(Ok(Err(err))) if err.kind() == io::ErrorKind::ConnectionRefused => {
                    outcome.refused += 1;
                }
                Ok(Ok(Err(err))) if err.kind() == io::ErrorKind::TimedOut => {}
                Ok(Ok(Err(err))) | Ok(Err(err)) => outcome.error = Some(err.to_string()),
                Err(_) => outcome.error = Some("probe thread panicked".to_owned()),
            }
        }
        Ok(outcome)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_request_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let frame = arp_request(mac, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 1]);
        assert_eq!(&frame[28..32], &[10, 0, 0, 1]);
        assert_eq!(&frame[38..42], &[10, 0, 0, 2]);
        // A request is not a reply.
        assert!(!is_arp_reply(
            &frame,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2)
        ));
    }

    #[test]
    fn arp_reply_is_recognised() {
        let mut frame = arp_request(
            [2; 6],
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
        );
        frame[21] = 2;
        assert!(is_arp_reply(
            &frame,
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1)
        ));
        assert!(!is_arp_reply(
            &frame,
            Ipv4Addr::new(10, 0, 0, 3),
            Ipv4Addr::new(10, 0, 0, 1)
        ));
        assert!(!is_arp_reply(
            &frame[..20],
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1)
        ));
    }

    #[test]
    fn echo_request_checksum_verifies() {
        let packet = echo_request(0x1234, 7, ECHO_LEN);
        assert_eq!(checksum(&packet), 0);
        let packet = echo_request(0x1234, 7, 8972);
        assert_eq!(packet.len(), 8972);
        assert_eq!(checksum(&packet), 0);
    }

    fn ipv4(source: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&source);
        packet.extend_from_slice(&[10, 0, 0, 1]);
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn echo_answers() {
        let destination = Ipv4Addr::new(10, 0, 0, 2);
        let mut reply = echo_request(0x1234, 1, ECHO_LEN);
        reply[0] = ICMP_ECHOREPLY;
        let packet = ipv4([10, 0, 0, 2], &reply);
        assert_eq!(
            classify_echo_answer(&packet, 0x1234, destination),
            EchoAnswer::Reply
        );
        assert_eq!(
            classify_echo_answer(&packet, 0x9999, destination),
            EchoAnswer::Unrelated
        );
        let from_elsewhere = ipv4([10, 0, 0, 9], &reply);
        assert_eq!(
            classify_echo_answer(&from_elsewhere, 0x1234, destination),
            EchoAnswer::Unrelated
        );

        let quoted = ipv4([10, 0, 0, 1], &echo_request(0x1234, 1, ECHO_LEN)[..8]);
        let mut unreachable = vec![ICMP_DEST_UNREACH, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend_from_slice(&quoted);
        let packet = ipv4([10, 0, 0, 1], &unreachable);
        assert_eq!(
            classify_echo_answer(&packet, 0x1234, destination),
            EchoAnswer::Unreachable
        );

        assert_eq!(
            classify_echo_answer(&[], 1, destination),
            EchoAnswer::Unrelated
        );
        assert_eq!(
            classify_echo_answer(&[0x4f, 1, 2], 1, destination),
            EchoAnswer::Unrelated
        );
    }
}
