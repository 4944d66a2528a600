//! Hardening (issue #13): the metrics server under abuse, report bundles in directories others
//! control, output that cannot be written, drops that never go backwards, --unpin that removes
//! only tracer's pins, one diagnose at a time, watch's command handling, and smaller edges.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::{
    End, Lab, Namespaces, PinDir, TracerRun, check, diagnose, free_port, http, output, ping_from,
    require_root, sample, scrape, scrape_until, tracer, unique,
};

/// How long the monitor waits for a request's head (tracer's `http::HEAD_DEADLINE`).
const HEAD_DEADLINE: Duration = Duration::from_secs(5);

fn assert_usage_error(out: &Output, mentions: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(mentions), "`{mentions}` not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A lab whose interface names are unique to the test (monitors look everywhere).
fn lab(tag: &str) -> Lab {
    let suffix: String = unique(tag).chars().rev().take(10).collect();
    Lab::with_names(tag, &format!("i{suffix}"), &format!("t{suffix}"), 4420)
}

/// Port arguments naming interfaces that exist nowhere: watch and monitor wait for them.
fn absent_ports(tag: &str) -> Vec<String> {
    let suffix: String = unique(tag).chars().rev().take(10).collect();
    vec![
        "--initiator".into(),
        format!("a{suffix}"),
        "--target".into(),
        format!("b{suffix}"),
    ]
}

/// A scratch directory under /tmp, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&path).expect("creating a scratch directory");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn monitor_args(ports: &[String], address: &str, pins: &PinDir) -> Vec<String> {
    let mut args = vec!["monitor".to_owned()];
    args.extend(ports.iter().cloned());
    args.extend([
        "--metrics-addr".to_owned(),
        address.to_owned(),
        "--pin-dir".to_owned(),
        pins.arg(),
    ]);
    args
}

