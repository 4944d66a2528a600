//! A watch's timeline: what happened, when, as report.json saves it.

use std::{
    collections::{BTreeMap, VecDeque},
    net::Ipv4Addr,
};

use serde::{Deserialize, Deserializer, Serialize};

use crate::facts::Side;

/// Of each kind, the timeline keeps this many events from the start of the run and this many
/// from its end (where a failing test usually failed); the ones between are counted.
pub const KEPT_PER_KIND_AT_EACH_END: usize = 500;

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

/// Events of one kind on one port (or of the whole run) that were counted, not kept: those
/// between the first and the last [`KEPT_PER_KIND_AT_EACH_END`] of their kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarisedEvents {
    #[serde(deserialize_with = "saved_kind")]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub port: Option<Side>,
    pub count: u64,
    /// When the first and the last of them happened.
    pub first_seconds: f64,
    pub last_seconds: f64,
}

impl SummarisedEvents {
    /// One line for people: how many, of what, where, over which stretch of the run.
    pub fn line(&self) -> String {
        let place = match self.port {
            Some(Side::Initiator) => " on the initiator",
            Some(Side::Target) => " on the target",
            Some(Side::Wire | Side::None) | None => "",
        };
        format!(
            "{} {} events{place} from +{:.3}s to +{:.3}s counted, not kept",
            self.count, self.kind, self.first_seconds, self.last_seconds
        )
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
    /// Events not kept: the sum of `summarised`'s counts.
    pub truncated: u64,
    /// The events not kept, counted by kind and port.
    #[serde(default)]
    pub summarised: Vec<SummarisedEvents>,
    /// While recording: the latest events of each kind past its first ones, the oldest of
    /// which leave for `summarised` as newer ones come.
    #[serde(skip)]
    latest: BTreeMap<Kind, VecDeque<TimelineEvent>>,
    /// While recording: how many of each kind's first events `events` holds.
    #[serde(skip)]
    first: BTreeMap<Kind, usize>,
}

impl Timeline {
    /// A timeline of these events, nothing counted.
    pub fn from_events(events: Vec<TimelineEvent>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }

    /// Events pushed so far, kept or not.
    pub fn seen(&self) -> u64 {
        let latest: usize = self.latest.values().map(VecDeque::len).sum();
        (self.events.len() + latest) as u64 + self.truncated
    }

    /// The events kept so far: of each kind, its first ones in the order pushed, then its
    /// latest ones in the order pushed.
    pub fn kept(&self) -> impl Iterator<Item = &TimelineEvent> {
        self.events.iter().chain(self.latest.values().flatten())
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

    /// Keeps `event` among the first of its kind, else among the latest, counting the one it
    /// pushes out; returns it.
    fn record(&mut self, event: TimelineEvent) -> Option<&TimelineEvent> {
        let first_of_kind = self.first.entry(event.kind).or_default();
        if *first_of_kind < KEPT_PER_KIND_AT_EACH_END {
            *first_of_kind += 1;
            self.events.push(event);
            return self.events.last();
        }
        let latest = self.latest.entry(event.kind).or_default();
        if latest.len() >= KEPT_PER_KIND_AT_EACH_END
            && let Some(oldest) = latest.pop_front()
        {
            self.truncated += 1;
            summarise(&mut self.summarised, &oldest);
        }
        let latest = self.latest.entry(event.kind).or_default();
        latest.push_back(event);
        latest.back()
    }

    /// Every kept event in time order, the counted ones summed up by kind and port.
    pub fn sorted(mut self) -> Self {
        let latest = std::mem::take(&mut self.latest);
        self.events.extend(latest.into_values().flatten());
        self.events.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        self.summarised
            .sort_by(|a, b| a.first_seconds.total_cmp(&b.first_seconds));
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

/// Counts `event` in its kind and port's summary.
fn summarise(summarised: &mut Vec<SummarisedEvents>, event: &TimelineEvent) {
    match summarised
        .iter_mut()
        .find(|summary| summary.kind == event.kind && summary.port == event.port)
    {
        Some(summary) => {
            summary.count += 1;
            summary.first_seconds = summary.first_seconds.min(event.seconds);
            summary.last_seconds = summary.last_seconds.max(event.seconds);
        }
        None => summarised.push(SummarisedEvents {
            kind: event.kind,
            port: event.port,
            count: 1,
            first_seconds: event.seconds,
            last_seconds: event.seconds,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_and_last_of_each_kind_counts_the_rest_and_sorts_by_time() {
        let mut timeline = Timeline::default();
        timeline.push(2.0, "command", "later".into());
        timeline.push(1.0, "attach", "earlier".into());
        let flaps = 3 * KEPT_PER_KIND_AT_EACH_END;
        for i in 0..flaps {
            timeline.push_on(
                Side::Target,
                3.0 + i as f64,
                "link",
                format!("flap {i}"),
                None,
            );
        }
        assert_eq!(timeline.seen(), flaps as u64 + 2);
        assert_eq!(timeline.truncated, KEPT_PER_KIND_AT_EACH_END as u64);
        assert_eq!(timeline.kept().count(), 2 + 2 * KEPT_PER_KIND_AT_EACH_END);
        let sorted = timeline.sorted();
        assert_eq!(sorted.events.len(), 2 + 2 * KEPT_PER_KIND_AT_EACH_END);
        assert_eq!(sorted.events[0].message, "earlier");
        assert_eq!(sorted.events[1].message, "later");
        // The first and the last flaps are kept, the middle third counted.
        assert_eq!(sorted.events[2].message, "flap 0");
        assert_eq!(
            sorted.events.last().unwrap().message,
            format!("flap {}", flaps - 1)
        );
        let [summary] = &sorted.summarised[..] else {
            panic!("one summary: {:?}", sorted.summarised);
        };
        assert_eq!(
            (summary.kind, summary.port, summary.count),
            ("link", Some(Side::Target), KEPT_PER_KIND_AT_EACH_END as u64)
        );
        let first_counted = 3.0 + KEPT_PER_KIND_AT_EACH_END as f64;
        assert_eq!(summary.first_seconds, first_counted);
        assert_eq!(
            summary.last_seconds,
            first_counted + KEPT_PER_KIND_AT_EACH_END as f64 - 1.0
        );
        assert!(
            sorted
                .events
                .windows(2)
                .all(|pair| pair[0].seconds <= pair[1].seconds)
        );
    }
}
