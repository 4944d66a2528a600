//! The fixtures are the real tools' output on Debian 12 (iptables 1.8.9, arptables 0.0.5,
//! nft 1.0.6, kernel 6.18), captured by `netfilter/fixtures/capture.sh` in scratch namespaces
//! `tracer_nf_scratch` and `tracer_nf_peer` joined by a veth pair (10.9.0.2 and
//! 10.9.0.1/.3/.4) and deleted afterwards:
//!
//! - iptables(-nft): SPDK's `-I INPUT 1 -i cvl_0_1 -p tcp --dport 4420 -j ACCEPT` with its
//!   comment, `-A INPUT -p icmp -j DROP`, `-A INPUT -p udp -j SPDK_BLOCK` with `SPDK_BLOCK`
//!   rejecting udp port 9, `-P FORWARD DROP`, raw `PREROUTING` dropping udp port 7;
//!   ip6tables an echo-request DROP; arptables `-A INPUT -s 10.9.0.3 -j DROP`.
//! - iptables-legacy: `-P INPUT DROP` with accepts for lo, icmp, udp 7 and 9, a commented
//!   tcp 4420 DROP, an OUTPUT REJECT; mangle `PREROUTING` dropping udp port 10;
//!   ip6tables-legacy a tcp 4420 DROP; arptables-legacy `-A INPUT -s 10.9.0.4 -j DROP`.
//! - nft (`nft -j list ruleset`): `inet guard` (output chain with a counter-less drop, a quota,
//!   a counter drop, drops counted by a named counter and by one two rules share, a commented
//!   accept; input chain with policy drop, anonymous and named sets, a jump, verdict maps with
//!   and without drop, a reject, a log prefix), `netdev edge` dropping udp port 7 on lo
//!   ingress.
//!
//! `*_before` was taken right after setup, `*_after` once the peer had sent ARP from .3 and .4,
//! three pings, udp to ports 9 (twice), 7, 10 (four times), 11, a tcp SYN to 4420, and the
//! scratch namespace udp to 10.9.0.1 ports 9, 12 (twice) and 13, and to 127.0.0.1:7. `*_native`
//! is another namespace with only a native `table ip filter` (a set match drop, a counter
//! accept, policy drop). `nft_moved_*` has two alike `udp dport 9 counter drop` rules, the
//! first with one packet, then a third one inserted above both, which counted three more.

use std::collections::BTreeSet;

use super::{parse::*, read::*, *};
use crate::tool::run;

struct Fixtures {
    iptables_nft: &'static str,
    ip6tables_nft: &'static str,
    arptables_nft_save: &'static str,
    arptables_nft_list: &'static str,
    iptables_legacy_filter: &'static str,
    iptables_legacy_mangle: &'static str,
    ip6tables_legacy_filter: &'static str,
    arptables_legacy_list: &'static str,
    nft: &'static str,
}

const BEFORE: Fixtures = Fixtures {
    iptables_nft: include_str!("fixtures/iptables_nft_save_before.txt"),
    ip6tables_nft: include_str!("fixtures/ip6tables_nft_save.txt"),
    arptables_nft_save: include_str!("fixtures/arptables_nft_save_before.txt"),
    arptables_nft_list: include_str!("fixtures/arptables_nft_list_before.txt"),
    iptables_legacy_filter: include_str!("fixtures/iptables_legacy_save_filter_before.txt"),
    iptables_legacy_mangle: include_str!("fixtures/iptables_legacy_save_mangle_before.txt"),
    ip6tables_legacy_filter: include_str!("fixtures/ip6tables_legacy_save_filter.txt"),
    arptables_legacy_list: include_str!("fixtures/arptables_legacy_list_before.txt"),
    nft: include_str!("fixtures/nft_before.json"),
};

