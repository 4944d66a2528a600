//! Renderers: they only format what the collectors and the classifier produced.

pub mod cables;
pub mod counters;
pub mod diagnose;
pub mod frames;
pub mod github;
pub mod html;
pub mod layout;
pub mod metrics;
pub mod path;
pub mod svg;
pub mod timeline;
pub mod triage;
pub mod wrap;
