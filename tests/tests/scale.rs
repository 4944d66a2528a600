//! A busy CI node: 20,000 iptables rules in the namespace that drops, and 300 other namespaces
//! with interfaces of their own. diagnose still names the one rule that dropped. How fast and
//! how small it stays is measured by `cargo xtask bench` (`big_ruleset_*`), not here.

use tracer_tests::{Lab, unique};
use tracer_topology::{
    Network,
    busy::{busy_input_chain, iptables_restore},
};

const RULES: usize = 20_000;
const OTHER_NAMESPACES: usize = 300;
const DROPPING: &str = "-p icmp -j DROP";

#[test]
fn diagnose_names_the_dropping_rule_among_20000_and_300_namespaces() {
    let lab = Lab::up("scl");
    let _crowd = Network::crowd(&format!("{}-", unique("scc")), OTHER_NAMESPACES)
        .expect("making the other namespaces");
    iptables_restore(&lab.target.netns, &busy_input_chain(RULES, DROPPING))
        .expect("loading the big ruleset");

    let (code, report) = lab.diagnose(&[]);
    assert_eq!(report["verdict"]["class"], "netfilter", "{report:#}");
    assert_eq!(code, 12);
    assert_eq!(report["verdict"]["side"], "target", "{report:#}");
    let location = &report["verdict"]["finding"]["location"];
    assert_eq!(location["netns"], lab.target.netns.as_str(), "{report:#}");
    assert_eq!(location["family"], "ip", "{report:#}");
    assert_eq!(location["table"], "filter", "{report:#}");
    assert_eq!(location["chain"], "INPUT", "{report:#}");
    assert_eq!(
        location["rule"],
        format!("-A INPUT {DROPPING}").as_str(),
        "{report:#}"
    );
}
