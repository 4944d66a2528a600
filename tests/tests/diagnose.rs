//! `tracer diagnose` on the lab, one fault at a time: the verdict class, its exit code, and
//! what the report says about where.

use std::net::{SocketAddr, TcpListener};

use serde_json::Value;
use tracer_tests::{
    End, Lab, Namespaces, Picture, TARGET_IP, TempDir, check, diagnose, in_netns, unique,
};
use tracer_topology::{
    Pair, Topology,
    layouts::{TCP_PORT, drop_rule},
};

fn class(report: &Value) -> &str {
    report["verdict"]["class"].as_str().expect("verdict.class")
}

fn assert_verdict(code: i32, report: &Value, expected: &str, expected_code: i32) {
    assert_eq!(class(report), expected, "report: {report:#}");
    assert_eq!(code, expected_code, "exit code for {expected}");
}

#[test]
fn healthy_lab_is_ok_every_time() {
    let lab = Lab::up("ok");
    let neighbours = |end: &End| {
        String::from_utf8_lossy(&check(end.exec("ip").args(["neigh", "show"])).stdout).into_owned()
    };
    for _ in 0..5 {
        let (code, report) = lab.diagnose(&[]);
        assert_verdict(code, &report, "ok", 0);
        // The probes' neighbour entries are removed again: the tables are as they were.
        assert_eq!(
            neighbours(&lab.initiator),
            "",
            "initiator neighbours left behind"
        );
        assert_eq!(neighbours(&lab.target), "", "target neighbours left behind");
        assert!(
            report["verdict"]["summary"]
                .as_str()
                .unwrap()
                .contains("nothing listens"),
            "{report:#}"
        );
        let probes = report["exchanges"].as_array().unwrap();
        assert_eq!(probes.len(), 4);
        for probe in probes {
            assert!(probe["outcome"]["sent"].as_u64().unwrap() > 0, "{probe}");
        }
    }
}

#[test]
fn listener_on_the_port_is_ok_and_reported() {
    let lab = Lab::up("lst");
    let address: SocketAddr = format!("{TARGET_IP}:{}", lab.port).parse().unwrap();
    let listener = in_netns(&lab.target.netns, move || {
        TcpListener::bind(address).unwrap()
    })
    .join()
    .unwrap();
    let (code, report) = lab.diagnose(&[]);
    drop(listener);
    assert_verdict(code, &report, "ok", 0);
    assert!(
        report["verdict"]["summary"]
            .as_str()
            .unwrap()
            .contains("listener accepts"),
        "{report:#}"
    );
}

/// Two ports whose veth peers live in a third namespace: up (cabled elsewhere, carrier on) or
/// down (unplugged: no carrier).
fn miscabled(tag: &str, peers_up: bool) -> (Namespaces, Vec<String>) {
    let base = unique(tag);
    let (initiator_ns, target_ns, elsewhere) = (
        format!("{base}-i"),
        format!("{base}-t"),
        format!("{base}-x"),
    );
    let namespaces = Namespaces::build(&Topology {
        pairs: vec![Pair::cabled_elsewhere(
            tracer_topology::End::new(&initiator_ns, "cvl_0_1").with_address("10.0.0.1/24"),
            tracer_topology::End::new(&target_ns, "cvl_0_0").with_address("10.0.0.2/24"),
            &elsewhere,
            ("peer1", "peer0"),
            peers_up,
        )],
        ..Topology::default()
    });
    let ports = vec![
        "--initiator".to_owned(),
        format!("{initiator_ns}/cvl_0_1"),
        "--target".to_owned(),
        format!("{target_ns}/cvl_0_0"),
    ];
    (namespaces, ports)
}

#[test]
fn unplugged_ports_are_cable() {
    let (_namespaces, ports) = miscabled("unp", false);
    let (code, report) = diagnose(&ports, &[]);
    assert_verdict(code, &report, "cable", 10);
    assert!(
        report["verdict"]["summary"]
            .as_str()
            .unwrap()
            .contains("No carrier"),
        "{report:#}"
    );
}

