//! report.html: the bundle as one page a browser opens from a CI artifact. The verdict first,
//! then the path and timeline pictures inline, the evidence, the probes, links, rules, the
//! timeline and the capture's frames. Self-contained and static: no script, no font, no style
//! or image fetched from anywhere (a Content-Security-Policy forbids it besides), readable
//! without JavaScript, printable. Every text is escaped: interface names, rule texts and
//! comments come from whoever configured the machine.

use std::fmt::Write as _;

use tracer_evidence::{
    CaptureReport, CommandReport, Identity, NetfilterEvidence, PortEvidence, Report, Side,
    Timeline, VerdictClass,
    identity::utc_rfc3339,
    words::{probe_name, rule_location, side_label},
};

use crate::{
    netns,
    pcapng::SavedCapture,
    render::{diagnose, frames, path, svg::escape, timeline},
};

/// Frames listed at most; the rest are counted, and in capture.pcapng.
const FRAMES_LISTED: usize = 5_000;

/// Forbids every fetch and every script, whatever the page holds.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLE: &str = "\
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:72em;\
padding:0 1em;color:#1b1b1b;line-height:1.4}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;\
margin-top:1.6em}\
.verdict{font-size:1.15em;font-weight:bold;padding:.6em .8em;border-left:.4em solid #c62828;\
background:#fdecea}.verdict.ok{border-color:#2e7d32;background:#e8f5e9}\
.verdict.unknown{border-color:#f9a825;background:#fff8e1}\
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}\
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}code,.mono{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace}\
figure{margin:1em 0;overflow-x:auto}svg{max-width:100%;height:auto}\
.note{color:#555;font-style:italic}\
@media print{body{max-width:none;margin:0}figure,tr{break-inside:avoid}h2{break-after:avoid}}";

/// What the page shows besides the report: what only a watch bundle has.
#[derive(Default)]
pub struct Extras<'a> {
    pub timeline: Option<&'a Timeline>,
    pub command: Option<&'a CommandReport>,
    pub capture_counts: Option<&'a CaptureReport>,
    /// The frames of capture.pcapng, when the bundle has one.
    pub capture: Option<&'a SavedCapture>,
}

/// An SVG document as an element to put inline: without its XML declaration.
fn inline_svg(document: &str) -> &str {
    match document.find("<svg") {
        Some(start) => &document[start..],
        None => document,
    }
}

