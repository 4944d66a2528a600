//! tracer's evidence and verdicts: what the collectors gathered, as plain data that is saved
//! in every report (`report.json`: its envelope, timeline and schema versions live here too)
//! and read back; the findings, each with its rule, class, place on the path and words; and
//! the classifier, a pure function from [`Evidence`] to [`Verdict`] that orders the findings'
//! rules.
//!
//! Nothing here does I/O: renderers in the `tracer` crate ask a verdict for its words and
//! where it stops, and format them.

pub mod cables;
pub mod class;
pub mod classify;
pub mod counters;
pub mod facts;
pub mod findings;
pub mod identity;
pub mod ladder;
pub mod reasons;
pub mod report;
pub mod stop;
pub mod timeline;
pub mod triage;
pub mod verdict;
pub mod windows;
pub mod words;

pub use cables::{CableMap, CablePort, LinkPartner, PortLinkState};
pub use class::{CLASSES, ClassInfo, VerdictClass};
pub use classify::diagnose;
pub use counters::*;
pub use facts::*;
pub use findings::{CableEnd, Describe, Finding, HopProblem, cable_verdict};
pub use identity::Identity;
pub use report::{
    CaptureReport, CommandReport, Report, SCHEMA_VERSION, SavedParts, SavedReportError,
    VerdictReport, WatchReport, evidence_from_report,
};
pub use timeline::{
    KEPT_PER_KIND_AT_EACH_END, PortChange, SummarisedEvents, Timeline, TimelineEvent,
};
pub use verdict::*;
pub use windows::{
    AddressOwner, AddressWindow, CarrierWindow, LossWindow, NeighbourWindow, Request, RuleWindow,
    SharedAddress, Windows,
};
pub use words::display_netns;