#[test]
fn ports_cabled_elsewhere_are_cable() {
    let (_namespaces, ports) = miscabled("mis", true);
    let (code, report) = diagnose(&ports, &[]);
    assert_verdict(code, &report, "cable", 10);
    assert_eq!(report["verdict"]["side"], "wire");
    let arp = &report["exchanges"][0];
    assert_eq!(arp["kind"], "arp");
    assert!(arp["left_origin"].as_u64().unwrap() > 0, "{arp}");
    assert_eq!(arp["reached_peer"], 0, "{arp}");
}

#[test]
fn target_port_down_is_interface() {
    let lab = Lab::up("dwn");
    check(
        lab.target
            .exec("ip")
            .args(["link", "set", &lab.target.interface, "down"]),
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "interface", 14);
    assert_eq!(report["verdict"]["side"], "target");
    assert!(
        report["verdict"]["summary"]
            .as_str()
            .unwrap()
            .contains("administratively down"),
        "{report:#}"
    );
}

#[test]
fn port_in_another_namespace_is_interface_and_located() {
    let lab = Lab::up("mov");
    // The target is looked for in the initiator's namespace: it is not there.
    let wrong = End {
        netns: lab.initiator.netns.clone(),
        interface: lab.target.interface.clone(),
    };
    let ports = vec![
        "--initiator".to_owned(),
        lab.initiator.spec(),
        "--target".to_owned(),
        wrong.spec(),
    ];
    let (code, report) = diagnose(&ports, &[]);
    assert_verdict(code, &report, "interface", 14);
    let summary = report["verdict"]["summary"].as_str().unwrap();
    assert!(summary.contains(&lab.target.netns), "{summary}");
}

#[test]
fn missing_namespace_is_interface() {
    let lab = Lab::up("nns");
    let ports = vec![
        "--initiator".to_owned(),
        lab.initiator.spec(),
        "--target".to_owned(),
        "tracer_no_such_namespace/cvl_0_0".to_owned(),
    ];
    let (code, report) = diagnose(&ports, &[]);
    assert_verdict(code, &report, "interface", 14);
}

fn assert_netfilter(report: &Value, netns: &str, family: &str, table: &str, chain: &str) -> String {
    let location = &report["verdict"]["netfilter"];
    assert_eq!(location["netns"], netns, "{report:#}");
    assert_eq!(location["family"], family, "{report:#}");
    assert_eq!(location["table"], table, "{report:#}");
    assert_eq!(location["chain"], chain, "{report:#}");
    location["rule"].as_str().unwrap().to_owned()
}

#[test]
fn icmp_dropped_on_target_input_is_netfilter() {
    let lab = Lab::up("nfi");
    check(
        lab.target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let before = check(&mut lab.target.exec("iptables-save"));
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "target");
    let rule = assert_netfilter(&report, &lab.target.netns, "ip", "filter", "INPUT");
    assert_eq!(rule, "-A INPUT -p icmp -j DROP");
    // The user's firewall is exactly as it was.
    let after = check(&mut lab.target.exec("iptables-save"));
    assert_eq!(
        strip_save_comments(&before.stdout),
        strip_save_comments(&after.stdout)
    );
}