fn start(args: &[String]) -> TracerRun {
    TracerRun::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn packets(exposition: &str, end: &End, direction: &str, kind: &str) -> Option<f64> {
    sample(
        exposition,
        "tracer_packets_total",
        &[
            ("port", &end.spec()),
            ("direction", direction),
            ("kind", kind),
        ],
    )
}

// 1. Metrics server DoS.

#[test]
fn scrapes_answer_while_more_idle_clients_than_descriptors_hang_on() {
    let lab = lab("dos");
    let pins = PinDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let args = monitor_args(&lab.port_args(), &address, &pins);
    let mut limited = tracer();
    // SAFETY: setrlimit in the forked child before exec; async-signal-safe.
    unsafe {
        limited.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let monitor = TracerRun::start_command(
        limited,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", monitor.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|line| line.starts_with("Max open files") && line.contains(" 256 ")),
        "{limits}"
    );
    assert!(lab.ping(5));
    // More idle connections than tracer has descriptors, all held open while it is scraped.
    let idle: Vec<TcpStream> = (0..320)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    assert!(idle.len() >= 300, "only {} connections", idle.len());
    // Give tracer time to accept them all and to refresh with them open.
    std::thread::sleep(Duration::from_secs(2));
    // The 64 it serves are closed at their 5 s deadline: a scrape gets in well before 12 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exposition = loop {
        match http("GET", &address, "/metrics", &[]) {
            Ok(response) if response.status == 200 => break response.text(),
            Ok(response) => panic!("status {}: {}", response.status, response.text()),
            // Closed at once while 64 others wait for their deadline: try again.
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "no scrape answered within 12 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    for role in ["initiator", "target"] {
        assert_eq!(
            sample(&exposition, "tracer_port_attached", &[("role", role)]),
            Some(1.0),
            "{role}:\n{exposition}"
        );
    }
    for (end, direction, kind) in [
        (&lab.initiator, "egress", "icmp_echo_request"),
        (&lab.target, "ingress", "icmp_echo_request"),
        (&lab.target, "egress", "icmp_echo_reply"),
        (&lab.initiator, "ingress", "icmp_echo_reply"),
    ] {
        assert_eq!(
            packets(&exposition, end, direction, kind),
            Some(5.0),
            "{direction} {kind}:\n{exposition}"
        );
    }
    drop(idle);
    let out = monitor.stop_with(libc::SIGINT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Never out of descriptors, and never a port reported gone while it stayed where it was.
    assert!(!stderr.contains("Too many open files"), "{stderr}");
    assert!(!stderr.contains("gone from"), "{stderr}");
}

/// An unprivileged local user holding about a thousand idle connections, opened in bursts and
/// each kept a few seconds, never keeps the scraper out: every scrape is answered within 2 s.
#[test]
fn scrapes_answer_within_two_seconds_while_a_user_floods_idle_connections() {
    let lab = lab("idle");
    let pins = PinDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let monitor = start(&monitor_args(&lab.port_args(), &address, &pins));
    let port = address.rsplit(':').next().unwrap();
    // Ten bursts of 100 connections, half a second apart, each burst held for 3 s, by the
    // user nobody; bash opens them with /dev/tcp.
    let script = format!(
        "for burst in $(seq 10); do \
           ( for i in $(seq 100); do exec {{fd}}<>/dev/tcp/127.0.0.1/{port} || exit 1; done; sleep 3 ) & \
           sleep 0.5; \
         done; wait"
    );
    let mut flood = Command::new("bash");
    flood.args(["-c", &script]).stderr(Stdio::null());
    // SAFETY: setgroups, setgid and setuid in the forked child before exec; async-signal-safe.
    unsafe {
        flood.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut flood = flood.spawn().expect("bash");
    // Into the flood: once more connections are held than the listener's backlog takes (a
    // slow machine takes longer to open them).
    let port_field = format!(":{:04X} ", port.parse::<u16>().unwrap());
    let held = || {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        tcp.lines()
            .filter(|line| line.contains(&port_field))
            .count()
    };
    let deadline = Instant::now() + tracer_tests::scaled(Duration::from_secs(10));
    while held() <= 128 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = held();
    assert!(
        held > 128,
        "only {held} connections held: the flood did not happen"
    );
    // 2 s natively. In a slowed guest the bound grows with the slowness but stays under the
    // monitor's 5 s head deadline (tracer/src/http.rs), which a scrape kept waiting behind idle
    // connections would run into.
    let bound = (Duration::from_secs(2) * tracer_tests::time_scale()).min(Duration::from_secs(4));
    for scrape in 1..=5 {
        let started = Instant::now();
        let response = http("GET", &address, "/metrics", &[]).unwrap_or_else(|err| {
            panic!(
                "scrape {scrape} refused after {:?}: {err}",
                started.elapsed()
            )
        });
        let took = started.elapsed();
        assert_eq!(response.status, 200, "scrape {scrape}");
        assert!(took < bound, "scrape {scrape} took {took:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        flood.wait().unwrap().success(),
        "the flood's connections were not all opened"
    );
    let out = monitor.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// 1 and 8: deadlines and HTTP edges, on a monitor whose port the kernel chose.

#[test]
fn http_edges_port_zero_and_sighup() {
    require_root();
    let pins = PinDir::new();
    let args = monitor_args(&absent_ports("hte"), "127.0.0.1:0", &pins);
    let mut monitor = start(&args);
    let line = monitor.stdout_line();
    let address = line
        .strip_prefix("serving metrics at http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_owned();
    assert!(!address.ends_with(":0"), "{address}");
    assert!(scrape(&address).contains("tracer_build_info"));

    let raw = |request: &[u8]| {
        let mut stream = TcpStream::connect(&address).expect("connecting");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).expect("writing");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let bare_lf = raw(b"GET /metrics HTTP/1.1\nHost: x\n\n");
    assert!(bare_lf.starts_with("HTTP/1.1 200 "), "{bare_lf}");
    let absolute = raw(format!("GET http://{address}/metrics HTTP/1.1\r\n\r\n").as_bytes());
    assert!(absolute.starts_with("HTTP/1.1 200 "), "{absolute}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 17 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = raw(&huge);
    assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");

    // A client that sends half a head is closed at its deadline: the monitor ends the stream
    // with nothing said, and not before the deadline. Waited on as an event, not timed: the
    // monitor's timers share one thread with its look for the ports, which emulation and load
    // stretch. The read timeout only keeps a monitor that never closes from hanging the test.
    let started = Instant::now();
    let mut slow = TcpStream::connect(&address).expect("connecting");
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut rest = Vec::new();
    let ended = slow.read_to_end(&mut rest);
    assert!(
        ended.is_ok(),
        "the monitor kept a half-sent head open for {:?}: {ended:?}",
        started.elapsed()
    );
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        started.elapsed() >= HEAD_DEADLINE,
        "closed after {:?}, before the deadline",
        started.elapsed()
    );

    // SIGHUP looks for the ports again; it does not stop the monitor.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(monitor.pid(), libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(scrape(&address).contains("tracer_port_attached"));
    let out = monitor.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// 2. Report bundles never follow a planted link.

/// A file outside the report directory that a planted link points at; it must stay as it is.
fn victim(scratch: &Scratch) -> PathBuf {
    let path = scratch.0.join("victim");
    std::fs::write(&path, b"precious\n").unwrap();
    path
}

fn assert_untouched(victim: &Path) {
    assert_eq!(
        std::fs::read(victim).unwrap(),
        b"precious\n",
        "victim changed"
    );
}

#[test]
fn diagnose_report_never_follows_a_planted_link() {
    require_root();
    let outside = Scratch::new("dlo");
    let victim = victim(&outside);
    for name in [".tracer-write-test", "report.md", "report.json", "path.svg"] {
        let report = Scratch::new("dlr");
        std::os::unix::fs::symlink(&victim, report.0.join(name)).unwrap();
        let out = output(
            tracer()
                .args(["diagnose", "--json"])
                .args(absent_ports("dl"))
                .arg("--report")
                .arg(&report.0),
        );
        assert_usage_error(&out, "symbolic link");
        assert_untouched(&victim);
    }
}

#[test]
fn watch_bundle_never_follows_a_planted_link() {
    require_root();
    let outside = Scratch::new("wlo");
    let victim = victim(&outside);
    // Both ports in one namespace of the test's: the bundle holds snapshot/NETNS.txt.
    let netns = unique("wl");
    let _namespaces = Namespaces::create(&[&netns]);
    check(Command::new("ip").args([
        "-n", &netns, "link", "add", "wla", "type", "veth", "peer", "name", "wlb",
    ]));
    let ports = [
        "--initiator".to_owned(),
        format!("{netns}/wla"),
        "--target".to_owned(),
        format!("{netns}/wlb"),
    ];
    let snapshot_file = format!("snapshot/{netns}.txt");
    for name in [
        ".tracer-write-test",
        "report.md",
        "report.json",
        "capture.pcapng",
        "path.svg",
        "timeline.svg",
        "snapshot",
        snapshot_file.as_str(),
    ] {
        let report = Scratch::new("wlr");
        std::fs::create_dir_all(report.0.join("snapshot")).unwrap();
        if name == "snapshot" {
            std::fs::remove_dir(report.0.join("snapshot")).unwrap();
            std::os::unix::fs::symlink(&outside.0, report.0.join(name)).unwrap();
        } else {
            std::os::unix::fs::symlink(&victim, report.0.join(name)).unwrap();
        }
        let out = output(
            tracer()
                .arg("watch")
                .args(&ports)
                .arg("--always")
                .arg("--report")
                .arg(&report.0)
                .args(["--", "true"]),
        );
        // The verdict line comes first; the refusal is the one line after it.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let last = stderr.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains(&report.0.display().to_string()),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_untouched(&victim);
        assert!(!outside.0.join(format!("{netns}.txt")).exists(), "{name}");
    }
    // Without links the same bundle is written.
    let report = Scratch::new("wlr");
    let out = output(
        tracer()
            .arg("watch")
            .args(&ports)
            .arg("--always")
            .arg("--report")
            .arg(&report.0)
            .args(["--", "true"]),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.0.join(&snapshot_file).is_file());
}

// 3. Output errors never panic.

#[test]
fn output_that_cannot_be_written_is_exit_1_or_141_never_a_panic() {
    require_root();
    let full = output(
        tracer()
            .args(["diagnose", "--json"])
            .args(absent_ports("full"))
            .stdout(std::fs::File::create("/dev/full").unwrap()),
    );
    let stderr = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot write the output"), "{stderr}");

    let lab = Lab::up("pipe");
    let mut counters = tracer()
        .arg("counters")
        .args(lab.port_args())
        .args(["--duration", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tracer");
    // The reader goes away before tracer prints: `tracer counters | (exit 0)`.
    drop(counters.stdout.take());
    let out = counters.wait_with_output().expect("waiting for tracer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "quietly: {stderr}");
}

// 4. Counters that go backwards.

#[test]
fn drops_never_go_backwards_when_a_port_is_recreated() {
    let lab = lab("mono");
    let pins = PinDir::new();
    let address = format!("127.0.0.1:{}", free_port());
    let monitor = start(&monitor_args(&lab.port_args(), &address, &pins));
    let (i, t) = (&lab.initiator, &lab.target);
    check(
        t.exec("iptables")
            .args(["-I", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let dropped = |exposition: &str| {
        sample(
            exposition,
            "tracer_drops_total",
            &[("port", t.spec().as_str()), ("reason", "NETFILTER_DROP")],
        )
    };
    assert!(!ping_from(&i.netns, 3));
    scrape_until(&address, "3 netfilter drops", |e| dropped(e) == Some(3.0));

    // The pair deleted and created again in the same namespaces: new devices, new ifindexes.
    lab.remake_pair();
    // Several refreshes later (the old place is forgotten at the first), the series holds; it
    // may be missing only while the port is (between the delete and the add).
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let exposition = scrape(&address);
        let value = dropped(&exposition);
        assert!(
            matches!(value, None | Some(3.0)),
            "went backwards:\n{exposition}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let exposition = scrape(&address);
    assert_eq!(dropped(&exposition), Some(3.0), "lost:\n{exposition}");
    assert!(!ping_from(&i.netns, 2));
    scrape_until(&address, "5 netfilter drops", |e| dropped(e) == Some(5.0));
    let out = monitor.stop_with(libc::SIGINT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// 5. --unpin removes only what tracer pinned, on bpffs.

#[test]
fn unpin_removes_only_tracers_maps_on_bpffs() {
    require_root();
    // Files of the names tracer pins, on an ordinary filesystem.
    let scratch = Scratch::new("unp");
    let port = scratch.0.join("ports/ns:eth0");
    std::fs::create_dir_all(&port).unwrap();
    std::fs::create_dir_all(scratch.0.join("drops")).unwrap();
    let files = [
        port.join("PACKET_COUNTERS"),
        scratch.0.join("drops/DROP_COUNTERS"),
        scratch.0.join("drops/LOST_EVENTS"),
    ];
    for file in &files {
        std::fs::write(file, b"data\n").unwrap();
    }
    let out = output(
        tracer()
            .args(["monitor", "--unpin", "--pin-dir"])
            .arg(&scratch.0),
    );
    assert_usage_error(&out, "not on a BPF filesystem");
    for file in &files {
        assert_eq!(
            std::fs::read(file).unwrap(),
            b"data\n",
            "{}",
            file.display()
        );
    }

    // A pin directory that is not on bpffs is refused before anything is made.
    let missing = scratch.0.join("new/pins");
    let out = output(
        tracer()
            .args([
                "monitor",
                "--metrics-addr",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .args(absent_ports("unp"))
            .arg("--pin-dir")
            .arg(&missing),
    );
    assert_usage_error(&out, "not on a BPF filesystem");
    assert!(!scratch.0.join("new").exists(), "a directory was created");

    // A directory where a pin goes, on bpffs: named, never removed.
    let pins = PinDir::new();
    let in_the_way = pins.path.join("drops/DROP_COUNTERS");
    std::fs::create_dir_all(&in_the_way).unwrap();
    let out = output(&mut pins.unpin());
    assert_usage_error(&out, "is a directory where tracer pins a map");
    assert!(in_the_way.is_dir());
    std::fs::remove_dir(&in_the_way).unwrap();
}

// 6. Two diagnose runs at once.

#[test]
fn two_diagnose_runs_at_once_take_turns() {
    let lab = Lab::up("two");
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let ports = lab.port_args();
            std::thread::spawn(move || diagnose(&ports, &[]))
        })
        .collect();
    for run in runs {
        let (code, report) = run.join().expect("diagnose thread");
        assert_eq!(report["verdict"]["class"], "ok", "{report:#}");
        assert_eq!(code, 0);
        for probe in report["exchanges"].as_array().expect("probes") {
            let sent = probe["outcome"]["sent"].as_u64().unwrap();
            let answers = probe["outcome"]["answered"].as_u64().unwrap()
                + probe["outcome"]["refused"].as_u64().unwrap();
            assert!(sent > 0, "{probe}");
            assert_eq!(answers, sent, "{probe}");
            assert_eq!(probe["left_origin"].as_u64(), Some(sent), "mixed: {probe}");
            assert_eq!(probe["reached_peer"].as_u64(), Some(sent), "mixed: {probe}");
        }
    }
    for end in [&lab.initiator, &lab.target] {
        let table = check(end.exec("ip").args(["neigh", "show"]));
        assert_eq!(
            String::from_utf8_lossy(&table.stdout),
            "",
            "neighbours left in {}",
            end.netns
        );
    }
}

// 7. watch and its command.

/// Processes a test started through tracer: SIGKILLed on drop, on failure too.
struct Reap {
    tracer: Option<Child>,
    pids: Vec<i32>,
}

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.pids {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        if let Some(mut child) = self.tracer.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn wait_exited(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if exited(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    exited(pid)
}

/// Starts `tracer watch` around `sh -c script` (with absent ports: it just waits for them),
/// and reads the pid the script writes to `$PIDFILE`.
fn watch_script(scratch: &Scratch, script: &str, extra: &[&str]) -> (Reap, i32) {
    let pidfile = scratch.0.join("pid");
    let child = tracer()
        .arg("watch")
        .args(absent_ports("wch"))
        .arg("--report")
        .arg(scratch.0.join("report"))
        .args(extra)
        .args(["--", "sh", "-c", script])
        .env("PIDFILE", &pidfile)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tracer");
    let mut reap = Reap {
        tracer: Some(child),
        pids: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the script never wrote its pid");
        std::thread::sleep(Duration::from_millis(50));
    };
    reap.pids.push(pid);
    (reap, pid)
}

fn signal_tracer(reap: &Reap, signal: i32) {
    let pid = reap.tracer.as_ref().expect("tracer").id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, signal) };
}

fn tracer_exit(reap: &mut Reap, within: Duration) -> Option<i32> {
    let child = reap.tracer.as_mut().expect("tracer");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("polling tracer") {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "tracer still runs after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watch_command_not_found_is_127_not_executable_is_126() {
    require_root();
    let scratch = Scratch::new("wnf");
    let run = |command: &str| {
        output(
            tracer()
                .arg("watch")
                .args(absent_ports("wnf"))
                .arg("--report")
                .arg(scratch.0.join("report"))
                .args(["--", command]),
        )
    };
    let missing = run("/nonexistent/tracer-test-command");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(127), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("command not found"), "{stderr}");

    let script = scratch.0.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let denied = run(script.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(126), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot execute"), "{stderr}");
}

#[test]
fn watch_signals_reach_the_commands_whole_group() {
    require_root();
    let scratch = Scratch::new("wgr");
    // The script's own child is the grandchild of tracer.
    let (mut reap, grandchild) =
        watch_script(&scratch, "sleep 300 & echo $! > \"$PIDFILE\"; wait", &[]);
    signal_tracer(&reap, libc::SIGTERM);
    let code = tracer_exit(&mut reap, Duration::from_secs(15));
    assert_eq!(code, Some(128 + libc::SIGTERM));
    assert!(
        wait_exited(grandchild, Duration::from_secs(5)),
        "the grandchild outlived SIGTERM"
    );
}

#[test]
fn watch_kills_a_command_that_ignores_sigterm() {
    require_root();
    let scratch = Scratch::new("wig");
    let (mut reap, command) = watch_script(
        &scratch,
        "trap '' TERM; echo $$ > \"$PIDFILE\"; while :; do sleep 0.1; done",
        &["--kill-after", "1"],
    );
    let started = Instant::now();
    signal_tracer(&reap, libc::SIGTERM);
    let code = tracer_exit(&mut reap, Duration::from_secs(15));
    assert_eq!(code, Some(128 + libc::SIGKILL));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "killed before the grace period: {:?}",
        started.elapsed()
    );
    assert!(wait_exited(command, Duration::from_secs(5)));
}

#[test]
fn sigkill_of_tracer_kills_the_command() {
    require_root();
    let scratch = Scratch::new("wsk");
    let (mut reap, command) = watch_script(&scratch, "echo $$ > \"$PIDFILE\"; exec sleep 300", &[]);
    signal_tracer(&reap, libc::SIGKILL);
    tracer_exit(&mut reap, Duration::from_secs(5));
    assert!(
        wait_exited(command, Duration::from_secs(5)),
        "the command outlived tracer"
    );
}

// 8. Smaller edges.

#[test]
fn lab_up_never_deletes_a_namespace_it_did_not_make() {
    require_root();
    let (mine, other) = (unique("lbm"), unique("lbo"));
    let _namespaces = Namespaces::create(&[&other]).adopt(&mine);
    let args = [
        "--initiator".to_owned(),
        format!("{mine}/lba"),
        "--target".to_owned(),
        format!("{other}/lbb"),
    ];
    let out = output(tracer().args(["lab", "up"]).args(&args));
    assert_usage_error(&out, &format!("ip netns del {other}"));
    assert!(Path::new("/var/run/netns").join(&other).exists());
    assert!(!Path::new("/var/run/netns").join(&mine).exists());
    // Its own lab it re-creates, as before.
    let lab = Lab::up("lbr");
    check(tracer().args(["lab", "up"]).args(lab.port_args()));
    assert!(lab.ping(1));
}

#[test]
fn contradicting_or_out_of_range_arguments_are_usage_errors() {
    require_root();
    let same = ["--initiator-ip", "10.0.0.7", "--target-ip", "10.0.0.7"];
    let out = output(tracer().arg("diagnose").args(same));
    assert_usage_error(&out, "--initiator-ip and --target-ip");
    let out = output(tracer().arg("watch").args(same).args(["--", "true"]));
    assert_usage_error(&out, "--initiator-ip and --target-ip");
    for frames in ["0", "100001"] {
        let out = output(
            tracer()
                .args(["watch", "--capture-frames", frames])
                .args(["--", "true"]),
        );
        assert_usage_error(&out, "--capture-frames");
    }
}

#[test]
fn systemd_unit_limits_descriptors_and_capabilities() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/tracer-monitor.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .to_owned()
    };
    assert_eq!(value("LimitNOFILE"), "65536");
    let capabilities = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_ADMIN";
    assert_eq!(value("CapabilityBoundingSet"), capabilities);
    assert_eq!(value("AmbientCapabilities"), capabilities);
}