const AFTER: Fixtures = Fixtures {
    iptables_nft: include_str!("fixtures/iptables_nft_save_after.txt"),
    ip6tables_nft: include_str!("fixtures/ip6tables_nft_save.txt"),
    arptables_nft_save: include_str!("fixtures/arptables_nft_save_after.txt"),
    arptables_nft_list: include_str!("fixtures/arptables_nft_list_after.txt"),
    iptables_legacy_filter: include_str!("fixtures/iptables_legacy_save_filter_after.txt"),
    iptables_legacy_mangle: include_str!("fixtures/iptables_legacy_save_mangle_after.txt"),
    ip6tables_legacy_filter: include_str!("fixtures/ip6tables_legacy_save_filter.txt"),
    arptables_legacy_list: include_str!("fixtures/arptables_legacy_list_after.txt"),
    nft: include_str!("fixtures/nft_after.json"),
};

const IPTABLES_NFT_SAVE_NATIVE: &str = include_str!("fixtures/iptables_nft_save_native.txt");
const NFT_NATIVE: &str = include_str!("fixtures/nft_native.json");
const NFT_MOVED_BEFORE: &str = include_str!("fixtures/nft_moved_before.json");
const NFT_MOVED_AFTER: &str = include_str!("fixtures/nft_moved_after.json");

fn nft(json: &str) -> Parsed {
    Parsed::from(parse_nft_json(json).expect("the fixture is nft's JSON"))
}

/// What `snapshot` would have made of the fixtures' namespace.
fn ruleset(fixtures: &Fixtures) -> Ruleset {
    let mut xtables_nft = Parsed::default();
    xtables_nft.extend(parse_xtables_save(
        fixtures.iptables_nft,
        Backend::IptablesNft,
    ));
    xtables_nft.extend(parse_xtables_save(
        fixtures.ip6tables_nft,
        Backend::Ip6tablesNft,
    ));
    xtables_nft.extend(parse_arptables_nft(
        fixtures.arptables_nft_save,
        Some(fixtures.arptables_nft_list),
    ));
    let mut legacy = Parsed::default();
    for (text, backend) in [
        (fixtures.iptables_legacy_filter, Backend::IptablesLegacy),
        (fixtures.iptables_legacy_mangle, Backend::IptablesLegacy),
        (fixtures.ip6tables_legacy_filter, Backend::Ip6tablesLegacy),
    ] {
        legacy.extend(parse_xtables_save(text, backend));
    }
    legacy.extend(parse_arptables_list(
        fixtures.arptables_legacy_list,
        Backend::ArptablesLegacy,
        "filter",
    ));
    assemble(Readings {
        xtables_nft,
        legacy,
        nft: nft(fixtures.nft),
        errors: Vec::new(),
    })
}

/// A ruleset of native nftables only.
fn nft_ruleset(json: &str) -> Ruleset {
    let parsed = nft(json);
    Ruleset {
        rules: parsed.rules,
        chains: parsed.chains,
        errors: Vec::new(),
    }
}

fn find_rule<'a>(rules: &'a [Rule], table: &str, chain: &str, position: usize) -> &'a Rule {
    rules
        .iter()
        .find(|rule| rule.table == table && rule.chain == chain && rule.position == position)
        .unwrap_or_else(|| panic!("no rule {table}/{chain}#{position} in {rules:#?}"))
}

fn find_chain<'a>(chains: &'a [Chain], table: &str, name: &str) -> &'a Chain {
    chains
        .iter()
        .find(|chain| chain.table == table && chain.name == name)
        .unwrap_or_else(|| panic!("no chain {table}/{name} in {chains:#?}"))
}

/// An xtables rule's (or any policy's) hit.
fn hit(
    backend: Backend,
    family: &str,
    table: &str,
    chain: &str,
    rule: Option<&str>,
    packets: u64,
) -> DropHit {
    DropHit {
        backend,
        family: family.to_owned(),
        table: table.to_owned(),
        chain: chain.to_owned(),
        rule: rule.map(str::to_owned),
        handle: None,
        packets,
    }
}

