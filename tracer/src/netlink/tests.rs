use std::io;

use super::{codec::*, decode::*, events::*, names::*, socket::*, *};

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

/// The one neighbour deletion tracer makes: one IPv4 entry by its address, never a flush.
#[test]
fn encodes_only_the_deletion_of_one_ipv4_neighbour() {
    let mut header = [0u8; NDMSG_LEN];
    header[0] = AF_INET;
    let address = [10, 0, 0, 2];
    let one_entry = [(libc::NDA_DST, address.as_slice())];
    assert!(encode_request(libc::RTM_DELNEIGH, NLM_F_REQUEST, 1, &header, &one_entry).is_ok());
    let mut ipv6 = header;
    ipv6[0] = libc::AF_INET6 as u8;
    for (header, attributes) in [
        // Without an address the kernel would take it as a flush of the port's entries.
        (header, &[][..]),
        (ipv6, &one_entry[..]),
        (header, &[(libc::NDA_DST, &[10, 0, 0][..])][..]),
        (header, &[(libc::NDA_LLADDR, &[2, 0, 0, 0, 0, 1][..])][..]),
    ] {
        let err =
            encode_request(libc::RTM_DELNEIGH, NLM_F_REQUEST, 1, &header, attributes).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
    let err =
        encode_request(libc::RTM_NEWNEIGH, NLM_F_REQUEST, 1, &header, &one_entry).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// An entry deleted through the socket is gone from the table; deleting it again says it was
/// not there. Root only (a new namespace): skipped elsewhere.
#[test]
fn kernel_deletes_one_neighbour_entry() {
    let Ok(()) = std::thread::spawn(|| -> io::Result<()> {
        // SAFETY: unshare on this short-lived thread only; it ends with the closure.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let ip = |args: &[&str]| {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        ip(&[
            "link", "add", "ndtest0", "type", "veth", "peer", "name", "ndtest1",
        ]);
        let kept = Ipv4Addr::new(10, 0, 0, 3);
        let deleted = Ipv4Addr::new(10, 0, 0, 2);
        for address in [kept, deleted] {
            let address = address.to_string();
            ip(&[
                "neigh",
                "add",
                &address,
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                "ndtest0",
            ]);
        }
        let socket = RouteSocket::open()?;
        let ifindex = socket.link("ndtest0")?.expect("the veth just made").ifindex;
        assert!(socket.delete_neighbour(ifindex, deleted)?);
        let left: Vec<Ipv4Addr> = socket
            .neighbours()?
            .iter()
            .filter(|entry| entry.ifindex == ifindex)
            .map(|entry| entry.address)
            .collect();
        assert_eq!(left, [kept]);
        assert!(!socket.delete_neighbour(ifindex, deleted)?);
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
