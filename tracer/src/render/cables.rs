//! `tracer cables` as a table and as JSON.

use std::fmt::Write as _;

use serde::Serialize;
use tracer_evidence::{
    CableMap, CablePort, Fact, PortRef, Verdict,
    words::{link_mismatch, link_state_text, partner_mismatch, port_list},
};

/// Two ports meant to be cabled to each other, and what the map says of them.
#[derive(Debug, Serialize)]
pub struct PairReport {
    pub a: PortRef,
    pub b: PortRef,
    /// The `cable` verdict, when they do not reach each other.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<PairVerdict>,
    /// Their speed, duplex or autonegotiation differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mismatch: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PairVerdict {
    #[serde(flatten)]
    pub verdict: Verdict,
    pub summary: String,
    pub evidence: Vec<String>,
    pub advice: String,
    /// The far ends the frames really reach.
    pub named_thing: Option<String>,
    pub exit_code: u8,
}

impl PairVerdict {
    pub fn new(verdict: Verdict) -> Self {
        Self {
            summary: verdict.summary(),
            evidence: verdict.facts.iter().map(Fact::line).collect(),
            advice: verdict.advice(),
            named_thing: verdict.named_thing(),
            exit_code: verdict.class.exit_code(),
            verdict,
        }
    }
}

/// The `--json` output: the map, and the pairs asked about.
#[derive(Debug, Serialize)]
pub struct CablesReport<'a> {
    #[serde(flatten)]
    pub map: &'a CableMap,
    pub pairs: Vec<PairReport>,
}

fn spec(port: &PortRef) -> String {
    if port.netns.is_empty() {
        port.interface.clone()
    } else {
        format!("{}/{}", port.netns, port.interface)
    }
}

fn specs(ports: &[PortRef]) -> String {
    if ports.is_empty() {
        "-".to_owned()
    } else {
        ports.iter().map(spec).collect::<Vec<_>>().join(", ")
    }
}

pub fn text(report: &CablesReport<'_>) -> String {
    let map = report.map;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>4} {:>4}  {:<28} {:<28} LLDP PARTNER",
        "PORT", "SENT", "LEFT", "REACHES", "REACHED BY"
    );
    for port in &map.ports {
        let partner = port
            .partner
            .as_ref()
            .map_or_else(|| "-".to_owned(), |partner| partner.label());
        let _ = writeln!(
            out,
            "{:<28} {:>4} {:>4}  {:<28} {:<28} {partner}",
            spec(&port.port),
            port.sent,
            port.left,
            specs(&port.reaches),
            specs(&port.reached_by),
        );
    }
    let alone: Vec<PortRef> = map
        .ports
        .iter()
        .filter(|port| port.sent > 0 && port.reaches.is_empty())
        .map(|port| port.port.clone())
        .collect();
    if !alone.is_empty() {
        let _ = writeln!(out, "\nReach no local port: {}", port_list(&alone));
    }
    let _ = writeln!(out, "\nLinks:");
    for port in &map.ports {
        let _ = writeln!(
            out,
            "  {}: {}",
            port.port.label(),
            link_state_text(&port.link)
        );
        if let Some(skipped) = &port.skipped {
            let _ = writeln!(out, "    not looked at: {skipped}");
        }
        if let Some(partner) = &port.partner {
            let _ = writeln!(
                out,
                "    LLDP: chassis {}, port {}{}{}",
                partner.chassis_id,
                partner.port_id,
                partner
                    .system_name
                    .as_deref()
                    .map(|name| format!(", system {name}"))
                    .unwrap_or_default(),
                partner
                    .port_description
                    .as_deref()
                    .map(|description| format!(", port description {description}"))
                    .unwrap_or_default(),
            );
        }
        if port.brought_up {
            let _ = writeln!(out, "    set up to send, and down again");
        }
    }
    let mismatches = mismatches(map);
    if !mismatches.is_empty() {
        let _ = writeln!(out, "\nLink settings that differ between the ends:");
        for mismatch in mismatches {
            let _ = writeln!(out, "  {mismatch}");
        }
    }
    for pair in &report.pairs {
        let _ = writeln!(
            out,
            "\n{} <-> {}: {}",
            spec(&pair.a),
            spec(&pair.b),
            pair.verdict
                .as_ref()
                .map_or("cabled to each other", |verdict| verdict
                    .verdict
                    .class
                    .name())
        );
        if let Some(verdict) = &pair.verdict {
            let _ = writeln!(out, "  {}", verdict.summary);
            let _ = writeln!(out, "  {}", verdict.advice);
        }
        if let Some(mismatch) = &pair.speed_mismatch {
            let _ = writeln!(out, "  {mismatch}");
        }
    }
    if !map.limitations.is_empty() {
        let _ = writeln!(out, "\nNot looked at: {}", map.limitations.join("; "));
    }
    let _ = writeln!(
        out,
        "\n{} port(s) in {} ms{}",
        map.ports.len(),
        map.duration_ms,
        if map.listened_secs > 0 {
            format!(", LLDP listened for {} s more", map.listened_secs)
        } else {
            String::new()
        },
    );
    out
}

/// Every cable with both ends local (each reaches only the other), and every port and its
/// LLDP partner, whose link settings differ.
fn mismatches(map: &CableMap) -> Vec<String> {
    let mut found = Vec::new();
    for (i, a) in map.ports.iter().enumerate() {
        for b in &map.ports[i + 1..] {
            if cabled_together(a, b)
                && let Some(mismatch) = link_mismatch(a, b)
            {
                found.push(mismatch);
            }
        }
        found.extend(partner_mismatch(a));
    }
    found
}

/// Each reaches the other and nothing else.
pub fn cabled_together(a: &CablePort, b: &CablePort) -> bool {
    a.reaches == [b.port.clone()] && b.reaches == [a.port.clone()]
}