/// A native nft rule's hit.
fn nft_hit(
    (family, table, chain): (&str, &str, &str),
    handle: u64,
    rule: &str,
    packets: u64,
) -> DropHit {
    DropHit {
        handle: Some(handle),
        ..hit(Backend::Nft, family, table, chain, Some(rule), packets)
    }
}

const GUARD_OUT: (&str, &str, &str) = ("inet", "guard", "out");

#[test]
fn parses_iptables_nft_save() {
    let (rules, chains) = parse_xtables_save(AFTER.iptables_nft, Backend::IptablesNft);
    assert_eq!(rules.len(), 5);
    assert_eq!(
        find_rule(&rules, "filter", "INPUT", 1),
        &Rule {
            backend: Backend::IptablesNft,
            family: "ip".to_owned(),
            table: "filter".to_owned(),
            chain: "INPUT".to_owned(),
            handle: None,
            text: "-A INPUT -i cvl_0_1 -p tcp -m tcp --dport 4420 -m comment --comment \
                   \"SPDK_NVMF:-I INPUT 1 -i cvl_0_1 -p tcp --dport 4420 -j ACCEPT\" -j ACCEPT"
                .to_owned(),
            position: 1,
            packets: Some(0),
            drops: false,
            counts_drops: true,
        }
    );
    let icmp = find_rule(&rules, "filter", "INPUT", 2);
    assert_eq!(icmp.text, "-A INPUT -p icmp -j DROP");
    assert_eq!((icmp.packets, icmp.drops), (Some(3), true));
    assert!(
        !find_rule(&rules, "filter", "INPUT", 3).drops,
        "a jump is no verdict"
    );
    let reject = find_rule(&rules, "filter", "SPDK_BLOCK", 1);
    assert_eq!((reject.packets, reject.drops), (Some(2), true));
    let raw = find_rule(&rules, "raw", "PREROUTING", 1);
    assert_eq!(raw.text, "-A PREROUTING -p udp -m udp --dport 7 -j DROP");

    let forward = find_chain(&chains, "filter", "FORWARD");
    assert_eq!(forward.hook.as_deref(), Some("forward"));
    assert!(forward.policy_drop);
    assert_eq!(forward.policy_packets, Some(0));
    let user_chain = find_chain(&chains, "filter", "SPDK_BLOCK");
    assert_eq!(
        (
            user_chain.hook.as_deref(),
            user_chain.policy_drop,
            user_chain.policy_packets
        ),
        (None, false, None)
    );
    assert_eq!(chains.len(), 6);
}

#[test]
fn parses_legacy_save_with_escaped_quotes() {
    let (rules, chains) = parse_xtables_save(AFTER.iptables_legacy_filter, Backend::IptablesLegacy);
    let guarded = find_rule(&rules, "filter", "INPUT", 4);
    assert_eq!(
        guarded.text,
        r#"-A INPUT -p tcp -m tcp --dport 4420 -m comment --comment "legacy \"guard\" 4420" -j DROP"#
    );
    assert_eq!((guarded.packets, guarded.drops), (Some(1), true));
    let input = find_chain(&chains, "filter", "INPUT");
    assert_eq!((input.policy_drop, input.policy_packets), (true, Some(1)));
}

#[test]
fn parses_arptables_nft_save_without_policy_counters() {
    let (rules, chains) = parse_xtables_save(AFTER.arptables_nft_save, Backend::ArptablesNft);
    let drop = find_rule(&rules, "filter", "INPUT", 1);
    assert_eq!(drop.text, "-A INPUT -j DROP -s 10.9.0.3");
    assert_eq!(
        (drop.family.as_str(), drop.packets, drop.drops),
        ("arp", Some(1), true)
    );
    let input = find_chain(&chains, "filter", "INPUT");
    assert_eq!(
        (input.hook.as_deref(), input.policy_packets),
        (Some("input"), None)
    );

    // The listing has them.
    let parsed = parse_arptables_nft(AFTER.arptables_nft_save, Some(AFTER.arptables_nft_list));
    assert!(
        parsed
            .chains
            .iter()
            .all(|chain| chain.policy_packets == Some(0))
    );
    assert_eq!(parsed.rules, rules);
}

