//! `tracer monitor` on the lab: a real Prometheus scrapes it, counts are exact, survive a
//! restart, follow the ports, and coexist with another tracer.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Output, Stdio},
};

use tracer_tests::{
    End, Lab, Namespaces, PinDir, Prometheus, TracerRun, assert_pings_crossed, check, count, http,
    output, ping_from, sample, scrape, scrape_until, tracer, unique,
};

/// A metrics address for one test: a port nobody holds now (other monitors, of other runs or
/// users, may hold fixed ones).
fn metrics_address() -> String {
    format!("127.0.0.1:{}", tracer_tests::free_port())
}

/// A lab whose interface names are unique to the test: other tests' labs run at the same time,
/// and a monitor looks for a port wherever it is.
fn lab(tag: &str) -> Lab {
    let suffix: String = unique(tag).chars().rev().take(10).collect();
    Lab::with_names(tag, &format!("i{suffix}"), &format!("t{suffix}"), 4420)
}

fn monitor_args(lab: &Lab, address: &str, pins: &PinDir) -> Vec<String> {
    let mut args = vec!["monitor".to_owned()];
    args.extend(lab.port_args());
    args.extend([
        "--metrics-addr".to_owned(),
        address.to_owned(),
        "--pin-dir".to_owned(),
        pins.arg(),
    ]);
    args
}

fn start(args: &[String], extra: &[&str]) -> TracerRun {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(extra);
    TracerRun::start(&all)
}

/// Ctrl-C: the monitor must exit cleanly.
fn stop(run: TracerRun) {
    let out = run.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "monitor failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A packet counter of one lab end, scraped directly.
fn packets(exposition: &str, netns: &str, interface: &str, direction: &str, kind: &str) -> f64 {
    sample(
        exposition,
        "tracer_packets_total",
        &[
            ("netns", netns),
            ("interface", interface),
            ("direction", direction),
            ("kind", kind),
        ],
    )
    .unwrap_or_else(|| panic!("no {netns}/{interface} {direction} {kind} in:\n{exposition}"))
}

/// The echo counts of a healthy ping exchange, `n` of each, on both ends; and the ARP counts
/// when given (later exchanges may or may not refresh the neighbour entry).
fn assert_pings(exposition: &str, lab: &Lab, n: f64, arp: Option<f64>) {
    let (i, t) = (&lab.initiator, &lab.target);
    let mut expected = vec![
        (i, "egress", "icmp_echo_request", n),
        (t, "ingress", "icmp_echo_request", n),
        (t, "egress", "icmp_echo_reply", n),
        (i, "ingress", "icmp_echo_reply", n),
    ];
    if let Some(arp) = arp {
        expected.extend([
            (i, "egress", "arp_request", arp),
            (t, "ingress", "arp_request", arp),
            (t, "egress", "arp_reply", arp),
            (i, "ingress", "arp_reply", arp),
        ]);
    }
    for (end, direction, kind, value) in expected {
        assert_eq!(
            packets(exposition, &end.netns, &end.interface, direction, kind),
            value,
            "{} {direction} {kind}:\n{exposition}",
            end.spec()
        );
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (Debian package `prometheus`; `cargo xtask setup`)");
    let mut pipe = child.stdin.take().expect("promtool's stdin");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).expect("feeding promtool");
    }
    drop(pipe);
    child.wait_with_output().expect("waiting for promtool")
}

