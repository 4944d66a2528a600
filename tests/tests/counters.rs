//! `tracer counters` on the lab: exact counts on real veth pairs in real namespaces.

use std::{
    fs::{File, OpenOptions},
    io::{IoSlice, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    time::Duration,
};

use tracer_tests::{
    End, INITIATOR_IP, Lab, TARGET_IP, TracerRun, assert_pings_crossed, check, count, drops,
    in_netns,
};

#[test]
fn five_pings_counted_exactly_on_both_ports() {
    let lab = Lab::up("png");
    let run = lab.counters();
    assert!(lab.ping(5), "ping across a healthy lab failed");
    let report = run.finish();

    let (initiator, target) = (&lab.initiator, &lab.target);
    assert_pings_crossed(&report, &lab, 5);
    // The requests never come back the wrong way.
    assert_eq!(count(&report, initiator, "ingress", "icmp_echo_request"), 0);
    assert_eq!(count(&report, target, "egress", "icmp_echo_request"), 0);
    // First contact: one ARP request out, one reply back.
    assert_eq!(count(&report, initiator, "egress", "arp_request"), 1);
    assert_eq!(count(&report, target, "ingress", "arp_request"), 1);
    assert_eq!(count(&report, target, "egress", "arp_reply"), 1);
    assert_eq!(count(&report, initiator, "ingress", "arp_reply"), 1);
    assert_eq!(report["lost_events"], 0);
}

#[test]
fn netfilter_drop_counted_on_the_target_port() {
    let lab = Lab::up("nfd");
    check(
        lab.target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let run = lab.counters();
    assert!(!lab.ping(5), "ping succeeded through an ICMP DROP rule");
    let report = run.finish();

    let target = &lab.target;
    assert_eq!(
        drops(
            &report,
            "drops",
            &target.netns,
            Some(&target.interface),
            "NETFILTER_DROP",
            "ipv4"
        ),
        5,
        "{report}"
    );
    assert_eq!(count(&report, target, "ingress", "icmp_echo_request"), 5);
    assert_eq!(count(&report, target, "egress", "icmp_echo_reply"), 0);
    // Nothing of it shows up as a drop on the initiator.
    assert_eq!(
        drops(
            &report,
            "drops",
            &lab.initiator.netns,
            None,
            "NETFILTER_DROP",
            "ipv4"
        ),
        0
    );
}

/// Non-default interface names and port number: the defaults are not assumptions.
#[test]
fn tcp_connect_counted_on_both_ports_both_ways() {
    let port = 8009;
    let lab = Lab::with_names("tcp", "ini0", "tgt0", port);
    let target_addr: SocketAddr = format!("{TARGET_IP}:{port}").parse().unwrap();
    // A socket belongs to the namespace it was created in, whichever thread uses it later.
    let listener = in_netns(&lab.target.netns, move || {
        TcpListener::bind(target_addr).expect("bind in the target namespace")
    })
    .join()
    .expect("listener thread");
    let run = lab.counters();

    let server = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().expect("accept");
        let mut received = Vec::new();
        stream.read_to_end(&mut received).expect("read");
        (peer, received)
    });
    in_netns(&lab.initiator.netns, move || {
        let mut stream =
            TcpStream::connect_timeout(&target_addr, Duration::from_secs(5)).expect("connect");
        stream.write_all(b"hello").expect("write");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        // The server closes after reading EOF: wait for its FIN so the exchange is complete.
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).expect("read");
    })
    .join()
    .expect("client thread");
    let (peer, received) = server.join().expect("server thread");
    assert_eq!(peer.ip().to_string(), INITIATOR_IP);
    assert_eq!(received, b"hello");
    let report = run.finish();

    let (initiator, target) = (&lab.initiator, &lab.target);
    assert_eq!(count(&report, initiator, "egress", "tcp_syn"), 1);
    assert_eq!(count(&report, target, "ingress", "tcp_syn"), 1);
    assert_eq!(count(&report, target, "egress", "tcp_syn_ack"), 1);
    assert_eq!(count(&report, initiator, "ingress", "tcp_syn_ack"), 1);
    assert_eq!(count(&report, initiator, "egress", "tcp_rst"), 0);
    let forward = count(&report, initiator, "egress", "tcp_port");
    let back = count(&report, target, "egress", "tcp_port");
    // SYN, ACK, data, FIN, final ACK one way; SYN-ACK, ACK(s), FIN the other.
    assert!(forward >= 4, "{forward} segments initiator -> target");
    assert!(back >= 3, "{back} segments target -> initiator");
    assert_eq!(count(&report, target, "ingress", "tcp_port"), forward);
    assert_eq!(count(&report, initiator, "ingress", "tcp_port"), back);
}

