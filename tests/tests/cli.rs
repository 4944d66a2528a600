//! Usage and environment errors: exit code 2 and one line that names the problem.

use std::process::{Command, Output};

use tracer_tests::{Lab, output, require_root, tracer, tracer_bin, unique};

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

#[test]
fn not_root() {
    let out = output(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(tracer_bin())
            .args(["counters", "--duration", "1"]),
    );
    assert_usage_error(&out, "needs root");
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
            !std::path::Path::new("/var/run/netns").join(&netns).exists(),
            "a refused `lab` command created namespace {netns}"
        );
    }
}
