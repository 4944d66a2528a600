//! The report as a plain table for the terminal.

use serde_json::Value;

use super::*;

pub(super) fn mark(met: bool) -> &'static str {
    if met { "yes" } else { "MISSED" }
}

/// The report as a plain table for the terminal.
pub(super) fn table(report: &Value, verdicts: &[Verdicts]) -> String {
    let value = |key: &str| report[key].as_f64().unwrap_or(f64::NAN);
    let met = |key: &str| report["goals_met"][key].as_bool().unwrap_or(false);
    let noise = |key: &str| {
        let spread = &report["noise"][key];
        format!(
            "{:.3}..{:.3}",
            spread["min"].as_f64().unwrap_or(f64::NAN),
            spread["max"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let machine = &report["machine"];
    let row = |measure: &str, value: String, goal: String, met: &str, noise: String| {
        (measure.to_owned(), value, goal, met.to_owned(), noise)
    };
    let mut rows: Vec<(String, String, String, String, String)> = vec![
        row(
            "XDP ns/packet: counting | empty",
            format!(
                "{:.1} | {:.1}",
                value("xdp_ns_per_packet"),
                value("baseline_xdp_ns_per_packet")
            ),
            String::new(),
            "",
            String::new(),
        ),
        row(
            "XDP ns/packet added by counting",
            format!("{:.1}", value("xdp_added_ns_per_packet")),
            format!("<= {GOAL_ADDED_NS}"),
            mark(met("xdp_added_ns_per_packet")),
            String::new(),
        ),
        row(
            "tc ns/packet: counting | empty",
            format!(
                "{:.1} | {:.1}",
                value("tc_ns_per_packet"),
                value("baseline_tc_ns_per_packet")
            ),
            String::new(),
            "",
            String::new(),
        ),
        row(
            "tc ns/packet added by counting",
            format!("{:.1}", value("tc_added_ns_per_packet")),
            format!("<= {GOAL_ADDED_NS}"),
            mark(met("tc_added_ns_per_packet")),
            String::new(),
        ),
        row(
            "attach ms (spawn to ready file)",
            format!("{:.1}", value("attach_ms")),
            format!("<= {GOAL_ATTACH_MS}"),
            mark(met("attach_ms")),
            noise("attach_ms"),
        ),
        row(
            "detach ms (SIGINT to exit)",
            format!("{:.1}", value("detach_ms")),
            String::new(),
            "",
            noise("detach_ms"),
        ),
        row(
            "attach | detach ms inside tracer",
            format!(
                "{:.1} | {:.1}",
                value("attach_ms_internal"),
                value("detach_ms_internal")
            ),
            String::new(),
            "",
            String::new(),
        ),
        row(
            "VmHWM MiB at ready | after traffic",
            format!(
                "{:.1} | {:.1}",
                value("rss_peak_attach_mb"),
                value("rss_peak_mb")
            ),
            format!("<= {GOAL_RSS_PEAK_MB}"),
            mark(met("rss_peak_mb")),
            noise("rss_peak_attach_mb"),
        ),
        row(
            &format!("RSS MiB after {} s of traffic", report["rss_seconds"]),
            format!("{:.1}", value("rss_mb")),
            format!("<= {GOAL_RSS_MB}"),
            mark(met("rss_mb")),
            String::new(),
        ),
        row(
            "port appears -> counted, ms",
            format!("{:.1}", value("port_appears_counted_ms")),
            format!("<= {GOAL_APPEARS_COUNTED_MS}"),
            mark(met("port_appears_counted_ms")),
            noise("port_appears_counted_ms"),
        ),
        row(
            "  of which attaching the loaded programs",
            format!("{:.1}", value("port_attach_loaded_ms")),
            String::new(),
            "",
            noise("port_attach_loaded_ms"),
        ),
        row(
            "watch CPU % of a core, command idle",
            format!("{:.3}", value("watch_idle_cpu_percent")),
            format!("<= {GOAL_WATCH_IDLE_CPU_PERCENT}"),
            mark(met("watch_idle_cpu_percent")),
            noise("watch_idle_cpu_percent"),
        ),
        row(
            "throughput ratio, tracer",
            format!("{:.3}", value("throughput_ratio_tracer")),
            format!(">= {GOAL_THROUGHPUT_RATIO}"),
            mark(met("throughput_ratio_tracer")),
            noise("throughput_ratio_tracer"),
        ),
        row(
            "throughput ratio, tcpdump",
            format!("{:.3}", value("throughput_ratio_tcpdump")),
            "(reference)".to_owned(),
            "",
            noise("throughput_ratio_tcpdump"),
        ),
        row(
            "UDP 64-byte pps ratio, tracer",
            format!("{:.3}", value("pps_ratio_tracer")),
            format!(">= {GOAL_PPS_RATIO}"),
            mark(met("pps_ratio_tracer")),
            noise("pps_ratio_tracer"),
        ),
        row(
            "UDP 64-byte pps ratio, tcpdump",
            format!("{:.3}", value("pps_ratio_tcpdump")),
            "(reference)".to_owned(),
            "",
            noise("pps_ratio_tcpdump"),
        ),
    ];
    let big_ruleset = |key: &str| report["big_ruleset"][key].as_f64().unwrap_or(f64::NAN);
    rows.push(row(
        "diagnose s, 20,000 rules and 300 namespaces",
        format!("{:.3}", big_ruleset("seconds")),
        format!("<= {GOAL_BIG_RULESET_SECONDS}"),
        mark(met("big_ruleset_seconds")),
        noise("big_ruleset_seconds"),
    ));
    rows.push(row(
        "… its VmHWM MiB (tracer alone)",
        format!("{:.1}", big_ruleset("peak_mb")),
        format!("<= {GOAL_BIG_RULESET_PEAK_MB}"),
        mark(met("big_ruleset_peak_mb")),
        noise("big_ruleset_peak_mb"),
    ));
    if let Some(alternatives) = report["throughput_ratio_alternatives"].as_object() {
        for (hooks, ratio) in alternatives {
            rows.push(row(
                &format!("throughput ratio, {hooks} (tracer-bench hold)"),
                format!("{:.3}", ratio.as_f64().unwrap_or(f64::NAN)),
                "(comparison)".to_owned(),
                "",
                String::new(),
            ));
        }
    }
    for verdict in verdicts {
        let expected = FAULTS
            .iter()
            .find(|(name, _)| *name == verdict.fault)
            .map_or("", |(_, expected)| *expected);
        let class = if verdict.class == expected {
            verdict.class.clone()
        } else {
            format!("{}, expected {expected}", verdict.class)
        };
        let seconds = median(&verdict.seconds);
        rows.push(row(
            &format!("diagnose s: {} ({class})", verdict.fault),
            format!("{seconds:.3}"),
            format!("<= {GOAL_VERDICT_SECONDS}"),
            mark(seconds <= GOAL_VERDICT_SECONDS && verdict.class == expected),
            format!(
                "{:.3}..{:.3}",
                verdict
                    .seconds
                    .iter()
                    .copied()
                    .fold(f64::INFINITY, f64::min),
                verdict.seconds.iter().copied().fold(0.0, f64::max)
            ),
        ));
    }
    let mut text = format!(
        "\ntracer bench on {} cores ({}), {} MiB, kernel {}, load {} at start\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_mb"],
        machine["kernel"].as_str().unwrap_or("?"),
        machine["load_average_at_start"].as_str().unwrap_or("?"),
    );
    text += &format!(
        "{:<44} {:>13} {:>10} {:>7} {:>16}\n",
        "measure", "value", "goal", "met", "min..max"
    );
    for (measure, value, goal, met, noise) in rows {
        text += &format!("{measure:<44} {value:>13} {goal:>10} {met:>7} {noise:>16}\n");
    }
    text
}
