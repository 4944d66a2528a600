//! The cable map: tracer's own frames sent from every port, and where its tc programs saw them
//! arrive; LLDP frames arriving meanwhile; each port's link state and history.
//!
//! The ports' counting programs run with capture on: they copy tracer's cable frames
//! (EtherType 0x88B5) and LLDP frames to user space, counted as `other` and passed on as
//! everything else. A port that was administratively down is set up to send and down again
//! afterwards, on error too; nothing else about a port changes.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use log::{debug, warn};
use tracer_common::ETH_P_TRACER_CABLE;
use tracer_evidence::{
    CableMap, CablePort, Link, LinkPartner, PortLinkState, PortRef, RouteLookup,
};

use crate::{
    cable_frame::CableFrame,
    capture,
    collect::ports::{IngressHook, PortOptions, PortPrograms},
    ethtool::EthtoolSocket,
    netlink::RouteSocket,
    netns::{self, NetnsGuard},
    spec::PortSpec,
};

/// Frames sent from each port, and the pause between rounds of them.
const FRAMES_PER_PORT: u32 = 3;
const ROUND_PAUSE: Duration = Duration::from_millis(10);
/// How long the last frames are given to arrive.
const SETTLE: Duration = Duration::from_millis(100);
/// How long a port set up for the map is given to get carrier (a NIC negotiates its link).
const CARRIER_WAIT: Duration = Duration::from_secs(5);
const CARRIER_POLL: Duration = Duration::from_millis(20);
/// ice's private flag for its firmware LLDP agent.
const FIRMWARE_LLDP_FLAG: &str = "fw-lldp-agent";

pub struct CableOptions {
    /// How long to wait for LLDP frames after tracer's own have arrived.
    pub listen: Duration,
    /// Set a port that is down up to send (and down again); otherwise it is skipped.
    pub bring_up: bool,
    pub log_level: u8,
}

/// Every physical port in every named namespace and tracer's own: a device that is its own
/// link (`iflink == ifindex`), with a MAC, and neither a virtual kind (veth, bridge, …) nor
/// loopback. Namespaces that cannot be read are named in the limitations.
pub fn physical_ports() -> (Vec<PortSpec>, Vec<String>) {
    sweep(false)
}

/// The physical ports a sweep beside a pair may send from: every one except the port its
/// namespace's default route leaves by, the machine's way out (its management port, say), which
/// no test cables and whose network tracer's frames have no business on.
pub fn physical_ports_beside_a_test() -> (Vec<PortSpec>, Vec<String>) {
    sweep(true)
}

fn sweep(spare_the_way_out: bool) -> (Vec<PortSpec>, Vec<String>) {
    let mut ports = Vec::new();
    let mut limitations = Vec::new();
    let mut names: Vec<String> = netns::netns_names().into_values().collect();
    names.sort();
    for netns in names {
        let listed = RouteSocket::open_in(&netns).and_then(|socket| {
            let links = socket.links()?;
            // Where a documentation address (TEST-NET-2, RFC 5737) would leave: by the default
            // route. A lookup only: nothing is sent.
            let way_out = match socket.route_get(Ipv4Addr::new(198, 51, 100, 1)) {
                Ok(RouteLookup::Via { oif, .. }) if spare_the_way_out => Some(oif),
                _ => None,
            };
            Ok((links, way_out))
        });
        match listed {
            Ok((links, way_out)) => ports.extend(
                links
                    .iter()
                    .filter(|link| is_physical(link) && Some(link.ifindex) != way_out)
                    .map(|link| PortSpec {
                        netns: netns.clone(),
                        interface: link.name.clone(),
                    }),
            ),
            Err(err) => limitations.push(format!(
                "the links of {} could not be listed: {err}",
                netns::display_name(&netns)
            )),
        }
    }
    (ports, limitations)
}

fn is_physical(link: &Link) -> bool {
    link.kind.is_none()
        && link.name != "lo"
        && link.mac.is_some_and(|mac| mac != [0; 6])
        && link.peer_ifindex.is_none_or(|peer| peer == link.ifindex)
}

/// One port while the map is made.
struct Port {
    spec: PortSpec,
    ifindex: u32,
    mac: [u8; 6],
    down_count_before: Option<u32>,
    /// Kept for its programs: dropping it detaches them.
    _probe: PortPrograms,
    ring: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    sender: OwnedFd,
    /// Set up by tracer: set down again when the map is done.
    brought_up: bool,
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.brought_up
            && let Err(err) = set_admin_up(&self.spec, false)
        {
            warn!("setting {} down again: {err:#}", self.spec);
        }
    }
}

