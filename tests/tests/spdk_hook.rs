//! packaging/spdk/tracer.sh, sourced by bash as SPDK's test/nvmf/common.sh users would, on the
//! lab: a failing ping leaves a diagnose bundle and its verdict and signature in the log, a
//! passing one leaves nothing, and `tracer_watch` keeps the command's exit code and writes the
//! bundle when it fails. On each of SPDK's layouts, built by `tracer lab up --layout`, the hook
//! finds every pair.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;
use tracer_tests::{
    INITIATOR_IP, Lab, LayoutLab, TARGET_IP, check, output, spdk_pairs, tracer_bin, unique,
};

/// SPDK's `$output_dir` for one test; removed on drop, on failure too.
struct OutputDir(PathBuf);

impl OutputDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(unique("spdk-out"));
        std::fs::create_dir_all(&path).expect("creating the output directory");
        Self(path)
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `script` in bash with `set -e`, after sourcing the hook, with SPDK's variables as
/// nvmf_tcp_init sets them for this lab. The initiator port is in a namespace of its own here
/// (SPDK's is in the root namespace), so TRACER_INITIATOR names it.
fn spdk_bash(lab: &Lab, out: &OutputDir, script: &str) -> Output {
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/spdk/tracer.sh");
    output(
        Command::new("bash")
            .args(["-c", &format!("set -eu\nsource \"$TRACER_HOOK\"\n{script}")])
            .env("TRACER_HOOK", hook)
            .env("TRACER", tracer_bin())
            .env("output_dir", &out.0)
            .env("TRACER_INITIATOR", lab.initiator.spec())
            .env("NVMF_INITIATOR_INTERFACE", &lab.initiator.interface)
            .env("NVMF_TARGET_NAMESPACE", &lab.target.netns)
            .env("NVMF_TARGET_INTERFACE", &lab.target.interface)
            .env("NVMF_INITIATOR_IP", INITIATOR_IP)
            .env("NVMF_FIRST_TARGET_IP", TARGET_IP)
            .env("NVMF_PORT", lab.port.to_string())
            .env("INITIATOR_NS", &lab.initiator.netns),
    )
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The lines of `log` the hook printed.
fn tracer_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.starts_with("tracer: "))
        .collect()
}

