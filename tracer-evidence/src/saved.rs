//! Reading a saved report (`report.json`) back into [`Evidence`], so that a bundle attached to
//! a bug can be classified again by a newer classifier.

use serde_json::Value;

use crate::facts::Evidence;

/// The version of report.json's schema (docs/SCHEMA.md). 1: reports without the field, with the
/// two ports under `links`; 2: the ports under `initiator` and `target`.
pub const SCHEMA_VERSION: u64 = 2;

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