/// Sends tracer's frames from every port in `specs`, and says where each arrived.
pub fn map(specs: &[PortSpec], options: &CableOptions) -> anyhow::Result<CableMap> {
    let nonce = nonce()?;
    let port_options = PortOptions {
        tcp_port: 0,
        capture: true,
        log_level: options.log_level,
        ingress: IngressHook::Tc,
    };
    let mut map = CableMap::default();
    // Attached side by side: a tcx attachment mostly waits for the kernel.
    let prepared: Vec<Result<Port, String>> = std::thread::scope(|scope| {
        let preparing: Vec<_> = specs
            .iter()
            .map(|spec| {
                scope.spawn(|| {
                    prepare(spec, &port_options, options.bring_up).map_err(|err| format!("{err:#}"))
                })
            })
            .collect();
        preparing
            .into_iter()
            .map(|port| {
                port.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut ports: Vec<(usize, Port)> = Vec::new();
    let mut skipped: BTreeMap<usize, String> = BTreeMap::new();
    for (index, prepared) in prepared.into_iter().enumerate() {
        match prepared {
            Ok(port) => ports.push((index, port)),
            Err(reason) => {
                skipped.insert(index, reason);
            }
        }
    }
    wait_for_carrier(&ports);

    let started = Instant::now();
    let mut sent = vec![0u32; specs.len()];
    for _ in 0..FRAMES_PER_PORT {
        for (index, port) in &ports {
            let frame = CableFrame {
                nonce,
                sender: *index as u16,
                name: port.spec.to_string(),
            };
            match send(&port.sender, port.ifindex, &frame.encode(port.mac)) {
                Ok(()) => sent[*index] += 1,
                Err(err) => debug!("sending from {}: {err}", port.spec),
            }
        }
        std::thread::sleep(ROUND_PAUSE);
    }
    std::thread::sleep(SETTLE);

    let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
    let mut left = vec![0u32; specs.len()];
    let mut partners: Vec<Option<LinkPartner>> = vec![None; specs.len()];
    let listen_until = Instant::now() + options.listen;
    loop {
        for (index, port) in &mut ports {
            read_ring(port, *index, nonce, &mut arrivals, &mut left, &mut partners);
        }
        if Instant::now() >= listen_until {
            break;
        }
        std::thread::sleep(Duration::from_millis(50).min(listen_until - Instant::now()));
    }
    let duration = started.elapsed().saturating_sub(options.listen);

    let refs: Vec<PortRef> = specs.iter().map(port_ref).collect();
    let mut states: BTreeMap<usize, PortLinkState> = BTreeMap::new();
    let mut brought_up = vec![false; specs.len()];
    for (index, port) in &ports {
        states.insert(*index, link_state(port));
        brought_up[*index] = port.brought_up;
    }
    // Set down again (those tracer set up) and detached before the map is returned.
    drop(ports);
    for (index, spec) in specs.iter().enumerate() {
        let mut reaches: Vec<PortRef> = arrivals
            .iter()
            .enumerate()
            .filter(|(receiver, senders)| *receiver != index && senders.contains(&index))
            .map(|(receiver, _)| refs[receiver].clone())
            .collect();
        reaches.dedup();
        let mut reached_by: Vec<PortRef> = arrivals[index]
            .iter()
            .filter(|sender| **sender != index)
            .map(|sender| refs[*sender].clone())
            .collect();
        reached_by.dedup();
        let link = match states.remove(&index) {
            Some(state) => state,
            None => link_state_of(spec),
        };
        map.ports.push(CablePort {
            port: port_ref(spec),
            sent: sent[index],
            left: left[index],
            reaches,
            reached_by,
            partner: partners[index].take(),
            link,
            brought_up: brought_up[index],
            skipped: skipped.remove(&index),
        });
    }
    map.duration_ms = duration.as_millis() as u64;
    map.listened_secs = options.listen.as_secs();
    Ok(map)
}

fn port_ref(spec: &PortSpec) -> PortRef {
    PortRef {
        netns: spec.netns.clone(),
        interface: spec.interface.clone(),
    }
}

/// Attaches the counting programs with capture on, opens a sending socket, and sets the port
/// up when it is down.
fn prepare(spec: &PortSpec, options: &PortOptions, bring_up: bool) -> anyhow::Result<Port> {
    let link = RouteSocket::open_in(&spec.netns)
        .and_then(|socket| socket.link(&spec.interface))
        .with_context(|| format!("reading {spec}"))?
        .with_context(|| format!("no interface {spec}"))?;
    if !link.admin_up && !bring_up {
        anyhow::bail!("{spec} is down, and only `tracer cables` sets a port up to look");
    }
    let mut probe = PortPrograms::attach(spec, options)?;
    let ring = probe.take_capture();
    let sender = {
        let _inside = NetnsGuard::enter(&spec.netns)?;
        packet_socket().with_context(|| format!("opening a packet socket on {spec}"))?
    };
    let mut port = Port {
        spec: spec.clone(),
        ifindex: link.ifindex,
        // A port without a MAC sends from a locally administered one.
        mac: link.mac.unwrap_or([0x02, 0, 0, 0, 0, 0x01]),
        down_count_before: link.carrier_down_count,
        _probe: probe,
        ring,
        sender,
        brought_up: false,
    };
    if !link.admin_up {
        set_admin_up(spec, true)?;
        port.brought_up = true;
    }
    Ok(port)
}

/// Gives the ports tracer set up time to get carrier: a NIC negotiates its link first.
fn wait_for_carrier(ports: &[(usize, Port)]) {
    let deadline = Instant::now() + CARRIER_WAIT;
    for (_, port) in ports.iter().filter(|(_, port)| port.brought_up) {
        while Instant::now() < deadline {
            let carrier = RouteSocket::open_in(&port.spec.netns)
                .and_then(|socket| socket.link(&port.spec.interface))
                .is_ok_and(|link| link.is_some_and(|link| link.carrier));
            if carrier {
                break;
            }
            std::thread::sleep(CARRIER_POLL);
        }
    }
}

/// Takes every frame the port's programs copied: ours arriving (from which port) and leaving,
/// and LLDP arriving.
fn read_ring(
    port: &mut Port,
    index: usize,
    nonce: u64,
    arrivals: &mut [Vec<usize>],
    left: &mut [u32],
    partners: &mut [Option<LinkPartner>],
) {
    let Some(ring) = &mut port.ring else {
        return;
    };
    while let Some(record) = ring.next() {
        let Some(frame) = capture::decode(&record, 0) else {
            continue;
        };
        if let Some(ours) = CableFrame::decode(&frame.data).filter(|ours| ours.nonce == nonce) {
            let sender = usize::from(ours.sender);
            if frame.inbound {
                if sender < arrivals.len() && !arrivals[index].contains(&sender) {
                    arrivals[index].push(sender);
                }
            } else if sender == index {
                left[index] += 1;
            }
        } else if frame.inbound
            && let Some(partner) = crate::lldp::partner(&frame.data)
        {
            partners[index] = Some(partner);
        }
    }
}

/// The link of a port tracer could not prepare, as far as it can be read.
fn link_state_of(spec: &PortSpec) -> PortLinkState {
    let link = RouteSocket::open_in(&spec.netns).and_then(|socket| socket.link(&spec.interface));
    match link {
        Ok(Some(link)) => {
            let mut state = PortLinkState {
                admin_up: link.admin_up,
                carrier: link.carrier,
                carrier_up_count: link.carrier_up_count,
                carrier_down_count: link.carrier_down_count,
                ..PortLinkState::default()
            };
            state
                .missing
                .push("ethtool link modes and state (port not looked at)".to_owned());
            state
        }
        _ => PortLinkState {
            missing: vec!["the link (no such interface)".to_owned()],
            ..PortLinkState::default()
        },
    }
}

/// The port's link at the end of the run: rtnetlink's carrier history and ethtool's view.
fn link_state(port: &Port) -> PortLinkState {
    port_link_state(&port.spec, port.down_count_before, port.brought_up)
}

/// A port's link as rtnetlink and ethtool report it now; `down_count_before` is its carrier
/// down count when tracer first looked (the growth is the run's), `brought_up` whether tracer
/// set it up (then it is reported as found: down).
pub fn port_link_state(
    spec: &PortSpec,
    down_count_before: Option<u32>,
    brought_up: bool,
) -> PortLinkState {
    let mut state = PortLinkState::default();
    let mut ifindex = None;
    match RouteSocket::open_in(&spec.netns).and_then(|socket| socket.link(&spec.interface)) {
        Ok(Some(link)) => {
            ifindex = Some(link.ifindex);
            // What tracer found before setting it up.
            state.admin_up = link.admin_up && !brought_up;
            state.carrier = link.carrier;
            state.carrier_up_count = link.carrier_up_count;
            state.carrier_down_count = link.carrier_down_count;
            state.carrier_downs_during_run = link
                .carrier_down_count
                .zip(down_count_before)
                .map(|(after, before)| after.saturating_sub(before));
        }
        Ok(None) => state
            .missing
            .push("the link (gone during the run)".to_owned()),
        Err(err) => state.missing.push(format!("the link ({err})")),
    }
    if state.carrier_down_count.is_none() {
        state
            .missing
            .push("carrier up/down counts (kernel before 4.16)".to_owned());
    }
    let Some(ifindex) = ifindex else {
        return state;
    };
    let ethtool = NetnsGuard::enter(&spec.netns)
        .map_err(std::io::Error::other)
        .and_then(|_inside| EthtoolSocket::open());
    let ethtool = match ethtool {
        Ok(Some(socket)) => socket,
        Ok(None) => {
            state.missing.push(
                "ethtool link modes and state (no ethtool netlink, kernel before 5.6)".to_owned(),
            );
            return state;
        }
        Err(err) => {
            state
                .missing
                .push(format!("ethtool link modes and state ({err})"));
            return state;
        }
    };
    match ethtool.link_modes(ifindex) {
        Ok(Some(modes)) => {
            state.speed_mbps = modes.speed_mbps;
            state.duplex = modes.duplex;
            state.autoneg = modes.autoneg;
        }
        Ok(None) => {}
        Err(err) => debug!("ethtool link modes of {spec}: {err}"),
    }
    for (value, name) in [
        (state.speed_mbps.is_none(), "speed"),
        (state.duplex.is_none(), "duplex"),
        (state.autoneg.is_none(), "autonegotiation"),
    ] {
        if value {
            state.missing.push(name.to_owned());
        }
    }
    match ethtool.link_state(ifindex) {
        Ok(Some(link)) => {
            state.ext_state = link.ext_state;
            state.ext_substate = link.ext_substate;
            state.link_down_events = link.link_down_events;
        }
        Ok(None) => {}
        Err(err) => debug!("ethtool link state of {spec}: {err}"),
    }
    if state.ext_state.is_none() {
        state
            .missing
            .push("extended link state (the driver reports none)".to_owned());
    }
    if state.link_down_events.is_none() {
        state
            .missing
            .push("link-down events (the driver does not count them)".to_owned());
    }
    if let Ok(Some(flags)) = ethtool.private_flags(ifindex) {
        state.firmware_lldp_agent = flags
            .iter()
            .find(|(name, _)| name == FIRMWARE_LLDP_FLAG)
            .map(|(_, on)| *on);
    }
    state
}

/// 64 random bits from the kernel.
fn nonce() -> anyhow::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is writable for its length.
    let read = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if read != bytes.len() as isize {
        return Err(std::io::Error::last_os_error()).context("getrandom");
    }
    Ok(u64::from_ne_bytes(bytes))
}

/// A raw packet socket that receives nothing (protocol 0) and sends whole frames.
fn packet_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn send(socket: &OwnedFd, ifindex: u32, frame: &[u8]) -> std::io::Result<()> {
    // SAFETY: sockaddr_ll is plain integers; all zero is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ETH_P_TRACER_CABLE.to_be();
    address.sll_ifindex = ifindex as i32;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: the frame and the address are live for the call, with the lengths passed.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a port administratively up or down (SIOCSIFFLAGS, as `ip link set` would), inside
/// its namespace; its other flags stay as they are.
fn set_admin_up(spec: &PortSpec, up: bool) -> anyhow::Result<()> {
    let _inside = NetnsGuard::enter(&spec.netns)?;
    // SAFETY: socket(2) takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("opening a socket for SIOCSIFFLAGS");
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all zero is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(spec.interface.bytes()) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: `request` names the interface and is live for both calls; the union member
    // written and read is the flags.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut request) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("reading the flags of {spec}"));
        }
        let flags = request.ifr_ifru.ifru_flags;
        let up_flag = libc::IFF_UP as libc::c_short;
        request.ifr_ifru.ifru_flags = if up {
            flags | up_flag
        } else {
            flags & !up_flag
        };
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const request) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setting {spec} {}", if up { "up" } else { "down" }));
        }
    }
    Ok(())
}
