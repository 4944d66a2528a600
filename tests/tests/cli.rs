//! Usage and environment errors: exit code 2 and one line that names the problem.

use std::process::{Command, Output};

use tracer_tests::{Lab, output, require_root, tracer, tracer_bin};

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
        (&["counters", "--port", "0"][..], "--port"),
        (&["counters", "--port", "70000"][..], "--port"),
        (&["counters", "--initiator", "a/b/c"][..], "a/b/c"),
        (&["counters", "--target", "/eth0"][..], "/eth0"),
        (&["counters", "--duration", "soon"][..], "--duration"),
        (&["counters", "--no-such-flag"][..], "--no-such-flag"),
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