fn table(out: &mut String, id: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for header in headers {
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn list(out: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h2>{}</h2>\n<ul>", escape(title));
    for line in lines {
        let _ = writeln!(out, "<li>{}</li>", escape(line));
    }
    out.push_str("</ul>\n");
}

fn class_attribute(class: VerdictClass) -> &'static str {
    match class {
        VerdictClass::Ok => "verdict ok",
        VerdictClass::Unknown => "verdict unknown",
        _ => "verdict",
    }
}

fn link_row(port: &PortEvidence) -> Vec<String> {
    let role = if port.side == Side::Target {
        "target"
    } else {
        "initiator"
    };
    let (state, carrier, operstate) = match &port.link {
        Some(link) => (
            if link.admin_up { "up" } else { "DOWN" }.to_owned(),
            u8::from(link.carrier).to_string(),
            link.operstate.clone(),
        ),
        None if !port.netns_exists => ("namespace missing".to_owned(), "-".into(), "-".into()),
        None => ("interface missing".to_owned(), "-".into(), "-".into()),
    };
    let programs: Vec<String> = port
        .programs
        .iter()
        .map(|p| format!("{} id {} on {}", p.name, p.id, p.hook))
        .collect();
    vec![
        role.to_owned(),
        port.interface.clone(),
        netns::display_name(&port.netns).to_owned(),
        state,
        carrier,
        operstate,
        port.addresses.join(" "),
        programs.join(", "),
    ]
}

fn rule_row(hit: &NetfilterEvidence) -> Vec<String> {
    let location = &hit.location;
    vec![
        hit.backend.name().to_owned(),
        netns::display_name(&location.netns).to_owned(),
        location.family.clone(),
        location.table.clone(),
        location.chain.clone(),
        location.rule.clone(),
        hit.packets.to_string(),
        hit.rule_found_by.name().to_owned(),
    ]
}

/// Nanoseconds since the epoch as UTC to the millisecond.
fn frame_time(unix_ns: u128) -> String {
    let seconds = u64::try_from(unix_ns / 1_000_000_000).unwrap_or(u64::MAX);
    let stamp = utc_rfc3339(seconds);
    let millis = unix_ns / 1_000_000 % 1000;
    format!("{}.{millis:03}Z", stamp.trim_end_matches('Z'))
}

fn identity_section(out: &mut String, identity: Option<&Identity>) {
    out.push_str("<h2>Run</h2>\n");
    match identity {
        Some(identity) => {
            let rows: Vec<Vec<String>> = identity
                .rows()
                .into_iter()
                .map(|(name, value)| vec![name.to_owned(), value])
                .collect();
            table(out, "identity", &["", ""], &rows);
        }
        None => out.push_str(
            "<p class=\"note\">This report does not say which run wrote it (written before \
             tracer recorded it).</p>\n",
        ),
    }
}

fn capture_section(out: &mut String, extras: &Extras<'_>) {
    let Some(capture) = extras.capture else {
        return;
    };
    out.push_str("<h2>Capture</h2>\n");
    if let Some(counts) = extras.capture_counts {
        let _ = writeln!(
            out,
            "<p><code>capture.pcapng</code>: {} frames kept ({} older ones not kept); events \
             lost in the kernel programs: {}.</p>",
            counts.frames, counts.evicted, counts.lost_events
        );
    }
    if let Some(damage) = &capture.damage {
        let _ = writeln!(
            out,
            "<p class=\"note\">capture.pcapng is damaged: {}; the frames before it are listed.</p>",
            escape(damage)
        );
    }
    let rows: Vec<Vec<String>> = capture
        .frames
        .iter()
        .take(FRAMES_LISTED)
        .enumerate()
        .map(|(index, frame)| {
            vec![
                (index + 1).to_string(),
                frame_time(frame.unix_ns),
                frame.interface.clone(),
                match frame.inbound {
                    Some(true) => "in",
                    Some(false) => "out",
                    None => "?",
                }
                .to_owned(),
                frame.length.to_string(),
                frames::describe(&frame.data),
            ]
        })
        .collect();
    table(
        out,
        "frames",
        &["#", "time (UTC)", "port", "direction", "length", "frame"],
        &rows,
    );
    if capture.frames.len() > FRAMES_LISTED {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} more frames not listed: open capture.pcapng with tcpdump or \
             Wireshark.</p>",
            capture.frames.len() - FRAMES_LISTED
        );
    }
}

fn timeline_section(out: &mut String, timeline: &Timeline) {
    out.push_str("<h2>Timeline</h2>\n");
    let rows: Vec<Vec<String>> = timeline
        .events
        .iter()
        .map(|event| {
            vec![
                format!("+{:.3}s", event.seconds),
                event.kind.to_owned(),
                event.message.clone(),
            ]
        })
        .collect();
    table(out, "timeline-events", &["time", "what", "event"], &rows);
    for summary in &timeline.summarised {
        let _ = writeln!(out, "<p class=\"note\">{}.</p>", escape(&summary.line()));
    }
}

