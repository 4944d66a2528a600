//! `tracer cables` on a lab of "NIC ports": veth ends in one namespace standing for the root
//! namespace, named like E810 ports. cvl_0_0 and cvl_0_1 are meant to be cabled to each other
//! but are cabled crossed with the second NIC (cvl_0_0 ↔ cvl_1_0, cvl_0_1 ↔ cvl_1_1); cvl_2_0
//! and cvl_2_1 are cabled to a switch namespace whose ports run a real lldpd.
//!
//! diagnose and watch on a pair cabled crossed the same way, the target's port in a namespace of
//! its own as SPDK's scripts set it up: their cable verdict names where each end's frames go.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{
    INITIATOR_IP, Namespaces, PinDir, TARGET_IP, TracerRun, WatchBundle, check, diagnose,
    free_port, output, require_root, sample, scrape, scrape_until, tracer, unique,
};

/// The node's namespace and the switch's, removed on drop.
struct CableLab {
    node: String,
    switch: String,
    _namespaces: Namespaces,
}

impl CableLab {
    fn up() -> Self {
        require_root();
        let node = unique("node");
        let switch = unique("sw");
        let namespaces = Namespaces::create(&[&node, &switch]);
        let ip = |args: &[&str]| check(Command::new("ip").args(args));
        for (a, b) in [("cvl_0_0", "cvl_1_0"), ("cvl_0_1", "cvl_1_1")] {
            ip(&[
                "-n", &node, "link", "add", a, "type", "veth", "peer", "name", b,
            ]);
        }
        for (port, switch_port) in [("cvl_2_0", "swp1"), ("cvl_2_1", "swp2")] {
            ip(&[
                "-n",
                &node,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                switch_port,
                "netns",
                &switch,
            ]);
            ip(&["-n", &switch, "link", "set", switch_port, "up"]);
        }
        for port in PORTS {
            ip(&["-n", &node, "link", "set", port, "up"]);
        }
        Self {
            node,
            switch,
            _namespaces: namespaces,
        }
    }

    fn spec(&self, port: &str) -> String {
        format!("{}/{port}", self.node)
    }

    fn specs(&self) -> Vec<String> {
        PORTS.iter().map(|port| self.spec(port)).collect()
    }

    fn set(&self, port: &str, state: &str) {
        check(Command::new("ip").args(["-n", &self.node, "link", "set", port, state]));
    }

