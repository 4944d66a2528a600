//! A watch's timeline as a picture, `timeline.svg`: for each port, its link (carrier) and its
//! neighbour entries as bands over time and its drops and other events as marks; under them the
//! windows watch placed in time (losses, rules, carrier, neighbours); the command's start and
//! exit as lines across.

mod windows;

use std::{collections::BTreeMap, net::Ipv4Addr};

use tracer_evidence::{
    Evidence, PortChange, PortEvidence, Side, Timeline, TimelineEvent, Verdict,
    reasons::NeighbourState, words::namespace_phrase,
};

use super::{
    path::{FAINT, INK, MARGIN, MUTED, draw_verdict},
    svg::{Font, Svg, clip, escape, text_width},
};

const LABELS: f64 = 210.0;
const PLOT: f64 = 880.0;
const BAND: f64 = 22.0;
const BAND_GAP: f64 = 6.0;
const DROP: &str = "#c62828";

/// A band's colour and name for a port's link state.
fn link_state(change: &PortChange) -> Option<(&'static str, &'static str)> {
    let PortChange::Link {
        present,
        admin_up,
        carrier,
    } = change
    else {
        return None;
    };
    Some(match (present, admin_up, carrier) {
        (false, _, _) => ("#eceff1", "absent"),
        (true, false, _) => ("#90a4ae", "down"),
        (true, true, false) => ("#e53935", "no carrier"),
        (true, true, true) => ("#43a047", "carrier"),
    })
}

/// A band's colour for a neighbour state as `ip neigh` names it; `None` when there is no entry.
fn neighbour_colour(state: &str) -> Option<&'static str> {
    use NeighbourState::*;
    if state.eq_ignore_ascii_case("none") {
        return None;
    }
    let states = NeighbourState::parse(state);
    let has = |wanted: &[NeighbourState]| states.iter().any(|state| wanted.contains(state));
    Some(if has(&[Failed]) {
        "#e53935"
    } else if has(&[Incomplete]) {
        "#fb8c00"
    } else if has(&[Reachable]) {
        "#43a047"
    } else if has(&[Stale, Delay, Probe]) {
        "#fdd835"
    } else if has(&[Permanent, NoArp]) {
        "#1e88e5"
    } else {
        "#90a4ae"
    })
}

/// A tick step of 1, 2 or 5 times a power of ten, about `raw` long.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// `0.5 s`, `12 s`: as many decimals as the step needs.
fn seconds_text(seconds: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{seconds:.decimals$} s")
}