#[test]
fn report_and_svg_draw_where_netfilter_drops() {
    let lab = Lab::up("svg");
    check(
        lab.target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let files = TempDir::new("svg");
    let (report_dir, alone, again) = (
        files.path.join("report"),
        files.path.join("alone.svg"),
        files.path.join("again.svg"),
    );
    let target = format!("cvl_0_0 (namespace {})", lab.target.netns);
    let netfilter_at_target = Some(("netfilter".to_owned(), target.clone()));

    let (code, _) = lab.diagnose(&["--report", report_dir.to_str().unwrap()]);
    assert_eq!(code, 12);
    let picture = Picture::read(&report_dir.join("path.svg"));
    assert_eq!(picture.stop, netfilter_at_target, "{picture:?}");
    for shown in ["cvl_0_1", "cvl_0_0", "-A INPUT -p icmp -j DROP"] {
        assert!(picture.shows(shown), "{shown} not drawn: {picture:?}");
    }
    let markdown = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(markdown.contains("[path.svg](path.svg)"), "{markdown}");
    assert!(
        markdown.contains("```mermaid\nflowchart LR\n"),
        "{markdown}"
    );
    // The target port, the second node, is where the packets stopped.
    assert!(markdown.contains("class h1 stop"), "{markdown}");

    // `--svg FILE` alone writes the picture alone.
    let (code, _) = lab.diagnose(&["--svg", alone.to_str().unwrap()]);
    assert_eq!(code, 12);
    assert_eq!(Picture::read(&alone).stop, netfilter_at_target);

    // And from the saved report, without the lab.
    drop(lab);
    let (code, _) = diagnose(
        &[],
        &[
            "--from",
            report_dir.to_str().unwrap(),
            "--svg",
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 12);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(report_dir.join("path.svg")).unwrap()
    );
}

/// ICMP dropped in the target's INPUT chain: the reverse echo's answers are counted arriving
/// at the target and die past the last counting point. The ladder marks its last row with
/// where, and the picture marks it too.
#[test]
fn answers_lost_after_the_last_counting_point_are_marked() {
    let lab = Lab::up("aft");
    check(
        lab.target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let files = TempDir::new("aft");
    let picture = files.path.join("path.svg");
    let out = tracer_tests::output(
        tracer_tests::tracer()
            .arg("diagnose")
            .args(lab.port_args())
            .args(["--svg", picture.to_str().unwrap()]),
    );
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let target = format!("cvl_0_0 (namespace {})", lab.target.netns);
    let ladder: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("  ICMP echo target -> initiator:"))
        .skip(1)
        .take(4)
        .collect();
    assert_eq!(ladder.len(), 4, "{text}");
    // Every point counted all five; only the last row is marked, with where they died.
    for row in &ladder[..3] {
        assert!(row.trim_end().ends_with(" 5"), "{row}\n{text}");
    }
    assert!(
        ladder[3].contains("answer reached cvl_0_0")
            && ladder[3].contains(&format!(
                "5  <- went no further: lost after the last counting point, in {target}"
            )),
        "{text}"
    );
    // The forward echo still marks its first missing point.
    assert!(
        text.contains("answer left cvl_0_0             0  <- missing"),
        "{text}"
    );
    let drawn = Picture::read(&picture);
    assert_eq!(drawn.after_last, vec![target.clone()], "{drawn:?}");
    // The legend says it, on however many lines it wraps.
    assert!(
        drawn
            .texts
            .join(" ")
            .contains(&format!("after the last counting point, in {target}")),
        "not in the legend: {drawn:?}"
    );
}

/// iptables-save output without its timestamp comment lines.
fn strip_save_comments(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn tcp_port_dropped_on_target_is_netfilter() {
    let lab = Lab::up("nft");
    check(
        lab.target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "tcp", "--dport", "4420", "-j", "DROP"]),
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    let rule = assert_netfilter(&report, &lab.target.netns, "ip", "filter", "INPUT");
    assert!(
        rule.contains("--dport 4420") && rule.contains("DROP"),
        "{rule}"
    );
}

/// What host/timeout.sh does on purpose: the verdict names the rule as the test's own and still
/// says where the packets died.
#[test]
fn a_rule_with_spdks_comment_is_named_the_tests_own() {
    let lab = Lab::up("spk");
    let drop = drop_rule(&lab.target.netns, TCP_PORT);
    drop.add().expect("adding SPDK's DROP rule");
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    let rule = assert_netfilter(&report, &lab.target.netns, "ip", "filter", "INPUT");
    let comment = drop.iptables.last().expect("the rule's comment");
    assert!(rule.contains(comment.as_str()), "{rule}");
    let summary = report["verdict"]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("namespace {}", lab.target.netns))
            && summary.contains("chain INPUT by rule `")
            && summary.ends_with("(SPDK's own test rule, SPDK_NVMF comment)."),
        "{summary}"
    );
    let advice = report["verdict"]["advice"].as_str().unwrap();
    assert!(advice.contains("grep -v SPDK_NVMF"), "{advice}");
}

