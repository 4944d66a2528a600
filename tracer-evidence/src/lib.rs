//! tracer's evidence and verdicts: what the collectors gathered, as plain data that is saved
//! in every report (`report.json`: its envelope, timeline and schema versions live here too)
//! and read back, and the classifier, a pure function from [`Evidence`] to [`Verdict`].
//!
//! Nothing here does I/O, and nothing here writes English: the renderers in the `tracer` crate
//! write the sentences from these types.

pub mod classify;
pub mod counters;
pub mod facts;
pub mod report;
pub mod timeline;
pub mod verdict;

pub use classify::diagnose;
pub use counters::*;
pub use facts::*;
pub use report::{
    CaptureReport, CommandReport, Report, SCHEMA_VERSION, SavedReportError, VerdictReport,
    VerdictWords, WatchReport, evidence_from_report,
};
pub use timeline::{PortChange, Timeline, TimelineEvent};
pub use verdict::*;
