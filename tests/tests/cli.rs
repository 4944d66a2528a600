//! Usage and environment errors: exit code 2 and one line that names the problem.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use tracer_tests::{
    Lab, PinDir, TracerRun, output, require_root, scaled, tracer, tracer_bin, unique,
};

fn assert_usage_error(out: &Output, mentions: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line, got: {stderr}"
    );
    assert!(stderr.contains(mentions), "`{mentions}` not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn unknown_interface_in_a_namespace() {
    let lab = Lab::up("cif");
    let missing = format!("{}/nosuchport0", lab.target.netns);
    let out = output(tracer().args([
        "counters",
        "--initiator",
        &lab.initiator.spec(),
        "--target",
        &missing,
        "--duration",
        "1",
    ]));
    assert_usage_error(&out, "interface `nosuchport0` not found");
}

#[test]
fn unknown_namespace() {
    require_root();
    let out = output(tracer().args([
        "counters",
        "--initiator",
        "no_such_netns_for_tracer/cvl_0_1",
        "--duration",
        "1",
    ]));
    assert_usage_error(
        &out,
        "network namespace `no_such_netns_for_tracer` not found",
    );
}

/// Without root, every command that needs it says so in one line, exit code 2: `lab` too,
/// before it tries to make anything.
#[test]
fn not_root() {
    let (initiator, target) = (
        format!("{}/cvl_0_1", unique("nri")),
        format!("{}/cvl_0_0", unique("nrt")),
    );
    for args in [
        &["counters", "--duration", "1"][..],
        &["lab", "up", "--initiator", &initiator, "--target", &target][..],
        &[
            "lab",
            "down",
            "--initiator",
            &initiator,
            "--target",
            &target,
        ][..],
    ] {
        let out = output(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(tracer_bin())
                .args(args),
        );
        assert_usage_error(&out, "needs root");
    }
}

#[test]
fn bad_arguments() {
    for (args, mentions) in [
        (&["counters", "--tcp-port", "0"][..], "--tcp-port"),
        (&["counters", "--tcp-port", "70000"][..], "--tcp-port"),
        (&["counters", "--initiator", "a/b/c"][..], "a/b/c"),
        (&["counters", "--target", "/eth0"][..], "/eth0"),
        (&["counters", "--duration", "soon"][..], "--duration"),
        (&["counters", "--no-such-flag"][..], "--no-such-flag"),
        (&["watch", "--always"][..], "<CMD>"),
        (
            &["lab", "up", "--initiator", "cvl_0_1"][..],
            "needs a namespace",
        ),
    ] {
        let out = output(tracer().args(args));
        assert_usage_error(&out, mentions);
    }
}

#[test]
fn same_port_twice() {
    let lab = Lab::up("dup");
    let spec = lab.target.spec();
    let out = output(tracer().args([
        "counters",
        "--initiator",
        &spec,
        "--target",
        &spec,
        "--duration",
        "1",
    ]));
    assert_usage_error(&out, "given twice");
}

