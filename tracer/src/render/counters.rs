//! `tracer counters` as text tables.

use std::fmt::Write as _;

use tracer_common::PacketKind;

use crate::netns;
use tracer_evidence::{CountersReport, DropCount, counters::ELSEWHERE};

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
    // Each port heads its two rows, and each column is as wide as its header or its largest
    // count: the table fits a 100-column terminal.
    let widths: Vec<usize> = PacketKind::ALL
        .iter()
        .zip(HEADERS)
        .map(|(kind, header)| {
            report
                .interfaces
                .iter()
                .flat_map(|port| [port.ingress.get(*kind), port.egress.get(*kind)])
                .map(|count| count.to_string().len())
                .max()
                .unwrap_or(0)
                .max(header.len())
        })
        .collect();
    let _ = write!(out, "  {:<7}", "");
    for (header, width) in HEADERS.iter().zip(&widths) {
        let _ = write!(out, " {header:>width$}");
    }
    out.push('\n');
    for port in &report.interfaces {
        let _ = writeln!(
            out,
            "{} in namespace {}:",
            port.interface,
            netns::display_name(&port.netns)
        );
        for (direction, counts) in [("ingress", &port.ingress), ("egress", &port.egress)] {
            let _ = write!(out, "  {direction:<7}");
            for (kind, width) in PacketKind::ALL.iter().zip(&widths) {
                let _ = write!(out, " {:>width$}", counts.get(*kind));
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
    let places: Vec<String> = drops
        .iter()
        .map(|drop| {
            if drop.netns == ELSEWHERE {
                "elsewhere".to_owned()
            } else {
                format!("{} in {}", drop.place(), netns::display_name(&drop.netns))
            }
        })
        .collect();
    let place_width = places.iter().map(String::len).max().unwrap_or(0).max(5);
    let reason_width = drops
        .iter()
        .map(|drop| drop.reason.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = writeln!(
        out,
        "  {:<place_width$} {:<reason_width$} {:<5} {:>8}",
        "WHERE", "REASON", "PROTO", "COUNT"
    );
    for (drop, place) in drops.iter().zip(&places) {
        let _ = writeln!(
            out,
            "  {place:<place_width$} {:<reason_width$} {:<5} {:>8}",
            drop.reason, drop.protocol, drop.count
        );
    }
    // Say once per reason which drops are normal on a healthy path.
    let mut explained = Vec::new();
    for drop in drops {
        let reason = drop.reason();
        if let Some(why) = reason.why_expected()
            && !explained.contains(&reason)
        {
            explained.push(reason);
            let _ = writeln!(out, "  {} is expected: {why}", drop.reason);
        }
    }
}
