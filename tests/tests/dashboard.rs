//! The Grafana dashboard (packaging/grafana/tracer.json) against a real Prometheus scraping
//! `tracer monitor` on a lab: every query of every panel and variable runs without error or
//! warning, with the template variables as Grafana puts them in, and finds what the lab's
//! traffic did.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tracer_tests::{
    Lab, Namespaces, PinDir, Prometheus, TracerRun, check, free_port, http, output, percent_encode,
    unique,
};
use tracer_topology::{Pair, Topology};

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/tracer.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// One query of a panel.
#[derive(Debug)]
struct Query {
    panel: String,
    ref_id: String,
    expr: String,
    instant: bool,
}

/// Every query of every panel, those inside rows included (a collapsed row holds its panels).
/// Each panel other than a row has at least one, and reads the dashboard's data source variable.
fn queries(dashboard: &Value) -> Vec<Query> {
    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels array") {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    let mut queries = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel `{title}`"
        );
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel `{title}` has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel `{title}`: empty query");
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "panel `{title}`"
            );
            queries.push(Query {
                panel: title.clone(),
                ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                expr: expr.to_owned(),
                instant: target["instant"] == true && target["range"] != true,
            });
        }
    }
    queries
}

/// `text` with each `$name` and `${name[:format]}` replaced by its value in `values`: what
/// Grafana does before it sends a query. A name without a value fails the test.
fn substitute(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, length) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced
                    .find('}')
                    .unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
                let name = braced[..end].split(':').next().unwrap_or_default();
                (name, end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = values
            .iter()
            .find(|(known, _)| *known == name)
            .unwrap_or_else(|| panic!("variable `{name}` has no value, in {text}"))
            .1;
        out.push_str(value);
        rest = &after[length..];
    }
    out.push_str(rest);
    out
}

/// The variables' values: the test's node (regex-escaped, as Grafana writes a selected value
/// for `=~`), every port (the "All" value), and Grafana's own intervals.
fn values(instance: &str) -> Vec<(&'static str, String)> {
    vec![
        ("instance", instance.replace('.', "\\\\.")),
        ("port", ".*".to_owned()),
        ("__rate_interval", "1m".to_owned()),
        ("__interval", "15s".to_owned()),
        ("__range", "5m".to_owned()),
    ]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// A GET on Prometheus's HTTP API: its `data`, or its error (and warnings count as errors).
fn api(prometheus: &Prometheus, path: &str) -> Result<Value, String> {
    let response =
        http("GET", &prometheus.address, path, &[]).map_err(|err| format!("GET {path}: {err}"))?;
    let body = if response
        .header("Transfer-Encoding")
        .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
    {
        dechunk(&response.body).ok_or_else(|| format!("GET {path}: bad chunked body"))?
    } else {
        response.body.clone()
    };
    let answer: Value = serde_json::from_slice(&body)
        .map_err(|err| format!("GET {path}: {err}: {}", response.text()))?;
    if answer["status"] != "success" {
        return Err(format!("{}: {}", answer["errorType"], answer["error"]));
    }
    if let Some(warnings) = answer["warnings"].as_array()
        && !warnings.is_empty()
    {
        return Err(format!("warnings: {warnings:?}"));
    }
    Ok(answer["data"].clone())
}

/// The body of a chunked HTTP/1.1 response (Prometheus sends long answers so).
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|window| window == b"\r\n")?;
        let size = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// A query as Grafana runs it: instant at `at`, or over the last minute in 1 s steps. The
/// series found (each `{metric, value}` or `{metric, values}`), or why there are none.
fn run(prometheus: &Prometheus, query: &Query, expr: &str, at: u64) -> Result<Vec<Value>, String> {
    let encoded = percent_encode(expr);
    let path = if query.instant {
        format!("/api/v1/query?query={encoded}&time={at}")
    } else {
        format!(
            "/api/v1/query_range?query={encoded}&start={}&end={at}&step=1",
            at - 60
        )
    };
    let data = api(prometheus, &path)?;
    let series: Vec<Value> = data["result"]
        .as_array()
        .ok_or_else(|| format!("no result array: {data}"))?
        .iter()
        .filter(|series| {
            series["value"].is_array()
                || series["values"]
                    .as_array()
                    .is_some_and(|values| !values.is_empty())
        })
        .cloned()
        .collect();
    if series.is_empty() {
        return Err("no series".to_owned());
    }
    Ok(series)
}

/// A series' value at the end of the query (the last step of a range).
fn last(series: &Value) -> f64 {
    let value = if series["value"].is_array() {
        &series["value"]
    } else {
        series["values"]
            .as_array()
            .and_then(|values| values.last())
            .expect("a value")
    };
    value[1]
        .as_str()
        .and_then(|value| value.parse().ok())
        .expect("a number")
}