#[test]
fn arp_dropped_by_arptables_is_netfilter() {
    let lab = Lab::up("arp");
    check(
        lab.target
            .exec("arptables")
            .args(["-A", "INPUT", "-j", "DROP"]),
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "target");
    let rule = assert_netfilter(&report, &lab.target.netns, "arp", "filter", "INPUT");
    assert!(rule.contains("DROP"), "{rule}");
}

#[test]
fn native_nft_drop_on_initiator_output_is_netfilter() {
    let lab = Lab::up("nat");
    check(
        lab.initiator
            .exec("nft")
            .args(["add", "table", "inet", "guard"]),
    );
    check(lab.initiator.exec("nft").args([
        "add",
        "chain",
        "inet",
        "guard",
        "out",
        "{ type filter hook output priority 0; policy accept; }",
    ]));
    check(lab.initiator.exec("nft").args([
        "add", "rule", "inet", "guard", "out", "tcp", "dport", "4420", "drop",
    ]));
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "initiator");
    let rule = assert_netfilter(&report, &lab.initiator.netns, "inet", "guard", "out");
    assert_eq!(rule, "tcp dport 4420 drop");
}

#[test]
fn address_nobody_owns_is_neighbour() {
    let lab = Lab::up("nob");
    let (code, report) = lab.diagnose(&["--target-ip", "10.0.0.3"]);
    assert_verdict(code, &report, "neighbour", 11);
    assert_eq!(report["verdict"]["side"], "target");
}

#[test]
fn absent_target_host_is_neighbour() {
    let lab = Lab::up("abs");
    check(
        lab.target
            .exec("ip")
            .args(["addr", "del", "10.0.0.2/24", "dev", &lab.target.interface]),
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "neighbour", 11);
    assert_eq!(report["verdict"]["side"], "target");
}

#[test]
fn no_route_on_initiator_is_route() {
    let lab = Lab::up("rte");
    check(lab.initiator.exec("ip").args([
        "route",
        "del",
        "10.0.0.0/24",
        "dev",
        &lab.initiator.interface,
    ]));
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "route", 13);
    assert_eq!(report["verdict"]["side"], "initiator");
}

