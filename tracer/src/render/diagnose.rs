//! `tracer diagnose` as a terminal report and Markdown; its JSON is the saved [`Report`]
//! itself.

use std::fmt::Write as _;

use tracer_evidence::{
    Evidence, Exchange, NeighbourEvidence, PortEvidence, Report, RouteEvidence, RouteLookup, Side,
    VerdictClass,
    ladder::{Rung, shortfall},
    stop::DrawnPath,
    words::{drop_place, outcome, probe_name, rule_line, rule_location, side_label, voice},
};

use crate::{netns, render::path};

/// The four points of a probe's path, each with its count and what its mark says: the first
/// point that fell short, or the last when the answers went no further (and where they died).
fn ladder_points(report: &Report<'_>, probe: &Exchange) -> Vec<(String, u64, Option<String>)> {
    let (origin, peer) = if probe.from == Side::Target {
        (&report.evidence.target, &report.evidence.initiator)
    } else {
        (&report.evidence.initiator, &report.evidence.target)
    };
    let (origin, peer) = (&origin.interface, &peer.interface);
    let shortfall = shortfall(probe);
    let path = DrawnPath::of(report.evidence);
    let place = path.place(path.probe_stop(probe));
    Rung::ALL
        .into_iter()
        .map(|rung| {
            (
                rung.label(origin, peer),
                rung.count(probe),
                shortfall
                    .filter(|shortfall| shortfall.rung() == rung)
                    .map(|shortfall| shortfall.mark(&place)),
            )
        })
        .collect()
}

/// The marked point of a probe's ladder and what its mark says, for a table's cell:
/// `answer left cvl_0_0: missing`; empty when nothing is marked.
pub(crate) fn marked_point(report: &Report<'_>, probe: &Exchange) -> String {
    ladder_points(report, probe)
        .into_iter()
        .find_map(|(label, _, mark)| mark.map(|mark| format!("{label}: {mark}")))
        .unwrap_or_default()
}

fn probe_line(probe: &Exchange) -> String {
    match &probe.skipped {
        Some(why) => format!("{}: not sent ({why})", probe_name(probe.kind)),
        None => format!("{}: {}", probe_name(probe.kind), outcome(probe)),
    }
}

fn link_line(port: &PortEvidence) -> String {
    let role = if port.side == Side::Target {
        "target"
    } else {
        "initiator"
    };
    let place = format!(
        "{role} {} in {}",
        port.interface,
        netns::display_name(&port.netns)
    );
    let programs = if port.programs.is_empty() {
        String::new()
    } else {
        let listed: Vec<String> = port
            .programs
            .iter()
            .map(|p| {
                format!(
                    "{} id {} on {} ({} #{})",
                    p.name, p.id, p.hook, p.attachment, p.position
                )
            })
            .collect();
        format!("; other tools' programs: {}", listed.join(", "))
    };
    match &port.link {
        Some(link) => format!(
            "{place}: {}, carrier {}, operstate {}, addresses {}{programs}",
            if link.admin_up { "up" } else { "DOWN" },
            u8::from(link.carrier),
            link.operstate,
            if port.addresses.is_empty() {
                "none".to_owned()
            } else {
                port.addresses.join(" ")
            }
        ),
        None if !port.netns_exists => format!("{place}: namespace missing"),
        None => format!("{place}: interface missing"),
    }
}

pub(crate) fn route_line(route: &RouteEvidence) -> String {
    let from = if route.from == Side::Target {
        "target"
    } else {
        "initiator"
    };
    match &route.lookup {
        RouteLookup::Via { gateway, .. } => format!(
            "{from} -> {}: dev {}{}",
            route.destination,
            route.via_interface.as_deref().unwrap_or("?"),
            gateway.map(|gw| format!(" via {gw}")).unwrap_or_default()
        ),
        RouteLookup::Unreachable { message, .. } => {
            format!("{from} -> {}: {message}", route.destination)
        }
    }
}

pub(crate) fn drop_line(drop: &tracer_evidence::DropEvidence) -> String {
    format!(
        "{} x {} ({}) on {} in {}",
        drop.drop.count,
        drop.drop.reason,
        drop.drop.protocol,
        drop_place(&drop.drop),
        netns::display_name(&drop.drop.netns)
    )
}