/// Every query of the dashboard, its variables' included, on `prometheus` now: the series of
/// each panel query, by (panel title, refId). Fails the test with every failing query at once.
fn run_all(prometheus: &Prometheus, instance: &str, ports: &[&str]) -> Vec<(Query, Vec<Value>)> {
    let dashboard = dashboard();
    assert_eq!(dashboard["schemaVersion"], 39);
    let values = values(instance);
    let values: Vec<(&str, &str)> = values
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let at = now();
    let mut failures = Vec::new();

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("a templating list");
    let mut names = Vec::new();
    for variable in variables {
        let name = variable["name"].as_str().expect("a variable name");
        names.push(name);
        match variable["type"].as_str() {
            Some("datasource") => assert_eq!(variable["query"], "prometheus", "{variable}"),
            Some("query") => {
                assert_eq!(variable["datasource"]["uid"], "${datasource}", "{variable}");
                let definition = variable["query"]["query"]
                    .as_str()
                    .or_else(|| variable["query"].as_str())
                    .expect("a variable query");
                let expected: Vec<&str> = match name {
                    "instance" => vec![instance],
                    "port" => ports.to_vec(),
                    other => panic!("no test value for variable `{other}`"),
                };
                let found = label_values(prometheus, &substitute(definition, &values), at);
                match found {
                    Ok(found)
                        if expected
                            .iter()
                            .all(|value| found.iter().any(|f| f == value)) => {}
                    Ok(found) => failures.push(format!(
                        "variable `{name}` ({definition}): {found:?}, not all of {expected:?}"
                    )),
                    Err(err) => failures.push(format!("variable `{name}` ({definition}): {err}")),
                }
            }
            other => panic!("variable `{name}` of unexpected type {other:?}"),
        }
    }
    assert_eq!(names, ["datasource", "instance", "port"]);

    let mut results = Vec::new();
    for query in queries(&dashboard) {
        let expr = substitute(&query.expr, &values);
        match run(prometheus, &query, &expr, at) {
            Ok(series) => results.push((query, series)),
            Err(err) => failures.push(format!(
                "panel `{}` query {}: {err}\n{expr}",
                query.panel, query.ref_id
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    results
}

/// `label_values(EXPR, LABEL)` or `label_values(LABEL)`, as Grafana's Prometheus data source
/// runs it: the label's values.
fn label_values(prometheus: &Prometheus, definition: &str, at: u64) -> Result<Vec<String>, String> {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| format!("not label_values(…): {definition}"))?;
    let (matcher, label) = match inner.rsplit_once(',') {
        Some((matcher, label)) => (Some(matcher.trim()), label.trim()),
        None => (None, inner.trim()),
    };
    let mut path = format!("/api/v1/label/{label}/values?start={}&end={at}", at - 60);
    if let Some(matcher) = matcher {
        path.push_str(&format!("&match%5B%5D={}", percent_encode(matcher)));
    }
    let data = api(prometheus, &path)?;
    Ok(data
        .as_array()
        .ok_or_else(|| format!("no values: {data}"))?
        .iter()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect())
}

/// The series of the panel titled `panel` (all its queries, or only `ref_id`'s).
fn panel<'a>(
    results: &'a [(Query, Vec<Value>)],
    panel: &str,
    ref_id: Option<&str>,
) -> Vec<&'a Value> {
    let series: Vec<&Value> = results
        .iter()
        .filter(|(query, _)| {
            query.panel == panel && ref_id.is_none_or(|ref_id| query.ref_id == ref_id)
        })
        .flat_map(|(_, series)| series)
        .collect();
    assert!(!series.is_empty(), "no panel `{panel}` {ref_id:?}");
    series
}

fn label<'a>(series: &'a Value, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or_default()
}