/// Another pair of namespaces with the same addresses carries traffic and drops at the same
/// time: none of it is counted on the watched ports, and its drops are reported apart.
#[test]
fn unrelated_namespace_traffic_is_kept_apart() {
    let lab = Lab::up("own");
    let noise = Lab::up("nse");
    check(
        noise
            .target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let run = lab.counters();

    let mut flood = noise.initiator.exec("ping");
    flood.args(["-c", "100", "-i", "0.01", "-W", "1", TARGET_IP]);
    let flood = std::thread::spawn(move || flood.output().expect("noise ping"));
    assert!(lab.ping(5));
    let flooded = flood.join().expect("noise thread");
    assert!(
        !flooded.status.success(),
        "noise pings went through an ICMP DROP"
    );
    let report = run.finish();

    let target = &lab.target;
    assert_pings_crossed(&report, &lab, 5);
    assert_eq!(
        drops(
            &report,
            "drops",
            &target.netns,
            None,
            "NETFILTER_DROP",
            "ipv4"
        ),
        0
    );
    // Away from the watched ports, drops are kept apart: as totals (`*`), or, on a device named
    // like a watched port (the noise lab's are), under their own namespace.
    let elsewhere: u64 = ["*", noise.target.netns.as_str()]
        .into_iter()
        .map(|netns| {
            drops(
                &report,
                "other_drops",
                netns,
                None,
                "NETFILTER_DROP",
                "ipv4",
            )
        })
        .sum();
    assert!(
        elsewhere >= 100,
        "{elsewhere} noise drops counted: {report}"
    );
}

/// Headers that go on past an skb's linear part, as drivers that build skbs from pages leave
/// them: a tap with IFF_NAPI_FRAGS keeps only a write's first buffer in the linear part. An ARP
/// request written as [Ethernet header][ARP body] has nothing but its Ethernet header there,
/// and tc must still count it by kind, like the ICMP echo request written the same way.
#[test]
fn headers_in_page_fragments_are_counted_by_kind() {
    const ARP_REQUEST: [u8; 28] = [
        0, 1, 0x08, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 0x63, 10, 0, 0, 99, 0, 0, 0, 0, 0, 0, 10, 0,
        0, 1,
    ];
    // IPv4 (20 bytes, ICMP, 10.0.0.99 -> 10.0.0.1), then an echo request with 8 bytes of data;
    // both checksums right, so that nothing but the kinds differs from a ping.
    const ICMP_ECHO_REQUEST: [u8; 36] = [
        0x45, 0, 0, 36, 0, 0, 0x40, 0, 64, 1, 0x26, 0x76, 10, 0, 0, 99, 10, 0, 0, 1, 8, 0, 0xf7,
        0xfd, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    const FRAMES: u64 = 5;

    let lab = Lab::up("frg");
    let tap = End {
        netns: lab.initiator.netns.clone(),
        interface: "frag0".to_owned(),
    };
    // The tap lives in the namespace its file was opened in, as long as the file is open.
    let device = in_netns(&tap.netns, || fragmenting_tap("frag0"))
        .join()
        .expect("tap thread");
    tap.set_link(&["up"]);
    let run = TracerRun::start(&[
        "counters",
        "--initiator",
        &tap.spec(),
        "--target",
        &lab.target.spec(),
        "--json",
    ]);
    for _ in 0..FRAMES {
        write_in_two(&device, &broadcast(libc::ETH_P_ARP), &ARP_REQUEST);
        write_in_two(&device, &broadcast(libc::ETH_P_IP), &ICMP_ECHO_REQUEST);
    }
    let report = run.finish();

    assert_eq!(
        count(&report, &tap, "ingress", "arp_request"),
        FRAMES,
        "{report}"
    );
    assert_eq!(
        count(&report, &tap, "ingress", "icmp_echo_request"),
        FRAMES,
        "{report}"
    );
    assert_eq!(count(&report, &tap, "ingress", "other"), 0, "{report}");
}

/// A tap whose frames are received as page fragments (IFF_NAPI_FRAGS), made in this thread's
/// namespace.
fn fragmenting_tap(name: &str) -> File {
    let device = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("opening /dev/net/tun");
    // struct ifreq: the name, then the flags as a short.
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_NAPI | libc::IFF_NAPI_FRAGS;
    request[16..18].copy_from_slice(&(flags as i16).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `request` is the size of.
    let made = unsafe { libc::ioctl(device.as_raw_fd(), libc::TUNSETIFF, request.as_mut_ptr()) };
    assert_eq!(made, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    device
}

/// An Ethernet header to everyone, from 02:00:00:00:00:63.
fn broadcast(ethertype: libc::c_int) -> [u8; 14] {
    let mut header = [0xff; 14];
    header[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x63]);
    header[12..].copy_from_slice(&(ethertype as u16).to_be_bytes());
    header
}

/// One frame written as two buffers: the tap keeps the first in the skb's linear part.
fn write_in_two(mut device: &File, head: &[u8], rest: &[u8]) {
    let written = device
        .write_vectored(&[IoSlice::new(head), IoSlice::new(rest)])
        .expect("writing to the tap");
    assert_eq!(written, head.len() + rest.len());
}