#[test]
fn arptables_listing_reads_like_its_save_format() {
    let (listed, _) =
        parse_arptables_list(AFTER.arptables_nft_list, Backend::ArptablesNft, "filter");
    let (saved, _) = parse_xtables_save(AFTER.arptables_nft_save, Backend::ArptablesNft);
    assert_eq!(listed, saved);

    let (rules, chains) = parse_arptables_list(
        AFTER.arptables_legacy_list,
        Backend::ArptablesLegacy,
        "filter",
    );
    let texts: Vec<&str> = rules.iter().map(|rule| rule.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "-A INPUT -j DROP -s 10.9.0.4",
            "-A INPUT -j ACCEPT -i lo --opcode 1"
        ]
    );
    assert_eq!((rules[0].packets, rules[0].drops), (Some(2), true));
    let names: Vec<&str> = chains.iter().map(|chain| chain.name.as_str()).collect();
    assert_eq!(names, ["INPUT", "OUTPUT", "FORWARD"]);
    assert_eq!(chains[0].policy_packets, Some(2));
}

#[test]
fn xtables_tables_are_not_listed_twice() {
    let ruleset = ruleset(&AFTER);
    assert_eq!(ruleset.errors, Vec::<String>::new());
    let nft_tables: BTreeSet<(&str, &str)> = ruleset
        .chains
        .iter()
        .filter(|chain| chain.backend == Backend::Nft)
        .map(|chain| (chain.family.as_str(), chain.table.as_str()))
        .collect();
    assert_eq!(
        nft_tables.into_iter().collect::<Vec<_>>(),
        [("inet", "guard"), ("netdev", "edge")]
    );
    let count = |backend| {
        ruleset
            .rules
            .iter()
            .filter(|rule| rule.backend == backend)
            .count()
    };
    assert_eq!(count(Backend::IptablesNft), 5);
    assert_eq!(count(Backend::Ip6tablesNft), 1);
    assert_eq!(count(Backend::ArptablesNft), 2);
    assert_eq!(count(Backend::IptablesLegacy), 6);
    assert_eq!(count(Backend::Ip6tablesLegacy), 1);
    assert_eq!(count(Backend::ArptablesLegacy), 2);
    assert_eq!(count(Backend::Nft), 19);
}

#[test]
fn native_table_with_an_iptables_name_is_read_with_nft() {
    // iptables-nft-save shows the set match as a bare `-A INPUT -j DROP`, counter and all.
    let misread = parse_xtables_save(IPTABLES_NFT_SAVE_NATIVE, Backend::IptablesNft);
    assert_eq!(
        find_rule(&misread.0, "filter", "INPUT", 1).text,
        "-A INPUT -j DROP"
    );

    let ruleset = assemble(Readings {
        xtables_nft: Parsed::from(misread),
        nft: nft(NFT_NATIVE),
        ..Readings::default()
    });
    assert!(
        ruleset
            .rules
            .iter()
            .all(|rule| rule.backend == Backend::Nft)
    );
    assert!(
        ruleset
            .chains
            .iter()
            .all(|chain| chain.backend == Backend::Nft)
    );
    assert_eq!(ruleset.errors.len(), 1, "{:?}", ruleset.errors);
    assert_eq!(
        ruleset.uncounted_drop_candidates(Some("ip"), Some("filter"), Some("INPUT")),
        [
            nft_hit(
                ("ip", "filter", "INPUT"),
                3,
                "ip saddr { 10.8.0.1, 10.8.0.2 } drop",
                0
            ),
            hit(Backend::Nft, "ip", "filter", "INPUT", None, 0),
        ]
    );
}

