//! `tracer cables` on a lab of "NIC ports": veth ends in one namespace standing for the root
//! namespace, named like E810 ports. cvl_0_0 and cvl_0_1 are meant to be cabled to each other
//! but are cabled crossed with the second NIC (cvl_0_0 ↔ cvl_1_0, cvl_0_1 ↔ cvl_1_1); cvl_2_0
//! and cvl_2_1 are cabled to a switch namespace whose ports run a real lldpd.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_tests::{Namespaces, check, require_root, tracer, unique};

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
        .args(["cables", "--json", "--listen", "4", &lab.spec("cvl_0_0")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tracer");
    // The far end flaps three times while tracer listens.
    std::thread::sleep(Duration::from_secs(2));
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
