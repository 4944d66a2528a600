//! Every finding kind, walked: each has a class in the class table, words, a place on the
//! path, and survives report.json.

use super::*;
use crate::{
    class::CLASSES,
    facts::{Environment, Hop, HopRole, PathEvidence},
};

/// The example findings' ports, joined through a veth peer that stands for the path's hops.
fn evidence() -> Evidence {
    let initiator = example::initiator();
    let target = example::target();
    let port = |side, port: &PortRef| PortEvidence::new(side, &port.netns, &port.interface, true);
    let mut evidence = Evidence::new(
        port(Side::Initiator, &initiator),
        port(Side::Target, &target),
        Environment::default(),
    );
    let hop = |role, port: &PortRef| Hop {
        role,
        netns: port.netns.clone(),
        interface: port.interface.clone(),
        link: None,
        bridge: None,
    };
    let peer = PortRef {
        netns: "lab".to_owned(),
        interface: "target0_br".to_owned(),
    };
    evidence.path = Some(PathEvidence {
        hops: vec![
            hop(HopRole::Port, &initiator),
            hop(HopRole::VethPeer, &peer),
            hop(HopRole::Port, &target),
        ],
        bridge_nf_call_iptables: None,
    });
    evidence
}

#[test]
fn every_kind_has_a_class_words_and_a_stop() {
    let evidence = evidence();
    let path = DrawnPath::of(&evidence);
    let examples = examples();
    for finding in examples {
        let described = finding.describe();
        let class = described.class();
        let info = CLASSES.iter().find(|info| info.class == class);
        assert!(
            info.is_some(),
            "{finding:?}: class {class:?} not in the table"
        );
        for side in [Side::Initiator, Side::Target, Side::Wire, Side::None] {
            let summary = described.summary(side);
            assert!(summary.ends_with('.'), "{finding:?}: summary {summary:?}");
            assert!(!described.advice(side).is_empty(), "{finding:?}: no advice");
        }
        // Only a finding that names no place leaves the stop to the probes' counts.
        let stop = described.stop(&path, Side::Target);
        if !matches!(finding, Finding::Unanswered(_)) {
            assert!(stop.is_some(), "{finding:?}: no place on the path");
        }
        let verdict = Verdict::new(Side::Target, finding.clone());
        assert_eq!(verdict.class, class);
        match path.stop(&evidence, &verdict) {
            Stop::Hop(hop) => assert!(hop < path.hops.len()),
            Stop::Between(link) => assert!(link + 1 < path.hops.len()),
        }
        assert!(!verdict.mark().is_empty());
        let saved = serde_json::to_value(&finding).unwrap();
        assert!(saved["kind"].is_string(), "{saved}");
        assert_eq!(serde_json::from_value::<Finding>(saved).unwrap(), finding);
    }
}

/// report.json of the previous schema wrote findings as struct variants: the same JSON reads.
#[test]
fn findings_read_as_the_previous_schema_wrote_them() {
    let saved = r#"{"kind":"frames_lost","probe":"arp","from":{"netns":"","interface":"cvl_0_1"},
        "to":{"netns":"cvl_0_0_ns_spdk","interface":"cvl_0_0"},"left":3,"arrived":0}"#;
    let finding: Finding = serde_json::from_str(saved).unwrap();
    assert_eq!(finding, Finding::FramesLost(frames_lost::example()));
    let unit: Finding = serde_json::from_str(r#"{"kind":"nothing_observed"}"#).unwrap();
    assert_eq!(unit, Finding::NothingObserved(NothingObserved {}));
    assert_eq!(
        serde_json::to_string(&unit).unwrap(),
        r#"{"kind":"nothing_observed"}"#
    );
}

/// docs/SCHEMA.md's table of finding kinds names every kind.
#[test]
fn the_schema_documents_every_kind() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCHEMA.md");
    let schema = std::fs::read_to_string(path).unwrap();
    for finding in examples() {
        let saved = serde_json::to_value(&finding).unwrap();
        let kind = saved["kind"].as_str().unwrap().to_owned();
        let documented = schema
            .lines()
            .any(|line| line.starts_with('|') && line.contains(&format!("`{kind}`")));
        assert!(
            documented,
            "docs/SCHEMA.md does not document finding `{kind}`"
        );
    }
}