/// The page.
pub fn page(report: &Report<'_>, extras: &Extras<'_>) -> String {
    let verdict = &report.verdict;
    let evidence = report.evidence;
    let class = verdict.verdict.class.name();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{POLICY}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>tracer: {}</title>\n<style>{STYLE}</style></head>\n<body>\n",
        escape(class)
    );
    let _ = writeln!(out, "<h1>tracer: {}</h1>", escape(class));
    let _ = writeln!(
        out,
        "<p id=\"verdict\" class=\"{}\">{}</p>",
        class_attribute(verdict.verdict.class),
        escape(&verdict.summary)
    );
    let mut facts = vec![
        vec![
            "class".to_owned(),
            format!("{class} (exit code {})", verdict.exit_code),
        ],
        vec![
            "where".to_owned(),
            side_label(verdict.verdict.side).to_owned(),
        ],
        vec!["signature".to_owned(), verdict.signature.clone()],
    ];
    if let Some(nf) = verdict.netfilter {
        facts.push(vec!["netfilter".to_owned(), rule_location(nf)]);
    }
    if !verdict.advice.is_empty() {
        facts.push(vec!["what to do".to_owned(), verdict.advice.clone()]);
    }
    table(&mut out, "summary", &["", ""], &facts);

    let _ = writeln!(
        out,
        "<h2>Path</h2>\n<figure id=\"path\">{}</figure>",
        inline_svg(&path::svg(evidence, verdict.verdict))
    );
    if let Some(events) = extras.timeline {
        let _ = writeln!(
            out,
            "<h2>Timeline picture</h2>\n<figure id=\"timeline\">{}</figure>",
            inline_svg(&timeline::svg(events, evidence, verdict.verdict))
        );
    }
    list(&mut out, "Evidence", &verdict.evidence);

    if !evidence.exchanges.is_empty() {
        let title = if extras.timeline.is_some() {
            "Exchanges observed"
        } else {
            "Probes"
        };
        let _ = writeln!(out, "<h2>{title}</h2>");
        let rows: Vec<Vec<String>> = evidence
            .exchanges
            .iter()
            .map(|exchange| {
                let mut row = vec![probe_name(exchange.kind).to_owned()];
                match &exchange.skipped {
                    Some(why) => row.push(format!("not sent: {why}")),
                    None => row.extend([
                        exchange.outcome.sent.to_string(),
                        exchange.answers().to_string(),
                        exchange.left_origin.to_string(),
                        exchange.reached_peer.to_string(),
                        exchange.answer_left_peer.to_string(),
                        exchange.answer_reached_origin.to_string(),
                        diagnose::marked_point(report, exchange),
                    ]),
                }
                row
            })
            .collect();
        table(
            &mut out,
            "exchanges",
            &[
                "kind",
                "sent",
                "answered",
                "left origin",
                "reached peer",
                "answer left peer",
                "answer reached origin",
                "marked point",
            ],
            &rows,
        );
    }

    out.push_str("<h2>Links</h2>\n");
    let links: Vec<Vec<String>> = [&evidence.initiator, &evidence.target]
        .into_iter()
        .map(link_row)
        .collect();
    table(
        &mut out,
        "links",
        &[
            "role",
            "interface",
            "namespace",
            "state",
            "carrier",
            "operstate",
            "addresses",
            "other tools' programs",
        ],
        &links,
    );
    if !evidence.netfilter.is_empty() {
        out.push_str("<h2>Netfilter rules that dropped</h2>\n");
        let rules: Vec<Vec<String>> = evidence.netfilter.iter().map(rule_row).collect();
        table(
            &mut out,
            "rules",
            &[
                "backend",
                "namespace",
                "family",
                "table",
                "chain",
                "rule",
                "packets",
                "found by",
            ],
            &rules,
        );
    }
    let routes: Vec<String> = evidence.routes.iter().map(diagnose::route_line).collect();
    list(&mut out, "Routes", &routes);
    let neighbours: Vec<String> = evidence
        .neighbours
        .iter()
        .map(diagnose::neighbour_line)
        .collect();
    list(&mut out, "Neighbours (before -> after)", &neighbours);
    let (unexplained, expected) = diagnose::drops_apart(evidence);
    list(&mut out, "Kernel drops", &unexplained);
    list(&mut out, diagnose::EXPECTED_DROPS, &expected);

    if let Some(events) = extras.timeline {
        timeline_section(&mut out, events);
    }
    if let Some(command) = extras.command {
        let _ = writeln!(
            out,
            "<h2>Command</h2>\n<p><code>{}</code> exited with {}.</p>",
            escape(&command.argv.join(" ")),
            command.exit_code
        );
    }
    capture_section(&mut out, extras);
    identity_section(&mut out, report.identity.as_ref());

    let environment = &evidence.environment;
    let _ = writeln!(
        out,
        "<h2>Environment</h2>\n<ul><li>tracer {}, kernel {}</li><li>initiator {}, target {}, \
         TCP port {}</li></ul>",
        escape(&environment.tracer_version),
        escape(&environment.kernel),
        escape(&environment.initiator_ip),
        escape(&environment.target_ip),
        environment.tcp_port
    );
    list(&mut out, "Notes", &environment.limitations);
    out.push_str("</body></html>\n");
    out
}