#[test]
fn drop_hits_between_fixture_snapshots() {
    let before = ruleset(&BEFORE);
    let after = ruleset(&AFTER);
    assert_eq!(
        before.drop_hits(&after),
        [
            hit(
                Backend::IptablesNft,
                "ip",
                "raw",
                "PREROUTING",
                Some("-A PREROUTING -p udp -m udp --dport 7 -j DROP"),
                1
            ),
            hit(
                Backend::IptablesNft,
                "ip",
                "filter",
                "INPUT",
                Some("-A INPUT -p icmp -j DROP"),
                3
            ),
            hit(
                Backend::IptablesNft,
                "ip",
                "filter",
                "SPDK_BLOCK",
                Some(
                    "-A SPDK_BLOCK -p udp -m udp --dport 9 -j REJECT \
                     --reject-with icmp-port-unreachable"
                ),
                2
            ),
            hit(
                Backend::ArptablesNft,
                "arp",
                "filter",
                "INPUT",
                Some("-A INPUT -j DROP -s 10.9.0.3"),
                1
            ),
            hit(
                Backend::IptablesLegacy,
                "ip",
                "filter",
                "INPUT",
                Some(
                    r#"-A INPUT -p tcp -m tcp --dport 4420 -m comment --comment "legacy \"guard\" 4420" -j DROP"#
                ),
                1
            ),
            hit(
                Backend::IptablesLegacy,
                "ip",
                "mangle",
                "PREROUTING",
                Some("-A PREROUTING -p udp -m udp --dport 10 -j DROP"),
                4
            ),
            hit(
                Backend::ArptablesLegacy,
                "arp",
                "filter",
                "INPUT",
                Some("-A INPUT -j DROP -s 10.9.0.4"),
                2
            ),
            nft_hit(GUARD_OUT, 11, "udp dport 9 counter drop", 1),
            // A named counter only one rule uses counts for it; the shared one cannot.
            nft_hit(
                GUARD_OUT,
                12,
                r#"udp dport 12 counter name "probes" drop"#,
                2
            ),
            nft_hit(
                ("netdev", "edge", "lo_in"),
                2,
                "udp dport 7 counter drop",
                1
            ),
            hit(Backend::IptablesLegacy, "ip", "filter", "INPUT", None, 1),
        ]
    );
    assert_eq!(after.drop_hits(&after), []);
}

#[test]
fn nft_rules_are_matched_by_handle() {
    let before = nft_ruleset(NFT_MOVED_BEFORE);
    let after = nft_ruleset(NFT_MOVED_AFTER);
    let rules = |ruleset: &Ruleset| -> Vec<(Option<u64>, usize, Option<u64>)> {
        ruleset
            .rules
            .iter()
            .map(|rule| (rule.handle, rule.position, rule.packets))
            .collect()
    };
    assert_eq!(
        rules(&before),
        [(Some(2), 1, Some(1)), (Some(3), 2, Some(0))]
    );
    assert_eq!(
        rules(&after),
        [
            (Some(4), 1, Some(3)),
            (Some(2), 2, Some(1)),
            (Some(3), 3, Some(0))
        ]
    );
    assert!(
        after
            .rules
            .iter()
            .all(|rule| rule.text == "udp dport 9 counter drop")
    );
    // By position and text, the new first rule would have been the old first rule (2
    // packets, not 3), and the old first rule the old second one (1 packet, not 0).
    let wall_in = ("ip", "wall", "in");
    assert_eq!(
        before.drop_hits(&after),
        [nft_hit(wall_in, 4, "udp dport 9 counter drop", 3)]
    );
    // A rule deleted in between is not blamed, nor does its handle go to another.
    let mut deleted = after.clone();
    deleted.rules.retain(|rule| rule.handle != Some(2));
    assert_eq!(
        before.drop_hits(&deleted),
        [nft_hit(wall_in, 4, "udp dport 9 counter drop", 3)]
    );
    assert_eq!(after.drop_hits(&after), []);
}