/// The title over the drops normal on a healthy path, wherever they are listed.
pub(crate) const EXPECTED_DROPS: &str = "Expected drops (normal on a healthy path)";

/// The drops of a run, apart: those nothing on a healthy path explains, then the expected ones
/// as lines that say why (`DropReason::why_expected`, the one classification).
pub(crate) fn drops_apart(evidence: &Evidence) -> (Vec<String>, Vec<String>) {
    let mut unexplained = Vec::new();
    let mut expected = Vec::new();
    for drop in &evidence.drops {
        match drop.drop.reason().why_expected() {
            Some(why) => expected.push(format!("{} (expected: {why})", drop_line(drop))),
            None => unexplained.push(drop_line(drop)),
        }
    }
    (unexplained, expected)
}

pub(crate) fn neighbour_line(neighbour: &NeighbourEvidence) -> String {
    format!(
        "{} in {}: {} -> {}",
        neighbour.address,
        netns::display_name(&neighbour.netns),
        neighbour.before.as_deref().unwrap_or("none"),
        neighbour.after.as_deref().unwrap_or("none")
    )
}

fn colour(class: VerdictClass) -> &'static str {
    match class {
        VerdictClass::Ok => "\x1b[32m",
        VerdictClass::Unknown => "\x1b[33m",
        _ => "\x1b[31m",
    }
}

