//! `tracer diagnose` leaves the namespaces it probes as it found them: firewall rules (xtables
//! of both backends, nftables), routes, policy rules and links are exactly as before.

use std::time::{Duration, Instant};

use tracer_tests::{End, Lab, check, output};

/// Commands whose output is one namespace's state, as (program, arguments).
const STATE: &[(&str, &[&str])] = &[
    ("iptables-save", &[]),
    ("ip6tables-save", &[]),
    ("arptables-save", &[]),
    // The legacy backend too: merely listing it can create its tables in a namespace.
    ("iptables-legacy-save", &[]),
    ("ip6tables-legacy-save", &[]),
    ("cat", &["/proc/net/ip_tables_names"]),
    ("nft", &["list", "ruleset"]),
    ("ip", &["-4", "route", "show", "table", "all"]),
    ("ip", &["-6", "route", "show", "table", "all"]),
    ("ip", &["rule", "show"]),
    // XDP or anything else left attached shows here.
    ("ip", &["-d", "link", "show"]),
];

/// Everything `STATE` prints for one namespace, minus what changes by itself: comment and
/// timestamp lines, and packet counters (the probes' own traffic moves those).
fn state(end: &End) -> Vec<(String, String)> {
    STATE
        .iter()
        .map(|(program, args)| {
            let out = output(end.exec(program).args(*args));
            let text = String::from_utf8_lossy(&out.stdout);
            let normalised: Vec<String> = text
                .lines()
                .filter(|line| !line.starts_with('#'))
                .map(without_counters)
                .collect();
            let status = if out.status.success() {
                String::new()
            } else {
                format!("(exit {}) ", out.status)
            };
            (
                format!("{} {program} {}", end.netns, args.join(" ")),
                status + &normalised.join("\n"),
            )
        })
        .collect()
}

/// A line with its packet and byte counters zeroed: `[12:840]` in xtables-save chain lines,
/// `counter packets 3 bytes 252` in nft listings.
fn without_counters(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        if word.starts_with('[') && word.ends_with(']') && word.contains(':') {
            out.push("[0:0]");
        } else if matches!(word, "packets" | "bytes")
            && words
                .get(index + 1)
                .is_some_and(|n| n.parse::<u64>().is_ok())
        {
            out.push(word);
            out.push("0");
            index += 1;
        } else {
            out.push(word);
        }
        index += 1;
    }
    out.join(" ")
}

/// Waits until the IPv6 addresses of `end` have passed duplicate address detection. The kernel
/// adds their `local` routes only then, a second or two after the lab came up: on a busy
/// machine that would fall between the two snapshots and look like diagnose's doing.
fn wait_for_dad(end: &End) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tentative = check(end.exec("ip").args(["-6", "addr", "show", "tentative"])).stdout;
        if tentative.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "addresses in {} still tentative after 10 s: {}",
            end.netns,
            String::from_utf8_lossy(&tentative)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `tracer diagnose` on a lab with a user's firewall — SPDK's rule on the initiator (from
/// `lab up`), another xtables rule and a native nftables table with a set, counters and a
/// comment on the target — plus `extra` set-up, and checks that both namespaces are exactly as
/// before.
fn diagnose_leaves_nothing(tag: &str, extra: impl Fn(&Lab), expected_class: &str) {
    let lab = Lab::up(tag);
    check(lab.target.exec("iptables").args([
        "-A",
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        &lab.port.to_string(),
        "-m",
        "comment",
        "--comment",
        "user rule",
        "-j",
        "ACCEPT",
    ]));
    let table = "table inet user_guard {
        set blocked { type ipv4_addr; elements = { 192.0.2.1 } }
        chain input {
            type filter hook input priority 10; policy accept;
            ip saddr @blocked counter drop comment \"blocked hosts\"
            icmp type echo-request counter accept
        }
    }";
    check(lab.target.exec("nft").arg(table));
    extra(&lab);
    for end in [&lab.initiator, &lab.target] {
        wait_for_dad(end);
    }
    let before: Vec<_> = [&lab.initiator, &lab.target]
        .into_iter()
        .flat_map(state)
        .collect();
    assert!(
        before
            .iter()
            .any(|(_, text)| text.contains("user_guard") && text.contains("blocked hosts")),
        "the nft table is not in the snapshot: {before:#?}"
    );

    let (_, report) = lab.diagnose(&[]);
    assert_eq!(report["verdict"]["class"], expected_class, "{report:#}");

    let after: Vec<_> = [&lab.initiator, &lab.target]
        .into_iter()
        .flat_map(state)
        .collect();
    for ((what, was), (_, is)) in before.iter().zip(&after) {
        assert_eq!(was, is, "`{what}` changed across tracer diagnose");
    }
}

#[test]
fn healthy_lab_is_left_as_it_was() {
    diagnose_leaves_nothing("lv0", |_| {}, "ok");
}

#[test]
fn dropping_firewall_is_left_as_it_was() {
    // A drop makes diagnose read rule counters and look for the rule: still nothing changes.
    diagnose_leaves_nothing(
        "lv1",
        |lab| {
            check(
                lab.target
                    .exec("iptables")
                    .args(["-I", "INPUT", "1", "-p", "icmp", "-j", "DROP"]),
            );
        },
        "netfilter",
    );
}

#[test]
fn counters_are_normalised_and_nothing_else() {
    assert_eq!(
        without_counters(":INPUT ACCEPT [12:840]"),
        ":INPUT ACCEPT [0:0]"
    );
    assert_eq!(
        without_counters("\t\tcounter packets 3 bytes 252 drop"),
        "\t\tcounter packets 0 bytes 0 drop"
    );
    assert_eq!(
        without_counters("-A INPUT -p tcp --dport 4420 -j ACCEPT"),
        "-A INPUT -p tcp --dport 4420 -j ACCEPT"
    );
}