/// One band of a lane: its title and its stretches of (start, state).
struct Band {
    title: String,
    stretches: Vec<(f64, Option<(&'static str, String)>)>,
}

impl Band {
    /// A new stretch from `seconds`, unless the band is in that state already.
    fn extend(&mut self, seconds: f64, state: Option<(&'static str, String)>) {
        if self.stretches.last().map(|(_, last)| last) != Some(&state) {
            self.stretches.push((seconds, state));
        }
    }
}

/// `timeline.svg`: the verdict, then one lane per port over the run's seconds.
pub fn svg(timeline: &Timeline, evidence: &Evidence, verdict: &Verdict) -> String {
    let width = 2.0 * MARGIN + LABELS + PLOT;
    let last = timeline
        .end()
        .max(evidence.windows.last_ms() as f64 / 1000.0);
    let step = nice_step(last.max(0.001) / 8.0);
    let end = (last / step).ceil().max(1.0) * step;
    let left = MARGIN + LABELS;
    let x = |seconds: f64| left + seconds / end * PLOT;
    let mut svg = Svg::default();
    let mut y = draw_verdict(&mut svg, evidence, verdict, width) + 24.0;

    // The time axis.
    let axis = y;
    let mut lanes = Svg::default();
    y += 16.0;
    for port in [&evidence.initiator, &evidence.target] {
        y = draw_lane(&mut lanes, timeline, port, y, x, end) + 18.0;
    }
    let windows_end = windows::draw(&mut lanes, &evidence.windows, y, x, end);
    if windows_end > y {
        y = windows_end + 18.0;
    }
    let bottom = y - 10.0;
    let ticks = (end / step).round() as usize;
    for tick in 0..=ticks {
        let seconds = tick as f64 * step;
        svg.line(
            (x(seconds), axis + 6.0),
            (x(seconds), bottom),
            r##"stroke="#eceff1" stroke-width="1""##,
        );
        svg.text(
            x(seconds),
            axis,
            Font::new(11.0, MUTED).middle(),
            &seconds_text(seconds, step),
        );
    }
    svg.append(lanes);
    for event in timeline
        .events
        .iter()
        .filter(|event| event.port.is_none() && event.kind == "command")
    {
        let at = x(event.seconds);
        svg.open("g", r#"class="command""#);
        svg.title(&event_title(event));
        svg.line(
            (at, axis + 6.0),
            (at, bottom),
            &format!(r#"stroke="{INK}" stroke-width="1.5" stroke-dasharray="6 4""#),
        );
        // The label right of the line, or left of it near the right edge.
        let label = clip(&event.message, 40);
        let font = Font::new(11.0, INK);
        if at + 4.0 + text_width(&label, 11.0) > width - MARGIN {
            svg.text(at - 4.0, bottom - 4.0, font.end(), &label);
        } else {
            svg.text(at + 4.0, bottom - 4.0, font, &label);
        }
        svg.close("g");
    }

    // The legend.
    let mut y = bottom + 28.0;
    let mut legend_x = MARGIN;
    let ports: [(&str, &str); 9] = [
        ("#43a047", "carrier / reachable"),
        ("#e53935", "no carrier / failed"),
        ("#90a4ae", "down"),
        ("#eceff1", "absent"),
        ("#fb8c00", "incomplete"),
        ("#fdd835", "stale, delay, probe"),
        ("#1e88e5", "permanent"),
        (DROP, "▼ kernel drops"),
        (INK, "● other events"),
    ];
    let shown_windows = if evidence.windows.is_empty() {
        &[][..]
    } else {
        &windows::SWATCHES[..]
    };
    for &(colour, name) in ports.iter().chain(shown_windows) {
        let item = 20.0 + text_width(name, 11.5) + 16.0;
        if legend_x + item > width - MARGIN {
            legend_x = MARGIN;
            y += 20.0;
        }
        if name.starts_with(['▼', '●']) {
            svg.text(legend_x, y, Font::new(11.5, colour), name);
            legend_x += text_width(name, 11.5) + 18.0;
            continue;
        }
        svg.rect(
            legend_x,
            y - 11.0,
            16.0,
            14.0,
            &format!(r#"rx="3" fill="{colour}" stroke="{FAINT}""#),
        );
        svg.text(legend_x + 20.0, y, Font::new(11.5, MUTED), name);
        legend_x += item;
    }
    for summary in &timeline.summarised {
        y += 20.0;
        svg.text(MARGIN, y, Font::new(11.5, MUTED), &summary.line());
    }
    svg.finish(width, y + MARGIN, "tracer watch: timeline")
}

fn event_title(event: &TimelineEvent) -> String {
    format!("+{:.3} s {}: {}", event.seconds, event.kind, event.message)
}

/// One port's lane from `top`: its link band, a band per neighbour entry, its events; returns
/// where the lane ends.
fn draw_lane(
    svg: &mut Svg,
    timeline: &Timeline,
    port: &PortEvidence,
    top: f64,
    x: impl Fn(f64) -> f64,
    end: f64,
) -> f64 {
    let events: Vec<&TimelineEvent> = timeline
        .events
        .iter()
        .filter(|event| event.port == Some(port.side))
        .collect();
    let mut link = Band {
        title: "link".to_owned(),
        stretches: Vec::new(),
    };
    let mut neighbours: BTreeMap<Ipv4Addr, Band> = BTreeMap::new();
    for event in &events {
        match &event.change {
            Some(change @ PortChange::Link { .. }) => {
                let state = link_state(change).map(|(colour, name)| (colour, name.to_owned()));
                link.extend(event.seconds, state);
            }
            Some(PortChange::Neighbour { address, state }) => {
                let band = neighbours.entry(*address).or_insert_with(|| Band {
                    title: format!("neighbour {address}"),
                    stretches: Vec::new(),
                });
                let stretch = neighbour_colour(state).map(|colour| (colour, state.clone()));
                band.extend(event.seconds, stretch);
            }
            _ => {}
        }
    }

    let role = if port.side == Side::Target {
        "TARGET PORT"
    } else {
        "INITIATOR PORT"
    };
    svg.open(
        "g",
        &format!(r#"class="port" data-port="{}""#, escape(&port.spec())),
    );
    // The port's name across the top of its lane, its bands below.
    let mut heading = MARGIN;
    for (text, font) in [
        (role.to_owned(), Font::new(10.5, MUTED).bold()),
        (clip(&port.interface, 24), Font::new(15.0, INK).bold()),
        (namespace_phrase(&port.netns), Font::new(12.0, MUTED)),
    ] {
        svg.text(heading, top + 12.0, font, &text);
        heading += text_width(&text, font.size) * if font.bold { 1.1 } else { 1.0 } + 12.0;
    }
    let mut y = top + 22.0;
    for band in std::iter::once(&link).chain(neighbours.values()) {
        draw_band(svg, band, y, &x, end);
        y += BAND + BAND_GAP;
    }
    // The events: drops as triangles, anything else as dots, each with its message.
    let marks = y + BAND / 2.0;
    svg.text(
        MARGIN + LABELS - 10.0,
        marks + 4.0,
        Font::new(11.0, MUTED).end(),
        "events",
    );
    svg.line(
        (x(0.0), marks),
        (x(end), marks),
        &format!(r#"stroke="{FAINT}" stroke-width="1""#),
    );
    for event in &events {
        let at = x(event.seconds);
        svg.open("g", r#"class="event""#);
        svg.title(&event_title(event));
        match &event.change {
            Some(PortChange::Drop { count, .. }) => {
                svg.raw(&format!(
                    r#"<path d="M{:.1},{:.1} l12,0 l-6,11 z" fill="{DROP}"/>"#,
                    at - 6.0,
                    marks - 6.0
                ));
                svg.text(
                    at,
                    marks - 9.0,
                    Font::new(10.5, DROP).bold().middle(),
                    &count.to_string(),
                );
            }
            _ => svg.raw(&format!(
                r#"<circle cx="{at:.1}" cy="{marks:.1}" r="3.5" fill="{INK}"/>"#
            )),
        }
        svg.close("g");
    }
    svg.close("g");
    marks + BAND / 2.0
}

/// A band: each stretch from its start to the next one's (or the end) in its colour, named
/// when there is room.
fn draw_band(svg: &mut Svg, band: &Band, top: f64, x: &impl Fn(f64) -> f64, end: f64) {
    svg.text(
        MARGIN + LABELS - 10.0,
        top + 15.0,
        Font::new(11.0, MUTED).end(),
        &clip(&band.title, 26),
    );
    svg.rect(
        x(0.0),
        top,
        x(end) - x(0.0),
        BAND,
        r##"fill="#fafbfb" stroke="#eceff1""##,
    );
    for (index, (start, state)) in band.stretches.iter().enumerate() {
        let Some((colour, name)) = state else {
            continue;
        };
        let stop = band.stretches.get(index + 1).map_or(end, |(next, _)| *next);
        let (from, to) = (x(*start), x(stop).max(x(*start) + 2.0));
        svg.rect(from, top, to - from, BAND, &format!(r#"fill="{colour}""#));
        if text_width(name, 11.0) + 8.0 < to - from {
            let ink = if *colour == "#fdd835" || *colour == "#eceff1" {
                INK
            } else {
                "#ffffff"
            };
            svg.text(from + 5.0, top + 15.0, Font::new(11.0, ink), name);
        }
    }
}

#[cfg(test)]
mod tests {
    use tracer_evidence::{Environment, PortEvidence, findings::NoCarrier};

    use super::*;

    fn port(side: Side, netns: &str, interface: &str) -> PortEvidence {
        PortEvidence::new(side, netns, interface, true)
    }

    fn event(
        seconds: f64,
        kind: &'static str,
        port: Option<Side>,
        change: Option<PortChange>,
    ) -> TimelineEvent {
        TimelineEvent {
            seconds,
            kind,
            message: format!("{kind} <at> {seconds} & more"),
            port,
            change,
        }
    }

    #[test]
    fn bands_and_marks_per_port_parse_as_svg() {
        let link = |present, carrier| PortChange::Link {
            present,
            admin_up: true,
            carrier,
        };
        let neighbour = |state: &str| PortChange::Neighbour {
            address: [10, 0, 0, 2].into(),
            state: state.to_owned(),
        };
        let timeline = Timeline::from_events(vec![
            event(0.0, "link", Some(Side::Initiator), Some(link(true, true))),
            event(0.0, "link", Some(Side::Target), Some(link(false, false))),
            event(0.1, "command", None, None),
            event(0.4, "link", Some(Side::Target), Some(link(true, false))),
            event(
                0.5,
                "neighbour",
                Some(Side::Initiator),
                Some(neighbour("INCOMPLETE")),
            ),
            event(
                1.5,
                "drop",
                Some(Side::Initiator),
                Some(PortChange::Drop {
                    count: 3,
                    reason: "NEIGH_FAILED".to_owned(),
                }),
            ),
            event(
                3.5,
                "neighbour",
                Some(Side::Initiator),
                Some(neighbour("FAILED")),
            ),
            event(4.2, "command", None, None),
        ]);
        let evidence = Evidence::new(
            port(Side::Initiator, "", "cvl_0_1"),
            port(Side::Target, "cvl_0_0_ns_spdk", "cvl_0_0"),
            Environment::default(),
        );
        let verdict = Verdict::new(Side::Target, NoCarrier { ports: Vec::new() });
        let document = svg(&timeline, &evidence, &verdict);
        let parsed = roxmltree::Document::parse(&document)
            .unwrap_or_else(|err| panic!("{err}:\n{document}"));
        let root = parsed.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        let texts: Vec<&str> = root
            .descendants()
            .filter_map(|node| node.has_tag_name("text").then(|| node.text()).flatten())
            .collect();
        for expected in [
            "cvl_0_1",
            "cvl_0_0",
            "carrier",
            "no carrier",
            "absent",
            "INCOMPLETE",
            "FAILED",
            "neighbour 10.0.0.2",
            "3",
            "0 s",
            "5 s",
        ] {
            assert!(texts.contains(&expected), "{expected} missing: {texts:?}");
        }
        let ports: Vec<&str> = root
            .descendants()
            .filter_map(|node| node.attribute("data-port"))
            .collect();
        assert_eq!(ports, ["cvl_0_1", "cvl_0_0_ns_spdk/cvl_0_0"]);
        let titles: Vec<&str> = root
            .descendants()
            .filter_map(|node| node.has_tag_name("title").then(|| node.text()).flatten())
            .collect();
        assert!(
            titles.contains(&"+1.500 s drop: drop <at> 1.5 & more"),
            "{titles:?}"
        );
    }

    #[test]
    fn each_kind_of_window_is_a_band_with_its_story() {
        use tracer_evidence::{
            AddressOwner, AddressWindow, CarrierWindow, LossWindow, NeighbourWindow, RuleWindow,
            SharedAddress, Windows,
        };
        let hostile_rule = r#"-I OUTPUT 1 -d 10.0.0.3 -m comment --comment "<a>&'b'" -j DROP"#;
        let mut evidence = Evidence::new(
            port(Side::Initiator, "", "cvl_0_1"),
            port(Side::Target, "cvl_0_0_ns_spdk", "cvl_0_0"),
            Environment::default(),
        );
        evidence.windows = Windows {
            observed: true,
            loss: vec![LossWindow {
                flow: "ICMP from 10.0.0.1 to 10.0.0.2".to_owned(),
                side: Side::Initiator,
                first_ms: 2100,
                last_ms: 5000,
                unanswered: 14,
            }],
            rules: vec![RuleWindow {
                netns: "cvl_0_0_ns_spdk".to_owned(),
                family: "ip".to_owned(),
                table: "filter".to_owned(),
                chain: "OUTPUT".to_owned(),
                handle: 7,
                rule: hostile_rule.to_owned(),
                drops: true,
                added_ms: Some(2000),
                removed_ms: Some(5000),
                dropped: 14,
            }],
            carrier: vec![CarrierWindow {
                side: Side::Target,
                netns: "cvl_0_0_ns_spdk".to_owned(),
                interface: "cvl_0_0".to_owned(),
                lost_ms: 6000,
                back_ms: None,
            }],
            address: vec![AddressWindow {
                side: Side::Target,
                netns: "cvl_0_0_ns_spdk".to_owned(),
                interface: "cvl_0_0".to_owned(),
                address: [10, 0, 0, 2].into(),
                removed_ms: 2500,
                back_ms: Some(3500),
            }],
            neighbour: vec![NeighbourWindow {
                side: Side::Initiator,
                netns: String::new(),
                interface: "cvl_0_1".to_owned(),
                address: [10, 0, 0, 2].into(),
                entry_mac: "02:00:00:00:00:01".to_owned(),
                port_mac: "02:00:00:00:00:02".to_owned(),
                changed_ms: 1000,
                until_ms: Some(4000),
            }],
            shared_addresses: vec![SharedAddress {
                address: [10, 0, 0, 2].into(),
                owners: vec![AddressOwner {
                    mac: "02:00:00:00:00:03".to_owned(),
                    first_ms: 500,
                    last_ms: 7000,
                    answers: 3,
                    interface: Some("leftover0".to_owned()),
                    netns: Some("old_ns".to_owned()),
                }],
            }],
            ..Windows::default()
        };
        // The run's events end at 4.2 s; the windows (to 7 s) widen the axis.
        let timeline = Timeline::from_events(vec![
            event(0.1, "command", None, None),
            event(4.2, "command", None, None),
        ]);
        let verdict = Verdict::new(Side::Target, NoCarrier { ports: Vec::new() });
        let document = svg(&timeline, &evidence, &verdict);
        let parsed = roxmltree::Document::parse(&document)
            .unwrap_or_else(|err| panic!("{err}:\n{document}"));
        let windows: Vec<(&str, &str, f64, f64)> = parsed
            .descendants()
            .filter_map(|node| {
                let kind = node.attribute("data-window")?;
                let title = node.children().find(|child| child.has_tag_name("title"))?;
                let band = node.children().find(|child| child.has_tag_name("rect"))?;
                let number = |name| band.attribute(name)?.parse::<f64>().ok();
                Some((kind, title.text()?, number("x")?, number("width")?))
            })
            .collect();
        let kinds: Vec<&str> = windows.iter().map(|window| window.0).collect();
        assert_eq!(
            kinds,
            [
                "loss",
                "rule",
                "carrier",
                "address",
                "neighbour",
                "shared_address"
            ]
        );
        let title = |kind| windows.iter().find(|window| window.0 == kind).unwrap().1;
        assert_eq!(
            title("rule"),
            format!(
                "rule `{hostile_rule}` (ip filter OUTPUT, handle 7) in namespace cvl_0_0_ns_spdk: added +2.0 s, removed +5.0 s; 14 packet(s) dropped meanwhile"
            )
        );
        assert!(
            title("loss").contains("+2.1 s to +5.0 s"),
            "{}",
            title("loss")
        );
        assert!(title("carrier").contains("from +6.0 s to the end"));
        assert!(title("address").contains("without 10.0.0.2 from +2.5 s to +3.5 s"));
        assert!(
            title("neighbour")
                .contains("held 02:00:00:00:00:01 while the port had 02:00:00:00:00:02")
        );
        assert!(title("shared_address").contains("(leftover0 in old_ns)"));
        // Bands sit at their times: the axis's ticks give the scale.
        let tick = |label: &str| {
            parsed
                .descendants()
                .find(|node| node.has_tag_name("text") && node.text() == Some(label))
                .and_then(|node| node.attribute("x")?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no tick {label}"))
        };
        let (zero, two, seven) = (tick("0 s"), tick("2 s"), tick("7 s"));
        let second = (two - zero) / 2.0;
        let rule = windows.iter().find(|window| window.0 == "rule").unwrap();
        assert!((rule.2 - two).abs() < 0.2, "{rule:?} starts at 2 s ({two})");
        assert!((rule.3 - 3.0 * second).abs() < 0.2, "{rule:?} lasts 3 s");
        let carrier = windows.iter().find(|window| window.0 == "carrier").unwrap();
        assert!(
            (carrier.2 + carrier.3 - seven).abs() < 0.2,
            "{carrier:?} runs to the end"
        );
        assert!(!document.contains("<a>"), "unescaped text in:\n{document}");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(40.0), 50.0);
        assert_eq!(seconds_text(1.5, 0.5), "1.5 s");
        assert_eq!(seconds_text(20.0, 10.0), "20 s");
    }
}