    fn admin_up(&self, port: &str) -> bool {
        let out = check(Command::new("ip").args(["-n", &self.node, "-o", "link", "show", port]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let flags = text
            .split('<')
            .nth(1)
            .and_then(|rest| rest.split('>').next());
        flags.is_some_and(|flags| flags.split(',').any(|flag| flag == "UP"))
    }
}

const PORTS: [&str; 6] = [
    "cvl_0_0", "cvl_0_1", "cvl_1_0", "cvl_1_1", "cvl_2_0", "cvl_2_1",
];

/// A real lldpd on the switch's ports, with its own control socket and configuration;
/// stopped on drop.
/// The switch's ports lldpd runs on.
const SWITCH_PORTS: [&str; 2] = ["swp1", "swp2"];

struct Lldpd {
    child: Child,
    directory: PathBuf,
}

impl Lldpd {
    /// lldpd on the switch's ports, once it has sent on each: its start (privilege separation,
    /// its configuration) takes seconds under emulation and load, longer than a listen.
    fn start(netns: &str, system_name: &str) -> Self {
        let directory = std::env::temp_dir().join(unique("lldpd"));
        std::fs::create_dir_all(&directory).expect("lldpd's directory");
        let config = directory.join("lldpd.conf");
        std::fs::write(
            &config,
            format!(
                "configure system hostname {system_name}\n\
                 configure lldp tx-interval 1\n\
                 configure lldp portidsubtype ifname\n"
            ),
        )
        .expect("lldpd's configuration");
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "lldpd", "-d", "-k", "-i"])
            .arg("-u")
            .arg(directory.join("lldpd.socket"))
            .arg("-O")
            .arg(&config)
            .args(["-I", &SWITCH_PORTS.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting lldpd (cargo xtask setup installs it)");
        let mut lldpd = Self { child, directory };
        lldpd.until_sending(netns);
        lldpd
    }

    /// Waits for lldpd's own count of frames sent on each switch port. The limit only keeps a
    /// lldpd that never sends from hanging the test.
    fn until_sending(&mut self, netns: &str) {
        let socket = self.directory.join("lldpd.socket");
        let started = Instant::now();
        loop {
            let statistics = Command::new("ip")
                .args(["netns", "exec", netns, "lldpcli", "-u"])
                .arg(&socket)
                .args(["-f", "keyvalue", "show", "statistics"])
                .output()
                .expect("running lldpcli");
            let text = String::from_utf8_lossy(&statistics.stdout);
            let sent = |port: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(&format!("lldp.{port}.tx.tx=")))
                    .and_then(|count| count.trim().parse::<u64>().ok())
                    .is_some_and(|count| count > 0)
            };
            if SWITCH_PORTS.iter().all(|port| sent(port)) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lldpd ended ({status}) before it sent on {SWITCH_PORTS:?}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "lldpd sent nothing on {SWITCH_PORTS:?} in {:?}: {text}",
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lldpd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, not reaped yet; SIGTERM lets lldpd clean up.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// `tracer cables --json ARGS`: (exit code, report).
fn cables(args: &[String]) -> (i32, Value) {
    let out = tracer()
        .args(["cables", "--json"])
        .args(args)
        .output()
        .expect("running tracer");
    let code = out.status.code().expect("tracer exited by a signal");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "cables printed no JSON ({err}); exit {code}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn port<'a>(report: &'a Value, interface: &str) -> &'a Value {
    report["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|port| port["port"]["interface"] == interface)
        .unwrap_or_else(|| panic!("{interface} missing from {report}"))
}

fn interfaces(ports: &Value) -> Vec<String> {
    ports
        .as_array()
        .expect("a list of ports")
        .iter()
        .map(|port| port["interface"].as_str().expect("interface").to_owned())
        .collect()
}

#[test]
fn crossed_cables_and_a_switch_are_mapped() {
    let lab = CableLab::up();
    let system_name = unique("tor");
    let _lldpd = Lldpd::start(&lab.switch, &system_name);
    let mut args = lab.specs();
    args.extend([
        "--listen".to_owned(),
        "3".to_owned(),
        "--pair".to_owned(),
        format!("{}={}", lab.spec("cvl_0_0"), lab.spec("cvl_0_1")),
    ]);
    let (code, report) = cables(&args);

    for (a, c) in [("cvl_0_0", "cvl_1_0"), ("cvl_0_1", "cvl_1_1")] {
        assert_eq!(interfaces(&port(&report, a)["reaches"]), [c], "{report}");
        assert_eq!(interfaces(&port(&report, c)["reaches"]), [a], "{report}");
        assert_eq!(interfaces(&port(&report, a)["reached_by"]), [c], "{report}");
        assert_eq!(port(&report, a)["left"], 3, "{report}");
    }
    for (ours, theirs) in [("cvl_2_0", "swp1"), ("cvl_2_1", "swp2")] {
        let port = port(&report, ours);
        assert_eq!(
            interfaces(&port["reaches"]),
            Vec::<String>::new(),
            "{report}"
        );
        assert_eq!(
            port["partner"]["system_name"],
            system_name.as_str(),
            "{report}"
        );
        assert_eq!(port["partner"]["port_id"], theirs, "{report}");
    }
    assert!(
        report["duration_ms"].as_u64().expect("duration") < 2000,
        "{report}"
    );

    // The intended pair: a cable verdict naming where each end really goes.
    assert_eq!(code, 10, "{report}");
    let verdict = &report["pairs"][0]["verdict"];
    assert_eq!(verdict["class"], "cable", "{report}");
    assert_eq!(verdict["finding"]["kind"], "cabled_elsewhere", "{report}");
    let summary = verdict["summary"].as_str().expect("summary");
    assert!(
        summary.contains("cvl_0_0's frames arrive at cvl_1_0")
            && summary.contains("cvl_0_1's frames arrive at cvl_1_1"),
        "{summary}"
    );
    let named = verdict["named_thing"].as_str().expect("named thing");
    assert!(
        named.contains("cvl_1_0") && named.contains("cvl_1_1"),
        "{named}"
    );
}

#[test]
fn a_port_down_before_the_map_is_down_after_it() {
    let lab = CableLab::up();
    lab.set("cvl_0_1", "down");
    let (code, report) = cables(&lab.specs());
    assert_eq!(code, 0, "{report}");
    let down = port(&report, "cvl_0_1");
    assert_eq!(down["brought_up"], true, "{report}");
    assert_eq!(down["link"]["admin_up"], false, "{report}");
    // Set up, it sent its frames: they crossed.
    assert_eq!(interfaces(&down["reaches"]), ["cvl_1_1"], "{report}");
    assert!(!lab.admin_up("cvl_0_1"), "tracer left cvl_0_1 up");
    for up in ["cvl_0_0", "cvl_1_0", "cvl_1_1", "cvl_2_0", "cvl_2_1"] {
        assert!(lab.admin_up(up), "{up} is no longer up");
        assert_eq!(port(&report, up)["brought_up"], false, "{report}");
    }
}

#[test]
fn carrier_flaps_are_counted_across_a_run() {
    let lab = CableLab::up();
    let child = tracer()
        .args(["cables", "--json", "--listen", "6", &lab.spec("cvl_0_0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tracer");
    // The far end flaps three times while tracer listens: once it has read the count before,
    // which on a loaded machine (other tests attaching) took over 2 s once.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..3 {
        lab.set("cvl_1_0", "down");
        std::thread::sleep(Duration::from_millis(50));
        lab.set("cvl_1_0", "up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("waiting for tracer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let link = &port(&report, "cvl_0_0")["link"];
    assert_eq!(link["carrier_downs_during_run"], 3, "{report}");
    assert!(
        link["carrier_down_count"].as_u64().expect("down count") >= 3,
        "{report}"
    );
    assert!(
        link["carrier_up_count"].as_u64().expect("up count") >= 3,
        "{report}"
    );
}

#[test]
fn link_state_a_veth_does_not_give_is_named_not_available() {
    let lab = CableLab::up();
    let (_, report) = cables(&[lab.spec("cvl_0_0"), lab.spec("cvl_1_0")]);
    let link = &port(&report, "cvl_0_0")["link"];
    // veth reports speed and duplex, no extended state and no link-down count.
    assert_eq!(link["speed_mbps"], 10000, "{report}");
    assert_eq!(link["duplex"], "full", "{report}");
    assert!(link.get("ext_state").is_none(), "{report}");
    assert!(link.get("link_down_events").is_none(), "{report}");
    let missing: Vec<&str> = link["missing"]
        .as_array()
        .expect("missing")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        missing
            .iter()
            .any(|what| what.starts_with("extended link state"))
            && missing
                .iter()
                .any(|what| what.starts_with("link-down events")),
        "{report}"
    );
    let text = tracer()
        .args(["cables", &lab.spec("cvl_0_0"), &lab.spec("cvl_1_0")])
        .output()
        .expect("running tracer");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("not available: extended link state"),
        "{text}"
    );
}

/// The intended pair cvl_0_1 (initiator, 10.0.0.1, in the node's namespace) and cvl_0_0
/// (target, 10.0.0.2, in the target's namespace), cabled crossed with the second NIC: cvl_0_1
/// to cvl_1_1, cvl_0_0 to cvl_1_0, both in the node's namespace.
struct CrossedPair {
    node: String,
    target: String,
    _namespaces: Namespaces,
}

impl CrossedPair {
    fn up() -> Self {
        require_root();
        let node = unique("node");
        let target = unique("tgt");
        let namespaces = Namespaces::create(&[&node, &target]);
        let ip = |args: &[&str]| check(Command::new("ip").args(args));
        ip(&[
            "-n", &node, "link", "add", "cvl_0_1", "type", "veth", "peer", "name", "cvl_1_1",
        ]);
        ip(&[
            "-n", &node, "link", "add", "cvl_1_0", "type", "veth", "peer", "name", "cvl_0_0",
            "netns", &target,
        ]);
        ip(&[
            "-n",
            &node,
            "addr",
            "add",
            &format!("{INITIATOR_IP}/24"),
            "dev",
            "cvl_0_1",
        ]);
        ip(&[
            "-n",
            &target,
            "addr",
            "add",
            &format!("{TARGET_IP}/24"),
            "dev",
            "cvl_0_0",
        ]);
        for port in ["cvl_0_1", "cvl_1_0", "cvl_1_1"] {
            ip(&["-n", &node, "link", "set", port, "up"]);
        }
        ip(&["-n", &target, "link", "set", "cvl_0_0", "up"]);
        Self {
            node,
            target,
            _namespaces: namespaces,
        }
    }

    /// The pair's ports, and the second NIC's as the ports to look for them at.
    fn args(&self) -> Vec<String> {
        vec![
            "--initiator".to_owned(),
            format!("{}/cvl_0_1", self.node),
            "--target".to_owned(),
            format!("{}/cvl_0_0", self.target),
            "--cable-ports".to_owned(),
            format!("{0}/cvl_1_0,{0}/cvl_1_1", self.node),
        ]
    }

    /// `tracer watch --always` around `command`: the bundle.
    fn watch(&self, command: &[&str]) -> WatchBundle {
        let dir = std::env::temp_dir().join(unique("bundle"));
        let out = output(
            tracer()
                .arg("watch")
                .args(self.args())
                .arg("--report")
                .arg(&dir)
                .arg("--always")
                .arg("--")
                .args(command),
        );
        let json = std::fs::read_to_string(dir.join("report.json")).unwrap_or_else(|err| {
            panic!(
                "no report.json ({err}); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        WatchBundle {
            code: out.status.code().expect("tracer exited by a signal"),
            report: serde_json::from_str(&json).expect("report.json is JSON"),
            dir,
        }
    }
}

/// The cable verdict names the port each end of the pair really reaches.
fn assert_names_the_far_ends(verdict: &Value, report: &Value) {
    assert_eq!(verdict["class"], "cable", "{report}");
    assert_eq!(verdict["finding"]["kind"], "cabled_elsewhere", "{report}");
    let summary = verdict["summary"].as_str().expect("summary");
    assert!(
        summary.contains("cvl_0_1's frames arrive at cvl_1_1")
            && summary.contains("cvl_0_0's frames arrive at cvl_1_0"),
        "{summary}"
    );
    let advice = verdict["advice"].as_str().expect("advice");
    assert!(
        advice.contains("the cable at cvl_0_1 (now reaching cvl_1_1")
            && advice.contains("the cable at cvl_0_0 (now reaching cvl_1_0"),
        "{advice}"
    );
}

#[test]
fn diagnose_names_the_ports_a_crossed_pair_reaches() {
    let lab = CrossedPair::up();
    let (code, report) = diagnose(&lab.args(), &[]);
    assert_eq!(code, 10, "{report}");
    assert_names_the_far_ends(&report["verdict"], &report);
    let initiator = port(&report["cables"], "cvl_0_1");
    assert_eq!(interfaces(&initiator["reaches"]), ["cvl_1_1"], "{report}");
}

#[test]
fn watch_around_a_failing_ping_names_the_ports_a_crossed_pair_reaches() {
    let lab = CrossedPair::up();
    let bundle = lab.watch(&[
        "ip", "netns", "exec", &lab.node, "ping", "-c", "3", "-i", "0.2", "-W", "1", TARGET_IP,
    ]);
    assert_eq!(bundle.code, 1, "ping's failure is the exit code");
    let report = &bundle.report;
    assert_names_the_far_ends(&report["verdict"], report);
    let target = port(&report["cables"], "cvl_0_0");
    assert_eq!(interfaces(&target["reaches"]), ["cvl_1_0"], "{report}");
}

#[test]
fn carrier_flaps_are_counted_across_a_watch_run() {
    let lab = CrossedPair::up();
    // The far end of the initiator's cable goes down and up three times while watch runs.
    let flaps = format!(
        "for i in 1 2 3; do ip -n {0} link set cvl_1_1 down; sleep 0.05; \
         ip -n {0} link set cvl_1_1 up; sleep 0.05; done",
        lab.node
    );
    let bundle = lab.watch(&["sh", "-c", &flaps]);
    let report = &bundle.report;
    let initiator = port(&report["cables"], "cvl_0_1");
    assert_eq!(initiator["link"]["carrier_downs_during_run"], 3, "{report}");
    assert_eq!(initiator["sent"], 0, "watch sent nothing: {report}");
    let target = port(&report["cables"], "cvl_0_0");
    assert_eq!(target["link"]["carrier_downs_during_run"], 0, "{report}");
}

#[test]
fn a_cable_map_waits_for_another_on_the_same_port() {
    let lab = CableLab::up();
    let first = tracer()
        .args(["cables", "--json", "--listen", "2", &lab.spec("cvl_0_0")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tracer");
    let mut first = ChildGuard(first);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (code, report) = cables(&[lab.spec("cvl_0_0"), lab.spec("cvl_1_0")]);
    let waited = started.elapsed();
    assert_eq!(code, 0, "{report}");
    assert!(
        first.0.try_wait().expect("the first map").is_some(),
        "the second map finished while the first still held the port"
    );
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert_eq!(
        interfaces(&port(&report, "cvl_0_0")["reaches"]),
        ["cvl_1_0"]
    );
}

/// The first map's process, killed and reaped on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_monitor_exports_a_crossed_pair_and_its_carrier_downs() {
    let lab = CrossedPair::up();
    let pins = PinDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = vec!["monitor".to_owned()];
    args.extend(lab.args());
    args.extend([
        "--metrics-addr".to_owned(),
        address.clone(),
        "--pin-dir".to_owned(),
        pins.arg(),
        "--cable-map".to_owned(),
    ]);
    let run = TracerRun::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let initiator_spec = format!("{}/cvl_0_1", lab.node);
    let initiator = [
        ("role", "initiator"),
        ("pair", "0"),
        ("port", initiator_spec.as_str()),
    ];
    // Mapped before the monitor said it was ready.
    let exposition = scrape(&address);
    assert_eq!(
        sample(&exposition, "tracer_cable_reaches_peer", &initiator),
        Some(0.0),
        "{exposition}"
    );
    let far_end = format!("cvl_1_1 (namespace {})", lab.node);
    let mut labels = initiator.to_vec();
    labels.extend([("far_end", far_end.as_str()), ("seen_by", "frames")]);
    assert_eq!(
        sample(&exposition, "tracer_cable_far_end_info", &labels),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        sample(&exposition, "tracer_link_speed_mbps", &initiator),
        Some(10000.0),
        "{exposition}"
    );
    let downs = sample(&exposition, "tracer_link_carrier_down_total", &initiator)
        .expect("a carrier down count");

    // The far end of the initiator's cable goes down and up twice: counted at the next look.
    for _ in 0..2 {
        check(Command::new("ip").args(["-n", &lab.node, "link", "set", "cvl_1_1", "down"]));
        check(Command::new("ip").args(["-n", &lab.node, "link", "set", "cvl_1_1", "up"]));
    }
    scrape_until(&address, "two more carrier downs", |exposition| {
        sample(exposition, "tracer_link_carrier_down_total", &initiator) == Some(downs + 2.0)
    });
    let out = run.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
