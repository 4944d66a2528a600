//! Faults that come and go while `tracer watch` runs a command that pings for about 8 s: each
//! is found, named and placed in time although it is gone by the end; a failing command on a
//! healthy network is not blamed on it. Each case runs five times ([`tracer_tests::repeats`]).

use std::{path::PathBuf, process::Command};

use serde_json::Value;
use tracer_tests::{Lab, Namespaces, WatchBundle, check, unique};
use tracer_topology::lab::{DEFAULT_BRIDGE, bridge_peer};

const RUNS: usize = 5;
/// How far a window's ends may be from when the test made and healed the fault, natively:
/// times the measured slowness under emulation ([`tracer_tests::time_scale`]).
const WITHIN_S: f64 = 0.5;

/// When the script started, made the fault and healed it (Unix seconds), written by the
/// script itself.
struct Times {
    file: PathBuf,
}

impl Times {
    fn new() -> Self {
        Self {
            file: std::env::temp_dir().join(unique("flaky-times")),
        }
    }

    /// A script that pings (or runs `traffic`) in the background, makes the fault at +2 s,
    /// heals it at +5 s, stops the traffic 3 s later and fails.
    fn script(&self, traffic: &str, make: &str, heal: &str) -> String {
        self.script_held(traffic, make, "true", heal)
    }

    /// [`Self::script`], with the fault held past its 3 s until shell condition `met` holds
    /// (the traffic has met the fault), so that a slow machine, where making the fault and
    /// the traffic itself take longer, still sees the traffic meet it. `met` is asked for at
    /// most 30 s times the measured slowness; the test's checks say what was missed.
    fn script_held(&self, traffic: &str, make: &str, met: &str, heal: &str) -> String {
        let file = self.file.display();
        let looks = 150 * tracer_tests::time_scale();
        format!(
            "start=$(date +%s.%N)
{traffic} &
traffic=$!
sleep 2
made=$(date +%s.%N)
{make}
sleep 3
looks=0
until {met} || [ $looks -ge {looks} ]; do sleep 0.2; looks=$((looks + 1)); done
healed=$(date +%s.%N)
{heal}
sleep 3
kill $traffic
wait $traffic
echo $start $made $healed > {file}
exit 1"
        )
    }

    /// (made, healed) in seconds after tracer began watching, by the command's start in the
    /// timeline.
    fn read(&self, report: &Value) -> (f64, f64) {
        let text = std::fs::read_to_string(&self.file).expect("the script wrote its times");
        let times: Vec<f64> = text
            .split_whitespace()
            .map(|time| time.parse().unwrap())
            .collect();
        let started = report["timeline"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|event| event["kind"] == "command")
            .and_then(|event| event["seconds"].as_f64())
            .expect("the command's start in the timeline");
        (started + times[1] - times[0], started + times[2] - times[0])
    }
}

impl Drop for Times {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Pings every 200 ms until the script stops it.
fn ping(lab: &Lab) -> String {
    format!(
        "ip netns exec {} ping -q -i 0.2 -W 1 10.0.0.2 > /dev/null",
        lab.initiator.netns
    )
}

fn watch(lab: &Lab, script: &str) -> WatchBundle {
    let bundle = lab.watch(&[], &["sh", "-c", script]);
    assert_eq!(
        bundle.code, 1,
        "the command's exit code: {:#}",
        bundle.report
    );
    bundle
}

fn ms(value: &Value) -> f64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a time: {value}")) as f64
        / 1000.0
}

/// `what` happened within [`WITHIN_S`] of `expected`.
fn near(what: &str, seconds: f64, expected: f64, report: &Value) {
    near_within(what, seconds, expected, WITHIN_S, report);
}

fn near_within(what: &str, seconds: f64, expected: f64, within: f64, report: &Value) {
    let within = within * f64::from(tracer_tests::time_scale());
    // Printed for `--nocapture`: how far off each run was.
    eprintln!("{what}: {:+.3} s", seconds - expected);
    assert!(
        (seconds - expected).abs() <= within,
        "{what} at {seconds:.3} s, expected {expected:.3} s: {}",
        what_was_seen(report)
    );
}

/// The finding's loss window starts and ends with the fault.
fn loss_placed(report: &Value, made: f64, healed: f64) {
    let loss = &report["verdict"]["finding"]["loss"];
    near("loss start", ms(&loss["first_ms"]), made, report);
    near("loss end", ms(&loss["last_ms"]), healed, report);
    assert!(loss["unanswered"].as_u64().unwrap() >= 5, "{loss:#}");
}

