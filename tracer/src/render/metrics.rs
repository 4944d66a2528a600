//! `tracer monitor`'s metrics in the Prometheus text format (0.0.4) or, when the scraper asks
//! for it, OpenMetrics 1.0.

mod cables;

use std::fmt::Write as _;

use tracer_common::PacketKind;

use tracer_evidence::InterfaceCounters;

pub use self::cables::PortCable;

/// One watched port as `tracer monitor` exports it. Its series are named by what the user
/// configured (role, pair, spec), never by where the port is: a port that moves to another
/// namespace, or is deleted and created anew, goes on counting in the same series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitoredPort {
    /// "initiator" or "target".
    pub role: String,
    /// The configured pair the port belongs to, as its label value: "0" for the first.
    pub pair: String,
    /// The port as configured, `[NETNS/]IFNAME`.
    pub spec: String,
    /// What it counted and its state, where it is now; `None` while tracer waits for it.
    pub attached: Option<AttachedPort>,
    /// Present, but tracer's programs could not be attached to it (why, in tracer's log).
    pub attach_failing: bool,
    /// What the last cable map found of it; `None` before one ran.
    pub cable: Option<PortCable>,
}

/// A monitored port that is present and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedPort {
    /// Its counters since they were first pinned; `netns` and `interface` are where the port is
    /// now.
    pub counters: InterfaceCounters,
    /// `None` when the link could not be read.
    pub carrier: Option<bool>,
    /// Kernel drops on the port wherever it was while tracer watched it, by reason name.
    pub drops: std::collections::BTreeMap<String, u64>,
    /// The NEIGH_FAILED drops among them.
    pub neighbour_failures: u64,
    /// Carrier (up, down) counts since the device appeared; `None` before kernel 4.16.
    pub carrier_counts: Option<(u32, u32)>,
}

/// Everything one `tracer monitor` scrape exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSnapshot {
    pub ports: Vec<MonitoredPort>,
    /// Events the kernel programs saw but could not count.
    pub lost_events: u64,
    pub version: String,
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
    /// The test running now, from --test-tag-file: empty when the file names none, `None`
    /// when no file is given.
    pub test: Option<String>,
    /// Rules with SPDK's `SPDK_NVMF` comment, by namespace of the configured ports.
    pub spdk_rules: Vec<(String, u64)>,
    /// When the last cable map ran (Unix seconds), if one did.
    pub cable_map_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: what every Prometheus and `promtool check metrics` read.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: what Prometheus asks for first.
    OpenMetrics,
}

impl Format {
    /// The format an HTTP `Accept` header asks for: OpenMetrics when it is named and not
    /// refused (q=0), the Prometheus text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media_type = parts.next().unwrap_or_default();
                let refused = parts.any(|parameter| {
                    parameter
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media_type.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
    /// A constant 1 whose labels carry the information.
    Info,
}

/// One metric family: its samples are named `name` plus the type's suffix.
struct Family<'a> {
    name: &'a str,
    kind: Type,
    help: &'a str,
}

type Labels<'a> = Vec<(&'a str, &'a str)>;

impl Family<'_> {
    fn sample_name(&self) -> String {
        match self.kind {
            Type::Counter => format!("{}_total", self.name),
            Type::Info => format!("{}_info", self.name),
            Type::Gauge => self.name.to_owned(),
        }
    }

