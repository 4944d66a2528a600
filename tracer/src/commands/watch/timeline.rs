//! The run's timeline: what happened, when, for the report.

use serde::Serialize;

/// The timeline keeps this many events; later ones are counted, not kept.
const TIMELINE_LIMIT: usize = 10_000;

/// One thing that happened, at `seconds` after tracer started watching.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub seconds: f64,
    /// attach, move, link, neighbour, drop, packets, command.
    pub kind: &'static str,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
    /// Events not kept because the timeline was full.
    pub truncated: u64,
}

impl Timeline {
    /// Events pushed so far, kept or not.
    pub(super) fn seen(&self) -> u64 {
        self.events.len() as u64 + self.truncated
    }

    pub(super) fn push(&mut self, seconds: f64, kind: &'static str, message: String) {
        if self.events.len() >= TIMELINE_LIMIT {
            self.truncated += 1;
            return;
        }
        log::info!("+{seconds:.3}s {kind}: {message}");
        self.events.push(TimelineEvent {
            seconds,
            kind,
            message,
        });
    }

    pub(super) fn sorted(mut self) -> Self {
        self.events.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        self
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
