//! `tracer watch -- CMD` around SPDK's nvmf_tcp_init steps: the two ports start together in a
//! "host" namespace and the script moves the target port into a namespace it creates.

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use tracer_tests::{Namespaces, Picture, check, output, tracer, unique};

/// A host namespace holding the two ports, and the names the script will use.
struct SpdkHost {
    host: String,
    target_ns: String,
    initiator: String,
    target: String,
    /// Holds the host namespace, the target namespace the script makes, and a third one for
    /// miscabled peers; all are removed on drop.
    _namespaces: Namespaces,
    report: PathBuf,
}

impl SpdkHost {
    /// `cabled`: the two ports are a veth pair. Otherwise each is cabled to a peer in a third
    /// namespace (carrier up on both): the incident the project was born from.
    fn new(tag: &str, cabled: bool) -> Self {
        let base = unique(tag);
        let (host, target_ns, elsewhere) = (
            format!("{base}-h"),
            format!("{base}-t"),
            format!("{base}-x"),
        );
        // Interface names unique to this test: tracer looks for ports in every namespace.
        let suffix: String = base.chars().rev().take(8).collect();
        let (initiator, target) = (format!("i{suffix}"), format!("t{suffix}"));
        let namespaces = Namespaces::create(&[&host, &elsewhere]);
        let namespaces = Namespaces::adopt(namespaces, &target_ns);
        if cabled {
            check(Command::new("ip").args([
                "-n", &host, "link", "add", &initiator, "type", "veth", "peer", "name", &target,
            ]));
        } else {
            for (port, peer) in [(&initiator, "peer_i"), (&target, "peer_t")] {
                check(Command::new("ip").args([
                    "link", "add", port, "netns", &host, "type", "veth", "peer", "name", peer,
                    "netns", &elsewhere,
                ]));
                check(Command::new("ip").args(["-n", &elsewhere, "link", "set", peer, "up"]));
            }
        }
        let report = std::env::temp_dir().join(format!("{base}-report"));
        Self {
            host,
            target_ns,
            initiator,
            target,
            _namespaces: namespaces,
            report,
        }
    }

    /// nvmf_tcp_init's steps, plus `extra` shell lines before the pings.
    fn script(&self, extra: &str) -> String {
        let Self {
            host,
            target_ns,
            initiator,
            target,
            ..
        } = self;
        format!(
            "set -e
ip -n {host} -4 addr flush {initiator}
ip -n {host} -4 addr flush {target}
ip netns add {target_ns}
ip -n {host} link set {target} netns {target_ns}
ip -n {host} addr add 10.0.0.1/24 dev {initiator}
ip -n {target_ns} addr add 10.0.0.2/24 dev {target}
ip -n {host} link set {initiator} up
ip -n {target_ns} link set {target} up
ip -n {target_ns} link set lo up
ip netns exec {host} iptables -I INPUT 1 -i {initiator} -p tcp --dport 4420 -j ACCEPT -m comment --comment SPDK_NVMF:test
{extra}
ip netns exec {host} ping -c 1 -W 2 10.0.0.2
ip netns exec {target_ns} ping -c 1 -W 2 10.0.0.1
"
        )
    }

    /// Runs `tracer watch --always` around the script: (exit code, report.json).
    fn watch(&self, script: &str) -> (i32, Value) {
        self.watch_with(script, &[])
    }

    /// As [`Self::watch`], with `extra` arguments for watch.
    fn watch_with(&self, script: &str, extra: &[&str]) -> (i32, Value) {
        let out = output(
            tracer()
                .arg("watch")
                .args(extra)
                .args(["--initiator", &format!("{}/{}", self.host, self.initiator)])
                .args(["--target", &format!("{}/{}", self.target_ns, self.target)])
                .arg("--report")
                .arg(&self.report)
                .arg("--always")
                .args(["--", "sh", "-c", script]),
        );
        let code = out.status.code().expect("tracer exited by a signal");
        let json = std::fs::read_to_string(self.report.join("report.json")).unwrap_or_else(|err| {
            panic!(
                "no report.json ({err}); exit {code}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (
            code,
            serde_json::from_str(&json).expect("report.json is JSON"),
        )
    }
}

impl Drop for SpdkHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.report);
    }
}

