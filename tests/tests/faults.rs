//! The faults CI nodes really have, in both of SPDK's topologies where they apply: the NIC loop
//! (a veth pair here) and the virtual one (each port's veth peer in a bridge). Each asserts
//! the class, the exit code and the thing to change, named.

use std::process::Command;

use serde_json::Value;
use tracer_tests::{Lab, check, output, tracer};
use tracer_topology::{Join, Pair, Switch, lab::bridge_peer};

/// Both topologies, each on a lab of its own.
fn labs(tag: &str) -> [Lab; 2] {
    [Lab::up(&format!("{tag}p")), Lab::virt(&format!("{tag}v"))]
}

fn assert_class(code: i32, report: &Value, class: &str, exit: i32) {
    assert_eq!(report["verdict"]["class"], class, "{report:#}");
    assert_eq!(code, exit, "{report:#}");
}

fn finding(report: &Value) -> &Value {
    &report["verdict"]["finding"]
}

fn ip(netns: &str, args: &[&str]) {
    check(Command::new("ip").arg("-n").arg(netns).args(args));
}

fn sysctl(lab_netns: &str, setting: &str) {
    check(
        Command::new("ip")
            .args(["netns", "exec", lab_netns, "sysctl", "-qw"])
            .arg(setting),
    );
}

#[test]
fn healthy_labs_are_ok_twenty_times() {
    for lab in labs("ok") {
        for run in 0..20 {
            let (code, report) = lab.diagnose(&[]);
            assert_eq!(code, 0, "run {run}: {report:#}");
            assert_eq!(report["verdict"]["class"], "ok");
            assert_eq!(finding(&report)["kind"], "path_works");
        }
    }
}

