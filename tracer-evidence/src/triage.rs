//! Many saved bundles grouped by what failed: one group per verdict signature, with how many,
//! when they were first and last seen, on which hosts, kernels and tests. Pure: the caller finds
//! and reads the report.json texts.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::{
    classify::diagnose,
    identity::Identity,
    report::{SavedReportError, evidence_from_report},
};

/// What triage knows of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleSummary {
    /// Where it is: a directory, or `ARCHIVE:PATH` inside an archive.
    pub location: String,
    /// Its report.html, when there is one to link to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_html: Option<String>,
    pub signature: String,
    pub class: String,
    pub summary: String,
    pub identity: Identity,
}

/// A bundle triage could not read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub location: String,
    pub reason: String,
    /// Written by a newer tracer (a newer report schema) rather than damaged.
    pub newer_schema: bool,
}

impl Unreadable {
    pub fn new(location: String, error: &SavedReportError) -> Self {
        Self {
            location,
            reason: error.to_string(),
            newer_schema: matches!(error, SavedReportError::TooNew(_)),
        }
    }
}

/// What triage found: the groups, and the bundles it could not read.
#[derive(Debug, Default, Serialize)]
pub struct Triage {
    /// Bundles read (in the groups).
    pub bundles: usize,
    pub groups: Vec<Group>,
    pub unreadable: Vec<Unreadable>,
}

/// Said where an identity does not say.
pub const NOT_RECORDED: &str = "not recorded";

/// One report.json's text, summed up: its signature and verdict as saved (a report without
/// them is classified again), and its identity.
pub fn summarize(
    location: String,
    report_html: Option<String>,
    text: &str,
) -> Result<BundleSummary, SavedReportError> {
    let evidence = evidence_from_report(text)?;
    let report: Value =
        serde_json::from_str(text).map_err(|err| SavedReportError::NotJson(err.to_string()))?;
    let saved = |field: &str| {
        report["verdict"][field]
            .as_str()
            .map(str::to_owned)
            .filter(|value| !value.is_empty())
    };
    let verdict = diagnose(&evidence);
    Ok(BundleSummary {
        location,
        report_html,
        signature: saved("signature").unwrap_or_else(|| verdict.signature(&evidence)),
        class: saved("class").unwrap_or_else(|| verdict.class.name().to_owned()),
        summary: saved("summary").unwrap_or_else(|| verdict.summary()),
        identity: Identity::from_report(&report).unwrap_or_default(),
    })
}

/// The bundles of one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub signature: String,
    pub class: String,
    /// The first bundle's summary.
    pub summary: String,
    pub count: usize,
    /// The earliest and latest start (UTC), of the bundles that recorded one.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub hosts: BTreeSet<String>,
    pub kernels: BTreeSet<String>,
    pub tests: BTreeSet<String>,
    /// The latest bundle (by start time, else the first found).
    pub example: String,
    pub bundles: Vec<BundleSummary>,
}

fn known(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| NOT_RECORDED.to_owned())
}

/// The bundles grouped by signature, the largest group first (then by signature).
pub fn group(bundles: Vec<BundleSummary>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for bundle in bundles {
        let index = match groups
            .iter()
            .position(|group| group.signature == bundle.signature)
        {
            Some(index) => index,
            None => {
                groups.push(Group {
                    signature: bundle.signature.clone(),
                    class: bundle.class.clone(),
                    summary: bundle.summary.clone(),
                    count: 0,
                    first_seen: None,
                    last_seen: None,
                    hosts: BTreeSet::new(),
                    kernels: BTreeSet::new(),
                    tests: BTreeSet::new(),
                    example: bundle.location.clone(),
                    bundles: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let group = &mut groups[index];
        group.count += 1;
        let identity = &bundle.identity;
        group.hosts.insert(known(&identity.host));
        group.kernels.insert(known(&identity.kernel));
        if let Some(test) = &identity.test {
            group.tests.insert(test.clone());
        }
        // RFC 3339 UTC times order as text.
        if let Some(started) = &identity.started {
            if group
                .first_seen
                .as_ref()
                .is_none_or(|first| started < first)
            {
                group.first_seen = Some(started.clone());
            }
            if group.last_seen.as_ref().is_none_or(|last| started >= last) {
                group.last_seen = Some(started.clone());
                group.example = bundle.location.clone();
            }
        }
        group.bundles.push(bundle);
    }
    for group in &mut groups {
        group.bundles.sort_by(|a, b| a.location.cmp(&b.location));
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.signature.cmp(&b.signature)));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(location: &str, signature: &str, host: &str, started: &str) -> BundleSummary {
        BundleSummary {
            location: location.to_owned(),
            report_html: None,
            signature: signature.to_owned(),
            class: "netfilter".to_owned(),
            summary: "dropped".to_owned(),
            identity: Identity {
                host: Some(host.to_owned()),
                started: Some(started.to_owned()),
                test: Some("nvmf_tcp".to_owned()),
                ..Identity::default()
            },
        }
    }

    #[test]
    fn groups_by_signature_largest_first_with_first_and_last_seen() {
        let groups = group(vec![
            bundle("a", "tracer:cable:x", "node1", "2026-05-02T00:00:00Z"),
            bundle("b", "tracer:netfilter:y", "node19", "2026-05-03T00:00:00Z"),
            bundle("c", "tracer:netfilter:y", "node19", "2026-05-01T00:00:00Z"),
            bundle("d", "tracer:netfilter:y", "node2", "2026-05-05T00:00:00Z"),
        ]);
        assert_eq!(groups.len(), 2);
        let first = &groups[0];
        assert_eq!(
            (first.signature.as_str(), first.count),
            ("tracer:netfilter:y", 3)
        );
        assert_eq!(first.first_seen.as_deref(), Some("2026-05-01T00:00:00Z"));
        assert_eq!(first.last_seen.as_deref(), Some("2026-05-05T00:00:00Z"));
        assert_eq!(first.example, "d");
        assert_eq!(
            first.hosts.iter().collect::<Vec<_>>(),
            vec!["node19", "node2"]
        );
        assert_eq!(first.kernels.iter().collect::<Vec<_>>(), vec![NOT_RECORDED]);
        assert_eq!(groups[1].count, 1);
    }

    #[test]
    fn a_report_that_does_not_read_says_why() {
        let cut = summarize("x".into(), None, "{\"schema_version\": 3, \"verd").unwrap_err();
        assert!(!Unreadable::new("x".into(), &cut).newer_schema);
        let newer = summarize("y".into(), None, "{\"schema_version\": 99}").unwrap_err();
        let unreadable = Unreadable::new("y".into(), &newer);
        assert!(unreadable.newer_schema);
        assert!(unreadable.reason.contains("newer"), "{}", unreadable.reason);
    }
}