#[test]
fn prometheus_reads_exact_counts() {
    let lab = lab("mpr");
    let pins = PinDir::new();
    let address = metrics_address();
    let _monitor = start(&monitor_args(&lab, &address, &pins), &[]);
    let prometheus = Prometheus::start(&[&address]);
    prometheus.wait_for("up{job=\"tracer\"}", 1.0);

    assert!(lab.ping(5), "ping across a healthy lab failed");
    let (i, t) = (&lab.initiator, &lab.target);
    for (end, direction, kind, value) in [
        (i, "egress", "icmp_echo_request", 5.0),
        (t, "ingress", "icmp_echo_request", 5.0),
        (t, "egress", "icmp_echo_reply", 5.0),
        (i, "ingress", "icmp_echo_reply", 5.0),
        (i, "egress", "arp_request", 1.0),
        (t, "ingress", "arp_request", 1.0),
        (i, "ingress", "icmp_echo_request", 0.0),
    ] {
        prometheus.wait_for(
            &format!(
                "tracer_packets_total{{netns=\"{}\",interface=\"{}\",direction=\"{direction}\",kind=\"{kind}\"}}",
                end.netns, end.interface
            ),
            value,
        );
    }
    for end in [i, t] {
        let labels = format!("netns=\"{}\",interface=\"{}\"", end.netns, end.interface);
        prometheus.wait_for(&format!("tracer_link_carrier{{{labels}}}"), 1.0);
        prometheus.wait_for(&format!("tracer_neighbour_failures_total{{{labels}}}"), 0.0);
        prometheus.wait_for(
            &format!("tracer_port_ingress_hook{{{labels},hook=\"tc\"}}"),
            1.0,
        );
    }
    prometheus.wait_for("tracer_lost_events_total", 0.0);
    prometheus.wait_for("count(tracer_build_info{version!=\"\",kernel!=\"\"})", 1.0);

    // The exposition passes promtool's checks, in both formats.
    let exposition = scrape(&address);
    let checked = promtool(&["check", "metrics"], Some(&exposition));
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let openmetrics = http(
        "GET",
        &address,
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    )
    .expect("scraping OpenMetrics");
    assert_eq!(
        openmetrics.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = openmetrics.text();
    assert!(text.contains("# TYPE tracer_packets counter\n"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn http_serves_metrics_only() {
    let lab = lab("mht");
    let pins = PinDir::new();
    let address = metrics_address();
    let _monitor = start(&monitor_args(&lab, &address, &pins), &[]);

    let get = http("GET", &address, "/metrics", &[]).expect("GET");
    assert_eq!(get.status, 200);
    assert_eq!(
        get.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let head = http("HEAD", &address, "/metrics", &[]).expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let length: usize = head
        .header("Content-Length")
        .and_then(|length| length.parse().ok())
        .expect("Content-Length");
    // The body would have the GET's length, give or take digits of counts that moved.
    assert!(
        length.abs_diff(get.body.len()) < 64,
        "{length} vs {}",
        get.body.len()
    );
    assert_eq!(http("GET", &address, "/", &[]).expect("GET /").status, 404);
    assert_eq!(
        http("POST", &address, "/metrics", &[])
            .expect("POST")
            .status,
        405
    );
    // Garbage is answered and the server goes on.
    let mut stream = std::net::TcpStream::connect(&address).expect("connecting");
    stream
        .write_all(b"\x16\x03\x01 hello\r\n\r\n")
        .expect("writing");
    drop(stream);
    assert_eq!(
        http("GET", &address, "/metrics", &[]).expect("GET").status,
        200
    );
}

#[test]
fn restart_keeps_counts_and_reset_starts_from_zero() {
    let lab = lab("mrs");
    let pins = PinDir::new();
    let address = metrics_address();
    let args = monitor_args(&lab, &address, &pins);
    let (i, t) = (&lab.initiator, &lab.target);

    let monitor = start(&args, &[]);
    assert!(lab.ping(5));
    assert_pings(&scrape(&address), &lab, 5.0, Some(1.0));
    stop(monitor);
    // Nothing stays attached after exit: the XDP hook is free again.
    let links = check(i.exec("ip").args(["link", "show", "dev", &i.interface]));
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("xdp"),
        "{}",
        String::from_utf8_lossy(&links.stdout)
    );

    // Traffic while no monitor runs is not counted; the counts so far are kept.
    assert!(lab.ping(2));
    let monitor = start(&args, &[]);
    assert_pings(&scrape(&address), &lab, 5.0, Some(1.0));
    assert!(lab.ping(5));
    assert_pings(&scrape(&address), &lab, 10.0, None);
    stop(monitor);

    let monitor = start(&args, &["--reset"]);
    assert_pings(&scrape(&address), &lab, 0.0, Some(0.0));
    assert!(lab.ping(5));
    let exposition = scrape(&address);
    assert_eq!(
        packets(
            &exposition,
            &i.netns,
            &i.interface,
            "egress",
            "icmp_echo_request"
        ),
        5.0
    );
    assert_eq!(
        packets(
            &exposition,
            &t.netns,
            &t.interface,
            "ingress",
            "icmp_echo_request"
        ),
        5.0
    );
    stop(monitor);

    // --unpin removes everything the monitor pinned.
    let unpinned = check(
        tracer()
            .args(["monitor", "--unpin", "--pin-dir"])
            .arg(&pins.path),
    );
    let listing = String::from_utf8_lossy(&unpinned.stdout);
    assert_eq!(listing.lines().count(), 4, "{listing}");
    assert!(!pins.path.exists(), "{} still exists", pins.path.display());
}

/// Both ports report `hook` as their ingress hook.
fn assert_ingress_hook(exposition: &str, ends: [&End; 2], hook: &str) {
    for end in ends {
        let labels = [
            ("netns", end.netns.as_str()),
            ("interface", end.interface.as_str()),
            ("hook", hook),
        ];
        assert_eq!(
            sample(exposition, "tracer_port_ingress_hook", &labels),
            Some(1.0),
            "{} should count ingress with {hook}",
            end.spec()
        );
    }
}

/// The monitor first, asked for XDP, `tracer counters` during a run (tc ingress): both
/// count the same five pings exactly.
#[test]
fn monitor_and_counters_count_the_same_pings() {
    let lab = lab("mco");
    let pins = PinDir::new();
    let address = metrics_address();
    let _monitor = start(
        &monitor_args(&lab, &address, &pins),
        &["--ingress-hook", "xdp"],
    );
    let counters = lab.counters();
    assert!(lab.ping(5));
    let report = counters.finish();

    let (i, t) = (&lab.initiator, &lab.target);
    assert_pings_crossed(&report, &lab, 5);
    let exposition = scrape(&address);
    assert_pings(&exposition, &lab, 5.0, Some(1.0));
    assert_ingress_hook(&exposition, [i, t], "xdp");
}

/// `tracer counters` first holds XDP: the monitor counts ingress with tc, says so, and never
/// replaces it.
#[test]
fn monitor_falls_back_to_tc_where_xdp_is_taken() {
    let lab = lab("mtc");
    let pins = PinDir::new();
    let address = metrics_address();
    let counters = lab.counters_with(&["--ingress-hook", "xdp"]);
    let _monitor = start(
        &monitor_args(&lab, &address, &pins),
        &["--ingress-hook", "xdp"],
    );
    assert!(lab.ping(5));
    let exposition = scrape(&address);
    let report = counters.finish();

    let (i, t) = (&lab.initiator, &lab.target);
    assert_pings(&exposition, &lab, 5.0, Some(1.0));
    assert_eq!(count(&report, t, "ingress", "icmp_echo_request"), 5);
    assert_eq!(count(&report, i, "ingress", "icmp_echo_reply"), 5);
    assert_ingress_hook(&exposition, [i, t], "tc");
}

/// Started before the ports exist, the monitor waits for them; it follows the target into
/// another namespace, and attaches again when both are deleted and created anew. The counts
/// (pinned per configured port) go on through all of it.
#[test]
fn follows_ports_that_appear_move_and_come_back() {
    // The ports' names and namespaces, before the lab exists.
    let suffix: String = unique("mfl").chars().rev().take(10).collect();
    let (initiator_if, target_if) = (format!("i{suffix}"), format!("t{suffix}"));
    let base = unique("mfl");
    let elsewhere = format!("{base}-x");
    let _namespaces = Namespaces::create(&[&elsewhere]);
    let (initiator_ns, target_ns) = (format!("{base}-i"), format!("{base}-t"));
    let pins = PinDir::new();
    let address = metrics_address();
    let initiator = format!("{initiator_ns}/{initiator_if}");
    let target = format!("{target_ns}/{target_if}");
    let ports = [
        "--initiator",
        &initiator,
        "--target",
        &target,
        "--metrics-addr",
        &address,
        "--pin-dir",
    ];
    let mut args: Vec<String> = std::iter::once("monitor")
        .chain(ports)
        .map(str::to_owned)
        .collect();
    args.push(pins.arg());
    let _monitor = start(&args, &[]);

    let waiting = scrape(&address);
    for (role, spec) in [("initiator", &initiator), ("target", &target)] {
        let labels = [("role", role), ("spec", spec.as_str())];
        assert_eq!(sample(&waiting, "tracer_port_attached", &labels), Some(0.0));
    }

    let lab_args = ["lab", "up", "--initiator", &initiator, "--target", &target];
    check(tracer().args(lab_args));
    let lab_down = LabDown {
        initiator: initiator.clone(),
        target: target.clone(),
    };
    let attached = |exposition: &str| {
        ["initiator", "target"]
            .iter()
            .all(|role| sample(exposition, "tracer_port_attached", &[("role", role)]) == Some(1.0))
    };
    scrape_until(&address, "both ports attached", attached);
    let ping = |count: u32| ping_from(&initiator_ns, count);
    assert!(ping(5));
    let exposition = scrape(&address);
    assert_eq!(
        packets(
            &exposition,
            &target_ns,
            &target_if,
            "ingress",
            "icmp_echo_request"
        ),
        5.0
    );

    // The target moves: its attachment goes with it, its label follows.
    check(Command::new("ip").args([
        "-n", &target_ns, "link", "set", &target_if, "netns", &elsewhere,
    ]));
    check(Command::new("ip").args([
        "-n",
        &elsewhere,
        "addr",
        "add",
        "10.0.0.2/24",
        "dev",
        &target_if,
    ]));
    check(Command::new("ip").args(["-n", &elsewhere, "link", "set", &target_if, "up"]));
    scrape_until(&address, "the target in its new namespace", |exposition| {
        sample(
            exposition,
            "tracer_link_carrier",
            &[("netns", elsewhere.as_str())],
        )
        .is_some()
    });
    assert!(ping(5));
    let exposition = scrape(&address);
    assert_eq!(
        packets(
            &exposition,
            &elsewhere,
            &target_if,
            "ingress",
            "icmp_echo_request"
        ),
        10.0
    );
    assert_eq!(
        packets(
            &exposition,
            &elsewhere,
            &target_if,
            "egress",
            "icmp_echo_reply"
        ),
        10.0
    );
    assert_eq!(
        packets(
            &exposition,
            &initiator_ns,
            &initiator_if,
            "egress",
            "icmp_echo_request"
        ),
        10.0
    );

    // Deleted and created anew (the veth pair goes with the initiator's namespace).
    drop(lab_down);
    scrape_until(&address, "both ports gone", |exposition| {
        ["initiator", "target"]
            .iter()
            .all(|role| sample(exposition, "tracer_port_attached", &[("role", role)]) == Some(0.0))
    });
    check(tracer().args(lab_args));
    let _lab_down = LabDown {
        initiator: initiator.clone(),
        target: target.clone(),
    };
    scrape_until(&address, "both ports attached again", attached);
    assert!(ping(5));
    let exposition = scrape(&address);
    assert_eq!(
        packets(
            &exposition,
            &target_ns,
            &target_if,
            "ingress",
            "icmp_echo_request"
        ),
        15.0
    );
    assert_eq!(
        packets(
            &exposition,
            &initiator_ns,
            &initiator_if,
            "ingress",
            "icmp_echo_reply"
        ),
        15.0
    );
}

/// `tracer lab down` for a lab a test brought up by hand; runs on drop, on failure too.
struct LabDown {
    initiator: String,
    target: String,
}

impl Drop for LabDown {
    fn drop(&mut self) {
        let result = tracer()
            .args([
                "lab",
                "down",
                "--initiator",
                &self.initiator,
                "--target",
                &self.target,
            ])
            .output();
        if let Err(err) = result {
            eprintln!("lab down could not run: {err}");
        }
    }
}

/// Netfilter drops on the target, neighbour failures on the initiator, carrier loss: the
/// evidence the example alerts fire on, exactly.
#[test]
fn drops_neighbour_failures_and_carrier() {
    let lab = lab("mdr");
    let pins = PinDir::new();
    let address = metrics_address();
    let _monitor = start(&monitor_args(&lab, &address, &pins), &[]);
    let (i, t) = (&lab.initiator, &lab.target);
    check(
        t.exec("iptables")
            .args(["-A", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    assert!(!lab.ping(5), "ping went through an ICMP DROP rule");
    // Nobody has 10.0.0.3: its ARP fails and the queued echo requests are dropped.
    let absent = output(
        i.exec("ping")
            .args(["-c", "3", "-i", "0.2", "-W", "5", "10.0.0.3"]),
    );
    assert!(!absent.status.success());

    let exposition = scrape(&address);
    let value = |name: &str, end: &End, extra: &[(&str, &str)]| {
        let mut labels = vec![
            ("netns", end.netns.as_str()),
            ("interface", end.interface.as_str()),
        ];
        labels.extend(extra);
        sample(&exposition, name, &labels)
    };
    assert_eq!(
        value("tracer_drops_total", t, &[("reason", "NETFILTER_DROP")]),
        Some(5.0),
        "{exposition}"
    );
    // Exported from zero, so that an alert sees the first drop as an increase.
    assert_eq!(
        value("tracer_drops_total", i, &[("reason", "NETFILTER_DROP")]),
        Some(0.0)
    );
    assert_eq!(
        value("tracer_neighbour_failures_total", i, &[]),
        Some(3.0),
        "{exposition}"
    );
    assert_eq!(
        value("tracer_drops_total", i, &[("reason", "NEIGH_FAILED")]),
        Some(3.0)
    );
    assert_eq!(value("tracer_neighbour_failures_total", t, &[]), Some(0.0));
    assert_eq!(value("tracer_link_carrier", i, &[]), Some(1.0));

    // The target goes administratively down: the initiator loses carrier.
    check(t.exec("ip").args(["link", "set", &t.interface, "down"]));
    let initiator_labels = [
        ("netns", i.netns.as_str()),
        ("interface", i.interface.as_str()),
    ];
    scrape_until(&address, "carrier loss on the initiator", |exposition| {
        sample(exposition, "tracer_link_carrier", &initiator_labels) == Some(0.0)
    });
}

#[test]
fn unusable_metrics_address_or_pin_directory_is_a_usage_error() {
    let lab = lab("mad");
    let pins = PinDir::new();
    let pin_dir = pins.arg();
    let one_line_usage_error = |address: &str, pin_dir: &str, extra: &[&str], expect: &str| {
        let mut args = vec!["monitor".to_owned()];
        args.extend(lab.port_args());
        let out = output(
            tracer()
                .args(&args)
                .args(["--metrics-addr", address, "--pin-dir", pin_dir])
                .args(extra),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{address} {extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{address} {extra:?}: {stderr}");
        assert!(stderr.contains(expect), "{address} {extra:?}: {stderr}");
    };
    let address = metrics_address();
    one_line_usage_error("localhost", &pin_dir, &[], "--metrics-addr");
    one_line_usage_error("127.0.0.1:99999", &pin_dir, &[], "--metrics-addr");
    // 192.0.2.0/24 is TEST-NET-1: no interface here has it.
    one_line_usage_error("192.0.2.1:19464", &pin_dir, &[], "cannot serve metrics");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    let taken = taken.local_addr().expect("address").to_string();
    one_line_usage_error(&taken, &pin_dir, &[], "cannot serve metrics");
    one_line_usage_error(&address, "/tmp", &[], "not on a BPF filesystem");
    one_line_usage_error(
        &address,
        &pin_dir,
        &["--reset", "--unpin"],
        "cannot be used with",
    );

    // One monitor per pin directory: two would share, and double, the counts.
    let _monitor = start(&monitor_args(&lab, &address, &pins), &[]);
    one_line_usage_error(&metrics_address(), &pin_dir, &[], "another tracer monitor");
    // --unpin is refused while a monitor uses the directory.
    let out = output(tracer().args(["monitor", "--unpin", "--pin-dir", &pin_dir]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn alert_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus");
    let checked = promtool(
        &[
            "check",
            "rules",
            &rules.join("tracer-alerts.yml").display().to_string(),
        ],
        None,
    );
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let tested = Command::new("promtool")
        .args(["test", "rules", "tracer-alerts.test.yml"])
        .current_dir(&rules)
        .output()
        .expect("running promtool");
    assert!(
        tested.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
}

/// A counters map pinned by a tracer with another layout (here: too few entries) is replaced,
/// not reused: the monitor counts exactly, from zero.
#[test]
fn pinned_map_of_another_layout_is_replaced() {
    use aya::maps::{MapData, MapInfo, PerCpuArray};

    let lab = lab("mly");
    let pins = PinDir::new();
    let address = metrics_address();
    let args = monitor_args(&lab, &address, &pins);
    // A first run makes the pin directory (and mounts bpffs where needed).
    stop(start(&args, &[]));
    let t = &lab.target;
    let pinned = pins
        .path
        .join("ports")
        .join(format!("{}:{}", t.netns, t.interface))
        .join("PACKET_COUNTERS");
    std::fs::remove_file(&pinned).expect("removing the pinned counters");
    PerCpuArray::<MapData, u64>::create(5, 0)
        .expect("creating a map")
        .pin(&pinned)
        .expect("pinning it");

    let monitor = start(&args, &[]);
    assert!(lab.ping(5));
    assert_pings(&scrape(&address), &lab, 5.0, Some(1.0));
    stop(monitor);
    let info = MapInfo::from_pin(&pinned).expect("reading the pinned map");
    // Two directions times ten kinds.
    assert_eq!(info.max_entries(), 20, "{}", pinned.display());
}
