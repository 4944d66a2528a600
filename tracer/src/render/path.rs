//! The path between the two ports as a picture: `path.svg` draws the hops from the initiator's
//! port to the target's, left to right, the probes' counts at the two ports, and — in the
//! verdict's colour — where the packets stopped; [`mermaid`] draws the same for report.md.

use std::fmt::Write as _;

use tracer_evidence::{
    Evidence, Exchange, HopRole, PortEvidence, Side, Verdict, VerdictClass,
    ladder::{Rung, Shortfall, shortfall},
    stop::{DrawnPath, Stop},
    words::{hop_line, hop_state, namespace_phrase, probe_name, side_label},
};

use super::svg::{Font, Svg, clip, escape, text_width, wrap};

/// The path as drawn: its hops and where the packets stopped.
struct Picture<'a> {
    evidence: &'a Evidence,
    verdict: &'a Verdict,
    path: DrawnPath,
    stop: Stop,
}

impl<'a> Picture<'a> {
    fn new(evidence: &'a Evidence, verdict: &'a Verdict) -> Self {
        let path = DrawnPath::of(evidence);
        let stop = path.stop(evidence, verdict);
        Self {
            evidence,
            verdict,
            path,
            stop,
        }
    }

    fn last(&self) -> usize {
        self.path.hops.len() - 1
    }

    fn ok(&self) -> bool {
        self.verdict.class == VerdictClass::Ok
    }

    /// The watched port a hop is, if it is one.
    fn port(&self, index: usize) -> Option<&PortEvidence> {
        match (self.path.hops[index].role, index) {
            (HopRole::Port, 0) => Some(&self.evidence.initiator),
            (HopRole::Port, i) if i == self.last() => Some(&self.evidence.target),
            _ => None,
        }
    }

    fn role(&self, index: usize) -> &'static str {
        match self.path.hops[index].role {
            HopRole::Port if index == 0 => "initiator port",
            HopRole::Port => "target port",
            HopRole::VethPeer => "veth peer",
            HopRole::Bridge => "bridge",
            HopRole::Cable => "cable",
        }
    }

    fn name(&self, index: usize) -> String {
        self.path.name(index)
    }

    /// The hop's namespace, or for the cable why it has no more to say.
    fn namespace(&self, index: usize) -> String {
        match self.path.hops[index].role {
            HopRole::Cable => "not visible to tracer".to_owned(),
            _ => namespace_phrase(&self.path.hops[index].netns),
        }
    }

    fn state(&self, index: usize) -> String {
        if let Some(state) = hop_state(&self.path.hops[index]) {
            return state;
        }
        match self.port(index) {
            Some(port) if !port.netns_exists => "namespace missing".to_owned(),
            Some(_) => "interface missing".to_owned(),
            None => String::new(),
        }
    }

    /// The place the packets stopped, for people.
    fn stop_name(&self) -> String {
        self.path.place(self.stop)
    }

    /// The line under the summary: where, and the thing to change.
    fn where_line(&self) -> String {
        let place = match self.stop {
            Stop::Hop(_) => format!("at {}", self.stop_name()),
            Stop::Between(_) => self.stop_name(),
        };
        if self.ok() {
            return format!("answered {place}");
        }
        match self.verdict.named_thing() {
            Some(thing) => format!("{place}: {thing}"),
            None => place,
        }
    }

    /// Counts of one probe at a watched port, as (rightward, leftward): what travelled towards
    /// the target and towards the initiator.
    fn counts_at(probe: &Exchange, at: Side) -> (u64, u64) {
        let (request, answer) = if at == probe.from {
            (probe.left_origin, probe.answer_reached_origin)
        } else {
            (probe.reached_peer, probe.answer_left_peer)
        };
        if probe.from == Side::Target {
            (answer, request)
        } else {
            (request, answer)
        }
    }
}

// The picture's geometry, in pixels.
pub(super) const MARGIN: f64 = 28.0;
/// The probes' names, left of their arrows.
const LABELS: f64 = 230.0;
const BOX_W: f64 = 212.0;
const BOX_H: f64 = 112.0;
const MIN_GAP: f64 = 60.0;
/// The hops' row is at least this wide, so that two ports are not cramped.
const MIN_SPAN: f64 = 760.0;
/// One arrow.
const ROW: f64 = 28.0;
const LANE_GAP: f64 = 14.0;
const PILL_H: f64 = 20.0;

pub(super) const INK: &str = "#1c2529";
pub(super) const MUTED: &str = "#546e7a";
pub(super) const FAINT: &str = "#b0bec5";
const ARRIVED: &str = "#2e7d32";

/// One end of an arrow: a count, what was expected there, and how it is marked.
#[derive(Debug, Clone, Copy)]
struct Count {
    value: u64,
    expected: u64,
    mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Plain,
    /// The first count of the probe that fell short of what was sent (filled).
    FirstShort,
    /// Every answer arrived back and the probe still went unanswered: they went no further
    /// (ringed).
    WentNoFurther,
}

impl Count {
    fn complete(self) -> bool {
        self.expected > 0 && self.value >= self.expected
    }
}

