//! The windows watch placed in time, drawn under the ports' lanes: one row per flow that lost
//! requests, per rule that came or went, per carrier loss, per address removed, per stale
//! neighbour entry and per MAC
//! that answered for a shared address; each window a band with its full story as a tooltip.

use tracer_evidence::{
    Windows,
    windows::{at, loss_line},
    words::{display_netns, namespace_phrase, side_name},
};

use super::{BAND, BAND_GAP, LABELS};
use crate::render::{
    path::{MARGIN, MUTED},
    svg::{Font, Svg, clip},
};

const LOSS: &str = "#c62828";
const RULE: &str = "#6a1b9a";
const CARRIER: &str = "#e53935";
const NEIGHBOUR: &str = "#f9a825";
const SHARED: &str = "#00838f";
const ADDRESS: &str = "#ef6c00";

/// The legend's swatches for the windows' colours.
pub(super) const SWATCHES: [(&str, &str); 6] = [
    (LOSS, "requests lost"),
    (RULE, "rule existed"),
    (CARRIER, "carrier lost"),
    (ADDRESS, "address removed"),
    (NEIGHBOUR, "stale neighbour"),
    (SHARED, "answered for a shared address"),
];

/// One window: what kind, from and until (ms; `None`: from the start or to the end), its
/// tooltip.
struct Window {
    kind: &'static str,
    colour: &'static str,
    from_ms: Option<u64>,
    until_ms: Option<u64>,
    title: String,
}

/// One row: its label and its windows.
struct Row {
    label: String,
    windows: Vec<Window>,
}

/// The rows for `windows`, in a fixed order: losses, rules, carrier, addresses, neighbours,
/// shared addresses; a flow's windows share a row.
fn rows(windows: &Windows) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for loss in &windows.loss {
        let label = format!("lost: {}", loss.flow);
        let window = Window {
            kind: "loss",
            colour: LOSS,
            from_ms: Some(loss.first_ms),
            until_ms: Some(loss.last_ms),
            title: loss_line(loss),
        };
        match rows.iter_mut().find(|row| row.label == label) {
            Some(row) => row.windows.push(window),
            None => rows.push(Row {
                label,
                windows: vec![window],
            }),
        }
    }
    for rule in &windows.rules {
        rows.push(Row {
            label: format!("rule {} {}", rule.table, rule.chain),
            windows: vec![Window {
                kind: "rule",
                colour: RULE,
                from_ms: rule.added_ms,
                until_ms: rule.removed_ms,
                title: format!(
                    "rule `{}` ({} {} {}, handle {}) in {}: {}; {} packet(s) dropped meanwhile",
                    rule.text(),
                    rule.family,
                    rule.table,
                    rule.chain,
                    rule.handle,
                    namespace_phrase(&rule.netns),
                    rule.lifetime(),
                    rule.dropped
                ),
            }],
        });
    }
    for carrier in &windows.carrier {
        rows.push(Row {
            label: format!("carrier {}", carrier.interface),
            windows: vec![Window {
                kind: "carrier",
                colour: CARRIER,
                from_ms: Some(carrier.lost_ms),
                until_ms: carrier.back_ms,
                title: format!(
                    "{} port {} in {} without carrier from {} to {}",
                    side_name(carrier.side),
                    carrier.interface,
                    namespace_phrase(&carrier.netns),
                    at(carrier.lost_ms),
                    carrier.back_ms.map_or_else(|| "the end".to_owned(), at)
                ),
            }],
        });
    }
    for address in &windows.address {
        rows.push(Row {
            label: format!("no {} on {}", address.address, address.interface),
            windows: vec![Window {
                kind: "address",
                colour: ADDRESS,
                from_ms: Some(address.removed_ms),
                until_ms: address.back_ms,
                title: format!(
                    "{} port {} in {} without {} from {} to {}",
                    side_name(address.side),
                    address.interface,
                    namespace_phrase(&address.netns),
                    address.address,
                    at(address.removed_ms),
                    address.back_ms.map_or_else(|| "the end".to_owned(), at)
                ),
            }],
        });
    }
    for entry in &windows.neighbour {
        rows.push(Row {
            label: format!("stale {} on {}", entry.address, entry.interface),
            windows: vec![Window {
                kind: "neighbour",
                colour: NEIGHBOUR,
                from_ms: Some(entry.changed_ms),
                until_ms: entry.until_ms,
                title: format!(
                    "{}'s entry for {} on {} in {} held {} while the port had {}, from {} to {}",
                    side_name(entry.side),
                    entry.address,
                    entry.interface,
                    namespace_phrase(&entry.netns),
                    entry.entry_mac,
                    entry.port_mac,
                    at(entry.changed_ms),
                    entry.until_ms.map_or_else(|| "the end".to_owned(), at)
                ),
            }],
        });
    }
    for shared in &windows.shared_addresses {
        for owner in &shared.owners {
            let place = match (&owner.interface, &owner.netns) {
                (Some(interface), Some(netns)) => {
                    format!(" ({interface} in {})", display_netns(netns))
                }
                (Some(interface), None) => format!(" ({interface})"),
                _ => String::new(),
            };
            rows.push(Row {
                label: format!("{} at {}", shared.address, owner.mac),
                windows: vec![Window {
                    kind: "shared_address",
                    colour: SHARED,
                    from_ms: Some(owner.first_ms),
                    until_ms: Some(owner.last_ms),
                    title: format!(
                        "{}{place} answered for {} {} time(s) from {} to {}",
                        owner.mac,
                        shared.address,
                        owner.answers,
                        at(owner.first_ms),
                        at(owner.last_ms)
                    ),
                }],
            });
        }
    }
    rows
}

/// The windows' rows from `top` (nothing when there are none); returns where they end.
pub(super) fn draw(
    svg: &mut Svg,
    windows: &Windows,
    top: f64,
    x: impl Fn(f64) -> f64,
    end: f64,
) -> f64 {
    let rows = rows(windows);
    if rows.is_empty() {
        return top;
    }
    svg.text(MARGIN, top + 12.0, Font::new(10.5, MUTED).bold(), "WINDOWS");
    let mut y = top + 22.0;
    for row in rows {
        svg.text(
            MARGIN + LABELS - 10.0,
            y + 15.0,
            Font::new(11.0, MUTED).end(),
            &clip(&row.label, 30),
        );
        svg.rect(
            x(0.0),
            y,
            x(end) - x(0.0),
            BAND,
            r##"fill="#fafbfb" stroke="#eceff1""##,
        );
        for window in row.windows {
            let seconds = |ms: u64| ms as f64 / 1000.0;
            let from = x(window.from_ms.map_or(0.0, seconds));
            let to = x(window.until_ms.map_or(end, seconds)).max(from + 3.0);
            svg.open(
                "g",
                &format!(r#"class="window" data-window="{}""#, window.kind),
            );
            svg.title(&window.title);
            svg.rect(
                from,
                y,
                to - from,
                BAND,
                &format!(r#"fill="{}""#, window.colour),
            );
            svg.close("g");
        }
        y += BAND + BAND_GAP;
    }
    y
}
