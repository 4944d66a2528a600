//! The saved report, `report.json`: the envelope diagnose and watch write (schema version,
//! the verdict with its words, the evidence; for watch also the timeline, the command and the
//! capture), and reading it back into [`Evidence`] from any schema version, so that a bundle
//! attached to a bug can be classified again by a newer classifier (`tracer diagnose --from`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    facts::{Evidence, NetfilterLocation},
    identity::Identity,
    timeline::Timeline,
    verdict::{Fact, Verdict},
};

/// The version of report.json's schema (docs/SCHEMA.md). 1: reports without the field, with the
/// two ports under `links`; 2: the ports under `initiator` and `target`; 3: `probes` became
/// `exchanges` (watch's are observed, not sent) and `port` `tcp_port`. Older names still read.
pub const SCHEMA_VERSION: u64 = 3;

#[derive(Debug)]
pub enum SavedReportError {
    NotJson(String),
    /// Written by a newer tracer than this one.
    TooNew(u64),
    Unreadable(String),
}

impl std::fmt::Display for SavedReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJson(err) => write!(f, "not a tracer report.json: {err}"),
            Self::TooNew(version) => write!(
                f,
                "report schema version {version} is newer than this tracer's ({SCHEMA_VERSION}): use a newer tracer"
            ),
            Self::Unreadable(err) => write!(f, "the report's evidence cannot be read: {err}"),
        }
    }
}

impl std::error::Error for SavedReportError {}

/// The evidence of a report.json's text, from any schema version up to this one.
pub fn evidence_from_report(text: &str) -> Result<Evidence, SavedReportError> {
    let mut report: Value =
        serde_json::from_str(text).map_err(|err| SavedReportError::NotJson(err.to_string()))?;
    let version = report
        .get("schema_version")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    if version > SCHEMA_VERSION {
        return Err(SavedReportError::TooNew(version));
    }
    if version == 1
        && let Some(object) = report.as_object_mut()
        && let Some(Value::Array(links)) = object.remove("links")
        && let [initiator, target] = <[Value; 2]>::try_from(links).map_err(|_| {
            SavedReportError::Unreadable("`links` does not hold two ports".to_owned())
        })?
    {
        object.insert("initiator".to_owned(), initiator);
        object.insert("target".to_owned(), target);
    }
    serde_json::from_value(report).map_err(|err| SavedReportError::Unreadable(err.to_string()))
}

/// What a saved report.json holds besides its evidence, for rendering it again; each part
/// that is missing or does not read is `None`.
#[derive(Debug, Default)]
pub struct SavedParts {
    pub identity: Option<Identity>,
    pub timeline: Option<Timeline>,
    pub command: Option<CommandReport>,
    pub capture: Option<CaptureReport>,
}

impl SavedParts {
    /// The parts of a report.json's text (of a version [`evidence_from_report`] reads).
    pub fn from_report(text: &str) -> Self {
        let Ok(report) = serde_json::from_str::<Value>(text) else {
            return Self::default();
        };
        let part = |name: &str| report.get(name).cloned();
        Self {
            identity: Identity::from_report(&report),
            timeline: part("timeline").and_then(|value| serde_json::from_value(value).ok()),
            command: part("command").and_then(|value| serde_json::from_value(value).ok()),
            capture: part("capture").and_then(|value| serde_json::from_value(value).ok()),
        }
    }
}

/// The verdict with its signature and its sentences (saved beside the typed verdict, for
/// readers that do not render), as JSON shows it.
#[derive(Debug, Serialize)]
pub struct VerdictReport<'a> {
    #[serde(flatten)]
    pub verdict: &'a Verdict,
    /// Where netfilter dropped, for a netfilter verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netfilter: Option<&'a NetfilterLocation>,
    pub summary: String,
    /// The facts, one line each.
    pub evidence: Vec<String>,
    pub advice: String,
    pub signature: String,
    pub exit_code: u8,
}

/// Everything diagnose reports; its JSON form is the `--json` output and report.json, which
/// `tracer diagnose --from` reads back (docs/SCHEMA.md).
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub schema_version: u64,
    /// Which run wrote it (additive in schema 3: reports without it still read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    pub verdict: VerdictReport<'a>,
    #[serde(flatten)]
    pub evidence: &'a Evidence,
}

impl<'a> Report<'a> {
    pub fn new(verdict: &'a Verdict, evidence: &'a Evidence) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            identity: None,
            verdict: VerdictReport {
                verdict,
                netfilter: verdict.netfilter(),
                summary: verdict.summary(),
                evidence: verdict.facts.iter().map(Fact::line).collect(),
                advice: verdict.advice(),
                signature: verdict.signature(evidence),
                exit_code: verdict.class.exit_code(),
            },
            evidence,
        }
    }

    /// The report with the identity of the run that wrote it.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }
}

/// The command watch ran.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandReport {
    pub argv: Vec<String>,
    pub exit_code: i32,
}

/// The bundle's capture file.
#[derive(Debug, Serialize, Deserialize)]
pub struct CaptureReport {
    /// Always capture.pcapng, beside report.json.
    #[serde(skip_deserializing)]
    pub file: &'static str,
    pub frames: usize,
    /// Frames pushed out of the flight recorder (it keeps the last N per port).
    pub evicted: u64,
    /// Frames and drops the kernel programs saw but could not record (ring buffer or map
    /// full).
    pub lost_events: u64,
}

/// A watch bundle's report.json: diagnose's report and what only watch has.
#[derive(Debug, Serialize)]
pub struct WatchReport<'a> {
    #[serde(flatten)]
    pub diagnosis: Report<'a>,
    pub timeline: &'a Timeline,
    pub command: CommandReport,
    pub capture: CaptureReport,
    /// The size caps this bundle reached, each with what was counted instead of kept (empty
    /// when none was).
    pub limits_reached: Vec<String>,
}

#[cfg(test)]
mod tests;
