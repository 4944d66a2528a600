//! Saved reports of each schema version, as tracer wrote them, read back.

use serde_json::Value;

use super::*;
use crate::{Side, VerdictClass, diagnose};

/// report.json of a `tracer diagnose --report` run on a lab whose target's INPUT chain dropped
/// ICMP (schema 2).
const SCHEMA_2: &str = include_str!("../../fixtures/report-schema2.json");
/// The same report as schema 1 wrote it: no `schema_version`, the ports under `links`, and
/// none of the fields that came later (the path, MTU probes, carrier gaps, sysctls, MACs).
const SCHEMA_1: &str = include_str!("../../fixtures/report-schema1.json");

#[test]
fn schema_2_reads_back_to_the_same_words() {
    let evidence = evidence_from_report(SCHEMA_2).unwrap();
    let verdict = diagnose(&evidence);
    assert_eq!(verdict.class, VerdictClass::Netfilter);
    assert_eq!(verdict.side, Side::Target);
    let rule = verdict.netfilter().unwrap();
    assert_eq!(
        (rule.table.as_str(), rule.chain.as_str(), rule.rule.as_str()),
        ("filter", "INPUT", "-A INPUT -p icmp -j DROP")
    );
    // What the previous tracer wrote, word for word: the verdict's sentences, signature and
    // exit code.
    let saved: Value = serde_json::from_str(SCHEMA_2).unwrap();
    let written = serde_json::to_value(Report::new(&verdict, &evidence)).unwrap();
    for field in [
        "summary",
        "evidence",
        "advice",
        "signature",
        "exit_code",
        "class",
        "side",
    ] {
        assert_eq!(
            written["verdict"][field], saved["verdict"][field],
            "{field}"
        );
    }
    // Schema 3 renamed what schema 2 called `probes` and `port`; nothing else changed.
    assert_eq!(written["exchanges"], saved["probes"]);
    assert_eq!(
        written["environment"]["tcp_port"],
        saved["environment"]["port"]
    );
    assert_eq!(written["schema_version"], SCHEMA_VERSION);
    assert_eq!(
        evidence_from_report(&written.to_string()).unwrap(),
        evidence
    );
}

#[test]
fn schema_1_reads_back_to_the_same_verdict() {
    let old = evidence_from_report(SCHEMA_1).unwrap();
    let current = evidence_from_report(SCHEMA_2).unwrap();
    assert_eq!(
        (old.initiator.spec(), old.target.spec()),
        ("gfx-i/cvl_0_1".to_owned(), "gfx-t/cvl_0_0".to_owned())
    );
    assert_eq!(old.target.side, Side::Target);
    assert!(old.path.is_none() && old.initiator.sysctls.is_empty());
    assert_eq!(old.exchanges, current.exchanges);
    assert_eq!(old.netfilter, current.netfilter);
    let (old_verdict, verdict) = (diagnose(&old), diagnose(&current));
    assert_eq!(old_verdict.class, verdict.class);
    assert_eq!(old_verdict.signature(&old), verdict.signature(&current));
}

#[test]
fn a_newer_schema_is_refused_by_name() {
    let mut saved: Value = serde_json::from_str(SCHEMA_2).unwrap();
    saved["schema_version"] = (SCHEMA_VERSION + 1).into();
    let err = evidence_from_report(&saved.to_string()).unwrap_err();
    assert!(matches!(err, SavedReportError::TooNew(version) if version == SCHEMA_VERSION + 1));
}