fn finding<'a>(report: &'a Value, class: &str, kind: &str) -> &'a Value {
    let finding = &report["verdict"]["finding"];
    assert_eq!(
        (&report["verdict"]["class"], &finding["kind"]),
        (&class.into(), &kind.into()),
        "{}",
        what_was_seen(report)
    );
    finding
}

/// The parts of a report that tell why a verdict was reached: for a failing test's message.
fn what_was_seen(report: &Value) -> String {
    [
        "verdict",
        "exchanges",
        "drops",
        "windows",
        "environment",
        "timeline",
    ]
    .iter()
    .map(|key| format!("{key}: {:#}", report[key]))
    .collect::<Vec<_>>()
    .join("\n")
}

/// `iptables` (a program of that name) inserts an ICMP DROP rule in the target's namespace for
/// 3 s; watch names it and places it. Legacy x_tables announce nothing: watch reads them every
/// 500 ms, so their window's ends can be that much later still, and the report says so.
fn a_rule_came_and_went(iptables: &str, legacy: bool) {
    let within = if legacy { WITHIN_S + 0.5 } else { WITHIN_S };
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::up("frule");
        let times = Times::new();
        let iptables = format!("ip netns exec {} {iptables}", lab.target.netns);
        // Held until the rule has dropped 5 echo requests (its packet counter, first field).
        let script = times.script_held(
            &ping(&lab),
            &format!("{iptables} -I INPUT 1 -p icmp -j DROP"),
            &format!(
                "[ \"$({iptables} -w -nvxL INPUT 1 | awk '{{print $1}}')\" -ge 5 ] 2>/dev/null"
            ),
            &format!("{iptables} -D INPUT -p icmp -j DROP"),
        );
        let bundle = watch(&lab, &script);
        let report = &bundle.report;
        let (made, healed) = times.read(report);
        let found = finding(report, "netfilter", "transient_rule");
        let rule = &found["rule"];
        assert_eq!(rule["rule"], "-A INPUT -p icmp -j DROP", "{found:#}");
        assert_eq!(rule["netns"], lab.target.netns.as_str());
        assert_eq!(
            (&rule["table"], &rule["chain"]),
            (&"filter".into(), &"INPUT".into())
        );
        near_within("rule added", ms(&rule["added_ms"]), made, within, report);
        near_within(
            "rule removed",
            ms(&rule["removed_ms"]),
            healed,
            within,
            report,
        );
        assert!(rule["dropped"].as_u64().unwrap() >= 5, "{found:#}");
        loss_placed(report, made, healed);
        let limitation = format!("legacy x_tables in {} read every 500 ms", lab.target.netns);
        assert_eq!(
            report.to_string().contains(&limitation),
            legacy,
            "{limitation:?} in the limitations: {:#}",
            report["environment"]
        );
    }
}

#[test]
fn a_rule_that_came_and_went_is_named_and_placed() {
    a_rule_came_and_went("iptables", false);
}

#[test]
fn a_legacy_rule_that_came_and_went_is_named_and_placed() {
    if Command::new("iptables-legacy")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped: iptables-legacy is not installed (`cargo xtask setup` installs iptables, which provides it)"
        );
        return;
    }
    a_rule_came_and_went("iptables-legacy", true);
}

/// How far a rule's ends may be from when the test made and healed it while only bulk data
/// flowed, natively: half of the 500 ms watch then waits between looks, so a rule change placed
/// at the next look, not when nftables announced it, misses it about every other run.
const ANNOUNCED_WITHIN_S: f64 = 0.25;

/// A rule added and removed while only the port's data segments flow (a storage test's bulk:
/// nothing is captured, and watch reads the counters only every 500 ms): nftables announces
/// both changes, which wake watch, so each is placed when it happened.
#[test]
fn a_rule_that_came_and_went_during_bulk_data_is_placed() {
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::up("fbulk");
        let times = Times::new();
        // Data only, from before the rule to after it: it ends by itself within the
        // script's 8 s.
        let bulk = format!("sh -c '{}'", lab.bulk_data_script(7));
        // A rule for nothing the test sends: the data goes on, and nothing wakes watch but
        // the rule's announcement.
        let iptables = format!("ip netns exec {} iptables -w", lab.target.netns);
        let rule = "INPUT -p udp --dport 9 -j DROP";
        let script = times.script(
            &bulk,
            &format!("{iptables} -I {rule}"),
            &format!("{iptables} -D {rule}"),
        );
        let bundle = watch(&lab, &script);
        let report = &bundle.report;
        let sent = tracer_tests::count(&report["counters"], &lab.initiator, "egress", "tcp_port");
        assert!(sent > 1000, "only {sent} segments: no bulk data");
        let (made, healed) = times.read(report);
        let window = report["windows"]["rules"]
            .as_array()
            .expect("rule windows")
            .iter()
            .find(|window| window["rule"].as_str().unwrap_or("").contains("--dport 9"))
            .unwrap_or_else(|| panic!("the rule's window is missing: {}", what_was_seen(report)));
        near_within(
            "rule added",
            ms(&window["added_ms"]),
            made,
            ANNOUNCED_WITHIN_S,
            report,
        );
        near_within(
            "rule removed",
            ms(&window["removed_ms"]),
            healed,
            ANNOUNCED_WITHIN_S,
            report,
        );
    }
}