#[test]
fn uncounted_candidates_follow_the_filters() {
    let ruleset = ruleset(&AFTER);
    let rules_of = |hits: Vec<DropHit>| -> Vec<Option<String>> {
        hits.into_iter().map(|hit| hit.rule).collect()
    };
    // inet tables see ip packets too; a verdict map that can drop is a candidate.
    assert_eq!(
        rules_of(ruleset.uncounted_drop_candidates(Some("ip"), None, Some("in"))),
        [
            Some("ip saddr @blocked drop".to_owned()),
            Some(
                r#"meta l4proto tcp log prefix "drop: " drop comment "drop # handle 5""#.to_owned()
            ),
            Some("udp dport vmap { 5000 : drop, 5001 : accept }".to_owned()),
            Some("udp dport vmap @ports".to_owned()),
            None,
        ]
    );
    assert_eq!(
        ruleset.uncounted_drop_candidates(None, Some("guard"), Some("out")),
        [
            nft_hit(GUARD_OUT, 9, "tcp dport 4420 drop", 0),
            nft_hit(
                GUARD_OUT,
                10,
                "meta l4proto udp quota over 10 mbytes drop",
                0
            ),
            nft_hit(
                GUARD_OUT,
                13,
                r#"udp dport 13 counter name "shared" drop"#,
                0
            ),
            nft_hit(
                GUARD_OUT,
                14,
                r#"udp dport 14 counter name "shared" drop"#,
                0
            ),
        ]
    );
    // xtables counts everything, its policies included.
    assert_eq!(
        ruleset.uncounted_drop_candidates(Some("ip"), Some("filter"), None),
        []
    );
    assert_eq!(
        ruleset.uncounted_drop_candidates(Some("arp"), None, None),
        []
    );
    assert_eq!(ruleset.uncounted_drop_candidates(None, None, None).len(), 9);
}

fn xtables(text: &str) -> Ruleset {
    let (rules, chains) = parse_xtables_save(text, Backend::IptablesLegacy);
    Ruleset {
        rules,
        chains,
        errors: Vec::new(),
    }
}

#[test]
fn a_rule_that_moved_keeps_its_baseline() {
    let before = xtables("*filter\n:INPUT ACCEPT [0:0]\n[10:840] -A INPUT -p icmp -j DROP\n");
    let after = xtables(
        "*filter\n:INPUT ACCEPT [0:0]\n[0:0] -A INPUT -p tcp -j ACCEPT\n\
         [12:1008] -A INPUT -p icmp -j DROP\n",
    );
    assert_eq!(
        before.drop_hits(&after),
        [hit(
            Backend::IptablesLegacy,
            "ip",
            "filter",
            "INPUT",
            Some("-A INPUT -p icmp -j DROP"),
            2
        )]
    );
}

#[test]
fn new_and_zeroed_rules_count_from_zero() {
    let before = xtables("*filter\n:INPUT DROP [7:0]\n[9:0] -A INPUT -p udp -j DROP\n");
    let after = xtables(
        "*filter\n:INPUT DROP [9:0]\n[3:0] -A INPUT -p udp -j DROP\n\
         [4:0] -A INPUT -p tcp -j REJECT\n",
    );
    let packets: Vec<u64> = before
        .drop_hits(&after)
        .iter()
        .map(|hit| hit.packets)
        .collect();
    assert_eq!(packets, [3, 4, 2]);
}

#[test]
fn a_source_missing_before_is_not_blamed() {
    let after = xtables("*filter\n:INPUT DROP [5:0]\n[9:0] -A INPUT -p udp -j DROP\n");
    assert_eq!(Ruleset::default().drop_hits(&after), []);
    let after = nft_ruleset(NFT_MOVED_AFTER);
    assert_eq!(Ruleset::default().drop_hits(&after), []);
}