    fn write(&self, out: &mut String, format: Format, samples: &[(Labels<'_>, u64)]) {
        let sample_name = self.sample_name();
        // OpenMetrics names the family without the suffix; the Prometheus text format names it
        // as its samples, and has no info type.
        let (family_name, type_name) = match (format, self.kind) {
            (Format::OpenMetrics, Type::Counter) => (self.name, "counter"),
            (Format::OpenMetrics, Type::Info) => (self.name, "info"),
            (_, Type::Gauge) => (sample_name.as_str(), "gauge"),
            (Format::Prometheus, Type::Counter) => (sample_name.as_str(), "counter"),
            (Format::Prometheus, Type::Info) => (sample_name.as_str(), "gauge"),
        };
        let _ = writeln!(out, "# HELP {family_name} {}", self.help);
        let _ = writeln!(out, "# TYPE {family_name} {type_name}");
        for (labels, value) in samples {
            out.push_str(&sample_name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label_value(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// Label values may hold any UTF-8: both formats escape backslash, double quote and newline.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

const BUILD: Family = Family {
    name: "tracer_build",
    kind: Type::Info,
    help: "tracer's version and the running kernel's release.",
};
const TEST: Family = Family {
    name: "tracer_test",
    kind: Type::Info,
    help: "The test running now, as SPDK's run_test names it in its tag file (re-read at \
           SIGUSR1; test=\"\" while the file names none); join it to the counters rather than \
           labelling them.",
};
const SPDK_RULES: Family = Family {
    name: "tracer_spdk_rules",
    kind: Type::Gauge,
    help: "Firewall rules with SPDK's SPDK_NVMF comment in each namespace of the configured \
           ports (netns as configured), counted every 10 s and at SIGUSR1: tests add them and \
           their teardown removes them all, so any while no test runs \
           (tracer_test_info{test=\"\"}) are an earlier run's.",
};
const PORT_ATTACHED: Family = Family {
    name: "tracer_port_attached",
    kind: Type::Gauge,
    help: "1 when the configured port (role, pair, port: the spec as configured) is found and \
           counted, 0 while tracer waits for it.",
};
const PORT_ATTACH_FAILING: Family = Family {
    name: "tracer_port_attach_failing",
    kind: Type::Gauge,
    help: "1 when the configured port (role, pair, port) is present but tracer's programs could \
           not be attached to it (tracer's log says why, and it tries again): its counts are \
           missing, not zero.",
};
const PORT: Family = Family {
    name: "tracer_port",
    kind: Type::Info,
    help: "Where each configured port (role, pair, port) is now (netns, interface). The other \
           series are named by the configured port only: join on role, pair and port to learn \
           where it is.",
};
const PACKETS: Family = Family {
    name: "tracer_packets",
    kind: Type::Counter,
    help: "Frames that crossed a configured port (role, pair, port: the spec as configured), by \
           direction and kind (tcp_syn, tcp_syn_ack and tcp_rst are also in tcp_port). One \
           series per configured port, wherever the port is: moves to other namespaces and \
           ports deleted and created anew go on counting in it.",
};
const DROPS: Family = Family {
    name: "tracer_drops",
    kind: Type::Counter,
    help: "Kernel drops (kfree_skb) of frames on a configured port (role, pair, port), by the \
           kernel's drop reason. One series per configured port, wherever the port is: drops in \
           namespaces it left and on devices deleted since are carried on in it.",
};
const NEIGHBOUR_FAILURES: Family = Family {
    name: "tracer_neighbour_failures",
    kind: Type::Counter,
    help: "Frames dropped on a configured port (role, pair, port) because its neighbour (ARP) \
           entry failed: its kfree_skb drops with reason NEIGH_FAILED, in the same series \
           wherever the port is.",
};
const CARRIER: Family = Family {
    name: "tracer_link_carrier",
    kind: Type::Gauge,
    help: "1 when the configured port (role, pair, port) has carrier, 0 when it has none.",
};
const INGRESS_HOOK: Family = Family {
    name: "tracer_port_ingress_hook",
    kind: Type::Gauge,
    help: "The hook counting a configured port's (role, pair, port) ingress: xdp, or tc when \
           another program holds its XDP hook.",
};
const LOST_EVENTS: Family = Family {
    name: "tracer_lost_events",
    kind: Type::Counter,
    help: "Events the kernel programs saw but could not count.",
};

/// What names a port's series: what the user configured, never where the port is.
fn identity(port: &MonitoredPort) -> Labels<'_> {
    vec![
        ("role", port.role.as_str()),
        ("pair", port.pair.as_str()),
        ("port", port.spec.as_str()),
    ]
}

/// The exposition of one snapshot. Only formatting: every number comes from the snapshot.
pub fn exposition(snapshot: &MonitorSnapshot, format: Format) -> String {
    let mut out = String::new();
    BUILD.write(
        &mut out,
        format,
        &[(
            vec![
                ("version", snapshot.version.as_str()),
                ("kernel", snapshot.kernel.as_str()),
            ],
            1,
        )],
    );

    if let Some(test) = &snapshot.test {
        TEST.write(&mut out, format, &[(vec![("test", test.as_str())], 1)]);
    }

    let spdk_rules: Vec<_> = snapshot
        .spdk_rules
        .iter()
        .map(|(netns, count)| (vec![("netns", netns.as_str())], *count))
        .collect();
    SPDK_RULES.write(&mut out, format, &spdk_rules);

    let failing: Vec<_> = snapshot
        .ports
        .iter()
        .map(|port| (identity(port), u64::from(port.attach_failing)))
        .collect();
    PORT_ATTACH_FAILING.write(&mut out, format, &failing);

    let attached_samples: Vec<_> = snapshot
        .ports
        .iter()
        .map(|port| (identity(port), u64::from(port.attached.is_some())))
        .collect();
    PORT_ATTACHED.write(&mut out, format, &attached_samples);

    let attached: Vec<(&MonitoredPort, &AttachedPort)> = snapshot
        .ports
        .iter()
        .filter_map(|port| Some((port, port.attached.as_ref()?)))
        .collect();

    let port_samples: Vec<_> = attached
        .iter()
        .map(|(port, attached)| {
            let mut labels = identity(port);
            labels.extend([
                ("netns", attached.counters.netns.as_str()),
                ("interface", attached.counters.interface.as_str()),
            ]);
            (labels, 1)
        })
        .collect();
    PORT.write(&mut out, format, &port_samples);

    let mut packets = Vec::new();
    for (port, attached) in &attached {
        for (direction, counts) in [
            ("ingress", &attached.counters.ingress),
            ("egress", &attached.counters.egress),
        ] {
            for kind in PacketKind::ALL {
                let mut labels = identity(port);
                labels.extend([("direction", direction), ("kind", kind.name())]);
                packets.push((labels, counts.get(kind)));
            }
        }
    }
    PACKETS.write(&mut out, format, &packets);

    let mut drops = Vec::new();
    for (port, attached) in &attached {
        for (reason, count) in &attached.drops {
            let mut labels = identity(port);
            labels.push(("reason", reason.as_str()));
            drops.push((labels, *count));
        }
    }
    DROPS.write(&mut out, format, &drops);

    let neighbour_failures: Vec<_> = attached
        .iter()
        .map(|(port, attached)| (identity(port), attached.neighbour_failures))
        .collect();
    NEIGHBOUR_FAILURES.write(&mut out, format, &neighbour_failures);

    let carrier: Vec<_> = attached
        .iter()
        .filter_map(|(port, attached)| Some((identity(port), u64::from(attached.carrier?))))
        .collect();
    CARRIER.write(&mut out, format, &carrier);

    let hooks: Vec<_> = attached
        .iter()
        .map(|(port, attached)| {
            let mut labels = identity(port);
            labels.push(("hook", attached.counters.ingress_hook.as_str()));
            (labels, 1)
        })
        .collect();
    INGRESS_HOOK.write(&mut out, format, &hooks);

    cables::write(&mut out, format, &snapshot.ports, snapshot.cable_map_at);

    LOST_EVENTS.write(&mut out, format, &[(vec![], snapshot.lost_events)]);
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use tracer_evidence::KindCounts;

    fn snapshot() -> MonitorSnapshot {
        let mut egress = KindCounts::default();
        egress.set(PacketKind::IcmpEchoRequest, 5);
        MonitorSnapshot {
            ports: vec![
                MonitoredPort {
                    role: "initiator".into(),
                    pair: "0".into(),
                    attach_failing: false,
                    spec: "cvl_0_1".into(),
                    attached: Some(AttachedPort {
                        counters: InterfaceCounters {
                            netns: String::new(),
                            interface: "cvl_0_1".into(),
                            ingress_hook: "xdp".into(),
                            ingress: KindCounts::default(),
                            egress,
                        },
                        carrier: Some(true),
                        drops: BTreeMap::from([("NEIGH_FAILED".to_owned(), 3)]),
                        neighbour_failures: 3,
                        carrier_counts: Some((2, 1)),
                    }),
                    cable: Some(PortCable {
                        reaches_peer: false,
                        far_ends: vec![("frames", "cvl_1_1".into())],
                        speed_mbps: Some(25000),
                    }),
                },
                MonitoredPort {
                    role: "target".into(),
                    pair: "0".into(),
                    attach_failing: false,
                    spec: "ns\"x/cvl_0_0".into(),
                    attached: None,
                    cable: None,
                },
            ],
            lost_events: 0,
            version: "0.1.0".into(),
            kernel: "6.18.0".into(),
            test: Some("nvmf_tcp".into()),
            spdk_rules: vec![(String::new(), 2), ("nvmf_ns_spdk".into(), 0)],
            cable_map_at: Some(1_700_000_000),
        }
    }

    #[test]
    fn prometheus_text() {
        let text = exposition(&snapshot(), Format::Prometheus);
        let initiator = "role=\"initiator\",pair=\"0\",port=\"cvl_0_1\"";
        assert!(text.contains("# TYPE tracer_packets_total counter\n"));
        assert!(text.contains(&format!(
            "tracer_packets_total{{{initiator},direction=\"egress\",kind=\"icmp_echo_request\"}} 5\n"
        )));
        assert!(text.contains("# TYPE tracer_build_info gauge\n"));
        assert!(text.contains("tracer_build_info{version=\"0.1.0\",kernel=\"6.18.0\"} 1\n"));
        // SPDK's rules by namespace, one series each, with no test label.
        assert!(text.contains("# TYPE tracer_spdk_rules gauge\n"));
        assert!(text.contains("tracer_spdk_rules{netns=\"\"} 2\n"));
        assert!(text.contains("tracer_spdk_rules{netns=\"nvmf_ns_spdk\"} 0\n"));
        assert!(text.contains(&format!(
            "tracer_drops_total{{{initiator},reason=\"NEIGH_FAILED\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "tracer_neighbour_failures_total{{{initiator}}} 3\n"
        )));
        assert!(text.contains(&format!("tracer_link_carrier{{{initiator}}} 1\n")));
        assert!(text.contains(&format!(
            "tracer_port_ingress_hook{{{initiator},hook=\"xdp\"}} 1\n"
        )));
        assert!(text.contains(
            "tracer_port_attached{role=\"target\",pair=\"0\",port=\"ns\\\"x/cvl_0_0\"} 0\n"
        ));
        // The cabling: carrier history, and what the last map found.
        for line in [
            format!("tracer_link_carrier_up_total{{{initiator}}} 2\n"),
            format!("tracer_link_carrier_down_total{{{initiator}}} 1\n"),
            format!("tracer_cable_reaches_peer{{{initiator}}} 0\n"),
            format!(
                "tracer_cable_far_end_info{{{initiator},far_end=\"cvl_1_1\",seen_by=\"frames\"}} 1\n"
            ),
            format!("tracer_link_speed_mbps{{{initiator}}} 25000\n"),
            "tracer_cable_map_timestamp_seconds 1700000000\n".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} missing: {text}");
        }
        assert!(!text.contains("tracer_cable_reaches_peer{role=\"target\""));
        // Where the port is, only here.
        assert!(text.contains(&format!(
            "tracer_port_info{{{initiator},netns=\"\",interface=\"cvl_0_1\"}} 1\n"
        )));
        // (tracer_spdk_rules names namespaces where rules were counted, no port's place.)
        let ports_text: String = text
            .lines()
            .filter(|line| !line.starts_with("tracer_spdk_rules{"))
            .collect();
        assert_eq!(ports_text.matches("netns=").count(), 1, "{text}");
        assert_eq!(text.matches("interface=").count(), 1, "{text}");
        // A port waited for has no location: no info sample.
        assert!(!text.contains("tracer_port_info{role=\"target\""));
        assert!(text.ends_with("tracer_lost_events_total 0\n"));
        // Both directions times every kind, for the one attached port.
        let packet_lines = text
            .lines()
            .filter(|line| line.starts_with("tracer_packets_total{"));
        assert_eq!(packet_lines.count(), 2 * PacketKind::ALL.len());
    }

    #[test]
    fn openmetrics_text() {
        let text = exposition(&snapshot(), Format::OpenMetrics);
        assert!(text.contains("# TYPE tracer_packets counter\n"));
        assert!(text.contains("# TYPE tracer_build info\n"));
        assert!(text.contains("tracer_build_info{version=\"0.1.0\",kernel=\"6.18.0\"} 1\n"));
        assert!(text.contains("# TYPE tracer_link_carrier gauge\n"));
        assert!(text.ends_with("tracer_lost_events_total 0\n# EOF\n"));
    }

    #[test]
    fn negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