#[test]
fn report_directory_holds_markdown_and_json() {
    let lab = Lab::up("rep");
    check(
        lab.target
            .exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let dir = std::env::temp_dir().join(unique("report"));
    let (code, report) = lab.diagnose(&["--report", dir.to_str().unwrap()]);
    assert_verdict(code, &report, "netfilter", 12);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["verdict"]["class"], "netfilter");
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        markdown.starts_with("# tracer diagnose: netfilter"),
        "{markdown}"
    );
    assert!(markdown.contains("-A INPUT -p icmp -j DROP"), "{markdown}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn drop_on_the_initiator_output_is_netfilter_on_the_initiator() {
    let lab = Lab::up("out");
    check(
        lab.initiator
            .exec("iptables")
            .args(["-A", "OUTPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "initiator");
    let rule = assert_netfilter(&report, &lab.initiator.netns, "ip", "filter", "OUTPUT");
    assert_eq!(rule, "-A OUTPUT -p icmp -j DROP");
}

#[test]
fn intermittent_netfilter_drop_is_netfilter() {
    let lab = Lab::up("int");
    check(lab.target.exec("iptables").args([
        "-A",
        "INPUT",
        "-p",
        "icmp",
        "-m",
        "statistic",
        "--mode",
        "nth",
        "--every",
        "2",
        "--packet",
        "0",
        "-j",
        "DROP",
    ]));
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    let rule = assert_netfilter(&report, &lab.target.netns, "ip", "filter", "INPUT");
    assert!(rule.contains("--every 2"), "{rule}");
}

#[test]
fn drop_policy_of_a_native_nft_chain_is_netfilter() {
    let lab = Lab::up("pol");
    check(lab.target.exec("nft").args(["add", "table", "ip", "wall"]));
    check(lab.target.exec("nft").args([
        "add",
        "chain",
        "ip",
        "wall",
        "in",
        "{ type filter hook input priority 0; policy drop; }",
    ]));
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "target");
    let rule = assert_netfilter(&report, &lab.target.netns, "ip", "wall", "in");
    assert!(rule.contains("policy drop"), "{rule}");
}

/// A bundle is classified again from its report.json alone, after the lab is gone: the same
/// verdict, exit code and rule. A newer schema is refused with one line.
#[test]
fn a_saved_bundle_is_diagnosed_again_without_the_network() {
    let bundle = std::env::temp_dir().join(unique("from"));
    let (code, saved) = {
        let lab = Lab::up("frm");
        check(
            lab.target
                .exec("iptables")
                .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
        );
        lab.diagnose(&["--report", bundle.to_str().unwrap()])
    };
    assert_verdict(code, &saved, "netfilter", 12);
    for from in [bundle.clone(), bundle.join("report.json")] {
        let out = tracer_tests::output(
            tracer_tests::tracer()
                .args(["diagnose", "--json", "--from"])
                .arg(&from),
        );
        let again: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(out.status.code(), Some(12));
        assert_eq!(again["verdict"], saved["verdict"]);
        assert_eq!(again["schema_version"], 3);
    }

    let mut newer = saved.clone();
    newer["schema_version"] = 99.into();
    let newer_file = bundle.join("newer.json");
    std::fs::write(&newer_file, newer.to_string()).unwrap();
    let out = tracer_tests::output(
        tracer_tests::tracer()
            .args(["diagnose", "--from"])
            .arg(&newer_file),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("newer"), "{stderr}");
    let _ = std::fs::remove_dir_all(&bundle);
}

/// Runs `nft ARGS` in the namespace of `end`; it must succeed.
fn nft(end: &End, args: &[&str]) {
    check(end.exec("nft").args(args));
}

/// An inet table `guard` with a base chain `in` on the input hook, policy accept.
fn nft_guard_input(end: &End) {
    nft(end, &["add", "table", "inet", "guard"]);
    nft(
        end,
        &[
            "add",
            "chain",
            "inet",
            "guard",
            "in",
            "{ type filter hook input priority 0; policy accept; }",
        ],
    );
}

#[test]
fn drop_counted_by_a_named_nft_counter_is_netfilter() {
    let lab = Lab::up("ncn");
    nft_guard_input(&lab.target);
    nft(&lab.target, &["add", "counter", "inet", "guard", "blocked"]);
    nft(
        &lab.target,
        &[
            "add", "rule", "inet", "guard", "in", "tcp", "dport", "4420", "counter", "name",
            "blocked", "drop",
        ],
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "target");
    let rule = assert_netfilter(&report, &lab.target.netns, "inet", "guard", "in");
    assert_eq!(rule, r#"tcp dport 4420 counter name "blocked" drop"#);
    let evidence = &report["netfilter"][0];
    assert_eq!(evidence["rule_found_by"], "counter", "{report:#}");
    assert!(evidence["packets"].as_u64().unwrap() > 0, "{report:#}");
}

#[test]
fn drop_by_an_nft_verdict_map_is_netfilter_with_the_map_as_candidate() {
    let lab = Lab::up("vmp");
    nft_guard_input(&lab.target);
    // The counter counts the accepted segments too: it cannot prove the map's drops.
    nft(
        &lab.target,
        &[
            "add",
            "rule",
            "inet",
            "guard",
            "in",
            "counter meta l4proto vmap { icmp : drop, tcp : accept }",
        ],
    );
    let (code, report) = lab.diagnose(&[]);
    assert_verdict(code, &report, "netfilter", 12);
    assert_eq!(report["verdict"]["side"], "target");
    let rule = assert_netfilter(&report, &lab.target.netns, "inet", "guard", "in");
    assert_eq!(
        rule,
        "counter meta l4proto vmap { icmp : drop, tcp : accept }"
    );
    let found_by: Vec<&Value> = report["netfilter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|evidence| &evidence["rule_found_by"])
        .collect();
    assert_eq!(found_by, [&Value::from("candidate")], "{report:#}");
}