#[test]
fn garbage_does_not_panic() {
    let fixtures = [
        AFTER.iptables_nft,
        AFTER.arptables_nft_save,
        AFTER.arptables_legacy_list,
        AFTER.iptables_legacy_filter,
        AFTER.nft,
        NFT_NATIVE,
    ];
    let mut inputs: Vec<String> = [
        "",
        "\n\n",
        "{{{{ }",
        "}}}}}}",
        "null",
        "[]",
        r#"{"nftables": null}"#,
        r#"{"nftables": [null, 1, "x", [], {}]}"#,
        r#"{"nftables": [{"rule": {}}, {"chain": {}}, {"counter": "x"}, {"map": 1}]}"#,
        r#"{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c",
            "handle": -1, "expr": [null, 1, {}, {"counter": "n"}, {"vmap": {"data": 7}},
            {"vmap": {"data": "@"}}, {"vmap": {"data": {"set": [1, [], [2], [3, 4, 5]]}}},
            {"match": {"left": {"&": [1]}, "right": {"set": {"range": 7}}, "op": 3}},
            {"reject": {"type": null}}, {"log": 1}, {"quota": []},
            {"drop": null, "accept": null}, {"counter": {"packets": -5}}]}}]}"#,
        r#"{"nftables": [{"counter": {"family": "ip", "table": "t", "name": "n"}},
            {"map": {"family": "ip", "table": "t", "name": "m", "map": "verdict",
            "elem": {"drop": null}}}]}"#,
        "table inet x {\n chain c {\n type\n policy\n counter packets\n used\n}\n}",
        "*",
        "*filter\n:\n:X\n[\n[1:2]\n[1:2] -A\n[:] -A X\n[x:y] -A X -j\n-A",
        "Chain\nChain (\nChain X (policy\nChain X (policy DROP x packets, y bytes)\n, pcnt=",
        "Chain X (policy DROP)\n1\n-i\n-i * -o\n , pcnt=-- bcnt=",
        "ü\u{0}\u{7f} # handle é { } \\\" \"\\",
    ]
    .map(str::to_owned)
    .to_vec();
    // Deeply nested, as deep as serde_json reads.
    inputs.push(format!(
        r#"{{"nftables": [{{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{}1{}]}}}}]}}"#,
        r#"{"match": {"left": "#.repeat(60),
        "}}".repeat(60)
    ));
    // Every fixture cut short anywhere, and fed to the wrong parser.
    for fixture in fixtures {
        inputs.extend(
            fixture
                .char_indices()
                .step_by(5)
                .map(|(at, _)| fixture[..at].to_owned()),
        );
    }
    for input in &inputs {
        let _ = parse_xtables_save(input, Backend::IptablesNft);
        let _ = parse_xtables_save(input, Backend::Nft);
        let _ = parse_arptables_list(input, Backend::ArptablesLegacy, "filter");
        let nft = parse_nft_json(input).map(Parsed::from).unwrap_or_default();
        let parsed = parse_arptables_nft(input, Some(input));
        let ruleset = assemble(Readings {
            xtables_nft: parsed,
            nft,
            ..Readings::default()
        });
        let _ = ruleset.drop_hits(&ruleset);
        let _ = ruleset.uncounted_drop_candidates(Some("ip"), Some("filter"), Some("INPUT"));
    }
}

/// A namespace of our own, deleted whatever happens.
struct ScratchNetns {
    name: String,
}

impl ScratchNetns {
    fn create() -> Self {
        let name = format!("tracer_nf_test_{}", std::process::id());
        let created = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status();
        assert!(
            created.as_ref().is_ok_and(|status| status.success()),
            "ip netns add {name}: {created:?}"
        );
        Self { name }
    }

    /// Runs a command inside; the test's setup must succeed.
    fn exec(&self, command: &[&str]) -> String {
        let output = run(&self.name, command[0], &command[1..]);
        output.unwrap_or_else(|err| panic!("{err}"))
    }

