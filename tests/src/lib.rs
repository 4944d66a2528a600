//! Helpers for tracer's integration tests: a lab guard that always removes its namespaces, a
//! running tracer, and work inside a namespace.
//!
//! Test traffic stays between addresses inside namespaces the tests create.

use std::{
    fs::File,
    io::Read as _,
    marker::PhantomData,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;
use tracer_topology::{
    Network, Topology,
    lab::{DEFAULT_INITIATOR_ADDRESS, DEFAULT_TARGET_ADDRESS},
};

pub const INITIATOR_IP: &str = "10.0.0.1";
pub const TARGET_IP: &str = "10.0.0.2";

/// How many times slower than natively this machine runs tracer: `cargo xtask kernels`
/// measures it in each guest (the same work timed on the host and in the guest) and passes it
/// in TRACER_TESTS_TIME_SCALE; 1 elsewhere.
pub fn time_scale() -> u32 {
    std::env::var("TRACER_TESTS_TIME_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// How many times a test that repeats a case to show it is steady runs it: `natively` on the
/// host; once in a `cargo xtask kernels` guest (which sets TRACER_TESTS_TIME_SCALE), where a
/// case costs 5-30 times as much and one run shows what the kernel does.
pub fn repeats(natively: usize) -> usize {
    if std::env::var_os("TRACER_TESTS_TIME_SCALE").is_some() {
        1
    } else {
        natively
    }
}

/// A hang guard's bound on this machine: `native` times the measured slowness. Only for
/// waits that end on an event; no test times tracer with it.
pub fn scaled(native: Duration) -> Duration {
    native * time_scale()
}

/// The tracer binary under test: `cargo xtask test` passes the release build.
pub fn tracer_bin() -> PathBuf {
    std::env::var_os("TRACER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tracer"))
}

pub fn tracer() -> Command {
    Command::new(tracer_bin())
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "integration tests need root: run `cargo xtask test`"
    );
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let found = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    found >= (major, minor)
}

/// The tc programs of one hook of `end`, by name: tcx links (6.6 on), else the filters of its
/// clsact qdisc (`tc filter show`).
pub fn tc_programs(end: &End, ingress: bool) -> Vec<String> {
    let hook = if ingress { "ingress" } else { "egress" };
    if kernel_at_least(6, 6) {
        let interface = end.interface.clone();
        return in_netns(&end.netns, move || {
            use aya::programs::{SchedClassifier, TcAttachType};
            let attach = if ingress {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            let (_, programs) =
                SchedClassifier::query_tcx(&interface, attach).expect("querying tcx");
            programs
                .iter()
                .map(|program| program.name_as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        })
        .join()
        .expect("query thread");
    }
    let shown = output(
        end.exec("tc")
            .args(["filter", "show", "dev", &end.interface, hook]),
    );
    // "filter protocol all pref 1 bpf chain 0 handle 0x1 tracer_ingress_tc direct-action ..."
    String::from_utf8_lossy(&shown.stdout)
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let handle = words.iter().position(|word| *word == "handle")?;
            words.get(handle + 2).map(|name| (*name).to_owned())
        })
        .collect()
}

/// Shell lines that wait until tracer counts on `interface` in `netns` again, after a test moved
/// it there: before tcx (6.6) a move takes the port's qdisc and tracer's filters with it, and
/// tracer attaches anew when it next looks, which emulation and load put off past a script's
/// next lines. Waiting also keeps the test's frames clear of that attachment: adding the clsact
/// qdisc to an up port stops its transmit queue for a moment, and frames leaving then are
/// dropped (QDISC_DROP). The script exits 99 when tracer never attaches. Nothing on tcx
/// kernels, where the programs move with the port.
pub fn until_counted_on(netns: &str, interface: &str) -> String {
    if kernel_at_least(6, 6) {
        return String::new();
    }
    let on =
        |hook: &str| format!("tc -n {netns} filter show dev {interface} {hook} | grep -q tracer_");
    format!(
        "tries=0
until {} && {}; do
  tries=$((tries + 1))
  [ $tries -lt 1200 ] || {{ echo 'tracer never attached to {interface} in {netns}' >&2; exit 99; }}
  sleep 0.1
done
",
        on("ingress"),
        on("egress")
    )
}

/// A name unique to this test process and call, short enough for namespace names.
pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "tt{}{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

/// Runs a command and returns its output, failing the test if it cannot start.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"))
}

