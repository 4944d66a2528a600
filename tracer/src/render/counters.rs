//! `tracer counters` as text tables.

use std::fmt::Write as _;

use tracer_common::PacketKind;

use crate::netns;
use tracer_evidence::{CountersReport, DropCount};

const HEADERS: [&str; PacketKind::COUNT as usize] = [
    "ARP_REQ", "ARP_REP", "ECHO_REQ", "ECHO_REP", "UNREACH", "TCP_PORT", "SYN", "SYN_ACK", "RST",
    "OTHER",
];

pub fn text(report: &CountersReport, tcp_port: u16) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Packets (TCP_PORT: segments from or to port {tcp_port}; SYN, SYN_ACK, RST among them)"
    );
    let _ = write!(out, "{:<20} {:<15} {:<8}", "NETNS", "INTERFACE", "DIR");
    for header in HEADERS {
        let _ = write!(out, " {header:>8}");
    }
    out.push('\n');
    for port in &report.interfaces {
        for (direction, counts) in [("ingress", &port.ingress), ("egress", &port.egress)] {
            let _ = write!(
                out,
                "{:<20} {:<15} {:<8}",
                netns::display_name(&port.netns),
                port.interface,
                direction
            );
            for kind in PacketKind::ALL {
                let _ = write!(out, " {:>8}", counts.get(kind));
            }
            out.push('\n');
        }
    }
    out.push('\n');
    drop_table(&mut out, "Kernel drops on the watched ports", &report.drops);
    if !report.other_drops.is_empty() {
        out.push('\n');
        drop_table(
            &mut out,
            "Kernel drops elsewhere (other interfaces and namespaces, not on the watched ports)",
            &report.other_drops,
        );
    }
    let _ = writeln!(out, "\nLost events: {}", report.lost_events);
    out
}

fn drop_table(out: &mut String, title: &str, drops: &[DropCount]) {
    let _ = writeln!(out, "{title}:");
    if drops.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    let _ = writeln!(
        out,
        "  {:<20} {:<15} {:<28} {:<8} {:>8}",
        "NETNS", "INTERFACE", "REASON", "PROTO", "COUNT"
    );
    for drop in drops {
        let _ = writeln!(
            out,
            "  {:<20} {:<15} {:<28} {:<8} {:>8}",
            netns::display_name(&drop.netns),
            drop.place(),
            drop.reason,
            drop.protocol,
            drop.count
        );
    }
}