#[test]
fn failing_ping_leaves_the_verdict_in_the_log_and_the_bundle() {
    let lab = Lab::up("shk");
    let out = OutputDir::new();
    let bundle = out.0.join("tracer");
    // nvmf_tcp_init's first check, from the initiator's namespace.
    let ping = "tracer_ping -n \"$INITIATOR_NS\" -c 1 -W 1 \"$NVMF_FIRST_TARGET_IP\"\necho reached";

    let healthy = spdk_bash(&lab, &out, ping);
    let log = text(&healthy.stderr);
    assert!(healthy.status.success(), "{log}");
    assert!(text(&healthy.stdout).ends_with("reached\n"));
    assert!(tracer_lines(&log).is_empty(), "{log}");
    assert!(!bundle.exists(), "a passing ping left a bundle");

    check(
        lab.target
            .exec("iptables")
            .args(["-I", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let failing = spdk_bash(&lab, &out, ping);
    let log = text(&failing.stderr);
    // ping's own status, and `set -e` stops the script as it did without tracer.
    assert_eq!(failing.status.code(), Some(1), "{log}");
    assert!(!text(&failing.stdout).contains("reached"));
    let lines = tracer_lines(&log);
    let verdict = lines
        .iter()
        .find(|line| line.starts_with("tracer: VERDICT: netfilter (target side)"))
        .unwrap_or_else(|| panic!("no verdict line in:\n{log}"));
    assert!(verdict.contains("-A INPUT -p icmp -j DROP"), "{verdict}");
    let signature = format!(
        "tracer: signature: tracer:netfilter:{}:ip/filter/INPUT",
        lab.target.netns
    );
    assert!(lines.contains(&signature.as_str()), "{log}");
    // The target came from SPDK's namespace and interface variables.
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("tracer: diagnosing")
                && line.contains(&format!("--target {}", lab.target.spec()))
                && line.contains("--tcp-port 4420 --initiator-ip 10.0.0.1 --target-ip 10.0.0.2")),
        "{log}"
    );

    let markdown = std::fs::read_to_string(bundle.join("report.md")).expect("report.md");
    assert!(
        markdown.starts_with("# tracer diagnose: netfilter"),
        "{markdown}"
    );
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    assert_eq!(json["verdict"]["class"], "netfilter", "{json:#}");
    assert_eq!(
        format!(
            "tracer: signature: {}",
            json["verdict"]["signature"].as_str().unwrap()
        ),
        signature
    );
}

#[test]
fn watch_wrapper_keeps_the_exit_code_and_writes_the_bundle() {
    let lab = Lab::up("swt");
    let out = OutputDir::new();
    let test = "tracer_watch ping_test ip netns exec \"$INITIATOR_NS\" ping -c 1 -W 1 \
                \"$NVMF_FIRST_TARGET_IP\"";

    let healthy = spdk_bash(&lab, &out, test);
    assert!(healthy.status.success(), "{}", text(&healthy.stderr));
    // tracer watch makes the directory up front (to fail before CMD runs), and leaves it empty.
    assert!(!out.0.join("tracer-ping_test/report.md").exists());

    check(
        lab.target
            .exec("iptables")
            .args(["-I", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let failing = spdk_bash(&lab, &out, test);
    let log = text(&failing.stderr);
    assert_eq!(failing.status.code(), Some(1), "{log}");
    assert!(log.contains("tracer: verdict netfilter"), "{log}");
    let bundle = out.0.join("tracer-ping_test");
    for file in ["report.md", "report.json", "capture.pcapng"] {
        assert!(
            bundle.join(file).is_file(),
            "no {file} in {}:\n{log}",
            bundle.display()
        );
    }
}

#[test]
fn without_tracer_the_commands_run_as_before() {
    let lab = Lab::up("snt");
    let out = OutputDir::new();
    let run = spdk_bash(
        &lab,
        &out,
        "TRACER=/nonexistent/tracer\n\
         tracer_watch t ip netns exec \"$INITIATOR_NS\" ping -c 1 -W 1 \"$NVMF_FIRST_TARGET_IP\"\n\
         echo watched\n\
         tracer_ping -n \"$INITIATOR_NS\" -c 1 -W 1 10.0.0.3",
    );
    let log = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{log}");
    assert!(text(&run.stdout).contains("watched"), "{log}");
    assert!(
        log.contains("tracer: /nonexistent/tracer not found"),
        "{log}"
    );
    assert!(std::fs::read_dir(&out.0).unwrap().next().is_none());
}

/// The hook on one of SPDK's layouts with its default pairs, SPDK's variables set as the
/// layout's script sets them (its first pair): tracer_diagnose finds the layout and every pair
/// itself, and so does tracer_watch around a failing command (its bundle has every pair). TRACER_NETNS_ROOT names the
/// lab's stand-in for the host namespace.
fn hook_finds_every_pair(layout: &'static str) {
    let lab = LayoutLab::up(layout);
    let out = OutputDir::new();
    let pairs = spdk_pairs(layout);
    let (initiator, target, initiator_ip, target_ip) = pairs[0];
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/spdk/tracer.sh");
    let script = "set -eu\nsource \"$TRACER_HOOK\"\n\
                  tracer_diagnose || echo \"diagnose exit $?\"\n\
                  tracer_watch pairs sh -c 'exit 3' || echo \"watch exit $?\"";
    let run = output(
        Command::new("bash")
            .args(["-c", script])
            .env("TRACER_HOOK", hook)
            .env("TRACER", tracer_bin())
            .env("output_dir", &out.0)
            .env("TRACER_NETNS_ROOT", &lab.root)
            .env("NVMF_INITIATOR_INTERFACE", initiator)
            .env("NVMF_TARGET_NAMESPACE", lab.target_netns())
            .env("NVMF_TARGET_INTERFACE", target)
            .env("NVMF_INITIATOR_IP", initiator_ip)
            .env("NVMF_FIRST_TARGET_IP", target_ip)
            .env("NVMF_PORT", "4420"),
    );
    let log = text(&run.stderr);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{log}");
    // Every pair ok: diagnose exits 0; the command's own exit code comes back from watch.
    assert!(!stdout.contains("diagnose exit"), "{stdout}\n{log}");
    assert_eq!(stdout, "watch exit 3\n", "{log}");
    let lines = tracer_lines(&log);
    assert!(
        lines.contains(
            &format!(
                "tracer: diagnosing --netns-root {} --tcp-port 4420",
                lab.root
            )
            .as_str()
        ),
        "{log}"
    );
    let verdicts: Vec<&&str> = lines
        .iter()
        .filter(|line| line.starts_with("tracer: VERDICT: "))
        .collect();
    assert_eq!(verdicts.len(), pairs.len(), "{log}");
    assert!(
        verdicts
            .iter()
            .all(|line| line.starts_with("tracer: VERDICT: ok")),
        "{log}"
    );
    let report = |dir: &str, index: usize| -> Value {
        let dir = if pairs.len() > 1 {
            out.0.join(dir).join(format!("pair-{}", index + 1))
        } else {
            out.0.join(dir)
        };
        serde_json::from_str(
            &std::fs::read_to_string(dir.join("report.json"))
                .unwrap_or_else(|err| panic!("{}/report.json: {err}\n{log}", dir.display())),
        )
        .expect("report.json is JSON")
    };
    for (index, (initiator, target, _, _)) in pairs.iter().enumerate() {
        for dir in ["tracer", "tracer-pairs"] {
            let json = report(dir, index);
            assert_eq!(
                json["initiator"]["interface"], *initiator,
                "{dir}: {json:#}"
            );
            assert_eq!(json["target"]["interface"], *target, "{dir}: {json:#}");
        }
        // diagnose's probes pass on every pair (watch saw no traffic: the command sent none).
        assert_eq!(report("tracer", index)["verdict"]["class"], "ok");
    }
}

#[test]
fn hook_finds_the_phy_pair() {
    hook_finds_every_pair("phy");
}

#[test]
fn hook_finds_both_virt_pairs() {
    hook_finds_every_pair("virt");
}

#[test]
fn hook_finds_both_virt_legacy_pairs() {
    hook_finds_every_pair("virt-legacy");
}
