//! The bundle as people open it: report.html in a real headless Chromium without network,
//! report.md within GitHub's limit, and `tracer triage` over many bundles.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;
use tracer_tests::{Lab, TARGET_IP, TempDir, check, output, tracer};

/// GitHub's limit on an issue body, in characters.
const GITHUB_BODY_LIMIT: usize = 65_536;

/// A rule comment no page may run.
const HOSTILE: &str = "<script>alert(1)</script>";

/// What Chromium made of a page: its DOM after loading, its console messages, and the
/// requests the page started (Chromium's own background requests left out).
struct Opened {
    dom: String,
    console: Vec<String>,
    page_requests: Vec<String>,
}

/// Opens `page` in headless Chromium inside a new network namespace (no network at all), with
/// a NetLog of every request.
fn open_in_chromium(page: &Path, scratch: &Path) -> Opened {
    let net_log = scratch.join("netlog.json");
    let profile = scratch.join("profile");
    let out = output(
        Command::new("unshare")
            .args([
                "--net",
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .args([
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--log-net-log={}", net_log.display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display())),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let log: Value = serde_json::from_str(&std::fs::read_to_string(&net_log).expect("net log"))
        .expect("the net log is JSON");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the net log names URL_REQUEST_START_JOB");
    // Chromium's own requests (updates, time) have no origin; a page's have its origin.
    let page_requests = log["events"]
        .as_array()
        .expect("net log events")
        .iter()
        // The job's start, with its URL (its end has no parameters).
        .filter(|event| {
            event["type"].as_u64() == Some(start_job) && event["params"]["url"].is_string()
        })
        .filter(|event| event["params"]["initiator"] != "not an origin")
        .map(|event| event["params"]["url"].to_string())
        .collect();
    Opened {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
        page_requests,
    }
}

/// Text of the DOM's serialization, its character references resolved.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The serialized element that starts with `start` (e.g. `<figure id="path"`), up to `end`.
fn element<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM"));
    let to = dom[from..]
        .find(end)
        .unwrap_or_else(|| panic!("{start} not closed by {end}"));
    &dom[from..from + to + end.len()]
}

#[test]
fn report_html_opens_offline_with_the_verdict_and_both_pictures() {
    let lab = Lab::up("rhtml");
    check(lab.target.exec("iptables").args([
        "-I",
        "INPUT",
        "-p",
        "icmp",
        "-m",
        "comment",
        "--comment",
        HOSTILE,
        "-j",
        "DROP",
    ]));
    let files = TempDir::new("rhtml");
    let bundle = files.path.join("bundle");
    let out = output(
        tracer()
            .arg("watch")
            .args(lab.port_args())
            .arg("--report")
            .arg(&bundle)
            .args(["--", "ip", "netns", "exec", &lab.initiator.netns])
            .args(["ping", "-c", "2", "-i", "0.2", "-W", "1", TARGET_IP]),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["verdict"]["class"], "netfilter", "{report:#}");
    assert!(
        report["verdict"]["netfilter"]["rule"]
            .as_str()
            .unwrap()
            .contains(HOSTILE),
        "{report:#}"
    );
    // The run's identity.
    let identity = &report["identity"];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(identity["host"], host.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(identity["kernel"], kernel.trim());
    assert_eq!(identity["exit_status"], 1);
    assert_eq!(identity["command"][1], "watch");
    for time in ["started", "ended"] {
        let stamp = identity[time].as_str().unwrap();
        assert!(stamp.len() == 20 && stamp.ends_with('Z'), "{stamp}");
    }
    let markdown = std::fs::read_to_string(bundle.join("report.md")).unwrap();
    assert!(
        markdown.contains(&format!("- host: {}", host.trim())),
        "{markdown}"
    );

    let page = bundle.join("report.html");
    let opened = open_in_chromium(&page, &files.path);
    assert_eq!(opened.console, Vec::<String>::new(), "console messages");
    assert_eq!(opened.page_requests, Vec::<String>::new(), "requests");
    let dom = &opened.dom;
    let verdict = element(dom, "<p id=\"verdict\"", "</p>");
    let shown = &verdict[verdict.find('>').unwrap() + 1..verdict.len() - "</p>".len()];
    assert_eq!(
        unescape(shown),
        report["verdict"]["summary"].as_str().unwrap()
    );
    for picture in ["path", "timeline"] {
        let figure = element(dom, &format!("<figure id=\"{picture}\""), "</figure>");
        assert!(figure.contains("<svg"), "{picture}: {figure}");
        assert!(figure.contains("<text"), "{picture} draws nothing");
    }
    // The hostile comment is text on the page, never an element.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // The capture's frames are listed: the pings the rule dropped.
    let frames = element(dom, "<table id=\"frames\"", "</table>");
    assert!(frames.contains("echo request"), "{frames}");

    // Made again from the saved bundle alone: the same page.
    let again = files.path.join("again.html");
    let out = output(
        tracer()
            .args(["diagnose", "--from"])
            .arg(&bundle)
            .arg("--html")
            .arg(&again),
    );
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(&page).unwrap()
    );
}

#[test]
fn report_md_of_a_huge_timeline_fits_an_issue_body() {
    let lab = Lab::up("rhuge");
    let files = TempDir::new("rhuge");
    // 3000 neighbour entries on the target port, added and removed: 6000 timeline events, of
    // which the first and last 500 are kept and the rest counted.
    let (add, remove) = (files.path.join("add"), files.path.join("remove"));
    let mut adding = String::new();
    let mut removing = String::new();
    for i in 0..3000u32 {
        let address = format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250);
        adding.push_str(&format!(
            "neigh add {address} lladdr 02:00:00:00:{:02x}:{:02x} dev {} nud permanent\n",
            i / 256,
            i % 256,
            lab.target.interface
        ));
        removing.push_str(&format!(
            "neigh del {address} dev {}\n",
            lab.target.interface
        ));
    }
    std::fs::write(&add, adding).unwrap();
    std::fs::write(&remove, removing).unwrap();
    let script = format!(
        "ip -n {ns} -batch {} && sleep 1 && ip -n {ns} -batch {} && sleep 1",
        add.display(),
        remove.display(),
        ns = lab.target.netns
    );
    let bundle = lab.watch(&[], &["sh", "-c", &script]);
    let events = bundle.report["timeline"]["events"]
        .as_array()
        .unwrap()
        .len();
    let counted = bundle.report["timeline"]["truncated"].as_u64().unwrap();
    assert!(events <= 1100, "{events} timeline events kept");
    assert!(
        events as u64 + counted >= 6000,
        "{events} timeline events kept, {counted} counted"
    );
    let markdown = std::fs::read_to_string(bundle.dir.join("report.md")).unwrap();
    assert!(
        markdown.chars().count() < GITHUB_BODY_LIMIT,
        "{} characters",
        markdown.chars().count()
    );
    assert!(markdown.starts_with("# tracer watch: "), "{markdown}");
    assert!(
        markdown.contains("more rows not shown")
            || markdown.contains("neighbour events on the target from"),
        "{markdown}"
    );
    assert!(markdown.contains("```mermaid"));
    // report.html has every event kept.
    let html = std::fs::read_to_string(bundle.dir.join("report.html")).unwrap();
    let table = html.split("<table id=\"timeline-events\"").nth(1).unwrap();
    let rows = table
        .split("</table>")
        .next()
        .unwrap()
        .matches("<tr>")
        .count();
    assert_eq!(rows, events + 1, "the header and every event");
}

/// A bundle made by `tracer diagnose --report` on `lab`.
fn diagnose_bundle(lab: &Lab, dir: &Path, expected_code: i32) -> Value {
    let out = output(
        tracer()
            .arg("diagnose")
            .args(lab.port_args())
            .arg("--report")
            .arg(dir),
    );
    assert_eq!(out.status.code(), Some(expected_code), "{out:?}");
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// A copy of `source` in `dir`, from `host`, started at `started`, for `test`.
fn copy_bundle(source: &Path, dir: &Path, host: &str, started: &str, test: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for file in ["report.md", "report.html", "path.svg"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let mut report: Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("report.json")).unwrap())
            .unwrap();
    let identity = &mut report["identity"];
    identity["host"] = host.into();
    identity["started"] = started.into();
    identity["test"] = test.into();
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn triage_groups_many_bundles_and_lists_what_does_not_read() {
    let files = TempDir::new("rtriage");
    let made = files.path.join("made");
    let lab = Lab::up("rtri");
    let ok = diagnose_bundle(&lab, &made.join("ok"), 0);
    check(
        lab.target
            .exec("iptables")
            .args(["-I", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    let netfilter = diagnose_bundle(&lab, &made.join("netfilter"), 12);
    check(
        lab.target
            .exec("ip")
            .args(["link", "set", &lab.target.interface, "down"]),
    );
    let interface = diagnose_bundle(&lab, &made.join("interface"), 14);
    drop(lab);
    let signature = |report: &Value| report["verdict"]["signature"].as_str().unwrap().to_owned();

    // 30 bundles in nested directories, from two hosts.
    let ci = files.path.join("ci");
    let plan: [(&str, &[(&str, u32)]); 3] = [
        ("netfilter", &[("node-a", 8), ("node-b", 4)]),
        ("interface", &[("node-a", 3), ("node-b", 7)]),
        ("ok", &[("node-b", 8)]),
    ];
    let mut day = 0;
    for (kind, hosts) in plan {
        for (host, count) in hosts {
            for _ in 0..*count {
                day += 1;
                let dir = ci.join(format!("week/{host}/run-{day:02}"));
                let started = format!("2026-05-{day:02}T03:00:00Z");
                copy_bundle(
                    &made.join(kind),
                    &dir,
                    host,
                    &started,
                    &format!("nvmf_{kind}"),
                );
            }
        }
    }
    // One cut short, one from a newer tracer.
    let truncated = ci.join("week/node-a/truncated");
    let early = "2026-04-01T00:00:00Z";
    copy_bundle(
        &made.join("netfilter"),
        &truncated,
        "node-a",
        early,
        "nvmf_cut",
    );
    let text = std::fs::read_to_string(truncated.join("report.json")).unwrap();
    std::fs::write(truncated.join("report.json"), &text[..text.len() / 2]).unwrap();
    let newer = ci.join("week/node-b/newer");
    copy_bundle(&made.join("ok"), &newer, "node-b", early, "nvmf_new");
    let mut report: Value =
        serde_json::from_str(&std::fs::read_to_string(newer.join("report.json")).unwrap()).unwrap();
    report["schema_version"] = 99.into();
    std::fs::write(newer.join("report.json"), report.to_string()).unwrap();
    // Three more netfilter bundles in a .tar.gz, as CI systems keep them.
    let staging = files.path.join("staging");
    for n in 1..=3 {
        copy_bundle(
            &made.join("netfilter"),
            &staging.join(format!("archived-{n}")),
            "node-a",
            &format!("2026-06-{n:02}T03:00:00Z"),
            "nvmf_netfilter",
        );
    }
    let archive = ci.join("older.tar.gz");
    check(
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&staging)
            .arg("."),
    );

    let page = files.path.join("triage.html");
    let out = check(
        tracer()
            .arg("triage")
            .arg(&ci)
            .arg("--json")
            .arg("--html")
            .arg(&page),
    );
    let triage: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(triage["bundles"], 33, "{triage:#}");
    let groups = triage["groups"].as_array().unwrap();
    let summary: Vec<(String, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["signature"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (signature(&netfilter), 15),
            (signature(&interface), 10),
            (signature(&ok), 8),
        ]
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let expected = [
        (
            set(&["node-a", "node-b"]),
            "2026-05-01T03:00:00Z",
            "2026-06-03T03:00:00Z",
        ),
        (
            set(&["node-a", "node-b"]),
            "2026-05-13T03:00:00Z",
            "2026-05-22T03:00:00Z",
        ),
        (
            set(&["node-b"]),
            "2026-05-23T03:00:00Z",
            "2026-05-30T03:00:00Z",
        ),
    ];
    for (group, (hosts, first, last)) in groups.iter().zip(expected) {
        assert_eq!(strings(&group["hosts"]), hosts, "{group:#}");
        assert_eq!(strings(&group["kernels"]), set(&[kernel.trim()]));
        assert_eq!(group["first_seen"], first, "{group:#}");
        assert_eq!(group["last_seen"], last, "{group:#}");
        assert_eq!(
            group["bundles"].as_array().unwrap().len() as u64,
            group["count"]
        );
    }
    assert_eq!(strings(&groups[0]["tests"]), set(&["nvmf_netfilter"]));
    // The latest netfilter bundle is the third in the archive.
    assert_eq!(
        groups[0]["example"],
        format!("{}:./archived-3", archive.display())
    );
    assert_eq!(
        groups[2]["example"],
        ci.join("week/node-b/run-30").display().to_string()
    );

    let unreadable: Vec<(String, bool)> = triage["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["location"].as_str().unwrap().to_owned(),
                u["newer_schema"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        unreadable,
        vec![
            (truncated.display().to_string(), false),
            (newer.display().to_string(), true),
        ]
    );
    assert!(
        triage["unreadable"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("version 99 is newer"),
        "{triage:#}"
    );

    // The page links every bundle that has a report.html: the 30 in directories.
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<a href=\"ci/week/").count(), 30, "{html}");
    assert_eq!(html.matches("<tr class=\"group\">").count(), 3);
    // And the text form says the same.
    let text = check(tracer().arg("triage").arg(&ci)).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.starts_with("33 bundles in 3 groups; 2 not readable"),
        "{text}"
    );
}

/// An archive member whose path leaves the archive is never written anywhere: triage reads in
/// memory only.
#[test]
fn triage_reads_archives_without_extracting_them() {
    let files = TempDir::new("rtar");
    let inside = files.path.join("inside");
    std::fs::create_dir_all(inside.join("b")).unwrap();
    std::fs::write(inside.join("b/report.json"), "{\"schema_version\": 3}").unwrap();
    let archive = files.path.join("hostile.tar.gz");
    // A member named ../../escaped/report.json.
    check(
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(inside.join("b"))
            .args(["--transform", "s,^,../../escaped/,", "report.json"]),
    );
    let out = check(tracer().arg("triage").arg(&archive).arg("--json"));
    let triage: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(triage["bundles"], 0);
    let unreadable = &triage["unreadable"][0];
    assert_eq!(
        unreadable["location"],
        format!("{}:../../escaped", archive.display())
    );
    assert!(!PathBuf::from("/tmp/escaped").exists());
    assert!(!files.path.join("../escaped").exists());
}

/// The sections of a document split at `heading` (`\n## `, `<h2>`): (title line, body).
fn sections<'a>(text: &'a str, heading: &str) -> Vec<(&'a str, &'a str)> {
    text.split(heading)
        .skip(1)
        .map(|section| section.split_once('\n').unwrap_or((section, "")))
        .collect()
}

/// The drops normal on a healthy path (replies to ping's raw socket that no other socket takes,
/// purged queues, IPv6 on ports without it) are listed apart in report.md and report.html,
/// under a title that says they are expected, each with why; never among the other drops.
#[test]
fn expected_drops_are_kept_apart_in_the_bundle() {
    let lab = Lab::up("exd");
    let files = TempDir::new("exd");
    let dir = files.path.join("bundle");
    let report = diagnose_bundle(&lab, &dir, 0);
    let expected: Vec<String> = report["drops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|drop| {
            ["NO_SOCKET", "QUEUE_PURGE", "NOT_SPECIFIED"]
                .contains(&drop["reason"].as_str().unwrap())
        })
        .map(|drop| {
            format!(
                "{} x {} ({})",
                drop["count"],
                drop["reason"].as_str().unwrap(),
                drop["protocol"].as_str().unwrap()
            )
        })
        .collect();
    // The probes' echo replies reach the stack beside tracer's raw socket.
    assert!(!expected.is_empty(), "no expected drop to show: {report:#}");
    let markdown = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for (document, heading) in [(&markdown, "\n## "), (&html, "<h2>")] {
        for drop in &expected {
            for (title, body) in sections(document, heading) {
                let lines: Vec<&str> = body
                    .lines()
                    .filter(|line| line.contains(drop.as_str()))
                    .collect();
                if title.starts_with("Expected drops") {
                    assert!(!lines.is_empty(), "{drop} not under {title}:\n{document}");
                    assert!(
                        lines.iter().all(|line| line.contains("(expected: ")),
                        "{lines:?}"
                    );
                } else {
                    assert!(lines.is_empty(), "{drop} under {title}:\n{document}");
                }
            }
        }
    }
}