fn events(report: &Value, kind: &str) -> Vec<String> {
    report["timeline"]["events"]
        .as_array()
        .expect("timeline events")
        .iter()
        .filter(|event| event["kind"] == kind)
        .map(|event| event["message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn healthy_setup_is_ok_and_follows_the_moved_port() {
    let host = SpdkHost::new("wok", true);
    let (code, report) = host.watch(&host.script(&tracer_tests::until_counted_on(
        &host.target_ns,
        &host.target,
    )));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["verdict"]["class"], "ok", "{report:#}");
    assert_eq!(report["command"]["exit_code"], 0);
    let moves = events(&report, "move");
    assert!(
        moves
            .iter()
            .any(|m| m.contains(&host.target) && m.contains(&format!("to {}", host.target_ns))),
        "no move of the target port in {moves:?}"
    );
    // Both pings were counted on the moved port: requests out of one, into the other.
    let exchanges = report["exchanges"].as_array().expect("exchanges");
    for kind in ["icmp_forward", "icmp_reverse"] {
        let counted = exchanges
            .iter()
            .find(|exchange| exchange["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} among the exchanges: {report:#}"));
        assert_eq!(
            counted["reached_peer"], counted["left_origin"],
            "{exchanges:#?}"
        );
        assert_eq!(counted["left_origin"], 1, "{exchanges:#?}");
    }

    // The capture opens in tcpdump and holds both pings' ARP and ICMP.
    let dump = check(
        Command::new("tcpdump")
            .arg("-nr")
            .arg(host.report.join("capture.pcapng")),
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("ARP, Request who-has 10.0.0.2"), "{text}");
    assert!(text.contains("ICMP echo request"), "{text}");
    assert!(text.contains("ICMP echo reply"), "{text}");
    let snapshot = std::fs::read_to_string(
        host.report
            .join("snapshot")
            .join(format!("{}.txt", host.target_ns)),
    )
    .expect("target namespace snapshot");
    assert!(snapshot.contains("10.0.0.2/24"), "{snapshot}");
    let markdown = std::fs::read_to_string(host.report.join("report.md")).unwrap();
    assert!(markdown.contains("signature: `tracer:ok:"), "{markdown}");
}

/// A port the command creates anew, up from its first moment, is attached while frames may
/// already cross it: the report says its counts began late, and before tcx (6.6) that tracer
/// added the clsact qdisc its programs need to an up port, which drops what leaves the port
/// in that moment. A port attached while down is not named.
#[test]
fn a_port_created_up_during_the_run_is_named_as_attached_late() {
    let host = SpdkHost::new("wla", true);
    let SpdkHost {
        host: netns,
        initiator,
        target,
        ..
    } = &host;
    let script = format!(
        "set -e
ip -n {netns} link del {initiator}
ip -n {netns} link add {initiator} up type veth peer name {target}
"
    );
    let (code, report) = host.watch(&script);
    assert_eq!(code, 0, "{report:#}");
    let late = report["late_attachments"]
        .as_array()
        .unwrap_or_else(|| panic!("no late attachments: {report:#}"));
    assert_eq!(late.len(), 1, "{late:#?}");
    assert_eq!(late[0]["side"], "initiator", "{late:#?}");
    assert_eq!(
        late[0]["qdisc_added"],
        !tracer_tests::kernel_at_least(6, 6),
        "{late:#?}"
    );
    let attached = events(&report, "attach");
    assert!(
        attached
            .iter()
            .any(|event| event.contains(initiator.as_str()) && event.contains("up already")),
        "{attached:#?}"
    );
    let limitations = report["environment"]["limitations"].to_string();
    assert!(
        limitations.contains(&format!("frames that crossed {initiator} before")),
        "{limitations}"
    );
}

#[test]
fn ports_cabled_elsewhere_are_cable_and_the_exit_code_passes_through() {
    let host = SpdkHost::new("wcb", false);
    let (code, report) = host.watch(&host.script(""));
    assert_eq!(code, 1, "ping's failure is the script's exit code");
    assert_eq!(report["command"]["exit_code"], 1);
    assert_eq!(report["verdict"]["class"], "cable", "{report:#}");
    assert_eq!(report["verdict"]["side"], "wire", "{report:#}");
    // The entry of an ARP nobody answers: INCOMPLETE while the kernel asks, FAILED after its
    // three tries. watch reads the table when it changes; a look the machine delays past the
    // tries (emulation, load) finds FAILED first. Either says the target never answered.
    let unanswered = |state: &str| ["INCOMPLETE", "FAILED"].contains(&state);
    let neighbours = events(&report, "neighbour");
    assert!(
        neighbours
            .iter()
            .any(|n| n.contains("10.0.0.2") && n.rsplit(" -> ").next().is_some_and(unanswered)),
        "{neighbours:?}"
    );
    let markdown = std::fs::read_to_string(host.report.join("report.md")).unwrap();
    assert!(markdown.contains("signature: `tracer:cable:"), "{markdown}");

    // The pictures: where the frames died, and the neighbour entry failing over time.
    assert!(
        markdown.contains("[timeline.svg](timeline.svg)"),
        "{markdown}"
    );
    let path = Picture::read(&host.report.join("path.svg"));
    assert_eq!(
        path.stop.as_ref().map(|(class, _)| class.as_str()),
        Some("cable"),
        "{path:?}"
    );
    let initiator_entries: Vec<&Value> = report["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["port"] == "initiator" && event["change"]["what"] == "neighbour")
        .collect();
    assert!(
        initiator_entries
            .iter()
            .any(|event| event["change"]["state"].as_str().is_some_and(unanswered)),
        "{initiator_entries:?}"
    );
    let timeline = Picture::read(&host.report.join("timeline.svg"));
    for shown in [
        host.initiator.as_str(),
        host.target.as_str(),
        "neighbour 10.0.0.2",
        "carrier",
    ] {
        assert!(timeline.shows(shown), "{shown} not drawn: {timeline:?}");
    }
}

#[test]
fn icmp_dropped_on_the_target_is_netfilter() {
    let host = SpdkHost::new("wnf", true);
    let rule = format!(
        "ip netns exec {} iptables -A INPUT -p icmp -j DROP",
        host.target_ns
    );
    let (code, report) = host.watch(&host.script(&rule));
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["verdict"]["class"], "netfilter", "{report:#}");
    let location = &report["verdict"]["netfilter"];
    assert_eq!(location["netns"], host.target_ns.as_str(), "{report:#}");
    assert_eq!(location["table"], "filter");
    assert_eq!(location["chain"], "INPUT");
    assert_eq!(location["rule"], "-A INPUT -p icmp -j DROP");
    assert!(
        events(&report, "drop")
            .iter()
            .any(|d| d.contains("NETFILTER_DROP")),
        "{report:#}"
    );
}

/// SPDK's run_test writes the test's name to its tag file and signals its monitors: watch
/// names each test in the timeline (read at start, on SIGUSR1, at the end), the last in the
/// bundle's identity, and the command, a shell, is not killed by the signal.
#[test]
fn the_tests_named_by_the_tag_file_are_in_the_bundle() {
    let host = SpdkHost::new("wtag", true);
    let tag = std::env::temp_dir().join(unique("wtag-name"));
    std::fs::write(&tag, "nvmf_tcp\n").unwrap();
    let tag_text = tag.display().to_string();
    // The next name only once watch has read this one (the file read after it was written; at
    // most 60 s): a signal's handling is not bounded in time, least of all under emulation.
    let next = format!(
        "echo nvmf_timeout > {tag_text}
kill -USR1 $PPID
tries=0
until [ -n \"$(find {tag_text} -neweram {tag_text})\" ] || [ $tries -ge 600 ]; do
    tries=$((tries + 1))
    sleep 0.1
done
echo nvmf_abort > {tag_text}"
    );
    let (code, report) = host.watch_with(&host.script(&next), &["--test-tag-file", &tag_text]);
    let _ = std::fs::remove_file(&tag);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        events(&report, "test"),
        [
            "running: nvmf_tcp",
            "running: nvmf_timeout",
            "running: nvmf_abort"
        ],
        "{report:#}"
    );
    assert_eq!(report["identity"]["test"], "nvmf_abort", "{report:#}");
    let markdown = std::fs::read_to_string(host.report.join("report.md")).unwrap();
    assert!(markdown.contains("nvmf_abort"), "{markdown}");
}

/// A rule with SPDK's comment left by an earlier run (there before watch starts) is named as a
/// leftover beside the ok verdict; the run's own SPDK_NVMF rule is not.
#[test]
fn spdk_rules_from_before_the_run_are_named_as_leftovers() {
    let host = SpdkHost::new("wleft", true);
    check(Command::new("ip").args([
        "netns",
        "exec",
        &host.host,
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        "4421",
        "-j",
        "ACCEPT",
        "-m",
        "comment",
        "--comment",
        "SPDK_NVMF:old",
    ]));
    let (code, report) = host.watch(&host.script(""));
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["verdict"]["class"], "ok", "{report:#}");
    let leftovers: Vec<&Value> = report["verdict"]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|fact| fact["kind"] == "rule_before_run")
        .collect();
    assert_eq!(leftovers.len(), 1, "{report:#}");
    assert_eq!(leftovers[0]["rule"]["netns"], host.host.as_str());
    let rule = leftovers[0]["rule"]["rule"].as_str().unwrap();
    assert!(
        rule.contains("SPDK_NVMF:old") && rule.contains("4421"),
        "{rule}"
    );
    assert_eq!(report["rules_before_run"].as_array().unwrap().len(), 1);
    let evidence = report["verdict"]["evidence"].to_string();
    assert!(
        evidence.contains("before the command started"),
        "{evidence}"
    );
}

