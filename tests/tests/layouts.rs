//! SPDK's three layouts, built by `tracer lab up --layout` in a namespace standing for the
//! host's (never the real one), and found by every command with no port flags.

use std::process::Command;

use serde_json::Value;
use tracer_tests::{
    LayoutLab, PinDir, TempDir, TracerRun, diagnose, output, require_root, sample, scrape_until,
    spdk_pairs, tracer, unique,
};
use tracer_topology::layouts::{TCP_PORT, drop_rule};

/// diagnose with no port flag: (exit code, the layout found, each pair's class).
fn diagnose_found(lab: &LayoutLab) -> (i32, Value, Vec<String>) {
    let (code, json) = diagnose(&lab.scope(), &[]);
    let classes = json["pairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no pairs: {json:#}"))
        .iter()
        .map(|pair| {
            pair["verdict"]["class"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    (code, json["layout"].clone(), classes)
}

fn builds_and_every_pair_is_found_ok(layout: &'static str) {
    let lab = LayoutLab::up(layout);
    let (code, found, classes) = diagnose_found(&lab);
    assert_eq!(found["choice"], "found", "{found:#}");
    let layouts = found["layouts"].as_array().expect("layouts");
    assert_eq!(layouts.len(), 1, "{found:#}");
    assert_eq!(layouts[0]["name"], layout);
    assert_eq!(layouts[0]["missing"], Value::Array(Vec::new()), "{found:#}");
    let expected = spdk_pairs(layout);
    let pairs = layouts[0]["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), expected.len(), "{found:#}");
    for (pair, (initiator, target, initiator_ip, target_ip)) in pairs.iter().zip(&expected) {
        assert_eq!(
            pair["initiator"]["spec"],
            format!("{}/{initiator}", lab.root)
        );
        assert_eq!(
            pair["target"]["spec"],
            format!("{}/{target}", lab.target_netns())
        );
        assert_eq!(pair["initiator"]["ip"], *initiator_ip);
        assert_eq!(pair["target"]["ip"], *target_ip);
        assert_eq!(pair["target"]["address_from"], "configured");
    }
    assert_eq!(classes, vec!["ok"; expected.len()], "{found:#}");
    assert_eq!(code, 0);
    // The layout's own bridge-side peers are never the other version's leftovers.
    let (_, json) = diagnose(&lab.scope(), &[]);
    for pair in json["pairs"].as_array().expect("pairs") {
        for side in ["initiator", "target"] {
            assert!(pair[side]["stale_peers"].is_null(), "{pair:#}");
        }
    }
}

#[test]
fn phy_is_built_found_and_ok() {
    builds_and_every_pair_is_found_ok("phy");
}

#[test]
fn virt_is_built_found_and_ok() {
    builds_and_every_pair_is_found_ok("virt");
}

#[test]
fn virt_legacy_is_built_found_and_ok() {
    builds_and_every_pair_is_found_ok("virt-legacy");
}

/// The second pair's initiator peer taken out of the bridge: pair one stays ok, pair two's
/// verdict names the hop, and discovery says what is missing. (Its target peer would not do:
/// both targets share a namespace and a /24, so the first target answers ARP for the second's
/// address too, and the second address stays reachable, as it would for SPDK.)
fn a_fault_on_the_second_pair_only(layout: &'static str, peer: &str) {
    let lab = LayoutLab::up(layout);
    LayoutLab::ip(&lab.root, &["link", "set", peer, "nomaster"]);
    let (code, found, classes) = diagnose_found(&lab);
    assert_eq!(classes[0], "ok", "{found:#}");
    assert_ne!(classes[1], "ok", "{found:#}");
    assert_ne!(code, 0);
    let missing = found["layouts"][0]["missing"].to_string();
    assert!(
        missing.contains(&format!("{peer} is not a port of nvmf_br")),
        "{missing}"
    );
    // The verdict names the detached peer as where the path breaks.
    let (_, json) = diagnose(&lab.scope(), &[]);
    let second = &json["pairs"][1];
    let text = second.to_string();
    assert!(text.contains(peer), "{second:#}");
}

#[test]
fn virt_fault_on_the_second_pair_only() {
    a_fault_on_the_second_pair_only("virt", "initiator1_br");
}

#[test]
fn virt_legacy_fault_on_the_second_pair_only() {
    a_fault_on_the_second_pair_only("virt-legacy", "nvmf_init_br2");
}

/// `tracer watch --always` of the layout found under the lab's root around `sh -c SCRIPT`; its
/// bundle is `bundle` in the directory returned.
fn watch_layout(lab: &LayoutLab, script: &str) -> (std::process::Output, TempDir) {
    let dir = TempDir::new("lw");
    let out = output(
        tracer()
            .args(["watch", "--always", "--netns-root", &lab.root, "--report"])
            .arg(dir.path.join("bundle"))
            .args(["--", "sh", "-c", script]),
    );
    (out, dir)
}

/// The report.json of pair `index` (from 1) in a watch bundle of several pairs.
fn pair_report(bundle: &std::path::Path, index: usize) -> Value {
    let path = bundle.join(format!("pair-{index}/report.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("a report per pair"))
        .expect("report.json is JSON")
}

/// The stale-peer warnings of one pair's verdict: exactly one, `stale` in `nvmf_br`, with the
/// command that removes it.
fn warns_of_the_stale_peer(verdict: &Value, stale: &str, removal: &str) {
    assert_eq!(verdict["class"], "ok", "{verdict:#}");
    let warnings: Vec<&Value> = verdict["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .filter(|fact| fact["kind"] == "stale_peer")
        .collect();
    assert_eq!(warnings.len(), 1, "{verdict:#}");
    assert_eq!(warnings[0]["peer"]["interface"], stale);
    assert_eq!(warnings[0]["peer"]["bridge"], "nvmf_br");
    let lines = verdict["evidence"].to_string();
    assert!(lines.contains(removal), "{verdict:#}");
}

/// A crashed run of the other virtual version left its bridge-side peer in `nvmf_br` (both
/// versions name their bridge so): the path still works, so every pair says ok and warns of it
/// with the command that removes it, in diagnose and in watch's bundle. The far end has a name
/// no layout uses, so that discovery finds the running layout alone.
fn the_other_versions_peer_in_the_bridge_is_named(layout: &'static str, stale: &str) {
    let lab = LayoutLab::up(layout);
    LayoutLab::ip(
        &lab.root,
        &[
            "link", "add", stale, "type", "veth", "peer", "name", "far_end",
        ],
    );
    LayoutLab::ip(&lab.root, &["link", "set", stale, "master", "nvmf_br"]);
    LayoutLab::ip(&lab.root, &["link", "set", stale, "up"]);
    let (code, json) = diagnose(&lab.scope(), &[]);
    let pairs = json["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), spdk_pairs(layout).len(), "{json:#}");
    let removal = format!("ip netns exec {} ip link del {stale}", lab.root);
    for pair in pairs {
        warns_of_the_stale_peer(&pair["verdict"], stale, &removal);
    }
    assert_eq!(code, 0, "{json:#}");

    // watch around one ping per pair: each pair's report carries the same warning.
    let pings: Vec<String> = spdk_pairs(layout)
        .iter()
        .map(|(initiator, _, _, target_ip)| {
            format!(
                "ip netns exec {} ping -c 2 -i 0.2 -W 2 -I {initiator} {target_ip}",
                lab.root
            )
        })
        .collect();
    let (out, dir) = watch_layout(&lab, &pings.join(" && "));
    let report = dir.path.join("bundle");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for index in 1..=pairs.len() {
        warns_of_the_stale_peer(&pair_report(&report, index)["verdict"], stale, &removal);
    }
}

#[test]
fn a_legacy_peer_left_in_the_virt_bridge_is_named() {
    the_other_versions_peer_in_the_bridge_is_named("virt", "nvmf_init_br");
}

#[test]
fn a_virt_peer_left_in_the_legacy_bridge_is_named() {
    the_other_versions_peer_in_the_bridge_is_named("virt-legacy", "initiator0_br");
}

/// `ping -c COUNT -I DEV DESTINATION` inside `netns`. Its answers may not come back by DEV:
/// two ports of one namespace on one /24 both answer ARP for either address (SPDK's virtual
/// layouts are so), so the answer may land on the other port, which the bound socket ignores.
/// What DEV sends is exact all the same.
fn ping_out_of(netns: &str, interface: &str, destination: &str, count: u32) {
    output(Command::new("ip").args([
        "netns",
        "exec",
        netns,
        "ping",
        "-c",
        &count.to_string(),
        "-i",
        "0.05",
        "-W",
        "1",
        "-I",
        interface,
        destination,
    ]));
}

/// Each port sends COUNT echo requests of its own: every port's egress count is exact,
/// whichever port of the shared namespace the answers come in by.
fn monitor_counts_every_port(layout: &'static str) {
    let lab = LayoutLab::up(layout);
    let pins = PinDir::new();
    let address = format!("127.0.0.1:{}", tracer_tests::free_port());
    let mut args = vec!["monitor", "--metrics-addr", &address];
    let pin_dir = pins.arg();
    args.extend(["--pin-dir", &pin_dir, "--netns-root", &lab.root]);
    let run = TracerRun::start(&args);
    let pairs = spdk_pairs(layout);
    let target_netns = lab.target_netns();
    let mut expected = Vec::new();
    for (index, (initiator, target, initiator_ip, target_ip)) in pairs.iter().enumerate() {
        let count = 3 + index as u32;
        ping_out_of(&lab.root, initiator, target_ip, count);
        ping_out_of(&target_netns, target, initiator_ip, count);
        expected.push((
            index,
            "initiator",
            format!("{}/{initiator}", lab.root),
            count,
        ));
        expected.push((index, "target", format!("{target_netns}/{target}"), count));
    }
    let exposition = scrape_until(&address, "every port's requests", |exposition| {
        expected.iter().all(|(pair, role, port, count)| {
            let pair = pair.to_string();
            sample(
                exposition,
                "tracer_packets_total",
                &[
                    ("role", role),
                    ("pair", &pair),
                    ("port", port),
                    ("direction", "egress"),
                    ("kind", "icmp_echo_request"),
                ],
            ) == Some(f64::from(*count))
        })
    });
    assert_eq!(
        exposition
            .lines()
            .filter(|line| line.starts_with("tracer_port_attached{") && line.ends_with(" 1"))
            .count(),
        2 * pairs.len(),
        "{exposition}"
    );
    let out = run.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn monitor_counts_the_four_ports_of_virt() {
    monitor_counts_every_port("virt");
}

#[test]
fn monitor_counts_the_four_ports_of_virt_legacy() {
    monitor_counts_every_port("virt-legacy");
}

#[test]
fn monitor_counts_the_phy_pair() {
    monitor_counts_every_port("phy");
}

/// watch, with no port flag, follows both targets of the layout out of their namespace and
/// back, and writes one verdict per pair. The pings wait until tracer counts on both targets
/// again (`until_counted_on`): before tcx a ping that races tracer's new attachment can go
/// uncounted at the target or be dropped as the qdisc is added, and in CI's 5.10 guest pair 2
/// once said cable so (one whole-suite run in four).
fn watch_follows_both_targets(layout: &'static str) {
    let lab = LayoutLab::up(layout);
    let pairs = spdk_pairs(layout);
    let target_netns = lab.target_netns();
    let away = format!("{}-away", lab.root);
    let mut script = format!("set -e\nip netns add {away}\n");
    for (_, target, _, _) in &pairs {
        script.push_str(&format!(
            "ip -n {target_netns} link set {target} netns {away}\n"
        ));
    }
    script.push_str("sleep 0.5\n");
    for (_, target, _, target_ip) in &pairs {
        script.push_str(&format!(
            "ip -n {away} link set {target} netns {target_netns}\n\
             ip -n {target_netns} addr add {target_ip}/24 dev {target}\n\
             ip -n {target_netns} link set {target} up\n"
        ));
    }
    for (_, target, _, _) in &pairs {
        script.push_str(&tracer_tests::until_counted_on(&target_netns, target));
    }
    for (initiator, _, _, target_ip) in &pairs {
        script.push_str(&format!(
            "ip netns exec {} ping -c 2 -i 0.2 -W 2 -I {initiator} {target_ip}\n",
            lab.root
        ));
    }
    script.push_str(&format!("ip netns del {away}\n"));
    let (out, dir) = watch_layout(&lab, &script);
    let report = dir.path.join("bundle");
    let _ = Command::new("ip").args(["netns", "del", &away]).output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let markdown = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(report.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    let timeline = json["timeline"].to_string();
    for (_, target, _, _) in &pairs {
        assert!(
            timeline.contains(&format!("{target} moved")) || timeline.contains(&away),
            "no move of {target} in the timeline: {timeline}"
        );
    }
    if pairs.len() > 1 {
        assert!(markdown.contains("## Pairs"), "{markdown}");
        for index in 1..=pairs.len() {
            let pair = pair_report(&report, index);
            assert_eq!(pair["verdict"]["class"], "ok", "pair {index}: {pair:#}");
        }
    }
    assert!(markdown.contains("## Layout"), "{markdown}");
}

#[test]
fn watch_follows_both_targets_of_virt() {
    watch_follows_both_targets("virt");
}

#[test]
fn watch_follows_both_targets_of_virt_legacy() {
    watch_follows_both_targets("virt-legacy");
}

/// Nothing of any layout in the scope: diagnose says so plainly (exit 2), naming what it
/// looked for; a half-built layout names its missing part.
#[test]
fn none_found_and_half_built_are_said_plainly() {
    require_root();
    let root = unique("N");
    let _namespaces = tracer_tests::Namespaces::create(&[&root]);
    let out = output(tracer().args(["diagnose", "--netns-root", &root]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no SPDK layout found"), "{stderr}");
    assert!(
        stderr.contains("nvmf_init_if") && stderr.contains("initiator0"),
        "{stderr}"
    );

    let lab = LayoutLab::up("virt-legacy");
    LayoutLab::ip(&lab.root, &["link", "del", "nvmf_init_if2"]);
    let (_, found, classes) = diagnose_found(&lab);
    assert_eq!(classes.len(), 2, "{found:#}");
    let missing = found["layouts"][0]["missing"].to_string();
    assert!(
        missing.contains("initiator nvmf_init_if2 is not in namespace"),
        "{missing}"
    );
}

/// A monitor on a virtual layout lab with SPDK's tag file holding `first`; stopped, and its
/// lab, pins and tag removed, on drop.
struct TaggedMonitor {
    run: TracerRun,
    address: String,
    tag: std::path::PathBuf,
    _dir: TempDir,
    _pins: PinDir,
    lab: LayoutLab,
}

impl TaggedMonitor {
    fn start(first: &str) -> Self {
        let lab = LayoutLab::up("virt");
        let pins = PinDir::new();
        let dir = TempDir::new("tag");
        let tag = dir.path.join(".run_test_name");
        std::fs::write(&tag, first).expect("writing the tag");
        let address = format!("127.0.0.1:{}", tracer_tests::free_port());
        let run = TracerRun::start(&[
            "monitor",
            "--metrics-addr",
            &address,
            "--pin-dir",
            &pins.arg(),
            "--netns-root",
            &lab.root,
            "--test-tag-file",
            &tag.display().to_string(),
        ]);
        Self {
            run,
            address,
            tag,
            _dir: dir,
            _pins: pins,
            lab,
        }
    }

    /// Writes `name` to the tag and signals, as run_test does; returns the scrape naming it,
    /// which names one test only.
    fn switch_to(&self, name: &str) -> String {
        std::fs::write(&self.tag, format!("{name}\n")).expect("writing the tag");
        self.signal();
        let exposition = scrape_until(&self.address, name, |exposition| {
            sample(exposition, "tracer_test_info", &[("test", name)]) == Some(1.0)
        });
        assert_eq!(
            exposition
                .lines()
                .filter(|line| line.starts_with("tracer_test_info{"))
                .count(),
            1,
            "{exposition}"
        );
        exposition
    }

    fn signal(&self) {
        // SAFETY: signalling our own child, still running.
        unsafe { libc::kill(self.run.pid(), libc::SIGUSR1) };
    }

    /// Stops the monitor as systemd does and checks it ended well.
    fn stop(self) {
        let out = self.run.stop_with(libc::SIGINT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// SPDK's run_test writes the test's name to the tag file and signals SIGUSR1: the monitor
/// exports the name as tracer_test_info, and the next one after the next signal.
#[test]
fn monitor_reads_the_running_test_at_each_sigusr1() {
    let monitor = TaggedMonitor::start("nvmf_tcp\n");
    scrape_until(&monitor.address, "the first test", |exposition| {
        sample(exposition, "tracer_test_info", &[("test", "nvmf_tcp")]) == Some(1.0)
    });
    for name in ["nvmf_timeout", "nvmf_discovery_remove_ifc"] {
        let exposition = monitor.switch_to(name);
        // On no counter.
        assert!(
            !exposition
                .lines()
                .any(|l| l.starts_with("tracer_packets_total{") && l.contains("test=")),
            "{exposition}"
        );
    }
    monitor.stop();
}

/// The monitor counts the rules with SPDK's SPDK_NVMF comment in each namespace of the ports
/// (the lab's own: the FORWARD accept and one INPUT accept per initiator), again at SIGUSR1, and
/// says when the tag file names no test (`test=""`): what TracerSpdkRulesWithoutTest joins on.
#[test]
fn monitor_counts_spdk_rules_and_says_when_no_test_runs() {
    let monitor = TaggedMonitor::start("");
    let (lab, address) = (&monitor.lab, &monitor.address);
    let target_netns = lab.target_netns();
    let rules = |host: f64, targets: f64| {
        let (root, target_netns) = (lab.root.clone(), target_netns.clone());
        move |exposition: &str| {
            sample(exposition, "tracer_spdk_rules", &[("netns", &root)]) == Some(host)
                && sample(exposition, "tracer_spdk_rules", &[("netns", &target_netns)])
                    == Some(targets)
        }
    };
    let exposition = scrape_until(address, "the lab's three SPDK rules", rules(3.0, 0.0));
    assert_eq!(
        sample(&exposition, "tracer_test_info", &[("test", "")]),
        Some(1.0),
        "{exposition}"
    );
    // As host/timeout.sh does, in the targets' namespace this time; SIGUSR1 counts at once.
    drop_rule(&target_netns, TCP_PORT)
        .add()
        .expect("adding SPDK's DROP rule");
    monitor.signal();
    scrape_until(address, "the rule added", rules(3.0, 1.0));
    monitor.switch_to("nvmf_timeout");
    monitor.stop();
}

/// packaging/tracer-monitor.service's ExecStart as written, the binary path substituted, run on
/// one layout: every pair's ports are found and counted. What a test must change is changed and
/// said: its own metrics address and pin directory (tests run side by side), and the lab's
/// stand-in for the host namespace (the unit looks in the real one).
fn the_unit_counts_every_pair(layout: &'static str) {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/tracer-monitor.service"),
    )
    .expect("the unit file");
    let exec_start = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec_start.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/tracer"), "{exec_start}");
    let address = format!("127.0.0.1:{}", tracer_tests::free_port());
    let mut args: Vec<&str> = words.collect();
    let at = args
        .iter()
        .position(|arg| *arg == "--metrics-addr")
        .expect("--metrics-addr in ExecStart");
    args[at + 1] = &address;
    let lab = LayoutLab::up(layout);
    let pins = PinDir::new();
    let pin_dir = pins.arg();
    args.extend(["--pin-dir", &pin_dir, "--netns-root", &lab.root]);
    let run = TracerRun::start_command(Command::new(tracer_tests::tracer_bin()), &args);
    let pairs = spdk_pairs(layout);
    let target_netns = lab.target_netns();
    let ports: Vec<(String, &str, String)> = pairs
        .iter()
        .enumerate()
        .flat_map(|(index, (initiator, target, _, _))| {
            [
                (
                    index.to_string(),
                    "initiator",
                    format!("{}/{initiator}", lab.root),
                ),
                (
                    index.to_string(),
                    "target",
                    format!("{target_netns}/{target}"),
                ),
            ]
        })
        .collect();
    let exposition = scrape_until(&address, "every pair's ports counted", |exposition| {
        ports.iter().all(|(pair, role, port)| {
            sample(
                exposition,
                "tracer_port_attached",
                &[("role", role), ("pair", pair), ("port", port)],
            ) == Some(1.0)
        })
    });
    for (pair, role, port) in &ports {
        assert!(
            sample(
                &exposition,
                "tracer_packets_total",
                &[
                    ("role", role),
                    ("pair", pair),
                    ("port", port),
                    ("direction", "egress")
                ],
            )
            .is_some(),
            "no packet series for {role} {port}: {exposition}"
        );
    }
    assert_eq!(
        exposition
            .lines()
            .filter(|line| line.starts_with("tracer_port_attached{"))
            .count(),
        ports.len(),
        "{exposition}"
    );
    let out = run.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_unit_counts_the_phy_pair() {
    the_unit_counts_every_pair("phy");
}

#[test]
fn the_unit_counts_both_virt_pairs() {
    the_unit_counts_every_pair("virt");
}

#[test]
fn the_unit_counts_both_virt_legacy_pairs() {
    the_unit_counts_every_pair("virt-legacy");
}