/// The human report: the verdict first, then a ladder per probe, then the details.
pub fn text(report: &Report<'_>, terminal: bool) -> String {
    let verdict = &report.verdict;
    let (on, bold, off) = if terminal {
        (colour(verdict.verdict.class), "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{bold}{on}VERDICT: {}{off}{bold} ({}){off}  {}",
        verdict.verdict.class.name(),
        side_label(verdict.verdict.side),
        verdict.summary
    );
    if let Some(nf) = verdict.netfilter {
        let _ = writeln!(out, "  netfilter: {}", rule_location(nf));
    }
    for fact in &verdict.evidence {
        let _ = writeln!(out, "  - {fact}");
    }
    if !verdict.advice.is_empty() {
        let _ = writeln!(out, "  what to do: {}", verdict.advice);
    }
    let _ = writeln!(out, "  signature: {}", report.verdict.signature);

    let voice = voice(report.evidence.windows.observed);
    if !report.evidence.exchanges.is_empty() {
        let _ = writeln!(
            out,
            "\n{} (marked <-: the first point where an expected packet was missing, or the \
             last when the answers went no further):",
            voice.exchanges
        );
        for probe in &report.evidence.exchanges {
            let _ = writeln!(out, "  {}", probe_line(probe));
            if probe.skipped.is_none() {
                for (label, count, mark) in ladder_points(report, probe) {
                    let mark = mark.map(|mark| format!("  <- {mark}")).unwrap_or_default();
                    let _ = writeln!(out, "      {label:<28} {count:>4}{mark}");
                }
            }
        }
    }
    let _ = writeln!(out, "\nLinks:");
    for port in [&report.evidence.initiator, &report.evidence.target] {
        let _ = writeln!(out, "  {}", link_line(port));
    }
    if !report.evidence.routes.is_empty() {
        let _ = writeln!(out, "Routes:");
        for route in &report.evidence.routes {
            let _ = writeln!(out, "  {}", route_line(route));
        }
    }
    if !report.evidence.neighbours.is_empty() {
        let _ = writeln!(out, "Neighbours (before -> after):");
        for neighbour in &report.evidence.neighbours {
            let _ = writeln!(out, "  {}", neighbour_line(neighbour));
        }
    }
    // Drops normal on a healthy path are kept apart, each with why it is expected.
    let (unexplained, expected) = drops_apart(report.evidence);
    for (title, lines) in [
        (
            format!("Kernel drops in the two namespaces {}", voice.during),
            unexplained,
        ),
        (EXPECTED_DROPS.to_owned(), expected),
    ] {
        if !lines.is_empty() {
            let _ = writeln!(out, "{title}:");
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    if !report.evidence.netfilter.is_empty() {
        let _ = writeln!(out, "Netfilter rules that dropped {}:", voice.during);
        for hit in &report.evidence.netfilter {
            let _ = writeln!(out, "  {}", rule_line(hit));
        }
    }
    for limitation in &report.evidence.environment.limitations {
        let _ = writeln!(out, "note: {limitation}");
    }
    out
}

/// report.md: the verdict and its evidence on the first screen, details below.
pub fn markdown(report: &Report<'_>) -> String {
    let verdict = &report.verdict;
    let mut out = String::new();
    let voice = voice(report.evidence.windows.observed);
    let _ = writeln!(
        out,
        "# {}: {}\n",
        voice.command,
        verdict.verdict.class.name()
    );
    let _ = writeln!(out, "**{}**\n", verdict.summary);
    let _ = writeln!(
        out,
        "- class: `{}` (exit code {})",
        verdict.verdict.class.name(),
        report.verdict.exit_code
    );
    let _ = writeln!(out, "- where: {}", side_label(verdict.verdict.side));
    let _ = writeln!(out, "- signature: `{}`", report.verdict.signature);
    if let Some(nf) = verdict.netfilter {
        let _ = writeln!(
            out,
            "- netfilter: namespace `{}`, family `{}`, table `{}`, chain `{}`, rule `{}`",
            netns::display_name(&nf.netns),
            nf.family,
            nf.table,
            nf.chain,
            nf.rule
        );
    }
    if !verdict.advice.is_empty() {
        let _ = writeln!(out, "- what to do: {}", verdict.advice);
    }
    let _ = writeln!(
        out,
        "- picture: [path.svg](path.svg); the whole report: report.html"
    );
    if let Some(identity) = &report.identity {
        let _ = writeln!(out, "\n## Run\n");
        for (name, value) in identity.rows() {
            let _ = writeln!(out, "- {name}: {}", value.replace('\n', " "));
        }
    }
    let _ = writeln!(out, "\n## Path\n");
    out.push_str(&path::mermaid(report.evidence, verdict.verdict));
    let _ = writeln!(out, "\n## Evidence\n");
    for fact in &verdict.evidence {
        let _ = writeln!(out, "- {fact}");
    }
    if !report.evidence.exchanges.is_empty() {
        let _ = writeln!(out, "\n## {}\n", voice.exchanges);
        let _ = writeln!(
            out,
            "| {} | sent | answered | left origin | reached peer | answer left peer | answer reached origin | marked point |",
            voice.exchange
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for probe in &report.evidence.exchanges {
            match &probe.skipped {
                Some(why) => {
                    let _ = writeln!(
                        out,
                        "| {} | not sent: {why} | | | | | | |",
                        probe_name(probe.kind)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        probe_name(probe.kind),
                        probe.outcome.sent,
                        probe.answers(),
                        probe.left_origin,
                        probe.reached_peer,
                        probe.answer_left_peer,
                        probe.answer_reached_origin,
                        marked_point(report, probe)
                    );
                }
            }
        }
    }
    let (unexplained, expected) = drops_apart(report.evidence);
    let sections: [(&str, Vec<String>); 6] = [
        (
            "Links",
            [&report.evidence.initiator, &report.evidence.target]
                .into_iter()
                .map(link_line)
                .collect(),
        ),
        (
            "Routes",
            report.evidence.routes.iter().map(route_line).collect(),
        ),
        (
            "Neighbours (before -> after)",
            report
                .evidence
                .neighbours
                .iter()
                .map(neighbour_line)
                .collect(),
        ),
        (&format!("Kernel drops {}", voice.during), unexplained),
        (EXPECTED_DROPS, expected),
        (
            "Netfilter drop verdicts",
            report.evidence.netfilter.iter().map(rule_line).collect(),
        ),
    ];
    for (title, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## {title}\n");
        for line in lines {
            let _ = writeln!(out, "- {line}");
        }
    }
    let environment = &report.evidence.environment;
    let _ = writeln!(out, "\n## Environment\n");
    let _ = writeln!(
        out,
        "- tracer {}, kernel {}\n- initiator {}, target {}, port {}",
        environment.tracer_version,
        environment.kernel,
        environment.initiator_ip,
        environment.target_ip,
        environment.tcp_port
    );
    for limitation in &environment.limitations {
        let _ = writeln!(out, "- note: {limitation}");
    }
    out
}