/// The walk of the path shows each topology's hops.
#[test]
fn the_path_between_the_ports_is_walked() {
    let [pair, virt] = labs("pth");
    let (_, report) = pair.diagnose(&[]);
    let roles: Vec<&str> = report["path"]["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|hop| hop["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["port", "port"], "{report:#}");
    let (_, report) = virt.diagnose(&[]);
    let hops: Vec<(&str, &str)> = report["path"]["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|hop| {
            (
                hop["role"].as_str().unwrap(),
                hop["interface"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("port", "cvl_0_1"),
            ("veth_peer", "cvl_0_1_br"),
            ("bridge", "nvmf_br"),
            ("veth_peer", "cvl_0_0_br"),
            ("port", "cvl_0_0")
        ],
        "{report:#}"
    );
}

#[test]
fn a_static_neighbour_entry_with_another_mac_is_neighbour_on_the_initiator() {
    for lab in labs("mac") {
        let wrong = "02:00:00:00:be:ef";
        ip(
            &lab.initiator.netns,
            &[
                "neigh",
                "replace",
                "10.0.0.2",
                "lladdr",
                wrong,
                "dev",
                "cvl_0_1",
                "nud",
                "permanent",
            ],
        );
        let (code, report) = lab.diagnose(&[]);
        assert_class(code, &report, "neighbour", 11);
        assert_eq!(report["verdict"]["side"], "initiator");
        let found = finding(&report);
        assert_eq!(found["kind"], "neighbour_mismatch", "{report:#}");
        assert_eq!(found["entry_mac"], wrong);
        let real = report["target"]["link"]["mac"]
            .as_array()
            .expect("target MAC")
            .iter()
            .map(|byte| format!("{:02x}", byte.as_u64().unwrap()))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(found["target_mac"], real.as_str());
        assert!(
            report["verdict"]["advice"]
                .as_str()
                .unwrap()
                .contains(&format!("lladdr {real}")),
            "{report:#}"
        );
    }
}

#[test]
fn strict_reverse_path_filtering_with_the_route_back_elsewhere_is_route() {
    for lab in labs("rpf") {
        let target = &lab.target.netns;
        ip(
            target,
            &[
                "link", "add", "other0", "type", "veth", "peer", "name", "other1",
            ],
        );
        ip(target, &["link", "set", "other0", "up"]);
        ip(target, &["link", "set", "other1", "up"]);
        ip(target, &["route", "add", "10.0.0.1/32", "dev", "other0"]);
        sysctl(target, "net.ipv4.conf.all.rp_filter=1");
        sysctl(target, "net.ipv4.conf.cvl_0_0.rp_filter=1");
        let (code, report) = lab.diagnose(&[]);
        assert_class(code, &report, "route", 13);
        assert_eq!(report["verdict"]["side"], "target");
        let found = finding(&report);
        assert_eq!(found["kind"], "reverse_path_filter", "{report:#}");
        assert_eq!(found["sysctl"]["name"], "rp_filter");
        assert_eq!(found["sysctl"]["effective"], 1);
        assert_eq!(found["route_via"], "other0");
    }
}

#[test]
fn arp_ignore_on_the_target_is_neighbour_naming_the_sysctl_and_value() {
    for lab in labs("arp") {
        sysctl(&lab.target.netns, "net.ipv4.conf.cvl_0_0.arp_ignore=8");
        let (code, report) = lab.diagnose(&[]);
        assert_class(code, &report, "neighbour", 11);
        let sysctls = finding(&report)["sysctls"].as_array().expect("sysctls");
        assert_eq!(sysctls.len(), 1, "{report:#}");
        assert_eq!(sysctls[0]["name"], "arp_ignore");
        assert_eq!(sysctls[0]["effective"], 8);
        assert_eq!(sysctls[0]["device"], 8);
        assert!(
            report["verdict"]["summary"]
                .as_str()
                .unwrap()
                .contains("arp_ignore=8"),
            "{report:#}"
        );
    }
}

/// Jumbo frames on one side only: small probes pass, diagnose still finds the MTU that drops.
#[test]
fn jumbo_frames_on_one_side_only_are_mtu() {
    let [pair, virt] = labs("mtu");
    // The direct pair: the initiator sends 9000-byte frames the target's 1500 cannot take.
    ip(
        &pair.initiator.netns,
        &["link", "set", "cvl_0_1", "mtu", "9000"],
    );
    let (code, report) = pair.diagnose(&[]);
    assert_class(code, &report, "mtu", 16);
    let found = finding(&report);
    assert_eq!(found["from_mtu"], 9000, "{report:#}");
    assert_eq!(found["to_mtu"], 1500);
    assert_eq!(found["dropping"]["interface"], "cvl_0_0");
    assert_eq!(found["dropping_mtu"], 1500);

    // Through the bridge: the initiator's own bridge-side peer is the hop that drops.
    ip(
        &virt.initiator.netns,
        &["link", "set", "cvl_0_1", "mtu", "9000"],
    );
    let (code, report) = virt.diagnose(&[]);
    assert_class(code, &report, "mtu", 16);
    let found = finding(&report);
    assert_eq!(found["dropping"]["interface"], "cvl_0_1_br", "{report:#}");
    assert_eq!(found["dropping_mtu"], 1500);
}

#[test]
fn a_bridge_port_left_out_of_the_bridge_is_named() {
    let lab = Lab::virt("nbr");
    ip(
        &lab.initiator.netns,
        &["link", "set", "cvl_0_0_br", "nomaster"],
    );
    let (code, report) = lab.diagnose(&[]);
    assert_class(code, &report, "cable", 10);
    let found = finding(&report);
    assert_eq!(found["kind"], "hop_broken", "{report:#}");
    assert_eq!(found["hop"]["interface"], "cvl_0_0_br");
    assert_eq!(found["problem"]["kind"], "not_in_bridge");
    assert_eq!(found["problem"]["bridge"], "nvmf_br");
    let summary = report["verdict"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("cvl_0_0_br is not a port of nvmf_br"),
        "{summary}"
    );
}

#[test]
fn forward_dropping_by_policy_in_the_bridges_namespace_is_netfilter() {
    let lab = Lab::virt("fwd");
    let host = &lab.initiator.netns;
    check(
        Command::new("ip")
            .args(["netns", "exec", host, "iptables", "-D", "FORWARD"])
            .args(["-i", "nvmf_br", "-o", "nvmf_br", "-j", "ACCEPT"]),
    );
    check(Command::new("ip").args(["netns", "exec", host, "iptables", "-P", "FORWARD", "DROP"]));
    // Bridged frames meet FORWARD only through br_netfilter, a module on most kernels: without
    // it this policy drops nothing and the fault is not made.
    let calls_iptables = output(Command::new("ip").args([
        "netns",
        "exec",
        host,
        "cat",
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&calls_iptables.stdout).trim(),
        "1",
        "cannot make this fault: bridged frames pass FORWARD only with br_netfilter loaded \
         (modprobe br_netfilter) and net.bridge.bridge-nf-call-iptables=1 in {host}: {}",
        String::from_utf8_lossy(&calls_iptables.stderr).trim()
    );
    let (code, report) = lab.diagnose(&[]);
    assert_class(code, &report, "netfilter", 12);
    assert_eq!(
        report["path"]["bridge_nf_call_iptables"], true,
        "{report:#}"
    );
    let location = &report["verdict"]["netfilter"];
    assert_eq!(location["netns"], host.as_str(), "{report:#}");
    assert_eq!(location["table"], "filter");
    assert_eq!(location["chain"], "FORWARD");
}

/// A leftover address of the same subnet on another device takes the route: route, naming it.
#[test]
fn the_same_subnet_on_another_device_is_named() {
    let lab = Lab::up("sub");
    let ns = &lab.initiator.netns;
    ip(
        ns,
        &[
            "link", "add", "old0", "type", "veth", "peer", "name", "old1",
        ],
    );
    ip(ns, &["link", "set", "old0", "up"]);
    ip(ns, &["addr", "flush", "dev", "cvl_0_1"]);
    ip(ns, &["addr", "add", "10.0.0.7/24", "dev", "old0"]);
    ip(ns, &["addr", "add", "10.0.0.1/24", "dev", "cvl_0_1"]);
    let (code, report) = lab.diagnose(&[]);
    assert_class(code, &report, "route", 13);
    assert_eq!(finding(&report)["via"], "old0", "{report:#}");
    let evidence: Vec<&str> = report["verdict"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    assert!(
        evidence
            .iter()
            .any(|line| line.contains("old0 10.0.0.7/24")),
        "{evidence:#?}"
    );
}

/// `tracer diagnose --json` on the virtual lab's pair and the second one made beside it.
fn diagnose_both(lab: &Lab) -> (i32, Value) {
    let (host, target) = (&lab.initiator.netns, &lab.target.netns);
    let second = [format!("{host}/cvl_1_1"), format!("{target}/cvl_1_0")];
    let mut args = vec!["diagnose".to_owned(), "--json".to_owned()];
    for (initiator, target, initiator_ip, target_ip) in [
        (
            lab.initiator.spec(),
            lab.target.spec(),
            "10.0.0.1",
            "10.0.0.2",
        ),
        (second[0].clone(), second[1].clone(), "10.0.0.3", "10.0.0.4"),
    ] {
        args.extend(
            [
                "--initiator",
                &initiator,
                "--target",
                &target,
                "--initiator-ip",
                initiator_ip,
                "--target-ip",
                target_ip,
            ]
            .map(str::to_owned),
        );
    }
    let out = output(tracer().args(&args));
    let report = serde_json::from_slice(&out.stdout).expect("JSON");
    (out.status.code().expect("exit code"), report)
}

/// Two pairs through one bridge, as nvmf_veth_init makes them: one verdict each.
#[test]
fn several_pairs_get_a_verdict_each() {
    let lab = Lab::virt("two");
    let (host, target) = (&lab.initiator.netns, &lab.target.netns);
    // The second pair: cvl_1_1 (10.0.0.3) and cvl_1_0 (10.0.0.4), their peers in the bridge.
    let second = Pair {
        initiator: tracer_topology::End::new(host, "cvl_1_1").with_address("10.0.0.3/24"),
        target: tracer_topology::End::new(target, "cvl_1_0").with_address("10.0.0.4/24"),
        join: Join::Switch(Switch {
            netns: host.clone(),
            bridge: Some("nvmf_br".to_owned()),
            initiator_peer: bridge_peer("cvl_1_1"),
            target_peer: bridge_peer("cvl_1_0"),
            peers_up: true,
        }),
    };
    second.create_link().expect("the second pair's veth pairs");
    second.configure().expect("the second pair's addresses");
    // Each target interface answers ARP for its own address only: with two of them on one
    // bridge, the kernel's default lets either answer for both (ARP flux), and a pair's
    // traffic would then depend on the other pair's hop.
    sysctl(target, "net.ipv4.conf.all.arp_ignore=1");
    let (code, report) = diagnose_both(&lab);
    let pairs = report["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 2, "{report:#}");
    assert_eq!(pairs[0]["verdict"]["class"], "ok", "{report:#}");
    assert_eq!(pairs[1]["verdict"]["class"], "ok", "{report:#}");
    assert_eq!(code, 0);

    // The second pair's target-side peer leaves the bridge: only its verdict changes.
    ip(host, &["link", "set", "cvl_1_0_br", "nomaster"]);
    let (code, report) = diagnose_both(&lab);
    let pairs = report["pairs"].as_array().expect("pairs");
    assert_eq!(pairs[0]["verdict"]["class"], "ok", "{report:#}");
    assert_eq!(pairs[1]["verdict"]["class"], "cable", "{report:#}");
    assert_eq!(
        pairs[1]["verdict"]["finding"]["hop"]["interface"],
        "cvl_1_0_br"
    );
    assert_eq!(code, 10);
}

/// `tracer watch` on the lab around a shell script: (exit code, report.json).
fn watch(lab: &Lab, script: &str) -> (i32, Value) {
    let bundle = lab.watch(&[], &["sh", "-c", script]);
    (bundle.code, bundle.report.clone())
}

/// The target's address removed mid-run (NetworkManager, DHCP): watch says what diagnose says
/// on the same state.
#[test]
fn an_address_removed_mid_run_is_neighbour_in_watch_and_diagnose() {
    let lab = Lab::up("adr");
    let (i, t) = (&lab.initiator.netns, &lab.target.netns);
    let script = format!(
        "ip netns exec {i} ping -c 2 -i 0.2 -W 1 10.0.0.2 >/dev/null
ip -n {t} addr del 10.0.0.2/24 dev cvl_0_0
ip netns exec {i} ping -c 2 -i 0.2 -W 1 10.0.0.2 >/dev/null"
    );
    let (code, report) = watch(&lab, &script);
    assert_eq!(code, 1);
    assert_eq!(report["verdict"]["class"], "neighbour", "{report:#}");
    let (code, report) = lab.diagnose(&[]);
    assert_class(code, &report, "neighbour", 11);
}

/// Carrier came up only after the test's first frames: cable, naming the port and the wait.
#[test]
fn frames_sent_before_carrier_came_up_are_cable() {
    let lab = Lab::up("car");
    let (i, t) = (&lab.initiator.netns, &lab.target.netns);
    let script = format!(
        "ip -n {t} link set cvl_0_0 down
sleep 0.3
ip netns exec {i} ping -c 1 -W 1 10.0.0.2 >/dev/null
ip -n {t} link set cvl_0_0 up
sleep 0.5
ip netns exec {i} ping -c 1 -W 2 10.0.0.2 >/dev/null
exit 1"
    );
    let (code, report) = watch(&lab, &script);
    assert_eq!(code, 1);
    assert_eq!(report["verdict"]["class"], "cable", "{report:#}");
    let found = finding(&report);
    assert_eq!(found["kind"], "carrier_late", "{report:#}");
    assert_eq!(found["port"]["interface"], "cvl_0_1");
    assert!(found["frames_without_carrier"].as_u64().unwrap() >= 1);
    assert!(found["carrier_after_ms"].as_u64().is_some(), "{report:#}");
}

/// The test's own jumbo frames, sent from a port with a larger MTU than its peer's: watch says
/// mtu, naming both MTUs.
#[test]
fn jumbo_frames_of_the_test_lost_are_mtu_in_watch() {
    let lab = Lab::up("wmt");
    let i = &lab.initiator.netns;
    let script = format!(
        "ip -n {i} link set cvl_0_1 mtu 9000
ip netns exec {i} ping -c 1 -W 1 10.0.0.2 >/dev/null
ip netns exec {i} ping -c 3 -i 0.2 -W 1 -s 8000 10.0.0.2 >/dev/null"
    );
    let (code, report) = watch(&lab, &script);
    assert_eq!(code, 1);
    assert_eq!(report["verdict"]["class"], "mtu", "{report:#}");
    let found = finding(&report);
    assert_eq!(found["from_mtu"], 9000);
    assert_eq!(found["to_mtu"], 1500);
    assert_eq!(found["dropping"]["interface"], "cvl_0_0");
}