#[test]
fn exit_code_of_the_command_is_tracers() {
    let report = std::env::temp_dir().join(unique("wexit"));
    let out = output(
        tracer()
            .args([
                "watch",
                "--initiator",
                "no_such_ns_w/nope0",
                "--target",
                "no_such_ns_w/nope1",
            ])
            .arg("--report")
            .arg(&report)
            .args(["--", "sh", "-c", "exit 7"]),
    );
    assert_eq!(out.status.code(), Some(7));
    // A failed command always leaves a bundle.
    assert!(report.join("report.md").exists());
    let _ = std::fs::remove_dir_all(report);
}

/// A command that sends nothing over the ports: watch says nothing was observed, and never
/// that the path works.
#[test]
fn a_command_that_sends_nothing_claims_nothing() {
    let lab = tracer_tests::Lab::up("wsn");
    let bundle = lab.watch(&[], &["true"]);
    assert_eq!(bundle.code, 0);
    let json = &bundle.report;
    assert_eq!(
        json["verdict"]["finding"]["kind"], "nothing_observed",
        "{json:#}"
    );
    let summary = json["verdict"]["summary"].as_str().unwrap();
    assert!(!summary.contains(" work."), "{summary}");
}

/// A second watch into a directory that holds a bundle never destroys it: the command runs
/// and its bundle goes to DIR-2; --force replaces the first.
#[test]
fn an_existing_bundle_is_never_overwritten() {
    let lab = tracer_tests::Lab::up("wov");
    let first = lab.watch(&[], &["true"]);
    assert_eq!(first.code, 0);
    let report = first.dir.join("report.json");
    let before = std::fs::read(&report).expect("the first bundle's report.json");
    let mut second_dir = first.dir.clone().into_os_string();
    second_dir.push("-2");
    let second_dir = PathBuf::from(second_dir);
    let _second = TempTree(second_dir.clone());
    let again = |extra: &[&str], marker: &str| {
        output(
            tracer()
                .arg("watch")
                .args(lab.port_args())
                .arg("--report")
                .arg(&first.dir)
                .arg("--always")
                .args(extra)
                .arg("--")
                .args([
                    "touch",
                    &first.dir.with_extension(marker).display().to_string(),
                ]),
        )
    };
    let moved = again(&[], "ran2");
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert_eq!(moved.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("already holds a bundle"), "{stderr}");
    assert!(first.dir.with_extension("ran2").exists(), "the command ran");
    assert_eq!(std::fs::read(&report).expect("report.json"), before);
    assert!(second_dir.join("report.json").exists(), "{stderr}");

    let forced = again(&["--force"], "ran3");
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(std::fs::read(&report).expect("report.json"), before);
    for marker in ["ran2", "ran3"] {
        let _ = std::fs::remove_file(first.dir.with_extension(marker));
    }
}

/// A directory removed on drop.
struct TempTree(PathBuf);

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