/// `path.svg`: the hops left to right, the probes' counts at the ports, where the packets
/// stopped, the verdict and what to do.
pub fn svg(evidence: &Evidence, verdict: &Verdict) -> String {
    let picture = Picture::new(evidence, verdict);
    let colour = verdict.class.colour();
    let n = picture.path.hops.len();
    let span = MIN_SPAN.max(n as f64 * BOX_W + (n - 1) as f64 * MIN_GAP);
    let width = 2.0 * MARGIN + LABELS + span;
    let step = (span - BOX_W) / (n - 1).max(1) as f64;
    let column = |index: usize| MARGIN + LABELS + BOX_W / 2.0 + index as f64 * step;
    let mut svg = Svg::default();
    svg.raw(&arrow_heads(colour));

    let mut y = draw_verdict(&mut svg, evidence, verdict, width);
    let text_span = width - 2.0 * MARGIN;
    for line in wrap(&picture.where_line(), (text_span / (13.5 * 0.6)) as usize) {
        svg.text(MARGIN, y, Font::new(13.5, colour).mono(), &line);
        y += 20.0;
    }

    // The hops, with room above them for the stop mark.
    let top = y + 46.0;
    let middle = top + BOX_H / 2.0;
    for index in 0..n - 1 {
        if picture.stop != Stop::Between(index) {
            svg.line(
                (column(index) + BOX_W / 2.0, middle),
                (column(index + 1) - BOX_W / 2.0, middle),
                r##"stroke="#78909c" stroke-width="4""##,
            );
        }
    }
    for index in 0..n {
        draw_hop(&mut svg, &picture, index, column(index), top, colour);
    }

    // The probes, below the hops.
    let mut lanes = Svg::default();
    let (lanes_bottom, went_no_further) =
        draw_lanes(&mut lanes, &picture, &column, top + BOX_H + 30.0, colour);
    // Guides from each hop down through the lanes, behind the arrows.
    for index in 0..n {
        svg.line(
            (column(index), top + BOX_H),
            (column(index), lanes_bottom - LANE_GAP / 2.0),
            r##"stroke="#cfd8dc" stroke-width="1" stroke-dasharray="2 4""##,
        );
    }
    svg.append(lanes);

    // How to read it, and what to do.
    let mut y = lanes_bottom + 20.0;
    let mut legend = "Arrows: requests and answers, from the port that sent them. Numbers: \
                      packets tracer counted at the port; green: all that were sent; filled: the \
                      first count that fell short."
        .to_owned();
    for place in &went_no_further {
        legend.push_str(&format!(
            " Ringed: answers that arrived and {}.",
            Shortfall::AfterLast.mark(place)
        ));
    }
    if n > 2 {
        legend.push_str(" –: no counter at this hop.");
    }
    for line in wrap(&legend, (text_span / (12.0 * 0.55)) as usize) {
        svg.text(MARGIN, y, Font::new(12.0, MUTED), &line);
        y += 17.0;
    }
    y += 8.0;
    for line in wrap(
        &format!("What to do: {}", verdict.advice()),
        (text_span / (13.5 * 0.55)) as usize,
    ) {
        svg.text(MARGIN, y, Font::new(13.5, INK), &line);
        y += 20.0;
    }

    draw_stop(
        &mut svg,
        &picture,
        colour,
        match picture.stop {
            Stop::Hop(index) => (column(index), BOX_W + 20.0),
            Stop::Between(index) => ((column(index) + column(index + 1)) / 2.0, 40.0),
        },
        (top, lanes_bottom - LANE_GAP / 2.0),
        width,
    );
    svg.finish(
        width,
        y + MARGIN - 8.0,
        &format!("tracer: {}", verdict.summary()),
    )
}