/// Polls `expression` until a result satisfies `accept`.
fn wait_until(prometheus: &Prometheus, expression: &str, accept: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let results = prometheus.query(expression);
        if results.iter().any(|(_, value)| accept(*value)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{expression}` never as expected within 30 s; last: {results:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `tracer monitor` on `ports` with a pin directory and metrics address of its own, and a
/// Prometheus scraping it.
fn monitor(ports: &[String], pins: &PinDir) -> (TracerRun, Prometheus, String) {
    let address = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<&str> = vec!["monitor"];
    args.extend(ports.iter().map(String::as_str));
    let pin_dir = pins.arg();
    args.extend(["--metrics-addr", &address, "--pin-dir", &pin_dir]);
    // The cabling panel's map: the pair's own ports, never the machine's other ports.
    let pair: Vec<&str> = ports
        .windows(2)
        .filter(|flag| flag[0] == "--initiator" || flag[0] == "--target")
        .map(|flag| flag[1].as_str())
        .collect();
    let cable_ports = pair.join(",");
    args.extend(["--cable-map", "--cable-ports", &cable_ports]);
    let run = TracerRun::start(&args);
    let prometheus = Prometheus::start(&[&address]);
    prometheus.wait_for("up{job=\"tracer\"}", 1.0);
    (run, prometheus, address)
}

/// Pings, then an ICMP drop on the target: the packets, drops, carrier, attached and port panels
/// all show the lab's ports, and nothing is lost between them.
#[test]
fn every_panel_query_runs_and_shows_the_lab() {
    // Interface names unique to the test: a monitor looks for a port wherever it is.
    let suffix: String = unique("dsh").chars().rev().take(10).collect();
    let lab = Lab::with_names("dsh", &format!("i{suffix}"), &format!("t{suffix}"), 4420);
    let (initiator, target) = (&lab.initiator, &lab.target);
    let pins = PinDir::new();
    let (_monitor, prometheus, instance) = monitor(&lab.port_args(), &pins);

    assert!(lab.ping(5), "ping across a healthy lab failed");
    check(
        target
            .exec("iptables")
            .args(["-I", "INPUT", "-p", "icmp", "-j", "DROP"]),
    );
    assert!(!lab.ping(3), "ping through an ICMP drop succeeded");
    let (initiator_port, target_port) = (initiator.spec(), target.spec());
    prometheus.wait_for(
        &format!(
            "tracer_drops_total{{role=\"target\",pair=\"0\",port=\"{target_port}\",reason=\"NETFILTER_DROP\"}}"
        ),
        3.0,
    );
    prometheus.wait_for(
        &format!(
            "tracer_packets_total{{port=\"{target_port}\",direction=\"ingress\",kind=\"icmp_echo_request\"}}"
        ),
        8.0,
    );
    // Two more scrapes: the last samples of both ports are the final counts.
    std::thread::sleep(Duration::from_secs(2));

    let results = run_all(&prometheus, &instance, &[&initiator_port, &target_port]);

    let ingress = panel(&results, "Ingress on $port", None);
    assert!(
        ingress
            .iter()
            .any(|series| label(series, "port") == target_port
                && label(series, "role") == "target"
                && label(series, "kind") == "icmp_echo_request"),
        "{ingress:#?}"
    );
    let egress = panel(&results, "Egress on $port", None);
    assert!(
        egress
            .iter()
            .any(|series| label(series, "port") == initiator_port
                && label(series, "role") == "initiator"
                && label(series, "kind") == "icmp_echo_request"),
        "{egress:#?}"
    );
    let drops = panel(&results, "Kernel drops by reason", None);
    assert!(
        drops
            .iter()
            .any(|series| label(series, "port") == target_port
                && label(series, "reason") == "NETFILTER_DROP"
                && last(series) > 0.0),
        "{drops:#?}"
    );
    // The probes reached the target before the firewall took them: nothing lost on the wire.
    let lost = panel(
        &results,
        "Sent by one port, never received by the other",
        None,
    );
    assert!(
        lost.iter()
            .any(|series| label(series, "kind") == "icmp_echo_request"
                && label(series, "pair") == "0"),
        "{lost:#?}"
    );
    for series in &lost {
        assert_eq!(last(series), 0.0, "{series:#}");
    }
    for (title, name) in [("Carrier", "port"), ("Ports attached", "port")] {
        let series = panel(&results, title, None);
        assert_eq!(series.len(), 2, "{title}: {series:#?}");
        assert!(
            series.iter().all(|series| last(series) == 1.0),
            "{title}: {series:#?}"
        );
        assert!(series.iter().all(|series| !label(series, name).is_empty()));
    }
    let ports = panel(&results, "Ports", None);
    let mut roles: Vec<(&str, &str, &str, &str, &str)> = ports
        .iter()
        .map(|series| {
            (
                label(series, "role"),
                label(series, "port"),
                label(series, "netns"),
                label(series, "interface"),
                label(series, "hook"),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            (
                "initiator",
                initiator_port.as_str(),
                initiator.netns.as_str(),
                initiator.interface.as_str(),
                "tc"
            ),
            (
                "target",
                target_port.as_str(),
                target.netns.as_str(),
                target.interface.as_str(),
                "tc"
            ),
        ]
    );
    for title in ["Attach failing", "Lost events", "Neighbour (ARP) failures"] {
        let series = panel(&results, title, None);
        assert!(
            series.iter().all(|series| last(series) == 0.0),
            "{title}: {series:#?}"
        );
    }
    // SPDK's rules: the lab's accept in the initiator's namespace, none beside the target (the
    // test's ICMP drop has no SPDK_NVMF comment).
    let rules = panel(&results, "SPDK_NVMF rules by namespace", None);
    let mut counts: Vec<(&str, f64)> = rules
        .iter()
        .map(|series| (label(series, "netns"), last(series)))
        .collect();
    counts.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        counts,
        [
            (initiator.netns.as_str(), 1.0),
            (target.netns.as_str(), 0.0)
        ],
        "{rules:#?}"
    );
    // Cabled to each other: each port's frames reached the other, its far end.
    let cabled = panel(&results, "Cabled to each other", None);
    let mut far_ends: Vec<(&str, &str)> = cabled
        .iter()
        .map(|series| (label(series, "role"), label(series, "far_end")))
        .collect();
    far_ends.sort();
    let label_of = |end: &tracer_tests::End| format!("{} (namespace {})", end.interface, end.netns);
    assert_eq!(
        far_ends,
        [
            ("initiator", label_of(target).as_str()),
            ("target", label_of(initiator).as_str())
        ],
        "{cabled:#?}"
    );
    assert!(
        cabled.iter().all(|series| last(series) == 1.0),
        "{cabled:#?}"
    );
}

/// Two ports cabled to peers elsewhere (carrier on, the founding incident): the ARP requests the
/// initiator sends are lost between the ports, and its neighbour entry fails.
#[test]
fn lost_panel_shows_ports_cabled_elsewhere() {
    let base = unique("dmc");
    let suffix: String = base.chars().rev().take(10).collect();
    let (initiator_ns, target_ns, elsewhere) = (
        format!("{base}-i"),
        format!("{base}-t"),
        format!("{base}-x"),
    );
    let (initiator, target) = (format!("i{suffix}"), format!("t{suffix}"));
    let _namespaces = Namespaces::build(&Topology {
        pairs: vec![Pair::cabled_elsewhere(
            tracer_topology::End::new(&initiator_ns, &initiator).with_address("10.0.0.1/24"),
            tracer_topology::End::new(&target_ns, &target).with_address("10.0.0.2/24"),
            &elsewhere,
            ("peer1", "peer0"),
            true,
        )],
        ..Topology::default()
    });
    let (initiator_port, target_port) = (
        format!("{initiator_ns}/{initiator}"),
        format!("{target_ns}/{target}"),
    );
    let ports = [
        "--initiator".to_owned(),
        initiator_port.clone(),
        "--target".to_owned(),
        target_port.clone(),
    ];
    let pins = PinDir::new();
    let (_monitor, prometheus, instance) = monitor(&ports, &pins);

    // "Destination Host Unreachable" after the neighbour entry failed (about 3 s).
    let ping = output(Command::new("ip").args([
        "netns",
        "exec",
        &initiator_ns,
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "10.0.0.2",
    ]));
    assert!(
        !ping.status.success(),
        "ping to an unreachable target succeeded"
    );
    wait_until(
        &prometheus,
        &format!("tracer_neighbour_failures_total{{port=\"{initiator_port}\"}}"),
        |value| value > 0.0,
    );
    std::thread::sleep(Duration::from_secs(2));

    let results = run_all(&prometheus, &instance, &[&initiator_port, &target_port]);
    let lost = panel(
        &results,
        "Sent by one port, never received by the other",
        Some("A"),
    );
    let arp = lost
        .iter()
        .find(|series| label(series, "kind") == "arp_request")
        .unwrap_or_else(|| panic!("no arp_request series: {lost:#?}"));
    assert!(last(arp) > 0.0, "{arp:#}");
    let failures = panel(&results, "Neighbour (ARP) failures", None);
    assert!(
        failures
            .iter()
            .any(|series| label(series, "port") == initiator_port && last(series) > 0.0),
        "{failures:#?}"
    );
    // Cabled elsewhere, both ports keep their carrier.
    let carrier = panel(&results, "Carrier", None);
    assert!(
        carrier.iter().all(|series| last(series) == 1.0),
        "{carrier:#?}"
    );
    // And the cable map says their frames do not reach each other.
    let cabled = panel(&results, "Cabled to each other", None);
    assert_eq!(cabled.len(), 2, "{cabled:#?}");
    assert!(
        cabled.iter().all(|series| last(series) == 0.0),
        "{cabled:#?}"
    );
}