#[test]
fn bad_diagnose_arguments() {
    require_root();
    // Ports in a namespace that does not exist: were an argument let through, diagnose would
    // stop at an `interface` verdict (exit 14) without touching anything.
    let nowhere = [
        "--initiator",
        "tracer_no_such_netns/cvl_0_1",
        "--target",
        "tracer_no_such_netns/cvl_0_0",
    ];
    let file = std::env::temp_dir().join(unique("regular-file"));
    std::fs::write(&file, b"").unwrap();
    let under_file = file.join("report");
    let under_file = under_file.to_str().unwrap();
    for (args, mentions) in [
        (&["--initiator-ip", "10.0.0"][..], "--initiator-ip"),
        (&["--initiator-ip", "10.0.0.1/24"][..], "--initiator-ip"),
        (&["--initiator-ip", "::1"][..], "--initiator-ip"),
        (&["--target-ip", "10.0.0.256"][..], "--target-ip"),
        (&["--target-ip", ""][..], "--target-ip"),
        (&["--tcp-port", "0"][..], "--tcp-port"),
        (&["--tcp-port", "65536"][..], "--tcp-port"),
        (&["--tcp-port", "http"][..], "--tcp-port"),
        (&["--initiator", "a/b/c"][..], "a/b/c"),
        (&["--target", "ns/"][..], "ns/"),
        (&["--report", under_file][..], under_file),
        (
            &["--report", file.to_str().unwrap()][..],
            "report directory",
        ),
        (
            &["--report", "/proc/tracer-report"][..],
            "/proc/tracer-report",
        ),
        (
            &["--ready-file", "/tracer_no_such_dir/ready"][..],
            "/tracer_no_such_dir",
        ),
    ] {
        let names_ports = args.contains(&"--initiator") || args.contains(&"--target");
        let ports = if names_ports { &[][..] } else { &nowhere[..] };
        let out = output(tracer().arg("diagnose").args(ports).args(args));
        assert_usage_error(&out, mentions);
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn ready_file_that_cannot_be_created() {
    // Refused before anything is attached.
    for path in ["/tracer_no_such_dir/ready", "/tmp"] {
        let out = output(tracer().args(["counters", "--duration", "1", "--ready-file", path]));
        assert_usage_error(&out, path);
    }
    // A directory that exists but takes no files: found out only when the file is written.
    let lab = Lab::up("rdy");
    let out = output(tracer().args([
        "counters",
        "--initiator",
        &lab.initiator.spec(),
        "--target",
        &lab.target.spec(),
        "--duration",
        "5",
        "--ready-file",
        "/proc/tracer-ready",
    ]));
    assert_usage_error(&out, "ready file /proc/tracer-ready");
}

#[test]
fn bad_lab_arguments_change_nothing() {
    require_root();
    let (initiator_ns, target_ns) = (unique("badi"), unique("badt"));
    let ends = [
        "--initiator".to_owned(),
        format!("{initiator_ns}/cvl_0_1"),
        "--target".to_owned(),
        format!("{target_ns}/cvl_0_0"),
    ];
    for action in ["up", "down"] {
        for (args, mentions) in [
            (&["--initiator-ip", "10.0.0.1"][..], "--initiator-ip"),
            (&["--initiator-ip", "10.0.0.300/24"][..], "--initiator-ip"),
            (&["--initiator-ip", "10.0.0.1/33"][..], "--initiator-ip"),
            (&["--initiator-ip", "10.0.0.1/"][..], "--initiator-ip"),
            (&["--target-ip", "fe80::2/64"][..], "--target-ip"),
            (&["--target-ip", "target/24"][..], "--target-ip"),
            (&["--tcp-port", "0"][..], "--tcp-port"),
        ] {
            let out = output(tracer().args(["lab", action]).args(&ends).args(args));
            assert_usage_error(&out, mentions);
        }
    }
    let same_namespace = output(tracer().args([
        "lab",
        "up",
        "--initiator",
        &format!("{initiator_ns}/cvl_0_1"),
        "--target",
        &format!("{initiator_ns}/cvl_0_0"),
    ]));
    assert_usage_error(&same_namespace, "different namespaces");
    for netns in [initiator_ns, target_ns] {
        assert!(
            !Path::new("/var/run/netns").join(&netns).exists(),
            "a refused `lab` command created namespace {netns}"
        );
    }
}

/// Errors that teach: a typo gets its suggestion, a command given to watch without `--` the
/// hint, a bad number a sentence, and each points at the help of its own subcommand.
#[test]
fn errors_suggest_hint_and_point_at_the_subcommand() {
    for (args, mentions) in [
        (&["diagnos"][..], "a similar subcommand exists: 'diagnose'"),
        (
            &["counters", "--duraton", "3"][..],
            "a similar argument exists: '--duration' (see `tracer counters --help`)",
        ),
        (
            &["watch", "--initiator", "a", "ping", "-c1", "10.0.0.2"][..],
            "give the command after `--`: tracer watch [OPTIONS] -- CMD",
        ),
        (
            &["counters", "--duration", "1.5"][..],
            "`1.5` is not a whole number of seconds from 1 to 86400 (see `tracer counters --help`)",
        ),
        (
            &["watch", "--kill-after", "x", "--", "true"][..],
            "`x` is not a whole number",
        ),
    ] {
        assert_usage_error(&output(tracer().args(args)), mentions);
    }
    let out = output(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(tracer_bin())
            .args(["counters", "--duration", "1"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tracer: this needs root (missing CAP_"),
        "{stderr}"
    );
}

/// doctor needs no root to say what the kernel offers, and ends with one summary line.
#[test]
fn doctor_runs_without_root_and_sums_up() {
    let out = output(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(tracer_bin())
            .arg("doctor"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("tracer can work here as root"), "{stdout}");
}

/// As root, doctor really attaches the drop probe. Wherever the kernel's BTF has drop reasons
/// (5.17 on), the verifier must take the tp_btf program, whose reads of the skb are plain loads
/// it checks against BTF: a refusal falls back to naming drops by location, and the reasons
/// are lost.
#[test]
fn doctor_as_root_takes_the_drop_reasons_wherever_the_kernel_has_them() {
    require_root();
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("the kernel's BTF");
    let reasons = btf
        .windows(b"skb_drop_reason\0".len())
        .any(|name| name == b"skb_drop_reason\0");
    let out = output(tracer().args(["doctor", "--json"]));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!("{err}: {}", String::from_utf8_lossy(&out.stderr));
    });
    let tp_btf = report["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .find(|capability| capability["name"] == "tp_btf kfree_skb")
        .expect("the tp_btf line");
    assert_eq!(
        tp_btf["present"], reasons,
        "drop reasons in BTF: {reasons}; {report:#}"
    );
}

/// Runs `tracer ARGS` under a pseudo-terminal (util-linux `script`), with `env` set; returns what
/// it printed.
fn on_a_terminal(env: &[(&str, &str)], args: &[&str]) -> String {
    let mut line = tracer_bin().display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    let mut script = Command::new("script");
    script.args(["-q", "-e", "-c", &line, "/dev/null"]);
    script.env_remove("NO_COLOR").env("TERM", "xterm");
    for (name, value) in env {
        script.env(name, value);
    }
    String::from_utf8_lossy(&output(&mut script).stdout).into_owned()
}

/// Colour only where it belongs: on a terminal by default, never with NO_COLOR, TERM=dumb or
/// `--color never`.
#[test]
fn no_colour_when_asked() {
    let lab = Lab::up("clr");
    let ports = lab.port_args();
    let mut args: Vec<&str> = vec!["diagnose"];
    args.extend(ports.iter().map(String::as_str));
    let coloured = on_a_terminal(&[], &args);
    assert!(coloured.contains("VERDICT"), "{coloured}");
    assert!(
        coloured.contains('\x1b'),
        "no colour on a terminal: {coloured}"
    );
    for (env, extra) in [
        (&[("NO_COLOR", "1")][..], &[][..]),
        (&[("TERM", "dumb")][..], &[][..]),
        (&[][..], &["--color", "never"][..]),
    ] {
        let mut with: Vec<&str> = args.clone();
        with.extend(extra);
        let text = on_a_terminal(env, &with);
        assert!(text.contains("VERDICT"), "{text}");
        assert!(!text.contains('\x1b'), "{env:?} {extra:?}: {text:?}");
    }
}

/// Completions load in bash, and the man page renders.
#[test]
fn completions_and_man_page() {
    let dir = std::env::temp_dir().join(unique("help"));
    std::fs::create_dir_all(&dir).unwrap();
    for shell in ["bash", "zsh"] {
        let out = output(tracer().args(["completions", shell]));
        assert!(out.status.success());
        std::fs::write(dir.join(shell), &out.stdout).unwrap();
    }
    let loaded = output(Command::new("bash").args([
        "-c",
        &format!(
            "source {} && complete -p tracer",
            dir.join("bash").display()
        ),
    ]));
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("tracer"),
        "{loaded:?}"
    );
    assert!(
        std::fs::read_to_string(dir.join("zsh"))
            .unwrap()
            .contains("#compdef tracer")
    );
    let page = output(tracer().arg("man"));
    std::fs::write(dir.join("tracer.1"), &page.stdout).unwrap();
    let rendered = output(
        Command::new("man")
            .arg("-l")
            .arg(dir.join("tracer.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"),
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    assert!(
        text.contains("diagnose") && text.contains("watch"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A port no flag named came from a default: the error says so and names the flag.
#[test]
fn an_unknown_default_port_names_its_flag() {
    let lab = Lab::up("cdf");
    let out = output(tracer().args([
        "counters",
        "--initiator",
        &lab.initiator.spec(),
        "--duration",
        "1",
    ]));
    // Unless a lab of SPDK's names exists here, the default target's namespace does not.
    if Path::new("/run/netns/cvl_0_0_ns_spdk").exists() {
        eprintln!("skipped: namespace cvl_0_0_ns_spdk exists on this machine");
        return;
    }
    assert_usage_error(&out, "is the default --target; pass --target NETNS/IFNAME");
}

/// On a 100-column terminal, counters and diagnose print no line over 100 columns.
#[test]
fn output_fits_a_100_column_terminal() {
    let lab = Lab::up("c100");
    let ports = lab.port_args().join(" ");
    let tracer = tracer_bin().display().to_string();
    for command in [
        format!("{tracer} counters {ports} --duration 1"),
        format!("{tracer} diagnose {ports}"),
    ] {
        let mut script = Command::new("script");
        script.args([
            "-q",
            "-c",
            &format!("stty cols 100; {command}"),
            "/dev/null",
        ]);
        script.env("TERM", "xterm").env("COLUMNS", "100");
        let text = String::from_utf8_lossy(&output(&mut script).stdout).into_owned();
        assert!(text.lines().count() > 5, "{command}: {text}");
        for line in text.lines() {
            let visible: String = {
                // Colour escapes take no column.
                let mut visible = String::new();
                let mut chars = line.trim_end_matches('\r').chars();
                while let Some(c) = chars.next() {
                    if c == '\x1b' {
                        chars.by_ref().find(char::is_ascii_alphabetic);
                    } else {
                        visible.push(c);
                    }
                }
                visible
            };
            assert!(
                visible.chars().count() <= 100,
                "{command}: a line of {} columns: {visible}",
                visible.chars().count()
            );
        }
    }
}

/// tracer with `args` where the only named namespace is `netns` and tracer's own namespace is
/// new and empty: no port of SPDK's default names can be found anywhere, whatever else runs on
/// the machine. `keep` is a scratch file the namespace is held on meanwhile. A tracer that
/// runs until told (monitor) is interrupted once it has written `ready_file`; a hang guard of
/// 30 s (times the measured slowness) interrupts it otherwise.
fn alone_with(netns: &str, keep: &Path, args: &[&str], ready_file: Option<&Path>) -> Output {
    std::fs::write(keep, "").unwrap();
    let guard = scaled(Duration::from_secs(30)).as_secs().to_string();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--net", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount --bind \"/run/netns/$1\" \"$2\" && mount -t tmpfs none /run/netns && \
             touch \"/run/netns/$1\" && mount --bind \"$2\" \"/run/netns/$1\" && \
             ip link set lo up && guard=$3 && shift 3 && exec timeout -s INT \"$guard\" \"$@\"",
        )
        .args(["sh", netns])
        .arg(keep)
        .arg(guard)
        .arg(tracer_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // unshare and sh exec: the child is `timeout`, which passes SIGINT on to tracer.
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    if let Some(ready_file) = ready_file {
        let (pid, ready_file) = (child.id() as i32, ready_file.to_owned());
        std::thread::spawn(move || {
            let deadline = Instant::now() + scaled(Duration::from_secs(30));
            while !ready_file.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Only while tracer runs (it waits for the signal once ready): never a reaped pid.
            if ready_file.exists() {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
        });
    }
    child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("waiting for {command:?}: {err}"))
}

/// A port no flag named came from a default: every command that takes ports says so and names
/// the flag, in the same words. Commands that look now (diagnose, counters) stop with exit
/// code 2; commands that wait for ports (watch, monitor) wait, as the test they watch may yet
/// make the port, and say the same in their warning. (cables takes no default port: it looks
/// at every physical port.)
#[test]
fn a_missing_default_port_is_named_with_its_flag_by_every_command() {
    let lab = Lab::up("cdp");
    let keep = std::env::temp_dir().join(unique("cdp-netns"));
    let target = lab.target.spec();
    let pins = PinDir::new();
    let pin_dir = pins.arg();
    let ready = std::env::temp_dir().join(unique("cdp-ready"));
    let ready_arg = ready.to_string_lossy().into_owned();
    let note = "(`cvl_0_1` is the default --initiator; pass --initiator NETNS/IFNAME to name the \
                port)";
    for command in [
        vec!["diagnose", "--target", &target],
        vec!["counters", "--target", &target, "--duration", "1"],
    ] {
        let out = alone_with(&lab.target.netns, &keep, &command, None);
        assert_usage_error(
            &out,
            "interface `cvl_0_1` not found in tracer's network namespace",
        );
        assert_usage_error(&out, note);
    }
    for command in [
        vec!["watch", "--target", &target, "--", "true"],
        vec![
            "monitor",
            "--target",
            &target,
            "--metrics-addr",
            "127.0.0.1:9464",
            "--pin-dir",
            &pin_dir,
            "--ready-file",
            &ready_arg,
        ],
    ] {
        // monitor runs until told: told once ready (its signal handlers are in place).
        let ready_file = (command[0] == "monitor").then_some(ready.as_path());
        let out = alone_with(&lab.target.netns, &keep, &command, ready_file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warning = stderr
            .lines()
            .find(|line| line.contains("cvl_0_1") && line.contains("not found yet"))
            .unwrap_or_else(|| panic!("{command:?}: no warning for the missing port: {stderr}"));
        assert!(warning.ends_with(note), "{command:?}: {warning}");
        // watch ends with its command's status, monitor at the signal.
        assert!(
            matches!(out.status.code(), Some(0 | 124)),
            "{command:?}: {out:?}"
        );
    }
    let _ = std::fs::remove_file(&keep);
    let _ = std::fs::remove_file(&ready);
}

/// `-q` silences what it promises, standard error's feedback, and nothing else: the same
/// output and exit code; errors still come.
#[test]
fn quiet_silences_feedback_not_the_verdict_or_errors() {
    let help = output(tracer().args(["--help"]));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("-q, --quiet") && help.contains("Print nothing on standard error but errors"),
        "{help}"
    );
    let lab = Lab::up("cq");
    let ports = lab.port_args();
    let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
    // counters without --duration says once what it does and how to stop it; -q does not.
    let mut runs = Vec::new();
    for quiet in [false, true] {
        let mut args = if quiet { vec!["-q"] } else { vec![] };
        args.push("counters");
        args.extend(&ports);
        let out = TracerRun::start(&args).stop_with(libc::SIGINT);
        runs.push(out);
    }
    let said = String::from_utf8_lossy(&runs[0].stderr);
    assert!(said.contains("Ctrl-C"), "no feedback without -q: {said}");
    assert!(
        runs[1].stderr.is_empty(),
        "-q printed: {}",
        String::from_utf8_lossy(&runs[1].stderr)
    );
    for out in &runs {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("cvl_0_0"),
            "{out:?}"
        );
    }
    // diagnose: the verdict and its exit code stay.
    let mut args = vec!["-q", "diagnose"];
    args.extend(&ports);
    let out = output(tracer().args(&args));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("VERDICT: ok"),
        "{out:?}"
    );
    assert!(out.stderr.is_empty(), "{out:?}");
    // Errors are not feedback.
    let out = output(tracer().args([
        "-q",
        "counters",
        "--initiator",
        "no_such_netns_for_tracer/x",
        "--duration",
        "1",
    ]));
    assert_usage_error(
        &out,
        "network namespace `no_such_netns_for_tracer` not found",
    );
}