/// The verdict across the top of a picture: its class on a badge in the class colour, the
/// side, the signature and the summary; returns where the next line goes.
pub(super) fn draw_verdict(
    svg: &mut Svg,
    evidence: &Evidence,
    verdict: &Verdict,
    width: f64,
) -> f64 {
    let colour = verdict.class.colour();
    let mut y = MARGIN;
    let badge = verdict.class.name().to_uppercase();
    // Bold capitals are wider than the average letter.
    let badge_w = text_width(&badge, 15.0) * 1.25 + 24.0;
    svg.rect(
        MARGIN,
        y,
        badge_w,
        30.0,
        &format!(r#"rx="6" fill="{colour}""#),
    );
    svg.text(
        MARGIN + badge_w / 2.0,
        y + 20.5,
        Font::new(15.0, "#ffffff").bold().middle(),
        &badge,
    );
    if verdict.side != Side::None || verdict.class == VerdictClass::Ok {
        svg.text(
            MARGIN + badge_w + 14.0,
            y + 20.5,
            Font::new(15.0, MUTED),
            side_label(verdict.side),
        );
    }
    svg.text(
        width - MARGIN,
        y + 20.5,
        Font::new(11.5, MUTED).mono().end(),
        &verdict.signature(evidence),
    );
    y += 30.0 + 30.0;
    for line in wrap(
        &verdict.summary(),
        ((width - 2.0 * MARGIN) / (17.0 * 0.64)) as usize,
    ) {
        svg.text(MARGIN, y, Font::new(17.0, INK).bold(), &line);
        y += 24.0;
    }
    y
}

/// One lane per probe from `top`: the request and the answer, with the counts at the two
/// ports; then one per don't-fragment probe. Returns where the lanes end, and the places where
/// answers that arrived went no further (their counts are ringed).
fn draw_lanes(
    lanes: &mut Svg,
    picture: &Picture<'_>,
    column: &impl Fn(usize) -> f64,
    top: f64,
    colour: &str,
) -> (f64, Vec<String>) {
    let evidence = picture.evidence;
    let mut y = top;
    let last = picture.last();
    let mut went_no_further = Vec::new();
    for probe in &evidence.exchanges {
        lanes.text(
            MARGIN,
            y + 14.0,
            Font::new(13.0, INK).bold(),
            probe_name(probe.kind),
        );
        if let Some(why) = &probe.skipped {
            // Where its arrows would be.
            let room = column(last) - column(0);
            lanes.text(
                column(0),
                y + 14.0,
                Font::new(12.0, MUTED),
                &clip(&format!("not sent: {why}"), (room / (12.0 * 0.6)) as usize),
            );
            y += ROW + LANE_GAP;
            continue;
        }
        lanes.text(
            MARGIN,
            y + 31.0,
            Font::new(11.5, MUTED),
            &format!("{} sent, {} answered", probe.outcome.sent, probe.answers()),
        );
        let (origin, peer) = picture.path.ends(probe.from);
        let expected = u64::from(probe.outcome.sent);
        let shortfall = shortfall(probe);
        let count = |rung: Rung| Count {
            value: rung.count(probe),
            expected,
            mark: match shortfall {
                Some(Shortfall::At(short)) if short == rung => Mark::FirstShort,
                Some(Shortfall::AfterLast) if rung == Rung::AnswerReachedOrigin => {
                    Mark::WentNoFurther
                }
                _ => Mark::Plain,
            },
        };
        // Answers that went no further died past the last counting point: say where.
        let after_last = (shortfall == Some(Shortfall::AfterLast))
            .then(|| picture.path.place(picture.path.probe_stop(probe)));
        for (row, (from, to), (departed, arrived)) in [
            (0.0, (origin, peer), (Rung::LeftOrigin, Rung::ReachedPeer)),
            (
                1.0,
                (peer, origin),
                (Rung::AnswerLeftPeer, Rung::AnswerReachedOrigin),
            ),
        ] {
            let row_y = y + 10.0 + row * ROW;
            let lost_after = after_last
                .as_ref()
                .filter(|_| arrived == Rung::AnswerReachedOrigin);
            if let Some(place) = lost_after {
                lanes.open(
                    "g",
                    &format!(r#"class="after-last" data-place="{}""#, escape(place)),
                );
                lanes.title(&Shortfall::AfterLast.mark(place));
            }
            draw_arrow(
                lanes,
                (column(from), column(to)),
                row_y,
                (count(departed), count(arrived)),
                colour,
            );
            if lost_after.is_some() {
                lanes.close("g");
            }
            draw_no_counters(lanes, (1..last).map(column), row_y);
        }
        if let Some(place) = after_last
            && !went_no_further.contains(&place)
        {
            went_no_further.push(place);
        }
        y += 2.0 * ROW + LANE_GAP;
    }
    for mtu in &evidence.mtu_probes {
        lanes.text(
            MARGIN,
            y + 14.0,
            Font::new(13.0, INK).bold(),
            &format!("{}-byte don't-fragment echo", mtu.size),
        );
        lanes.text(
            MARGIN,
            y + 31.0,
            Font::new(11.5, MUTED),
            &format!("{} sent, {} answered", mtu.sent, mtu.answered),
        );
        let (origin, peer) = picture.path.ends(mtu.from);
        let expected = u64::from(mtu.sent);
        let departed = Count {
            value: mtu.left_origin,
            expected,
            mark: if mtu.left_origin < expected {
                Mark::FirstShort
            } else {
                Mark::Plain
            },
        };
        let arrived = Count {
            value: mtu.reached_peer,
            expected,
            mark: if departed.mark == Mark::Plain && mtu.reached_peer < expected {
                Mark::FirstShort
            } else {
                Mark::Plain
            },
        };
        let row_y = y + 10.0;
        draw_arrow(
            lanes,
            (column(origin), column(peer)),
            row_y,
            (departed, arrived),
            colour,
        );
        draw_no_counters(lanes, (1..last).map(column), row_y);
        y += ROW + LANE_GAP;
    }
    (y, went_no_further)
}

/// Arrow heads: green for what arrived, the class colour for what was lost, grey for nothing.
fn arrow_heads(colour: &str) -> String {
    let mut defs = String::from("<defs>");
    for (id, fill) in [("arrived", ARRIVED), ("lost", colour), ("none", FAINT)] {
        let _ = write!(
            defs,
            r#"<marker id="head-{id}" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="11" markerHeight="11" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{fill}"/></marker>"#
        );
    }
    defs.push_str("</defs>");
    defs
}

fn draw_hop(svg: &mut Svg, picture: &Picture<'_>, index: usize, x: f64, top: f64, colour: &str) {
    let hop = &picture.path.hops[index];
    let stopped = picture.stop == Stop::Hop(index) && !picture.ok();
    let stroke = if stopped {
        format!(r#"stroke="{colour}" stroke-width="3.5""#)
    } else {
        r##"stroke="#78909c" stroke-width="1.5""##.to_owned()
    };
    let dashed = if hop.link.is_none() {
        r#" stroke-dasharray="7 5""#
    } else {
        ""
    };
    let fill = if picture.port(index).is_some() {
        "#ffffff"
    } else {
        "#f4f6f7"
    };
    svg.open(
        "g",
        &format!(
            r#"class="hop" data-name="{}""#,
            escape(&picture.name(index))
        ),
    );
    svg.title(&hop_line(hop));
    let left = x - BOX_W / 2.0;
    svg.rect(
        left,
        top,
        BOX_W,
        BOX_H,
        &format!(r#"rx="10" fill="{fill}" {stroke}{dashed}"#),
    );
    let chars = |size: f64| ((BOX_W - 12.0) / (size * 0.6)) as usize;
    svg.text(
        x,
        top + 19.0,
        Font::new(10.5, MUTED).bold().middle(),
        &picture.role(index).to_uppercase(),
    );
    svg.text(
        x,
        top + 43.0,
        Font::new(17.0, INK).bold().middle(),
        &clip(&picture.name(index), chars(17.0)),
    );
    // Three lines: the namespace, the state (on two lines when there is room), the addresses.
    let addresses = picture
        .port(index)
        .map(|port| port.addresses.join(" "))
        .unwrap_or_default();
    let state_lines = if addresses.is_empty() { 2 } else { 1 };
    let mut state = wrap(&picture.state(index), chars(11.0));
    if state.len() > state_lines {
        // What does not fit goes on the last line, to be cut there with an ellipsis.
        let rest = state.split_off(state_lines - 1).join(" ");
        state.push(rest);
    }
    let mut lines = vec![picture.namespace(index)];
    lines.extend(state);
    lines.push(addresses);
    for (line, text) in lines.iter().filter(|text| !text.is_empty()).enumerate() {
        svg.text(
            x,
            top + 63.0 + line as f64 * 16.0,
            Font::new(11.0, MUTED).middle(),
            &clip(text, chars(11.0)),
        );
    }
    svg.close("g");
}

/// An arrow between two columns with its counts at the two ends: green when everything that
/// left arrived, dashed in the class colour when some was lost on the way, grey when nothing
/// left.
fn draw_arrow(
    svg: &mut Svg,
    (from, to): (f64, f64),
    y: f64,
    (departed, arrived): (Count, Count),
    colour: &str,
) {
    let direction = if to >= from { 1.0 } else { -1.0 };
    let (head, style) = if departed.value == 0 {
        (
            "none",
            format!(r#"stroke="{FAINT}" stroke-dasharray="5 5""#),
        )
    } else if arrived.value < departed.value {
        (
            "lost",
            format!(r#"stroke="{colour}" stroke-dasharray="8 5""#),
        )
    } else {
        ("arrived", format!(r#"stroke="{ARRIVED}""#))
    };
    svg.line(
        (from + direction * (pill_width(departed) / 2.0 + 3.0), y),
        (to - direction * (pill_width(arrived) / 2.0 + 4.0), y),
        &format!(r#"{style} stroke-width="2.5" marker-end="url(#head-{head})""#),
    );
    draw_count(svg, from, y, departed, colour);
    draw_count(svg, to, y, arrived, colour);
}

fn pill_width(count: Count) -> f64 {
    (text_width(&count.value.to_string(), 12.0) + 16.0).max(34.0)
}

fn draw_count(svg: &mut Svg, x: f64, y: f64, count: Count, colour: &str) {
    let width = pill_width(count);
    let (fill, stroke, stroke_width, font) = match count.mark {
        Mark::FirstShort => (colour, colour, 1.2, Font::new(12.0, "#ffffff").bold()),
        Mark::WentNoFurther => ("#ffffff", colour, 3.0, Font::new(12.0, "#000000").bold()),
        Mark::Plain if count.complete() => {
            ("#e8f5e9", ARRIVED, 1.2, Font::new(12.0, "#1b5e20").bold())
        }
        Mark::Plain => ("#eceff1", FAINT, 1.2, Font::new(12.0, MUTED)),
    };
    svg.rect(
        x - width / 2.0,
        y - PILL_H / 2.0,
        width,
        PILL_H,
        &format!(r#"rx="10" fill="{fill}" stroke="{stroke}" stroke-width="{stroke_width}""#),
    );
    svg.text(x, y + 4.5, font.middle(), &count.value.to_string());
}

/// A dash on each hop without counters that an arrow crosses.
fn draw_no_counters(svg: &mut Svg, columns: impl Iterator<Item = f64>, y: f64) {
    for x in columns {
        svg.rect(x - 12.0, y - 9.0, 24.0, 18.0, r##"fill="#ffffff""##);
        svg.text(x, y + 5.0, Font::new(15.0, MUTED).bold().middle(), "–");
    }
}

/// The stop mark: a band over the place through the lanes, and a label above it, in the
/// class colour; `id="stop"` with the class and the place as data attributes.
fn draw_stop(
    svg: &mut Svg,
    picture: &Picture<'_>,
    colour: &str,
    (x, band_width): (f64, f64),
    (top, bottom): (f64, f64),
    width: f64,
) {
    svg.open(
        "g",
        &format!(
            r#"id="stop" data-class="{}" data-place="{}""#,
            picture.verdict.class.name(),
            escape(&picture.stop_name())
        ),
    );
    svg.title(&picture.where_line());
    if !picture.ok() {
        svg.rect(
            x - band_width / 2.0,
            top - 10.0,
            band_width,
            bottom - top + 10.0,
            &format!(
                r#"rx="12" fill="{colour}" fill-opacity="0.08" stroke="{colour}" stroke-opacity="0.6" stroke-width="1.5" stroke-dasharray="5 4""#
            ),
        );
    }
    if let Stop::Between(_) = picture.stop {
        let y = top + BOX_H / 2.0;
        svg.line(
            (x - 34.0, y),
            (x + 34.0, y),
            &format!(r#"stroke="{colour}" stroke-width="4" stroke-dasharray="6 4""#),
        );
        svg.raw(&format!(
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="15" fill="{colour}"/>"#
        ));
        svg.text(x, y + 6.0, Font::new(17.0, "#ffffff").bold().middle(), "✕");
    }
    let mark = picture.verdict.mark();
    let mark_width = text_width(&mark, 13.5) + 26.0;
    let mark_top = top - 42.0;
    // The label stays on the page; its pointer stays on the place.
    let label_x = x.clamp(
        MARGIN + mark_width / 2.0,
        (width - MARGIN - mark_width / 2.0).max(MARGIN + mark_width / 2.0),
    );
    svg.rect(
        label_x - mark_width / 2.0,
        mark_top,
        mark_width,
        26.0,
        &format!(r#"rx="13" fill="{colour}""#),
    );
    svg.raw(&format!(
        r#"<path d="M{:.1},{:.1} l7,0 l-7,8 l-7,-8 z" fill="{colour}"/>"#,
        x,
        mark_top + 26.0
    ));
    svg.text(
        label_x,
        mark_top + 18.0,
        Font::new(13.5, "#ffffff").bold().middle(),
        &mark,
    );
    svg.close("g");
}

/// Text for a Mermaid label inside double quotes: what would end the label or be read as markup
/// written as Mermaid's entity codes.
fn mermaid_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The same picture as a Mermaid flowchart (a fenced block for Markdown): one node per hop,
/// with the counts at the two ports, and the stop in the class colour.
pub fn mermaid(evidence: &Evidence, verdict: &Verdict) -> String {
    let picture = Picture::new(evidence, verdict);
    let colour = verdict.class.colour();
    let mark = verdict.mark();
    let mut out = String::from("```mermaid\nflowchart LR\n");
    for index in 0..picture.path.hops.len() {
        let mut lines = Vec::new();
        if picture.stop == Stop::Hop(index) {
            lines.push(mermaid_text(&mark));
        }
        lines.push(picture.role(index).to_owned());
        lines.push(format!("<b>{}</b>", mermaid_text(&picture.name(index))));
        lines.push(mermaid_text(&picture.namespace(index)));
        if let Some(port) = picture.port(index) {
            for probe in evidence.exchanges.iter().filter(|p| p.skipped.is_none()) {
                let (right, left) = Picture::counts_at(probe, port.side);
                lines.push(mermaid_text(&format!(
                    "{}: → {right} ← {left}",
                    probe_name(probe.kind)
                )));
            }
        }
        let label = lines.join("<br/>");
        let _ = writeln!(out, "  h{index}[\"{label}\"]");
    }
    for index in 0..picture.path.hops.len() - 1 {
        if picture.stop == Stop::Between(index) {
            let _ = writeln!(
                out,
                "  h{index} ---|\"{}\"| h{}",
                mermaid_text(&mark),
                index + 1
            );
        } else {
            let _ = writeln!(out, "  h{index} --- h{}", index + 1);
        }
    }
    let _ = writeln!(
        out,
        "  classDef stop fill:#ffffff,stroke:{colour},stroke-width:4px,color:{colour}"
    );
    match picture.stop {
        Stop::Hop(index) => {
            let _ = writeln!(out, "  class h{index} stop");
        }
        Stop::Between(index) => {
            let _ = writeln!(
                out,
                "  linkStyle {index} stroke:{colour},stroke-width:4px,color:{colour}"
            );
        }
    }
    out.push_str("```\n");
    out
}

#[cfg(test)]
mod tests {
    use tracer_evidence::{
        AttachedProgram, Environment, ExchangeKind, ExchangeOutcome, Hop, HopProblem, Link,
        MtuProbe, NetfilterLocation, PathEvidence, PortRef, Sysctl, findings::*,
    };

    use super::*;

    fn link(name: &str, kind: Option<&str>) -> Link {
        Link {
            ifindex: 2,
            name: name.to_owned(),
            admin_up: true,
            carrier: true,
            operstate: "up".to_owned(),
            mac: Some([2, 0, 0, 0, 0, 2]),
            kind: kind.map(str::to_owned),
            xdp_program: None,
            mtu: 1500,
            peer_ifindex: None,
            peer_netnsid: None,
            master: None,
            bridge_port_state: None,
            carrier_up_count: None,
            carrier_down_count: None,
        }
    }

    fn port(side: Side, netns: &str, interface: &str, kind: Option<&str>) -> PortEvidence {
        PortEvidence {
            link: Some(link(interface, kind)),
            addresses: vec!["10.0.0.9/24".to_owned()],
            ..PortEvidence::new(side, netns, interface, true)
        }
    }

    /// A probe with its four counts: left origin, reached peer, answer left peer, answer back.
    fn probe(kind: ExchangeKind, from: Side, sent: u32, counts: [u64; 4]) -> Exchange {
        Exchange {
            kind,
            from,
            outcome: ExchangeOutcome {
                sent,
                answered: counts[3].min(u64::from(sent)) as u32,
                ..ExchangeOutcome::default()
            },
            skipped: None,
            left_origin: counts[0],
            reached_peer: counts[1],
            answer_left_peer: counts[2],
            answer_reached_origin: counts[3],
        }
    }

    /// The lab's ports (a veth pair, or two physical ports with `kind` None), every probe
    /// answered unless the test changes them.
    fn evidence(kind: Option<&str>) -> Evidence {
        let environment = Environment {
            initiator_ip: "10.0.0.1".to_owned(),
            target_ip: "10.0.0.2".to_owned(),
            tcp_port: 4420,
            ..Environment::default()
        };
        Evidence {
            exchanges: vec![
                probe(ExchangeKind::Arp, Side::Initiator, 3, [3; 4]),
                probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5; 4]),
                probe(ExchangeKind::IcmpReverse, Side::Target, 5, [5; 4]),
                probe(ExchangeKind::Tcp, Side::Initiator, 3, [3; 4]),
            ],
            ..Evidence::new(
                port(Side::Initiator, "", "cvl_0_1", kind),
                port(Side::Target, "cvl_0_0_ns_spdk", "cvl_0_0", kind),
                environment,
            )
        }
    }

    fn hop(role: HopRole, netns: &str, interface: &str) -> Hop {
        Hop {
            role,
            netns: netns.to_owned(),
            interface: interface.to_owned(),
            link: (role != HopRole::Cable).then(|| link(interface, Some("veth"))),
            bridge: None,
        }
    }

    /// The ports joined by veth peers in a bridge namespace: five hops.
    fn bridged(mut evidence: Evidence) -> Evidence {
        evidence.path = Some(PathEvidence {
            hops: vec![
                hop(HopRole::Port, "", "cvl_0_1"),
                hop(HopRole::VethPeer, "sw", "peer1"),
                hop(HopRole::Bridge, "sw", "br0"),
                hop(HopRole::VethPeer, "sw", "peer0"),
                hop(HopRole::Port, "cvl_0_0_ns_spdk", "cvl_0_0"),
            ],
            bridge_nf_call_iptables: None,
        });
        evidence
    }

    /// The picture parses as standalone SVG, shows every hop's name, and its stop mark names
    /// the class and `place`; returns the document's text, all of it.
    fn check(evidence: &Evidence, verdict: &Verdict, place: &str) -> String {
        let document = svg(evidence, verdict);
        let parsed = roxmltree::Document::parse(&document)
            .unwrap_or_else(|err| panic!("{err}:\n{document}"));
        let root = parsed.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        for attribute in ["width", "height", "viewBox"] {
            assert!(root.attribute(attribute).is_some(), "no {attribute}");
        }
        let texts: Vec<&str> = root
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text())
            .collect();
        let path = DrawnPath::of(evidence);
        for index in 0..path.hops.len() {
            let name = path.name(index);
            assert!(
                texts.contains(&name.as_str()),
                "{name} not drawn: {texts:?}"
            );
        }
        let stop = root
            .descendants()
            .find(|node| node.attribute("id") == Some("stop"))
            .expect("a stop mark");
        assert_eq!(stop.attribute("data-class"), Some(verdict.class.name()));
        assert_eq!(stop.attribute("data-place"), Some(place));
        let colour = verdict.class.colour();
        assert!(
            stop.descendants()
                .any(|node| node.attribute("fill") == Some(colour)),
            "the stop mark is not in the class colour"
        );
        let mut all: Vec<String> = texts.iter().map(|text| (*text).to_owned()).collect();
        all.extend(
            root.descendants()
                .filter(|node| node.has_tag_name("title"))
                .filter_map(|node| node.text().map(str::to_owned)),
        );
        all.join("\n")
    }

    const TARGET: &str = "cvl_0_0 (namespace cvl_0_0_ns_spdk)";

    #[test]
    fn ok_is_answered_at_the_target() {
        let evidence = evidence(Some("veth"));
        let verdict = tracer_evidence::diagnose(&evidence);
        assert_eq!(verdict.class, VerdictClass::Ok);
        let text = check(&evidence, &verdict, TARGET);
        assert!(text.contains("✓ answered"), "{text}");
        // A veth pair joins the ports directly: no cable.
        assert_eq!(DrawnPath::of(&evidence).hops.len(), 2);
    }

    #[test]
    fn cable_between_physical_ports_stops_at_the_cable() {
        let mut evidence = evidence(None);
        evidence.exchanges = vec![probe(ExchangeKind::Arp, Side::Initiator, 3, [3, 0, 0, 0])];
        let verdict = tracer_evidence::diagnose(&evidence);
        assert_eq!(verdict.class, VerdictClass::Cable);
        assert_eq!(DrawnPath::of(&evidence).hops[1].role, HopRole::Cable);
        check(&evidence, &verdict, "the cable");
    }

    #[test]
    fn neighbour_marks_the_target_and_names_the_sysctl() {
        let mut evidence = evidence(Some("veth"));
        let sysctl = Sysctl {
            name: "arp_ignore".to_owned(),
            effective: 8,
            all: 0,
            device: 8,
        };
        let verdict = Verdict::new(
            Side::Target,
            ArpUnanswered {
                port: PortRef::of(&evidence.target),
                target_ip: "10.0.0.2".to_owned(),
                owns_address: true,
                sysctls: vec![sysctl],
            },
        );
        evidence.exchanges[0] = probe(ExchangeKind::Arp, Side::Initiator, 3, [3, 3, 0, 0]);
        let text = check(&evidence, &verdict, TARGET);
        assert!(text.contains("arp_ignore=8"), "{text}");
    }

    #[test]
    fn netfilter_marks_the_target_and_names_the_rule_escaped() {
        let mut evidence = evidence(Some("veth"));
        evidence.exchanges[1] = probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5, 5, 0, 0]);
        let rule = r#"-A INPUT -p icmp -m comment --comment "<x> & 'y'" -j DROP"#;
        let verdict = Verdict::new(
            Side::Target,
            NetfilterDrop {
                location: NetfilterLocation {
                    netns: "cvl_0_0_ns_spdk".to_owned(),
                    family: "ip".to_owned(),
                    table: "filter".to_owned(),
                    chain: "INPUT".to_owned(),
                    rule: rule.to_owned(),
                },
                dropped: 5,
            },
        );
        let text = check(&evidence, &verdict, TARGET);
        assert!(text.contains(rule), "{text}");
        // The first count that fell short is drawn in the class colour: the answer never left.
        let document = svg(&evidence, &verdict);
        assert!(document.contains(&format!(r#"fill="{}" stroke"#, verdict.class.colour())));
    }

    /// ICMP dropped in the target's INPUT chain: the reverse echo's answers were counted
    /// arriving at the target and went no further; the picture says they died past the last
    /// counting point, at the finding's stop.
    #[test]
    fn answers_lost_after_the_last_counting_point_are_marked_there() {
        let mut evidence = evidence(Some("veth"));
        evidence.exchanges[1] = probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5, 5, 0, 0]);
        evidence.exchanges[2] = probe(ExchangeKind::IcmpReverse, Side::Target, 5, [5; 4]);
        evidence.exchanges[2].outcome.answered = 0;
        let verdict = Verdict::new(
            Side::Target,
            NetfilterDrop {
                location: NetfilterLocation {
                    netns: "cvl_0_0_ns_spdk".to_owned(),
                    family: "ip".to_owned(),
                    table: "filter".to_owned(),
                    chain: "INPUT".to_owned(),
                    rule: "-A INPUT -p icmp -j DROP".to_owned(),
                },
                dropped: 10,
            },
        );
        let text = check(&evidence, &verdict, TARGET);
        assert!(
            text.contains(&format!("after the last counting point, in {TARGET}")),
            "{text}"
        );
        let document = svg(&evidence, &verdict);
        let parsed = roxmltree::Document::parse(&document).unwrap();
        let marked: Vec<_> = parsed
            .descendants()
            .filter(|node| node.attribute("class") == Some("after-last"))
            .collect();
        assert_eq!(marked.len(), 1, "one exchange went no further: {document}");
        assert_eq!(marked[0].attribute("data-place"), Some(TARGET));
    }

    #[test]
    fn route_marks_the_initiator() {
        let evidence = evidence(Some("veth"));
        let verdict = Verdict::new(
            Side::Initiator,
            NoRoute {
                port: PortRef::of(&evidence.initiator),
                destination: [10, 0, 0, 2].into(),
                message: "Network is unreachable".to_owned(),
            },
        );
        check(&evidence, &verdict, "cvl_0_1");
    }

    #[test]
    fn a_missing_interface_is_drawn_missing() {
        let mut evidence = evidence(Some("veth"));
        evidence.target.link = None;
        let verdict = tracer_evidence::diagnose(&evidence);
        assert_eq!(verdict.class, VerdictClass::Interface);
        let text = check(&evidence, &verdict, TARGET);
        assert!(text.contains("interface missing"), "{text}");
    }

    #[test]
    fn unknown_stops_where_the_counts_fell_short() {
        let mut evidence = evidence(Some("veth"));
        evidence.exchanges[1] = probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5, 2, 2, 2]);
        let verdict = Verdict::new(Side::None, Unanswered {});
        // Requests left and did not all arrive: lost between the two ends of the veth pair.
        check(&evidence, &verdict, "between cvl_0_1 and cvl_0_0");
        // An answer that arrived and was still not taken died at the origin.
        evidence.exchanges[1] = probe(ExchangeKind::IcmpReverse, Side::Target, 5, [5, 5, 5, 5]);
        evidence.exchanges[1].outcome.answered = 0;
        check(&evidence, &verdict, TARGET);
    }

    #[test]
    fn mtu_marks_the_hop_that_drops_on_a_bridged_path() {
        let mut evidence = bridged(evidence(Some("veth")));
        evidence.mtu_probes = vec![MtuProbe {
            from: Side::Initiator,
            size: 9000,
            sent: 3,
            answered: 0,
            left_origin: 3,
            reached_peer: 0,
            error: None,
        }];
        let verdict = Verdict::new(
            Side::Wire,
            MtuMismatch {
                from: PortRef::of(&evidence.initiator),
                from_mtu: 9000,
                to: PortRef::of(&evidence.target),
                to_mtu: 9000,
                dropping: PortRef {
                    netns: "sw".to_owned(),
                    interface: "peer0".to_owned(),
                },
                dropping_mtu: 1500,
                size: 9000,
            },
        );
        let text = check(&evidence, &verdict, "peer0 (namespace sw)");
        assert!(text.contains("MTU 1500"), "{text}");
        assert!(text.contains("9000-byte don't-fragment echo"), "{text}");
        // The bridge and the peers have no counters.
        assert!(text.contains('–'), "{text}");
    }

    #[test]
    fn program_marks_its_port() {
        let mut evidence = evidence(Some("veth"));
        evidence.exchanges[1] = probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5, 0, 0, 0]);
        let program = AttachedProgram {
            id: 42,
            name: "drop_icmp".to_owned(),
            hook: "xdp".to_owned(),
            attachment: "xdp".to_owned(),
            position: 0,
        };
        evidence.target.programs = vec![program];
        let verdict = tracer_evidence::diagnose(&evidence);
        assert_eq!(verdict.class, VerdictClass::Program);
        let text = check(&evidence, &verdict, TARGET);
        assert!(text.contains("drop_icmp (id 42)"), "{text}");
    }

    #[test]
    fn a_broken_hop_is_marked_itself() {
        let evidence = bridged(evidence(Some("veth")));
        let broken = hop(HopRole::VethPeer, "sw", "peer1");
        let verdict = Verdict::new(
            Side::Wire,
            HopBroken {
                hop: broken,
                problem: HopProblem::NotInBridge {
                    bridge: "br0".to_owned(),
                },
            },
        );
        let text = check(&evidence, &verdict, "peer1 (namespace sw)");
        assert!(text.contains("peer1 is not a port of br0"), "{text}");
    }

    #[test]
    fn mermaid_marks_the_stop_with_safe_labels() {
        let mut evidence = evidence(Some("veth"));
        evidence.target.interface = "we\"ird#<if>`".to_owned();
        evidence.exchanges[1] = probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5, 5, 0, 0]);
        let dropped = Verdict::new(
            Side::Target,
            NetfilterDrop {
                location: NetfilterLocation {
                    netns: "cvl_0_0_ns_spdk".to_owned(),
                    family: "ip".to_owned(),
                    table: "filter".to_owned(),
                    chain: "INPUT".to_owned(),
                    rule: String::new(),
                },
                dropped: 5,
            },
        );
        let block = mermaid(&evidence, &dropped);
        assert!(block.starts_with("```mermaid\nflowchart LR\n"), "{block}");
        assert!(block.ends_with("```\n"), "{block}");
        assert!(block.contains("class h1 stop"), "{block}");
        assert!(block.contains("✕ stops here: netfilter"), "{block}");
        assert!(block.contains("we#quot;ird#35;#lt;if#gt;#96;"), "{block}");
        for line in block
            .lines()
            .filter(|line| line.starts_with("  h") && line.contains('['))
        {
            // Only the label's own quotes: nothing in it ends it early.
            assert_eq!(line.matches('"').count(), 2, "{line}");
            assert!(line.ends_with("\"]"), "{line}");
        }
        assert!(
            block.contains("ICMP echo initiator -#gt; target: → 5 ← 0"),
            "{block}"
        );

        // Lost between the ends of a veth pair: the link is marked.
        evidence.exchanges[1] = probe(ExchangeKind::IcmpForward, Side::Initiator, 5, [5, 0, 0, 0]);
        let lost = Verdict::new(Side::None, Unanswered {});
        let block = mermaid(&evidence, &lost);
        assert!(
            block.contains("h0 ---|\"✕ stops here: unknown\"| h1"),
            "{block}"
        );
        assert!(block.contains("linkStyle 0 stroke:"), "{block}");
    }
}
