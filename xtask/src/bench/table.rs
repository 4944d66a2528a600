//! The report as a plain table for the terminal.

use serde_json::Value;

use super::*;

pub(super) fn mark(met: bool) -> &'static str {
    if met { "yes" } else { "MISSED" }
}

/// A ratio held to a floor, rounded down: 0.9698 reads 0.969, never 0.970 beside "MISSED".
/// The nudge keeps a ratio whose thousandths come out a hair under a whole number in floating
/// point (1.005 × 1000 is 1004.999…) at that number.
fn ratio_shown(ratio: f64) -> String {
    format!("{:.3}", (ratio * 1000.0 + 1e-6).floor() / 1000.0)
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
    let mut rows: Vec<(String, String, String, String, String)> = Vec::new();
    // A measure with its goal, when this run made it (`--only` leaves some out).
    let mut measured =
        |key: &str, measure: &str, value: String, goal: String, noise_key: Option<&str>| {
            if report.get(key).is_none() {
                return;
            }
            let met = if goal.is_empty() || goal.starts_with('(') {
                ""
            } else {
                mark(met(key))
            };
            let noise = noise_key.map(noise).unwrap_or_default();
            rows.push(row(measure, value, goal, met, noise));
        };
    for hook in ["xdp", "tc"] {
        let hook_name = hook.to_uppercase();
        measured(
            &format!("{hook}_ns_per_packet"),
            &format!("{hook_name} ns/packet: count | capture | empty"),
            format!(
                "{:.1} | {:.1} | {:.1}",
                value(&format!("{hook}_ns_per_packet")),
                value(&format!("capture_{hook}_ns_per_packet")),
                value(&format!("baseline_{hook}_ns_per_packet"))
            ),
            String::new(),
            None,
        );
        measured(
            &format!("{hook}_added_ns_per_packet"),
            &format!("{hook_name} ns/packet added by counting"),
            format!("{:.1}", value(&format!("{hook}_added_ns_per_packet"))),
            format!("<= {GOAL_ADDED_NS}"),
            None,
        );
        measured(
            &format!("capture_{hook}_added_ns_per_packet"),
            &format!("{hook_name} ns/packet added, capturing (watch)"),
            format!(
                "{:.1}",
                value(&format!("capture_{hook}_added_ns_per_packet"))
            ),
            String::new(),
            None,
        );
    }
    measured(
        "attach_ms",
        "attach ms (spawn to ready file)",
        format!("{:.1}", value("attach_ms")),
        format!("<= {GOAL_ATTACH_MS}"),
        Some("attach_ms"),
    );
    measured(
        "detach_ms",
        "detach ms (SIGINT to exit)",
        format!("{:.1}", value("detach_ms")),
        String::new(),
        Some("detach_ms"),
    );
    measured(
        "attach_ms_internal",
        "attach | detach ms inside tracer",
        format!(
            "{:.1} | {:.1}",
            value("attach_ms_internal"),
            value("detach_ms_internal")
        ),
        String::new(),
        None,
    );
    measured(
        "rss_peak_mb",
        "VmHWM MiB at ready | after traffic",
        format!(
            "{:.1} | {:.1}",
            value("rss_peak_attach_mb"),
            value("rss_peak_mb")
        ),
        format!("<= {GOAL_RSS_PEAK_MB}"),
        Some("rss_peak_attach_mb"),
    );
    measured(
        "rss_mb",
        &format!("RSS MiB after {} s of traffic", report["rss_seconds"]),
        format!("{:.1}", value("rss_mb")),
        format!("<= {GOAL_RSS_MB}"),
        None,
    );
    measured(
        "port_appears_counted_ms",
        "port appears -> counted, ms",
        format!("{:.1}", value("port_appears_counted_ms")),
        format!("<= {GOAL_APPEARS_COUNTED_MS}"),
        Some("port_appears_counted_ms"),
    );
    measured(
        "port_attach_loaded_ms",
        "  of which attaching the loaded programs",
        format!("{:.1}", value("port_attach_loaded_ms")),
        String::new(),
        Some("port_attach_loaded_ms"),
    );
    measured(
        "watch_idle_cpu_percent",
        "watch CPU % of a core, command idle",
        format!("{:.3}", value("watch_idle_cpu_percent")),
        format!("<= {GOAL_WATCH_IDLE_CPU_PERCENT}"),
        Some("watch_idle_cpu_percent"),
    );
    // The goal each watcher was held to, as the report recorded it (tcpdump is the reference).
    let ratio_goal = |key: &str| {
        report["goals"][key]
            .as_f64()
            .map_or_else(|| "(reference)".to_owned(), |goal| format!(">= {goal}"))
    };
    for (name, shown) in [
        ("tracer", "monitor"),
        ("watch", "watch"),
        ("tcpdump", "tcpdump"),
        ("empty_tc", "empty tc programs"),
    ] {
        let key = format!("throughput_ratio_{name}");
        measured(
            &key,
            &format!("throughput ratio, {shown}"),
            ratio_shown(value(&key)),
            ratio_goal(&key),
            Some(&key),
        );
        let key = format!("pps_ratio_{name}");
        measured(
            &key,
            &format!("UDP 64-byte pps ratio, {shown}"),
            ratio_shown(value(&key)),
            ratio_goal(&key),
            Some(&key),
        );
    }
    for (name, shown) in [("counting", "monitor's"), ("capturing", "watch's")] {
        let key = format!("in_flood_{name}_added_ns");
        measured(
            &key,
            &format!("flood: ns a run added, {shown} programs"),
            format!("{:.1}", value(&key)),
            String::new(),
            Some(&key),
        );
    }
    measured(
        "two_pairs_attach_ms",
        "two pairs (4 ports) attached, ms",
        format!("{:.1}", value("two_pairs_attach_ms")),
        format!("<= {GOAL_TWO_PAIRS_ATTACH_MS}"),
        Some("two_pairs_attach_ms"),
    );
    if report.get("long_run_growth_mb").is_some() {
        rows.push(row(
            &format!(
                "watch VmHWM MiB under churn, {} s | {} s",
                report["short_run_seconds"], report["long_run_seconds"]
            ),
            format!(
                "{:.1} | {:.1}",
                value("short_run_peak_mb"),
                value("long_run_peak_mb")
            ),
            format!("growth <= {GOAL_LONG_RUN_GROWTH_MB}"),
            mark(met("long_run_growth_mb")),
            format!(
                "{} | {}",
                noise("short_run_peak_mb"),
                noise("long_run_peak_mb")
            ),
        ));
    }
    if report.get("big_ruleset").is_some() {
        let big_ruleset = |key: &str| report["big_ruleset"][key].as_f64().unwrap_or(f64::NAN);
        rows.push(row(
            &format!("diagnose s, {BIG_RULES} rules and {CROWD} namespaces"),
            format!("{:.3}", big_ruleset("seconds")),
            format!("<= {GOAL_BIG_RULESET_SECONDS}"),
            mark(met("big_ruleset_seconds")),
            noise("big_ruleset_seconds"),
        ));
        rows.push(row(
            "  its VmHWM MiB (tracer alone)",
            format!("{:.1}", big_ruleset("peak_mb")),
            format!("<= {GOAL_BIG_RULESET_PEAK_MB}"),
            mark(met("big_ruleset_peak_mb")),
            noise("big_ruleset_peak_mb"),
        ));
    }
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
    // The long runs take minutes: the load may change under them.
    if let Some(load) = report["long_run_load"].as_object() {
        text += &format!(
            "\nload around the long runs: {} before, {} after\n",
            load["before"].as_str().unwrap_or("?"),
            load["after"].as_str().unwrap_or("?")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::ratio_shown;

    #[test]
    fn a_ratio_under_its_goal_never_reads_as_the_goal() {
        assert_eq!(ratio_shown(0.96997), "0.969");
        assert_eq!(ratio_shown(0.97), "0.970");
        assert_eq!(ratio_shown(0.9701), "0.970");
        assert_eq!(ratio_shown(1.0), "1.000");
    }
}