#[test]
fn a_port_that_lost_carrier_for_a_while_is_named_and_placed() {
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::virt("fcar");
        let times = Times::new();
        // The initiator's veth peer in the bridge: down, the initiator has no carrier.
        let peer = format!(
            "ip -n {} link set {}",
            lab.initiator.netns,
            bridge_peer(&lab.initiator.interface)
        );
        let script = times.script(&ping(&lab), &format!("{peer} down"), &format!("{peer} up"));
        let bundle = watch(&lab, &script);
        let report = &bundle.report;
        let (made, healed) = times.read(report);
        let found = finding(report, "cable", "carrier_lost");
        assert_eq!(found["port"]["interface"], lab.initiator.interface.as_str());
        assert_eq!(found["port"]["netns"], lab.initiator.netns.as_str());
        // A veth port's carrier change is urgent to linkwatch (its iflink is its peer, not
        // itself: net/core/link_watch.c), so it is announced at once, not batched for up to a
        // second as a physical port's can be.
        let window = &found["window"];
        near("carrier lost", ms(&window["lost_ms"]), made, report);
        near("carrier back", ms(&window["back_ms"]), healed, report);
        // Without carrier the neighbour entry is flushed: ARP goes unanswered until the
        // entry fails, and the echo requests wait in its queue, to be sent once it resolves.
        let loss = &found["loss"];
        near("loss start", ms(&loss["first_ms"]), made, report);
        assert!(
            ms(&loss["last_ms"]) <= healed + WITHIN_S * f64::from(tracer_tests::time_scale()),
            "{loss:#}"
        );
    }
}

#[test]
fn an_address_removed_for_a_while_is_named_and_placed() {
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::up("faddr");
        let times = Times::new();
        // As SPDK's discovery_remove_ifc.sh does to the target's port.
        let address = format!(
            "ip -n {} address {{}} 10.0.0.2/24 dev {}",
            lab.target.netns, lab.target.interface
        );
        let script = times.script(
            &ping(&lab),
            &address.replace("{}", "del"),
            &address.replace("{}", "add"),
        );
        let bundle = watch(&lab, &script);
        let report = &bundle.report;
        let (made, healed) = times.read(report);
        let found = finding(report, "neighbour", "address_removed");
        let window = &found["window"];
        assert_eq!(window["address"], "10.0.0.2", "{found:#}");
        assert_eq!(window["interface"], lab.target.interface.as_str());
        assert_eq!(window["netns"], lab.target.netns.as_str());
        near("address removed", ms(&window["removed_ms"]), made, report);
        near("address back", ms(&window["back_ms"]), healed, report);
        loss_placed(report, made, healed);
    }
}

#[test]
fn a_mac_changed_under_a_stale_neighbour_entry_is_named_and_placed() {
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::up("fmac");
        let times = Times::new();
        let old = lab.target.mac();
        let new = "02:00:5e:00:53:99";
        let set = format!(
            "ip -n {} link set {} address",
            lab.target.netns, lab.target.interface
        );
        let script = times.script(
            &ping(&lab),
            &format!("{set} {new}"),
            &format!("{set} {old}"),
        );
        let bundle = watch(&lab, &script);
        let report = &bundle.report;
        let (made, healed) = times.read(report);
        let found = finding(report, "neighbour", "stale_neighbour");
        let window = &found["window"];
        assert_eq!(window["entry_mac"], old.as_str(), "{found:#}");
        assert_eq!(window["port_mac"], new, "{found:#}");
        assert_eq!(window["address"], "10.0.0.2");
        assert_eq!(window["interface"], lab.initiator.interface.as_str());
        near("MAC changed", ms(&window["changed_ms"]), made, report);
        near("entry right again", ms(&window["until_ms"]), healed, report);
        loss_placed(report, made, healed);
    }
}