/// Runs a command that must succeed.
pub fn check(command: &mut Command) -> Output {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One end of the lab.
#[derive(Debug, Clone)]
pub struct End {
    pub netns: String,
    pub interface: String,
}

impl End {
    pub fn spec(&self) -> String {
        format!("{}/{}", self.netns, self.interface)
    }

    /// `ip link set` on the port, `setting` following its name (`["mtu", "9000"]`).
    pub fn set_link(&self, setting: &[&str]) {
        check(
            Command::new("ip")
                .args(["-n", &self.netns, "link", "set", &self.interface])
                .args(setting),
        );
    }

    /// The port's MAC address.
    pub fn mac(&self) -> String {
        mac_of(&self.netns, &self.interface)
    }

    /// A command run inside this end's namespace.
    pub fn exec(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, program]);
        command
    }
}

/// The MAC address of `interface` in `netns`.
pub fn mac_of(netns: &str, interface: &str) -> String {
    // /sys shows the reader's namespace: read it from inside.
    let out = check(Command::new("ip").args([
        "netns",
        "exec",
        netns,
        "cat",
        &format!("/sys/class/net/{interface}/address"),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The built-in lab under unique names, made by `tracer lab up` (the command under test, which
/// builds it with tracer-topology); removed on drop, on failure too.
pub struct Lab {
    pub initiator: End,
    pub target: End,
    pub port: u16,
    // Namespace work is tied to the creating thread's view; keep the guard on it.
    _not_send: PhantomData<*const ()>,
}

impl Lab {
    /// A lab with SPDK's interface names and port, in namespaces of its own.
    pub fn up(tag: &str) -> Self {
        Self::with_names(tag, "cvl_0_1", "cvl_0_0", 4420)
    }

    pub fn with_names(tag: &str, initiator_if: &str, target_if: &str, port: u16) -> Self {
        Self::build(tag, initiator_if, target_if, port, &[])
    }

    /// SPDK's virtual topology (`tracer lab up --virt`): each port's veth peer is a port of
    /// the bridge `nvmf_br` in the initiator's namespace.
    pub fn virt(tag: &str) -> Self {
        Self::build(tag, "cvl_0_1", "cvl_0_0", 4420, &["--virt"])
    }

    /// The lab's veth pair deleted and made again in the same namespaces (new devices, new
    /// ifindexes), each end with its address, up.
    pub fn remake_pair(&self) {
        let (i, t) = (&self.initiator, &self.target);
        check(Command::new("ip").args(["-n", &i.netns, "link", "del", &i.interface]));
        check(Command::new("ip").args([
            "link",
            "add",
            &i.interface,
            "netns",
            &i.netns,
            "type",
            "veth",
            "peer",
            "name",
            &t.interface,
            "netns",
            &t.netns,
        ]));
        for (end, address) in [(i, DEFAULT_INITIATOR_ADDRESS), (t, DEFAULT_TARGET_ADDRESS)] {
            check(Command::new("ip").args([
                "-n",
                &end.netns,
                "addr",
                "add",
                address,
                "dev",
                &end.interface,
            ]));
            end.set_link(&["up"]);
        }
    }

    fn build(tag: &str, initiator_if: &str, target_if: &str, port: u16, extra: &[&str]) -> Self {
        require_root();
        let base = unique(tag);
        let lab = Self {
            initiator: End {
                netns: format!("{base}-i"),
                interface: initiator_if.to_owned(),
            },
            target: End {
                netns: format!("{base}-t"),
                interface: target_if.to_owned(),
            },
            port,
            _not_send: PhantomData,
        };
        check(
            tracer()
                .arg("lab")
                .arg("up")
                .args(lab.port_args())
                .args(extra),
        );
        lab
    }

    /// `tracer counters` watching this lab's two ends.
    pub fn counters(&self) -> TracerRun {
        self.counters_with(&[])
    }

    /// `tracer counters` watching this lab's two ends, with `extra` arguments.
    pub fn counters_with(&self, extra: &[&str]) -> TracerRun {
        let mut args = vec!["counters".to_owned()];
        args.extend(self.port_args());
        args.push("--json".to_owned());
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        TracerRun::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Arguments naming this lab's ports and port number, for tracer's commands.
    pub fn port_args(&self) -> Vec<String> {
        vec![
            "--initiator".into(),
            self.initiator.spec(),
            "--target".into(),
            self.target.spec(),
            "--tcp-port".into(),
            self.port.to_string(),
        ]
    }

    /// A shell script that sends `seconds` of NVMe-sized TCP data (iperf3: a control and a
    /// data connection) from the initiator to the target's port, and ends once it is sent.
    pub fn bulk_data_script(&self, seconds: u32) -> String {
        format!(
            "ip netns exec {t} iperf3 -s -1 -p {port} > /dev/null &
sleep 0.5
ip netns exec {i} iperf3 -c {TARGET_IP} -p {port} -t {seconds} -l 8192 > /dev/null
wait",
            t = self.target.netns,
            i = self.initiator.netns,
            port = self.port,
        )
    }

    /// `tracer diagnose --json` on this lab, plus `extra` arguments: (exit code, report).
    pub fn diagnose(&self, extra: &[&str]) -> (i32, Value) {
        diagnose(&self.port_args(), extra)
    }

    /// `tracer watch --always` around `command` on this lab's ports, with `extra` arguments.
    pub fn watch(&self, extra: &[&str], command: &[&str]) -> WatchBundle {
        let dir = std::env::temp_dir().join(unique("bundle"));
        let out = output(
            tracer()
                .arg("watch")
                .args(self.port_args())
                .arg("--report")
                .arg(&dir)
                .arg("--always")
                .args(extra)
                .arg("--")
                .args(command),
        );
        let json = std::fs::read_to_string(dir.join("report.json")).unwrap_or_else(|err| {
            panic!(
                "no report.json ({err}); exit {:?}; stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        WatchBundle {
            code: out.status.code().expect("tracer exited by a signal"),
            report: serde_json::from_str(&json).expect("report.json is JSON"),
            dir,
        }
    }

    /// Pings the target from the initiator; returns whether every reply came back.
    pub fn ping(&self, count: u32) -> bool {
        ping_from(&self.initiator.netns, count)
    }
}

/// A watch bundle: tracer's exit code, report.json, and the directory (removed on drop).
pub struct WatchBundle {
    pub code: i32,
    pub report: Value,
    pub dir: PathBuf,
}

impl Drop for WatchBundle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Pings the target address from namespace `netns`; returns whether every reply came back.
pub fn ping_from(netns: &str, count: u32) -> bool {
    output(Command::new("ip").args([
        "netns",
        "exec",
        netns,
        "ping",
        "-c",
        &count.to_string(),
        "-i",
        "0.1",
        "-W",
        "1",
        TARGET_IP,
    ]))
    .status
    .success()
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        match tracer()
            .arg("lab")
            .arg("down")
            .args(self.port_args())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("lab down failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(err) => eprintln!("lab down could not run: {err}"),
        }
    }
}

/// `tracer diagnose --json` with `ports` and `extra` arguments: (exit code, report).
pub fn diagnose(ports: &[String], extra: &[&str]) -> (i32, Value) {
    let out = output(
        tracer()
            .arg("diagnose")
            .arg("--json")
            .args(ports)
            .args(extra),
    );
    let code = out.status.code().expect("tracer exited by a signal");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "diagnose printed no JSON ({err}); exit {code}; stdout: {}; stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

/// A layout built by `tracer lab up --layout NAME --netns-root ROOT`; removed on drop.
pub struct LayoutLab {
    pub layout: &'static str,
    /// The namespace standing for the host's.
    pub root: String,
}

impl LayoutLab {
    pub fn up(layout: &'static str) -> Self {
        require_root();
        let lab = Self {
            layout,
            root: unique("L"),
        };
        check(tracer().args(["lab", "up", "--layout", layout, "--netns-root", &lab.root]));
        lab
    }

    /// The namespace the layout moves its targets into, in this lab.
    pub fn target_netns(&self) -> String {
        let name = match self.layout {
            "phy" => "cvl_0_0_ns_spdk",
            "virt" => "nvmf_ns_spdk",
            _ => "nvmf_tgt_ns_spdk",
        };
        format!("{}-{name}", self.root)
    }

    pub fn scope(&self) -> Vec<String> {
        vec!["--netns-root".to_owned(), self.root.clone()]
    }

    /// `ip -n NETNS ARGS`, which must succeed.
    pub fn ip(netns: &str, args: &[&str]) {
        check(Command::new("ip").arg("-n").arg(netns).args(args));
    }
}

impl Drop for LayoutLab {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        let _ = tracer()
            .args([
                "lab",
                "down",
                "--layout",
                self.layout,
                "--netns-root",
                &self.root,
            ])
            .output();
    }
}

/// (initiator, target, initiator address, target address) of each pair, as SPDK names them.
pub fn spdk_pairs(layout: &str) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    match layout {
        "phy" => vec![("cvl_0_1", "cvl_0_0", "10.0.0.1", "10.0.0.2")],
        "virt" => vec![
            ("initiator0", "target0", "10.0.0.1", "10.0.0.2"),
            ("initiator1", "target1", "10.0.0.3", "10.0.0.4"),
        ],
        _ => vec![
            ("nvmf_init_if", "nvmf_tgt_if", "10.0.0.1", "10.0.0.3"),
            ("nvmf_init_if2", "nvmf_tgt_if2", "10.0.0.2", "10.0.0.4"),
        ],
    }
}

/// Namespaces a test makes by hand (the topology builder's guard); deleted on drop, on
/// failure too.
pub struct Namespaces(Network);

impl Namespaces {
    pub fn create(names: &[&str]) -> Self {
        Self::build(&Topology::namespaces(names))
    }

    /// The namespaces and everything `topology` puts in them.
    pub fn build(topology: &Topology) -> Self {
        require_root();
        Self(
            topology
                .build()
                .unwrap_or_else(|err| panic!("building {topology:?}: {err}")),
        )
    }

    /// Also removes `name` on drop: a namespace the code under test will create.
    pub fn adopt(self, name: &str) -> Self {
        Self(self.0.adopt(name))
    }
}

/// A tracer process started with a ready file; killed on drop if still running.
pub struct TracerRun {
    child: Option<Child>,
    ready: PathBuf,
}

impl TracerRun {
    /// Starts tracer with `args` plus `--ready-file`, and waits until it is attached.
    pub fn start(args: &[&str]) -> Self {
        Self::start_command(tracer(), args)
    }

    /// Like [`TracerRun::start`], with a tracer command the caller prepared (limits, say).
    pub fn start_command(mut command: Command, args: &[&str]) -> Self {
        let ready = std::env::temp_dir().join(format!("{}.ready", unique("r")));
        let child = command
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tracer");
        let mut run = Self {
            child: Some(child),
            ready,
        };
        run.wait_ready();
        run
    }

    fn wait_ready(&mut self) {
        let bound = scaled(Duration::from_secs(30));
        let deadline = Instant::now() + bound;
        while !self.ready.exists() {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("polling tracer") {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("tracer exited before it was ready ({status}): {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "tracer not ready within {} s",
                bound.as_secs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The next line tracer prints on its standard output within 30 s, scaled (what came, when
    /// none).
    pub fn stdout_line(&mut self) -> String {
        let stdout = self
            .child
            .as_mut()
            .and_then(|child| child.stdout.as_mut())
            .expect("tracer's stdout");
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        // Byte by byte: nothing after the line is taken from the pipe.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut poll = libc::pollfd {
                fd: stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as i32) };
            if ready <= 0 || !stdout.read(&mut byte).is_ok_and(|n| n == 1) || byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends `signal` and waits for tracer to exit.
    pub fn stop_with(mut self, signal: i32) -> Output {
        let child = self.child.take().expect("running");
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, signal) };
        child.wait_with_output().expect("waiting for tracer")
    }

    /// Ctrl-C, then tracer's JSON report.
    pub fn finish(self) -> Value {
        let out = self.stop_with(libc::SIGINT);
        assert!(
            out.status.success(),
            "tracer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
            panic!(
                "tracer's output is not JSON ({err}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for TracerRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.ready);
    }
}

/// A packet counter from a counters report.
pub fn count(report: &Value, end: &End, direction: &str, kind: &str) -> u64 {
    let port = report["interfaces"]
        .as_array()
        .expect("interfaces array")
        .iter()
        .find(|port| {
            port["netns"] == end.netns.as_str() && port["interface"] == end.interface.as_str()
        })
        .unwrap_or_else(|| panic!("no row for {} in {report}", end.spec()));
    port[direction][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no {direction}.{kind} for {}", end.spec()))
}

/// `pings` echo requests crossed from the lab's initiator to its target, and as many replies
/// came back, according to a counters report.
pub fn assert_pings_crossed(report: &Value, lab: &Lab, pings: u64) {
    let (initiator, target) = (&lab.initiator, &lab.target);
    assert_eq!(
        count(report, initiator, "egress", "icmp_echo_request"),
        pings
    );
    assert_eq!(count(report, target, "ingress", "icmp_echo_request"), pings);
    assert_eq!(count(report, target, "egress", "icmp_echo_reply"), pings);
    assert_eq!(
        count(report, initiator, "ingress", "icmp_echo_reply"),
        pings
    );
}

/// Drops with `reason` and `protocol` in the report's `section` ("drops" or "other_drops")
/// whose namespace is `netns` (and interface `interface`, when given).
pub fn drops(
    report: &Value,
    section: &str,
    netns: &str,
    interface: Option<&str>,
    reason: &str,
    protocol: &str,
) -> u64 {
    report[section]
        .as_array()
        .expect("drops array")
        .iter()
        .filter(|drop| {
            drop["netns"] == netns
                && interface.is_none_or(|name| drop["interface"] == name)
                && drop["reason"] == reason
                && drop["protocol"] == protocol
        })
        .map(|drop| drop["count"].as_u64().expect("count"))
        .sum()
}

/// Runs `work` on a thread that has entered namespace `netns`.
pub fn in_netns<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = Path::new("/var/run/netns").join(netns);
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        // SAFETY: setns on a namespace fd; affects only this new thread.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns {}", path.display());
        work()
    })
}

/// A free TCP port on 127.0.0.1 (free when asked; nothing holds it afterwards).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding 127.0.0.1:0")
}

/// An HTTP/1.1 response: status, header block, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// One HTTP request to `address` ("IP:PORT"), read to the end (the connection is closed).
/// The read timeout only keeps a server that never answers from hanging the test: no test
/// times an answer with it, and a monitor under emulation and load answers seconds late (its
/// look for the ports shares the thread that serves).
pub fn http(
    method: &str,
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {headers}")))?;
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// `tracer monitor`'s metrics, in the Prometheus text format.
pub fn scrape(address: &str) -> String {
    let response = http("GET", address, "/metrics", &[])
        .unwrap_or_else(|err| panic!("scraping {address}: {err}"));
    assert_eq!(response.status, 200, "{}", response.text());
    response.text()
}

/// Scrapes until `check` accepts the exposition, for at most 20 s (scaled).
pub fn scrape_until(address: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let bound = scaled(Duration::from_secs(20));
    let deadline = Instant::now() + bound;
    loop {
        let exposition = scrape(address);
        if check(&exposition) {
            return exposition;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what} within {} s:\n{exposition}",
            bound.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample `name` whose labels include `labels`, in a text exposition.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_block, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.rsplit_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let pairs: Vec<&str> = label_block.split("\",").collect();
        let matches = labels.iter().all(|(key, expected)| {
            pairs.iter().any(|pair| {
                pair.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix("=\""))
                    .map(|rest| rest.strip_suffix('"').unwrap_or(rest))
                    == Some(*expected)
            })
        });
        matches.then(|| value.trim().parse().ok()).flatten()
    })
}

/// A directory for `tracer monitor --pin-dir` of one test, on bpffs; everything tracer pinned
/// in it is removed on drop (`tracer monitor --unpin`), on failure too.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new() -> Self {
        Self {
            path: Path::new("/sys/fs/bpf/tracer-tests").join(unique("pin")),
        }
    }

    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }

    /// `tracer monitor --unpin` on this directory.
    pub fn unpin(&self) -> Command {
        let mut command = tracer();
        command
            .args(["monitor", "--unpin", "--pin-dir"])
            .arg(&self.path);
        command
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        match self.unpin().output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("unpin failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(err) => eprintln!("unpin could not run: {err}"),
        }
        // Shared by the tests: removed once the last one is done.
        let _ = std::fs::remove_dir(Path::new("/sys/fs/bpf/tracer-tests"));
    }
}

/// A Prometheus server (Debian's `prometheus`) on 127.0.0.1, scraping `targets` every second
/// (a quarter of the measured slowness under emulation, where a monitor busy with a refresh
/// outlasts a 1 s scrape timeout and its series go stale), with its data in a directory of its
/// own; killed and removed on drop.
pub struct Prometheus {
    child: Child,
    directory: PathBuf,
    pub address: String,
}

impl Prometheus {
    pub fn start(targets: &[&str]) -> Self {
        let directory = std::env::temp_dir().join(unique("prom"));
        std::fs::create_dir_all(&directory).expect("creating Prometheus's directory");
        let interval = scaled(Duration::from_millis(250))
            .max(Duration::from_secs(1))
            .as_millis();
        let config = format!(
            "global:\n  scrape_interval: {interval}ms\n  scrape_timeout: {interval}ms\n  \
             evaluation_interval: {interval}ms\n\
             scrape_configs:\n  - job_name: tracer\n    static_configs:\n      - targets: [{}]\n",
            targets
                .iter()
                .map(|target| format!("'{target}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let config_path = directory.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing prometheus.yml");
        let log = File::create(directory.join("prometheus.log")).expect("creating the log");
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus (Debian package `prometheus`; `cargo xtask setup`)");
        let mut server = Self {
            child,
            directory,
            address,
        };
        server.wait_ready();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("prometheus.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let bound = scaled(Duration::from_secs(60));
        let deadline = Instant::now() + bound;
        loop {
            if let Ok(response) = http("GET", &self.address, "/-/ready", &[])
                && response.status == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("polling prometheus") {
                panic!("prometheus exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {bound:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instant query: each result's labels and value.
    pub fn query(&self, expression: &str) -> Vec<(Value, f64)> {
        let path = format!("/api/v1/query?query={}", percent_encode(expression));
        let Ok(response) = http("GET", &self.address, &path, &[]) else {
            return Vec::new();
        };
        let Ok(answer) = serde_json::from_slice::<Value>(&response.body) else {
            return Vec::new();
        };
        answer["data"]["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .filter_map(|result| {
                        let value = result["value"][1].as_str()?.parse().ok()?;
                        Some((result["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls `expression` until it has exactly one result of value `expected`.
    pub fn wait_for(&self, expression: &str, expected: f64) {
        let bound = scaled(Duration::from_secs(30));
        let deadline = Instant::now() + bound;
        loop {
            let results = self.query(expression);
            if let [(_, value)] = results.as_slice()
                && *value == expected
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "`{expression}` never became {expected} within {bound:?}; last: {results:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a query string.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A directory in the temporary directory for one test's files; removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A picture tracer wrote (path.svg, timeline.svg), parsed as standalone SVG.
#[derive(Debug)]
pub struct Picture {
    /// Every text drawn, in document order.
    pub texts: Vec<String>,
    /// The stop mark's `data-class` and `data-place`, when the picture has one.
    pub stop: Option<(String, String)>,
    /// Where answers that arrived went no further (`data-place` of each exchange marked so).
    pub after_last: Vec<String>,
}

impl Picture {
    /// Reads and parses `path`; fails the test unless it is an SVG document with the SVG
    /// namespace and a size.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
        let document = roxmltree::Document::parse(&text)
            .unwrap_or_else(|err| panic!("{} is not XML: {err}", path.display()));
        let root = document.root_element();
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg"),
            "{}",
            path.display()
        );
        assert_eq!(root.tag_name().name(), "svg");
        for attribute in ["width", "height", "viewBox"] {
            assert!(
                root.attribute(attribute).is_some(),
                "{}: no {attribute}",
                path.display()
            );
        }
        let texts = root
            .descendants()
            .filter(|node| node.has_tag_name("text"))
            .filter_map(|node| node.text().map(str::to_owned))
            .collect();
        let stop = root
            .descendants()
            .find(|node| node.attribute("id") == Some("stop"))
            .map(|node| {
                (
                    node.attribute("data-class").unwrap_or_default().to_owned(),
                    node.attribute("data-place").unwrap_or_default().to_owned(),
                )
            });
        let after_last = root
            .descendants()
            .filter(|node| node.attribute("class") == Some("after-last"))
            .map(|node| node.attribute("data-place").unwrap_or_default().to_owned())
            .collect();
        Self {
            texts,
            stop,
            after_last,
        }
    }

    pub fn shows(&self, text: &str) -> bool {
        self.texts.iter().any(|drawn| drawn.contains(text))
    }
}