    fn send_udp(&self, port: u16, count: usize) {
        let name = self.name.clone();
        let sent = std::thread::spawn(move || -> std::io::Result<()> {
            let _inside = crate::netns::NetnsGuard::enter(&name).map_err(std::io::Error::other)?;
            let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
            for _ in 0..count {
                // Dropped on the way in: the send itself succeeds.
                socket.send_to(b"probe", ("127.0.0.1", port))?;
            }
            Ok(())
        })
        .join();
        assert!(
            matches!(sent, Ok(Ok(()))),
            "sending to port {port}: {sent:?}"
        );
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn snapshot_of_a_scratch_namespace_creates_nothing_and_finds_the_dropping_rules() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to create a network namespace");
        return;
    }
    let netns = ScratchNetns::create();
    let legacy_tables = |netns: &ScratchNetns| -> String {
        ["ip_tables_names", "ip6_tables_names", "arp_tables_names"]
            .map(|file| netns.exec(&["cat", &format!("/proc/net/{file}")]))
            .concat()
    };

    let empty = snapshot(&netns.name);
    assert_eq!(empty, Ruleset::default());
    assert_eq!(legacy_tables(&netns), "", "reading made legacy tables");
    assert_eq!(
        netns.exec(&["nft", "list", "ruleset"]),
        "",
        "reading made nft tables"
    );

    netns.exec(&["ip", "link", "set", "lo", "up"]);
    netns.exec(&[
        "iptables-nft",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        "9",
        "-j",
        "DROP",
    ]);
    netns.exec(&[
        "iptables-legacy",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        "11",
        "-j",
        "DROP",
    ]);
    netns.exec(&["nft", "add", "table", "inet", "guard"]);
    netns.exec(&[
        "nft",
        "add chain inet guard in { type filter hook input priority 0; }",
    ]);
    netns.exec(&["nft", "add rule inet guard in udp dport 10 counter drop"]);
    netns.exec(&["nft", "add rule inet guard in udp dport 12 drop"]);

    let before = snapshot(&netns.name);
    // Inserted above the counted rule: it must not take its place.
    netns.exec(&["nft", "insert rule inet guard in udp dport 13 counter drop"]);
    netns.send_udp(9, 2);
    netns.send_udp(10, 3);
    netns.send_udp(11, 1);
    let after = snapshot(&netns.name);
    assert_eq!(after.errors, Vec::<String>::new());
    let guard_in = ("inet", "guard", "in");
    let counted = find_rule(&after.rules, "guard", "in", 2);
    assert_eq!(counted.text, "udp dport 10 counter drop");
    let handle = counted.handle.expect("nft rules have handles");
    assert_eq!(
        before.drop_hits(&after),
        [
            hit(
                Backend::IptablesNft,
                "ip",
                "filter",
                "INPUT",
                Some("-A INPUT -p udp -m udp --dport 9 -j DROP"),
                2
            ),
            hit(
                Backend::IptablesLegacy,
                "ip",
                "filter",
                "INPUT",
                Some("-A INPUT -p udp -m udp --dport 11 -j DROP"),
                1
            ),
            nft_hit(guard_in, handle, "udp dport 10 counter drop", 3),
        ]
    );
    assert_eq!(
        after.uncounted_drop_candidates(Some("ip"), None, None),
        [nft_hit(guard_in, handle + 1, "udp dport 12 drop", 0)]
    );
    // Only the table the test made itself.
    assert_eq!(legacy_tables(&netns), "filter\n");
}

#[test]
fn table_names_that_could_pass_for_options_are_never_arguments() {
    for plain in ["filter", "nat", "my-table_2", "a.b/c"] {
        assert!(plain_name(plain), "{plain}");
    }
    for odd in ["-f/tmp/commands", "--file=x", "a b", "a\"b", "table;flush"] {
        assert!(!plain_name(odd), "{odd}");
    }
}