#[test]
fn two_hosts_answering_arp_for_the_target_are_both_named() {
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::virt("fdup");
        let times = Times::new();
        // A leftover namespace on the same bridge, taking the target's address for a while.
        let leftover = format!("{}-x", unique("fdup"));
        let _namespaces = Namespaces::create(&[&leftover]);
        let (rogue, rogue_peer) = ("rogue0", format!("rg{}", std::process::id() % 100_000));
        check(Command::new("ip").args([
            "link",
            "add",
            rogue,
            "netns",
            &leftover,
            "type",
            "veth",
            "peer",
            "name",
            &rogue_peer,
            "netns",
            &lab.initiator.netns,
        ]));
        check(Command::new("ip").args([
            "-n",
            &lab.initiator.netns,
            "link",
            "set",
            &rogue_peer,
            "master",
            DEFAULT_BRIDGE,
            "up",
        ]));
        check(Command::new("ip").args(["-n", &leftover, "link", "set", rogue, "up"]));
        let rogue_mac = tracer_tests::mac_of(&leftover, rogue);
        let target_mac = lab.target.mac();
        // Every ping asks ARP anew, as an entry that expires would.
        let traffic = format!(
            "while :; do ip -n {0} neigh flush dev {1}; ip netns exec {0} ping -c 1 -W 0.2 10.0.0.2 > /dev/null; sleep 0.2; done",
            lab.initiator.netns, lab.initiator.interface
        );
        let address = format!("ip -n {leftover} addr");
        // Held until the leftover has been asked for the address: answering a request, it
        // keeps an entry for the asker.
        let script = times.script_held(
            &format!("({traffic})"),
            &format!("{address} add 10.0.0.2/24 dev {rogue}"),
            &format!("ip -n {leftover} neigh show 10.0.0.1 | grep -q ."),
            &format!("{address} del 10.0.0.2/24 dev {rogue}"),
        );
        let bundle = watch(&lab, &script);
        let report = &bundle.report;
        let (made, healed) = times.read(report);
        let found = finding(report, "neighbour", "duplicate_address");
        let owners = found["shared"]["owners"].as_array().unwrap();
        assert_eq!(found["shared"]["address"], "10.0.0.2");
        let owner = |mac: &str| {
            owners
                .iter()
                .find(|owner| owner["mac"] == mac)
                .unwrap_or_else(|| panic!("{mac} not among {owners:#?}"))
        };
        let (target, leftover_owner) = (owner(&target_mac), owner(&rogue_mac));
        assert_eq!(target["netns"], lab.target.netns.as_str());
        assert_eq!(target["interface"], lab.target.interface.as_str());
        assert_eq!(leftover_owner["netns"], leftover.as_str());
        assert_eq!(leftover_owner["interface"], rogue);
        near(
            "second MAC's first answer",
            ms(&leftover_owner["first_ms"]),
            made,
            report,
        );
        near(
            "second MAC's last answer",
            ms(&leftover_owner["last_ms"]),
            healed,
            report,
        );
    }
}

#[test]
fn a_failing_command_on_a_healthy_network_is_not_blamed_on_it() {
    for _ in 0..tracer_tests::repeats(RUNS) {
        let lab = Lab::up("fok");
        let script = format!(
            "ip netns exec {} ping -q -c 20 -i 0.2 10.0.0.2 > /dev/null; exit 3",
            lab.initiator.netns
        );
        let bundle = lab.watch(&[], &["sh", "-c", &script]);
        assert_eq!(bundle.code, 3, "watch's exit code is the command's");
        let report = &bundle.report;
        let found = finding(report, "ok", "path_works");
        let icmp = found["carried"]
            .as_array()
            .unwrap()
            .iter()
            .find(|carried| carried["exchange"] == "icmp_forward")
            .unwrap_or_else(|| panic!("no ICMP counted: {found:#}"));
        assert_eq!((&icmp["sent"], &icmp["answered"]), (&20.into(), &20.into()));
        let summary = report["verdict"]["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("The network carried everything"),
            "{summary}"
        );
        let markdown = std::fs::read_to_string(bundle.dir.join("report.md")).unwrap();
        let first_sentence = markdown
            .lines()
            .find(|line| line.starts_with("**"))
            .unwrap();
        assert!(first_sentence.contains("20 of 20"), "{markdown}");
    }
}
