//! A watch's timeline: what happened, when, as report.json saves it.

use std::net::Ipv4Addr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::facts::Side;

/// The timeline keeps this many events; later ones are counted, not kept.
const TIMELINE_LIMIT: usize = 10_000;

/// The kinds of event, as saved; a saved kind not among them reads as `other`.
const KINDS: &[&str] = &[
    "attach",
    "move",
    "link",
    "neighbour",
    "drop",
    "packets",
    "command",
];

/// An event's kind: one of [`KINDS`]. (An alias, so that serde does not take the field for a
/// string borrowed from the input.)
type Kind = &'static str;

/// A saved event's kind, as one of [`KINDS`].
fn saved_kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
    let kind = String::deserialize(deserializer)?;
    Ok(KINDS
        .iter()
        .copied()
        .find(|known| *known == kind)
        .unwrap_or("other"))
}

/// One thing that happened, at `seconds` after tracer started watching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub seconds: f64,
    /// attach, move, link, neighbour, drop, packets, command.
    #[serde(deserialize_with = "saved_kind")]
    pub kind: Kind,
    pub message: String,
    /// The port it happened on, when it is one port's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub port: Option<Side>,
    /// What changed on the port, typed, for link, neighbour and drop events.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub change: Option<PortChange>,
}

/// A port's state after a change, or what the kernel dropped there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum PortChange {
    /// The port's link; `present` is false when the port disappeared.
    Link {
        present: bool,
        admin_up: bool,
        carrier: bool,
    },
    /// A neighbour entry of the port: its state as `ip neigh` names it, "none" once it is gone.
    Neighbour {
        address: Ipv4Addr,
        state: String,
    },
    Drop {
        count: u64,
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
    /// Events not kept because the timeline was full.
    pub truncated: u64,
}

impl Timeline {
    /// Events pushed so far, kept or not.
    pub fn seen(&self) -> u64 {
        self.events.len() as u64 + self.truncated
    }

    /// An event of the whole run (the command's); returns it when kept.
    pub fn push(
        &mut self,
        seconds: f64,
        kind: &'static str,
        message: String,
    ) -> Option<&TimelineEvent> {
        self.record(TimelineEvent {
            seconds,
            kind,
            message,
            port: None,
            change: None,
        })
    }

    /// An event on one port, with what changed there when something did; returns it when
    /// kept.
    pub fn push_on(
        &mut self,
        port: Side,
        seconds: f64,
        kind: &'static str,
        message: String,
        change: Option<PortChange>,
    ) -> Option<&TimelineEvent> {
        self.record(TimelineEvent {
            seconds,
            kind,
            message,
            port: Some(port),
            change,
        })
    }

    /// Keeps `event` while there is room; returns it when kept.
    fn record(&mut self, event: TimelineEvent) -> Option<&TimelineEvent> {
        if self.events.len() >= TIMELINE_LIMIT {
            self.truncated += 1;
            return None;
        }
        self.events.push(event);
        self.events.last()
    }

    pub fn sorted(mut self) -> Self {
        self.events.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        self
    }

    /// When the last thing happened: the run's length as the timeline knows it.
    pub fn end(&self) -> f64 {
        self.events
            .iter()
            .map(|event| event.seconds)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_events_counts_the_rest_and_sorts_by_time() {
        let mut timeline = Timeline::default();
        timeline.push(2.0, "link", "later".into());
        timeline.push(1.0, "attach", "earlier".into());
        for i in 0..TIMELINE_LIMIT {
            timeline.push(3.0 + i as f64, "packets", format!("event {i}"));
        }
        assert_eq!(timeline.events.len(), TIMELINE_LIMIT);
        assert_eq!(timeline.truncated, 2);
        let sorted = timeline.sorted();
        assert_eq!(sorted.events[0].message, "earlier");
        assert_eq!(sorted.events[1].message, "later");
        assert!(
            sorted
                .events
                .windows(2)
                .all(|pair| pair[0].seconds <= pair[1].seconds)
        );
    }
}
